"""The stored files by id and by name: look-ups, renames and replaces, the holds
of readers, and deletes."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

from pfs import names
from pfs.errors import NotFoundError, PfsError, UsageError
from pfs.registry import DELETING, STORED, STORING, FileEntry, Manifest
from pfs.store.context import Context, Progress, no_progress
from pfs.store.sweeping import Sweeper
from pfs.store.volume_config import refresh_volumes

log = logging.getLogger("pfs")


def doomed_id(replaced: FileEntry | None, by: FileEntry, keep: bool) -> int:
    """The id of the file `by` takes the name of and must delete (0: none, or kept):
    recorded in `by`'s own record, so the replace is one atomic record write."""
    return 0 if replaced is None or replaced.id == by.id or keep else replaced.id


class Catalog:
    """The stored files by id and name, who reads them, and their renames and deletes."""

    def __init__(self, ctx: Context, sweeper: Sweeper) -> None:
        self.ctx, self.sweeper = ctx, sweeper
        self._readers: Counter[int] = Counter()  # file id -> gets, verifies and open readers on it
        self._doomed: set[int] = set()  # replaced files to delete once their last reader is done
        self._readers_lock = threading.Lock()

    def list(self) -> list[FileEntry]:
        return self.ctx.files.all()

    def entry(self, file_id: int) -> FileEntry:
        entry = self.ctx.files.get(file_id)
        if entry is None:
            raise NotFoundError(f"no file with id {file_id}", "`list` shows the stored files")
        return entry

    def resolve(self, ref: str | int) -> FileEntry:
        """The file an argument names: an id (all digits), else the stored file
        the name resolves to (the last of that name to be stored)."""
        if isinstance(ref, int) or names.is_id(ref):
            return self.entry(int(ref))
        name = names.check(ref)
        entry = self.ctx.files.current(name)
        if entry is None:
            raise NotFoundError(f"no file named {name}", "`list` shows the stored files")
        return entry

    def under(self, prefix: str, recursive: bool = False) -> tuple[list[str], list[str]]:
        """(names, directories) under a directory as typed (`logs`, `logs/`, ``), sorted."""
        return self.ctx.files.under(names.prefix(prefix), recursive)

    def rename(self, ref: str | int, new: str, keep: bool = False) -> FileEntry:
        """Give a stored file a new name, moving no data (one journal record). A
        file already under the new name is replaced: deleted, unless `keep`."""
        entry = self.resolve(ref)
        if entry.status != STORED:
            raise UsageError(f"file {entry.id} ({entry.name}) is {entry.status}", "only stored files can be renamed")
        name = names.check(new)
        replaced = self.ctx.files.current(name)
        moved = replace(entry, name=name, session=self.ctx.sessions.id, replaces=doomed_id(replaced, entry, keep))
        self.ctx.files.save(moved)
        self.drop_replaced(moved)
        return moved

    def drop_replaced(self, by: FileEntry) -> None:
        """Delete the file `by` took the name of (`by.replaces`; none if it was
        kept: then its id still reaches it), once nobody reads it any more: a
        reader that opened it goes on reading it whole."""
        if not by.replaces:
            return
        with self._readers_lock:
            if self._readers[by.replaces]:
                self._doomed.add(by.replaces)
                return
        self.delete_replaced(by.replaces)

    def delete_replaced(self, file_id: int) -> None:
        """It is no longer what its name resolves to, so a failure here loses
        nothing: it is logged, and a delete left halfway is finished at the next open."""
        try:
            self.delete(file_id)
        except PfsError as exc:
            log.warning("file %d, replaced under its name, was not deleted: %s", file_id, exc)

    def hold(self, file_id: int) -> None:
        """Note a reader of a file: a replacement does not delete it meanwhile."""
        with self._readers_lock:
            self._readers[file_id] += 1

    def release(self, file_id: int) -> None:
        """A reader is done; the last one of a replaced file deletes it."""
        with self._readers_lock:
            self._readers[file_id] -= 1
            if self._readers[file_id] > 0:
                return
            del self._readers[file_id]
            if file_id not in self._doomed:
                return
            self._doomed.discard(file_id)
        self.delete_replaced(file_id)

    @contextlib.contextmanager
    def reading(self, file_id: int) -> Iterator[None]:
        """Read a file: a file stored under its name meanwhile (by this pfs) does not
        delete it under us, and a delete by any pfs is refused until we are done."""
        self.hold(file_id)
        try:
            with self.ctx.sessions.hold(file_id, exclusive=False):
                yield
        finally:
            self.release(file_id)

    def manifest(self, file_id: int) -> Manifest | None:
        """The parts of a file (None while it is being stored or after it failed)."""
        self.entry(file_id)
        return self.ctx.parts.load(file_id)

    def delete(self, file_id: int, progress: Progress = no_progress) -> FileEntry:
        """Remove a file and its parts; a crash midway is finished at the next open.
        Refused while another command (of any pfs) reads the file."""
        with self.ctx.sessions.hold(file_id, exclusive=True):
            return self._delete(file_id, progress)

    def _delete(self, file_id: int, progress: Progress) -> FileEntry:
        entry = self.entry(file_id)
        if entry.status in (STORING, DELETING):
            raise UsageError(f"file {file_id} ({entry.name}) is {entry.status}", "wait for it to finish")
        self.ctx.files.save(replace(entry, status=DELETING, session=self.ctx.sessions.id))
        refresh_volumes(self.ctx)
        self.sweeper.sweep_or_note(entry, progress)
        self.ctx.parts.remove(file_id)
        self.ctx.files.remove(file_id)
        return entry
