"""Reading every input layout and writing every output format, through real files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import RAGGED_LAYOUTS, files_in, random_sequences, run_lstmshape, write_ragged

from lstmshape.errors import InputError
from lstmshape.io.location import Location, parse_location
from lstmshape.io.source import open_source
from lstmshape.sequences import SequenceSet


@pytest.mark.parametrize("layout", RAGGED_LAYOUTS)
def test_every_ragged_layout_reads_back_the_sequences(tmp_path: Path, rng: np.random.Generator,
                                                      layout: str) -> None:
    features = 1 if layout == "h5-vlen" else 3
    seqs = random_sequences(rng, 12, 9, features, "float64")
    with open_source(write_ragged(tmp_path, layout, seqs)) as source:
        assert source.kind == "ragged"
        assert source.n_samples == 12 and source.n_features == features
        assert source.lengths.tolist() == [len(s) for s in seqs]
        read = source.read()
    for got, expected in zip(read.to_list(), seqs, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_savez_sequences_are_taken_in_natural_order(tmp_path: Path) -> None:
    seqs = [np.full((i + 1, 1), i, np.int32) for i in range(12)]  # arr_2 must precede arr_10
    with open_source(write_ragged(tmp_path, "npz-savez", seqs)) as source:
        assert source.lengths.tolist() == list(range(1, 13))
        assert source.read().sequence(10)[0, 0] == 10


def test_two_d_input_gains_a_feature_axis(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.arange(12, dtype=np.int16).reshape(3, 4))
    with open_source(str(tmp_path / "t.npy")) as source:
        assert (source.n_samples, source.timesteps, source.n_features) == (3, 4, 1)
        assert source.read().values.shape == (12, 1)


@pytest.mark.parametrize("text,expected", [
    ("a.h5:/g/ds", Location("a.h5", "/g/ds")),
    ("dir.v2/a.npz:x", Location("dir.v2/a.npz", "x")),
    ("a.npy", Location("a.npy")),
    ("-", Location("-")),
    ("A.HDF5:/x", Location("A.HDF5", "/x")),
])
def test_parse_location(text: str, expected: Location) -> None:
    assert parse_location(text) == expected


def test_container_key_selection_and_unknown_key(tmp_path: Path, invoke: Any) -> None:
    path = tmp_path / "multi.npz"
    np.savez(path, a=np.zeros((2, 3, 1)), b=np.ones((4, 5)))
    with open_source(f"{path}:b") as source:
        assert (source.n_samples, source.timesteps) == (4, 5)
    with pytest.raises(InputError, match="keys found: a, b"):
        open_source(str(path))
    result = invoke("pad", f"{path}:zzz", "-o", tmp_path / "o.npy")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "'zzz'" in result.output
    assert "a, b" in result.output


def test_h5_dataset_key_and_group_listing(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as h5:
        h5["raw/sensors"] = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
        h5["raw/labels"] = np.zeros(2)
    with open_source(f"{path}:/raw/sensors") as source:
        assert source.read().values.shape == (8, 3)
    with pytest.raises(InputError, match="/raw/labels, /raw/sensors"):
        open_source(str(path))


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])
def test_pad_output_round_trips_through_every_format(tmp_path: Path, invoke: Any,
                                                     rng: np.random.Generator,
                                                     suffix: str) -> None:
    seqs = random_sequences(rng, 10, 7, 2, "float32", min_length=1)
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    out = tmp_path / f"padded{suffix}"
    assert invoke("pad", src, "--padding", "pre", "-o", out).exit_code == 0
    # reading the output back recovers the very same sequences (true lengths + padding side)
    with open_source(str(out)) as source:
        assert source.kind == "dense" and source.side == "pre"
        assert source.lengths.tolist() == [len(s) for s in seqs]
        for got, expected in zip(source.read().to_list(), seqs, strict=True):
            np.testing.assert_array_equal(got, expected)


def test_ragged_result_to_npy_is_refused(tmp_path: Path, invoke: Any) -> None:
    src = write_ragged(tmp_path, "npz-lengths", [np.ones((3, 1)), np.ones((5, 1))])
    result = invoke("truncate", src, "--maxlen", 4, "-o", tmp_path / "cut.npy")
    assert result.exit_code == 1
    assert "ragged" in result.output and "pad it first" in result.output
    assert files_in(tmp_path) == ["seqs.npz"]


def test_stdin_to_stdout_pipeline(tmp_path: Path) -> None:
    x = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    src = tmp_path / "x.npy"
    np.save(src, x)
    done = run_lstmshape("pad", "-", "--maxlen", 5, "-o", "-", input=src.read_bytes())
    assert done.returncode == 0, done.stderr
    import io

    padded = np.load(io.BytesIO(done.stdout))
    assert padded.shape == (2, 5, 1)
    np.testing.assert_array_equal(padded[:, :3, 0], x)
    assert done.stderr == b""  # quiet when piped


def test_stdout_output_never_drops_targets_silently(tmp_path: Path) -> None:
    """-o - holds x alone: targets named with --y are refused before a byte is written; a y
    that came inside the input is dropped with a warning."""
    np.save(tmp_path / "x.npy", np.ones((3, 4, 2), np.float32))
    np.save(tmp_path / "y.npy", np.arange(3))
    np.savez(tmp_path / "xy.npz", x=np.ones((3, 4, 2), np.float32), y=np.arange(3))
    named = run_lstmshape("pad", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "-o", "-")
    assert named.returncode == 1 and named.stdout == b""
    assert named.stderr.decode().startswith("Error: -o - writes the tensor alone")
    assert "--y" in named.stderr.decode() and named.stderr.count(b"\n") == 1
    series = tmp_path / "series.npy"
    np.save(series, np.arange(30, dtype=np.float32).reshape(10, 3))
    window = run_lstmshape("window", series, "--timesteps", 3, "--target", 0, "-o", "-")
    assert window.returncode == 1 and window.stdout == b""
    assert "--target '0' would be lost" in window.stderr.decode()
    inside = run_lstmshape("pad", tmp_path / "xy.npz", "-o", "-")
    assert inside.returncode == 0
    warning = inside.stderr.decode()
    assert warning.startswith("Warning: ") and "targets (y)" in warning
    import io

    assert np.load(io.BytesIO(inside.stdout)).shape == (3, 4, 2)


def test_allow_pickle_reads_object_array_of_sequences(tmp_path: Path, invoke: Any) -> None:
    seqs = np.empty(3, dtype=object)
    seqs[:] = [np.ones(2), np.ones(5), np.ones(1)]
    src = tmp_path / "obj.npy"
    np.save(src, seqs, allow_pickle=True)
    refused = invoke("pad", src, "-o", tmp_path / "o.npy")
    assert refused.exit_code == 1 and "--allow-pickle" in refused.output
    assert invoke("pad", src, "--allow-pickle", "-o", tmp_path / "o.npy").exit_code == 0
    assert np.load(tmp_path / "o.npy").shape == (3, 5, 1)


def test_lengths_option_gives_a_dense_input_its_true_lengths(tmp_path: Path,
                                                            invoke: Any) -> None:
    x = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "len.npy", np.array([4, 2, 1]))
    out = tmp_path / "o.npz"
    result = invoke("pad", tmp_path / "x.npy", "--lengths", tmp_path / "len.npy",
                    "--padding", "pre", "-o", out)
    assert result.exit_code == 0, result.output
    padded = np.load(out)["x"][:, :, 0]
    assert padded.tolist() == [[1, 2, 3, 4], [0, 0, 5, 6], [0, 0, 0, 9]]
    bad = invoke("pad", tmp_path / "x.npy", "--lengths", tmp_path / "x.npy", "-o", out)
    assert bad.exit_code == 1 and "lengths" in bad.output


def test_sequence_set_round_trip_dense() -> None:
    x = np.arange(24).reshape(2, 4, 3)
    seqs = SequenceSet.from_dense(x, lengths=[4, 2], side="pre")
    assert seqs.values.tolist() == x[0].tolist() + x[1, 2:].tolist()
    assert SequenceSet.from_dense(x).values.base is not None  # a view, no copy


def test_manifest_paths_are_relative_to_manifest_folder(tmp_path: Path, invoke: Any) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    np.save(tmp_path / "in" / "x.npy", np.zeros((2, 3), np.float32))
    result = invoke("pad", tmp_path / "in" / "x.npy", "-o", tmp_path / "out" / "y.npy",
                    "--manifest", tmp_path / "m.json")
    assert result.exit_code == 0
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert manifest["inputs"][0]["path"] == "in/x.npy"
    assert manifest["outputs"]["x"]["path"] == "out/y.npy"
    assert manifest["outputs"]["lengths"]["path"] == "out/y.npy.lengths.npy"


def test_h5_root_of_unrelated_arrays_is_not_a_sequence_set(tmp_path: Path) -> None:
    path = tmp_path / "tt.h5"
    with h5py.File(path, "w") as h5:
        h5["train"] = np.ones((10, 5), np.int32)
        h5["test"] = np.ones((2, 5), np.int32)
    with pytest.raises(InputError, match="keys found: /test, /train"):
        open_source(str(path))
    numbered = tmp_path / "seqs.h5"
    with h5py.File(numbered, "w") as h5:
        for i in range(3):
            h5[f"s{i}"] = np.ones((i + 1, 2))
    with open_source(str(numbered)) as source:  # s0, s1, s2: one numbered set
        assert source.lengths.tolist() == [1, 2, 3]


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_container_keeps_its_padding_side_without_a_manifest(tmp_path: Path, invoke: Any,
                                                             suffix: str) -> None:
    src = write_ragged(tmp_path, "npz-lengths", [np.array([[1.0], [2.0], [3.0]]),
                                                 np.array([[4.0]])])
    padded = tmp_path / f"pre{suffix}"
    assert invoke("pad", src, "--padding", "pre", "--no-manifest", "-o", padded).exit_code == 0
    again = tmp_path / "post.npy"
    assert invoke("pad", padded, "--maxlen", 3, "--no-manifest", "-o", again).exit_code == 0
    assert np.load(again)[:, :, 0].tolist() == [[1, 2, 3], [4, 0, 0]]  # the 4 is not lost


def test_unrelated_arrays_under_one_group_still_need_a_key(tmp_path: Path) -> None:
    path = tmp_path / "grp.h5"
    with h5py.File(path, "w") as h5:
        h5["data/train"] = np.ones((5, 4))
        h5["data/test"] = np.ones((3, 4))
    with pytest.raises(InputError, match="pick one"):
        open_source(str(path))
    with open_source(f"{path}:/data") as source:  # asked for by name: a group of sequences
        assert source.lengths.tolist() == [3, 5]


@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 2), (2, 3, 4), (1, 0, 7)])
@pytest.mark.parametrize("dtype", ["<f4", ">i8", "|u1", "|b1", "<f2", "<U3"])
@pytest.mark.parametrize("fortran", [False, True])
def test_the_fast_header_parse_equals_the_literal_one(shape: tuple[int, ...], dtype: str,
                                                      fortran: bool) -> None:
    """numpy's own headers skip ast.literal_eval; what they mean must not change."""
    import ast
    import io

    from lstmshape.io.npy import NUMPY_HEADER, parse_header_dict

    array = np.zeros(shape, dtype=dtype, order="F" if fortran else "C")
    buffer = io.BytesIO()
    np.save(buffer, array)
    raw = buffer.getvalue()
    header = raw[10:10 + int.from_bytes(raw[8:10], "little")]
    assert NUMPY_HEADER.fullmatch(header.decode())  # the fast path is taken
    fields = ast.literal_eval(header.decode())
    assert parse_header_dict(header, (1, 0), "x.npy") == (
        fields["shape"], fields["fortran_order"], np.dtype(fields["descr"]))
