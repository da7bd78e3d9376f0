"""What the listing, info, volume and job commands show, as plain tables and fields."""

from __future__ import annotations

import bisect
import os
import time
from collections import Counter
from operator import itemgetter

from pfs.cli.commands.records import directory_record, file_record
from pfs.cli.output import Table
from pfs.registry import BLOCK, CHAR, DIR, FIFO, FILE, LINK, SOCKET, STORED, SYMLINK, FileEntry, Manifest
from pfs.store.facade import Store
from pfs.units import format_rate, format_size

#: What `list` and `info` call each kind of record that is not a regular file.
KIND_WORDS = {DIR: "directory", SYMLINK: "symbolic link", LINK: "hard link", FIFO: "fifo",
              CHAR: "character device", BLOCK: "block device", SOCKET: "socket"}
from pfs.volumes.redundancy import Layout


def listing(store: Store, names: list[str], dirs: list[str]) -> Table:
    """The rows of `list`: each subdirectory, then every record of each name, sorted
    by name; a recorded directory once (its record's row), a name that is both a
    file and a directory marked so."""
    records = store.files.named_each(names)
    recorded = {name for name, entries in records.items() if any(e.is_dir for e in entries)}
    rows = [["-", d, "-", "-", "directory", "-", "-", "-"] for d in dirs if d[:-1] not in recorded]
    rows += _file_rows(store, records, set(dirs) | _directories_among(names))
    rows.sort(key=itemgetter(1))
    return Table(["id", "name", "size", "parts", "status", "stored", "present", "redundancy"], rows,
                 frozenset({"id", "size", "parts", "stored", "present"}))


def _directories_among(names: list[str]) -> set[str]:
    """The directories (`a/`) that some of the sorted `names` lie in and that are names too."""
    made = set()
    for name in names:
        i = bisect.bisect_left(names, name + "/")
        if i < len(names) and names[i].startswith(name + "/"):
            made.add(name + "/")
    return made


def listing_records(store: Store, names: list[str], dirs: list[str]) -> list[dict]:
    """`list --json`: each subdirectory, then every record of each name, sorted by name."""
    entries = store.files.named_each(names)
    redundancy = store.redundancy_of([e for records in entries.values() for e in records])
    rows = [directory_record(d) for d in dirs]
    for records in entries.values():
        current = resolved(records)
        rows += [file_record(e, redundancy[e.id], e is current) for e in records]
    return sorted(rows, key=itemgetter("name"))


def _file_rows(store: Store, records: dict[str, list[FileEntry]], dirs: set[str]) -> list[list[str]]:
    """A listing's row of each record of each name, in one plain loop: it runs
    100,000 times for a big store. `dirs` are the directories the names make."""
    redundancy = store.redundancy_of([e for entries in records.values() for e in entries])
    # most files share one Redundancy (their layout, all present): its cells are made once
    cells = {key: [r.counts, str(r)] for key, r in {id(r): r for r in redundancy.values()}.items()}
    rows = []
    for entries in records.values():
        current = resolved(entries)
        for e in entries:
            stored = e.status == STORED
            status = e.status + (f" ({e.reason})" if e.reason else "") + \
                (" (older version)" if stored and e is not current else "")
            if e.kind != FILE:
                rows.append(_entry_row(e, status, dirs))
                continue
            if e.name + "/" in dirs:
                status += f" (also a directory: {e.name}/)"
            rows.append([str(e.id), e.name, format_size(e.size), str(e.parts), status,
                         format_size(e.stored) if stored else "-", *cells[id(redundancy[e.id])]])
    return rows


def _entry_row(e: FileEntry, status: str, dirs: set[str]) -> list[str]:
    """The row of a directory or symlink record: no size, no parts."""
    if e.is_dir:
        kind = "directory" if status == STORED else f"directory, {status}"
        return [str(e.id), e.name + "/", "-", "-", kind, "-", "-", "-"]
    also = f" (also a directory: {e.name}/)" if e.name + "/" in dirs else ""
    kind = (f"symlink -> {e.target}" if e.kind == SYMLINK else f"hard link to {e.target}" if e.kind == LINK
            else KIND_WORDS[e.kind]) + ("" if status == STORED else f", {status}") + also
    return [str(e.id), e.name, "-", "-", kind, "-", "-", "-"]


def resolved(entries: list[FileEntry]) -> FileEntry | None:
    """Of the records of one name, the one the name resolves to: the last stored."""
    for e in reversed(entries):
        if e.status == STORED:
            return e
    return None


def info_fields(store: Store, entry: FileEntry, manifest: Manifest | None) -> list[tuple[str, str]]:
    """The labelled lines of `info`: size, status, parts, codec, redundancy, where, hash, when."""
    status = entry.status + (f" ({entry.reason})" if entry.reason else "")
    parts = f"{entry.parts} of {format_size(entry.chunk_size)}"
    fields = [("name", entry.name), ("id", str(entry.id)), *_kind_fields(entry),
              ("size", f"{format_size(entry.size)} ({entry.size:,} bytes)"), ("status", status), ("parts", parts)]
    if manifest:
        codecs = Counter(p.codec for p in manifest.parts)
        fields += [("stored", _stored(entry, manifest)),
                   ("codec", ", ".join(f"{c} ({n} part{'s' * (n != 1)})" for c, n in codecs.most_common()))]
    else:
        fields.append(("codec", f"{entry.codec} (chosen)"))
    redundancy = store.redundancy_of([entry])[entry.id]
    fields.append(("redundancy", str(redundancy)))
    if manifest:
        where = "on its worst part" if redundancy.short else "on every part"
        fields += [("present", f"{redundancy.counts} {where}"),
                   ("volumes", ", ".join(_pieces_on(store, vid, n)
                                         for vid, n in store.volumes_of(manifest).items()))]
    fields += [("hash", entry.hash), ("digest", entry.digest or "-"),
               ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created)))]
    return fields


def _kind_fields(entry: FileEntry) -> list[tuple[str, str]]:
    """What a directory or symlink record is, and the source's metadata it restores
    (a regular file's summary stays as it was)."""
    if entry.kind == FILE:
        return []
    fields = [("kind", KIND_WORDS[entry.kind])]
    if entry.target:
        fields.append(("target", entry.target))
    if entry.kind in (CHAR, BLOCK):
        fields.append(("device", f"{os.major(entry.rdev)}, {os.minor(entry.rdev)}"))
    if entry.mode is not None:
        fields.append(("mode", f"{entry.mode:04o}"))
    if entry.mtime is not None:
        fields.append(("modified", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.mtime / 1e9))))
    if entry.uid is not None:
        fields.append(("owner", f"uid {entry.uid}, gid {entry.gid}"))
    return fields


def _stored(entry: FileEntry, manifest: Manifest) -> str:
    """A file's size once compressed and, with copies or shards, what they all take on the volumes."""
    share = f" ({entry.stored / entry.size:.1%} of its size)" if entry.size else ""
    layout = Layout.of(entry)
    if layout.width == 1:
        return f"{format_size(entry.stored)} on disk{share}"
    on_volumes = sum(sum(p.piece_sizes()) for p in manifest.parts)
    return f"{format_size(entry.stored)} compressed{share}, {format_size(on_volumes)} on disk with {layout.describe()}"


def _pieces_on(store: Store, vid: int, count: int) -> str:
    status = store.volset.status(vid, ask=False)  # asks no server: see VolumeSet.status
    return f"{vid}: {count} piece{'s' * (count != 1)}" + ("" if status == "online" else f" ({status})")


def parts_table(store: Store, manifest: Manifest | None) -> Table:
    """`info --parts`: one row per part, with the volumes its pieces are on."""
    rows = [[str(p.index), str(p.offset), str(p.size), str(p.stored), p.codec, p.hash, p.status, p.id,
             " ".join(store.piece_places(p))]
            for p in (manifest.parts if manifest else [])]
    return Table(["part", "offset", "size", "stored", "codec", "hash", "status", "part id", "volumes"], rows,
                 frozenset({"part", "offset", "size", "stored"}))


def volume_table(report: list) -> Table:
    """`volume list`: each volume's place, weight, space, parts and status."""
    def size(n: int | None) -> str:
        return "-" if n is None else format_size(n)
    rows = [[str(v.id), v.location, f"{v.weight:g}", size(v.used), size(v.free),
             "-" if v.parts is None else str(v.parts), v.status] for v in report]
    return Table(["id", "location", "weight", "used", "free", "parts", "status"], rows,
                 frozenset({"id", "weight", "used", "free", "parts"}))


def jobs_table(jobs: list) -> Table:
    """`jobs`: each running job's kind, file, progress and rate."""
    rows = [[str(j.id), j.kind, str(j.file_id), j.name, f"{j.fraction:.0%}",
             format_rate(j.done, j.elapsed), f"{j.elapsed:.1f} s"] for j in jobs]
    return Table(["job", "kind", "file", "name", "done", "rate", "time"], rows,
                 frozenset({"job", "file", "done", "rate", "time"}))
