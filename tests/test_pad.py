"""``pad`` equals ``keras.utils.pad_sequences`` on every input layout, option and dtype."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import RAGGED_LAYOUTS, files_in, random_sequences, write_ragged
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmshape import pad
from lstmshape.errors import InputError, OptionError
from lstmshape.sequences import SequenceSet

SIDES = ("pre", "post")


def keras_pad(keras: Any, seqs: list[np.ndarray], **kwargs: Any) -> np.ndarray:
    return np.asarray(keras.utils.pad_sequences(seqs, **kwargs))


@pytest.mark.parametrize("dtype", ["float32", "int32"])
@pytest.mark.parametrize("padding", SIDES)
@pytest.mark.parametrize("truncating", SIDES)
def test_library_pad_equals_keras(keras: Any, rng: np.random.Generator, dtype: str,
                                  padding: str, truncating: str) -> None:
    # lengths 0..12 around maxlens 1, 5, 11, 20: longer, shorter and empty sequences
    seqs = random_sequences(rng, 40, 12, 3, dtype)
    for maxlen in (1, 5, 11, 20):
        ours = pad(seqs, maxlen=maxlen, padding=padding, truncating=truncating,  # type: ignore[arg-type]
                   value=-7).tensor
        reference = keras_pad(keras, seqs, maxlen=maxlen, dtype=dtype, padding=padding,
                              truncating=truncating, value=-7)
        assert ours.dtype == reference.dtype
        np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("layout", RAGGED_LAYOUTS)
@pytest.mark.parametrize("padding,truncating", [("pre", "pre"), ("pre", "post"),
                                                ("post", "pre"), ("post", "post")])
def test_cli_pad_equals_keras_on_every_layout(keras: Any, invoke: Any, tmp_path: Path,
                                              rng: np.random.Generator, layout: str,
                                              padding: str, truncating: str) -> None:
    features = 1 if layout == "h5-vlen" else 2
    seqs = random_sequences(rng, 25, 15, features, "float32", min_length=0)
    seqs[3] = seqs[3][:0]  # an empty sequence
    src = write_ragged(tmp_path, layout, seqs)
    out = tmp_path / "out.npy"
    result = invoke("pad", src, "--maxlen", 8, "--padding", padding, "--truncating", truncating,
                    "--value", "nan", "-o", out)
    assert result.exit_code == 0, result.output
    reference = keras_pad(keras, seqs, maxlen=8, dtype="float32", padding=padding,
                          truncating=truncating, value=float("nan"))
    np.testing.assert_array_equal(np.load(out), reference)  # NaN compare equal here
    lengths = np.load(str(out) + ".lengths.npy")
    assert lengths.tolist() == [min(len(s), 8) for s in seqs]


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])
def test_pad_dense_int_tokens_keeps_dtype(keras: Any, invoke: Any, tmp_path: Path,
                                          suffix: str) -> None:
    tokens = np.arange(1, 61, dtype=np.int32).reshape(6, 10)
    tokens[2, 4:] = 0
    src = tmp_path / "tokens.npy"
    np.save(src, tokens)
    out = tmp_path / f"padded{suffix}"
    assert invoke("pad", src, "--maxlen", 12, "--padding", "pre", "-o", out).exit_code == 0
    expected = keras_pad(keras, list(tokens), maxlen=12, dtype="int32", padding="pre")[..., None]
    if suffix == ".npy":
        x = np.load(out)
    elif suffix == ".npz":
        x = np.load(out)["x"]
        assert np.load(out)["lengths"].tolist() == [10] * 6
    else:
        import h5py

        with h5py.File(out) as h5:
            x = h5["x"][()]
            assert h5["lengths"][()].tolist() == [10] * 6
    assert x.dtype == np.int32
    np.testing.assert_array_equal(x, expected)


def test_maxlen_percentile_and_max(invoke: Any, tmp_path: Path) -> None:
    seqs = [np.ones((n, 1), np.float32) for n in range(1, 101)]
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    for spec, expected in (("p95", 95), ("max", 100), ("p50", 50), ("30", 30)):
        out = tmp_path / f"{spec}.npy"
        assert invoke("pad", src, "--maxlen", spec, "-o", out).exit_code == 0
        assert np.load(out).shape == (100, expected, 1)
        manifest = json.loads(Path(str(out) + ".json").read_text())
        assert manifest["params"]["maxlen"] == (int(spec) if spec.isdigit() else spec)
        assert manifest["params"]["resolved_maxlen"] == expected
        assert manifest["lengths"]["truncated_samples"] == 100 - expected
        assert manifest["lengths"]["dropped_timesteps"] == sum(range(1, 101 - expected))


@pytest.mark.parametrize("bad", ["0", "-3", "abc", "p0", "p101", "1.5"])
def test_bad_maxlen_is_a_usage_error(invoke: Any, tmp_path: Path, bad: str) -> None:
    src = tmp_path / "x.npy"
    np.save(src, np.zeros((2, 3)))
    result = invoke("pad", src, "--maxlen", bad, "-o", tmp_path / "out.npy")
    assert result.exit_code == 2
    assert "--maxlen" in result.output
    assert files_in(tmp_path) == ["x.npy"]


def test_lossy_dtype_cast_refused_unless_allowed(invoke: Any, tmp_path: Path) -> None:
    src = tmp_path / "x.npy"
    np.save(src, np.array([[0.5, 1.0], [2.0, 3.0]], np.float32))
    out = tmp_path / "out.npy"
    result = invoke("pad", src, "--dtype", "int32", "-o", out)
    assert result.exit_code == 1
    assert "non-integral value 0.5" in result.output and "--allow-lossy" in result.output
    assert files_in(tmp_path) == ["x.npy"]
    assert invoke("pad", src, "--dtype", "int32", "--allow-lossy", "-o", out).exit_code == 0
    assert np.load(out)[:, :, 0].tolist() == [[0, 1], [2, 3]]
    # an exact cast is fine without the flag
    np.save(src, np.array([[1.0, 255.0]], np.float64))
    assert invoke("pad", src, "--dtype", "uint8", "-o", out).exit_code == 0
    result = invoke("pad", src, "--dtype", "int8", "-o", out)
    assert result.exit_code == 1 and "outside int8 range" in result.output


def test_nan_pad_value_refused_for_int_output(invoke: Any, tmp_path: Path) -> None:
    src = tmp_path / "t.npy"
    np.save(src, np.ones((2, 3), np.int64))
    result = invoke("pad", src, "--value", "nan", "-o", tmp_path / "o.npy")
    assert result.exit_code == 1
    assert "nan" in result.output.lower() and "int64" in result.output


def test_pad_value_collision_warns(invoke: Any, tmp_path: Path) -> None:
    src = tmp_path / "x.npy"
    x = np.ones((3, 4, 2), np.float32)
    x[1, 2] = 0.0  # one real timestep equal to the pad value in every feature
    np.save(src, x)
    result = invoke("pad", src, "--maxlen", 6, "-o", tmp_path / "o.npy")
    assert result.exit_code == 0
    assert "1 real timestep of" in result.output and "equals" in result.output
    assert "Masking" in result.output
    result = invoke("pad", src, "--maxlen", 6, "-q", "-o", tmp_path / "o.npy")
    assert result.output == ""


@pytest.mark.parametrize(("truncating", "warned"), [("post", False), ("pre", True)])
def test_collision_warning_counts_only_kept_timesteps(truncating: str, warned: bool,
                                                      invoke: Any, tmp_path: Path) -> None:
    """A zero step that truncation drops cannot be hidden by a Masking layer: no warning."""
    src = tmp_path / "x.npy"
    x = np.ones((3, 4, 2), np.float32)
    x[1, 3] = 0.0  # the last step: cut by --truncating post, kept by pre
    np.save(src, x)
    result = invoke("pad", src, "--maxlen", 2, "--truncating", truncating,
                    "-o", tmp_path / "o.npy")
    assert result.exit_code == 0, result.output
    assert ("1 real timestep of" in result.output) is warned


def test_library_rejects_bad_arguments() -> None:
    with pytest.raises(OptionError):
        pad([[1, 2]], maxlen="p200")
    with pytest.raises(OptionError):
        pad([[1, 2]], value=300, dtype="uint8")
    with pytest.raises(InputError, match="would lose data"):
        pad([[1.5]], dtype="int16")


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 9), min_size=1, max_size=12),
       maxlen=st.integers(1, 12), padding=st.sampled_from(SIDES),
       truncating=st.sampled_from(SIDES), features=st.integers(1, 3))
def test_pad_property_matches_per_sequence_reference(lengths: list[int], maxlen: int,
                                                     padding: str, truncating: str,
                                                     features: int) -> None:
    """Against a plain per-sequence definition (no Keras needed): every row is right."""
    rng = np.random.default_rng(len(lengths) * 31 + maxlen)
    seqs = [rng.integers(1, 50, size=(n, features)).astype(np.int16) for n in lengths]
    result = pad(SequenceSet.from_sequences(seqs, n_features=features), maxlen,
                 padding, truncating, value=-1)  # type: ignore[arg-type]
    assert result.tensor.shape == (len(seqs), maxlen, features)
    for row, seq, kept in zip(result.tensor, seqs, result.lengths, strict=True):
        cut = seq[:maxlen] if truncating == "post" else seq[len(seq) - min(len(seq), maxlen):]
        assert kept == len(cut)
        filler = np.full((maxlen - len(cut), features), -1, np.int16)
        expected = np.concatenate([cut, filler] if padding == "post" else [filler, cut])
        np.testing.assert_array_equal(row, expected)


def test_nan_value_is_recorded_in_manifest(invoke: Any, tmp_path: Path) -> None:
    src = write_ragged(tmp_path, "npz-lengths", [np.ones((2, 1), np.float32),
                                                 np.ones((4, 1), np.float32)])
    out = tmp_path / "o.npz"
    assert invoke("pad", src, "--value", "nan", "-o", out).exit_code == 0
    manifest = json.loads(Path(str(out) + ".json").read_text())
    assert manifest["padding"] == {"side": "post", "value": "nan"}
    x = np.load(out)["x"]
    assert math.isnan(x[0, 3, 0]) and x[1, 3, 0] == 1


def test_nan_error_names_the_sample_and_timestep(invoke: Any, tmp_path: Path) -> None:
    seqs = [np.ones((n, 2), np.float32) for n in (4, 6, 3)]
    seqs[1][4, 1] = np.inf
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    assert invoke("pad", src, "-o", tmp_path / "kept.npy").exit_code == 0  # default: keep
    result = invoke("pad", src, "--nan", "error", "-o", tmp_path / "o.npy")
    assert result.exit_code == 1
    assert "inf at sample 1, timestep 4" in result.output
    assert not (tmp_path / "o.npy").exists()


def test_all_empty_sequences_with_maxlen_max_say_so(tmp_path: Path, invoke: Any) -> None:
    """max (or p95) of sequences that are all empty is 0 timesteps: say that, not '--maxlen 0'."""
    np.save(tmp_path / "zero_steps.npy", np.zeros((4, 0, 2), np.float32))
    np.savez(tmp_path / "empty.npz", values=np.zeros((0, 2), np.float32),
             lengths=np.zeros(5, np.int64))
    for name in ("zero_steps.npy", "empty.npz"):
        for maxlen in ("max", "p95"):
            result = invoke("pad", tmp_path / name, "--maxlen", maxlen, "-o", tmp_path / "x.npy")
            assert result.exit_code == 1
            assert "every sequence is empty" in result.output and "--maxlen N" in result.output
    assert not (tmp_path / "x.npy").exists()
    explicit = invoke("pad", tmp_path / "empty.npz", "--maxlen", 2, "-o", tmp_path / "x.npy")
    assert explicit.exit_code == 0
    assert np.load(tmp_path / "x.npy").shape == (5, 2, 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=400),
       st.sampled_from(["p50", "p90", "p95", "p99", "p99.9", "p12.5", "p1", "p100"]))
def test_maxlen_from_merged_histograms_equals_numpy(lengths: list[int], spec: str) -> None:
    """``--engine dask`` merges one length histogram per shard: the pNN of the merged histogram
    is numpy's inverted_cdf percentile of the lengths themselves."""
    from lstmshape.ops.pad import maxlen_from_histogram
    from lstmshape.plan import merged_histogram

    array = np.array(lengths)
    half = len(array) // 2
    merged = merged_histogram([(np.bincount(array[:half], minlength=1), half),
                               (np.bincount(array[half:]), len(array) - half)])
    expected = int(np.percentile(array, float(spec[1:]), method="inverted_cdf"))
    assert maxlen_from_histogram(spec, merged) == expected
