"""Per-feature scaling over the real timesteps only: statistics merged block by block.

:class:`Moments` holds, per feature, the count, mean, sum of squared deviations (``m2``), minimum
and maximum of the values seen so far, in float64. Two of them merge exactly with Chan, Golub &
LeVeque's pairwise formulas, so statistics gathered a block at a time equal those of all the
values at once (to float64 rounding), and padding never counts: only the real timesteps of a
:class:`~lstmshape.sequences.SequenceSet` reach them. NaN values are left out of the statistics
and stay NaN, as scikit-learn's scalers do.

:class:`Normalization` is what a fit gives: ``(x - shift) / scale`` per feature, the same numbers
``sklearn.preprocessing.StandardScaler`` (``shift`` = mean, ``scale`` = std, ddof 0) or
``MinMaxScaler`` (``shift`` = min, ``scale`` = max - min) would use; a constant feature gets
scale 1, as theirs do.

Example:
    >>> import numpy as np
    >>> from lstmshape.sequences import SequenceSet
    >>> seqs = SequenceSet.from_sequences([[1.0, 2.0, 3.0], [5.0]])
    >>> out, stats = normalize(seqs)
    >>> stats.shift.tolist(), np.round(stats.scale, 4).tolist()
    ([2.75], [1.479])
    >>> np.round(out.values[:, 0], 3).tolist()
    [-1.183, -0.507, 0.169, 1.521]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import ArgumentError, InputError, Param
from ..sequences import SequenceSet
from .truncate import as_sequence_set

Method = Literal["standard", "minmax"]
METHODS: tuple[Method, ...] = ("standard", "minmax")
EPS = float(np.finfo(np.float64).eps)


def check_method(method: object) -> Method:
    """``method`` when it is ``"standard"`` or ``"minmax"``; else an ArgumentError.

    Example:
        >>> check_method("minmax")
        'minmax'
    """
    if isinstance(method, str) and method in METHODS:
        return method
    raise ArgumentError(Param("method", method), ": expected 'standard' or 'minmax'")


def output_dtype(dtype: np.dtype) -> np.dtype:
    """Scaled values are float32, except that float64 data stays float64.

    Example:
        >>> output_dtype(np.dtype("int16")), output_dtype(np.dtype("float64"))
        (dtype('float32'), dtype('float64'))
    """
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


#: Rows of float64 work converted at once: about 256 KB, so temporaries stay in the L2 cache.
CHUNK_BYTES = 256 << 10


def chunk_rows(features: int) -> int:
    """How many rows of ``features`` float64 values make one cache-sized chunk."""
    return max(CHUNK_BYTES // (8 * max(features, 1)), 1)


def column_reduce(ufunc: np.ufunc, rows: np.ndarray) -> np.ndarray:
    """``ufunc.reduce(rows, axis=0)`` of a ``(rows, F)`` array by halving it: a few calls over
    long contiguous rows instead of numpy's inner loop of F per row (10x faster for small F).

    Example:
        >>> column_reduce(np.fmax, np.array([[1, 5], [7, 2], [3, 3]])).tolist()
        [7, 5]
    """
    while len(rows) > 1:
        half = len(rows) // 2
        head = ufunc(rows[:half], rows[half:2 * half])
        rows = np.concatenate([head, rows[2 * half:]]) if len(rows) % 2 else head
    result: np.ndarray = rows[0]
    return result


@dataclass(frozen=True)
class Moments:
    """Per-feature count, mean, sum of squared deviations, min and max (float64)."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray

    @classmethod
    def empty(cls, features: int) -> Moments:
        """Nothing seen yet: the identity of :meth:`merge`."""
        zeros = np.zeros(features, dtype=np.float64)
        return cls(zeros, zeros, zeros, np.full(features, np.inf), np.full(features, -np.inf))

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        """The moments of a ``(rows, F)`` block, NaN left out (see :class:`Accumulator`).

        Example:
            >>> m = Moments.of(np.array([[1.0], [3.0], [np.nan]]))
            >>> m.count.tolist(), m.mean.tolist(), m.m2.tolist()
            ([2.0], [2.0], [2.0])
        """
        accumulator = Accumulator(values.shape[1])
        accumulator.add(values)
        return accumulator.result()

    @classmethod
    def of_chunk(cls, raw: np.ndarray) -> Moments:
        """The moments of one cache-sized chunk of rows, exactly: its mean first, then the
        squared deviations from it, in float64."""
        chunk = raw.astype(np.float64)
        features = chunk.shape[1]
        # column sums as a matrix-vector product: numpy's sum(axis=0) of a narrow (rows, F)
        # array runs an inner loop of F per row, 20x slower
        sums = np.ones(len(chunk)) @ chunk
        present = None
        count = np.full(features, float(len(chunk)))
        if not bool(np.all(np.isfinite(sums))):  # a NaN (or inf) in the chunk
            present = ~np.isnan(chunk)
            chunk[~present] = 0.0
            count = present.sum(axis=0).astype(np.float64)
            sums = chunk.sum(axis=0)
        mean = np.where(count > 0, sums / np.maximum(count, 1), 0.0)
        chunk -= mean
        if present is not None:
            chunk[~present] = 0.0
        np.multiply(chunk, chunk, out=chunk)
        m2 = np.ones(len(chunk)) @ chunk
        low = column_reduce(np.fmin, raw).astype(np.float64)  # fmin: NaN left out
        high = column_reduce(np.fmax, raw).astype(np.float64)
        return cls(count, mean, m2, low, high)

    def merge(self, other: Moments) -> Moments:
        """Both sets of values together, exactly (Chan et al.'s pairwise update).

        Example:
            >>> data = np.arange(10.0).reshape(5, 2)
            >>> both = Moments.of(data[:2]).merge(Moments.of(data[2:]))
            >>> np.allclose(both.m2, Moments.of(data).m2), both.mean.tolist()
            (True, [4.0, 5.0])
        """
        count = self.count + other.count
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(count > 0, other.count / count, 0.0)
        delta = other.mean - self.mean
        mean = self.mean + delta * share
        m2 = self.m2 + other.m2 + np.square(delta) * self.count * share
        return Moments(count, mean, m2, np.fmin(self.minimum, other.minimum),
                       np.fmax(self.maximum, other.maximum))


@dataclass(frozen=True)
class Normalization:
    """``(x - shift) / scale`` per feature; ``constant``: features whose scale was set to 1."""

    method: Method
    shift: np.ndarray
    scale: np.ndarray
    constant: np.ndarray

    @classmethod
    def fit(cls, moments: Moments, method: Method = "standard") -> Normalization:
        """The scaler of these moments, as scikit-learn's would be fitted on the same values.

        A feature without a single (non-NaN) value gets shift 0 and scale 1.
        """
        seen = moments.count > 0
        if check_method(method) == "standard":
            shift = np.where(seen, moments.mean, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                variance = np.where(seen, moments.m2 / np.maximum(moments.count, 1), 0.0)
            # sklearn's _is_constant_feature: a variance within float64 rounding of zero
            bound = moments.count * EPS * variance + np.square(moments.count * shift * EPS)
            constant = variance <= bound
            scale = np.where(constant, 1.0, np.sqrt(variance))
        else:
            shift = np.where(seen, moments.minimum, 0.0)
            spread = np.where(seen, moments.maximum - moments.minimum, 0.0)
            constant = spread < 10 * EPS  # sklearn's _handle_zeros_in_scale
            scale = np.where(constant, 1.0, spread)
        return cls(method, shift, scale, constant & seen)

    def apply(self, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """``values`` (``(rows, F)``) scaled, as ``dtype``; computed in float64.

        Example:
            >>> n = Normalization("minmax", np.array([1.0]), np.array([4.0]), np.array([False]))
            >>> n.apply(np.array([[1], [5], [3]]), np.dtype("float32")).ravel().tolist()
            [0.0, 1.0, 0.5]
        """
        result = np.empty(values.shape, dtype=dtype)
        inverse = 1.0 / self.scale
        step = chunk_rows(values.shape[1])
        for first in range(0, values.shape[0], step):  # float64 temporaries stay in cache
            chunk = values[first:first + step].astype(np.float64)
            chunk -= self.shift
            chunk *= inverse
            result[first:first + step] = chunk
        return result

    @property
    def features(self) -> int:
        return int(self.shift.shape[0])

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``normalization``: ``{method, mean, std}`` or ``{method, min, max}``.

        ``max`` is ``min + scale`` (so a constant feature records ``min + 1``): what is stored is
        what is applied, and :meth:`from_json` gives the same scaler back.
        """
        shift = [float(v) for v in self.shift]
        scale = [float(v) for v in self.scale]
        if self.method == "standard":
            return {"method": "standard", "mean": shift, "std": scale}
        return {"method": "minmax", "min": shift,
                "max": [float(v) for v in self.shift + self.scale]}

    @classmethod
    def from_json(cls, data: object, where: str) -> Normalization:
        """The scaler a manifest's ``normalization`` records; one clear error if damaged."""
        method = data.get("method") if isinstance(data, dict) else None
        keys = {"standard": ("mean", "std"), "minmax": ("min", "max")}.get(str(method))
        try:
            assert isinstance(data, dict) and keys is not None
            first = np.array(data[keys[0]], dtype=np.float64)
            second = np.array(data[keys[1]], dtype=np.float64)
            assert first.ndim == 1 and first.shape == second.shape
        except (AssertionError, KeyError, TypeError, ValueError):
            raise InputError(f"{where}: damaged manifest: 'normalization' is not {{method, mean, "
                             f"std}} or {{method, min, max}}; remake it") from None
        scale = second if method == "standard" else second - first
        if not bool(np.all(np.isfinite(first))) or not bool(np.all(scale > 0)):
            raise InputError(f"{where}: damaged manifest: 'normalization' has a non-finite "
                             f"shift or a scale that is not positive; remake it")
        return cls(check_method(method), first, scale, np.zeros(first.shape, dtype=bool))


#: Chunks of :func:`chunk_rows` rows per group (``LSTMSHAPE_NORMALIZE_GROUP_CHUNKS`` overrides
#: it; the tests use 1 to get many statistics tasks on small data). 256 chunks are 64 MB of
#: float64 rows: a 1 TB input is some 30,000 groups, whose moments a client holds at once.
GROUP_CHUNKS = 256
GROUP_CHUNKS_ENV = "LSTMSHAPE_NORMALIZE_GROUP_CHUNKS"


def group_chunks() -> int:
    """Chunks per group, as :data:`GROUP_CHUNKS` or its environment override says."""
    return max(int(os.environ.get(GROUP_CHUNKS_ENV) or GROUP_CHUNKS), 1)


class Accumulator:
    """The moments of rows added a block at a time, whatever the blocks, merged over one fixed
    grid of the rows of all (counted from the first row of all, never from a block's):

    - rows are cut into chunks of :func:`chunk_rows` rows (a block's last rows wait for the
      next block's first ones), each chunk's moments computed exactly
      (:meth:`Moments.of_chunk`), with its float64 temporaries in the CPU's cache;
    - chunks are folded in order into groups of ``group`` chunks, each group's fold starting
      from :meth:`Moments.empty` (:meth:`groups`);
    - groups are folded in order into the result (:func:`merge_groups`).

    Floating-point sums depend on their association, so this grid *is* the result: it depends
    on the rows alone, not on ``--memory-limit`` (the blocks), nor on the engine or its number
    of workers. ``--engine dask`` runs one statistics task per group-aligned stretch of rows
    (:class:`~lstmshape.plan.MomentsTask`: an Accumulator of its own over those rows) and the
    client merges their groups in row order: the same operations on the same numbers as the
    local engine's one Accumulator, so the same bits, and byte-identical outputs.

    Example:
        >>> data = np.arange(12.0).reshape(6, 2)
        >>> a, b = Accumulator(2), Accumulator(2)
        >>> a.add(data); b.add(data[:1]); b.add(data[1:4]); b.add(data[4:])
        >>> ra, rb = a.result(), b.result()
        >>> np.array_equal(ra.mean, rb.mean) and np.array_equal(ra.m2, rb.m2), ra.mean.tolist()
        (True, [5.0, 6.0])
    """

    def __init__(self, features: int, step: int | None = None,
                 group: int | None = None) -> None:
        self.features = features
        self.step = chunk_rows(features) if step is None else step
        self.group = group_chunks() if group is None else group
        self.pending: np.ndarray | None = None
        self.current = Moments.empty(features)  # the fold of the open group's chunks
        self.chunks = 0  # chunks in the open group
        self.done: list[Moments] = []  # each finished group's fold

    @property
    def group_rows(self) -> int:
        """Rows of one whole group."""
        return self.step * self.group

    def add(self, values: np.ndarray) -> None:
        first = 0
        if self.pending is not None:  # complete the chunk the last block began
            first = self.step - len(self.pending)
            self.pending = np.concatenate([self.pending, values[:first]])
            if len(self.pending) < self.step:
                return
            self.add_chunk(self.pending)
            self.pending = None
        whole = first + (len(values) - first) // self.step * self.step
        for start in range(first, whole, self.step):
            self.add_chunk(values[start:start + self.step])
        if whole < len(values):
            self.pending = values[whole:].copy()

    def add_chunk(self, rows: np.ndarray) -> None:
        self.current = self.current.merge(Moments.of_chunk(rows))
        self.chunks += 1
        if self.chunks == self.group:
            self.done.append(self.current)
            self.current, self.chunks = Moments.empty(self.features), 0

    def groups(self) -> list[Moments]:
        """Each group's moments, in row order (a last group of fewer chunks too)."""
        if self.pending is not None:
            self.add_chunk(self.pending)
            self.pending = None
        if self.chunks:
            self.done.append(self.current)
            self.current, self.chunks = Moments.empty(self.features), 0
        return list(self.done)

    def result(self) -> Moments:
        """The moments of every row added."""
        return merge_groups(self.features, self.groups())


def merge_groups(features: int, groups: list[Moments]) -> Moments:
    """The moments of consecutive groups (:meth:`Accumulator.groups`), folded in row order."""
    total = Moments.empty(features)
    for moments in groups:
        total = total.merge(moments)
    return total


def fit(seqs: SequenceSet, method: Method = "standard") -> Normalization:
    """The scaler of the real timesteps of ``seqs`` (one block; see :class:`Moments` to merge).

    Example:
        >>> fit(SequenceSet.from_sequences([[0.0, 10.0], [5.0]]), "minmax").scale.tolist()
        [10.0]
    """
    return Normalization.fit(Moments.of(seqs.values), method)


def normalize(seqs: SequenceSet | list[npt.ArrayLike], method: Method = "standard",
              statistics: Normalization | None = None) -> tuple[SequenceSet, Normalization]:
    """Scale every feature of ``seqs`` over its real timesteps; the result and the scaler.

    ``statistics`` applies a scaler fitted elsewhere (the training set's) instead of fitting
    one. The result is float32 (float64 data stays float64). Equals
    ``StandardScaler().fit_transform`` / ``MinMaxScaler().fit_transform`` of the concatenated
    sequences, ``np.concatenate(seqs)``.

    Example:
        >>> train = SequenceSet.from_sequences([[0.0], [4.0, 8.0]])
        >>> scaled, stats = normalize(train, "minmax")
        >>> scaled.values.ravel().tolist(), normalize(train, statistics=stats)[0].dtype
        ([0.0, 0.5, 1.0], dtype('float64'))
    """
    seqs = as_sequence_set(seqs)
    if statistics is None:
        statistics = fit(seqs, method)
    elif statistics.features != seqs.n_features:
        raise InputError(f"the statistics are for {statistics.features} features, the "
                         f"sequences have {seqs.n_features}")
    values = statistics.apply(seqs.values, output_dtype(seqs.dtype))
    return SequenceSet(values, seqs.lengths), statistics
