"""Rebuild a store's metadata from whatever survives: the registry snapshot and
journal lines that still parse, the self-describing manifests, and the part
files themselves (whose hashes must add up to the file's recorded digest).
Nothing is guessed: what cannot be proven intact is reported as lost, and part
files that belong to no file are moved to lost+found/, never deleted."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from pfs import codec
from pfs.errors import StoreError
from pfs.registry import (DELETING, FAILED, STORED, STORING, FileEntry, FileRegistry, Manifest,
                          PartEntry, PartRegistry)
from pfs.volumes import Volumes, part_id

LOST_AND_FOUND = "lost+found"


@dataclass
class RepairReport:
    """What repair did (`repaired`) and what could not be saved (`lost`)."""

    repaired: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def rebuild(root: Path, files: FileRegistry, parts: PartRegistry, volumes: Volumes) -> RepairReport:
    """Make the registries agree with each other and with the part files."""
    # A damaged registry line costs no data by itself: every stored file's
    # manifest holds its record, and what has neither shows up as orphan parts.
    report = RepairReport(repaired=list(files.damage))
    manifests = _readable_manifests(root, parts, report)
    for file_id, manifest in manifests.items():
        _adopt(files, parts, manifest, report)
    for entry in files.all():
        if entry.status == STORED and not parts.path(entry.id).exists():
            _rebuild_manifest(files, parts, volumes, entry, report)
    _collect_orphans(root, files, volumes, report)
    files.compact()
    return report


def _readable_manifests(root: Path, parts: PartRegistry, report: RepairReport) -> dict[int, Manifest]:
    found = {}
    for file_id in parts.ids():
        try:
            found[file_id] = parts.load(file_id)
        except StoreError as exc:
            _set_aside(root, parts.path(file_id))  # its file is rebuilt from the parts, or reported lost
            report.repaired.append(f"{exc.message}; moved to {LOST_AND_FOUND}/")
    return found


def _adopt(files: FileRegistry, parts: PartRegistry, manifest: Manifest, report: RepairReport) -> None:
    """A manifest is written only once all its parts are durable: trust it over a
    record that is missing or that a lost journal line left behind."""
    entry = files.get(manifest.file.id)
    if entry is not None and entry.status == STORED and entry.uuid == manifest.file.uuid:
        return
    if entry is not None and entry.status == DELETING:
        return  # the delete is finished when the store opens
    if entry is not None and entry.status == FAILED:
        parts.remove(manifest.file.id)  # a stale manifest of a rolled-back put
        return
    files.save(replace(manifest.file, status=STORED, reason=""))
    report.repaired.append(f"file {manifest.file.id} ({manifest.file.name}): record rebuilt from its manifest")


def _rebuild_manifest(files: FileRegistry, parts: PartRegistry, volumes: Volumes, entry: FileEntry,
                      report: RepairReport) -> None:
    """Re-derive a lost manifest from the part files; keep it only if the parts'
    hashes reproduce the file's recorded digest."""
    rebuilt = []
    for i in range(entry.parts):
        offset = i * entry.chunk_size
        size = min(entry.chunk_size, entry.size - offset)
        pid, volume = part_id(entry.uuid, i), volumes.place(i)
        try:
            payload = volumes.path(volume, pid).read_bytes()
            used = "none" if len(payload) == size else entry.codec  # raw only when compression did not pay
            data = codec.decompress(used, payload, size)
        except (OSError, codec.DecodeError):
            break
        rebuilt.append(PartEntry(i, pid, offset, size, len(payload), used, codec.digest(entry.hash, data), volume))
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
        _set_aside(root, p)
    if orphans:
        report.lost.append(f"{len(orphans)} part file(s) belonged to no file; moved to {root / LOST_AND_FOUND}")


def _set_aside(root: Path, path: Path) -> None:
    target = root / LOST_AND_FOUND / path.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(path, target)
