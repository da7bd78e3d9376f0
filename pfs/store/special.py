"""What `get -r` makes of the records a mount writes besides files,
directories and symlinks: FIFOs (made again), devices (made again as root),
sockets (skipped: a socket is made by the program that listens on it) and
hard links (the file once, its other names linked to it, as `tar` does)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from pfs.errors import DestinationError, NotFoundError
from pfs.registry import BLOCK, CHAR, FIFO, FILE, LINK, SOCKET, FileEntry

#: The file type bits mknod takes for each special kind pfs makes again.
_TYPES = {FIFO: stat.S_IFIFO, CHAR: stat.S_IFCHR, BLOCK: stat.S_IFBLK}


def restore(store, entry: FileEntry, path: Path, force: bool, linked: dict[int, Path],
            meta: Callable[[Path, FileEntry], None]) -> str:
    """Make `entry` (not a file, directory or symlink) at `path`, its metadata
    set by `meta`: "" when made, else why it was skipped (a tally's word).
    `linked` holds the path each file with hard links was restored at first."""
    if os.path.lexists(path):
        if not force or path.is_dir() and not path.is_symlink():
            raise DestinationError(f"{path} already exists", "use --force to overwrite it")
        path.unlink()
    if entry.kind == SOCKET:
        return "socket"
    if entry.kind == LINK:
        return _link(store, entry, path, force, linked, meta)
    if entry.kind != FIFO and os.geteuid() != 0:
        return "device (as root only)"
    os.mknod(path, _TYPES[entry.kind] | 0o600, entry.rdev)
    meta(path, entry)
    return ""


def _link(store, entry: FileEntry, path: Path, force: bool, linked: dict[int, Path],
          meta: Callable[[Path, FileEntry], None]) -> str:
    """One name of a file with hard links: the file restored at its first name, linked at the others."""
    data = store.files.current(entry.target)
    if data is None:
        raise NotFoundError(f"the file {entry.target} this hard link names is not stored")
    first = linked.get(data.id)
    if first is not None:
        os.link(first, path)
        return ""
    if data.kind == FILE:
        store.get(data.id, str(path), force)
    elif data.kind == SOCKET:
        return "socket"
    else:
        restore(store, data, path, force, linked, meta)
    meta(path, data)
    linked[data.id] = path
    return ""
