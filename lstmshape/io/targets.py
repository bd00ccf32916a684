"""Targets ``y`` composed into a :class:`~lstmshape.io.source.Source`: per sample or per step.

Two kinds, as the manifest's ``targets.kind`` says:

* ``sequence``: one row per sample, first dimension N, any trailing shape (a class, a vector).
  Commands hand it on in output order (``Job.targets``): it follows every shuffle and split.
* ``timestep`` (sequence labelling): one label row per real timestep -- ragged with x's lengths,
  or dense ``(N, T[, k])`` beside a dense x of T timesteps. It is held as a second Source with
  x's lengths and padding side (:attr:`Source.step_targets`), so commands pad, cut, split and
  batch it with the very code that handles x.

``--y SRC`` names the targets explicitly (:func:`with_explicit_targets`); without it a ``y``
beside ``x``/``values`` is picked up by the reader and its kind resolved here
(:func:`resolve_target_kind`): an lstmshape output's manifest says it, else the shape does.

Example:
    >>> import numpy as np, tempfile, os
    >>> from lstmshape.io.source import open_source
    >>> folder = tempfile.mkdtemp(); x = os.path.join(folder, "x.npy")
    >>> np.save(x, np.zeros((3, 4, 2))); np.save(x + ".labels.npy", np.arange(12).reshape(3, 4))
    >>> with open_source(x, y=x + ".labels.npy") as src:
    ...     src.target_kind, src.step_targets.n_features, src.target_shape
    ('timestep', 1, (4,))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..errors import ArgumentError, InputError, Param
from ..sequences import SequenceSet
from ..words import plural
from .arrays import check_dtype

if TYPE_CHECKING:
    from .arrays import StoredArray
    from .source import Source

TargetKind = Literal["sequence", "timestep"]
#: ``--y-kind``: ``auto`` infers the kind from the shapes (see :func:`resolve_target_kind`).
TARGET_KINDS = ("auto", "sequence", "timestep")


class ReshapedRows:
    """A stored array read as rows of another row shape (a series ``(N, F)`` read back as
    ``(N,)``; a dense ``(N, T, k)`` stays as it is)."""

    def __init__(self, read_rows_of: Callable[[int, int], np.ndarray], shape: tuple[int, ...],
                 dtype: np.dtype) -> None:
        self._read = read_rows_of
        self._shape = shape
        self._dtype = dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        return self._read(start, stop).reshape(stop - start, *self._shape[1:])


def with_explicit_targets(source: Source, spec: str, kind: str = "auto", *,
                          memory_limit: int, allow_pickle: bool = False) -> Source:
    """``source`` with the targets of ``spec`` (``--y PATH[:KEY]``), which win over a ``y`` in
    the input; the targets' files join the source's records (the manifest lists them, with
    their sha256). Read through the one reader: any format an input may have."""
    check_kind(kind)
    opened, array = open_target_array(spec, memory_limit=memory_limit,
                                      allow_pickle=allow_pickle)
    source.closers.extend(opened.closers)
    opened.closers = []  # the source closes them now
    records = [*source.records, *opened.records]
    if array is None:  # ragged labels: one label row per real timestep
        check_same_lengths(source, opened, spec)
        if kind == "sequence":
            raise InputError(f"{spec}: ragged targets are per-timestep labels; --y-kind sequence "
                             f"needs one row per sample, shape ({source.n_samples}, ...)")
        # a label row of k values a step is a (k,) label: padded to (N, T, k), as dense ones;
        # one value a step, (len,) or (len, 1), is one label a step: (N, T)
        step_shape = (opened.n_features,) if opened.n_features > 1 else ()
        return replace(source, targets=None, records=records, target_file=spec,
                       step_targets=replace(opened, step_shape=step_shape))
    flat = kind != "sequence" and one_row_a_step(source, array.shape[0])
    if array.shape[:1] != (source.n_samples,) and not flat:
        raise InputError(f"{spec}: targets of shape {array.shape} do not match {source.location}"
                         f" of {source.n_samples} samples ({source_shape(source)}); y needs one "
                         f"row per sample")
    found = replace(source, targets=array, step_targets=None, records=records,
                    target_file=spec)
    return resolve_target_kind(found, kind)


def open_target_array(spec: str, *, memory_limit: int,
                      allow_pickle: bool = False) -> tuple[Source, StoredArray | None]:
    """Open ``spec`` (``--y``) through the one reader: the opened Source (its records, its
    closers) and its rows as one array, or None when it holds ragged label sequences.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "y.npy"); np.save(path, np.arange(6))
        >>> opened, rows = open_target_array(path, memory_limit=10**8)
        >>> rows.shape, rows.read_rows(2, 4).tolist()
        ((6,), [2, 3])
        >>> opened.close()
    """
    from .source import open_source

    opened = open_source(spec, memory_limit=memory_limit, allow_pickle=allow_pickle,
                         series=True)
    shape = opened.records[0].shape
    if opened.layout == "series":  # a 1-D or 2-D array: rows along its first axis
        array: StoredArray | None = ReshapedRows(opened.read_rows, shape, opened.dtype)
    elif opened.kind == "dense" and opened.stored_reader is not None:
        array = ReshapedRows(opened.stored_reader, shape, opened.dtype)
    else:
        array = None
    if array is not None:
        check_dtype(array.dtype, spec)
    return opened, array


def resolve_target_kind(source: Source, kind: str = "auto") -> Source:
    """The source with per-timestep targets made a label Source (:attr:`Source.step_targets`)
    when they are per-timestep: as ``kind`` says, else as the input's manifest recorded, else
    when y is ``(N, T[, k])`` beside a dense x of T timesteps (or, beside a ragged x, holds
    one row per real timestep)."""
    check_kind(kind)
    stored = source.targets
    if stored is None or source.step_targets is not None:
        return source
    # x's manifest describes x's own y: not the targets --y names instead
    recorded = (source.manifest.target_kind
                if source.manifest is not None and source.target_file is None else None)
    flat = one_row_a_step(source, stored.shape[0])
    if kind == "auto":
        dense_steps = (source.timesteps is not None and len(stored.shape) >= 2
                       and stored.shape[0] == source.n_samples
                       and stored.shape[1] == source.timesteps)
        # as many rows as samples (every sequence 1 step long): per sample, unless recorded
        per_step = (flat and stored.shape[0] != source.n_samples) or dense_steps
        kind = recorded or ("timestep" if per_step else "sequence")
    where = source.target_file or f"{source.location.path}:y"
    if kind == "sequence":
        if stored.shape[0] != source.n_samples:
            raise InputError(f"{where}: targets of shape {stored.shape} do not match "
                             f"{source.location} of {source.n_samples} samples; y needs one row "
                             f"per sample")
        return source
    if flat:  # ragged labels stored flat beside values: x's lengths split them
        offsets = np.concatenate([[0], np.cumsum(source.lengths)])
        lengths = source.lengths

        def read_flat(start: int, stop: int) -> SequenceSet:
            rows = stored.read_rows(int(offsets[start]), int(offsets[stop]))
            return SequenceSet(rows.reshape(len(rows), -1), lengths[start:stop])

        steps = label_source(source, read_flat, stored.dtype, tuple(stored.shape[1:]),
                             kind="ragged", layout="values+lengths", timesteps=None)
        return replace(source, targets=None, step_targets=steps)
    batches = source.batches or [(0, source.n_samples, source.timesteps or 0)]
    if (len(stored.shape) < 2 or len(stored.shape) > 3
            or (not source.batches and stored.shape[1] != source.timesteps)):
        raise InputError(f"{where}: per-timestep targets of shape {stored.shape} do not match "
                         f"{source.location} ({source_shape(source)}); they need shape "
                         f"({source.n_samples}, {source.timesteps or 'T'}[, k]), or ragged "
                         f"labels with the same lengths")
    lengths, side, step_shape = source.lengths, source.side, tuple(stored.shape[2:])
    starts = np.array([low for low, _, _ in batches], dtype=np.int64)

    def read_labels(start: int, stop: int) -> SequenceSet:
        """Real steps of the labels of samples start:stop: a dense tensor's rows, or those
        of each stored batch the range touches (each batch has its own width)."""
        parts = [np.zeros((0, step_features(step_shape)), dtype=stored.dtype)]
        first = max(int(np.searchsorted(starts, start, side="right")) - 1, 0)
        for low, high, width in batches[first:]:
            if low >= stop:
                break
            a, b = max(start, low), min(stop, high)
            rows = stored.read_rows(a, b).reshape(b - a, width, -1)
            parts.append(SequenceSet.from_dense(rows, lengths[a:b], side).values)
        return SequenceSet(np.concatenate(parts), lengths[start:stop])

    # y stays beside the labels: a dense y is what the framework bridges read as it is
    steps = label_source(source, read_labels, stored.dtype, step_shape,
                         kind="ragged" if source.timesteps is None else "dense")
    return replace(source, step_targets=steps)


def one_row_a_step(source: Source, rows: int) -> bool:
    """Whether ``rows`` target rows are one a real timestep of a ragged x: per-timestep labels
    stored flat, split by x's lengths (when ``rows`` is also the sample count, only the kind
    the caller knows tells them from one row a sample)."""
    return source.timesteps is None and rows == int(source.lengths.sum())


def label_source(source: Source, read: Callable[[int, int], SequenceSet], dtype: np.dtype,
                 step_shape: tuple[int, ...] = (), **changes: object) -> Source:
    """Per-timestep labels as x's twin (:attr:`Source.step_targets`): x's samples, lengths and
    side, with blocks that ``read(start, stop)`` gives (one ``step_shape`` label row per real
    timestep), so the commands pad, cut, split and batch them with the code that handles x.
    ``changes`` are the twin's own fields where they differ from x's (its kind or layout).

    Example:
        >>> import numpy as np, tempfile, os
        >>> from lstmshape.io.source import open_source
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy"); np.save(path, np.zeros((2, 3, 4)))
        >>> labels = np.arange(6, dtype=np.int8).reshape(6, 1)  # one row per real timestep
        >>> def read(start, stop):
        ...     return SequenceSet(labels[3 * start:3 * stop], np.full(stop - start, 3))
        >>> with open_source(path) as src:
        ...     steps = label_source(src, read, labels.dtype)
        ...     steps.n_features, steps.dtype, steps.read_block(1, 2).values.ravel().tolist()
        (1, dtype('int8'), [3, 4, 5])
    """
    # the twin owns no files (x's closers close them) and lists none (x's records do)
    return replace(source, n_features=step_features(step_shape), dtype=np.dtype(dtype),
                   targets=None, step_targets=None, block_reader=read, stored_reader=None,
                   step_shape=step_shape, closers=[], records=[],
                   **changes)  # type: ignore[arg-type]


def check_kind(kind: object) -> None:
    """``y_kind`` is one of :data:`TARGET_KINDS`, else an ArgumentError naming it.

    Example:
        >>> check_kind("per-step")
        Traceback (most recent call last):
        ...
        lstmshape.errors.ArgumentError: y_kind='per-step': expected 'auto', 'sequence' or ...
    """
    if kind not in TARGET_KINDS:
        raise ArgumentError(Param("y_kind", kind), ": expected 'auto', 'sequence' or "
                            "'timestep'")


def check_same_lengths(source: Source, labels: Source, spec: str) -> None:
    """Per-timestep labels need exactly x's lengths: one ``Error:`` naming both otherwise."""
    if labels.n_samples != source.n_samples:
        raise InputError(f"{spec}: {labels.n_samples} label sequences for the "
                         f"{source.n_samples} samples of {source.location}")
    differ = np.flatnonzero(labels.lengths != source.lengths)
    if differ.size:
        first = int(differ[0])
        found = plural(int(labels.lengths[first]), "timestep")
        raise InputError(f"{spec}: label sequence {first} has {found} but sample {first} of "
                         f"{source.location} has "
                         f"{int(source.lengths[first])} ({differ.size:,} of {source.n_samples:,} "
                         f"lengths differ); per-timestep targets need x's lengths")


def step_features(step_shape: tuple[int, ...]) -> int:
    return int(np.prod(step_shape, dtype=np.int64)) if step_shape else 1


def source_shape(source: Source) -> str:
    if source.timesteps is not None:
        return f"shape ({source.n_samples}, {source.timesteps}, {source.n_features})"
    return f"{source.n_samples} ragged sequences"


def target_summary(kind: TargetKind, shape: tuple[int | None, ...],
                   dtype: np.dtype) -> dict[str, object]:
    """The manifest's ``targets``: the kind, one sample's target shape (``[T, ...]`` or
    ``[null, ...]`` per timestep) and the dtype."""
    return {"kind": kind, "shape": list(shape), "dtype": str(np.dtype(dtype))}
