"""The one way lstmshape starts a thread, and the rules every such thread follows.

Four kinds of thread run beside the main one, each started by :func:`start_worker`:

=========================  ===================================================================
thread                     what crosses to and from it
=========================  ===================================================================
``lstmshape-prefetch``     reads and transforms the next block (:mod:`.prefetch`); hands each
                           finished block, or the exception it raised, through a queue of one
``lstmshape-sha256-in``    hashes an input from the blocks the readers observed, or reads the
                           file itself (:mod:`.digest`); blocks arrive under a lock, the
                           hexdigest leaves through a ``Future``
``lstmshape-sha256-out``   hashes the bytes being written (:mod:`.output`); blocks arrive
                           through a queue of one, the main thread reads the digest after
                           joining it
``lstmshape-release-cache``  drops the page cache of the output being replaced; shares nothing
``lstmshape-dask-connect``  connects a Dask client to a scheduler (:func:`call_blocked`): the
                           client's own threads (its ``IO loop``, Dask's offload pool) start
                           from it and so block the signals too; the client leaves through a
                           ``Future``. A local cluster's loop is started by the main thread: it
                           spawns the worker processes, which would inherit a blocked mask
=========================  ===================================================================

Arrays handed over are never written again by the side that handed them over. h5py serialises
every call into libhdf5 with one lock, so a prefetching reader and the main thread's HDF5
writer never run inside HDF5 at the same time; numpy, hashlib and file reads release the GIL,
which is what makes the threads pay.

Signals: SIGINT, SIGTERM and SIGHUP are blocked in every worker from its first instruction,
so the kernel always delivers them to the main thread. There :func:`.output.signals_deferred`
can hold them back over the few system calls that must not be cut in two (a temp file created
but not yet recorded; two renames): a signal delivered to a worker would have its Python
handler run in the main thread at once, deferral or not.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

#: The signals lstmshape handles (a clean exit that removes its temp files).
HANDLED_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def start_worker(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """Start ``target(*args)`` on a daemon thread named ``name`` that never takes a signal.

    Raises ``RuntimeError`` when no thread can be had (the caller decides whether that matters).

    Example:
        >>> results = []
        >>> start_worker(results.append, "lstmshape-example", 42).join()
        >>> results
        [42]
    """

    def run() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        target(*args)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def call_blocked(target: Callable[[], T], name: str) -> T:
    """``target()`` run on a :func:`start_worker` thread, its result or exception handed back:
    every thread that ``target`` starts inherits the blocked signals. The main thread waits
    interruptibly (Ctrl-C still stops the wait).

    Example:
        >>> call_blocked(lambda: threading.current_thread().name, "lstmshape-example")
        'lstmshape-example'
    """
    done: Future[T] = Future()

    def run() -> None:
        try:
            done.set_result(target())
        except BaseException as err:  # handed to the caller, raised there
            done.set_exception(err)

    start_worker(run, name)
    return done.result()
