"""batch: every sample once (or dropped/padded as asked) and `order` says where; shuffling is
seeded; bucketing pads far less; stateful rows continue each other; every format reads back."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import RAGGED_LAYOUTS, random_sequences, run_lstmshape, write_ragged
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmshape.commands.inspect import inspect_file
from lstmshape.ops.batch import plan_batches
from lstmshape.ops.pad import pad


def read_batches(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """x_NNNNNN, lengths_NNNNNN (in batch order) and order from an .npz or .h5 output."""
    if path.suffix == ".npz":
        with np.load(path) as saved:
            data = {k: saved[k] for k in saved.files}
    else:
        with h5py.File(path) as saved:
            data = {k: saved[k][()] for k in saved}
    count = sum(1 for k in data if k.startswith("x_"))
    xs = [data[f"x_{i:06d}"] for i in range(count)]
    lengths = [data[f"lengths_{i:06d}"] for i in range(count)]
    return xs, lengths, data["order"]


def error_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return str(lines[0])


def check_rows(seqs: list[np.ndarray], xs: list[np.ndarray], lengths: list[np.ndarray],
               order: np.ndarray, value: float = 0.0) -> None:
    """Every output row is its source sample padded to the batch width (or an empty pad row)."""
    rows = np.concatenate(lengths)
    assert rows.shape == order.shape
    position = 0
    for x, batch_lengths in zip(xs, lengths, strict=True):
        for row, length in zip(x, batch_lengths, strict=True):
            source = order[position]
            if source < 0:
                assert length == 0 and np.all(row == value)
            else:
                expected = pad([seqs[source]], maxlen=x.shape[1], value=value,
                               dtype=x.dtype).tensor[0]
                np.testing.assert_array_equal(row, expected)
                assert length == min(len(seqs[source]), x.shape[1])
            position += 1


@pytest.mark.parametrize("remainder", ["keep", "drop", "pad"])
@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_every_sample_once_and_order_says_where(tmp_path: Path, invoke: Any, remainder: str,
                                                suffix: str) -> None:
    seqs = random_sequences(np.random.default_rng(1), 23, 12, 3)
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    out = tmp_path / f"b{suffix}"
    result = invoke("batch", src, "--size", 5, "--remainder", remainder, "--shuffle", "--seed",
                    4, "-o", out)
    assert result.exit_code == 0, result.output
    xs, lengths, order = read_batches(out)
    real = order[order >= 0]
    if remainder == "drop":
        assert len(xs) == 4 and len(real) == 20 and len(set(real.tolist())) == 20
    else:
        assert sorted(real.tolist()) == list(range(23))
        assert len(xs) == 5
    assert [len(x) for x in xs] == ([5, 5, 5, 5, 3] if remainder == "keep" else [5] * len(xs))
    assert int(np.count_nonzero(order == -1)) == (2 if remainder == "pad" else 0)
    for x, batch_lengths in zip(xs, lengths, strict=True):
        assert x.shape[1] == batch_lengths.max()  # each batch padded to its own longest
    check_rows(seqs, xs, lengths, order)
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["batches"]["count"] == len(xs)
    assert manifest["batches"]["dropped_samples"] == (3 if remainder == "drop" else 0)
    assert manifest["outputs"]["order"]["shape"] == [len(order)]


@pytest.mark.parametrize("layout", RAGGED_LAYOUTS)
def test_every_ragged_layout(tmp_path: Path, invoke: Any, layout: str) -> None:
    features = 1 if layout == "h5-vlen" else 2
    seqs = random_sequences(np.random.default_rng(2), 11, 9, features, dtype="int32")
    src = write_ragged(tmp_path, layout, seqs)
    result = invoke("batch", src, "--size", 4, "--bucket-by-length", "--value", -1, "-o",
                    tmp_path / "b.npz")
    assert result.exit_code == 0, result.output
    xs, lengths, order = read_batches(tmp_path / "b.npz")
    assert sorted(order.tolist()) == list(range(11))
    check_rows(seqs, xs, lengths, order, value=-1)


def test_npy_output_is_one_four_d_array(tmp_path: Path, invoke: Any) -> None:
    data = np.random.default_rng(3).normal(size=(12, 7, 2)).astype("float32")
    np.save(tmp_path / "x.npy", data)
    out = tmp_path / "b.npy"
    result = invoke("batch", tmp_path / "x.npy", "--size", 4, "-o", out)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(out), data.reshape(3, 4, 7, 2))
    assert np.load(tmp_path / "b.npy.order.npy").tolist() == list(range(12))
    assert np.load(tmp_path / "b.npy.lengths.npy").shape == (3, 4)
    manifest = json.loads((tmp_path / "b.npy.json").read_text())
    assert manifest["outputs"]["x"]["shape"] == [3, 4, 7, 2]
    assert manifest["input_shape"] == [7, 2]
    # a short last batch cannot be part of one 4-D array
    short = invoke("batch", tmp_path / "x.npy", "--size", 5, "-o", tmp_path / "c.npy")
    assert short.exit_code == 1
    assert "--remainder" in error_line(short) and not (tmp_path / "c.npy").exists()
    padded = invoke("batch", tmp_path / "x.npy", "--size", 5, "--remainder", "pad", "-o",
                    tmp_path / "c.npy")
    assert padded.exit_code == 0, padded.output
    saved = np.load(tmp_path / "c.npy")
    assert saved.shape == (3, 5, 7, 2) and np.all(saved[2, 2:] == 0)
    np.testing.assert_array_equal(saved.reshape(15, 7, 2)[:12], data)


def test_shuffle_is_seeded_and_deterministic(tmp_path: Path, invoke: Any) -> None:
    np.save(tmp_path / "x.npy", np.arange(40.0).reshape(20, 2))
    outs = []
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        out = tmp_path / f"{name}.h5"
        result = invoke("batch", tmp_path / "x.npy", "--size", 4, "--shuffle", "--seed", seed,
                        "-o", out)
        assert result.exit_code == 0, result.output
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert (tmp_path / "a.h5.json").read_bytes().replace(b"a.h5", b"b.h5") == \
        (tmp_path / "b.h5.json").read_bytes()
    orders = [read_batches(out)[2] for out in outs]
    assert orders[0].tolist() != list(range(20)) and orders[0].tolist() != orders[2].tolist()
    xs, _, order = read_batches(outs[0])
    np.testing.assert_array_equal(np.concatenate(xs)[:, :, 0], np.arange(40.0).reshape(20, 2)
                                  [order])


def test_bucketing_pads_at_least_forty_percent_less(tmp_path: Path, invoke: Any) -> None:
    rng = np.random.default_rng(11)
    seqs = [np.ones((n, 1), np.float32) for n in rng.integers(1, 201, size=1500)]
    src = write_ragged(tmp_path, "npz-lengths", seqs)

    def padding(*options: Any) -> tuple[int, dict[str, Any]]:
        out = tmp_path / "out.npz"
        result = invoke("batch", src, "--size", 64, *options, "-o", out)
        assert result.exit_code == 0, result.output
        xs, lengths, _ = read_batches(out)
        padded = sum(x.shape[0] * x.shape[1] for x in xs) - int(np.concatenate(lengths).sum())
        return padded, json.loads(Path(f"{out}.json").read_text())["batches"]

    plain, _ = padding("--shuffle")
    bucketed, summary = padding("--shuffle", "--bucket-by-length")
    assert bucketed <= 0.6 * plain, (bucketed, plain)
    assert summary["padded_timesteps"] == {"before": plain, "after": bucketed,
                                           "real": sum(len(s) for s in seqs)}
    capped, capped_summary = padding("--bucket-by-length", "--maxlen", 100)
    assert capped < bucketed  # a cap cuts the longest sequences: less padding still
    assert max(capped_summary["widths"]) == 100
    report = inspect_file(str(tmp_path / "out.npz"))
    assert report["samples"] == 1500 and "before bucketing" in report["layout_detail"]


def test_a_batch_of_empty_sequences_gets_one_padding_timestep(tmp_path: Path,
                                                              invoke: Any) -> None:
    rng = np.random.default_rng(12)
    seqs = [rng.normal(size=(0 if rng.random() < 0.3 else int(rng.integers(1, 9)), 2))
            .astype(np.float32) for _ in range(400)]
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    out = tmp_path / "out.npz"
    result = invoke("batch", src, "--size", 32, "--bucket-by-length", "--value", -1, "-o", out)
    assert result.exit_code == 0, result.output
    xs, lengths, order = read_batches(out)
    assert xs[0].shape == (32, 1, 2) and not lengths[0].any()  # sorted: the empty ones first
    assert (xs[0] == -1).all()
    assert min(x.shape[1] for x in xs) == 1
    for x, row_lengths, rows in zip(xs, lengths, np.split(order, np.cumsum([len(x) for x in xs])),
                                    strict=False):
        for sample, row, length in zip(rows, x, row_lengths, strict=True):
            np.testing.assert_array_equal(row[:length], seqs[sample])


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".npy"])
def test_no_samples_make_no_batch_file(suffix: str, tmp_path: Path, invoke: Any) -> None:
    """An empty input is one error line, not a file of no batch that verify then rejects."""
    src = tmp_path / "empty.npy"
    np.save(src, np.zeros((0, 4, 2), np.float32))
    result = invoke("batch", src, "--size", 4, "-o", tmp_path / f"out{suffix}")
    assert result.exit_code == 1
    assert result.output == "Error: empty.npy: 0 samples make no batch of 4\n".replace(
        "empty.npy", str(src))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.npy"]


def test_stateful_rows_continue_on_a_windowed_series(tmp_path: Path, invoke: Any) -> None:
    series = np.arange(2 * 1203, dtype=np.float64).reshape(1203, 2)
    np.save(tmp_path / "series.npy", series)
    assert invoke("window", tmp_path / "series.npy", "--timesteps", 10, "--stride", 10, "-o",
                  tmp_path / "w.npy").exit_code == 0  # 120 consecutive windows
    result = invoke("batch", tmp_path / "w.npy", "--size", 8, "--stateful", "-o",
                    tmp_path / "s.npy")
    assert result.exit_code == 0, result.output
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (15, 8, 10, 2)
    for k in range(14):
        for j in range(8):
            # the first step of x[k+1][j] is the series row right after the last of x[k][j]
            np.testing.assert_array_equal(x[k + 1, j, 0], x[k, j, -1] + 2)
    np.testing.assert_array_equal(x[:, 3].reshape(-1, 2), series[3 * 150:4 * 150])
    manifest = json.loads((tmp_path / "s.npy.json").read_text())
    assert manifest["batches"]["batch_input_shape"] == [8, 10, 2]
    # 120 windows do not divide by 7: refused unless --remainder drop
    refused = invoke("batch", tmp_path / "w.npy", "--size", 7, "--stateful", "-o",
                     tmp_path / "t.npy")
    assert refused.exit_code == 1 and "--remainder drop" in error_line(refused)
    dropped = invoke("batch", tmp_path / "w.npy", "--size", 7, "--stateful", "--remainder",
                     "drop", "-o", tmp_path / "t.npy")
    assert dropped.exit_code == 0, dropped.output
    t = np.load(tmp_path / "t.npy")
    assert t.shape == (17, 7, 10, 2)
    np.testing.assert_array_equal(t[1:, :, 0], t[:-1, :, -1] + 2)


@pytest.mark.parametrize("conflict", ["--shuffle", "--bucket-by-length"])
def test_stateful_refuses_shuffle_and_bucketing(tmp_path: Path, invoke: Any,
                                                conflict: str) -> None:
    np.save(tmp_path / "x.npy", np.zeros((8, 3)))
    result = invoke("batch", tmp_path / "x.npy", "--size", 4, "--stateful", conflict, "-o",
                    tmp_path / "b.npy")
    assert result.exit_code == 1 and conflict in error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_refusal_in_a_real_process(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((10, 3)))
    done = run_lstmshape("batch", tmp_path / "x.npy", "--size", 4, "--stateful", "-o",
                         tmp_path / "b.npz")
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --stateful") and "10" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_targets_follow_their_rows(tmp_path: Path, invoke: Any) -> None:
    np.save(tmp_path / "s.npy", np.arange(100.0))
    assert invoke("window", tmp_path / "s.npy", "--timesteps", 5, "--stride", 2, "--target",
                  "0", "-o", tmp_path / "w.npz").exit_code == 0
    result = invoke("batch", tmp_path / "w.npz", "--size", 6, "--shuffle", "--remainder", "pad",
                    "-o", tmp_path / "b.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "b.npz") as saved:
        count = sum(1 for k in saved.files if k.startswith("x_"))
        for i in range(count):
            x, y = saved[f"x_{i:06d}"], saved[f"y_{i:06d}"]
            real = saved[f"lengths_{i:06d}"] > 0
            np.testing.assert_array_equal(y[real, 0], x[real, -1, 0] + 1)


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".npy"])
def test_inspect_reads_a_batch_output(tmp_path: Path, invoke: Any, suffix: str) -> None:
    seqs = random_sequences(np.random.default_rng(8), 16, 20, 2, min_length=1)
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    out = tmp_path / f"b{suffix}"
    result = invoke("batch", src, "--size", 4, "--bucket-by-length", "-o", out)
    assert result.exit_code == 0, result.output
    report = inspect_file(str(out))
    assert report["samples"] == 16 and report["features"] == 2
    assert report["layout"] == "batches"
    order = (np.load(f"{out}.order.npy") if suffix == ".npy" else read_batches(out)[2])
    assert report["lengths"]["min"] == min(len(s) for s in seqs)
    assert report["lengths"]["max"] == max(len(s) for s in seqs)
    assert sorted(order.tolist()) == list(range(16))
    shown = invoke("inspect", out)
    assert shown.exit_code == 0 and "batches" in shown.output


def test_padding_side_and_value_carry_from_the_input(tmp_path: Path, invoke: Any) -> None:
    seqs = [np.full((n, 1), n, np.float32) for n in (3, 1, 2, 5)]
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    assert invoke("pad", src, "--padding", "pre", "--value", -9, "-o",
                  tmp_path / "p.npy").exit_code == 0
    result = invoke("batch", tmp_path / "p.npy", "--size", 2, "--bucket-by-length", "-o",
                    tmp_path / "b.npz")
    assert result.exit_code == 0, result.output
    xs, _, order = read_batches(tmp_path / "b.npz")
    assert order.tolist() == [1, 2, 0, 3]
    assert xs[0][:, :, 0].tolist() == [[-9, 1], [2, 2]]  # pre-padded with -9, 2 wide
    manifest = json.loads((tmp_path / "b.npz.json").read_text())
    assert manifest["padding"] == {"side": "pre", "value": -9}


@settings(max_examples=50, deadline=None)
@given(lengths=st.lists(st.integers(0, 30), min_size=1, max_size=60), size=st.integers(1, 9),
       remainder=st.sampled_from(["keep", "drop", "pad"]), shuffle=st.booleans(),
       bucket=st.booleans(), maxlen=st.one_of(st.none(), st.integers(1, 20)))
def test_plan_places_every_sample_once(lengths: list[int], size: int, remainder: str,
                                       shuffle: bool, bucket: bool, maxlen: int | None) -> None:
    n = len(lengths)
    if remainder == "drop" and n < size:
        return
    plan = plan_batches(lengths, size, remainder=remainder, shuffle=shuffle,  # type: ignore[arg-type]
                        seed=3, bucket=bucket, maxlen=maxlen)
    real = plan.order[plan.order >= 0]
    assert len(set(real.tolist())) == len(real)
    expected = n - n % size if remainder == "drop" else n
    assert len(real) == expected
    assert plan.sizes.sum() == len(plan.order)
    assert np.all(plan.sizes[:-1] == size)
    row_widths = np.repeat(plan.widths, plan.sizes)
    assert np.all(plan.lengths <= row_widths)
    assert np.all(plan.lengths[plan.order >= 0] == np.minimum(np.array(lengths)[real],
                                                              row_widths[plan.order >= 0]))
    if bucket:
        # buckets are contiguous runs of the sorted lengths: taken in order of their shortest
        # member, no batch holds a sequence longer than the next one's shortest
        real_lengths = np.array(lengths)[np.maximum(plan.order, 0)]
        starts = np.cumsum(plan.sizes) - plan.sizes
        batches = [real_lengths[a:a + k][plan.order[a:a + k] >= 0]
                   for a, k in zip(starts, plan.sizes, strict=True)]
        batches = sorted((b for b in batches if b.size), key=lambda b: (b.min(), b.max()))
        for first, second in itertools.pairwise(batches):
            assert first.max() <= second.min()
