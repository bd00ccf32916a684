"""Overlapping the work on the next block with the writing of this one.

A command's output blocks come from a generator that reads and transforms input; the writer
consumes them. :func:`prefetch` runs the generator on a background thread, one block ahead, so
reading + transforming (numpy and h5py release the GIL for the heavy parts) runs on one core
while writing + hashing runs on the other. At most ``depth`` finished blocks wait in the queue,
which keeps memory within the budget.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

from .output import ArrayData, Stream
from .threads import start_worker

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Iterate ``items`` produced on a daemon thread, ``depth`` items ahead of the consumer.

    An exception in the producer is raised in the consumer at the point it would have
    occurred. If the consumer stops early (an error while writing, Ctrl-C in a notebook), the
    producer is told to stop at its next item, so no thread and no block outlive the call.

    Example:
        >>> list(prefetch(x * x for x in range(4)))
        [0, 1, 4, 9]
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand_over(item):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            hand_over(_Failure(error))
            return
        hand_over(_DONE)

    start_worker(produce, "lstmshape-prefetch")
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()


def prefetched(data: ArrayData) -> ArrayData:
    """A :class:`Stream` whose blocks are produced one ahead on a background thread."""
    if isinstance(data, Stream):
        return Stream(data.shape, data.dtype, prefetch(data.blocks))
    return data
