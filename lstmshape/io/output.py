"""Writing outputs atomically: temp files in the output's folder, renamed only on success.

An :class:`OutputSet` is a small transaction over every file one command writes (the tensor, its
``.lengths.npy``, the manifest). Each file is written to a temp file beside its final path
(``.NAME.XXXX.tmp``, same filesystem, so ``os.replace`` is atomic); :meth:`OutputSet.commit`
renames them all at the end. If anything fails -- bad data found half-way, disk full, SIGINT or
SIGTERM -- the temp files are removed and no output is touched, so an output that existed before
stays as it was, and Make never sees a half-written target.

Creating a temp file (and recording it), committing and aborting each run with SIGINT, SIGTERM
and SIGHUP held back (:func:`signals_deferred`): a signal that lands between two renames would
otherwise leave a new tensor beside an old manifest, and one that lands between ``mkstemp`` and
recording the name would leave a temp file nobody removes. The held signal is delivered right after.

Before anything is read, :func:`check_not_inputs` refuses an output that is the same file as an
input (same path, or the same inode through a symlink or a hard link).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import queue
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ..errors import InputError, OutputError
from ..manifest import Manifest
from ..plan import ChunkTask, Engine, Listing, Planned, ProgressCallback
from .arrays import little_endian, utf8_text
from .digest import open_regular, sha256_file
from .location import STDIO, Location, is_side_file, same_path
from .npy import NpyWriter
from .threads import HANDLED_SIGNALS, start_worker
from .writeback import WritebackFile
from .zarr_store import listing_digest


@dataclass
class Stream:
    """An array written block by block: the final shape and dtype, and the blocks in row order."""

    shape: tuple[int, ...]
    dtype: np.dtype
    blocks: Iterable[np.ndarray]


ArrayData = np.ndarray | Stream


def as_utf8(data: ArrayData) -> ArrayData:
    """Text (a table's string ids) as fixed-length UTF-8 bytes, how ``.h5`` stores it; any other
    array as it is. A streamed one gets the width no text of its width can exceed: 4 bytes a
    character.

    Example:
        >>> as_utf8(np.array(["ab", "\u00e9"])).dtype, as_utf8(np.arange(2)).dtype
        (dtype('S2'), dtype('int64'))
        >>> stream = as_utf8(Stream((1,), np.dtype("<U2"), [np.array(["\u00e9"])]))
        >>> stream.dtype, [block.tolist() for block in stream.blocks]
        (dtype('S8'), [[b'\xc3\xa9']])
    """
    if isinstance(data, Stream):
        if data.dtype.kind != "U":
            return data
        width = np.dtype(f"S{data.dtype.itemsize}")  # a U character is 4 bytes: UTF-8's most
        return Stream(data.shape, width, (utf8_text(block).astype(width)
                                          for block in data.blocks))
    return utf8_text(data)


def as_stream(data: ArrayData) -> Stream:
    if isinstance(data, Stream):
        return data
    array = little_endian(np.asarray(data))
    return Stream(array.shape, array.dtype, [array])


# ---------------------------------------------------------------------------------------------
# Identity and hashing


def check_not_inputs(inputs: Iterable[str], outputs: Iterable[str]) -> None:
    """Refuse outputs that are the same file as an input, before any input is read."""
    identities: dict[tuple[int, int], str] = {}
    for path in inputs:
        if path == STDIO:
            continue
        try:
            info = os.stat(path)
        except OSError:
            continue  # reported when the input is opened
        identities[(info.st_dev, info.st_ino)] = path
    for path in outputs:
        if path == STDIO:
            continue
        try:
            info = os.stat(path)
        except OSError:
            continue
        same = identities.get((info.st_dev, info.st_ino))
        if same is not None:
            how = "" if os.path.abspath(same) == os.path.abspath(path) else " (a link to it)"
            raise OutputError(f"{path}: output is the input {same}{how}; refusing to overwrite "
                              f"an input -- choose another output path")


def release_cache(path: str) -> None:
    """Drop the page cache of the file this run is about to replace.

    Its cached pages are of no use once the new file is renamed over it, and freeing them now
    lets this run's writes reuse memory the machine already holds: on VMs that hand guest
    memory back to the host (virtio-balloon free page reporting, as on this project's CI), a
    write into fresh pages costs several times a copy. ``np.save`` onto an existing file gets
    the same for free, by truncating it first. Measured on W1 end to end, 12 runs each:
    median 1.31 s -> 1.06 s (benchmarks/). The bytes on disk are untouched: if the run fails,
    the old output is still there, only no longer cached. Only a hint, done on another
    thread, and only for a file that nothing else keeps: not through a symlink (its target
    lives on), not with a second hard link, not the file on stdin.
    """
    with suppress(RuntimeError):  # no thread to be had: a hint is not worth failing for
        # ~30 ms of freeing pages: overlaps opening inputs
        start_worker(drop_page_cache, "lstmshape-release-cache", path)


def drop_page_cache(path: str) -> None:
    """``posix_fadvise(DONTNEED)`` on the regular file at ``path`` when it is the only name of
    its bytes (see :func:`release_cache`): its clean cached pages are freed."""
    advise = getattr(os, "posix_fadvise", None)  # not on macOS
    if advise is None:
        return
    try:  # checked on the open file, not the path: nothing can be swapped in between
        handle = open_regular(path, follow_symlinks=False)
    except OSError:
        return  # missing, unreadable, not a regular file, or a symlink (ELOOP)
    with handle, suppress(OSError):
        info = os.fstat(handle.fileno())
        if info.st_nlink == 1 and not is_stdin(info):
            advise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def is_stdin(info: os.stat_result) -> bool:
    """Whether ``info`` is the file on standard input (``lstmshape pad - -o x.npy < x.npy``)."""
    try:
        return os.path.samestat(os.fstat(0), info)
    except OSError:
        return False


def check_writable_folder(path: str) -> None:
    """Fail early, before reading, when the output's folder is missing or read-only."""
    if path == STDIO:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"{path}: cannot write: folder {folder} does not exist")
    if os.path.isdir(path) and Location(path).suffix != ".zarr":
        raise OutputError(f"{path}: cannot write: it is a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write: folder {folder} is not writable")


class HashingWriter:
    """A binary stream wrapper that hashes every byte written through it.

    Large blocks are hashed on a second thread while the first writes them (hashlib and
    ``write`` both release the GIL): sha256 of a 640 MB tensor is ~0.35 s of CPU that then
    overlaps the write instead of adding to it. At most one block waits for the hasher, so
    memory grows by one block at most. Call :meth:`hexdigest` once, after the last write.
    """

    #: blocks smaller than this are hashed in place: a thread hand-off costs more
    THREAD_MIN_BYTES = 1 << 20

    def __init__(self, stream: IO[bytes] | WritebackFile) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()
        self._pending: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None

    def write(self, data: Any) -> int:
        if memoryview(data).nbytes < self.THREAD_MIN_BYTES:
            self._drain()  # keep the order of bytes in the digest
            self.digest.update(data)
        else:
            if self._thread is None:
                self._thread = start_worker(self._hash_blocks, "lstmshape-sha256-out")
            self._pending.put(data)
        return self.stream.write(data)

    def _hash_blocks(self) -> None:
        while (data := self._pending.get()) is not None:
            self.digest.update(data)
            self._pending.task_done()
        self._pending.task_done()

    def _drain(self) -> None:
        if self._thread is not None:
            self._pending.join()

    def hexdigest(self) -> str:
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join()
            self._thread = None
        return self.digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# The transaction


DEFERRED_SIGNALS = HANDLED_SIGNALS
#: Every temp file of every live OutputSet in this process. A signal can still land in the few
#: bytecodes between an error and the ``with`` block's cleanup; the CLI calls
#: :func:`remove_temp_files` last thing, so not even that leaves a temp file behind.
LIVE_TEMP_FILES: set[str] = set()


def remove_temp_files() -> None:
    """Remove every temp file (or ``.zarr`` temp directory) an OutputSet created and neither
    committed nor removed."""
    with signals_deferred():
        for temp in sorted(LIVE_TEMP_FILES):
            remove_temp(temp)
        LIVE_TEMP_FILES.clear()


def remove_temp(temp: str) -> None:
    """Remove a temp file, or a temp directory with everything in it; quietly."""
    if os.path.isdir(temp) and not os.path.islink(temp):
        shutil.rmtree(temp, ignore_errors=True)
    else:
        with suppress(OSError):
            os.unlink(temp)


#: ``renameat2(2)``'s flag that swaps two paths in one step (Linux >= 3.15, glibc >= 2.28)
RENAME_EXCHANGE = 2


def exchange(first: str, second: str) -> bool:
    """Swap two existing paths atomically (``renameat2(RENAME_EXCHANGE)``); False where the
    system cannot, and nothing was changed."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    done = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second),
                     RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # not supported here (file system, kernel): the caller renames twice
    raise OSError(code, os.strerror(code), second)


def replace_directory(temp: str, final: str) -> None:
    """Put the directory ``temp`` at ``final``. An existing ``final`` is swapped with it in one
    step, so a reader sees the old tree or the new one, never a mix, then removed; where the
    system cannot swap, it is renamed aside first (a reader may then briefly find nothing)."""
    if not os.path.lexists(final):
        os.rename(temp, final)
        return
    if not os.path.isdir(final) or os.path.islink(final):
        raise OSError(errno.EEXIST, "exists and is not a directory (a .zarr is one)", final)
    if exchange(temp, final):
        shutil.rmtree(temp, ignore_errors=True)  # the old tree, now at the temp path
        return
    aside = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.old.",
                             dir=os.path.dirname(os.path.abspath(final)))
    os.rename(final, os.path.join(aside, "old"))
    os.rename(temp, final)
    shutil.rmtree(aside, ignore_errors=True)


def describe_os_error(path: str, err: OSError) -> str:
    """``PATH: cannot write: REASON`` for an OSError.

    Example:
        >>> import errno
        >>> describe_os_error("x.npy", OSError(errno.ENOSPC, "No space left on device"))
        'x.npy: cannot write: no space left on device'
    """
    if err.errno == errno.ENOSPC:
        return f"{path}: cannot write: no space left on device"
    if err.errno == errno.EFBIG:
        return f"{path}: cannot write: file too large for this file system or process limit"
    reason = err.strerror or str(err) or type(err).__name__
    return f"{path}: cannot write: {reason}"


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back for a few system calls; a held signal is delivered (and
    its handler raises) as soon as the block ends. Only the main thread runs Python signal
    handlers, and workers block these signals (:mod:`.threads`), so the main thread's mask is
    the only one that matters."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, DEFERRED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class OutputSet:
    """Temp files for every output of one command, renamed into place together on commit.

    Example:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp(); final = os.path.join(folder, "out.txt")
        >>> with OutputSet() as outputs:
        ...     with open(outputs.temp_path(final), "w") as handle:
        ...         _ = handle.write("done")
        >>> open(final).read()
        'done'
    """

    def __init__(self) -> None:
        self.pending: list[tuple[str, str]] = []
        self.sha256: dict[str, str] = {}
        #: final path -> the stat of the temp file renamed there, taken just before the rename
        #: (the digest cache records an output only if it is still that file)
        self.committed: dict[str, os.stat_result] = {}

    def temp_path(self, final: str) -> str:
        """A new empty temp file beside ``final``; it replaces ``final`` on commit."""
        folder = os.path.dirname(os.path.abspath(final))
        with signals_deferred():
            try:
                handle, temp = tempfile.mkstemp(prefix=f".{os.path.basename(final)}.",
                                                suffix=".tmp", dir=folder)
            except OSError as err:
                raise OutputError(describe_os_error(final, err)) from None
            os.close(handle)
            self.pending.append((temp, final))
            LIVE_TEMP_FILES.add(temp)
        return temp

    def temp_directory(self, final: str) -> str:
        """A new empty temp directory beside ``final`` (a ``.zarr`` store); it replaces
        ``final`` on commit."""
        folder = os.path.dirname(os.path.abspath(final))
        with signals_deferred():
            try:
                temp = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.", suffix=".tmp",
                                        dir=folder)
            except OSError as err:
                raise OutputError(describe_os_error(final, err)) from None
            self.pending.append((temp, final))
            LIVE_TEMP_FILES.add(temp)
        return temp

    def commit(self) -> None:
        mode = 0o644 & ~current_umask()
        with signals_deferred():
            try:
                for temp, final in self.pending:
                    try:
                        if os.path.isdir(temp):
                            os.chmod(temp, 0o755 & ~current_umask())
                            replace_directory(temp, final)
                            LIVE_TEMP_FILES.discard(temp)
                            continue
                        os.chmod(temp, mode)
                        self.committed[final] = os.stat(temp)
                        os.replace(temp, final)
                        LIVE_TEMP_FILES.discard(temp)
                    except OSError as err:
                        raise OutputError(describe_os_error(final, err)) from None
            except BaseException:
                self.abort()  # the temp files not yet renamed
                raise
            self.pending.clear()

    def abort(self) -> None:
        with signals_deferred():
            for temp, _ in self.pending:
                remove_temp(temp)
                LIVE_TEMP_FILES.discard(temp)
            self.pending.clear()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    @contextmanager
    def writing(self, final: str) -> Iterator[str]:
        """A temp path to write ``final`` to; OS errors become one-line OutputErrors."""
        temp = self.temp_path(final)
        try:
            yield temp
        except OSError as err:
            raise OutputError(describe_os_error(final, err)) from None

    def write_text(self, final: str, text: str) -> None:
        """Write ``text`` (UTF-8) to ``final`` through a temp file, like every other output."""
        with self.writing(final) as temp, open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)

    def write_file(self, location: Location, arrays: list[tuple[str, ArrayData]]) -> str | None:
        """Write named arrays to ``location`` in the format its suffix picks; returns its sha256.

        ``.npy`` (and ``-``, stdout) takes exactly one array. ``.npz`` and ``.h5`` take any
        number, written in the order given.
        """
        suffix = location.suffix
        if suffix == ".npy":
            if len(arrays) != 1:
                raise ValueError(f"an .npy file holds one array, got {[n for n, _ in arrays]}")
            if location.is_stdio:
                stream = HashingWriter(sys.stdout.buffer)
                write_npy(stream, arrays[0][1])  # type: ignore[arg-type]
                sys.stdout.buffer.flush()
                return stream.hexdigest()
            # "r+b": the temp file exists and is empty; "wb" would truncate it, and on ext4 a
            # truncated file is flushed to disk in full when closed (auto_da_alloc)
            with self.writing(location.path) as temp, open(temp, "r+b") as handle:
                hashing = HashingWriter(WritebackFile(handle))
                write_npy(hashing, arrays[0][1])  # type: ignore[arg-type]
                return hashing.hexdigest()
        with self.writing(location.path) as temp:
            if suffix == ".npz":
                write_npz(temp, arrays)
            elif suffix == ".h5":
                with h5_write_errors():
                    write_h5(temp, arrays)
            else:
                raise OutputError(f"{location.path}: unknown output suffix {suffix or '(none)'!r};"
                                  f" use .npy, .npz or .h5")
            return sha256_file(temp)


    def write_zarr(self, location: Location, arrays: list[tuple[str, Any]],
                   engine: Engine | None = None,
                   progress: ProgressCallback | None = None) -> StoreListing:
        """Write named arrays as a ``.zarr`` store in a temp directory that replaces
        ``location`` on commit; its listing.

        The client writes the metadata (before any chunk) and every array given as data or as
        a :class:`Stream`; each :class:`~lstmshape.plan.Planned` array becomes one task per
        chunk, run by ``engine`` (progress is reported as they complete).
        """
        from .zarr_store import chunk_rows, create_arrays, metadata_files, write_stream

        store = self.temp_directory(location.path)
        try:
            create_arrays(store, [(role, tuple(data.shape), np.dtype(data.dtype))
                                  for role, data in arrays])
            files: dict[str, Listing] = {role: [] for role, _ in arrays}
            tasks: list[ChunkTask] = []
            for role, data in arrays:
                if isinstance(data, Planned):
                    if engine is None:
                        raise ValueError(f"{role}: a planned array needs an engine to run it")
                    tasks += data.tasks(store, role, chunk_rows(data.shape, data.dtype))
                else:
                    stream = as_stream(data)
                    files[role] += write_stream(store, role, stream.shape, stream.dtype,
                                                stream.blocks)
            if tasks:
                assert engine is not None
                for task, written in zip(tasks, engine.run(tasks, progress), strict=True):
                    files[task.role] += written
            root, *own = metadata_files(store, files)
            for listing, metadata in zip(files.values(), own, strict=True):
                listing.append(metadata)
            every = [root, *(item for listing in files.values() for item in listing)]
            return StoreListing(listing_digest(every), files)
        except OSError as err:
            raise OutputError(describe_os_error(location.path, err)) from None


@dataclass
class StoreListing:
    """What a directory output holds: the sha256 of its whole listing, and each role's files
    as ``(relative path, sha256)``."""

    sha256: str
    files: dict[str, Listing]


#: HDF5 puts the system error of a failed write into its message ("..., errno = 28, ...").
HDF5_ERRNO = re.compile(r"errno = (\d+)")


@contextmanager
def h5_write_errors() -> Iterator[None]:
    """HDF5 write failures as OSErrors with an errno: h5py raises RuntimeError (e.g. at close,
    "Can't decrement id ref count (unable to extend file properly, errno = 27, ...)") or an
    OSError without errno for a full disk or a file size limit."""
    try:
        yield
    except (RuntimeError, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise
        found = HDF5_ERRNO.search(str(err))
        if found is not None:
            code = int(found.group(1))
            raise OSError(code, os.strerror(code)) from None
        raise OSError(f"HDF5: {str(err).splitlines()[0] if str(err) else err!r}") from None


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------
# Formats


def write_npy(stream: IO[bytes], data: ArrayData) -> None:
    stream_data = as_stream(data)
    writer = NpyWriter(stream, stream_data.shape, stream_data.dtype)
    for block in stream_data.blocks:
        writer.write(block)
    writer.finish()


def write_npz(path: str, arrays: list[tuple[str, ArrayData]]) -> None:
    from .npz import NpzWriter

    with NpzWriter(path) as npz:
        for name, data in arrays:
            stream_data = as_stream(data)
            with npz.member(name, stream_data.shape, stream_data.dtype) as writer:
                for block in stream_data.blocks:
                    writer.write(block)


def write_h5(path: str, arrays: list[tuple[str, ArrayData]]) -> None:
    from .h5 import H5Writer

    with H5Writer(path) as h5:
        for name, data in arrays:
            stream_data = as_stream(data)
            dataset = h5.create(name, stream_data.shape, stream_data.dtype)
            row = 0
            for block in stream_data.blocks:
                if len(block):
                    block = little_endian(block)
                    if block.dtype.kind == "S":  # text: viewed as the dataset's UTF-8 string
                        block = block.view(dataset.dtype)  # type (h5py converts no plain bytes)
                    dataset[row:row + len(block)] = block
                row += len(block)


# ---------------------------------------------------------------------------------------------
# Side files of an earlier run


def side_files_of(path: str) -> list[str]:
    """The ``PATH.<role>.npy`` files that exist beside ``path``."""
    return glob.glob(glob.escape(path) + ".*.npy")


def stale_candidates(output: Location) -> set[str]:
    """Side files an earlier run wrote beside ``output`` (its default manifest ``OUT.json`` and
    the ``OUT.<role>.npy`` files that manifest lists). If this run does not write them again
    they would describe the old tensor -- and later commands read them -- so they go."""
    if output.is_stdio:
        return set()
    try:
        manifest = Manifest.beside(output.path)
    except InputError:  # a damaged old manifest is replaced, with every side file beside it
        return {output.path + ".json", *side_files_of(output.path)}
    if manifest is None:
        return set()
    found = {manifest.path}
    for role in manifest.outputs:
        path = manifest.file_of(role)
        if path is not None and is_side_file(path, output.path):  # never a file elsewhere
            found.add(path)
    return found


def remove_stale(candidates: set[str], written: set[str]) -> None:
    """Delete the side files of an earlier run that this run did not write again."""
    for path in candidates:
        if not any(same_path(path, done) for done in written if done):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
