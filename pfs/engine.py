"""The worker pool and the submit loop that feeds it under the memory governor.

The pool is a concurrent.futures.ProcessPoolExecutor on the forkserver start
method (never fork from a threaded process), created on first use. Unlike a
bare multiprocessing.Pool it notices a worker that dies: every task in flight
fails with BrokenProcessPool instead of hanging, and the engine then builds a
fresh pool for the next task.

The pool's queues share POSIX semaphores with the workers by name
(/dev/shm/sem.mp-*). Left alone, those names live until the resource tracker
unlinks them at exit, so a kill -9 of pfs and its process group leaks them and
a kill -9 of pfs alone makes the tracker warn on the terminal. So the engine
starts every worker at once and unlinks the names as soon as all of them hold
the semaphores open.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as wait_ready
from multiprocessing.context import ForkServerContext
from multiprocessing.util import Finalize

from pfs import worker
from pfs.errors import Cancelled, PfsError, WorkerError
from pfs.governor import MemoryGovernor
from pfs.registry import fsync_file


#: Threads that fsync written parts (I/O bound: they wait on the disk, not the CPU).
SYNC_THREADS = 4
#: Workers per CPU at most: a worker is CPU bound (hash, compress) with some I/O waits.
WORKERS_PER_CPU = 2
#: Seconds every worker of a new pool has to start.
START_TIMEOUT = 30.0
#: Seconds close() lets busy workers finish their part before it kills them.
CLOSE_GRACE = 1.0


def worker_count(requested: int, max_memory: int, part_memory: int) -> int:
    """How many workers can be useful: no more than the memory limit keeps busy
    (each costs a whole interpreter outside the limit), nor than a few per CPU."""
    return max(1, min(requested, max_memory // part_memory, WORKERS_PER_CPU * (os.cpu_count() or 1)))


class _Context(ForkServerContext):
    """The forkserver context, remembering the semaphores and processes it makes."""

    def __init__(self) -> None:
        self.semaphores: list = []
        self.processes: list = []

    def Lock(self):
        return self._keep(super().Lock())

    def RLock(self):
        return self._keep(super().RLock())

    def Semaphore(self, value: int = 1):
        return self._keep(super().Semaphore(value))

    def BoundedSemaphore(self, value: int = 1):
        return self._keep(super().BoundedSemaphore(value))

    def Process(self, *args, **kwargs):
        return self._keep(ForkServerContext.Process(*args, **kwargs), self.processes)

    def _keep(self, obj, into: list | None = None):
        (self.semaphores if into is None else into).append(obj)
        return obj

    def unlink_semaphores(self) -> None:
        """Run each semaphore's own clean-up now (unlink its name, tell the resource
        tracker) instead of at exit: once every worker has it open, the name is not needed."""
        for sem in self.semaphores:
            for ref in weakref.getweakrefs(sem):
                if isinstance(ref.__callback__, Finalize):
                    ref.__callback__()


class _Pool:
    """A ProcessPoolExecutor whose workers all run, and whose semaphore names are gone."""

    def __init__(self, workers: int, preload: tuple[str, ...] = ()) -> None:
        self.context = _Context()
        self.context.set_forkserver_preload(["pfs.worker", *preload])
        self.executor = ProcessPoolExecutor(workers, mp_context=self.context, initializer=worker.init_worker,
                                            initargs=(os.getpid(),))
        try:
            self._start_all(workers)
        except BaseException:
            self.stop(0)
            raise
        finally:
            self.context.unlink_semaphores()

    def _start_all(self, workers: int) -> None:
        """Start every worker now: each of `workers` tasks blocks until all have
        started, so no task finishes early and lets the executor reuse a worker."""
        advice = "the system may be out of processes, open files or memory; try fewer --workers"
        with tempfile.TemporaryDirectory(prefix="pfs-start-") as folder:
            try:
                started = [self.executor.submit(worker.meet, folder, workers, START_TIMEOUT) for _ in range(workers)]
            except OSError as exc:
                raise WorkerError(f"the worker pool cannot be started: {exc.strerror or exc}", advice) from exc
            done, late = wait(started, START_TIMEOUT + 5)
            if late or any(f.exception() is not None for f in done):
                raise WorkerError("the worker pool cannot be started", advice)

    def submit(self, fn: Callable, args: tuple) -> Future:
        return self.executor.submit(fn, *args)

    def stop(self, grace: float) -> None:
        """Shut the pool down, cancelling queued tasks; workers still busy after
        `grace` seconds (a part that never ends, a stopped process) are killed."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        running = {p.sentinel: p.pid for p in self.context.processes if p.pid is not None}
        deadline = time.monotonic() + grace
        while running and (left := deadline - time.monotonic()) > 0:
            for sentinel in wait_ready(list(running), left):
                del running[sentinel]
        for pid in running.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Wait for the executor's manager thread to close its wake-up pipe: Python 3.11's
        # exit hook writes to that pipe without a lock, and a pipe closed under the write
        # printed "Exception ignored ... Bad file descriptor" as pfs ended.
        manager = getattr(self.executor, "_executor_manager_thread", None)
        if manager is not None and manager is not threading.current_thread():
            manager.join(max(grace, 1.0))


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
        self._pool: _Pool | None = None
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

    def _current_pool(self) -> _Pool:
        with self._starting:
            with self._lock:
                self._check_open()
                if self._pool is not None:
                    return self._pool
            pool = _Pool(self.workers, self.preload)
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
            except BrokenProcessPool:
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
        if isinstance(tally.error, BrokenProcessPool):
            raise WorkerError("a worker process died",
                              "the operation was rolled back; try it again") from tally.error
        if tally.error is not None:
            raise tally.error
        return [f.result() for f in futures]
