"""Where a store keeps its key slots and its recipients: one file per slot in
STORE/keys/ (a directory store), or one row per slot in pfs_settings (a
PostgreSQL store); a password slot and a recipient record differ by their fields.
Each change is atomic (a slot written whole and renamed into place, one
transaction), and made under one lock with the look at the slots it depends
on (never the last slot)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pfs.crypto.keys import slot_ok
from pfs.crypto.recipients import recipient_ok
from pfs.registry import fsync_dir, write_json_atomic

KEYS = "keys"
LOCK = "lock"
#: A PostgreSQL store's slot rows in pfs_settings are keyed SLOT_PREFIX + slot id.
SLOT_PREFIX = "key_slot:"


class SlotFiles:
    """The slots of a directory store: STORE/keys/ID.json."""

    def __init__(self, root: Path) -> None:
        self.folder = Path(root) / KEYS

    def list(self) -> list[dict]:
        """Every password slot, in id order (a file that is not a slot is left out)."""
        return [s for s in self._all() if slot_ok(s)]

    def recipients(self) -> list[dict]:
        """Every recipient record, in id order."""
        return [s for s in self._all() if recipient_ok(s)]

    def _all(self) -> list[dict]:
        slots = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                slot = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if (slot_ok(slot) or recipient_ok(slot)) and path.stem == slot["id"]:
                slots.append(slot)
        return slots

    def add(self, slot: dict) -> None:
        """Write a new slot: whole or not at all, whatever kills pfs meanwhile."""
        with self._locked():
            write_json_atomic(self.folder / f"{slot['id']}.json", slot)

    def sweep(self) -> None:
        """Remove the temporary files of slot writes that a kill cut short (each
        holds a whole slot, so one left behind would keep a removed password's
        wrapping of the data key for ever)."""
        if not (self.folder.is_dir() and any(p.name.endswith(".tmp") for p in self.folder.iterdir())):
            return  # the common case: nothing to sweep, no lock taken
        with self._locked():  # a key add writing its slot holds it: its file is not taken for a leftover
            for path in self.folder.iterdir():
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
            fsync_dir(self.folder)

    def clear(self) -> None:
        """Remove what a creation killed before it wrote the store's settings left."""
        for path in self.folder.glob("*.json") if self.folder.is_dir() else []:
            path.unlink()

    @contextlib.contextmanager
    def changing(self) -> Iterator[tuple[list[dict], callable, callable]]:
        """The slots and recipients, what removes one and what rewrites one, under the slots' lock."""
        with self._locked():
            yield self._all(), self._remove, self._rewrite

    def _remove(self, slot_id: str) -> None:
        (self.folder / f"{slot_id}.json").unlink()
        fsync_dir(self.folder)

    def _rewrite(self, slot: dict) -> None:
        write_json_atomic(self.folder / f"{slot['id']}.json", slot)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(exist_ok=True)
        fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class DatabaseSlots:
    """The slots of a PostgreSQL store: rows of pfs_settings keyed key_slot:ID."""

    def __init__(self, db) -> None:
        self.db = db

    @staticmethod
    def row(slot: dict) -> dict:
        """The settings row of a new store's first slot (written with the settings, in their transaction)."""
        return {SLOT_PREFIX + slot["id"]: slot}

    def list(self) -> list[dict]:
        return [s for s in self._read() if slot_ok(s)]

    def recipients(self) -> list[dict]:
        return [s for s in self._read() if recipient_ok(s)]

    def sweep(self) -> None:
        """Nothing to sweep: a row is written in one transaction."""

    def _read(self) -> list[dict]:
        with self.db.transaction(check_session=False) as cur:
            return self._list(cur)

    @staticmethod
    def _list(cur) -> list[dict]:
        cur.execute("SELECT value FROM pfs_settings WHERE key LIKE %s ORDER BY key", (SLOT_PREFIX + "%",))
        return [slot for (slot,) in cur.fetchall() if slot_ok(slot) or recipient_ok(slot)]

    def add(self, slot: dict) -> None:
        from psycopg.types.json import Jsonb

        with self.db.transaction(check_session=False) as cur:
            cur.execute("INSERT INTO pfs_settings VALUES (%s, %s)", (SLOT_PREFIX + slot["id"], Jsonb(slot)))

    @contextlib.contextmanager
    def changing(self) -> Iterator[tuple[list[dict], callable, callable]]:
        from psycopg.types.json import Jsonb

        with self.db.transaction(check_session=False) as cur:
            cur.execute("SELECT key FROM pfs_settings WHERE key LIKE %s ORDER BY key FOR UPDATE", (SLOT_PREFIX + "%",))
            yield (self._list(cur),
                   lambda slot_id: cur.execute("DELETE FROM pfs_settings WHERE key = %s", (SLOT_PREFIX + slot_id,)),
                   lambda slot: cur.execute("UPDATE pfs_settings SET value = %s WHERE key = %s",
                                            (Jsonb(slot), SLOT_PREFIX + slot["id"])))
