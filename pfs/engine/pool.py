"""The worker pool: a concurrent.futures.ProcessPoolExecutor on the forkserver
start method (never fork from a threaded process) whose workers all run, and
whose semaphore names are gone. Imported only by the engine as it starts a
pool, and by a one-shot command that starts the forkserver early (see
pfs.cli.main): multiprocessing costs a command that needs no worker (list, info,
help) a tenth of its start-up.

The pool's queues share POSIX semaphores with the workers by name
(/dev/shm/sem.mp-*). Left alone, those names live until the resource tracker
unlinks them at exit, so a kill -9 of pfs and its process group leaks them and
a kill -9 of pfs alone makes the tracker warn on the terminal. So the pool
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
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from multiprocessing import forkserver, popen_forkserver, spawn
from multiprocessing.connection import wait as wait_ready
from multiprocessing.context import ForkServerContext, ForkServerProcess
from multiprocessing.util import Finalize

from pfs.errors import WorkerError

#: Seconds every worker of a new pool has to start.
START_TIMEOUT = 30.0
#: What the forkserver imports once, before it forks any worker: the workers'
#: functions, and what a worker needs to take its first task (the executor's
#: loop, its queues and their locks), which each worker imported again otherwise.
PRELOAD = ("concurrent.futures.process", "multiprocessing.synchronize", "pfs.engine.worker", "pfs.engine.packing")


def start_forkserver(preload: tuple[str, ...] = ()) -> None:
    """Start the forkserver now, importing PRELOAD and `preload`, without waiting
    for it: the pools started later fork their workers from it. (This module
    imports pfs.engine.worker only when a pool starts, so that pfs can start the
    forkserver before it imports the store.)"""
    forkserver.set_forkserver_preload([*PRELOAD, *preload])
    forkserver.ensure_running()


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
        return self._keep(_WorkerProcess(*args, **kwargs), self.processes)

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


class _WorkerProcess(ForkServerProcess):
    """A worker, started without the caller's __main__ (see _WorkerPopen)."""

    @staticmethod
    def _Popen(process_obj):
        return _WorkerPopen(process_obj)


#: Held while a worker is launched: one launch at a time changes what spawn prepares.
_launching = threading.Lock()


class _WorkerPopen(popen_forkserver.Popen):
    """multiprocessing runs a script's top level again in every process it
    starts (to find what the script defined in __main__), so a script calling
    pfs.open() without an `if __name__ == "__main__":` guard opened the store
    again in each worker, and the pool failed to start. pfs's workers run only
    pfs's functions: they are started without the caller's __main__."""

    def _launch(self, process_obj) -> None:
        with _launching:
            prepare = spawn.get_preparation_data
            spawn.get_preparation_data = lambda name: {key: value for key, value in prepare(name).items()
                                                       if not key.startswith("init_main_from_")}
            try:
                super()._launch(process_obj)
            finally:
                spawn.get_preparation_data = prepare


class Pool:
    """A ProcessPoolExecutor whose workers all run, and whose semaphore names are gone."""

    def __init__(self, workers: int, preload: tuple[str, ...] = ()) -> None:
        from pfs.crypto import keyring
        from pfs.engine import worker

        self.context = _Context()
        self.context.set_forkserver_preload([*PRELOAD, *preload])
        self.executor = ProcessPoolExecutor(workers, mp_context=self.context, initializer=worker.init_worker,
                                            initargs=(os.getpid(), keyring.handover()))
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
        from pfs.engine import worker

        advice = "the system may be out of processes, open files or memory; try fewer --workers"
        with tempfile.TemporaryDirectory(prefix="pfs-start-") as folder:
            try:
                started = [self.executor.submit(worker.meet, folder, workers, START_TIMEOUT) for _ in range(workers)]
            except OSError as exc:
                raise WorkerError(f"the worker pool cannot be started: {exc.strerror or exc}", advice) from exc
            deadline = time.monotonic() + START_TIMEOUT + 5
            while (late := wait(started, 0.1).not_done) and time.monotonic() < deadline:
                if not self._manager_alive():  # it died starting a thread or a process: nothing will come
                    break
            if late or any(f.exception() is not None for f in started):
                raise WorkerError("the worker pool cannot be started", advice)

    def _manager_alive(self) -> bool:
        """Whether the executor's manager thread (which starts the workers and
        hands them tasks) still runs; a limit on threads can kill it at birth."""
        manager = getattr(self.executor, "_executor_manager_thread", None)
        return manager is None or manager.is_alive()

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
