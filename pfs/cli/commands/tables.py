"""What the listing, info, volume and job commands show, as plain tables and fields."""

from __future__ import annotations

import time
from collections import Counter
from operator import itemgetter

from pfs.cli.output import Table
from pfs.registry import STORED, FileEntry, Manifest
from pfs.store.facade import Store
from pfs.units import format_rate, format_size
from pfs.volumes.redundancy import Layout


def listing(store: Store, names: list[str], dirs: list[str]) -> Table:
    """The rows of `list`: each subdirectory, then every record of each name, sorted by name."""
    rows = [["-", d, "-", "-", "directory", "-", "-", "-"] for d in dirs]
    rows += _file_rows(store, store.files.named_each(names))
    rows.sort(key=itemgetter(1))
    return Table(["id", "name", "size", "parts", "status", "stored", "present", "redundancy"], rows,
                 frozenset({"id", "size", "parts", "stored", "present"}))


def _file_rows(store: Store, records: dict[str, list[FileEntry]]) -> list[list[str]]:
    """A listing's row of each record of each name, in one plain loop: it runs
    100,000 times for a big store."""
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
            rows.append([str(e.id), e.name, format_size(e.size), str(e.parts), status,
                         format_size(e.stored) if stored else "-", *cells[id(redundancy[e.id])]])
    return rows


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
    fields = [("name", entry.name), ("id", str(entry.id)), ("size", f"{format_size(entry.size)} ({entry.size:,} bytes)"),
              ("status", status), ("parts", parts)]
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
