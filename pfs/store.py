"""The Store facade: open (lock, recover), put, get, delete, list, verify.

This is the only module that touches both the registries and the engine.
Nothing here knows about the shell; every failure is a typed PfsError.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pfs import codec, worker
from pfs.engine import Engine
from pfs.errors import (DestinationError, advice_for, IntegrityError, NotFoundError, PfsError,
                        StoreError, StoreLockedError, UsageError)
from pfs.governor import MemoryGovernor
from pfs.registry import (DELETING, FAILED, STORED, STORING, FileEntry, FileRegistry,
                          Manifest, PartEntry, PartRegistry, damaged, fsync_dir, fsync_file, read_json,
                          write_json_atomic)
from pfs.repair import rebuild
from pfs.units import format_option, format_size
from pfs.volumes import Volumes, part_id

FORMAT = 1
CONFIG = "store.json"
#: Parts removed per delete task.
REMOVE_BATCH = 512

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


def safe_name(entry: FileEntry) -> str:
    """The stored name reduced to a plain file name: no directories, no control
    characters, never '.' or '..' -- so get cannot write outside its destination."""
    name = "".join(c if c.isprintable() else "_" for c in os.path.basename(entry.name.replace("\\", "/")))
    return name if name not in ("", ".", "..") else f"file-{entry.id}"


class Store:
    """An open pfs store. Use as a context manager: it holds the store's lock."""

    def __init__(self, root: Path, overrides: dict | None = None, workers: int = os.cpu_count() or 1,
                 max_memory: int = 256 << 20, repair: bool = False) -> None:
        """Open (creating if new) the store at `root`. `overrides` may set chunk_size,
        codec and hash for new files; otherwise the store's defaults apply. With
        `repair`, damaged metadata is rebuilt (see pfs.repair) instead of refused."""
        self.root = Path(root)
        self._lock_fd = -1
        self.max_memory = max_memory
        config = self._read_config()
        defaults = {k: config[k] for k in ("chunk_size", "codec", "hash")} if config else {}
        self.settings = Settings(**{**defaults, **(overrides or {})})
        self.check_memory(self.settings.chunk_size, f"chunk size {format_size(self.settings.chunk_size)}")
        if config is None:
            config = self._create(self.settings)
        self._lock()
        try:
            self.volumes = Volumes(self.root, config["volumes"])
            self.tmp = self.root / "tmp"
            self.tmp.mkdir(exist_ok=True)
            self.files = FileRegistry(self.root, strict=not repair)
            self.parts = PartRegistry(self.root)
            self.repair_report = rebuild(self.root, self.files, self.parts, self.volumes) if repair else None
            self.recovered = self._recover()
        except BaseException:
            self._unlock()
            raise
        self.engine = Engine(workers, MemoryGovernor(max_memory))

    # -- opening and closing ------------------------------------------------

    def _read_config(self) -> dict | None:
        """store.json, or None when `root` is new or empty (refusing anything else)."""
        path = self.root / CONFIG
        if not path.exists():
            if self.root.exists() and not self.root.is_dir():
                raise StoreError(f"{self.root} is not a directory")
            if self.root.exists() and any(self.root.iterdir()):
                raise StoreError(f"{self.root} is not a pfs store", "choose an empty or new directory with --store")
            return None
        config = read_json(path, self.root)
        if not isinstance(config, dict) or not isinstance(config.get("format"), int):
            raise damaged(self.root, f"{path} is damaged (no format number)")
        if config["format"] > FORMAT:
            raise StoreError(f"{self.root} was made by a newer pfs (format {config['format']})", "upgrade pfs to open it")
        settings_ok = (isinstance(config.get("chunk_size"), int) and config["chunk_size"] > 0
                       and config.get("codec") in codec.CODECS and config.get("hash") in codec.HASHES)
        volumes_ok = isinstance(config.get("volumes"), list) and config["volumes"] and \
            all(isinstance(v, str) for v in config["volumes"])
        if not (settings_ok and volumes_ok):
            raise damaged(self.root, f"{path} is damaged (bad chunk_size, codec, hash or volumes)")
        return config

    def _create(self, settings: Settings) -> dict:
        self.root.mkdir(parents=True, exist_ok=True)
        config = {"format": FORMAT, **asdict(settings), "volumes": ["volumes/0"]}
        write_json_atomic(self.root / CONFIG, config)
        return config

    def check_memory(self, chunk_size: int, subject: str) -> None:
        """Refuse a chunk size whose parts could never fit the memory limit."""
        need = part_memory(chunk_size)
        if need > self.max_memory:
            raise UsageError(f"{subject} needs {format_size(need)} per part in flight, more than "
                             f"--max-memory {format_size(self.max_memory)}",
                             f"use --max-memory {format_option(need)} or more")

    def _lock(self) -> None:
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreLockedError(f"store {self.root} is in use by pid {holder}",
                                   "exit that pfs first, or use another --store") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

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
        self.files.close()
        self._unlock()

    def _recover(self) -> list[FileEntry]:
        """Finish what a crash interrupted: roll back puts, complete deletes, sweep tmp/."""
        touched = []
        for entry in self.files.all():
            if entry.status == STORING:
                worker.remove_parts(self._part_paths(entry))
                self.parts.remove(entry.id)
                self.files.save(replace(entry, status=FAILED, reason="interrupted"))
                touched.append(entry)
            elif entry.status == DELETING:
                worker.remove_parts(self._part_paths(entry))
                self.parts.remove(entry.id)
                self.files.remove(entry.id)
                touched.append(entry)
        for leftover in self.tmp.iterdir():
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        for torn in [*self.root.glob(".*.tmp"), *self.parts.path(0).parent.glob(".*.tmp")]:
            torn.unlink()  # an atomic JSON write that a crash cut short
        return touched

    # -- queries --------------------------------------------------------------

    def list(self) -> list[FileEntry]:
        return self.files.all()

    def entry(self, file_id: int) -> FileEntry:
        entry = self.files.get(file_id)
        if entry is None:
            raise NotFoundError(f"no file with id {file_id}", "`list` shows the stored files")
        return entry

    def manifest(self, file_id: int) -> Manifest | None:
        """The parts of a file (None while it is being stored or after it failed)."""
        self.entry(file_id)
        return self.parts.load(file_id)

    def _part_paths(self, entry: FileEntry) -> list[str]:
        return [str(self.volumes.path(self.volumes.place(i), part_id(entry.uuid, i))) for i in range(entry.parts)]

    # -- put ------------------------------------------------------------------

    def begin_put(self, source: str) -> FileEntry:
        """Check the source and record the new file as `storing`; returns it with its id."""
        path = user_path(source)
        try:
            st = path.stat()
            if path.is_dir():
                raise UsageError(f"{source} is a directory", "put stores one file at a time")
            if not path.is_file():
                raise UsageError(f"{source} is not a regular file")
            with path.open("rb"):
                pass
        except FileNotFoundError:
            raise NotFoundError(f"{source} does not exist") from None
        except PermissionError:
            raise UsageError(f"{source} cannot be read (permission denied)") from None
        except OSError as exc:
            raise UsageError(f"{source} cannot be read ({exc.strerror})") from None
        chunk = self.settings.chunk_size
        entry = FileEntry(id=self.files.new_id(), name=path.name, size=st.st_size, status=STORING,
                          parts=-(-st.st_size // chunk), chunk_size=chunk, codec=self.settings.codec,
                          hash=self.settings.hash, uuid=uuid.uuid4().hex, created=time.time())
        self.files.save(entry)
        return entry

    def finish_put(self, entry: FileEntry, source: str, progress: Progress = _no_progress) -> FileEntry:
        """Store the parts of `source`, begun with begin_put; on any failure roll it back."""
        source = str(user_path(source))
        chunk = entry.chunk_size
        paths = self._part_paths(entry)

        def size(i: int) -> int:
            return min(chunk, entry.size - i * chunk)

        def tasks():
            for i, dest in enumerate(paths):
                yield part_memory(size(i)), (source, i * chunk, size(i), dest, entry.codec, entry.hash)

        syncs: list[Future] = []

        def written(i: int, _) -> None:
            syncs.append(self.engine.fsync_soon(paths[i]))
            progress(size(i))

        try:
            try:
                results = self.engine.run(worker.store_part, tasks(), written)
            finally:
                wait(syncs)
            for f in syncs:
                f.result()
            for d in sorted({os.path.dirname(p) for p in paths}):
                fsync_dir(d)
            if os.stat(source).st_size != entry.size:
                raise EOFError(f"{source} changed size")
            parts = [PartEntry(index=i, id=part_id(entry.uuid, i), offset=i * chunk,
                               size=size(i), stored=stored, codec=used,
                               hash=h, volume=self.volumes.place(i))
                     for i, (h, used, stored) in enumerate(results)]
            done = replace(entry, status=STORED, stored=sum(p.stored for p in parts),
                           digest=codec.file_digest([p.hash for p in parts]))
            self.parts.save(Manifest(done, parts))
            self.files.save(done)
            return done
        except BaseException as exc:
            self._roll_back(entry, exc)
            if isinstance(exc, OSError):
                raise PfsError(f"cannot store {entry.name}: {describe(exc)}", advice_for(exc)) from exc
            if isinstance(exc, EOFError):  # the source is not the size put saw
                raise PfsError(f"{source} changed size while it was being stored", "put it again") from exc
            raise

    def _roll_back(self, entry: FileEntry, exc: BaseException) -> None:
        worker.remove_parts(self._part_paths(entry))
        self.parts.remove(entry.id)
        self.files.save(replace(entry, status=FAILED, reason=describe(exc)))

    # -- get / verify ----------------------------------------------------------

    def _checked_manifest(self, entry: FileEntry) -> Manifest:
        """The file's manifest, refused if it disagrees with the file record."""
        manifest = self.parts.load(entry.id)
        where = self.parts.path(entry.id)
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

    def _stored_entry(self, file_id: int) -> FileEntry:
        entry = self.entry(file_id)
        if entry.status != STORED:
            why = f": {entry.reason}" if entry.reason else ""
            raise UsageError(f"file {file_id} ({entry.name}) is {entry.status}{why}",
                             "only stored files can be read; `delete` removes it")
        return entry

    def _check_parts(self, entry: FileEntry, out_path: str | None, progress: Progress) -> list[Damage]:
        self.check_memory(entry.chunk_size, f"file {entry.id}, stored in {format_size(entry.chunk_size)} parts,")
        manifest = self._checked_manifest(entry)
        tasks = ((part_memory(p.size),
                  (str(self.volumes.path(p.volume, p.id)), p.stored, p.codec, p.size, entry.hash, p.hash,
                   out_path, p.offset))
                 for p in manifest.parts)
        problems = self.engine.run(worker.load_part, tasks, lambda i, _: progress(manifest.parts[i].size))
        return [Damage(entry.id, entry.name, p.index, p.offset, p.size, problem)
                for p, problem in zip(manifest.parts, problems) if problem]

    def verify(self, file_id: int, progress: Progress = _no_progress) -> list[Damage]:
        """Check every part of a stored file without writing anything."""
        return self._check_parts(self._stored_entry(file_id), None, progress)

    def destination(self, file_id: int, dest: str | None, force: bool = False) -> Path:
        """Where get would write file `file_id`; refuses an existing file without force."""
        entry = self.entry(file_id)
        target = user_path(dest) if dest else Path.cwd()
        if dest and dest.endswith("/") and not target.is_dir():
            raise DestinationError(f"directory {target} does not exist", "create it first")
        if target.is_dir():
            target = target / safe_name(entry)
        if not target.parent.is_dir():
            raise DestinationError(f"directory {target.parent} does not exist", "create it first")
        if target.is_dir():
            raise DestinationError(f"{target} is a directory")
        if target.exists() and not force:
            raise DestinationError(f"{target} already exists", "use --force to overwrite it")
        return target

    def get(self, file_id: int, dest: str | None = None, force: bool = False, salvage: bool = False,
            progress: Progress = _no_progress) -> tuple[Path, list[Damage]]:
        """Rebuild a stored file at its destination; only a fully verified file
        appears under the destination name. With salvage, damaged parts are
        zero-filled instead and listed. Returns (path written, damage)."""
        entry = self._stored_entry(file_id)
        target = self.destination(file_id, dest, force)
        tmp = target.with_name(f".{target.name}.pfs-{uuid.uuid4().hex[:8]}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                if entry.size:
                    os.posix_fallocate(fd, 0, entry.size)
            finally:
                os.close(fd)
            flushes: list[Future] = []

            def written(nbytes: int) -> None:
                progress(nbytes)
                if not flushes or flushes[-1].done():  # keep the disk busy while parts arrive
                    flushes.append(self.engine.fsync_soon(str(tmp)))

            try:
                damage = self._check_parts(entry, str(tmp), written)
            finally:
                wait(flushes)
            if damage and not salvage:
                raise IntegrityError(f"damaged {damage[0]}"
                                     + (f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""),
                                     damage, "nothing was written; `get --salvage` writes what is readable")
            fsync_file(str(tmp))
            if force:
                os.replace(tmp, target)
            else:
                try:
                    os.link(tmp, target)  # fails rather than replace a file that appeared meanwhile
                except FileExistsError:
                    raise DestinationError(f"{target} already exists", "use --force to overwrite it") from None
                os.unlink(tmp)
            fsync_dir(target.parent)
            return target, damage
        except OSError as exc:
            raise PfsError(f"cannot write {target}: {exc.strerror}", advice_for(exc)) from exc
        finally:
            tmp.unlink(missing_ok=True)

    # -- delete ---------------------------------------------------------------

    def delete(self, file_id: int, progress: Progress = _no_progress) -> FileEntry:
        """Remove a file and its parts; a crash midway is finished at the next open."""
        entry = self.entry(file_id)
        if entry.status in (STORING, DELETING):
            raise UsageError(f"file {file_id} ({entry.name}) is {entry.status}", "wait for it to finish")
        self.files.save(replace(entry, status=DELETING))
        paths = self._part_paths(entry)
        batches = batched(paths, REMOVE_BATCH)
        self.engine.run(worker.remove_parts, ((0, (b,)) for b in batches),
                        lambda i, _: progress(len(batches[i])))
        self.parts.remove(file_id)
        self.files.remove(file_id)
        return entry


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
