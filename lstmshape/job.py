"""What every transforming command shares: open inputs, write outputs + manifest atomically.

A command is a function that takes :class:`Job` and returns a :class:`Result`; the job does the
rest, the same way for every command:

1. before anything is read, refuse outputs that are inputs and outputs whose folder is missing;
2. open each input as a :class:`~lstmshape.io.source.Source` and hash its file as it is read
   (:class:`~lstmshape.io.digest.InputDigest`);
3. write the result's arrays -- streamed block by block -- to temp files, by the output's suffix:
   ``.npy`` holds the main array and each other role goes to ``OUT.<role>.npy`` beside it
   (``OUT.lengths.npy``, ``OUT.y.npy``); ``.npz``/``.h5`` hold every role as a key;
4. write the manifest, then rename every temp file into place (or remove them all on failure).

Example (a command that copies its input)::

    def copy(job: Job) -> Result:
        source = job.open(job.locations[0])
        return Result(arrays=[("values", source.read().values)], ...)
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, OptionError, OutputError, Param
from .io.arrays import StoredArray
from .io.digest import (
    INLINE_HASH_BYTES,
    OBSERVED_SHARE,
    Digest,
    InputDigest,
    TreeDigest,
    hash_in_turn,
)
from .io.digest_cache import open_digest_cache
from .io.gather import gather
from .io.location import STDIO, Location, parse_location, same_path
from .io.output import (
    ArrayData,
    OutputSet,
    Stream,
    as_utf8,
    check_not_inputs,
    check_writable_folder,
    release_cache,
    remove_stale,
    side_files_of,
    stale_candidates,
)
from .io.prefetch import prefetched
from .io.shards import is_shard_set, shard_paths, shard_side_files
from .io.source import (
    DEFAULT_MEMORY_LIMIT,
    PADDING_SIDE_CODES,
    PADDING_SIDE_KEY,
    Source,
    open_source,
)
from .io.table import TableOptions
from .io.targets import target_summary
from .io.zarr_store import listing_lines
from .manifest import FileEntry, ManifestData, dumps, history_from, json_number, relative, render
from .ops.normalize import Accumulator, Moments, merge_groups
from .plan import (
    Engine,
    LabelRows,
    LengthsTask,
    MomentsTask,
    Planned,
    RowFunction,
    SourceSpec,
    TargetRows,
    file_identity,
    merged_histogram,
)
from .sequences import SequenceSet, Side, bounds_within, real_mask

if TYPE_CHECKING:
    from .like import Like

#: One block (its input and output together) takes 1/BLOCK_SHARE of the budget: up to three
#: blocks are alive at once (being read, queued, being written and hashed), plus temporaries,
#: and glibc keeps freed block-sized arrays for reuse in each thread's arena. Measured (pad of
#: a 2 GB ragged .h5, 256 MB budget): peak RSS 271 MB at 8, 211 MB at 12, 195 MB at 16, and
#: W1 end to end no slower (reused heap pages cost no page faults; fresh mmap'd ones do).
BLOCK_SHARE = 16

ProgressCallback = Callable[[int, int], None]


@dataclass
class IOOptions:
    """Options every transforming command takes (``-o``, ``--manifest``, ``--memory-limit``...)."""

    output: str
    manifest: str | None = None
    no_manifest: bool = False
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    allow_pickle: bool = False
    lengths: str | None = None
    progress: ProgressCallback | None = None
    #: ``"error"``: refuse NaN/inf in real timesteps (``--nan error``); ``"keep"``: pass them on.
    nan: str = "keep"
    #: Called with each warning for the user (pad value collisions, a missing lengths file);
    #: without it, warnings go through Python's :mod:`warnings` as :class:`LstmshapeWarning`.
    on_warning: Callable[[str], None] | None = None
    #: Use the digest cache (:mod:`lstmshape.io.digest_cache`); ``--no-digest-cache``: False.
    digest_cache: bool = True
    #: Where a ``.zarr`` output's chunks are computed and written (``--engine dask``: a
    #: :class:`~lstmshape.dask_engine.DaskEngine`); None: here, streamed block by block.
    engine: Engine | None = None
    #: how a long table becomes sequences (``--id``, ``--time``, ``--features``, ``--target``)
    table: TableOptions | None = None
    #: ``--y PATH[:KEY]``: the targets of the first input (they win over a ``y`` inside it).
    y: str | None = None
    #: ``--y-kind``: ``auto`` (from the manifest, else the shapes), ``sequence``, ``timestep``.
    y_kind: str = "auto"
    #: ``--y-value``: the pad value of per-timestep targets; None: the one the ``--like``
    #: manifest or the input's own manifest records (labels padded by an earlier step stay
    #: padded with the same value), else 0 (:meth:`Job.label_value`).
    y_value: float | None = None
    #: ``--layout``: ``samples`` reads a 2-D array as (samples, timesteps), ``series`` as one
    #: (timesteps, features) series; None: the command's own reading (window: series).
    layout: str | None = None


class LstmshapeWarning(UserWarning):
    """A warning about the data (``Warning: ...`` on the command line)."""


@dataclass
class Result:
    """What a command produced: named arrays (main role first) and its manifest fields."""

    arrays: list[tuple[str, ArrayData]]
    manifest: ManifestData


@dataclass(frozen=True)
class Destination:
    """One output of a job: its file, and where its manifest goes (None: no manifest)."""

    location: Location
    manifest_path: str | None

    @property
    def record_path(self) -> str:
        """The file that paths recorded in the manifest are relative to."""
        return self.manifest_path or self.location.path


class Job:
    """One run of a transforming command over its inputs and its outputs.

    Most commands write one output (``options.output``); ``partition`` writes several
    (``outputs``), each with its own manifest, all committed together: every file of every
    output is renamed into place at the end, or none is.
    """

    def __init__(self, command: str, inputs: list[str], options: IOOptions,
                 outputs: list[str] | None = None) -> None:
        self.command = command
        self.options = options
        self.locations = [parse_location(text) for text in inputs]
        paths = outputs if outputs is not None else [options.output]
        if len(paths) > 1 and options.manifest is not None:
            raise OptionError(f"--manifest names one manifest for {len(paths)} outputs; leave it "
                              f"out (each output's manifest is OUTPUT.json)")
        self.destinations = [Destination(parse_location(path), self.plan_manifest_path(path))
                             for path in paths]
        self.output = self.destinations[0].location
        self.manifest_path = self.destinations[0].manifest_path
        if options.engine is not None and self.output.suffix != ".zarr":
            raise OptionError(f"{options.output}: the dask engine writes a .zarr output (a "
                              f"directory store many workers can fill at once); name the output "
                              f"OUT.zarr")
        if options.engine is not None and options.y is not None and \
                parse_location(options.y).is_stdio:
            raise OptionError(Param("y", "-", shown="-"), " reads the targets from stdin, which "
                              "the dask engine's workers cannot read; give them as a file")
        self.sources: list[Source] = []
        #: each source with the location it was opened from and the ``--y``/``--y-kind``
        #: composed in (a worker opens it the same way)
        self.opened: list[tuple[Source, Location, str | None, str]] = []
        self.hashes: dict[str, Digest] = {}
        #: the ``--like`` manifest's step, once the command has adopted it
        self.like: Like | None = None
        #: targets a command makes from an option of its own (``window --target``): ``-o -``
        #: refuses to drop them, as it refuses ``--y``
        self.named_targets: Param | None = None
        # warn() is called from the prefetch thread too (streamed blocks find collisions)
        self.warning_lock = threading.Lock()
        self.digest_cache = open_digest_cache(options.digest_cache, warn=self.warn)
        written: list[str] = []
        for destination in self.destinations:
            files = [destination.location.path, *filter(None, [destination.manifest_path])]
            if destination.manifest_path is not None and same_path(destination.manifest_path,
                                                                   destination.location.path):
                raise OutputError(f"{destination.manifest_path}: --manifest is the output itself;"
                                  f" choose another path (default: OUTPUT.json)")
            for path in files:
                if any(same_path(path, done) for done in written if done != STDIO):
                    raise OutputError(f"{path}: given as two outputs; each output needs its own "
                                      f"path")
            written.extend(files)
        check_not_inputs([loc.path for loc in self.locations] + self.side_inputs(), written)
        for path in written:
            check_writable_folder(path)
        self.written = written

    def refuse_overwriting(self, path: str) -> None:
        """Refuse a run whose outputs include ``path``, a file it reads besides its inputs
        (a ``--like`` manifest); nothing is written yet when this is asked."""
        check_not_inputs([path], self.written)

    @property
    def record_path(self) -> str:
        """The file that paths in the (first) output's manifest are relative to."""
        return self.destinations[0].record_path

    def side_inputs(self) -> list[str]:
        """Files read besides the inputs: ``--lengths`` and each input's manifest ``IN.json``
        (overwriting that one would make the input describe the output)."""
        paths = [parse_location(self.options.lengths).path] if self.options.lengths else []
        if self.options.y is not None:
            paths.append(parse_location(self.options.y).path)
        for location in self.locations:
            if location.is_stdio:
                continue
            if is_shard_set(location.path):  # each file of a folder or glob is an input
                files = shard_paths(location.path)
                paths.extend(files + shard_side_files(files))
                continue
            # IN.json and the IN.<role>.npy side files (true lengths, targets) it points to
            paths.append(location.path + ".json")
            paths.extend(side_files_of(location.path))
        return paths

    def warn(self, message: str) -> None:
        """Tell the user something about the data; safe to call from any thread."""
        with self.warning_lock:
            if self.options.on_warning is not None:
                self.options.on_warning(message)
            else:
                warnings.warn(message, LstmshapeWarning, stacklevel=2)

    def plan_manifest_path(self, output: str) -> str | None:
        if self.options.no_manifest:
            return None
        if self.options.manifest is not None:
            return self.options.manifest
        if output == STDIO:
            return None
        return output + ".json"

    # -- inputs ---------------------------------------------------------------------------------
    def open(self, location: Location, *, series: bool = False,
             with_lengths: bool = True, with_targets: bool | None = None) -> Source:
        """Open an input; it is closed and hashed when the job ends.

        ``with_targets`` (default: for the first input) composes ``--y`` / ``--y-kind`` in
        (:mod:`lstmshape.io.targets`); a ``y`` inside the input is picked up either way.
        """
        primary = location == self.locations[0]
        if primary and self.options.layout is not None:
            series = self.options.layout == "series"
        if with_targets is None:
            with_targets = primary and not series
        digest = None
        if not location.is_stdio and not is_shard_set(location.path):  # shards: as records
            if location.path not in self.hashes:
                self.hashes[location.path] = (  # a .zarr store is a directory
                    TreeDigest(location.path) if os.path.isdir(location.path)
                    else InputDigest(location.path, self.digest_cache))
            digest = self.hashes[location.path]
        y = self.options.y if with_targets else None
        y_kind = self.options.y_kind if with_targets else "auto"
        source = open_source(location, memory_limit=self.options.memory_limit,
                             allow_pickle=self.options.allow_pickle,
                             series=series or self.options.layout == "series",
                             lengths_file=self.options.lengths if with_lengths else None,
                             digest=digest, nan=self.options.nan, table=self.options.table,
                             y=y, y_kind=y_kind)
        self.sources.append(source)
        self.opened.append((source, location, y, y_kind))
        for note in source.notes:
            self.warn(note)
        if digest is not None and (self.options.engine is not None
                                   or digest.observed_bytes < OBSERVED_SHARE * digest.size):
            # little is read here as raw file bytes (or nothing: workers read it): hash it all
            digest.hash_whole_file()
        self.hash_records(source)
        return source

    def hash_records(self, source: Source) -> None:
        """Hash the files read beside an input (``--lengths``, ``--y``, ``IN.y.npy``) or that
        make it up (the shards of a folder) whole, in the background: small files one after
        the other on one worker, each larger one on its own."""
        small = []
        for item in source.records:
            if item.path not in self.hashes and item.path != source.location.path \
                    and item.path != "-":
                digest = self.hashes[item.path] = InputDigest(item.path, self.digest_cache)
                if digest.size <= INLINE_HASH_BYTES:
                    small.append(digest)
                else:
                    digest.hash_whole_file()
        hash_in_turn(small)

    @property
    def block_bytes(self) -> int:
        """How many bytes of input one block may hold, from ``--memory-limit``."""
        return max(self.options.memory_limit // BLOCK_SHARE, 1 << 16)

    def blocks(self, source: Source,
               extra_per_sample: int | np.ndarray = 0) -> Iterator[tuple[int, int]]:
        """The source's block bounds, reporting progress as each block is handed out."""
        for start, stop in source.block_bounds(self.block_bytes, extra_per_sample):
            yield start, stop
            if self.options.progress is not None:
                self.options.progress(stop, source.n_samples)

    def array(self, source: Source, shape: tuple[int, ...], dtype: np.dtype,
              rows: RowFunction, extra_per_sample: int | np.ndarray = 0,
              offsets: np.ndarray | None = None) -> Stream | Planned:
        """The output array whose rows ``rows(source, start, stop)`` gives for each block of
        samples: streamed here block by block, or -- with an engine -- planned as chunk tasks
        that open the input on the workers (``offsets``: row offsets of ragged samples)."""
        if self.options.engine is not None:
            return Planned(shape, dtype, self.spec(source), rows, offsets)
        return Stream(shape, dtype, (rows(source, start, stop) for start, stop
                                     in self.blocks(source, extra_per_sample)))

    def length_histogram(self, source: Source) -> np.ndarray:
        """How many sequences have each length (``bincount``): with an engine, from one
        planning task per input shard, merged; else from the lengths the source holds."""
        if self.options.engine is None:
            return np.bincount(source.lengths, minlength=1)
        return merged_histogram(self.options.engine.run([LengthsTask(self.spec(source))], None))

    def spec(self, source: Source) -> SourceSpec:
        """How a worker opens ``source`` exactly as this job did: the location it was opened
        from, with the same options."""
        location, y, y_kind = next((loc, y, kind) for opened, loc, y, kind in self.opened
                                   if opened is source)
        # a folder or glob of shards has no one identity: each shard is checked as it opens
        identity = () if is_shard_set(location.path) else file_identity(location.path)
        y_path = None if y is None else parse_location(y).path
        y_identity = () if y_path is None or y_path == STDIO else file_identity(y_path)
        return SourceSpec(str(location), self.options.memory_limit, self.options.allow_pickle,
                          self.options.lengths, self.options.nan, identity, self.options.table,
                          source.layout == "series" or self.options.layout == "series",
                          y, y_kind, y_identity)

    def moments(self, source: Source) -> Moments:
        """The float64 moments of the source's real timesteps (``normalize``'s statistics), on
        the one grid of :class:`~lstmshape.ops.normalize.Accumulator`: folded here a block at
        a time, or -- with an engine -- one :class:`~lstmshape.plan.MomentsTask` per
        group-aligned stretch of rows, their groups folded here in row order. Either way the
        same operations on the same numbers: the same bits for any engine, any number of
        workers and any ``--memory-limit``."""
        accumulator = Accumulator(source.n_features)
        if self.options.engine is None:
            for start, stop in source.block_bounds(self.block_bytes):
                accumulator.add(source.read_block(start, stop).values)
            return accumulator.result()
        spec, rows = self.spec(source), int(source.lengths.sum())
        tasks = [MomentsTask(spec, low, min(low + accumulator.group_rows, rows),
                             accumulator.step, accumulator.group, self.block_bytes)
                 for low in range(0, rows, accumulator.group_rows)]
        stretches = self.options.engine.run(tasks, None)
        return merge_groups(source.n_features, [g for groups in stretches for g in groups])

    def targets(self, source: Source,
                index: np.ndarray | None = None) -> Stream | Planned | None:
        """The source's targets in output order, ``y[index]`` (every row when ``index`` is
        None; zeros where ``index`` is -1, a pad row), read and handed out a block of rows at a
        time within the budget -- never the whole array. None when the source has no
        sequence-level targets (per-timestep ones are made like x: :meth:`labels`).
        With an engine (and no reordering), planned as chunk tasks like any output array.
        """
        stored = source.targets
        if stored is None or source.step_targets is not None:  # labels: see labels()
            return None
        if self.options.engine is not None:
            if index is not None:
                raise OptionError(f"{source.location}: the dask engine writes targets in input "
                                  f"order only; use --engine local for this command")
            return self.array(source, tuple(stored.shape), stored.dtype, TargetRows())
        order = np.arange(source.n_samples) if index is None else np.asarray(index, np.int64)
        return self.rows_at(stored, order)

    def rows_at(self, stored: StoredArray, order: np.ndarray) -> Stream:
        """Rows ``order`` of ``stored`` (zeros where -1), a block of rows at a time."""
        row_shape, dtype = tuple(stored.shape[1:]), stored.dtype
        row_bytes = max(int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize, 1)
        rows_per_block = max(self.block_bytes // row_bytes, 1)

        def blocks() -> Iterator[np.ndarray]:
            for start in range(0, len(order), rows_per_block):
                yield read_rows_at(stored.read_rows, order[start:start + rows_per_block],
                                   row_shape, dtype, rows_per_block)

        return Stream((len(order), *row_shape), dtype, blocks())

    def labels(self, source: Source, shape: tuple[int, ...], rows: RowFunction,
               out_row_bytes: int = 0,
               offsets: np.ndarray | None = None) -> Stream | Planned | None:
        """Per-timestep targets, made block by block by the very row function that makes x
        (``rows`` applied to the label sequences, :attr:`Source.step_targets`, with the labels'
        own pad value); the result is ``shape`` (one label row ``(k,)`` or ``()`` per
        timestep). None without per-timestep targets. ``out_row_bytes``: what one output row
        costs per label feature (a padded row), so a block stays within the budget. With an
        engine, planned as chunk tasks like x (``offsets``: those of ragged output rows)."""
        steps = source.step_targets
        if steps is None:
            return None
        inner = tuple(shape[1:])
        if self.options.engine is not None:
            return Planned(shape, steps.dtype, self.spec(source), LabelRows(rows, inner),
                           offsets)

        def blocks() -> Iterator[np.ndarray]:
            extra = out_row_bytes * steps.n_features * steps.dtype.itemsize
            for start, stop in steps.block_bounds(self.block_bytes, extra):
                yield rows(steps, start, stop).reshape(-1, *inner)

        return Stream(shape, steps.dtype, blocks())

    def step_weights(self, lengths: np.ndarray, width: int, side: Side) -> Stream:
        """``sample_weight`` of per-timestep targets: ``(N, width)`` float32, 1 on real steps,
        0 on padded ones (and on a pad row, whose length is 0), a block of rows at a time."""
        rows = max(self.block_bytes // max(width * 4, 1), 1)
        blocks = (real_mask(lengths[start:start + rows], width, side).astype(np.float32)
                  for start in range(0, len(lengths), rows))
        return Stream((len(lengths), width), np.dtype(np.float32), blocks)

    def label_value(self, source: Source) -> float:
        """The pad value of per-timestep targets: ``--y-value``; else the one the ``--like``
        manifest recorded; else the one the input's labels were padded with (its manifest; not
        when ``--y`` names other labels); else 0. So a chain (pad, then batch) and a test set
        made ``--like`` the training set pad labels alike, e.g. with the -1 a loss ignores."""
        if self.options.y_value is not None:
            return self.options.y_value
        own = source.manifest if self.options.y is None else None  # --y: other labels
        for manifest in (self.like.step if self.like is not None else None, own):
            recorded = manifest.label_pad_value if manifest is not None else None
            if recorded is not None:
                return recorded
        return 0.0

    def padded_label_value(self, source: Source) -> float:
        """:meth:`label_value`, for labels about to be padded with it: refused (naming
        ``--y-value``) when their dtype cannot hold it."""
        from .ops.pad import check_value_fits

        value = self.label_value(source)
        labels = source.step_targets
        assert labels is not None, "no per-timestep targets to pad"
        check_value_fits(value, labels.dtype, "y_value")
        return value

    def target_params(self, source: Source, record_path: str) -> dict[str, Any]:
        """The targets' effective options, for the manifest's ``params``: ``y`` (``--y``, as a
        path relative to the manifest), ``y_kind``, and ``y_value`` when labels are padded."""
        params: dict[str, Any] = {}
        if self.options.y is not None:
            where = parse_location(self.options.y)
            path = relative(where.path, record_path)
            params["y"] = path if where.key is None else f"{path}:{where.key}"
            if source.layout != "series":  # window's y is one row per series row, no kind
                params["y_kind"] = self.options.y_kind
        if source.step_targets is not None:
            params["y_value"] = json_number(self.label_value(source))
        return params

    def side_arrays(self, source: Source,
                    index: np.ndarray | None = None) -> list[tuple[str, Any]]:
        """The per-sample arrays that follow the samples into the output, in output order
        (``index``, as :meth:`targets`): ``y`` (streamed) and ``source_index``."""
        arrays: list[tuple[str, Any]] = []
        targets = self.targets(source, index)
        if targets is not None:
            arrays.append(("y", targets))
        sources = source.read_source_index()
        if sources is not None:
            arrays.append(("source_index", sources if index is None else sources[index]))
        return arrays

    def kept_labels(self, source: Source,
                    index: np.ndarray | None = None) -> list[tuple[str, Any]]:
        """Per-timestep targets (and their ``sample_weight``) of an output that keeps the
        input's layout (``add-feature``, ``normalize``; ``partition`` with the ``index`` of its
        samples): ragged labels stay ragged, padded ones are padded like x with ``--y-value``.
        Empty without per-timestep targets."""
        labels = source.step_targets
        if labels is None:
            return []
        width = source.timesteps
        lengths = source.lengths if index is None else source.lengths[index]
        value = self.padded_label_value(source)
        shape = (*((len(lengths), width) if width is not None else (int(lengths.sum()),)),
                 *labels.step_shape)
        wanted = np.arange(source.n_samples) if index is None else index
        bounds = np.array(labels.block_bounds(self.block_bytes), dtype=np.int64)
        steps = lengths if width is None else np.full(len(lengths), width)
        row_bytes = max(labels.n_features * labels.dtype.itemsize, 1)
        kept = KeptRows(width, source.side, value)

        def blocks() -> Iterator[np.ndarray]:
            for first, last in bounds_within(2 * steps * row_bytes, self.block_bytes):
                yield kept.of(gather(labels, wanted[first:last], bounds)).reshape(
                    -1, *shape[1:])

        made: Stream | Planned = Stream(shape, labels.dtype, blocks())
        if self.options.engine is not None:
            if index is not None:
                raise OptionError(f"{source.location}: the dask engine writes targets in input "
                                  f"order only; use --engine local for this command")
            offsets = None if width is not None else np.concatenate(
                [[0], np.cumsum(lengths, dtype=np.int64)])
            made = Planned(shape, labels.dtype, self.spec(source), LabelRows(
                kept, tuple(shape[1:])), offsets)
        arrays: list[tuple[str, Any]] = [("y", made)]
        if width is not None and bool(np.any(lengths < width)):
            arrays.append(("sample_weight", self.step_weights(lengths, width, source.side)))
        return arrays

    def history(self) -> list[dict[str, Any]]:
        return history_from([source.manifest for source in self.sources])

    # -- outputs --------------------------------------------------------------------------------
    def run(self, produce: Callable[[Job], Result]) -> dict[str, Any]:
        """Produce the result, write it and its manifest atomically; return the manifest."""
        return self.run_all(lambda job: [produce(job)])[0]

    def run_all(self, produce: Callable[[Job], list[Result]]) -> list[dict[str, Any]]:
        """Produce one result per output, write them and their manifests, and commit them all
        together (or nothing, on any failure); return the manifests."""
        previous = [stale_candidates(d.location) for d in self.destinations]
        for destination in self.destinations:
            if not destination.location.is_stdio:
                release_cache(destination.location.path)
        manifests: list[dict[str, Any]] = []
        try:
            with OutputSet() as outputs:
                results = produce(self)
                if len(results) != len(self.destinations):
                    raise ValueError(f"{len(results)} results for {len(self.destinations)} "
                                     f"outputs")
                arrays = [self.prepared(destination, result) for destination, result
                          in zip(self.destinations, results, strict=True)]
                entries = [self.write_arrays(outputs, destination, written)
                           for destination, written in zip(self.destinations, arrays,
                                                           strict=True)]
                inputs = self.input_entries()
                self.check_input_manifests()
                for destination, result, written in zip(self.destinations, results, entries,
                                                        strict=True):
                    data = result.manifest
                    data.inputs = list(inputs)
                    if self.options.lengths is not None:  # it changes the output: a parameter
                        data.params["lengths"] = relative(self.options.lengths,
                                                          destination.record_path)
                    table = self.options.table
                    if table is not None and table.given:  # how the table became sequences
                        data.params["table"] = {
                            "id": table.id, "time": table.time, "target": table.target,
                            "features": None if table.features is None else list(table.features),
                            "target_kind": table.target_kind}
                    if self.options.layout is not None:  # how a 2-D input was read
                        data.params["layout"] = self.options.layout
                    if self.sources:  # --y and the labels' pad value change the output too
                        data.params.update(self.target_params(self.sources[0],
                                                              destination.record_path))
                        if ("targets" not in data.extra and self.sources[0].target_kind and any(
                                role == "y" or role.startswith("y_") for role in written)):
                            data.extra["targets"] = target_entry(self.sources[0],
                                                                 data.timesteps)
                    data.outputs = written
                    manifest = render(data, destination.record_path)
                    if destination.manifest_path is not None:
                        outputs.write_text(destination.manifest_path, dumps(manifest))
                    manifests.append(manifest)
        finally:
            for source in self.sources:
                source.close()
            for digest in self.hashes.values():
                digest.close()
        for destination, old, written in zip(self.destinations, previous, entries, strict=True):
            remove_stale(old, {entry.path for entry in written.values()}
                         | {destination.manifest_path or ""})
        if self.digest_cache is not None:  # the outputs, as renamed into place, and the inputs
            files = {entry.path: entry for written in entries for entry in written.values()}
            self.digest_cache.record_run(self.hashes.values(), [
                (path, entry.sha256, outputs.committed[path]) for path, entry in files.items()
                if entry.sha256 is not None and path in outputs.committed])
        return manifests

    def prepared(self, destination: Destination, result: Result) -> list[tuple[str, ArrayData]]:
        """The result's arrays as ``destination`` stores them: with ``ids`` for a table's
        samples, without the feature axis (``--no-feature-axis``), with ``padding_side`` beside
        a padded ``x`` in an .npz/.h5/.zarr."""
        arrays = with_ids(result.arrays, self.sources)
        if not result.manifest.feature_axis:
            if self.options.engine is not None:
                raise OptionError(Param("no_feature_axis", True), " is not planned by "
                                  "the dask engine; use --engine local for it")
            arrays = [(role, without_feature_axis(data) if is_main_role(role) else data)
                      for role, data in arrays]
        return with_padding_side(destination.location, arrays, result.manifest.padding)

    def check_input_manifests(self) -> None:
        """Refuse an input whose manifest describes other bytes (the file was replaced after the
        manifest was written): its true lengths and names would be applied to unrelated data."""
        for source in self.sources:
            path = source.location.path
            if source.manifest is None or path not in self.hashes:
                continue
            recorded = source.manifest.recorded_sha256(path)
            if recorded is not None and self.hashes[path].hexdigest() != recorded:
                raise InputError(f"{path}: does not match its manifest {source.manifest.path} "
                                 f"(sha256 differs: the file changed after the manifest was "
                                 f"written); remake it, or delete the stale manifest")

    def write_arrays(self, outputs: OutputSet, destination: Destination,
                     arrays: list[tuple[str, ArrayData]]) -> dict[str, FileEntry]:
        """Write the result's named arrays as the output's suffix says; the manifest entries.

        ``.npz``/``.h5``: one file, a key per role. ``.npy``: the tensor (role ``x``; a ragged
        result is refused) in OUT, each other role in ``OUT.<role>.npy`` -- only when a manifest
        points to them, except ``y``, which is data, not metadata. Streamed arrays are produced
        one block ahead of the writer (:func:`~lstmshape.io.prefetch.prefetched`).
        """
        output, manifest_path = destination.location, destination.manifest_path
        entries: dict[str, FileEntry] = {}
        arrays = [(role, data if isinstance(data, Planned) else prefetched(data))
                  for role, data in arrays]
        if output.suffix == ".npy":
            (main_role, main), *side = arrays
            if main_role != "x":
                raise OutputError(f"{output.path}: the result is ragged (variable-length "
                                  f"sequences) and an .npy holds one dense tensor; pad it first "
                                  f"or write .npz/.h5")
            written = [(main_role, output, main)]
            if output.is_stdio and "y" in dict(side):
                self.refuse_losing_targets()
            if manifest_path is not None and not output.is_stdio:
                written += [(role, Location(f"{output.path}.{role}.npy"), data)
                            for role, data in side]
            elif side and "y" in dict(side) and not output.is_stdio:
                written.append(("y", Location(f"{output.path}.y.npy"), dict(side)["y"]))
            # side files (OUT.lengths.npy...) are known only now: same refusal, still before
            # anything is written
            check_not_inputs([loc.path for loc in self.locations] + self.side_inputs(),
                             [location.path for _, location, _ in written])
            if manifest_path is not None and any(
                    same_path(manifest_path, location.path) for _, location, _ in written):
                raise OutputError(f"{manifest_path}: --manifest is one of the output's own "
                                  f"files; choose another path")
            for role, location, data in written:
                digest = outputs.write_file(location, [(role, data)])
                entries[role] = entry_for(location.path, None, data, digest)
            return entries
        if output.suffix == ".zarr":
            store = outputs.write_zarr(output, arrays, self.options.engine,
                                       self.options.progress)
            for role, data in arrays:
                entry = entry_for(output.path, role, data, store.sha256)
                entry.files = listing_lines(store.files[role])
                entries[role] = entry
            return entries
        if output.suffix == ".h5":
            arrays = [(role, data if isinstance(data, Planned) else as_utf8(data))
                      for role, data in arrays]
        digest = outputs.write_file(output, arrays)
        for role, data in arrays:
            entries[role] = entry_for(output.path, role, data, digest)
        return entries

    def refuse_losing_targets(self) -> None:
        """``-o -`` writes the tensor alone: targets the user named are refused (before a byte
        is written), targets that merely came with the input are dropped with a warning."""
        table_target = self.options.table.target if self.options.table else None
        named = (Param("y", self.options.y) if self.options.y is not None
                 else Param("target", table_target) if table_target is not None
                 else self.named_targets)
        if named is not None:
            raise OptionError("-o - writes the tensor alone to stdout, so the targets of ",
                              named, " would be lost; write a file: -o OUT.npz, or -o OUT.npy "
                              "with OUT.y.npy beside it")
        self.warn(f"{self.locations[0]}: its targets (y) are not written: -o - writes the "
                  f"tensor alone to stdout")

    def input_entries(self) -> list[FileEntry]:
        entries = []
        for source in self.sources:
            for item in source.records:
                digest = (self.hashes[item.path].hexdigest() if item.path in self.hashes
                          else source.sha256)  # stdin: hashed as it was read
                entries.append(FileEntry(item.path, item.key, item.shape, item.dtype, digest))
        return entries


def with_ids(arrays: list[tuple[str, ArrayData]],
             sources: list[Source]) -> list[tuple[str, ArrayData]]:
    """The result's arrays plus ``ids``: the id of each output sample, when the (first) input
    is a long table. Reordered or split outputs carry their ``order``/``source_index``; a row
    that comes from no sample (``order`` -1) gets id -1 (or "")."""
    ids = sources[0].ids if sources else None
    named = dict(arrays)
    if ids is None or "ids" in named or not arrays:
        return arrays
    if any(isinstance(named.get(k), Stream) for k in ("order", "source_index")):
        # an index streamed to the writer (window's source_index) cannot be read twice: no
        # ids rather than ids that do not line up with the samples
        return arrays
    index = next((named[k] for k in ("order", "source_index")
                  if isinstance(named.get(k), np.ndarray)), None)
    if index is None:
        main_role, main = arrays[0]
        if main_role == "values" and "lengths" in named:  # ragged: one length per sample
            main = named["lengths"]
        count = main.shape[0] if main.shape else 0
        batched = main.shape[0] * main.shape[1] if len(main.shape) == 4 else None
        if ids.shape[0] not in (count, batched):
            return arrays  # samples neither kept in order nor indexed: no ids to give
        return [*arrays, ("ids", ids)]
    flat = np.asarray(index).reshape(-1)
    picked = ids[np.maximum(flat, 0)]
    picked[flat < 0] = -1 if ids.dtype.kind == "i" else ""
    return [*arrays, ("ids", picked.reshape(np.shape(index)))]


@dataclass(frozen=True)
class KeptRows:
    """Label sequences as an output that keeps its input's layout stores them: padded back to
    ``width`` on ``side`` with ``value``, or the flat values of ragged ones. The row function
    of ``kept_labels`` (it crosses to Dask workers: resolved parameters only)."""

    width: int | None
    side: Side
    value: float

    def of(self, block: SequenceSet) -> np.ndarray:
        from .ops.pad import pad

        if self.width is None:
            return block.values
        return pad(block, self.width, self.side, self.side, self.value).tensor

    def __call__(self, source: Source, start: int, stop: int) -> np.ndarray:
        return self.of(source.read_block(start, stop))


def is_main_role(role: str) -> bool:
    """``x``, ``values`` or one batch's ``x_NNNNNN``: the arrays that hold the features."""
    return role in ("x", "values") or (role.startswith("x_") and role[2:].isdigit())


def without_feature_axis(data: ArrayData) -> ArrayData:
    """A one-feature array without its last axis (``--no-feature-axis``): ``(N, T)``."""
    if isinstance(data, Stream):
        return Stream(tuple(data.shape[:-1]), data.dtype,
                      (block.reshape(block.shape[:-1]) for block in data.blocks))
    return np.asarray(data).reshape(np.shape(data)[:-1])


def check_one_feature(source: Source, no_feature_axis: bool) -> None:
    """``--no-feature-axis`` drops the feature axis of a one-feature result only."""
    if no_feature_axis and source.n_features != 1:
        raise OptionError(f"{source.location}: ", Param("no_feature_axis", True),
                          f" writes a one-feature result as (samples, timesteps), but it has "
                          f"{source.n_features} features")


def target_entry(source: Source, timesteps: int | None) -> dict[str, Any]:
    """The manifest's ``targets``: kind, one sample's target shape (``[T, k...]`` per timestep,
    T the output's timesteps, null when ragged) and dtype."""
    if source.step_targets is not None:
        return target_summary("timestep", (timesteps, *source.step_targets.step_shape),
                              source.step_targets.dtype)
    assert source.targets is not None
    return target_summary("sequence", tuple(source.targets.shape[1:]), source.targets.dtype)


def with_padding_side(output: Location, arrays: list[tuple[str, ArrayData]],
                      padding: dict[str, Any] | None) -> list[tuple[str, ArrayData]]:
    """The arrays, plus ``padding_side`` beside a padded ``x`` in an ``.npz``/``.h5``/``.zarr``
    (so its true timesteps are found even without the manifest)."""
    if (output.suffix in (".npz", ".h5", ".zarr") and padding is not None and arrays
            and arrays[0][0] == "x"):
        code = PADDING_SIDE_CODES[padding["side"]]
        arrays = [*arrays, (PADDING_SIDE_KEY, np.array([code], np.uint8))]
    return arrays


def read_rows_at(read_rows: Callable[[int, int], np.ndarray], index: np.ndarray,
                 row_shape: tuple[int, ...], dtype: np.dtype, span_rows: int) -> np.ndarray:
    """Rows ``index`` of a stored array (zeros where ``index`` is -1): one read of the whole
    span when it is at most ``span_rows`` rows, else one read per run of consecutive rows.

    Example:
        >>> data = np.arange(10) * 10
        >>> read_rows_at(lambda a, b: data[a:b], np.array([3, 4, -1, 8]), (), data.dtype, 2)
        array([30, 40,  0, 80])
    """
    out = np.zeros((len(index), *row_shape), dtype=dtype)
    real = index >= 0
    if not real.any():
        return out
    wanted = np.unique(index[real])
    low, high = int(wanted[0]), int(wanted[-1]) + 1
    if high - low <= span_rows:
        out[real] = read_rows(low, high)[index[real] - low]
        return out
    runs = np.split(wanted, np.flatnonzero(np.diff(wanted) != 1) + 1)
    found = np.concatenate([read_rows(int(run[0]), int(run[-1]) + 1) for run in runs])
    out[real] = found[np.searchsorted(wanted, index[real])]
    return out


def entry_for(path: str, key: str | None, data: ArrayData | Planned,
              digest: str | None) -> FileEntry:
    shape = data.shape if isinstance(data, Stream | Planned) else np.shape(data)
    dtype = data.dtype if isinstance(data, Stream | Planned) else np.asarray(data).dtype
    return FileEntry(os.fspath(path), key, tuple(int(d) for d in shape),
                     str(np.dtype(dtype).newbyteorder("=")), digest)
