"""Parts fed to the worker pool as they become ready: what a file written as a
stream (the Python API's Writer, a file written through the mount) stores
while its writer is still writing."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait

from pfs import threads
from pfs.engine import worker
from pfs.errors import PfsError
from pfs.registry import FileEntry
from pfs.store.putting import volume_failures

#: How long a blocked writer waits between looks at whether the pool gave up.
_POLL = 0.1

#: A part ready to be stored: its index, and the path, offset and size of its bytes.
Ready = tuple[int, str, int, int]


class PartFeeder:
    """Feeds ready parts of `entry` to the pool from its own thread until told to
    finish; `written(index)` runs once a part's pieces are written. It holds no
    reference to what feeds it, so a writer dropped unclosed is collected (and
    abandoned) while the thread still waits for parts. Parts queued but not yet
    in the pool are at most one per worker: a writer ahead of the pool waits."""

    def __init__(self, store, entry: FileEntry, written: Callable[[int], None] = lambda index: None) -> None:
        self._store, self._entry, self._written = store, entry, written
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, store.workers))
        self.results: list = []
        self.syncs: list[Future] = []
        self.error: BaseException | None = None
        self.cancel = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pfs-writer", daemon=True)
        threads.start(self._thread, f"the writer of {entry.name}")

    def put(self, ready: Ready | None) -> None:
        """Queue a ready part (None: no more), waiting while the queue is full;
        raises the pool's failure if it gave up."""
        while not self._done.is_set():
            try:
                self._queue.put(ready, timeout=_POLL)
                return
            except queue.Full:
                continue
        if ready is not None:
            raise self.error or PfsError(f"cannot store {self._entry.name}: the writer stopped")

    def finish(self) -> None:
        """Wait until every queued part is stored (or the pool gave up)."""
        self.put(None)
        self._thread.join()
        wait(self.syncs)

    def stored(self) -> tuple[list, list]:
        """Wait for every queued part: (each part's result, the failures of volumes
        whose flush failed), or the pool's failure raised."""
        self.finish()
        if self.error is not None:
            raise self.error
        return self.results, volume_failures(self.syncs)

    def _run(self) -> None:
        store, entry = self._store, self._entry
        task = store.part_tasks(entry)

        def tasks():
            while (ready := self._queue.get()) is not None:
                yield task(*ready)

        def written(index: int, result) -> None:
            self._written(index)
            self.syncs.extend(store.flush_part(entry, index, result))

        try:
            self.results = store.engine.run(worker.store_part, tasks(), written, self.cancel)
        except BaseException as exc:
            self.error = exc
        finally:
            self._done.set()
