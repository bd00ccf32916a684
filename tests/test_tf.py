"""``lstmshape.tf.dataset``: every output layout to the right batches, streamed; training on it
works; and Keras ``Masking`` on lstmshape's post-padded output really hides the padding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import random_sequences, run_python, write_ragged

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tf() -> Any:
    import tensorflow  # make test installs it: missing, these tests fail rather than skip

    return tensorflow


@pytest.fixture
def sequences(rng: np.random.Generator) -> list[np.ndarray]:
    return random_sequences(rng, 37, 9, 3, min_length=1)


def make(invoke: Any, *args: Any) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output + result.stderr
    return str(args[list(args).index("-o") + 1])


def collect(data: Any) -> list[Any]:
    return [tuple(np.asarray(part) for part in item) if isinstance(item, tuple)
            else np.asarray(item) for item in data]


# ---------------------------------------------------------------------------------------------
# Layouts


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])
def test_dense_outputs_in_order(invoke: Any, tmp_path: Path, sequences: list[np.ndarray],
                                suffix: str, tf: Any) -> None:
    import lstmshape.tf

    src = write_ragged(tmp_path, "npz-lengths", sequences)
    out = make(invoke, "pad", src, "-o", tmp_path / f"train{suffix}")
    expected = np.asarray(lstmshape.pad(sequences).tensor)
    data = lstmshape.tf.dataset(out, batch_size=10)
    assert data.element_spec.shape.as_list() == [None, 9, 3]
    assert int(data.cardinality()) == 4
    batches = collect(data)
    assert [b.shape[0] for b in batches] == [10, 10, 10, 7]
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    dropped = lstmshape.tf.dataset(out, batch_size=10, drop_remainder=True)
    assert [b.shape[0] for b in collect(dropped)] == [10, 10, 10]


def test_ragged_output_gives_padded_batches(invoke: Any, tmp_path: Path,
                                            sequences: list[np.ndarray], keras: Any) -> None:
    import lstmshape.tf

    src = write_ragged(tmp_path, "h5-group", sequences)
    out = make(invoke, "truncate", src, "--maxlen", "6", "-o", tmp_path / "short.npz")
    data = lstmshape.tf.dataset(out, batch_size=8, pad_value=-5)
    batches = collect(data)
    cut = [s[:6] for s in sequences]
    for index, batch in enumerate(batches):  # each batch padded to its own longest, as Keras
        group = cut[index * 8:(index + 1) * 8]
        reference = keras.utils.pad_sequences(group, padding="post", value=-5.0,
                                              dtype="float32")
        np.testing.assert_array_equal(batch, reference)


def test_targets_come_as_pairs(invoke: Any, tmp_path: Path, tf: Any) -> None:
    import lstmshape.tf

    x = np.arange(1, 10 * 4 * 2 + 1, dtype=np.float32).reshape(10, 4, 2)
    lengths = np.array([4, 3, 2, 1, 4, 4, 2, 3, 1, 4])
    x[np.arange(4)[None, :] >= lengths[:, None]] = 0  # post-padded with 0, as pad writes
    src = tmp_path / "xy.npz"
    np.savez(src, x=x, lengths=lengths, y=np.arange(10, dtype=np.float32).reshape(10, 1))
    for suffix in (".npy", ".h5"):
        out = make(invoke, "truncate", src, "--maxlen", "3", "-o", tmp_path / f"cut{suffix}")
        pairs = collect(lstmshape.tf.dataset(out, batch_size=4))
        assert [p[0].shape for p in pairs] == [(4, 3, 2), (4, 3, 2), (2, 3, 2)]
        np.testing.assert_array_equal(np.concatenate([p[1] for p in pairs])[:, 0], np.arange(10))
        np.testing.assert_array_equal(np.concatenate([p[0] for p in pairs]), x[:, :3])


def test_batched_containers_give_their_stored_batches(tmp_path: Path, tf: Any) -> None:
    import lstmshape.tf
    from lstmshape.errors import InputError

    path = tmp_path / "batches.npz"
    rng = np.random.default_rng(0)
    stored = {"x_000000": rng.normal(size=(4, 5, 2)).astype(np.float32),
              "lengths_000000": np.array([5, 4, 3, 2]),
              "x_000001": rng.normal(size=(4, 3, 2)).astype(np.float32),
              "lengths_000001": np.array([3, 3, 1, 0]),
              "order": np.arange(8)}
    np.savez(path, **stored)
    batches = collect(lstmshape.tf.dataset(str(path)))
    assert [b.shape for b in batches] == [(4, 5, 2), (4, 3, 2)]
    np.testing.assert_array_equal(batches[1], stored["x_000001"])
    shuffled = collect(lstmshape.tf.dataset(str(path), shuffle=True, seed=1))
    assert sorted(b.shape[1] for b in shuffled) == [3, 5]
    with pytest.raises(InputError, match="already batched"):
        lstmshape.tf.dataset(str(path), batch_size=4)


def test_batch_command_outputs(invoke: Any, tmp_path: Path, sequences: list[np.ndarray],
                               tf: Any) -> None:
    import lstmshape.tf
    src = write_ragged(tmp_path, "npz-lengths", sequences)
    out = make(invoke, "batch", src, "--size", "8", "--bucket-by-length", "-o",
               tmp_path / "b.h5")
    batches = collect(lstmshape.tf.dataset(out))
    assert sum(b.shape[0] for b in batches) == 37 and len(batches) == 5
    padded = make(invoke, "pad", src, "-o", tmp_path / "p.npy")
    one = make(invoke, "batch", padded, "--size", "8", "--remainder", "drop", "-o",
               tmp_path / "b.npy")
    assert [b.shape for b in collect(lstmshape.tf.dataset(one))] == [(8, 9, 3)] * 4


def test_window_outputs_have_targets(invoke: Any, tmp_path: Path, tf: Any) -> None:
    import lstmshape.tf
    series = np.arange(60 * 2, dtype=np.float32).reshape(60, 2)
    np.save(tmp_path / "s.npy", series)
    out = make(invoke, "window", tmp_path / "s.npy", "--timesteps", "5", "--target", "0",
               "--horizon", "1", "-o", tmp_path / "w.npy")
    pairs = collect(lstmshape.tf.dataset(out, batch_size=16))
    x = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs]).reshape(len(x), -1)
    # the target is column 0, one step after each window's last step
    np.testing.assert_array_equal(y[:, 0], x[:, -1, 0] + 2)


# ---------------------------------------------------------------------------------------------
# Shuffling and streaming


def test_shuffle_is_a_seeded_permutation_that_changes_every_epoch(
        invoke: Any, tmp_path: Path, rng: np.random.Generator, tf: Any) -> None:
    import lstmshape.tf

    x = np.arange(200, dtype=np.float32).reshape(200, 1, 1)
    path = tmp_path / "ids.npy"
    np.save(path, x)
    # small blocks: the order of the blocks and of the samples in them is shuffled too
    data = lstmshape.tf.dataset(str(path), batch_size=50, shuffle=True, seed=7,
                                block_bytes=256)
    first = np.concatenate(collect(data)).ravel()
    second = np.concatenate(collect(data)).ravel()
    assert sorted(first) == list(range(200)) and sorted(second) == list(range(200))
    assert not np.array_equal(first, np.arange(200)) and not np.array_equal(first, second)
    again = lstmshape.tf.dataset(str(path), batch_size=50, shuffle=True, seed=7, block_bytes=256)
    np.testing.assert_array_equal(np.concatenate(collect(again)).ravel(), first)


def test_streams_blocks_instead_of_loading_the_file(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tf: Any) -> None:
    import lstmshape.tf
    from lstmshape.io import h5

    path = tmp_path / "big.h5"
    import h5py

    with h5py.File(path, "w") as handle:
        handle["x"] = np.ones((1000, 10, 4), np.float32)  # 160 KB
    reads: list[int] = []
    original = h5.H5DatasetArray.read_rows

    def spy(self: Any, start: int, stop: int) -> np.ndarray:
        reads.append(stop - start)
        return original(self, start, stop)

    monkeypatch.setattr(h5.H5DatasetArray, "read_rows", spy)
    data = lstmshape.tf.dataset(str(path), batch_size=64, block_bytes=16_000)
    assert sum(b.shape[0] for b in collect(data)) == 1000
    assert len(reads) >= 10 and max(reads) <= 100  # 16 KB blocks of 100 samples


# ---------------------------------------------------------------------------------------------
# Keras


def test_fit_on_a_padded_ragged_set_has_a_finite_loss(invoke: Any, tmp_path: Path,
                                                      sequences: list[np.ndarray],
                                                      keras: Any) -> None:
    import tensorflow as tf

    import lstmshape.tf

    src = write_ragged(tmp_path, "h5-lengths", sequences)
    out = make(invoke, "pad", src, "--maxlen", "p95", "-o", tmp_path / "train.h5")
    # target: the sum of each sequence's real values (the padding adds 0)
    data = lstmshape.tf.dataset(out, batch_size=8, shuffle=True).map(
        lambda x: (x, tf.reduce_sum(x, axis=[1, 2])[:, None]))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(None, 3)), keras.layers.Masking(0.0),
                              keras.layers.LSTM(4), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(data, epochs=2, verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 2
    assert all(np.isfinite(loss) for loss in history.history["loss"])


def test_masking_hides_post_padding(invoke: Any, tmp_path: Path, rng: np.random.Generator,
                                    keras: Any) -> None:
    """Real-timestep outputs of the padded batch equal each sequence fed alone, unpadded."""
    import lstmshape.tf

    sequences = random_sequences(rng, 12, 10, 3, min_length=1)
    src = write_ragged(tmp_path, "npz-savez", sequences)
    out = make(invoke, "pad", src, "--value", "0", "-o", tmp_path / "train.npy")
    padded = np.concatenate(collect(lstmshape.tf.dataset(out, batch_size=5)))
    assert padded.shape == (12, 10, 3)
    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(None, 3))
    masked = keras.layers.Masking(mask_value=0.0)(inputs)
    every_step = keras.layers.LSTM(4, return_sequences=True)(masked)
    model = keras.Model(inputs, every_step)
    batch_out = np.asarray(model(padded))
    for index, seq in enumerate(sequences):
        alone = np.asarray(model(seq[None]))[0]
        np.testing.assert_allclose(batch_out[index, :len(seq)], alone, rtol=1e-5, atol=1e-6)
        # after the last real step a masked LSTM repeats its last output: padding changes nothing
        np.testing.assert_allclose(batch_out[index, len(seq):],
                                   np.repeat(alone[-1:], 10 - len(seq), axis=0),
                                   rtol=1e-5, atol=1e-6)
    # and without the mask the padding does change the final state: the test can tell
    plain = keras.Model(inputs, keras.layers.LSTM(4)(inputs))
    short = min(range(12), key=lambda i: len(sequences[i]))
    assert not np.allclose(np.asarray(plain(padded[short:short + 1])),
                           np.asarray(plain(sequences[short][None])), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Import cost and the demo script


def test_importing_lstmshape_tf_does_not_import_tensorflow() -> None:
    code = ("import sys, lstmshape; lstmshape.tf\n"
            "from lstmshape.tf import dataset\n"
            "print('HEAVY', [m for m in ('tensorflow', 'keras') if m in sys.modules])")
    done = run_python(code)
    assert "HEAVY []" in done.stdout, done.stderr


def test_dataset_without_tensorflow_says_how_to_install_it(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 1)))
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "import lstmshape.tf\n"
            "try:\n    lstmshape.tf.dataset(sys.argv[1])\n"
            "except lstmshape.tf.TensorFlowMissing as err:\n    print('MISSING', err)")
    done = run_python(code, str(tmp_path / "x.npy"))
    assert "MISSING" in done.stdout and "pip install 'lstmshape[tf]'" in done.stdout


def test_train_demo_prints_a_finite_loss(invoke: Any, tmp_path: Path,
                                         sequences: list[np.ndarray], keras: Any) -> None:
    src = write_ragged(tmp_path, "npz-lengths", sequences)
    out = make(invoke, "pad", src, "-o", tmp_path / "train.npy")
    done = subprocess.run([sys.executable, str(ROOT / "sample_data" / "train_demo.py"), out],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("loss ") and np.isfinite(float(last.split()[1])), done.stdout
