"""The FUSE operations of a mount, path by path, over the namespace (view),
the open nodes (handles), the verified reads (reading) and the write-back
cache (staging). Every pfs failure becomes an errno here; anything unexpected
is logged with its traceback and is EIO."""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

from pfs import threads
from pfs.errors import IntegrityError, NotFoundError, OutOfSpaceError, PfsError, StoreLockedError, UsageError
from pfs.mount import binding, hardlinks, namespace_ops
from pfs.mount.handles import Node, Table
from pfs.mount.reading import PartCache
from pfs.mount.staging import WriteBack
from pfs.mount.view import KIND_OF_TYPE, Namespace, attrs, entry_attrs, mode_of, name_of, parent_of
from pfs.registry import BLOCK, CHAR, DIR, LINK, MAX_PARTS, SYMLINK
from pfs.store.context import part_memory
from pfs.store.facade import Store

log = logging.getLogger("pfs")

#: Seconds between recordings of the directories' times.
TIMES_EVERY = 1.0
#: Seconds an operation waits for the kernel to forget the other names of a file with hard links.
FORGET_WAIT = 1.0

_ERRNO = ((NotFoundError, errno.ENOENT), (StoreLockedError, errno.EBUSY), (IntegrityError, errno.EIO),
          (OutOfSpaceError, errno.ENOSPC), (UsageError, errno.EINVAL))


def as_errno(op):
    """Run a FUSE operation, pfs's failures as the errno a program expects."""
    @functools.wraps(op)
    def run(self, *args):
        try:
            return op(self, *args)
        except OSError:
            raise
        except PfsError as exc:
            code = next((code for kind, code in _ERRNO if isinstance(exc, kind)), errno.EIO)
            if not isinstance(exc, IntegrityError):  # already logged, once per part
                log.warning("mount: %s %s: %s", op.__name__, args[:1], exc)
            raise OSError(code, str(exc)) from None
        except Exception:
            log.exception("mount: %s %s failed", op.__name__, args[:1])
            raise OSError(errno.EIO, "unexpected failure (see the log)") from None
    return run


def _caller() -> tuple[int, int]:
    """The uid and gid of the process that made the request."""
    from mfusepy import fuse_get_context

    uid, gid, _ = fuse_get_context()
    return uid, gid


class Operations:
    """What the kernel asks of the mount (mfusepy calls these, paths absolute)."""

    use_ns = True  # times in nanoseconds

    def __init__(self, store: Store, write_back: WriteBack, on_mounted=lambda: None) -> None:
        self.store, self.write_back = store, write_back
        self.ns = Namespace(store)
        self.table = Table()
        # the shared part cache is a quarter of --max-memory, taken from the same budget as the pool's parts
        need = part_memory(store.settings.chunk_size, store.layout)
        self._cache_bytes = max(0, min(store.max_memory // 4, store.max_memory - need))
        store.engine.governor.acquire(self._cache_bytes)
        self.cache = PartCache(self._cache_bytes)
        self.ahead = ThreadPoolExecutor(2, thread_name_prefix="pfs-read-ahead")
        self._on_mounted = on_mounted
        self._opened: dict[str, int] = {}  # name -> id of the file last opened, for the kernel's page cache
        # the record name of each file with hard links -> the paths the kernel asked its attributes by
        self._names: dict[str, set[str]] = {}
        self._invalidate = None
        self._forgetting = ThreadPoolExecutor(1, thread_name_prefix="pfs-invalidate")
        self._stopping = threading.Event()
        self._recorder = threading.Thread(target=self._record_times, name="pfs-dir-times", daemon=True)
        self._started = time.time_ns()

    # -- life --------------------------------------------------------------------

    def init(self, path: str) -> None:
        self._invalidate = binding.path_invalidator()
        threads.start(self._recorder, "the recorder of directories' times")
        self._on_mounted()

    def _record_times(self) -> None:
        """Record the directories' times (see Namespace.touch_dir) each second, until unmounted."""
        while not self._stopping.wait(TIMES_EVERY):
            try:
                with self.table.lock:
                    self.ns.record_times()
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("mount: directories' times were not recorded")

    def changed(self, inode: str) -> None:
        """What a file with hard links is changed (its names, mode, owner, times,
        bytes): the kernel, which holds each of its names as an inode of its own,
        forgets their cached attributes before the operation returns. From
        another thread, waited for a moment only: the kernel may make a
        notification wait for the very operation that sends it."""
        if self._invalidate is not None and self._names.get(inode):
            wait([self._forgetting.submit(self._invalidate, path) for path in self._names[inode]], FORGET_WAIT)

    def seen_as(self, inode: str, path: str) -> None:
        """The kernel knows the file with hard links `inode` by `path` (see changed)."""
        self._names.setdefault(inode, set()).add(path)

    def destroy(self, path: str) -> None:
        """At unmount: anything still open is stored as it is, then closed, and
        the directories' times recorded."""
        self._stopping.set()
        with self.table.lock:
            self.ns.record_times()
            for node in list(self.table.by_name.values()):
                try:
                    node.store_staged(self.store, self.cache, self.ahead)
                except PfsError as exc:
                    log.warning("mount: %s was not stored at unmount: %s", node.name, exc)
                node.close()
        self.ahead.shutdown(wait=True)
        self._forgetting.shutdown(wait=True)
        self.cache.clear()
        self.store.engine.governor.release(self._cache_bytes)

    # -- attributes ---------------------------------------------------------------

    @as_errno
    def getattr(self, path: str | None, fh=None) -> dict:
        if fh is not None:
            return self._file_attrs(self.table.node(fh.fh))
        name = name_of(path)
        entry = self.ns.entry(name)
        if entry is not None and entry.kind == LINK:  # a hard link: its file's attributes
            self.seen_as(entry.target, path)
            name, entry = entry.target, self.ns.entry(entry.target)
        with self.table.lock:
            node = self.table.by_name.get(name)
            if node is not None:
                return self._file_attrs(node)
        touched = self.ns.touched(name)
        if entry is not None:
            found = entry_attrs(entry)
            if touched is not None and entry.is_dir:  # a name in it changed, to be recorded within a second
                found.update(st_mtime=max(found["st_mtime"], touched), st_ctime=max(found["st_ctime"], touched))
            return found
        if not name:
            root = self.ns.root
            return attrs(stat.S_IFDIR | root["mode"], 0, (root["mtime"], root["ctime"], root["atime"]),
                               (root["uid"], root["gid"]), links=2)
        if self.ns.is_dir(name):
            when = self._started if touched is None else touched
            return attrs(stat.S_IFDIR | 0o755, 0, (when, when, self._started), links=2)
        raise OSError(errno.ENOENT, path)

    def _file_attrs(self, node: Node) -> dict:
        entry = node.entry
        owner = node.owner or ((entry.uid, entry.gid) if entry is not None else (None, None))
        if node.staged is not None:
            st = node.staged.stat()
            return attrs(stat.S_IFREG | node.staged.mode, node.size(),
                               (st.st_mtime_ns, st.st_ctime_ns, st.st_atime_ns), owner,
                               entry.links if entry is not None else 1)
        if entry is not None:
            return entry_attrs(entry, node.size())
        return attrs(stat.S_IFREG | 0o644, 0, (self._started,) * 3, owner)

    @as_errno
    def readlink(self, path: str) -> str:
        entry = self.ns.entry(self.ns.inode(name_of(path)))
        if entry is None or entry.kind != SYMLINK:
            raise OSError(errno.EINVAL if entry is not None or self.ns.is_dir(name_of(path)) else errno.ENOENT, path)
        return entry.target

    @as_errno
    def readdir(self, path: str, fh) -> list[str]:
        name = name_of(path)
        if self.ns.file(name) is not None:
            raise OSError(errno.ENOTDIR, path)
        if not self.ns.is_dir(name):
            raise OSError(errno.ENOENT, path)
        files, dirs = self.ns.children(name)
        with self.table.lock:
            prefix = name + "/" if name else ""
            new = [n[len(prefix):] for n in self.table.by_name
                   if n.startswith(prefix) and "/" not in n[len(prefix):]]
        return [".", "..", *sorted(set(files) | set(new)), *dirs]

    @as_errno
    def statfs(self, path: str) -> dict:
        """Sizes from the volumes: free is what they have free, used what the store's files take."""
        block = 4096
        free = 0
        for vid in self.store.volset.writable():
            free += self.store.volset.volume(vid).free() or 0
        used = sum(e.stored for e in self.store.files.all())
        return {"f_bsize": block, "f_frsize": block, "f_blocks": (free + used) // block, "f_bfree": free // block,
                "f_bavail": free // block, "f_files": 1 << 32, "f_ffree": 1 << 31, "f_namemax": 255}

    # -- files ---------------------------------------------------------------------

    @as_errno
    def open(self, path: str, fi) -> int:
        name = self.ns.inode(name_of(path))
        writing = fi.flags & os.O_ACCMODE != os.O_RDONLY
        with self.table.lock:
            node = self.table.by_name.get(name)
            if node is None:
                entry = self.ns.file(name)
                if entry is None:
                    raise OSError(errno.EISDIR if self.ns.is_dir(name) else errno.ENOENT, path)
                node = Node(name)
                node.hold(self.store, entry, self.cache, self.ahead)
            if node.entry is not None and not writing and node.staged is None:
                fi.keep_cache = int(self._opened.get(name) == node.entry.id)  # unchanged: keep the page cache
                self._opened[name] = node.entry.id
            if writing:
                staged = node.staging(self.write_back, mode_of(node.entry))
                if fi.flags & os.O_TRUNC:
                    with staged.lock:
                        staged.truncate(0)
                        node.wrote(self.store, 0)
            fi.fh = self.table.open(node, writing)
            _write_only_past_the_cache(fi)
        return 0

    @as_errno
    def create(self, path: str, mode: int, fi) -> int:
        name = name_of(path)
        with self.table.lock:
            exists = name in self.table.by_name or self.ns.file(name) is not None
            if exists and fi.flags & os.O_EXCL:
                raise OSError(errno.EEXIST, path)
            if exists:
                fi.flags |= os.O_TRUNC
                return self.open(path, fi)
            if self.ns.is_dir(name):
                raise OSError(errno.EISDIR, path)
            self.ns.check_parent(name)
            fi.fh = self.table.open(self._new_file(name, stat.S_IMODE(mode)), writing=True)
            _write_only_past_the_cache(fi)
        return 0

    def _new_file(self, name: str, mode: int) -> Node:
        """A new empty regular file (create, mknod), stored at its close; its directory's times are now."""
        node = Node(name)
        node.owner = _caller()
        node.staging(self.write_back, mode).dirty = True  # stored at close, even empty
        self.ns.touch_dir(parent_of(name))
        return node

    @as_errno
    def read(self, path: str | None, size: int, offset: int, fh) -> bytes:
        return self.table.node(fh.fh).read(size, offset)

    @as_errno
    def write(self, path: str | None, data: bytes, offset: int, fh) -> int:
        self._check_size(offset + len(data))
        node = self.table.node(fh.fh)
        with node.staged.lock:
            staged = node.fill()
            written = staged.write(data, offset)
            node.wrote(self.store, offset)
            if staged.mode & (stat.S_ISUID | stat.S_ISGID) and _caller()[0] != 0:
                staged.chmod(_unprivileged(staged.mode))
            return written

    def _check_size(self, size: int) -> None:
        """EFBIG past the biggest file the store keeps (MAX_PARTS parts)."""
        if size > MAX_PARTS * self.store.settings.chunk_size:
            raise OSError(errno.EFBIG, f"a stored file has at most {MAX_PARTS} parts")

    @as_errno
    def chmod(self, path: str | None, mode: int) -> None:
        self._set(path, lambda staged: staged.chmod(stat.S_IMODE(mode)), mode=stat.S_IMODE(mode))

    @as_errno
    def chown(self, path: str | None, uid: int, gid: int) -> None:
        attrs = self.getattr(path)
        owner = (attrs["st_uid"] if uid == -1 else uid, attrs["st_gid"] if gid == -1 else gid)
        self._set(path, lambda staged: staged.touch(), uid=owner[0], gid=owner[1])

    @as_errno
    def utimens(self, path: str | None, times: tuple[int | None, int | None] | None = None) -> None:
        """utimensat(2): (atime, mtime) in ns, None for a time left as it is (UTIME_OMIT)."""
        now = time.time_ns()
        atime, mtime = times if times is not None else (now, now)

        def on_staged(staged) -> None:
            st = staged.stat()
            staged.utime((st.st_atime_ns if atime is None else atime, st.st_mtime_ns if mtime is None else mtime))

        self._set(path, on_staged, atime=atime, mtime=mtime)

    def _set(self, path: str, on_staged, **fields) -> None:
        """chmod, chown, utimens: on a file being written, kept with its staged
        bytes (recorded when it is stored); otherwise recorded at once (with the
        ctime now), data untouched."""
        fields = {k: v for k, v in fields.items() if v is not None}
        name = self.ns.inode(name_of(path))
        with self.table.lock:
            self.ns.record_times(only=name)  # a directory's times noted earlier go first: these are later
            node = self.table.by_name.get(name)
            if node is not None and node.staged is not None and node.writers:
                if "uid" in fields:
                    node.owner = (fields["uid"], fields["gid"])
                on_staged(node.staged)
                return
            if not name:
                self.ns.root.update(fields, ctime=time.time_ns())
                return
            entry = self.ns.entry(name)
            if entry is None:
                if not self.ns.is_dir(name):
                    raise OSError(errno.ENOENT, path)
                self.ns.keep_dir(name)
                entry = self.ns.entry(name)
            changed = self.ns.change(entry, **fields)
            if node is not None:
                node.entry = changed  # an open reader sees the new attributes at once
        self.changed(name)

    @as_errno
    def truncate(self, path: str | None, length: int, fh=None) -> None:
        self._check_size(length)
        if fh is not None:
            node = self.table.node(fh.fh)
        else:
            name = self.ns.inode(name_of(path))
            with self.table.lock:
                node = self.table.by_name.get(name)
            if node is None:
                return self._truncate_closed(name, length)
        staged = node.staging(self.write_back, mode_of(node.entry))
        with staged.lock:
            (staged.truncate(0) if length == 0 else node.fill().truncate(length))
            node.wrote(self.store, length)
        if not node.writers:  # else the writer's close stores it
            node.store_staged(self.store, self.cache, self.ahead)
        self.changed(node.name)

    def _truncate_closed(self, name: str, length: int) -> None:
        """truncate(2) of a file nobody has open: staged, cut and stored again."""
        entry = self.ns.file(name)
        if entry is None:
            raise OSError(errno.EISDIR if self.ns.is_dir(name) else errno.ENOENT, name)
        if entry.size == length:
            return
        node = Node(name)
        try:
            node.hold(self.store, entry, self.cache, self.ahead)
            staged = node.staging(self.write_back, mode_of(entry))
            (staged.truncate(0) if length == 0 else node.fill().truncate(length))
            node.store_staged(self.store, self.cache, self.ahead)
        finally:
            node.close()
        self.changed(name)

    @as_errno
    def flush(self, path: str | None, fh) -> None:
        """close(): the file is stored whole before close returns (close-to-open consistency)."""
        node = self.table.node(fh.fh)
        node.store_staged(self.store, self.cache, self.ahead)
        self.changed(node.name)

    @as_errno
    def fsync(self, path: str | None, datasync: int, fh) -> None:
        """Stored whole, and durable, on return (a put's parts and record are synced)."""
        self.flush(path, fh)

    @as_errno
    def release(self, path: str | None, fh) -> None:
        with self.table.lock:
            node = self.table.release(fh.fh)
        if node is None:
            return
        hidden = node.entry.id if node.hidden_as and node.entry is not None else None
        node.close()
        if hidden is not None:
            namespace_ops.delete_quietly(self.store, hidden)

    # -- names -----------------------------------------------------------------------

    @as_errno
    def unlink(self, path: str) -> None:
        namespace_ops.unlink(self, name_of(path))

    @as_errno
    def mkdir(self, path: str, mode: int) -> None:
        namespace_ops.make(self, name_of(path), DIR, stat.S_IMODE(mode), _caller())

    @as_errno
    def symlink(self, path: str, target: str) -> None:
        namespace_ops.make(self, name_of(path), SYMLINK, 0o777, _caller(), target=target)

    @as_errno
    def mknod(self, path: str, mode: int, dev: int) -> None:
        """mknod, mkfifo, bind: a special file recorded with its device number; a regular file stored empty."""
        name = name_of(path)
        if stat.S_ISREG(mode):
            with self.table.lock:
                if self.ns.entry(name) is not None or name in self.table.by_name:
                    raise OSError(errno.EEXIST, path)
                self.ns.check_parent(name)
                node = self._new_file(name, stat.S_IMODE(mode))
                try:
                    node.store_staged(self.store, self.cache, self.ahead)
                finally:
                    node.close()
            return
        kind = KIND_OF_TYPE.get(stat.S_IFMT(mode))
        if kind is None:
            raise OSError(errno.EINVAL, f"mknod of file type {stat.S_IFMT(mode):o}")
        namespace_ops.make(self, name, kind, stat.S_IMODE(mode), _caller(),
                           rdev=dev if kind in (CHAR, BLOCK) else 0)

    @as_errno
    def rmdir(self, path: str) -> None:
        namespace_ops.rmdir(self, name_of(path))

    @as_errno
    def rename(self, old: str, new: str) -> None:
        namespace_ops.rename(self, name_of(old), name_of(new))

    @as_errno
    def link(self, target: str, source: str) -> None:
        """link(2): `target` (the new name) becomes another name of `source`."""
        hardlinks.link(self, name_of(source), name_of(target))


def _unprivileged(mode: int) -> int:
    """The mode after a write by a process without CAP_FSETID, as the kernel makes
    it (setuid cleared, setgid where the group may execute): a write past the
    page cache (see _write_only_past_the_cache) leaves that to the mount."""
    return mode & ~stat.S_ISUID & ~(stat.S_ISGID if mode & stat.S_IXGRP else 0)


def _write_only_past_the_cache(fi) -> None:
    """A descriptor opened write-only writes past the kernel's page cache (FUSE's
    direct_io): its bytes go straight from the writer into the staged file, not
    into cache pages first as well (a third of the CPU of writing 1 GiB here).
    Such a descriptor can neither read nor be mapped shared, so nothing it
    writes was to be read back through that cache; the kernel drops the cached
    pages of the range a direct write changes, for descriptors open to read."""
    if fi.flags & os.O_ACCMODE == os.O_WRONLY:
        fi.direct_io = 1
