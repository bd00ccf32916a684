"""Regenerate the small sample files in this folder, deterministically (seeded).

    python sample_data/make_samples.py

Every layout lstmshape reads is here, each a few KB to a few hundred KB:

* ``sensors.npz``     -- ragged accelerometer recordings as ``values`` + ``lengths`` (3 features)
* ``sensors_labels.npy`` -- a class per recording (0/1: is axis 0 above zero on average?), for
                         ``--y``, ``partition --stratify`` and the demo's classifier
* ``sensors.h5``      -- the same recordings as an HDF5 group ``/sensors`` of one dataset each,
                         plus a per-recording ``/meta/temperature`` array
* ``tokens.npy``      -- 2-D ``(samples, timesteps)`` int32 token ids, 0-padded at the end
* ``tokens_lengths.npy`` -- the true length of each token sequence (for ``--lengths``)
* ``dense.npy``       -- a dense ``(samples, timesteps, features)`` float32 tensor
* ``weather.npy``     -- a per-recording ``(samples, 2)`` array of static features
* ``series.npy``      -- a long multivariate series ``(timesteps, features)`` for ``window``
* ``events.csv``      -- a long table, one row per event ``(user, ts, amount, items, churned)``,
                         in time order (users interleaved), string ids: ``pad --id --time``
"""

from __future__ import annotations

import os

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261126


def main() -> None:
    rng = np.random.default_rng(SEED)

    # Ragged sensor recordings: 120 recordings of 5..160 steps, 3 axes.
    lengths = rng.integers(5, 161, size=120)
    values = np.concatenate([
        np.cumsum(rng.normal(0, 0.1, size=(n, 3)), axis=0) + rng.normal(0, 1, size=3)
        for n in lengths
    ]).astype(np.float32)
    np.savez(os.path.join(HERE, "sensors.npz"), values=values, lengths=lengths.astype(np.int64))
    # A class per recording, from the data itself (no draw: the other files stay as they were)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    labels = (np.add.reduceat(values[:, 0], starts) / lengths > 0).astype(np.int64)
    np.save(os.path.join(HERE, "sensors_labels.npy"), labels)

    path = os.path.join(HERE, "sensors.h5")
    with h5py.File(path, "w", track_order=False) as h5:
        group = h5.create_group("sensors")
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for i in range(len(lengths)):
            group.create_dataset(f"rec_{i}", data=values[offsets[i]:offsets[i + 1]],
                                 track_times=False)
        h5.create_dataset("meta/temperature", data=rng.normal(20, 5, size=len(lengths)),
                          track_times=False)

    # Token ids: 200 sentences of 3..40 tokens from a 500-word vocabulary, 0-padded (post).
    token_lengths = rng.integers(3, 41, size=200)
    tokens = np.zeros((200, 40), dtype=np.int32)
    for i, n in enumerate(token_lengths):
        tokens[i, :n] = rng.integers(1, 500, size=n)
    np.save(os.path.join(HERE, "tokens.npy"), tokens)
    # Their true lengths: without them the 0 padding would count as real tokens.
    np.save(os.path.join(HERE, "tokens_lengths.npy"), token_lengths.astype(np.int64))

    # Dense tensor: 64 samples of 50 steps, 4 features.
    np.save(os.path.join(HERE, "dense.npy"), rng.normal(size=(64, 50, 4)).astype(np.float32))

    # Static per-recording features (outdoor temperature, humidity) for add-feature --static.
    weather = np.stack([rng.normal(15, 8, size=120), rng.uniform(0.2, 0.9, size=120)], axis=1)
    np.save(os.path.join(HERE, "weather.npy"), weather.astype(np.float32))

    # A long series: 5,000 steps of load, temperature and hour-of-day.
    steps = np.arange(5000)
    hour = steps % 24
    temperature = 15 + 8 * np.sin(2 * np.pi * steps / 24 / 7) + rng.normal(0, 1, 5000)
    load = 100 + 30 * np.sin(2 * np.pi * hour / 24) - 0.5 * temperature + rng.normal(0, 3, 5000)
    series = np.stack([load, temperature, hour], axis=1).astype(np.float32)
    np.save(os.path.join(HERE, "series.npy"), series)
    write_events(os.path.join(HERE, "events.csv"))


def write_events(path: str) -> None:
    """An event log as exports have it: sorted by time, so users' rows interleave; a user who
    churned spends less towards the end. Its own seed: the other files stay as they were."""
    rng = np.random.default_rng(SEED + 1)
    rows = []
    for number in range(80):
        user = f"c{number * 37 % 1000:03d}"
        churned = int(rng.random() < 0.4)
        count = int(rng.integers(5, 61))
        times = np.sort(rng.choice(100_000, size=count, replace=False))
        trend = np.linspace(1.0, 0.3 if churned else 1.1, count)
        for ts, scale in zip(times, trend, strict=True):
            amount = round(float(rng.gamma(2.0, 20.0) * scale), 2)
            rows.append((int(ts), user, amount, int(rng.integers(1, 6)), churned))
    rows.sort()
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("user,ts,amount,items,churned\n")
        for ts, user, amount, items, churned in rows:
            handle.write(f"{user},{ts},{amount:.2f},{items},{churned}\n")


if __name__ == "__main__":
    main()
