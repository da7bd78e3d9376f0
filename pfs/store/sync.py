"""sync DIR PREFIX: store only what is new or changed under DIR, as rsync's
quick check decides (size and mtime differ; with `checksum`, the content's
digest), and with `delete` remove the stored names under PREFIX that DIR no
longer has. An unchanged tree costs the walk's directory entries and stats and
the registry's records: no file is read (without `checksum`). Interrupted (Ctrl-C,
a crash, a full disk), it is finished by running it again: what was stored
before the interruption is unchanged then, what was not is stored.
"""

from __future__ import annotations

import stat
import threading
from collections.abc import Callable

from pfs import codec
from pfs.errors import PfsError, printable
from pfs.registry.records import FILE, STORED, SYMLINK, FileEntry
from pfs.store.tree_names import records_under
from pfs.store.trees import (LOOKUP_BATCH, Found, Progress, Report, TreeTally, _link_target, _nothing, put_tree,
                             tree_source)

Say = Callable[[str], None]


def same_file(entry: FileEntry, found: Found, checksum: bool) -> bool:
    """Whether a stored file is what the walk found: size and mtime (the quick
    check), mode and owner; with `checksum` also its digest (read and hashed here)."""
    st = found.st
    if entry.size != st.st_size or entry.mtime != st.st_mtime_ns or entry.mode != stat.S_IMODE(st.st_mode) & 0o777 \
            or (entry.uid, entry.gid) != (st.st_uid, st.st_gid):
        return False
    return not checksum or _digest(found.path, entry) == entry.digest


def _digest(path: str, entry: FileEntry) -> str:
    """The digest pfs would record for the file at `path`, parted as `entry` is."""
    hashes = []
    with open(path, "rb") as f:
        while chunk := f.read(entry.chunk_size):
            hashes.append(codec.digest(entry.hash, chunk))
    return codec.file_digest(hashes)


def _same_entry(entry: FileEntry, found: Found, kind: str) -> bool:
    """Whether a stored directory or symlink is what the walk found."""
    st = found.st
    same = entry.kind == kind and entry.mtime == st.st_mtime_ns and (entry.uid, entry.gid) == (st.st_uid, st.st_gid)
    if kind == SYMLINK:
        return same and entry.target == _link_target(found.path)
    return same and entry.mode == stat.S_IMODE(st.st_mode) & 0o777


class StoredUnder:
    """The current records of the directories on the walk's path, each read
    whole when the walk first asks about a name in it (two registry calls per
    directory, not one per entry; one query each on PostgreSQL). Memory is
    bounded as the walk's: a directory's records go once the walk has left it."""

    def __init__(self, store) -> None:
        self.store = store
        self.held: dict[str, dict[str, FileEntry]] = {}  # directory -> its names' current records

    def current(self, name: str) -> FileEntry | None:
        parent = name.rpartition("/")[0]
        children = self.held.get(parent)
        if children is None:
            self.held = {d: c for d, c in self.held.items() if parent.startswith(d + "/")}  # left behind: dropped
            children = self.held[parent] = self._read(parent)
        return children.get(name)

    def _read(self, directory: str) -> dict[str, FileEntry]:
        listed = self.store.files.under(directory + "/")[0]
        found = {}
        for i in range(0, len(listed), LOOKUP_BATCH):
            for name, entries in self.store.files.named_each(listed[i:i + LOOKUP_BATCH]).items():
                current = next((e for e in reversed(entries) if e.status == STORED), None)
                if current is not None:
                    found[name] = current
        return found


def sync_tree(store, source: str, prefix: str, delete: bool = False, dry_run: bool = False, checksum: bool = False,
              progress: Progress = _nothing, report: Report = _nothing, cancel: threading.Event | None = None,
              total: Callable[[int], None] = _nothing, say: Say = _nothing) -> TreeTally:
    """Make PREFIX hold what `source` holds, storing only what differs (see the
    module's docstring). `dry_run` says (through `say`) what it would store and
    delete, and changes nothing."""
    _, root = tree_source(store, source, prefix)
    tally = TreeTally()
    seen: set[str] = set()
    stored = StoredUnder(store)

    def wanted(found: Found, name: str, kind: str) -> bool | None:
        seen.add(name)
        current = store.files.current(name) if name == root else stored.current(name)
        if current is not None and (same_file(current, found, checksum) if kind == FILE
                                    else _same_entry(current, found, kind)):
            return False
        if dry_run:
            say(f"would store {printable(name)}")
            tally.count("stored", found.st.st_size if kind == FILE else 0)
            return None
        return True

    put_tree(store, source, prefix, progress, report, cancel, total, wanted, tally)
    if delete and (cancel is None or not cancel.is_set()):
        _delete_gone(store, root, seen, dry_run, report, say, tally)
    return tally


def _delete_gone(store, root: str, seen: set[str], dry_run: bool, report: Report, say: Say, tally: TreeTally) -> None:
    """Delete the stored names under `root`/ that the walk did not see, deepest first."""
    gone = [e for e in records_under(store, root) if e.name != root and e.name not in seen]
    for entry in sorted(gone, key=lambda e: e.name, reverse=True):
        if dry_run:
            say(f"would delete {printable(entry.name)}")
            continue
        try:
            store.delete(entry.id)
            say(f"deleted {printable(entry.name)}")
        except PfsError as exc:  # that one is reported; the rest goes on
            tally.count("failed")
            report(f"{printable(entry.name)}: {exc}")

