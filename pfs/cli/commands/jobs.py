"""The commands on running operations: jobs, wait and cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfs.cli import interrupts
from pfs.cli.commands import records, tables, trees
from pfs.cli.commands.syntax import Args, Command
from pfs.errors import UsageError, printable

if TYPE_CHECKING:
    from pfs.cli.commands.session import Session

#: What a cancelled job leaves behind, as said when it stops.
CANCEL_OUTCOME = {"put": ": rolled back", "get": ": nothing written", "verify": "", "heal": "", "delete": "",
                  **trees.CANCEL_OUTCOME}


def cmd_jobs(s: Session, a: Args) -> None:
    jobs = s.jobs.running()
    if "--json" in a.flags:
        s.out.json([records.job_record(j) for j in jobs])
    elif not jobs:
        s.out.line("no jobs running")
    else:
        s.out.table(tables.jobs_table(jobs))


def cmd_cancel(s: Session, a: Args) -> None:
    """Cancel jobs and wait for them to stop. A delete is never stopped halfway."""
    which = a.positional[0]
    if which.lower() == "all":
        jobs = s.jobs.running()
        if not jobs:
            s.out.line("no jobs running")
    elif which.isdigit() and which.isascii():
        jobs = [s.jobs.find(int(which))]
    else:
        raise UsageError(f"cancel: job must be a number or `all`, got {which!r}", "`jobs` shows the job numbers")
    for job in jobs:
        if job.kind == "delete":
            s.out.line(f"[{job.file_id}] delete of {printable(job.name)} cannot be cancelled halfway; it finishes")
        else:
            job.cancelled.set()
    for job in jobs:
        job.finished.wait()


def cmd_wait(s: Session, a: Args) -> None:
    with interrupts.breakable():
        s.jobs.wait_all()


COMMANDS = [
    Command("jobs", "jobs [--json]", "show running operations with their progress", cmd_jobs,
            flags=frozenset({"--json"})),
    Command("wait", "wait", "wait until every running operation has finished", cmd_wait),
    Command("cancel", "cancel JOB | all", "stop a running operation (JOB as `jobs` shows): a put is rolled back, "
            "a get writes nothing; a delete always finishes", cmd_cancel, 1, 1),
]
