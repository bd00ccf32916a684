"""Block-by-block (streaming) runs give the very bytes of one-block runs, for every format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import random_sequences, write_ragged

from lstmshape.commands.pad import pad_file
from lstmshape.commands.truncate import truncate_file
from lstmshape.io.source import open_source
from lstmshape.job import IOOptions

#: a budget small enough that ~1 MB inputs span 10+ blocks (the library takes any budget)
SMALL = 64 * 1024 * 6
LARGE = 10**9


def make_inputs(folder: Path, rng: np.random.Generator) -> dict[str, str]:
    seqs = random_sequences(rng, 3000, 60, 4, "float32")
    dense = rng.standard_normal((1500, 40, 4)).astype(np.float32)
    np.save(folder / "dense.npy", dense)
    with h5py.File(folder / "dense.h5", "w") as h5:
        h5.create_dataset("x", data=dense, chunks=(64, 40, 4))
    return {
        "dense.npy": str(folder / "dense.npy"),
        "dense.h5": str(folder / "dense.h5"),
        "ragged.h5": write_ragged(folder, "h5-lengths", seqs, "ragged"),
        "ragged.npz": write_ragged(folder, "npz-lengths", seqs, "ragged"),
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_inputs(tmp_path_factory.mktemp("streaming"), np.random.default_rng(7))


def run_both(tmp_path: Path, command: Any, src: str, suffix: str, **kwargs: Any) -> None:
    outputs = []
    for name, limit in (("small", SMALL), ("large", LARGE)):
        out = tmp_path / f"{name}{suffix}"
        command(src, IOOptions(str(out), memory_limit=limit), **kwargs)
        outputs.append(out)
    small, large = outputs
    assert small.read_bytes() == large.read_bytes()
    for extra in (".lengths.npy",):
        if Path(f"{large}{extra}").exists():
            assert Path(f"{small}{extra}").read_bytes() == Path(f"{large}{extra}").read_bytes()


@pytest.mark.parametrize("name", ["dense.npy", "dense.h5", "ragged.h5", "ragged.npz"])
@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])
def test_pad_streams_identically(tmp_path: Path, inputs: dict[str, str], name: str,
                                 suffix: str) -> None:
    run_both(tmp_path, pad_file, inputs[name], suffix, maxlen="p95", padding="pre",
             truncating="pre", value=-1.0)


@pytest.mark.parametrize("name", ["dense.npy", "ragged.h5", "ragged.npz"])
@pytest.mark.parametrize("overflow", ["drop", "split"])
def test_truncate_streams_identically(tmp_path: Path, inputs: dict[str, str], name: str,
                                      overflow: str) -> None:
    suffix = ".npy" if name.startswith("dense") else ".npz"
    run_both(tmp_path, truncate_file, inputs[name], suffix, maxlen=25, truncating="post",
             overflow=overflow)


def test_small_budget_really_spans_many_blocks(inputs: dict[str, str]) -> None:
    for name in ("dense.npy", "ragged.h5"):
        with open_source(inputs[name]) as source:
            assert len(source.block_bounds(SMALL // 6)) >= 10


def test_blocks_cover_every_sample_once(inputs: dict[str, str]) -> None:
    with open_source(inputs["ragged.npz"]) as source:
        bounds = source.block_bounds(50_000, extra_per_sample=1000)
        starts = [start for start, _ in bounds]
        stops = [stop for _, stop in bounds]
        assert starts[0] == 0 and stops[-1] == source.n_samples
        assert starts[1:] == stops[:-1]
        joined = np.concatenate([source.read_block(a, b).values for a, b in bounds])
        np.testing.assert_array_equal(joined, source.read().values)
