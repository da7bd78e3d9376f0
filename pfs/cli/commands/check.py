"""The commands that check stored files, verify and heal, and the summary of a check of many."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pfs import failures
from pfs.cli.commands.syntax import Args, Command
from pfs.cli.jobs import Job
from pfs.errors import NotFoundError, ResourceError, UsageError, printable

if TYPE_CHECKING:
    from pfs.cli.commands.session import Session


@dataclass
class VerifyTally:
    """The outcome of one `verify --all`, summed as its jobs finish."""

    left: int
    skipped: int
    label: str = "verify --all"
    after: Callable[[], str] | None = None  # a last word, once every job has finished
    as_json: bool = False
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

    def give_up(self, count: int) -> bool:
        """`count` jobs will never run (none could be started); True if the rest have all finished."""
        with self.lock:
            self.counts["not started"] += count
            self.left -= count
            return self.left == 0

    def summary(self) -> str:
        c = self.counts
        healed = f"{c['healed']} healed, " if c["healed"] else ""
        line = (f"{self.label}: {c['verified']} {'intact' if 'heal' in self.label else 'verified'}, {healed}"
                f"{c['damaged']} damaged, " + (f"{c['unreachable']} unreachable, " if c["unreachable"] else "")
                + f"{self.skipped + c['skipped']} skipped")
        if c["not started"]:
            line += f", {c['not started']} not checked (no job could start)"
        return line + (f"; {self.after()}" if self.after else "")

    def report(self, out) -> None:
        """The summary, as its line or (--json) as a JSON object."""
        if not self.as_json:
            out.line(self.summary())
            return
        c = self.counts
        out.json({"event": "summary", "command": self.label, "verified": c["verified"], "healed": c["healed"],
                  "damaged": c["damaged"], "skipped": self.skipped + c["skipped"], "not_checked": c["not started"],
                  "after": self.after() if self.after else None})


@dataclass(frozen=True)
class Skipped:
    """A verify --all found the file no longer stored when its turn came."""

    reason: str


def cmd_verify(s: Session, a: Args) -> None:
    heal, as_json = "--heal" in a.flags, "--json" in a.flags
    if "--all" in a.flags:
        if a.positional:
            raise UsageError("verify: give an ID or --all, not both")
        label = "verify --all --heal" if heal else "verify --all"
        check_all(s, "verify", label, lambda i, job: s.store.verify(i, job.advance, job.cancelled, heal),
                  as_json=as_json)
    elif a.positional:
        file_id = s.resolve(a.positional[0]).id
        s.start_on_file("verify", file_id, lambda job: s.store.verify(file_id, job.advance, job.cancelled, heal),
                        as_json)
    else:
        raise UsageError("verify: missing arguments", "usage: verify ID | verify --all [--heal]")


def cmd_heal(s: Session, a: Args) -> None:
    """Only the files with pieces where they are not kept (a volume missing or
    draining), and those being stored now; old pieces left on a volume that is
    back are removed first."""
    as_json = "--json" in a.flags
    s.store.check_readable()
    s.store.finish_removals()
    concerned = set(s.store.files_to_heal()) | {e.id for e in s.store.files.unsettled() if e.status == "storing"}
    if not concerned:
        s.event(as_json, "heal: nothing to heal (every copy and shard is on a volume that keeps it)",
                event="summary", command="heal", verified=0, healed=0, damaged=0, skipped=0, not_checked=0,
                after=None)
        return
    check_all(s, "heal", "heal", lambda i, job: s.store.heal(i, job.advance, job.cancelled), concerned,
              as_json=as_json)


def check_all(s: Session, kind: str, label: str, work: Callable[[int, Job], object],
              only: set[int] | None = None, after: Callable[[], str] | None = None,
              waiting: frozenset[int] = frozenset(), as_json: bool = False) -> None:
    """Verify (or heal) every stored file (those in `only`, if given; and those
    being stored now, once they are: by another pfs too for those in `waiting`);
    say which are skipped and why, and end with a summary."""
    s.store.check_readable()  # a write-only pfs reads nothing: one line, not one per file
    entries = [e for e in s.store.list() if only is None or e.id in only]
    checked = [e for e in entries if e.status in ("stored", "storing")]
    for e in entries:
        if e.status not in ("stored", "storing"):
            s.event(as_json, f"[{e.id}] skipped {printable(e.name)}: {_not_stored(e)}",
                    event="skipped", id=e.id, name=e.name, reason=_not_stored(e))
    tally = VerifyTally(len(checked), len(entries) - len(checked), label, after, as_json=as_json)
    if not checked:
        if as_json:
            tally.report(s.out)
        else:
            s.out.line(f"{label}: nothing to {kind}, {len(entries)} skipped" + (f"; {after()}" if after else "")
                       if entries or after else "no files stored yet (put PATH stores one)")
        return
    for n, e in enumerate(checked):
        try:
            s.start_counted(tally, e, lambda job, i=e.id: _if_stored(s, i, job, work, i in waiting), kind)
        except ResourceError:  # one error for the command; the jobs started end with the summary
            if tally.give_up(len(checked) - n):
                tally.report(s.out)
            raise


def _not_stored(entry) -> str:
    return f"it is {entry.status}" + (f" ({entry.reason})" if entry.reason else "") + ", not stored"


def _if_stored(s: Session, file_id: int, job: Job, work: Callable[[int, Job], object], wait: bool = False) -> object:
    """Verify (or heal) a file unless an earlier job (a failed put, a delete) left
    it not stored; with `wait`, once its put (in any pfs) has ended."""
    if wait:
        s.store.wait_stored(file_id, job.cancelled)
    try:
        entry = s.store.entry(file_id)
    except NotFoundError:
        return Skipped("it was deleted")
    if entry.status != "stored":
        return Skipped(_not_stored(entry))
    return work(file_id, job)


COMMANDS = [
    Command("verify", "verify NAME|ID | --all [--heal] [--json]", "check every copy and shard of a file's parts, writing nothing; "
            "--heal rewrites damaged ones and restores missing ones (a scrub)", cmd_verify, 0, 1,
            frozenset({"--all", "--heal", "--json"})),
    Command("heal", "heal [--json]", "restore every file's copies and shards onto the volumes that keep them "
            "(after a volume was lost or drained); --json: each outcome and the summary as JSON",
            cmd_heal, flags=frozenset({"--json"})),
]
