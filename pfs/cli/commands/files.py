"""The commands on stored files: put, get, delete, list, mv and info."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfs.cli import interrupts
from pfs.cli.commands import tables
from pfs.cli.commands.syntax import Args, Command
from pfs.errors import NotFoundError, printable
from pfs.registry import bulk
from pfs.units import format_size

if TYPE_CHECKING:
    from pfs.cli.commands.session import Session


def cmd_put(s: Session, a: Args) -> None:
    source = a.positional[0]
    entry = s.store.begin_put(source, a.get(1))
    s.out.line(f"[{entry.id}] storing {printable(entry.name)} ({format_size(entry.size)}, "
               f"{entry.parts} part{'s' * (entry.parts != 1)})")
    keep = "--keep" in a.flags
    s.start("put", entry.id, entry.name, entry.size,
            lambda job: s.store.finish_put(entry, source, job.advance, job.cancelled, keep))


def cmd_get(s: Session, a: Args) -> None:
    entry, dest = a.file(s.store), a.get(1)
    file_id = entry.id
    s.out.line(f"[{file_id}] restoring {printable(entry.name)} ({format_size(entry.size)}, "
               f"{entry.parts} part{'s' * (entry.parts != 1)})")
    s.start_on_file("get", file_id, lambda job: s.store.get(file_id, dest, "--force" in a.flags,
                                                            "--salvage" in a.flags, job.advance, job.cancelled))


def cmd_delete(s: Session, a: Args) -> None:
    file_id = a.file(s.store).id
    s.start_on_file("delete", file_id, lambda job: s.store.delete(file_id, job.advance))


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
        s.out.table(tables.listing(s.store, names, dirs))


def cmd_mv(s: Session, a: Args) -> None:
    entry = s.store.rename(a.positional[0], a.positional[1], "--keep" in a.flags)
    s.out.line(f"[{entry.id}] renamed to {printable(entry.name)}")


def cmd_info(s: Session, a: Args) -> None:
    file_id = a.file(s.store).id
    with interrupts.breakable():
        s.jobs.wait_file(file_id)
    entry = s.store.entry(file_id)
    manifest = s.store.manifest(file_id)
    fields = tables.info_fields(s.store, entry, manifest)
    s.out.line("\n".join(printable(f"{label + ':':<12}{value}") for label, value in fields))
    if "--parts" not in a.flags:
        if manifest:
            s.out.line(f"(info {file_id} --parts lists the {entry.parts} part{'s' * (entry.parts != 1)})")
        return
    s.out.table(tables.parts_table(s.store, manifest))


COMMANDS = [
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
]
