"""Volume administration: add, report, drain and remove the store's volumes."""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass

from pfs.errors import NotFoundError, UsageError, VolumeError
from pfs.registry import STORING
from pfs.store.context import Context
from pfs.store.draining import check_drainable, moves_running, puts_in_flight, wait_stored
from pfs.store.holdings import files_on, files_to_heal, volume_usage
from pfs.store.paths import user_path
from pfs.store.opening import INTENTS
from pfs.store.recovery import Recovery
from pfs.store.volume_config import changing_volumes, refresh_volumes
from pfs.volumes.volset import ACTIVE, DRAINING, VolumeConfig

log = logging.getLogger("pfs")


@dataclass(frozen=True)
class VolumeRow:
    """A volume as `volume list` shows it (None: unknown, the volume is missing)."""

    id: int
    location: str
    weight: float
    status: str
    used: int | None
    free: int | None
    parts: int | None


class VolumeAdmin:
    """Adds, reports, drains and removes volumes, as one step among every pfs."""

    def __init__(self, ctx: Context, recovery: Recovery) -> None:
        self.ctx, self.recovery = ctx, recovery

    def add(self, location: str, weight: float = 1.0, endpoint: str = "", create: bool = False) -> VolumeConfig:
        """Claim a directory (or s3://bucket/prefix, on `endpoint` where not the
        standard server, its bucket first created with `create`) as a new volume of the store."""
        if "://" not in location:
            path = user_path(location).absolute()
            if self.ctx.inside_store(path):
                raise UsageError(f"{location} is inside the store {self.ctx.root}",
                                 "choose a directory outside the store")
            location = str(path)
        with changing_volumes(self.ctx):
            config = self.ctx.volset.add(location, weight, endpoint, self.ctx.next_volume, create)
            self.ctx.next_volume = config.id + 1
        return config

    def report(self) -> list[VolumeRow]:
        """Every volume with its status, what it holds (as the records say: walking
        a volume is for verify) and its free space."""
        refresh_volumes(self.ctx)
        held = volume_usage(self.ctx)
        rows = []
        for vid, config in sorted(self.ctx.volset.configs.items()):
            status, used, free, parts = self.ctx.volset.status(vid), None, None, None
            if status != "missing":
                parts, used = held.get(vid, (0, 0))
                with contextlib.suppress(VolumeError):
                    free = self.ctx.volset.volume(vid).free()
            rows.append(VolumeRow(vid, self.ctx.volset.location(config), config.weight, status, used, free, parts))
        return rows

    def volume_id(self, text: str) -> int:
        """A volume id as the user typed it; NotFoundError unless the store has it."""
        if text.isdigit() and text.isascii():
            self._check_known(int(text))
            return int(text)
        raise NotFoundError(f"no volume {text}", "`volume list` shows the volumes")

    def _check_known(self, vid: int) -> None:
        if vid not in self.ctx.volset.configs:
            refresh_volumes(self.ctx)
        if vid not in self.ctx.volset.configs:
            raise NotFoundError(f"no volume {vid}", "`volume list` shows the volumes")

    def files_on(self, vid: int) -> list[int]:
        """The stored files with a copy or shard on volume `vid` (their records say)."""
        return files_on(self.ctx, vid)

    def files_to_heal(self) -> list[int]:
        """The stored files with pieces on a volume that does not keep them (missing, draining)."""
        refresh_volumes(self.ctx)
        return files_to_heal(self.ctx)

    def start_drain(self, vid: int) -> list[int]:
        """Mark a volume draining: nothing new goes there, and heal moves what it
        holds. Refused if it cannot finish. Returns the files being stored when
        it began: their puts chose their volumes before, and the drain waits for them."""
        self._check_known(vid)
        check_drainable(self.ctx, vid)
        self._set_state(vid, DRAINING)
        return puts_in_flight(self.ctx)

    def stop_drain(self, vid: int) -> None:
        """Take a drain back: the volume takes pieces again."""
        self._check_known(vid)
        if self.ctx.volset.configs[vid].state != DRAINING:
            raise UsageError(f"volume {vid} is not draining", f"`volume drain {vid}` drains it")
        self._set_state(vid, ACTIVE)

    def wait_stored(self, file_id: int, cancel: threading.Event | None = None) -> None:
        """Wait until the file's put, in any pfs, has ended (see draining)."""
        wait_stored(self.ctx, self._finish_dead, file_id, cancel)

    def _finish_dead(self) -> None:
        for entry in self.recovery.finish_dead():
            log.info("file %d (%s) was %s when its pfs stopped: finished", entry.id, entry.name, entry.status)

    def _set_state(self, vid: int, state: str) -> str:
        """Set a volume's state (active, draining); returns the one it had."""
        with changing_volumes(self.ctx):
            self._check_known(vid)
            was = self.ctx.volset.configs[vid].state
            self.ctx.volset.set_state(vid, state)
        return was

    def remove(self, vid: int) -> None:
        """Forget a volume that holds nothing (drained, or lost and healed). It is
        marked draining first, in a change of its own, so that every pfs places
        nothing there from then on (each takes up the configuration before it
        places a piece); what was placed before shows below, as a put or a move
        still running, or in a manifest. A refusal leaves its state as it was."""
        refresh_volumes(self.ctx)
        self._check_known(vid)
        if len(self.ctx.volset.configs) == 1:
            raise UsageError(f"volume {vid} is the store's only volume", "add another one first")
        self._check_unused(vid)
        was = self._set_state(vid, DRAINING)
        try:
            self._check_nothing_going_to(vid)
            self._check_unused(vid)
            self._check_no_pieces(vid)
        except BaseException:
            if was != DRAINING:
                self._set_state(vid, was)
            raise
        volume = self.ctx.volset.volume(vid) if self.ctx.volset.readable(vid) else None
        with changing_volumes(self.ctx):
            self._check_known(vid)
            self.ctx.volset.forget(vid)
        if volume is not None:  # its place can be added again
            with contextlib.suppress(VolumeError):
                volume.release()

    def compact(self, vid: int | None = None) -> list[tuple[int, int, int]]:
        """Reclaim the space of removed pieces in packs on volume `vid` (every
        reachable one if None): (volume, packs compacted, bytes freed) each.
        Safe beside running puts, gets and other compactions (pfs.volumes.packs)."""
        refresh_volumes(self.ctx)
        if vid is not None:
            self._check_known(vid)
            if not self.ctx.volset.readable(vid):
                raise UsageError(f"volume {vid} cannot be compacted: {self.ctx.volset.why(vid)}")
        vids = [vid] if vid is not None else [v for v in sorted(self.ctx.volset.configs) if self.ctx.volset.readable(v)]
        return [(v, *self.ctx.volset.volume(v).compact()) for v in vids]

    def _check_unused(self, vid: int) -> None:
        """Refuse while a stored file has pieces on the volume."""
        users = self.files_on(vid)
        if users:
            raise UsageError(f"volume {vid} still holds pieces of {len(users)} file(s) (first: file {users[0]})",
                             f"`volume drain {vid}` moves them first (or `heal` if the volume is lost)")

    def _check_no_pieces(self, vid: int) -> None:
        """Refuse while a key of the volume names a piece, once no put or move is
        running any more (see _check_nothing_going_to): what is left is stray."""
        refresh_volumes(self.ctx)
        if self.ctx.volset.readable(vid):
            volume = self.ctx.volset.volume(vid)
            if next(iter(volume.keys()), None) is not None:
                raise UsageError(f"volume {vid} holds parts no file references",
                                 f"`pfs --store {self.ctx.root} repair` sets them aside")

    def _check_nothing_going_to(self, vid: int) -> None:
        """Refuse while a put or a move of pieces (heal, drain, scrub) that may have
        chosen the volume before it was marked draining is still running, in any
        pfs; what dead ones left is finished first, as at open."""
        self._finish_dead()
        storing = next((e for e in self.ctx.files.unsettled() if e.status == STORING), None)
        if storing:
            raise UsageError(f"file {storing.id} ({storing.name}) is being stored, and its parts may go to volume "
                             f"{vid}", f"run `volume remove {vid}` again once it is stored")
        if moves_running(self.ctx, self.recovery.catalog.busy(), self.ctx.root / INTENTS):
            raise UsageError(f"pieces are being moved (a heal, drain or scrub is running), and may go to volume "
                             f"{vid}", f"run `volume remove {vid}` again once it has finished")
