"""Group commit of small files: a batch of regular files of at most one part
each is stored at the cost of a few files, not of one each.

Per batch: one journal line (one fsync; one transaction on PostgreSQL) records
every file as `storing`; the parts go to the workers a share at a time (one
process hop per share, not per file), whose pieces go into one pack per volume
and share, made durable once (see pfs.engine.packing and pfs.volumes.packs);
the manifests are written at once (one syncfs); one journal line records them
all `stored`. A crash before that line
leaves every file of the batch `storing` (rolled back at the next open): a
batch is all or nothing. A file that fails on its own (it changed while it
was stored, it cannot be read) is rolled back alone and reported; the others
are stored.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pfs.engine import packing, worker
from pfs.errors import Cancelled, NameConflictError, PfsError
from pfs.registry import usage
from pfs.registry.records import FileEntry
from pfs.store.paths import proc_path
from pfs.store.putting import open_source, rolled_back, source_changed

#: Files in one batch, and their bytes: a batch is one journal line and one manifest sync.
BATCH_FILES = 256
BATCH_BYTES = 16 << 20

Outcome = FileEntry | PfsError


def store_batch(store, items: list[tuple[str, str]], progress: Callable[[int], None] = lambda n: None,
                cancel: threading.Event | None = None) -> list[Outcome]:
    """Store each (source path, name) of `items` (regular files of at most one
    part); returns each one's stored record or the error that failed it, in order."""

    outcomes: list[Outcome | None] = [None] * len(items)
    sources = {}
    for i, (path, _) in enumerate(items):
        try:
            src = open_source(Path(path), path)
        except PfsError as exc:
            outcomes[i] = exc
            continue
        if src.before.st_size > store.settings.chunk_size:  # grew since the walk saw it
            os.close(src.fd)
            outcomes[i] = source_changed(path, "changed size")
            continue
        sources[i] = src
    try:
        entries = _record_storing(store, items, sources, outcomes)
        if entries:
            _store_parts(store, items, sources, entries, outcomes, progress, cancel)
    finally:
        for src in sources.values():
            os.close(src.fd)
    return outcomes


def _record_storing(store, items, sources, outcomes) -> dict[int, FileEntry]:
    """Record the opened files `storing` in one update; where one of them would
    make a name both a file and a directory, each is recorded alone, so that only
    that one is refused."""
    store.refresh_volumes()
    store.check_room()
    order = list(sources)
    fresh = [store.storing_entry(items[i][1], sources[i].before) for i in order]
    try:
        return dict(zip(order, store.files.add_all(fresh)))
    except NameConflictError:
        pass
    entries = {}
    for i, entry in zip(order, fresh):
        try:
            entries[i] = store.files.add(entry)
        except NameConflictError as exc:
            outcomes[i] = exc
    return entries


def _store_parts(store, items, sources, entries: dict[int, FileEntry], outcomes, progress, cancel) -> None:
    """Write the parts in shares of the batch (one per worker), flush them, and
    record the batch stored; roll back whatever fails."""
    with_parts = [i for i, e in entries.items() if e.parts]
    shares = [with_parts[k::store.engine.workers] for k in range(store.engine.workers)]
    shares = [share for share in shares if share]
    task_of = dict(zip(with_parts, store.tasks_of([entries[i] for i in with_parts])))
    tasks = []
    for share in shares:
        jobs = [task_of[i](0, proc_path(sources[i].fd), 0, entries[i].size) for i in share]
        tasks.append((sum(memory for memory, _ in jobs), ([args for _, args in jobs],)))
    results: dict[int, object] = {i: None for i, e in entries.items() if not e.parts}

    def written(index: int, share_results: list) -> None:
        results.update(zip(shares[index], share_results))

    try:
        store.engine.run(packing.store_parts, tasks, written, cancel)
    except BaseException as exc:
        for i, entry in entries.items():
            store.roll_back(entry, exc)
            outcomes[i] = exc if isinstance(exc, PfsError) else PfsError(f"cannot store it: {exc}")
        if isinstance(exc, Cancelled) or not isinstance(exc, PfsError):
            raise
        return
    written_to = {vid for r in results.values() if r is not None and not isinstance(r, BaseException) for vid in r[3]}
    away = {vid for vid in written_to if store.volset.gone([vid])}  # each volume looked at once for the batch
    manifests, failed = [], {}
    for i, entry in entries.items():
        result = results.get(i)
        if isinstance(result, BaseException) or (result is not None and away.intersection(result[3])):
            failed[i] = source_changed(items[i][0], "changed size") if isinstance(result, worker.SourceShrank) \
                else result if isinstance(result, PfsError) else PfsError("a volume it was written to went away")
            continue
        how = sources[i].change()
        if how:
            failed[i] = source_changed(items[i][0], how)
            continue
        manifests.append((i, store.stored_manifest(entry, [result] if result is not None else [])))
    for i, exc in failed.items():
        store.roll_back(entries[i], exc)
        outcomes[i] = exc
    _publish(store, entries, manifests, outcomes, progress)


def _publish(store, entries, manifests, outcomes, progress) -> None:
    """The batch's manifests at once, then its stored records in one update;
    then the files they replaced under their names are deleted."""
    if not manifests:
        return
    try:
        store.parts.save_all([m for _, m in manifests])
        # the names, and what each replaces, taken by compare-and-swap against every other pfs
        taken = store.files.take_names([(entries[i], replace(m.file, placed=usage.placed(m.parts)))
                                        for i, m in manifests])
    except PfsError as exc:
        for i, _ in manifests:
            store.roll_back(entries[i], exc)
            outcomes[i] = exc
        return
    for (i, manifest), done in zip(manifests, taken):
        if done is None:
            outcomes[i] = rolled_back(entries[i])
            store.roll_back(entries[i], outcomes[i])
            continue
        outcomes[i] = done
        progress(done.size)
        store.drop_replaced(done)
