"""What each volume holds, as the stored files' records say (see
pfs.registry.usage): the files with pieces on a volume, the pieces and bytes
per volume, and keeping a record true when its pieces move. Records made
before they kept it are answered from their manifests."""

from __future__ import annotations

from dataclasses import replace

from pfs.registry import Manifest, PartEntry, usage
from pfs.store.context import Context

#: Times a record is read again when another client changed it between the read and the write.
RETRIES = 5


def files_on(ctx: Context, vid: int) -> list[int]:
    """The stored files with a copy or shard on volume `vid`."""
    on, unknown = ctx.files.on_volume(vid)
    older = [i for i in unknown if any(vid in p.volumes() for p in _parts(ctx, i))]
    return sorted({*on, *older})


def volume_usage(ctx: Context) -> usage.Usage:
    """Volume id -> (pieces, bytes) the stored files place there."""
    held, unknown = ctx.files.volume_usage()
    for i in unknown:
        usage.add(held, usage.usage(usage.placed(_parts(ctx, i))))
    return held


def files_to_heal(ctx: Context) -> list[int]:
    """The stored files with pieces on a volume that does not keep them (missing, draining)."""
    return sorted({i for v in ctx.volset.configs if not ctx.volset.keeps(v) for i in files_on(ctx, v)})


def note_placed(ctx: Context, file_id: int, parts: list[PartEntry]) -> None:
    """Bring the file's record to where its pieces are now (after its manifest:
    an intent covers the moment between, and its finishing calls this again)."""
    placed = usage.placed(parts)
    for _ in range(RETRIES):
        now = ctx.files.get(file_id)
        if now is None or now.placed == placed or ctx.files.swap(now, replace(now, placed=placed)):
            return


def _parts(ctx: Context, file_id: int) -> list[PartEntry]:
    manifest: Manifest | None = ctx.parts.load(file_id)
    return manifest.parts if manifest else []
