"""Seeded splits of N samples into parts (train/validation/test), from metadata alone.

:func:`split_indices` returns, for each part, the sorted sample indices it gets. Three ways:

* plain: a permutation of the samples cut at the parts' sizes;
* ``classes`` (``--stratify``): each class is permuted and cut on its own, every part getting
  ``floor`` or ``ceil`` of its fraction of that class (so within 1 of the exact proportion);
  which parts get the extra samples is chosen so that the parts' totals stay within about one
  sample of their fractions too;
* ``groups`` (``--by-source``): whole groups (the samples sharing a ``source_index``) are
  permuted and assigned, so no group is ever split between two parts.

The same ``seed`` gives the same split: a ``numpy.random.default_rng(seed)`` drives every draw.

Example:
    >>> [part.tolist() for part in split_indices(5, [0.6, 0.4], seed=0)]
    [[2, 3, 4], [0, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import ArgumentError, InputError, Param
from ..sequences import SequenceSet
from .truncate import as_sequence_set

#: fractions may add up to 1 within this much (``0.8,0.1,0.1`` is 0.9999999999999999)
FRACTION_TOLERANCE = 1e-6


def check_fractions(fractions: Sequence[float] | np.ndarray) -> np.ndarray:
    """The fractions as float64, checked: at least one, each in (0, 1], adding up to 1.

    Example:
        >>> check_fractions([0.8, 0.1, 0.1]).tolist()
        [0.8, 0.1, 0.1]
    """
    values = np.asarray(list(fractions), dtype=np.float64)
    shown = ",".join(f"{v:g}" for v in values)
    if values.ndim != 1 or values.size == 0 or not bool(np.all(np.isfinite(values))) \
            or not bool(np.all(values > 0)):
        raise ArgumentError(Param("fractions", shown, shown=shown),
                            ": expected positive fractions such as 0.8,0.1,0.1")
    if abs(float(values.sum()) - 1.0) > FRACTION_TOLERANCE:
        raise ArgumentError(Param("fractions", shown, shown=shown),
                            f": they add up to {float(values.sum()):g}, not 1")
    shares: np.ndarray = values / values.sum()
    return shares


def are_classes(row_shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether targets with rows of ``row_shape`` and ``dtype`` are one integer class per
    sample, what ``stratify`` needs.

    Example:
        >>> are_classes((1,), np.dtype("int64")), are_classes((3,), np.dtype("int64"))
        (True, False)
    """
    return tuple(row_shape) in ((), (1,)) and dtype.kind in "iub"


def allocate(total: int, fractions: np.ndarray, owed: np.ndarray | None = None) -> np.ndarray:
    """``total`` items shared by the parts: each gets the floor of its share, and the items left
    go one each to the parts owed most (default: the largest remainders; ties: the first part).

    Example:
        >>> allocate(10, np.array([0.75, 0.25])).tolist(), allocate(3, np.ones(2) / 2).tolist()
        ([8, 2], [2, 1])
    """
    exact = fractions * total
    counts: np.ndarray = np.floor(exact).astype(np.int64)
    left = max(total - int(counts.sum()), 0)
    priority = exact - counts if owed is None else owed - counts
    counts[np.argsort(-priority, kind="stable")[:left]] += 1
    return counts


def split_indices(count: int, fractions: Sequence[float] | np.ndarray, seed: int = 0,
                  classes: np.ndarray | None = None,
                  groups: np.ndarray | None = None) -> list[np.ndarray]:
    """The sorted sample indices of each part (see the module's docstring).

    Example:
        >>> labels = np.array([0, 0, 0, 0, 1, 1])
        >>> [np.bincount(labels[p], minlength=2).tolist()
        ...  for p in split_indices(6, [0.5, 0.5], 1, classes=labels)]
        [[2, 1], [2, 1]]
    """
    shares = check_fractions(fractions)
    rng = np.random.default_rng(seed)
    if classes is not None and groups is not None:
        raise ArgumentError(Param("stratify", True),
                            " and by_source cannot be combined: a source's samples may hold "
                            "several classes")
    if groups is not None:
        return by_group(np.asarray(groups), shares, rng)
    if classes is None:
        order = rng.permutation(count)
        return cut(order, allocate(count, shares))
    labels = np.asarray(classes).reshape(count)
    by_class = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, labels[by_class][1:] != labels[by_class][:-1]])
    parts: list[list[np.ndarray]] = [[] for _ in shares]
    assigned = np.zeros(len(shares), dtype=np.int64)
    seen = 0
    for members in np.split(by_class, starts[1:]) if count else []:
        seen += len(members)
        counts = allocate(len(members), shares, owed=shares * seen - assigned)
        assigned += counts
        for part, chosen in zip(parts, cut(rng.permutation(members), counts), strict=True):
            part.append(chosen)
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]


def cut(order: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """``order`` cut into consecutive pieces of ``counts``, each sorted."""
    pieces = np.split(np.asarray(order, dtype=np.int64), np.cumsum(counts)[:-1])
    return [np.sort(piece) for piece in pieces]


def by_group(groups: np.ndarray, shares: np.ndarray,
             rng: np.random.Generator) -> list[np.ndarray]:
    """Whole groups to parts: in a random order of the groups, each goes to the part whose
    share of the samples its middle sample falls in."""
    names, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(len(names))
    ends = np.cumsum(sizes[order])
    middles = ends - sizes[order] / 2
    bounds = np.cumsum(shares)[:-1] * len(groups)
    part_of_group = np.empty(len(names), dtype=np.int64)
    part_of_group[order] = np.searchsorted(bounds, middles, side="right")
    part_of_sample = part_of_group[inverse.reshape(-1)]
    return [np.flatnonzero(part_of_sample == part) for part in range(len(shares))]


@dataclass(frozen=True)
class Part:
    """One part of a partition: its sequences, their source indices (``order``) and targets."""

    sequences: SequenceSet
    order: np.ndarray
    y: np.ndarray | None = None


def partition(seqs: SequenceSet | list[npt.ArrayLike], fractions: Sequence[float],
              seed: int = 0, *, y: npt.ArrayLike | None = None, stratify: bool = False,
              source_index: npt.ArrayLike | None = None) -> list[Part]:
    """Split sequences into parts of ``fractions`` (train/validation/test), seeded.

    ``y`` (one row per sequence) follows the split; ``stratify`` keeps the classes of an
    integer ``y`` in proportion; ``source_index`` keeps the sequences that share one in a
    single part. Each part keeps the source order (``order``), as ``lstmshape partition``
    writes it.

    Example:
        >>> train, test = partition([[1], [2, 3], [4], [5, 6, 7]], [0.5, 0.5], seed=1,
        ...                         y=[0, 1, 0, 1], stratify=True)
        >>> train.order.tolist(), train.y.tolist(), test.sequences.lengths.tolist()
        ([0, 1], [0, 1], [1, 3])
    """
    sequences = as_sequence_set(seqs)
    count = sequences.n_samples
    targets = None if y is None else np.asarray(y)
    if targets is not None and targets.shape[:1] != (count,):
        raise InputError(f"y has shape {targets.shape}, not one row per sequence of the {count}")
    classes = None
    if stratify:
        if targets is None or not are_classes(targets.shape[1:], targets.dtype):
            raise ArgumentError(Param("stratify", True), " needs y: one integer class per "
                                "sequence")
        classes = targets.reshape(count)
    groups = None if source_index is None else np.asarray(source_index).reshape(count)
    return [Part(sequences.take(index), index, None if targets is None else targets[index])
            for index in split_indices(count, fractions, seed, classes, groups)]
