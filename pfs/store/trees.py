"""Whole directory trees: put -r (walk a directory and store every entry),
get -r (rebuild one), delete -r and the rename of a directory.

A tree is stored as one record per entry under PREFIX/relative/path: regular
files through the store's put pipeline, directories and symlinks as records of
their own (see FileEntry.kind), each with its mode, mtime, uid and gid. The walk
streams: it holds the entries of the directories on its path, never a list of
the tree. FIFOs, sockets and devices are skipped and counted; names pfs cannot
store (not UTF-8, too long) are reported and skipped; one file that fails (it
changed while stored, it cannot be read) is reported and the tree goes on.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from pfs import names
from pfs.store import batch, special
from pfs.errors import DestinationError, NotFoundError, PfsError, UsageError, printable
from pfs.registry.records import DIR, FILE, HARDLINKS, STORED, SYMLINK, FileEntry

Report = Callable[[str], None]
Progress = Callable[[int], None]

#: Files stored or restored at once: enough to keep the workers busy on small files.
IN_FLIGHT = 8
#: Names looked up in the registry at once while restoring.
LOOKUP_BATCH = 512
_SKIPPED_KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "device", stat.S_IFBLK: "device"}


def _nothing(_: object) -> None:
    pass


@dataclass
class TreeTally:
    """What a tree operation did, for its one summary line."""

    stored: int = 0
    unchanged: int = 0
    failed: int = 0
    bytes: int = 0
    skipped: Counter = field(default_factory=Counter)  # why -> how many
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, what: str, nbytes: int = 0) -> None:
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)
            self.bytes += nbytes

    def skip(self, why: str) -> None:
        with self.lock:
            self.skipped[why] += 1

    def summary(self, done: str) -> str:
        """e.g. `12 stored (1.2 MiB), 0 unchanged, 2 skipped (1 FIFO, 1 socket), 0 failed`."""
        from pfs.units import format_size

        skipped = sum(self.skipped.values())
        why = f" ({', '.join(f'{n} {k}' for k, n in sorted(self.skipped.items()))})" if skipped else ""
        return (f"{self.stored} {done} ({format_size(self.bytes)}), {self.unchanged} unchanged, "
                f"{skipped} skipped{why}, {self.failed} failed")


@dataclass(frozen=True)
class Found:
    """One entry of a walked tree: its path, its path relative to the top, and its lstat."""

    path: str
    relative: str
    st: os.stat_result


def walk(top: Path, skip: Callable[[os.stat_result], bool] = lambda st: False) -> Iterator[Found]:
    """Every entry under `top` (not `top` itself), depth first, a directory
    before its contents, siblings sorted; symlinks are entries, never followed.
    Holds only the entries of the directories on the current path. Directories
    for which `skip` is true are yielded but not entered. A directory that
    cannot be listed raises OSError from the iteration (with its path)."""
    stack: list[tuple[str, str, Iterator[os.DirEntry]]] = [(str(top), "", _entries(str(top)))]
    while stack:
        path, relative, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        rel = f"{relative}/{entry.name}" if relative else entry.name
        found = Found(entry.path, rel, entry.stat(follow_symlinks=False))
        yield found
        if stat.S_ISDIR(found.st.st_mode) and not skip(found.st):
            stack.append((found.path, rel, _entries(found.path)))


def _entries(path: str) -> Iterator[os.DirEntry]:
    with os.scandir(path) as it:
        listed = sorted(it, key=lambda e: e.name)
    return iter(listed)


def entry_record(store, name: str, kind: str, st: os.stat_result, target: str = "") -> FileEntry:
    """A directory or symlink record of `name` with the metadata of `st`."""
    settings = store.settings
    return FileEntry(id=0, name=name, size=0, status=STORED, parts=0, chunk_size=settings.chunk_size,
                     codec=settings.codec, hash=settings.hash, uuid=uuid.uuid4().hex, created=time.time(),
                     mode=stat.S_IMODE(st.st_mode) & 0o777, mtime=st.st_mtime_ns, kind=kind, target=target,
                     uid=st.st_uid, gid=st.st_gid, copies=store.layout.copies, ec=store.settings.ec)


def record_entry(store, name: str, kind: str, st: os.stat_result, target: str = "") -> bool:
    """Record a directory or symlink (see entry_record) as what `name` holds;
    False if it was recorded so already. A symlink over a file takes its name
    (the file is deleted once it is recorded); a directory over a file is
    refused (NameConflictError), as mkdir over a file is."""
    new = entry_record(store, name, kind, st, target)
    current = store.files.current(name)
    if current is not None and current.kind == kind:
        same = replace(new, id=current.id, uuid=current.uuid, created=current.created, copies=current.copies,
                       ec=current.ec, chunk_size=current.chunk_size, codec=current.codec, hash=current.hash)
        if same == current:
            return False
        store.files.save(same)
        return True
    added = store.files.add(replace(new, replaces=current.id if current is not None else 0))
    store.drop_replaced(added)
    return True


def _kind_of(st: os.stat_result) -> str:
    return DIR if stat.S_ISDIR(st.st_mode) else SYMLINK if stat.S_ISLNK(st.st_mode) else FILE


def _link_target(path: str) -> str:
    """A symlink's target as text; UsageError if it is not UTF-8 (no registry holds that)."""
    target = os.readlink(path)
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("its target is not UTF-8 text") from None
    return target


def tree_source(store, source: str, prefix: str | None = None) -> tuple[Path, str]:
    """The directory a put -r stores and the name it is stored under (PREFIX, default
    its own name), refused before anything is stored if either will not do."""
    top = Path(source).expanduser()
    try:
        st = os.stat(top)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise NotFoundError(f"{source} does not exist") from None
        raise UsageError(f"{source} cannot be read ({exc.strerror})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{source} is not a directory", "put stores one file")
    if store.inside_store(top):
        raise UsageError(f"{source} is inside the store {store.root}", "pfs does not store its own files")
    return top, names.check(prefix.rstrip("/") if prefix and prefix.strip("/")
                            else os.path.basename(os.path.abspath(top)))


#: What sync asks of each entry the walk finds (see put_tree): store it (True),
#: leave it as stored (False), or nothing more (None: it counted it itself).
Wanted = Callable[[Found, str, str], "bool | None"]


def put_tree(store, source: str, prefix: str | None = None, progress: Progress = _nothing,
             report: Report = _nothing, cancel: threading.Event | None = None,
             total: Callable[[int], None] = _nothing, wanted: Wanted | None = None,
             tally: TreeTally | None = None) -> TreeTally:
    """Store the directory `source` as PREFIX/relative/path (see tree_source).
    Each failure is one report() line naming its path; the rest goes on.
    `total` is told the bytes of each regular file the walk finds. `wanted`
    (sync's quick check) is asked of each entry, with its name and kind, first."""
    top, root = tree_source(store, source, prefix)
    st = os.stat(top)
    tally = tally if tally is not None else TreeTally()
    store_dir = store.root_identity()
    if (True if wanted is None else wanted(Found(str(top), "", st), root, DIR)) is True:
        record_entry(store, root, DIR, st) and tally.count("stored")
    with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="pfs-tree") as pool:
        slots = threading.BoundedSemaphore(2 * IN_FLIGHT)
        refused: list[str] = []  # directories not stored: nothing under them is

        def put_file(found: Found, name: str) -> None:
            try:
                entry = store.begin_put(found.path, name)
                store.finish_put(entry, found.path, progress, cancel)
                tally.count("stored", entry.size)
            except PfsError as exc:
                tally.count("failed")
                report(f"{printable(found.path)}: {exc}")
            finally:
                slots.release()

        def put_batch(items: list[tuple[str, str]]) -> None:
            try:
                outcomes = batch.store_batch(store, items, progress, cancel)
            except PfsError as exc:
                outcomes = [exc] * len(items)
            finally:
                slots.release()
            for (path, _), outcome in zip(items, outcomes):
                if isinstance(outcome, PfsError):
                    tally.count("failed")
                    report(f"{printable(path)}: {outcome}")
                else:
                    tally.count("stored", outcome.size)

        small: list[tuple[str, str]] = []
        small_bytes = 0

        def send_small() -> None:
            nonlocal small, small_bytes
            if small:
                slots.acquire()
                pool.submit(put_batch, small)
            small, small_bytes = [], 0

        for found in walk(top, lambda s: (s.st_dev, s.st_ino) == store_dir):
            if cancel is not None and cancel.is_set():
                break
            if any(found.relative.startswith(r + "/") for r in refused):
                continue
            kind = stat.S_IFMT(found.st.st_mode)
            if kind in _SKIPPED_KINDS:
                tally.skip(_SKIPPED_KINDS[kind])
                continue
            if (found.st.st_dev, found.st.st_ino) == store_dir:
                tally.skip("the store itself")
                continue
            try:
                name = f"{root}/{found.relative}"
                if names.problem(name):
                    raise UsageError(f"not stored: {names.problem(name)}")
                verdict = True if wanted is None else wanted(found, name, _kind_of(found.st))
                if verdict is not True:
                    if verdict is False:
                        tally.count("unchanged")
                    continue
                if stat.S_ISDIR(found.st.st_mode):
                    tally.count("stored" if record_entry(store, name, DIR, found.st) else "unchanged")
                elif stat.S_ISLNK(found.st.st_mode):
                    recorded = record_entry(store, name, SYMLINK, found.st, _link_target(found.path))
                    tally.count("stored" if recorded else "unchanged")
                elif found.st.st_size <= store.settings.chunk_size:  # small: stored in a batch
                    total(found.st.st_size)
                    small.append((found.path, name))
                    small_bytes += found.st.st_size
                    if len(small) >= batch.BATCH_FILES or small_bytes >= batch.BATCH_BYTES:
                        send_small()
                else:
                    total(found.st.st_size)
                    slots.acquire()
                    pool.submit(put_file, found, name)
            except (PfsError, OSError) as exc:
                if stat.S_ISDIR(found.st.st_mode):
                    refused.append(found.relative)
                tally.count("failed")
                why = exc.strerror if isinstance(exc, OSError) else str(exc)
                report(f"{printable(found.path)}: {why}" + (" (nothing under it was stored)"
                                                             if stat.S_ISDIR(found.st.st_mode) else ""))
        send_small()
    return tally


# -- get -r ---------------------------------------------------------------------------

def tree_records(store, root: str) -> Iterator[FileEntry]:
    """The current record of every name under `root`/, in name order (parents first)."""
    listed = store.files.under(root + "/", recursive=True)[0] if root else store.files.under("", True)[0]
    for i in range(0, len(listed), LOOKUP_BATCH):
        for entries in store.files.named_each(listed[i:i + LOOKUP_BATCH]).values():
            current = next((e for e in reversed(entries) if e.status == STORED), None)
            if current is not None:
                yield current


def _restore_meta(path: Path, entry: FileEntry, owner: bool) -> None:
    """Owner (as root), permission bits and mtime of a restored entry; a symlink's own."""
    link = entry.kind == SYMLINK
    if owner and entry.uid is not None:
        os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
    if entry.mode is not None and not link:
        os.chmod(path, entry.mode)
    if entry.mtime is not None:
        os.utime(path, ns=(time.time_ns(), entry.mtime), follow_symlinks=False)


def get_tree(store, prefix: str, dest: str | None = None, force: bool = False, progress: Progress = _nothing,
             report: Report = _nothing, cancel: threading.Event | None = None) -> TreeTally:
    """Rebuild the tree stored under `prefix` at `dest` (default: its last
    segment here): directories, symlinks, files, with their modes, mtimes and
    (as root) owners; directories' own metadata last, deepest first, so that
    filling them does not change it. An existing file is overwritten only with
    `force`. A damaged file is reported (nothing written for it) and the rest
    restored."""
    root = names.check(prefix.strip("/")) if prefix.strip("/.") else ""
    top_record = store.files.current(root) if root else None
    if top_record is not None and top_record.kind == FILE and not store.files.under(root + "/")[1] and \
            not store.files.under(root + "/")[0]:
        raise UsageError(f"{root} is a file, not a directory", "get restores one file")
    if top_record is None and not any(store.files.under(root + "/" if root else "")):
        raise NotFoundError(f"nothing is stored under {prefix}", "`list` shows the top")
    target = Path(dest).expanduser() if dest else Path.cwd() / (root.rsplit("/", 1)[-1] if root else "pfs-tree")
    if store.inside_store(target):
        raise DestinationError(f"{target} is inside the store {store.root}", "choose a destination outside the store")
    try:
        target.mkdir(exist_ok=True)
    except OSError as exc:
        raise DestinationError(f"cannot make {target}: {exc.strerror}") from None
    if not target.is_dir() or target.is_symlink():
        raise DestinationError(f"{target} is not a directory", "give a directory, or a new name")
    owner = os.geteuid() == 0
    tally = TreeTally()
    directories: list[tuple[Path, FileEntry]] = [(target, top_record)] if top_record and top_record.is_dir else []
    if directories:
        tally.count("stored")
    made: set[Path] = {target}
    cut = len(root) + 1 if root else 0

    def parent_ready(path: Path) -> None:
        """Make the directories up to `path`'s parent (under target), refusing a
        symlink on the way: nothing is written through a link."""
        missing = []
        for parent in path.parents:
            if parent in made:
                break
            missing.append(parent)
        for parent in reversed(missing):
            if parent.is_symlink():
                raise DestinationError(f"{parent} is a symbolic link", "get -r writes nothing through a link")
            parent.mkdir(exist_ok=True)
            made.add(parent)

    with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="pfs-tree") as pool:
        slots = threading.BoundedSemaphore(2 * IN_FLIGHT)

        def get_file(entry: FileEntry, path: Path) -> None:
            try:
                store.get(entry.id, str(path), force, progress=progress, cancel=cancel)
                _restore_meta(path, replace(entry, mode=None, mtime=None), owner)  # get set mode and mtime
                tally.count("stored", entry.size)
            except (PfsError, OSError) as exc:
                tally.count("failed")
                report(f"{printable(entry.name)}: {exc.strerror if isinstance(exc, OSError) else exc}")
            finally:
                slots.release()

        refused: list[str] = []  # directories not restored: nothing under them is
        linked: dict[int, Path] = {}  # file id -> where the first of its hard links was restored
        for entry in tree_records(store, root):
            if cancel is not None and cancel.is_set():
                break
            if any(entry.name.startswith(r + "/") for r in refused) or entry.name.startswith(HARDLINKS + "/"):
                continue  # (a file with hard links is restored under its names)
            path = target / entry.name[cut:]
            try:
                parent_ready(path)
                if entry.is_dir:
                    if path.is_symlink() or (path.exists() and not path.is_dir()):
                        raise DestinationError(f"{path} exists and is not a directory")
                    path.mkdir(exist_ok=True)
                    made.add(path)
                    directories.append((path, entry))
                    tally.count("stored")
                elif entry.kind == SYMLINK:
                    if os.path.lexists(path):
                        if not force or path.is_dir() and not path.is_symlink():
                            raise DestinationError(f"{path} already exists", "use --force to overwrite it")
                        path.unlink()
                    os.symlink(entry.target, path)
                    _restore_meta(path, entry, owner)
                    tally.count("stored")
                elif entry.kind != FILE:
                    skipped = special.restore(store, entry, path, force, linked,
                                              lambda p, e: _restore_meta(p, e, owner))
                    tally.skip(skipped) if skipped else tally.count("stored")
                else:
                    if store.files.under(entry.name + "/") != ([], []):  # a name both (an older store)
                        path = path.with_name(f"{path.name}.pfs-file-{entry.id}")
                        report(f"{printable(entry.name)} is both a file and a directory in the store: "
                               f"the file is restored as {printable(str(path))}")
                    slots.acquire()
                    pool.submit(get_file, entry, path)
            except (PfsError, OSError) as exc:
                tally.count("failed")
                if entry.is_dir:
                    refused.append(entry.name)
                report(f"{printable(entry.name)}: {exc.strerror if isinstance(exc, OSError) else exc}"
                       + (" (nothing under it was restored)" if entry.is_dir else ""))
    for path, entry in reversed(directories):
        with contextlib.suppress(FileNotFoundError):
            _restore_meta(path, entry, owner)
    return tally
