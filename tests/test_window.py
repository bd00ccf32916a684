"""window: the same windows as keras.utils.timeseries_dataset_from_array, targets that line up,
ragged sets that never cross a series, streaming of a long series, every output format."""

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

from lstmshape.ops.window import WindowSpec, window

COMBOS = [(1, 1, 1), (5, 1, 1), (4, 3, 2), (7, 2, 3), (10, 7, 1), (3, 5, 4)]


def keras_windows(keras: Any, data: np.ndarray, timesteps: int, stride: int, rate: int,
                  targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Keras' windows (and targets), unbatched and unshuffled, as arrays."""
    ds = keras.utils.timeseries_dataset_from_array(
        data, targets, timesteps, sequence_stride=stride, sampling_rate=rate, batch_size=None,
        shuffle=False)
    items = list(ds.as_numpy_iterator())
    if targets is None:
        return np.stack(items), None
    return np.stack([x for x, _ in items]), np.stack([y for _, y in items])


def error_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    return str(lines[0])


@pytest.mark.parametrize(("timesteps", "stride", "rate"), COMBOS)
def test_windows_equal_keras(tmp_path: Path, invoke: Any, keras: Any, timesteps: int,
                             stride: int, rate: int) -> None:
    data = np.random.default_rng(timesteps * 100 + stride).normal(size=(60, 3)).astype("float32")
    np.save(tmp_path / "series.npy", data)
    out = tmp_path / "w.npy"
    result = invoke("window", tmp_path / "series.npy", "--timesteps", timesteps, "--stride",
                    stride, "--sampling-rate", rate, "-o", out)
    assert result.exit_code == 0, result.output
    expected, _ = keras_windows(keras, data, timesteps, stride, rate)
    got = np.load(out)
    assert got.shape == expected.shape and got.dtype == data.dtype
    np.testing.assert_array_equal(got, expected)
    manifest = json.loads((tmp_path / "w.npy.json").read_text())
    assert manifest["input_shape"] == [timesteps, 3]
    assert manifest["samples"] == len(expected)
    assert np.load(tmp_path / "w.npy.lengths.npy").tolist() == [timesteps] * len(expected)


@pytest.mark.parametrize(("timesteps", "stride", "rate"), COMBOS[1:4])
@pytest.mark.parametrize("horizon", [1, 3])
def test_targets_line_up_with_keras(tmp_path: Path, invoke: Any, keras: Any, timesteps: int,
                                    stride: int, rate: int, horizon: int) -> None:
    data = np.arange(80 * 2, dtype=np.float64).reshape(80, 2)
    np.save(tmp_path / "series.npy", data)
    out = tmp_path / "w.npz"
    result = invoke("window", tmp_path / "series.npy", "--timesteps", timesteps, "--stride",
                    stride, "--sampling-rate", rate, "--target", "1", "--horizon", horizon,
                    "-o", out)
    assert result.exit_code == 0, result.output
    last = (timesteps - 1) * rate
    shifted = data[last + horizon:, [1]]
    expected_x, expected_y = keras_windows(keras, data, timesteps, stride, rate, shifted)
    with np.load(out) as saved:
        np.testing.assert_array_equal(saved["x"], expected_x)
        np.testing.assert_array_equal(saved["y"], expected_y)
        # y[i] is the row `horizon` steps after window i's last row
        np.testing.assert_array_equal(saved["y"][:, 0], saved["x"][:, -1, 1] + 2 * horizon)
        assert "source_index" not in saved.files  # a single series


def test_one_dimensional_series_and_no_window_past_the_end(tmp_path: Path, invoke: Any,
                                                           keras: Any) -> None:
    data = np.arange(20, dtype=np.int32)
    np.save(tmp_path / "s.npy", data)
    result = invoke("window", tmp_path / "s.npy", "--timesteps", 4, "--target", "0",
                    "--horizon", 2, "-o", tmp_path / "w.npy")
    assert result.exit_code == 0, result.output
    x, y = np.load(tmp_path / "w.npy"), np.load(tmp_path / "w.npy.y.npy")
    assert x.shape == (15, 4, 1) and y.shape == (15, 1)
    assert y[-1, 0] == 19 and x[-1, -1, 0] == 17  # the last window whose target exists
    expected, _ = keras_windows(keras, data, 4, 1, 1, data[5:])
    np.testing.assert_array_equal(x[..., 0], expected)


@pytest.mark.parametrize("layout", RAGGED_LAYOUTS)
def test_ragged_windows_never_cross_series(tmp_path: Path, invoke: Any, layout: str) -> None:
    rng = np.random.default_rng(7)
    features = 1 if layout == "h5-vlen" else 2
    seqs = random_sequences(rng, 9, 30, features, min_length=0)
    src = write_ragged(tmp_path, layout, seqs)
    out = tmp_path / "w.h5"
    result = invoke("window", src, "--timesteps", 5, "--stride", 2, "--target", "0", "-o", out)
    assert result.exit_code == 0, result.output
    refs = [window(s, 5, 2, target=[0], horizon=1) for s in seqs]
    with h5py.File(out) as saved:
        np.testing.assert_array_equal(saved["x"][()], np.concatenate([r.x for r in refs]))
        np.testing.assert_array_equal(saved["y"][()], np.concatenate([r.y for r in refs]))
        source = saved["source_index"][()]
    expected_source = np.repeat(np.arange(len(seqs)), [len(r.x) for r in refs])
    np.testing.assert_array_equal(source, expected_source)
    # each window is a contiguous run of its own series (never a mix of two)
    for x, s in zip(np.concatenate([r.x for r in refs]), source, strict=True):
        flat = seqs[s]
        hits = [i for i in range(len(flat) - 4) if np.array_equal(flat[i:i + 5], x)]
        assert hits, "window not found in its own series"


def test_dense_three_d_input_is_a_set_of_series(tmp_path: Path, invoke: Any,
                                                keras: Any) -> None:
    data = np.random.default_rng(3).normal(size=(4, 12, 2)).astype("float32")
    np.save(tmp_path / "x.npy", data)
    result = invoke("window", tmp_path / "x.npy", "--timesteps", 3, "--stride", 4, "-o",
                    tmp_path / "w.npz")
    assert result.exit_code == 0, result.output
    expected = np.concatenate([keras_windows(keras, d, 3, 4, 1)[0] for d in data])
    with np.load(tmp_path / "w.npz") as saved:
        np.testing.assert_array_equal(saved["x"], expected)
        assert saved["source_index"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_long_series_streams_in_overlapping_blocks(tmp_path: Path, invoke: Any) -> None:
    data = np.random.default_rng(5).normal(size=(60_000, 3)).astype("float32")
    np.save(tmp_path / "s.npy", data)
    out = tmp_path / "w.npy"
    result = invoke("window", tmp_path / "s.npy", "--timesteps", 16, "--stride", 3,
                    "--sampling-rate", 2, "--target", "2", "--horizon", 4,
                    "--memory-limit", "1MiB", "-o", out)
    assert result.exit_code == 0, result.output
    expected = window(data, 16, 3, 2, target=[2], horizon=4)
    np.testing.assert_array_equal(np.load(out), expected.x)
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy.y.npy"), expected.y)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])
def test_every_output_format_reads_back(tmp_path: Path, invoke: Any, suffix: str) -> None:
    data = np.random.default_rng(2).integers(0, 100, size=(30, 2)).astype(np.int16)
    np.save(tmp_path / "s.npy", data)
    out = tmp_path / f"w{suffix}"
    result = invoke("window", tmp_path / "s.npy", "--timesteps", 6, "--stride", 2, "--target",
                    "f1", "-o", out)
    assert result.exit_code == 0, result.output
    expected = window(data, 6, 2, target=[1], horizon=1)
    if suffix == ".npy":
        x, y = np.load(out), np.load(f"{out}.y.npy")
    elif suffix == ".npz":
        with np.load(out) as saved:
            x, y = saved["x"], saved["y"]
    else:
        with h5py.File(out) as saved:
            x, y = saved["x"][()], saved["y"][()]
    np.testing.assert_array_equal(x, expected.x)
    np.testing.assert_array_equal(y, expected.y)
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["window"]["target"]["names"] == ["f1"]
    assert manifest["outputs"]["y"]["shape"] == list(expected.y.shape)


def test_target_by_feature_name_from_the_manifest(tmp_path: Path, invoke: Any) -> None:
    data = np.arange(40.0).reshape(2, 20, 1)
    np.save(tmp_path / "x.npy", data)
    np.save(tmp_path / "t.npy", data[..., 0] * 10)
    assert invoke("add-feature", tmp_path / "x.npy", tmp_path / "t.npy", "--name", "temp",
                  "-o", tmp_path / "m.npy").exit_code == 0
    result = invoke("window", tmp_path / "m.npy", "--timesteps", 4, "--target", "temp",
                    "-o", tmp_path / "w.npz")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "w.npz.json").read_text())
    assert manifest["feature_names"] == ["f0", "temp"]
    assert manifest["history"][-1]["command"] == "add-feature"
    with np.load(tmp_path / "w.npz") as saved:
        np.testing.assert_array_equal(saved["y"][:, 0], (saved["x"][:, -1, 0] + 1) * 10)


def test_too_short_and_bad_target_are_one_line_errors(tmp_path: Path, invoke: Any) -> None:
    np.save(tmp_path / "s.npy", np.zeros((5, 2)))
    short = invoke("window", tmp_path / "s.npy", "--timesteps", 6, "-o", tmp_path / "w.npy")
    assert short.exit_code == 1
    assert "no window fits" in error_line(short) and "s.npy" in error_line(short)
    bad = invoke("window", tmp_path / "s.npy", "--timesteps", 2, "--target", "7", "-o",
                 tmp_path / "w.npy")
    assert bad.exit_code == 1 and "--target 7" in error_line(bad)
    unknown = invoke("window", tmp_path / "s.npy", "--timesteps", 2, "--target", "temp", "-o",
                     tmp_path / "w.npy")
    assert unknown.exit_code == 1 and "'temp'" in error_line(unknown)
    assert not (tmp_path / "w.npy").exists()


def test_four_d_input_is_refused_in_a_real_process(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 4, 5)))
    done = run_lstmshape("window", tmp_path / "x.npy", "--timesteps", 2, "-o",
                         tmp_path / "w.npy")
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "(2, 3, 4, 5)" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 60), timesteps=st.integers(1, 8), stride=st.integers(1, 6),
       rate=st.integers(1, 4), horizon=st.integers(1, 5))
def test_every_window_is_the_strided_slice(n: int, timesteps: int, stride: int, rate: int,
                                           horizon: int) -> None:
    data = np.arange(n * 2).reshape(n, 2)
    result = window(data, timesteps, stride, rate, target=[0], horizon=horizon)
    spec = WindowSpec(timesteps, stride, rate, horizon)
    starts = list(range(0, max(n - spec.reach + 1, 0), stride))
    assert len(result.x) == len(starts) == int(spec.counts(np.array([n]))[0])
    for i, start in enumerate(starts):
        np.testing.assert_array_equal(result.x[i], data[start:start + spec.span:rate])
        assert result.y is not None
        assert result.y[i, 0] == data[start + spec.span - 1 + horizon, 0]
