"""FileRegistry and PartRegistry: the store's metadata as JSON on disk.

The FileRegistry is a compacted snapshot (files.json) plus an append-only
journal (files.jsonl) of whole-record upserts and deletes, so an update costs
one fsynced line however many files are stored; replaying the journal over the
snapshot is idempotent, and a torn last line (a crash mid-append) is dropped.
The PartRegistry keeps one manifest per file (manifests/<id>.json), so listing
files never loads a part. Every JSON file is written atomically: temp file,
fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import re
import struct
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import compress
from pathlib import Path

from pfs.errors import DamagedError, StoreError, StoreLockedError, advice_for
from pfs.registry import usage
from pfs.registry.base import FileTable, PartTable, SessionTable
from pfs.registry.names import NameIndex, ancestors, conflict
from pfs.registry.records import (DELETING, DIR, FILE_FIELDS, HOLDING, MAX_INT, STORED, STORING, BadRecord, FileEntry,
                                  Manifest, _ints, _one_of, _row_problem, _types, bulk)
from pfs.registry.snapshot import Columns, encode, is_sealed

log = logging.getLogger("pfs")

SNAPSHOT = "files.json"
JOURNAL = "files.jsonl"
MANIFESTS = "manifests"
#: Where manifests are written before they are renamed into MANIFESTS.
SCRATCH = "tmp"
RESERVE = "reserve"
#: flock()ed around every read and update of the journal, so processes take turns.
FILES_LOCK = "files.lock"
#: One file per session, flock()ed by its live process.
SESSIONS = "sessions"
#: Disk space held back so that a full disk can still record deletes and rollbacks.
RESERVE_BYTES = 1 << 20
#: The journal is folded into the snapshot once it outgrows both this and the snapshot.
MIN_COMPACT_BYTES = 256 * 1024


def fsync_file(path: Path | str, flags: int = 0) -> None:
    """Make a file's data durable (an open descriptor is not needed)."""
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path | str) -> None:
    """Make a directory's entries (new, renamed or removed files) durable."""
    fsync_file(path, os.O_DIRECTORY)


def sync_filesystem(directory: Path, files: list[Path]) -> None:
    """Make `files` (all on the file system of `directory`) durable: one syncfs
    for the whole file system where the C library has it, else an fsync each."""
    libc = _libc()
    if libc is not None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in files:
        fsync_file(path)


@functools.cache
def _libc():
    """The C library, for syncfs (Linux); None where it has none."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.syncfs  # noqa: B018 -- raises AttributeError where there is none
    except (OSError, AttributeError):
        return None
    return libc


def write_json_atomic(path: Path, obj: object, scratch: Path | None = None) -> None:
    """Replace `path` with `obj` as JSON so a crash leaves the old or the new file, whole."""
    write_atomic(path, json.dumps(obj, separators=(",", ":")).encode(), scratch)


def write_atomic(path: Path, data: bytes, scratch: Path | None = None) -> None:
    """Replace `path` with `data` so a crash leaves the old or the new file, whole.
    The data is written first to a temporary file in `scratch` (on the same file
    system; default: beside `path`), where an open looks for what a crash left:
    a directory of 100,000 manifests is not one to list at every open."""
    tmp = (scratch or path.parent) / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def damaged(root: Path, problem: str) -> DamagedError:
    """The error for damaged metadata: say exactly what is wrong and point at `repair`."""
    return DamagedError(problem, f"run `pfs --store {root} repair` to rebuild what can be rebuilt")


#: What json.loads raises on bytes that are not JSON (bad UTF-8 is a ValueError
#: too; nesting too deep to parse is a RecursionError).
BAD_JSON = (ValueError, RecursionError)


def read_json(path: Path, root: Path) -> object:
    """Load a JSON file, turning damage into a DamagedError that names the file."""
    try:
        return json.loads(path.read_bytes())
    except BAD_JSON as exc:
        raise damaged(root, f"{path} is damaged ({_short(exc)})") from exc
    except IsADirectoryError as exc:
        raise damaged(root, f"{path} is a directory, not a file") from exc


def _short(exc: BaseException) -> str:
    """An exception as a short reason: parse errors can quote huge inputs."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _journal_op(op: object) -> tuple[str, FileEntry | int | list[FileEntry]]:
    """A parsed journal line as (kind, record, records or id); raises BadRecord if it is not one.
    Kinds: put (a record), batch (records written at once, all or nothing: the line is
    whole or torn), del (a file id forgotten), id (a file id reserved)."""
    if type(op) is dict and op.get("op") == "put":
        return "put", FileEntry.from_dict(op.get("file"))
    if type(op) is dict and op.get("op") == "batch" and type(op.get("files")) is list:
        entries, bad = FileEntry.from_dicts(op["files"])
        if bad:
            raise BadRecord(f"record {bad[0][0] + 1} of the batch: {bad[0][1]}")
        return "batch", entries
    if type(op) is dict and op.get("op") in ID_OPS:
        if _ints(0, MAX_INT)([op.get("id")]):  # deleting id 0, which never exists, is a no-op
            return op["op"], op["id"]
        raise BadRecord(f"a{'' if op['op'] == 'id' else ' delete of'} {op['op']} of something that is not a file id")
    raise BadRecord("not a journal operation")


def _check(entry: FileEntry) -> None:
    """Only a valid record is written, which is what lets a sealed snapshot load unchecked."""
    problem = _row_problem([getattr(entry, name) for name in FILE_FIELDS])
    if problem:
        raise BadRecord(f"file {entry.id}: {problem}")


#: Journal operations that carry a file id rather than a record.
ID_OPS = ("del", "id")


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
        self._journal_path = root / JOURNAL
        self._lock = threading.RLock()
        self._strict = strict
        self.damage: list[str] = []
        self._id_elsewhere: Callable[[], int] | None = id_elsewhere
        self._flock = os.open(root / FILES_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        self._journal = -1
        self._updates = 0  # journal bytes this process appended: compacted at close when many
        self._names: NameIndex | None = None  # built on first use: opening stays as fast
        self._outdated = False  # a snapshot of an older format, or without its check: rewritten at close
        self._reserve = root / RESERVE
        try:
            with self._locked(fcntl.LOCK_EX):  # exclusive: a torn tail is cut, a journal made
                pass
        except BaseException:
            self._close_fds()
            raise
        self._keep_reserve()

    def close(self) -> None:
        """Fold a journal this session grew into the snapshot, so the next open
        does not replay it line by line, then close it. A snapshot without its
        check (from an older pfs) is rewritten with one, so that the next open
        need not check every record again."""
        try:
            if self._updates > MIN_COMPACT_BYTES or self._outdated:
                with self._locked(fcntl.LOCK_EX):
                    if self._outdated or self._journal_bytes * 4 > self._snapshot_bytes():  # amortised O(1)
                        self._compact_if_possible()
        finally:
            self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self._journal, self._flock):
            if fd >= 0:
                os.close(fd)
        self._journal = self._flock = -1

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
        try:
            current = os.stat(self._journal_path)
        except FileNotFoundError:
            current = None
        if self._journal < 0 or current is None or (current.st_dev, current.st_ino) != self._journal_id():
            self._reload(exclusive)
        else:
            self._replay(exclusive)

    def _journal_id(self) -> tuple[int, int]:
        st = os.fstat(self._journal)
        return st.st_dev, st.st_ino

    def _reload(self, exclusive: bool) -> None:
        # id -> record, or the record's row in the snapshot's columns until it is asked for
        self._files: dict[int, FileEntry | int] = {}
        self._columns: Columns | None = None
        self._names = None
        self._next_id = 1
        if self._journal >= 0:
            os.close(self._journal)
            self._journal = -1
        if self._snapshot.exists():
            with bulk():
                self._load_snapshot()
        if exclusive:
            self._journal = os.open(self._journal_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        else:
            try:
                self._journal = os.open(self._journal_path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:  # a writer makes it; until then there is nothing to read
                return
        self._journal_bytes = 0
        self._replay(exclusive)

    def _damaged(self, what: str, why: BaseException | str) -> None:
        problem = f"{what} is damaged ({why if isinstance(why, str) else _short(why)})"
        if self._strict:
            raise damaged(self._root, problem)
        self.damage.append(f"{problem} and was skipped")

    def _load_snapshot(self) -> None:
        try:
            data = self._snapshot.read_bytes()
            if data.startswith(b'{"format":2,'):
                columns = Columns(data)
                self._outdated = self._outdated or columns.outdated
                self._load_columns(columns)
                return
            snap = json.loads(data)
            if type(snap) is not dict:
                raise BadRecord("not a snapshot")
            self._outdated = True
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
            self._next_id = next_id
        self._files = {e.id: e for e in entries}
        self._next_id = max(self._next_id, max(self._files, default=0) + 1)

    def _load_columns(self, columns: Columns) -> None:
        """Take a format 2 snapshot: only its ids are decoded now; a record is
        built when it is first asked for (see _entry)."""
        ids = columns["id"]
        if not self._strict:  # repair looks at every record now, to find any damage at once
            for field in FILE_FIELDS:
                columns[field]
        self._columns = columns
        self._files = dict(zip(ids, range(columns.count)))
        self._next_id = max(columns.next_id, max(ids, default=0) + 1)

    def _column(self, field: str) -> list:
        """One field of every record in the snapshot (damage found decoding it is raised)."""
        try:
            return self._columns[field]
        except BAD_JSON as exc:
            raise damaged(self._root, f"{self._snapshot} is damaged ({_short(exc)})") from exc

    def _entry(self, file_id: int) -> FileEntry | None:
        """A file's record, built from the snapshot's columns the first time."""
        found = self._files.get(file_id)
        if type(found) is int:
            found = self._files[file_id] = FileEntry(*[self._column(field)[found] for field in FILE_FIELDS])
        return found

    def _every(self) -> Iterable[FileEntry]:
        """Every record, in order, once those still in the snapshot's columns are built."""
        if self._columns is not None:
            built = list(map(FileEntry, *map(self._column, FILE_FIELDS)))
            for file_id, found in self._files.items():
                if type(found) is int:
                    self._files[file_id] = built[found]
            self._columns = None
        return self._files.values()

    def _field(self, found: FileEntry | int, field: str) -> object:
        """One field of a record, or of a row of the snapshot's columns."""
        return self._column(field)[found] if type(found) is int else getattr(found, field)

    def _replay(self, exclusive: bool) -> None:
        """Apply the journal lines appended after our offset. A tail with no
        newline is an append cut short by a crash (appends hold the exclusive
        lock, so no live writer is mid-line): a writer cuts it off."""
        size = os.fstat(self._journal).st_size
        data = os.pread(self._journal, size - self._journal_bytes, self._journal_bytes) if size > self._journal_bytes \
            else b""
        complete = data.rfind(b"\n") + 1
        lines = data[:complete].split(b"\n")[:-1]
        first_line = self._lines_read if self._journal_bytes else 0
        if not self._replay_at_once(lines):
            for number, line in enumerate(lines, first_line + 1):
                if line.strip():
                    try:
                        self._apply(*_journal_op(json.loads(line)))
                    except BAD_JSON as exc:
                        self._damaged(f"{self._journal_path} line {number}", exc)
        self._lines_read = first_line + len(lines)
        self._journal_bytes += complete
        if exclusive and complete < len(data):
            os.ftruncate(self._journal, self._journal_bytes)

    def _replay_at_once(self, lines: list[bytes]) -> bool:
        """Parse every line in one json.loads call and check every record at once
        (several times faster than line by line). False if anything is off; the
        caller then replays line by line, which names the damaged line. Nothing is
        applied before everything checked out, and replay is idempotent anyway."""
        lines = [line for line in lines if line.strip()]
        if not lines:  # the common case of a reader caught up already: nothing to parse or check
            return True
        try:
            ops = json.loads(b"[" + b",".join(lines) + b"]")
        except BAD_JSON:
            return False
        if len(ops) != len(lines) or not _types(dict)(ops):
            return False
        kinds = [op.get("op") for op in ops]
        if "batch" in kinds:  # rare enough (a renamed directory) to take line by line
            return False
        puts, bad = FileEntry.from_dicts([op.get("file") for op, kind in zip(ops, kinds) if kind == "put"])
        if bad or not _one_of(("put", *ID_OPS))(kinds) or \
                not _ints(0, MAX_INT)([op.get("id") for op, kind in zip(ops, kinds) if kind != "put"]):
            return False
        puts = iter(puts)
        for op, kind in zip(ops, kinds):
            self._apply(kind, next(puts) if kind == "put" else op["id"])
        return True

    def _apply(self, kind: str, what: FileEntry | int) -> None:
        """Replay one journal operation: put a record, delete or reserve a file id."""
        if kind == "batch":
            for entry in what:
                self._apply("put", entry)
            return
        if kind == "put":
            self._put(what)
            file_id = what.id
        else:
            file_id = what
            if kind == "del":
                self._pop(file_id)
        self._next_id = max(self._next_id, file_id + 1)

    def _put(self, entry: FileEntry) -> None:
        """Record `entry` in memory; one that becomes current under its name
        (new, renamed, or now stored) moves to the end of the order."""
        old = self._files.get(entry.id)
        if old is not None and self._field(old, "name") == entry.name and \
                (self._field(old, "status") == STORED or entry.status != STORED):
            self._files[entry.id] = entry
            return
        if old is not None:
            self._pop(entry.id)
        self._files[entry.id] = entry
        if self._names is not None:
            self._names.add(entry.name, entry.id)

    def _pop(self, file_id: int) -> None:
        old = self._files.pop(file_id, None)
        if old is not None and self._names is not None:
            self._names.discard(self._field(old, "name"), file_id)

    def _append(self, op: dict, durable: bool = True) -> None:
        """Append one line (durably unless told), or leave the journal as it was and raise.
        On a full disk the space reserve is given up once, so that deletes and
        rollbacks, which free space, can still be recorded. Called holding the
        exclusive lock, caught up: the journal ends where we read it to."""
        line = json.dumps(op, separators=(",", ":")).encode() + b"\n"
        for attempt in range(2):
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._journal, view):]
                if durable:
                    os.fsync(self._journal)
                self._journal_bytes += len(line)
                self._lines_read += 1
                self._updates += len(line)
                return
            except OSError as exc:
                os.ftruncate(self._journal, self._journal_bytes)  # never leave half a line
                if attempt == 0 and exc.errno in (errno.ENOSPC, errno.EDQUOT) and self._release_reserve():
                    continue
                raise StoreError(f"cannot write {self._journal_path}: {exc.strerror}", advice_for(exc)) from exc

    def _keep_reserve(self) -> None:
        """Hold RESERVE_BYTES of disk in a file while space allows."""
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:
            self._reserve.unlink(missing_ok=True)

    def _release_reserve(self) -> bool:
        try:
            self._reserve.unlink()
            return True
        except FileNotFoundError:
            return False

    def _maybe_compact(self) -> None:
        """Fold the journal in once it outgrows the snapshot: amortised O(1) per update.
        Called only after the in-memory state includes the latest journal line.
        Failing to compact (a full disk) loses nothing: the journal still holds it all."""
        if self._journal_bytes > MIN_COMPACT_BYTES and self._journal_bytes > self._snapshot_bytes():
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
        write_atomic(self._snapshot, encode(self._next_id, list(self._every())))
        write_atomic(self._journal_path, b"")
        os.close(self._journal)
        self._journal = os.open(self._journal_path, os.O_RDWR | os.O_APPEND)
        self._journal_bytes = self._lines_read = self._updates = 0
        self._outdated = False

    def _take_next_id(self) -> int:
        """The next file id (holding the exclusive lock, caught up)."""
        if self._id_elsewhere is not None:
            self._next_id = max(self._next_id, self._id_elsewhere() + 1)
            self._id_elsewhere = None
        self._next_id += 1
        return self._next_id - 1

    def new_id(self) -> int:
        """Reserve the next file id; ids are never reused, even after delete. The
        reservation is a journal line, so no other process takes the id meanwhile;
        it needs no fsync of its own: the first record with the id syncs it, and a
        crash before that loses an id nothing refers to."""
        with self._locked(fcntl.LOCK_EX):
            file_id = self._take_next_id()
            self._append({"op": "id", "id": file_id}, durable=False)
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
            if not self.unchanged(self._entry(seen.id), seen):
                return False
            self._record(new)
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
        if not self.unchanged(self._entry(seen.id), seen):
            return None
        named = (self._entry(i) for i in reversed(self._index().ids(new.name)))
        return self.replacing(new, next((e for e in named if e.status == STORED), None), keep)

    def _record(self, entry: FileEntry) -> None:
        """Append a record and apply it (holding the exclusive lock, caught up)."""
        self._refuse_conflict(entry)
        self._append({"op": "put", "file": entry.to_dict()})
        self._put(entry)
        self._next_id = max(self._next_id, entry.id + 1)
        self._maybe_compact()

    def add_all(self, entries: list[FileEntry]) -> list[FileEntry]:
        """Ids chosen and the batch recorded under one lock: one journal line, one fsync."""
        with self._locked(fcntl.LOCK_EX):
            first = self._next_id
            added = [replace(e, id=self._take_next_id()) for e in entries]
            try:
                self._save_all(added)
            except BaseException:
                self._next_id = first  # nothing recorded: the ids were never handed out
                raise
        return added

    def save_all(self, entries: list[FileEntry]) -> None:
        """One journal line for the whole batch, one fsync."""
        with self._locked(fcntl.LOCK_EX):
            self._save_all(entries)

    def _save_all(self, entries: list[FileEntry]) -> None:
        """Holding the exclusive lock, caught up."""
        for entry in entries:
            _check(entry)
        batch = {e.id for e in entries}
        for entry in entries:
            self._refuse_conflict(entry, batch)
        self._append({"op": "batch", "files": [e.to_dict() for e in entries]})
        for entry in entries:
            self._put(entry)
            self._next_id = max(self._next_id, entry.id + 1)
        self._maybe_compact()

    def _refuse_conflict(self, entry: FileEntry, batch: frozenset[int] | set[int] = frozenset()) -> None:
        """Raise NameConflictError if `entry` would make a name both a file and a
        directory (holding the exclusive lock, caught up: decided and recorded
        at once). A record that already held its name, as it was, is not
        checked again: a store made before kinds may hold both, and stays as it is."""
        if entry.status not in HOLDING:
            return
        old = self._files.get(entry.id)
        if old is not None and self._field(old, "status") in HOLDING and self._field(old, "name") == entry.name \
                and self._field(old, "kind") == entry.kind:
            return
        index = self._index()

        def held_as(name: str) -> str | None:
            """The kind of a record (other than entry's, outside the batch) holding `name`, or None."""
            for file_id in index.ids(name):
                found = self._files[file_id]
                if file_id != entry.id and file_id not in batch and self._field(found, "status") in HOLDING:
                    return self._field(found, "kind")
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

    def remove(self, file_id: int) -> None:
        """Forget a file durably."""
        with self._locked(fcntl.LOCK_EX):
            self._append({"op": "del", "id": file_id})
            self._pop(file_id)
            self._maybe_compact()
        if not self._reserve.exists():  # a delete may have freed enough to hold it again
            self._keep_reserve()

    def get(self, file_id: int) -> FileEntry | None:
        with self._locked(fcntl.LOCK_SH):
            return self._entry(file_id)

    def all(self) -> list[FileEntry]:
        """Every file, in id order."""
        with self._locked(fcntl.LOCK_SH):
            self._every()
            return [self._files[i] for i in sorted(self._files)]

    def unsettled(self) -> list[FileEntry]:
        """From the statuses and `replaces` alone: the other fields of 100,000
        settled records are not decoded at open."""
        with self._locked(fcntl.LOCK_SH):
            files = self._files
            status, replaces = (self._column("status"), self._column("replaces")) if self._columns else ([], [])

            def unsettled(found: FileEntry | int) -> bool:
                s, r = (status[found], replaces[found]) if type(found) is int else (found.status, found.replaces)
                return s in (STORING, DELETING) or (s == STORED and r in files)
            return [self._entry(i) for i in sorted(i for i, found in files.items() if unsettled(found))]

    def _stored_placed(self) -> list[tuple[int, str]]:
        """(id, placed) of every stored file, from the snapshot's columns where
        they are (no record is built: a volume list of 100,000 files)."""
        status, placed = (self._column("status"), self._column("placed")) if self._columns else ([], [])
        pairs = ((i, (status[f], placed[f]) if type(f) is int else (f.status, f.placed))
                 for i, f in self._files.items())
        return sorted((i, p) for i, (s, p) in pairs if s == STORED)

    def volume_usage(self) -> tuple[usage.Usage, list[int]]:
        with self._locked(fcntl.LOCK_SH):
            stored = self._stored_placed()
        return usage.total(p for _, p in stored if p), [i for i, p in stored if not p]

    def on_volume(self, vid: int) -> tuple[list[int], list[int]]:
        with self._locked(fcntl.LOCK_SH):
            stored = self._stored_placed()
        return [i for i, p in stored if usage.on(p, vid)], [i for i, p in stored if not p]

    def _index(self) -> NameIndex:
        if self._names is None:
            with bulk():
                names = self._column("name") if self._columns else []
                self._names = NameIndex([(names[found] if type(found) is int else found.name, file_id)
                                         for file_id, found in self._files.items()])
        return self._names

    def named(self, name: str) -> list[FileEntry]:
        with self._locked(fcntl.LOCK_SH):
            return [self._entry(i) for i in self._index().ids(name)]

    def named_each(self, names: list[str]) -> dict[str, list[FileEntry]]:
        """Under one lock and catch-up for all the names, not one per name."""
        with self._locked(fcntl.LOCK_SH):
            if 2 * len(names) > len(self._files):  # most records: build them all at once, and drop the columns
                self._every()
            entry = self._entry
            return {name: list(map(entry, ids)) for name, ids in zip(names, self._index().ids_each(names))}

    def under(self, prefix: str, recursive: bool = False) -> tuple[list[str], list[str]]:
        with self._locked(fcntl.LOCK_SH):
            return self._index().under(prefix, recursive)


class PartRegistry(PartTable):
    """Per-file manifests: manifests/<file id>.json, written through STORE/tmp."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._dir = root / MANIFESTS
        self._dir.mkdir(exist_ok=True)
        self._scratch = root / SCRATCH
        self._scratch.mkdir(exist_ok=True)

    def path(self, file_id: int) -> Path:
        return self._dir / f"{file_id}.json"

    def where(self, file_id: int) -> str:
        return str(self.path(file_id))

    def save(self, manifest: Manifest) -> None:
        try:
            write_json_atomic(self.path(manifest.file.id), manifest.to_dict(), self._scratch)
        except OSError as exc:
            raise StoreError(f"cannot write {self.path(manifest.file.id)}: {exc.strerror}", advice_for(exc)) from exc

    def save_all(self, manifests: list[Manifest]) -> None:
        """Every manifest written to tmp/ first, then one syncfs of the store's file
        system (instead of an fsync each), then each renamed into place and one
        fsync of manifests/: a crash leaves each old or new, whole."""
        written: list[tuple[Path, Path]] = []
        try:
            try:
                for manifest in manifests:
                    path = self.path(manifest.file.id)
                    tmp = self._scratch / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
                    written.append((tmp, path))
                    tmp.write_bytes(json.dumps(manifest.to_dict(), separators=(",", ":")).encode())
                sync_filesystem(self._scratch, [tmp for tmp, _ in written])
                for tmp, path in written:
                    os.replace(tmp, path)
                fsync_dir(self._dir)
            except OSError as exc:
                raise StoreError(f"cannot write the manifests in {self._dir}: {exc.strerror}",
                                 advice_for(exc)) from exc
        finally:
            for tmp, _ in written:
                tmp.unlink(missing_ok=True)

    def load(self, file_id: int) -> Manifest | None:
        path = self.path(file_id)
        if not path.exists():
            return None
        try:
            return Manifest.from_dict(read_json(path, self._root), file_id)
        except BadRecord as exc:
            raise damaged(self._root, f"{path} is damaged ({exc})") from exc

    def remove(self, file_id: int) -> None:
        self.path(file_id).unlink(missing_ok=True)

    def ids(self) -> list[int]:
        """File ids that have a manifest on disk."""
        return sorted(int(name[:-5]) for name in self._id_names())

    def highest_id(self) -> int:
        """The highest file id that has a manifest on disk, or 0. Cheap enough for
        every open (one listing, as bytes, and C-speed passes over it): the
        biggest id has the longest name, and is the greatest of those."""
        names = os.listdir(os.fsencode(self._dir))
        longest = max(map(len, names), default=0)
        top = max(compress(names, map(longest.__eq__, map(len, names))), default=b"")
        if _MANIFEST_NAME.fullmatch(top.decode(errors="replace")):
            return int(top[:-5])
        ids = self.ids()  # a name that is not a manifest's is the longest: look closer
        return ids[-1] if ids else 0

    def _id_names(self) -> list[str]:
        """The names in manifests/ that are file ids (of a manifest)."""
        return _MANIFEST_NAME.findall("\n".join(os.listdir(self._dir)))


#: A manifest's file name: a file id (no leading zeros) and .json.
_MANIFEST_NAME = re.compile(r"^[1-9][0-9]*\.json$", re.MULTILINE)


class SessionFiles(SessionTable):
    """Sessions as files STORE/sessions/<id>, each flock()ed by its process for as
    long as it has the store open. The kernel drops the lock when the process
    dies, however it dies, so a lock that another process can take proves the
    session dead; taking it is also what claims the dead session's work."""

    def __init__(self, root: Path) -> None:
        self._dir = root / SESSIONS
        self._dir.mkdir(exist_ok=True)
        self._holds = root / FILES_LOCK
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"  # the pid, for messages naming the holders
        self._fd = self._register()

    def _register(self) -> int:
        """Create our session file already locked: it appears (by rename) only once
        its lock is held, so no one can ever take it for a dead session's. It is
        empty (its name says it all), so even a full disk lets pfs open the store."""
        tmp = self._dir / f".{self.id}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(tmp, self._dir / self.id)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd

    def close(self) -> None:
        if self._fd >= 0:
            (self._dir / self.id).unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = -1

    def holders(self) -> list[str]:
        return live_sessions(self._dir.parent, self.id)

    @contextlib.contextmanager
    def claim_dead(self) -> Iterator[Callable[[str], bool]]:
        claimed: dict[str, int] = {}
        try:
            for name in os.listdir(self._dir):
                registering = name.startswith(".") and pid_alive(name[1:].split("-")[0])  # not yet locked
                fd = _dead_session(self._dir / name) if name != self.id and not registering else -1
                if fd >= 0:
                    claimed[name] = fd
            yield lambda session: session == "" or session in claimed or \
                (session != self.id and not (self._dir / session).exists())
            for name in claimed:
                (self._dir / name).unlink(missing_ok=True)
        finally:
            for fd in claimed.values():
                os.close(fd)

    @contextlib.contextmanager
    def hold(self, file_id: int, exclusive: bool) -> Iterator[None]:
        """A lock on byte `file_id` of files.lock, owned by its own open file
        description (an OFD lock), so it orders threads of one process as well."""
        fd = os.open(self._holds, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                _lock_byte(fd, file_id, fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK, wait=not exclusive)
            except BlockingIOError:
                raise StoreLockedError("it is being read by a get or verify (of this pfs or another)",
                                       "try again once it is done") from None
            try:
                yield
            finally:  # unlocked, not just closed: a child forked meanwhile has a copy of fd until it execs
                _lock_byte(fd, file_id, fcntl.F_UNLCK)
        finally:
            os.close(fd)


def _lock_byte(fd: int, offset: int, kind: int, wait: bool = False) -> None:
    """Take (or with F_UNLCK drop) an OFD lock on one byte of fd's file."""
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK,
                struct.pack("hhqqi4x", kind, os.SEEK_SET, offset, 1, 0))


def pid_alive(pid: str) -> bool:
    """Whether a process of this machine with that pid (as text) runs."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _dead_session(path: Path) -> int:
    """A descriptor holding the lock of session file `path` if its session is
    dead (now claimed by us), else -1."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, IsADirectoryError):
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return -1


def live_sessions(root: Path, but: str = "") -> list[str]:
    """The live sessions on the store at `root` (other than `but`), described by pid."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(root / SESSIONS)):
            if name == but or name.startswith("."):
                continue
            fd = _dead_session(root / SESSIONS / name)
            if fd >= 0:
                os.close(fd)
                continue
            found.append(f"pid {name.split('-')[0]}")
    return found
