"""What a drain or a remove of a volume must know of the work around it:
whether a drain can finish at all (volumes and room enough left for the copies
or shards of the files it would move); the puts begun before it, which chose
their volumes before the volume was marked draining and may still place pieces
there (the drain waits for each, then moves what it placed); and whether
pieces are being moved right now (a remove waits for that)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from pfs.errors import Cancelled, PfsError, UsageError
from pfs.registry import STORING, FileEntry, read_json
from pfs.store.context import Context
from pfs.store.holdings import files_on, volume_usage
from pfs.store.volume_config import refresh_volumes
from pfs.units import format_size
from pfs.volumes.redundancy import Layout

#: Seconds between two looks at a put another pfs is running.
POLL = 0.05
#: Looks between two claims of dead sessions (a put whose pfs died is rolled back, not waited for).
CLAIM_EVERY = 20


def check_drainable(ctx: Context, vid: int) -> None:
    """Refuse a drain that cannot finish: the only volume, or too few other
    volumes with free space for the widest layout of the files on it (or of
    new puts), or less free space on them than it holds (where they can tell)."""
    refresh_volumes(ctx)
    if len(ctx.volset.configs) == 1:
        raise UsageError(f"volume {vid} is the store's only volume: a drain would have nowhere to move its pieces",
                         "add another one first with `volume add DIR`")
    others = [v for v in ctx.volset.writable() if v != vid]
    widths = {Layout.of(e).width for e in map(ctx.files.get, files_on(ctx, vid)) if e is not None}
    width = max(widths | {ctx.layout.width})
    if len(others) < width:
        raise UsageError(f"volume {vid} cannot be drained: its files' copies or shards need {width} other "
                         f"volume{'s' * (width > 1)} with free space, and {len(others)} "
                         f"{'has' if len(others) == 1 else 'have'} some",
                         "add a volume with `volume add DIR` first")
    held = volume_usage(ctx).get(vid, (0, 0))[1]
    free = [ctx.volset.volume(v).free() for v in others]
    if held and None not in free and sum(free) < held:
        raise UsageError(f"volume {vid} cannot be drained: it holds {format_size(held)}, and the other volumes "
                         f"have {format_size(sum(free))} free", "free some space or add a volume first")


def puts_in_flight(ctx: Context) -> list[int]:
    """The files being stored now, by any pfs (read once the volume is marked
    draining: a put recorded after this chooses its volumes after the mark)."""
    return [e.id for e in ctx.files.unsettled() if e.status == STORING]


def wait_stored(ctx: Context, finish_dead: Callable[[], object], file_id: int,
                cancel: threading.Event | None = None) -> None:
    """Wait until the file's put (in any pfs) has ended, stored or not; a put
    whose pfs died is rolled back meanwhile (`finish_dead`), as an open would."""
    looks = 0
    while (entry := ctx.files.get(file_id)) is not None and entry.status == STORING:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"stopped waiting for the put of {entry.name} (file {file_id})")
        looks += 1
        if looks % CLAIM_EVERY == 0:
            finish_dead()
        time.sleep(POLL)


def moves_running(ctx: Context, busy: set[int], intents: Path) -> bool:
    """Whether a heal, drain or scrub of a live session is moving pieces now.
    A note of a move (an intent) that is left only because a volume could not
    be reached to remove old pieces moves nothing: one of a dead session, or
    one of this pfs for a file it is not working on."""
    with ctx.sessions.claim_dead() as dead:
        for intent in sorted(intents.iterdir()):
            if intent.name.startswith("."):
                continue
            try:
                entry = FileEntry.from_dict(read_json(intent, ctx.root))
            except (PfsError, ValueError):
                return True  # damaged: an open says so
            if entry.id in busy if entry.session == ctx.sessions.id else not dead(entry.session):
                return True
    return False
