"""How whole each file's redundancy is now: its copies or shards on volumes that keep them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pfs.registry import STORED, FileEntry, Manifest, PartEntry
from pfs.store.context import Context
from pfs.store.volume_config import refresh_volumes
from pfs.volumes.redundancy import Layout


@dataclass(frozen=True)
class Redundancy:
    """A file's copies or shards: how many each part should have, how many its
    worst part has on volumes that keep them (`present`; None until the file is
    stored) and, when some part is short, which parts and why."""

    layout: Layout
    present: int | None
    short: str = ""

    def __str__(self) -> str:
        return self.layout.describe() + (f": {self.short}" if self.short else "")

    @property
    def counts(self) -> str:
        """Present of wanted, e.g. 2/2 or 5/6; - until stored."""
        return "-" if self.present is None else f"{self.present}/{self.layout.width}"


class Health:
    """Reports each file's redundancy and where its pieces are, asking no server."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def redundancy_of(self, entries: list[FileEntry]) -> dict[int, Redundancy]:
        """Each file's copies or shards, e.g. "2 copies", 2/2 present; where a volume
        does not keep its pieces (missing, draining), how many a stored file's
        worst part still has, e.g. "ec 4+2: 3 parts with 5 of 6 (volume 1
        missing)", 5/6. Manifests are read only when some volume does not keep
        its pieces."""
        refresh_volumes(self.ctx)
        degraded = not all(self._keeps_as_known(v) for v in self.ctx.volset.configs)
        healthy: dict[tuple, Redundancy] = {}  # the many files of one layout share their answer

        def as_laid_out(e: FileEntry) -> Redundancy:
            key = (e.copies, e.ec, e.status == STORED)
            if key not in healthy:
                layout = Layout.of(e)
                healthy[key] = Redundancy(layout, layout.width if key[2] else None)
            return healthy[key]
        return {e.id: self._redundancy(e) if degraded and e.status == STORED else as_laid_out(e) for e in entries}

    def _redundancy(self, entry: FileEntry) -> Redundancy:
        layout = Layout.of(entry)
        manifest = self.ctx.parts.load(entry.id)
        short = [p for p in (manifest.parts if manifest else []) if not all(map(self._keeps_as_known, p.volumes()))]
        if not short:
            return Redundancy(layout, layout.width)
        worst = min(sum(map(self._keeps_as_known, p.volumes())) for p in short)
        gone = sorted({v for p in short for v in p.volumes() if not self._keeps_as_known(v)})
        why = ", ".join(f"volume {v} {self.ctx.volset.status(v, ask=False)}" for v in gone)
        return Redundancy(layout, worst, f"{len(short)} part{'s' * (len(short) != 1)} with {worst} of "
                                         f"{layout.width} ({why})")

    def _keeps_as_known(self, vid: int) -> bool:
        """keeps(), asking no server: a listing answers at once even with one down."""
        return self.ctx.volset.keeps(vid, ask=False)

    def volumes_of(self, manifest: Manifest) -> dict[int, int]:
        """How many copies or shards of a file each volume holds, by volume id."""
        return dict(sorted(Counter(v for p in manifest.parts for v in p.volumes()).items()))

    def piece_places(self, part: PartEntry) -> list[str]:
        """Where each copy or shard of a part lives: its volume, and its status when
        not online."""
        status = {v: self.ctx.volset.status(v, ask=False) for v in part.volumes()}
        return [str(v) + ("" if status[v] == "online" else f" ({status[v]})") for v in part.volumes()]
