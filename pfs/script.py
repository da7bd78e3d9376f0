"""Script mode (commands piped on stdin) and one-shot mode (one command in argv)."""

from __future__ import annotations

import sys
import time
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
    """Run one command given on the command line and wait for it, with a
    progress bar when stdout is a terminal."""
    session = Session(store, PlainOutput())
    try:
        session.execute_tokens(tokens)
    except ExitShell:
        pass
    if sys.stdout.isatty() and session.jobs.running():
        _show_progress(session)
    return session.finish()


def _show_progress(session: Session) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn, TimeRemainingColumn

    columns = ("{task.description}", BarColumn(), DownloadColumn(binary_units=True),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        bars = {}
        while jobs := session.jobs.running():
            for job in jobs:
                if job.id not in bars:
                    bars[job.id] = progress.add_task(f"{job.kind} {job.name}", total=job.total or 1)
                progress.update(bars[job.id], completed=job.done)
            time.sleep(0.1)
