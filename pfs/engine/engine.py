"""The worker pool and the submit loop that feeds it under the memory governor.

The pool (pfs.engine.pool) is a concurrent.futures.ProcessPoolExecutor on the
forkserver start method, created on first use: a command that needs no worker
never imports multiprocessing. Unlike a bare multiprocessing.Pool it notices a
worker that dies: every task in flight fails with BrokenProcessPool (a
BrokenExecutor) instead of hanging, and the engine then builds a fresh pool for
the next task.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from pfs.errors import Cancelled, PfsError, WorkerError
from pfs.engine.governor import MemoryGovernor
from pfs.registry import fsync_file

if TYPE_CHECKING:
    from pfs.engine.pool import Pool


#: Threads that fsync written parts (I/O bound: they wait on the disk, not the CPU).
SYNC_THREADS = 4
#: Workers per CPU at most: a worker is CPU bound (hash, compress) with some I/O waits.
WORKERS_PER_CPU = 2
#: Seconds close() lets busy workers finish their part before it kills them.
CLOSE_GRACE = 1.0


def worker_count(requested: int, max_memory: int, part_memory: int) -> int:
    """How many workers can be useful: no more than the memory limit keeps busy
    (each costs a whole interpreter outside the limit), nor than a few per CPU."""
    return max(1, min(requested, max_memory // part_memory, WORKERS_PER_CPU * (os.cpu_count() or 1)))


class _Tally:
    """The tasks of one run whose done-callbacks have not finished yet, and the first failure.

    concurrent.futures wakes wait() before it runs a future's callbacks, so a
    run must count its callbacks itself to know that every one has finished."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = 0
        self.error: BaseException | None = None

    def add(self) -> None:
        with self._cond:
            self._pending += 1

    def finish(self, error: BaseException | None) -> None:
        with self._cond:
            self._pending -= 1
            if error is not None and self.error is None:
                self.error = error
            self._cond.notify_all()

    def wait(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending == 0)


class Engine:
    """Runs worker functions in a shared pool with bounded bytes in flight."""

    def __init__(self, workers: int, governor: MemoryGovernor, preload: tuple[str, ...] = ()) -> None:
        self.workers = workers
        self.governor = governor
        self.preload = preload  # modules the workers import before their first task (a volume's backend)
        self._pool: Pool | None = None
        self._syncer: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # held only to read or swap _pool and _syncer, never across a wait
        self._starting = threading.Lock()  # one pool starts at a time
        self._closed = False

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, grace: float = CLOSE_GRACE) -> None:
        """Stop the pool and the fsync threads, from any thread, while jobs run.
        Never holds the lock while it waits (the pool's callbacks take it), and
        never waits more than about `grace` seconds: tasks not started are
        cancelled, and a worker still busy after that is killed."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            syncer, self._syncer = self._syncer, None
        if syncer is not None:  # queued fsyncs still run: a future cancelled by shutdown never wakes wait()
            syncer.shutdown(wait=False)
        if pool is not None:
            pool.stop(grace)

    def _check_open(self) -> None:
        if self._closed:
            raise PfsError("pfs is shutting down")

    def fsync_soon(self, path: str) -> Future:
        """fsync a file from a small thread pool. Workers hand each written part
        here, so the disk flushes parts while later ones are still being
        compressed: a deep write queue overlapping the CPU work, instead of one
        flush per part inside the worker."""
        return self.sync_soon(fsync_file, path)

    def sync_soon(self, flush: Callable, *args) -> Future:
        """Run `flush(*args)` (an fsync, a volume's flush) in the fsync threads."""
        with self._lock:
            self._check_open()
            if self._syncer is None:
                self._syncer = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="pfs-fsync")
            syncer = self._syncer
        try:
            return syncer.submit(flush, *args)
        except RuntimeError as exc:  # shut down meanwhile, or no thread could start
            raise PfsError(f"cannot flush {args[0] if args else ''}: {exc}") from exc

    def _current_pool(self) -> Pool:
        with self._starting:
            with self._lock:
                self._check_open()
                if self._pool is not None:
                    return self._pool
            from pfs.engine.pool import Pool  # multiprocessing, imported with the first pool

            pool = Pool(self.workers, self.preload)
            with self._lock:
                if not self._closed:
                    self._pool = pool
                    return pool
            pool.stop(0)
            raise PfsError("pfs is shutting down")

    def _submit(self, fn: Callable, args: tuple) -> Future:
        for _ in range(2):
            pool = self._current_pool()
            try:
                return pool.submit(fn, args)
            except BrokenExecutor:
                with self._lock:  # replace the broken pool once, whoever sees it first
                    if self._pool is pool:
                        self._pool = None
                pool.stop(0)
            except RuntimeError as exc:  # the pool was shut down meanwhile
                self._check_open()
                raise WorkerError(f"the worker pool cannot take work: {exc}") from exc
        raise WorkerError("the worker pool cannot be started")

    def run(self, fn: Callable, tasks: Iterable[tuple[int, tuple]],
            on_result: Callable[[int, object], None] | None = None,
            cancel: threading.Event | None = None) -> list:
        """Run fn(*args) for each (nbytes, args) task; return results in order.

        A task's nbytes are reserved from the governor before it is submitted
        and released when it finishes. The first failure (of a task or of
        on_result) or `cancel` stops submission; the tasks already in flight are
        waited for, callbacks included (so none writes after the caller cleans
        up), and the failure is raised.
        """
        futures: list[Future] = []
        tally = _Tally()

        def finished(index: int, nbytes: int, fut: Future) -> None:
            error = None
            try:
                self.governor.release(nbytes)
                if fut.cancelled():
                    error = PfsError("pfs is shutting down")
                elif fut.exception() is not None:
                    error = fut.exception()
                elif on_result is not None:
                    on_result(index, fut.result())
            except BaseException as exc:  # never lost: run raises it
                error = exc
            finally:
                tally.finish(error)

        try:
            for index, (nbytes, args) in enumerate(tasks):
                if tally.error is not None:
                    break
                if cancel is not None and cancel.is_set():
                    raise Cancelled("cancelled")
                self.governor.acquire(nbytes, cancel)
                try:
                    fut = self._submit(fn, args)
                except BaseException:
                    self.governor.release(nbytes)
                    raise
                tally.add()
                futures.append(fut)
                fut.add_done_callback(lambda f, i=index, n=nbytes: finished(i, n, f))
        finally:
            tally.wait()
        if isinstance(tally.error, BrokenExecutor):
            raise WorkerError("a worker process died",
                              "the operation was rolled back; try it again") from tally.error
        if tally.error is not None:
            raise tally.error
        return [f.result() for f in futures]


def run_here(fn: Callable, tasks: Iterable[tuple[int, tuple]],
             on_result: Callable[[int, object], None] | None = None,
             cancel: threading.Event | None = None) -> list:
    """Engine.run's contract, in the calling thread: for work smaller than the
    trip to a worker and back (a small file's one part), so outside the
    governor, whose unit is a part in the pool."""
    results = []
    for index, (_, args) in enumerate(tasks):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        results.append(fn(*args))
        if on_result is not None:
            on_result(index, results[-1])
    return results
