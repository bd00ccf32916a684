"""``--engine dask``: run a command's chunk tasks on a Dask cluster.

The client (this process) opens the input for its metadata, plans the output
(:mod:`lstmshape.plan`), writes the ``.zarr`` metadata, submits one task per output chunk, and
writes the manifest from the listings the tasks return. Workers need the same paths as the
client: the input and the output's folder on shared storage.

Faults: a worker that dies mid-task is Dask's to handle -- the scheduler runs its tasks again
on another worker, and since a task writes one whole chunk object, the rerun's bytes are the
same. A scheduler that cannot be reached is one :class:`~lstmshape.errors.EngineError` after
:data:`CONNECT_TIMEOUT_S`. Any failure or signal cancels the tasks not yet run; the job then
removes the temp directory.

dask and distributed are imported only here, and only when ``--engine dask`` is asked for.

Example (not run by the doctests: it starts worker processes)::

    with DaskEngine(workers=2) as engine:
        pad_file("big.npz", IOOptions("big.zarr", engine=engine), maxlen="p95")
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from .errors import EngineError
from .io.threads import call_blocked
from .plan import ProgressCallback

T = TypeVar("T")

INSTALL_HINT = "pip install 'lstmshape[dask]'"
#: How long to wait for a scheduler before saying it cannot be reached
CONNECT_TIMEOUT_S = 10


class DaskEngine:
    """A Dask client: to the scheduler at ``scheduler``, or to a local cluster of ``workers``
    worker processes (one thread each) that lives as long as the engine."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None) -> None:
        if (scheduler is None) == (workers is None):
            raise ValueError("give exactly one of scheduler (an address) or workers (a count)")
        self.scheduler = scheduler
        self.workers = workers
        self.client: Any = None
        self.cluster: Any = None

    def __enter__(self) -> DaskEngine:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise EngineError(f"--engine dask needs dask.distributed: {INSTALL_HINT}") from None
        if self.scheduler is not None:
            scheduler = self.scheduler
            try:  # from a thread that blocks SIGINT/SIGTERM/SIGHUP: so do the client's threads
                self.client = call_blocked(lambda: Client(
                    scheduler, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False),
                    "lstmshape-dask-connect")
            except (OSError, TimeoutError, ValueError) as err:
                raise EngineError(f"cannot reach the Dask scheduler at {self.scheduler} "
                                  f"within {CONNECT_TIMEOUT_S} s ({type(err).__name__}); start "
                                  f"one with 'dask scheduler', or use --workers N") from None
            return self
        # (started here, not by call_blocked: its loop thread spawns the worker processes,
        # which would inherit a mask that blocks SIGTERM and SIGINT; the client shares that loop)
        # processes=True: chunk tasks are numpy and file I/O; one thread per worker keeps a
        # worker's memory to one chunk task at a time
        # (":0": the scheduler's HTTP server on a free port, never a clash on 8787)
        self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                    processes=True, dashboard_address=":0",
                                    silence_logs=logging.ERROR)
        self.client = Client(self.cluster, set_as_default=False)
        # New worker processes import zarr, h5py and lstmshape (~0.5 s) while the client opens
        # and hashes the input, not when the first chunk task arrives
        self.client.run(warm_up, wait=False)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    @property
    def worker_count(self) -> int:
        """Workers connected now."""
        return len(self.client.scheduler_info(n_workers=-1)["workers"]) if self.client else 0

    def run(self, tasks: Sequence[Callable[[], T]],
            progress: ProgressCallback | None) -> list[T]:
        """Run every task; the listings in task order. Progress is reported as tasks complete.

        On any error or signal the tasks not yet run are cancelled before it propagates; a
        local cluster is closed too, so none of its workers writes into a store that the job
        is about to remove.
        """
        from distributed import as_completed

        if not tasks:
            return []
        run = uuid.uuid4().hex  # keys unique to this run on a long-lived scheduler
        futures: list[Any] = []
        try:  # the first tasks run while the rest are submitted: a signal may land here too
            futures += (self.client.submit(task, key=f"lstmshape-{run}-{index}", pure=False)
                        for index, task in enumerate(tasks))
            with self.client.as_current():  # as_completed finds this engine's client
                for done, future in enumerate(as_completed(futures), start=1):
                    if future.status == "error":
                        future.result()  # raises the task's own error (InputError, OSError)
                    if progress is not None:
                        progress(done, len(futures))
            return list(self.client.gather(futures))
        except BaseException:
            self.client.cancel(futures, force=True)
            if self.cluster is not None:
                self.close()
            raise


async def warm_up() -> None:
    """Import what chunk tasks need, on a worker (a coroutine: ``Client.run`` can start it
    without waiting for it; the imports block that worker's event loop for their ~0.5 s)."""
    import h5py  # noqa: F401

    from .io import source, zarr_store  # noqa: F401

    zarr_store.import_zarr()
