"""The commands on whole directory trees: put -r, get -r, delete -r, mv OLD/ NEW/
(reached through put, get, delete and mv) and sync. See pfs.store.trees."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pfs import names
from pfs.cli.commands.syntax import Args, Command
from pfs.cli.jobs import Job
from pfs.errors import printable
from pfs.store import restoring, sync, tree_names, trees

if TYPE_CHECKING:
    from pfs.cli.commands.session import Session


def tree_job(s: Session, kind: str, name: str, done: str, work: Callable[[Job, Callable[[str], None]], object]) -> None:
    """Run a tree operation as one job (one progress display); each failure is
    an `error:` line as it happens, and one summary line ends it (the job's result)."""
    def report(line: str) -> None:
        s.count_failure()
        s.out.error(f"{kind}: {line}")

    def run(job: Job) -> str:
        tally = work(job, report)
        return f"{kind} {printable(name)}: {tally.summary(done)}, {job.elapsed:.1f} s"
    s.start(kind, 0, name, 0, run)


def cmd_put_tree(s: Session, a: Args) -> None:
    source, prefix = a.positional[0], a.get(1)
    _, root = trees.tree_source(s.store, source, prefix)  # refused here, before the job starts
    s.out.line(f"storing {printable(source)} as {printable(root)}/")

    def work(job: Job, report: Callable[[str], None]) -> object:
        def found(nbytes: int) -> None:
            job.total += nbytes
        return trees.put_tree(s.store, source, prefix, job.advance, report, job.cancelled, found)
    tree_job(s, "put -r", source, "stored", work)


def cmd_sync(s: Session, a: Args) -> None:
    source, prefix = a.positional
    _, root = trees.tree_source(s.store, source, prefix)
    dry = "--dry-run" in a.flags
    s.out.line(f"{'checking' if dry else 'syncing'} {printable(source)} with {printable(root)}/")

    def work(job: Job, report: Callable[[str], None]) -> object:
        def found(nbytes: int) -> None:
            job.total += nbytes
        return sync.sync_tree(s.store, source, prefix, "--delete" in a.flags, dry, "--checksum" in a.flags,
                              job.advance, report, job.cancelled, found, s.out.line)
    tree_job(s, "sync", source, "would be stored" if dry else "stored", work)


def cmd_get_tree(s: Session, a: Args) -> None:
    prefix, dest, force = a.positional[0], a.get(1), "--force" in a.flags
    s.out.line(f"restoring {printable(prefix)}")
    tree_job(s, "get -r", prefix, "restored",
             lambda job, report: restoring.get_tree(s.store, prefix, dest, force, job.advance, report, job.cancelled))


def cmd_delete_tree(s: Session, a: Args) -> None:
    prefix = a.positional[0]
    tree_job(s, "delete -r", prefix, "deleted",
             lambda job, report: tree_names.delete_tree(s.store, prefix, report, job.advance))


def is_directory_move(s: Session, old: str, new: str) -> bool:
    """Whether `mv OLD NEW` renames a directory: OLD ends in `/`, or is no file but
    holds names (`mv FILE DIR/` moves a file into DIR instead, as put FILE DIR/ does)."""
    if old.endswith("/"):
        return True
    name = names.check(old)
    return s.store.files.current(name) is None and s.store.files.under(name + "/") != ([], [])


def cmd_mv_tree(s: Session, a: Args) -> None:
    old, new = a.positional
    moved = tree_names.rename_tree(s.store, old, new)
    s.out.line(printable(f"renamed {old.strip('/')}/ to {new.strip('/')}/ ({moved} entr{'y' if moved == 1 else 'ies'})"))


#: What a cancelled tree job leaves behind, as said when it stops.
CANCEL_OUTCOME = {"put -r": ": the files stored so far stay stored", "get -r": ": the files restored so far stay",
                  "delete -r": ": the files deleted so far are gone",
                  "sync": ": what was stored so far stays; run it again to finish"}

COMMANDS = [
    Command("sync", "sync DIR PREFIX [--delete] [--dry-run] [--checksum]",
            "store what is new or changed under DIR as PREFIX/... (size or mtime differ; --checksum: content), "
            "--delete removes stored names DIR no longer has, --dry-run only says what it would do; "
            "run it again to finish one interrupted", cmd_sync, 2, 2,
            frozenset({"--delete", "--dry-run", "--checksum"})),
]
