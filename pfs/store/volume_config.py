"""The volume configuration every pfs of a store shares: taken up when it changed,
and changed as one locked step among them all."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from pfs.registry import damaged, write_json_atomic
from pfs.store.context import Context
from pfs.store.opening import CONFIG, LOCK, damaged_settings, flocked, read_config, volumes_ok
from pfs.volumes.volset import parse_volumes


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever a file is replaced (atomic writes rename a new one in)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def refresh_volumes(ctx: Context) -> None:
    """Take up the volume configuration as it is now, then look at every volume
    again. Another pfs may have added, drained or removed a volume since this
    one last looked: placing pieces by an older configuration would put them
    on a volume being removed, and never on one added. Cheap when nothing
    changed: one stat of store.json, or one small query."""
    if ctx.db is not None:
        listed, next_volume = ctx.db.volumes()
        take_volumes(ctx, listed, next_volume)
    else:
        stamp = _stamp(ctx.root / CONFIG)
        if stamp != ctx.config_stamp:
            take_config(ctx)
            ctx.config_stamp = stamp
    ctx.volset.refresh()


def take_config(ctx: Context) -> None:
    config = read_config(ctx)
    if config is None:
        raise damaged(ctx.root, f"{ctx.root / CONFIG} is missing")
    ctx.config = config
    take_volumes(ctx, config["volumes"], config["next_volume"])


def take_volumes(ctx: Context, listed: object, next_volume: object) -> None:
    if ctx.db is not None and not volumes_ok({"id": ctx.config["id"], "volumes": listed,
                                                  "next_volume": next_volume}):
        raise damaged_settings(ctx)
    ctx.volset.take(parse_volumes(listed))
    ctx.next_volume = next_volume


@contextlib.contextmanager
def changing_volumes(ctx: Context) -> Iterator[None]:
    """Change the volume configuration as one step among every pfs: locked
    against other changes, starting from the current configuration, saved
    whole at the end (not at all when the change raises)."""
    try:
        if ctx.db is not None:
            with ctx.db.changing_volumes() as (listed, next_volume, save):
                take_volumes(ctx, listed, next_volume)
                ctx.volset.refresh()
                yield
                save(ctx.volset.to_list(), ctx.next_volume)
        else:
            with flocked(ctx.root / LOCK):
                take_config(ctx)
                ctx.volset.refresh()
                yield
                ctx.config = {**ctx.config, "volumes": ctx.volset.to_list(), "next_volume": ctx.next_volume}
                write_json_atomic(ctx.root / CONFIG, ctx.config)
    finally:
        ctx.config_stamp = None  # what is in memory may not be what was saved: read it again
