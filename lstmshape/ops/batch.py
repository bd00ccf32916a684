"""Grouping samples into batches: plain, shuffled, bucketed by length, or stateful.

A :class:`BatchPlan` is computed from the true lengths alone (no data): which source sample goes
to each output row (``order``, ``-1`` for a row added by ``remainder="pad"``), how many rows each
batch has and how many timesteps it is padded to. :func:`batch` then pads the data batch by batch.

* plain: source order, or a seeded permutation with ``shuffle``; the last ``N % B`` samples (of
  that order) are the remainder, kept as a short last batch, dropped, or padded with empty rows.
* ``bucket``: the same remainder; the other samples are sorted by length and cut into batches, so
  each batch is padded only to its own longest sequence (``shuffle`` then shuffles within equal
  lengths and the order of the batches). Far less padding when lengths vary.
* ``stateful``: row ``j`` of batch ``k + 1`` continues row ``j`` of batch ``k`` -- batch ``k`` row
  ``j`` is sample ``j * num_batches + k`` -- the layout a stateful Keras LSTM needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..errors import ArgumentError, OptionError, Param
from ..sequences import LENGTH_DTYPE, SequenceSet, Side, check_side
from .pad import PadResult, pad

Remainder = Literal["keep", "drop", "pad"]
REMAINDERS = ("keep", "drop", "pad")
PAD_ROW = -1


@dataclass(frozen=True)
class BatchPlan:
    """Where every sample goes: output rows batch after batch, and each batch's padded width."""

    order: np.ndarray
    sizes: np.ndarray
    widths: np.ndarray
    lengths: np.ndarray
    size: int
    #: the padding of the same rows batched in their order before sorting by length
    padding_before_bucketing: int = 0

    @property
    def num_batches(self) -> int:
        return int(self.sizes.shape[0])

    @property
    def offsets(self) -> np.ndarray:
        """``num_batches + 1`` row offsets: batch k is rows ``offsets[k]:offsets[k + 1]``."""
        return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(self.sizes)])

    @property
    def uniform(self) -> bool:
        """True when every batch has the same rows and width (one 4-D array can hold them)."""
        return bool(np.all(self.sizes == self.size) and np.all(self.widths == self.widths[0])
                    if self.num_batches else True)

    @property
    def padded_timesteps(self) -> int:
        """Padding timesteps in all batches: their ``rows * width`` minus the real timesteps."""
        return int((self.sizes * self.widths).sum() - self.lengths.sum())

    def batch_rows(self, index: int) -> slice:
        offsets = self.offsets
        return slice(int(offsets[index]), int(offsets[index + 1]))


def plan_batches(lengths: npt.ArrayLike, size: int, *, remainder: Remainder = "keep",
                 shuffle: bool = False, seed: int = 0, bucket: bool = False,
                 stateful: bool = False, maxlen: int | None = None,
                 width: int | None = None) -> BatchPlan:
    """Plan batches of ``size`` rows for samples of these true ``lengths``.

    Without ``bucket``, every batch is ``maxlen`` wide if given, else ``width`` (a dense input's
    timesteps) if given, else as wide as its own longest sequence. With ``bucket``, each batch is
    as wide as its own longest sequence, capped by ``maxlen``. Longer sequences are cut to the
    width (their first timesteps are kept).

    Example:
        >>> plan = plan_batches([5, 1, 4, 2, 3], 2, bucket=True)
        >>> plan.order.tolist(), plan.widths.tolist()
        ([1, 3, 4, 2, 0], [2, 4, 5])
    """
    lengths = np.asarray(lengths, dtype=LENGTH_DTYPE).reshape(-1)
    check_size_and_remainder(size, remainder)
    if maxlen is not None and (isinstance(maxlen, bool)
                               or not isinstance(maxlen, int | np.integer) or maxlen < 1):
        raise ArgumentError(Param("maxlen", maxlen), ": expected a positive integer or None")
    order, sizes, unsorted = plan_rows(lengths, size, remainder=remainder, shuffle=shuffle,
                                       seed=seed, bucket=bucket, stateful=stateful)
    row_lengths, widths = fit_widths(lengths, order, sizes, bucket, maxlen, width)
    before = row_lengths
    if bucket:  # what the same rows would need in their order before sorting by length
        before, before_widths = fit_widths(lengths, unsorted, sizes, False, maxlen, width)
    else:
        before_widths = widths
    padding_before = int((sizes * before_widths).sum() - before.sum())
    return BatchPlan(order, sizes, widths, row_lengths, size, padding_before)


def check_size_and_remainder(size: int, remainder: str) -> None:
    """Refuse a batch size that is not a positive integer and an unknown ``remainder``."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ArgumentError(Param("size", size), ": expected a positive integer")
    if remainder not in REMAINDERS:
        raise ArgumentError(Param("remainder", remainder),
                            f": expected one of {', '.join(map(repr, REMAINDERS))}")


def plan_rows(lengths: np.ndarray, size: int, *, remainder: Remainder = "keep",
              shuffle: bool = False, seed: int = 0, bucket: bool = False,
              stateful: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of :func:`plan_batches`, before any width: ``(order, sizes, unsorted)``.

    ``order`` is the source sample of every output row (``-1`` for a pad row), ``sizes`` the
    rows of each batch, ``unsorted`` the same rows before bucketing sorted them by length. No
    maxlen changes them, so one call serves every maxlen (``inspect``'s trade-off table).

    Example:
        >>> order, sizes, _ = plan_rows(np.array([5, 1, 4, 2, 3]), 2, bucket=True)
        >>> order.tolist(), sizes.tolist()
        ([1, 3, 4, 2, 0], [2, 2, 1])
    """
    check_size_and_remainder(size, remainder)
    count = lengths.shape[0]
    rest = count % size
    if stateful:
        if shuffle or bucket:
            other = (Param("shuffle", True) if shuffle
                     else Param("bucket", True, flag="--bucket-by-length"))
            raise OptionError(Param("stateful", True), " cannot be combined with ", other,
                              ": a stateful LSTM needs sample j of batch k+1 to continue sample "
                              "j of batch k")
        if rest and remainder != "drop":
            raise OptionError(Param("stateful", True), " needs the sample count to divide by ",
                              Param("size"), f": {count} samples, batch size {size} leaves "
                              f"{rest}; pass ", Param("remainder", "drop", shown="drop"),
                              f" to drop the last {rest} samples")
        batches = count // size
        order = np.arange(batches * size, dtype=np.int64).reshape(size, batches).T.reshape(-1)
        sizes = np.full(batches, size, dtype=np.int64)
        unsorted = order
    else:
        rng = np.random.default_rng(seed)
        base = rng.permutation(count).astype(np.int64) if shuffle else np.arange(count,
                                                                                 dtype=np.int64)
        main, tail = base[:count - rest], base[count - rest:]
        unsorted = base if remainder != "drop" else main
        if remainder == "pad" and rest:
            unsorted = np.concatenate([base, np.full(size - rest, PAD_ROW, dtype=np.int64)])
        if bucket:
            # Sort every kept sample, then cut: sorting the remainder apart would leave one
            # batch of arbitrary lengths, often as wide as the longest sequence. Stable, so
            # equal lengths keep the (shuffled) order and --seed still matters.
            kept = main if remainder == "drop" else base
            keys = lengths[kept]
            if keys.size and int(keys.min()) >= 0 and int(keys.max()) < 2**16:
                keys = keys.astype(np.uint16)  # the same order: numpy radix-sorts 16-bit keys
            kept = kept[np.argsort(keys, kind="stable")]
            cut = len(kept) - (rest if remainder != "drop" else 0)
            main, tail = kept[:cut], kept[cut:]
            if shuffle:
                main = main.reshape(-1, size)[rng.permutation(len(main) // size)].reshape(-1)
        sizes = np.full(len(main) // size, size, dtype=np.int64)
        order = main
        if rest and remainder != "drop":
            if remainder == "pad":
                tail = np.concatenate([tail, np.full(size - rest, PAD_ROW, dtype=np.int64)])
            order = np.concatenate([main, tail])
            sizes = np.append(sizes, len(tail))
    if count and not sizes.size:
        raise OptionError(Param("remainder", "drop", shown="drop"), f" with {count} samples "
                          f"and ", Param("size", size), " drops every sample; use a smaller ",
                          Param("size"))
    return order, sizes, unsorted


def fit_widths(lengths: np.ndarray, order: np.ndarray, sizes: np.ndarray, bucket: bool,
               maxlen: int | None, width: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Each output row's length once cut to its batch's width, and the widths themselves."""
    row_lengths = np.where(order >= 0, lengths[np.maximum(order, 0)], 0).astype(LENGTH_DTYPE)
    starts = np.cumsum(sizes) - sizes
    longest = (np.maximum.reduceat(row_lengths, starts) if sizes.size
               else np.zeros(0, dtype=np.int64))
    if bucket or (maxlen is None and width is None):
        widths = longest if maxlen is None else np.minimum(longest, maxlen)
    else:
        fixed = maxlen if maxlen is not None else width
        widths = np.full(sizes.shape[0], fixed, dtype=np.int64)
    # A batch of empty sequences only still gets one (padding) timestep: Keras' LSTM fails on
    # zero timesteps ("slice index 0 of dimension 1 out of bounds"). The rows' lengths stay 0,
    # like the rows --remainder pad adds (fully masked rows; cuDNN's kernel refuses those).
    widths = np.maximum(widths, 1).astype(np.int64)
    return np.minimum(row_lengths, np.repeat(widths, sizes)), widths


def bucketed_padding(lengths: npt.ArrayLike, size: int,
                     maxlens: Sequence[int]) -> list[tuple[int, int]]:
    """``(padded timesteps, slots)`` of ``batch --bucket-by-length --size SIZE --maxlen M`` for
    each M: the figures of ``plan_batches(lengths, size, bucket=True, maxlen=M)``, with the rows
    planned (and the lengths sorted) once for all the maxlens.

    Example:
        >>> bucketed_padding([5, 1, 4, 2, 3], 2, [2, 5])
        [(1, 10), (2, 17)]
        >>> plan_batches([5, 1, 4, 2, 3], 2, bucket=True, maxlen=5).padded_timesteps
        2
    """
    lengths = np.asarray(lengths, dtype=LENGTH_DTYPE).reshape(-1)
    order, sizes, _ = plan_rows(lengths, size, bucket=True)
    figures = []
    for maxlen in maxlens:
        if maxlen < 1:
            raise OptionError(f"--maxlen must be at least 1, got {maxlen}")
        row_lengths, widths = fit_widths(lengths, order, sizes, True, maxlen, None)
        slots = int((sizes * widths).sum())
        figures.append((slots - int(row_lengths.sum()), slots))
    return figures


def with_uniform_width(plan: BatchPlan) -> BatchPlan:
    """The same batches, every one padded to the widest (for a single 4-D array).

    Example:
        >>> with_uniform_width(plan_batches([5, 1, 4, 2], 2, bucket=True)).widths.tolist()
        [5, 5]
    """
    widest = int(plan.widths.max()) if plan.num_batches else 0
    widths = np.full_like(plan.widths, widest)
    padding = int((plan.sizes * widths).sum() - plan.lengths.sum())
    return BatchPlan(plan.order, plan.sizes, widths, plan.lengths, plan.size, padding)


def pad_batch(seqs: SequenceSet, width: int, padding: Side = "post", value: float = 0.0,
              dtype: npt.DTypeLike | None = None) -> PadResult:
    """One batch: its sequences (empty ones for pad rows) padded or cut to ``width`` steps."""
    check_side(padding, "padding")
    return pad(seqs, width, padding, "post", value, dtype, allow_lossy=True)


@dataclass(frozen=True)
class Batches:
    """The padded batches of :func:`batch` and the plan that made them."""

    plan: BatchPlan
    x: list[np.ndarray]
    lengths: list[np.ndarray]


def batch(seqs: SequenceSet | list[npt.ArrayLike], size: int, *, remainder: Remainder = "keep",
          shuffle: bool = False, seed: int = 0, bucket: bool = False, stateful: bool = False,
          maxlen: int | None = None, padding: Side = "post", value: float = 0.0) -> Batches:
    """Batches of ``size`` sequences, each padded to its own longest (or ``maxlen``).

    Example:
        >>> out = batch([[1, 2, 3], [4], [5, 6], [7]], 2, bucket=True)
        >>> [b[:, :, 0].tolist() for b in out.x], out.plan.order.tolist()
        ([[[4], [7]], [[5, 6, 0], [1, 2, 3]]], [1, 3, 2, 0])
    """
    check_side(padding, "padding")
    if not isinstance(seqs, SequenceSet):
        seqs = SequenceSet.from_sequences(seqs)
    plan = plan_batches(seqs.lengths, size, remainder=remainder, shuffle=shuffle, seed=seed,
                        bucket=bucket, stateful=stateful, maxlen=maxlen)
    rows = take_rows(seqs, plan.order)
    xs, lens = [], []
    for index in range(plan.num_batches):  # one pad per batch, each a vectorised copy
        where = plan.batch_rows(index)
        result = pad_batch(rows.select(where.start, where.stop), int(plan.widths[index]),
                           padding, value)
        xs.append(result.tensor)
        lens.append(result.lengths)
    return Batches(plan, xs, lens)


def take_rows(seqs: SequenceSet, order: np.ndarray) -> SequenceSet:
    """The samples at ``order`` in that order, an empty sequence where ``order`` is -1.

    Example:
        >>> take_rows(SequenceSet.from_sequences([[1], [2, 3]]), np.array([1, -1])).lengths.tolist()
        [2, 0]
    """
    picked = seqs.take(np.maximum(order, 0))
    if not bool(np.any(order < 0)):
        return picked
    lengths = np.where(order >= 0, picked.lengths, 0).astype(LENGTH_DTYPE)
    keep = np.repeat(order >= 0, picked.lengths)
    return SequenceSet(picked.values[keep], lengths)
