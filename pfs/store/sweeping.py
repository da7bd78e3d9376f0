"""Removing a file's pieces from every volume, and the intents that make sure a
removal cut short (a crash, a volume out of reach) is finished later."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from pfs.crypto.names import as_recorded
from pfs.engine import worker
from pfs.errors import PfsError, VolumeUnavailableError
from pfs.registry import STORED, FileEntry, Manifest, damaged, fsync_dir, read_json, write_json_atomic
from pfs.store.context import Context, Progress, no_progress
from pfs.store.holdings import note_placed
from pfs.store.opening import INTENTS
from pfs.store.repair import set_aside
from pfs.volumes import part_id
from pfs.volumes.redundancy import Layout

#: Part keys removed between two progress reports of a delete.
REMOVE_BATCH = 512


def batched(items: list, n: int) -> list[list]:
    return [items[i:i + n] for i in range(0, len(items), n)]


class Sweeper:
    """Removes pieces, noting an intent wherever a removal cannot finish now."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def sweep(self, entry: FileEntry, keep: Manifest | None = None, progress: Progress = no_progress) -> bool:
        """Remove every piece of the file from every volume that can be reached,
        except those `keep` references; returns whether every volume was reached."""
        layout = Layout.of(entry)
        keys = [k for i in range(entry.parts) for k in dict.fromkeys(layout.keys(part_id(entry.uuid, i)))]
        kept = {(v, k) for p in (keep.parts if keep else [])
                for v, k in zip(p.volumes(), layout.keys(p.id))}
        unreached = {vid for vid in self.ctx.volset.configs if not self.ctx.volset.readable(vid)}
        for batch in batched(keys, REMOVE_BATCH):
            for vid in self.ctx.volset.configs.keys() - unreached:
                try:
                    worker.remove_pieces(self.ctx.volset.describe(vid), batch,
                                         frozenset(k for k in batch if (vid, k) in kept))
                except VolumeUnavailableError:
                    unreached.add(vid)
            progress(len(batch))
        return not unreached

    def sweep_or_note(self, entry: FileEntry, progress: Progress = no_progress) -> None:
        """_sweep, noting an intent where a volume could not be reached (a server
        down, a disk unmounted): the next open sweeps again, so its pieces of a
        failed or deleted file are not left there for ever."""
        if not self.sweep(entry, progress=progress):
            self.note_intent(entry)

    def note_intent(self, entry: FileEntry) -> Path:
        """Before pieces are written where no manifest says: the next open removes
        what the manifest did not take up, should pfs stop before it does."""
        path = self.ctx.root / INTENTS / f"{entry.id}.json"
        write_json_atomic(path, asdict(replace(as_recorded(self.ctx.files, entry), session=self.ctx.sessions.id)))
        return path

    def finish_intent(self, intent: Path, dead: Callable[[str], bool], moving: bool = False) -> None:
        """Remove the pieces of the intent's file that its manifest does not
        reference, if the session that noted it is dead; never while another pfs
        moves that file's pieces (it would remove the ones written and not yet
        recorded), unless the caller is the one moving them (`moving`)."""
        if intent.name.startswith("."):
            return
        try:
            entry = FileEntry.from_dict(read_json(intent, self.ctx.root))
        except (PfsError, ValueError):
            if self.ctx.repair_report is None:
                raise damaged(self.ctx.root, f"{intent} is damaged") from None
            # repair has already set aside whatever pieces no manifest references
            self.ctx.repair_report.repaired.append(f"{intent} is damaged; moved to {set_aside(self.ctx.root, intent)}")
            return
        if not dead(entry.session):
            return
        if moving:
            return self._finish(intent, entry)
        with self.ctx.sessions.moving(entry.id, wait=False) as taken:
            if taken:  # else its mover, or a later open, finishes it
                self._finish(intent, entry)

    def _finish(self, intent: Path, entry: FileEntry) -> None:
        current = self.ctx.files.get(entry.id)
        manifest = self.ctx.parts.load(entry.id) if current is not None and current.uuid == entry.uuid else None
        if manifest is not None and current.status == STORED:  # moved, maybe not yet recorded: see record_moves
            note_placed(self.ctx, entry.id, manifest.parts)
        if self.sweep(entry, manifest):
            intent.unlink()
            fsync_dir(intent.parent)
