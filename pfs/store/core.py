"""The Store facade: open (lock, recover), put, get, delete, list, verify.

This is the only module that touches both the registries and the engine.
Nothing here knows about the shell; every failure is a typed PfsError.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import logging
import os
import re
import stat
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor, Future, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pfs import codec, names
from pfs.volumes import placement
from pfs.engine import worker
from pfs.failures import unreadable
from pfs.engine.engine import Engine, worker_count
from pfs.errors import (DamagedError, DestinationError, advice_for, IntegrityError, NotFoundError, PfsError,
                        StoreError, StoreLockedError, UsageError, VolumeError,
                        VolumeUnavailableError)
from pfs.engine.governor import MemoryGovernor
from pfs.volumes.redundancy import Layout, check_layout
from pfs.registry import (DELETING, FAILED, FILES_LOCK, JOURNAL, MANIFESTS, MAX_COPIES, MAX_INT, MAX_PARTS, RESERVE,
                          SCRATCH, SESSIONS, SNAPSHOT, STORED, STORING, FileEntry, FileRegistry, Manifest, PartEntry,
                          PartRegistry, SessionFiles, damaged, fsync_dir, live_sessions, pid_alive, read_json,
                          write_json_atomic)
from pfs.registry.postgres import is_database
from pfs.store.repair import rebuild, set_aside
from pfs.units import format_option, format_size
from pfs.volumes import MARKER, part_id
from pfs.volumes.volset import DRAINING, FIRST_VOLUME, VolumeConfig, VolumeSet, parse_volumes

FORMAT = 2
CONFIG = "store.json"
LOCK = "lock"
VOLUMES = "volumes"
#: Where heals and drains note the files whose pieces they are moving (see _recover).
INTENTS = "intents"
#: What tells a directory is (the rest of) a pfs store, even without its store.json.
STORE_FILES = frozenset((SNAPSHOT, JOURNAL, MANIFESTS, VOLUMES))
#: The store's own files and directories (name: whether it is a directory).
LAYOUT = {CONFIG: False, SNAPSHOT: False, JOURNAL: False, RESERVE: False, FILES_LOCK: False, MANIFESTS: True,
          SESSIONS: True, SCRATCH: True, INTENTS: True}
#: Part keys removed between two progress reports of a delete.
REMOVE_BATCH = 512

log = logging.getLogger("pfs")

Progress = Callable[[int], None]


def _no_progress(_: int) -> None:
    pass


@dataclass(frozen=True)
class Settings:
    """How new files are stored; each file records its own, so any session reads any file."""

    chunk_size: int = 4 << 20
    codec: str = "zstd"
    hash: str = "xxh3-128"
    copies: int = 1
    ec: str = ""


@dataclass(frozen=True)
class VolumeRow:
    """A volume as `volume list` shows it (None: unknown, the volume is missing)."""

    id: int
    location: str
    weight: float
    status: str
    used: int | None
    free: int | None
    parts: int | None


@dataclass(frozen=True)
class Redundancy:
    """A file's copies or shards: how many each part should have, how many its
    worst part has on volumes that keep them (`present`; None until the file is
    stored) and, when some part is short, which parts and why."""

    layout: Layout
    present: int | None
    short: str = ""

    def __str__(self) -> str:
        return self.layout.describe() + (f": {self.short}" if self.short else "")

    @property
    def counts(self) -> str:
        """Present of wanted, e.g. 2/2 or 5/6; - until stored."""
        return "-" if self.present is None else f"{self.present}/{self.layout.width}"


@dataclass
class Findings:
    """What reading a file found: parts that cannot be read (`damage`), damaged
    or unreachable pieces left as they are (`bad`; the parts still read), and
    pieces rewritten or moved (`healed`)."""

    damage: list[Damage] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    healed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Damage:
    """One part that failed verification."""

    file_id: int
    name: str
    index: int
    offset: int
    size: int
    problem: str

    @property
    def unreachable(self) -> bool:
        """No damage: the part's pieces could not be reached (see worker.Unreachable)."""
        return isinstance(self.problem, worker.Unreachable)

    def __str__(self) -> str:
        end = self.offset + self.size - 1 if self.size else self.offset
        return f"part {self.index} bytes {self.offset}-{end}: {self.problem}"


def _creation_leftover(root: Path, name: str) -> bool:
    """What a store creation killed before it wrote store.json may have left:
    the lock, the temporary file of the store.json write, and the first
    volume's directory holding nothing but its marker (written just before)."""
    if name == VOLUMES:
        first = root / FIRST_VOLUME
        return os.listdir(root / VOLUMES) in ([], ["0"]) and (not first.is_dir() or all(
            n.startswith((MARKER, f".{MARKER}.")) for n in os.listdir(first)))
    return name == LOCK or (name.startswith(f".{CONFIG}.") and name.endswith(".tmp"))


def _settings_ok(config: dict) -> bool:
    """A chunk size, codec and hash pfs can use."""
    return type(config.get("chunk_size")) is int and 0 < config["chunk_size"] <= MAX_INT \
        and config.get("codec") in codec.CODECS and config.get("hash") in codec.HASHES



def _old_volumes_ok(volumes: object) -> bool:
    """A format 1 store's volumes: a non-empty list of distinct directories inside the store."""
    return type(volumes) is list and bool(volumes) and all(
        type(v) is str and v and not os.path.isabs(v) and ".." not in Path(v).parts and Path(v).parts
        for v in volumes) and len(set(volumes)) == len(volumes)


def _volumes_ok(config: dict) -> bool:
    """A format 2 store's identity and volumes."""
    try:
        volumes = parse_volumes(config.get("volumes"))
    except (TypeError, ValueError):
        return False
    next_id = config.get("next_volume")
    return type(config.get("id")) is str and len(config["id"]) == 32 and type(next_id) is int and \
        next_id > max(v.id for v in volumes)


def _redundancy_ok(config: dict) -> bool:
    try:
        check_layout(config.get("copies", 1), config.get("ec", ""))
    except (UsageError, TypeError):
        return False
    return type(config.get("copies", 1)) is int and 1 <= config.get("copies", 1) <= MAX_COPIES


def _marker(volume) -> dict | None:
    """A volume's marker, None where there is none (or no volume yet)."""
    try:
        return volume.read_marker()
    except VolumeError:
        return None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever a file is replaced (atomic writes rename a new one in)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """An exclusive flock of `path` (created if need be) for the duration."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:  # unlocked, not just closed: a child forked meanwhile has a copy of fd until it execs
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _writer_alive(temp_name: str) -> bool:
    """Whether the process that names a temporary file `.NAME.PID.THREAD.tmp` still runs."""
    fields = temp_name.split(".")
    return len(fields) > 3 and pid_alive(fields[-3])


def _temporaries(directory: Path, prefix: str = ".") -> list[Path]:
    """The temporary files `PREFIX....tmp` of atomic writes in `directory` (none
    if it cannot be listed), by one listing: a glob would match each of
    100,000 manifests against its pattern at every open."""
    try:
        found = os.listdir(directory)
    except OSError:
        return []
    return [directory / name for name in found if name.startswith(prefix) and name.endswith(".tmp")]


def default_root() -> Path:
    """The store used when none is given: $PFS_STORE, else the user data directory."""
    if os.environ.get("PFS_STORE"):
        return Path(os.environ["PFS_STORE"])
    from platformdirs import user_data_dir

    return Path(user_data_dir("pfs")) / "store"


def _doomed_id(replaced: FileEntry | None, by: FileEntry, keep: bool) -> int:
    """The id of the file `by` takes the name of and must delete (0: none, or kept):
    recorded in `by`'s own record, so the replace is one atomic record write."""
    return 0 if replaced is None or replaced.id == by.id or keep else replaced.id


def batched(items: list, n: int) -> list[list]:
    return [items[i:i + n] for i in range(0, len(items), n)]


def part_memory(size: int, layout: Layout = Layout()) -> int:
    """Worst-case bytes a part needs in a worker (see Layout.memory)."""
    return layout.memory(size)


def user_path(text: str) -> Path:
    """A path as the user typed it, with ~ expanded; refused if no path could be that."""
    if "\0" in text:
        raise UsageError(f"{text!r} is not a path (it contains a NUL byte)")
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # ~user for an unknown user
        raise UsageError(f"cannot expand {text}: {exc}") from None


def proc_path(fd: int) -> str:
    """A path by which a pool worker reaches the very file behind our descriptor
    `fd`, whatever is renamed over its name meanwhile (and even when it has none)."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISLNK: "a symbolic link"}
    return next((word for test, word in kinds.items() if test(mode)), "not a regular file")


@dataclass(frozen=True)
class Source:
    """A put source, opened once: every part is read from this one file (its
    descriptor), and `before` is how it looked when the put began."""

    fd: int
    before: os.stat_result

    def change(self) -> str:
        """How the file changed since the put began ("" if it did not): written,
        truncated, renamed over or removed all show in its size, mtime or ctime."""
        now, was = os.fstat(self.fd), self.before
        if now.st_size != was.st_size or not self.size_is_true():
            return "changed size"
        if now.st_mtime_ns != was.st_mtime_ns:
            return "was written"
        if now.st_ctime_ns != was.st_ctime_ns:
            return "was changed (replaced, removed or modified)"
        return ""

    def size_is_true(self) -> bool:
        """Whether the file holds exactly st_size bytes. Files on /proc claim 0 bytes
        (or 4 KiB on /sys) and generate their contents as they are read."""
        size = self.before.st_size
        return not os.pread(self.fd, 1, size) and (size == 0 or len(os.pread(self.fd, 1, size - 1)) == 1)


def source_changed(source: str, how: str) -> PfsError:
    return PfsError(f"{source} {how} while it was being stored", "put it again once nothing is writing it")


def open_source(path: Path, name: str) -> Source:
    """Open a put source once, refusing anything but a regular file whose size is
    true. Checked before opening (so a FIFO or a device is never opened) and
    after (so what was opened is what was checked)."""
    fd = -1
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
            source = Source(fd, os.fstat(fd))
            mode = source.before.st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"{name} is {file_kind(mode)}", "put stores one regular file at a time")
        if not source.size_is_true():
            raise UsageError(f"{name} does not hold the {format_size(source.before.st_size)} its size says "
                             "(files on /proc and /sys are made up as they are read)",
                             "copy it to an ordinary file first and put that")
        return source
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        if isinstance(exc, FileNotFoundError):
            raise NotFoundError(f"{name} does not exist") from None
        if isinstance(exc, OSError):
            raise UsageError(f"{name} cannot be read ({exc.strerror})", advice_for(exc)) from None
        raise


def safe_name(entry: FileEntry) -> str:
    """The stored name reduced to a plain file name: no directories, no control
    characters, never '.' or '..' -- so get cannot write outside its destination."""
    name = "".join(c if c.isprintable() else "_" for c in os.path.basename(entry.name.replace("\\", "/")))
    return name if name not in ("", ".", "..") else f"file-{entry.id}"


class Store:
    """An open pfs store, shared with any other pfs that has it open. Use as a
    context manager: it holds a session of the store."""

    def __init__(self, root: Path | str, overrides: dict | None = None, workers: int = os.cpu_count() or 1,
                 max_memory: int = 256 << 20, repair: bool = False, data: Path | str | None = None) -> None:
        """Open (creating if new) the store at `root`: a directory, or a PostgreSQL
        URI whose part data lives in the directory `data` (default: the one its
        settings name). `overrides` may set chunk_size, codec and hash for new
        files; otherwise the store's defaults apply. With `repair`, damaged
        metadata is rebuilt (see pfs.store.repair) instead of refused."""
        self.location = str(root)
        self._lock_fd = -1
        self._db = None
        self._config_stamp: tuple | None = None  # store.json as the volumes were last taken from it
        self._sources: dict[int, Source] = {}  # puts begun and not yet finished, by file id
        self._readers: Counter[int] = Counter()  # file id -> gets, verifies and open readers on it
        self._doomed: set[int] = set()  # replaced files to delete once their last reader is done
        self._readers_lock = threading.Lock()
        self.max_memory = max_memory
        if is_database(self.location):
            if repair:
                raise UsageError("repair rebuilds the files of a directory store; a database store has none",
                                 "every update of a database store is a transaction: there is nothing to rebuild")
            self._open_database(overrides or {}, data)
        else:
            self._open_directory(Path(root), overrides or {}, repair)
        self.workers = worker_count(workers, max_memory, part_memory(self.settings.chunk_size))
        self.workers_note = "" if self.workers == workers else \
            f"using {self.workers} workers, not {workers}: more would not fit --max-memory " \
            f"{format_size(max_memory)} or the {os.cpu_count()} CPUs"
        self.engine = Engine(self.workers, MemoryGovernor(max_memory), self.volset.preload())
        self.volset.prober = lambda volume: self.engine.run(worker.volume_status, [(0, (volume.describe(),))])[0]

    # -- opening and closing ------------------------------------------------

    def _open_directory(self, root: Path, overrides: dict, repair: bool) -> None:
        """Open the store whose metadata are files in `root`, sharing it with
        other processes (or, to repair, alone)."""
        self.root = root
        self.description = str(root.absolute())
        max_memory = self.max_memory
        notes: list[str] = []
        try:
            config = self._read_config()
        except DamagedError as exc:
            if not repair:
                raise
            config, notes = None, [f"{exc.message}; rebuilt from the defaults and the volumes on disk"]
        self._settle(config, overrides)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock(alone=repair)
        try:
            if config is None and not notes:
                config = self._read_config()  # another pfs may have created it before we held the lock
            notes += self._check_layout(LAYOUT, repair)
            self.created = config is None
            if config is None or config["format"] == 1:
                config = self._claim_alone(config, reread=not repair)
            self.config = config
            inside = [v.url for v in parse_volumes(config["volumes"]) if "://" not in v.url and not os.path.isabs(v.url)]
            notes += self._check_layout(dict.fromkeys(inside, True), repair)
            self._open_volumes(config)
            self.sessions = SessionFiles(self.root)
            self.parts = PartRegistry(self.root)
            self.files = FileRegistry(self.root, strict=not repair, id_elsewhere=self.parts.highest_id)
            self.repair_report = rebuild(self.root, self.files, self.parts, self.volset, max_memory // 2,
                                         notes) if repair else None
            self.recovered = self._recover()
        except BaseException:
            self._close_registries()
            self._unlock()
            raise

    def _open_volumes(self, config: dict) -> None:
        """The volume set, and the store's own working directories beside it."""
        self.volset = VolumeSet(self.root.absolute(), config["id"], parse_volumes(config["volumes"]))
        self.next_volume: int = config["next_volume"]
        self.tmp = self.root / SCRATCH
        self.tmp.mkdir(exist_ok=True)
        (self.root / INTENTS).mkdir(exist_ok=True)

    def _settle(self, config: dict | None, overrides: dict) -> None:
        """The settings for new files: the store's, unless the options override them."""
        defaults = {k: config[k] for k in ("chunk_size", "codec", "hash", "copies", "ec") if k in config} \
            if config else {}
        self.settings = Settings(**{**defaults, **overrides})
        self.layout = check_layout(self.settings.copies, self.settings.ec)
        self.check_memory(self.settings.chunk_size, f"chunk size {format_size(self.settings.chunk_size)}")

    def _open_database(self, overrides: dict, data: Path | str | None) -> None:
        """Open the store whose metadata live in the PostgreSQL database at
        self.location (creating its tables and settings on first use)."""
        from pfs.registry.postgres import SESSION_TTL, Database, DatabaseFiles, DatabaseParts, DatabaseSessions

        self._db = db = Database(self.location)
        try:
            config = db.settings()
            self.created = not config
            if not config:
                if data is None:
                    raise UsageError(f"there is no pfs store in {db.name} yet",
                                     "create one with --data DIR: the directory where its part data go")
                config = db.create({**asdict(Settings(**overrides)), "data": str(Path(data).expanduser().absolute()),
                                    "session_ttl": SESSION_TTL, "volumes": [VolumeConfig(0, FIRST_VOLUME).to_dict()],
                                    "next_volume": 1, "id": uuid.uuid4().hex})
            if not (_settings_ok(config) and _redundancy_ok(config) and type(config.get("data")) is str):
                raise self._damaged_settings()
            self._settle(config, overrides)
            self.root = Path(data).expanduser() if data is not None else Path(config["data"])
            self.root.mkdir(parents=True, exist_ok=True)
            self.description = f"{db.name} (part data in {self.root.absolute()})"
            st = os.stat(self.root)
            self._root_id = (st.st_dev, st.st_ino)
            store_id = config.get("id") or db.adopt("id", uuid.uuid4().hex)  # a store made before volume markers
            next_volume = config.get("next_volume") or db.adopt("next_volume", len(config["volumes"]))  # one volume
            self.config = {**config, "id": store_id, "next_volume": next_volume}
            if not _volumes_ok(self.config):
                raise self._damaged_settings()
            self._open_volumes(self.config)
            first = self.volset.configs.get(0)
            if first and first.url == FIRST_VOLUME and _marker(self.volset.volume(0)) is None:
                self.volset.volume(0).write_marker(store_id, "0")  # the data directory's volume is this store's
            self.parts = DatabaseParts(db)
            self.files = DatabaseFiles(db)
            self.sessions = DatabaseSessions(db, float(config.get("session_ttl", SESSION_TTL)))
            self.repair_report = None
            self.recovered = self._recover()
        except BaseException:
            self._close_registries()
            raise

    def _damaged_settings(self) -> DamagedError:
        return DamagedError(f"the settings of the store in {self._db.name} are damaged (pfs_settings, pfs_volumes)")

    def _read_config(self) -> dict | None:
        """store.json, or None when `root` is new, empty, or holds only what an
        interrupted creation left (so a crash while creating never leaves a
        directory pfs refuses). Refuses anything else; damage is a DamagedError."""
        path = self.root / CONFIG
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} is not a directory")
        # Listed before store.json is looked for: a pfs creating the store at this
        # moment writes store.json before any other file, so what is listed
        # without a store.json after it was there before any store.
        found = [n for n in os.listdir(self.root) if not _creation_leftover(self.root, n)] if self.root.exists() else []
        if not path.exists():
            if not found:
                return None
            if STORE_FILES.intersection(found):
                raise damaged(self.root, f"{path} is missing")
            raise StoreError(f"{self.root} is not a pfs store", "choose an empty or new directory with --store")
        config = read_json(path, self.root)
        if not isinstance(config, dict) or type(config.get("format")) is not int or config["format"] < 1:
            raise damaged(self.root, f"{path} is damaged (no format number)")
        if config["format"] > FORMAT:
            raise StoreError(f"{self.root} was made by a newer pfs (format {config['format']})", "upgrade pfs to open it")
        volumes_ok = _old_volumes_ok(config.get("volumes")) if config["format"] == 1 else \
            _volumes_ok(config) and _redundancy_ok(config)
        if not (_settings_ok(config) and volumes_ok):
            raise damaged(self.root, f"{path} is damaged (bad chunk_size, codec, hash, copies, ec or volumes)")
        return config

    def _claim_alone(self, config: dict | None, reread: bool) -> dict:
        """Create the store, or upgrade a format 1 one, while no other pfs does (two
        at once would give its volumes two identities): under an exclusive flock
        of STORE/lock. With `reread`, what another pfs finished meanwhile is taken as it is."""
        with _flocked(self.root / LOCK):
            if reread:
                config = self._read_config()
            if config is None:
                return self._create(self.settings)
            return self._upgrade(config) if config["format"] == 1 else config

    def _create(self, settings: Settings) -> dict:
        """Write store.json, atomically and before any other file of the store:
        with no store.json, the directory holds nothing but creation leftovers."""
        found = sorted(int(d.name) for d in (self.root / VOLUMES).glob("*")
                       if d.is_dir() and re.fullmatch(r"0|[1-9][0-9]*", d.name))
        names = [f"{VOLUMES}/{i}" for i in found] or [FIRST_VOLUME]  # a rebuilt store keeps its volumes
        return self._claim(names, {"format": FORMAT, **asdict(settings)})

    def _upgrade(self, old: dict) -> dict:
        """Turn a format 1 store (volume directories listed by name, no markers)
        into this format in place: markers first, then store.json, atomically;
        a crash in between is finished by the next open."""
        return self._claim(old["volumes"], {**old, "format": FORMAT, "copies": 1, "ec": ""})

    def _claim(self, names: list[str], config: dict) -> dict:
        """Mark the volume directories `names` (inside the store) as this store's
        volumes 0, 1, ... and write store.json listing them. The store's id is the
        one a marker already holds (what an interrupted claim left), else new."""
        volumes = [VolumeConfig(i, name) for i, name in enumerate(names)]
        probe = VolumeSet(self.root, "", volumes)
        found = [m.get("store") for v in volumes if (m := _marker(probe.volume(v.id)))]
        store_id = next((s for s in found if type(s) is str and re.fullmatch(r"[0-9a-f]{32}", s)), uuid.uuid4().hex)
        for v in volumes:
            probe.volume(v.id).write_marker(store_id, str(v.id))
        config = {**config, "id": store_id, "volumes": [v.to_dict() for v in volumes], "next_volume": len(volumes)}
        write_json_atomic(self.root / CONFIG, config)
        return config

    def _check_layout(self, expected: dict[str, bool], repair: bool) -> list[str]:
        """Refuse (or, repairing, move to lost+found/) a file where pfs keeps a
        directory or the other way round (`expected`: name -> is a directory),
        so nothing below trips over it."""
        notes = []
        for name, is_dir in expected.items():
            path = self.root / name
            if os.path.lexists(path) and path.is_dir() != is_dir:
                problem = f"{path} is not a {'directory' if is_dir else 'regular file'}"
                if not repair:
                    raise damaged(self.root, problem)
                notes.append(f"{problem}; moved to {set_aside(self.root, path)}")
        return notes
    def check_memory(self, chunk_size: int, subject: str, layout: Layout | None = None) -> None:
        """Refuse a chunk size whose parts could never fit the memory limit."""
        need = part_memory(chunk_size, layout or self.layout)
        if need > self.max_memory:
            raise UsageError(f"{subject} needs {format_size(need)} per part in flight, more than "
                             f"--max-memory {format_size(self.max_memory)}",
                             f"use --max-memory {format_option(need)} or more")

    def _lock(self, alone: bool) -> None:
        """flock the store's directory itself (unlike a lock file, nothing can
        replace it while it is held): shared by every pfs using the store, or
        exclusive for what needs the store alone (repair), which STORE/lock then
        names by pid."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if alone else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if alone:
                holders = ", ".join(live_sessions(self.root)) or "another pfs"
                raise StoreLockedError(f"store {self.root} is in use by {holders}; repair needs it alone",
                                       "exit every other pfs using it first") from None
            try:
                holder = (self.root / LOCK).read_text(errors="replace").strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise StoreLockedError(f"store {self.root} is being repaired by pid {holder}",
                                   "wait for the repair to finish") from None
        self._lock_fd = fd
        root = os.fstat(fd)
        self._root_id = (root.st_dev, root.st_ino)
        if not alone:
            return
        note = os.open(self.root / LOCK, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:  # in place and fixed width: needs no new disk block, never reads as empty
            os.pwrite(note, f"{os.getpid():<20}\n".encode(), 0)
        finally:
            os.close(note)

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the pool and release the lock."""
        self.engine.close()
        for source in self._sources.values():
            os.close(source.fd)
        self._sources.clear()
        self._close_registries()
        self._unlock()

    def _close_registries(self) -> None:
        """Close what the opening got to open (a failed open ends its session too)."""
        for name in ("files", "sessions", "_db"):
            if getattr(self, name, None) is not None:
                getattr(self, name).close()

    def _recover(self) -> list[FileEntry]:
        """At open: finish what dead sessions left, and sweep what crashed processes left."""
        touched = self._finish_dead()
        self._sweep_leftovers()
        return touched

    def _finish_dead(self) -> list[FileEntry]:
        """Finish what dead sessions (a crash) left unfinished: roll back their
        puts, complete their deletes, remove the pieces their heals or drains
        wrote that no manifest took up. Only a file's record is needed: its
        pieces' keys derive from its uuid, and every volume is tried for each.
        The work of live sessions is theirs."""
        touched = []
        unsettled = self.files.unsettled()
        unfinished = [e for e in unsettled if e.status in (STORING, DELETING)]
        replacing = [e for e in unsettled if e.status == STORED]
        with self.sessions.claim_dead() as dead:
            for seen in unfinished:
                entry = self.files.get(seen.id)  # read again: its owner may have finished it meanwhile
                if entry is None or entry.status not in (STORING, DELETING) or not dead(entry.session):
                    continue
                self._sweep_or_note(entry)
                self.parts.remove(entry.id)
                if entry.status == STORING:
                    self.files.save(replace(entry, status=FAILED, reason="interrupted"))
                else:
                    self.files.remove(entry.id)
                touched.append(entry)
            for entry in replacing:
                if dead(entry.session):
                    self._finish_replace(entry)
            for intent in sorted((self.root / INTENTS).iterdir()):
                self._finish_intent(intent, dead)
        return touched

    def _finish_replace(self, by: FileEntry) -> None:
        """Delete the file `by` replaced under its name, if its pfs stopped before
        it could (a crash, or a reader that held it): the name resolves to `by`
        either way, so a crash mid-replace leaves the old file or the new, never
        both nor neither."""
        old = self.files.get(by.replaces)
        current = self.files.current(by.name)
        if old is None or old.status != STORED or old.name != by.name or current is None or current.id == old.id:
            return
        log.info("file %d (%s), replaced by file %d, is deleted now", old.id, old.name, by.id)
        self._delete_replaced(old.id)

    def _sweep_leftovers(self) -> None:
        """Remove the temporary files of atomic writes that crashed processes cut
        short (manifests are written through tmp/, so their directory is not listed)."""
        markers = [_temporaries(Path(self.volset.location(c)), f".{MARKER}.")
                   for c in self.volset.configs.values() if "://" not in c.url]
        for torn in [*_temporaries(self.root), *_temporaries(self.tmp),
                     *_temporaries(self.root / INTENTS), *itertools.chain.from_iterable(markers)]:
            if not _writer_alive(torn.name):
                torn.unlink(missing_ok=True)

    def _finish_intent(self, intent: Path, dead: Callable[[str], bool]) -> None:
        """Remove the pieces of the intent's file that its manifest does not
        reference, if the session that noted it is dead."""
        if intent.name.startswith("."):
            return
        try:
            entry = FileEntry.from_dict(read_json(intent, self.root))
        except (PfsError, ValueError):
            if self.repair_report is None:
                raise damaged(self.root, f"{intent} is damaged") from None
            # repair has already set aside whatever pieces no manifest references
            self.repair_report.repaired.append(f"{intent} is damaged; moved to {set_aside(self.root, intent)}")
            return
        if not dead(entry.session):
            return
        current = self.files.get(entry.id)
        manifest = self.parts.load(entry.id) if current is not None and current.uuid == entry.uuid else None
        if self._sweep(entry, manifest):
            intent.unlink()
            fsync_dir(intent.parent)

    def _sweep(self, entry: FileEntry, keep: Manifest | None = None, progress: Progress = _no_progress) -> bool:
        """Remove every piece of the file from every volume that can be reached,
        except those `keep` references; returns whether every volume was reached."""
        layout = Layout.of(entry)
        keys = [k for i in range(entry.parts) for k in dict.fromkeys(layout.keys(part_id(entry.uuid, i)))]
        kept = {(v, k) for p in (keep.parts if keep else [])
                for v, k in zip(p.volumes(), layout.keys(p.id))}
        unreached = {vid for vid in self.volset.configs if not self.volset.readable(vid)}
        for batch in batched(keys, REMOVE_BATCH):
            for vid in self.volset.configs.keys() - unreached:
                try:
                    worker.remove_pieces(self.volset.describe(vid), batch,
                                         frozenset(k for k in batch if (vid, k) in kept))
                except VolumeUnavailableError:
                    unreached.add(vid)
            progress(len(batch))
        return not unreached

    def _sweep_or_note(self, entry: FileEntry, progress: Progress = _no_progress) -> None:
        """_sweep, noting an intent where a volume could not be reached (a server
        down, a disk unmounted): the next open sweeps again, so its pieces of a
        failed or deleted file are not left there for ever."""
        if not self._sweep(entry, progress=progress):
            self._note_intent(entry)

    # -- queries --------------------------------------------------------------

    def list(self) -> list[FileEntry]:
        return self.files.all()

    def entry(self, file_id: int) -> FileEntry:
        entry = self.files.get(file_id)
        if entry is None:
            raise NotFoundError(f"no file with id {file_id}", "`list` shows the stored files")
        return entry

    def resolve(self, ref: str | int) -> FileEntry:
        """The file an argument names: an id (all digits), else the stored file
        the name resolves to (the last of that name to be stored)."""
        if isinstance(ref, int) or names.is_id(ref):
            return self.entry(int(ref))
        name = names.check(ref)
        entry = self.files.current(name)
        if entry is None:
            raise NotFoundError(f"no file named {name}", "`list` shows the stored files")
        return entry

    def under(self, prefix: str, recursive: bool = False) -> tuple[list[str], list[str]]:
        """(names, directories) under a directory as typed (`logs`, `logs/`, ``), sorted."""
        return self.files.under(names.prefix(prefix), recursive)

    def rename(self, ref: str | int, new: str, keep: bool = False) -> FileEntry:
        """Give a stored file a new name, moving no data (one journal record). A
        file already under the new name is replaced: deleted, unless `keep`."""
        entry = self.resolve(ref)
        if entry.status != STORED:
            raise UsageError(f"file {entry.id} ({entry.name}) is {entry.status}", "only stored files can be renamed")
        name = names.check(new)
        replaced = self.files.current(name)
        moved = replace(entry, name=name, session=self.sessions.id, replaces=_doomed_id(replaced, entry, keep))
        self.files.save(moved)
        self._drop_replaced(moved)
        return moved

    def _drop_replaced(self, by: FileEntry) -> None:
        """Delete the file `by` took the name of (`by.replaces`; none if it was
        kept: then its id still reaches it), once nobody reads it any more: a
        reader that opened it goes on reading it whole."""
        if not by.replaces:
            return
        with self._readers_lock:
            if self._readers[by.replaces]:
                self._doomed.add(by.replaces)
                return
        self._delete_replaced(by.replaces)

    def _delete_replaced(self, file_id: int) -> None:
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
        self._delete_replaced(file_id)

    @contextlib.contextmanager
    def reading(self, file_id: int) -> Iterator[None]:
        """Read a file: a file stored under its name meanwhile (by this pfs) does not
        delete it under us, and a delete by any pfs is refused until we are done."""
        self.hold(file_id)
        try:
            with self.sessions.hold(file_id, exclusive=False):
                yield
        finally:
            self.release(file_id)

    def manifest(self, file_id: int) -> Manifest | None:
        """The parts of a file (None while it is being stored or after it failed)."""
        self.entry(file_id)
        return self.parts.load(file_id)

    def inside_store(self, path: Path | str) -> bool:
        """Whether `path`, with every symbolic link and `..` resolved, is the store's
        directory or lies inside it (where no command may read or write a file).
        Directories are compared by identity, so a bind mount of the store counts too."""
        real = Path(os.path.realpath(path))
        for p in (real, *real.parents):
            with contextlib.suppress(OSError):
                st = os.stat(p)
                if (st.st_dev, st.st_ino) == self._root_id:
                    return True
        return False


    # -- put ------------------------------------------------------------------

    def begin_put(self, source: str, name: str | None = None) -> FileEntry:
        """Open the source and record the new file as `storing` under `name` (see
        names.target); returns it with its id. finish_put reads every part from
        this one open file."""
        path = user_path(source)
        name = names.target(name, path.name)
        if self.inside_store(path):
            raise UsageError(f"{source} is inside the store {self.root}", "pfs does not store its own files")
        self.refresh_volumes()
        self._check_room(self.layout)
        src = open_source(path, source)
        st, chunk = src.before, self.settings.chunk_size
        try:
            chunk_parts = -(-st.st_size // chunk)
            if chunk_parts > MAX_PARTS:
                raise UsageError(f"{source} would need more than {MAX_PARTS} parts of {format_size(chunk)}",
                                 f"use --chunk-size {format_option(-(-st.st_size // MAX_PARTS))} or more")
            entry = FileEntry(id=0, name=name, size=st.st_size, status=STORING,
                              parts=chunk_parts, chunk_size=chunk, codec=self.settings.codec,
                              hash=self.settings.hash, uuid=uuid.uuid4().hex, created=time.time(),
                              mode=stat.S_IMODE(st.st_mode) & 0o777, mtime=st.st_mtime_ns,
                              copies=self.layout.copies, ec=self.settings.ec, session=self.sessions.id)
            entry = self.files.add(entry)  # gets its id
        except BaseException:
            os.close(src.fd)
            raise
        self._sources[entry.id] = src
        return entry

    def finish_put(self, entry: FileEntry, source: str, progress: Progress = _no_progress,
                   cancel: threading.Event | None = None, keep: bool = False) -> FileEntry:
        """Store the parts of the source opened by begin_put; on any failure, or
        when `cancel` is set, roll it back. A source that changes meanwhile fails
        the put: never a mix of two versions. See publish for `keep`."""
        src = self._sources.pop(entry.id)
        chunk, task = entry.chunk_size, self.part_tasks(entry)
        sizes = [min(chunk, entry.size - i * chunk) for i in range(entry.parts)]
        tasks = (task(i, proc_path(src.fd), i * chunk, size) for i, size in enumerate(sizes))
        syncs: list[Future] = []

        def written(i: int, result) -> None:
            syncs.extend(self.flush_part(entry, i, result))
            progress(sizes[i])

        try:
            try:
                results = self.engine.run(worker.store_part, tasks, written, cancel)
            finally:
                wait(syncs)
            lost = volume_failures(syncs)
            how = src.change()
            if how:
                raise source_changed(source, how)
            return self.publish(entry, results, keep, lost, cancel)
        except BaseException as exc:
            if isinstance(exc, worker.SourceShrank):
                exc = source_changed(source, "changed size")
            self._roll_back(entry, exc)
            if isinstance(exc, OSError):
                raise PfsError(f"cannot store {entry.name}: {describe(exc)}", advice_for(exc)) from exc
            raise exc
        finally:
            os.close(src.fd)

    def _keep_off_lost_volumes(self, done: FileEntry, why: VolumeError, cancel: threading.Event | None) -> None:
        """A volume went away while the put wrote to it: rebuild the copies or
        shards it held on the other volumes, from the ones that made it. The put
        fails only where too few made it (a single copy, too few shards)."""
        found = self._scan_parts(done, None, _no_progress, cancel, relocate=True, only_moving=True)
        if found.damage or found.bad:
            raise PfsError(f"{why.message}, and too few copies or shards of some parts were written elsewhere",
                           why.advice)

    def _check_room(self, layout: Layout) -> None:
        """Refuse a layout that needs more volumes than can take parts now."""
        usable = self.volset.writable()
        if len(usable) < layout.width:
            others = ", ".join(f"volume {v} {self.volset.status(v)}" for v in self.volset.configs if v not in usable)
            raise UsageError(f"storing {layout.describe()} needs {layout.width} volume{'s' * (layout.width > 1)} "
                             f"with free space, and {len(usable)} {'has' if len(usable) == 1 else 'have'} some"
                             + (f" ({others})" if others else ""),
                             "free some space, add a volume with `volume add DIR`, or ask for fewer copies")

    def part_tasks(self, entry: FileEntry) -> Callable[[int, str, int, int], tuple[int, tuple]]:
        """What stores part `index` of a file from `size` bytes of `source` at
        `offset`, as (memory, worker.store_part's arguments): its copies or
        shards go to the volumes that take pieces now, best placed first."""
        layout = Layout.of(entry)
        self.refresh_volumes()  # after the file's record: see remove_volume
        weights = self.volset.writable()
        descs = {vid: self.volset.describe(vid) for vid in weights}

        def task(index: int, source: str, offset: int, size: int) -> tuple[int, tuple]:
            pid = part_id(entry.uuid, index)
            targets = [(vid, descs[vid]) for vid in placement.rank(pid, weights)]
            return part_memory(size, layout), (source, offset, size, entry.codec, entry.hash, layout, pid, targets)
        return task

    def flush_part(self, entry: FileEntry, index: int, result: tuple) -> list[Future]:
        """Make the pieces a worker wrote for part `index` (`result`: store_part's) durable, soon."""
        keys = Layout.of(entry).keys(part_id(entry.uuid, index))
        return [self.engine.sync_soon(self.volset.volume(vid).flush, [key]) for vid, key in zip(result[3], keys)]

    # -- streaming writes (see pfs.library.writer) ----------------------------------------

    def begin_write(self, name: str) -> FileEntry:
        """Record a file that will be written as a stream, as `storing` with room
        for one part: its size is known only at the end, and reserve() says how
        many parts a crash may have to roll back meanwhile."""
        chunk = self.settings.chunk_size
        self.refresh_volumes()
        self._check_room(self.layout)
        entry = FileEntry(id=0, name=names.check(name), size=chunk, status=STORING, parts=1,
                          chunk_size=self.settings.chunk_size, codec=self.settings.codec, hash=self.settings.hash,
                          uuid=uuid.uuid4().hex, created=time.time(), mode=0o644, mtime=time.time_ns(),
                          copies=self.layout.copies, ec=self.settings.ec, session=self.sessions.id)
        return self.files.add(entry)  # gets its id

    def reserve(self, entry: FileEntry, parts: int) -> FileEntry:
        """Record that up to `parts` parts of a storing file may exist (doubling,
        so a stream costs a few journal records), for recovery to remove them."""
        if parts <= entry.parts:
            return entry
        if parts > MAX_PARTS:
            raise UsageError(f"{entry.name} would need more than {MAX_PARTS} parts of "
                             f"{format_size(entry.chunk_size)}", "use a bigger --chunk-size")
        parts = min(MAX_PARTS, max(parts, 2 * entry.parts))
        reserved = replace(entry, parts=parts, size=parts * entry.chunk_size)
        self.files.save(reserved)
        return reserved

    def abandon(self, entry: FileEntry) -> None:
        """Remove every trace of a file that was never stored: parts, manifest, record."""
        self._sweep_or_note(entry)
        self.parts.remove(entry.id)
        self.files.remove(entry.id)

    def publish(self, entry: FileEntry, results: list[tuple], keep: bool = False, lost: list[VolumeError] = (),
                cancel: threading.Event | None = None) -> FileEntry:
        """Make a file whose parts are written and flushed (`results`: each part's
        store_part result) stored: its name now resolves to it, in one journal
        record. Pieces whose flush failed as their volume did (`lost`), or
        whose local volume is gone since, are rebuilt elsewhere first. The
        file it replaces under that name is deleted then, unless `keep`."""
        chunk, layout = entry.chunk_size, Layout.of(entry)
        parts = [PartEntry(index=i, id=part_id(entry.uuid, i), offset=i * chunk,
                           size=min(chunk, entry.size - i * chunk), stored=stored, codec=used, hash=h,
                           volume=placed[0], copies=[] if layout.ec else placed, shards=shards)
                 for i, (h, used, stored, placed, shards) in enumerate(results)]
        replaced = self.files.current(entry.name)
        done = replace(entry, status=STORED, stored=sum(p.stored for p in parts),
                       digest=codec.file_digest([p.hash for p in parts]),
                       replaces=_doomed_id(replaced, entry, keep))
        self.parts.save(Manifest(done, parts))
        lost = [*lost, *self.volset.gone(vid for part in results for vid in part[3])]
        if lost:
            self._keep_off_lost_volumes(done, lost[0], cancel)
        self.files.save(done)
        self._drop_replaced(done)
        return done

    def _roll_back(self, entry: FileEntry, exc: BaseException) -> None:
        self._sweep_or_note(entry)
        self.parts.remove(entry.id)
        self.files.save(replace(entry, status=FAILED, reason=describe(exc)))

    # -- get / verify ----------------------------------------------------------

    def checked_manifest(self, entry: FileEntry) -> Manifest:
        """The file's manifest, refused if it disagrees with the file record."""
        manifest = self.parts.load(entry.id)
        where = self.parts.where(entry.id)
        if manifest is None:
            raise damaged(self.root, f"the manifest of file {entry.id} ({entry.name}) is missing: {where}")
        offset = 0
        for i, p in enumerate(manifest.parts):
            if p.index != i or p.offset != offset or not 0 < p.size <= entry.chunk_size or not 0 <= p.stored <= p.size:
                raise damaged(self.root, f"the manifest of file {entry.id} is damaged at part {i}: {where}")
            offset += p.size
        if offset != entry.size or len(manifest.parts) != entry.parts or manifest.file.uuid != entry.uuid or \
                codec.file_digest([p.hash for p in manifest.parts]) != entry.digest:
            raise damaged(self.root, f"the manifest of file {entry.id} does not match its record: {where}")
        return manifest

    def stored_entry(self, file_id: int) -> FileEntry:
        entry = self.entry(file_id)
        if entry.status != STORED:
            why = f": {entry.reason}" if entry.reason else ""
            raise UsageError(f"file {file_id} ({entry.name}) is {entry.status}{why}",
                             "only stored files can be read; `delete` removes it")
        return entry

    def _check_parts(self, entry: FileEntry, out_path: str | None, progress: Progress,
                     cancel: threading.Event | None, **how: bool) -> Findings:
        """_scan_parts while holding the file (see reading); its record is read
        again under the hold, so a delete that ran before it is seen here."""
        with self.reading(entry.id):
            return self._scan_parts(self.stored_entry(entry.id), out_path, progress, cancel, **how)

    def _scan_parts(self, entry: FileEntry, out_path: str | None, progress: Progress,
                    cancel: threading.Event | None, every: bool = False, heal: bool = True,
                    relocate: bool = False, only_moving: bool = False) -> Findings:
        """Read every part through the pool (into `out_path` when given), checking
        the pieces it reads (all of them with `every`), rewriting damaged pieces
        in place (`heal`) and, with `relocate`, moving pieces off volumes that no
        longer keep them (missing, draining); `only_moving` reads only the parts
        that have such pieces."""
        layout = Layout.of(entry)
        self.check_memory(entry.chunk_size, f"file {entry.id}, stored in {format_size(entry.chunk_size)} parts,", layout)
        manifest = self.checked_manifest(entry)

        def plan() -> list[tuple[PartEntry, worker.PartCheck]]:
            weights = self.volset.writable() if relocate else {}
            jobs = [self._part_check(entry, layout, p, weights, out_path, every, heal, relocate)
                    for p in manifest.parts]
            return [(p, job) for p, job in zip(manifest.parts, jobs) if not only_moving or job.moves]

        self.refresh_volumes()
        todo = plan()
        intent = self._note_intent(entry) if any(job.moves for _, job in todo) else None
        if intent:  # planned again once the intent shows, which remove_volume waits for
            self.refresh_volumes()
            todo = plan()
        try:
            verdicts = self.engine.run(worker.check_part, ((part_memory(p.size, layout), (job,)) for p, job in todo),
                                       lambda i, _: progress(todo[i][0].size), cancel)
            found = Findings()
            moved: list[tuple[PartEntry, list[int]]] = []
            for (p, job), v in zip(todo, verdicts):
                where = f"part {p.index} bytes {p.offset}-{p.offset + p.size - 1}"
                if v.problem:
                    found.damage.append(Damage(entry.id, entry.name, p.index, p.offset, p.size, v.problem))
                found.bad += [type(b)(f"{where}: {b}") for b in v.bad]  # an Unreachable one stays so
                found.healed += [f"{where}: {h}" for h in v.healed]
                if v.volumes != p.volumes():
                    moved.append((p, v.volumes))
            swept = self._record_moves(manifest, layout, moved) if moved else True
        except BaseException:
            if intent:
                self._finish_intent(intent, lambda _: True)
            raise
        if intent and swept:  # else the next open removes what is left where they were
            intent.unlink()
        return found

    def _part_check(self, entry: FileEntry, layout: Layout, p: PartEntry, weights: dict[int, float],
                    out_path: str | None, every: bool, heal: bool, relocate: bool) -> worker.PartCheck:
        """The worker's task for one part; a piece on a volume that does not keep
        it gets, with `relocate`, the volumes it may move to, best first."""
        volumes = p.volumes()
        pieces = [(v, self.volset.describe(v) if self.volset.readable(v) else None) for v in volumes]
        moves = {}
        if relocate:
            keys = layout.keys(p.id)
            for j, v in enumerate(volumes):
                if not self.volset.keeps(v):
                    moves[j] = [(t, self.volset.describe(t)) for t in placement.rank(keys[j], weights)
                                if t not in volumes]
        absent = {v: self.volset.why(v) for v, desc in pieces if desc is None}
        return worker.PartCheck(layout, p.id, p.stored, p.codec, p.size, entry.hash, p.hash, pieces, p.shards,
                                out_path, p.offset, every, heal, moves, absent)

    def read_job(self, entry: FileEntry, part: PartEntry) -> worker.PartCheck:
        """What reads one part of a stored file in this process (a reader), writing nothing."""
        return self._part_check(entry, Layout.of(entry), part, {}, None, False, False, False)

    def _record_moves(self, manifest: Manifest, layout: Layout, moved: list[tuple[PartEntry, list[int]]]) -> bool:
        """Record where moved pieces are now, then remove them from where they
        were; returns whether every one was removed."""
        new = {p.index: volumes for p, volumes in moved}
        parts = [p if p.index not in new else replace(
            p, volume=new[p.index][0], copies=[] if layout.ec else new[p.index],
            shards=[{**s, "volume": v} for s, v in zip(p.shards, new[p.index])]) for p in manifest.parts]
        self.parts.save(Manifest(manifest.file, parts))
        removed = True
        for p, volumes in moved:
            for old, now, key in zip(p.volumes(), volumes, layout.keys(p.id)):
                if old != now and self.volset.readable(old):
                    try:
                        worker.remove_pieces(self.volset.describe(old), [key])
                    except VolumeUnavailableError:
                        removed = False
        return removed

    def _note_intent(self, entry: FileEntry) -> Path:
        """Before pieces are written where no manifest says: the next open removes
        what the manifest did not take up, should pfs stop before it does."""
        path = self.root / INTENTS / f"{entry.id}.json"
        write_json_atomic(path, asdict(replace(entry, session=self.sessions.id)))
        return path

    def verify(self, file_id: int, progress: Progress = _no_progress,
               cancel: threading.Event | None = None, heal: bool = False) -> Findings:
        """Check every piece of every part of a stored file; with `heal`, rewrite the
        damaged ones and move pieces off volumes that no longer keep them
        (a scrub). Without, nothing is written. Stops when `cancel` is set."""
        entry = self.stored_entry(file_id)
        return self._check_parts(entry, None, progress, cancel, every=True, heal=heal, relocate=heal)

    def heal(self, file_id: int, progress: Progress = _no_progress,
             cancel: threading.Event | None = None) -> Findings:
        """Restore the file's redundancy: put a new copy or shard on another volume
        for each one on a volume that is missing or draining."""
        entry = self.stored_entry(file_id)
        return self._check_parts(entry, None, progress, cancel, relocate=True, only_moving=True)

    def destination(self, file_id: int, dest: str | None, force: bool = False) -> Path:
        """Where get would write file `file_id`: never inside the store, never over
        anything but a regular file (or a link), never over a file without force."""
        entry = self.entry(file_id)
        target = user_path(dest) if dest else Path.cwd()
        try:
            if dest and dest.endswith("/") and not target.is_dir():
                raise DestinationError(f"directory {target} does not exist", "create it first")
            if target.is_dir():
                target = target / safe_name(entry)
            if not target.parent.is_dir():
                raise DestinationError(f"directory {target.parent} does not exist", "create it first")
            if self.inside_store(target) or self.inside_store(target.parent):
                raise DestinationError(f"{target} is inside the store {self.root}",
                                       "choose a destination outside the store")
            try:
                mode = os.lstat(target).st_mode
            except FileNotFoundError:
                return target
        except OSError as exc:
            raise DestinationError(f"cannot use {target}: {exc.strerror}", advice_for(exc)) from None
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise DestinationError(f"{target} is {file_kind(mode)}", "get writes only regular files")
        if not force:
            raise DestinationError(f"{target} already exists", "use --force to overwrite it")
        return target

    def get(self, file_id: int, dest: str | None = None, force: bool = False, salvage: bool = False,
            progress: Progress = _no_progress, cancel: threading.Event | None = None) -> tuple[Path, Findings]:
        """Rebuild a stored file at its destination, with its recorded mode and
        mtime; only a fully verified file appears under the destination name, and
        a crash leaves nothing behind. With salvage, damaged parts are zero-filled
        instead and listed. A damaged copy or shard met on the way is rewritten
        from the good data. Returns (path written, findings)."""
        entry = self.stored_entry(file_id)
        target = self.destination(file_id, dest, force)
        try:
            with Output(target) as out:
                if entry.size:
                    os.posix_fallocate(out.fd, 0, entry.size)  # a full disk fails here, before any work
                flushes: list[Future] = []

                def written(nbytes: int) -> None:
                    progress(nbytes)
                    if not flushes or flushes[-1].done():  # keep the disk busy while parts arrive
                        flushes.append(self.engine.fsync_soon(out.path))

                try:
                    found = self._check_parts(entry, out.path, written, cancel)
                finally:
                    wait(flushes)
                damage = found.damage
                if damage and not salvage:
                    raise unreadable(damage, "nothing was written")
                if entry.mode is not None:
                    os.fchmod(out.fd, entry.mode)
                if entry.mtime is not None:
                    os.utime(out.fd, ns=(time.time_ns(), entry.mtime))
                os.fsync(out.fd)
                out.publish(force)
            return target, found
        except OSError as exc:
            raise PfsError(f"cannot write {target}: {exc.strerror}", advice_for(exc)) from exc

    # -- volumes ------------------------------------------------------------------

    def refresh_volumes(self) -> None:
        """Take up the volume configuration as it is now, then look at every volume
        again. Another pfs may have added, drained or removed a volume since this
        one last looked: placing pieces by an older configuration would put them
        on a volume being removed, and never on one added. Cheap when nothing
        changed: one stat of store.json, or one small query."""
        if self._db is not None:
            listed, next_volume = self._db.volumes()
            self._take_volumes(listed, next_volume)
        else:
            stamp = _stamp(self.root / CONFIG)
            if stamp != self._config_stamp:
                self._take_config()
                self._config_stamp = stamp
        self.volset.refresh()

    def _take_config(self) -> None:
        config = self._read_config()
        if config is None:
            raise damaged(self.root, f"{self.root / CONFIG} is missing")
        self.config = config
        self._take_volumes(config["volumes"], config["next_volume"])

    def _take_volumes(self, listed: object, next_volume: object) -> None:
        if self._db is not None and not _volumes_ok({"id": self.config["id"], "volumes": listed,
                                                      "next_volume": next_volume}):
            raise self._damaged_settings()
        self.volset.take(parse_volumes(listed))
        self.next_volume = next_volume

    @contextlib.contextmanager
    def _changing_volumes(self) -> Iterator[None]:
        """Change the volume configuration as one step among every pfs: locked
        against other changes, starting from the current configuration, saved
        whole at the end (not at all when the change raises)."""
        try:
            if self._db is not None:
                with self._db.changing_volumes() as (listed, next_volume, save):
                    self._take_volumes(listed, next_volume)
                    self.volset.refresh()
                    yield
                    save(self.volset.to_list(), self.next_volume)
            else:
                with _flocked(self.root / LOCK):
                    self._take_config()
                    self.volset.refresh()
                    yield
                    self.config = {**self.config, "volumes": self.volset.to_list(), "next_volume": self.next_volume}
                    write_json_atomic(self.root / CONFIG, self.config)
        finally:
            self._config_stamp = None  # what is in memory may not be what was saved: read it again

    def add_volume(self, location: str, weight: float = 1.0, endpoint: str = "",
                   create: bool = False) -> VolumeConfig:
        """Claim a directory (or s3://bucket/prefix, on `endpoint` where not the
        standard server, its bucket first created with `create`) as a new volume of the store."""
        if "://" not in location:
            path = user_path(location).absolute()
            if self.inside_store(path):
                raise UsageError(f"{location} is inside the store {self.root}", "choose a directory outside the store")
            location = str(path)
        with self._changing_volumes():
            config = self.volset.add(location, weight, endpoint, self.next_volume, create)
            self.next_volume = config.id + 1
        return config

    def volume_report(self) -> list[VolumeRow]:
        """Every volume with its status, what it holds (as the manifests say: walking
        a volume is for verify) and its free space."""
        self.refresh_volumes()
        held = self.parts.pieces_by_volume()
        rows = []
        for vid, config in sorted(self.volset.configs.items()):
            status, used, free, parts = self.volset.status(vid), None, None, None
            if status != "missing":
                parts, used = held.get(vid, (0, 0))
                with contextlib.suppress(VolumeError):
                    free = self.volset.volume(vid).free()
            rows.append(VolumeRow(vid, self.volset.location(config), config.weight, status, used, free, parts))
        return rows

    def volume_id(self, text: str) -> int:
        """A volume id as the user typed it; NotFoundError unless the store has it."""
        if text.isdigit() and text.isascii():
            self._check_known(int(text))
            return int(text)
        raise NotFoundError(f"no volume {text}", "`volume list` shows the volumes")

    def _check_known(self, vid: int) -> None:
        if vid not in self.volset.configs:
            self.refresh_volumes()
        if vid not in self.volset.configs:
            raise NotFoundError(f"no volume {vid}", "`volume list` shows the volumes")

    def files_on(self, vid: int) -> list[int]:
        """The stored files with a copy or shard on volume `vid` (manifests say)."""
        return [e.id for e in self.files.all() if e.status == STORED and
                any(vid in p.volumes() for p in (self.parts.load(e.id) or Manifest(e)).parts)]

    def start_drain(self, vid: int) -> None:
        """Mark a volume draining: nothing new goes there, and heal moves what it holds."""
        self._set_state(vid, DRAINING)

    def _set_state(self, vid: int, state: str) -> str:
        """Set a volume's state (active, draining); returns the one it had."""
        with self._changing_volumes():
            self._check_known(vid)
            was = self.volset.configs[vid].state
            self.volset.set_state(vid, state)
        return was

    def remove_volume(self, vid: int) -> None:
        """Forget a volume that holds nothing (drained, or lost and healed). It is
        marked draining first, in a change of its own, so that every pfs places
        nothing there from then on (each takes up the configuration before it
        places a piece); what was placed before shows below, as a put or a move
        still running, or in a manifest. A refusal leaves its state as it was."""
        self.refresh_volumes()
        self._check_known(vid)
        if len(self.volset.configs) == 1:
            raise UsageError(f"volume {vid} is the store's only volume", "add another one first")
        self._check_empty(vid)
        was = self._set_state(vid, DRAINING)
        try:
            self._check_nothing_going_to(vid)
            self._check_empty(vid)
        except BaseException:
            if was != DRAINING:
                self._set_state(vid, was)
            raise
        with self._changing_volumes():
            self._check_known(vid)
            self.volset.forget(vid)

    def _check_empty(self, vid: int) -> None:
        """Refuse unless no manifest and no key of the volume names a piece."""
        users = self.files_on(vid)
        if users:
            raise UsageError(f"volume {vid} still holds pieces of {len(users)} file(s) (first: file {users[0]})",
                             f"`volume drain {vid}` moves them first (or `heal` if the volume is lost)")
        self.refresh_volumes()
        if self.volset.readable(vid):
            volume = self.volset.volume(vid)
            if next(iter(volume.keys()), None) is not None:
                raise UsageError(f"volume {vid} holds parts no file references",
                                 f"`pfs --store {self.root} repair` sets them aside")

    def _check_nothing_going_to(self, vid: int) -> None:
        """Refuse while a put or a move of pieces (heal, drain, scrub) that may have
        chosen the volume before it was marked draining is still running, in any
        pfs; what dead ones left is finished first, as at open."""
        for entry in self._finish_dead():
            log.info("file %d (%s) was %s when its pfs stopped: finished", entry.id, entry.name, entry.status)
        storing = next((e for e in self.files.all() if e.status == STORING), None)
        if storing:
            raise UsageError(f"file {storing.id} ({storing.name}) is being stored, and its parts may go to volume "
                             f"{vid}", f"run `volume remove {vid}` again once it is stored")
        if any(not n.name.startswith(".") for n in (self.root / INTENTS).iterdir()):
            raise UsageError(f"pieces are being moved (a heal, drain or scrub is running), and may go to volume "
                             f"{vid}", f"run `volume remove {vid}` again once it has finished")

    def redundancy_of(self, entries: list[FileEntry]) -> dict[int, Redundancy]:
        """Each file's copies or shards, e.g. "2 copies", 2/2 present; where a volume
        does not keep its pieces (missing, draining), how many a stored file's
        worst part still has, e.g. "ec 4+2: 3 parts with 5 of 6 (volume 1
        missing)", 5/6. Manifests are read only when some volume does not keep
        its pieces."""
        self.refresh_volumes()
        degraded = not all(self._keeps_as_known(v) for v in self.volset.configs)
        healthy: dict[tuple, Redundancy] = {}  # the many files of one layout share their answer

        def as_laid_out(e: FileEntry) -> Redundancy:
            key = (e.copies, e.ec, e.status == STORED)
            if key not in healthy:
                layout = Layout.of(e)
                healthy[key] = Redundancy(layout, layout.width if key[2] else None)
            return healthy[key]
        return {e.id: self._redundancy(e) if degraded and e.status == STORED else as_laid_out(e) for e in entries}

    def _redundancy(self, entry: FileEntry) -> Redundancy:
        layout = Layout.of(entry)
        manifest = self.parts.load(entry.id)
        short = [p for p in (manifest.parts if manifest else []) if not all(map(self._keeps_as_known, p.volumes()))]
        if not short:
            return Redundancy(layout, layout.width)
        worst = min(sum(map(self._keeps_as_known, p.volumes())) for p in short)
        gone = sorted({v for p in short for v in p.volumes() if not self._keeps_as_known(v)})
        why = ", ".join(f"volume {v} {self.volset.status(v, ask=False)}" for v in gone)
        return Redundancy(layout, worst, f"{len(short)} part{'s' * (len(short) != 1)} with {worst} of "
                                         f"{layout.width} ({why})")

    def _keeps_as_known(self, vid: int) -> bool:
        """keeps(), asking no server: a listing answers at once even with one down."""
        return self.volset.keeps(vid, ask=False)

    def volumes_of(self, manifest: Manifest) -> dict[int, int]:
        """How many copies or shards of a file each volume holds, by volume id."""
        return dict(sorted(Counter(v for p in manifest.parts for v in p.volumes()).items()))

    def piece_places(self, part: PartEntry) -> list[str]:
        """Where each copy or shard of a part lives: its volume, and its status when
        not online."""
        status = {v: self.volset.status(v, ask=False) for v in part.volumes()}
        return [str(v) + ("" if status[v] == "online" else f" ({status[v]})") for v in part.volumes()]

    # -- delete ---------------------------------------------------------------

    def delete(self, file_id: int, progress: Progress = _no_progress) -> FileEntry:
        """Remove a file and its parts; a crash midway is finished at the next open.
        Refused while another command (of any pfs) reads the file."""
        with self.sessions.hold(file_id, exclusive=True):
            return self._delete(file_id, progress)

    def _delete(self, file_id: int, progress: Progress) -> FileEntry:
        entry = self.entry(file_id)
        if entry.status in (STORING, DELETING):
            raise UsageError(f"file {file_id} ({entry.name}) is {entry.status}", "wait for it to finish")
        self.files.save(replace(entry, status=DELETING, session=self.sessions.id))
        self.refresh_volumes()
        self._sweep_or_note(entry, progress)
        self.parts.remove(file_id)
        self.files.remove(file_id)
        return entry


class Output:
    """The file a get writes, kept without a name in the destination's directory
    (O_TMPFILE) until every part is in, so a crash or a failure leaves nothing
    behind. Workers write it through proc_path. On a filesystem without O_TMPFILE
    it is a hidden temporary name beside the destination instead. Every name is
    made relative to the directory opened once, so the file lands where it was checked."""

    def __init__(self, target: Path) -> None:
        self.target, self.name = target, target.name
        self.dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        self.fd = -1
        self.temp: str | None = None
        try:
            try:
                self.fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o644, dir_fd=self.dir_fd)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
                self.temp = self._temp_name()
                self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=self.dir_fd)
        except BaseException:
            self.close()
            raise
        self.path = proc_path(self.fd)

    def _temp_name(self) -> str:
        return f".{self.name}.pfs-{uuid.uuid4().hex[:8]}.tmp"

    def _link(self, name: str) -> None:
        """A name for the file (linkat follows the /proc link to the file itself)."""
        os.link(self.path, name, dst_dir_fd=self.dir_fd)

    def publish(self, force: bool) -> None:
        """Give the finished file its name, durably: with force it replaces whatever
        is there; without, it fails rather than replace a file that appeared meanwhile."""
        if force:
            if self.temp is None:  # a link cannot replace a name: link a temporary one, rename that
                self.temp = self._temp_name()
                self._link(self.temp)
            os.replace(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            self.temp = None
        else:
            try:
                self._link(self.name)
            except FileExistsError:
                raise DestinationError(f"{self.target} already exists", "use --force to overwrite it") from None
        os.fsync(self.dir_fd)

    def close(self) -> None:
        try:
            if self.temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.temp, dir_fd=self.dir_fd)
        finally:
            if self.fd >= 0:
                os.close(self.fd)
            os.close(self.dir_fd)

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def volume_failures(syncs: list[Future]) -> list[VolumeError]:
    """The flushes that failed because their volume did (went away, filled up);
    any other failure is raised."""
    failures = [f.exception() for f in syncs if f.exception() is not None]
    for exc in failures:
        if not isinstance(exc, VolumeError):
            raise exc
    return failures


def describe(exc: BaseException) -> str:
    """A one-line reason for a failure, in the user's words, for the file record
    and the screen: never an exception class name."""
    if isinstance(exc, PfsError):
        return exc.message
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, BrokenExecutor):  # the worker pool's BrokenProcessPool
        return "a worker process died"
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    return str(exc) or "an unexpected failure"
