"""The session that runs command lines against a store and reports how its jobs end.

A command is one entry in the command table: its name, its arguments, one line
of help and a handler. Handlers talk to the Store and hand plain data to the
output; errors are PfsErrors, reported as one `error:` line, and the session goes on.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable

from pfs import failures, names
from pfs.cli import interrupts
from pfs.cli.commands import records
from pfs.cli.commands.check import Skipped, VerifyTally
from pfs.cli.commands.jobs import CANCEL_OUTCOME
from pfs.cli.commands.syntax import ExitShell, split
from pfs.cli.commands.table import ALIASES, COMMANDS, parse
from pfs.cli.jobs import Job, JobManager
from pfs.cli.output import PlainOutput, show_progress
from pfs.errors import Cancelled, IntegrityError, NotFoundError, PfsError, UsageError, describe, printable
from pfs.registry import FileEntry
from pfs.registry.usage import on_disk
from pfs.store.facade import Store
from pfs.units import format_rate, format_size

log = logging.getLogger("pfs")


#: Healed pieces named one by one in a heal line; the rest are counted.
HEALED_SHOWN = 3


class Session:
    """Runs command lines against one open store; counts what failed."""

    def __init__(self, store: Store, out: PlainOutput, stdin_free: bool = False) -> None:
        self.store = store
        self.out = out
        self.stdin_free = stdin_free  # standard input is not where the commands come from: `put -` may read it
        self.commands, self.aliases = COMMANDS, ALIASES
        self.failures = 0
        self._lock = threading.Lock()
        self.jobs = JobManager(self._job_finished)
        self.verify_tallies: dict[int, VerifyTally] = {}  # verify job id -> its `verify --all`

    def execute(self, line: str) -> None:
        """Run one command line; raises ExitShell on `exit`."""
        try:
            tokens = split(line)
        except PfsError as exc:
            self._fail(exc)
            return
        if tokens:
            self.execute_tokens(tokens)

    def execute_tokens(self, tokens: list[str]) -> None:
        """Run one already-split command; raises ExitShell on `exit`."""
        try:
            if tokens[0].lower() == "repair":
                raise UsageError("repair cannot run inside a session: it needs the store to itself",
                                 f"leave, then run `pfs --store {self.store.root} repair`; `help repair` says more")
            command, args = parse(tokens)
            command.handler(self, args)
        except ExitShell:
            raise
        except PfsError as exc:
            self._fail(exc)
        except Exception as exc:
            self._fail(exc)

    def finish(self, live: bool = False, announce: bool = False) -> int:
        """Wait for every job, showing their progress (`live`, on a terminal) or
        one line per job (`announce`); returns the exit status: 0 only if
        everything succeeded and its output reached stdout (141, as for
        SIGPIPE, when the reader went away)."""
        if live:
            show_progress(self.jobs.running)
        elif announce:
            for job in self.jobs.running():
                if not job.as_json:  # a --json command's output stays JSON, line by line
                    self.out.line(f"[{job.file_id}] waiting for {job.kind} of {printable(job.name)} to finish")
        self.jobs.wait_all()
        if self.out.lost == errno.EPIPE:
            return 141
        return 1 if self.failures or self.out.lost else 0

    def resolve(self, ref: str) -> FileEntry:
        """The file a command's argument names: an id, or a name. A name whose put
        runs in this session names that put's file, so that the command waits for
        it as it would for an id; a name with no stored file names its last record
        (a failed put), so that `info` shows why and `delete` removes it."""
        if names.is_id(ref):
            return self.store.entry(int(ref))
        name = names.check(ref)
        for job in reversed([j for j in self.jobs.running() if j.kind == "put" and j.name == name]):
            entry = self.store.entry(job.file_id)
            if entry.name == name:  # not renamed away since (a put's job ends after its file is stored)
                return entry
        try:
            return self.store.resolve(ref)  # as typed: ./1 is the name 1, where 1 alone would be an id
        except NotFoundError:
            records = self.store.files.named(name)
            if not records:
                raise
            return records[-1]

    def forget_failures(self) -> None:
        """Count failures afresh from now on: an interactive shell reported each
        as it happened, and its exit status is that of the jobs it waits for as
        it leaves, not of a typo an hour earlier."""
        with self._lock:
            self.failures = 0

    def start(self, kind: str, file_id: int, name: str, size: int, work: Callable[[Job], object],
              as_json: bool = False) -> Job:
        """Start a background job; signals stay with the main thread (see interrupts)."""
        interrupts.start_resource_tracker()

        def run(job: Job) -> object:
            interrupts.main_thread_only()
            return work(job)
        return self.jobs.start(kind, file_id, name, size, run, as_json)

    def start_on_file(self, kind: str, file_id: int, work: Callable[[Job], object], as_json: bool = False) -> None:
        """Start a job on an existing file, after any job already running on it."""
        entry = self.store.entry(file_id)
        self.start(kind, file_id, entry.name, entry.size, work, as_json)

    def start_counted(self, tally: VerifyTally, entry, work: Callable[[Job], object], kind: str = "verify") -> None:
        """Start a verify (or heal) job that counts towards `tally`."""
        with self._lock:  # registered before the job can finish and look for it
            job = self.start(kind, entry.id, entry.name, entry.size, work, tally.as_json)
            self.verify_tallies[job.id] = tally

    def event(self, as_json: bool, line: str, **record: object) -> None:
        """Say what happened: the line, or (--json) the record as a JSON object."""
        if as_json:
            self.out.json(record)
        else:
            self.out.line(line)

    def abandoned(self) -> str:
        """What stopping now would abandon, for the line a signal prints."""
        jobs = self.jobs.running()
        if not jobs:
            return "no jobs were running"
        names = ", ".join(f"{j.kind} {j.file_id} ({printable(j.name)}) at {j.fraction:.0%}" for j in jobs)
        kinds = {j.kind for j in jobs}
        after = [what for kind, what in (("put", "the next open of the store rolls unfinished puts back"),
                                         ("delete", "the next open finishes the deletes"),
                                         ("get", "an abandoned get leaves no file under its destination name"))
                 if kind in kinds]
        return "; ".join([f"abandoned {names}", *after])

    def count_failure(self) -> None:
        """Count one failure towards the exit status (a tree's failed file, reported as it happened)."""
        self._count_failure()

    def _count_failure(self) -> None:
        with self._lock:
            self.failures += 1

    def _fail(self, exc: BaseException, context: str = "") -> None:
        self._count_failure()
        prefix = f"{context}: " if context else ""
        if isinstance(exc, PfsError):
            self.out.error(prefix + str(exc))
        else:
            log.error("unexpected error%s", f" in {context}" if context else "", exc_info=exc)
            self.out.error(printable(f"{prefix}internal error: {describe(exc)} (details in {self.store.root / 'pfs.log'})"))

    def _job_finished(self, job: Job) -> None:
        name = printable(job.name)
        context = f"{job.kind} {job.file_id} ({name})"
        if isinstance(job.error, Cancelled):
            self.event(job.as_json, f"[{job.file_id}] {job.kind} of {name} cancelled{CANCEL_OUTCOME[job.kind]}",
                       event="cancelled", kind=job.kind, id=job.file_id, name=job.name)
            self._tally(job)
            return
        if job.error is not None:
            self._fail(job.error, context)
            if isinstance(job.error, IntegrityError):  # its line was the first cause; the others follow
                for line in failures.shown(failures.grouped(job.error.damage), job.error.damage, context)[1:]:
                    self.out.error(printable(f"{context}: {line}"))
            self._tally(job)
            return
        if job.as_json:
            self._finished_as_json(job)
            return
        took = f"{job.elapsed:.1f} s, {format_rate(job.total or job.done, job.elapsed)}"
        if isinstance(job.result, str):  # a tree's summary line (see commands.trees)
            self.out.line(job.result)
        elif job.kind == "put":
            entry = job.result
            self.out.line(f"[{entry.id}] stored {name}: {format_size(entry.size)} in {entry.parts} "
                          f"part{'s' * (entry.parts != 1)}, {format_size(on_disk(entry))} on disk, {took}")
        elif job.kind == "get":
            path, found = job.result
            self.out.line(f"[{job.file_id}] restored {name} to {printable(str(path))}: {format_size(job.total)}, {took}")
            self._report_healed(job, found)
            if found.damage:
                word = "damaged" if failures.any_damage(found.damage, []) else "unreachable"
                self.out.error(f"{context}: {len(found.damage)} {word} part(s) were zero-filled:")
                self._report_damage(context, found.damage)
        elif job.kind == "delete":
            self.out.line(f"[{job.file_id}] deleted {name}")
        elif job.kind in ("verify", "heal"):
            if isinstance(job.result, Skipped):
                self.out.line(f"[{job.file_id}] skipped {name}: {job.result.reason}")
            else:
                self._report_findings(job, context)
            self._tally(job)

    def _finished_as_json(self, job: Job) -> None:
        """A job's end as one JSON object; what it found counts as a failure as its lines would."""
        if isinstance(job.result, Skipped):
            self.out.json({"event": "skipped", "id": job.file_id, "name": job.name, "reason": job.result.reason})
        else:
            self.out.json(records.finished(job))
            found = job.result[1] if job.kind == "get" else job.result
            if job.kind in ("get", "verify", "heal") and (found.damage or found.bad and job.kind != "get"):
                self._count_failure()
        self._tally(job)

    def _report_findings(self, job: Job, context: str) -> None:
        """What a verify or heal found: what it healed (one line), damaged parts and
        pieces it could not heal (one line each, and a failure), or that all is well."""
        found = job.result
        self._report_healed(job, found)
        self._report_damage(context, found.damage)
        word = "not healed: " if job.kind == "heal" else ""
        for line in failures.shown(failures.grouped_pieces(found.bad), found.bad, context):
            self.out.error(printable(f"{context}: {word}{line}"))
        if found.bad and not found.damage:
            self._count_failure()
        if not (found.damage or found.bad or found.healed):
            what = "verified {}: every part is intact" if job.kind == "verify" else "healed {}: nothing to heal"
            self.out.line(f"[{job.file_id}] " + what.format(printable(job.name)))

    def _report_healed(self, job: Job, found) -> None:
        if found.healed:
            n, shown = len(found.healed), found.healed[:HEALED_SHOWN]
            more = f"; and {n - len(shown)} more (`info {job.file_id} --parts` shows where each lives)" \
                if n > len(shown) else ""
            self.out.line(printable(f"[{job.file_id}] healed {job.name} ({n} cop{'y' if n == 1 else 'ies'} or "
                                    f"shard{'s' * (n != 1)}): " + "; ".join(shown) + more))

    def _report_damage(self, context: str, damage: list, count: bool = True) -> None:
        if count and damage:
            self._count_failure()
        for line in failures.shown(failures.grouped(damage), damage, context):
            self.out.error(printable(f"{context}: {line}"))

    def _tally(self, job: Job) -> None:
        """Count a finished verify towards its `verify --all` summary, if it has one."""
        with self._lock:
            tally = self.verify_tallies.pop(job.id, None)
        if tally is not None and tally.add(job):
            tally.report(self.out)
