"""The command table and the session that runs command lines against a store.

A command is one entry in COMMANDS: its name, its arguments, one line of help
and a handler. Handlers talk to the Store and hand plain data to the output;
errors are PfsErrors, reported as one `error:` line, and the session goes on.
"""

from __future__ import annotations

import errno
import logging
import shlex
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter

from pfs import failures
from pfs.cli import interrupts
from pfs.errors import Cancelled, IntegrityError, NotFoundError, PfsError, UsageError, describe, printable
from pfs.cli.jobs import Job, JobManager
from pfs.cli.output import PlainOutput, Table, show_progress
from pfs.volumes.redundancy import Layout
from pfs.registry import STORED, FileEntry, Manifest, bulk
from pfs.store.facade import Store
from pfs.units import format_rate, format_size

log = logging.getLogger("pfs")


#: Healed pieces named one by one in a heal line; the rest are counted.
HEALED_SHOWN = 3


class ExitShell(Exception):
    """Raised by `exit`: the loop stops reading commands."""


@dataclass(frozen=True)
class Args:
    """A command line split into positional arguments and --flags."""

    positional: list[str]
    flags: frozenset[str]
    values: dict[str, str] = field(default_factory=dict)  # options that take a value

    def file(self, store: Store, index: int = 0) -> FileEntry:
        """The file an argument names: an id (all digits) or a stored name."""
        return store.resolve(self.positional[index])

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
    options: frozenset[str] = frozenset()  # options followed by a value
    short: dict[str, str] = field(default_factory=dict)  # short flag -> its long form


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
    positional, flags, values, literal = [], set(), {}, False
    tokens = iter(rest)
    for token in tokens:
        if not literal and token in command.short:
            flags.add(command.short[token])
        elif literal or not token.startswith("--"):
            positional.append(token)
        elif token == "--":
            literal = True
        elif token in command.flags:
            flags.add(token)
        elif token in command.options:
            values[token] = next(tokens, None)
            if values[token] is None:
                raise UsageError(f"{command.name}: {token} needs a value", f"usage: {command.usage}")
        else:
            raise UsageError(f"{command.name}: unknown option {token!r}", f"usage: {command.usage}")
    if not command.min_args <= len(positional) <= command.max_args:
        few = len(positional) < command.min_args
        raise UsageError(f"{command.name}: {'missing' if few else 'too many'} arguments",
                         f"usage: {command.usage}")
    return command, Args(positional, frozenset(flags), values)


class Session:
    """Runs command lines against one open store; counts what failed."""

    def __init__(self, store: Store, out: PlainOutput) -> None:
        self.store = store
        self.out = out
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
                self.out.line(f"[{job.file_id}] waiting for {job.kind} of {printable(job.name)} to finish")
        self.jobs.wait_all()
        if self.out.lost == errno.EPIPE:
            return 141
        return 1 if self.failures or self.out.lost else 0

    def start(self, kind: str, file_id: int, name: str, size: int, work: Callable[[Job], object]) -> Job:
        """Start a background job; signals stay with the main thread (see interrupts)."""
        interrupts.start_resource_tracker()

        def run(job: Job) -> object:
            interrupts.main_thread_only()
            return work(job)
        return self.jobs.start(kind, file_id, name, size, run)

    def start_counted(self, tally: VerifyTally, entry, work: Callable[[Job], object], kind: str = "verify") -> None:
        """Start a verify (or heal) job that counts towards `tally`."""
        with self._lock:  # registered before the job can finish and look for it
            job = self.start(kind, entry.id, entry.name, entry.size, work)
            self.verify_tallies[job.id] = tally

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
            self.out.line(f"[{job.file_id}] {job.kind} of {name} cancelled{CANCEL_OUTCOME[job.kind]}")
            self._tally(job)
            return
        if job.error is not None:
            self._fail(job.error, context)
            if isinstance(job.error, IntegrityError):  # its line was the first cause; the others follow
                for line in failures.shown(failures.grouped(job.error.damage), job.error.damage, context)[1:]:
                    self.out.error(printable(f"{context}: {line}"))
            self._tally(job)
            return
        took = f"{job.elapsed:.1f} s, {format_rate(job.total, job.elapsed)}"
        if job.kind == "put":
            entry = job.result
            self.out.line(f"[{entry.id}] stored {name}: {format_size(entry.size)} in {entry.parts} "
                          f"part{'s' * (entry.parts != 1)}, {format_size(entry.stored)} on disk, {took}")
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
            self.out.line(tally.summary())


@dataclass
class VerifyTally:
    """The outcome of one `verify --all`, summed as its jobs finish."""

    left: int
    skipped: int
    label: str = "verify --all"
    after: Callable[[], str] | None = None  # a last word, once every job has finished
    counts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, job: Job) -> bool:
        """Count one finished verify; True when it was the last."""
        if isinstance(job.result, Skipped):
            outcome = "skipped"
        elif job.error is None:
            found = job.result
            outcome = "damaged" if failures.any_damage(found.damage, found.bad) else \
                "unreachable" if found.damage or found.bad else "healed" if found.healed else "verified"
        else:
            outcome = "damaged" if failures.any_damage(getattr(job.error, "damage", [None]), []) else "unreachable"
        with self.lock:
            self.counts[outcome] += 1
            self.left -= 1
            return self.left == 0

    def summary(self) -> str:
        c = self.counts
        healed = f"{c['healed']} healed, " if c["healed"] else ""
        line = (f"{self.label}: {c['verified']} {'intact' if 'heal' in self.label else 'verified'}, {healed}"
                f"{c['damaged']} damaged, " + (f"{c['unreachable']} unreachable, " if c["unreachable"] else "")
                + f"{self.skipped + c['skipped']} skipped")
        return line + (f"; {self.after()}" if self.after else "")


# -- handlers ------------------------------------------------------------------

def cmd_put(s: Session, a: Args) -> None:
    source = a.positional[0]
    entry = s.store.begin_put(source, a.get(1))
    s.out.line(f"[{entry.id}] storing {printable(entry.name)} ({format_size(entry.size)}, "
               f"{entry.parts} part{'s' * (entry.parts != 1)})")
    keep = "--keep" in a.flags
    s.start("put", entry.id, entry.name, entry.size,
            lambda job: s.store.finish_put(entry, source, job.advance, job.cancelled, keep))


def _file_job(s: Session, kind: str, file_id: int, work: Callable[[Job], object]) -> None:
    """Start a job on an existing file, after any job already running on it."""
    entry = s.store.entry(file_id)
    s.start(kind, file_id, entry.name, entry.size, work)


def cmd_get(s: Session, a: Args) -> None:
    entry, dest = a.file(s.store), a.get(1)
    file_id = entry.id
    s.out.line(f"[{file_id}] restoring {printable(entry.name)} ({format_size(entry.size)}, "
               f"{entry.parts} part{'s' * (entry.parts != 1)})")
    _file_job(s, "get", file_id, lambda job: s.store.get(file_id, dest, "--force" in a.flags,
                                                          "--salvage" in a.flags, job.advance, job.cancelled))


def cmd_delete(s: Session, a: Args) -> None:
    file_id = a.file(s.store).id
    _file_job(s, "delete", file_id, lambda job: s.store.delete(file_id, job.advance))


def cmd_verify(s: Session, a: Args) -> None:
    heal = "--heal" in a.flags
    if "--all" in a.flags:
        if a.positional:
            raise UsageError("verify: give an ID or --all, not both")
        label = "verify --all --heal" if heal else "verify --all"
        _check_all(s, "verify", label, lambda i, job: s.store.verify(i, job.advance, job.cancelled, heal))
    elif a.positional:
        file_id = a.file(s.store).id
        _file_job(s, "verify", file_id, lambda job: s.store.verify(file_id, job.advance, job.cancelled, heal))
    else:
        raise UsageError("verify: missing arguments", "usage: verify ID | verify --all [--heal]")


def cmd_heal(s: Session, a: Args) -> None:
    _check_all(s, "heal", "heal", lambda i, job: s.store.heal(i, job.advance, job.cancelled))


def _check_all(s: Session, kind: str, label: str, work: Callable[[int, Job], object],
               only: set[int] | None = None, after: Callable[[], str] | None = None) -> None:
    """Verify (or heal) every stored file (those in `only`, if given; and those
    being stored now, once they are); say which are skipped and why, and end
    with a summary."""
    entries = [e for e in s.store.list() if only is None or e.id in only]
    checked = [e for e in entries if e.status in ("stored", "storing")]
    for e in entries:
        if e.status not in ("stored", "storing"):
            s.out.line(f"[{e.id}] skipped {printable(e.name)}: {_not_stored(e)}")
    if not checked:
        s.out.line(f"{label}: nothing to {kind}, {len(entries)} skipped" + (f"; {after()}" if after else "")
                   if entries or after else "no files stored yet (put PATH stores one)")
        return
    tally = VerifyTally(len(checked), len(entries) - len(checked), label, after)
    for e in checked:
        s.start_counted(tally, e, lambda job, i=e.id: _if_stored(s, i, job, work), kind)


@dataclass(frozen=True)
class Skipped:
    """A verify --all found the file no longer stored when its turn came."""

    reason: str


def _not_stored(entry) -> str:
    return f"it is {entry.status}" + (f" ({entry.reason})" if entry.reason else "") + ", not stored"


def _if_stored(s: Session, file_id: int, job: Job, work: Callable[[int, Job], object]) -> object:
    """Verify (or heal) a file unless an earlier job (a failed put, a delete) left it not stored."""
    try:
        entry = s.store.entry(file_id)
    except NotFoundError:
        return Skipped("it was deleted")
    if entry.status != "stored":
        return Skipped(_not_stored(entry))
    return work(file_id, job)


def cmd_volume(s: Session, a: Args) -> None:
    """volume add PATH [--weight W] | list | drain ID | remove ID."""
    action, rest = a.positional[0].lower(), a.positional[1:]
    wanted = {"add": 1, "list": 0, "drain": 1, "remove": 1}
    if action not in wanted:
        raise UsageError(f"volume: unknown action {action!r}", f"usage: {COMMANDS['volume'].usage}")
    if len(rest) != wanted[action] or (a.values and action != "add"):
        raise UsageError(f"volume {action}: wrong arguments", f"usage: {COMMANDS['volume'].usage}")
    if action == "add":
        config = s.store.add_volume(rest[0], _weight(a.values.get("--weight", "1")), a.values.get("--endpoint", ""),
                                    "--create-bucket" in a.flags)
        s.out.line(printable(f"added volume {config.id}: {s.store.volset.location(config)}"))
    elif action == "list":
        _volume_list(s)
    elif action == "drain":
        vid = s.store.volume_id(rest[0])
        s.store.start_drain(vid)

        def after() -> str:
            left = s.store.files_on(vid)
            return f"volume {vid} still holds pieces of {len(left)} file(s): `volume drain {vid}` again" if left \
                else f"volume {vid} is drained: `volume remove {vid}` removes it"
        _check_all(s, "heal", f"volume drain {vid}", lambda i, job: s.store.heal(i, job.advance, job.cancelled),
                   set(s.store.files_on(vid)), after)
    else:
        vid = s.store.volume_id(rest[0])
        s.store.remove_volume(vid)
        s.out.line(f"removed volume {vid}")


def _weight(text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = 0.0
    if not 0 < weight < 1e9:
        raise UsageError(f"--weight {text}: not a positive number", "e.g. --weight 2 for a disk twice the size")
    return weight


def _volume_list(s: Session) -> None:
    def size(n: int | None) -> str:
        return "-" if n is None else format_size(n)
    rows = [[str(v.id), v.location, f"{v.weight:g}", size(v.used), size(v.free),
             "-" if v.parts is None else str(v.parts), v.status] for v in s.store.volume_report()]
    s.out.table(Table(["id", "location", "weight", "used", "free", "parts", "status"], rows,
                      frozenset({"id", "weight", "used", "free", "parts"})))


def cmd_list(s: Session, a: Args) -> None:
    """Like a directory listing: the files under PREFIX, each subdirectory as one
    row (all names below it with --recursive). Every record of a name is shown:
    the one the name resolves to (the last stored), older versions kept by
    `put --keep` and failed puts, each with its id."""
    prefix = a.get(0) or ""
    with bulk():  # 100,000 rows are plain data: no cycles for the collector to look for
        names, dirs = s.store.under(prefix, "--recursive" in a.flags)
        if not names and not dirs:
            if prefix.strip("/."):
                raise NotFoundError(f"nothing is stored under {prefix}", "`list` shows the top")
            s.out.line("no files stored yet (put PATH stores one)")
            return
        rows = [["-", d, "-", "-", "directory", "-", "-", "-"] for d in dirs]
        rows += _file_rows(s.store, s.store.files.named_each(names))
        rows.sort(key=itemgetter(1))
        s.out.table(Table(["id", "name", "size", "parts", "status", "stored", "present", "redundancy"], rows,
                          frozenset({"id", "size", "parts", "stored", "present"})))


def _file_rows(store: Store, records: dict[str, list[FileEntry]]) -> list[list[str]]:
    """A listing's row of each record of each name, in one plain loop: it runs
    100,000 times for a big store."""
    redundancy = store.redundancy_of([e for entries in records.values() for e in entries])
    # most files share one Redundancy (their layout, all present): its cells are made once
    cells = {key: [r.counts, str(r)] for key, r in {id(r): r for r in redundancy.values()}.items()}
    rows = []
    for entries in records.values():
        current = _resolved(entries)
        for e in entries:
            stored = e.status == STORED
            status = e.status + (f" ({e.reason})" if e.reason else "") + \
                (" (older version)" if stored and e is not current else "")
            rows.append([str(e.id), e.name, format_size(e.size), str(e.parts), status,
                         format_size(e.stored) if stored else "-", *cells[id(redundancy[e.id])]])
    return rows


def _resolved(entries: list[FileEntry]) -> FileEntry | None:
    """Of the records of one name, the one the name resolves to: the last stored."""
    for e in reversed(entries):
        if e.status == STORED:
            return e
    return None


def cmd_mv(s: Session, a: Args) -> None:
    entry = s.store.rename(a.positional[0], a.positional[1], "--keep" in a.flags)
    s.out.line(f"[{entry.id}] renamed to {printable(entry.name)}")


def cmd_info(s: Session, a: Args) -> None:
    file_id = a.file(s.store).id
    with interrupts.breakable():
        s.jobs.wait_file(file_id)
    entry = s.store.entry(file_id)
    manifest = s.store.manifest(file_id)
    status = entry.status + (f" ({entry.reason})" if entry.reason else "")
    parts = f"{entry.parts} of {format_size(entry.chunk_size)}"
    fields = [("name", entry.name), ("id", str(entry.id)), ("size", f"{format_size(entry.size)} ({entry.size:,} bytes)"),
              ("status", status), ("parts", parts)]
    if manifest:
        codecs = Counter(p.codec for p in manifest.parts)
        fields += [("stored", _stored(entry, manifest)),
                   ("codec", ", ".join(f"{c} ({n} part{'s' * (n != 1)})" for c, n in codecs.most_common()))]
    else:
        fields.append(("codec", f"{entry.codec} (chosen)"))
    redundancy = s.store.redundancy_of([entry])[entry.id]
    fields.append(("redundancy", str(redundancy)))
    if manifest:
        where = "on its worst part" if redundancy.short else "on every part"
        fields += [("present", f"{redundancy.counts} {where}"),
                   ("volumes", ", ".join(_pieces_on(s.store, vid, n)
                                         for vid, n in s.store.volumes_of(manifest).items()))]
    fields += [("hash", entry.hash), ("digest", entry.digest or "-"),
               ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created)))]
    s.out.line("\n".join(printable(f"{label + ':':<12}{value}") for label, value in fields))
    if "--parts" not in a.flags:
        if manifest:
            s.out.line(f"(info {file_id} --parts lists the {entry.parts} part{'s' * (entry.parts != 1)})")
        return
    rows = [[str(p.index), str(p.offset), str(p.size), str(p.stored), p.codec, p.hash, p.status, p.id,
             " ".join(s.store.piece_places(p))]
            for p in (manifest.parts if manifest else [])]
    s.out.table(Table(["part", "offset", "size", "stored", "codec", "hash", "status", "part id", "volumes"], rows,
                      frozenset({"part", "offset", "size", "stored"})))


def _stored(entry: FileEntry, manifest: Manifest) -> str:
    """A file's size once compressed and, with copies or shards, what they all take on the volumes."""
    share = f" ({entry.stored / entry.size:.1%} of its size)" if entry.size else ""
    layout = Layout.of(entry)
    if layout.width == 1:
        return f"{format_size(entry.stored)} on disk{share}"
    on_volumes = sum(sum(p.piece_sizes()) for p in manifest.parts)
    return f"{format_size(entry.stored)} compressed{share}, {format_size(on_volumes)} on disk with {layout.describe()}"


def _pieces_on(store: Store, vid: int, count: int) -> str:
    status = store.volset.status(vid, ask=False)  # asks no server: see VolumeSet.status
    return f"{vid}: {count} piece{'s' * (count != 1)}" + ("" if status == "online" else f" ({status})")


def cmd_jobs(s: Session, a: Args) -> None:
    rows = [[str(j.id), j.kind, str(j.file_id), j.name, f"{j.fraction:.0%}",
             format_rate(j.done, j.elapsed), f"{j.elapsed:.1f} s"] for j in s.jobs.running()]
    if not rows:
        s.out.line("no jobs running")
        return
    s.out.table(Table(["job", "kind", "file", "name", "done", "rate", "time"], rows,
                      frozenset({"job", "file", "done", "rate", "time"})))


#: What a cancelled job leaves behind, as said when it stops.
CANCEL_OUTCOME = {"put": ": rolled back", "get": ": nothing written", "verify": "", "heal": "", "delete": ""}


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


#: Help on what is not a command of the session.
TOPICS = {
    "names": ["A stored file has a name, a path inside the store such as logs/2026/app.log, and an id.",
              "  get, delete, info and verify take either: an argument made only of digits is an id;",
              "  ./123 or /123 is the file named 123. Names have no empty, `.` or `..` segments and no",
              "  control characters. A name resolves to the last file stored (or renamed) under it:",
              "  older versions kept by `put --keep`, and duplicate names in a store made before names",
              "  were paths, are reached by id (`list` shows them)."],
    "repair": ["pfs --store DIR repair   (from the system shell, with no pfs running on the store)",
               "  Rebuilds damaged metadata from what survives: the readable snapshot and journal lines,",
               "  the manifests, and the part files themselves. It prints a `repaired:` line for each thing",
               "  it fixed and a `lost:` line for each it could not save, moves what it cannot use to",
               "  STORE/lost+found (it deletes nothing), and exits 1 if anything was lost.",
               "  Run it when pfs says the store's metadata is damaged."],
}


def _aliases(name: str) -> str:
    others = [alias for alias, target in ALIASES.items() if target == name]
    return f" (also: {', '.join(others)})" if others else ""


def cmd_help(s: Session, a: Args) -> None:
    if a.positional:
        name = ALIASES.get(a.positional[0].lower(), a.positional[0].lower())
        if name in TOPICS:
            s.out.line("\n".join(TOPICS[name]))
            return
        if name not in COMMANDS:
            raise UsageError(f"unknown command {name!r}", "type `help` for the list of commands")
        c = COMMANDS[name]
        s.out.line(c.usage + _aliases(name))
        s.out.line(f"  {c.summary}")
        return
    rows = [[c.usage + _aliases(c.name), c.summary] for c in COMMANDS.values()]
    rows.append(["pfs --store DIR repair", "(from the system shell) rebuild damaged metadata; `help repair`"])
    s.out.table(Table(["command", "what it does"], rows))


def cmd_exit(s: Session, a: Args) -> None:
    raise ExitShell


COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("put", "put PATH [NAME] [--keep]",
            "store a file as NAME (a path like logs/app.log; default: its file name; NAME/ puts it inside); "
            "a file already named so is replaced once the new one is stored, --keep keeps it by id "
            "(runs in the background; prints the id at once)", cmd_put, 1, 2, frozenset({"--keep"})),
    Command("get", "get NAME|ID [DEST] [--force] [--salvage]",
            "restore a file to DEST (a file or directory; default: its name here); "
            "--force overwrites, --salvage zero-fills damaged parts", cmd_get, 1, 2,
            frozenset({"--force", "--salvage"})),
    Command("delete", "delete NAME|ID", "remove a file and its parts", cmd_delete, 1, 1),
    Command("list", "list [PREFIX] [-r|--recursive]",
            "show the files under PREFIX (default: the top), subdirectories as one row each (-r: all): "
            "id, name, size, parts, status, stored size, redundancy", cmd_list, 0, 1, frozenset({"--recursive"}),
            short={"-r": "--recursive"}),
    Command("mv", "mv OLD NEW [--keep]", "rename a file without moving its data; a file already named NEW "
            "is replaced (--keep keeps it by id)", cmd_mv, 2, 2, frozenset({"--keep"})),
    Command("info", "info NAME|ID [--parts]", "show a file's size, parts, stored size, codec, hash and digest; "
            "--parts lists every part", cmd_info, 1, 1, frozenset({"--parts"})),
    Command("verify", "verify NAME|ID | --all [--heal]", "check every copy and shard of a file's parts, writing nothing; "
            "--heal rewrites damaged ones and restores missing ones (a scrub)", cmd_verify, 0, 1,
            frozenset({"--all", "--heal"})),
    Command("heal", "heal", "restore every file's copies and shards onto the volumes that keep them "
            "(after a volume was lost or drained)", cmd_heal),
    Command("volume", "volume add DIR|s3://BUCKET/PREFIX [--weight W] [--endpoint URL] [--create-bucket] | list | "
            "drain ID | remove ID",
            "manage the volumes parts are kept on: add one, list them (used, free, parts, status), "
            "move everything off one, forget an empty one", cmd_volume, 1, 2,
            frozenset({"--create-bucket"}), frozenset({"--weight", "--endpoint"})),
    Command("jobs", "jobs", "show running operations with their progress", cmd_jobs),
    Command("wait", "wait", "wait until every running operation has finished", cmd_wait),
    Command("cancel", "cancel JOB | all", "stop a running operation (JOB as `jobs` shows): a put is rolled back, "
            "a get writes nothing; a delete always finishes", cmd_cancel, 1, 1),
    Command("help", "help [COMMAND]", "show the commands, or one command's usage (also: help names, help repair)",
            cmd_help, 0, 1),
    Command("exit", "exit", "wait for running operations, then leave (Ctrl-D does the same)", cmd_exit),
]}
ALIASES = {"quit": "exit", "ls": "list", "rm": "delete"}
