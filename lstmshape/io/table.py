"""Tables as sequence sets: long tables (one row per timestep) and Arrow list columns.

Read by suffix with pyarrow (the ``table`` extra, imported here only, when a table is opened):
``.parquet``; ``.csv``, ``.csv.gz``, ``.tsv``; ``.arrow``/``.feather``/``.ipc`` (an Arrow IPC
file, or an IPC stream as Hugging Face ``datasets`` caches them).

Two passes, so that a table larger than memory streams:

1. the *scan* reads only the grouping columns (``--id``, ``--time``, ``--target``; or the list
   columns' offsets) batch by batch and finds every sequence's rows: that gives the Source its
   sample count, lengths, ids and targets before any feature is read;
2. ``block_reader(start, stop)`` reads the feature rows of samples ``start:stop`` through a
   :class:`RowCursor`, which reads forward and seeks to a Parquet row group where it can.
   ``--target-kind timestep`` reads the target column the same way, through a cursor of its
   own: one label per row, as x's twin (:attr:`Source.step_targets`, :mod:`.targets`), so the
   commands pad, cut and batch the labels exactly like x.

A long table whose rows are not grouped by id (or not ordered by time within an id) cannot be
read a block at a time: it is read whole and sorted in memory when it fits ``--memory-limit``,
else refused with the fix. The Arrow offsets of a list column *are* the lengths: a block is its
values buffer sliced, with no Python loop per sequence.

Example:
    >>> import tempfile, os, pyarrow as pa, pyarrow.parquet as pq
    >>> path = os.path.join(tempfile.mkdtemp(), "events.parquet")
    >>> pq.write_table(pa.table({"user": [7, 7, 3], "t": [0, 1, 0], "v": [.5, .6, .7]}), path)
    >>> source = table_source(path, None, TableOptions(id="user", time="t"), 1 << 28, False)
    >>> source.lengths.tolist(), source.ids.tolist(), source.read().values.ravel().tolist()
    ([2, 1], [7, 3], [0.5, 0.6, 0.7])
    >>> source.close()
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, OptionError
from ..sequences import LENGTH_DTYPE, SequenceSet

if TYPE_CHECKING:
    from .source import Source

#: suffixes read as tables, lower case (``.csv.gz`` is one suffix here)
TABLE_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".tsv", ".arrow", ".feather", ".ipc")
INSTALL_HINT = "pip install 'lstmshape[table]'"
#: rows per batch the scan and the cursor ask for: big enough that the per-batch work is
#: numpy's, small enough that a batch of a few columns stays far under the smallest budget
BATCH_ROWS = 1 << 16
#: a CSV block (and so its longest line) takes at most this share of the budget
CSV_BLOCK_SHARE = 16
#: an unsorted table is sorted in memory when its rows, times this (the read table, the
#: numpy copies, the sort's index and the sorted copy), fit the budget
SORT_OVERHEAD = 3
#: list nesting deeper than this is no sequence lstmshape reads (and a nesting bomb)
MAX_NESTING = 3


@dataclass(frozen=True)
class TableOptions:
    """How a long table becomes sequences (``--id``, ``--time``, ``--features``, ``--target``,
    ``--target-kind``); the defaults read a list-column table or a single series."""

    id: str | None = None
    time: str | None = None
    features: tuple[str, ...] | None = None
    target: str | None = None
    target_kind: str = "sequence"

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.id, self.time, self.features, self.target))


def is_table(path: str) -> bool:
    """True for a path whose suffix lstmshape reads as a table.

    Example:
        >>> is_table("events.csv.gz"), is_table("x.npy")
        (True, False)
    """
    return path.lower().endswith(TABLE_SUFFIXES)


def table_suffix(path: str) -> str:
    lower = path.lower()
    return next(s for s in sorted(TABLE_SUFFIXES, key=len, reverse=True) if lower.endswith(s))


def import_arrow(path: str) -> Any:
    """pyarrow, or one line saying how to install it."""
    try:
        import pyarrow
        import pyarrow.compute
    except ImportError:
        raise InputError(f"{path}: reading {table_suffix(path)} tables needs pyarrow: "
                         f"{INSTALL_HINT}") from None
    return pyarrow


# ---------------------------------------------------------------------------------------------
# Files


class TableFile:
    """One table file: its schema, and its rows as record batches from any row on."""

    def __init__(self, path: str, memory_limit: int) -> None:
        self.path = path
        self.memory_limit = memory_limit
        self.pa = import_arrow(path)
        self.suffix = table_suffix(path)
        self.num_rows: int | None = None
        self.row_groups: list[int] = []
        self.closers: list[Callable[[], None]] = []
        with self.errors():
            if self.suffix == ".parquet":
                self._open_parquet()
            elif self.suffix in (".csv", ".csv.gz", ".tsv"):
                self._open_csv()
            else:
                self._open_ipc()
        check_nesting(self.pa, self.schema, path)

    # -- opening ----------------------------------------------------------------------------
    def _open_parquet(self) -> None:
        import pyarrow.parquet as pq

        plain = pq.ParquetFile(self.path, memory_map=False)
        strings = [f.name for f in plain.schema_arrow if self.pa.types.is_string(f.type)
                   or self.pa.types.is_large_string(f.type)
                   or self.pa.types.is_binary(f.type)]
        plain.close()
        # string columns stay dictionary-encoded as stored: a small dictionary referenced by
        # millions of rows (a dictionary bomb) is never expanded, and ids compare by index
        self.parquet = pq.ParquetFile(self.path, memory_map=False, read_dictionary=strings,
                                       pre_buffer=False, buffer_size=1 << 20)
        self.closers.append(self.parquet.close)
        meta = self.parquet.metadata
        size = os.path.getsize(self.path)
        self.schema = self.parquet.schema_arrow
        self.num_rows = int(meta.num_rows)
        declared = 0
        for index in range(meta.num_row_groups):
            group = meta.row_group(index)
            self.row_groups.append(int(group.num_rows))
            # a row group is read whole: one over the budget cannot be read within it
            if group.total_byte_size > self.memory_limit:
                raise InputError(f"{self.path}: row group {index} holds "
                                 f"{group.total_byte_size:,} bytes uncompressed, over "
                                 f"--memory-limit {self.memory_limit:,}; raise --memory-limit or "
                                 f"rewrite the file with smaller row groups")
            for column in range(group.num_columns):
                declared += max(int(group.column(column).total_compressed_size), 0)
        if declared > size:
            raise InputError(f"{self.path}: its footer declares {declared:,} bytes of column "
                             f"data but the file holds {size:,} (truncated or damaged)")
        if sum(self.row_groups) != self.num_rows:
            raise InputError(f"{self.path}: its row groups hold {sum(self.row_groups):,} rows "
                             f"but the footer declares {self.num_rows:,} (damaged)")

    def _csv_options(self, columns: list[str] | None) -> dict[str, Any]:
        import pyarrow.csv as csv

        block = max(self.memory_limit // CSV_BLOCK_SHARE, 1 << 16)
        types = None if columns is None else {c: self.schema.field(c).type for c in columns}
        return {
            "read_options": csv.ReadOptions(block_size=block, use_threads=False),
            "parse_options": csv.ParseOptions(delimiter="\t" if self.suffix == ".tsv" else ","),
            "convert_options": csv.ConvertOptions(include_columns=columns, column_types=types),
        }

    def _open_csv(self) -> None:
        import pyarrow.csv as csv

        reader = csv.open_csv(self.path, **self._csv_options(None))
        self.schema = reader.schema  # the types of the first block hold for the whole file
        reader.close()

    def _open_ipc(self) -> None:
        pa = self.pa
        source = pa.memory_map(self.path)  # zero-copy: batches are views of the page cache
        self.closers.append(source.close)
        try:
            self.ipc_file = pa.ipc.open_file(source)
        except pa.ArrowInvalid:  # not a file with a footer: an IPC stream (Hugging Face)
            self.ipc_file = None
            source.seek(0)
            self.schema = pa.ipc.open_stream(source).schema
            return
        self.schema = self.ipc_file.schema
        self.num_rows = sum(self.ipc_file.get_batch(i).num_rows
                            for i in range(self.ipc_file.num_record_batches))

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()

    # -- reading ----------------------------------------------------------------------------
    def errors(self) -> Any:
        return arrow_errors(self.pa, self.path)

    def read_all(self, columns: list[str]) -> Any:
        """Every row of ``columns`` as one Arrow table (a Parquet file on pyarrow's threads)."""
        pa = self.pa
        with self.errors():
            if self.suffix == ".parquet":
                return self.parquet.read(columns=columns, use_threads=True)
            schema = pa.schema([self.schema.field(c) for c in columns])
            return pa.Table.from_batches([b for _, b in self._batches(columns, 0)],
                                         schema=schema)

    def batches(self, columns: list[str], start_row: int = 0) -> Iterator[tuple[int, Any]]:
        """``(first_row, batch)`` of ``columns`` from the batch holding ``start_row`` on."""
        with self.errors():
            yield from self._batches(columns, start_row)

    def _batches(self, columns: list[str], start_row: int) -> Iterator[tuple[int, Any]]:
        pa = self.pa
        if self.suffix == ".parquet":
            first, offset = 0, 0
            while first < len(self.row_groups) and offset + self.row_groups[first] <= start_row:
                offset += self.row_groups[first]
                first += 1
            groups = list(range(first, len(self.row_groups)))
            if not groups:
                return
            for batch in self.parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=groups,
                                                   columns=columns, use_threads=False):
                yield offset, batch
                offset += batch.num_rows
            return
        if self.suffix in (".csv", ".csv.gz", ".tsv"):
            import pyarrow.csv as csv

            reader = csv.open_csv(self.path, **self._csv_options(columns))
            batches: Iterator[Any] = iter(reader)
        elif self.ipc_file is not None:
            ipc = self.ipc_file
            batches = (ipc.get_batch(i) for i in range(ipc.num_record_batches))
        else:
            stream = pa.memory_map(self.path)
            self.closers.append(stream.close)
            batches = iter(pa.ipc.open_stream(stream))
        offset = 0
        for batch in batches:
            if offset + batch.num_rows > start_row:
                picked = batch.select(columns)
                picked.validate(full=True)  # offsets past the values, bad UTF-8: refused here
                yield offset, picked
            offset += batch.num_rows


def arrow_errors(pa: Any, path: str) -> Any:
    """A context manager turning what pyarrow raises on a damaged file into one InputError."""
    import contextlib

    @contextlib.contextmanager
    def translated() -> Iterator[None]:
        try:
            yield
        except (pa.ArrowException, OSError, ValueError) as err:
            if isinstance(err, InputError):
                raise
            text = " ".join(str(err).split())
            if "straddl" in text:
                text = ("a line longer than the CSV block size (1/16 of --memory-limit); raise "
                        "--memory-limit or check the file's line endings and quotes")
            elif isinstance(err, pa.ArrowMemoryError) or "memory" in text.lower():
                text = f"reading it needs more memory than allowed ({text})"
            raise InputError(f"{path}: cannot read the table: {text[:300]}") from None

    return translated()


def check_nesting(pa: Any, schema: Any, path: str) -> None:
    """Refuse types nested deeper than any sequence layout (a nesting bomb) up front."""
    def depth(kind: Any) -> int:
        if kind.num_fields == 0:
            return 0
        return 1 + max(depth(kind.field(i).type) for i in range(kind.num_fields))

    for field in schema:
        if depth(field.type) > MAX_NESTING:
            raise InputError(f"{path}: column {field.name!r} is nested {depth(field.type)} "
                             f"levels deep; lstmshape reads list<number> and "
                             f"list<list<number>> columns")


class RowCursor:
    """Rows ``start:stop`` of some columns as one Arrow table, reading the file forward; a read
    behind the last one starts over (at the right row group, for Parquet)."""

    def __init__(self, table: TableFile, columns: list[str]) -> None:
        self.table = table
        self.columns = columns
        self.batches: Iterator[tuple[int, Any]] | None = None
        self.current: tuple[int, Any] | None = None

    def read(self, start: int, stop: int) -> Any:
        pa = self.table.pa
        if self.current is None or start < self.current[0]:
            self.batches = self.table.batches(self.columns, start)
            self.current = next(self.batches, None)
        pieces: list[Any] = []
        while self.current is not None and len(pieces) < stop - start + 1:
            offset, batch = self.current
            end = offset + batch.num_rows
            if end > start and offset < stop:
                low = max(start, offset)
                pieces.append(batch.slice(low - offset, min(stop, end) - low))
            if end >= stop:
                break
            assert self.batches is not None
            self.current = next(self.batches, None)
        got = sum(piece.num_rows for piece in pieces)
        if got != stop - start:
            raise InputError(f"{self.table.path}: rows {start}:{stop} are not in the file "
                             f"(it changed while being read?)")
        schema = pa.schema([self.table.schema.field(c) for c in self.columns])
        return pa.Table.from_batches(pieces, schema=schema)


# ---------------------------------------------------------------------------------------------
# Columns to numpy


def numeric_dtype(pa: Any, kind: Any) -> np.dtype | None:
    """The numpy dtype of an Arrow number type (None for anything else)."""
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return np.dtype(kind.to_pandas_dtype())  # type: ignore[no-any-return]
    return None


def column_numpy(pa: Any, column: Any, name: str, path: str, first_row: int) -> np.ndarray:
    """A numeric column as numpy: nulls become NaN in a float column, an error elsewhere."""
    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if column.null_count:
        if not pa.types.is_floating(column.type):
            row = first_row + first_null(pa, column)
            raise InputError(f"{path}: column {name!r} ({column.type}) has a null at row {row}; "
                             f"an integer column cannot hold missing values -- fill them, or "
                             f"cast the column to float (nulls become NaN)")
        column = column.fill_null(float("nan"))
    array: np.ndarray = column.to_numpy(zero_copy_only=False)
    return array


def first_null(pa: Any, column: Any) -> int:
    import pyarrow.compute as pc

    return int(np.flatnonzero(pc.is_null(column).to_numpy(zero_copy_only=False))[0])


def features_numpy(pa: Any, table: Any, names: list[str], dtype: np.dtype, path: str,
                   first_row: int) -> np.ndarray:
    """Columns ``names`` of an Arrow table side by side as ``(rows, F)`` of ``dtype``."""
    out = np.empty((table.num_rows, len(names)), dtype=dtype)
    for index, name in enumerate(names):
        out[:, index] = column_numpy(pa, table.column(name), name, path, first_row)
    return out


def id_numpy(pa: Any, ids: Any) -> np.ndarray:
    """Ids as int64, or as fixed-width unicode for string ids (the ``ids`` output)."""
    if pa.types.is_integer(ids.type):
        return np.asarray(ids.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = ids.to_pylist()  # one string per sequence, not per row
    return np.array(values, dtype=f"U{max((len(v) for v in values), default=1) or 1}")


# ---------------------------------------------------------------------------------------------
# Opening


@dataclass
class Opened:
    """What the scan found: enough for a Source before any feature is read."""

    lengths: np.ndarray
    n_features: int
    dtype: np.dtype
    read: Callable[[int, int], SequenceSet]
    ids: np.ndarray | None = None
    targets: np.ndarray | None = None
    feature_names: list[str] | None = None
    detail: str = ""
    series: bool = False
    #: ``--target-kind timestep``: the target column's rows of samples ``start:stop`` as label
    #: sequences with x's lengths (``(rows, 1)`` of ``label_dtype``), read like the features
    labels: Callable[[int, int], SequenceSet] | None = None
    label_dtype: np.dtype | None = None
    #: the table's rows, as the scan counted them (a CSV or an IPC stream has no count before)
    rows: int = 0


class Reader:
    """Picks the layout of a table (long, list columns, one series) and scans it."""

    def __init__(self, table: TableFile, options: TableOptions, series: bool) -> None:
        self.table = table
        self.pa = table.pa
        self.path = table.path
        self.options = options
        self.series = series
        self.schema = table.schema
        self.names = list(self.schema.names)

    def column_type(self, name: str, option: str) -> Any:
        if name not in self.names:
            raise OptionError(f"{self.path}: no column {name!r} ({option}); columns: "
                              f"{', '.join(self.names)}")
        return self.schema.field(name).type

    def open(self, key: str | None) -> Opened:
        options = self.options
        if options.target_kind not in ("sequence", "timestep"):
            raise OptionError(f"--target-kind {options.target_kind!r}: expected 'sequence' or "
                              f"'timestep'")
        if options.target is not None and options.target_kind == "timestep" \
                and options.id is None:  # one label per row is one per timestep of a long table
            raise OptionError(f"{self.path}: --target-kind timestep reads one label per row of "
                              f"a long table (give --id COL); for list columns give the labels "
                              f"as a list column of the same lengths with --y {self.path}:COL")
        for name, option in ((options.id, "--id"), (options.time, "--time"),
                             (options.target, "--target")):
            if name is not None:
                self.column_type(name, option)
        if key is not None:
            if options.id is not None or options.time is not None:
                raise OptionError(f"{self.path}:{key}: list columns are one row per sequence; "
                                  f"--id/--time apply to a long table (drop :{key} or them)")
            return self.open_lists(key.split(","))
        if options.id is None:
            if options.time is not None:
                raise OptionError(f"{self.path}: --time orders the rows of each --id; give "
                                  f"--id COL too")
            lists = list_columns(self.pa, self.schema)
            if self.series and not lists:
                return self.open_series()
            if len(lists) == 1 or "input_ids" in lists:
                return self.open_lists(["input_ids" if "input_ids" in lists else lists[0]])
            if lists:
                raise OptionError(f"{self.path}: has {len(lists)} list columns; pick one or "
                                  f"several with {self.path}:COL or {self.path}:COL1,COL2 -- "
                                  f"list columns: {', '.join(lists)}")
            id_guess, time_guess = guess_id_time(self.pa, self.schema)
            hint = f" --id {id_guess}" if id_guess else " --id COL"
            hint += f" --time {time_guess}" if time_guess else ""
            raise OptionError(f"{self.path}: a long table (one row per timestep) needs --id "
                              f"to group its rows into sequences, e.g.{hint}; columns: "
                              f"{', '.join(self.names)}")
        return self.open_long()

    # -- feature columns --------------------------------------------------------------------
    def feature_columns(self, exclude: set[str]) -> tuple[list[str], np.dtype]:
        given = self.options.features
        names = list(given) if given is not None else [
            f.name for f in self.schema if f.name not in exclude
            and numeric_dtype(self.pa, f.type) is not None]
        if not names:
            raise InputError(f"{self.path}: no numeric feature columns besides "
                             f"{', '.join(sorted(exclude)) or 'none'}; columns: "
                             f"{', '.join(f'{f.name} ({f.type})' for f in self.schema)}")
        dtypes = []
        for name in names:
            kind = self.column_type(name, "--features")
            dtype = numeric_dtype(self.pa, kind)
            if dtype is None:
                raise InputError(f"{self.path}: column {name!r} is {kind}, not numeric; "
                                 f"pick numeric feature columns with --features")
            dtypes.append(dtype)
        return names, np.result_type(*dtypes)

    def target_dtype(self) -> np.dtype | None:
        if self.options.target is None:
            return None
        kind = self.schema.field(self.options.target).type
        dtype = numeric_dtype(self.pa, kind)
        if dtype is None:
            raise InputError(f"{self.path}: --target column {self.options.target!r} is {kind}, "
                             f"not numeric")
        return dtype

    # -- a single series (window) ---------------------------------------------------------
    def open_series(self) -> Opened:
        names, dtype = self.feature_columns(set())
        rows = self.table.num_rows
        if rows is None:
            rows = sum(b.num_rows for _, b in self.table.batches(names[:1]))
        cursor = RowCursor(self.table, names)

        def read(start: int, stop: int) -> SequenceSet:
            table = cursor.read(0, rows) if stop > start else cursor.read(0, 0)
            values = features_numpy(self.pa, table, names, dtype, self.path, 0)
            return SequenceSet(values, np.full(stop - start, rows, dtype=LENGTH_DTYPE))

        return Opened(np.array([rows], dtype=LENGTH_DTYPE), len(names), dtype, read,
                      feature_names=names, detail=f"table, {rows:,} rows", series=True,
                      rows=rows)

    # -- list columns -----------------------------------------------------------------------
    def list_width(self, name: str) -> tuple[Any, np.dtype, int | None]:
        """A list column's value type, numpy dtype and features (None: found by the scan)."""
        pa = self.pa
        kind = self.column_type(name, f"{self.path}:COL")
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
            raise InputError(f"{self.path}: column {name!r} is {kind}, not a list column; a "
                             f"long table (one row per timestep) takes --id instead of :COL")
        inner = kind.value_type
        width: int | None = 1
        if pa.types.is_fixed_size_list(inner):
            width, inner = inner.list_size, inner.value_type
        elif pa.types.is_list(inner) or pa.types.is_large_list(inner):
            width, inner = None, inner.value_type
        dtype = numeric_dtype(pa, inner)
        if dtype is None:
            raise InputError(f"{self.path}: column {name!r} is {kind}; lstmshape reads "
                             f"list<number>, list<list<number>> and list<fixed_size_list>")
        return inner, dtype, width

    def open_lists(self, names: list[str]) -> Opened:
        import pyarrow.compute as pc

        pa = self.pa
        kinds = [self.list_width(name) for name in names]
        widths: list[int | None] = [width for _, _, width in kinds]
        dtype = np.result_type(*[d for _, d, _ in kinds])
        target_dtype = self.target_dtype()
        scan_columns = [*names, *([self.options.target] if self.options.target else [])]
        lengths_parts, target_parts = [], []
        for offset, batch in self.table.batches(scan_columns):
            first: np.ndarray | None = None
            for index, name in enumerate(names):
                column = batch.column(name)
                if column.null_count:
                    raise InputError(f"{self.path}: column {name!r} is null at row "
                                     f"{offset + first_null(pa, column)}; every row must be a "
                                     f"sequence (an empty list for none)")
                lengths = column.value_lengths().to_numpy(zero_copy_only=False)
                if widths[index] != 1 and not pa.types.is_fixed_size_list(column.type.value_type):
                    widths[index] = self.inner_width(name, column, offset, widths[index])
                if first is None:
                    first = lengths
                elif not np.array_equal(first, lengths):
                    row = offset + int(np.flatnonzero(first != lengths)[0])
                    raise InputError(f"{self.path}: columns {names[0]!r} and {name!r} differ in "
                                     f"length at row {row} ({int(first[row - offset])} and "
                                     f"{int(lengths[row - offset])})")
            assert first is not None
            lengths_parts.append(first.astype(LENGTH_DTYPE))
            if self.options.target is not None:
                target_parts.append(column_numpy(pa, batch.column(self.options.target),
                                                 self.options.target, self.path, offset))
        lengths = (np.concatenate(lengths_parts) if lengths_parts
                   else np.zeros(0, dtype=LENGTH_DTYPE))
        final = [w if w is not None else 1 for w in widths]
        cursor = RowCursor(self.table, names)

        def read(start: int, stop: int) -> SequenceSet:
            table = cursor.read(start, stop)
            parts = []
            for name, width in zip(names, final, strict=True):
                column = table.column(name).combine_chunks()
                values = pc.list_flatten(column)
                if not pa.types.is_primitive(values.type):  # list<list<...>> or fixed-size
                    values = pc.list_flatten(values)
                flat = values.to_numpy(zero_copy_only=False)
                parts.append(flat.reshape(-1, width).astype(dtype, copy=False))
            block_lengths = lengths[start:stop]
            merged = parts[0] if len(parts) == 1 else np.hstack(parts)
            return SequenceSet(np.ascontiguousarray(merged), block_lengths)

        feature_names = [name if width == 1 else f"{name}[{i}]"
                         for name, width in zip(names, final, strict=True) for i in range(width)]
        targets = None
        if target_parts:
            targets = np.concatenate(target_parts).astype(target_dtype, copy=False)
        return Opened(lengths, sum(final), dtype, read, targets=targets,
                      feature_names=feature_names,
                      detail=f"list column{'s' if len(names) > 1 else ''} {', '.join(names)}",
                      rows=len(lengths))

    def inner_width(self, name: str, column: Any, offset: int, known: int | None) -> int:
        """The feature count of a ``list<list<number>>`` column: every inner list the same."""
        import pyarrow.compute as pc

        inner = pc.list_flatten(column)
        if inner.null_count:
            raise InputError(f"{self.path}: column {name!r} has a null timestep near row "
                             f"{offset}")
        sizes = inner.value_lengths().to_numpy(zero_copy_only=False)
        if not sizes.size:
            return known if known is not None else 1
        width = int(sizes[0]) if known is None else known
        bad = np.flatnonzero(sizes != width)
        if bad.size:
            lengths = column.value_lengths().to_numpy(zero_copy_only=False)
            row = offset + int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
            raise InputError(f"{self.path}: column {name!r} has timesteps of {width} and "
                             f"{int(sizes[bad[0]])} features (row {row}); every timestep needs "
                             f"the same number")
        return width

    # -- long tables ------------------------------------------------------------------------
    def open_long(self) -> Opened:
        options = self.options
        assert options.id is not None
        id_type = self.schema.field(options.id).type
        pa = self.pa
        if pa.types.is_dictionary(id_type):
            id_type = id_type.value_type
        if not (pa.types.is_integer(id_type) or pa.types.is_string(id_type)
                or pa.types.is_large_string(id_type)):
            raise InputError(f"{self.path}: --id column {options.id!r} is {id_type}; ids must be "
                             f"integers or strings")
        if options.time is not None:
            time_type = self.schema.field(options.time).type
            if not (pa.types.is_integer(time_type) or pa.types.is_floating(time_type)
                    or pa.types.is_temporal(time_type)):
                raise InputError(f"{self.path}: --time column {options.time!r} is "
                                 f"{time_type}; expected numbers, dates or timestamps")
        exclude = {c for c in (options.id, options.time, options.target) if c is not None}
        names, dtype = self.feature_columns(exclude)
        scan = Scan(self, names, dtype)
        return scan.run()


def time_numpy(pa: Any, column: Any) -> np.ndarray:
    """A time column as numbers that order like it (dates and timestamps as int64)."""
    if pa.types.is_temporal(column.type):
        column = column.cast(pa.int64()) if not pa.types.is_date32(column.type) \
            else column.cast(pa.int32())
    array: np.ndarray = column.to_numpy(zero_copy_only=False)
    return array


def reappearing(pa: Any, run_ids: list[Any]) -> int | None:
    """The first run whose id already had a run before another id's (the rows are then not
    grouped by id), or None.

    Example:
        >>> import pyarrow as pa
        >>> reappearing(pa, [pa.array([4, 2]), pa.array([4])]), reappearing(pa, [pa.array([1])])
        (2, None)
    """
    import pyarrow.compute as pc

    codes = pc.dictionary_encode(pa.chunked_array(run_ids).combine_chunks()).indices.to_numpy(
        zero_copy_only=False)
    if codes.size < 2:
        return None
    seen = np.maximum.accumulate(codes)
    back = np.flatnonzero(codes[1:] <= seen[:-1])
    return int(back[0]) + 1 if back.size else None


def row_changes(pa: Any, ids: Any) -> np.ndarray:
    """``ids[1:] != ids[:-1]``; a dictionary-encoded column is compared by its indices (made
    canonical: a dictionary may repeat a value), never by its values expanded per row."""
    import pyarrow.compute as pc

    if pa.types.is_dictionary(ids.type):
        canonical = pc.dictionary_encode(ids.dictionary).indices.to_numpy(zero_copy_only=False)
        codes = canonical[ids.indices.to_numpy(zero_copy_only=False)]
        changed: np.ndarray = codes[1:] != codes[:-1]
        return changed
    n = len(ids)
    result: np.ndarray = pc.not_equal(ids.slice(1), ids.slice(0, n - 1)).to_numpy(
        zero_copy_only=False)
    return result


class Scan:
    """The first pass over a long table's id (and time, target) columns."""

    def __init__(self, reader: Reader, names: list[str], dtype: np.dtype) -> None:
        self.reader = reader
        self.pa = reader.pa
        self.path = reader.path
        self.options = reader.options
        self.names = names
        self.dtype = dtype
        #: --target-kind timestep: the target column, read as label sequences beside x
        self.label_column = self.options.target if self.options.target_kind == "timestep" else None
        self.target_dtype = reader.target_dtype()

    def label(self, value: Any) -> str:
        return repr(value.as_py() if hasattr(value, "as_py") else value)

    def run(self) -> Opened:
        pa, options = self.pa, self.options
        assert options.id is not None
        columns = [c for c in (options.id, options.time, options.target) if c is not None]
        starts: list[np.ndarray] = []
        run_ids: list[Any] = []
        run_targets: list[np.ndarray] = []
        previous: tuple[Any, Any, Any] | None = None  # last row's id, time, target
        time_sorted = True
        total = id_bytes = 0
        for offset, batch in self.reader.table.batches(columns):
            n = batch.num_rows
            total = offset + n
            if not n:
                continue
            ids = batch.column(options.id)
            if ids.null_count:
                raise InputError(f"{self.path}: null id in column {options.id!r} at row "
                                 f"{offset + first_null(pa, ids)}")
            change = np.ones(n, dtype=bool)
            if n > 1:
                change[1:] = row_changes(pa, ids)
            if previous is not None:
                change[0] = ids[0].as_py() != previous[0]
            times = None
            if options.time is not None:
                column = batch.column(options.time)
                if column.null_count:
                    raise InputError(f"{self.path}: null time in column {options.time!r} at row "
                                     f"{offset + first_null(pa, column)}")
                times = time_numpy(pa, column)
                steps = np.empty(n, dtype=bool)
                steps[1:] = times[1:] > times[:-1]
                equal = np.zeros(n, dtype=bool)
                equal[1:] = times[1:] == times[:-1]
                if previous is not None:
                    steps[0] = times[0] > previous[1]
                    equal[0] = times[0] == previous[1]
                same = ~change
                duplicate = np.flatnonzero(same & equal)
                if duplicate.size:
                    row = int(duplicate[0])
                    raise InputError(f"{self.path}: duplicate (id, time) "
                                     f"({self.label(ids[row])}, {times[row]}) at row "
                                     f"{offset + row}; each id needs one row per time")
                if time_sorted and np.any(same & ~steps):
                    time_sorted = False
            firsts = np.flatnonzero(change)
            starts.append(offset + firsts)
            heads = ids.take(pa.array(firsts))
            if pa.types.is_dictionary(heads.type):
                heads = heads.dictionary_decode()
            run_ids.append(heads)
            id_bytes += heads.nbytes
            known_rows = self.reader.table.num_rows
            if known_rows is not None and len(heads) > 1:
                back = reappearing(pa, [heads])
                if back is not None:  # not grouped: no need to scan the rest for runs
                    reason = self.unsorted_reason(heads, offset + firsts, back)
                    return self.sorted_in_memory(known_rows, reason)
            if id_bytes > self.reader.table.memory_limit // 4:
                back = reappearing(pa, run_ids)
                if back is not None:  # so many runs because the rows are not grouped by id
                    rows = self.reader.table.num_rows or total
                    raise self.too_big_to_sort(rows, self.unsorted_reason(
                        pa.chunked_array(run_ids).combine_chunks(),
                        np.concatenate(starts), back))
                raise InputError(f"{self.path}: the ids of its sequences take over "
                                 f"{id_bytes:,} bytes, more than a quarter of --memory-limit "
                                 f"{self.reader.table.memory_limit:,}; raise --memory-limit "
                                 f"or use shorter ids")
            target = None
            if self.label_column is not None:  # read later, like x; a missing one: refused now
                refuse_null_labels(pa, batch.column(self.label_column), self.label_column,
                                   self.path, offset)
            elif options.target is not None:
                target = column_numpy(pa, batch.column(options.target), options.target,
                                      self.path, offset)
                run_of_row = np.cumsum(change) - 1
                head = target[firsts]
                if not change[0]:
                    assert previous is not None
                    head = np.concatenate([[previous[2]], head])
                    run_of_row = run_of_row + 1
                differs = target != head[run_of_row]
                if np.any(differs & ~np.isnan(target) if target.dtype.kind == "f" else differs):
                    row = int(np.flatnonzero(differs)[0])
                    raise InputError(f"{self.path}: --target {options.target!r} differs within "
                                     f"id {self.label(ids[row])} (row {offset + row}); "
                                     f"--target-kind sequence needs one value per id")
                run_targets.append(target[firsts])
            previous = (ids[n - 1].as_py(), None if times is None else times[-1],
                        None if target is None else target[-1])
        if not starts:
            raise InputError(f"{self.path}: the table has no rows")
        run_starts = np.concatenate(starts)
        id_runs = pa.chunked_array(run_ids).combine_chunks()
        back = reappearing(pa, run_ids)
        if back is None and time_sorted:
            lengths = np.diff(np.append(run_starts, total)).astype(LENGTH_DTYPE)
            return self.streamed(lengths, id_runs, run_targets, total)
        if back is not None:
            reason = self.unsorted_reason(id_runs, run_starts, back)
        else:
            reason = f"its rows are not ordered by --time {options.time!r} within each id"
        return self.sorted_in_memory(total, reason)

    def unsorted_reason(self, id_runs: Any, run_starts: np.ndarray, back: int) -> str:
        return (f"its rows are not grouped by --id {self.options.id!r} (id "
                f"{self.label(id_runs[back])} appears again at row {int(run_starts[back])} "
                f"after other ids)")

    def sort_bytes(self, total: int) -> int:
        """What sorting ``total`` rows in memory takes: the feature and target columns, the
        grouping columns' copies and the sort's index, :data:`SORT_OVERHEAD` times over."""
        target = 0 if self.target_dtype is None else self.target_dtype.itemsize
        return total * (len(self.names) * self.dtype.itemsize + target + 24) * SORT_OVERHEAD

    def too_big_to_sort(self, total: int, reason: str) -> InputError:
        options = self.options
        need = self.sort_bytes(total)
        return InputError(f"{self.path}: {reason}; sorting its {total:,} rows in memory needs "
                          f"about {need:,} bytes, over --memory-limit "
                          f"{self.reader.table.memory_limit:,}: raise --memory-limit, or sort "
                          f"the table by {options.id}"
                          f"{', ' + options.time if options.time else ''} first (it then "
                          f"streams)")

    def streamed(self, lengths: np.ndarray, id_runs: Any, run_targets: list[np.ndarray],
                 total: int) -> Opened:
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        labels = None
        if self.label_column is not None:
            labels = self.streamed_rows([self.label_column], self.target_dtype, offsets, lengths)
        return Opened(lengths, len(self.names), self.dtype,
                      self.streamed_rows(self.names, self.dtype, offsets, lengths),
                      ids=id_numpy(self.pa, id_runs), targets=self.targets(run_targets),
                      feature_names=self.names,
                      detail=f"long table, {total:,} rows grouped by {self.options.id}",
                      rows=total, labels=labels, label_dtype=self.target_dtype)

    def streamed_rows(self, names: list[str], dtype: Any, offsets: np.ndarray,
                      lengths: np.ndarray) -> Callable[[int, int], SequenceSet]:
        """Columns ``names`` of samples ``start:stop`` of a grouped table, read forward through
        a cursor of their own: x and its labels are read block by block, each within the
        budget, and each keeps its own place in the file."""
        cursor = RowCursor(self.reader.table, names)

        def read(start: int, stop: int) -> SequenceSet:
            low, high = int(offsets[start]), int(offsets[stop])
            table = cursor.read(low, high)
            values = features_numpy(self.pa, table, names, dtype, self.path, low)
            return SequenceSet(values, lengths[start:stop])

        return read

    def targets(self, parts: list[np.ndarray]) -> np.ndarray | None:
        if self.options.target is None or self.label_column is not None:
            return None
        return np.concatenate(parts).astype(self.target_dtype, copy=False)

    def sorted_in_memory(self, total: int, reason: str) -> Opened:
        import pyarrow.compute as pc

        pa, options = self.pa, self.options
        assert options.id is not None
        if self.sort_bytes(total) > self.reader.table.memory_limit:
            raise self.too_big_to_sort(total, reason)
        columns = list(dict.fromkeys(
            [options.id, *([options.time] if options.time else []), *self.names,
             *([options.target] if options.target else [])]))
        table = self.reader.table.read_all(columns)
        for name, what in ((options.id, "id"), (options.time, "time")):
            if name is not None and table.column(name).null_count:  # the scan may have stopped
                column = table.column(name).combine_chunks()
                raise InputError(f"{self.path}: null {what} in column {name!r} at row "
                                 f"{first_null(pa, column)}")
        if self.label_column is not None:  # the scan may have stopped before a missing label, too
            refuse_null_labels(pa, table.column(self.label_column), self.label_column, self.path, 0)
        id_column = table.column(options.id)
        if pa.types.is_dictionary(id_column.type):
            id_column = id_column.cast(id_column.type.value_type)
        encoded = pc.dictionary_encode(id_column.combine_chunks())
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        times = (time_numpy(pa, table.column(options.time).combine_chunks())
                 if options.time is not None else np.arange(len(codes)))
        order, duplicate = sort_order(codes, times)
        if duplicate is not None:
            row = int(order[duplicate])
            raise InputError(f"{self.path}: duplicate (id, time) "
                             f"({self.label(encoded.dictionary[int(codes[row])])}, "
                             f"{times[row]}) at row {row}; each id needs one row per time")
        lengths = np.bincount(codes, minlength=len(encoded.dictionary)).astype(LENGTH_DTYPE)
        del codes, times
        targets = labels = None
        if self.label_column is not None:  # gathered in sorted order like the features, per block
            labels = gathered([column_numpy(pa, table.column(self.label_column), self.label_column,
                                            self.path, 0)], self.target_dtype, order, lengths)
        elif options.target is not None:
            raw = column_numpy(pa, table.column(options.target), options.target, self.path, 0)
            ordered = raw[order]
            starts = np.cumsum(lengths) - lengths
            head = np.repeat(ordered[starts], lengths)
            differs = ordered != head
            if raw.dtype.kind == "f":
                differs &= ~(np.isnan(ordered) & np.isnan(head))
            if differs.any():
                row = int(order[int(np.flatnonzero(differs)[0])])
                ids = encoded.indices[row].as_py()
                raise InputError(f"{self.path}: --target {options.target!r} differs within id "
                                 f"{self.label(encoded.dictionary[ids])} (row {row}); "
                                 f"--target-kind sequence needs one value per id")
            targets = ordered[starts].astype(self.target_dtype, copy=False)
        features = [column_numpy(pa, table.column(name), name, self.path, 0)
                    for name in self.names]
        return Opened(lengths, len(self.names), self.dtype,
                      gathered(features, self.dtype, order, lengths),
                      ids=id_numpy(pa, encoded.dictionary), targets=targets,
                      feature_names=self.names,
                      detail=f"long table, {total:,} rows sorted in memory by {options.id}",
                      rows=total, labels=labels, label_dtype=self.target_dtype)


def gathered(columns: list[np.ndarray], dtype: Any, order: np.ndarray,
             lengths: np.ndarray) -> Callable[[int, int], SequenceSet]:
    """Blocks of sequences whose rows are ``columns`` taken in ``order`` (sorted by id, time).
    The columns stay as read; each block gathers its own rows (in the reading thread, beside
    the writer) instead of one sorted copy of the whole table.

    Example:
        >>> read = gathered([np.array([10, 11, 12])], np.int64, np.array([2, 0, 1]),
        ...                 np.array([1, 2]))
        >>> read(1, 2).values.ravel().tolist()
        [10, 11]
    """
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    def read(start: int, stop: int) -> SequenceSet:
        rows = order[int(offsets[start]):int(offsets[stop])]
        values = np.empty((len(rows), len(columns)), dtype=dtype)
        for index, column in enumerate(columns):
            values[:, index] = column[rows]
        return SequenceSet(values, lengths[start:stop])

    return read


def refuse_null_labels(pa: Any, column: Any, name: str, path: str, first_row: int) -> None:
    """A per-timestep label may not be missing: unlike a feature (NaN, then ``--nan``), a NaN
    label would be trained on as a value, and an integer label has none to become.

    Example:
        >>> import pyarrow as pa
        >>> refuse_null_labels(pa, pa.array([1, None]), "y", "t.csv", 10)
        Traceback (most recent call last):
        ...
        lstmshape.errors.InputError: t.csv: --target 'y' is null at row 11; per-timestep ...
    """
    if column.null_count:
        raise InputError(f"{path}: --target {name!r} is null at row "
                         f"{first_row + first_null(pa, column)}; per-timestep labels cannot be "
                         f"missing -- fill them, or drop those rows")


def sort_order(codes: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, int | None]:
    """The row order by sequence code, then time, and the position in that order of a row
    whose (code, time) repeats the one before (None when none does). One argsort of a combined
    int64 key where both fit in one (several times faster than ``np.lexsort`` on 10M rows).

    Example:
        >>> order, duplicate = sort_order(np.array([1, 0, 1, 0]), np.array([5, 9, 2, 3]))
        >>> order.tolist(), duplicate
        ([3, 1, 2, 0], None)
    """
    if codes.size and times.dtype.kind in "iu":
        low, high = int(times.min()), int(times.max())
        span = high - low + 1
        if (int(codes.max()) + 1) * span < 2**62:
            key = codes * span + (times.astype(np.int64) - low)
            # ties are duplicate (id, time) rows, refused by the caller: any order will do
            order: np.ndarray = np.argsort(key)
            ordered = key[order]
            same = np.flatnonzero(ordered[1:] == ordered[:-1])
            return order, int(same[0]) + 1 if same.size else None
    order = np.lexsort((times, codes))
    same = np.flatnonzero((codes[order][1:] == codes[order][:-1])
                          & (times[order][1:] == times[order][:-1]))
    return order, int(same[0]) + 1 if same.size else None


def list_columns(pa: Any, schema: Any) -> list[str]:
    """The names of a schema's list columns (candidates for ``PATH:COL``).

    Example:
        >>> import pyarrow as pa
        >>> list_columns(pa, pa.schema([("ids", pa.list_(pa.int32())), ("y", pa.int8())]))
        ['ids']
    """
    return [f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_large_list(f.type)
            or pa.types.is_fixed_size_list(f.type)]


def guess_id_time(pa: Any, schema: Any) -> tuple[str | None, str | None]:
    """The likely ``--id`` and ``--time`` columns, by name and then by type.

    Example:
        >>> import pyarrow as pa
        >>> guess_id_time(pa, pa.schema([("user_id", pa.int64()), ("ts", pa.timestamp("s")),
        ...                              ("v", pa.float32())]))
        ('user_id', 'ts')
    """
    id_guess = time_guess = None
    for field in schema:
        name = field.name.lower()
        if id_guess is None and (name in ("id", "key", "user", "session", "series", "unit")
                                 or name.endswith(("_id", "id"))) \
                and (pa.types.is_integer(field.type) or pa.types.is_string(field.type)):
            id_guess = field.name
        elif time_guess is None and (pa.types.is_temporal(field.type) or name in (
                "t", "ts", "time", "timestamp", "date", "step", "timestep", "datetime")):
            time_guess = field.name
    return id_guess, time_guess


def table_source(opener_path: str, key: str | None, options: TableOptions, memory_limit: int,
                 series: bool) -> Source:
    """A :class:`~lstmshape.io.source.Source` over a table file (the Opener's table layout)."""
    from .arrays import MemoryArray
    from .location import Location
    from .source import ArrayRecord, Source
    from .targets import label_source

    table = TableFile(opener_path, memory_limit)
    try:
        opened = Reader(table, options, series).open(key)
    except BaseException:
        table.close()
        raise
    targets = None if opened.targets is None else MemoryArray(opened.targets)
    n = len(opened.lengths)
    rows = table.num_rows if table.num_rows is not None else opened.rows
    whole: list[np.ndarray] = []

    def read_rows(start: int, stop: int) -> np.ndarray:
        """A series' rows (window reads overlapping ranges): the series is read once."""
        if not whole:
            whole.append(opened.read(0, 1).values)
        return whole[0][start:stop]

    source = Source(
        location=Location(opener_path, key), kind="ragged",
        layout="series" if opened.series else "table", detail=opened.detail, n_samples=n,
        n_features=opened.n_features, dtype=opened.dtype, timesteps=None,
        lengths=opened.lengths, side="post", closers=[table.close],
        records=[ArrayRecord(opener_path, key, (rows, len(table.schema)), "table")],
        block_reader=opened.read, targets=targets, ids=opened.ids,
        names=opened.feature_names, row_reader=read_rows if opened.series else None)
    if opened.labels is not None:  # --target-kind timestep: labels padded and cut like x
        assert opened.label_dtype is not None
        source.step_targets = label_source(source, opened.labels, opened.label_dtype,
                                           names=[options.target])
    return source


def table_listing(path: str, memory_limit: int) -> dict[str, Any]:
    """What ``inspect`` shows of a table before it is read as sequences: its columns with their
    types, row count, list columns and the likely ``--id``/``--time`` columns.

    Example:
        >>> import tempfile, os, pyarrow as pa, pyarrow.csv as csv
        >>> path = os.path.join(tempfile.mkdtemp(), "e.csv")
        >>> csv.write_csv(pa.table({"id": [1, 1], "step": [0, 1], "v": [.1, .2]}), path)
        >>> listing = table_listing(path, 1 << 28)
        >>> listing["rows"], listing["likely_id"], listing["likely_time"]
        (2, 'id', 'step')
    """
    table = TableFile(path, memory_limit)
    try:
        pa = table.pa
        rows = table.num_rows
        if rows is None:  # a CSV or an IPC stream: counted from one column's batches
            rows = sum(b.num_rows for _, b in table.batches([table.schema.names[0]]))
        likely_id, likely_time = guess_id_time(pa, table.schema)
        lists = list_columns(pa, table.schema)
        return {"columns": [{"name": f.name, "type": str(f.type)} for f in table.schema],
                "rows": rows, "list_columns": lists, "likely_id": likely_id,
                "likely_time": likely_time}
    finally:
        table.close()
