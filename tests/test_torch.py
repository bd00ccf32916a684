"""``lstmshape.torch``: packed batches give what each sequence gives alone, the sampler's epochs
and ranks, every output layout as items at their true lengths, training as well as the
hand-written padding and packing does, and ``verify --framework torch``.

Tolerances: float32 LSTM outputs of a packed batch and of each sequence run alone agree to
``atol=1e-6, rtol=1e-5`` (the same kernels on the same numbers; float32 rounding only), and the
wrong-lengths control differs by more than ``1e-3``. Training: both pipelines reach >= 0.9
accuracy and lie within 0.06 of each other.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch  # make test installs it: missing, this module fails rather than skips
from conftest import random_sequences, run_python, write_ragged

import lstmshape
import lstmshape.torch as lt
from lstmshape.errors import ArgumentError, LstmshapeError
from lstmshape.ops.batch import plan_batches

torch.set_num_threads(1)  # two cores shared by the whole suite

ROOT = Path(__file__).resolve().parent.parent
ATOL, RTOL = 1e-6, 1e-5


def make(invoke: Any, *args: Any) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return str(args[list(args).index("-o") + 1])


@pytest.fixture
def sequences(rng: np.random.Generator) -> list[np.ndarray]:
    return random_sequences(rng, 23, 12, 3, min_length=1)


def seeded_lstm(features: int, hidden: int = 5) -> Any:
    torch.manual_seed(7)
    return torch.nn.LSTM(features, hidden, batch_first=True)


# ---------------------------------------------------------------------------------------------
# Packing: outputs equal each sequence run alone


@pytest.mark.parametrize("batch_first", [True, False])
def test_packed_outputs_equal_each_sequence_alone(tmp_path: Path,
                                                  sequences: list[np.ndarray],
                                                  batch_first: bool) -> None:
    data = lt.SequenceDataset(write_ragged(tmp_path, "npz-lengths", sequences))
    order = [5, 0, 17, 3, 22, 9, 11, 1]  # unsorted on purpose: enforce_sorted=False
    batch = lt.collate([data[i] for i in order], pack=True, batch_first=batch_first)
    assert isinstance(batch["x"], torch.nn.utils.rnn.PackedSequence)
    lstm = torch.nn.LSTM(3, 5, batch_first=batch_first)
    torch.manual_seed(7)
    with torch.no_grad():
        packed_out, (h_n, _) = lstm(batch["x"])
        padded, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_out, batch_first=batch_first)
        last = lt.last_valid(packed_out, batch["lengths"], batch_first=batch_first)
        for row, index in enumerate(order):
            alone = torch.from_numpy(sequences[index]).unsqueeze(0 if batch_first else 1)
            expected, _ = lstm(alone)
            expected = expected[0] if batch_first else expected[:, 0]
            got = padded[row] if batch_first else padded[:, row]
            length = len(sequences[index])
            torch.testing.assert_close(got[:length], expected, atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(last[row], expected[-1], atol=ATOL, rtol=RTOL)
    # one layer, one direction: the final hidden state is the last valid output too
    torch.testing.assert_close(last, h_n[-1], atol=ATOL, rtol=RTOL)


def test_packing_with_wrong_lengths_differs(tmp_path: Path, sequences: list[np.ndarray]) -> None:
    """The control: the same batch packed as if every sequence were as long as the longest
    runs the LSTM over the padding, and its last outputs are not the sequences' own."""
    data = lt.SequenceDataset(write_ragged(tmp_path, "npz-lengths", sequences))
    batch = lt.collate([data[i] for i in range(len(data))])
    lstm = seeded_lstm(3)
    longest = int(batch["lengths"].max())
    wrong = torch.full_like(batch["lengths"], longest)
    with torch.no_grad():
        right_out, _ = lstm(torch.nn.utils.rnn.pack_padded_sequence(
            batch["x"], batch["lengths"], batch_first=True, enforce_sorted=False))
        wrong_out, _ = lstm(torch.nn.utils.rnn.pack_padded_sequence(
            batch["x"], wrong, batch_first=True, enforce_sorted=False))
        right = lt.last_valid(right_out, batch["lengths"])
        wrong_last = lt.last_valid(wrong_out, wrong)
    short = batch["lengths"] < longest
    assert bool(short.any())
    gap = (right - wrong_last).abs().amax(dim=1)
    assert bool((gap[short] > 1e-3).all()), gap
    torch.testing.assert_close(right[~short], wrong_last[~short], atol=ATOL, rtol=RTOL)


def test_last_valid_on_a_padded_tensor_picks_each_last_step() -> None:
    outputs = torch.arange(24.0).reshape(3, 4, 2)
    last = lt.last_valid(outputs, torch.tensor([1, 4, 2]))
    assert last.tolist() == [outputs[0, 0].tolist(), outputs[1, 3].tolist(),
                             outputs[2, 1].tolist()]
    time_major = lt.last_valid(outputs.transpose(0, 1), [1, 4, 2], batch_first=False)
    assert torch.equal(time_major, last)


@pytest.mark.parametrize(("lengths", "word"), [([0, 2, 1], "1..4"), ([5, 2, 1], "1..4"),
                                               ([1, 2], "entries"), ([[1, 2, 3]], "1-D"),
                                               ([1.5, 2.0, 1.0], "integers")])
def test_last_valid_refuses_lengths_that_do_not_fit(lengths: Any, word: str) -> None:
    with pytest.raises(ArgumentError, match="lengths") as caught:
        lt.last_valid(torch.zeros(3, 4, 2), lengths)
    assert word in str(caught.value)
    assert isinstance(caught.value, ValueError)


# ---------------------------------------------------------------------------------------------
# collate


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("padding_value", [0.0, -1.5])
def test_collate_of_a_dataset_batch_equals_collate_item_by_item(
        invoke: Any, tmp_path: Path, sequences: list[np.ndarray], batch_first: bool,
        padding_value: float) -> None:
    raw = tmp_path / "raw.npz"
    lengths = np.array([len(s) for s in sequences])
    np.savez(raw, values=np.concatenate(sequences), lengths=lengths,
             y=np.arange(len(sequences)) % 3)
    out = make(invoke, "truncate", raw, "--maxlen", "9", "-o", tmp_path / "r.npz")
    data = lt.SequenceDataset(out)
    indices = [4, 4, 0, 21, 13, 8]
    fast = lt.collate(data.__getitems__(indices), padding_value=padding_value,
                      batch_first=batch_first)
    slow = lt.collate([data[i] for i in indices], padding_value=padding_value,
                      batch_first=batch_first)
    assert fast.keys() == slow.keys() == {"x", "lengths", "mask", "y"}
    for key in fast:
        assert fast[key].dtype == slow[key].dtype, key
        assert torch.equal(fast[key], slow[key]), key
    assert fast["lengths"].dtype == torch.int64 and fast["lengths"].device.type == "cpu"
    assert fast["mask"].dtype == torch.bool
    cut = np.minimum(lengths[indices], 9)
    assert fast["lengths"].tolist() == cut.tolist()
    assert fast["mask"].sum(0 if not batch_first else 1).tolist() == cut.tolist()
    assert fast["y"].tolist() == [i % 3 for i in indices]
    x = fast["x"] if batch_first else fast["x"].transpose(0, 1)
    for row, index in enumerate(indices):
        np.testing.assert_array_equal(x[row, :cut[row]].numpy(), sequences[index][:9])
        assert bool((x[row, cut[row]:] == padding_value).all())


@pytest.mark.parametrize(("dtype", "tail"), [("float32", (8,)), ("int64", ()),
                                             ("float64", (2, 3)), ("uint8", (1,))])
def test_gather_padded_equals_copying_row_by_row(rng: np.random.Generator, dtype: str,
                                                 tail: tuple[int, ...]) -> None:
    """The windowed gather against a plain loop, with rows that end the array (their window
    would run past it), empty rows, duplicates and a batch wider than most rows."""
    lengths = rng.integers(0, 9, size=40)
    flat = rng.integers(1, 100, size=(int(lengths.sum()), *tail)).astype(dtype)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for picked in ([39, 38, 0, 5, 5, 39], [39], list(range(40)), [int(np.argmax(lengths))]):
        rows = np.array(picked)
        width = int(lengths[rows].max())
        out = lt.gather_padded(flat, starts[rows], lengths[rows], width, 7)
        expected = np.full((len(rows), width, *tail), 7, dtype=dtype)
        for k, row in enumerate(rows):
            expected[k, :lengths[row]] = flat[starts[row]:starts[row] + lengths[row]]
        assert out.dtype == flat.dtype and out.flags.c_contiguous and out.flags.writeable
        np.testing.assert_array_equal(out, expected)
    # a window wider than the whole array: every row copied on its own
    out = lt.gather_padded(flat[:3], np.array([0, 1]), np.array([3, 2]), 5, 0)
    np.testing.assert_array_equal(out[0, :3], flat[:3])
    np.testing.assert_array_equal(out[1, :2], flat[1:3])
    assert not out[0, 3:].any() and not out[1, 2:].any()


def test_collate_refuses_what_it_cannot_pack_naming_the_argument(tmp_path: Path) -> None:
    items = [(torch.ones(2, 1), 2), (torch.ones(0, 1), 0)]
    with pytest.raises(ArgumentError, match=r"pack=True.*item 1 has length 0"):
        lt.collate(items, pack=True)
    assert lt.collate(items)["mask"].tolist() == [[True, True], [False, False]]
    with pytest.raises(ArgumentError, match="batch item 1"):
        lt.collate([(torch.ones(2, 1), 2), (torch.ones(3, 1), 2)])
    with pytest.raises(ArgumentError, match="batch item 1"):
        lt.collate([(torch.ones(2, 1), 2), (torch.ones(3, 1), 3, 1)])
    with pytest.raises(ArgumentError, match="do not stack"):
        lt.collate([(torch.ones(2, 1), 2), (torch.ones(3, 2), 3)])
    with pytest.raises(ArgumentError, match=r"padding_value=2\.5"):
        lt.collate([(torch.ones(2, 1, dtype=torch.int64), 2)], padding_value=2.5)
    for bad in ({"pack": "yes"}, {"batch_first": 1}, {"padding_value": "0"}):
        with pytest.raises(ArgumentError, match=next(iter(bad))):
            lt.collate(items, **bad)
    np.savez(tmp_path / "i.npz", values=np.arange(3, dtype=np.int32).reshape(3, 1),
             lengths=np.array([1, 2]))
    data = lt.SequenceDataset(tmp_path / "i.npz")
    with pytest.raises(ArgumentError, match="padding_value=nan"):
        lt.collate(data.__getitems__([0, 1]), padding_value=float("nan"))


# ---------------------------------------------------------------------------------------------
# The sampler


def padded_steps(lengths: np.ndarray, batches: list[list[int]]) -> int:
    return sum(len(b) * int(lengths[b].max()) - int(lengths[b].sum()) for b in batches)


def test_every_index_once_per_epoch_and_epochs_differ(rng: np.random.Generator) -> None:
    lengths = rng.integers(1, 201, size=1000)
    sampler = lt.LengthBucketSampler(lengths, batch_size=64, seed=3)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 16
        assert sorted(i for b in batches for i in b) == list(range(1000))
        assert [len(b) for b in batches] == [64] * 15 + [1000 - 15 * 64]
        epochs.append(batches)
    assert epochs[0] != epochs[1] != epochs[2]
    again = lt.LengthBucketSampler(lengths, batch_size=64, seed=3)
    again.set_epoch(1)
    assert list(again) == epochs[1]  # the same seed and epoch: the same batches
    other = lt.LengthBucketSampler(lengths, batch_size=64, seed=4)
    other.set_epoch(1)
    assert list(other) != epochs[1]
    dropped = lt.LengthBucketSampler(lengths, batch_size=64, seed=3, drop_last=True)
    assert len(dropped) == 15 and all(len(b) == 64 for b in dropped)


def test_bucketing_cuts_padding_by_at_least_40_percent(rng: np.random.Generator) -> None:
    lengths = rng.integers(1, 201, size=20_000)
    bucketed = list(lt.LengthBucketSampler(lengths, batch_size=64, seed=0))
    shuffled = rng.permutation(len(lengths))
    random_batches = [shuffled[k:k + 64].tolist() for k in range(0, len(lengths), 64)]
    ours, theirs = padded_steps(lengths, bucketed), padded_steps(lengths, random_batches)
    assert ours <= 0.6 * theirs, (ours, theirs)


def test_unshuffled_batches_are_those_of_batch_bucket_by_length(
        invoke: Any, tmp_path: Path, sequences: list[np.ndarray]) -> None:
    src = write_ragged(tmp_path, "h5-lengths", sequences)
    out = make(invoke, "batch", src, "--size", "4", "--bucket-by-length", "-o",
               tmp_path / "b.npz")
    order = np.load(out)["order"]
    data = lt.SequenceDataset(src)
    sampler = lt.LengthBucketSampler(data, batch_size=4, shuffle=False)
    assert [i for b in sampler for i in b] == order.tolist()
    plan = plan_batches(data.lengths, 4, bucket=True)
    assert [len(b) for b in sampler] == plan.sizes.tolist()


@pytest.mark.parametrize("longest", [1000, 70_000])  # 16-bit sort keys, and int64 ones
def test_unshuffled_order_is_the_stable_sort_of_the_lengths(rng: np.random.Generator,
                                                            longest: int) -> None:
    lengths = rng.integers(0, longest, size=1000)
    lengths[::7] = 5  # many ties: a stable sort keeps them in index order
    sampler = lt.LengthBucketSampler(lengths, batch_size=64, shuffle=False)
    batches = list(sampler)
    assert all(isinstance(i, int) for b in batches for i in b)
    assert [i for b in batches for i in b] == np.argsort(lengths, kind="stable").tolist()
    assert [len(b) for b in batches] == [64] * 15 + [40]


@pytest.mark.parametrize(("count", "drop_last"), [(64 * 12, False), (1000, False),
                                                  (1000, True)])
def test_ranks_get_equal_disjoint_shares(rng: np.random.Generator, count: int,
                                         drop_last: bool) -> None:
    lengths = rng.integers(1, 201, size=count)
    shares = []
    for rank in range(3):
        sampler = lt.LengthBucketSampler(lengths, 64, seed=5, drop_last=drop_last,
                                         num_replicas=3, rank=rank)
        sampler.set_epoch(2)
        shares.append([i for b in sampler for i in b])
        assert len(list(sampler)) == len(sampler)
    counts = {len(lt.LengthBucketSampler(lengths, 64, num_replicas=3, rank=r,
                                         drop_last=drop_last)) for r in range(3)}
    assert len(counts) == 1  # every rank runs the same number of steps
    seen = [i for share in shares for i in share]
    if count % (64 * 3) == 0:  # batches divide evenly: disjoint and covering
        assert sorted(seen) == list(range(count))
    elif drop_last:  # disjoint; the samples of the dropped batches are missing
        assert len(set(seen)) == len(seen) and len(seen) == 15 * 64
    else:  # covering; the repeats are whole batches from the start of the epoch
        assert set(seen) == set(range(count)) and len(seen) > count


def test_sampler_arguments_are_checked_by_name() -> None:
    for kwargs, name in [({"batch_size": 0}, "batch_size"), ({"batch_size": "8"}, "batch_size"),
                         ({"batch_size": True}, "batch_size"), ({"seed": -1}, "seed"),
                         ({"shuffle": "no"}, "shuffle"), ({"drop_last": None}, "drop_last"),
                         ({"num_replicas": 0, "rank": 0}, "num_replicas"),
                         ({"num_replicas": 2, "rank": 2}, "rank"),
                         ({"batch_size": 20, "drop_last": True}, "batch_size")]:
        arguments = {"batch_size": 4, **kwargs}
        with pytest.raises(ArgumentError, match=name):
            lt.LengthBucketSampler([3, 1, 2], **arguments)
    with pytest.raises(ValueError, match="dataset"):
        lt.LengthBucketSampler([[1, 2]], 4)
    with pytest.raises(ValueError, match="epoch"):
        lt.LengthBucketSampler([3, 1, 2], 2).set_epoch(-1)


# ---------------------------------------------------------------------------------------------
# Datasets over every output layout


OUTPUTS = [  # (command args, suffix, padded side or None for ragged)
    (("pad",), ".npy", "post"),
    (("pad", "--padding", "pre"), ".npy", "pre"),
    (("pad", "--padding", "pre"), ".npz", "pre"),
    (("pad",), ".h5", "post"),
    (("pad", "--padding", "pre", "--value", "nan"), ".h5", "pre"),
    (("truncate", "--maxlen", "50"), ".npz", None),
    (("truncate", "--maxlen", "50"), ".h5", None),
]


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize(("args", "suffix", "side"), OUTPUTS)
def test_items_are_the_sequences_at_their_true_lengths(
        invoke: Any, tmp_path: Path, sequences: list[np.ndarray], args: tuple[str, ...],
        suffix: str, side: str | None, in_memory: bool) -> None:
    src = write_ragged(tmp_path, "npz-lengths", sequences)
    out = make(invoke, args[0], src, *args[1:], "-o", tmp_path / f"out{suffix}")
    with lt.SequenceDataset(out, in_memory=in_memory, dtype="float64") as data:
        assert data.in_memory is in_memory
        assert len(data) == len(sequences) and not data.has_targets
        assert data.side == (side or "post")
        assert data.lengths.tolist() == [len(s) for s in sequences]
        for index, expected in enumerate(sequences):
            x, length = data[index]
            assert length == len(expected) and x.dtype == torch.float64
            np.testing.assert_array_equal(x.numpy(), expected)
        x, length = data[-1]
        np.testing.assert_array_equal(x.numpy(), sequences[-1])
        with pytest.raises(IndexError):
            data[len(sequences)]
        with pytest.raises(IndexError):
            data.__getitems__([0, len(sequences)])


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])  # .npy: y in OUT.y.npy
def test_targets_come_as_third_item(invoke: Any, tmp_path: Path, suffix: str,
                                    in_memory: bool) -> None:
    out = make(invoke, "window", ROOT / "sample_data" / "series.npy", "--timesteps", "12",
               "--stride", "50", "--target", "0", "--horizon", "1", "-o",
               tmp_path / f"w{suffix}")
    series = np.load(ROOT / "sample_data" / "series.npy")
    data = lt.SequenceDataset(out, in_memory=in_memory)
    assert data.has_targets
    x, length, y = data[3]
    assert length == 12 and tuple(x.shape) == (12, 3)
    np.testing.assert_array_equal(x.numpy(), series[150:162])
    assert y.tolist() == [series[162, 0]]
    batch = lt.collate(data.__getitems__([3, 0]))
    assert batch["y"][:, 0].tolist() == [series[162, 0], series[12, 0]]


def labelled(tmp_path: Path, sequences: list[np.ndarray]) -> tuple[str, list[np.ndarray]]:
    """The sequences as a ragged input, and a per-timestep label sequence for each (their
    labels: 1 + the step, so a padded 0 is never a real label)."""
    src = write_ragged(tmp_path, "npz-lengths", sequences)
    labels = [np.arange(1, len(s) + 1, dtype=np.int64) * 10 + k
              for k, s in enumerate(sequences)]
    np.savez(tmp_path / "labels.npz", *labels)
    return src, labels


PER_STEP = [("pad", "--maxlen", "9", "--padding", "post"),   # 9 cuts the longest (post)
            ("pad", "--maxlen", "12", "--padding", "pre"),
            ("batch", "--size", "5", "--bucket-by-length", "--remainder", "pad")]


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("args", PER_STEP)
def test_per_timestep_targets_and_sample_weight_come_at_true_length_and_pad_with_zeros(
        invoke: Any, tmp_path: Path, sequences: list[np.ndarray], args: tuple[str, ...],
        in_memory: bool) -> None:
    """Outputs with per-timestep labels hold ``sample_weight`` ``(N, T)``: items carry both
    at the item's true length, taken off the same side as x, and collate pads them at the
    end with 0 -- the weights are then 1 exactly on the mask."""
    src, labels = labelled(tmp_path, sequences)
    out = make(invoke, args[0], src, "--y", tmp_path / "labels.npz", *args[1:], "-o",
               tmp_path / "out.h5")
    with h5py_file(out) as h5:
        assert any(key.startswith("sample_weight") for key in h5)  # what is under test
        order = h5["order"][()] if "order" in h5 else np.arange(len(sequences))
    data = lt.SequenceDataset(out, in_memory=in_memory)
    assert data.has_targets and data.has_weights and data.per_step
    maxlen = int(args[2]) if args[0] == "pad" else 99
    for row, source in enumerate(order.tolist()):
        x, length, y, weight = data[row]
        kept = min(len(sequences[source]), maxlen) if source >= 0 else 0
        assert length == kept
        if source >= 0:
            np.testing.assert_array_equal(x.numpy(), sequences[source][:kept])
            assert y.tolist() == labels[source][:kept].tolist()
        assert y.shape == (kept,) and weight.dtype == torch.float32
        assert weight.tolist() == [1.0] * kept
    indices = [len(data) - 1, 0, 3, 3, -2, 7]
    for batch_first in (True, False):
        fast = lt.collate(data.__getitems__(indices), batch_first=batch_first)
        slow = lt.collate([data[i] for i in indices], batch_first=batch_first)
        assert fast.keys() == slow.keys() == {"x", "lengths", "mask", "y", "sample_weight"}
        for key in fast:
            assert fast[key].dtype == slow[key].dtype, key
            assert torch.equal(fast[key], slow[key]), key
        assert fast["sample_weight"].dtype == torch.float32
        assert fast["y"].shape == fast["mask"].shape == fast["sample_weight"].shape
        assert torch.equal(fast["sample_weight"], fast["mask"].float())
        y = fast["y"] if batch_first else fast["y"].T
        for row, index in enumerate(indices):
            source = int(order[index])
            kept = int(fast["lengths"][row])
            expected = labels[source][:kept].tolist() if source >= 0 else []
            assert y[row].tolist() == expected + [0] * (y.shape[1] - kept)


def test_collate_pads_labels_with_the_value_the_output_recorded(
        invoke: Any, tmp_path: Path, sequences: list[np.ndarray]) -> None:
    """Labels padded with -1 by `pad --y-value -1`: the dataset says so, and collate pads them
    with it (both the batched and the item-by-item path); the default stays 0."""
    src, labels = labelled(tmp_path, sequences)
    out = make(invoke, "pad", src, "--y", tmp_path / "labels.npz", "--y-value", -1,
               "-o", tmp_path / "out.npz")
    data = lt.SequenceDataset(out)
    assert data.y_padding_value == -1.0
    indices = [0, 1, 2, 3]
    for batch in (data.__getitems__(indices), [data[i] for i in indices]):
        padded = lt.collate(batch, y_padding_value=data.y_padding_value)
        assert (padded["y"][~padded["mask"]] == -1).all() and (~padded["mask"]).any()
        for row, index in enumerate(indices):  # real steps: the labels themselves
            kept = int(padded["lengths"][row])
            assert padded["y"][row, :kept].tolist() == labels[index][:kept].tolist()
        assert (lt.collate(batch)["y"][~padded["mask"]] == 0).all()
    with pytest.raises(ArgumentError, match="y_padding_value"):
        lt.collate([data[0]], y_padding_value="pad")
    for bad in (0.5, float("nan")):  # the labels are int64: refused, not cut or crashed
        for batch in (data.__getitems__(indices), [data[i] for i in indices]):
            with pytest.raises(ArgumentError, match="cannot be stored in the int64 labels"):
                lt.collate(batch, y_padding_value=bad)
    tags = tmp_path / "tags.npz"
    np.savez(tags, *[np.arange(len(s), dtype=np.uint8) for s in sequences])
    small = lt.SequenceDataset(make(invoke, "pad", src, "--y", tags, "-o", tmp_path / "u8.npz"))
    for batch in (small.__getitems__(indices), [small[i] for i in indices]):
        with pytest.raises(ArgumentError, match=r"-100\.0 cannot be stored in the uint8 labels"):
            lt.collate(batch, y_padding_value=-100)
    plain = make(invoke, "pad", src, "-o", tmp_path / "plain.npz")
    assert lt.SequenceDataset(plain).y_padding_value == 0.0


def test_ragged_per_timestep_targets_are_padded_by_collate(
        invoke: Any, tmp_path: Path, sequences: list[np.ndarray]) -> None:
    """A ragged output's labels (no padding, so no sample_weight) come at true length too."""
    src, labels = labelled(tmp_path, sequences)
    out = make(invoke, "truncate", src, "--y", tmp_path / "labels.npz", "--maxlen", "6", "-o",
               tmp_path / "r.npz")
    data = lt.SequenceDataset(out)
    assert data.per_step and not data.has_weights
    x, length, y = data[2]
    assert tuple(x.shape) == (length, 3)
    assert y.tolist() == labels[2][:6].tolist() and length == min(len(sequences[2]), 6)
    batch = lt.collate(data.__getitems__([0, 1, 2]))
    assert "sample_weight" not in batch
    for row in range(3):
        kept = min(len(sequences[row]), 6)
        assert batch["y"][row, :kept].tolist() == labels[row][:6].tolist()
        assert not batch["y"][row, kept:].any()


@pytest.mark.parametrize("suffix", [".npz", ".npy"])  # .npy: OUT.sample_weight.npy beside it
def test_sample_weight_of_batch_remainder_pad_rows_reaches_each_batch(
        invoke: Any, tmp_path: Path, sequences: list[np.ndarray], suffix: str) -> None:
    """``batch --remainder pad`` writes ``sample_weight`` ``(N,)``, 0 on its pad rows: the
    items carry it and every collated batch has it as a float tensor beside ``y``."""
    src = write_ragged(tmp_path, "npz-lengths", sequences)
    np.save(tmp_path / "y.npy", np.arange(len(sequences)) + 1)
    padded = make(invoke, "pad", src, "--y", tmp_path / "y.npy", "-o", tmp_path / "p.npz")
    out = make(invoke, "batch", padded, "--size", "5", "--remainder", "pad", "-o",
               tmp_path / f"b{suffix}")
    data = lt.SequenceDataset(out)
    assert len(data) == 25 and data.has_weights and not data.per_step
    _, length, y, weight = data[24]  # a pad row
    assert (length, int(y), float(weight)) == (0, 0, 0.0) and weight.dtype == torch.float32
    x, length, y, weight = data[0]
    assert float(weight) == 1.0 and int(y) >= 1 and tuple(x.shape) == (length, 3)
    sampler = lt.LengthBucketSampler(data, batch_size=4, seed=3)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=lt.collate)
    seen = []
    for batch in loader:
        assert batch["sample_weight"].dtype == torch.float32
        assert batch["sample_weight"].shape == batch["y"].shape == batch["lengths"].shape
        seen += zip(batch["y"].tolist(), batch["sample_weight"].tolist(), strict=True)
    assert sorted(seen) == [(0, 0.0), (0, 0.0)] + [(k, 1.0) for k in range(1, 24)]


def test_a_batch_output_reads_as_its_rows(invoke: Any, tmp_path: Path,
                                          sequences: list[np.ndarray]) -> None:
    src = write_ragged(tmp_path, "npz-lengths", sequences)
    out = make(invoke, "batch", src, "--size", "5", "--bucket-by-length", "--remainder", "pad",
               "-o", tmp_path / "b.h5")
    data = lt.SequenceDataset(out)
    with h5py_file(out) as h5:
        rows = h5["order"][()]
    assert len(data) == 25  # 23 samples and 2 pad rows
    for row, index in enumerate(rows):
        x, length = data[row]
        expected = sequences[index] if index >= 0 else np.zeros((0, 3), np.float32)
        assert length == len(expected)
        np.testing.assert_array_equal(x.numpy(), expected)


def h5py_file(path: str) -> Any:
    import h5py

    return h5py.File(path, "r")


def test_large_outputs_are_read_per_batch_not_at_construction(
        tmp_path: Path, sequences: list[np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    """A spy on the one reader: nothing is read at construction when the data does not fit
    ``memory_limit``, and a batch is one read per run of consecutive indices."""
    from lstmshape.io.source import Source

    src = write_ragged(tmp_path, "h5-lengths", sequences)
    reads: list[tuple[int, int]] = []
    original = Source.read_block

    def spy(self: Source, start: int, stop: int) -> Any:
        reads.append((start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(Source, "read_block", spy)
    real_bytes = sum(s.nbytes for s in sequences)
    lazy = lt.SequenceDataset(src, memory_limit=real_bytes - 1)
    assert not lazy.in_memory and reads == []
    batch = lazy.__getitems__([9, 3, 4, 5, 20, 4])
    assert sorted(reads) == [(3, 6), (9, 10), (20, 21)]
    assert [np.asarray(x).tolist() for x, _ in batch] == \
        [sequences[i].tolist() for i in (9, 3, 4, 5, 20, 4)]
    reads.clear()
    loaded = lt.SequenceDataset(src, memory_limit=real_bytes)
    assert loaded.in_memory and reads == [(0, len(sequences))]
    reads.clear()
    loaded.__getitems__([9, 3])
    assert reads == []


def test_dataloader_workers_open_the_file_themselves(tmp_path: Path,
                                                     sequences: list[np.ndarray]) -> None:
    src = write_ragged(tmp_path, "h5-lengths", sequences)
    data = lt.SequenceDataset(src, in_memory=False)
    data[0]  # the parent has an open h5 file: a worker must not use it
    sampler = lt.LengthBucketSampler(data, 4, seed=1)

    def collate_in_worker(items: Any) -> dict[str, Any]:
        worker = torch.utils.data.get_worker_info().dataset  # the worker's copy
        return {**lt.collate(items), "reader_pid": worker._pid, "pid": os.getpid()}

    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler,
                                         collate_fn=collate_in_worker, num_workers=2)
    seen = []
    for batch in loader:
        seen += [int(n) for n in batch["lengths"]]
        assert batch["reader_pid"] == batch["pid"] != os.getpid()
    assert sorted(seen) == sorted(len(s) for s in sequences)


def test_dataset_arguments_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(LstmshapeError, match="no such file"):
        lt.SequenceDataset(tmp_path / "missing.npz")
    np.savez(tmp_path / "r.npz", values=np.zeros((3, 1)), lengths=np.array([1, 2]))
    with pytest.raises(ArgumentError, match="dtype"):
        lt.SequenceDataset(tmp_path / "r.npz", dtype="not-a-dtype")
    with pytest.raises(ArgumentError, match="memory_limit"):
        lt.SequenceDataset(tmp_path / "r.npz", memory_limit=0)
    with pytest.raises(ArgumentError, match="in_memory"):
        lt.SequenceDataset(tmp_path / "r.npz", in_memory="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Training


def accuracy_after_training(batches: Any, epochs: int, evaluate: Any) -> float:
    """Train LSTM(2, 8) -> Linear(8, 2) from a seeded start; ``batches(epoch)`` yields
    ``(packed x, lengths, y)``."""
    torch.manual_seed(11)
    lstm, head = torch.nn.LSTM(2, 8, batch_first=True), torch.nn.Linear(8, 2)
    optimizer = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=0.03)
    for epoch in range(epochs):
        for x, lengths, y in batches(epoch):
            out, _ = lstm(x)
            loss = torch.nn.functional.cross_entropy(head(lt.last_valid(out, lengths)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        x, lengths, y = evaluate
        out, _ = lstm(x)
        predicted = head(lt.last_valid(out, lengths)).argmax(1)
    return float((predicted == y).float().mean())


def test_training_through_lstmshape_torch_matches_hand_written_packing(
        invoke: Any, tmp_path: Path) -> None:
    """Label: is the last real step's first feature positive -- only a model that sees each
    sequence's true end learns it."""
    rng = np.random.default_rng(21)
    lengths = rng.integers(2, 25, size=320)
    values = rng.normal(size=(int(lengths.sum()), 2)).astype(np.float32)
    ends = np.cumsum(lengths) - 1
    labels = (values[ends, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "raw.npz", values=values, lengths=lengths, y=labels)
    out = make(invoke, "truncate", tmp_path / "raw.npz", "--maxlen", "30", "-o",
               tmp_path / "train.h5")  # nothing is cut: the real CLI writes the set
    train_count, epochs = 256, 12
    sequences = np.split(values, np.cumsum(lengths)[:-1])
    held_out = [torch.from_numpy(s) for s in sequences[train_count:]]
    evaluate = (torch.nn.utils.rnn.pack_sequence(held_out, enforce_sorted=False),
                torch.from_numpy(lengths[train_count:]), torch.from_numpy(labels[train_count:]))

    data = lt.SequenceDataset(out)
    sampler = lt.LengthBucketSampler(np.asarray(data.lengths[:train_count]), 32, seed=1)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler,
                                         collate_fn=lambda b: lt.collate(b, pack=True))

    def ours(epoch: int) -> Any:
        sampler.set_epoch(epoch)
        return ((b["x"], b["lengths"], b["y"]) for b in loader)

    tensors = [torch.from_numpy(s) for s in sequences[:train_count]]
    generator = torch.Generator().manual_seed(1)

    def by_hand(epoch: int) -> Any:
        order = torch.randperm(train_count, generator=generator).tolist()
        for k in range(0, train_count, 32):
            chosen = order[k:k + 32]
            padded = torch.nn.utils.rnn.pad_sequence([tensors[i] for i in chosen],
                                                     batch_first=True)
            batch_lengths = torch.tensor([len(tensors[i]) for i in chosen])
            yield (torch.nn.utils.rnn.pack_padded_sequence(padded, batch_lengths,
                                                           batch_first=True,
                                                           enforce_sorted=False),
                   batch_lengths, torch.from_numpy(labels[chosen]))

    ours_accuracy = accuracy_after_training(ours, epochs, evaluate)
    hand_accuracy = accuracy_after_training(by_hand, epochs, evaluate)
    print(f"accuracy: lstmshape.torch {ours_accuracy:.3f}, by hand {hand_accuracy:.3f}")
    assert ours_accuracy >= 0.9 and hand_accuracy >= 0.9, (ours_accuracy, hand_accuracy)
    assert abs(ours_accuracy - hand_accuracy) <= 0.06, (ours_accuracy, hand_accuracy)


# ---------------------------------------------------------------------------------------------
# verify --framework torch


@pytest.mark.parametrize(("args", "suffix", "samples"), [
    (("pad", "--padding", "pre"), ".npy", 23), (("truncate", "--maxlen", "6"), ".h5", 23),
    (("batch", "--size", "5", "--remainder", "pad"), ".npz", 5)])  # batched: its first batch
def test_verify_with_torch(invoke: Any, tmp_path: Path, sequences: list[np.ndarray],
                           args: tuple[str, ...], suffix: str, samples: int) -> None:
    import json

    src = write_ragged(tmp_path, "npz-lengths", sequences)
    out = make(invoke, args[0], src, *args[1:], "-o", tmp_path / f"out{suffix}")
    result = invoke("verify", out, "--framework", "torch", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    model = report["model"]
    assert report["ok"] and model["mask"] == "packed" and model["finite"]
    assert model["output_shape"] == [samples, 1] and model["samples"] == samples
    assert "nn.LSTM(3, 4)" in model["layers"]
    assert "tensorflow" not in model
    shown = invoke("verify", out, "--framework", "torch")
    assert shown.exit_code == 0 and "nn.LSTM" in shown.output


def test_model_check_runs_empty_sequences_from_the_initial_state() -> None:
    seqs = lstmshape.SequenceSet.from_sequences([np.ones((3, 2)), np.ones((0, 2)),
                                                 np.full((1, 2), np.nan)])
    report = lt.model_check(seqs)
    assert report["error"] is None and report["output_shape"] == [3, 1]
    assert report["finite"] is False  # the NaN sequence; verify then warns, as with Keras
    report = lt.model_check(lstmshape.SequenceSet.from_sequences([np.ones((0, 2))]))
    assert report["output_shape"] == [1, 1] and report["finite"]


def test_verify_framework_is_checked_and_torch_can_be_missing(invoke: Any, tmp_path: Path,
                                                              sequences: list[np.ndarray]
                                                              ) -> None:
    src = write_ragged(tmp_path, "npz-lengths", sequences)
    out = make(invoke, "pad", src, "-o", tmp_path / "p.npy")
    bad = invoke("verify", out, "--framework", "jax")
    assert bad.exit_code == 2 and "jax" in bad.output
    code = ("import sys; sys.modules['torch'] = None\n"
            "from lstmshape.cli import main\nmain(sys.argv[1:])")
    done = run_python(code, "verify", out, "--framework", "torch", timeout=120)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ")
    assert "pip install 'lstmshape[torch]'" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------------
# Imports, the README, the benchmark


def test_importing_lstmshape_torch_does_not_import_torch(tmp_path: Path) -> None:
    np.savez(tmp_path / "r.npz", values=np.zeros((3, 1)), lengths=np.array([1, 2]))
    code = ("import sys, lstmshape; lstmshape.torch\n"
            "from lstmshape.torch import SequenceDataset, LengthBucketSampler\n"
            "data = SequenceDataset(sys.argv[1]); list(LengthBucketSampler(data, 2))\n"
            "print('HEAVY', [m for m in ('torch', 'tensorflow') if m in sys.modules])")
    done = run_python(code, str(tmp_path / "r.npz"))
    assert "HEAVY []" in done.stdout, done.stderr


def test_without_torch_items_say_how_to_install_it(tmp_path: Path) -> None:
    np.savez(tmp_path / "r.npz", values=np.zeros((3, 1)), lengths=np.array([1, 2]))
    code = ("import sys; sys.modules['torch'] = None\n"
            "import lstmshape.torch as lt\n"
            "try:\n    lt.SequenceDataset(sys.argv[1])[0]\n"
            "except lt.TorchMissing as err:\n    print('MISSING', err)")
    done = run_python(code, str(tmp_path / "r.npz"))
    assert "MISSING" in done.stdout and "pip install 'lstmshape[torch]'" in done.stdout


def readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, heading
    return match.group(1)


def test_readme_pytorch_loop_runs(invoke: Any, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code = readme_block("### Training with PyTorch")
    statements = [line for line in code.splitlines() if line.strip() and
                  not line.startswith("#")]
    assert len(statements) <= 13  # about ten lines, as the issue asks
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    monkeypatch.chdir(tmp_path)
    for line in code.splitlines():  # the shell commands it names in comments, run for real
        if line.startswith("# lstmshape "):
            result = invoke(*shlex.split(line[len("# lstmshape "):]))
            assert result.exit_code == 0, result.output
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert np.isfinite(namespace["loss"].item())


def test_benchmark_row_runs_at_a_small_size(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setenv("LSTMSHAPE_BENCH_TORCH_SAMPLES", "2000")
    bench.bench_torch(1.0, tmp_path)
    names = [row[0] for row in bench.ROWS]
    assert any(name.startswith("TORCH epoch of 2,000") for name in names), names
    padding = next(row for row in bench.ROWS if row[0].startswith("TORCH padded"))
    assert float(padding[3]) < 0.6  # bucketed batches pad far less than random ones
    assert os.listdir(tmp_path) == []
