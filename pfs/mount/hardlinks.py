"""Hard links through the mount: several names for one file. When a file gets
its second name, its record moves to HARDLINKS/<id> and each of its names
becomes a LINK record naming that record, in one registry change; the file's
`links` counts its names. Its bytes, mode, owner and times are the file's,
whichever name reaches it; a write through any name stores a new version under
the HARDLINKS name, so no name is left pointing at an old one. The last name
removed deletes the file.

A crash between removing a name and counting it down leaves the count high:
the next mount counts the names again (`settle`), deleting a file no name
reaches any more."""

from __future__ import annotations

import errno
import logging
import time
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING

from pfs.errors import PfsError
from pfs.mount.view import parent_of
from pfs.registry import HARDLINKS, LINK, STORED, FileEntry
from pfs.store.facade import Store

if TYPE_CHECKING:
    from pfs.mount.operations import Operations

log = logging.getLogger("pfs")


def link(ops: Operations, source: str, new: str) -> None:
    """link(2): `new` becomes one more name of what `source` names (not a directory)."""
    with ops.table.lock:
        if ops.ns.entry(new) is not None or new in ops.table.by_name or ops.ns.is_dir(new):
            raise OSError(errno.EEXIST, new)
        ops.ns.check_parent(new)
        inode = ops.ns.inode(source)
        node = ops.table.by_name.get(inode)
        if node is not None:  # written here and not yet stored: stored first, so both names give the bytes
            node.store_staged(ops.store, ops.cache, ops.ahead)
        entry = ops.ns.entry(source)
        if entry is None:
            raise OSError(errno.EPERM if ops.ns.is_dir(source) else errno.ENOENT, source)
        if entry.is_dir:
            raise OSError(errno.EPERM, f"{source} is a directory")
        now = time.time_ns()
        if entry.kind == LINK:
            data = ops.ns.entry(entry.target)
            if data is None:
                raise OSError(errno.ENOENT, source)
            moved, batch = replace(data, links=data.links + 1, ctime=now), []
        else:
            data = entry
            moved = replace(entry, name=f"{HARDLINKS}/{entry.id}", links=2, ctime=now)
            batch = [_name(ops, source, moved)]
        batch = [moved, *batch, _name(ops, new, moved)]
        if not ops.store.files.unchanged(ops.store.files.get(data.id), data):
            raise OSError(errno.EAGAIN, f"{source} changed meanwhile")
        ops.store.files.save_all(batch)
        ops.table.rename(inode, moved.name)
        node = ops.table.by_name.get(moved.name)
        if node is not None:
            node.entry = moved
        ops.seen_as(moved.name, "/" + source)
        ops.changed(moved.name)
        ops.ns.touch_dir(parent_of(new))


def _name(ops: Operations, name: str, data: FileEntry) -> FileEntry:
    """A LINK record: `name`, one of the names of `data`."""
    record = ops.ns.new_record(name, LINK, 0, (data.uid, data.gid), target=data.name)
    return replace(record, id=ops.store.files.new_id(), mode=None)


def unlink(ops: Operations, name: FileEntry) -> None:
    """Remove one name (a LINK record) of a file; the last one deletes the
    file, at its last close if it is open. Holding the table's lock."""
    data = ops.ns.entry(name.target)
    ops.store.delete(name.id)  # the name first: a crash then leaves the count high, never too low
    if data is None:
        return
    if data.links > 1:
        changed = ops.ns.change(data, links=data.links - 1)
        node = ops.table.by_name.get(data.name)
        if node is not None:
            node.entry = changed
        ops.changed(data.name)
        return
    node = ops.table.unlinked(data.name)
    if node is not None and node.entry is not None:
        node.hidden_as = data.name  # deleted at its last close
    else:
        ops.store.delete(data.id)


def settle(store: Store) -> None:
    """Count again the names of each file with hard links (an earlier mount, or
    a `pfs delete` of a name, may have left its count high): a file no name
    reaches any more is deleted."""
    files = [e for e in map(store.files.current, store.files.under(HARDLINKS + "/")[0]) if e is not None]
    if not files:
        return
    names = Counter(e.target for e in store.files.all() if e.kind == LINK and e.status == STORED
                    and store.files.current(e.name) == e)
    for data in files:
        count = names[data.name]
        try:
            if count == 0:
                store.delete(data.id)
            elif count != data.links:
                store.files.swap(data, replace(data, links=count))
        except PfsError as exc:
            log.warning("mount: the names of file %d were not counted again: %s", data.id, exc)
