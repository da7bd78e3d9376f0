"""The commands on stored files: put, get, delete, list, mv and info."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfs.cli import interrupts
from pfs.cli.commands import tables, trees
from pfs.cli.commands.syntax import Args, Command
from pfs.errors import NotFoundError, printable
from pfs.names import is_id
from pfs.registry import FILE, bulk
from pfs.units import format_size

if TYPE_CHECKING:
    from pfs.cli.commands.session import Session


def cmd_put(s: Session, a: Args) -> None:
    if "--recursive" in a.flags:
        trees.cmd_put_tree(s, a)
        return
    source = a.positional[0]
    entry = s.store.begin_put(source, a.get(1))
    s.out.line(f"[{entry.id}] storing {printable(entry.name)} ({format_size(entry.size)}, "
               f"{entry.parts} part{'s' * (entry.parts != 1)})")
    keep = "--keep" in a.flags
    s.start("put", entry.id, entry.name, entry.size,
            lambda job: s.store.finish_put(entry, source, job.advance, job.cancelled, keep))


def cmd_get(s: Session, a: Args) -> None:
    if "--recursive" in a.flags:
        trees.cmd_get_tree(s, a)
        return
    entry, dest = a.file(s.store), a.get(1)
    if entry.kind != FILE:
        s.store.stored_entry(entry.id)  # refused now, saying to use get -r
    file_id = entry.id
    s.out.line(f"[{file_id}] restoring {printable(entry.name)} ({format_size(entry.size)}, "
               f"{entry.parts} part{'s' * (entry.parts != 1)})")
    s.start_on_file("get", file_id, lambda job: s.store.get(file_id, dest, "--force" in a.flags,
                                                            "--salvage" in a.flags, job.advance, job.cancelled))


def cmd_delete(s: Session, a: Args) -> None:
    if "--recursive" in a.flags:
        trees.cmd_delete_tree(s, a)
        return
    entry = a.file(s.store)
    seen = None if is_id(a.positional[0]) else entry  # a name: only what it gave now is deleted
    s.start_on_file("delete", entry.id, lambda job: s.store.delete(entry.id, job.advance, seen))


def cmd_list(s: Session, a: Args) -> None:
    """Like a directory listing: the files under PREFIX, each subdirectory as one
    row (all names below it with --recursive). Every record of a name is shown:
    the one the name resolves to (the last stored), older versions kept by
    `put --keep` and failed puts, each with its id. A directory recorded (by
    put -r) shows as one, a symlink with its target; a name that is both a file
    and a directory (a store made before that was refused) is marked so."""
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
    if trees.is_directory_move(s, *a.positional):
        trees.cmd_mv_tree(s, a)
        return
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
    Command("put", "put PATH [NAME] [--keep] | put -r DIR [PREFIX]",
            "store a file as NAME (a path like logs/app.log; default: its file name; NAME/ puts it inside); "
            "a file already named so is replaced once the new one is stored, --keep keeps it by id "
            "(runs in the background; prints the id at once); -r stores a whole directory as PREFIX/... "
            "(default: its name): files, directories, symlinks, modes, mtimes, owners",
            cmd_put, 1, 2, frozenset({"--keep", "--recursive"}), short={"-r": "--recursive"}),
    Command("get", "get NAME|ID [DEST] [--force] [--salvage] | get -r PREFIX [DEST] [--force]",
            "restore a file to DEST (a file or directory; default: its name here); "
            "--force overwrites, --salvage zero-fills damaged parts; -r restores the tree under PREFIX "
            "into DEST (default: its last segment here)", cmd_get, 1, 2,
            frozenset({"--force", "--salvage", "--recursive"}), short={"-r": "--recursive"}),
    Command("delete", "delete NAME|ID | delete -r PREFIX", "remove a file and its parts; -r removes PREFIX "
            "and everything under it", cmd_delete, 1, 1, frozenset({"--recursive"}), short={"-r": "--recursive"}),
    Command("list", "list [PREFIX] [-r|--recursive]",
            "show the files under PREFIX (default: the top), subdirectories as one row each (-r: all): "
            "id, name, size, parts, status, stored size, redundancy", cmd_list, 0, 1, frozenset({"--recursive"}),
            short={"-r": "--recursive"}),
    Command("mv", "mv OLD NEW [--keep] | mv OLD/ NEW/", "rename a file without moving its data; a file already "
            "named NEW is replaced (--keep keeps it by id); OLD/ NEW/ renames a directory and everything under "
            "it at once", cmd_mv, 2, 2, frozenset({"--keep"})),
    Command("info", "info NAME|ID [--parts]", "show a file's size, parts, stored size, codec, hash and digest; "
            "--parts lists every part", cmd_info, 1, 1, frozenset({"--parts"})),
]
