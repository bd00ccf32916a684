"""``--memory-limit`` is obeyed by every transforming command, for ``x`` and ``y`` alike.

Equal outputs under a small and a large budget (tests/test_streaming.py) cannot tell whether the
budget was used at all: two runs that both ignore it are equal too. These tests look at *how*
the work is done instead: every read of a stored array is recorded (a spy on the one class that
reads HDF5 datasets), and a real subprocess's peak RSS is measured on an input whose targets
alone are larger than the ceiling.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import peak_rss

from lstmshape.io import h5 as h5_module
from lstmshape.job import BLOCK_SHARE

SAMPLES, TIMESTEPS, FEATURES, TARGET_WIDTH = 2000, 50, 4, 200
SMALL_BUDGET = 2**20  # the smallest --memory-limit: blocks of 64 KiB
LARGE_BUDGET = 10**9

#: Every transforming command, as run on ``in.h5`` (x, y) and ``extra.npy`` (one feature).
COMMANDS: dict[str, list[str]] = {
    "pad": ["pad", "{src}", "--maxlen", "40"],
    "truncate": ["truncate", "{src}", "--maxlen", "30"],
    "truncate-split": ["truncate", "{src}", "--maxlen", "20", "--overflow", "split"],
    "batch": ["batch", "{src}", "--size", "16"],
    "batch-shuffle": ["batch", "{src}", "--size", "16", "--shuffle", "--seed", "3"],
    "add-feature": ["add-feature", "{src}", "{extra}"],
    # --y: sequence-level targets from another dataset, and per-timestep labels (N, T)
    "pad --y": ["pad", "{src}", "--maxlen", "40", "--y", "{src}:/y"],
    "pad --y steps": ["pad", "{src}", "--maxlen", "40", "--y", "{src}:/steps"],
    "truncate-split --y steps": ["truncate", "{src}", "--maxlen", "20", "--overflow", "split",
                                 "--y", "{src}:/steps"],
    "batch-shuffle --y steps": ["batch", "{src}", "--size", "16", "--shuffle", "--y",
                                "{src}:/steps"],
    "normalize": ["normalize", "{src}"],
    "partition": ["partition", "{src}", "--fractions", "0.5,0.5", "-o", "{second}"],
    "normalize --y steps": ["normalize", "{src}", "--y", "{src}:/steps"],
    "partition --y steps": ["partition", "{src}", "--fractions", "0.5,0.5", "-o", "{second}",
                            "--y", "{src}:/steps"],
}

#: The dataset each command reads its targets from.
TARGETS = {name: "/steps" if "steps" in name else "/y" for name in COMMANDS}


def write_input(folder: Path, samples: int, target_width: int) -> tuple[str, str]:
    """``in.h5`` with ``x (samples, 50, 4)``, true ``lengths`` and ``y (samples, width)``,
    written a slice at a time (the big variant is larger than the RSS ceiling)."""
    rng = np.random.default_rng(5)
    src, extra = folder / "in.h5", folder / "extra.npy"
    step = 20_000
    with h5py.File(src, "w") as h5:
        x = h5.create_dataset("x", (samples, TIMESTEPS, FEATURES), np.float32)
        y = h5.create_dataset("y", (samples, target_width), np.float32)
        for start in range(0, samples, step):
            stop = min(start + step, samples)
            x[start:stop] = rng.standard_normal((stop - start, TIMESTEPS, FEATURES), np.float32)
            y[start:stop] = rng.standard_normal((stop - start, target_width), np.float32)
        steps = h5.create_dataset("steps", (samples, TIMESTEPS), np.int16)
        for start in range(0, samples, step):
            stop = min(start + step, samples)
            steps[start:stop] = rng.integers(0, 9, (stop - start, TIMESTEPS), np.int16)
        h5["lengths"] = rng.integers(1, TIMESTEPS + 1, samples)
    np.save(extra, np.ones((samples, TIMESTEPS), np.float32))
    return str(src), str(extra)


def argv(name: str, src: str, extra: str, out: Path, budget: int) -> list[str]:
    second = out.with_name(f"second_{out.name}")  # partition's other part
    args = [part.format(src=src, extra=extra, second=second) for part in COMMANDS[name]]
    return [*args, "-o", str(out), "--memory-limit", str(budget), "--no-progress"]


@pytest.fixture(scope="module")
def small_input(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return write_input(tmp_path_factory.mktemp("budget"), SAMPLES, TARGET_WIDTH)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """``(dataset name, bytes)`` of every read of an HDF5 dataset while the test runs."""
    seen: list[tuple[str, int]] = []
    original = h5_module.H5DatasetArray.read_rows

    def spy(self: Any, start: int, stop: int) -> np.ndarray:
        rows: np.ndarray = original(self, start, stop)
        seen.append((str(self.dataset.name), rows.nbytes))
        return rows

    monkeypatch.setattr(h5_module.H5DatasetArray, "read_rows", spy)
    yield seen


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_read_fits_the_budget(name: str, small_input: tuple[str, str], tmp_path: Path,
                                    invoke: Any, reads: list[tuple[str, int]]) -> None:
    src, extra = small_input
    counts = {}
    for budget in (SMALL_BUDGET, LARGE_BUDGET):
        reads.clear()
        result = invoke(*argv(name, src, extra, tmp_path / f"out{budget}.h5", budget))
        assert result.exit_code == 0, result.output
        block = max(budget // BLOCK_SHARE, 1 << 16)
        sample_bytes = TIMESTEPS * FEATURES * 4
        for dataset, size in reads:
            # one block, or one sample when a single sample is larger than a block
            assert size <= max(block, sample_bytes), (dataset, size, budget)
        counts[budget] = {dataset: sum(1 for d, _ in reads if d == dataset)
                          for dataset in ("/x", TARGETS[name])}
    # x and y are both 1.6 MB: 25+ blocks of 64 KiB each under the small budget; x is read in
    # a few pieces under the large one -- a command that ignored --memory-limit would read it in
    # as many pieces under both (y of a batch output is read a batch at a time under both).
    # Per-timestep labels (200 KB of int16) are read in 3+ blocks, and in fewer under the
    # large budget unless the command reads them batch by batch.
    target = TARGETS[name]
    assert counts[SMALL_BUDGET]["/x"] >= 20, counts
    assert counts[SMALL_BUDGET][target] >= (3 if target == "/steps" else 20), counts
    assert counts[SMALL_BUDGET]["/x"] > 2 * counts[LARGE_BUDGET]["/x"], counts
    if target == "/steps" and "batch" not in name:
        assert counts[SMALL_BUDGET][target] > 2 * counts[LARGE_BUDGET][target], counts


@pytest.mark.parametrize("name", sorted(n for n in COMMANDS if TARGETS[n] == "/y"))
def test_targets_follow_the_samples(name: str, small_input: tuple[str, str], tmp_path: Path,
                                    invoke: Any) -> None:
    """Streamed y equals y[order] / y[source_index]: the blocks are put back together right."""
    src, extra = small_input
    out = tmp_path / "out.h5"
    assert invoke(*argv(name, src, extra, out, SMALL_BUDGET)).exit_code == 0
    with h5py.File(src) as h5:  # (per-timestep labels: tests/test_targets.py)
        y = h5[TARGETS[name]][:]
    with h5py.File(out) as h5:
        if "order" in h5:
            order = h5["order"][:]
            keys = sorted(k for k in h5 if k.startswith("y_"))  # batches; partition: y
            got = np.concatenate([h5[k][:] for k in keys]) if keys else h5["y"][:]
            expected = y[np.maximum(order, 0)]
        else:
            got = h5["y"][:]
            index = h5["source_index"][:] if "source_index" in h5 else np.arange(len(y))
            expected = y[index]
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------------------------
# Peak memory of a real process

#: 300 MB of x and 160 MB of y: y alone is above the ceiling
BIG_SAMPLES, BIG_TARGET_WIDTH = 375_000, 107
RSS_CEILING_MB = 150


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return write_input(tmp_path_factory.mktemp("budget_big"), BIG_SAMPLES, BIG_TARGET_WIDTH)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_peak_rss_stays_under_the_budget(name: str, big_input: tuple[str, str],
                                         tmp_path: Path) -> None:
    src, extra = big_input
    out = tmp_path / "out.h5"
    args = argv(name, src, extra, out, 16 * 2**20)
    if name.startswith("batch"):
        # batches of 512: the manifest lists every batch's arrays (~8 KB of Python objects per
        # batch while it is written), which is not what this test measures
        args[args.index("--size") + 1] = "512"
    code, peak_mb, stderr = peak_rss(*args)
    assert code == 0, stderr
    assert peak_mb < RSS_CEILING_MB, f"{name}: peak RSS {peak_mb} MB"
    manifest = json.loads(Path(f"{out}.json").read_text())
    dtype = "int16" if TARGETS[name] == "/steps" else "float32"
    assert manifest["outputs"]["y" if "batch" not in name else "y_000000"]["dtype"] == dtype
