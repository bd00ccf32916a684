"""``normalize`` equals scikit-learn's scalers fitted on the concatenated real timesteps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from conftest import random_sequences, write_ragged
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import MinMaxScaler, StandardScaler

import lstmshape
from lstmshape.manifest import JSON_SCHEMA
from lstmshape.ops.normalize import Accumulator, Moments, merge_groups

SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler}


def reference(real_rows: np.ndarray, method: str) -> np.ndarray:
    return np.asarray(SCALERS[method]().fit_transform(real_rows.astype(np.float64)))


def manifest_of(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(Path(f"{path}.json").read_text())
    jsonschema.validate(manifest, JSON_SCHEMA)
    return manifest


@pytest.mark.parametrize("method", sorted(SCALERS))
@pytest.mark.parametrize("layout", ["npz-lengths", "h5-lengths", "npz-savez"])
def test_ragged_equals_sklearn_on_the_concatenated_sequences(
        invoke: Any, tmp_path: Path, rng: np.random.Generator, method: str,
        layout: str) -> None:
    seqs = [s * 7 + 3 for s in random_sequences(rng, 40, 30, 3, "float32", min_length=1)]
    src = write_ragged(tmp_path, layout, seqs)
    out = tmp_path / "n.npz"
    result = invoke("normalize", src, "--method", method, "-o", out)
    assert result.exit_code == 0, result.output
    scaled = np.load(out)
    assert scaled["values"].dtype == np.float32
    assert scaled["lengths"].tolist() == [len(s) for s in seqs]
    expected = reference(np.concatenate(seqs), method)
    np.testing.assert_allclose(scaled["values"], expected, rtol=1e-5, atol=1e-5)
    stats = manifest_of(out)["normalization"]
    assert stats["method"] == method
    if method == "standard":
        scaler = StandardScaler().fit(np.concatenate(seqs).astype(np.float64))
        np.testing.assert_allclose(stats["mean"], scaler.mean_, rtol=1e-12)
        np.testing.assert_allclose(stats["std"], scaler.scale_, rtol=1e-12)


@pytest.mark.parametrize("method", sorted(SCALERS))
@pytest.mark.parametrize("side", ["pre", "post"])
@pytest.mark.parametrize("value", ["0", "nan", "-9"])
def test_padding_never_counts_and_keeps_the_pad_value(
        invoke: Any, tmp_path: Path, rng: np.random.Generator, method: str, side: str,
        value: str) -> None:
    """A padded tensor: statistics of the real steps only; padded steps keep the pad value."""
    seqs = [s + 5 for s in random_sequences(rng, 30, 20, 2, "float32", min_length=1)]
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    padded = tmp_path / "p.npy"
    assert invoke("pad", src, "--padding", side, "--value", value, "-o", padded).exit_code == 0
    out = tmp_path / "n.npy"
    result = invoke("normalize", padded, "--method", method, "-o", out)
    assert result.exit_code == 0, result.output
    x, lengths = np.load(out), np.load(f"{out}.lengths.npy")
    steps = np.arange(x.shape[1])[None, :]
    real = (steps < lengths[:, None] if side == "post"
            else steps >= x.shape[1] - lengths[:, None])
    np.testing.assert_allclose(x[real], reference(np.concatenate(seqs), method),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(x[~real], np.full((~real).sum(), float(value), np.float32)
                                  [:, None].repeat(2, 1))
    recorded = manifest_of(out)["padding"]
    assert recorded == {"side": side, "value": "nan" if value == "nan" else float(value)}


def test_int_input_gives_float32_and_float64_stays_float64(invoke: Any, tmp_path: Path,
                                                           rng: np.random.Generator) -> None:
    tokens = rng.integers(0, 1000, size=(50, 12)).astype(np.int32)
    np.save(tmp_path / "tokens.npy", tokens)
    out = tmp_path / "t.npy"
    assert invoke("normalize", tmp_path / "tokens.npy", "-o", out).exit_code == 0
    x = np.load(out)
    assert x.dtype == np.float32 and x.shape == (50, 12, 1)
    np.testing.assert_allclose(x.reshape(-1, 1), reference(tokens.reshape(-1, 1), "standard"),
                               rtol=1e-5, atol=1e-5)
    wide = rng.normal(size=(20, 9, 4)) * 1e3
    np.save(tmp_path / "wide.npy", wide)
    assert invoke("normalize", tmp_path / "wide.npy", "--method", "minmax", "-o", out
                  ).exit_code == 0
    x = np.load(out)
    assert x.dtype == np.float64
    np.testing.assert_allclose(x.reshape(-1, 4), reference(wide.reshape(-1, 4), "minmax"),
                               rtol=1e-12, atol=1e-12)


def test_constant_feature_is_scaled_by_one_and_named(invoke: Any, tmp_path: Path,
                                                      rng: np.random.Generator) -> None:
    x = rng.normal(size=(10, 6, 3)).astype(np.float32)
    x[:, :, 1] = 4.0
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "n.npy"
    result = invoke("normalize", tmp_path / "x.npy", "-o", out)
    assert result.exit_code == 0
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "f1" in warnings[0] and "constant" in warnings[0]
    scaled = np.load(out)
    np.testing.assert_allclose(scaled.reshape(-1, 3), reference(x.reshape(-1, 3), "standard"),
                               rtol=1e-5, atol=1e-5)
    assert manifest_of(out)["normalization"]["std"][1] == 1.0


def test_streaming_equals_one_block_and_uses_blocks(invoke: Any, tmp_path: Path,
                                                    rng: np.random.Generator,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seqs = random_sequences(rng, 3000, 60, 4, "float32", min_length=1)
    src = write_ragged(tmp_path, "h5-lengths", seqs)
    seen: list[int] = []
    original = Accumulator.add

    def spy(self: Accumulator, values: np.ndarray) -> None:
        seen.append(len(values))
        original(self, values)

    monkeypatch.setattr(Accumulator, "add", spy)
    outputs = {}
    for budget in ("1MiB", "1GB"):
        seen.clear()
        out = tmp_path / f"n{budget}.npz"
        assert invoke("normalize", src, "--memory-limit", budget, "-o", out).exit_code == 0
        outputs[budget] = (out.read_bytes(), len(seen))
    assert outputs["1GB"][1] == 1  # all real steps in one block
    assert outputs["1MiB"][1] >= 20  # 2.9 MB of values in 64 KiB blocks
    # the statistics are merged at the same rows whatever the blocks: the same bytes
    assert outputs["1MiB"][0] == outputs["1GB"][0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=8), st.integers(0, 2**32 - 1),
       st.floats(-1e6, 1e6), st.floats(1e-3, 1e4))
def test_chan_merging_equals_one_pass(cuts: list[int], seed: int, offset: float,
                                      spread: float) -> None:
    rng = np.random.default_rng(seed)
    data = rng.normal(offset, spread, size=(sum(cuts), 3))
    merged = Moments.empty(3)
    for piece in np.split(data, np.cumsum(cuts)[:-1]):
        merged = merged.merge(Moments.of(piece))
    whole = Moments.of(data)
    np.testing.assert_array_equal(merged.count, whole.count)
    if data.shape[0]:
        # what float64 can hold: values near `offset` carry an error of eps * |offset| each
        rounding = 8 * np.finfo(np.float64).eps * (abs(offset) + spread)
        np.testing.assert_allclose(merged.mean, data.mean(axis=0), rtol=1e-9, atol=rounding)
        np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-8,
                                   atol=len(data) * spread * rounding)
        np.testing.assert_array_equal(merged.minimum, data.min(axis=0))


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 120), st.integers(1, 9), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_group_stretches_merge_to_the_same_bits(rows: int, step: int, group: int,
                                                seed: int) -> None:
    """``--engine dask``'s statistics: one Accumulator per group-aligned stretch of rows, each
    fed its rows in blocks of any size, their groups merged in order: bit for bit the numbers
    of one Accumulator fed every row, as the local engine does."""
    rng = np.random.default_rng(seed)
    data = rng.normal(5.0, 3.0, size=(rows, 2)).astype(np.float32)
    data[rng.random(data.shape) < 0.05] = np.nan
    local = Accumulator(2, step, group)
    local.add(data)
    expected = local.result()
    groups = []
    for low in range(0, rows, step * group):
        stretch = Accumulator(2, step, group)
        cuts = np.sort(rng.integers(low, min(low + step * group, rows) + 1, size=3))
        for start, stop in zip([low, *cuts], [*cuts, min(low + step * group, rows)], strict=True):
            stretch.add(data[start:stop])
        groups += stretch.groups()
    merged = merge_groups(2, groups)
    assert len(groups) == -(-rows // (step * group))
    for name in ("count", "mean", "m2", "minimum", "maximum"):
        assert getattr(merged, name).tobytes() == getattr(expected, name).tobytes(), name


def test_library_normalize_equals_sklearn(rng: np.random.Generator) -> None:
    seqs = random_sequences(rng, 25, 15, 2, "float32", min_length=1)
    scaled, stats = lstmshape.normalize(seqs, "minmax")
    np.testing.assert_allclose(scaled.values, reference(np.concatenate(seqs), "minmax"),
                               rtol=1e-5, atol=1e-6)
    again, _ = lstmshape.normalize(seqs, statistics=stats)
    np.testing.assert_array_equal(again.values, scaled.values)


def test_nan_data_is_left_out_of_the_statistics_and_stays_nan(invoke: Any, tmp_path: Path,
                                                              rng: np.random.Generator) -> None:
    x = rng.normal(size=(8, 5, 2))
    x[2, 3, 0] = np.nan
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "n.npy"
    assert invoke("normalize", tmp_path / "x.npy", "-o", out).exit_code == 0
    np.testing.assert_allclose(np.load(out).reshape(-1, 2), reference(x.reshape(-1, 2),
                                                                      "standard"))


def test_per_timestep_labels_pass_through_unchanged(invoke: Any, tmp_path: Path,
                                                    rng: np.random.Generator) -> None:
    seqs = random_sequences(rng, 20, 10, 2, "float32", min_length=1)
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    labels = [rng.integers(0, 4, len(s)) for s in seqs]
    np.savez(tmp_path / "tags.npz", values=np.concatenate(labels),
             lengths=[len(s) for s in seqs])
    padded = tmp_path / "padded.npz"
    assert invoke("pad", src, "--y", tmp_path / "tags.npz", "--y-value", -1, "-o", padded
                  ).exit_code == 0
    out = tmp_path / "n.npz"
    # labels keep their layout; their padded steps take --y-value, as in every command
    assert invoke("normalize", padded, "--y-value", -1, "-o", out).exit_code == 0
    before, after = np.load(padded), np.load(out)
    np.testing.assert_array_equal(after["y"], before["y"])
    np.testing.assert_array_equal(after["sample_weight"], before["sample_weight"])
    assert manifest_of(out)["targets"]["kind"] == "timestep"
