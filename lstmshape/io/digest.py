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
the cost differs. An input no reader observes (compressed members, chunked datasets, one array
per sequence) is hashed by reading the whole file in the background from the start
(:meth:`InputDigest.hash_whole_file`), as every input used to be.

Blocks wait for the hasher in a queue of :data:`QUEUE_DEPTH`, so memory grows by at most that
many blocks. A block must not be modified after it was observed: the readers hand out fresh
arrays, and the commands only ever read their input blocks.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from concurrent.futures import Future
from typing import Any

import numpy as np

#: bytes read from the file per ``readinto`` when hashing a gap or a whole file
HASH_BLOCK = 1 << 22
#: blocks observed but not yet hashed; the reader waits when the queue is full
QUEUE_DEPTH = 2


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
               buffer: bytearray | None = None) -> int:
    """Add the file's bytes ``start:stop`` (``None``: to the end) to ``digest``, read through
    ``buffer`` (a new one of :data:`HASH_BLOCK` if not given); returns the end reached."""
    view = memoryview(buffer if buffer is not None else bytearray(HASH_BLOCK))
    handle.seek(start)
    position = start
    while stop is None or position < stop:
        want = len(view) if stop is None else min(len(view), stop - position)
        count = handle.readinto(view[:want])
        if not count:
            break
        digest.update(view[:count])
        position += count
    return position


def sha256_in_background(path: str) -> Future[str]:
    """Hash a file on another thread (hashlib releases the GIL) while the command works.

    A daemon thread, so an interrupted command exits at once instead of finishing the hash.
    """
    future: Future[str] = Future()

    def run() -> None:
        try:
            future.set_result(sha256_file(path))
        except BaseException as err:  # handed to whoever waits on the future
            future.set_exception(err)

    threading.Thread(target=run, name="lstmshape-sha256", daemon=True).start()
    return future


class InputDigest:
    """sha256 of one input file, fed by the blocks its readers read (see the module docstring).

    Example:
        >>> import numpy as np, os, tempfile, hashlib
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy"); np.save(path, np.arange(6.0))
        >>> digest = InputDigest(path)
        >>> digest.observe(128 + 16, np.arange(2.0, 4.0))   # rows 2..3; the header is a gap
        >>> digest.hexdigest() == hashlib.sha256(open(path, "rb").read()).hexdigest()
        True
    """

    def __init__(self, path: str) -> None:
        self.path = path
        #: readers that will call :meth:`observe`; none means: hash the whole file instead
        self.observers = 0
        self._position = 0  # bytes queued for hashing, from the start of the file
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._result: Future[str] = Future()
        self._thread: threading.Thread | None = None
        self._whole = False
        self._finished = False

    def hash_whole_file(self) -> None:
        """Hash the file by reading it, in the background, starting now; blocks are ignored."""
        if self._thread is None:
            self._whole = True
            self._result = sha256_in_background(self.path)

    def observe(self, offset: int, block: np.ndarray) -> None:
        """``block`` (C-contiguous) holds the file's bytes from ``offset`` on."""
        if self._whole:
            return
        data = block.data.cast("B")
        with self._lock:
            end = offset + data.nbytes
            if self._finished or end <= self._position:
                return  # already hashed
            self._start()
            if offset > self._position:
                self._queue.put((self._position, offset))  # a gap: read from the file
            elif offset < self._position:
                data = data[self._position - offset:]
            self._queue.put(data)
            self._position = end

    def hexdigest(self) -> str:
        """The file's sha256: waits for the hasher after queueing the rest of the file."""
        with self._lock:
            if not self._whole and not self._finished:
                self._start()
                self._queue.put((self._position, None))
                self._queue.put(None)
            self._finished = True
        return self._result.result()

    def close(self) -> None:
        """Stop the hasher thread of a job that ends without asking for the digest."""
        with self._lock:
            if self._thread is not None and not self._finished:
                self._queue.put(None)
            self._finished = True

    def result(self) -> str:
        """The same as :meth:`hexdigest` (the ``Future`` interface :class:`~lstmshape.job.Job`
        waits on)."""
        return self.hexdigest()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._hash, name="lstmshape-sha256-in",
                                            daemon=True)
            self._thread.start()

    def _hash(self) -> None:
        digest = hashlib.sha256()
        buffer = bytearray(HASH_BLOCK)
        try:
            with open(self.path, "rb", buffering=0) as handle:
                while (item := self._queue.get()) is not None:
                    if isinstance(item, tuple):
                        start, stop = item
                        hash_range(handle, digest, start, stop, buffer)
                    else:
                        digest.update(item)
            self._result.set_result(digest.hexdigest())
        except BaseException as err:  # handed to whoever waits on the result
            self._result.set_exception(err)
            while self._queue.get() is not None:  # let observers finish; they are not waited on
                pass
