"""Reading a stored file's parts through the pool: verify, heal, scrub, and the
reads of get, checking every piece read and moving pieces off volumes that no
longer keep them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from pfs import codec
from pfs.crypto.keyring import WRITE_ONLY
from pfs.engine import worker
from pfs.errors import UsageError, VolumeUnavailableError
from pfs.registry import DIR, FILE, KINDS, LINK, STORED, SYMLINK, FileEntry, Manifest, PartEntry, damaged
from pfs.store.catalog import Catalog
from pfs.store.context import Context, Progress, no_progress, part_memory
from pfs.store.holdings import note_placed
from pfs.store.sweeping import Sweeper
from pfs.store.volume_config import refresh_volumes
from pfs.units import format_size
from pfs.volumes import placement
from pfs.volumes.redundancy import Layout


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


def refuse_write_only(ctx: Context) -> None:
    """Refuse to read in a pfs that holds only a recipient key (see docs/encryption.md)."""
    if ctx.keys.write_only:
        raise UsageError(f"{WRITE_ONLY}, and reads nothing stored back (get, cat, verify, heal, drain, mount)",
                         "open the store with its password to read it")


class Checking:
    """Reads every part of a stored file, checking, healing and moving pieces."""

    def __init__(self, ctx: Context, sweeper: Sweeper, catalog: Catalog) -> None:
        self.ctx, self.sweeper, self.catalog = ctx, sweeper, catalog

    def checked_manifest(self, entry: FileEntry) -> Manifest:
        """The file's manifest, refused if it disagrees with the file record."""
        return self.check_manifest(entry, self.ctx.parts.load(entry.id))

    def check_manifest(self, entry: FileEntry, manifest: Manifest | None) -> Manifest:
        """`manifest` (as loaded for `entry`), refused if missing or if it disagrees with the file record."""
        where = self.ctx.parts.where(entry.id)
        if manifest is None:
            raise damaged(self.ctx.root, f"the manifest of file {entry.id} ({entry.name}) is missing: {where}")
        offset = 0
        for i, p in enumerate(manifest.parts):
            if p.index != i or p.offset != offset or not 0 < p.size <= entry.chunk_size or not 0 <= p.stored <= p.size:
                raise damaged(self.ctx.root, f"the manifest of file {entry.id} is damaged at part {i}: {where}")
            offset += p.size
        if offset != entry.size or len(manifest.parts) != entry.parts or manifest.file.uuid != entry.uuid or \
                codec.file_digest([p.hash for p in manifest.parts]) != entry.digest:
            raise damaged(self.ctx.root, f"the manifest of file {entry.id} does not match its record: {where}")
        return manifest

    def stored_entry(self, file_id: int, kinds: frozenset[str] = frozenset({FILE})) -> FileEntry:
        """A stored record of one of `kinds` (a regular file, unless told), to
        read: refused by a write-only pfs, which opens no piece."""
        refuse_write_only(self.ctx)
        entry = self.catalog.entry(file_id)
        if entry.status != STORED:
            why = f": {entry.reason}" if entry.reason else ""
            raise UsageError(f"file {file_id} ({entry.name}) is {entry.status}{why}",
                             "only stored files can be read; `delete` removes it")
        if entry.kind == LINK and LINK not in kinds:
            raise UsageError(f"{entry.name} is a hard link to {entry.target}",
                             f"get {entry.target} gives its bytes; get -r restores the links")
        if entry.kind not in kinds:
            what = {DIR: "directory", SYMLINK: "symbolic link"}.get(entry.kind, f"special file ({entry.kind})")
            raise UsageError(f"{entry.name} is a {what}", "get -r restores a directory, its symbolic links included")
        return entry

    def check_parts(self, entry: FileEntry, out_path: str | None, progress: Progress,
                     cancel: threading.Event | None, **how: bool) -> Findings:
        """_scan_parts while holding the file (see reading); its record is read
        again under the hold, so a delete that ran before it is seen here."""
        with self.catalog.reading(entry.id):
            return self.scan_parts(self.stored_entry(entry.id), out_path, progress, cancel, **how)

    def scan_parts(self, entry: FileEntry, out_path: str | None, progress: Progress,
                    cancel: threading.Event | None, every: bool = False, heal: bool = True,
                    relocate: bool = False, only_moving: bool = False) -> Findings:
        """Read every part through the pool (into `out_path` when given), checking
        the pieces it reads (all of them with `every`), rewriting damaged pieces
        in place (`heal`) and, with `relocate`, moving pieces off volumes that no
        longer keep them (missing, draining); `only_moving` reads only the parts
        that have such pieces."""
        layout = Layout.of(entry)
        self.ctx.check_memory(entry.chunk_size, f"file {entry.id}, stored in {format_size(entry.chunk_size)} parts,",
                              layout)

        def plan() -> tuple[Manifest, list[tuple[PartEntry, worker.PartCheck]]]:
            refresh_volumes(self.ctx)
            manifest = self.checked_manifest(entry)
            weights = self.ctx.volset.writable() if relocate else {}
            jobs = [self._part_check(entry, layout, p, weights, out_path, every, heal, relocate)
                    for p in manifest.parts]
            return manifest, [(p, job) for p, job in zip(manifest.parts, jobs) if not only_moving or job.moves]

        manifest, todo = plan()
        if not any(job.moves for _, job in todo):
            return self._run(entry, layout, manifest, todo, progress, cancel, None)
        with self.ctx.sessions.moving(entry.id):
            intent = self.sweeper.note_intent(entry)
            # planned again inside the lock (another pfs may have moved them first) and
            # once the intent shows, which remove_volume waits for
            manifest, todo = plan()
            return self._run(entry, layout, manifest, todo, progress, cancel, intent)

    def _run(self, entry: FileEntry, layout: Layout, manifest: Manifest, todo: list[tuple[PartEntry, worker.PartCheck]],
             progress: Progress, cancel: threading.Event | None, intent: Path | None) -> Findings:
        """The planned part checks through the pool, then the moves they made recorded."""
        try:
            tasks = ((part_memory(p.size, layout, self.ctx.sealed), (job,)) for p, job in todo)
            verdicts = self.ctx.engine.run(worker.check_part, tasks, lambda i, _: progress(todo[i][0].size), cancel)
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
                self.sweeper.finish_intent(intent, lambda _: True, moving=True)
            raise
        if intent and swept:  # else the next open removes what is left where they were
            intent.unlink()
        return found

    def _part_check(self, entry: FileEntry, layout: Layout, p: PartEntry, weights: dict[int, float],
                    out_path: str | None, every: bool, heal: bool, relocate: bool) -> worker.PartCheck:
        """The worker's task for one part; a piece on a volume that does not keep
        it gets, with `relocate`, the volumes it may move to, best first."""
        volumes = p.volumes()
        pieces = [(v, self.ctx.volset.describe(v) if self.ctx.volset.readable(v) else None) for v in volumes]
        moves = {}
        if relocate:
            keys = layout.keys(p.id)
            for j, v in enumerate(volumes):
                if not self.ctx.volset.keeps(v):
                    moves[j] = [(t, self.ctx.volset.describe(t)) for t in placement.rank(keys[j], weights)
                                if t not in volumes]
        absent = {v: self.ctx.volset.why(v) for v, desc in pieces if desc is None}
        return worker.PartCheck(layout, p.id, p.stored, p.codec, p.size, entry.hash, p.hash, pieces, p.shards,
                                out_path, p.offset, every, heal, moves, self.ctx.sealed_for, absent, sealed=p.sealed)

    def restore_job(self, entry: FileEntry, part: PartEntry, out_path: str) -> worker.PartCheck:
        """What a get -r does with a small file's part: read it into `out_path`
        through the page cache (its batch is synced at once), healing damaged pieces it meets."""
        return replace(self._part_check(entry, Layout.of(entry), part, {}, out_path, False, True, False), cached=True)

    def read_job(self, entry: FileEntry, part: PartEntry) -> worker.PartCheck:
        """What reads one part of a stored file in this process (a reader), writing nothing."""
        refuse_write_only(self.ctx)
        return self._part_check(entry, Layout.of(entry), part, {}, None, False, False, False)

    def _record_moves(self, manifest: Manifest, layout: Layout, moved: list[tuple[PartEntry, list[int]]]) -> bool:
        """Record where moved pieces are now, then remove them from where they
        were; returns whether every one was removed. The record is a
        compare-and-swap on the manifest: a part that another heal, drain or
        scrub moved meanwhile keeps that move, and the pieces this one wrote
        for it are removed instead."""
        while True:
            current = self.ctx.parts.load(manifest.file.id)
            # where each part's pieces are recorded now (a file deleted meanwhile keeps none of ours)
            kept = {p.index: p.volumes() for p in (current or manifest).parts}
            won = {p.index: volumes for p, volumes in moved if current and kept[p.index] == p.volumes()}
            if current is None:
                break
            parts = [p if p.index not in won else replace(
                p, volume=won[p.index][0], copies=[] if layout.ec else won[p.index],
                shards=[{**s, "volume": v} for s, v in zip(p.shards, won[p.index])]) for p in current.parts]
            if self.ctx.parts.swap(current, Manifest(current.file, parts)):
                note_placed(self.ctx, manifest.file.id, parts)
                break
        stale = []  # (volume, key) of every piece no manifest points at any more
        for p, volumes in moved:
            left, recorded = (p.volumes(), volumes) if p.index in won else (volumes, kept[p.index])
            keys = layout.keys(p.id)
            stale += sorted(set(zip(left, keys)) - set(zip(recorded, keys)))
        removed = True
        for volume, key in stale:
            try:
                if not self.ctx.volset.readable(volume):
                    raise VolumeUnavailableError(f"volume {volume} cannot be reached")
                worker.remove_pieces(self.ctx.volset.describe(volume), [key])
            except VolumeUnavailableError:
                removed = False  # the intent stays: an open or heal that reaches it removes the piece
        return removed

    def verify(self, file_id: int, progress: Progress = no_progress,
               cancel: threading.Event | None = None, heal: bool = False) -> Findings:
        """Check every piece of every part of a stored file; with `heal`, rewrite the
        damaged ones and move pieces off volumes that no longer keep them
        (a scrub). Without, nothing is written. Stops when `cancel` is set.
        A directory or symlink has no parts: nothing to check."""
        entry = self.stored_entry(file_id, KINDS)
        if entry.kind != FILE:
            return Findings()
        return self.check_parts(entry, None, progress, cancel, every=True, heal=heal, relocate=heal)

    def heal(self, file_id: int, progress: Progress = no_progress,
             cancel: threading.Event | None = None) -> Findings:
        """Restore the file's redundancy: put a new copy or shard on another volume
        for each one on a volume that is missing or draining."""
        entry = self.stored_entry(file_id, KINDS)
        if entry.kind != FILE:
            return Findings()
        return self.check_parts(entry, None, progress, cancel, relocate=True, only_moving=True)
