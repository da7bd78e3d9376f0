"""get -r: rebuild a stored tree, restoring its small files many at once.

A batch of files of at most one part each costs a few registry calls, one
trip to each worker and one sync of the destination's file system, not a get
each (larger files go through get, a few at once).

Per batch: one hold of all its files (a delete by any pfs waits, as for a
get), their records read again under it (a delete that ran before is seen)
and their manifests read together; each file gets an output without a name
(O_TMPFILE) in its directory; the parts go to the workers a share of the
batch per worker, each checked against its hash before a byte of it is
written (and a damaged copy met on the way rewritten, as get does); mode,
mtime and owner are set; one syncfs makes every output durable (an fsync each
where there is none); then each is linked under its name, and each directory
fsynced once. A crash leaves each file whole under its name or absent; a
damaged file is reported and nothing is written for it; the others are restored.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from pfs import names
from pfs.engine import worker
from pfs.errors import DestinationError, NotFoundError, PfsError, UsageError, advice_for, printable
from pfs.failures import unreadable
from pfs.registry import FILE, STORED, SYMLINK, FileEntry, Manifest
from pfs.registry.records import HARDLINKS
from pfs.registry.jsonfiles.common import syncfs
from pfs.store.checking import Damage
from pfs.store.context import part_memory
from pfs.store.getting import Output, check_replaceable
from pfs.store import special
from pfs.store.paths import proc_path
from pfs.store.trees import IN_FLIGHT, LOOKUP_BATCH, Progress, Report, TreeTally, _nothing
from pfs.volumes.redundancy import Layout

#: Files in one batch, and their bytes: one hold, one manifest read, one sync.
BATCH_FILES = 256
BATCH_BYTES = 16 << 20
#: Batches restored at once: one in the workers while the next is prepared.
BATCHES = 2


def batch_files() -> int:
    """Files per batch: each keeps a descriptor open until its batch is synced,
    so fewer where this process may open few."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return BATCH_FILES
    return max(1, min(BATCH_FILES, (soft - 64) // (4 * BATCHES)))


def tree_records(store, root: str) -> tuple[Iterator[FileEntry], set[str]]:
    """The current record of every name under `root`/, in name order (parents
    first), and the names that have names under them (directories, and in an
    older store files that are directories too)."""
    listed = store.files.under(root + "/" if root else "", recursive=True)[0]
    holding = set()
    for name in listed:
        parent = name.rpartition("/")[0]
        while parent and parent not in holding:
            holding.add(parent)
            parent = parent.rpartition("/")[0]

    def records() -> Iterator[FileEntry]:
        for i in range(0, len(listed), LOOKUP_BATCH):
            for entries in store.files.named_each(listed[i:i + LOOKUP_BATCH]).values():
                current = next((e for e in reversed(entries) if e.status == STORED), None)
                if current is not None:
                    yield current
    return records(), holding


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
    restored. Files of at most one part are restored in batches (restore_batch)."""
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

    def failed(entry: FileEntry, exc: BaseException, after: str = "") -> None:
        tally.count("failed")
        report(f"{printable(entry.name)}: {exc.strerror if isinstance(exc, OSError) else exc}{after}")

    with ThreadPoolExecutor(IN_FLIGHT + BATCHES, thread_name_prefix="pfs-tree") as pool:
        slots = threading.BoundedSemaphore(2 * IN_FLIGHT)
        batches = threading.BoundedSemaphore(BATCHES)

        def get_file(entry: FileEntry, path: Path) -> None:
            try:
                store.get(entry.id, str(path), force, progress=progress, cancel=cancel)
                _restore_meta(path, replace(entry, mode=None, mtime=None), owner)  # get set mode and mtime
                tally.count("stored", entry.size)
            except (PfsError, OSError) as exc:
                failed(entry, exc)
            finally:
                slots.release()

        def get_batch(items: list[tuple[FileEntry, Path]]) -> None:
            try:
                outcomes = restore_batch(store, items, force, owner, progress, cancel)
            except (PfsError, OSError) as exc:
                outcomes = [exc] * len(items)
            finally:
                batches.release()
            for (entry, _), outcome in zip(items, outcomes):
                if outcome is None:
                    tally.count("stored", entry.size)
                else:
                    failed(entry, outcome)

        small: list[tuple[FileEntry, Path]] = []
        small_bytes, per_batch = 0, batch_files()

        def send_small() -> None:
            nonlocal small, small_bytes
            if small:
                batches.acquire()
                pool.submit(get_batch, small)
            small, small_bytes = [], 0

        refused: list[str] = []  # directories not restored: nothing under them is
        linked: dict[int, Path] = {}  # file id -> where the first of its hard links was restored
        records, holding = tree_records(store, root)
        for entry in records:
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
                    if entry.name in holding:  # a name both a file and a directory (an older store)
                        path = path.with_name(f"{path.name}.pfs-file-{entry.id}")
                        report(f"{printable(entry.name)} is both a file and a directory in the store: "
                               f"the file is restored as {printable(str(path))}")
                    if is_small(entry):
                        small.append((entry, path))
                        small_bytes += entry.size
                        if len(small) >= per_batch or small_bytes >= BATCH_BYTES:
                            send_small()
                    else:
                        slots.acquire()
                        pool.submit(get_file, entry, path)
            except (PfsError, OSError) as exc:
                if entry.is_dir:
                    refused.append(entry.name)
                failed(entry, exc, " (nothing under it was restored)" if entry.is_dir else "")
        send_small()
    for path, entry in reversed(directories):
        with contextlib.suppress(FileNotFoundError):
            _restore_meta(path, entry, owner)
    return tally


def is_small(entry: FileEntry) -> bool:
    """Whether a stored file is restored in a batch (at most one part)."""
    return entry.parts <= 1


def restore_batch(store, items: list[tuple[FileEntry, Path]], force: bool, owner: bool,
                  progress: Callable[[int], None], cancel: threading.Event | None = None) -> list[PfsError | None]:
    """Restore each (record, path) of `items` (files of at most one part, each
    path's directory made already); returns each one's error, or None."""
    items = list(items)
    outcomes: list[PfsError | None] = [None] * len(items)
    ids = [entry.id for entry, _ in items]
    dirs: dict[Path, int] = {}
    outputs: dict[int, Output] = {}
    with store.reading_all(ids):
        try:
            store.refresh_volumes()
            now = store.files.named_each(sorted({entry.name for entry, _ in items}))
            manifests = _manifests(store, ids)
            jobs: dict[int, worker.PartCheck] = {}
            for i, (entry, path) in enumerate(items):
                try:
                    entry = _still_stored(entry, now)
                    items[i] = entry, path
                    manifest = manifests[entry.id]
                    if isinstance(manifest, PfsError):
                        raise manifest
                    manifest = store.check_manifest(entry, manifest)
                    check_replaceable(path, force)
                    out = outputs[i] = _output(path, dirs)
                    if manifest.parts:
                        store.check_memory(entry.chunk_size, f"file {entry.id}", Layout.of(entry))
                        jobs[i] = store.restore_job(entry, manifest.parts[0], proc_path(out.fd))
                except PfsError as exc:
                    outcomes[i] = exc
            _read_parts(store, items, jobs, outcomes, cancel)
            for i, out in outputs.items():
                if outcomes[i] is None:
                    outcomes[i] = _finish(out, items[i][0], owner)
            _durable(dirs, [out.fd for i, out in outputs.items() if outcomes[i] is None])
            for i, out in outputs.items():
                if outcomes[i] is None:
                    outcomes[i] = _publish(out, force)
                    if outcomes[i] is None:
                        progress(items[i][0].size)
            _durable(dirs, list(dirs.values()))  # the names
        finally:
            for out in outputs.values():
                out.close()
            for fd in dirs.values():
                os.close(fd)
    return outcomes


def _still_stored(entry: FileEntry, now: dict[str, list[FileEntry]]) -> FileEntry:
    """The file's record as read under the hold, refused if it is no longer a stored file."""
    record = next((e for e in now.get(entry.name, []) if e.id == entry.id), None)
    if record is None:
        raise NotFoundError(f"no file with id {entry.id} ({entry.name}): it was deleted meanwhile")
    if record.status != STORED or record.kind != FILE:
        raise UsageError(f"file {entry.id} ({entry.name}) is {record.status}",
                         "only stored files can be read; `delete` removes it")
    return record


def _manifests(store, ids: list[int]) -> dict[int, Manifest | None | PfsError]:
    """The manifests of `ids` read together; if one is damaged, each is read alone,
    so that only that file fails."""
    try:
        return store.parts.load_all(ids)
    except PfsError:
        pass
    found: dict[int, Manifest | None | PfsError] = {}
    for file_id in ids:
        try:
            found[file_id] = store.parts.load(file_id)
        except PfsError as exc:
            found[file_id] = exc
    return found


def _output(path: Path, dirs: dict[Path, int]) -> Output:
    """An output for `path` without a name yet, its directory opened once per batch."""
    try:
        fd = dirs.get(path.parent)
        if fd is None:
            fd = dirs[path.parent] = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        return Output(path, fd)
    except OSError as exc:
        raise PfsError(f"cannot write {path}: {exc.strerror}", advice_for(exc)) from None


def _read_parts(store, items, jobs: dict[int, worker.PartCheck], outcomes: list,
                cancel: threading.Event | None) -> None:
    """The parts of the batch read, checked and written into their outputs, a
    share of the batch per worker; a part that cannot be read fails its file."""
    order = list(jobs)
    shares = [share for share in (order[k::store.engine.workers] for k in range(store.engine.workers)) if share]
    tasks = [(max(part_memory(jobs[i].size, jobs[i].layout, bool(jobs[i].sealed_for)) for i in share),
              ([jobs[i] for i in share],)) for share in shares]

    def done(index: int, verdicts: list) -> None:
        for i, verdict in zip(shares[index], verdicts):
            entry, job = items[i][0], jobs[i]
            if isinstance(verdict, PfsError):
                outcomes[i] = verdict
            elif verdict.problem:
                damage = Damage(entry.id, entry.name, 0, 0, job.size, verdict.problem)
                outcomes[i] = unreadable([damage], "nothing was written")
    store.engine.run(worker.check_parts, tasks, done, cancel)


def _finish(out: Output, entry: FileEntry, owner: bool) -> PfsError | None:
    """Owner (as root), mode and mtime on the output, as get sets them."""
    try:
        if owner and entry.uid is not None:
            os.fchown(out.fd, entry.uid, entry.gid)
        if entry.mode is not None:
            os.fchmod(out.fd, entry.mode)
        if entry.mtime is not None:
            os.utime(out.fd, ns=(time.time_ns(), entry.mtime))
    except OSError as exc:
        return PfsError(f"cannot write {out.target}: {exc.strerror}", advice_for(exc))
    return None


def _durable(dirs: dict[Path, int], fds: list[int]) -> None:
    """Make `fds` durable (the outputs before any gets its name, then the
    directories once they hold the names): one syncfs of each file system the
    batch writes to, else an fsync of each."""
    devices: dict[int, int] = {}
    for fd in dirs.values():
        devices.setdefault(os.fstat(fd).st_dev, fd)
    if all(syncfs(fd) for fd in devices.values()):
        return
    for fd in fds:
        os.fsync(fd)


def _publish(out: Output, force: bool) -> PfsError | None:
    try:
        out.publish(force, durable=False)
    except PfsError as exc:
        return exc
    except OSError as exc:
        return PfsError(f"cannot write {out.target}: {exc.strerror}", advice_for(exc))
    return None
