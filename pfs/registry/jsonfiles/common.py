"""What the JSON-files registries share: the store directory's file names, durable writes, damage, sessions' liveness.

Every JSON file is written atomically: temp file, fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import threading
from pathlib import Path

from pfs.errors import DamagedError

SNAPSHOT = "files.json"
JOURNAL = "files.jsonl"
MANIFESTS = "manifests"
#: Where manifests are written before they are renamed into MANIFESTS.
SCRATCH = "tmp"
RESERVE = "reserve"
#: flock()ed around every read and update of the journal, so processes take turns.
FILES_LOCK = "files.lock"
#: One file per session, flock()ed by its live process.
SESSIONS = "sessions"
#: Disk space held back so that a full disk can still record deletes and rollbacks.
RESERVE_BYTES = 1 << 20


def fsync_file(path: Path | str, flags: int = 0) -> None:
    """Make a file's data durable (an open descriptor is not needed)."""
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path | str) -> None:
    """Make a directory's entries (new, renamed or removed files) durable."""
    fsync_file(path, os.O_DIRECTORY)


def sync_filesystem(directory: Path, files: list[Path]) -> None:
    """Make `files` (all on the file system of `directory`) durable: one syncfs
    for the whole file system where the C library has it, else an fsync each."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd):
            return
    finally:
        os.close(fd)
    for path in files:
        fsync_file(path)


def syncfs(fd: int) -> bool:
    """Flush the whole file system that holds `fd` (syncfs); False where the C
    library has no syncfs or it failed: then fsync what must be durable."""
    libc = _libc()
    return libc is not None and libc.syncfs(fd) == 0


@functools.cache
def _libc():
    """The C library, for syncfs (Linux); None where it has none."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.syncfs  # noqa: B018 -- raises AttributeError where there is none
    except (OSError, AttributeError):
        return None
    return libc


def write_json_atomic(path: Path, obj: object, scratch: Path | None = None) -> None:
    """Replace `path` with `obj` as JSON so a crash leaves the old or the new file, whole."""
    write_atomic(path, json.dumps(obj, separators=(",", ":")).encode(), scratch)


def write_atomic(path: Path, data: bytes, scratch: Path | None = None) -> None:
    """Replace `path` with `data` so a crash leaves the old or the new file, whole.
    The data is written first to a temporary file in `scratch` (on the same file
    system; default: beside `path`), where an open looks for what a crash left:
    a directory of 100,000 manifests is not one to list at every open."""
    tmp = (scratch or path.parent) / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def damaged(root: Path, problem: str) -> DamagedError:
    """The error for damaged metadata: say exactly what is wrong and point at `repair`."""
    return DamagedError(problem, f"run `pfs --store {root} repair` to rebuild what can be rebuilt")


#: What json.loads raises on bytes that are not JSON (bad UTF-8 is a ValueError
#: too; nesting too deep to parse is a RecursionError).
BAD_JSON = (ValueError, RecursionError)


def read_json(path: Path, root: Path) -> object:
    """Load a JSON file, turning damage into a DamagedError that names the file."""
    try:
        return json.loads(path.read_bytes())
    except BAD_JSON as exc:
        raise damaged(root, f"{path} is damaged ({short(exc)})") from exc
    except IsADirectoryError as exc:
        raise damaged(root, f"{path} is a directory, not a file") from exc


def short(exc: BaseException) -> str:
    """An exception as a short reason: parse errors can quote huge inputs."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def pid_alive(pid: str) -> bool:
    """Whether a process of this machine with that pid (as text) runs."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def dead_session(path: Path) -> int:
    """A descriptor holding the lock of session file `path` if its session is
    dead (now claimed by us), else -1."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, IsADirectoryError):
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return -1


def live_sessions(root: Path, but: str = "") -> list[str]:
    """The live sessions on the store at `root` (other than `but`), described by pid."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(root / SESSIONS)):
            if name == but or name.startswith("."):
                continue
            fd = dead_session(root / SESSIONS / name)
            if fd >= 0:
                os.close(fd)
                continue
            found.append(f"pid {name.split('-')[0]}")
    return found
