"""The command table and the session that runs command lines against a store.

A command is one entry in COMMANDS: its name, its arguments, one line of help
and a handler. Handlers talk to the Store and hand plain data to the output;
errors are PfsErrors, reported as one `error:` line, and the session goes on.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pfs.errors import Cancelled, IntegrityError, PfsError, UsageError, printable
from pfs.jobs import Job, JobManager
from pfs.output import PlainOutput, Table
from pfs.store import Store, describe
from pfs.units import format_rate, format_size

log = logging.getLogger("pfs")


class ExitShell(Exception):
    """Raised by `exit`: the loop stops reading commands."""


@dataclass(frozen=True)
class Args:
    """A command line split into positional arguments and --flags."""

    positional: list[str]
    flags: frozenset[str]

    def file_id(self, index: int = 0) -> int:
        text = self.positional[index]
        if not text.isdigit() or not text.isascii():
            raise UsageError(f"file id must be a number, got {text!r}", "`list` shows the ids")
        return int(text)

    def get(self, index: int) -> str | None:
        return self.positional[index] if index < len(self.positional) else None


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    handler: Callable[[Session, Args], None]
    min_args: int = 0
    max_args: int = 0
    flags: frozenset[str] = frozenset()


def split(line: str) -> list[str]:
    """Split a command line with shell quoting rules, comments included."""
    try:
        return shlex.split(_without_comment(line))
    except ValueError as exc:
        raise UsageError(f"cannot parse the line: {exc}", 'close the quote, e.g. put "my file.log"') from None


def _without_comment(line: str) -> str:
    """Cut the line at a `#` that starts a word outside quotes, as a shell does
    (shlex would also cut `report#1.txt`)."""
    quote, escaped = "", False
    for i, c in enumerate(line):
        if escaped:
            escaped = False
        elif c == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def parse(tokens: list[str]) -> tuple[Command, Args]:
    """Match tokens to a command and check its arguments."""
    name, rest = tokens[0], tokens[1:]
    command = COMMANDS.get(ALIASES.get(name.lower(), name.lower()))
    if command is None:
        raise UsageError(f"unknown command {name!r}", "type `help` for the list of commands")
    positional, flags, literal = [], set(), False
    for token in rest:
        if literal or not token.startswith("--"):
            positional.append(token)
        elif token == "--":
            literal = True
        elif token in command.flags:
            flags.add(token)
        else:
            raise UsageError(f"{command.name}: unknown option {token!r}", f"usage: {command.usage}")
    if not command.min_args <= len(positional) <= command.max_args:
        few = len(positional) < command.min_args
        raise UsageError(f"{command.name}: {'missing' if few else 'too many'} arguments",
                         f"usage: {command.usage}")
    return command, Args(positional, frozenset(flags))


class Session:
    """Runs command lines against one open store; counts what failed."""

    def __init__(self, store: Store, out: PlainOutput) -> None:
        self.store = store
        self.out = out
        self.failures = 0
        self._failures_lock = threading.Lock()
        self.jobs = JobManager(self._job_finished)

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
            command, args = parse(tokens)
            command.handler(self, args)
        except ExitShell:
            raise
        except PfsError as exc:
            self._fail(exc)
        except Exception as exc:
            self._fail(exc)

    def finish(self) -> int:
        """Wait for every job; the exit status: 0 only if everything succeeded.
        Ctrl-C while waiting abandons the jobs as a crash would: the store
        rolls them back when it is next opened."""
        try:
            self.jobs.wait_all()
        except KeyboardInterrupt:
            count = len(self.jobs.running())
            self.out.error(f"interrupted: {count} running job(s) abandoned; "
                           "unfinished puts are rolled back when the store is next opened")
            log.warning("interrupted with %d job(s) running", count)
            os._exit(130)
        return 1 if self.failures else 0

    def _count_failure(self) -> None:
        with self._failures_lock:
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
        if isinstance(job.error, Cancelled):
            self.out.line(f"[{job.file_id}] {job.kind} of {name} cancelled{CANCEL_OUTCOME[job.kind]}")
            return
        if job.error is not None:
            self._fail(job.error, f"{job.kind} {job.file_id} ({name})")
            if isinstance(job.error, IntegrityError):
                for damage in job.error.damage[1:]:
                    self.out.error(printable(str(damage)))
            return
        took = f"{job.elapsed:.1f} s, {format_rate(job.total, job.elapsed)}"
        if job.kind == "put":
            entry = job.result
            self.out.line(f"[{entry.id}] stored {name}: {format_size(entry.size)} in {entry.parts} "
                          f"part{'s' * (entry.parts != 1)}, {format_size(entry.stored)} on disk, {took}")
        elif job.kind == "get":
            path, damage = job.result
            self.out.line(f"[{job.file_id}] restored {name} to {printable(str(path))}: {format_size(job.total)}, {took}")
            self._report_salvage(damage)
        elif job.kind == "delete":
            self.out.line(f"[{job.file_id}] deleted {name}")
        elif job.kind == "verify":
            if job.result:
                self._report_damage(job.result)
            else:
                self.out.line(f"[{job.file_id}] verified {name}: every part is intact")

    def _report_damage(self, damage: list) -> None:
        self._count_failure()
        for d in damage:
            self.out.error(printable(str(d)))

    def _report_salvage(self, damage: list) -> None:
        if damage:
            self.out.error(f"{len(damage)} damaged part(s) were zero-filled:")
            self._report_damage(damage)


# -- handlers ------------------------------------------------------------------

def cmd_put(s: Session, a: Args) -> None:
    source = a.positional[0]
    entry = s.store.begin_put(source)
    s.out.line(f"[{entry.id}] storing {printable(entry.name)} ({format_size(entry.size)}, "
               f"{entry.parts} part{'s' * (entry.parts != 1)})")
    s.jobs.start("put", entry.id, entry.name, entry.size,
                 lambda job: s.store.finish_put(entry, source, job.advance, job.cancelled))


def _file_job(s: Session, kind: str, file_id: int, work: Callable[[Job], object]) -> None:
    """Start a job on an existing file, after any job already running on it."""
    entry = s.store.entry(file_id)
    s.jobs.start(kind, file_id, entry.name, entry.size, work)


def cmd_get(s: Session, a: Args) -> None:
    file_id, dest = a.file_id(), a.get(1)
    _file_job(s, "get", file_id, lambda job: s.store.get(file_id, dest, "--force" in a.flags,
                                                          "--salvage" in a.flags, job.advance, job.cancelled))


def cmd_delete(s: Session, a: Args) -> None:
    file_id = a.file_id()
    _file_job(s, "delete", file_id, lambda job: s.store.delete(file_id, job.advance))


def cmd_verify(s: Session, a: Args) -> None:
    if "--all" in a.flags:
        if a.positional:
            raise UsageError("verify: give an ID or --all, not both")
        ids = [e.id for e in s.store.list() if e.status == "stored"]
        if not ids:
            s.out.line("no stored files to verify")
    elif a.positional:
        ids = [a.file_id()]
    else:
        raise UsageError("verify: missing arguments", "usage: verify ID | verify --all")
    for file_id in ids:
        _file_job(s, "verify", file_id, lambda job, i=file_id: s.store.verify(i, job.advance, job.cancelled))


def cmd_list(s: Session, a: Args) -> None:
    entries = s.store.list()
    if not entries:
        s.out.line("no files stored yet (put PATH stores one)")
        return
    rows = [[str(e.id), e.name, format_size(e.size), str(e.parts),
             e.status + (f" ({e.reason})" if e.reason else ""),
             format_size(e.stored) if e.status == "stored" else "-"]
            for e in entries]
    s.out.table(Table(["id", "name", "size", "parts", "status", "stored"], rows,
                      frozenset({"id", "size", "parts", "stored"})))


def cmd_info(s: Session, a: Args) -> None:
    file_id = a.file_id()
    s.jobs.wait_file(file_id)
    entry = s.store.entry(file_id)
    manifest = s.store.manifest(file_id)
    title = (f"{entry.name}: {format_size(entry.size)}, {entry.status}"
             f"{f' ({entry.reason})' if entry.reason else ''}, chunk {format_size(entry.chunk_size)}, "
             f"{entry.hash}{f', digest {entry.digest}' if entry.digest else ''}")
    rows = [[str(p.index), str(p.offset), str(p.size), str(p.stored), p.codec, p.hash, p.status, p.id]
            for p in (manifest.parts if manifest else [])]
    s.out.table(Table(["part", "offset", "size", "stored", "codec", "hash", "status", "part id"], rows,
                      frozenset({"part", "offset", "size", "stored"}), title))


def cmd_jobs(s: Session, a: Args) -> None:
    rows = [[str(j.id), j.kind, str(j.file_id), j.name, f"{j.fraction:.0%}",
             format_rate(j.done, j.elapsed), f"{j.elapsed:.1f} s"] for j in s.jobs.running()]
    if not rows:
        s.out.line("no jobs running")
        return
    s.out.table(Table(["job", "kind", "file", "name", "done", "rate", "time"], rows,
                      frozenset({"job", "file", "done", "rate", "time"})))


#: What a cancelled job leaves behind, as said when it stops.
CANCEL_OUTCOME = {"put": ": rolled back", "get": ": nothing written", "verify": "", "delete": ""}


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
    s.jobs.wait_all()


def cmd_help(s: Session, a: Args) -> None:
    if a.positional:
        name = ALIASES.get(a.positional[0].lower(), a.positional[0].lower())
        if name not in COMMANDS:
            raise UsageError(f"unknown command {name!r}", "type `help` for the list of commands")
        c = COMMANDS[name]
        s.out.line(c.usage)
        s.out.line(f"  {c.summary}")
        return
    s.out.table(Table(["command", "what it does"], [[c.usage, c.summary] for c in COMMANDS.values()]))


def cmd_exit(s: Session, a: Args) -> None:
    raise ExitShell


COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("put", "put PATH", "store a file (runs in the background; prints its id at once)", cmd_put, 1, 1),
    Command("get", "get ID [DEST] [--force] [--salvage]",
            "restore a file to DEST (a file or directory; default: its name here); "
            "--force overwrites, --salvage zero-fills damaged parts", cmd_get, 1, 2,
            frozenset({"--force", "--salvage"})),
    Command("delete", "delete ID", "remove a file and its parts", cmd_delete, 1, 1),
    Command("list", "list", "show every file: id, name, size, parts, status, stored size", cmd_list),
    Command("info", "info ID", "show a file's parts: offset, size, stored size, codec, hash, status", cmd_info, 1, 1),
    Command("verify", "verify ID | --all", "check that a file's parts are intact, writing nothing", cmd_verify, 0, 1,
            frozenset({"--all"})),
    Command("jobs", "jobs", "show running operations with their progress", cmd_jobs),
    Command("wait", "wait", "wait until every running operation has finished", cmd_wait),
    Command("cancel", "cancel JOB | all", "stop a running operation (JOB as `jobs` shows): a put is rolled back, "
            "a get writes nothing; a delete always finishes", cmd_cancel, 1, 1),
    Command("help", "help [COMMAND]", "show the commands, or one command's usage", cmd_help, 0, 1),
    Command("exit", "exit", "wait for running operations, then leave (Ctrl-D does the same)", cmd_exit),
]}
ALIASES = {"quit": "exit", "ls": "list", "rm": "delete"}
