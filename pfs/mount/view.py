"""What a path of the mount is. Stored names are paths (`a/b/c`): a directory
is a directory record (made by mkdir, so an empty one exists) or any prefix
some stored name has, as `list` shows it; files and symlinks are records too."""

from __future__ import annotations

import errno
import os
import time
import uuid
from dataclasses import replace

from pfs import names
from pfs.errors import UsageError
from pfs.registry import DIR, STORED, FileEntry
from pfs.store.facade import Store

#: The mode bits the registry records: permissions (setuid, setgid and sticky are not kept).
PERMISSIONS = 0o777
#: Where files unlinked while open wait for their last close (never listed).
HIDDEN = ".pfs-mount"


def name_of(path: str) -> str:
    """The stored name of a mount path ("/a/b" -> "a/b"; the root is "")."""
    name = path.strip("/")
    if name:
        try:
            names.check(name)
        except UsageError as exc:
            too_long = "longer than" in exc.message
            raise OSError(errno.ENAMETOOLONG if too_long else errno.EINVAL, exc.message) from None
    return name


def parent_of(name: str) -> str:
    return name.rpartition("/")[0]


class Namespace:
    """Stored entries by name, as every pfs sees them now."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def entry(self, name: str) -> FileEntry | None:
        """The record a name resolves to, of any kind."""
        return self.store.files.current(name) if name else None

    def file(self, name: str) -> FileEntry | None:
        """The regular file or symlink a name resolves to (not a directory record)."""
        entry = self.entry(name)
        return entry if entry is not None and not entry.is_dir else None

    def is_dir(self, name: str) -> bool:
        if not name:
            return True
        entry = self.entry(name)
        if entry is not None:
            return entry.is_dir
        return any(self.store.files.current(n) is not None
                   for n in self.store.files.under(name + "/", recursive=True)[0])

    def children(self, name: str) -> tuple[list[str], list[str]]:
        """(file and symlink names, directory names) directly inside directory `name`, without the path."""
        prefix = name + "/" if name else ""
        found, dirs = self.store.files.under(prefix)
        cut = len(prefix)
        files, directories = [], {d[cut:-1] for d in dirs}
        for child, entries in self.store.files.named_each(found).items():
            current = next((e for e in reversed(entries) if e.status == STORED), None)
            if current is not None:
                (directories.add(child[cut:]) if current.is_dir else files.append(child[cut:]))
        if not name:
            directories.discard(HIDDEN)
        return files, sorted(directories)

    def check_parent(self, name: str) -> None:
        """ENOENT unless the directory a new name goes into exists, ENOTDIR if it is a file."""
        parent = parent_of(name)
        if self.file(parent) is not None:
            raise OSError(errno.ENOTDIR, parent)
        if not self.is_dir(parent):
            raise OSError(errno.ENOENT, parent)

    def record(self, name: str, kind: str, mode: int, owner: tuple[int, int], target: str = "") -> FileEntry:
        """Record a directory or symlink (no parts) under `name`."""
        settings = self.store.settings
        return self.store.files.add(FileEntry(
            id=0, name=name, size=0, status=STORED, parts=0, chunk_size=settings.chunk_size, codec=settings.codec,
            hash=settings.hash, uuid=uuid.uuid4().hex, created=time.time(), mode=mode & PERMISSIONS,
            mtime=time.time_ns(), kind=kind, target=target, uid=owner[0], gid=owner[1]))

    def keep_dir(self, name: str) -> None:
        """Record directory `name` if only the names under it made it one: it stays when they go."""
        if name and self.entry(name) is None:
            self.record(name, DIR, 0o755, (os.getuid(), os.getgid()))

    def change(self, entry: FileEntry, **fields) -> FileEntry:
        """Record new metadata (mode, mtime, uid, gid) of an entry, its data untouched."""
        if "mode" in fields:
            fields["mode"] &= PERMISSIONS
        changed = replace(self.store.files.get(entry.id) or entry, **fields)
        self.store.files.save(changed)
        return changed
