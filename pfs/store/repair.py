"""Rebuild a store's metadata from whatever survives: the registry snapshot and
journal records that are valid, the self-describing manifests, and the part
files themselves (whose hashes must add up to the file's recorded digest).
Nothing is guessed: where a record and a manifest disagree, the part files
decide; what cannot be proven intact is reported as lost. Nothing is deleted:
damaged metadata and part files that belong to no file are moved to
lost+found/."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from pfs import codec
from pfs.volumes import redundancy
from pfs.engine import worker
from pfs.errors import DamagedError, PfsError
from pfs.volumes.redundancy import Layout
from pfs.registry import (DELETING, FAILED, JOURNAL, SNAPSHOT, STORED, STORING, FileEntry, FileRegistry,
                          Manifest, PartEntry, PartRegistry)
from pfs.volumes import part_id
from pfs.volumes.local import LocalVolume
from pfs.volumes.volset import VolumeSet

LOST_AND_FOUND = "lost+found"


@dataclass
class RepairReport:
    """What repair did (`repaired`) and what could not be saved (`lost`)."""

    repaired: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def rebuild(root: Path, files: FileRegistry, parts: PartRegistry, volumes: VolumeSet, max_part: int,
            notes: list[str] | None = None) -> RepairReport:
    """Make the registries agree with each other and with the part files. Parts
    bigger than `max_part` bytes (more than the memory limit allows) are not read."""
    # A damaged registry record costs no data by itself: every stored file's
    # manifest holds its record, and what has neither shows up as orphan parts.
    report = RepairReport(repaired=[*(notes or []), *files.damage])
    if files.damage:  # compaction below rewrites them: keep the damaged originals
        for name in (SNAPSHOT, JOURNAL):
            if (root / name).is_file():
                shutil.copy2(root / name, _free_name(root, root / name))
    for file_id in parts.ids():
        manifest = _readable_manifest(root, parts, file_id, report)
        if manifest is not None:
            _reconcile(root, files, parts, volumes, manifest, max_part, report)
    for entry in files.all():
        if entry.status == STORED and not parts.path(entry.id).exists():
            _rebuild_manifest(files, parts, volumes, entry, max_part, report)
    _collect_orphans(root, files, parts, volumes, report)
    files.compact()
    return report


def set_aside(root: Path, path: Path) -> Path:
    """Move `path` (inside the store) to lost+found/, never over an earlier one; returns where."""
    target = _free_name(root, path)
    shutil.move(path, target)
    return target


def _free_name(root: Path, path: Path) -> Path:
    target = root / LOST_AND_FOUND / path.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    while os.path.lexists(target):
        n += 1
        target = target.with_name(f"{path.name}.{n}")
    return target


def _readable_manifest(root: Path, parts: PartRegistry, file_id: int, report: RepairReport) -> Manifest | None:
    try:
        return parts.load(file_id)
    except DamagedError as exc:
        where = set_aside(root, parts.path(file_id))  # its file is rebuilt from the parts, or reported lost
        report.repaired.append(f"{exc.message}; moved to {where}")
        return None


def _reconcile(root: Path, files: FileRegistry, parts: PartRegistry, volumes: VolumeSet, manifest: Manifest,
               max_part: int, report: RepairReport) -> None:
    """Make a file's record agree with its manifest. Where they differ, the part
    files decide: the manifest wins only if its parts are intact; otherwise it is
    set aside, and a stored record is then checked against its own part files."""
    proven = replace(manifest.file, status=STORED, reason="")
    entry = files.get(proven.id)
    if entry == proven or (entry is not None and entry.status == DELETING and entry.uuid == proven.uuid):
        return  # they agree; or a delete, which is finished when the store opens
    said = "it had no record" if entry is None else \
        "its record disagreed with its manifest" if entry.status == STORED else f"its record said {entry.status}"
    name = f"file {proven.id} ({proven.name})"
    if _intact(proven, manifest.parts, volumes, max_part):
        files.save(proven)
        report.repaired.append(f"{name}: {said}; record rebuilt from its manifest, whose parts are intact")
        return
    where = set_aside(root, parts.path(proven.id))
    if entry is not None and entry.status == STORED:  # the record's own part files are checked next
        report.repaired.append(f"{name}: {said} and the manifest's parts are not intact; manifest moved to {where}")
    else:
        report.lost.append(f"{name}: {said} and its manifest's parts are not intact; manifest moved to {where}")


def _intact(entry: FileEntry, parts: list[PartEntry], volumes: VolumeSet, max_part: int) -> bool:
    """Whether every part reads back (from a good copy or enough good shards) as
    the bytes its manifest entry hashed."""
    layout = Layout.of(entry)
    for p in parts:
        if p.stored > max_part:
            return False
        pieces = [(v, volumes.describe(v) if v in volumes.configs and volumes.readable(v) else None)
                  for v in p.volumes()]
        job = worker.PartCheck(layout, p.id, p.stored, p.codec, p.size, entry.hash, p.hash, pieces, p.shards)
        if worker.check_part(job).problem is not None:
            return False
    return True


def _find(volumes: VolumeSet, key: str, most: int) -> list[tuple[int, bytes]]:
    """Every readable volume holding `key`, with its bytes (at most `most` + 1 of them)."""
    found = []
    for vid in volumes.configs:
        if volumes.readable(vid):
            try:
                found.append((vid, volumes.volume(vid).read(key, 0, most + 1)))
            except PfsError:
                continue
    return found


def _hash(payload: bytes, codec_name: str, size: int, hash_name: str) -> str | None:
    """The hash of a payload decoded to `size` bytes, or None if it does not decode."""
    try:
        return codec.digest(hash_name, codec.decompress(codec_name, payload, size))
    except codec.DecodeError:
        return None


def _rebuild_manifest(files: FileRegistry, parts: PartRegistry, volumes: VolumeSet, entry: FileEntry,
                      max_part: int, report: RepairReport) -> None:
    """Re-derive a lost manifest from the pieces on the volumes; keep it only if
    the parts' hashes reproduce the file's recorded digest."""
    layout = Layout.of(entry)
    rebuilt = []
    for i in range(entry.parts if entry.chunk_size <= max_part else 0):
        offset = i * entry.chunk_size
        size = min(entry.chunk_size, entry.size - offset)
        part = (_rebuilt_shards if layout.ec else _rebuilt_copies)(volumes, entry, layout, i, offset, size)
        if part is None:
            break
        rebuilt.append(part)
    if len(rebuilt) == entry.parts and codec.file_digest([p.hash for p in rebuilt]) == entry.digest:
        parts.save(Manifest(entry, rebuilt))
        report.repaired.append(f"file {entry.id} ({entry.name}): manifest rebuilt from its part files")
        return
    files.save(replace(entry, status=FAILED, reason="lost: manifest missing and parts do not match"))
    report.lost.append(f"file {entry.id} ({entry.name}): manifest missing and its parts do not match its digest")


def _rebuilt_copies(volumes: VolumeSet, entry: FileEntry, layout: Layout, i: int, offset: int,
                    size: int) -> PartEntry | None:
    """Part i from its copies: the first that decodes gives its hash; the volumes
    holding those bytes are its copies (filled up with others, which heal rewrites)."""
    pid = part_id(entry.uuid, i)
    for vid, payload in _find(volumes, pid, size):
        used = "none" if len(payload) == size else entry.codec  # raw when compression did not pay
        part_hash = _hash(payload, used, size, entry.hash)
        if part_hash is not None:
            holders = [v for v, data in _find(volumes, pid, size) if data == payload]
            spare = [v for v in volumes.configs if v not in holders]
            copies = (holders + spare)[:layout.copies]
            if len(copies) < layout.copies:
                return None
            return PartEntry(i, pid, offset, size, len(payload), used, part_hash, copies[0], copies=copies)
    return None


def _rebuilt_shards(volumes: VolumeSet, entry: FileEntry, layout: Layout, i: int, offset: int,
                    size: int) -> PartEntry | None:
    """Part i from any K of its shards; the shards' records are those of the
    re-encoded part (encoding is deterministic), on the volumes found holding them."""
    pid = part_id(entry.uuid, i)
    keys = layout.keys(pid)
    limit = size // layout.k + 4096
    found = {j: hits[0] for j, key in enumerate(keys) if (hits := _find(volumes, key, limit))}
    if len(found) < layout.k:
        return None
    try:
        payload = redundancy.decode(layout, [data for _, data in found.values()][:layout.k])
    except Exception:  # pyeclib's errors for shards that do not fit together
        return None
    used = "none" if len(payload) == size else entry.codec
    part_hash = _hash(payload, used, size, entry.hash)
    if part_hash is None:
        return None
    shards = redundancy.encode(layout, payload)
    spare = iter(v for v in volumes.configs if v not in {vid for vid, _ in found.values()})
    placed = [found[j][0] if j in found else next(spare, None) for j in range(layout.width)]
    if None in placed:
        return None
    records = [{"volume": v, "hash": codec.digest(entry.hash, d), "size": len(d)} for v, d in zip(placed, shards)]
    return PartEntry(i, pid, offset, size, len(payload), used, part_hash, placed[0], shards=records)


def _collect_orphans(root: Path, files: FileRegistry, parts: PartRegistry, volumes: VolumeSet,
                     report: RepairReport) -> None:
    """Move pieces that no file references to lost+found/ (of the store, or of
    the volume's own directory when it lies outside)."""
    anywhere, placed = set(), set()
    for e in files.all():
        layout = Layout.of(e)
        manifest = parts.load(e.id) if e.status == STORED else None
        if manifest is not None:
            placed.update((v, k) for p in manifest.parts for v, k in zip(p.volumes(), layout.keys(p.id)))
        elif e.status in (STORED, STORING, DELETING):
            anywhere.update(k for i in range(e.parts) for k in layout.keys(part_id(e.uuid, i)))
    moved, places = 0, set()
    for vid in volumes.configs:
        volume = volumes.volume(vid)
        if not (isinstance(volume, LocalVolume) and volumes.readable(vid)):
            continue
        for key in list(volume.keys()):
            if key not in anywhere and (vid, key) not in placed:
                path = volume.path(key)
                base = root if path.is_relative_to(root) else volume.root
                if path.exists():
                    set_aside(base, path)
                else:  # a packed piece: its bytes are copied out, then it is removed from its pack
                    target = _free_name(base, path)
                    target.write_bytes(volume.read(key))
                    volume.remove(key)
                moved += 1
                places.add(str(base / LOST_AND_FOUND))
    if moved:
        report.lost.append(f"{moved} part file(s) belonged to no file; moved to {', '.join(sorted(places))}")
