"""The Store facade: one open store, its rooms wired together, every call a
delegation to the room that does the work.

This is the only module that knows every room; nothing here knows about the
shell, and every failure is a typed PfsError.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from pfs.crypto.opening import CRYPTO_PRELOAD, StoreKeys
from pfs.engine import worker
from pfs.engine.engine import Engine, worker_count
from pfs.engine.governor import MemoryGovernor
from pfs.registry import FILE, FileEntry, Manifest, PartEntry
from pfs.store import opening
from pfs.store.catalog import Catalog
from pfs.store.checking import Checking, Findings, refuse_write_only
from pfs.store.context import Context, Progress, no_progress, part_memory
from pfs.store.getting import Getting
from pfs.store.health import Health, Redundancy
from pfs.store.putting import Putting
from pfs.store.recovery import Recovery
from pfs.store.sweeping import Sweeper
from pfs.store.volume_admin import VolumeAdmin, VolumeRow
from pfs.store.volume_config import refresh_volumes
from pfs.units import format_size
from pfs.volumes.redundancy import Layout
from pfs.volumes.volset import VolumeConfig


def _shared(name: str) -> property:
    """A read-only view of the open store's shared state (see Context)."""
    return property(lambda self: getattr(self.ctx, name), doc=f"The store's {name} (see Context).")


class Store:
    """An open pfs store, shared with any other pfs that has it open. Use as a
    context manager: it holds a session of the store."""

    location = _shared("location")
    root = _shared("root")
    description = _shared("description")
    settings = _shared("settings")
    layout = _shared("layout")
    config = _shared("config")
    created = _shared("created")
    files = _shared("files")
    parts = _shared("parts")
    sessions = _shared("sessions")
    volset = _shared("volset")
    tmp = _shared("tmp")
    engine = _shared("engine")
    max_memory = _shared("max_memory")
    repair_report = _shared("repair_report")
    keys = _shared("keys")
    slots = _shared("slots")
    sealed = _shared("sealed")
    sealed_for = _shared("sealed_for")

    def __init__(self, root: Path | str, overrides: dict | None = None, workers: int = os.cpu_count() or 1,
                 max_memory: int = 256 << 20, repair: bool = False, data: Path | str | None = None,
                 keys: StoreKeys | None = None) -> None:
        """Open (creating if new) the store at `root`: a directory, or a PostgreSQL
        URI whose part data lives in the directory `data` (default: the one its
        settings name). `overrides` may set chunk_size, codec and hash for new
        files; otherwise the store's defaults apply. With `repair`, damaged
        metadata is rebuilt (see pfs.store.repair) instead of refused. `keys`
        unlocks an encrypted store, or encrypts a new one (see pfs.crypto.opening)."""
        self.ctx = ctx = Context(str(root), max_memory, keys or StoreKeys())
        self.sweeper = Sweeper(ctx)
        self.catalog = Catalog(ctx, self.sweeper)
        self.recovery = Recovery(ctx, self.sweeper, self.catalog)
        self.checking = Checking(ctx, self.sweeper, self.catalog)
        self.putting = Putting(ctx, self.sweeper, self.catalog, self.checking)
        self.getting = Getting(ctx, self.catalog, self.checking)
        self.volumes = VolumeAdmin(ctx, self.recovery)
        self.health = Health(ctx)
        opening.open_store(ctx, overrides or {}, repair, data, lambda _: self.recovery.recover())
        self.recovered: list[FileEntry] = ctx.recovered
        self.workers = worker_count(workers, max_memory, part_memory(self.settings.chunk_size, sealed=ctx.sealed))
        self.workers_note = "" if self.workers == workers else \
            f"using {self.workers} workers, not {workers}: more would not fit --max-memory " \
            f"{format_size(max_memory)} or the {os.cpu_count()} CPUs"
        ctx.engine = Engine(self.workers, MemoryGovernor(max_memory),
                            self.volset.preload() + ((CRYPTO_PRELOAD,) if ctx.sealed else ()))
        self.volset.prober = lambda volume: self.engine.run(worker.volume_status, [(0, (volume.describe(),))])[0]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the pool and release the lock."""
        self.engine.close()
        self.putting.close()
        opening.close(self.ctx)

    def check_memory(self, chunk_size: int, subject: str, layout: Layout | None = None) -> None:
        self.ctx.check_memory(chunk_size, subject, layout)

    def inside_store(self, path: Path | str) -> bool:
        return self.ctx.inside_store(path)

    # -- files by id and name (Catalog) --------------------------------------------
    def list(self) -> list[FileEntry]:
        return self.catalog.list()

    def entry(self, file_id: int) -> FileEntry:
        return self.catalog.entry(file_id)

    def resolve(self, ref: str | int) -> FileEntry:
        return self.catalog.resolve(ref)

    def under(self, prefix: str, recursive: bool = False) -> tuple[list[str], list[str]]:
        return self.catalog.under(prefix, recursive)

    def rename(self, ref: str | int, new: str, keep: bool = False) -> FileEntry:
        return self.catalog.rename(ref, new, keep)

    def hold(self, file_id: int) -> None:
        self.catalog.hold(file_id)

    def release(self, file_id: int) -> None:
        self.catalog.release(file_id)

    def reading(self, file_id: int) -> contextlib.AbstractContextManager[None]:
        return self.catalog.reading(file_id)

    def reading_all(self, file_ids: list[int]) -> contextlib.AbstractContextManager[None]:
        return self.catalog.reading_all(file_ids)

    def manifest(self, file_id: int) -> Manifest | None:
        return self.catalog.manifest(file_id)

    def delete(self, file_id: int, progress: Progress = no_progress, seen: FileEntry | None = None) -> FileEntry:
        return self.catalog.delete(file_id, progress, seen)

    # -- put (Putting) ------------------------------------------------------------------
    def begin_put(self, source: str, name: str | None = None, meta: dict | None = None) -> FileEntry:
        return self.putting.begin_put(source, name, meta)

    def finish_put(self, entry: FileEntry, source: str, progress: Progress = no_progress,
                   cancel: threading.Event | None = None, keep: bool = False) -> FileEntry:
        return self.putting.finish_put(entry, source, progress, cancel, keep)

    def part_tasks(self, entry: FileEntry):
        return self.putting.part_tasks(entry)

    def tasks_of(self, entries: list[FileEntry]) -> list:
        return self.putting.tasks_of(entries)

    def flush_part(self, entry: FileEntry, index: int, result: tuple) -> list:
        return self.putting.flush_part(entry, index, result)

    def begin_write(self, name: str) -> FileEntry:
        return self.putting.begin_write(name)

    def reserve(self, entry: FileEntry, parts: int) -> FileEntry:
        return self.putting.reserve(entry, parts)

    def abandon(self, entry: FileEntry) -> None:
        self.putting.abandon(entry)

    def publish(self, entry: FileEntry, results: list[tuple], keep: bool = False, lost: list = (),
                cancel: threading.Event | None = None) -> FileEntry:
        return self.putting.publish(entry, results, keep, lost, cancel)

    # -- what trees and batches of small files use (pfs.store.trees, pfs.store.batch) ---
    def storing_entry(self, name: str, st: os.stat_result) -> FileEntry:
        return self.putting.storing_entry(name, st)

    def stored_manifest(self, entry: FileEntry, results: list[tuple]) -> Manifest:
        return self.putting.stored_manifest(entry, results)

    def roll_back(self, entry: FileEntry, exc: BaseException) -> None:
        self.putting.roll_back(entry, exc)

    def check_room(self) -> None:
        self.putting.check_room()

    def drop_replaced(self, by: FileEntry) -> None:
        self.catalog.drop_replaced(by)

    def root_identity(self) -> tuple[int, int]:
        """(st_dev, st_ino) of the store's directory: a tree walk does not enter it."""
        return self.ctx.root_id

    # -- get, verify, heal (Getting, Checking) ------------------------------------------
    def check_manifest(self, entry: FileEntry, manifest: Manifest | None) -> Manifest:
        return self.checking.check_manifest(entry, manifest)

    def checked_manifest(self, entry: FileEntry) -> Manifest:
        return self.checking.checked_manifest(entry)

    def stored_entry(self, file_id: int, kinds: frozenset[str] = frozenset({FILE})) -> FileEntry:
        return self.checking.stored_entry(file_id, kinds)

    def restore_job(self, entry: FileEntry, part: PartEntry, out_path: str) -> worker.PartCheck:
        return self.checking.restore_job(entry, part, out_path)

    @property
    def names_sealed(self) -> bool:
        """Whether the store's names are encrypted (so nothing written in the store may name a file)."""
        return self.ctx.keys.names_key is not None

    def check_readable(self) -> None:
        """Refuse (UsageError) if this pfs cannot read what is stored: it holds only a recipient key."""
        refuse_write_only(self.ctx)

    def read_job(self, entry: FileEntry, part: PartEntry) -> worker.PartCheck:
        return self.checking.read_job(entry, part)

    def verify(self, file_id: int, progress: Progress = no_progress, cancel: threading.Event | None = None,
               heal: bool = False) -> Findings:
        return self.checking.verify(file_id, progress, cancel, heal)

    def heal(self, file_id: int, progress: Progress = no_progress, cancel: threading.Event | None = None) -> Findings:
        return self.checking.heal(file_id, progress, cancel)

    def destination(self, file_id: int, dest: str | None, force: bool = False) -> Path:
        return self.getting.destination(file_id, dest, force)

    def get(self, file_id: int, dest: str | None = None, force: bool = False, salvage: bool = False,
            progress: Progress = no_progress, cancel: threading.Event | None = None) -> tuple[Path, Findings]:
        return self.getting.get(file_id, dest, force, salvage, progress, cancel)

    # -- volumes (VolumeAdmin, Health) ------------------------------------------------
    def refresh_volumes(self) -> None:
        refresh_volumes(self.ctx)

    def add_volume(self, location: str, weight: float = 1.0, endpoint: str = "", create: bool = False) -> VolumeConfig:
        return self.volumes.add(location, weight, endpoint, create)

    def volume_report(self) -> list[VolumeRow]:
        return self.volumes.report()

    def volume_id(self, text: str) -> int:
        return self.volumes.volume_id(text)

    def files_on(self, vid: int) -> list[int]:
        return self.volumes.files_on(vid)

    def files_to_heal(self) -> list[int]:
        return self.volumes.files_to_heal()

    def start_drain(self, vid: int) -> list[int]:
        return self.volumes.start_drain(vid)

    def stop_drain(self, vid: int) -> None:
        self.volumes.stop_drain(vid)

    def wait_stored(self, file_id: int, cancel: threading.Event | None = None) -> None:
        self.volumes.wait_stored(file_id, cancel)

    def finish_removals(self) -> None:
        self.recovery.finish_removals()

    def remove_volume(self, vid: int) -> None:
        self.volumes.remove(vid)

    def compact_volumes(self, vid: int | None = None) -> list[tuple[int, int, int]]:
        return self.volumes.compact(vid)

    def redundancy_of(self, entries: list[FileEntry]) -> dict[int, Redundancy]:
        return self.health.redundancy_of(entries)

    def volumes_of(self, manifest: Manifest) -> dict[int, int]:
        return self.health.volumes_of(manifest)

    def piece_places(self, part: PartEntry) -> list[str]:
        return self.health.piece_places(part)
