"""Wildcards in the local paths of a put, expanded as a shell expands them
(bash with failglob): `put logs/*.log dest/` is one put per matching path, in
name order, hidden files only where the pattern starts with a dot; a pattern
that matches nothing fails the line with one error and runs nothing. A
wildcard inside quotes or after a backslash is part of the name. One-shot
commands (`pfs put ...`) are expanded by the shell that ran pfs already."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable

from pfs.cli.commands.syntax import Pattern
from pfs.errors import UsageError, printable

#: The spellings of put's recursive flag (see the command table).
_RECURSIVE = ("-r", "--recursive")


def expand(words: list[str], is_directory: Callable[[str], bool]) -> list[list[str]]:
    """The commands a line (split by split_words) stands for: a put with
    patterns among its sources is one put of each matching path (into NAME/,
    the directory its last word names, if it has one); any other line is
    itself, its words as typed. `is_directory` says whether a stored name is one."""
    if not words or words[0] != "put" or not any(isinstance(w, Pattern) for w in words[1:]):
        return [[str(w) for w in words]]
    rest = words[1:]
    literal = rest.index("--") if "--" in rest else len(rest)
    flags = [str(w) for w in rest[:literal] if w.startswith("-") and not isinstance(w, Pattern) and w != "-"]
    positional = [w for i, w in enumerate(rest) if i > literal or (i < literal and str(w) not in flags)]
    dest = str(positional[-1]) if len(positional) > 1 and not isinstance(positional[-1], Pattern) else None
    paths: list[str] = []
    for word in positional[:-1] if dest is not None else positional:
        if not isinstance(word, Pattern):
            paths.append(word)
            continue
        found = sorted(glob.glob(os.path.expanduser(word.pattern)))
        if not found:
            raise UsageError(f"no match: {printable(word)}",
                             "a name with a wildcard in it is typed in quotes: put 'a*b.txt'")
        paths += found
    if dest is not None and len(paths) > 1 and not dest.endswith("/") and not is_directory(dest):
        raise UsageError(f"put: {len(paths)} paths match, and {printable(dest)} is not a stored directory",
                         f"end it with / to store them all in it: {printable(dest)}/")
    inside = dest is not None and any(f in _RECURSIVE for f in flags) and (len(paths) > 1 or dest.endswith("/"))
    commands = []
    for path in paths:
        name = [] if dest is None else [_into(dest, path) if inside else dest]
        commands.append(["put", *flags, *(["--"] if path.startswith("-") else []), path, *name])
    return commands


def _into(directory: str, path: str) -> str:
    """Where put -r stores a directory given with NAME/: NAME/ plus the directory's own name."""
    return f"{directory.rstrip('/')}/{os.path.basename(os.path.normpath(path))}"
