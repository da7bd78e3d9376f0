"""Script mode (commands piped on stdin) and one-shot mode (one command in argv)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable

from pfs.cli import interrupts
from pfs.cli.commands import ExitShell, Session
from pfs.cli.output import PlainOutput
from pfs.store.facade import Store


def script_lines(stream) -> Iterable[str]:
    """The lines of a piped script. Bytes that are not UTF-8 (a file name in
    another encoding) pass through as surrogate escapes, as they do in argv,
    instead of stopping the script with a decoding error."""
    if hasattr(stream, "buffer"):
        return io.TextIOWrapper(stream.buffer, encoding="utf-8", errors="surrogateescape")
    return stream


def run_script(store: Store, lines: Iterable[str]) -> int:
    """Run each line in order; EOF acts as `exit`. Exit status 0 only if all succeeded."""
    session = Session(store, PlainOutput())
    interrupts.abandoning(lambda: f"{session.abandoned()}; the rest of the script was not run")
    try:
        for line in script_lines(lines):
            session.execute(line)
    except ExitShell:
        pass
    return session.finish(announce=True)


def run_one(store: Store, tokens: list[str]) -> int:
    """Run one command given on the command line and wait for it, with a
    progress bar when stdout is a terminal."""
    session = Session(store, PlainOutput(), stdin_free=True)
    interrupts.abandoning(session.abandoned)
    try:
        session.execute_tokens(tokens)
    except ExitShell:
        pass
    return session.finish(live=sys.stdout is not None and sys.stdout.isatty())
