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

import errno
import json
import logging
import os
import threading
from dataclasses import asdict, astuple, dataclass, field, fields
from pathlib import Path

from pfs.errors import StoreError, advice_for

log = logging.getLogger("pfs")

SNAPSHOT = "files.json"
JOURNAL = "files.jsonl"
MANIFESTS = "manifests"
RESERVE = "reserve"
#: Disk space held back so that a full disk can still record deletes and rollbacks.
RESERVE_BYTES = 1 << 20
#: The journal is folded into the snapshot once it outgrows both this and the snapshot.
MIN_COMPACT_BYTES = 256 * 1024

STORING, STORED, FAILED, DELETING = "storing", "stored", "failed", "deleting"


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


def write_json_atomic(path: Path, obj: object) -> None:
    """Replace `path` with `obj` as JSON so a crash leaves the old or the new file, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    data = json.dumps(obj, separators=(",", ":")).encode()
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


def damaged(root: Path, problem: str) -> StoreError:
    """The error for damaged metadata: say exactly what is wrong and point at `repair`."""
    return StoreError(problem, f"run `pfs --store {root} repair` to rebuild what can be rebuilt")


def read_json(path: Path, root: Path) -> object:
    """Load a JSON file, turning damage into a StoreError that names the file."""
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged(root, f"{path} is damaged ({exc})") from exc


@dataclass(slots=True)
class FileEntry:
    """One stored file as the FileRegistry knows it."""

    id: int
    name: str
    size: int
    status: str
    parts: int
    chunk_size: int
    codec: str
    hash: str
    uuid: str
    created: float
    stored: int = 0
    digest: str = ""
    reason: str = ""
    mode: int | None = None  # permission bits of the source, restored by get (None: older record)
    mtime: int | None = None  # the source's modification time in nanoseconds, restored by get

    @classmethod
    def from_dict(cls, d: dict) -> FileEntry:
        try:
            return cls(**d)
        except TypeError:  # a field this version does not know: ignore it
            return cls(**{k: v for k, v in d.items() if k in FILE_FIELDS})

    @classmethod
    def from_rows(cls, names: list[str], rows: list[list]) -> list[FileEntry]:
        """Records stored as rows under a list of field names (the snapshot's
        compact form: a third smaller and faster to load than objects)."""
        if names == FILE_FIELDS:
            return [cls(*row) for row in rows]
        return [cls.from_dict(dict(zip(names, row))) for row in rows]


FILE_FIELDS = [f.name for f in fields(FileEntry)]


@dataclass
class PartEntry:
    """One part of a file as its manifest records it."""

    index: int
    id: str
    offset: int
    size: int
    stored: int
    codec: str
    hash: str
    volume: int = 0
    status: str = "ok"


@dataclass
class Manifest:
    """The PartRegistry entry of one file: a copy of its record and its parts in
    order. Self-describing, so `repair` can rebuild the FileRegistry from manifests."""

    file: FileEntry
    parts: list[PartEntry] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"format": 1, "file": asdict(self.file), "parts": [asdict(p) for p in self.parts]}

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        return cls(FileEntry.from_dict(d["file"]), [PartEntry(**p) for p in d["parts"]])


class FileRegistry:
    """Thread-safe map of file id -> FileEntry, persisted as snapshot + journal."""

    def __init__(self, root: Path, strict: bool = True) -> None:
        """Load the registry. Damage raises a StoreError, or with strict=False
        is skipped and described in `self.damage` (for repair)."""
        self._root = root
        self._snapshot = root / SNAPSHOT
        self._journal_path = root / JOURNAL
        self._lock = threading.RLock()
        self._files: dict[int, FileEntry] = {}
        self._next_id = 1
        self._strict = strict
        self.damage: list[str] = []
        self._load()
        self._journal = os.open(self._journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._journal_bytes = self._opened_bytes = os.fstat(self._journal).st_size
        self._reserve = root / RESERVE
        self._keep_reserve()

    def close(self) -> None:
        """Fold a journal this session grew into the snapshot, so the next open
        does not replay it line by line, then close it."""
        grew = self._journal_bytes > max(self._opened_bytes, MIN_COMPACT_BYTES)
        if grew and self._journal_bytes * 4 > self._snapshot_bytes():  # still amortised O(1) per update
            self._compact_if_possible()
        os.close(self._journal)

    def _damaged(self, what: str, exc: Exception) -> None:
        if self._strict:
            raise damaged(self._root, f"{what} is damaged ({exc})") from exc
        self.damage.append(f"{what} is damaged ({exc}) and was skipped")

    def _load(self) -> None:
        if self._snapshot.exists():
            try:
                snap = json.loads(self._snapshot.read_bytes())
                files = {e.id: e for e in FileEntry.from_rows(snap["fields"], snap["files"])}
                self._next_id, self._files = snap["next_id"], files
            except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
                self._damaged(str(self._snapshot), exc)
        if self._journal_path.exists():
            self._replay()

    def _replay(self) -> None:
        data = self._journal_path.read_bytes()
        complete = data.rfind(b"\n") + 1  # a tail with no newline is a torn append: dropped
        lines = data[:complete].split(b"\n")[:-1]
        if not self._replay_at_once(lines):
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        self._apply(json.loads(line))
                    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
                        self._damaged(f"{self._journal_path} line {number}", exc)
        if complete < len(data):
            os.truncate(self._journal_path, complete)

    def _replay_at_once(self, lines: list[bytes]) -> bool:
        """Parse every line in one json.loads call (several times faster than line
        by line). False if anything is off; the caller then replays line by line,
        which names the damaged line. Replay is idempotent, so starting over is safe."""
        lines = [line for line in lines if line.strip()]
        try:
            ops = json.loads(b"[" + b",".join(lines) + b"]")
            if len(ops) != len(lines):
                return False
            for op in ops:
                self._apply(op)
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            return False
        return True

    def _apply(self, op: dict) -> None:
        if op["op"] == "put":
            entry = FileEntry.from_dict(op["file"])
            self._files[entry.id] = entry
            file_id = entry.id
        elif op["op"] == "del":
            file_id = op["id"]
            self._files.pop(file_id, None)
        else:
            raise KeyError(f"unknown op {op['op']!r}")
        self._next_id = max(self._next_id, file_id + 1)

    def _append(self, op: dict) -> None:
        """Append one line durably, or leave the journal as it was and raise.
        On a full disk the space reserve is given up once, so that deletes and
        rollbacks, which free space, can still be recorded."""
        line = json.dumps(op, separators=(",", ":")).encode() + b"\n"
        for attempt in range(2):
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._journal, view):]
                os.fsync(self._journal)
                self._journal_bytes += len(line)
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
            self.compact()
        except OSError as exc:
            log.warning("journal compaction postponed: %s", exc)

    def _snapshot_bytes(self) -> int:
        try:
            return self._snapshot.stat().st_size
        except FileNotFoundError:
            return 0

    def compact(self) -> None:
        """Fold the journal into a new snapshot and empty the journal."""
        with self._lock:
            snap = {"format": 1, "next_id": self._next_id, "fields": FILE_FIELDS,
                    "files": [astuple(f) for f in self._files.values()]}
            write_json_atomic(self._snapshot, snap)
            os.ftruncate(self._journal, 0)
            os.fsync(self._journal)
            self._journal_bytes = self._opened_bytes = 0

    def new_id(self) -> int:
        """Reserve the next file id; ids are never reused, even after delete."""
        with self._lock:
            file_id = self._next_id
            self._next_id += 1
            return file_id

    def save(self, entry: FileEntry) -> None:
        """Record (insert or replace) a file durably."""
        with self._lock:
            self._append({"op": "put", "file": asdict(entry)})
            self._files[entry.id] = entry
            self._next_id = max(self._next_id, entry.id + 1)
            self._maybe_compact()

    def remove(self, file_id: int) -> None:
        """Forget a file durably."""
        with self._lock:
            self._append({"op": "del", "id": file_id})
            self._files.pop(file_id, None)
            self._maybe_compact()
            if not self._reserve.exists():  # a delete may have freed enough to hold it again
                self._keep_reserve()

    def get(self, file_id: int) -> FileEntry | None:
        with self._lock:
            return self._files.get(file_id)

    def all(self) -> list[FileEntry]:
        """Every file, in id order."""
        with self._lock:
            return [self._files[i] for i in sorted(self._files)]


class PartRegistry:
    """Per-file manifests: manifests/<file id>.json."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._dir = root / MANIFESTS
        self._dir.mkdir(exist_ok=True)

    def path(self, file_id: int) -> Path:
        return self._dir / f"{file_id}.json"

    def save(self, manifest: Manifest) -> None:
        try:
            write_json_atomic(self.path(manifest.file.id), manifest.to_dict())
        except OSError as exc:
            raise StoreError(f"cannot write {self.path(manifest.file.id)}: {exc.strerror}", advice_for(exc)) from exc

    def load(self, file_id: int) -> Manifest | None:
        path = self.path(file_id)
        if not path.exists():
            return None
        try:
            return Manifest.from_dict(read_json(path, self._root))
        except (KeyError, TypeError, AttributeError) as exc:
            raise damaged(self._root, f"{path} is damaged ({exc!r})") from exc

    def remove(self, file_id: int) -> None:
        self.path(file_id).unlink(missing_ok=True)

    def ids(self) -> list[int]:
        """File ids that have a manifest on disk."""
        return sorted(int(p.stem) for p in self._dir.glob("*.json") if p.stem.isdigit())
