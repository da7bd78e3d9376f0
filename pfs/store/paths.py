"""Local paths as the user types them, and what pfs may read or write there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pfs.errors import UsageError
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


def safe_name(entry: FileEntry) -> str:
    """The stored name reduced to a plain file name: no directories, no control
    characters, never '.' or '..' -- so get cannot write outside its destination."""
    name = "".join(c if c.isprintable() else "_" for c in os.path.basename(entry.name.replace("\\", "/")))
    return name if name not in ("", ".", "..") else f"file-{entry.id}"
