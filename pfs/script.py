"""Script mode (commands piped on stdin) and one-shot mode (one command in argv)."""

from __future__ import annotations

from collections.abc import Iterable

from pfs.commands import ExitShell, Session
from pfs.output import PlainOutput
from pfs.store import Store


def run_script(store: Store, lines: Iterable[str]) -> int:
    """Run each line in order; EOF acts as `exit`. Exit status 0 only if all succeeded."""
    session = Session(store, PlainOutput())
    try:
        for line in lines:
            session.execute(line)
    except ExitShell:
        pass
    except KeyboardInterrupt:
        session.out.error("interrupted; waiting for running jobs (Ctrl-C again to abandon them)")
    return session.finish()


def run_one(store: Store, tokens: list[str]) -> int:
    """Run one command given on the command line and wait for it."""
    session = Session(store, PlainOutput())
    try:
        session.execute_tokens(tokens)
    except ExitShell:
        pass
    return session.finish()
