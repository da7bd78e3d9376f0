"""The write-back cache: a file written through the mount is staged in a
local file, then stored whole (a put of the staged file) at flush or fsync, so
another pfs sees the old file or the new one, never a part of it. The staged
bytes of all files together are bounded: a write past the bound fails with
ENOSPC rather than filling the local disk."""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from pfs.registry.jsonfiles import pid_alive

#: Bytes copied at a time when a stored file is brought into the cache.
_COPY = 4 << 20


class WriteBack:
    """The cache directory (one per mount process, swept when its process is
    gone) and the bound on the bytes staged in it."""

    def __init__(self, parent: Path, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        parent.mkdir(parents=True, exist_ok=True)
        for old in parent.glob("mount.*"):
            if not pid_alive(old.name.split(".")[-1]):
                shutil.rmtree(old, ignore_errors=True)
        self.directory = parent / f"mount.{os.getpid()}"
        self.directory.mkdir(exist_ok=True)

    def new_path(self) -> Path:
        return self.directory / f"staged.{next(self._numbers)}"

    def resize(self, before: int, after: int) -> None:
        """Account for a staged file growing or shrinking; ENOSPC past the bound."""
        with self._lock:
            if after > before and self.used + after - before > self.limit:
                raise OSError(errno.ENOSPC, f"the write-back cache is full ({self.limit} bytes)")
            self.used += after - before

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class Staged:
    """One file's bytes as written through the mount, in a local file. It is
    filled from the stored file (`fill`) only when first changed, so opening
    for writing costs nothing until something is written."""

    def __init__(self, cache: WriteBack, mode: int) -> None:
        self._cache = cache
        self.path = cache.new_path()
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self.mode = mode  # with setuid, setgid and sticky, which the local file does not get
        self.size = 0
        self.filled = False
        self.fresh = False  # every byte written here since it was empty (a new file, or cut to 0)
        self.written_to = 0  # of a fresh file, the end of the bytes written from its start with no gap
        self.dirty = False  # changed since it was last stored
        self.lock = threading.RLock()  # orders writes against storing it

    def fill(self, size: int, read: Callable[[int, int], bytes]) -> None:
        """Bring the stored file's `size` bytes (read(size, offset)) in, once."""
        if self.filled:
            return
        self._cache.resize(self.size, size)
        self.size = size
        for offset in range(0, size, _COPY):
            os.pwrite(self.fd, read(min(_COPY, size - offset), offset), offset)
        self.filled = True

    def write(self, data: bytes, offset: int) -> int:
        end = max(self.size, offset + len(data))
        self._cache.resize(self.size, end)
        self.size = end
        written = os.pwrite(self.fd, data, offset)
        self.dirty = True
        if offset <= self.written_to:
            self.written_to = max(self.written_to, offset + written)
        return written

    def read(self, size: int, offset: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def truncate(self, length: int) -> None:
        self._cache.resize(self.size, length)
        os.ftruncate(self.fd, length)
        self.size, self.filled, self.dirty = length, True, True
        self.fresh = self.fresh or length == 0
        self.written_to = min(self.written_to, length)

    def chmod(self, mode: int) -> None:
        self.mode = mode
        self.touch()

    def touch(self) -> None:
        """The status changed (chmod, chown): the local file's ctime, which is the staged file's, is now."""
        os.fchmod(self.fd, 0o600)

    def utime(self, times_ns: tuple[int, int]) -> None:
        os.utime(self.fd, ns=times_ns)

    def stat(self) -> os.stat_result:
        """The local file's size and times (its mode is `mode`)."""
        return os.fstat(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.path.unlink(missing_ok=True)
            self._cache.resize(self.size, 0)
