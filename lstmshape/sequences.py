"""The one data type every operation shares: a set of variable-length multivariate sequences.

A :class:`SequenceSet` holds N sequences of F features in two arrays:

* ``values``  -- shape ``(sum(lengths), F)``, the timesteps of all sequences one after another;
* ``lengths`` -- shape ``(N,)``, int64, how many timesteps each sequence has.

This is the "flat values + row lengths" layout of ``tf.RaggedTensor`` and of the ``.npz``/``.h5``
files lstmshape writes for ragged results. A dense ``(N, T, F)`` tensor is the special case where
every length equals ``T``; :meth:`SequenceSet.from_dense` turns one into a set without copying.

Example:
    >>> import numpy as np
    >>> seqs = SequenceSet.from_sequences([np.ones((3, 2)), np.zeros((1, 2))])
    >>> seqs.lengths.tolist(), seqs.values.shape, seqs.n_features
    ([3, 1], (4, 2), 2)
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import numpy.typing as npt

from .errors import ArgumentError, InputError, Param
from .io.arrays import check_dtype

Side = Literal["pre", "post"]
SIDES: tuple[Side, ...] = ("pre", "post")
LENGTH_DTYPE = np.dtype(np.int64)
#: what a PyTorch user passes for a side (``pad_sequence(padding_side=...)``), and ours for it
TORCH_SIDES = {"left": "pre", "right": "post"}


def check_side(side: object, name: str = "side") -> Side:
    """``side`` itself when it is ``"pre"`` or ``"post"``; anything else is an
    :class:`~lstmshape.errors.ArgumentError` naming the parameter and the allowed values (never
    silently one of them, as Keras raises too).

    Example:
        >>> check_side("pre", "padding")
        'pre'
        >>> check_side("right", "padding")
        Traceback (most recent call last):
        ...
        lstmshape.errors.ArgumentError: padding='right': expected 'pre' or 'post' (PyTorch's ...
    """
    if isinstance(side, str) and side in SIDES:
        return side
    hint = (f" (PyTorch's {side!r} is {TORCH_SIDES[side]!r})"
            if isinstance(side, str) and side in TORCH_SIDES else "")
    raise ArgumentError(Param(name, side), f": expected 'pre' or 'post'{hint}")


def rows_as_scalars(values: np.ndarray) -> np.ndarray:
    """View a C-contiguous ``(K, F)`` array as ``(K,)`` opaque records of one timestep each.

    Fancy and boolean indexing then move one ``F * itemsize`` block per timestep instead of F
    separate elements, several times faster for the gathers and scatters that padding does.

    Example:
        >>> import numpy as np
        >>> rows_as_scalars(np.zeros((5, 3), dtype=np.float32)).shape
        (5,)
    """
    contiguous = np.ascontiguousarray(values)
    row_bytes = contiguous.shape[1] * contiguous.dtype.itemsize
    if row_bytes == 0:
        return contiguous.reshape(contiguous.shape[0], -1)[:, :0].view(np.uint8).reshape(-1)
    return contiguous.view(np.dtype((np.void, row_bytes))).reshape(contiguous.shape[0])


def positions_in_sequence(lengths: np.ndarray) -> np.ndarray:
    """For every timestep of a flat ``values`` array, its index inside its own sequence.

    Example:
        >>> import numpy as np
        >>> positions_in_sequence(np.array([3, 0, 2])).tolist()
        [0, 1, 2, 0, 1]
    """
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    positions: np.ndarray = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
    return positions


def real_mask(lengths: np.ndarray, timesteps: int, side: Side) -> np.ndarray:
    """``(n, T)`` True where a dense row holds a real timestep of a sequence of ``lengths``:
    the first ``len_i`` slots for ``side="post"`` padding, the last ``len_i`` for ``"pre"``.

    Example:
        >>> import numpy as np
        >>> real_mask(np.array([1, 3]), 3, "pre").astype(int).tolist()
        [[0, 0, 1], [1, 1, 1]]
    """
    steps = np.arange(timesteps)
    if check_side(side) == "post":
        mask: np.ndarray = steps[None, :] < lengths[:, None]
    else:
        mask = steps[None, :] >= (timesteps - lengths)[:, None]
    return mask


def bounds_within(costs: npt.ArrayLike, budget: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges of items whose summed cost stays under ``budget``.

    Every range holds at least one item, so an item over budget gets a range of its own. The
    one way lstmshape cuts work into blocks: samples of an input, output batches, pad's
    per-thread blocks.

    Example:
        >>> bounds_within([3, 3, 3, 10, 1], 6)
        [(0, 2), (2, 3), (3, 4), (4, 5)]
    """
    ends = np.cumsum(np.asarray(costs, dtype=np.int64))
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < ends.shape[0]:
        base = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, base + budget, side="right")), start + 1)
        bounds.append((start, stop))
        start = stop
    return bounds


@dataclass(frozen=True)
class SequenceSet:
    """N sequences of F features: flat ``values (sum(lengths), F)`` and ``lengths (N,)``."""

    values: np.ndarray
    lengths: np.ndarray

    def __post_init__(self) -> None:
        check_dtype(self.values.dtype, "sequences")  # strings, objects: not for an LSTM
        if self.values.ndim != 2:
            raise InputError(f"sequence values must be 2-D (timesteps, features), "
                             f"found shape {self.values.shape}")
        if self.lengths.ndim != 1:
            raise InputError(f"lengths must be 1-D, found shape {self.lengths.shape}")
        if self.lengths.size and int(self.lengths.min()) < 0:
            raise InputError(f"lengths must not be negative, found {int(self.lengths.min())}")
        total = int(self.lengths.sum())
        if total != self.values.shape[0]:
            raise InputError(f"lengths add up to {total} timesteps but values hold "
                             f"{self.values.shape[0]}")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dense(cls, tensor: np.ndarray, lengths: npt.ArrayLike | None = None,
                   side: Side = "post") -> SequenceSet:
        """Sequences of a dense ``(N, T, F)`` (or ``(N, T)``) tensor.

        ``lengths`` are the true lengths when the tensor is padded; the real timesteps sit at
        the start of each row for ``side="post"`` padding and at the end for ``"pre"``. Without
        lengths every sequence has all T timesteps and ``values`` is a view of the tensor.

        Example:
            >>> import numpy as np
            >>> s = SequenceSet.from_dense(np.arange(6).reshape(2, 3), lengths=[3, 1])
            >>> s.values.ravel().tolist(), s.lengths.tolist()
            ([0, 1, 2, 3], [3, 1])
        """
        check_side(side)
        tensor = as_three_d(tensor)
        n, t, f = tensor.shape
        if lengths is None:
            return cls(tensor.reshape(n * t, f), np.full(n, t, dtype=LENGTH_DTYPE))
        true_lengths = np.asarray(lengths, dtype=LENGTH_DTYPE).reshape(-1)
        if true_lengths.shape[0] != n:
            raise InputError(f"{true_lengths.shape[0]} lengths given for {n} samples")
        if true_lengths.size and (true_lengths.min() < 0 or true_lengths.max() > t):
            raise InputError(f"lengths must lie in 0..{t} for {t} timesteps, found "
                             f"{int(true_lengths.min())}..{int(true_lengths.max())}")
        if bool(np.all(true_lengths == t)):
            return cls(tensor.reshape(n * t, f), true_lengths)
        return cls(tensor[real_mask(true_lengths, t, side)], true_lengths)

    @classmethod
    def from_sequences(cls, sequences: Sequence[npt.ArrayLike],
                       n_features: int | None = None) -> SequenceSet:
        """Sequences from a list of ``(len_i, F)`` or ``(len_i,)`` arrays.

        Their dtypes are unified as numpy promotes them, except that an empty sequence's dtype
        does not count (``np.asarray([])`` is float64; Keras skips empty sequences too).

        Example:
            >>> seqs = SequenceSet.from_sequences([[1, 2, 3], [], [4]])
            >>> seqs.lengths.tolist(), seqs.dtype
            ([3, 0, 1], dtype('int64'))
        """
        fast = _concatenate_uniform(sequences, n_features)
        if fast is not None:
            return fast
        arrays = [np.asarray(s) for s in sequences]
        shaped = [a.reshape(-1, 1) if a.ndim == 1 else a for a in arrays]
        for index, array in enumerate(shaped):
            if array.ndim != 2:
                raise InputError(f"sequence {index} has shape {arrays[index].shape}; expected "
                                 f"(timesteps,) or (timesteps, features)")
        widths = {a.shape[1] for a in shaped if a.shape[0]} or {a.shape[1] for a in shaped}
        if n_features is None:
            if len(widths) > 1:
                raise InputError(f"sequences have different feature counts: {sorted(widths)}")
            n_features = widths.pop() if widths else 1
        elif widths - {n_features}:
            raise InputError(f"sequences have {sorted(widths)} features, expected {n_features}")
        # empty sequences given as (0,) arrays fit any feature count
        shaped = [a if a.shape[0] else a.reshape(0, n_features) for a in shaped]
        lengths = np.array([a.shape[0] for a in shaped], dtype=LENGTH_DTYPE)
        counted = [a for a in shaped if a.shape[0]] or shaped  # not the empty ones' dtypes
        values = np.concatenate(counted, axis=0) if shaped else np.zeros((0, n_features))
        return cls(np.ascontiguousarray(values), lengths)

    # -- properties -----------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.values.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def offsets(self) -> np.ndarray:
        """Row splits: ``N + 1`` offsets, sequence i is ``values[offsets[i]:offsets[i+1]]``."""
        return np.concatenate([np.zeros(1, dtype=LENGTH_DTYPE), np.cumsum(self.lengths)])

    @property
    def max_length(self) -> int:
        return int(self.lengths.max()) if self.lengths.size else 0

    @property
    def is_uniform(self) -> bool:
        """True when every sequence has the same length (the set is a dense tensor)."""
        return bool(self.lengths.size == 0 or np.all(self.lengths == self.lengths[0]))

    # -- access ---------------------------------------------------------------------------------
    def sequence(self, index: int) -> np.ndarray:
        """The ``(len_i, F)`` timesteps of sequence ``index`` (a view)."""
        offsets = self.offsets
        return self.values[offsets[index]:offsets[index + 1]]

    def to_list(self) -> list[np.ndarray]:
        """Every sequence as its own ``(len_i, F)`` view."""
        return np.split(self.values, np.cumsum(self.lengths)[:-1]) if self.n_samples else []

    def select(self, start: int, stop: int) -> SequenceSet:
        """The consecutive samples ``start:stop`` (views, no copy).

        Example:
            >>> SequenceSet.from_sequences([[1], [2, 3], [4]]).select(1, 3).lengths.tolist()
            [2, 1]
        """
        offsets = self.offsets
        return SequenceSet(self.values[offsets[start]:offsets[stop]], self.lengths[start:stop])

    def take(self, indices: npt.ArrayLike) -> SequenceSet:
        """The samples at ``indices``, in that order (a copy).

        Example:
            >>> SequenceSet.from_sequences([[1], [2, 3], [4]]).take([2, 0]).values.ravel().tolist()
            [4, 1]
        """
        order = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[order]
        starts = self.offsets[:-1][order]
        source_rows = np.repeat(starts, lengths) + positions_in_sequence(lengths)
        return SequenceSet(self.values[source_rows], lengths)

    def astype(self, dtype: npt.DTypeLike) -> SequenceSet:
        return SequenceSet(self.values.astype(dtype, copy=False), self.lengths)


def _concatenate_uniform(sequences: Sequence[npt.ArrayLike],
                         n_features: int | None) -> SequenceSet | None:
    """The common case fast: sequences that ``np.concatenate`` accepts as they are.

    ``np.concatenate`` itself checks that every item has the same number of dimensions and the
    same feature count, in C; lengths come from ``len()`` mapped in C too. A list of two million
    token arrays then converts in a fraction of a second. Anything irregular returns None and
    takes the careful path, which names the offending sequence.
    """
    if not len(sequences):
        return None
    try:
        values = np.concatenate(sequences, axis=0)
        sized = cast("Sequence[Sized]", sequences)
        lengths = np.fromiter(map(len, sized), dtype=LENGTH_DTYPE, count=len(sequences))
    except (ValueError, TypeError):
        return None
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    if values.ndim != 2 or (n_features is not None and values.shape[1] != n_features):
        return None
    if int(lengths.sum()) != values.shape[0]:
        return None
    if lengths.size and not lengths.all():  # an empty sequence's dtype does not count
        kept = [sequences[int(i)] for i in np.flatnonzero(lengths)]
        if kept:
            values = np.concatenate(kept, axis=0).reshape(values.shape)
    return SequenceSet(values, lengths)


def as_three_d(tensor: np.ndarray) -> np.ndarray:
    """A 2-D ``(N, T)`` array gains a feature axis; a 3-D one is returned as is.

    Example:
        >>> import numpy as np
        >>> as_three_d(np.zeros((4, 5))).shape
        (4, 5, 1)
    """
    if tensor.ndim == 2:
        return tensor[:, :, np.newaxis]
    if tensor.ndim != 3:
        raise InputError(f"expected a 2-D (samples, timesteps) or 3-D (samples, timesteps, "
                         f"features) array, found shape {tensor.shape}")
    return tensor
