"""Streaming writes: a stored file written as it comes, in bounded memory.

Each part, once full, is written to a spool file in STORE/tmp/ and handed to
the same worker pool, under the same memory governor, as a put: workers read
the spool file like a put's source (so no part's bytes cross a pipe) and place
its copies or shards on the volumes like a put's. The
spool holds at most the parts the governor lets into the pool, one per worker
queued, the one the feeder holds while it waits for the governor, and the one
being written (the writer blocks until the pool catches up).
The file is stored, and its name resolves to it, only when the writer is
closed (or committed) with no error; an abandoned or failed writer leaves
nothing, and a crash is rolled back at the next open like an interrupted put.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace

from pfs.errors import PfsError, describe
from pfs.registry import FileEntry
from pfs.store.facade import Store
from pfs.store.feeding import PartFeeder


def spool_path(store: Store, entry: FileEntry, index: int) -> str:
    """Where part `index` of a file being written waits for the pool: named as
    the temporaries of atomic writes are (`.NAME.PID.THREAD.tmp`), so that an
    open after a kill -9 of this process removes what it left there."""
    return str(store.tmp / f".{entry.uuid}-{index}.{os.getpid()}.spool.tmp")


def _unspool(store: Store, entry: FileEntry, index: int) -> None:
    os.unlink(spool_path(store, entry, index))


class Writer(io.RawIOBase):
    """A new stored file opened for writing (write only, no seeking back).
    close() stores it, unless an exception raised since the writer was opened
    is on its way out: however the writer is wrapped (a TextIOWrapper, fsspec's
    text mode or fsspec.open, a try/finally), a write that fails is abandoned,
    as is a writer dropped unclosed. With `autocommit` off (fsspec transactions)
    close() only finishes storing the parts, whatever exception is on its way:
    as with fsspec's own files, the transaction decides, by commit() (the file
    is stored with what was written) or discard(). Its calls may come from
    several threads: each write() lands whole, one after another, as on a file
    opened for appending."""

    def __init__(self, store: Store, name: str, keep: bool = False, autocommit: bool = True) -> None:
        super().__init__()
        self._lock = threading.RLock()  # the buffer, the part counter and the size change together
        self._store, self._keep, self.autocommit = store, keep, autocommit
        self._handled = sys.exc_info()[1]  # an exception handled around the writing is no failure of it
        self._entry = store.begin_write(name)
        self.id, self.name = self._entry.id, self._entry.name
        self._chunk = self._entry.chunk_size
        self._buffer = bytearray()
        self._parts = 0
        self._size = 0
        try:
            # the spool file unlinked once stored (by a function that holds no reference to the writer)
            self._feeder = PartFeeder(store, self._entry, functools.partial(_unspool, store, self._entry))
        except BaseException:  # no thread to feed the pool: nothing of the file stays
            store.abandon(self._entry)
            super().close()
            raise
        self._written: tuple[FileEntry, list, list] | None = None  # closed, not yet committed
        self.stored: FileEntry | None = None

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size

    def write(self, data) -> int:
        with self._lock, memoryview(data) as view:
            self._checkClosed()
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

    def _spool_part(self) -> None:
        """Hand the full buffer to the pool, through a spool file."""
        index = self._parts
        self._entry = self._store.reserve(self._entry, index + 1)
        path = spool_path(self._store, self._entry, index)
        with open(path, "wb") as f:
            f.write(self._buffer)
        self._buffer.clear()
        self._parts += 1
        self._feeder.put((index, path, 0, os.path.getsize(path)))

    def close(self) -> None:
        """Store the file (see the class), or abandon it if the writing failed."""
        with self._lock:
            if self.closed:
                return
            failing = sys.exc_info()[1]
            if failing is not None and failing is not self._handled and self.autocommit:
                self.discard()
            else:
                self._finish()

    def _finish(self) -> None:
        """Store the last part, wait for the pool, and commit unless told not to."""
        try:
            with self._abandoned_if_failing():
                if self._buffer:
                    self._spool_part()
                results, lost = self._feeder.stored()
                self._written = replace(self._entry, size=self._size, parts=self._parts), results, lost
        finally:
            super().close()
        if self.autocommit:
            self.commit()

    def commit(self) -> None:
        """Make the closed file stored: its name now resolves to it."""
        with self._lock:
            if self._written is None:
                raise ValueError("only a closed writer that was not discarded can be committed")
            entry, results, lost = self._written
            try:
                with self._abandoned_if_failing():
                    self.stored = self._store.publish(entry, results, self._keep, lost)
            finally:
                self._written = None

    def discard(self) -> None:
        """Abandon the file: nothing of it stays in the store."""
        with self._lock:
            if self.closed and self._written is None:
                return
            try:
                self._abandon()
            finally:
                self._written = None
                super().close()

    @contextlib.contextmanager
    def _abandoned_if_failing(self) -> Iterator[None]:
        """Abandon the file if the block fails; an OSError as pfs's one-line error."""
        try:
            yield
        except BaseException as exc:
            self._abandon()
            if isinstance(exc, OSError):
                raise PfsError(f"cannot store {self.name}: {describe(exc)}") from exc
            raise

    def _abandon(self) -> None:
        self._feeder.cancel.set()
        self._feeder.finish()
        for index in range(self._parts):
            try:
                os.unlink(spool_path(self._store, self._entry, index))
            except FileNotFoundError:
                pass
        self._store.abandon(self._entry)

    def __exit__(self, kind, *rest) -> None:
        if kind is not None and self.autocommit:
            self.discard()
        else:
            with self._lock:
                if not self.closed:
                    self._finish()  # the block ended well, or its transaction decides (as fsspec's files do)

    def __del__(self) -> None:
        if not getattr(self, "closed", True) or getattr(self, "_written", None) is not None:
            try:
                self.discard()
            except Exception:  # at interpreter exit the store may be gone; the next open rolls it back
                pass

