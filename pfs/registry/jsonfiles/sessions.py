"""SessionFiles: each session as a file flock()ed by its live process, and the locks that hold a file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from pfs.errors import StoreLockedError
from pfs.registry.base import SessionTable
from pfs.registry.jsonfiles.common import FILES_LOCK, SESSIONS, dead_session, live_sessions, pid_alive


class SessionFiles(SessionTable):
    """Sessions as files STORE/sessions/<id>, each flock()ed by its process for as
    long as it has the store open. The kernel drops the lock when the process
    dies, however it dies, so a lock that another process can take proves the
    session dead; taking it is also what claims the dead session's work."""

    def __init__(self, root: Path) -> None:
        self._dir = root / SESSIONS
        self._dir.mkdir(exist_ok=True)
        self._holds = root / FILES_LOCK
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"  # the pid, for messages naming the holders
        self._fd = self._register()

    def _register(self) -> int:
        """Create our session file already locked: it appears (by rename) only once
        its lock is held, so no one can ever take it for a dead session's. It is
        empty (its name says it all), so even a full disk lets pfs open the store."""
        tmp = self._dir / f".{self.id}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(tmp, self._dir / self.id)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd

    def close(self) -> None:
        if self._fd >= 0:
            (self._dir / self.id).unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = -1

    def holders(self) -> list[str]:
        return live_sessions(self._dir.parent, self.id)

    @contextlib.contextmanager
    def claim_dead(self) -> Iterator[Callable[[str], bool]]:
        claimed: dict[str, int] = {}
        try:
            for name in os.listdir(self._dir):
                registering = name.startswith(".") and pid_alive(name[1:].split("-")[0])  # not yet locked
                fd = dead_session(self._dir / name) if name != self.id and not registering else -1
                if fd >= 0:
                    claimed[name] = fd
            yield lambda session: session == "" or session in claimed or \
                (session != self.id and not (self._dir / session).exists())
            for name in claimed:
                (self._dir / name).unlink(missing_ok=True)
        finally:
            for fd in claimed.values():
                os.close(fd)

    @contextlib.contextmanager
    def moving(self, file_id: int, wait: bool = True) -> Iterator[bool]:
        """An OFD lock on byte MOVES + `file_id` of files.lock, past every hold's byte."""
        fd = os.open(self._holds, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                _lock_byte(fd, MOVES + file_id, fcntl.F_WRLCK, wait=wait)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                _lock_byte(fd, MOVES + file_id, fcntl.F_UNLCK)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def hold(self, file_id: int, exclusive: bool) -> Iterator[None]:
        """A lock on byte `file_id` of files.lock, owned by its own open file
        description (an OFD lock), so it orders threads of one process as well."""
        fd = os.open(self._holds, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                _lock_byte(fd, file_id, fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK, wait=not exclusive)
            except BlockingIOError:
                raise StoreLockedError("it is being read by a get or verify (of this pfs or another)",
                                       "try again once it is done") from None
            try:
                yield
            finally:  # unlocked, not just closed: a child forked meanwhile has a copy of fd until it execs
                _lock_byte(fd, file_id, fcntl.F_UNLCK)
        finally:
            os.close(fd)


#: Where the bytes of the move locks begin in files.lock (a hold's byte is its file id).
MOVES = 1 << 48


def _lock_byte(fd: int, offset: int, kind: int, wait: bool = False) -> None:
    """Take (or with F_UNLCK drop) an OFD lock on one byte of fd's file."""
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK,
                struct.pack("hhqqi4x", kind, os.SEEK_SET, offset, 1, 0))
