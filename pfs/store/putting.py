"""The put pipeline: open the source once, record the file as storing, store its
parts through the pool, flush them, and publish it under its name (or roll it back)."""

from __future__ import annotations

import os
import stat
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace
from pathlib import Path

from pfs import codec, names
from pfs.engine import worker
from pfs.engine.engine import run_here
from pfs.errors import NotFoundError, PfsError, StoreError, UsageError, VolumeError, advice_for, describe
from pfs.registry import FAILED, MAX_PARTS, STORED, STORING, FileEntry, Manifest, PartEntry
from pfs.registry import usage
from pfs.store.catalog import Catalog
from pfs.store.checking import Checking
from pfs.store.context import Context, Progress, no_progress, part_memory
from pfs.store.paths import file_kind, proc_path, user_path
from pfs.store.sweeping import Sweeper
from pfs.store.volume_config import refresh_volumes
from pfs.units import format_option, format_size
from pfs.volumes import part_id, placement
from pfs.volumes.redundancy import Layout

#: A file up to this size is stored by the thread that puts it, not by a worker: its
#: one part costs less than the trip to a worker and back (a file closed in the mount).
STORED_HERE = 64 << 10


def rolled_back(entry: FileEntry) -> StoreError:
    return StoreError(f"file {entry.id} ({entry.name}) was rolled back by another pfs meanwhile",
                      "this pfs had lost its session on the store; store it again")


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
        if stat.S_ISDIR(mode):
            raise UsageError(f"{name} is a directory", "put -r stores a whole directory")
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


def volume_failures(syncs: list[Future]) -> list[VolumeError]:
    """The flushes that failed because their volume did (went away, filled up);
    any other failure is raised."""
    failures = [f.exception() for f in syncs if f.exception() is not None]
    for exc in failures:
        if not isinstance(exc, VolumeError):
            raise exc
    return failures


class Putting:
    """Stores files: whole sources, and streams written part by part."""

    def __init__(self, ctx: Context, sweeper: Sweeper, catalog: Catalog, checking: Checking) -> None:
        self.ctx, self.sweeper, self.catalog, self.checking = ctx, sweeper, catalog, checking
        self._sources: dict[int, Source] = {}  # puts begun and not yet finished, by file id

    def close(self) -> None:
        """Close the sources of puts begun and never finished."""
        for source in self._sources.values():
            os.close(source.fd)
        self._sources.clear()

    def begin_put(self, source: str, name: str | None = None, meta: dict | None = None) -> FileEntry:
        """Open the source and record the new file as `storing` under `name` (see
        names.target); returns it with its id. finish_put reads every part from
        this one open file. `meta` sets fields of the record other than the
        source's (the mount's mode, owner and times), in that same record."""
        path = user_path(source)
        if path.is_dir():
            raise UsageError(f"{source} is a directory", "put -r stores a whole directory")
        name = names.target(name, path.name)
        if self.ctx.inside_store(path):
            raise UsageError(f"{source} is inside the store {self.ctx.root}", "pfs does not store its own files")
        refresh_volumes(self.ctx)
        self._check_room(self.ctx.layout)
        src = open_source(path, source)
        st, chunk = src.before, self.ctx.settings.chunk_size
        try:
            chunk_parts = -(-st.st_size // chunk)
            if chunk_parts > MAX_PARTS:
                raise UsageError(f"{source} would need more than {MAX_PARTS} parts of {format_size(chunk)}",
                                 f"use --chunk-size {format_option(-(-st.st_size // MAX_PARTS))} or more")
            entry = self.ctx.files.add(replace(self.storing_entry(name, st), **(meta or {})))  # gets its id
        except BaseException:
            os.close(src.fd)
            raise
        self._sources[entry.id] = src
        return entry

    def storing_entry(self, name: str, st: os.stat_result) -> FileEntry:
        """The `storing` record of a new file named `name` of a source that looks like `st`."""
        settings, chunk = self.ctx.settings, self.ctx.settings.chunk_size
        return FileEntry(id=0, name=name, size=st.st_size, status=STORING, parts=-(-st.st_size // chunk),
                         chunk_size=chunk, codec=settings.codec, hash=settings.hash, uuid=uuid.uuid4().hex,
                         created=time.time(), mode=stat.S_IMODE(st.st_mode) & 0o777, mtime=st.st_mtime_ns,
                         uid=st.st_uid, gid=st.st_gid, copies=self.ctx.layout.copies, ec=settings.ec,
                         session=self.ctx.sessions.id)

    def finish_put(self, entry: FileEntry, source: str, progress: Progress = no_progress,
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
                run = self.ctx.engine.run if entry.size > STORED_HERE else run_here
                results = run(worker.store_part, tasks, written, cancel)
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
        found = self.checking.scan_parts(done, None, no_progress, cancel, relocate=True, only_moving=True)
        if found.damage or found.bad:
            raise PfsError(f"{why.message}, and too few copies or shards of some parts were written elsewhere",
                           why.advice)

    def check_room(self) -> None:
        """Refuse to store new files where too few volumes can take their pieces now."""
        self._check_room(self.ctx.layout)

    def _check_room(self, layout: Layout) -> None:
        """Refuse a layout that needs more volumes than can take parts now."""
        usable = self.ctx.volset.writable()
        if len(usable) < layout.width:
            volset = self.ctx.volset
            others = ", ".join(f"volume {v} {volset.status(v)}" for v in volset.configs if v not in usable)
            raise UsageError(f"storing {layout.describe()} needs {layout.width} volume{'s' * (layout.width > 1)} "
                             f"with free space, and {len(usable)} {'has' if len(usable) == 1 else 'have'} some"
                             + (f" ({others})" if others else ""),
                             "free some space, add a volume with `volume add DIR`, or ask for fewer copies")

    def part_tasks(self, entry: FileEntry) -> Callable[[int, str, int, int], tuple[int, tuple]]:
        """What stores part `index` of a file from `size` bytes of `source` at
        `offset`, as (memory, worker.store_part's arguments): its copies or
        shards go to the volumes that take pieces now, best placed first."""
        return self.tasks_of([entry])[0]

    def tasks_of(self, entries: list[FileEntry]) -> list[Callable[[int, str, int, int], tuple[int, tuple]]]:
        """part_tasks of each of `entries` (a batch: see pfs.store.batch), the
        volumes looked at once for them all."""
        refresh_volumes(self.ctx)  # after the files' records: see remove_volume
        weights = self.ctx.volset.writable()
        descs = {vid: self.ctx.volset.describe(vid) for vid in weights}
        return [self._task(entry, weights, descs) for entry in entries]

    def _task(self, entry: FileEntry, weights: dict[int, float], descs: dict[int, dict]):
        layout = Layout.of(entry)

        def task(index: int, source: str, offset: int, size: int) -> tuple[int, tuple]:
            pid = part_id(entry.uuid, index)
            targets = [(vid, descs[vid]) for vid in placement.rank(pid, weights)]
            return part_memory(size, layout, self.ctx.sealed), (source, offset, size, entry.codec, entry.hash, layout,
                                                                pid, targets, self.ctx.sealed_for)
        return task

    def flush_part(self, entry: FileEntry, index: int, result: tuple) -> list[Future]:
        """Make the pieces a worker wrote for part `index` (`result`: store_part's) durable, soon."""
        keys = Layout.of(entry).keys(part_id(entry.uuid, index))
        volume, sync_soon = self.ctx.volset.volume, self.ctx.engine.sync_soon
        return [sync_soon(volume(vid).flush, [key]) for vid, key in zip(result[3], keys)]

    def begin_write(self, name: str) -> FileEntry:
        """Record a file that will be written as a stream, as `storing` with room
        for one part: its size is known only at the end, and reserve() says how
        many parts a crash may have to roll back meanwhile."""
        settings = self.ctx.settings
        refresh_volumes(self.ctx)
        self._check_room(self.ctx.layout)
        entry = FileEntry(id=0, name=names.check(name), size=settings.chunk_size, status=STORING, parts=1,
                          chunk_size=settings.chunk_size, codec=settings.codec, hash=settings.hash,
                          uuid=uuid.uuid4().hex, created=time.time(), mode=0o644, mtime=time.time_ns(),
                          copies=self.ctx.layout.copies, ec=settings.ec, session=self.ctx.sessions.id)
        return self.ctx.files.add(entry)  # gets its id

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
        self.ctx.files.save(reserved)
        return reserved

    def abandon(self, entry: FileEntry) -> None:
        """Remove every trace of a file that was never stored: parts, manifest, record."""
        self.sweeper.sweep_or_note(entry)
        self.ctx.parts.remove(entry.id)
        self.ctx.files.remove(entry.id)

    def publish(self, entry: FileEntry, results: list[tuple], keep: bool = False, lost: list[VolumeError] = (),
                cancel: threading.Event | None = None) -> FileEntry:
        """Make a file whose parts are written and flushed (`results`: each part's
        store_part result) stored: its name now resolves to it, in one journal
        record. Pieces whose flush failed as their volume did (`lost`), or
        whose local volume is gone since, are rebuilt elsewhere first. The
        file it replaces under that name is deleted then, unless `keep`."""
        manifest = self.stored_manifest(entry, results)
        done, parts = manifest.file, manifest.parts
        self.ctx.parts.save(manifest)
        lost = [*lost, *self.ctx.volset.gone(vid for part in results for vid in part[3])]
        if lost:
            self._keep_off_lost_volumes(done, lost[0], cancel)
            parts = self.ctx.parts.load(entry.id).parts
        # the name, and what it replaces, taken by compare-and-swap against every other pfs
        done = self.ctx.files.take_name(entry, replace(done, placed=usage.placed(parts)), keep)
        if done is None:
            raise rolled_back(entry)
        self.catalog.drop_replaced(done)
        return done

    def stored_manifest(self, entry: FileEntry, results: list[tuple]) -> Manifest:
        """The manifest of a file whose parts are written (`results`: each part's
        store_part result), with its record as it is once stored (see publish)."""
        chunk, layout = entry.chunk_size, Layout.of(entry)
        parts = [PartEntry(index=i, id=part_id(entry.uuid, i), offset=i * chunk,
                           size=min(chunk, entry.size - i * chunk), stored=stored, codec=used, hash=h,
                           volume=placed[0], copies=[] if layout.ec else placed, shards=shards, sealed=sealed)
                 for i, (h, used, stored, placed, shards, sealed) in enumerate(results)]
        done = replace(entry, status=STORED, stored=sum(p.stored for p in parts),
                       digest=codec.file_digest([p.hash for p in parts]), replaces=0)
        return Manifest(done, parts)

    def roll_back(self, entry: FileEntry, exc: BaseException) -> None:
        """Undo a put that failed: its pieces swept, its manifest removed, its record failed."""
        self._roll_back(entry, exc)

    def _roll_back(self, entry: FileEntry, exc: BaseException) -> None:
        self.sweeper.sweep_or_note(entry)
        self.ctx.parts.remove(entry.id)
        self.ctx.files.save(replace(entry, status=FAILED, reason=describe(exc)))
