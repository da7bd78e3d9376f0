"""Trees by name: delete -r and the rename of a directory, each done on the
registry's records of a name and of every name under it."""

from __future__ import annotations

from dataclasses import replace

from pfs import names
from pfs.errors import NotFoundError, PfsError, UsageError, printable
from pfs.registry.records import DELETING, DIR, STORING, FileEntry
from pfs.store.trees import LOOKUP_BATCH, Progress, Report, TreeTally, _nothing


def records_under(store, root: str) -> list[FileEntry]:
    """Every record (whatever its status) of `root` and of the names under it."""
    listed = [root, *store.files.under(root + "/", recursive=True)[0]]
    found = []
    for i in range(0, len(listed), LOOKUP_BATCH):
        for entries in store.files.named_each(listed[i:i + LOOKUP_BATCH]).values():
            found.extend(entries)
    return found


def delete_tree(store, prefix: str, report: Report = _nothing, progress: Progress = _nothing) -> TreeTally:
    """Delete `prefix` and everything under it: every record, older versions
    and failed puts included; a file being stored or deleted is reported and left."""
    root = names.check(prefix.strip("/"))
    entries = records_under(store, root)
    if not entries:
        raise NotFoundError(f"nothing is stored under {prefix}", "`list` shows the top")
    tally = TreeTally()
    for entry in sorted(entries, key=lambda e: e.name, reverse=True):  # contents before their directory
        try:
            store.delete(entry.id, progress, seen=entry)  # by compare-and-swap: one moved or replaced meanwhile stays
            tally.count("stored", entry.size)
        except PfsError as exc:
            tally.count("failed")
            report(f"{printable(entry.name)} (file {entry.id}): {exc}")
    return tally


def rename_tree(store, old: str, new: str) -> int:
    """Rename the directory `old` to `new` with everything under it, in one
    atomic registry update, moving no data; refused if `new` holds anything, if
    anything under `old` is being stored or deleted, or if `new` is inside `old`.
    Returns how many records moved."""
    source, dest = names.check(old.strip("/")), names.check(new.strip("/"))
    if dest == source or dest.startswith(source + "/"):
        raise UsageError(f"cannot move {source} into itself ({dest})")
    entries = records_under(store, source)
    top = store.files.current(source)
    if not entries or (top is not None and top.kind != DIR and store.files.under(source + "/") == ([], [])):
        raise NotFoundError(f"no directory named {source}", "`list` shows the stored directories")
    if records_under(store, dest):
        raise UsageError(f"{dest} already exists", "mv OLD/ NEW/ renames a directory to a new name")
    busy = [e for e in entries if e.status in (STORING, DELETING)]
    if busy:
        raise UsageError(f"{busy[0].name} is {busy[0].status}", "wait for it to finish, then move the directory")
    moved = [replace(e, name=dest + e.name[len(source):], session=store.sessions.id) for e in entries]
    if not store.files.move_all(source, entries, moved):  # compare-and-swap: nothing changed there since read
        raise UsageError(f"{source}/ changed while it was being renamed (a put, delete or rename in it)",
                         "nothing was moved; `list` shows it now, and mv again renames it")
    return len(moved)
