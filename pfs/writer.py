"""Streaming writes: a stored file written as it comes, in bounded memory.

Each part, once full, is written to a spool file in STORE/tmp/ and handed to
the same worker pool, under the same memory governor, as a put: workers read
the spool file like a put's source, so no part's bytes cross a pipe. At most
a few parts wait in the spool (the writer blocks until the pool catches up).
The file is stored, and its name resolves to it, only when the writer is
closed; an abandoned writer leaves nothing, and a crash is rolled back at the
next open like an interrupted put.
"""

from __future__ import annotations

import io
import os
import queue
import threading
from dataclasses import replace
from concurrent.futures import Future, wait

from pfs import worker
from pfs.errors import PfsError
from pfs.registry import FileEntry
from pfs.store import Store, describe, part_memory

#: How long a blocked writer waits between looks at whether the pool gave up.
_POLL = 0.1


class Writer(io.RawIOBase):
    """A new stored file opened for writing (write only, no seeking back).
    close() stores it; leaving a `with` block by an exception, or dropping the
    writer unclosed, abandons it."""

    def __init__(self, store: Store, name: str, keep: bool = False) -> None:
        super().__init__()
        self._store, self._keep = store, keep
        self._entry = store.begin_write(name)
        self.name = self._entry.name
        self._chunk = self._entry.chunk_size
        self._buffer = bytearray()
        self._parts = 0
        self._size = 0
        self._spool: queue.Queue = queue.Queue(maxsize=max(1, store.workers))
        self._syncs: list[Future] = []
        self._results: list = []
        self._error: BaseException | None = None
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._pool_feeder = threading.Thread(target=self._store_parts, name="pfs-writer", daemon=True)
        self._pool_feeder.start()
        self.stored: FileEntry | None = None

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size

    def write(self, data) -> int:
        self._checkClosed()
        with memoryview(data) as view:
            view = view.cast("B")
            n = len(view)
            while view:
                take = self._chunk - len(self._buffer)
                self._buffer += view[:take]
                view = view[take:]
                if len(self._buffer) == self._chunk:
                    self._spool_part()
        self._size += n
        return n

    def _spool_path(self, index: int) -> str:
        return str(self._store.tmp / f"{self._entry.uuid}.{index}")

    def _spool_part(self) -> None:
        """Hand the full buffer to the pool, through a spool file."""
        index = self._parts
        self._entry = self._store.reserve(self._entry, index + 1)
        path = self._spool_path(index)
        with open(path, "wb") as f:
            f.write(self._buffer)
        item = (index, path, len(self._buffer))
        self._buffer.clear()
        self._parts += 1
        while True:
            if self._done.is_set():
                raise self._failure()
            try:
                self._spool.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def _failure(self) -> BaseException:
        return self._error or PfsError(f"cannot store {self.name}: the writer stopped")

    def _store_parts(self) -> None:
        """Feed spooled parts to the pool until the writer closes (thread)."""
        entry = self._entry

        def tasks():
            while (item := self._spool.get()) is not None:
                index, path, size = item
                yield part_memory(size), (path, 0, size, self._store.part_file(entry, index), entry.codec, entry.hash)

        def written(index: int, _) -> None:
            os.unlink(self._spool_path(index))
            self._syncs.append(self._store.engine.fsync_soon(self._store.part_file(entry, index)))

        try:
            self._results = self._store.engine.run(worker.store_part, tasks(), written, self._cancel)
        except BaseException as exc:
            self._error = exc
        finally:
            self._done.set()

    def close(self) -> None:
        """Store the file: the last part, then its record; its name now resolves to it."""
        if self.closed:
            return
        try:
            if self._buffer:
                self._spool_part()
            self._finish_feeding()
            if self._error is not None:
                raise self._failure()
            wait(self._syncs)
            for f in self._syncs:
                f.result()
            final = replace(self._entry, size=self._size, parts=self._parts)
            self.stored = self._store.publish(final, self._results, self._keep)
        except BaseException as exc:
            self._abandon()
            if isinstance(exc, OSError):
                raise PfsError(f"cannot store {self.name}: {describe(exc)}") from exc
            raise
        finally:
            super().close()

    def _finish_feeding(self) -> None:
        while not self._done.is_set():
            try:
                self._spool.put(None, timeout=_POLL)
                break
            except queue.Full:
                continue
        self._pool_feeder.join()

    def discard(self) -> None:
        """Abandon the file: nothing of it stays in the store."""
        if not self.closed:
            self._abandon()
            super().close()

    def _abandon(self) -> None:
        self._cancel.set()
        self._finish_feeding()
        wait(self._syncs)
        for index in range(self._parts):
            try:
                os.unlink(self._spool_path(index))
            except FileNotFoundError:
                pass
        self._store.abandon(self._entry)

    def __exit__(self, kind, *rest) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()

    def __del__(self) -> None:
        if not getattr(self, "closed", True):
            try:
                self.discard()
            except Exception:  # at interpreter exit the store may be gone; the next open rolls it back
                pass
