"""FileMap: the file records as a process last read them from the snapshot and the journal."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from pfs.registry.jsonfiles.common import BAD_JSON, damaged, short
from pfs.registry.names import NameIndex, ancestors, conflict
from pfs.registry.records import (DELETING, DIR, FILE_FIELDS, HOLDING, MAX_INT, STORED, STORING, BadRecord, FileEntry,
                                  bulk)
from pfs.registry.snapshot import FORMAT_2, Columns, is_sealed, take


class FileMap:
    """Map of file id -> FileEntry, in the order files became current under their
    names (see NameIndex), which the snapshot keeps. A record loaded from a
    format 2 snapshot stays a row of its columns (kept compact: see
    snapshot.compact), built anew each time it is asked for, so that a listing
    or get -r of a million files does not keep a million records; the name
    index is built on first use, so that opening stays as fast."""

    def __init__(self, root: Path, snapshot: Path, strict: bool,
                 damaged: Callable[[str, BaseException | str], None]) -> None:
        self._root = root
        self._snapshot = snapshot
        self._strict = strict
        self._damaged = damaged  # reports damage (raises, unless the registry is opened for repair)
        self.outdated = False  # a snapshot of an older format, or without its check: rewritten at close
        self.reset()

    def reset(self) -> None:
        """Forget every record, to load them afresh."""
        # id -> record, or the record's row in the snapshot's columns until it is asked for
        self.files: dict[int, FileEntry | int] = {}
        self.columns: Columns | None = None
        self._names: NameIndex | None = None
        self.next_id = 1

    def load_snapshot(self) -> None:
        try:
            with open(self._snapshot, "rb") as file:
                data = file.read(len(FORMAT_2))
                if data == FORMAT_2:  # read a column at a time, when asked for (see Columns)
                    columns = Columns(self._snapshot)
                    self.outdated = self.outdated or columns.outdated
                    self._load_columns(columns)
                    return
                data += file.read()
            snap = json.loads(data)
            if type(snap) is not dict:
                raise BadRecord("not a snapshot")
            self.outdated = True
            entries, bad = FileEntry.from_rows(snap.get("fields"), snap.get("files"), is_sealed(data))
        except BAD_JSON as exc:
            self._damaged(str(self._snapshot), exc)
            return
        for index, problem in bad:
            self._damaged(f"{self._snapshot} record {index + 1}", problem)
        next_id = snap.get("next_id")
        if type(next_id) is not int or not 1 <= next_id <= MAX_INT:
            self._damaged(f"{self._snapshot} next_id", "not a file id")
        else:
            self.next_id = next_id
        self.files = {e.id: e for e in entries}
        self.next_id = max(self.next_id, max(self.files, default=0) + 1)

    def _load_columns(self, columns: Columns) -> None:
        """Take a format 2 snapshot: only its ids are decoded now; a record is
        built when it is first asked for (see entry)."""
        ids = columns["id"]
        if not self._strict:  # repair looks at every record now, to find any damage at once
            for field in FILE_FIELDS:
                columns[field]
        self.columns = columns
        self.files = dict(zip(ids, range(columns.count)))
        self.next_id = max(columns.next_id, max(ids, default=0) + 1)

    def column(self, field: str) -> Sequence:
        """One field of every record in the snapshot (damage found decoding it is raised)."""
        try:
            return self.columns[field]
        except BAD_JSON as exc:
            raise damaged(self._root, f"{self._snapshot} is damaged ({short(exc)})") from exc

    def entry(self, file_id: int) -> FileEntry | None:
        """A file's record, built from the snapshot's columns if it is a row of them."""
        found = self.files.get(file_id)
        if type(found) is int:
            return FileEntry(*[self.column(field)[found] for field in FILE_FIELDS])
        return found

    def entries(self, file_ids: list[int]) -> list[FileEntry | None]:
        """entry() of each id, the rows of the snapshot's columns built a column at
        a time (a listing of a big directory: not 25 lookups a record)."""
        found = list(map(self.files.get, file_ids))
        rows = [f for f in found if type(f) is int]
        if not rows:
            return found
        built = iter(map(FileEntry, *(take(self.column(field), rows) for field in FILE_FIELDS)))
        return [next(built) if type(f) is int else f for f in found]

    def values(self, field: str) -> list:
        """One field of every record, in order: a column of the next snapshot,
        taken without building the records."""
        column = self.column(field) if self.columns is not None else ()
        return [column[found] if type(found) is int else getattr(found, field) for found in self.files.values()]

    def field(self, found: FileEntry | int, field: str) -> object:
        """One field of a record, or of a row of the snapshot's columns."""
        return self.column(field)[found] if type(found) is int else getattr(found, field)

    def apply(self, kind: str, what: FileEntry | int | list[FileEntry]) -> None:
        """Replay one journal operation: put a record, delete or reserve a file id."""
        if kind == "batch":
            for entry in what:
                self.apply("put", entry)
            return
        if kind == "put":
            self.put(what)
            file_id = what.id
        else:
            file_id = what
            if kind == "del":
                self.pop(file_id)
        self.next_id = max(self.next_id, file_id + 1)

    def put(self, entry: FileEntry) -> None:
        """Record `entry` in memory; one that becomes current under its name
        (new, renamed, or now stored) moves to the end of the order."""
        old = self.files.get(entry.id)
        if old is not None and self.field(old, "name") == entry.name and \
                (self.field(old, "status") == STORED or entry.status != STORED):
            self.files[entry.id] = entry
            return
        if old is not None:
            self.pop(entry.id)
        self.files[entry.id] = entry
        if self._names is not None:
            self._names.add(entry.name, entry.id)

    def pop(self, file_id: int) -> None:
        old = self.files.pop(file_id, None)
        if old is not None and self._names is not None:
            self._names.discard(self.field(old, "name"), file_id)

    def index(self) -> NameIndex:
        if self._names is None:
            with bulk():
                names = self.column("name") if self.columns else []
                self._names = NameIndex([(names[found] if type(found) is int else found.name, file_id)
                                         for file_id, found in self.files.items()])
        return self._names

    def refuse_conflict(self, entry: FileEntry, batch: frozenset[int] | set[int] = frozenset()) -> None:
        """Raise NameConflictError if `entry` would make a name both a file and a
        directory (holding the exclusive lock, caught up: decided and recorded
        at once). A record that already held its name, as it was, is not
        checked again: a store made before kinds may hold both, and stays as it is."""
        if entry.status not in HOLDING:
            return
        old = self.files.get(entry.id)
        if old is not None and self.field(old, "status") in HOLDING and self.field(old, "name") == entry.name \
                and self.field(old, "kind") == entry.kind:
            return
        index = self.index()

        def held_as(name: str) -> str | None:
            """The kind of a record (other than entry's, outside the batch) holding `name`, or None."""
            for file_id in index.ids(name):
                found = self.files[file_id]
                if file_id != entry.id and file_id not in batch and self.field(found, "status") in HOLDING:
                    return self.field(found, "kind")
            return None
        for outer in ancestors(entry.name):
            if held_as(outer) not in (None, DIR):
                raise conflict(entry.name, entry.is_dir, outer, False)
        kind = held_as(entry.name)
        if kind is not None and (kind == DIR) != entry.is_dir:
            raise conflict(entry.name, entry.is_dir, entry.name, kind == DIR)
        if not entry.is_dir:
            inner = next((n for n in index.names_under(entry.name + "/") if held_as(n)), None)
            if inner is not None:
                raise conflict(entry.name, False, inner, False)

    def unsettled(self) -> list[FileEntry]:
        """Records storing or deleting, and stored ones whose `replaces` is still
        there, told from the statuses and `replaces` columns alone."""
        files = self.files
        status, replaces = (self.column("status"), self.column("replaces")) if self.columns else ([], [])

        def unsettled(found: FileEntry | int) -> bool:
            s, r = (status[found], replaces[found]) if type(found) is int else (found.status, found.replaces)
            return s in (STORING, DELETING) or (s == STORED and r in files)
        return [self.entry(i) for i in sorted(i for i, found in files.items() if unsettled(found))]

    def stored_placed(self) -> list[tuple[int, str]]:
        """(id, placed) of every stored file, from the snapshot's columns where
        they are (no record is built: a volume list of 100,000 files)."""
        status, placed = (self.column("status"), self.column("placed")) if self.columns else ([], [])
        pairs = ((i, (status[f], placed[f]) if type(f) is int else (f.status, f.placed))
                 for i, f in self.files.items())
        return sorted((i, p) for i, (s, p) in pairs if s == STORED)
