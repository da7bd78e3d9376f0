"""The Store facade: open (lock, recover), put, get, delete, list, verify.

This is the only module that touches both the registries and the engine.
Nothing here knows about the shell; every failure is a typed PfsError.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pfs import codec, names, worker
from pfs.engine import Engine, worker_count
from pfs.errors import (DamagedError, DestinationError, advice_for, IntegrityError, NotFoundError, PfsError,
                        StoreError, StoreLockedError, UsageError)
from pfs.governor import MemoryGovernor
from pfs.registry import (DELETING, FAILED, FILES_LOCK, JOURNAL, MANIFESTS, MAX_INT, MAX_PARTS, RESERVE, SESSIONS,
                          SNAPSHOT, STORED, STORING, FileEntry, FileRegistry, Manifest, PartEntry, PartRegistry,
                          SessionFiles, damaged, fsync_dir, live_sessions, pid_alive, read_json, write_json_atomic)
from pfs.registry.postgres import is_database
from pfs.repair import rebuild, set_aside
from pfs.units import format_option, format_size
from pfs.volumes import Volumes, part_id

FORMAT = 1
CONFIG = "store.json"
LOCK = "lock"
VOLUMES = "volumes"
#: What tells a directory is (the rest of) a pfs store, even without its store.json.
STORE_FILES = frozenset((SNAPSHOT, JOURNAL, MANIFESTS, VOLUMES))
#: The store's own files and directories (name: whether it is a directory).
LAYOUT = {CONFIG: False, SNAPSHOT: False, JOURNAL: False, RESERVE: False, FILES_LOCK: False, MANIFESTS: True,
          SESSIONS: True, "tmp": True}
#: Parts removed per delete task.
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


@dataclass(frozen=True)
class Damage:
    """One part that failed verification."""

    file_id: int
    name: str
    index: int
    offset: int
    size: int
    problem: str

    def __str__(self) -> str:
        end = self.offset + self.size - 1 if self.size else self.offset
        return f"part {self.index} bytes {self.offset}-{end}: {self.problem}"


def _creation_leftover(name: str) -> bool:
    """What a store creation killed before it wrote store.json may have left:
    the lock, and the temporary file of the store.json write."""
    return name == LOCK or (name.startswith(f".{CONFIG}.") and name.endswith(".tmp"))


def _settings_ok(config: dict) -> bool:
    """A chunk size, codec and hash pfs can use."""
    return type(config.get("chunk_size")) is int and 0 < config["chunk_size"] <= MAX_INT \
        and config.get("codec") in codec.CODECS and config.get("hash") in codec.HASHES


def _volumes_ok(volumes: object) -> bool:
    """A non-empty list of distinct directories inside the store."""
    return type(volumes) is list and bool(volumes) and all(
        type(v) is str and v and not os.path.isabs(v) and ".." not in Path(v).parts and Path(v).parts
        for v in volumes) and len(set(volumes)) == len(volumes)


def _writer_alive(temp_name: str) -> bool:
    """Whether the process that names a temporary file `.NAME.PID.THREAD.tmp` still runs."""
    fields = temp_name.split(".")
    return len(fields) > 3 and pid_alive(fields[-3])


def default_root() -> Path:
    """The store used when none is given: $PFS_STORE, else the user data directory."""
    if os.environ.get("PFS_STORE"):
        return Path(os.environ["PFS_STORE"])
    from platformdirs import user_data_dir

    return Path(user_data_dir("pfs")) / "store"


def batched(items: list, n: int) -> list[list]:
    return [items[i:i + n] for i in range(0, len(items), n)]


def part_memory(size: int) -> int:
    """Worst-case bytes a part needs in a worker: its input plus the codec's output."""
    return 2 * size


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
        metadata is rebuilt (see pfs.repair) instead of refused."""
        self.location = str(root)
        self._lock_fd = -1
        self._db = None
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
        self.engine = Engine(self.workers, MemoryGovernor(max_memory))

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
            if config is None:
                config = self._create(self.settings)
            notes += self._check_layout(dict.fromkeys(config["volumes"], True), repair)
            self.volumes = Volumes(self.root, config["volumes"])
            self.tmp = self.root / "tmp"
            self.tmp.mkdir(exist_ok=True)
            self.sessions = SessionFiles(self.root)
            self.parts = PartRegistry(self.root, len(config["volumes"]))
            self.files = FileRegistry(self.root, strict=not repair, id_elsewhere=self.parts.highest_id)
            self.repair_report = rebuild(self.root, self.files, self.parts, self.volumes, max_memory // 2,
                                         notes) if repair else None
            self.recovered = self._recover()
        except BaseException:
            self._close_registries()
            self._unlock()
            raise

    def _settle(self, config: dict | None, overrides: dict) -> None:
        """The settings for new files: the store's, unless the options override them."""
        defaults = {k: config[k] for k in ("chunk_size", "codec", "hash")} if config else {}
        self.settings = Settings(**{**defaults, **overrides})
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
                                    "session_ttl": SESSION_TTL, "volumes": [f"{VOLUMES}/0"]})
            if not (_settings_ok(config) and _volumes_ok(config.get("volumes")) and type(config.get("data")) is str):
                raise DamagedError(f"the settings of the store in {db.name} are damaged (pfs_settings, pfs_volumes)")
            self._settle(config, overrides)
            self.root = Path(data).expanduser() if data is not None else Path(config["data"])
            self.root.mkdir(parents=True, exist_ok=True)
            self.description = f"{db.name} (part data in {self.root.absolute()})"
            st = os.stat(self.root)
            self._root_id = (st.st_dev, st.st_ino)
            self.volumes = Volumes(self.root, config["volumes"])
            self.tmp = self.root / "tmp"
            self.tmp.mkdir(exist_ok=True)
            self.parts = DatabaseParts(db, len(config["volumes"]))
            self.files = DatabaseFiles(db)
            self.sessions = DatabaseSessions(db, float(config.get("session_ttl", SESSION_TTL)))
            self.repair_report = None
            self.recovered = self._recover()
        except BaseException:
            self._close_registries()
            raise

    def _read_config(self) -> dict | None:
        """store.json, or None when `root` is new, empty, or holds only what an
        interrupted creation left (so a crash while creating never leaves a
        directory pfs refuses). Refuses anything else; damage is a DamagedError."""
        path = self.root / CONFIG
        if not path.exists():
            if self.root.exists() and not self.root.is_dir():
                raise StoreError(f"{self.root} is not a directory")
            found = [n for n in os.listdir(self.root) if not _creation_leftover(n)] if self.root.exists() else []
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
        if not (_settings_ok(config) and _volumes_ok(config.get("volumes"))):
            raise damaged(self.root, f"{path} is damaged (bad chunk_size, codec, hash or volumes)")
        return config

    def _create(self, settings: Settings) -> dict:
        """Write store.json, atomically and before any other file of the store:
        with no store.json, the directory holds nothing but creation leftovers."""
        found = sorted(int(d.name) for d in (self.root / VOLUMES).glob("*")
                       if d.is_dir() and re.fullmatch(r"0|[1-9][0-9]*", d.name))
        volumes = [f"{VOLUMES}/{i}" for i in range(found[-1] + 1 if found else 1)]  # a rebuilt store keeps its volumes
        config = {"format": FORMAT, **asdict(settings), "volumes": volumes}
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
    def check_memory(self, chunk_size: int, subject: str) -> None:
        """Refuse a chunk size whose parts could never fit the memory limit."""
        need = part_memory(chunk_size)
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
        """Finish what dead sessions (a crash) left unfinished: roll back their
        puts, complete their deletes. The work of live sessions is theirs."""
        touched = []
        unfinished = [e for e in self.files.all() if e.status in (STORING, DELETING)]
        with self.sessions.claim_dead() as dead:
            for seen in unfinished:
                entry = self.files.get(seen.id)  # read again: its owner may have finished it meanwhile
                if entry is None or entry.status not in (STORING, DELETING) or not dead(entry.session):
                    continue
                worker.remove_parts(self._part_paths(entry))
                self.parts.remove(entry.id)
                if entry.status == STORING:
                    self.files.save(replace(entry, status=FAILED, reason="interrupted"))
                else:
                    self.files.remove(entry.id)
                touched.append(entry)
        self._sweep()
        return touched

    def _sweep(self) -> None:
        """Remove what crashed processes left in tmp/ (when no other pfs could be
        using it) and the temporary files of atomic writes they cut short."""
        if not self.sessions.holders():
            for leftover in self.tmp.iterdir():
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        for torn in [*self.root.glob(".*.tmp"), *(self.root / MANIFESTS).glob(".*.tmp")]:
            if not _writer_alive(torn.name):
                torn.unlink(missing_ok=True)

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
        moved = replace(entry, name=name)
        self.files.save(moved)
        self._drop_replaced(replaced, moved, keep)
        return moved

    def _drop_replaced(self, replaced: FileEntry | None, by: FileEntry, keep: bool) -> None:
        """Delete the file `by` took the name of, unless kept (then its id still
        reaches it), once nobody reads it any more: a reader that opened it
        goes on reading it whole."""
        if replaced is None or replaced.id == by.id or keep:
            return
        with self._readers_lock:
            if self._readers[replaced.id]:
                self._doomed.add(replaced.id)
                return
        self._delete_replaced(replaced.id)

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

    def part_path(self, part: PartEntry) -> str:
        return str(self.volumes.path(part.volume, part.id))

    def part_file(self, entry: FileEntry, index: int) -> str:
        """Where part `index` of a file is (to be) written."""
        return str(self.volumes.path(self.volumes.place(index), part_id(entry.uuid, index)))

    def _part_paths(self, entry: FileEntry) -> list[str]:
        return [self.part_file(entry, i) for i in range(entry.parts)]

    # -- put ------------------------------------------------------------------

    def begin_put(self, source: str, name: str | None = None) -> FileEntry:
        """Open the source and record the new file as `storing` under `name` (see
        names.target); returns it with its id. finish_put reads every part from
        this one open file."""
        path = user_path(source)
        name = names.target(name, path.name)
        if self.inside_store(path):
            raise UsageError(f"{source} is inside the store {self.root}", "pfs does not store its own files")
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
                              mode=stat.S_IMODE(st.st_mode) & 0o777, mtime=st.st_mtime_ns, session=self.sessions.id)
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
        chunk = entry.chunk_size
        paths = self._part_paths(entry)

        def size(i: int) -> int:
            return min(chunk, entry.size - i * chunk)

        def tasks():
            for i, dest in enumerate(paths):
                yield part_memory(size(i)), (proc_path(src.fd), i * chunk, size(i), dest, entry.codec, entry.hash)

        syncs: list[Future] = []

        def written(i: int, _) -> None:
            syncs.append(self.engine.fsync_soon(paths[i]))
            progress(size(i))

        try:
            try:
                results = self.engine.run(worker.store_part, tasks(), written, cancel)
            finally:
                wait(syncs)
            for f in syncs:
                f.result()
            how = src.change()
            if how:
                raise source_changed(source, how)
            return self.publish(entry, results, keep)
        except BaseException as exc:
            if isinstance(exc, worker.SourceShrank):
                exc = source_changed(source, "changed size")
            self._roll_back(entry, exc)
            if isinstance(exc, OSError):
                raise PfsError(f"cannot store {entry.name}: {describe(exc)}", advice_for(exc)) from exc
            raise exc
        finally:
            os.close(src.fd)

    # -- streaming writes (see pfs.writer) ----------------------------------------

    def begin_write(self, name: str) -> FileEntry:
        """Record a file that will be written as a stream, as `storing` with room
        for one part: its size is known only at the end, and reserve() says how
        many parts a crash may have to roll back meanwhile."""
        chunk = self.settings.chunk_size
        entry = FileEntry(id=0, name=names.check(name), size=chunk, status=STORING, parts=1,
                          chunk_size=self.settings.chunk_size, codec=self.settings.codec, hash=self.settings.hash,
                          uuid=uuid.uuid4().hex, created=time.time(), mode=0o644, mtime=time.time_ns(),
                          session=self.sessions.id)
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
        worker.remove_parts(self._part_paths(entry))
        self.parts.remove(entry.id)
        self.files.remove(entry.id)

    def publish(self, entry: FileEntry, results: list[tuple[str, str, int]], keep: bool = False) -> FileEntry:
        """Make a file whose parts are written and fsynced (`results`: each part's
        hash, codec and stored size) stored: its name now resolves to it, in one
        journal record. The file it replaces under that name is deleted then,
        unless `keep`."""
        for d in sorted({os.path.dirname(p) for p in self._part_paths(entry)}):
            fsync_dir(d)
        chunk = entry.chunk_size
        parts = [PartEntry(index=i, id=part_id(entry.uuid, i), offset=i * chunk,
                           size=min(chunk, entry.size - i * chunk), stored=stored, codec=used,
                           hash=h, volume=self.volumes.place(i))
                 for i, (h, used, stored) in enumerate(results)]
        done = replace(entry, status=STORED, stored=sum(p.stored for p in parts),
                       digest=codec.file_digest([p.hash for p in parts]))
        replaced = self.files.current(entry.name)
        self.parts.save(Manifest(done, parts))
        self.files.save(done)
        self._drop_replaced(replaced, done, keep)
        return done

    def _roll_back(self, entry: FileEntry, exc: BaseException) -> None:
        worker.remove_parts(self._part_paths(entry))
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
                     cancel: threading.Event | None) -> list[Damage]:
        """Read every part while holding the file (see reading); its record is read
        again under the hold, so a delete that ran before it is seen here."""
        with self.reading(entry.id):
            entry = self.stored_entry(entry.id)
            self.check_memory(entry.chunk_size, f"file {entry.id}, stored in {format_size(entry.chunk_size)} parts,")
            manifest = self.checked_manifest(entry)
            tasks = ((part_memory(p.size),
                      (self.part_path(p), p.stored, p.codec, p.size, entry.hash, p.hash,
                       out_path, p.offset))
                     for p in manifest.parts)
            problems = self.engine.run(worker.load_part, tasks, lambda i, _: progress(manifest.parts[i].size), cancel)
        return [Damage(entry.id, entry.name, p.index, p.offset, p.size, problem)
                for p, problem in zip(manifest.parts, problems) if problem]

    def verify(self, file_id: int, progress: Progress = _no_progress,
               cancel: threading.Event | None = None) -> list[Damage]:
        """Check every part of a stored file without writing anything; stops when `cancel` is set."""
        return self._check_parts(self.stored_entry(file_id), None, progress, cancel)

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
            progress: Progress = _no_progress, cancel: threading.Event | None = None) -> tuple[Path, list[Damage]]:
        """Rebuild a stored file at its destination, with its recorded mode and
        mtime; only a fully verified file appears under the destination name, and
        a crash leaves nothing behind. With salvage, damaged parts are zero-filled
        instead and listed. Returns (path written, damage)."""
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
                    damage = self._check_parts(entry, out.path, written, cancel)
                finally:
                    wait(flushes)
                if damage and not salvage:
                    raise IntegrityError(f"damaged {damage[0]}"
                                         + (f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""),
                                         damage, "nothing was written; `get --salvage` writes what is readable")
                if entry.mode is not None:
                    os.fchmod(out.fd, entry.mode)
                if entry.mtime is not None:
                    os.utime(out.fd, ns=(time.time_ns(), entry.mtime))
                os.fsync(out.fd)
                out.publish(force)
            return target, damage
        except OSError as exc:
            raise PfsError(f"cannot write {target}: {exc.strerror}", advice_for(exc)) from exc

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
        paths = self._part_paths(entry)
        batches = batched(paths, REMOVE_BATCH)
        self.engine.run(worker.remove_parts, ((0, (b,)) for b in batches),
                        lambda i, _: progress(len(batches[i])))
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


def describe(exc: BaseException) -> str:
    """A one-line reason for a failure, in the user's words, for the file record
    and the screen: never an exception class name."""
    if isinstance(exc, PfsError):
        return exc.message
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, BrokenProcessPool):
        return "a worker process died"
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    return str(exc) or "an unexpected failure"
