"""The worker pool and the submit loop that feeds it under the memory governor.

The pool is a concurrent.futures.ProcessPoolExecutor on the forkserver start
method (never fork from a threaded process), created on first use. Unlike a
bare multiprocessing.Pool it notices a worker that dies: every task in flight
fails with BrokenProcessPool instead of hanging, and the engine then builds a
fresh pool for the next task.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from pfs.errors import WorkerError
from pfs.governor import MemoryGovernor
from pfs.registry import fsync_file
from pfs.worker import init_worker


#: Threads that fsync written parts (I/O bound: they wait on the disk, not the CPU).
SYNC_THREADS = 4


class Engine:
    """Runs worker functions in a shared pool with bounded bytes in flight."""

    def __init__(self, workers: int, governor: MemoryGovernor) -> None:
        self.workers = workers
        self.governor = governor
        self._pool: ProcessPoolExecutor | None = None
        self._syncer: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            if self._syncer is not None:
                self._syncer.shutdown(wait=True)
                self._syncer = None

    def fsync_soon(self, path: str) -> Future:
        """fsync a file from a small thread pool. Workers hand each written part
        here, so the disk flushes parts while later ones are still being
        compressed: a deep write queue overlapping the CPU work, instead of one
        flush per part inside the worker."""
        with self._lock:
            if self._syncer is None:
                self._syncer = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="pfs-fsync")
            return self._syncer.submit(fsync_file, path)

    def _submit(self, fn: Callable, args: tuple) -> Future:
        for _ in range(2):
            with self._lock:
                if self._pool is None:
                    ctx = multiprocessing.get_context("forkserver")
                    ctx.set_forkserver_preload(["pfs.worker"])
                    self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                                     initializer=init_worker, initargs=(os.getpid(),))
                pool = self._pool
            try:
                return pool.submit(fn, *args)
            except BrokenProcessPool:
                with self._lock:  # replace the broken pool once, whoever sees it first
                    if self._pool is pool:
                        self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
        raise WorkerError("the worker pool cannot be started")

    def run(self, fn: Callable, tasks: Iterable[tuple[int, tuple]],
            on_result: Callable[[int, object], None] | None = None) -> list:
        """Run fn(*args) for each (nbytes, args) task; return results in order.

        A task's nbytes are reserved from the governor before it is submitted
        and released when it finishes. The first failure stops submission; the
        tasks already in flight are waited for (so none writes after the
        caller cleans up) and the failure is raised.
        """
        futures: list[Future] = []
        failed = threading.Event()

        def finished(index: int, nbytes: int, fut: Future) -> None:
            self.governor.release(nbytes)
            if fut.cancelled() or fut.exception() is not None:
                failed.set()
            elif on_result is not None:
                on_result(index, fut.result())

        try:
            for index, (nbytes, args) in enumerate(tasks):
                if failed.is_set():
                    break
                self.governor.acquire(nbytes)
                try:
                    fut = self._submit(fn, args)
                except BaseException:
                    self.governor.release(nbytes)
                    raise
                fut.add_done_callback(lambda f, i=index, n=nbytes: finished(i, n, f))
                futures.append(fut)
        finally:
            wait(futures)
        try:
            return [f.result() for f in futures]
        except BrokenProcessPool as exc:
            raise WorkerError("a worker process died", "the operation was rolled back; try it again") from exc
