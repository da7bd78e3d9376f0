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
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, astuple, dataclass, field, fields
from itertools import compress, starmap
from operator import eq, floordiv, itemgetter, neg
from pathlib import Path

from pfs import codec
from pfs.errors import DamagedError, StoreError, advice_for
from pfs.volumes import part_id

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
STATUSES = frozenset((STORING, STORED, FAILED, DELETING))
#: Bounds on what a record may claim, so that a damaged one cannot make open,
#: recovery or repair loop for ever or overflow the OS: no file has more parts
#: (16 TiB at the default 4 MiB chunk) or a bigger size or offset than this.
MAX_PARTS = 1 << 22
MAX_INT = (1 << 63) - 1
#: At most this many copies of a part, or data plus parity shards.
MAX_COPIES = 32
_EC = re.compile(r"([1-9][0-9]?)\+([1-9][0-9]?)")


def parse_ec(text: str) -> tuple[int, int] | None:
    """An erasure code "K+M" as (K, M), None for ""; ValueError if it is neither."""
    if text == "":
        return None
    m = _EC.fullmatch(text)
    if m is None or int(m[1]) + int(m[2]) > MAX_COPIES:
        raise ValueError(f"not an erasure code K+M (K data and M parity shards, at most {MAX_COPIES} in all)")
    return int(m[1]), int(m[2])


def _ec_ok(text: str) -> bool:
    try:
        parse_ec(text)
    except ValueError:
        return False
    return True


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
    write_atomic(path, json.dumps(obj, separators=(",", ":")).encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a crash leaves the old or the new file, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
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


#: The end of a sealed snapshot: `,"check":"<xxh3-128 of everything before it>"}`.
_SEAL = re.compile(rb',"check":"([0-9a-f]{32})"}')
_SEAL_BYTES = 44


def seal(obj_json: bytes) -> bytes:
    """A JSON object with a last member that checksums the rest, so that reading
    it back can prove, at memory speed, that it is byte for byte what pfs wrote."""
    body = obj_json[:-1]
    return body + b',"check":"' + codec.digest("xxh3-128", body).encode() + b'"}'


def is_sealed(data: bytes) -> bool:
    """Whether `data` ends with a seal (see `seal`) that matches the rest."""
    check = _SEAL.fullmatch(data, max(0, len(data) - _SEAL_BYTES))
    return check is not None and codec.digest("xxh3-128", memoryview(data)[:-_SEAL_BYTES]) == check[1].decode()


class BadRecord(ValueError):
    """A metadata record that is not what pfs writes (wrong type, out of range,
    inconsistent): treated as damage, never trusted."""


# -- record validation: column-wise, so 100,000 records are checked at C speed ----

Check = Callable[[Sequence], bool]


def _types(*allowed: type) -> Check:
    ok = frozenset(allowed)
    return lambda col: set(map(type, col)) <= ok


def _ints(low: int, high: int) -> Check:
    def check(col: Sequence) -> bool:
        return set(map(type, col)) <= {int} and (not col or (low <= min(col) and max(col) <= high))
    return check


def _one_of(values) -> Check:
    return lambda col: set(map(type, col)) <= {str} and set(col) <= frozenset(values)


_HEX = re.compile(r"[0-9a-f]*")


def _hex32(col: Sequence) -> bool:
    return set(map(type, col)) <= {str} and set(map(len, col)) <= {32} and bool(_HEX.fullmatch("".join(col)))


def _times(col: Sequence) -> bool:
    """Seconds since the epoch: a finite number (NaN and infinities fail both bounds)."""
    return set(map(type, col)) <= {int, float} and all(map(float(MAX_INT).__ge__, col)) and \
        all(map(float(-MAX_INT).__le__, col))


#: Every field of a file record and what it must hold.
FILE_RULES: dict[str, tuple[Check, str]] = {
    "id": (_ints(1, MAX_INT), "is not a file id"),
    "name": (_types(str), "is not text"),
    "size": (_ints(0, MAX_INT), "is not a size"),
    "status": (_one_of(STATUSES), "is not a status"),
    "parts": (_ints(0, MAX_PARTS), f"is not a part count up to {MAX_PARTS}"),
    "chunk_size": (_ints(1, MAX_INT), "is not a chunk size"),
    "codec": (_one_of(codec.CODECS), "is not a known codec"),
    "hash": (_one_of(codec.HASHES), "is not a known hash"),
    "uuid": (_hex32, "is not 32 hex digits"),
    "created": (_times, "is not a time"),
    "stored": (_ints(0, MAX_INT), "is not a size"),
    "digest": (_types(str), "is not text"),
    "reason": (_types(str), "is not text"),
    "copies": (_ints(1, MAX_COPIES), f"is not a number of copies from 1 to {MAX_COPIES}"),
    "ec": (lambda col: set(map(type, col)) <= {str} and all(map(_ec_ok, col)), "is not an erasure code K+M"),
}


def _record_problem(columns: dict[str, Sequence]) -> str | None:
    """Why these records (as columns of equal length) are not valid, or None."""
    for name, (ok, what) in FILE_RULES.items():
        if not ok(columns[name]):
            return f"{name} {what}"
    ceil_parts = map(neg, map(floordiv, map(neg, columns["size"]), columns["chunk_size"]))
    if not all(map(eq, columns["parts"], ceil_parts)):
        return "parts does not match size and chunk_size"
    if any(c != 1 and e for c, e in zip(columns["copies"], columns["ec"])):
        return "copies and ec are both set"
    return None


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
    copies: int = 1  # copies of each part on distinct volumes (1 where ec is set)
    ec: str = ""  # "K+M": each part split into K data and M parity shards on distinct volumes ("": copies)

    @classmethod
    def from_dict(cls, d: object) -> FileEntry:
        """One record as a JSON object; raises BadRecord saying what is wrong."""
        entries, bad = cls.from_dicts([d])
        if bad:
            raise BadRecord(bad[0][1])
        return entries[0]

    @classmethod
    def from_dicts(cls, records: list) -> tuple[list[FileEntry], list[tuple[int, str]]]:
        """Records as JSON objects (unknown keys are ignored, missing optional
        ones take their defaults): (valid entries, [(index, problem)] of the rest)."""
        rows = [list(map(d.get, FILE_FIELDS, _DEFAULTS)) if type(d) is dict else None for d in records]
        return cls._validated(rows)

    @classmethod
    def from_rows(cls, names: object, rows: object, sealed: bool = False
                  ) -> tuple[list[FileEntry], list[tuple[int, str]]]:
        """Records stored as rows under a list of field names (the snapshot's
        compact form: a third smaller and faster to load than objects):
        (valid entries, [(index, problem)] of the rest). `sealed` rows are proven
        byte for byte what pfs wrote, and pfs writes only records that passed
        these checks, so they are not checked again (that would make opening a
        big store half as fast again)."""
        if type(names) is not list or not _types(str)(names) or type(rows) is not list:
            raise BadRecord("no list of fields and rows")
        if names == FILE_FIELDS and set(map(type, rows)) <= {list} and set(map(len, rows)) <= {len(names)}:
            return (list(starmap(cls, rows)), []) if sealed else cls._validated(rows)
        return cls.from_dicts([dict(zip(names, row)) if type(row) is list else None for row in rows])

    @classmethod
    def _validated(cls, rows: list) -> tuple[list[FileEntry], list[tuple[int, str]]]:
        """Rows in field order (None for what is not even a record) checked all at
        once; only when that fails is each row checked, to say which are bad."""
        if None not in rows and _record_problem(_columns(rows)) is None:
            return list(starmap(cls, rows)), []
        good, bad = [], []
        for i, row in enumerate(rows):
            problem = _row_problem(row)
            if problem:
                bad.append((i, problem))
            else:
                good.append(cls(*row))
        return good, bad


FILE_FIELDS = [f.name for f in fields(FileEntry)]
_REQUIRED = object()
_DEFAULTS = [_REQUIRED if f.default is MISSING else f.default for f in fields(FileEntry)]


def _columns(rows: list[list]) -> dict[str, Sequence]:
    return {name: list(map(itemgetter(i), rows)) for i, name in enumerate(FILE_FIELDS)}


def _row_problem(row: list | None) -> str | None:
    if row is None:
        return "not a record"
    missing = [name for name, value in zip(FILE_FIELDS, row) if value is _REQUIRED]
    if missing:
        return f"no {missing[0]}"
    return _record_problem({name: (value,) for name, value in zip(FILE_FIELDS, row)})


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
    volume: int = 0  # the volume of the first copy or shard (all a record made before copies had)
    status: str = "ok"
    copies: list[int] = field(default_factory=list)  # the volume of each copy (copies layout)
    shards: list[dict] = field(default_factory=list)  # {"volume", "hash", "size"} of each shard (ec layout)

    def __post_init__(self) -> None:
        if not self.copies and not self.shards:  # one copy, on `volume` (all a record made before copies has)
            self.copies = [self.volume]

    def volumes(self) -> list[int]:
        """The volume of each piece (copy or shard), in piece order."""
        return [s["volume"] for s in self.shards] if self.shards else self.copies


@dataclass
class Manifest:
    """The PartRegistry entry of one file: a copy of its record and its parts in
    order. Self-describing, so `repair` can rebuild the FileRegistry from manifests."""

    file: FileEntry
    parts: list[PartEntry] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"format": 1, "file": asdict(self.file), "parts": [asdict(p) for p in self.parts]}

    @classmethod
    def from_dict(cls, d: object, file_id: int) -> Manifest:
        """The manifest of file `file_id`; raises
        BadRecord unless it is exactly what pfs writes: its own file's parts, in
        order, whose hashes add up to the file's digest."""
        if type(d) is not dict or type(d.get("parts")) is not list:
            raise BadRecord("not a manifest")
        file = FileEntry.from_dict(d.get("file"))
        if file.id != file_id:
            raise BadRecord(f"it describes file {file.id}")
        if len(d["parts"]) != file.parts:
            raise BadRecord(f"it lists {len(d['parts'])} parts, its file has {file.parts}")
        parts = [_part(p, file, i) for i, p in enumerate(d["parts"])]
        if codec.file_digest([p.hash for p in parts]) != file.digest:
            raise BadRecord("its part hashes do not add up to its file's digest")
        return cls(file, parts)


_PART_FIELDS = {f.name: f.default for f in fields(PartEntry)}


def _part(d: object, file: FileEntry, index: int) -> PartEntry:
    """Part `index` of `file`, checked against what the file's record implies."""
    if type(d) is not dict:
        raise BadRecord(f"part {index} is not part {index} of this file")
    part = PartEntry(**{k: d.get(k, default) for k, default in _PART_FIELDS.items() if k not in ("copies", "shards")},
                     copies=d.get("copies", []), shards=d.get("shards", []))
    offset = index * file.chunk_size
    expected = PartEntry(index, part_id(file.uuid, index), offset, min(file.chunk_size, file.size - offset),
                         part.stored, part.codec, part.hash, part.volume, part.status, part.copies, part.shards)
    numbers = (part.index, part.offset, part.size, part.volume, part.stored)
    if part != expected or set(map(type, numbers)) != {int} or not 0 <= part.stored <= MAX_INT or \
            part.codec not in (file.codec, "none") or type(part.hash) is not str or type(part.status) is not str \
            or not _pieces_ok(part, file):
        raise BadRecord(f"part {index} is not part {index} of this file")
    return part


def _pieces_ok(part: PartEntry, file: FileEntry) -> bool:
    """Exactly the copies or shards the file's layout asks for, each on its own volume."""
    if type(part.copies) is not list or type(part.shards) is not list:
        return False
    ec = parse_ec(file.ec)
    if ec:
        shards_ok = len(part.shards) == sum(ec) and part.copies == [] and all(
            type(s) is dict and set(s) == {"volume", "hash", "size"} and type(s["hash"]) is str
            and type(s["size"]) is int and 0 <= s["size"] <= MAX_INT for s in part.shards)
        if not shards_ok:
            return False
    elif len(part.copies) != file.copies or part.shards:
        return False
    volumes = part.volumes()
    return _ints(0, MAX_INT)(volumes) and len(set(volumes)) == len(volumes) and part.volume == volumes[0]


def _journal_op(op: object) -> tuple[str, FileEntry | int]:
    """A parsed journal line as (kind, record or id); raises BadRecord if it is not one."""
    if type(op) is dict and op.get("op") == "put":
        return "put", FileEntry.from_dict(op.get("file"))
    if type(op) is dict and op.get("op") == "del":
        if _ints(0, MAX_INT)([op.get("id")]):  # deleting id 0, which never exists, is a no-op
            return "del", op["id"]
        raise BadRecord("a delete of something that is not a file id")
    raise BadRecord("not a journal operation")


class FileRegistry:
    """Thread-safe map of file id -> FileEntry, persisted as snapshot + journal."""

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
        self._files: dict[int, FileEntry] = {}
        self._next_id = 1
        self._strict = strict
        self.damage: list[str] = []
        self._id_elsewhere: Callable[[], int] | None = id_elsewhere
        self._load()
        self._next_id = max(self._next_id, max(self._files, default=0) + 1)
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

    def _damaged(self, what: str, why: BaseException | str) -> None:
        problem = f"{what} is damaged ({why if isinstance(why, str) else _short(why)})"
        if self._strict:
            raise damaged(self._root, problem)
        self.damage.append(f"{problem} and was skipped")

    def _load(self) -> None:
        if self._snapshot.exists():
            self._load_snapshot()
        if self._journal_path.exists():
            self._replay()

    def _load_snapshot(self) -> None:
        try:
            data = self._snapshot.read_bytes()
            snap = json.loads(data)
            if type(snap) is not dict:
                raise BadRecord("not a snapshot")
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

    def _replay(self) -> None:
        data = self._journal_path.read_bytes()
        complete = data.rfind(b"\n") + 1  # a tail with no newline is a torn append: dropped
        lines = data[:complete].split(b"\n")[:-1]
        if not self._replay_at_once(lines):
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        self._apply(*_journal_op(json.loads(line)))
                    except BAD_JSON as exc:
                        self._damaged(f"{self._journal_path} line {number}", exc)
        if complete < len(data):
            os.truncate(self._journal_path, complete)

    def _replay_at_once(self, lines: list[bytes]) -> bool:
        """Parse every line in one json.loads call and check every record at once
        (several times faster than line by line). False if anything is off; the
        caller then replays line by line, which names the damaged line. Nothing is
        applied before everything checked out, and replay is idempotent anyway."""
        lines = [line for line in lines if line.strip()]
        try:
            ops = json.loads(b"[" + b",".join(lines) + b"]")
        except BAD_JSON:
            return False
        if len(ops) != len(lines) or not _types(dict)(ops):
            return False
        kinds = [op.get("op") for op in ops]
        puts, bad = FileEntry.from_dicts([op.get("file") for op, kind in zip(ops, kinds) if kind == "put"])
        if bad or not _one_of(("put", "del"))(kinds) or \
                not _ints(0, MAX_INT)([op.get("id") for op, kind in zip(ops, kinds) if kind == "del"]):
            return False
        puts = iter(puts)
        for op, kind in zip(ops, kinds):
            self._apply(kind, next(puts) if kind == "put" else op["id"])
        return True

    def _apply(self, kind: str, what: FileEntry | int) -> None:
        """Replay one journal operation: put a record, or delete a file id."""
        if kind == "put":
            self._files[what.id] = what
            file_id = what.id
        else:
            file_id = what
            self._files.pop(file_id, None)
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
            write_atomic(self._snapshot, seal(json.dumps(snap, separators=(",", ":")).encode()))
            os.ftruncate(self._journal, 0)
            os.fsync(self._journal)
            self._journal_bytes = self._opened_bytes = 0

    def new_id(self) -> int:
        """Reserve the next file id; ids are never reused, even after delete."""
        with self._lock:
            if self._id_elsewhere is not None:
                self._next_id = max(self._next_id, self._id_elsewhere() + 1)
                self._id_elsewhere = None
            file_id = self._next_id
            self._next_id += 1
            return file_id

    def save(self, entry: FileEntry) -> None:
        """Record (insert or replace) a file durably. Only a valid record is
        written, which is what lets a sealed snapshot load unchecked."""
        problem = _row_problem([getattr(entry, name) for name in FILE_FIELDS])
        if problem:
            raise BadRecord(f"file {entry.id}: {problem}")
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
