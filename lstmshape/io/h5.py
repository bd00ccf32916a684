"""HDF5 files through h5py, refusing anything that would read another file.

HDF5 can point outside the file it lives in: external links (``h5py.ExternalLink``), virtual
datasets (VDS, mapping other files' datasets) and external raw storage (a dataset whose bytes live
in separate flat files). A tool run on untrusted inputs in CI must not follow them, so every
object is checked before its data is touched, and each is refused with the link or file named.
Paths are walked one link at a time with ``H5Lexists``/``H5Lget_info`` (which never resolve a
link), and soft links are resolved by walking their target the same way: HDF5 itself would
follow a soft link through an external link into another file.

Datasets are read a block of rows at a time (``ds[start:stop]``). Refused before reading, each
naming ``--memory-limit``: a dataset whose HDF5 chunk, or whose single row (one sample), is larger
than the budget (neither can be read in pieces); a dataset declaring more than the budget *and*
more than :data:`SPARSE_RATIO` times the bytes it stores (the HDF5 analogue of a zip bomb: unwritten
chunks read as the fill value, so a 1 KB file can declare petabytes); a variable-length dataset
whose sequences add up to more than the budget (counted while reading it in blocks).

Opening errors are told apart by HDF5's own message: no signature (not HDF5), a truncated or
damaged superblock, or a file locked by a writer (HDF5's file locking, on by default; a user who
sets ``HDF5_USE_FILE_LOCKING=FALSE`` reads whatever the writer has flushed so far).

Writing: :class:`H5Writer` creates datasets without time stamps (``track_times=False``) so the same
arrays give byte-identical files.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import InputError
from .arrays import RowObserver, check_dtype, is_text_role, nbytes_of
from .location import natural_key

#: Groups with more datasets than this are listed as one row (they are usually sequences).
LISTING_GROUP_LIMIT = 16
#: Declared bytes over stored bytes above which (and above the memory budget) a dataset is refused.
SPARSE_RATIO = 100
#: Soft links followed in one lookup before it is called a loop.
MAX_SOFT_LINKS = 32
#: Groups nested deeper than this are not listed (a damaged or hostile file).
MAX_GROUP_DEPTH = 64
#: Rows of a vlen dataset read per block while counting its bytes.
VLEN_BLOCK_ROWS = 4096


def h5py_module() -> Any:
    """Import h5py on first use: ``lstmshape --help`` must not pay for it."""
    import h5py

    return h5py


@contextmanager
def h5_errors(where: str) -> Iterator[None]:
    """Turn HDF5 library errors into one-line InputErrors."""
    try:
        yield
    except InputError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{where}: cannot read HDF5 data: {message}") from None


def describe_open_error(path: str, err: OSError) -> str:
    """One line for an HDF5 file that will not open, from HDF5's own message.

    Matched on HDF5's phrases, not single words: "superblock" contains "lock".
    """
    text = str(err)
    detail = text[text.find("(") + 1:text.rfind(")")] if "(" in text else text
    detail = detail.splitlines()[0] if detail else type(err).__name__
    if "unable to lock file" in text:
        return (f"{path}: locked by another process that has it open for writing ({detail}); "
                f"retry when it is done")
    if "signature not found" in text:
        return (f"{path}: not an HDF5 file (no HDF5 signature found; truncated or another "
                f"format?)")
    if "truncated file" in text:
        return f"{path}: truncated HDF5 file ({detail})"
    if "No such file" in text:
        return f"{path}: no such file"
    return f"{path}: damaged HDF5 file, cannot open it ({detail})"


class H5File:
    """An HDF5 file opened read-only, with safe lookups of groups and datasets."""

    def __init__(self, path: str, memory_limit: int) -> None:
        h5py = h5py_module()
        self.path = path
        self.memory_limit = memory_limit
        try:
            self.file = h5py.File(path, "r")
        except IsADirectoryError:
            raise InputError(f"{path}: is a directory, not an HDF5 file") from None
        except OSError as err:
            raise InputError(describe_open_error(path, err)) from None

    def close(self) -> None:
        self.file.close()

    def where(self, name: str) -> str:
        return f"{self.path}:{name}"

    def get(self, name: str, depth: int = 0, named_types: bool = False) -> Any:
        """The group or dataset at ``name``, after checking every link on the way to it.

        Only hard links are entered directly; a soft link is replaced by its target path and that
        path is walked the same way, so a soft link into an external link is refused too.
        """
        h5py = h5py_module()
        if depth > MAX_SOFT_LINKS:
            raise InputError(f"{self.where(name)}: more than {MAX_SOFT_LINKS} soft links in a "
                             f"row (a loop?)")
        node = self.file
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if len(parts) > MAX_GROUP_DEPTH:
            raise InputError(f"{self.where(name)}: nested more than {MAX_GROUP_DEPTH} groups deep "
                             f"(a hard link loop?)")
        walked = ""
        for index, part in enumerate(parts):
            walked += "/" + part
            with h5_errors(self.where(walked)):
                if not isinstance(node, h5py.Group) or not node.id.links.exists(part.encode()):
                    raise InputError(f"{self.path}: no key {walked!r}; keys found: "
                                     f"{', '.join(self.dataset_names()) or 'none'}")
                link = node.get(part, getlink=True)
                if isinstance(link, h5py.SoftLink):
                    parent = walked.rsplit("/", 1)[0] or "/"
                    target = posixpath.normpath(posixpath.join(parent, link.path))
                    rest = "/".join(parts[index + 1:])
                    return self.get(posixpath.join(target, rest) if rest else target,
                                    depth + 1, named_types)
                if isinstance(link, h5py.ExternalLink):
                    raise InputError(
                        f"{self.where(walked)}: external link to {link.filename}:{link.path}; "
                        f"refusing to read other files")
                if not isinstance(link, h5py.HardLink):
                    raise InputError(f"{self.where(walked)}: user-defined HDF5 link "
                                     f"({type(link).__name__}); refusing to follow it")
                node = node[part]
        if isinstance(node, h5py.Dataset):
            self.check_dataset(node)
        elif isinstance(node, h5py.Datatype) and not named_types:
            raise InputError(f"{self.where(name)}: a named datatype (a type definition), not a "
                             f"dataset")
        return node

    def check_dataset(self, dataset: Any) -> None:
        """Refuse datasets that read other files or whose chunks cannot fit the budget."""
        where = self.where(dataset.name)
        with h5_errors(where):
            if dataset.is_virtual:
                raise InputError(f"{where}: virtual dataset (maps data from other files); "
                                 f"refusing to read other files")
            if dataset.external:
                files = ", ".join(str(entry[0]) for entry in dataset.external)
                raise InputError(f"{where}: external raw storage in {files}; "
                                 f"refusing to read other files")
            if dataset.chunks is not None:
                chunk_bytes = nbytes_of(tuple(dataset.chunks), dataset.dtype)
                if chunk_bytes > self.memory_limit:
                    raise InputError(
                        f"{where}: HDF5 chunk of {chunk_bytes:,} bytes {dataset.chunks} is over "
                        f"--memory-limit {self.memory_limit:,}; raise --memory-limit to read it")
            if h5py_module().check_vlen_dtype(dataset.dtype) is not None:
                return  # counted while read (read_vlen): its bytes live in the global heap
            shape = tuple(int(d) for d in dataset.shape)
            row_bytes = nbytes_of(shape[1:], dataset.dtype)
            if len(shape) > 1 and shape[0] and row_bytes > self.memory_limit:
                raise InputError(
                    f"{where}: one row of shape {shape[1:]} is {row_bytes:,} bytes, over "
                    f"--memory-limit {self.memory_limit:,}; it cannot be read in blocks -- raise "
                    f"--memory-limit")
            declared = nbytes_of(shape, dataset.dtype)
            stored = int(dataset.id.get_storage_size())
            if declared > self.memory_limit and declared > SPARSE_RATIO * max(stored, 1):
                raise InputError(
                    f"{where}: declares shape {shape} {dataset.dtype} ({declared:,} bytes) but "
                    f"stores only {stored:,} bytes (over {SPARSE_RATIO}x and over --memory-limit "
                    f"{self.memory_limit:,}); refusing a likely decompression bomb -- raise "
                    f"--memory-limit if you trust the file")

    def children(self, group: Any) -> list[tuple[str, Any]]:
        """(name, object) of a group's members in natural order; external links refused,
        named datatypes (type definitions, not data) left out."""
        h5py = h5py_module()
        found = []
        for name in self.names(group):
            node = self.get(f"{group.name.rstrip('/')}/{name}", named_types=True)
            if not isinstance(node, h5py.Datatype):
                found.append((name, node))
        return found

    def names(self, group: Any) -> list[str]:
        """A group's link names in natural order; HDF5 errors (a damaged B-tree or heap) and
        names that are not UTF-8 (h5py hands those out as bytes) become InputErrors."""
        where = self.where(group.name)
        with h5_errors(where):
            names = list(group.keys())
        for name in names:
            if not isinstance(name, str):
                raise InputError(f"{where}: link name {name!r} is not UTF-8 text "
                                 f"(a damaged HDF5 file?)")
        return sorted(names, key=natural_key)

    def dataset_names(self) -> list[str]:
        """Every dataset path in the file (like ``h5ls -r``), links not followed."""
        return [name for name, _, _ in self.listing()]

    def listing(self) -> list[tuple[str, tuple[int, ...], str]]:
        """(path, shape, dtype) of every dataset, recursively, without following links.

        A group of more than :data:`LISTING_GROUP_LIMIT` datasets (a group of sequences) is one
        row: the group's path, ``(count,)``, and a description of its first member.
        """
        h5py = h5py_module()
        found: list[tuple[str, tuple[int, ...], str]] = []

        seen: set[int] = set()

        def walk(group: Any, depth: int) -> None:
            # a hard link may point back up the tree: each group is listed once
            address = int(h5py.h5o.get_info(group.id).addr)
            if address in seen or depth > MAX_GROUP_DEPTH:
                return
            seen.add(address)
            rows: list[tuple[str, tuple[int, ...], str]] = []
            for name in self.names(group):
                link = group.get(name, getlink=True)
                path = f"{group.name.rstrip('/')}/{name}"
                if isinstance(link, h5py.ExternalLink):
                    rows.append((path, (), f"external link -> {link.filename}:{link.path}"))
                elif isinstance(link, h5py.SoftLink):
                    rows.append((path, (), f"soft link -> {link.path}"))
                elif not isinstance(link, h5py.HardLink):
                    rows.append((path, (), "user-defined link (not followed)"))
                elif isinstance(group[name], h5py.Group):
                    found.extend(rows)
                    rows = []
                    walk(group[name], depth + 1)
                elif isinstance(group[name], h5py.Datatype):
                    continue  # a named type definition, not data
                else:
                    node = group[name]
                    vlen = h5py.check_vlen_dtype(node.dtype)
                    dtype = f"vlen {vlen}" if vlen is not None else str(node.dtype)
                    rows.append((path, tuple(node.shape), dtype))
            if len(rows) > LISTING_GROUP_LIMIT:
                # the group itself is the useful KEY: a group of sequences reads as one set
                first, last = rows[0][0].rsplit("/", 1)[1], rows[-1][0].rsplit("/", 1)[1]
                rows = [(group.name, (len(rows),),
                         f"group of {len(rows)} datasets {first}..{last}, the first "
                         f"{rows[0][1]} {rows[0][2]}")]
            found.extend(rows)

        with h5_errors(self.path):
            walk(self.file, 0)
        return found

    def is_group(self, node: Any) -> bool:
        return bool(isinstance(node, h5py_module().Group))


class H5DatasetArray:
    """A dataset read a block of rows at a time."""

    def __init__(self, h5: H5File, dataset: Any) -> None:
        self.h5 = h5
        self.dataset = dataset
        self.where = h5.where(dataset.name)
        with h5_errors(self.where):
            self._shape = tuple(int(d) for d in dataset.shape)
            self._dtype = np.dtype(dataset.dtype)
        check_dtype(self._dtype, self.where, is_text_role(dataset.name))
        self._observe: RowObserver | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        dtype: np.dtype = self._dtype
        return dtype

    def watch(self, observe: RowObserver) -> bool:
        """Hand each block of rows read to ``observe``, in pieces, each with its offset in the
        file. Only rows stored raw are the file's own bytes: an unfiltered dataset whose type in
        the file is the one it is read as, either contiguous or chunked by whole rows with its
        chunks in row order in the file (:func:`row_spans`); for any other, False."""
        dataset = self.dataset
        with h5_errors(self.where):
            if len(self._shape) == 0 or not dataset.id.get_type().equal(
                    h5py_module().h5t.py_create(dataset.dtype)):
                return False
            spans = row_spans(dataset, self._shape, self._dtype)
        if spans is None:
            return False
        first_rows, offsets = spans
        row_bytes = nbytes_of(self._shape[1:], self._dtype)

        def in_file(start: int, block: np.ndarray) -> None:
            # one piece per span the rows cross: one, unless chunks lie apart in the file
            first, stop = start, start + block.shape[0]
            span = int(np.searchsorted(first_rows, start, side="right")) - 1
            while start < stop:
                end = int(first_rows[span + 1]) if span + 1 < len(first_rows) else stop
                piece_stop = min(stop, end)
                observe(int(offsets[span]) + (start - int(first_rows[span])) * row_bytes,
                        block[start - first:piece_stop - first])
                start, span = piece_stop, span + 1

        self._observe = in_file
        return True

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        with h5_errors(self.where):
            if not self._shape:
                return np.asarray(self.dataset[()])
            block = np.asarray(self.dataset[start:stop])
        if self._observe is not None:
            self._observe(min(start, self._shape[0]), block)
        return np.ascontiguousarray(block.astype(block.dtype.newbyteorder("="), copy=False))


#: Chunked datasets with more chunks than this, or smaller chunks, are hashed by reading the file:
#: looking up a chunk's offset costs ~2 us (0.12 s for 65,536 chunks, measured here), as much as
#: reading ~16 KiB again, and it is done before the first block is read.
MAX_MAPPED_CHUNKS = 1 << 16
MIN_MAPPED_CHUNK_BYTES = 16 << 10


def row_spans(dataset: Any, shape: tuple[int, ...],
              dtype: np.dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """Where a dataset's rows lie in the file, when they are stored raw and in row order: the
    first row of each span of rows that is contiguous in the file, and the span's offset; None
    when its rows are not the file's bytes in order.

    A contiguous dataset is one span. A chunked one qualifies when no filter is set (no
    compression, shuffle or checksum), each chunk holds whole rows (its shape beyond the first
    axis is the dataset's), every chunk is allocated, there are not too many or too small
    chunks (:data:`MAX_MAPPED_CHUNKS`), and the chunks lie in the file in row order without
    overlapping: the h5py default for a dataset written from the start to the end. Chunks that
    follow each other directly merge into one span. HDF5 reports offsets from the start of the
    file, user block included.
    """
    rows = shape[0]
    if dataset.chunks is None:
        offset = dataset.id.get_offset()
        if offset is None or int(dataset.id.get_storage_size()) != nbytes_of(shape, dtype):
            return None
        return np.zeros(1, np.int64), np.array([offset], np.int64)
    chunk_rows = int(dataset.chunks[0])
    count = -(-rows // chunk_rows)
    if (tuple(dataset.chunks[1:]) != tuple(shape[1:]) or rows == 0
            or dataset.id.get_create_plist().get_nfilters() != 0
            or count > MAX_MAPPED_CHUNKS or dataset.id.get_num_chunks() != count):
        return None
    chunk_bytes = chunk_rows * nbytes_of(shape[1:], dtype)
    if chunk_bytes < MIN_MAPPED_CHUNK_BYTES:
        return None
    offsets = np.full(count, -1, np.int64)

    def note(info: Any) -> None:
        if info.size == chunk_bytes and info.byte_offset is not None:
            offsets[info.chunk_offset[0] // chunk_rows] = info.byte_offset

    if hasattr(dataset.id, "chunk_iter"):  # HDF5 >= 1.12.3: one call for all chunks
        dataset.id.chunk_iter(note)
    else:
        for index in range(count):
            note(dataset.id.get_chunk_info(index))
    if bool(np.any(offsets < 0)) or bool(np.any(np.diff(offsets) < chunk_bytes)):
        return None  # a chunk not raw, or the chunks out of row order (or overlapping)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(offsets) != chunk_bytes) + 1])
    return starts * chunk_rows, offsets[starts]


def read_vlen(h5: H5File, dataset: Any) -> list[np.ndarray] | None:
    """The sequences of a variable-length dataset of 1-D arrays, or None if it is not vlen."""
    where = h5.where(dataset.name)
    with h5_errors(where):
        base = h5py_module().check_vlen_dtype(dataset.dtype)
    if base is None:
        return None
    check_dtype(np.dtype(base), where)
    if dataset.ndim != 1:
        raise InputError(f"{where}: vlen dataset of shape {dataset.shape}; expected 1-D "
                         f"(one variable-length sequence per sample)")
    # The sequences live in HDF5's global heap: the dataset's storage size counts only the
    # references to them, so the bytes are counted while reading, a block of rows at a time.
    sequences: list[np.ndarray] = []
    total = 0
    with h5_errors(where):
        for start in range(0, int(dataset.shape[0]), VLEN_BLOCK_ROWS):
            for seq in dataset[start:start + VLEN_BLOCK_ROWS]:
                array = np.asarray(seq)
                total += array.nbytes
                if total > h5.memory_limit:
                    raise InputError(
                        f"{where}: vlen dataset holds more than {h5.memory_limit:,} bytes of "
                        f"sequences, over --memory-limit; this layout cannot be streamed -- "
                        f"raise --memory-limit or store values + lengths")
                sequences.append(array)
    return sequences


class H5Writer:
    """Create datasets in a new HDF5 file, reproducibly (no time stamps).

    Example:
        >>> import numpy as np, tempfile, os, h5py
        >>> path = os.path.join(tempfile.mkdtemp(), "t.h5")
        >>> with H5Writer(path) as h5:
        ...     h5.write_array("lengths", np.array([3, 1]))
        >>> h5py.File(path)["lengths"][()].tolist()
        [3, 1]
    """

    def __init__(self, path: str) -> None:
        self.file = h5py_module().File(path, "w", track_order=False)

    def __enter__(self) -> H5Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def create(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """An empty dataset, chunked by rows of about 1 MB when it is large."""
        row_bytes = max(nbytes_of(shape[1:], dtype), 1)
        chunks = None
        if shape and nbytes_of(shape, dtype) > (1 << 20) and shape[0] > 0:
            rows = max(1, min(shape[0], (1 << 20) // row_bytes))
            chunks = (rows, *shape[1:])
        if dtype.kind == "S":  # text (a table's ids), UTF-8 encoded: marked so for h5py readers
            dtype = np.dtype(h5py_module().string_dtype("utf-8", dtype.itemsize))
        return self.file.create_dataset(name, shape=shape, dtype=dtype.newbyteorder("<"),
                                        chunks=chunks, track_times=False)

    def write_array(self, name: str, array: np.ndarray) -> None:
        dataset = self.create(name, array.shape, array.dtype)
        if array.size:
            dataset[...] = array
