"""Outputs planned as chunks: the part of a command that a Dask worker runs.

With ``--engine dask`` a command does not stream its output array through the client. It
describes it as a :class:`Planned` array -- its shape and dtype, how to open the input
(:class:`SourceSpec`) and a row function (``rows(source, start, stop)``: samples
``start:stop`` of the input to the output's rows) -- and the ``.zarr`` writer turns that into
one :class:`ChunkTask` per output chunk. Each task owns exactly one chunk object of one array
(chunks split the first axis only, so no two tasks ever touch one object), reads the input
samples that chunk needs, writes it and returns ``[(relative path, sha256)]`` of what it wrote.

What crosses to a worker (pickled): the :class:`ChunkTask` -- the store's path, the role, the
chunk's index and sample range, a :class:`SourceSpec` (strings and numbers) and the row
function (a small dataclass of resolved parameters). Open files never cross: each worker opens
the input itself, once per process (:func:`opened`). What comes back: the listing of one chunk.
The tasks are pure: run twice (a worker died and Dask ran it again), a task writes the same
bytes to the same object.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:
    from .io.source import Source
    from .io.table import TableOptions

#: ``[(path relative to the store, sha256)]`` of the objects a task wrote
Listing = list[tuple[str, str]]
ProgressCallback = Callable[[int, int], None]


class RowFunction(Protocol):
    """Samples ``start:stop`` of an opened input to the rows they give in the output."""

    def __call__(self, source: Source, start: int, stop: int) -> np.ndarray: ...


@dataclass(frozen=True)
class SourceSpec:
    """How to open the input on any machine: what :func:`~lstmshape.io.source.open_source`
    takes, as plain values (the path must be the same on every worker: shared storage), and
    the identity of the file the client opened (:func:`file_identity`)."""

    location: str
    memory_limit: int
    allow_pickle: bool = False
    lengths: str | None = None
    nan: str = "keep"
    identity: tuple[int, ...] = ()
    #: a table's ``--id``/``--time``/... and ``--layout series``: how its rows are samples
    table: TableOptions | None = None
    series: bool = False
    #: ``--y`` and ``--y-kind`` as the client composed them in, and the identity of that file
    y: str | None = None
    y_kind: str = "auto"
    y_identity: tuple[int, ...] = ()


def file_identity(path: str) -> tuple[int, ...]:
    """``(device, inode, size, mtime_ns, ctime_ns)`` of ``path``: a file replaced or rewritten
    since has another, so a worker of a long-lived cluster never reads it through a source it
    opened for an earlier run.

    Example:
        >>> import tempfile
        >>> len(file_identity(tempfile.mkdtemp()))
        5
    """
    info = os.stat(path)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@functools.lru_cache(maxsize=2)
def opened(spec: SourceSpec) -> Source:
    """The input, opened once per worker process and kept open for its next tasks (the last
    two inputs stay open on a long-lived worker)."""
    from .errors import InputError
    from .io.location import parse_location
    from .io.source import open_source

    checked = [(parse_location(spec.location).path, spec.identity)]
    if spec.y is not None:
        checked.append((parse_location(spec.y).path, spec.y_identity))
    for path, identity in checked:
        if identity and file_identity(path) != identity:
            raise InputError(f"{path}: changed while the run was reading it (a worker sees "
                             f"another file than the client did); run again once it is written")
    return open_source(spec.location, memory_limit=spec.memory_limit,
                       allow_pickle=spec.allow_pickle, lengths_file=spec.lengths, nan=spec.nan,
                       table=spec.table, series=spec.series, y=spec.y, y_kind=spec.y_kind)


@dataclass(frozen=True)
class TargetRows:
    """The row function of the targets ``y``: samples ``start:stop``'s rows, as stored."""

    def __call__(self, source: Source, start: int, stop: int) -> np.ndarray:
        rows = source.read_targets(start, stop)
        assert rows is not None, "planned targets for a source without targets"
        return rows


@dataclass(frozen=True)
class LabelRows:
    """The row function of per-timestep targets: ``rows`` -- the very row function of x --
    applied to the label sequences (:attr:`Source.step_targets`), as rows of ``inner`` (one
    output row's shape: ``(T, k...)`` padded, ``(k...)`` ragged)."""

    rows: RowFunction
    inner: tuple[int, ...]

    def __call__(self, source: Source, start: int, stop: int) -> np.ndarray:
        labels = source.step_targets
        assert labels is not None, "planned labels for a source without per-timestep targets"
        return self.rows(labels, start, stop).reshape(-1, *self.inner)


@dataclass
class Planned:
    """An output array computed chunk by chunk on workers.

    ``offsets`` (N + 1 row offsets) when the array's rows are the timesteps of ragged samples
    (``values``); None when each row is one sample.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    source: SourceSpec
    rows: RowFunction
    offsets: np.ndarray | None = None

    def tasks(self, store: str, role: str, per_chunk: int) -> list[ChunkTask]:
        """One task per chunk of ``per_chunk`` rows, with the samples its rows come from."""
        tasks = []
        for index, start in enumerate(range(0, self.shape[0], per_chunk)):
            stop = min(start + per_chunk, self.shape[0])
            first, last, skip = start, stop, 0
            if self.offsets is not None:  # the samples whose timesteps cover rows start:stop
                first = int(np.searchsorted(self.offsets, start, side="right")) - 1
                last = int(np.searchsorted(self.offsets, stop, side="left"))
                skip = start - int(self.offsets[first])
            tasks.append(ChunkTask(store, role, index, self.source, self.rows, first, last,
                                   skip, stop - start))
        return tasks


@dataclass(frozen=True)
class ChunkTask:
    """Write chunk ``index`` of array ``role``: rows ``skip:skip + count`` of what samples
    ``first:last`` give. Called on a worker; returns the listing of the chunk written."""

    store: str
    role: str
    index: int
    source: SourceSpec
    rows: RowFunction
    first: int
    last: int
    skip: int
    count: int

    def __call__(self) -> Listing:
        from .io.zarr_store import write_chunk

        rows = self.rows(opened(self.source), self.first, self.last)
        return write_chunk(self.store, self.role, self.index,
                           rows[self.skip:self.skip + self.count])


@dataclass(frozen=True)
class LengthsTask:
    """The planning task of one input shard: its lengths histogram (``bincount``) and sample
    count, so that ``--maxlen pNN`` is exact over every shard (histograms add up)."""

    source: SourceSpec

    def __call__(self) -> tuple[np.ndarray, int]:
        lengths = opened(self.source).lengths
        return np.bincount(lengths, minlength=1), len(lengths)


@dataclass(frozen=True)
class MomentsTask:
    """The statistics pass of ``normalize`` over rows ``low:high`` of all the real timesteps
    -- whole groups of the local engine's grid (:class:`~lstmshape.ops.normalize.Accumulator`)
    -- read a block of samples at a time (at most ``block_bytes``; a sample across either edge
    gives only its rows inside). Returns the moments of each group, which the client folds in
    row order (:func:`~lstmshape.ops.normalize.merge_groups`)."""

    source: SourceSpec
    low: int
    high: int
    step: int
    group: int
    block_bytes: int

    def __call__(self) -> list[Any]:
        from .ops.normalize import Accumulator
        from .sequences import bounds_within

        source = opened(self.source)
        offsets = np.concatenate([[0], np.cumsum(source.lengths, dtype=np.int64)])
        first = int(np.searchsorted(offsets, self.low, side="right")) - 1
        last = int(np.searchsorted(offsets, self.high, side="left"))
        accumulator = Accumulator(source.n_features, self.step, self.group)
        for start, stop in bounds_within(sample_bytes(source, first, last), self.block_bytes):
            values = source.read_block(first + start, first + stop).values
            base = int(offsets[first + start])  # the row of all of values[0]
            accumulator.add(values[max(self.low - base, 0):max(self.high - base, 0)])
        return accumulator.groups()


def sample_bytes(source: Source, first: int, last: int) -> np.ndarray:
    """What each of samples ``first:last`` costs to read (as :meth:`Source.block_bounds`)."""
    step = max(source.n_features * source.dtype.itemsize, 1)
    if source.timesteps is not None:
        return np.full(last - first, source.timesteps * step + source.row_bytes_hint, np.int64)
    return source.lengths[first:last].astype(np.int64) * step + source.row_bytes_hint


def merged_histogram(counted: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """The histograms of several shards as one.

    Example:
        >>> merged_histogram([(np.array([0, 2]), 2), (np.array([1, 0, 1]), 2)]).tolist()
        [1, 2, 1]
    """
    merged = np.zeros(max((len(h) for h, _ in counted), default=1), dtype=np.int64)
    for histogram, _ in counted:
        merged[:len(histogram)] += histogram
    return merged


T = TypeVar("T")


class Engine(Protocol):
    """Runs tasks somewhere; their results in the order of the tasks."""

    def run(self, tasks: Sequence[Callable[[], T]],
            progress: ProgressCallback | None) -> list[T]: ...
