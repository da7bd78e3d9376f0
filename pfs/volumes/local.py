"""LocalVolume: parts as files in a directory (a disk, a mount point), fanned
out by key (ab/cd/<key>) so that no directory grows huge, and packs of many
small pieces in packs/ (see pfs.volumes.packs)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from pfs.errors import (OutOfSpaceError, PartDamagedError, PartExistsError, PartMissingError,
                        VolumeUnavailableError)
from pfs.registry import fsync_dir, fsync_file, write_json_atomic
from pfs.volumes.base import MARKER, Volume, check_key, check_prefix
from pfs.volumes.packs import Packed

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: open() errors meaning "something other than a part file is there".
_NOT_A_PART = (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR)
#: Bytes O_DIRECT needs buffers, offsets and lengths aligned to (a page covers every disk's block).
DIRECT_ALIGN = 4096


def write_direct(fd: int, view: memoryview, offset: int) -> int:
    """Write the whole blocks of `view` at `offset` past the page cache; return
    how many bytes that was (0 where the filesystem or the buffer's alignment
    does not allow it: the caller writes the rest as usual). Bytes nobody reads
    soon (a part, a get's output) cost a fresh page-cache page and a copy into
    it otherwise: on a VM that hands freed memory back to its host, fresh pages
    are what the system CPU of a put or get went to (2.2 s per GiB against 0.5)."""
    return _direct(fd, os.pwrite, view, offset)


def read_direct(fd: int, view: memoryview, offset: int) -> int:
    """Read whole blocks into `view` from `offset` past the page cache, as
    write_direct writes them; return how many bytes that was (less than the
    whole blocks of `view` at the end of the file)."""
    return _direct(fd, _pread_into, view, offset)


def _direct(fd: int, transfer, view: memoryview, offset: int) -> int:
    """transfer(fd, blocks, offset) for the whole blocks of `view` with O_DIRECT."""
    head = len(view) - len(view) % DIRECT_ALIGN
    if not head or offset % DIRECT_ALIGN or isinstance(view.obj, bytes):
        return 0  # a bytes object's data follows its header: hardly ever on a block boundary
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
    except OSError:  # a filesystem without O_DIRECT
        return 0
    done = 0
    try:
        while done < head and (n := transfer(fd, view[done:head], offset + done)):
            done += n
            if done % DIRECT_ALIGN:  # the end of the file
                break
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: a buffer not on a block boundary
            raise
        return 0
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return done


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    return os.preadv(fd, [view], offset)


def write_past_cache(fd: int, data, offset: int) -> None:
    """pwrite all of `data` at `offset`: its whole blocks past the page cache
    where write_direct can, the rest as usual."""
    view = memoryview(data).cast("B")
    done = write_direct(fd, view, offset)
    view, offset = view[done:], offset + done
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class LocalParts(Volume):
    """A directory of part files. Writes are not fsynced one by one: flush() syncs
    a batch of parts and their directories at once, when the caller commits them.
    A crash mid-write can leave a short part under its final name; the store rolls
    back the parts of a put it never recorded as done, and verifies every read."""

    def __init__(self, url: str | os.PathLike, **options) -> None:
        path = str(url)
        self.root = Path(path.removeprefix("file://")).absolute()
        super().__init__(str(self.root), **options)

    def path(self, key: str) -> Path:
        key = check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def write(self, key: str, data: bytes | memoryview) -> None:
        path = self.path(key)
        with self._errors(key):
            self._make_fanout(path.parent)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                raise PartExistsError(f"part {key} already exists on volume {self.url}") from None
            try:
                write_past_cache(fd, data, 0)
            except BaseException:
                os.unlink(path)  # ours (O_EXCL): a half-written part must not stay behind
                raise
            finally:
                os.close(fd)

    def read(self, key: str, offset: int = 0, size: int | None = None) -> bytes:
        fd, length = self._open_part(key)
        try:
            remaining = max(0, length - offset) if size is None else size
            chunks = []
            with self._errors(key):
                while remaining > 0:
                    chunk = os.pread(fd, remaining, offset)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    offset += len(chunk)
                    remaining -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def read_into(self, key: str, buffer: memoryview, offset: int = 0) -> int:
        fd, _ = self._open_part(key)
        try:
            view = memoryview(buffer).cast("B")
            with self._errors(key):
                done = read_direct(fd, view, offset)
                while done < len(view):
                    n = os.preadv(fd, [view[done:]], offset + done)
                    if not n:
                        break
                    done += n
            return done
        finally:
            os.close(fd)

    def remove(self, key: str) -> bool:
        path = self.path(key)
        with self._errors(key):
            try:
                os.unlink(path)
                return True
            except FileNotFoundError:
                self._require_root()
                return False
            except (IsADirectoryError, PermissionError):
                if not path.is_dir() or path.is_symlink():
                    raise
            try:
                os.rmdir(path)  # an empty directory in a part's place is just removed
                return True
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    raise
                raise PartDamagedError(f"a directory with content sits in the place of part {key}",
                                       f"move {path} away") from None

    def keys(self, prefix: str = "") -> Iterator[str]:
        prefix = check_prefix(prefix)
        self._require_root()
        for top in self._subdirs(self.root, prefix[:2]):
            for mid in self._subdirs(top, prefix[2:4]):
                for name in self._names(mid):
                    if name.startswith(prefix) and name[:2] == top.name and name[2:4] == mid.name:
                        with contextlib.suppress(ValueError):
                            yield check_key(name)

    def flush(self, keys: Iterable[str]) -> None:
        dirs: set[Path] = set()
        for key in keys:
            path = self.path(key)
            with self._errors(key):
                fsync_file(path, os.O_NOFOLLOW | os.O_NONBLOCK)
            dirs.update((path.parent, path.parent.parent))
        with self._errors():
            for d in sorted(dirs, reverse=True) + ([self.root] if dirs else []):
                fsync_dir(d)

    def used(self) -> int:
        total = 0
        for key in self.keys():
            with contextlib.suppress(FileNotFoundError):
                st = self.path(key).lstat()
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
        return total

    def free(self) -> int:
        self._require_root()
        with self._errors():
            return shutil.disk_usage(self.root).free

    def _save_marker(self, marker: dict) -> None:
        with self._errors():
            self.root.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.root / MARKER, marker)

    def _drop_marker(self) -> None:
        with self._errors():
            (self.root / MARKER).unlink(missing_ok=True)
            fsync_dir(self.root)

    def release(self) -> None:
        """Also the empty fan-out directories (ab/cd) that writes made."""
        with self._errors():
            for top in os.scandir(self.root):
                if len(top.name) == 2 and top.is_dir(follow_symlinks=False):
                    for sub in os.scandir(top.path):
                        if len(sub.name) == 2 and sub.is_dir(follow_symlinks=False):
                            with contextlib.suppress(OSError):  # not empty: not pfs's
                                os.rmdir(sub.path)
                    with contextlib.suppress(OSError):
                        os.rmdir(top.path)
        super().release()

    def _load_marker(self) -> bytes | None:
        self._require_root()
        try:
            fd = os.open(self.root / MARKER, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError:
            return b""  # something unreadable in the marker's place: not ours
        try:
            return os.read(fd, 1 << 16) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        finally:
            os.close(fd)

    # -- helpers ---------------------------------------------------------------------

    def _open_part(self, key: str) -> tuple[int, int]:
        """An open descriptor of a regular part file and its size. O_NONBLOCK and the
        S_ISREG check make a FIFO, device or directory in a part's place an error
        at once, never a hang; O_NOFOLLOW refuses a symlink."""
        path = self.path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            self._require_root()
            raise PartMissingError(f"part {key} is missing from volume {self.url}") from None
        except OSError as exc:
            if exc.errno in _NOT_A_PART:
                raise self._damaged(key, path) from None
            raise self._translate(exc, key) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise self._damaged(key, path)
        return fd, st.st_size

    def _damaged(self, key: str, path: Path) -> PartDamagedError:
        return PartDamagedError(f"something that is not a part file sits in the place of part {key}",
                                f"move {path} away")

    def _make_fanout(self, parent: Path) -> None:
        """Create ab/cd below the root, never the root itself: a volume whose
        directory is gone (an unmounted disk) must fail, not be recreated empty."""
        for d in (parent.parent, parent):
            try:
                d.mkdir()
            except FileExistsError:
                pass
            except FileNotFoundError:
                self._require_root()
                raise

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise self.missing()

    def missing(self) -> VolumeUnavailableError:
        """What to say of this volume when it reads missing (its disk unmounted,
        its directory moved away or replaced)."""
        return VolumeUnavailableError(f"volume directory {self.url} is missing", "mount the disk or check the path")

    @classmethod
    def _subdirs(cls, parent: Path, want: str) -> list[Path]:
        """Fan-out directories of `parent` whose two-character name fits `want`."""
        names = [want] if len(want) == 2 else [n for n in cls._names(parent) if len(n) == 2 and n.startswith(want)]
        return [parent / n for n in names if (parent / n).is_dir()]

    @staticmethod
    def _names(parent: Path) -> list[str]:
        """The entries of a directory; none if it has just gone."""
        with contextlib.suppress(FileNotFoundError), os.scandir(parent) as it:
            return [e.name for e in it]
        return []

    @contextlib.contextmanager
    def _errors(self, key: str = ""):
        """Operating-system errors as the volume's typed errors."""
        try:
            yield
        except OSError as exc:
            raise self._translate(exc, key) from None

    def _translate(self, exc: OSError, key: str) -> Exception:
        if exc.errno in _NO_SPACE:
            return OutOfSpaceError(f"volume {self.url} is full", "free some space or add a volume")
        if exc.errno == errno.ENOENT and not self.root.is_dir():
            return self.missing()
        if exc.errno == errno.ENOENT and key:
            return PartMissingError(f"part {key} is missing from volume {self.url}")
        what = f"part {key} on volume {self.url}" if key else f"volume {self.url}"
        return VolumeUnavailableError(f"cannot use {what}: {exc.strerror or exc}",
                                      "check the disk and its permissions")


#: The directory of a local volume's packs.
PACKS = "packs"


class LocalVolume(Packed, LocalParts):
    """A directory of part files and of packs (packs/<pack id>): a pack is
    written to an unnamed file (O_TMPFILE), fsynced, then linked under its
    name and its directory fsynced, so a crash leaves a whole pack or none."""

    def shelf_put(self, name: str, data: bytes, durable: bool) -> None:
        where = self.root / PACKS
        with self._errors():
            self._require_root()
            made = not where.is_dir()
            if made:
                where.mkdir(exist_ok=True)
            target = where / check_key(name)
            try:
                fd = os.open(where, os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o644) if durable else \
                    os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                raise PartExistsError(f"{name} already exists on volume {self.url}") from None
            except OSError as exc:  # a filesystem without unnamed files: a named one, renamed when whole
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
                self._put_renamed(where, target, data)
            else:
                try:
                    write_past_cache(fd, data, 0)
                    if durable:
                        os.fsync(fd)
                        self._link(fd, where, target.name)
                except BaseException:
                    if not durable:
                        os.unlink(target)
                    raise
                finally:
                    os.close(fd)
            if durable and made:
                fsync_dir(self.root)

    @staticmethod
    def _link(fd: int, where: Path, name: str) -> None:
        """Give the unnamed file `fd` its name in `where`, and make that durable."""
        folder = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=folder, follow_symlinks=True)
            os.fsync(folder)
        finally:
            os.close(folder)

    def _put_renamed(self, where: Path, target: Path, data: bytes) -> None:
        scratch = where / f".{target.name}.{os.getpid()}"
        with open(scratch, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(scratch, target)
        fsync_dir(where)

    def shelf_get(self, name: str, offset: int, size: int) -> bytes:
        path = self.root / PACKS / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            self._require_root()
            raise PartMissingError(f"pack {name} is missing from volume {self.url}") from None
        except OSError as exc:
            raise self._translate(exc, "") from None
        try:
            with self._errors():
                chunks = []
                while size > 0 and (chunk := os.pread(fd, size, offset)):
                    chunks.append(chunk)
                    offset, size = offset + len(chunk), size - len(chunk)
                return b"".join(chunks)
        finally:
            os.close(fd)

    def shelf_list(self) -> dict[str, int]:
        self._require_root()
        found = {}
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root / PACKS) as it:
            for entry in it:
                if not entry.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        found[entry.name] = entry.stat(follow_symlinks=False).st_size
        return found

    def shelf_drop(self, name: str) -> None:
        with self._errors():
            (self.root / PACKS / name).unlink(missing_ok=True)

    def release(self) -> None:
        """Also the packs' directory, once compaction has emptied it."""
        super().release()
        with contextlib.suppress(OSError):
            (self.root / PACKS).rmdir()
