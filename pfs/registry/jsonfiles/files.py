"""FileRegistry: the file records as a compacted snapshot (files.json) plus a journal (files.jsonl).

An update costs one fsynced journal line however many files are stored (see
Journal); what a process has read of both is its FileMap.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from pfs.registry import usage
from pfs.registry.base import FileTable
from pfs.registry.jsonfiles.common import FILES_LOCK, JOURNAL, RESERVE, SNAPSHOT, damaged, short, write_atomic
from pfs.registry.jsonfiles.filemap import FileMap
from pfs.registry.jsonfiles.journal import Journal
from pfs.registry.records import FILE_FIELDS, STORED, BadRecord, FileEntry, bulk, rows_problem
from pfs.registry.snapshot import encode

log = logging.getLogger("pfs")


def _check(*entries: FileEntry) -> None:
    """Only a valid record is written, which is what lets a sealed snapshot load
    unchecked (a batch is checked at once, as a snapshot is loaded)."""
    bad = rows_problem([[getattr(entry, name) for name in FILE_FIELDS] for entry in entries])
    if bad:
        raise BadRecord(f"file {entries[bad[0]].id}: {bad[1]}")


class FileRegistry(FileTable):
    """Map of file id -> FileEntry, persisted as snapshot + journal and shared by
    every process on the store: each update is appended under a short flock of
    STORE/files.lock, after reading what the others appended since (from the
    last offset read); a compaction replaces the journal by a new file, which
    readers tell by its inode and answer by reloading the snapshot. The map's
    order is the order files became current under their names (see NameIndex),
    and the snapshot keeps it."""

    def __init__(self, root: Path, strict: bool = True, id_elsewhere: Callable[[], int] = lambda: 0) -> None:
        """Load the registry. Damage raises a DamagedError, or with strict=False
        is skipped and described in `self.damage` (for repair). `id_elsewhere`
        gives the highest file id known outside the registry (a manifest on
        disk): asked once, before the first new id, so a stale snapshot never
        hands out an id that has a manifest, and opening to read costs nothing."""
        self._root = root
        self._snapshot = root / SNAPSHOT
        self._lock = threading.RLock()
        self._strict = strict
        self.damage: list[str] = []
        self._id_elsewhere: Callable[[], int] | None = id_elsewhere
        self._flock = os.open(root / FILES_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        self._journal = Journal(root / JOURNAL, root / RESERVE, self._damaged)
        self._map = FileMap(root, self._snapshot, strict, self._damaged)
        try:
            with self._locked(fcntl.LOCK_EX):  # exclusive: a torn tail is cut, a journal made
                pass
        except BaseException:
            self._close_fds()
            raise
        self._journal.keep_reserve()

    def close(self) -> None:
        """Fold a journal this session grew into the snapshot, so the next open
        does not replay it line by line, then close it. A snapshot without its
        check (from an older pfs) is rewritten with one, so that the next open
        need not check every record again."""
        try:
            if self._journal.grew_much() or self._map.outdated:
                with self._locked(fcntl.LOCK_EX):
                    if self._map.outdated or self._journal.bytes * 4 > self._snapshot_bytes():  # amortised O(1)
                        self._compact_if_possible()
        finally:
            self._close_fds()

    def _close_fds(self) -> None:
        self._journal.close()
        if self._flock >= 0:
            os.close(self._flock)
        self._flock = -1

    @contextlib.contextmanager
    def _locked(self, how: int) -> Iterator[None]:
        """Hold files.lock (shared to read, exclusive to write) with this process's
        view caught up with every update made before it was taken. A closed
        registry answers from the view it had."""
        with self._lock:
            if self._flock < 0:
                yield
                return
            fcntl.flock(self._flock, how)
            try:
                self._catch_up(exclusive=how == fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(self._flock, fcntl.LOCK_UN)

    def _catch_up(self, exclusive: bool) -> None:
        """Read what other processes appended since our last read; after a
        compaction (a new journal file) or at first, load everything afresh."""
        if self._journal.is_open_on_current():
            self._journal.replay(self._map.apply, exclusive)
        else:
            self._reload(exclusive)

    def _reload(self, exclusive: bool) -> None:
        self._map.reset()
        self._journal.close()
        if self._snapshot.exists():
            with bulk():
                self._map.load_snapshot()
        if self._journal.reopen(create=exclusive):
            self._journal.replay(self._map.apply, exclusive)

    def _damaged(self, what: str, why: BaseException | str) -> None:
        problem = f"{what} is damaged ({why if isinstance(why, str) else short(why)})"
        if self._strict:
            raise damaged(self._root, problem)
        self.damage.append(f"{problem} and was skipped")

    def _maybe_compact(self) -> None:
        """Fold the journal in once it outgrows the snapshot: amortised O(1) per update.
        Called only after the in-memory state includes the latest journal line.
        Failing to compact (a full disk) loses nothing: the journal still holds it all."""
        if self._journal.outgrows(self._snapshot_bytes()):
            self._compact_if_possible()

    def _compact_if_possible(self) -> None:
        try:
            self._compact()
        except OSError as exc:
            log.warning("journal compaction postponed: %s", exc)

    def _snapshot_bytes(self) -> int:
        try:
            return self._snapshot.stat().st_size
        except FileNotFoundError:
            return 0

    def compact(self) -> None:
        """Fold the journal into a new snapshot and start a new, empty journal."""
        with self._locked(fcntl.LOCK_EX):
            self._compact()

    def _compact(self) -> None:
        """Called holding the exclusive lock, caught up. The snapshot comes first: a
        crash before the new journal replaces the old leaves the old one replaying
        over a snapshot that holds it already, which is harmless."""
        write_atomic(self._snapshot, encode(self._map.next_id, len(self._map.files), self._map.values))
        self._journal.restart()
        self._map.outdated = False
        self._map.reset()  # the records as compact rows of the new snapshot, not a million objects
        with bulk():
            self._map.load_snapshot()

    def _take_next_id(self) -> int:
        """The next file id (holding the exclusive lock, caught up)."""
        files = self._map
        if self._id_elsewhere is not None:
            files.next_id = max(files.next_id, self._id_elsewhere() + 1)
            self._id_elsewhere = None
        files.next_id += 1
        return files.next_id - 1

    def new_id(self) -> int:
        """Reserve the next file id; ids are never reused, even after delete. The
        reservation is a journal line, so no other process takes the id meanwhile;
        it needs no fsync of its own: the first record with the id syncs it, and a
        crash before that loses an id nothing refers to."""
        with self._locked(fcntl.LOCK_EX):
            file_id = self._take_next_id()
            self._journal.append({"op": "id", "id": file_id}, durable=False)
            return file_id

    def add(self, entry: FileEntry) -> FileEntry:
        """Record a new file under the next id (whatever `entry.id` says): one
        journal line, appended under the same lock that chose the id."""
        with self._locked(fcntl.LOCK_EX):
            entry = replace(entry, id=self._take_next_id())
            _check(entry)
            self._record(entry)
        return entry

    def save(self, entry: FileEntry) -> None:
        """Record (insert or replace) a file durably."""
        _check(entry)
        with self._locked(fcntl.LOCK_EX):
            self._record(entry)

    def swap(self, seen: FileEntry, new: FileEntry) -> bool:
        """Compared and recorded under the one exclusive lock of every update."""
        _check(new)
        with self._locked(fcntl.LOCK_EX):
            if not self.unchanged(self._map.entry(seen.id), seen):
                return False
            self._record(new)
            return True

    def move_all(self, root: str, seen: list[FileEntry], moved: list[FileEntry]) -> bool:
        """Compared and recorded as one batch under the one exclusive lock of every update."""
        with self._locked(fcntl.LOCK_EX):
            index = self._map.index()
            there = {i for name in (root, *index.names_under(root + "/")) for i in index.ids(name)}
            if there != {e.id for e in seen} or not all(self.unchanged(self._map.entry(e.id), e) for e in seen):
                return False
            self._save_all(moved)
            return True

    def take_name(self, seen: FileEntry, new: FileEntry, keep: bool = False) -> FileEntry | None:
        with self._locked(fcntl.LOCK_EX):
            taken = self._taking(seen, new, keep)
            if taken is not None:
                _check(taken)
                self._record(taken)
            return taken

    def take_names(self, pairs: list[tuple[FileEntry, FileEntry]], keep: bool = False) -> list[FileEntry | None]:
        """Compared, and the swapped ones recorded as one batch, under one lock."""
        with self._locked(fcntl.LOCK_EX):
            taken = [self._taking(seen, new, keep) for seen, new in pairs]
            written = [e for e in taken if e is not None]
            if written:
                self._save_all(written)
            return taken

    def _taking(self, seen: FileEntry, new: FileEntry, keep: bool) -> FileEntry | None:
        """`new` replacing what its name resolves to now, or None if `seen` changed
        (holding the exclusive lock, caught up)."""
        if not self.unchanged(self._map.entry(seen.id), seen):
            return None
        named = (self._map.entry(i) for i in reversed(self._map.index().ids(new.name)))
        return self.replacing(new, next((e for e in named if e.status == STORED), None), keep)

    def _record(self, entry: FileEntry) -> None:
        """Append a record and apply it (holding the exclusive lock, caught up)."""
        self._map.refuse_conflict(entry)
        self._journal.append({"op": "put", "file": entry.to_line()})
        self._map.put(entry)
        self._map.next_id = max(self._map.next_id, entry.id + 1)
        self._maybe_compact()

    def add_all(self, entries: list[FileEntry]) -> list[FileEntry]:
        """Ids chosen and the batch recorded under one lock: one journal line, one fsync."""
        with self._locked(fcntl.LOCK_EX):
            first = self._map.next_id
            added = [replace(e, id=self._take_next_id()) for e in entries]
            try:
                self._save_all(added)
            except BaseException:
                self._map.next_id = first  # nothing recorded: the ids were never handed out
                raise
        return added

    def save_all(self, entries: list[FileEntry]) -> None:
        """One journal line for the whole batch, one fsync."""
        with self._locked(fcntl.LOCK_EX):
            self._save_all(entries)

    def _save_all(self, entries: list[FileEntry]) -> None:
        """Holding the exclusive lock, caught up."""
        _check(*entries)
        batch = {e.id for e in entries}
        for entry in entries:
            self._map.refuse_conflict(entry, batch)
        self._journal.append({"op": "batch", "files": [e.to_line() for e in entries]})
        for entry in entries:
            self._map.put(entry)
            self._map.next_id = max(self._map.next_id, entry.id + 1)
        self._maybe_compact()

    def remove(self, file_id: int) -> None:
        """Forget a file durably."""
        with self._locked(fcntl.LOCK_EX):
            self._journal.append({"op": "del", "id": file_id})
            self._map.pop(file_id)
            self._maybe_compact()
        self._journal.refill_reserve()

    def get(self, file_id: int) -> FileEntry | None:
        with self._locked(fcntl.LOCK_SH):
            return self._map.entry(file_id)

    def all(self) -> list[FileEntry]:
        """Every file, in id order."""
        with self._locked(fcntl.LOCK_SH):
            return self._map.entries(sorted(self._map.files))

    def unsettled(self) -> list[FileEntry]:
        """From the statuses and `replaces` alone: the other fields of 100,000
        settled records are not decoded at open."""
        with self._locked(fcntl.LOCK_SH):
            return self._map.unsettled()

    def volume_usage(self) -> tuple[usage.Usage, list[int]]:
        with self._locked(fcntl.LOCK_SH):
            stored = self._map.stored_placed()
        return usage.total(p for _, p in stored if p), [i for i, p in stored if not p]

    def on_volume(self, vid: int) -> tuple[list[int], list[int]]:
        with self._locked(fcntl.LOCK_SH):
            stored = self._map.stored_placed()
        return [i for i, p in stored if usage.on(p, vid)], [i for i, p in stored if not p]

    def named(self, name: str) -> list[FileEntry]:
        with self._locked(fcntl.LOCK_SH):
            return [self._map.entry(i) for i in self._map.index().ids(name)]

    def named_each(self, names: list[str]) -> dict[str, list[FileEntry]]:
        """Under one lock and catch-up for all the names, not one per name."""
        with self._locked(fcntl.LOCK_SH):
            each = self._map.index().ids_each(names)
            built = iter(self._map.entries([i for ids in each for i in ids]))
            return {name: [next(built) for _ in ids] for name, ids in zip(names, each)}

    def under(self, prefix: str, recursive: bool = False) -> tuple[list[str], list[str]]:
        with self._locked(fcntl.LOCK_SH):
            return self._map.index().under(prefix, recursive)
