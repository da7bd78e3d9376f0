"""A new file written sequentially through the mount is stored as it is
written: each chunk of the staged file, once the writes have gone a chunk
past it, goes to the worker pool (which reads it from the staged file like a
put's source), so that close has only the last parts left to store. A write
into a chunk already handed over, a truncate below one, or a rename ends the
streaming (what it stored is abandoned) and the file is stored whole at close,
as any other."""

from __future__ import annotations

from dataclasses import replace

from pfs.errors import PfsError, describe
from pfs.registry import FileEntry
from pfs.store.facade import Store
from pfs.store.feeding import PartFeeder


class Streaming:
    """The parts of one staged file (at `path`) handed to the pool so far, under
    the `storing` record begin_write made for `name`. Callers hold the staged
    file's lock."""

    def __init__(self, store: Store, name: str, path: str) -> None:
        self._store, self._path = store, path
        self.entry = store.begin_write(name)
        self._chunk = self.entry.chunk_size
        self.handed = 0  # parts handed to the pool: the bytes below handed * chunk must not change
        try:
            self._feeder = PartFeeder(store, self.entry)
        except BaseException:
            store.abandon(self.entry)
            raise

    @staticmethod
    def starts(store: Store, written: int) -> bool:
        """Whether a fresh staged file whose first `written` bytes are written is worth
        streaming: writes have gone a chunk past its first (a small file is stored whole at close)."""
        return written >= 2 * store.settings.chunk_size

    def changes(self, offset: int) -> bool:
        """Whether bytes from `offset` on may change and the streaming still hold."""
        return offset >= self.handed * self._chunk

    def wrote(self, written: int) -> None:
        """The staged file's first `written` bytes are written: hand over every chunk
        they have gone a chunk past (writes a little out of order still land before)."""
        while written >= (self.handed + 2) * self._chunk:
            self._hand(self._chunk)

    def _hand(self, size: int) -> None:
        index = self.handed
        self.entry = self._store.reserve(self.entry, index + 1)
        self._feeder.put((index, self._path, index * self._chunk, size))
        self.handed += 1

    def finish(self, size: int, fields: dict) -> FileEntry:
        """Hand over the rest, wait for the pool, and store the file (its record with
        `fields` set: the mount's mode, owner and times) under its name; abandoned
        if that fails."""
        try:
            while self.handed * self._chunk < size:
                self._hand(min(self._chunk, size - self.handed * self._chunk))
            results, lost = self._feeder.stored()
            return self._store.publish(replace(self.entry, size=size, parts=self.handed, **fields), results, lost=lost)
        except BaseException as exc:
            self._abandon()
            if isinstance(exc, OSError):
                raise PfsError(f"cannot store {self.entry.name}: {describe(exc)}") from exc
            raise

    def abandon(self) -> None:
        """Stop streaming: nothing of what was handed over stays."""
        self._feeder.cancel.set()
        self._abandon()

    def _abandon(self) -> None:
        self._feeder.finish()
        self._store.abandon(self.entry)
