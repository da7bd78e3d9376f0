"""Local paths as the user types them, and what pfs may read or write there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pfs.errors import DestinationError, UsageError
from pfs.registry import FileEntry


def user_path(text: str) -> Path:
    """A path as the user typed it, with ~ expanded; refused if no path could be that."""
    if "\0" in text:
        raise UsageError(f"{text!r} is not a path (it contains a NUL byte)")
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # ~user for an unknown user
        raise UsageError(f"cannot expand {text}: {exc}") from None


def proc_path(fd: int) -> str:
    """A path by which a pool worker reaches the very file behind our descriptor
    `fd`, whatever is renamed over its name meanwhile (and even when it has none)."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISLNK: "a symbolic link"}
    return next((word for test, word in kinds.items() if test(mode)), "not a regular file")


def check_link_destination(link: Path) -> None:
    """A get may replace a symbolic link (with --force, the link itself, never what
    it points to) only where it points to a regular file, and not through a
    process's descriptor (/dev/stdout is a link to /proc/self/fd/1, whatever that
    is): replacing it would silently change what the name is."""
    path = str(link)
    for _ in range(40):  # the kernel's own bound on a chain of links
        try:
            path = os.path.join(os.path.dirname(path), os.readlink(path))
        except OSError:  # the end of the chain
            break
        if os.path.abspath(path).startswith("/proc/"):
            raise DestinationError(f"{link} is a symbolic link to an open file descriptor ({path})",
                                   "`get NAME -` writes to standard output")
    try:
        mode = os.stat(link).st_mode
    except OSError:
        raise DestinationError(f"{link} is a symbolic link to nothing that exists",
                               "remove the link, or give another destination") from None
    if not stat.S_ISREG(mode):
        raise DestinationError(f"{link} is a symbolic link to {file_kind(mode)}",
                               "get replaces only regular files (`get NAME -` writes to standard output)")


def safe_name(entry: FileEntry) -> str:
    """The stored name reduced to a plain file name: no directories, no control
    characters, never '.' or '..' -- so get cannot write outside its destination."""
    name = "".join(c if c.isprintable() else "_" for c in os.path.basename(entry.name.replace("\\", "/")))
    return name if name not in ("", ".", "..") else f"file-{entry.id}"
