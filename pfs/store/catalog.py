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


#: Times a rename or delete looks again at a file that another command changed meanwhile.
CHANGED_RETRIES = 5


def changed_meanwhile(entry: FileEntry) -> UsageError:
    return UsageError(f"file {entry.id} ({entry.name}) was renamed, replaced or deleted by another command meanwhile",
                      "nothing was changed; `list` shows it now")


class Catalog:
    """The stored files by id and name, who reads them, and their renames and deletes."""

    def __init__(self, ctx: Context, sweeper: Sweeper) -> None:
        self.ctx, self.sweeper = ctx, sweeper
        self._readers: Counter[int] = Counter()  # file id -> gets, verifies and open readers on it
        self._doomed: dict[int, FileEntry] = {}  # replaced file -> what replaced it, once its last reader is done
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
        file already under the new name is replaced: deleted, unless `keep`.
        The name is taken by compare-and-swap: a file renamed, replaced or
        deleted by another command since it was resolved is resolved again."""
        name = names.check(new)
        for _ in range(CHANGED_RETRIES):
            entry = self.resolve(ref)
            if entry.status != STORED:
                raise UsageError(f"file {entry.id} ({entry.name}) is {entry.status}",
                                 "only stored files can be renamed")
            moved = self.ctx.files.take_name(entry, replace(entry, name=name, session=self.ctx.sessions.id), keep)
            if moved is not None:
                self.drop_replaced(moved)
                return moved
        raise changed_meanwhile(entry)

    def drop_replaced(self, by: FileEntry) -> None:
        """Delete the file `by` took the name of (`by.replaces`; none if it was
        kept: then its id still reaches it), once nobody reads it any more: a
        reader that opened it goes on reading it whole."""
        if not by.replaces:
            return
        with self._readers_lock:
            if self._readers[by.replaces]:
                self._doomed[by.replaces] = by
                return
        self.delete_replaced(by)

    def delete_replaced(self, by: FileEntry) -> None:
        """Delete what `by` replaced, if it is still that: stored, under by's name
        (a rename since took it out of the name's reach, and it stays). It is
        no longer what its name resolves to, so a failure here loses nothing:
        it is logged, and a delete left halfway is finished at the next open."""
        old = self.ctx.files.get(by.replaces)
        if old is None or old.status != STORED or old.name != by.name:
            return
        try:
            self.delete(old.id, seen=old)
        except PfsError as exc:
            log.warning("file %d, replaced under its name, was not deleted: %s", old.id, exc)

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
            by = self._doomed.pop(file_id, None)
        if by is not None:
            self.delete_replaced(by)

    def busy(self) -> set[int]:
        """The files this pfs reads, verifies or heals now."""
        with self._readers_lock:
            return set(self._readers)

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

    @contextlib.contextmanager
    def reading_all(self, file_ids: list[int]) -> Iterator[None]:
        """`reading` of many files at once, their holds taken in one registry call."""
        for file_id in file_ids:
            self.hold(file_id)
        try:
            with self.ctx.sessions.hold_all(file_ids):
                yield
        finally:
            for file_id in file_ids:
                self.release(file_id)

    def manifest(self, file_id: int) -> Manifest | None:
        """The parts of a file (None while it is being stored or after it failed)."""
        self.entry(file_id)
        return self.ctx.parts.load(file_id)

    def delete(self, file_id: int, progress: Progress = no_progress, seen: FileEntry | None = None) -> FileEntry:
        """Remove a file and its parts; a crash midway is finished at the next open.
        Refused while another command (of any pfs) reads the file. With `seen`
        (the file a name gave), only if it is still that file under that name:
        a rename or replace since wins. The file is marked deleting by compare-and-swap."""
        with self.ctx.sessions.hold(file_id, exclusive=True):
            return self._delete(file_id, progress, seen)

    def _delete(self, file_id: int, progress: Progress, seen: FileEntry | None) -> FileEntry:
        for _ in range(CHANGED_RETRIES):
            entry = self.entry(file_id)
            if entry.status in (STORING, DELETING):
                raise UsageError(f"file {file_id} ({entry.name}) is {entry.status}", "wait for it to finish")
            if seen is not None and not self.ctx.files.unchanged(entry, seen):
                raise changed_meanwhile(seen)
            if self.ctx.files.swap(entry, replace(entry, status=DELETING, session=self.ctx.sessions.id)):
                break
        else:
            raise changed_meanwhile(entry)
        refresh_volumes(self.ctx)
        self.sweeper.sweep_or_note(entry, progress)
        self.ctx.parts.remove(file_id)
        self.ctx.files.remove(file_id)
        return entry
