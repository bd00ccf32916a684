"""sha256 of files: of the bytes a command reads anyway, or of a whole file in the background.

The manifest records the sha256 of every input file. Hashing an input by reading it a second time
costs a second pass of the whole file through the page cache (about 0.1 s of CPU per GB here);
:class:`InputDigest` avoids it. The readers of arrays stored raw and contiguous in their file --
an ``.npy``'s data, an uncompressed contiguous HDF5 dataset, a stored ``.npz`` member -- hand
each block of rows they read to the digest together with its offset in the file
(:meth:`InputDigest.observe`). The digest hashes the file strictly in file order, on its own
thread:

- a block that starts where the hashed part ends is hashed from memory;
- a block further on first has the gap before it read from the file and hashed (the header, a
  dataset the command skipped, HDF5 metadata);
- a block wholly or partly behind the hashed part contributes only its new bytes (``window``
  reads overlapping ranges; a shuffled ``batch`` reads rows out of order);
- :meth:`InputDigest.hexdigest` reads whatever is left to the end of the file.

So the result is the sha256 of the file's bytes whatever the command reads, in any order; only
the cost differs. An input whose readers observe little of it (compressed members, chunked
datasets, one array per sequence, a small key of a large container: under
:data:`OBSERVED_SHARE` of the file) is hashed by reading the whole file in the background from
the start (:meth:`InputDigest.hash_whole_file`), as every input used to be: the part nobody
observed would otherwise be read at the end, after the command's own work.

The digest opens the file when it is created, just before the readers open it, and reads gaps
through that handle: a file replaced by rename half-way through a run still gets the hash of
one real file, the one that was read. Blocks wait for the hasher up to :data:`QUEUE_DEPTH` at a
time, so memory grows by at most that many blocks. A block must not be modified after it was
observed: the readers hand out fresh arrays, and the commands only ever read their input
blocks. :meth:`InputDigest.close` stops the hasher at its next 4 MB, also in the middle of a
gap, so a failed or interrupted command is not held up by hashing.

Given a :class:`~lstmshape.io.digest_cache.DigestCache`, the digest first looks the opened file's
stat up there: on a trusted record, that is the hash, nothing is read for hashing and every
observation is ignored (the readers still read what the command needs).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import IO, TYPE_CHECKING, Any, Protocol

import numpy as np

from .digest_cache import identity
from .threads import start_worker

if TYPE_CHECKING:
    from .digest_cache import DigestCache

#: a file at most this large is hashed by the thread that asks, not by a worker
INLINE_HASH_BYTES = 1 << 20
#: bytes read from the file per ``readinto`` when hashing a gap or a whole file
HASH_BLOCK = 1 << 22
#: blocks observed but not yet hashed; the reader waits when this many are waiting
QUEUE_DEPTH = 2
#: below this share of a file observed, hash the whole file in the background instead
OBSERVED_SHARE = 0.5


class DigestClosed(Exception):
    """The digest was closed before its hash was asked for (the command failed or stopped)."""


def sha256_file(path: str) -> str:
    """sha256 of a file's bytes, read into one reused buffer (no allocation per block).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "f"); _ = open(path, "wb").write(b"abc")
        >>> sha256_file(path)[:16]
        'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        hash_range(handle, digest, 0, None)
    return digest.hexdigest()


def hash_range(handle: Any, digest: Any, start: int, stop: int | None,
               buffer: bytearray | None = None,
               cancelled: Callable[[], bool] | None = None) -> int:
    """Add the file's bytes ``start:stop`` (``None``: to the end) to ``digest``, read through
    ``buffer`` (a new one of :data:`HASH_BLOCK` if not given); returns the end reached.
    ``cancelled`` is asked before each read; when it says so, :class:`DigestClosed` is raised."""
    view = memoryview(buffer if buffer is not None else bytearray(HASH_BLOCK))
    handle.seek(start)
    position = start
    while stop is None or position < stop:
        if cancelled is not None and cancelled():
            raise DigestClosed(f"hashing of {getattr(handle, 'name', 'a file')} stopped")
        want = len(view) if stop is None else min(len(view), stop - position)
        count = handle.readinto(view[:want])
        if not count:
            break
        digest.update(view[:count])
        position += count
    return position


def open_regular(path: str, follow_symlinks: bool = True) -> IO[bytes]:
    """Open a regular file for reading; anything else (a FIFO, whose open would block until a
    writer comes, a device, a directory; a symlink unless ``follow_symlinks``) is an OSError."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | (0 if follow_symlinks else os.O_NOFOLLOW)
    handle = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return os.fdopen(handle, "rb", buffering=0)
    except BaseException:
        os.close(handle)
        raise


#: the end of the hasher's work: the hash is complete
_END = object()


class Digest(Protocol):
    """What a job, ``verify`` and the digest cache ask of an input's hash, whichever kind:
    :class:`InputDigest` (one file) or :class:`TreeDigest` (a ``.zarr`` directory)."""

    path: str
    #: bytes of the arrays whose reads are observed (see :data:`OBSERVED_SHARE`)
    observed_bytes: int
    #: bytes fed to sha256 so far
    hashed_bytes: int
    #: the stat of the file opened, for the digest cache (None: nothing the cache can trust)
    stat: os.stat_result | None
    stat_time_ns: int
    #: whether the hash came from the cache
    cached: bool

    @property
    def size(self) -> int: ...

    def hash_whole_file(self) -> None: ...

    def observe(self, offset: int, block: np.ndarray) -> None: ...

    def hexdigest(self) -> str: ...

    def close(self) -> None: ...


class DigestFields:
    """The fields every :class:`Digest` starts with, set in one place."""

    def __init__(self, path: str) -> None:
        self.path = path
        #: bytes of the arrays whose reads are observed (see :data:`OBSERVED_SHARE`)
        self.observed_bytes = 0
        #: bytes fed to sha256 so far (written by the hasher thread; read it after hexdigest())
        self.hashed_bytes = 0
        #: the stat of the file opened, taken just after ``stat_time_ns`` (with a cache only)
        self.stat: os.stat_result | None = None
        self.stat_time_ns = 0
        #: whether the hash came from the cache (then the file is not read for hashing)
        self.cached = False


class InputDigest(DigestFields):
    """sha256 of one input file, fed by the blocks its readers read (see the module docstring).

    Example:
        >>> import numpy as np, os, tempfile, hashlib
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy"); np.save(path, np.arange(6.0))
        >>> digest = InputDigest(path)
        >>> digest.observe(128 + 16, np.arange(2.0, 4.0))   # rows 2..3; the header is a gap
        >>> digest.hexdigest() == hashlib.sha256(open(path, "rb").read()).hexdigest()
        True
    """

    def __init__(self, path: str, cache: DigestCache | None = None) -> None:
        super().__init__(path)
        self._handle: IO[bytes] | None
        try:
            self._handle = open_regular(path)  # the hasher closes it
        except OSError:
            self._handle = None  # the reader will say what is wrong with the path
        self._changed = threading.Condition()
        #: the hasher's work in file order: (start, stop) ranges to read, blocks' bytes, _END
        self._work: deque[Any] = deque()
        self._blocks = 0  # blocks in _work: each holds memory until it is hashed
        self._position = 0  # bytes hashed or queued, from the start of the file
        self._whole = False  # the whole file is queued: blocks are not needed
        self._ended = False  # _END is queued: nothing more will be added
        self._cancelled = False
        self._result: Future[str] = Future()
        #: the digest cache's identity of a file whose handle was closed until its turn
        self._reopen_as: tuple[int, int, int, int, int] | None = None
        self._thread: threading.Thread | None = None
        if cache is not None and self._handle is not None:
            self.stat_time_ns = time.time_ns()  # before the stat: see digest_cache.racy
            self.stat = os.fstat(self._handle.fileno())
            known = cache.lookup(self.stat)
            if known is not None:
                self.cached = True
                self._close_handle()
                self._result.set_result(known)  # done: observe() and the rest do nothing

    @property
    def size(self) -> int:
        """The size of the file the digest opened (0 if it could not)."""
        if self.stat is not None:
            return self.stat.st_size
        return os.fstat(self._handle.fileno()).st_size if self._handle is not None else 0

    def hash_whole_file(self) -> None:
        """Hash the file by reading it, in the background, starting now; blocks are ignored.

        A small file (a shard of a folder, a lengths file) is hashed here and now instead:
        starting a thread costs more than hashing it (1,000 shards: 0.2 s of thread starts).
        """
        with self._changed:
            if self._ended or self._cancelled:
                return
            self._whole = True
            inline = (self._thread is None and not self._stopped
                      and self.size <= INLINE_HASH_BYTES)
            if inline:
                self._thread = threading.current_thread()  # _finish() starts no worker
            self._finish()
        if inline:
            self._hash()

    def claim_whole_file(self) -> bool:
        """Queue the whole file for a hasher that the caller runs (:func:`hash_in_turn`);
        False when there is nothing to hash (cached, closed) or a hasher already has it."""
        with self._changed:
            if self._ended or self._stopped or self._thread is not None:
                return False
            self._whole = True
            self._thread = threading.current_thread()  # placeholder: _finish() starts no worker
            self._finish()
            if self._handle is not None:
                # a folder of 1,000 shards waiting in turn must not hold 1,000 more open files
                # (the readers hold one each already): the hasher opens it again, and checks
                # that it is still the file whose stat was taken here
                info = self.stat if self.stat is not None else os.fstat(self._handle.fileno())
                self._reopen_as = identity(info)
                self._close_handle()
            return True

    def observe(self, offset: int, block: np.ndarray) -> None:
        """``block`` (C-contiguous) holds the file's bytes from ``offset`` on."""
        if not block.nbytes:
            return
        data = block.reshape(-1).view(np.uint8).data  # (a zero-row block has returned above)
        end = offset + data.nbytes
        with self._changed:
            while self._blocks >= QUEUE_DEPTH and not self._stopped:
                self._changed.wait()  # memory: at most QUEUE_DEPTH blocks wait for the hasher
            if self._stopped or self._whole or self._ended or end <= self._position:
                return  # not needed: already hashed, read from the file, or asked for/given up
            if offset > self._position:
                self._work.append((self._position, offset))  # a gap: read from the file
            elif offset < self._position:
                data = data[self._position - offset:]
            self._work.append(data)
            self._blocks += 1
            self._position = end
            self._start()
            self._changed.notify_all()

    def hexdigest(self) -> str:
        """The file's sha256: waits for the hasher after queueing the rest of the file.

        Raises what the hasher met (an OSError reading the file), or :class:`DigestClosed`
        after :meth:`close`.
        """
        with self._changed:
            if self._cancelled and not self._result.done():
                raise DigestClosed(f"{self.path}: the digest was closed before it was complete")
            self._finish()
        return self._result.result()

    def close(self) -> None:
        """Stop hashing (at the hasher's next 4 MB at most) and release the file; for a job that
        ends without asking for the hash, or after it asked."""
        with self._changed:
            if self._result.done() or self._cancelled:
                return
            self._cancelled = True
            self._changed.notify_all()
            if self._thread is None:
                self._close_handle()
                self._result.set_exception(DigestClosed(f"{self.path}: closed"))

    # -- the hasher thread ------------------------------------------------------------------------
    @property
    def _stopped(self) -> bool:
        return self._cancelled or self._result.done()

    def _finish(self) -> None:
        """Queue the rest of the file and the end (under the lock)."""
        if not self._ended and not self._stopped:
            self._work.append((self._position, None))
            self._work.append(_END)
            self._ended = True
            self._start()
            self._changed.notify_all()

    def _start(self) -> None:
        if self._thread is not None:
            return
        try:
            self._thread = start_worker(self._hash, "lstmshape-sha256-in")
        except RuntimeError as err:  # no thread to be had: say so to whoever asks for the hash
            self._close_handle()
            self._result.set_exception(err)

    def _next(self) -> Any:
        with self._changed:
            while not self._work and not self._cancelled:
                self._changed.wait()
            if self._cancelled:
                raise DigestClosed(f"{self.path}: closed")
            item = self._work.popleft()
            if isinstance(item, memoryview):
                self._blocks -= 1
                self._changed.notify_all()
            return item

    def _hash(self) -> None:
        try:
            if self._handle is None:  # could not be opened (now say why), or closed to wait
                self._handle = open_regular(self.path)
                if self._reopen_as is not None and \
                        identity(os.fstat(self._handle.fileno())) != self._reopen_as:
                    raise OSError(errno.ESTALE, "the file changed while lstmshape read it",
                                  self.path)
            digest = hashlib.sha256()
            # a small file gets a small buffer: a folder of 1,000 shards hashes 1,000 files,
            # and 4 MB zeroed per file was most of their cost (+1 byte: the read that ends)
            size = os.fstat(self._handle.fileno()).st_size
            buffer = bytearray(min(HASH_BLOCK, size + 1))
            while (item := self._next()) is not _END:
                if isinstance(item, tuple):
                    start, stop = item
                    end = hash_range(self._handle, digest, start, stop, buffer,
                                     lambda: self._cancelled)
                    self.hashed_bytes += end - start
                else:
                    digest.update(item)
                    self.hashed_bytes += item.nbytes
            self._result.set_result(digest.hexdigest())
        except BaseException as err:  # handed to whoever asks for the hash
            self._result.set_exception(err)
        finally:
            with self._changed:
                self._work.clear()
                self._blocks = 0
                self._changed.notify_all()  # observers waiting for room stop waiting
            self._close_handle()

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def hash_in_turn(digests: list[InputDigest]) -> None:
    """Hash many files whole, one after the other, on one background worker: a folder of
    1,000 small shards costs one thread start, and none of its hashing happens on the
    command's own thread (which reads the same shards meanwhile).

    Example:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> paths = [os.path.join(folder, name) for name in "ab"]
        >>> for path in paths: _ = open(path, "wb").write(b"abc")
        >>> digests = [InputDigest(path) for path in paths]
        >>> hash_in_turn(digests)
        >>> [d.hexdigest()[:8] for d in digests]
        ['ba7816bf', 'ba7816bf']
    """
    claimed = [digest for digest in digests if digest.claim_whole_file()]
    if not claimed:
        return

    def hash_each() -> None:
        for digest in claimed:
            digest._hash()  # each sets its own result or error; a closed one stops at once

    try:
        start_worker(hash_each, "lstmshape-sha256-in")
    except RuntimeError:  # no thread to be had: hash them here, now
        hash_each()


class TreeDigest(DigestFields):
    """The sha256 of a directory (a ``.zarr`` store): that of its sorted ``sha256  path``
    listing (:func:`~lstmshape.io.zarr_store.listing_digest`), computed when asked for. Its
    files are many and small, read by zarr-python: nothing is observed, and nothing cached.
    A :class:`Digest` like :class:`InputDigest`, but none of its file machinery: a directory
    has no one handle to hash and no stat the digest cache can trust.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._digest: str | None = None

    @property
    def size(self) -> int:
        return 0

    def hash_whole_file(self) -> None:
        """Nothing to start: the listing is hashed by :meth:`hexdigest`."""

    def observe(self, offset: int, block: np.ndarray) -> None:
        """Blocks of a store are not its files' bytes: ignored."""

    def hexdigest(self) -> str:
        from .zarr_store import listing_digest, tree_files

        if self._digest is None:
            self._digest = listing_digest(tree_files(self.path))
        return self._digest

    def close(self) -> None:
        """Nothing held open."""

