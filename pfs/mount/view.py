"""What a path of the mount is. Stored names are paths (`a/b/c`): a directory
is a directory record (made by mkdir, so an empty one exists) or any prefix
some stored name has, as `list` shows it; files and symlinks are records too."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
import uuid
from dataclasses import replace

from pfs import names
from pfs.errors import UsageError
from pfs.registry import BLOCK, CHAR, DIR, FIFO, FILE, LINK, SOCKET, STORED, SYMLINK, FileEntry
from pfs.store.facade import Store

#: The mode bits the registry records: permissions with setuid, setgid and sticky.
PERMISSIONS = 0o7777
#: Where files unlinked while open wait for their last close (never listed).
HIDDEN = ".pfs-mount"
#: The file type bits of each kind of entry (a hard link's are its file's).
TYPE_BITS = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, FIFO: stat.S_IFIFO, CHAR: stat.S_IFCHR,
             BLOCK: stat.S_IFBLK, SOCKET: stat.S_IFSOCK}
#: The kind mknod makes of each file type.
KIND_OF_TYPE = {bits: kind for kind, bits in TYPE_BITS.items() if kind not in (FILE, DIR, SYMLINK)}
#: Attempts at a compare-and-swap of a record another pfs keeps changing.
SWAPS = 20


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


def mode_of(entry: FileEntry | None, default: int = 0o644) -> int:
    return entry.mode if entry is not None and entry.mode is not None else default


def times_of(entry: FileEntry) -> tuple[int, int, int]:
    """(mtime, ctime, atime) of a record in ns; those older records lack are its mtime, else its creation."""
    mtime = entry.mtime if entry.mtime is not None else int(entry.created * 1e9)
    return mtime, entry.ctime if entry.ctime is not None else mtime, entry.atime if entry.atime is not None else mtime


def entry_attrs(entry: FileEntry, size: int | None = None) -> dict:
    """The stat of a record (`size`: its bytes as open, if not as stored)."""
    owner = (entry.uid, entry.gid)
    if entry.kind == DIR:
        return attrs(stat.S_IFDIR | mode_of(entry, 0o755), 0, times_of(entry), owner, links=2)
    if entry.kind == SYMLINK:
        return attrs(stat.S_IFLNK | mode_of(entry, 0o777), len(os.fsencode(entry.target)), times_of(entry),
                 owner, entry.links)
    size = entry.size if size is None else size
    return attrs(TYPE_BITS[entry.kind] | mode_of(entry), size, times_of(entry), owner, entry.links, entry.rdev)


def attrs(mode: int, size: int, times: tuple[int, int, int], owner: tuple = (None, None),
          links: int = 1, rdev: int = 0) -> dict:
    """A stat as mfusepy takes it: times (mtime, ctime, atime) in ns, an unknown owner the mounting user."""
    uid, gid = owner
    mtime, ctime, atime = times
    return {"st_mode": mode, "st_size": size, "st_nlink": links, "st_rdev": rdev,
            "st_uid": os.getuid() if uid is None else uid, "st_gid": os.getgid() if gid is None else gid,
            "st_mtime": mtime, "st_ctime": ctime, "st_atime": atime,
            "st_blocks": -(-size // 512), "st_blksize": 1 << 17}


def parent_of(name: str) -> str:
    return name.rpartition("/")[0]


class Namespace:
    """Stored entries by name, as every pfs sees them now."""

    def __init__(self, store: Store) -> None:
        self.store = store
        now = time.time_ns()
        # the root has no record: its attributes live as long as the mount
        self.root = {"mode": 0o755, "uid": os.getuid(), "gid": os.getgid(), "mtime": now, "ctime": now, "atime": now}
        self._touched: dict[str, int] = {}  # directory -> when a name in it changed, not yet recorded
        self._times_lock = threading.Lock()

    def inode(self, name: str) -> str:
        """The name holding the bytes and attributes of `name`: a hard link's
        file record (under HARDLINKS), else `name` itself."""
        entry = self.entry(name)
        return entry.target if entry is not None and entry.kind == LINK else name

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

    def new_record(self, name: str, kind: str, mode: int, owner: tuple[int, int], target: str = "",
                   rdev: int = 0) -> FileEntry:
        """The record of an entry without parts (a directory, symlink, special file or hard link), made now."""
        settings, now = self.store.settings, time.time_ns()
        return FileEntry(
            id=0, name=name, size=0, status=STORED, parts=0, chunk_size=settings.chunk_size, codec=settings.codec,
            hash=settings.hash, uuid=uuid.uuid4().hex, created=now / 1e9, mode=mode & PERMISSIONS, mtime=now,
            ctime=now, atime=now, kind=kind, target=target, rdev=rdev, uid=owner[0], gid=owner[1])

    def record(self, name: str, kind: str, mode: int, owner: tuple[int, int], target: str = "",
               rdev: int = 0) -> FileEntry:
        """Record an entry without parts under `name`."""
        return self.store.files.add(self.new_record(name, kind, mode, owner, target, rdev))

    def keep_dir(self, name: str) -> None:
        """Record directory `name` if only the names under it made it one: it stays when they go."""
        if name and self.entry(name) is None:
            self.record(name, DIR, 0o755, (os.getuid(), os.getgid()))

    def change(self, entry: FileEntry, **fields) -> FileEntry:
        """Record new metadata (mode, times, uid, gid, links) of an entry, its
        data untouched, its ctime now unless given: by compare-and-swap against
        the record as it is now, so a rename or store by another pfs meanwhile
        is kept (the change applies to the file wherever its name went)."""
        if "mode" in fields:
            fields["mode"] &= PERMISSIONS
        fields.setdefault("ctime", time.time_ns())
        for _ in range(SWAPS):
            seen = self.store.files.get(entry.id)
            if seen is None or seen.status != STORED:
                raise OSError(errno.ENOENT, entry.name)
            changed = replace(seen, **fields)
            if self.store.files.swap(seen, changed):
                return changed
        raise OSError(errno.EAGAIN, f"{entry.name} kept changing")

    def touch_dir(self, name: str) -> None:
        """A name in directory `name` was made, removed or renamed: its mtime and
        ctime are now. Shown at once, recorded by the next record_times (within
        a second): a copy of many files into one directory writes its record
        once a second, not once a file."""
        now = time.time_ns()
        if not name:
            self.root.update(mtime=now, ctime=now)
            return
        with self._times_lock:
            self._touched[name] = now

    def touched(self, name: str) -> int | None:
        """When a name in directory `name` last changed, if that is not recorded yet."""
        return self._touched.get(name)

    def record_times(self, only: str | None = None) -> None:
        """Record the directories' times touch_dir noted (or only `only`'s).
        A directory gone or renamed since is left as it is."""
        with self._times_lock:
            if only is None:
                touched, self._touched = self._touched, {}
            else:
                touched = {only: self._touched.pop(only)} if only in self._touched else {}
        for name, when in touched.items():
            entry = self.entry(name)
            try:
                if entry is None and self.is_dir(name):
                    self.record(name, DIR, 0o755, (os.getuid(), os.getgid()))
                elif entry is not None and entry.is_dir:
                    self.change(entry, mtime=max(when, entry.mtime or 0), ctime=max(when, entry.ctime or 0))
            except OSError:  # removed meanwhile
                pass
