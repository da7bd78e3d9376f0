"""The registry contract: what the Store asks of whatever keeps its metadata.

Three tables, each shared by every client (process, machine) of one store:

* FileTable: file id -> FileEntry. Every update is durable and visible to the
  other clients at their next read; ids are unique among all clients and never
  reused, even after a delete. Names are paths: a name resolves to the last
  file stored under it, and a prefix lists like a directory. A record is a
  regular file, a directory or a symlink (FileEntry.kind, with mode, mtime,
  uid, gid; a symlink's target); a directory is implied by the names under it
  or recorded (so an empty one exists), and a name held by a `storing` or
  `stored` record is a file or a directory, never both: `add` and `save`
  refuse a record that would make it both (NameConflictError), decided and
  written under one lock or transaction.
* PartTable: file id -> Manifest (the parts of a stored file).
* SessionTable: the clients that have the store open. A session is live while
  its client is (provably: a lock it holds, or a heartbeat that has not
  expired); the unfinished work of a dead session (its `storing` and
  `deleting` records, which name it) is finished by whichever client claims it.
  It also orders operations on one file across clients (`hold`).

pfs.registry.jsonfiles keeps them as files in the store's directory (one
machine); pfs.registry.postgres keeps them in a PostgreSQL database (many).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace

from pfs.registry import usage
from pfs.registry.records import DELETING, STORED, STORING, FileEntry, Manifest


class FileTable(ABC):
    """Every file record of the store, as all clients see it."""

    #: Damage skipped while loading (only a registry opened for repair skips any).
    damage: list[str]

    @abstractmethod
    def new_id(self) -> int:
        """Reserve a file id no client has had or will have."""

    @abstractmethod
    def add(self, entry: FileEntry) -> FileEntry:
        """Record a new file durably under a fresh id (whatever `entry.id` says),
        chosen and recorded at once; returns the entry with its id. Raises
        NameConflictError if it would make a name both a file and a directory."""

    @abstractmethod
    def save(self, entry: FileEntry) -> None:
        """Record (insert or replace) a file durably. Raises NameConflictError if
        it would make a name both a file and a directory (a record that held its
        name already, under the same name and kind, is not checked again)."""

    @abstractmethod
    def add_all(self, entries: list[FileEntry]) -> list[FileEntry]:
        """`add` of many new files in one durable update, all or nothing (a group
        commit: one journal line and one fsync, one transaction); returns them
        with their ids, in order. Checked as save_all checks."""

    @abstractmethod
    def save_all(self, entries: list[FileEntry]) -> None:
        """Record (insert or replace) many entries in one durable update, all or
        nothing: one journal line (JSON), one transaction (PostgreSQL). Each is
        checked as by `save` against the records outside the batch; the batch
        itself must be one consistent tree (a renamed directory, a walked one)."""

    @abstractmethod
    def swap(self, seen: FileEntry, new: FileEntry) -> bool:
        """Record `new` in place of the file's record only if that record is still
        the one `seen` was (same name, status and uuid), in one step: a
        compare-and-swap. False, recording nothing, when another client renamed,
        stored, deleted or rolled back the file since `seen` was read."""

    @abstractmethod
    def take_name(self, seen: FileEntry, new: FileEntry, keep: bool = False) -> FileEntry | None:
        """swap(seen, new), where `new` (stored) becomes what its name resolves to:
        in the same step its `replaces` is set to the file the name resolved to
        until then (0 if none, itself, or `keep`), so two clients storing or
        renaming onto one name at once each replace the one before. Returns the
        record written, or None when the swap failed."""

    @abstractmethod
    def take_names(self, pairs: list[tuple[FileEntry, FileEntry]], keep: bool = False) -> list[FileEntry | None]:
        """take_name of each (seen, new) pair, in one durable update (a group
        commit: one journal line, one transaction): each pair swapped only if
        its record is still as seen, with its `replaces` set as take_name sets
        it. Returns what was written for each pair, None where its swap failed."""

    @abstractmethod
    def remove(self, file_id: int) -> None:
        """Forget a file durably (a no-op for an unknown id)."""

    @abstractmethod
    def get(self, file_id: int) -> FileEntry | None:
        """A file's record as it is now, other clients' updates included."""

    @abstractmethod
    def all(self) -> list[FileEntry]:
        """Every file, in id order, other clients' updates included."""

    def unsettled(self) -> list[FileEntry]:
        """The files whose operation a session may have left unfinished, in id
        order: `storing` and `deleting` ones, and stored ones that took the name
        of a file still recorded (their put or rename was to delete it)."""
        everything = self.all()
        ids = {e.id for e in everything}
        return [e for e in everything if e.status in (STORING, DELETING) or (e.status == STORED and e.replaces in ids)]

    @abstractmethod
    def named(self, name: str) -> list[FileEntry]:
        """Every file recorded under `name` (whatever its status), in the order
        they became current: recorded under the name, or stored there."""

    def named_each(self, names: list[str]) -> dict[str, list[FileEntry]]:
        """`named` of each of `names`, from one view of the table where the engine can
        (a listing asks for every name under a prefix at once)."""
        return {name: self.named(name) for name in names}

    @staticmethod
    def unchanged(now: FileEntry | None, seen: FileEntry) -> bool:
        """Whether a record read now is still the file as `seen` (what swap compares)."""
        return now is not None and (now.name, now.status, now.uuid) == (seen.name, seen.status, seen.uuid)

    @staticmethod
    def replacing(new: FileEntry, current: FileEntry | None, keep: bool) -> FileEntry:
        """`new` with `replaces` naming the file it takes the name from (0: none, itself, or kept)."""
        return replace(new, replaces=0 if current is None or current.id == new.id or keep else current.id)

    def current(self, name: str) -> FileEntry | None:
        """The file `name` resolves to: the last of that name to be stored."""
        return next((e for e in reversed(self.named(name)) if e.status == STORED), None)

    def volume_usage(self) -> tuple[usage.Usage, list[int]]:
        """What the stored files' records place on each volume, summed (volume id
        -> (pieces, bytes)), and the stored files whose records do not say
        (recorded before records kept it: their manifests do)."""
        stored = [e for e in self.all() if e.status == STORED]
        return usage.total(e.placed for e in stored if e.placed), [e.id for e in stored if not e.placed]

    def on_volume(self, vid: int) -> tuple[list[int], list[int]]:
        """The stored files whose records place pieces on volume `vid`, and the
        stored files whose records do not say, each in id order."""
        stored = [e for e in self.all() if e.status == STORED]
        return [e.id for e in stored if usage.on(e.placed, vid)], [e.id for e in stored if not e.placed]

    @abstractmethod
    def under(self, prefix: str, recursive: bool = False) -> tuple[list[str], list[str]]:
        """(names, directories ending in `/`) under a prefix (`` or ending in `/`),
        each sorted by code point; not recursive, a subdirectory is one entry.
        A directory record is a name like any other (its kind says what it is);
        a directory holding names is also among the directories."""

    @abstractmethod
    def compact(self) -> None:
        """Fold the update history into one compact state (a no-op where there is none)."""

    @abstractmethod
    def close(self) -> None:
        """Release what this client holds; the records stay."""


class PartTable(ABC):
    """The manifest of every stored file."""

    @abstractmethod
    def save(self, manifest: Manifest) -> None:
        """Record a file's parts durably (while its record says `storing`, or
        `stored`). The database registry refuses any other file's: the work of
        a session declared dead, going on after its put was rolled back."""

    def save_all(self, manifests: list[Manifest]) -> None:
        """`save` of many manifests, made durable together (an engine may do it
        at the cost of one: one sync, one transaction)."""
        for manifest in manifests:
            self.save(manifest)

    @abstractmethod
    def load(self, file_id: int) -> Manifest | None:
        """A file's manifest, or None; a damaged one raises DamagedError."""

    @abstractmethod
    def swap(self, seen: Manifest, new: Manifest) -> bool:
        """Record `new` only if the file's manifest is still `seen` (compare-and-swap),
        and say whether it was: two heals, drains or scrubs moving pieces of one
        file at once never undo each other's moves."""

    @abstractmethod
    def remove(self, file_id: int) -> None:
        """Forget a file's manifest (a no-op if it has none)."""

    @abstractmethod
    def ids(self) -> list[int]:
        """File ids that have a manifest, in order."""

    @abstractmethod
    def highest_id(self) -> int:
        """The highest file id that has a manifest, or 0."""

    @abstractmethod
    def where(self, file_id: int) -> str:
        """Where a file's manifest is kept, for messages."""


class SessionTable(ABC):
    """The clients that have the store open, and what orders them."""

    #: This client's session, written into every `storing` and `deleting` record it makes.
    id: str

    @abstractmethod
    def holders(self) -> list[str]:
        """The live sessions other than this one, described for a message (pid and host)."""

    @abstractmethod
    def claim_dead(self) -> AbstractContextManager[Callable[[str], bool]]:
        """Claim the sessions that are dead, so that no other client finishes
        their work at the same time; yields whether a session (named by a record)
        is dead and ours to finish: claimed now, already gone, or "" (the owner of
        records written before sessions existed). Claimed sessions are forgotten
        when the block ends. Read a record again inside the block before finishing
        it: another client may have finished it just before."""

    @abstractmethod
    def moving(self, file_id: int, wait: bool = True) -> AbstractContextManager[bool]:
        """Exclusive among clients moving one file's pieces (heal, drain, scrub, and
        the sweep of what a dead one left): plan, write and record a move inside it,
        so that no other client plans from the manifest it is about to change or
        sweeps the pieces it has written and not yet recorded. Yields whether it
        is taken (always, with `wait`); a killed client holds none."""

    @abstractmethod
    def hold(self, file_id: int, exclusive: bool) -> AbstractContextManager[None]:
        """Order an operation on one file against other clients' operations on it:
        shared for reading it, exclusive for deleting it. Raises StoreLockedError
        instead of waiting when an exclusive hold meets any other."""

    @abstractmethod
    def close(self) -> None:
        """End this session (the clean way: its work is finished)."""

