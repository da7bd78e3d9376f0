"""The records of the store's metadata (files, parts, manifests) and the one
place they are validated, whichever registry keeps them: a record that is not
exactly what pfs writes is damage, never trusted."""

from __future__ import annotations

import contextlib
import functools
import gc
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import MISSING, dataclass, field, fields
from itertools import starmap
from operator import eq, floordiv, itemgetter, neg

from pfs import codec

STORING, STORED, FAILED, DELETING = "storing", "stored", "failed", "deleting"
STATUSES = frozenset((STORING, STORED, FAILED, DELETING))
#: What a record is: a regular file (parts hold its bytes), a directory (explicit,
#: so that an empty one exists) or a symbolic link (its target recorded, never followed).
FILE, DIR, SYMLINK = "file", "dir", "symlink"
#: Special files, made through the mount (mknod, mkfifo, bind): no bytes, a device's number in `rdev`.
FIFO, CHAR, BLOCK, SOCKET = "fifo", "char", "block", "socket"
SPECIAL = frozenset((FIFO, CHAR, BLOCK, SOCKET))
#: A hard link: one name of a file that has several; `target` is the name of
#: the file record holding the bytes (kept under HARDLINKS), whose `links` counts its names.
LINK = "link"
KINDS = frozenset((FILE, DIR, SYMLINK, LINK)) | SPECIAL
#: Where the files that have hard links keep their bytes (one record each, never shown by the mount).
HARDLINKS = ".pfs-mount/links"
#: Statuses whose record holds its name: a name held so is a file or a directory, never both.
HOLDING = frozenset((STORING, STORED))
#: The highest uid or gid a record keeps (32 bits, as Linux has).
MAX_OWNER = (1 << 32) - 1
#: Bounds on what a record may claim, so that a damaged one cannot make open,
#: recovery or repair loop for ever or overflow the OS: no file has more parts
#: (4 TiB at the default 4 MiB chunk) or a bigger size or offset than this.
MAX_PARTS = 1 << 20
MAX_INT = (1 << 63) - 1
#: At most this many copies of a part, or data plus parity shards.
MAX_COPIES = 32
_EC = re.compile(r"([1-9][0-9]?)\+([1-9][0-9]?)")


@functools.lru_cache(maxsize=1 << 14)
def part_id(file_uuid: str, index: int) -> str:
    """The uuid of a file's index-th part. Derived from the file's uuid, so a
    put interrupted by a crash can be rolled back from its journal record alone.
    Cached: a part's id is asked for at each step of storing it (a SHA-1 each)."""
    return uuid.uuid5(uuid.UUID(file_uuid), str(index)).hex


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


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while many records are built at once (a
    snapshot's, a listing's rows): they hold no reference cycles, yet every
    thousand new objects the collector would walk them all again, which takes
    a third of the time to open and list a store of 100,000 files."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()  # then back to the oldest generation: moved there at once, not walked on the way
            gc.unfreeze()
            gc.enable()


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


def _optional(check: Check) -> Check:
    """`check` on the values that are not None (fields older records lack)."""
    return lambda col: check([v for v in col if v is not None])


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
    "mode": (_optional(_ints(0, 0o7777)), "is not a permission mode"),
    "mtime": (_optional(_ints(-MAX_INT, MAX_INT)), "is not a time in nanoseconds"),
    "session": (_types(str), "is not text"),
    "copies": (_ints(1, MAX_COPIES), f"is not a number of copies from 1 to {MAX_COPIES}"),
    "replaces": (_ints(0, MAX_INT), "is not a file id"),
    "ec": (lambda col: set(map(type, col)) <= {str} and all(map(_ec_ok, col)), "is not an erasure code K+M"),
    "kind": (_one_of(KINDS), "is not a kind of entry (file, dir, symlink, link, fifo, char, block, socket)"),
    "target": (_types(str), "is not text"),
    "uid": (_optional(_ints(0, MAX_OWNER)), "is not a user id"),
    "gid": (_optional(_ints(0, MAX_OWNER)), "is not a group id"),
    "placed": (lambda col: all(map(_placed_ok, col)), "is not VOLUME:PIECES:BYTES ..."),
    "ctime": (_optional(_ints(-MAX_INT, MAX_INT)), "is not a time in nanoseconds"),
    "atime": (_optional(_ints(-MAX_INT, MAX_INT)), "is not a time in nanoseconds"),
    "rdev": (_ints(0, MAX_INT), "is not a device number"),
    "links": (_ints(1, MAX_INT), "is not a count of names"),
}


def _placed_ok(text: object) -> bool:
    from pfs.registry import usage  # usage builds on PartEntry, below

    return usage.valid(text)


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
    if any(k != FILE and (size or parts) for k, size, parts in zip(columns["kind"], columns["size"], columns["parts"])):
        return "a directory or symlink has a size"
    if any((k in (SYMLINK, LINK)) != bool(t) for k, t in zip(columns["kind"], columns["target"])):
        return "target is not set exactly for a symlink or hard link"
    if any(r and k not in (CHAR, BLOCK) for k, r in zip(columns["kind"], columns["rdev"])):
        return "rdev is set for what is not a device"
    return None


@dataclass(slots=True)
class FileEntry:
    """One entry of the store as the registry knows it: a regular file, a
    directory or a symbolic link (`kind`), under its name (a path).

    A file's bytes are in parts (see Manifest); a directory or symlink record
    has no parts and no manifest (size 0), and a symlink's `target` is the
    link's text, kept as it was read and never followed. `mode` (permission
    bits with setuid, setgid and sticky), `mtime` (ns), `uid` and `gid` are the
    source's (None: not known, in records older than them); `ctime` and `atime`
    (ns) are the status change and access times the mount keeps (None: as
    mtime). A special file (SPECIAL) has no bytes, a device its `rdev`; a hard
    link (LINK) names the record holding the bytes in `target`. A name held by a `storing` or `stored` record is
    a file or a directory, never both: the registry refuses a record that would
    make it both (NameConflictError), whoever writes it.
    """

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
    session: str = ""  # the session that wrote a storing or deleting record ("": before sessions existed)
    copies: int = 1  # copies of each part on distinct volumes (1 where ec is set)
    ec: str = ""  # "K+M": each part split into K data and M parity shards on distinct volumes ("": copies)
    replaces: int = 0  # the file this one took the name of, to be deleted (0: none, or kept)
    kind: str = FILE  # FILE, DIR or SYMLINK (records older than kinds are files)
    target: str = ""  # a symlink's target, as readlink gave it ("" for the other kinds)
    uid: int | None = None  # the source's owner (None: not known)
    gid: int | None = None  # the source's group (None: not known)

    @property
    def is_dir(self) -> bool:
        return self.kind == DIR

    def to_dict(self) -> dict:
        """The record as a JSON object: its fields are plain values, so no deep
        copy is needed (dataclasses.asdict makes one, a third of a small put's CPU)."""
        return {name: getattr(self, name) for name in FILE_FIELDS}

    def to_line(self) -> dict:
        """to_dict without the fields that hold their defaults, which a reader
        fills in again (a journal line: a third shorter for a new small file)."""
        return {name: value for name, value in zip(FILE_FIELDS, self.values())
                if _LINE_DEFAULTS.get(name, _REQUIRED) != value}

    def values(self) -> list:
        """The record's fields in order (a database row)."""
        return [getattr(self, name) for name in FILE_FIELDS]
    placed: str = ""  # what its pieces take on each volume (see pfs.registry.usage; "": not known)
    ctime: int | None = None  # status change time in ns, kept by the mount (None: as mtime)
    atime: int | None = None  # access time in ns, kept by the mount (None: as mtime)
    rdev: int = 0  # a character or block device's number (0 for every other kind)
    links: int = 1  # the names a file with hard links has (each a LINK record naming it)

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
_LINE_DEFAULTS = {name: default for name, default in zip(FILE_FIELDS, _DEFAULTS) if default is not _REQUIRED}


def _columns(rows: list[list]) -> dict[str, Sequence]:
    return {name: list(map(itemgetter(i), rows)) for i, name in enumerate(FILE_FIELDS)}


def rows_problem(rows: list[list]) -> tuple[int, str] | None:
    """The first bad row of `rows` (in field order) and what is wrong with it, or
    None. Checked column by column, all at once; row by row only if that fails."""
    if None not in rows and _record_problem(_columns(rows)) is None:
        return None
    return next(((i, problem) for i, row in enumerate(rows) if (problem := _row_problem(row))), None)


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
    sealed: str = ""  # "RECIPIENT:KEY": sealed to a write-only recipient (docs/encryption.md); "": not

    def __post_init__(self) -> None:
        if not self.copies and not self.shards:  # one copy, on `volume` (all a record made before copies has)
            self.copies = [self.volume]

    def to_dict(self) -> dict:
        """The part as a JSON object (its lists shared, not copied; `sealed` only where it is set)."""
        d = {name: getattr(self, name) for name in _PART_NAMES}
        if not self.sealed:
            del d["sealed"]
        return d

    def volumes(self) -> list[int]:
        """The volume of each piece (copy or shard), in piece order."""
        return [s["volume"] for s in self.shards] if self.shards else self.copies

    def piece_sizes(self) -> list[int]:
        """The bytes of each piece (copy or shard) on its volume, in piece order."""
        return [s["size"] for s in self.shards] if self.shards else [self.stored] * len(self.copies)


@dataclass
class Manifest:
    """The PartRegistry entry of one file: a copy of its record and its parts in
    order. Self-describing, so `repair` can rebuild the FileRegistry from manifests."""

    file: FileEntry
    parts: list[PartEntry] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"format": 1, "file": self.file.to_dict(), "parts": [p.to_dict() for p in self.parts]}

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
_PART_NAMES = list(_PART_FIELDS)


def _part(d: object, file: FileEntry, index: int) -> PartEntry:
    """Part `index` of `file`, checked against what the file's record implies."""
    if type(d) is not dict:
        raise BadRecord(f"part {index} is not part {index} of this file")
    part = PartEntry(**{k: d.get(k, default) for k, default in _PART_FIELDS.items() if k not in ("copies", "shards")},
                     copies=d.get("copies", []), shards=d.get("shards", []))
    offset = index * file.chunk_size
    expected = PartEntry(index, part_id(file.uuid, index), offset, min(file.chunk_size, file.size - offset),
                         part.stored, part.codec, part.hash, part.volume, part.status, part.copies, part.shards,
                         part.sealed)
    numbers = (part.index, part.offset, part.size, part.volume, part.stored)
    if part != expected or set(map(type, numbers)) != {int} or not 0 <= part.stored <= MAX_INT or \
            part.codec not in (file.codec, "none") or type(part.hash) is not str or type(part.status) is not str \
            or type(part.sealed) is not str or not _pieces_ok(part, file):
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
