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
from pfs.errors import DamagedError
from pfs.registry import (DELETING, FAILED, JOURNAL, SNAPSHOT, STORED, STORING, FileEntry, FileRegistry,
                          Manifest, PartEntry, PartRegistry)
from pfs.volumes import Volumes, part_id

LOST_AND_FOUND = "lost+found"


@dataclass
class RepairReport:
    """What repair did (`repaired`) and what could not be saved (`lost`)."""

    repaired: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def rebuild(root: Path, files: FileRegistry, parts: PartRegistry, volumes: Volumes, max_part: int,
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
    _collect_orphans(root, files, volumes, report)
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


def _reconcile(root: Path, files: FileRegistry, parts: PartRegistry, volumes: Volumes, manifest: Manifest,
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


def _intact(entry: FileEntry, parts: list[PartEntry], volumes: Volumes, max_part: int) -> bool:
    """Whether every part file decodes to the bytes its manifest entry hashed."""
    for p in parts:
        payload = _read_part(volumes.path(p.volume, p.id), p.stored, max_part)
        if payload is None or len(payload) != p.stored or _hash(payload, p.codec, p.size, entry.hash) != p.hash:
            return False
    return True


def _read_part(path: Path, most: int, max_part: int) -> bytes | None:
    """A part file's bytes, or None if it is missing or longer than `most` or `max_part`."""
    try:
        if os.path.getsize(path) > min(most, max_part):
            return None
        return path.read_bytes()
    except OSError:
        return None


def _hash(payload: bytes, codec_name: str, size: int, hash_name: str) -> str | None:
    """The hash of a payload decoded to `size` bytes, or None if it does not decode."""
    try:
        return codec.digest(hash_name, codec.decompress(codec_name, payload, size))
    except codec.DecodeError:
        return None


def _rebuild_manifest(files: FileRegistry, parts: PartRegistry, volumes: Volumes, entry: FileEntry,
                      max_part: int, report: RepairReport) -> None:
    """Re-derive a lost manifest from the part files; keep it only if the parts'
    hashes reproduce the file's recorded digest."""
    rebuilt = []
    for i in range(entry.parts if entry.chunk_size <= max_part else 0):
        offset = i * entry.chunk_size
        size = min(entry.chunk_size, entry.size - offset)
        pid, volume = part_id(entry.uuid, i), volumes.place(i)
        payload = _read_part(volumes.path(volume, pid), size, max_part)
        used = "none" if payload is not None and len(payload) == size else entry.codec  # raw when compression did not pay
        part_hash = None if payload is None else _hash(payload, used, size, entry.hash)
        if part_hash is None:
            break
        rebuilt.append(PartEntry(i, pid, offset, size, len(payload), used, part_hash, volume))
    if len(rebuilt) == entry.parts and codec.file_digest([p.hash for p in rebuilt]) == entry.digest:
        parts.save(Manifest(entry, rebuilt))
        report.repaired.append(f"file {entry.id} ({entry.name}): manifest rebuilt from its part files")
        return
    files.save(replace(entry, status=FAILED, reason="lost: manifest missing and parts do not match"))
    report.lost.append(f"file {entry.id} ({entry.name}): manifest missing and its parts do not match its digest")


def _collect_orphans(root: Path, files: FileRegistry, volumes: Volumes, report: RepairReport) -> None:
    """Move part files that no file references to lost+found/."""
    referenced = {str(volumes.path(volumes.place(i), part_id(e.uuid, i)))
                  for e in files.all() if e.status in (STORED, STORING, DELETING) for i in range(e.parts)}
    orphans = [p for p in volumes.all_part_files() if str(p) not in referenced]
    for p in orphans:
        set_aside(root, p)
    if orphans:
        report.lost.append(f"{len(orphans)} part file(s) belonged to no file; moved to {root / LOST_AND_FOUND}")
