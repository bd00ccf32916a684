"""A long table's ``ids`` output in every format, read back and carried through later steps.

String ids are fixed-width unicode in ``.npy``/``.npz``/``.zarr`` and fixed-length UTF-8 in
``.h5`` (HDF5 has no UCS-4 strings); every reader accepts text for the ``ids`` role only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import Result

import lstmshape
from lstmshape.io.source import open_source

SUFFIXES = [".npy", ".npz", ".h5", ".zarr"]
#: first-appearance order of the table below; "é" and "日本" are more bytes than characters
IDS = ["bb", "é", "a", "日本"]
LENGTHS = [3, 1, 4, 2]


def string_id_table(folder: Path) -> Path:
    path = folder / "events.csv"
    lines = ["user,ts,a,b"]
    for user, length in zip(IDS, LENGTHS, strict=True):
        lines += [f"{user},{t},{t + 0.5},{-t}" for t in range(length)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ids_of(path: Path) -> list[str]:
    """The ids as lstmshape's reader hands them to the next step."""
    source = open_source(str(path))
    try:
        assert source.ids is not None, f"{path} has no ids"
        return [str(i) for i in source.ids]
    finally:
        source.close()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_string_ids_read_back_and_verify(suffix: str, tmp_path: Path,
                                         invoke: Callable[..., Result]) -> None:
    out = tmp_path / f"out{suffix}"
    done = invoke("pad", string_id_table(tmp_path), "--id", "user", "--time", "ts", "-o", out)
    assert done.exit_code == 0, done.output
    assert "Warning" not in done.output  # zarr's "no v3 specification" warning is not ours
    assert ids_of(out) == IDS
    for command in (["inspect", out], ["verify", out, "--no-model", "-q"]):
        result = invoke(*command)
        assert result.exit_code == 0, result.output
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["outputs"]["ids"]["shape"] == [len(IDS)]
    if suffix == ".h5":  # UTF-8 strings any HDF5 reader decodes
        with h5py.File(out) as h5:
            assert h5["ids"].asstr()[:].tolist() == IDS


def stored(path: Path, role: str) -> np.ndarray:
    """Array ``role`` of an output, read with the format's own library."""
    if path.suffix == ".npy":
        return np.load(f"{path}.{role}.npy")
    if path.suffix == ".npz":
        with np.load(path) as data:
            return data[role]
    if path.suffix == ".h5":
        with h5py.File(path) as h5:
            return np.asarray(h5[role][()])
    import zarr
    return np.asarray(zarr.open_group(str(path), mode="r")[role][...])


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_ids_follow_a_reordering_of_an_output(suffix: str, tmp_path: Path,
                                              invoke: Callable[..., Result]) -> None:
    """Not only the table: an lstmshape output that is shuffled, split or partitioned again
    hands each sample's id on through ``order`` / ``source_index``."""
    padded = tmp_path / f"padded{suffix}"
    assert invoke("pad", string_id_table(tmp_path), "--id", "user", "--time", "ts",
                  "-o", padded).exit_code == 0
    batched = tmp_path / f"batched{suffix.replace('.npy', '.npz')}"
    assert invoke("batch", padded, "--size", 3, "--shuffle", "--seed", 3, "--remainder", "pad",
                  "-o", batched).exit_code == 0
    rows = [IDS[i] if i >= 0 else "" for i in stored(batched, "order").reshape(-1)]
    assert ids_of(batched) == rows
    assert rows[:len(IDS)] != IDS  # the shuffle did reorder them
    split = tmp_path / f"split{suffix}"
    assert invoke("truncate", padded, "--maxlen", 2, "--overflow", "split",
                  "-o", split).exit_code == 0
    pieces = [IDS[i] for i, n in enumerate(LENGTHS) for _ in range(-(-n // 2))]
    assert ids_of(split) == pieces
    parts = [tmp_path / f"train{suffix}", tmp_path / f"test{suffix}"]
    assert invoke("partition", padded, "--fractions", "0.5,0.5", "--seed", 1,
                  "-o", parts[0], "-o", parts[1]).exit_code == 0
    for part in parts:
        assert ids_of(part) == [IDS[i] for i in stored(part, "order")]
    assert sorted(ids_of(parts[0]) + ids_of(parts[1])) == sorted(IDS)


def test_window_of_an_output_gives_windows_their_ids(tmp_path: Path,
                                                     invoke: Callable[..., Result]) -> None:
    padded = tmp_path / "ragged.npz"
    assert invoke("truncate", string_id_table(tmp_path), "--id", "user", "--time", "ts",
                  "--maxlen", 10, "-o", padded).exit_code == 0
    windows = tmp_path / "w.npz"
    assert invoke("window", padded, "--timesteps", 2, "-o", windows).exit_code == 0
    with np.load(windows) as data:
        expected = [IDS[i] for i in data["source_index"]]
        assert data["ids"].tolist() == expected
    assert expected == ["bb", "bb", "a", "a", "a", "日本"]


def test_text_is_refused_everywhere_but_ids(tmp_path: Path,
                                            invoke: Callable[..., Result]) -> None:
    """The text exception is the ids role's alone: string data or string targets are still
    one error line."""
    data = tmp_path / "words.npz"
    np.savez(data, x=np.zeros((2, 3, 1)), y=np.array(["a", "b"]))
    done = invoke("pad", data, "-o", tmp_path / "o.npy")
    assert done.exit_code == 1 and "words.npz:y: dtype <U1" in done.output
    np.save(tmp_path / "ids.npy", np.array([["a", "b"]]))  # named ids, but not a side file
    done = invoke("pad", tmp_path / "ids.npy", "-o", tmp_path / "o.npy")
    assert done.exit_code == 1 and "dtype <U1 (unicode string) is not supported" in done.output


def test_library_reads_string_ids_of_h5(tmp_path: Path, invoke: Callable[..., Result]) -> None:
    out = tmp_path / "o.h5"
    assert invoke("pad", string_id_table(tmp_path), "--id", "user", "-o", out).exit_code == 0
    again = tmp_path / "again.npz"
    assert invoke("pad", out, "-o", again).exit_code == 0
    with np.load(again) as data:
        assert data["ids"].dtype.kind == "U" and data["ids"].tolist() == IDS
    assert lstmshape.read(str(out)).lengths.tolist() == LENGTHS


def test_window_to_h5_stores_each_windows_string_id(tmp_path: Path,
                                                    invoke: Callable[..., Result]) -> None:
    """window's ids are streamed: they are UTF-8 strings in .h5 like any other command's."""
    out = tmp_path / "w.h5"
    done = invoke("window", string_id_table(tmp_path), "--id", "user", "--time", "ts",
                  "--timesteps", 2, "-o", out)
    assert done.exit_code == 0, done.output
    with h5py.File(out) as h5:
        sources = h5["source_index"][()]
        assert h5["ids"].asstr()[()].tolist() == [IDS[i] for i in sources]
    assert invoke("verify", out, "--no-model", "-q").exit_code == 0
    assert ids_of(out) == [IDS[i] for i in sources]


def test_ids_that_are_not_utf8_are_one_error_line(tmp_path: Path,
                                                  invoke: Callable[..., Result]) -> None:
    src = tmp_path / "b.npz"
    np.savez(src, values=np.zeros((10, 1), np.float32), lengths=[1, 2, 3, 4],
             ids=np.array([b"a", b"b", b"\xff", b"d"]))
    done = invoke("pad", src, "-o", tmp_path / "o.npz")
    assert done.exit_code == 1
    assert done.output == f"Error: {src}:ids: holds bytes that are not UTF-8 text; store the " \
                          f"ids as text or integers\n"
