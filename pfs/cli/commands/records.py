"""What commands show, as plain records for `--json`: numbers in bytes and
seconds, one JSON object per line (docs/commands.md lists their fields)."""

from __future__ import annotations

from dataclasses import asdict

from pfs.cli.jobs import Job
from pfs.registry import BLOCK, CHAR, DIR, FIFO, FILE, LINK, SOCKET, STORED, SYMLINK, FileEntry, Manifest
from pfs.store.facade import Store
from pfs.store.health import Redundancy


def redundancy(r: Redundancy) -> dict:
    return {"layout": r.layout.describe(), "wanted": r.layout.width, "present": r.present, "short": r.short or None}


def file_record(e: FileEntry, r: Redundancy, current: bool) -> dict:
    """A row of `list --json`; `current`: the record its name resolves to. A
    directory record (put -r) is a directory, a symlink carries its target."""
    record = {"type": _TYPES[e.kind], "id": e.id, "name": e.name, "size": e.size, "parts": e.parts,
              "status": e.status, "reason": e.reason or None, "stored": e.stored if e.status == STORED else None,
              "current": current, "redundancy": redundancy(r)}
    if e.kind in (SYMLINK, LINK):
        record["target"] = e.target
    return record


#: A record's kind as `--json` names it.
_TYPES = {FILE: "file", DIR: "directory", SYMLINK: "symlink", LINK: "hard link", FIFO: "fifo",
          CHAR: "character device", BLOCK: "block device", SOCKET: "socket"}


def directory_record(name: str) -> dict:
    return {"type": "directory", "name": name}


def info_record(store: Store, e: FileEntry, manifest: Manifest | None, parts: bool) -> dict:
    """`info --json`: the file's record, its codecs, volumes and (with --parts) its parts."""
    record = {**file_record(e, store.redundancy_of([e])[e.id], True), "chunk_size": e.chunk_size,
              "codec": e.codec, "hash": e.hash, "digest": e.digest or None, "created": e.created,
              "volumes": {str(v): n for v, n in store.volumes_of(manifest).items()} if manifest else {}}
    del record["current"], record["type"]
    if parts:
        record["part_list"] = [{"index": p.index, "offset": p.offset, "size": p.size, "stored": p.stored,
                                "codec": p.codec, "hash": p.hash, "status": p.status, "id": p.id,
                                "volumes": store.piece_places(p)} for p in (manifest.parts if manifest else [])]
    return record


def volume_record(v) -> dict:
    return asdict(v)


def job_record(j: Job) -> dict:
    return {"job": j.id, "kind": j.kind, "file": j.file_id, "name": j.name, "done": j.done, "total": j.total,
            "seconds": round(j.elapsed, 3)}


def finished(job: Job) -> dict:
    """How a job ended: its event, the file and, for a read of the file, what it found."""
    record = {"event": job.kind, "id": job.file_id, "name": job.name, "seconds": round(job.elapsed, 3)}
    if job.kind == "put":
        e = job.result
        record.update(event="stored", id=e.id, size=e.size, parts=e.parts, stored=e.stored)
    elif job.kind == "get":
        path, found = job.result
        record.update(event="restored", path=str(path), size=job.total, **findings(found))
    elif job.kind == "delete":
        record["event"] = "deleted"
    else:
        record.update(event="verified" if job.kind == "verify" else "healed", **findings(job.result))
    return record


def findings(found) -> dict:
    return {"damaged": [str(d) for d in found.damage], "bad": list(found.bad), "healed": list(found.healed)}
