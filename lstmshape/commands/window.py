"""``lstmshape window``: a series (or each series of a set) cut into ``(N, T, F)`` windows.

A single series -- a 1-D ``(T_total,)`` or 2-D ``(T_total, F)`` array -- is read in row ranges
that overlap by one window's reach, so a series larger than ``--memory-limit`` streams. A set of
series (ragged, or a dense ``(N, T, F)`` tensor) is read whole sequences at a time and no window
crosses from one sequence into the next; ``source_index`` says which series each window came
from. Targets (``y``) are computed in a second pass over the input, so neither output is held
in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import InputError, OptionError, Param
from ..io.output import Stream
from ..io.source import Source
from ..io.targets import open_target_array, target_summary
from ..job import IOOptions, Job, Result
from ..like import adopt, open_like, required, resolve
from ..manifest import ManifestData
from ..ops.window import WindowSpec, cut, resolve_columns, target_rows, window_starts
from ..sequences import LENGTH_DTYPE

#: int64 index arrays (lengths, source_index) are written in pieces of this many rows.
INDEX_CHUNK = 1 << 20


#: Each option's default, when neither given nor taken from a ``like`` manifest.
DEFAULTS: dict[str, Any] = {"timesteps": None, "stride": 1, "sampling_rate": 1, "target": None,
                            "horizon": 1}


def window_file(src: str, options: IOOptions, *, timesteps: int | None = None,
                stride: int | None = None, sampling_rate: int | None = None,
                target: str | None = None, horizon: int | None = None,
                like: str | None = None) -> dict[str, Any]:
    """Cut ``src`` into windows of ``timesteps`` rows; returns the manifest written.

    ``like``: the manifest of an earlier ``window`` whose options are reused where none is
    given here.

    Example:
        >>> import numpy as np, tempfile, os
        >>> folder = tempfile.mkdtemp(); src = os.path.join(folder, "series.npy")
        >>> np.save(src, np.arange(10.0))
        >>> m = window_file(src, IOOptions(os.path.join(folder, "w.npz")), timesteps=4,
        ...                 stride=2, target="0")
        >>> m["samples"], m["input_shape"], m["outputs"]["y"]["shape"]
        (3, [4, 1], [3, 1])
    """
    recorded = open_like(like, "window")
    chosen = resolve({"timesteps": timesteps, "stride": stride, "sampling_rate": sampling_rate,
                      "target": target, "horizon": horizon}, DEFAULTS, recorded)
    timesteps = required(chosen, "timesteps")
    stride, sampling_rate = chosen["stride"], chosen["sampling_rate"]
    target, horizon = chosen["target"], chosen["horizon"]
    params: dict[str, Any] = {"timesteps": timesteps, "stride": stride,
                              "sampling_rate": sampling_rate, "target": target,
                              "horizon": horizon}
    if target is not None and options.y is not None:
        raise OptionError(Param("target", target), " computes y from the series and ",
                          Param("y", options.y), " names it: give one of them")

    def produce(job: Job) -> Result:
        source = job.open(job.locations[0], series=True)
        names = source.feature_names
        adopt(recorded, params, names, source.location, job)
        columns = (None if target is None
                   else resolve_columns(target, source.n_features, names))
        if columns is not None:
            job.named_targets = Param("target", target)
        spec = WindowSpec(timesteps, stride, sampling_rate, horizon if columns is not None else 0)
        counts = spec.counts(source.lengths)
        total = int(counts.sum())
        if total == 0:
            longest = int(source.lengths.max()) if source.lengths.size else 0
            raise InputError(f"{source.location}: no window fits: the longest series has "
                             f"{longest} timesteps and one window needs {spec.reach} (timesteps "
                             f"{timesteps}, sampling rate {sampling_rate}"
                             f"{f', horizon {horizon}' if columns is not None else ''})")
        reader = Windows(job, source, spec, counts)
        features = source.n_features
        arrays: list[tuple[str, Any]] = [
            ("x", Stream((total, timesteps, features), source.dtype, reader.blocks("x"))),
            ("lengths", Stream((total,), LENGTH_DTYPE, index_blocks(total, timesteps))),
        ]
        if columns is not None:
            arrays.append(("y", Stream((total, len(columns)), source.dtype,
                                       reader.blocks("y", columns))))
        elif job.options.y is not None:
            arrays.append(("y", row_targets(job, source, spec, counts)))
        is_set = source.layout != "series"
        if is_set:
            arrays.append(("source_index", Stream((total,), np.dtype(np.int64),
                                                  series_index_blocks(counts))))
            if source.ids is not None:  # each window's series' id (a table's, or carried)
                ids = source.ids
                arrays.append(("ids", Stream((total,), ids.dtype, (
                    ids[block] for block in series_index_blocks(counts)))))
        short = int(np.count_nonzero(counts == 0))
        if short:
            job.warn(f"{short:,} of {len(counts):,} series in {source.location} are shorter "
                         f"than one window ({spec.reach} timesteps) and gave no window")
        manifest = ManifestData(
            command="window", params=params, inputs=[], outputs={}, samples=total,
            timesteps=timesteps, features=features, feature_names=names,
            lengths=np.full(1, timesteps, dtype=LENGTH_DTYPE), history=job.history())
        if any(role == "y" for role, _ in arrays):
            y_stream = dict(arrays)["y"]
            manifest.extra["targets"] = target_summary("sequence", tuple(y_stream.shape[1:]),
                                                       y_stream.dtype)
        manifest.extra["window"] = {
            "series": len(counts), "windows": total, "timesteps": timesteps, "stride": stride,
            "sampling_rate": sampling_rate, "span": spec.span,
            "target": None if columns is None else {
                "columns": columns, "names": [names[c] for c in columns], "horizon": horizon,
                "rule": "y[i] = row (last row of window i) + horizon"},
            "source_index": "outputs.source_index" if is_set else None,
        }
        return Result(arrays, manifest)

    return Job("window", [src], options).run(produce)


def row_targets(job: Job, source: Source, spec: WindowSpec, counts: np.ndarray) -> Stream:
    """``--y``: one target row per series row, as ``timeseries_dataset_from_array(targets=)``
    takes them -- the window that starts at row i gets ``y[i]`` (rows of a set of series
    count on across the series, as their values are stored)."""
    assert job.options.y is not None
    opened, rows = open_target_array(job.options.y, memory_limit=job.options.memory_limit,
                                     allow_pickle=job.options.allow_pickle)
    source.closers.extend(opened.closers)
    source.records.extend(opened.records)  # listed among the inputs, with their sha256
    job.hash_records(source)
    total_rows = int(source.lengths.sum())
    if rows is None or rows.shape[0] != total_rows:
        found = "ragged sequences" if rows is None else f"shape {rows.shape}"
        raise InputError(f"{job.options.y}: {found} does not match {source.location} of "
                         f"{total_rows:,} rows; window --y needs one target row per series row")
    if source.layout == "series":
        starts = np.arange(int(counts.sum()), dtype=np.int64) * spec.stride
    else:
        starts, _ = window_starts(source.lengths, spec)
    return job.rows_at(rows, starts)


class Windows:
    """Reads the input in bounded pieces and yields blocks of windows (``x``) or targets."""

    def __init__(self, job: Job, source: Source, spec: WindowSpec, counts: np.ndarray) -> None:
        self.job = job
        self.source = source
        self.spec = spec
        self.counts = counts
        self.total = int(counts.sum())
        self.step_bytes = max(source.n_features * source.dtype.itemsize, 1)
        window_bytes = spec.timesteps * self.step_bytes
        #: windows per output block, so one block of x stays within the block budget
        self.per_block = max(1, job.block_bytes // window_bytes)

    def blocks(self, what: str, columns: list[int] | None = None) -> Iterator[np.ndarray]:
        series = self.source.row_reader is not None
        pieces = self.series_pieces() if series else self.set_pieces()
        done = 0
        for values, starts in pieces:
            for first in range(0, len(starts), self.per_block):
                chunk = starts[first:first + self.per_block]
                if what == "x":
                    yield cut(values, chunk, self.spec)
                else:
                    assert columns is not None
                    yield target_rows(values, chunk, self.spec, columns)
                done += len(chunk)
                if what == "x" and self.job.options.progress is not None:
                    self.job.options.progress(done, self.total)

    def series_pieces(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One long series: row ranges that overlap by a window's reach, with local starts."""
        stride = self.spec.stride
        budget = self.job.block_bytes
        windows = max(1, min(self.per_block, budget // max(stride * self.step_bytes, 1)))
        for first in range(0, self.total, windows):
            last = min(first + windows, self.total)
            row0 = first * stride
            row1 = (last - 1) * stride + self.spec.reach
            values = self.source.read_rows(row0, row1)
            yield values, np.arange(last - first, dtype=np.int64) * stride

    def set_pieces(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Whole sequences at a time; windows never cross from one sequence into the next."""
        window_bytes = self.spec.timesteps * self.step_bytes
        for start, stop in self.source.block_bounds(self.job.block_bytes,
                                                    self.counts * window_bytes):
            block = self.source.read_block(start, stop)
            starts, _ = window_starts(block.lengths, self.spec)
            yield block.values, starts


def index_blocks(total: int, value: int) -> Iterator[np.ndarray]:
    """``total`` copies of ``value`` as int64, a piece at a time."""
    for first in range(0, total, INDEX_CHUNK):
        yield np.full(min(INDEX_CHUNK, total - first), value, dtype=LENGTH_DTYPE)


def series_index_blocks(counts: np.ndarray) -> Iterator[np.ndarray]:
    """``np.repeat(arange(len(counts)), counts)`` -- which series each window came from."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if ends.size else 0
    for first in range(0, total, INDEX_CHUNK):
        last = min(first + INDEX_CHUNK, total)
        rows = np.arange(first, last, dtype=np.int64)
        yield np.searchsorted(ends, rows, side="right").astype(np.int64)
