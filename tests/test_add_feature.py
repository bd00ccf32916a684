"""add-feature: equal to np.concatenate / np.repeat references for dense, 2-D, static and ragged
extras; fill on the padding side; names that grow and carry forward; int+float promotion;
mismatches as one line naming both shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import RAGGED_LAYOUTS, random_sequences, run_lstmshape, write_ragged
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmshape.ops.add_feature import add_feature
from lstmshape.sequences import SequenceSet


def error_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return str(lines[0])


def manifest_of(path: Path) -> dict[str, Any]:
    return dict(json.loads(Path(f"{path}.json").read_text()))


def read_values(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as saved:
        return saved["values"], saved["lengths"]


@pytest.fixture
def dense(tmp_path: Path) -> tuple[Path, np.ndarray]:
    base = np.random.default_rng(0).normal(size=(6, 5, 2)).astype("float32")
    np.save(tmp_path / "base.npy", base)
    return tmp_path / "base.npy", base


def test_dense_and_two_d_extras_equal_concatenate(tmp_path: Path, invoke: Any,
                                                  dense: tuple[Path, np.ndarray]) -> None:
    path, base = dense
    three = np.random.default_rng(1).normal(size=(6, 5, 3)).astype("float32")
    two = np.arange(30, dtype=np.float32).reshape(6, 5)
    np.save(tmp_path / "three.npy", three)
    np.save(tmp_path / "two.npy", two)
    out = tmp_path / "out.npy"
    result = invoke("add-feature", path, tmp_path / "three.npy", tmp_path / "two.npy", "-o", out)
    assert result.exit_code == 0, result.output
    expected = np.concatenate([base, three, two[:, :, None]], axis=2)
    np.testing.assert_array_equal(np.load(out), expected)
    manifest = manifest_of(out)
    assert manifest["input_shape"] == [5, 6]
    assert manifest["feature_names"] == [f"f{i}" for i in range(6)]
    assert manifest["dtype_promotion"] is None
    assert [a["mode"] for a in manifest["added_features"]] == ["rows", "rows"]


@pytest.mark.parametrize("shape", [(6,), (6, 3)])
def test_static_extras_equal_repeat(tmp_path: Path, invoke: Any, dense: tuple[Path, np.ndarray],
                                    shape: tuple[int, ...]) -> None:
    path, base = dense
    static = np.random.default_rng(2).normal(size=shape).astype("float32")
    np.save(tmp_path / "static.npy", static)
    out = tmp_path / "out.npz"
    names = [f"s{i}" for i in range(static.reshape(6, -1).shape[1])]
    result = invoke("add-feature", path, tmp_path / "static.npy", "--static",
                    *[a for n in names for a in ("--name", n)], "-o", out)
    assert result.exit_code == 0, result.output
    repeated = np.repeat(static.reshape(6, 1, -1), 5, axis=1)
    with np.load(out) as saved:
        np.testing.assert_array_equal(saved["x"], np.concatenate([base, repeated], axis=2))
        assert saved["lengths"].tolist() == [5] * 6
    assert manifest_of(out)["feature_names"] == ["f0", "f1", *names]


@pytest.mark.parametrize("layout", RAGGED_LAYOUTS)
def test_ragged_base_and_extras(tmp_path: Path, invoke: Any, layout: str) -> None:
    rng = np.random.default_rng(3)
    features = 1 if layout == "h5-vlen" else 2
    seqs = random_sequences(rng, 7, 9, features, dtype="int32")
    extra = [rng.integers(0, 9, size=(len(s), features)).astype("int32") for s in seqs]
    static = rng.integers(0, 5, size=(7, 2)).astype("int32")
    src = write_ragged(tmp_path, layout, seqs, name="base")
    extra_src = write_ragged(tmp_path, "npz-lengths", extra, name="extra")
    np.save(tmp_path / "static.npy", static)
    out = tmp_path / "out.npz"
    result = invoke("add-feature", src, extra_src, "-o", out)
    assert result.exit_code == 0, result.output
    values, lengths = read_values(out)
    np.testing.assert_array_equal(values, np.concatenate(
        [np.concatenate(seqs), np.concatenate(extra)], axis=1))
    assert lengths.tolist() == [len(s) for s in seqs]
    assert manifest_of(out)["input_shape"] == [None, 2 * features]
    result = invoke("add-feature", src, tmp_path / "static.npy", "--static", "-o", out)
    assert result.exit_code == 0, result.output
    values, _ = read_values(out)
    expected = np.concatenate([np.concatenate(seqs),
                               np.repeat(static, [len(s) for s in seqs], axis=0)], axis=1)
    np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize("padding", ["pre", "post"])
def test_shorter_extra_is_filled_on_the_padding_side(tmp_path: Path, invoke: Any,
                                                     dense: tuple[Path, np.ndarray],
                                                     padding: str) -> None:
    path, base = dense
    short = np.ones((6, 3, 1), np.float32)
    np.save(tmp_path / "short.npy", short)
    out = tmp_path / "out.h5"
    result = invoke("add-feature", path, tmp_path / "short.npy", "--fill", "nan", "--padding",
                    padding, "-o", out)
    assert result.exit_code == 0, result.output
    filled = np.full((6, 5, 1), np.nan, np.float32)
    if padding == "post":
        filled[:, :3] = short
    else:
        filled[:, 2:] = short
    with h5py.File(out) as saved:
        np.testing.assert_array_equal(saved["x"][()], np.concatenate([base, filled], axis=2))
    assert manifest_of(out)["params"]["fill"] == "nan"


def test_names_grow_and_carry_forward(tmp_path: Path, invoke: Any,
                                      dense: tuple[Path, np.ndarray]) -> None:
    path, _ = dense
    np.save(tmp_path / "temp.npy", np.zeros((6, 5)))
    np.save(tmp_path / "age.npy", np.arange(6))
    first = tmp_path / "one.npy"
    assert invoke("add-feature", path, tmp_path / "temp.npy", "--name", "temp", "-o",
                  first).exit_code == 0
    padded = tmp_path / "padded.npy"
    assert invoke("truncate", first, "--maxlen", 4, "-o", padded).exit_code == 0
    second = tmp_path / "two.npz"
    result = invoke("add-feature", padded, tmp_path / "age.npy", "--static", "--name", "age",
                    "-o", second)
    assert result.exit_code == 0, result.output
    manifest = manifest_of(second)
    assert manifest["feature_names"] == ["f0", "f1", "temp", "age"]
    assert [step["command"] for step in manifest["history"]] == ["add-feature", "truncate"]
    # an extra from an earlier step brings its own names; a clash is refused
    clash = invoke("add-feature", first, first, "-o", tmp_path / "clash.npy")
    assert clash.exit_code == 1 and "'f0' appears twice" in error_line(clash)
    count = invoke("add-feature", path, tmp_path / "temp.npy", "--name", "a", "--name", "b",
                   "-o", tmp_path / "n.npy")
    assert count.exit_code == 1 and "2 --name for 1 added feature" in error_line(count)


def test_int_and_float_promote_to_float_and_say_so(tmp_path: Path, invoke: Any,
                                                   dense: tuple[Path, np.ndarray]) -> None:
    path, base = dense
    ints = np.arange(30, dtype=np.int64).reshape(6, 5, 1)
    np.save(tmp_path / "ints.npy", ints)
    out = tmp_path / "out.npy"
    result = invoke("add-feature", path, tmp_path / "ints.npy", "-o", out)
    assert result.exit_code == 0, result.output
    saved = np.load(out)
    assert saved.dtype == np.float32
    np.testing.assert_array_equal(saved, np.concatenate([base, ints.astype(np.float32)], axis=2))
    manifest = manifest_of(out)
    assert manifest["dtype_promotion"]["to"] == "float32"
    assert sorted(manifest["dtype_promotion"]["from"].values()) == ["float32", "int64"]
    # ints stay ints when every input is an int
    np.save(tmp_path / "small.npy", np.ones((6, 5), np.int8))
    assert invoke("add-feature", tmp_path / "ints.npy", tmp_path / "small.npy", "-o",
                  out).exit_code == 0
    assert np.load(out).dtype == np.int64 and manifest_of(out)["dtype_promotion"] is None


def test_padded_base_keeps_its_lengths_and_pad_value(tmp_path: Path, invoke: Any) -> None:
    seqs = [np.full((n, 1), n, np.float32) for n in (3, 1, 4)]
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    assert invoke("pad", src, "--value", -1, "--padding", "pre", "-o",
                  tmp_path / "p.npy").exit_code == 0
    np.save(tmp_path / "e.npy", np.full((3, 4), 7.0, np.float32))
    out = tmp_path / "out.npy"
    result = invoke("add-feature", tmp_path / "p.npy", tmp_path / "e.npy", "-o", out)
    assert result.exit_code == 0, result.output
    saved = np.load(out)
    assert saved[:, :, 1].tolist() == [[-1, 7, 7, 7], [-1, -1, -1, 7], [7, 7, 7, 7]]
    assert saved[:, :, 0].tolist() == [[-1, 3, 3, 3], [-1, -1, -1, 1], [4, 4, 4, 4]]
    assert np.load(tmp_path / "out.npy.lengths.npy").tolist() == [3, 1, 4]
    assert manifest_of(out)["padding"] == {"side": "pre", "value": -1}


def test_mismatches_name_both_shapes(tmp_path: Path, invoke: Any,
                                     dense: tuple[Path, np.ndarray]) -> None:
    path, _ = dense
    np.save(tmp_path / "n.npy", np.zeros((4, 5)))
    np.save(tmp_path / "t.npy", np.zeros((6, 9, 1)))
    cases = [("n.npy", [], "(4, 5)", "4 samples vs 6"), ("t.npy", [], "(6, 9, 1)", "9 timesteps"),
             ("t.npy", ["--static"], "(6, 9, 1)", "--static")]
    for name, flags, shape, why in cases:
        result = invoke("add-feature", path, tmp_path / name, *flags, "-o", tmp_path / "o.npy")
        assert result.exit_code == 1
        line = error_line(result)
        assert shape in line and why in line, line
        if why != "--static":
            assert "(6, 5, 2)" in line, line
    seqs = random_sequences(np.random.default_rng(4), 5, 8, 1, min_length=1)
    other = [s[:-1] if i == 2 else s for i, s in enumerate(seqs)]
    src = write_ragged(tmp_path, "npz-lengths", seqs, name="a")
    bad = write_ragged(tmp_path, "h5-lengths", other, name="b")
    result = invoke("add-feature", src, bad, "-o", tmp_path / "o.npz")
    assert result.exit_code == 1
    line = error_line(result)
    assert "sequence 2 has" in line and "b.h5" in line and "a.npz" in line
    assert not (tmp_path / "o.npz").exists() and not (tmp_path / "o.npy").exists()


def test_mismatch_in_a_real_process(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((3, 4, 2)))
    np.save(tmp_path / "b.npy", np.zeros((2, 4)))
    done = run_lstmshape("add-feature", tmp_path / "a.npy", tmp_path / "b.npy", "-o",
                         tmp_path / "c.npy")
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "(2, 4)" in lines[0] and "(3, 4, 2)" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "b.npy"]


def test_streams_in_blocks_within_the_memory_limit(tmp_path: Path, invoke: Any) -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=(3000, 40, 2)).astype("float32")
    extra = rng.normal(size=(3000, 40)).astype("float32")
    static = rng.normal(size=(3000, 2)).astype("float32")
    for name, array in (("b.npy", base), ("e.npy", extra), ("s.npy", static)):
        np.save(tmp_path / name, array)
    out = tmp_path / "o.npy"
    result = invoke("add-feature", tmp_path / "b.npy", tmp_path / "e.npy", "--memory-limit",
                    "1MiB", "-o", out)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(out), np.concatenate([base, extra[..., None]], axis=2))
    result = invoke("add-feature", out, tmp_path / "s.npy", "--static", "--memory-limit",
                    "1MiB", "-o", tmp_path / "o2.npy")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "o2.npy")[:, :, 3:],
                                  np.repeat(static[:, None, :], 40, axis=1))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 6), t=st.integers(1, 6), f=st.integers(1, 3), k=st.integers(1, 3),
       short=st.integers(0, 3), static=st.booleans(), seed=st.integers(0, 99))
def test_library_matches_the_numpy_reference(n: int, t: int, f: int, k: int, short: int,
                                             static: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, t, f))
    if static:
        extra = rng.integers(0, 9, size=(n, k))
        reference = np.repeat(extra[:, None, :], t, axis=1)
    else:
        have = max(t - short, 1)
        extra = rng.integers(0, 9, size=(n, have, k))
        reference = np.concatenate([extra, np.full((n, t - have, k), -5)], axis=1)
    got = add_feature(base, extra, static=static, fill=-5)
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, np.concatenate([base, reference], axis=2))
    lengths = rng.integers(0, t + 1, size=n)
    seqs = SequenceSet.from_dense(base, lengths)
    ragged = add_feature(seqs, SequenceSet.from_dense(reference, lengths))
    assert isinstance(ragged, SequenceSet)
    np.testing.assert_array_equal(ragged.values, SequenceSet.from_dense(
        np.concatenate([base, reference], axis=2), lengths).values)


def test_int_with_float16_promotes_to_float32_and_inexact_ints_are_refused(
        invoke: Any, tmp_path: Path) -> None:
    np.save(tmp_path / "ids.npy", np.array([[[70000], [1]], [[2], [100000]]], np.int32))
    np.save(tmp_path / "h.npy", np.zeros((2, 2, 1), np.float16))
    result = invoke("add-feature", tmp_path / "ids.npy", tmp_path / "h.npy",
                    "-o", tmp_path / "af.npy")
    assert result.exit_code == 0
    merged = np.load(tmp_path / "af.npy")
    assert merged.dtype == np.float32
    assert merged[..., 0].tolist() == [[70000, 1], [2, 100000]]  # no inf
    np.save(tmp_path / "big.npy", np.array([[[16_777_217], [1]]], np.int64))
    np.save(tmp_path / "f.npy", np.zeros((1, 2, 1), np.float32))
    result = invoke("add-feature", tmp_path / "big.npy", tmp_path / "f.npy",
                    "-o", tmp_path / "af2.npy")
    assert result.exit_code == 1 and "16777217 cannot be stored exactly" in result.output
    assert not (tmp_path / "af2.npy").exists()
