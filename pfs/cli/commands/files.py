"""The commands on stored files: put, get, delete, list, mv and info."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfs import names
from pfs.cli import interrupts
from pfs.cli.commands import records, streams, tables, trees
from pfs.cli.commands.syntax import Args, Command
from pfs.errors import NotFoundError, UsageError, printable
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
    if source == streams.STDIO:
        streams.put_stdin(s, a)
        return
    entry, as_json = s.store.begin_put(source, a.get(1)), "--json" in a.flags
    s.event(as_json, f"[{entry.id}] storing {printable(entry.name)} ({format_size(entry.size)}, "
            f"{entry.parts} part{'s' * (entry.parts != 1)})",
            event="storing", id=entry.id, name=entry.name, size=entry.size, parts=entry.parts)
    keep = "--keep" in a.flags
    s.start("put", entry.id, entry.name, entry.size,
            lambda job: s.store.finish_put(entry, source, job.advance, job.cancelled, keep), as_json)


def cmd_get(s: Session, a: Args) -> None:
    if "--recursive" in a.flags:
        trees.cmd_get_tree(s, a)
        return
    entry, dest = s.resolve(a.positional[0]), a.get(1)
    if entry.kind != FILE:
        s.store.stored_entry(entry.id)  # refused now, saying to use get -r
    as_json = "--json" in a.flags
    if dest == streams.STDIO:
        if a.flags:
            raise UsageError(f"get: {' '.join(sorted(a.flags))} writes a file; standard output takes no option",
                             "damage stops `get NAME -` with an error")
        streams.cat(s, entry)
        return
    file_id = entry.id
    s.event(as_json, f"[{file_id}] restoring {printable(entry.name)} ({format_size(entry.size)}, "
            f"{entry.parts} part{'s' * (entry.parts != 1)})",
            event="restoring", id=file_id, name=entry.name, size=entry.size, parts=entry.parts)
    s.start_on_file("get", file_id, lambda job: s.store.get(file_id, dest, "--force" in a.flags,
                                                            "--salvage" in a.flags, job.advance, job.cancelled),
                    as_json)


def cmd_delete(s: Session, a: Args) -> None:
    if "--recursive" in a.flags:
        trees.cmd_delete_tree(s, a)
        return
    entry, by_name = s.resolve(a.positional[0]), not is_id(a.positional[0])

    def delete(job):
        """By name, only the file the name gave: as it is once the command it waited
        for (its put) is done, unless it was renamed away meanwhile (then refused)."""
        now = s.store.entry(entry.id) if by_name else None
        seen = None if now is None else now if now.name == entry.name else entry
        return s.store.delete(entry.id, job.advance, seen)
    s.start_on_file("delete", entry.id, delete)


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
            if "--json" in a.flags:
                s.out.json([])
            else:
                s.out.line("no files stored yet (put PATH stores one)")
            return
        if "--json" in a.flags:
            s.out.json(tables.listing_records(s.store, names, dirs))
        else:
            s.out.table(tables.listing(s.store, names, dirs))


def cmd_mv(s: Session, a: Args) -> None:
    if trees.is_directory_move(s, *a.positional):
        trees.cmd_mv_tree(s, a)
        return
    old, new = a.positional
    if new.endswith("/"):  # into a directory, keeping its file name, as put NAME/ does
        new = names.target(new, s.store.resolve(old).name.rpartition("/")[2])
    entry = s.store.rename(old, new, "--keep" in a.flags)
    s.out.line(f"[{entry.id}] renamed to {printable(entry.name)}")


def cmd_info(s: Session, a: Args) -> None:
    file_id = s.resolve(a.positional[0]).id
    with interrupts.breakable():
        s.jobs.wait_file(file_id)
    entry = s.store.entry(file_id)
    manifest = s.store.manifest(file_id)
    if "--json" in a.flags:
        s.out.json(records.info_record(s.store, entry, manifest, "--parts" in a.flags))
        return
    fields = tables.info_fields(s.store, entry, manifest)
    s.out.line("\n".join(printable(f"{label + ':':<12}{value}") for label, value in fields))
    if "--parts" not in a.flags:
        if manifest:
            s.out.line(f"(info {file_id} --parts lists the {entry.parts} part{'s' * (entry.parts != 1)})")
        return
    s.out.table(tables.parts_table(s.store, manifest))


COMMANDS = [
    Command("put", "put PATH|- [NAME] [--keep] [--json] | put -r DIR [PREFIX]",
            "store a file as NAME (a path like logs/app.log; default: its file name; NAME/ puts it inside); "
            "a file already named so is replaced once the new one is stored, --keep keeps it by id "
            "(runs in the background; prints the id at once); `pfs put - NAME` stores standard input; "
            "-r stores a whole directory as PREFIX/... (default: its name): files, directories, symlinks, "
            "modes, mtimes, owners",
            cmd_put, 1, 2, frozenset({"--keep", "--json", "--recursive"}), short={"-r": "--recursive"}),
    Command("get", "get NAME|ID [DEST|-] [--force] [--salvage] [--json] | get -r PREFIX [DEST] [--force]",
            "restore a file to DEST (a file or directory; default: its name here; - is standard output); "
            "--force overwrites, --salvage zero-fills damaged parts; -r restores the tree under PREFIX "
            "into DEST (default: its last segment here)", cmd_get, 1, 2,
            frozenset({"--force", "--salvage", "--json", "--recursive"}), short={"-r": "--recursive"}),
    Command("delete", "delete NAME|ID | delete -r PREFIX", "remove a file and its parts; -r removes PREFIX "
            "and everything under it", cmd_delete, 1, 1, frozenset({"--recursive"}), short={"-r": "--recursive"}),
    Command("list", "list [PREFIX] [-r|--recursive] [--json]",
            "show the files under PREFIX (default: the top), subdirectories as one row each (-r: all): "
            "id, name, size, parts, status, stored size, redundancy", cmd_list, 0, 1, frozenset({"--recursive", "--json"}),
            short={"-r": "--recursive"}),
    Command("mv", "mv OLD NEW [--keep] | mv OLD/ NEW/", "rename a file without moving its data (NEW/ moves it "
            "into NEW, keeping its file name); a file already named NEW is replaced (--keep keeps it by id); "
            "OLD/ NEW/ renames a directory and everything under it at once", cmd_mv, 2, 2, frozenset({"--keep"})),
    Command("info", "info NAME|ID [--parts] [--json]", "show a file's size, parts, stored size, codec, hash and "
            "digest; --parts lists every part", cmd_info, 1, 1, frozenset({"--parts", "--json"})),
]
