"""Stored names: paths inside the store, such as `logs/2026/app.log`.

A name is UTF-8 text: a sequence of segments joined by `/`, without control
characters (NUL, newline, ...) or bytes of another encoding, whatever the
registry (JSON files or PostgreSQL) that keeps it. Directories are implied by the
names (as S3 prefixes are), or recorded (put -r records every directory, so an
empty one exists); a name is a file or a directory, never both. A command argument
made only of digits is a file id; `./123` or `/123` reaches a file named `123`.
"""

from __future__ import annotations

import re

from pfs.errors import UsageError

#: Longest name and longest segment, in UTF-8 bytes: a segment as most filesystems
#: allow, a name twice Linux's PATH_MAX (a path of the longest a program may give
#: still fits under a directory of a mount).
MAX_NAME_BYTES = 8192
MAX_SEGMENT_BYTES = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def is_id(text: str) -> bool:
    """Whether a command argument is a file id rather than a name."""
    return text.isascii() and text.isdigit()


def _strip_root(text: str) -> str:
    """A name as typed, without the `./` or `/` that may lead it."""
    if text.startswith("./"):
        return text[2:]
    return text[1:] if text.startswith("/") else text


def _byte_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _is_utf8(text: str) -> bool:
    """Whether text holds no lone surrogate: the bytes of a local path that are
    not UTF-8 arrive as such (surrogateescape), and a database's text cannot
    hold them, so no store takes them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check(text: str) -> str:
    """The stored name that `text` stands for; a UsageError says what is wrong
    with it, so that a bad name is refused before anything is stored."""
    name = _strip_root(text)
    if not name:
        raise UsageError("a stored name cannot be empty", "give a name such as logs/app.log")
    problem = _problem(name)
    if problem:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise UsageError(f"bad name {shown!r}: {problem}", "names are paths like logs/2026/app.log")
    return name


def problem(name: str) -> str:
    """Why `name` cannot be a stored name ("" if it can), in a few words: for a
    tree, whose entries are reported and skipped rather than renamed."""
    return _problem(name).split(";")[0]


def _problem(name: str) -> str:
    if _CONTROL.search(name):
        return "it contains a control character"
    if not _is_utf8(name):
        return "it is not UTF-8 text; give it a name that is, as in put SOURCE NAME"
    if _byte_length(name) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    for segment in name.split("/"):
        if not segment:
            return "it has an empty segment (// or a / at an end)"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
        if _byte_length(segment) > MAX_SEGMENT_BYTES:
            return f"a segment is longer than {MAX_SEGMENT_BYTES} bytes"
    return ""


def prefix(text: str) -> str:
    """A directory as typed (`logs`, `logs/`, `/`, ``) as the prefix its names
    start with: `logs/`, or `` for the top."""
    stripped = _strip_root(text).rstrip("/")
    return check(stripped) + "/" if stripped else ""


def target(text: str | None, source_name: str) -> str:
    """The name a put stores under: `text`, the source's file name when there is
    none, or the source's file name inside `text` when it ends with `/`."""
    if not text:
        return check(source_name)
    return check(text + source_name if text.endswith("/") else text)
