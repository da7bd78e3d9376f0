"""Recovery at open: finishing what dead sessions left, and sweeping what crashed
processes left behind."""

from __future__ import annotations

import itertools
import os
import logging
from dataclasses import replace
from pathlib import Path

from pfs.registry import DELETING, FAILED, STORED, STORING, FileEntry, pid_alive
from pfs.store.catalog import Catalog
from pfs.store.context import Context
from pfs.store.opening import INTENTS
from pfs.store.sweeping import Sweeper
from pfs.store.volume_config import refresh_volumes
from pfs.volumes import MARKER

log = logging.getLogger("pfs")


def _writer_alive(temp_name: str) -> bool:
    """Whether the process that names a temporary file `.NAME.PID.THREAD.tmp` still runs."""
    fields = temp_name.split(".")
    return len(fields) > 3 and pid_alive(fields[-3])


def _temporaries(directory: Path, prefix: str = ".") -> list[Path]:
    """The temporary files `PREFIX....tmp` of atomic writes in `directory` (none
    if it cannot be listed), by one listing: a glob would match each of
    100,000 manifests against its pattern at every open."""
    try:
        found = os.listdir(directory)
    except OSError:
        return []
    return [directory / name for name in found if name.startswith(prefix) and name.endswith(".tmp")]


class Recovery:
    """Finishes the puts, deletes, replaces and moves of sessions that died."""

    def __init__(self, ctx: Context, sweeper: Sweeper, catalog: Catalog) -> None:
        self.ctx, self.sweeper, self.catalog = ctx, sweeper, catalog

    def recover(self) -> list[FileEntry]:
        """At open: finish what dead sessions left, and sweep what crashed processes left."""
        touched = self.finish_dead()
        self.sweep_leftovers()
        return touched

    def finish_dead(self) -> list[FileEntry]:
        """Finish what dead sessions (a crash) left unfinished: roll back their
        puts, complete their deletes, remove the pieces their heals or drains
        wrote that no manifest took up. Only a file's record is needed: its
        pieces' keys derive from its uuid, and every volume is tried for each.
        The work of live sessions is theirs."""
        touched = []
        unsettled = self.ctx.files.unsettled()
        unfinished = [e for e in unsettled if e.status in (STORING, DELETING)]
        replacing = [e for e in unsettled if e.status == STORED]
        with self.ctx.sessions.claim_dead() as dead:
            for seen in unfinished:
                entry = self.ctx.files.get(seen.id)  # read again: its owner may have finished it meanwhile
                if entry is None or entry.status not in (STORING, DELETING) or not dead(entry.session):
                    continue
                self.sweeper.sweep_or_note(entry)
                self.ctx.parts.remove(entry.id)
                if entry.status == STORING:
                    self.ctx.files.save(replace(entry, status=FAILED, reason="interrupted"))
                else:
                    self.ctx.files.remove(entry.id)
                touched.append(entry)
            for entry in replacing:
                if dead(entry.session):
                    self.finish_replace(entry)
            for intent in sorted((self.ctx.root / INTENTS).iterdir()):
                self.sweeper.finish_intent(intent, dead)
        return touched

    def finish_removals(self) -> None:
        """Remove the old pieces that moves left where a volume could not be
        reached then, once it can (a heal asks first): those of dead sessions,
        and this pfs's own for files it is not working on now."""
        refresh_volumes(self.ctx)
        self.finish_dead()
        busy = self.catalog.busy()
        for intent in sorted((self.ctx.root / INTENTS).iterdir()):
            if intent.stem.isdigit() and int(intent.stem) not in busy:
                self.sweeper.finish_intent(intent, lambda session: session == self.ctx.sessions.id)

    def finish_replace(self, by: FileEntry) -> None:
        """Delete the file `by` replaced under its name, if its pfs stopped before
        it could (a crash, or a reader that held it): the name resolves to `by`
        either way, so a crash mid-replace leaves the old file or the new, never
        both nor neither."""
        old = self.ctx.files.get(by.replaces)
        current = self.ctx.files.current(by.name)
        if old is None or old.status != STORED or old.name != by.name or current is None or current.id == old.id:
            return
        log.info("file %d (%s), replaced by file %d, is deleted now", old.id, old.name, by.id)
        self.catalog.delete_replaced(by)

    def sweep_leftovers(self) -> None:
        """Remove the temporary files of atomic writes that crashed processes cut
        short (manifests are written through tmp/, so their directory is not listed)."""
        markers = [_temporaries(Path(self.ctx.volset.location(c)), f".{MARKER}.")
                   for c in self.ctx.volset.configs.values() if "://" not in c.url]
        for torn in [*_temporaries(self.ctx.root), *_temporaries(self.ctx.tmp),
                     *_temporaries(self.ctx.root / INTENTS), *itertools.chain.from_iterable(markers)]:
            if not _writer_alive(torn.name):
                torn.unlink(missing_ok=True)
