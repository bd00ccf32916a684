"""Opening an input: from ``PATH[:KEY]`` to a :class:`Source` that reads blocks of sequences.

A :class:`Source` knows, before any data is read, how many samples the input has, their true
lengths, the feature count and the dtype; :meth:`Source.read_block` then reads samples
``start:stop`` as a :class:`~lstmshape.sequences.SequenceSet`. Every command works through it, so
every command reads every layout:

=============================  =============================================================
layout                         where it comes from
=============================  =============================================================
``dense``                      an ``(N, T, F)`` or ``(N, T)`` array (``.npy``, a member, a dataset)
``x+lengths``                  lstmshape's padded output: ``x`` plus true ``lengths``
``values+lengths``             lstmshape's ragged format; ``row_splits``/``offsets`` also accepted
``sequences``                  ``np.savez(path, *seqs)`` (``arr_0``, ``arr_1``...) or an h5 group
                               whose child datasets are the sequences, in natural name order
``vlen``                       an h5 variable-length dataset of 1-D sequences
``objects``                    an object array of sequences (only with ``allow_pickle``)
=============================  =============================================================

True lengths of a dense tensor come from, in order: a ``lengths`` array beside ``x`` in the same
container; ``--lengths FILE``; the input's manifest ``IN.json`` (``outputs.lengths``).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..manifest import Manifest, side_file_path
from ..sequences import LENGTH_DTYPE, SequenceSet, Side, bounds_within
from ..words import collapsed, plural
from .arrays import MemoryArray, StoredArray, check_dtype, decoded_text, nbytes_of
from .location import Location, natural_key, parse_location
from .npy import NpyFileArray, read_npy_stream
from .shards import is_shard_set
from .table import TABLE_SUFFIXES, TableOptions, is_table

if TYPE_CHECKING:
    from .digest import Digest

RAGGED_LENGTH_KEYS = ("lengths", "row_splits", "offsets")
#: The role of the loss weights an output holds when some rows or steps are padding.
SAMPLE_WEIGHT = "sample_weight"
SEQUENCE_KEY_PREFIX = "arr_"
#: ``--memory-limit``'s default, for the CLI and the library alike.
DEFAULT_MEMORY_LIMIT = 256 * 10**6
#: ``lstmshape batch`` writes one ``x_NNNNNN`` (+ ``lengths_NNNNNN``) per batch to .npz/.h5.
FIRST_BATCH_KEY = "x_000000"
#: ``.npz``/``.h5`` outputs holding a padded ``x`` also hold which side the padding is on, so
#: their true timesteps are found even without the manifest: 0 = post, 1 = pre.
PADDING_SIDE_KEY = "padding_side"
PADDING_SIDE_CODES: dict[Side, int] = {"post": 0, "pre": 1}


@dataclass(frozen=True)
class ArrayRecord:
    """One array an input was read from, as the manifest's ``inputs`` lists it."""

    path: str
    key: str | None
    shape: tuple[int, ...]
    dtype: str


@dataclass
class Source:
    """An opened input: its metadata, and a reader for blocks of consecutive samples."""

    location: Location
    kind: str
    layout: str
    n_samples: int
    n_features: int
    dtype: np.dtype
    timesteps: int | None
    lengths: np.ndarray
    side: Side
    records: list[ArrayRecord]
    block_reader: Callable[[int, int], SequenceSet]
    targets: StoredArray | None = None
    #: which source sample (a series, a split sequence) each sample came from, when an earlier
    #: step recorded it (``window`` on a set, ``truncate --overflow split``)
    source_index: StoredArray | None = None
    manifest: Manifest | None = None
    notes: list[str] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    row_bytes_hint: int = 0
    #: what a person reads about the layout (``inspect``); ``layout`` is what code compares
    detail: str = ""
    #: sha256 of what was read from stdin (files are hashed by the Job, in the background)
    sha256: str | None = None
    #: a single series (``series=True``): reads its rows ``start:stop`` as ``(rows, F)``
    row_reader: Callable[[int, int], np.ndarray] | None = None
    #: ``lstmshape batch`` output: each stored batch as ``(start, stop, timesteps)``, its rows
    #: being samples ``start:stop`` padded to ``timesteps``; empty for anything else
    batches: list[tuple[int, int, int]] = field(default_factory=list)
    #: a stored dense tensor (or one stored batch): rows ``start:stop`` as ``(n, T, F)``, padding
    #: and all, exactly as stored
    stored_reader: Callable[[int, int], np.ndarray] | None = None
    #: a long table's id of every sample (int64 or fixed-width unicode), the ``ids`` output
    ids: np.ndarray | None = None
    #: feature names the input itself holds (a table's column names); a manifest's win
    names: list[str] | None = None
    #: per-timestep targets (:mod:`lstmshape.io.targets`): the labels as a sequence set with
    #: x's lengths and side, handled by the same code as x; None for sequence-level targets
    step_targets: Source | None = None
    #: one timestep's label shape, ``()`` or ``(k,)`` (a label source's own)
    step_shape: tuple[int, ...] = ()
    #: ``--y``: where the targets were named explicitly
    target_file: str | None = None
    #: ``sample_weight`` of an lstmshape output (0 on pad rows / padded steps)
    sample_weight: StoredArray | None = None

    # -- reading --------------------------------------------------------------------------------
    def read_block(self, start: int, stop: int) -> SequenceSet:
        """Samples ``start:stop`` as a sequence set."""
        return self.block_reader(start, stop)

    def read(self) -> SequenceSet:
        """Every sample (use :meth:`block_bounds` to stay within a memory budget)."""
        return self.read_block(0, self.n_samples)

    def read_targets(self, start: int, stop: int) -> np.ndarray | None:
        """Targets of samples ``start:stop`` (None when the input has none)."""
        return None if self.targets is None else self.targets.read_rows(start, stop)

    def read_dense(self, start: int, stop: int, timesteps: int | None = None) -> np.ndarray:
        """Samples ``start:stop`` as an ``(n, T, F)`` tensor: as stored when the input is one
        (a padded tensor, one stored batch), else padded with the source's pad value (else 0)
        on its side to ``timesteps`` (default: the longest of these samples)."""
        from ..ops.pad import pad

        width = timesteps if timesteps is not None else self.timesteps
        if self.stored_reader is not None:
            stored = self.stored_reader(start, stop)
            if width is None or stored.shape[1] == width:
                return stored
        block = self.read_block(start, stop)
        if width is None:
            width = int(block.lengths.max()) if block.n_samples else 0
        value = self.pad_value
        if value is None or (np.isnan(value) and self.dtype.kind != "f"):
            value = 0.0
        return pad(block, width, self.side, self.side, value, self.dtype).tensor

    def read_stored(self, start: int, stop: int) -> np.ndarray | None:
        """Samples ``start:stop`` of a stored padded tensor exactly as stored, pad steps and
        all, as ``(n, timesteps, F)`` of the source's dtype; None when the input stores no such
        tensor (ragged, a table, batches of another width)."""
        if self.stored_reader is None or self.timesteps is None:
            return None
        stored = self.stored_reader(start, stop)
        if stored.shape[1:] != (self.timesteps, self.n_features) or stored.dtype != self.dtype:
            return None
        return stored

    def read_source_index(self) -> np.ndarray | None:
        """Every sample's ``source_index`` (int64, one per sample, like the lengths); None when
        the input records none."""
        if self.source_index is None:
            return None
        return self.source_index.read_rows(0, self.n_samples).astype(np.int64, copy=False)

    @property
    def target_shape(self) -> tuple[int | None, ...] | None:
        """The shape of one sample's target, None without targets (``(None, ...)`` for
        per-timestep labels of ragged sequences)."""
        if self.step_targets is not None:
            return (self.timesteps, *self.step_targets.step_shape)
        return None if self.targets is None else tuple(self.targets.shape[1:])

    @property
    def target_kind(self) -> str | None:
        """``"sequence"``, ``"timestep"`` or None (no targets); see :mod:`lstmshape.io.targets`."""
        if self.step_targets is not None:
            return "timestep"
        return None if self.targets is None else "sequence"

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of a single series as ``(rows, F)``, without reading the rest.

        Only a series source (``layout == "series"``) has rows; ``window`` reads a long series
        in overlapping row ranges through this.
        """
        if self.row_reader is None:
            raise TypeError(f"{self.location}: a {self.layout} source has no series rows")
        return self.row_reader(start, stop)

    def block_bounds(self, max_bytes: int,
                     extra_per_sample: int | np.ndarray = 0) -> list[tuple[int, int]]:
        """Consecutive ``(start, stop)`` sample ranges whose bytes stay under ``max_bytes``.

        A dense input costs its full ``T`` timesteps per sample; a ragged one its true length;
        ``extra_per_sample`` adds what the command's output costs per sample (a padded row; an
        array when it differs per sample, e.g. a sample's windows).
        Every block has at least one sample.
        """
        if self.n_samples == 0:
            return [(0, 0)]
        step_bytes = max(self.n_features * self.dtype.itemsize, 1)
        if self.timesteps is not None:
            per_sample = np.full(self.n_samples, self.timesteps * step_bytes, dtype=np.int64)
        else:
            per_sample = self.lengths * step_bytes
        return bounds_within(per_sample + self.row_bytes_hint + extra_per_sample, max_bytes)

    @property
    def feature_names(self) -> list[str]:
        if self.manifest is not None:
            return self.manifest.feature_names(self.n_features)
        if self.names is not None and len(self.names) == self.n_features:
            return list(self.names)
        return [f"f{i}" for i in range(self.n_features)]

    @property
    def pad_value(self) -> float | None:
        return None if self.manifest is None else self.manifest.pad_value

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Opening


def open_source(src: str | Location, *, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                allow_pickle: bool = False, lengths_file: str | None = None,
                series: bool = False, digest: Digest | None = None,
                nan: str = "keep", manifest: str | None = None,
                table: TableOptions | None = None, y: str | None = None,
                y_kind: str = "auto") -> Source:
    """Open ``PATH[:KEY]`` (or ``-`` for an ``.npy`` on stdin) as a :class:`Source`.

    The one reader: raw inputs and lstmshape's own outputs (padded, ragged, batched, with their
    ``lengths``, ``y`` and manifest) are opened by the same code, so every command, ``verify``,
    ``inspect`` and the framework bridges read exactly the same samples.

    ``series=True`` reads a 1-D ``(T,)`` or 2-D ``(T, F)`` array as one long sequence (for
    ``window``) instead of as samples; its rows can be read a range at a time
    (:meth:`Source.read_rows`). A 3-D array or a ragged set stays a set of series.

    ``y`` (``--y PATH[:KEY]``): the targets, which win over a ``y`` in the input; ``y_kind``
    (``auto``/``sequence``/``timestep``) says whether they are per sample or per timestep
    (see :mod:`lstmshape.io.targets`).

    ``lengths_file`` (``--lengths``): true lengths of a dense input. ``nan="error"``
    (``--nan error``): every read fails on NaN/inf, naming where. ``manifest``: the manifest to
    read instead of ``PATH.json`` (``verify --manifest``). ``digest``: hashes the file from the
    rows read as they are read, where the layout allows (see :mod:`lstmshape.io.digest`).
    ``table``: how a long table's rows become sequences (``--id``, ``--time``...; see
    :mod:`lstmshape.io.table`). A directory or a glob (``'shards/*.npy'``) opens every file in
    it, in natural order, as one set (:mod:`lstmshape.io.shards`).

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy"); np.save(path, np.zeros((4, 5)))
        >>> with open_source(path) as src:
        ...     (src.kind, src.n_samples, src.timesteps, src.n_features)
        ('dense', 4, 5, 1)
    """
    location = parse_location(src) if isinstance(src, str) else src
    if is_shard_set(location.path):
        from .shards import open_shards

        source = open_shards(location, lambda path: open_source(
            path, memory_limit=memory_limit, allow_pickle=allow_pickle, series=series,
            table=table))
        source = refusing_non_finite(source) if nan == "error" else source
        return with_targets_composed(source, y, y_kind, memory_limit, allow_pickle)
    opener = Opener(location, memory_limit, allow_pickle, series, digest, manifest, table)
    try:
        source = opener.open()
        if lengths_file is not None:
            source = with_lengths_file(source, lengths_file, memory_limit)
        if nan == "error":
            source = refusing_non_finite(source)
        return with_targets_composed(source, y, y_kind, memory_limit, allow_pickle)
    except BaseException:
        for close in opener.closers:
            close()
        raise


def with_targets_composed(source: Source, y: str | None, y_kind: str, memory_limit: int,
                          allow_pickle: bool) -> Source:
    """The source with ``--y`` (or the targets it holds) composed in as sequence-level or
    per-timestep targets (:mod:`lstmshape.io.targets`); a single series has none."""
    if source.layout == "series":
        return source
    from .targets import resolve_target_kind, with_explicit_targets

    if y is not None:
        return with_explicit_targets(source, y, y_kind, memory_limit=memory_limit,
                                     allow_pickle=allow_pickle)
    return resolve_target_kind(source, y_kind)


class Opener:
    """Resolves a location to a layout; holds the open files until the Source owns them."""

    def __init__(self, location: Location, memory_limit: int, allow_pickle: bool,
                 series: bool, digest: Digest | None = None,
                 manifest: str | None = None, table: TableOptions | None = None) -> None:
        self.location = location
        self.table = table or TableOptions()
        self.manifest_path = manifest
        self.memory_limit = memory_limit
        self.allow_pickle = allow_pickle
        self.series = series
        self.digest = digest
        self.closers: list[Callable[[], None]] = []

    def watch(self, array: StoredArray) -> None:
        """Let the digest hash the rows read from ``array`` -- the bulk of the file -- from
        memory as they are read, when they are the file's raw bytes."""
        inner = array.array if isinstance(array, BatchRows) else array
        watch = getattr(inner, "watch", None)  # file-backed arrays only
        if self.digest is not None and watch is not None and watch(self.digest.observe):
            self.digest.observed_bytes += nbytes_of(inner.shape, inner.dtype)

    def open(self) -> Source:
        location = self.location
        if location.is_stdio:
            stdin = HashingReader(sys.stdin.buffer)
            data = read_npy_stream(stdin, "<stdin>", self.allow_pickle,  # type: ignore[arg-type]
                                   self.memory_limit)
            source = self.from_array(MemoryArray(data), None, None)
            source.sha256 = stdin.digest.hexdigest()  # a pipe cannot be hashed again later
            return source
        suffix = location.suffix
        if self.table.given and not is_table(location.path):
            raise InputError(f"{location.path}: --id, --time, --features and --target read "
                             f"tables (.parquet, .csv, .tsv, .arrow); this is a {suffix} array")
        if suffix == ".zarr":  # a directory: the store's own reader says what is wrong
            return self.open_zarr()
        check_readable_file(location.path)
        if is_table(location.path):
            from .table import table_source

            source = table_source(location.path, location.key, self.table, self.memory_limit,
                                  self.series)
            self.closers.extend(source.closers)
            return source
        if suffix == ".npy":
            if location.key is not None:
                raise InputError(f"{location.path}: an .npy file holds one array; "
                                 f"remove ':{location.key}'")
            array = NpyFileArray(location.path, self.allow_pickle, self.memory_limit)
            self.closers.append(array.close)
            manifest = self.manifest_beside()
            source = self.with_side_targets(self.from_array(array, None, manifest), manifest)
            index_path = None if manifest is None else manifest.side_file("source_index",
                                                                          location.path)
            if index_path is not None:
                index_file = NpyFileArray(index_path, False, self.memory_limit)
                self.closers.append(index_file.close)
                source = self.with_source_index(source, index_file, index_path)
                source.records.append(record(index_path, None, index_file))
            ids_path = None if manifest is None else manifest.side_file("ids", location.path)
            if ids_path is not None:
                ids_file = NpyFileArray(ids_path, False, self.memory_limit)
                self.closers.append(ids_file.close)
                source = self.with_stored_ids(source, ids_file, ids_path)
                source.records.append(record(ids_path, None, ids_file))
            return source
        if suffix == ".npz":
            return self.open_npz()
        if suffix == ".h5":
            return self.open_h5()
        raise InputError(f"{location.path}: unknown suffix {suffix or '(none)'!r}; "
                         f"lstmshape reads .npy, .npz, .h5, .zarr and tables "
                         f"({', '.join(TABLE_SUFFIXES)})")

    def manifest_beside(self) -> Manifest | None:
        if self.manifest_path is not None:
            return Manifest.from_file(self.manifest_path, self.location.path)
        return Manifest.beside(self.location.path)

    def with_side_targets(self, source: Source, manifest: Manifest | None) -> Source:
        """An ``.npy`` output's targets: ``OUT.y.npy`` beside it (one row per sample; a batched
        output's may be ``(num_batches, B, ...)``)."""
        path = self.location.path
        if manifest is not None:
            y_path = manifest.side_file("y", path)
        else:
            conventional = side_file_path(path, "y")
            y_path = conventional if os.path.isfile(conventional) else None
        if y_path is None or source.layout == "series":
            return source
        rows = self.side_rows(source, y_path)
        source = self.with_targets(source, rows, "", y_path)
        stored = rows.array if isinstance(rows, BatchRows) else rows
        source.records[-1] = record(y_path, None, stored)  # as stored, not as rows
        weight_path = manifest.side_file(SAMPLE_WEIGHT, path) if manifest is not None else None
        if weight_path is not None:
            source.sample_weight = self.side_rows(source, weight_path)
        return source

    def side_rows(self, source: Source, side_path: str) -> StoredArray:
        """An ``OUT.<role>.npy`` side file's rows, one per sample (a batched output's
        ``(num_batches, B, ...)`` read as its rows)."""
        side_file = NpyFileArray(side_path, self.allow_pickle, self.memory_limit)
        self.closers.append(side_file.close)
        if source.batches and len(side_file.shape) >= 2 and \
                side_file.shape[0] * side_file.shape[1] == source.n_samples:
            return BatchRows(side_file)
        return side_file

    # -- containers -----------------------------------------------------------------------------
    def open_npz(self) -> Source:
        from .npz import NpzArchive

        archive = NpzArchive(self.location.path, self.memory_limit, self.allow_pickle)
        self.closers.append(archive.close)
        keys = archive.keys()
        manifest = self.manifest_beside()
        if self.location.key is not None:
            return self.from_key({k: archive.array(k) for k in keys}, manifest)
        if not keys:
            raise InputError(f"{self.location.path}: empty archive, no arrays in it")
        named = set(keys)
        if named & {"x", "values", FIRST_BATCH_KEY} or len(keys) == 1:
            return self.from_group({k: archive.array(k) for k in keys}, manifest)
        if all(k.startswith(SEQUENCE_KEY_PREFIX) and k[len(SEQUENCE_KEY_PREFIX):].isdigit()
               for k in keys):
            ordered = sorted(keys, key=natural_key)
            return self.from_sequences([archive.array(k) for k in ordered], None,
                                       f"{len(keys)} arrays {ordered[0]}..{ordered[-1]}",
                                       names=ordered)
        raise InputError(f"{self.location.path}: holds {len(keys)} arrays; pick one with "
                         f"{self.location.path}:KEY -- keys found: {collapsed(keys)}")

    def open_zarr(self) -> Source:
        """A ``.zarr`` store lstmshape wrote (or any Zarr v3 group of arrays by role): read by
        the same layouts as an ``.npz`` archive."""
        from .zarr_store import open_arrays

        if not os.path.isdir(self.location.path):
            raise InputError(f"{self.location.path}: no such directory (a .zarr is a "
                             f"directory store)")
        arrays: dict[str, StoredArray] = dict(open_arrays(self.location.path))
        manifest = self.manifest_beside()
        if self.location.key is not None:
            return self.from_key(arrays, manifest)
        if not arrays:
            raise InputError(f"{self.location.path}: empty store, no arrays in it")
        if arrays.keys() & {"x", "values", FIRST_BATCH_KEY} or len(arrays) == 1:
            return self.from_group(arrays, manifest)
        raise InputError(f"{self.location.path}: holds {len(arrays)} arrays; pick one with "
                         f"{self.location.path}:KEY -- keys found: {', '.join(arrays)}")

    def from_key(self, arrays: dict[str, StoredArray], manifest: Manifest | None) -> Source:
        """``PATH:KEY`` of an archive or store: ``x``/``values`` with what lies beside them,
        any other key as a plain array."""
        key = self.location.key
        if key not in arrays:
            raise InputError(f"{self.location.path}: no key {key!r}; keys found: "
                             f"{', '.join(arrays) or 'none'}")
        if key == "x" or key == "values":
            return self.from_group(arrays, manifest)
        return self.from_array(arrays[key], key, manifest)

    def open_h5(self) -> Source:
        from .h5 import H5DatasetArray, H5File, read_vlen

        h5 = H5File(self.location.path, self.memory_limit)
        self.closers.append(h5.close)
        manifest = self.manifest_beside()
        node = h5.get(self.location.key or "/")
        explicit = user_key = self.location.key is not None
        while not explicit and h5.is_group(node) and len(h5.children(node)) == 1:
            # one group or dataset at the top and no KEY: that is the data
            node = h5.children(node)[0][1]
            self.location = Location(self.location.path, node.name)
            explicit = True
        if not h5.is_group(node):
            sequences = read_vlen(h5, node)
            if sequences is not None:
                return self.from_sequences([MemoryArray(s) for s in sequences], node.name,
                                           f"vlen dataset of {len(sequences)}")
            return self.from_array(H5DatasetArray(h5, node), node.name, manifest)
        children = h5.children(node)
        datasets = {name: child for name, child in children if not h5.is_group(child)}
        groups = [(name, child) for name, child in children if h5.is_group(child)]
        if datasets.keys() & {"x", "values", FIRST_BATCH_KEY}:
            return self.from_group({n: H5DatasetArray(h5, d) for n, d in datasets.items()},
                                   manifest, node.name)
        # Without a KEY, the root is a sequence set only when its names say so (s0, s1, ...):
        # a file with "train" and "test" beside each other is two arrays, not two sequences.
        numbered = user_key or is_numbered_set(list(datasets))
        if datasets and not groups and numbered and looks_like_sequences(list(datasets.values())):
            arrays = [H5DatasetArray(h5, d) for d in datasets.values()]
            return self.from_sequences(arrays, node.name, f"group of {len(datasets)} datasets",
                                       names=list(datasets))
        names = h5.dataset_names()
        raise InputError(f"{self.location.path}: holds {len(names)} datasets; pick one with "
                         f"{self.location.path}:KEY -- keys found: {collapsed(names) or 'none'}")

    # -- layouts --------------------------------------------------------------------------------
    def from_group(self, arrays: dict[str, Any], manifest: Manifest | None,
                   group: str | None = None) -> Source:
        """A container group: ``values`` + lengths, ``x`` (+ ``lengths``, ``y``), or one array."""
        prefix = "" if group in (None, "/") else f"{group}/"
        if "values" in arrays:
            length_key = next((k for k in RAGGED_LENGTH_KEYS if k in arrays), None)
            if length_key is None:
                raise InputError(f"{self.location.path}: has 'values' but no "
                                 f"{' / '.join(RAGGED_LENGTH_KEYS)} array to split it")
            ragged = self.from_ragged(arrays["values"], arrays[length_key], length_key, prefix,
                                      manifest)
            ragged.sample_weight = arrays.get(SAMPLE_WEIGHT)
            ragged = self.with_stored_ids(ragged, arrays.get("ids"), f"{prefix}ids")
            ragged = self.with_source_index(ragged, arrays.get("source_index"),
                                            f"{self.location.path}:{prefix}source_index")
            return self.with_targets(ragged, arrays.get("y"), prefix)
        if FIRST_BATCH_KEY in arrays and "x" not in arrays:
            return self.from_batches(arrays, manifest, prefix)
        if "x" in arrays:
            dense = self.from_array(arrays["x"], prefix + "x", manifest,
                                    lengths_array=arrays.get("lengths"),
                                    side_array=arrays.get(PADDING_SIDE_KEY))
            dense.sample_weight = arrays.get(SAMPLE_WEIGHT)
            dense = self.with_stored_ids(dense, arrays.get("ids"), f"{prefix}ids")
            dense = self.with_source_index(dense, arrays.get("source_index"),
                                           f"{self.location.path}:{prefix}source_index")
            return self.with_targets(dense, arrays.get("y"), prefix)
        (key, only), = arrays.items()
        return self.from_array(only, prefix + key, manifest)

    def with_targets(self, source: Source, target: StoredArray | None, prefix: str,
                     file: str | None = None) -> Source:
        """Attach the targets ``y`` (one row per sample) so commands carry them along."""
        if target is None:
            return source
        where = file or f"{self.location.path}:{prefix}y"
        per_step = source.timesteps is None and target.shape[:1] == (int(source.lengths.sum()),)
        if target.shape[:1] != (source.n_samples,) and not per_step:
            raise InputError(f"{where} has shape {target.shape}, not one row per sample of the "
                             f"{source.n_samples} samples; fix or drop it")
        check_dtype(target.dtype, where)
        source.targets = target
        source.records.append(record(file or self.location.path, None if file else prefix + "y",
                                     target))
        return source

    def with_stored_ids(self, source: Source, ids: StoredArray | None, key: str) -> Source:
        """The ``ids`` an earlier step wrote (a table's id of every sample), so the next step
        carries them along; ``key`` is the array's key, or the ``OUT.ids.npy`` path."""
        if ids is None:
            return source
        where = key if key.endswith(".npy") else f"{self.location.path}:{key}"
        if ids.shape[:1] != (source.n_samples,) and not (
                len(ids.shape) == 2 and ids.shape[0] * ids.shape[1] == source.n_samples):
            raise InputError(f"{where} has shape {tuple(ids.shape)}, not one id per sample of "
                             f"the {source.n_samples} samples; fix or drop it")
        if len(ids.shape) > 2 or (len(ids.shape) == 2 and not source.batches):
            raise InputError(f"{where} has shape {tuple(ids.shape)}; ids are one per sample")
        try:
            source.ids = decoded_text(ids.read_rows(0, ids.shape[0])).reshape(-1)
        except UnicodeDecodeError:
            raise InputError(f"{where}: holds bytes that are not UTF-8 text; store the ids as "
                             f"text or integers") from None
        return source

    def with_source_index(self, source: Source, index: StoredArray | None,
                          where: str) -> Source:
        """Attach ``source_index`` (one integer per sample) so commands carry it along."""
        if index is None:
            return source
        if tuple(index.shape) != (source.n_samples,) or index.dtype.kind not in "iu":
            raise InputError(f"{where} has shape {tuple(index.shape)} dtype {index.dtype}, not "
                             f"one integer per sample of the {source.n_samples} samples; fix or "
                             f"drop it")
        source.source_index = index
        return source

    def from_batches(self, arrays: dict[str, Any], manifest: Manifest | None,
                     prefix: str) -> Source:
        """``batch``'s .npz/.h5 output read back as one set: every row of ``x_000000``,
        ``x_000001``, ... in output order, with its true length (pad rows are empty sequences).
        ``PATH:x_000003`` still picks a single batch as a plain array."""
        path = self.location.path
        keys = sorted((k for k in arrays if k.startswith("x_") and k[2:].isdigit()),
                      key=natural_key)
        xs = [arrays[k] for k in keys]
        if manifest is not None and not manifest.feature_axis:  # --no-feature-axis: (B, T)
            for x in xs:
                self.watch(x)
            xs = [ThreeD(x) for x in xs]
        for key, x in zip(keys, xs, strict=True):
            check_dtype(x.dtype, f"{path}:{prefix}{key}")
            if len(x.shape) != 3 or x.shape[2:] != xs[0].shape[2:] or x.dtype != xs[0].dtype:
                raise InputError(f"{path}:{prefix}{key}: batches must be 3-D (rows, timesteps, "
                                 f"features) of one dtype and feature count like {keys[0]} "
                                 f"{xs[0].shape} {xs[0].dtype}; found {x.shape} {x.dtype}")
        side = side_of(manifest)
        per_batch = []
        for key, x in zip(keys, xs, strict=True):
            stored = arrays.get("lengths" + key[1:])
            rows, width = x.shape[0], x.shape[1]
            per_batch.append(np.full(rows, width, dtype=LENGTH_DTYPE) if stored is None else
                             check_lengths(read_all(stored), rows, width,
                                           f"{path}:{prefix}lengths{key[1:]}"))
        lengths = np.concatenate(per_batch) if per_batch else np.zeros(0, dtype=LENGTH_DTYPE)
        offsets = np.concatenate([[0], np.cumsum([x.shape[0] for x in xs])]).astype(np.int64)
        widths = {x.shape[1] for x in xs}
        features = xs[0].shape[2]
        for x in xs:
            self.watch(x)

        def read_batches(start: int, stop: int) -> SequenceSet:
            first = int(np.searchsorted(offsets, start, side="right")) - 1
            parts = [np.zeros((0, features), dtype=xs[0].dtype)]
            for index in range(max(first, 0), len(xs)):  # one read per batch in the range
                low, high = int(offsets[index]), int(offsets[index + 1])
                if low >= stop:
                    break
                rows = xs[index].read_rows(max(start, low) - low, min(stop, high) - low)
                part = per_batch[index][max(start, low) - low:min(stop, high) - low]
                parts.append(SequenceSet.from_dense(rows, part, side).values)
            return SequenceSet(np.concatenate(parts), lengths[start:stop])

        detail = f"{len(xs)} x_NNNNNN" + padding_summary(manifest)
        uniform = len(widths) == 1
        batches = [(int(offsets[i]), int(offsets[i + 1]), x.shape[1]) for i, x in enumerate(xs)]
        target_keys = ["y" + key[1:] for key in keys]
        targets = None
        if all(key in arrays for key in target_keys) and target_keys:
            targets = ConcatRows([arrays[key] for key in target_keys],
                                 f"{path}:{prefix}{target_keys[0]}")
        elif any(key in arrays for key in target_keys):
            missing = next(key for key in target_keys if key not in arrays)
            raise InputError(f"{path}: has y_NNNNNN targets but no {prefix}{missing}; every batch "
                             f"needs its own")

        def read_stored(start: int, stop: int) -> np.ndarray:
            """Rows ``start:stop`` as stored, across as many batches as they span (of one
            width: batches of different widths make no one tensor)."""
            index = min(int(np.searchsorted(offsets, start, side="right")) - 1, len(xs) - 1)
            parts, row = [], start
            while True:
                low, high = int(offsets[index]), int(offsets[index + 1])
                end = min(stop, high)
                parts.append(xs[index].read_rows(row - low, end - low))
                if end >= stop:
                    break
                row, index = end, index + 1
            if len(parts) == 1:
                only: np.ndarray = parts[0]
                return only
            if len({part.shape[1] for part in parts}) > 1:
                raise ValueError(f"rows {start}:{stop} span batches of different widths")
            return np.concatenate(parts)

        source = Source(location=Location(path, prefix.rstrip("/") or None),
                      stored_reader=read_stored,
                      kind="dense" if uniform else "ragged", layout="batches", detail=detail,
                      n_samples=int(offsets[-1]), n_features=features, dtype=xs[0].dtype,
                      timesteps=widths.pop() if uniform else None, lengths=lengths, side=side,
                      manifest=manifest, closers=self.closers, block_reader=read_batches,
                      records=[record(path, prefix + k, x.array if isinstance(x, ThreeD) else x)
                               for k, x in zip(keys, xs, strict=True)],
                      batches=batches)
        if targets is not None:
            source.targets = targets
        weight_keys = [SAMPLE_WEIGHT + key[1:] for key in keys]
        if weight_keys and all(key in arrays for key in weight_keys):
            source.sample_weight = ConcatRows([arrays[key] for key in weight_keys],
                                              f"{path}:{prefix}{weight_keys[0]}")
        return self.with_stored_ids(source, arrays.get("ids"), f"{prefix}ids")

    def from_array(self, array: StoredArray, key: str | None, manifest: Manifest | None,
                   lengths_array: StoredArray | None = None,
                   side_array: StoredArray | None = None) -> Source:
        """A single array: dense samples, a series (``series=True``) or pickled sequences."""
        where = str(Location(self.location.path, key)) if key else self.location.path
        if self.location.is_stdio:
            where = "<stdin>"
        if array.dtype.hasobject:
            objects = array.read_rows(0, array.shape[0] if array.shape else 1)
            return self.from_sequences([MemoryArray(np.asarray(o)) for o in objects.reshape(-1)],
                                       key, f"object array of {objects.size}")
        check_dtype(array.dtype, where)
        batch_dims = 4 if manifest is None or manifest.feature_axis else 3
        if len(array.shape) == batch_dims and manifest is not None and \
                manifest.command == "batch":
            array = BatchRows(array)  # (num_batches, B, T, F) read as its B * num_batches rows
        shape = array.shape
        if self.series and len(shape) != 3:  # (N, T, F) stays a set of N series
            return self.series_source(array, key, where, manifest)
        if len(shape) not in (2, 3):
            hint = " (a single series: use 'lstmshape window')" if len(shape) == 1 else ""
            if not shape:
                hint = " (a single value)"
            raise InputError(f"{where}: expected a 2-D (samples, timesteps) or 3-D (samples, "
                             f"timesteps, features) array, found shape {shape}{hint}")
        n, t = shape[0], shape[1]
        features = shape[2] if len(shape) == 3 else 1
        lengths = np.full(n, t, dtype=LENGTH_DTYPE)
        side: Side = "post"
        notes: list[str] = []
        layout, detail = "dense", ""
        batches: list[tuple[int, int, int]] = []
        if isinstance(array, BatchRows):
            layout = "batches"
            detail = f"{array.array.shape} (num_batches, B, T, F)" + padding_summary(manifest)
            batches = [(i * array.rows, (i + 1) * array.rows, t)
                       for i in range(array.array.shape[0])]
        if lengths_array is not None:
            lengths = check_lengths(read_all(lengths_array), n, t,
                                    f"{self.location.path}:lengths")
            layout = "x+lengths"
        elif manifest is not None and self.location.suffix == ".npy":
            lengths, notes = lengths_from_manifest(manifest, self.location.path, n, t, lengths)
        if manifest is not None:
            side = side_of(manifest)
        elif side_array is not None:  # the container's own record, for when no manifest is by
            side = side_from_code(read_all(side_array), f"{self.location.path}:{PADDING_SIDE_KEY}")
        self.watch(array)
        return Source(
            location=Location(self.location.path, key), kind="dense", layout=layout,
            detail=detail, n_samples=n, n_features=features, dtype=array.dtype, timesteps=t,
            lengths=lengths, side=side, manifest=manifest, notes=notes, closers=self.closers,
            records=[record(self.location.path, key, array)],
            block_reader=dense_reader(array, lengths, side, t), batches=batches,
            stored_reader=lambda start, stop: array.read_rows(start, stop).reshape(
                stop - start, t, features),
        )

    def series_source(self, array: StoredArray, key: str | None, where: str,
                      manifest: Manifest | None = None) -> Source:
        shape = array.shape
        if len(shape) not in (1, 2):
            raise InputError(f"{where}: expected a series of shape (timesteps,) or (timesteps, "
                             f"features), found shape {shape}")
        total = shape[0]
        features = shape[1] if len(shape) == 2 else 1
        self.watch(array)

        def read_series(start: int, stop: int) -> SequenceSet:
            rows = array.read_rows(0, total) if stop > start else array.read_rows(0, 0)
            return SequenceSet(rows.reshape(-1, features), np.array([total] * (stop - start),
                                                                    dtype=LENGTH_DTYPE))

        def read_rows(start: int, stop: int) -> np.ndarray:
            return array.read_rows(start, stop).reshape(-1, features)

        return Source(location=Location(self.location.path, key), kind="ragged",
                      layout="series", n_samples=1, n_features=features, dtype=array.dtype,
                      timesteps=None, lengths=np.array([total], dtype=LENGTH_DTYPE), side="post",
                      records=[record(self.location.path, key, array)], closers=self.closers,
                      block_reader=read_series, row_reader=read_rows, manifest=manifest)

    def from_ragged(self, values: StoredArray, splits: StoredArray, split_key: str, prefix: str,
                    manifest: Manifest | None) -> Source:
        path = self.location.path
        where = f"{path}:{prefix}values"
        check_dtype(values.dtype, where)
        if len(values.shape) not in (1, 2):
            raise InputError(f"{where}: ragged values must be 1-D (timesteps,) or 2-D "
                             f"(timesteps, features), found shape {values.shape}")
        total = values.shape[0]
        features = values.shape[1] if len(values.shape) == 2 else 1
        raw = splits.read_rows(0, splits.shape[0] if splits.shape else 0)
        split_where = f"{path}:{prefix}{split_key}"
        if split_key == "lengths":
            lengths = check_lengths(raw, None, None, split_where)
        else:
            lengths = lengths_from_splits(raw, split_where)
        if int(lengths.sum()) != total:
            raise InputError(f"{split_where}: lengths add up to {int(lengths.sum())} timesteps but "
                             f"{where} has {total} (shape {values.shape})")
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.watch(values)

        def read_ragged(start: int, stop: int) -> SequenceSet:
            rows = values.read_rows(int(offsets[start]), int(offsets[stop]))
            return SequenceSet(rows.reshape(-1, features), lengths[start:stop])

        return Source(location=Location(path, prefix.rstrip("/") or None), kind="ragged",
                      layout="values+" + split_key, n_samples=len(lengths), n_features=features,
                      dtype=values.dtype, timesteps=None, lengths=lengths, side="post",
                      manifest=manifest, closers=self.closers, block_reader=read_ragged,
                      records=[record(path, prefix + "values", values),
                               record(path, prefix + split_key, splits)],
                      row_bytes_hint=8)

    def from_sequences(self, arrays: list[Any], key: str | None, description: str,
                       names: list[str] | None = None) -> Source:
        """Sequences stored one array each: read them all (they cannot be streamed).
        ``names``: each one's key (``arr_137``), named when that sequence is the odd one."""
        path = self.location.path
        check_same_widths(arrays, names, path, key)
        declared = sum(nbytes_of(a.shape, a.dtype) for a in arrays)
        if declared > self.memory_limit:
            raise InputError(f"{path}: {description} sequences of {declared:,} bytes in all is "
                             f"over --memory-limit {self.memory_limit:,} and this layout cannot be "
                             f"streamed; raise --memory-limit or store values + lengths")
        # an empty sequence's dtype does not count (np.savez of [] is float64), as in Keras
        counted = [a for a in arrays if not a.shape or a.shape[0]] or arrays
        dtypes = {np.dtype(a.dtype) for a in counted}
        if len(dtypes) > 1:
            raise InputError(f"{path}: sequences have different dtypes "
                             f"{sorted(map(str, dtypes))}; expected one dtype for all")
        sequences = []
        for index, array in enumerate(arrays):
            where = f"{path}:{key or ''}[{index}]"
            data = array.read_rows(0, array.shape[0] if array.shape else 1)
            check_dtype(data.dtype, where)
            if data.ndim not in (1, 2):
                raise InputError(f"{where}: a sequence must be 1-D (timesteps,) or 2-D "
                                 f"(timesteps, features), found shape {data.shape}")
            sequences.append(data)
        try:
            seqs = SequenceSet.from_sequences(sequences)
        except InputError as err:
            raise InputError(f"{path}: {err}") from None
        if not arrays:
            raise InputError(f"{path}: {description} holds no sequences")
        return Source(location=Location(path, key), kind="ragged", layout="sequences",
                      n_samples=seqs.n_samples, n_features=seqs.n_features, dtype=seqs.dtype,
                      timesteps=None, lengths=seqs.lengths, side="post", closers=self.closers,
                      records=[ArrayRecord(path, key, (seqs.n_samples,), str(seqs.dtype))],
                      block_reader=seqs.select)


# ---------------------------------------------------------------------------------------------
# Helpers


def check_same_widths(arrays: list[Any], names: list[str] | None, path: str,
                      key: str | None) -> None:
    """One feature count for every sequence, else an error naming the first odd one by its key
    (``arr_137``) and the count most of them have.

    Example:
        >>> seqs = [MemoryArray(np.zeros((2, 12)))] * 3 + [MemoryArray(np.zeros((4, 11)))]
        >>> check_same_widths(seqs, [f"arr_{i}" for i in range(4)], "v.npz", None)
        Traceback (most recent call last):
        ...
        lstmshape.errors.InputError: v.npz:arr_3 has 11 features (shape (4, 11)), but 3 of the ...
    """
    widths = [(a.shape[1] if len(a.shape) == 2 else 1) if a.shape and a.shape[0] else None
              for a in arrays]
    counted = [w for w in widths if w is not None]
    if len(set(counted)) <= 1:
        return
    common = max(set(counted), key=counted.count)
    odd = next(i for i, w in enumerate(widths) if w is not None and w != common)
    name = names[odd] if names is not None else f"{key or ''}[{odd}]"
    raise InputError(f"{path}:{name} has {plural(widths[odd] or 0, 'feature')} (shape "
                     f"{tuple(arrays[odd].shape)}), but {counted.count(common):,} of the "
                     f"{len(arrays):,} sequences have {common}; every sequence needs the same "
                     f"feature count")


def side_of(manifest: Manifest | None) -> Side:
    """Where a manifest says the padding is; ``"post"`` without one."""
    return "post" if manifest is None else manifest.side


def side_from_code(raw: np.ndarray, where: str) -> Side:
    codes = {code: side for side, code in PADDING_SIDE_CODES.items()}
    if raw.shape != (1,) or raw.dtype.kind not in "iu" or int(raw[0]) not in codes:
        raise InputError(f"{where}: expected one value, 0 (post) or 1 (pre), found "
                         f"{raw.tolist()}")
    return codes[int(raw[0])]


def read_all(array: StoredArray) -> np.ndarray:
    """Every row of a small array (lengths, splits): all of it, so a count mismatch shows."""
    return array.read_rows(0, array.shape[0] if array.shape else 1)


def is_numbered_set(names: list[str]) -> bool:
    """True for names like ``arr_0, arr_1, ...`` or ``s0, s1, ...``: one prefix, then a number.

    Example:
        >>> is_numbered_set(["s0", "s1", "s10"]), is_numbered_set(["train", "test"])
        (True, False)
    """
    matches = [re.fullmatch(r"(.*?)\d+", name) for name in names]
    prefixes = {match.group(1) for match in matches if match is not None}
    return bool(names) and None not in matches and len(prefixes) == 1


def looks_like_sequences(datasets: list[Any]) -> bool:
    """True when a group's datasets can be sequences of one set: same dtype, same ndim (1 or 2)
    and the same feature count -- not, say, a tensor beside its labels. An empty sequence's
    dtype does not count (``[]`` is stored as float64 beside int sequences), as in Keras."""
    shapes = {(d.ndim, tuple(d.shape[1:])) for d in datasets}
    counted = [d for d in datasets if d.shape and d.shape[0]] or datasets
    dtypes = {str(d.dtype) for d in counted}
    return len(shapes) == 1 and len(dtypes) == 1 and next(iter(shapes))[0] in (1, 2)


class HashingReader:
    """A binary stream wrapper that hashes every byte read through it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.stream.read(size)
        self.digest.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        count: int = self.stream.readinto(buffer)
        self.digest.update(memoryview(buffer)[:count])
        return count


def record(path: str, key: str | None, array: StoredArray) -> ArrayRecord:
    return ArrayRecord(path, key, tuple(array.shape), str(array.dtype))


def padding_summary(manifest: Manifest | None) -> str:
    """``", 120 padded timesteps (9,000 before bucketing)"`` from a batch output's manifest."""
    summary = (manifest.data.get("batches") if manifest is not None else None) or {}
    counts = summary.get("padded_timesteps")
    if not isinstance(counts, dict) or manifest is None:
        return ""
    text = f", {counts.get('after', 0):,} padded timesteps"
    if manifest.params.get("bucket_by_length"):
        text += f" ({counts.get('before', 0):,} before bucketing)"
    return text


class ThreeD:
    """A one-feature ``(B, T)`` batch written with ``--no-feature-axis`` seen as ``(B, T, 1)``."""

    def __init__(self, array: StoredArray) -> None:
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.array.shape, 1)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        return self.array.read_rows(start, stop)[..., None]


class BatchRows:
    """A ``(num_batches, B, T, F)`` array seen as its ``num_batches * B`` rows ``(T, F)``."""

    def __init__(self, array: StoredArray) -> None:
        self.array = array
        count, self.rows, *rest = array.shape
        self._shape = (count * self.rows, *rest)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        size = max(self.rows, 1)
        first, last = start // size, -(-stop // size)
        block = self.array.read_rows(first, last).reshape(-1, *self._shape[1:])
        return block[start - first * size:stop - first * size]


class ConcatRows:
    """Several arrays of one dtype and row shape seen as their rows one after another (the
    ``y_000000``, ``y_000001``, ... of a batched output as one ``y``)."""

    def __init__(self, arrays: list[StoredArray], where: str) -> None:
        first = arrays[0]
        for array in arrays:
            # per-timestep labels of bucketed batches differ in width (axis 1), like x
            if (tuple(array.shape[2:]) != tuple(first.shape[2:]) or array.dtype != first.dtype
                    or len(array.shape) != len(first.shape)
                    or (len(first.shape) < 2 and array.shape[1:] != first.shape[1:])):
                raise InputError(f"{where}: per-batch arrays differ in row shape or dtype: "
                                 f"{first.shape} {first.dtype} and {array.shape} {array.dtype}")
        self.arrays = arrays
        self.offsets = np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays])])

    @property
    def shape(self) -> tuple[int, ...]:
        """The rows, each as wide as the widest array (rows are read one array at a time when
        the widths differ)."""
        widths = {tuple(a.shape[1:]) for a in self.arrays}
        row = max(widths) if len(widths) > 1 else tuple(self.arrays[0].shape[1:])
        return (int(self.offsets[-1]), *row)

    @property
    def dtype(self) -> np.dtype:
        return self.arrays[0].dtype

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        parts = []
        for index, array in enumerate(self.arrays):
            low, high = int(self.offsets[index]), int(self.offsets[index + 1])
            if low < stop and high > start:
                parts.append(array.read_rows(max(start, low) - low, min(stop, high) - low))
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts or [np.zeros((0, *self.shape[1:]), dtype=self.dtype)])


def dense_reader(array: StoredArray, lengths: np.ndarray, side: Side,
                 timesteps: int) -> Callable[[int, int], SequenceSet]:
    full = bool(np.all(lengths == timesteps))

    def read_dense(start: int, stop: int) -> SequenceSet:
        block = array.read_rows(start, stop)
        return SequenceSet.from_dense(block, None if full else lengths[start:stop], side)

    return read_dense


def stored_array_info(path: str, key: str | None,
                      memory_limit: int = DEFAULT_MEMORY_LIMIT) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``key`` of ``path`` (``key`` None for an ``.npy``), from its
    header alone.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.npz"); np.savez(path, x=np.zeros((2, 3)))
        >>> stored_array_info(path, "x")
        ((2, 3), dtype('float64'))
    """
    suffix = Location(path).suffix
    if suffix == ".npy":
        array = NpyFileArray(path)
        array.close()
        return tuple(array.shape), array.dtype
    if key is None:
        raise InputError(f"{path}: a container needs a key to name one of its arrays")
    if suffix == ".npz":
        from .npz import NpzArchive

        archive = NpzArchive(path, memory_limit)
        try:
            if key not in archive.keys():  # noqa: SIM118 - not a dict
                raise InputError(f"{path}: no array {key!r}; keys found: "
                                 f"{', '.join(archive.keys()) or 'none'}")
            member = archive.array(key)
            return tuple(member.shape), member.dtype
        finally:
            archive.close()
    if suffix == ".zarr":
        from .zarr_store import stored_info

        return stored_info(path, key)
    if suffix == ".h5":
        from .h5 import H5DatasetArray, H5File

        h5 = H5File(path, memory_limit)
        try:
            dataset = H5DatasetArray(h5, h5.get(key))
            return tuple(dataset.shape), dataset.dtype
        finally:
            h5.close()
    raise InputError(f"{path}: unknown suffix {suffix or '(none)'!r}; lstmshape outputs are "
                     f".npy, .npz, .h5 or .zarr")


def check_readable_file(path: str) -> None:
    """One clear line for a missing path, a directory or an unreadable file."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(os.stat(path).st_mode):
        # a FIFO would block open() forever; a device never ends
        raise InputError(f"{path}: not a regular file (a pipe, socket or device); "
                         f"use '-' to read an .npy from stdin")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied (cannot read)")


def check_lengths(raw: np.ndarray, count: int | None, timesteps: int | None,
                  where: str) -> np.ndarray:
    """True lengths as int64, checked: 1-D integers in ``0..timesteps``, one per sample."""
    if raw.ndim != 1 or raw.dtype.kind not in "iu":
        raise InputError(f"{where}: lengths must be a 1-D integer array, found shape {raw.shape} "
                         f"dtype {raw.dtype}")
    if count is not None and raw.shape[0] != count:
        raise InputError(f"{where}: {raw.shape[0]} lengths for {count} samples")
    lengths = raw.astype(LENGTH_DTYPE)
    if lengths.size and int(lengths.min()) < 0:
        raise InputError(f"{where}: negative length {int(lengths.min())}")
    if timesteps is not None and lengths.size and int(lengths.max()) > timesteps:
        raise InputError(f"{where}: length {int(lengths.max())} is longer than the "
                         f"{timesteps} timesteps of the tensor")
    return lengths


def lengths_from_splits(raw: np.ndarray, where: str) -> np.ndarray:
    """Lengths from N+1 row splits (offsets) starting at 0 and never decreasing."""
    if raw.ndim != 1 or raw.dtype.kind not in "iu" or raw.shape[0] < 1:
        raise InputError(f"{where}: row splits must be a 1-D integer array of N+1 offsets, "
                         f"found shape {raw.shape} dtype {raw.dtype}")
    splits = raw.astype(LENGTH_DTYPE)
    if splits[0] != 0:
        raise InputError(f"{where}: row splits must start at 0, found {int(splits[0])}")
    lengths = np.diff(splits)
    if lengths.size and int(lengths.min()) < 0:
        raise InputError(f"{where}: row splits decrease at index "
                         f"{int(np.argmin(lengths))}")
    return lengths


def lengths_from_manifest(manifest: Manifest, path: str, count: int, timesteps: int,
                          default: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """True lengths of an ``.npy`` tensor: its manifest's ``OUT.lengths.npy`` beside it."""
    lengths_path = manifest.side_file("lengths", path)
    if lengths_path is None:
        if manifest.file_of("lengths") is None:
            return default, []
        return default, [f"{path}: its manifest names lengths file "
                         f"{side_file_path(path, 'lengths')}, which is missing; treating every "
                         f"sample as {timesteps} timesteps long"]
    raw = read_npy_whole(lengths_path)
    if raw.ndim == 2 and raw.size == count:  # (num_batches, B) beside a batch output
        raw = raw.reshape(-1)
    return check_lengths(raw, count, timesteps, lengths_path), []


def read_npy_whole(path: str) -> np.ndarray:
    """A small ``.npy`` side file (lengths, targets), read whole."""
    array = NpyFileArray(path)
    try:
        return array.read_rows(0, array.shape[0] if array.shape else 0)
    finally:
        array.close()


def with_lengths_file(source: Source, lengths_file: str, memory_limit: int) -> Source:
    """A dense source with the true lengths stored in ``--lengths FILE`` (``PATH[:KEY]``); the
    file joins the source's records, so the manifest lists it among the inputs."""
    if source.kind != "dense" or source.timesteps is None:
        raise InputError(f"{source.location}: --lengths applies to a dense tensor; this input is "
                         f"already ragged ({source.layout})")
    with open_source(lengths_file, memory_limit=memory_limit, series=True) as lengths_source:
        raw = lengths_source.read().values[:, 0] if lengths_source.n_features == 1 else None
        if raw is None:
            raise InputError(f"{lengths_file}: lengths must be 1-D, found "
                             f"{lengths_source.n_features} columns")
        records = lengths_source.records
    lengths = check_lengths(raw, source.n_samples, source.timesteps, lengths_file)
    array_reader, features, side = source.block_reader, source.n_features, source.side

    def read_with_lengths(start: int, stop: int) -> SequenceSet:
        # the tensor as stored: its own lengths (an lstmshape output's) are not these
        dense = source.read_stored(start, stop)
        if dense is None:
            dense = array_reader(start, stop).values.reshape(stop - start, -1, features)
        return SequenceSet.from_dense(dense, lengths[start:stop], side)

    # no stored_reader: its pad steps are the stored lengths', not these
    return replace(source, lengths=lengths, layout="dense+lengths", stored_reader=None,
                   block_reader=read_with_lengths, records=[*source.records, *records])


def refusing_non_finite(source: Source) -> Source:
    """The source, with every read failing on NaN or inf and naming where it is
    (``--nan error``)."""
    if source.dtype.kind != "f":
        return source
    read, rows = source.block_reader, source.row_reader

    def read_checked(start: int, stop: int) -> SequenceSet:
        block = read(start, stop)
        bad = np.flatnonzero(~np.isfinite(block.values).all(axis=1))
        if bad.size:
            row = int(bad[0])
            ends = np.cumsum(block.lengths)
            sample = int(np.searchsorted(ends, row, side="right"))
            step = row - (int(ends[sample - 1]) if sample else 0)
            value = block.values[row][~np.isfinite(block.values[row])][0]
            raise InputError(f"{source.location}: {value} at sample {start + sample}, timestep "
                             f"{step} (--nan error refuses NaN and inf)")
        return block

    def rows_checked(start: int, stop: int) -> np.ndarray:
        assert rows is not None
        values = rows(start, stop)
        bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
        if bad.size:
            raise InputError(f"{source.location}: NaN or inf at timestep "
                             f"{start + int(bad[0])} (--nan error refuses NaN and inf)")
        return values

    # no stored_reader: what reads the stored tensor past the checks would write NaN unchecked
    return replace(source, block_reader=read_checked, stored_reader=None,
                   row_reader=None if rows is None else rows_checked)
