"""Changes of names through the mount: unlink, mkdir, symlink, mknod, rmdir
and rename, each marking the directories it changes (mtime and ctime now). A
rename moves no data: the records take their new names by compare-and-swap,
a whole directory's in one registry change."""

from __future__ import annotations

import errno
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from pfs.errors import PfsError
from pfs.mount import hardlinks
from pfs.mount.view import HIDDEN, SWAPS, parent_of
from pfs.registry import HARDLINKS, LINK, STORED
from pfs.store.facade import Store

if TYPE_CHECKING:
    from pfs.mount.operations import Operations

log = logging.getLogger("pfs")


def delete_quietly(store: Store, file_id: int) -> None:
    """Delete a file nobody may reach by name any more; a failure (another pfs
    still reads it) leaves it under HIDDEN for the next mount to delete."""
    try:
        store.delete(file_id)
    except PfsError as exc:
        log.warning("mount: file %d, unlinked while open, is not deleted yet: %s", file_id, exc)


def sweep_hidden(store: Store) -> None:
    """Delete what an earlier mount left under HIDDEN (it stopped before the
    last close), and settle the files with hard links (see hardlinks.settle)."""
    for name in store.files.under(HIDDEN + "/", recursive=True)[0]:
        entry = store.files.current(name)
        if entry is not None and not name.startswith(HARDLINKS + "/"):
            delete_quietly(store, entry.id)
    hardlinks.settle(store)


def unlink(ops: Operations, name: str) -> None:
    """Remove a name that is not a directory's. A file still open keeps its data
    until its last close: its record moves under HIDDEN meanwhile, out of every listing."""
    with ops.table.lock:
        entry = ops.ns.file(name)
        node = ops.table.by_name.get(name)
        if entry is None and node is None:
            raise OSError(errno.EISDIR if ops.ns.is_dir(name) else errno.ENOENT, name)
        ops.ns.keep_dir(parent_of(name))
        if entry is not None and entry.kind == LINK:
            hardlinks.unlink(ops, entry)
        elif node is not None:
            ops.table.unlinked(name)
            if entry is not None and node.entry is not None and node.entry.id == entry.id:
                node.hidden_as = f"{HIDDEN}/{entry.id}"
                ops.store.rename(entry.id, node.hidden_as)
        elif entry is not None:
            ops.store.delete(entry.id)
        ops.ns.touch_dir(parent_of(name))


def make(ops: Operations, name: str, kind: str, mode: int, owner: tuple[int, int], target: str = "",
         rdev: int = 0) -> None:
    """mkdir, symlink, mknod: a record without parts under a new name."""
    with ops.table.lock:
        if not name or ops.ns.entry(name) is not None or name in ops.table.by_name or ops.ns.is_dir(name):
            raise OSError(errno.EEXIST, name)
        ops.ns.check_parent(name)
        ops.ns.record(name, kind, mode, owner, target, rdev)
        ops.ns.touch_dir(parent_of(name))


def rmdir(ops: Operations, name: str) -> None:
    with ops.table.lock:
        if not name:
            raise OSError(errno.EBUSY, "the mount's root")
        if ops.ns.file(name) is not None or name in ops.table.by_name:
            raise OSError(errno.ENOTDIR, name)
        if not ops.ns.is_dir(name):
            raise OSError(errno.ENOENT, name)
        if _has_children(ops, name):
            raise OSError(errno.ENOTEMPTY, name)
        ops.ns.keep_dir(parent_of(name))
        entry = ops.ns.entry(name)
        if entry is not None:
            ops.store.delete(entry.id)
        ops.ns.touch_dir(parent_of(name))


def _has_children(ops: Operations, name: str) -> bool:
    files, dirs = ops.ns.children(name)
    return bool(files or dirs or any(n.startswith(name + "/") for n in ops.table.by_name))


def rename(ops: Operations, old: str, new: str) -> None:
    """rename(2): a file, symlink or whole directory, replacing a file (or an
    empty directory) under the new name, as POSIX says."""
    if not old or not new:
        raise OSError(errno.EBUSY, "the mount's root")
    if new.startswith(old + "/"):
        raise OSError(errno.EINVAL, f"{new} is inside {old}")
    with ops.table.lock:
        is_file = ops.ns.file(old) is not None or old in ops.table.by_name
        if not is_file and not ops.ns.is_dir(old):
            raise OSError(errno.ENOENT, old)
        if old == new:
            return
        ops.ns.check_parent(new)
        target_file = ops.ns.file(new) is not None or new in ops.table.by_name
        ops.ns.keep_dir(parent_of(old))
        if is_file:
            if not target_file and ops.ns.is_dir(new):
                raise OSError(errno.EISDIR, new)
            if not _rename_file(ops, old, new):
                return
        else:
            if target_file:
                raise OSError(errno.ENOTDIR, new)
            if ops.ns.is_dir(new):
                if _has_children(ops, new):
                    raise OSError(errno.ENOTEMPTY, new)
                emptied = ops.ns.entry(new)
                if emptied is not None:
                    ops.store.delete(emptied.id)
            _rename_directory(ops, old, new)
        ops.ns.touch_dir(parent_of(old))
        if parent_of(new) != parent_of(old):
            ops.ns.touch_dir(parent_of(new))


def _rename_file(ops: Operations, old: str, new: str) -> bool:
    """Move a file's name; False when nothing was to be done (two names of one file)."""
    entry, current = ops.ns.file(old), ops.ns.file(new)
    if entry is not None and current is not None and entry.kind == current.kind == LINK \
            and entry.target == current.target:
        return False  # POSIX: two names of one file, nothing changes
    node = ops.table.by_name.get(old)
    if node is not None:  # a file written here and not yet stored is stored first: the rename moves it whole
        node.store_staged(ops.store, ops.cache, ops.ahead)
    if current is not None and current.kind == LINK:  # one name fewer for the file it named
        hardlinks.unlink(ops, current)
    replaced = ops.table.unlinked(new)  # an open file under the new name keeps reading what it opened
    if replaced is not None and replaced.entry is not None and current is not None \
            and current.id == replaced.entry.id:
        replaced.hidden_as = f"{HIDDEN}/{replaced.entry.id}"
        ops.store.rename(replaced.entry.id, replaced.hidden_as)
    entry = ops.ns.file(old)
    if entry is not None:
        moved = _take_name(ops, entry, new)
        if moved.kind == LINK:  # the file's ctime, as rename(2) marks it
            data = ops.ns.entry(moved.target)
            if data is not None:
                ops.ns.change(data)
                ops.changed(data.name)
    ops.table.rename(old, new)
    return True


def _take_name(ops: Operations, entry, new: str):
    """The record under `new`, its ctime now, by compare-and-swap (the
    file it replaces there is deleted once nobody reads it)."""
    for _ in range(SWAPS):
        seen = ops.store.files.get(entry.id)
        if seen is None or seen.status != STORED:
            raise OSError(errno.ENOENT, entry.name)
        moved = ops.store.files.take_name(seen, replace(seen, name=new, ctime=time.time_ns(),
                                                         session=ops.store.sessions.id))
        if moved is not None:
            ops.store.drop_replaced(moved)
            return moved
    raise OSError(errno.EAGAIN, f"{entry.name} kept changing")


def _rename_directory(ops: Operations, old: str, new: str) -> None:
    """Every record under the directory, and its own, take their new names in
    one registry change (a compare-and-swap of each): another pfs sees the
    whole directory moved or none of it. No data moves."""
    for node in [n for name, n in ops.table.by_name.items() if name.startswith(old + "/")]:
        node.store_staged(ops.store, ops.cache, ops.ahead)
    if ops.ns.entry(old) is None:
        ops.ns.keep_dir(old)
    now, session = time.time_ns(), ops.store.sessions.id
    for _ in range(SWAPS):
        seen = [e for e in (ops.store.files.current(n) for n in ops.store.files.under(old + "/", recursive=True)[0])
                if e is not None]
        own = ops.ns.entry(old)
        if own is not None:
            seen.append(own)
        pairs = [(e, replace(e, name=new + e.name[len(old):], session=session,
                             **({"ctime": now} if e is own else {}))) for e in seen]
        taken = ops.store.files.take_names(pairs)
        if all(t is not None for t in taken):
            break
        # another pfs changed one of them meanwhile: put back those moved, and look again
        back = [(t, replace(t, name=e.name)) for (e, _), t in zip(pairs, taken) if t is not None]
        if back:
            ops.store.files.take_names(back, keep=True)
    else:
        raise OSError(errno.EAGAIN, f"{old} kept changing")
    ops.table.rename(old, new)
