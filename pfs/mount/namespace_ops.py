"""Changes of names through the mount: unlink, mkdir, symlink, rmdir and
rename. A rename moves no data: each record takes its new name, as `mv` does."""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING

from pfs.errors import PfsError
from pfs.mount.view import HIDDEN, parent_of
from pfs.registry import DIR, SYMLINK
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
    """Delete what an earlier mount left under HIDDEN (it stopped before the last close)."""
    for name in store.files.under(HIDDEN + "/", recursive=True)[0]:
        entry = store.files.current(name)
        if entry is not None:
            delete_quietly(store, entry.id)


def unlink(ops: Operations, name: str) -> None:
    """Remove a file's (or symlink's) name. A file still open keeps its data
    until its last close: its record moves under HIDDEN meanwhile, out of every listing."""
    with ops.table.lock:
        entry = ops.ns.file(name)
        node = ops.table.by_name.get(name)
        if entry is None and node is None:
            raise OSError(errno.EISDIR if ops.ns.is_dir(name) else errno.ENOENT, name)
        ops.ns.keep_dir(parent_of(name))
        if node is not None:
            ops.table.unlinked(name)
            if entry is not None and node.entry is not None and node.entry.id == entry.id:
                node.hidden_as = f"{HIDDEN}/{entry.id}"
                ops.store.rename(entry.id, node.hidden_as)
                return
        if entry is not None:
            ops.store.delete(entry.id)


def mkdir(ops: Operations, name: str, mode: int, owner: tuple[int, int]) -> None:
    with ops.table.lock:
        if not name or ops.ns.entry(name) is not None or name in ops.table.by_name or ops.ns.is_dir(name):
            raise OSError(errno.EEXIST, name)
        ops.ns.check_parent(name)
        ops.ns.record(name, DIR, mode, owner)


def symlink(ops: Operations, name: str, target: str, owner: tuple[int, int]) -> None:
    with ops.table.lock:
        if not name or ops.ns.entry(name) is not None or name in ops.table.by_name or ops.ns.is_dir(name):
            raise OSError(errno.EEXIST, name)
        ops.ns.check_parent(name)
        ops.ns.record(name, SYMLINK, 0o777, owner, target)


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
            _rename_file(ops, old, new)
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


def _rename_file(ops: Operations, old: str, new: str) -> None:
    node = ops.table.by_name.get(old)
    if node is not None:  # a file written here and not yet stored is stored first: the rename moves it whole
        node.store_staged(ops.store, ops.cache, ops.ahead)
    replaced = ops.table.unlinked(new)  # an open file under the new name keeps reading what it opened
    current = ops.ns.file(new)
    if replaced is not None and replaced.entry is not None and current is not None \
            and current.id == replaced.entry.id:
        replaced.hidden_as = f"{HIDDEN}/{replaced.entry.id}"
        ops.store.rename(replaced.entry.id, replaced.hidden_as)
    entry = ops.ns.file(old)
    if entry is not None:
        ops.store.rename(entry.id, new)
    ops.table.rename(old, new)


def _rename_directory(ops: Operations, old: str, new: str) -> None:
    """Each record under the directory takes its new name (no data moves),
    the directory's own record last."""
    for node in [n for name, n in ops.table.by_name.items() if name.startswith(old + "/")]:
        node.store_staged(ops.store, ops.cache, ops.ahead)
    for name in ops.store.files.under(old + "/", recursive=True)[0]:
        entry = ops.store.files.current(name)
        if entry is not None:
            ops.store.rename(entry.id, new + name[len(old):])
    own = ops.ns.entry(old)
    if own is not None:
        ops.store.rename(own.id, new)
    else:
        ops.ns.keep_dir(new)
    ops.table.rename(old, new)
