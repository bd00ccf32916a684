"""``.zarr`` outputs and inputs: a Zarr v3 directory store, one group, an array per role.

The layout every ``.zarr`` lstmshape writes (and the one its reader expects)::

    out.zarr/zarr.json              the group (no attributes)
    out.zarr/x/zarr.json            one array per role: x, lengths, y, values, ...
    out.zarr/x/c/0/0/0              chunk 0: rows 0:C of x, C rows = ZARR_CHUNK_BYTES / row bytes

Chunks split the first axis only (samples; timesteps for ragged ``values``), and there is no
compressor: the codec chain is Zarr's ``bytes`` codec, little-endian, so a chunk's bytes are a
pure function of its rows (no library version, thread count or level of a compressor changes
them), which is what makes the local and the Dask engine write byte-identical trees. Every chunk
is written, also one that equals the fill value (``write_empty_chunks``), so the tree -- and the
manifest's listing of it -- does not depend on the data either.

Each chunk is one object written by one writer, :func:`write_chunk`, which returns the sha256 of
what it wrote: the local engine calls it for each chunk in turn, a Dask task calls it on a
worker (zarr-python's partial-chunk writes are read-modify-write; aligned whole chunks never
are). The manifest's sha256 of the directory is :func:`listing_digest` of its files.

zarr is imported only here, and only when a ``.zarr`` is read or written.
"""

from __future__ import annotations

import errno
import hashlib
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import InputError
from .arrays import little_endian, nbytes_of

#: Bytes of one chunk (rounded down to whole rows, at least one row). Small enough that a task
#: holds a few chunks in a worker's memory, large enough that a 1 TB set is ~60k objects.
#: ``LSTMSHAPE_ZARR_CHUNK_BYTES`` overrides it (the tests use tiny chunks to get many tasks).
ZARR_CHUNK_BYTES = 16 * 2**20
CHUNK_BYTES_ENV = "LSTMSHAPE_ZARR_CHUNK_BYTES"
INSTALL_HINT = "pip install 'lstmshape[dask]'"
#: Metadata document of a group or an array (Zarr v3)
METADATA = "zarr.json"
#: write every chunk, also one equal to the fill value: the file listing never depends on data
ARRAY_CONFIG = {"write_empty_chunks": True}


def import_zarr() -> Any:
    """zarr, or one clear error naming the extra that installs it.

    zarr-python runs its I/O on a thread of its own (``zarr_io``, and a pool it starts): it is
    started here with SIGINT/SIGTERM/SIGHUP blocked, as :mod:`.threads` does for lstmshape's
    own threads, so the kernel never hands such a signal to it while the main thread holds it
    back over a commit's renames. What crosses to that thread: the chunks being written or read.
    """
    try:
        import zarr
        from zarr.core.sync import _get_loop
    except ImportError:
        raise InputError(f".zarr needs zarr-python >= 3: {INSTALL_HINT}") from None
    from .output import signals_deferred

    with signals_deferred():  # threads inherit the mask of the thread that starts them
        _get_loop()
    return zarr


def chunk_rows(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Rows per chunk of an array of ``shape`` (whole rows, at least one).

    Example:
        >>> chunk_rows((1000, 100, 8), np.dtype("float32")) == ZARR_CHUNK_BYTES // 3200
        True
    """
    budget = int(os.environ.get(CHUNK_BYTES_ENV) or ZARR_CHUNK_BYTES)
    row = max(nbytes_of(tuple(shape[1:]), dtype), 1)
    return max(budget // row, 1)


def chunk_key(index: int, ndim: int) -> str:
    """The object of chunk ``index`` (along the first axis) of an ``ndim``-D array, relative to
    the array's folder (Zarr v3 default key encoding, ``/`` separator).

    Example:
        >>> chunk_key(3, 3), chunk_key(0, 1)
        ('c/3/0/0', 'c/0')
    """
    return "/".join(["c", str(index), *["0"] * (ndim - 1)])


def chunk_bounds(rows: int, per_chunk: int) -> list[tuple[int, int]]:
    """``(start, stop)`` rows of each chunk of an array of ``rows`` rows."""
    return [(start, min(start + per_chunk, rows)) for start in range(0, rows, per_chunk)]


def sha256_of(path: str) -> str:
    from .digest import sha256_file

    return sha256_file(path)


def create_arrays(store: str, arrays: list[tuple[str, tuple[int, ...], np.dtype]]) -> None:
    """The group and its (empty) arrays in a new directory ``store``: metadata only, written
    once by the client before any chunk."""
    zarr = import_zarr()
    group = zarr.open_group(store=zarr.storage.LocalStore(store), mode="w", zarr_format=3)
    for role, shape, dtype in arrays:
        with warnings.catch_warnings():
            # a table's string ids are fixed-width unicode, which zarr-python stores but warns
            # has no Zarr v3 specification yet; lstmshape reads it back itself
            warnings.simplefilter("ignore", FutureWarning)
            group.create_array(role, shape=shape, dtype=little_endian_dtype(dtype),
                               chunks=(chunk_rows(shape, dtype), *shape[1:]),
                               compressors=None, filters=None, fill_value=0,
                               config=ARRAY_CONFIG)


def little_endian_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(dtype.newbyteorder("<")) if dtype.byteorder == ">" else dtype


def write_chunk(store: str, role: str, index: int, rows: np.ndarray) -> list[tuple[str, str]]:
    """Write chunk ``index`` of array ``role`` -- exactly its rows, never part of another
    chunk -- and return ``[(relative path, sha256)]`` of the object written."""
    zarr = import_zarr()
    if not os.path.isfile(os.path.join(store, METADATA)):
        # the run was stopped and its temp store removed: a task still in flight on a remote
        # worker must not create its folders again (zarr creates parent folders as it writes)
        raise FileNotFoundError(errno.ENOENT, "the store was removed", store)
    array = zarr.open_array(store=zarr.storage.LocalStore(store), path=role, mode="r+")
    array = array.with_config(ARRAY_CONFIG)
    per_chunk = int(array.chunks[0])
    start = index * per_chunk
    if start + len(rows) != min(start + per_chunk, array.shape[0]):
        raise ValueError(f"{role}: chunk {index} needs {per_chunk} rows (fewer at the end), "
                         f"got {len(rows)}")
    if len(rows):
        array[start:start + len(rows)] = little_endian(rows)
    relative = f"{role}/{chunk_key(index, len(array.shape))}"
    return [(relative, sha256_of(os.path.join(store, relative)))]


def write_stream(store: str, role: str, shape: tuple[int, ...], dtype: np.dtype,
                 blocks: Iterable[np.ndarray]) -> list[tuple[str, str]]:
    """Write an array given as blocks of any size, regrouped into whole chunks, in order."""
    per_chunk = chunk_rows(shape, dtype)
    written: list[tuple[str, str]] = []
    for index, chunk in enumerate(regroup(blocks, per_chunk)):
        written += write_chunk(store, role, index, chunk)
    return written


def regroup(blocks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The rows of ``blocks`` in pieces of exactly ``size`` rows (the last one shorter).

    Example:
        >>> [len(p) for p in regroup([np.zeros(3), np.zeros(4), np.zeros(1)], 3)]
        [3, 3, 2]
    """
    pending: list[np.ndarray] = []
    count = 0
    for block in blocks:
        while len(block):
            take = min(size - count, len(block))
            pending.append(block[:take])
            count += take
            block = block[take:]
            if count == size:
                yield np.concatenate(pending)
                pending, count = [], 0
    if count:
        yield np.concatenate(pending)


def metadata_files(store: str, roles: Iterable[str]) -> list[tuple[str, str]]:
    """``[(relative path, sha256)]`` of the group's and each array's ``zarr.json``."""
    paths = [METADATA, *(f"{role}/{METADATA}" for role in roles)]
    return [(path, sha256_of(os.path.join(store, path))) for path in paths]


def listing_lines(files: Iterable[tuple[str, str]]) -> list[str]:
    """``sha256  relative/path`` lines, sorted by path (``sha256sum``'s format)."""
    return [f"{sha}  {path}" for path, sha in sorted(files)]


def listing_digest(files: Iterable[tuple[str, str]]) -> str:
    """The sha256 of a directory output: that of its sorted ``sha256  path`` listing, one line
    each, ``\\n``-terminated -- ``cd out.zarr && find . -type f | sort | xargs sha256sum``
    with the ``./`` removed gives the same text.

    Example:
        >>> listing_digest([("b", "2" * 64), ("a", "1" * 64)]) == hashlib.sha256(
        ...     ("1" * 64 + "  a\\n" + "2" * 64 + "  b\\n").encode()).hexdigest()
        True
    """
    text = "".join(line + "\n" for line in listing_lines(files))
    return hashlib.sha256(text.encode()).hexdigest()


def tree_files(store: str) -> list[tuple[str, str]]:
    """``[(relative path, sha256)]`` of every regular file under ``store``, as found now."""
    found = []
    for folder, dirs, names in os.walk(store):
        dirs.sort()
        for name in names:
            path = os.path.join(folder, name)
            found.append((os.path.relpath(path, store).replace(os.sep, "/"), sha256_of(path)))
    return sorted(found)


def check_tree(store: str, recorded: dict[str, str]) -> list[str]:
    """What differs between ``store`` and the ``{path: sha256}`` recorded for it: each file
    changed, missing or added, one phrase each (empty when every file matches)."""
    found = dict(tree_files(store))
    problems = [f"{path} is missing" for path in sorted(recorded.keys() - found.keys())]
    # the group's own zarr.json is in no role's listing: the store's sha256 covers it
    extra = found.keys() - recorded.keys() - {METADATA}
    problems += [f"{path} is not in the manifest" for path in sorted(extra)]
    problems += [f"{path}: sha256 {found[path][:12]}... differs from the {sha[:12]}... recorded"
                 for path, sha in sorted(recorded.items()) if path in found and found[path] != sha]
    return problems


def parse_listing(lines: Any) -> dict[str, str] | None:
    """``{path: sha256}`` from a manifest's ``files`` listing; None when it is not one."""
    if not isinstance(lines, list):
        return None
    parsed = {}
    for line in lines:
        sha, sep, path = line.partition("  ") if isinstance(line, str) else ("", "", "")
        if not sep or len(sha) != 64 or not path:
            return None
        parsed[path] = sha
    return parsed


# ---------------------------------------------------------------------------------------------
# Reading


class ZarrArray:
    """One array of a ``.zarr`` group as a :class:`~lstmshape.io.arrays.StoredArray`: rows are
    read chunk-aligned by zarr-python, only those asked for."""

    def __init__(self, array: Any, where: str) -> None:
        self.array = array
        self.where = where

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        dtype: np.dtype = np.dtype(self.array.dtype)
        return dtype

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        try:
            return np.ascontiguousarray(self.array[start:stop])
        except (ValueError, TypeError, OSError) as err:  # a damaged chunk: its size, its bytes
            raise InputError(f"{self.where}: cannot read rows {start}:{stop} ({err}); a chunk "
                             f"file is damaged -- remake the store") from None


def open_arrays(path: str) -> dict[str, ZarrArray]:
    """The arrays of the group at ``path``, by name; one clear error for anything else."""
    zarr = import_zarr()
    if not os.path.isfile(os.path.join(path, METADATA)):
        raise InputError(f"{path}: not a Zarr v3 store (no {METADATA} in it)")
    try:
        group = zarr.open_group(store=zarr.storage.LocalStore(path, read_only=True), mode="r")
        return {name: ZarrArray(group[name], f"{path}:{name}")
                for name in sorted(group.array_keys())}
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise InputError(f"{path}: not a readable Zarr group ({err})") from None


def stored_info(path: str, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``key`` of the store at ``path``, from its metadata alone."""
    arrays = open_arrays(path)
    if key not in arrays:
        raise InputError(f"{path}: no array {key!r}; arrays found: "
                         f"{', '.join(arrays) or 'none'}")
    return arrays[key].shape, arrays[key].dtype
