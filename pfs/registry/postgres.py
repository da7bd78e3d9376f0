"""The registries as tables of a PostgreSQL database, shared by clients on many machines.

Tables (created on first use): pfs_settings (key -> JSON value: the store's
settings), pfs_volumes (volume id -> its configuration, as store.json lists
volumes: location, weight, state, endpoint), pfs_files (one row per file, one
column per FileEntry field), pfs_manifests and pfs_parts (the manifest of each
stored file: its record's copy and one row per part), pfs_sessions (the clients
that have the store open, with their heartbeats), pfs_holds (the files they are
reading or deleting). File ids come from the
sequence pfs_file_ids. A file's current_seq (from the sequence
pfs_current_seqs) is taken anew whenever it becomes current under its name
(recorded under it, or stored there), so ordering by it is the order the JSON
registry keeps: a name resolves to its last stored file. Every update is one transaction, and every transaction
of a session first proves the session still registered (a row lock on it), so
a client whose session was declared dead can change nothing any more. A
transaction whose connection was cut while idle (a server restart,
pg_terminate_backend) begins again on a new connection.

A session is live while its heartbeat (updated every third of the session TTL,
the setting session_ttl, by a thread of its own) is younger than the TTL and
the connection of that thread is open: it holds an advisory lock on the
session, which the server drops as soon as the client's connection closes (a
killed process is seen dead at once, a stopped or cut-off one after the TTL;
after a server restart, which drops every lock, a session is live on its
heartbeat alone until it beats again and so takes its lock back). Any client
claims a dead session by deleting its row, then finishes its work.
Operations on one file are ordered by holds, rows of pfs_holds naming the
session: they survive a server restart and go with their session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
import xxhash
from collections.abc import Callable, Iterator
from dataclasses import MISSING, fields, replace
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from pfs import extras, redact, threads
from pfs.errors import DamagedError, StoreError, StoreLockedError
from pfs.registry.database_errors import database_failure
from pfs.registry.base import FileTable, PartTable, SessionTable
from pfs.registry.names import ancestors, conflict
from pfs.registry.records import DIR, FILE_FIELDS, HOLDING, STORED, STORING, BadRecord, FileEntry, Manifest

log = logging.getLogger("pfs")

T = TypeVar("T")

#: Seconds after its last heartbeat that a session counts as dead, unless the store's settings say otherwise.
SESSION_TTL = 30.0

#: The SQL type of each FileEntry field: a field added to FileEntry needs its type here,
#: and becomes a column of existing stores at their next open.
_COLUMN_TYPES = {"id": "bigint PRIMARY KEY", "name": "text", "size": "bigint", "status": "text", "parts": "bigint",
                 "chunk_size": "bigint", "codec": "text", "hash": "text", "uuid": "text",
                 "created": "double precision", "stored": "bigint", "digest": "text", "reason": "text",
                 "mode": "integer", "mtime": "bigint", "session": "text",
                 "copies": "integer", "ec": "text", "replaces": "bigint",
                 "kind": "text", "target": "text", "uid": "bigint", "gid": "bigint",
                 "placed": "text", "ctime": "bigint", "atime": "bigint", "rdev": "bigint", "links": "bigint"}
_PART_COLUMNS = ["index", "id", "offset", "size", "stored", "codec", "hash", "volume", "status", "copies", "shards",
                 "sealed"]
#: Part columns holding lists (the volume of each copy, each shard's volume, hash and size).
_JSON_PART_COLUMNS = ("copies", "shards")


def _default(field_name: str) -> str:
    """The SQL default of a column added to an existing store: the field's own, so old rows stay valid."""
    default = next(f.default for f in fields(FileEntry) if f.name == field_name)
    return "" if default is MISSING or default is None else f" DEFAULT {default!r}"


#: Columns of fields added to FileEntry since a store was created, added at its next open.
_ADD_COLUMNS = "\n".join(f'ALTER TABLE pfs_files ADD COLUMN IF NOT EXISTS "{c}" {_COLUMN_TYPES[c]}{_default(c)};'
                         for c in FILE_FIELDS if c != "id")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS pfs_settings (key text PRIMARY KEY, value jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS pfs_volumes (index integer PRIMARY KEY, path text NOT NULL);
ALTER TABLE pfs_volumes ADD COLUMN IF NOT EXISTS config jsonb;
UPDATE pfs_volumes SET config = jsonb_build_object('id', index, 'url', path) WHERE config IS NULL;
CREATE SEQUENCE IF NOT EXISTS pfs_file_ids;
CREATE TABLE IF NOT EXISTS pfs_files ({", ".join(f'"{c}" {_COLUMN_TYPES[c]}' for c in FILE_FIELDS)});
{_ADD_COLUMNS}
CREATE SEQUENCE IF NOT EXISTS pfs_current_seqs;
ALTER TABLE pfs_files ADD COLUMN IF NOT EXISTS current_seq bigint;
CREATE INDEX IF NOT EXISTS pfs_files_names ON pfs_files (name COLLATE "C", current_seq);
CREATE INDEX IF NOT EXISTS pfs_files_unfinished ON pfs_files (status) WHERE status IN ('storing', 'deleting');
CREATE TABLE IF NOT EXISTS pfs_manifests (file_id bigint PRIMARY KEY, file jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS pfs_parts (
    file_id bigint NOT NULL REFERENCES pfs_manifests ON DELETE CASCADE, "index" integer NOT NULL,
    id text NOT NULL, "offset" bigint NOT NULL, size bigint NOT NULL, stored bigint NOT NULL, codec text NOT NULL,
    hash text NOT NULL, volume integer NOT NULL, status text NOT NULL, PRIMARY KEY (file_id, "index"));
ALTER TABLE pfs_parts ADD COLUMN IF NOT EXISTS copies jsonb NOT NULL DEFAULT '[]';
ALTER TABLE pfs_parts ADD COLUMN IF NOT EXISTS shards jsonb NOT NULL DEFAULT '[]';
ALTER TABLE pfs_parts ADD COLUMN IF NOT EXISTS sealed text NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS pfs_sessions (
    id text PRIMARY KEY, pid integer NOT NULL, host text NOT NULL,
    started timestamptz NOT NULL DEFAULT now(), heartbeat timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS pfs_holds (id bigserial PRIMARY KEY, file_id bigint NOT NULL, exclusive boolean NOT NULL,
    session text NOT NULL REFERENCES pfs_sessions ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS pfs_holds_files ON pfs_holds (file_id);
CREATE TABLE IF NOT EXISTS pfs_schema (version text NOT NULL);
"""
#: Which schema a database holds: opening one that is current runs no DDL.
SCHEMA_VERSION = xxhash.xxh3_64_hexdigest(SCHEMA.encode())

#: Each volume's pieces and bytes as the stored files' records place them (see pfs.registry.usage).
_USAGE = ("SELECT split_part(p, ':', 1)::integer AS v, sum(split_part(p, ':', 2)::bigint)::bigint, "
          "sum(split_part(p, ':', 3)::bigint)::bigint FROM pfs_files, unnest(string_to_array(placed, ' ')) AS p "
          "WHERE status = 'stored' AND placed NOT IN ('', '-') GROUP BY v")
#: The stored files whose records do not say where their pieces are (recorded before records kept it).
_PLACED_UNKNOWN = "SELECT id FROM pfs_files WHERE status = 'stored' AND placed = '' ORDER BY id"

_FILE_COLUMNS = ", ".join(f'"{c}"' for c in FILE_FIELDS)
#: A record written: one that becomes current under its name (new, renamed, or
#: now stored) takes a new current_seq, as the JSON registry moves it to the end.
#: A put rolled back (failed) never becomes storing or stored again: no row is
#: written then (see _rolled_back).
_UPSERT_FILE = (f"INSERT INTO pfs_files ({_FILE_COLUMNS}, current_seq) "
                f"VALUES ({', '.join(['%s'] * len(FILE_FIELDS))}, nextval('pfs_current_seqs')) "
                f"ON CONFLICT (id) DO UPDATE SET "
                + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in FILE_FIELDS if c != "id")
                + ", current_seq = CASE WHEN pfs_files.name = EXCLUDED.name AND (pfs_files.status = 'stored' "
                  "OR EXCLUDED.status <> 'stored') THEN pfs_files.current_seq ELSE EXCLUDED.current_seq END "
                  "WHERE NOT (pfs_files.status = 'failed' AND EXCLUDED.status IN ('storing', 'stored'))")
#: The first advisory lock key of the lock on a top-level name (its second key: hashtext of it), taken by
#: each write that claims a name: a name and every name under it share their top-level segment.
_TOP_LOCKS = 0x706E
#: Whether the record %(id)s already holds its name as it is (then it is not checked again).
_HOLDS_ALREADY = ("SELECT 1 FROM pfs_files WHERE id = %(id)s AND name = %(name)s AND kind = %(kind)s "
                  "AND status IN ('storing', 'stored')")
#: A record other than %(id)s that holds a name which, with %(name)s, would be both a file and a directory.
_CONFLICTING_NAME = ("SELECT name, kind FROM pfs_files WHERE id <> %(id)s AND id <> ALL(%(batch)s::bigint[]) "
                     "AND status IN ('storing', 'stored') "
                     "AND ((name COLLATE \"C\" = ANY(%(outer)s::text[]) AND kind <> 'dir') "
                     "OR (name COLLATE \"C\" = %(name)s AND (kind = 'dir') <> %(is_dir)s) "
                     "OR (NOT %(is_dir)s AND name COLLATE \"C\" LIKE %(like)s ESCAPE '\\')) "
                     "ORDER BY name COLLATE \"C\" LIMIT 1")
#: The first key of the advisory locks that order the changes of one name (the second: the name's hash).
_NAME_LOCKS = 0x70667331
#: Names in code point order (as Python sorts them), whatever the database's collation.
_NAME = 'name COLLATE "C"'
#: The entry a name under a prefix of %(n)s characters lists as, not recursive: itself, or its subdirectory.
_ENTRY = ("(CASE WHEN %(flat)s AND strpos(substr(name, %(n)s::integer + 1), '/') > 0 "
          "THEN left(name, %(n)s::integer + strpos(substr(name, %(n)s::integer + 1), '/')) ELSE name END) "
          'COLLATE "C"')


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching what starts with `prefix` (its wildcards escaped)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _first_line(exc: BaseException) -> str:
    """A database error as one line (the server's are several: the line, a hint)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def psycopg_errors() -> type[Exception]:
    import psycopg

    return psycopg.Error


def is_database(location: str) -> bool:
    """Whether a --store names a PostgreSQL database (a libpq URI) rather than a directory."""
    return location.startswith(("postgresql://", "postgres://"))


def describe(uri: str) -> str:
    """The database as a message may show it: never its password."""
    return where(uri)["name"]


def where(uri: str) -> dict[str, str]:
    """The database's `name` as a message may show it (never its password), its
    `host`, `database` and `user`; a URI too malformed to split (`[::1` without
    its bracket) is shown up to its user, and libpq says what is wrong with it."""
    redact.remember_uri_password(uri)
    scheme, _, rest = uri.partition("://")
    userinfo, _, location = rest.rpartition("@") if "@" in rest.split("/", 1)[0] else ("", "", rest)
    user = unquote(userinfo.partition(":")[0])
    host, _, path = location.partition("/")
    database = unquote(path.split("?", 1)[0]) or user
    try:
        host = urlsplit(f"//{host}").netloc or "localhost"
    except ValueError:
        pass  # shown as written
    return {"name": f"{scheme}://{user + '@' if user else ''}{host}/{database}", "host": host or "localhost",
            "database": database, "user": user}


class _ConnectionCut(StoreError):
    """The connection was cut in the middle of a transaction (which the server rolled back)."""

    def __init__(self, unreachable: StoreError) -> None:
        super().__init__(unreachable.message, unreachable.advice)


class Database:
    """One connection to the store's database, shared by the threads of this
    client one transaction at a time, reconnected after a failure. Every
    failure to reach the database is one StoreError saying so."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.name = describe(uri)  # first: it masks the password in every message from here on
        if not extras.installed("psycopg"):
            raise extras.missing("psycopg", "PostgreSQL stores")
        self._lock = threading.RLock()
        self._conn = None
        self.session = ""  # set once registered: every transaction then proves it still is
        self.on_session_lost: Callable[[], None] = lambda: None  # registers a new session
        with self.transaction(check_session=False) as cur:
            if not self._schema_is_current(cur):
                cur.execute("SELECT pg_advisory_xact_lock(7046311)")  # one client creates the schema at a time
                cur.execute(SCHEMA)
                cur.execute("DELETE FROM pfs_schema")
                cur.execute("INSERT INTO pfs_schema VALUES (%s)", (SCHEMA_VERSION,))

    @staticmethod
    def _schema_is_current(cur) -> bool:
        """Whether the schema is already this version's. Checked without DDL: an
        ALTER TABLE waits for every open transaction on its table, so running the
        schema at each open made a client wait for any other client stopped
        mid-transaction (a suspended shell) instead of refusing or going on."""
        cur.execute("SELECT to_regclass('pfs_schema') IS NOT NULL")
        if not cur.fetchone()[0]:
            return False
        cur.execute("SELECT version FROM pfs_schema")
        row = cur.fetchone()
        return row is not None and row[0] == SCHEMA_VERSION

    def connect(self):
        """A new connection (for what must not share ours: heartbeats, holds)."""
        import psycopg

        try:
            return psycopg.connect(self.uri, autocommit=True, connect_timeout=10, application_name="pfs")
        except psycopg.Error as exc:
            raise self.unreachable(exc) from None

    def unreachable(self, exc: BaseException) -> StoreError:
        return database_failure(exc, where(self.uri))

    @contextlib.contextmanager
    def transaction(self, check_session: bool = True) -> Iterator:
        """A cursor inside one transaction: committed whole, or rolled back whole."""
        import psycopg

        with self._lock:
            for _ in range(2):
                fresh = self._conn is None or self._conn.closed
                began = False
                try:
                    if fresh:
                        self._conn = self.connect()
                    with self._conn.transaction(), self._conn.cursor() as cur:
                        if check_session and self.session:
                            self._prove_session(cur)
                        began = True
                        yield cur
                    return
                except psycopg.OperationalError as exc:
                    self._drop()
                    if fresh:
                        raise self.unreachable(exc) from None
                    if began:
                        raise _ConnectionCut(self.unreachable(exc)) from None
                    # Cut while idle (a server restart, pg_terminate_backend): nothing of the
                    # transaction has run yet, so it begins again on a new connection.
                    log.info("reconnecting to %s: %s", self.name, _first_line(exc))
                except psycopg.Error as exc:
                    raise StoreError(f"the database {self.name} refused an update: {_first_line(exc)}") from None

    def idempotent(self, work: Callable[[Any], T]) -> T:
        """`work(cursor)` in a transaction, for work that may run twice (a read, a
        delete by key): cut mid-way by the server, it runs again on a new connection."""
        try:
            with self.transaction(check_session=False) as cur:
                return work(cur)
        except _ConnectionCut:
            log.info("reconnecting to %s", self.name)
        with self.transaction(check_session=False) as cur:
            return work(cur)

    def _prove_session(self, cur) -> None:
        """Lock our session's row for the transaction: a session declared dead
        (and its work rolled back) has none, and can change nothing any more.
        Found so, this pfs goes on with a new session: the dead one's work was
        finished by the client that claimed it (which deleted the row last), and
        what of it still runs here cannot bring a rolled-back file back (see
        _rolled_back)."""
        cur.execute("SELECT 1 FROM pfs_sessions WHERE id = %s FOR SHARE", (self.session,))
        if cur.fetchone() is None:
            self.on_session_lost()
            raise StoreError("this pfs lost its session on the store (no heartbeat within the "
                             "session TTL), and another pfs rolled back its unfinished work",
                             "it goes on with a new session: run the command again")

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def settings(self) -> dict:
        """The store's settings (empty for a new store), with its volumes: a read,
        run again on a new connection if the server cuts it (see idempotent)."""
        def read(cur) -> tuple[dict, list[dict]]:
            cur.execute("SELECT key, value FROM pfs_settings")
            return dict(cur.fetchall()), self._volumes(cur)
        settings, volumes = self.idempotent(read)
        return {**settings, "volumes": volumes} if settings else {}

    def volumes(self) -> tuple[list[dict], object]:
        """The store's volumes as they are now (each as store.json lists one), and
        the id the next one added takes: one small query, asked before every put
        and get places or reads a piece, so a server restart that cuts it (a pfs
        stopped mid-query) is met by asking again on a new connection."""
        return self.idempotent(lambda cur: (self._volumes(cur), self._next_volume(cur)))

    @contextlib.contextmanager
    def changing_volumes(self) -> Iterator[tuple[list[dict], object, Callable[[list[dict], int], None]]]:
        """The volumes and the next id, locked against every other change of them
        until the transaction ends, with what saves the new ones in it."""
        with self.transaction() as cur:
            cur.execute("LOCK TABLE pfs_volumes IN EXCLUSIVE MODE")
            yield self._volumes(cur), self._next_volume(cur), lambda v, n: self._save_volumes(cur, v, n)

    @staticmethod
    def _volumes(cur) -> list[dict]:
        cur.execute("SELECT config FROM pfs_volumes ORDER BY index")
        return [row[0] for row in cur.fetchall()]

    @staticmethod
    def _next_volume(cur) -> object:
        cur.execute("SELECT value FROM pfs_settings WHERE key = 'next_volume'")
        row = cur.fetchone()
        return row[0] if row else None

    @staticmethod
    def _save_volumes(cur, volumes: list[dict], next_volume: int) -> None:
        from psycopg.types.json import Jsonb

        cur.execute("DELETE FROM pfs_volumes")
        for v in volumes:
            cur.execute("INSERT INTO pfs_volumes VALUES (%s, %s, %s)", (v["id"], v["url"], Jsonb(v)))
        cur.execute("INSERT INTO pfs_settings VALUES ('next_volume', %s) ON CONFLICT (key) DO UPDATE "
                    "SET value = EXCLUDED.value", (Jsonb(next_volume),))

    def create(self, settings: dict) -> dict:
        """Record the settings of a new store, unless another client did first; the settings that hold."""
        from psycopg.types.json import Jsonb

        with self.transaction(check_session=False) as cur:
            cur.execute("LOCK TABLE pfs_settings IN EXCLUSIVE MODE")
            cur.execute("SELECT count(*) FROM pfs_settings")
            if cur.fetchone()[0] == 0:
                for key, value in settings.items():
                    if key not in ("volumes", "next_volume"):
                        cur.execute("INSERT INTO pfs_settings VALUES (%s, %s)", (key, Jsonb(value)))
                self._save_volumes(cur, settings["volumes"], settings["next_volume"])
        return self.settings()

    def adopt(self, key: str, value: object) -> object:
        """A setting added since the store was created: `value`, unless another
        client set it first; the value that holds."""
        from psycopg.types.json import Jsonb

        with self.transaction(check_session=False) as cur:
            cur.execute("INSERT INTO pfs_settings VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (key, Jsonb(value)))
            cur.execute("SELECT value FROM pfs_settings WHERE key = %s", (key,))
            return cur.fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._drop()


def _rolled_back(entry: FileEntry) -> StoreError:
    """The work of a session declared dead (a put of it rolled back, a file it
    read deleted) that goes on once this pfs resumes with a new session."""
    return StoreError(f"file {entry.id} ({entry.name}) was rolled back or deleted by another pfs meanwhile",
                      "this pfs had lost its session on the store (no heartbeat within the session TTL)")


class DatabaseFiles(FileTable):
    """pfs_files: one row per file; ids from the sequence pfs_file_ids."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.damage: list[str] = []

    def new_id(self) -> int:
        with self._db.transaction() as cur:
            cur.execute("SELECT nextval('pfs_file_ids')")
            return cur.fetchone()[0]

    def add(self, entry: FileEntry) -> FileEntry:
        with self._db.transaction() as cur:
            cur.execute("SELECT nextval('pfs_file_ids')")
            entry = replace(entry, id=cur.fetchone()[0])
            self._write(cur, entry)
        return entry

    def save(self, entry: FileEntry) -> None:
        with self._db.transaction() as cur:
            self._write(cur, entry)

    def add_all(self, entries: list[FileEntry]) -> list[FileEntry]:
        """The ids and the records in one transaction."""
        with self._db.transaction() as cur:
            cur.execute("SELECT nextval('pfs_file_ids') FROM generate_series(1, %s)", (len(entries),))
            added = [replace(e, id=row[0]) for e, row in zip(entries, cur.fetchall())]
            self._write_all(cur, added)
        return added

    def save_all(self, entries: list[FileEntry]) -> None:
        """One transaction."""
        with self._db.transaction() as cur:
            self._write_all(cur, entries)

    def _write_all(self, cur, entries: list[FileEntry]) -> None:
        """The top-level names' locks taken first, in order (no deadlock), then every record."""
        batch = [e.id for e in entries]
        for top in sorted({e.name.split("/")[0] for e in entries if e.status in HOLDING}):
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_TOP_LOCKS, top))
        for entry in entries:
            self._write(cur, entry, batch)

    def swap(self, seen: FileEntry, new: FileEntry) -> bool:
        """The row locked (FOR UPDATE), compared and written in one transaction."""
        with self._db.transaction() as cur:
            if not self._unchanged(cur, seen):
                return False
            self._write(cur, new)
            return True

    def move_all(self, root: str, seen: list[FileEntry], moved: list[FileEntry]) -> bool:
        """One transaction: the root's top-level name locked (every write there
        takes that lock: no record appears under root meanwhile), its rows and
        those under it locked (FOR UPDATE) and compared, then every record written."""
        with self._db.transaction() as cur:
            for top in sorted({root.split("/")[0], *(e.name.split("/")[0] for e in moved)}):  # in one order
                cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_TOP_LOCKS, top))
            rows = cur.execute(f"SELECT id, name, status, uuid FROM pfs_files WHERE {_NAME} = %s OR "
                               f"{_NAME} LIKE %s ESCAPE '\\' ORDER BY id FOR UPDATE",
                               (root, _like_prefix(root + "/"))).fetchall()
            if sorted(map(tuple, rows)) != sorted((e.id, e.name, e.status, e.uuid) for e in seen):
                return False
            self._write_all(cur, moved)
            return True

    def take_name(self, seen: FileEntry, new: FileEntry, keep: bool = False) -> FileEntry | None:
        """The names left and taken are locked for the transaction (advisory
        locks, in one order), so what the name resolves to cannot change
        between its look-up and the write."""
        return self.take_names([(seen, new)], keep)[0]

    def take_names(self, pairs: list[tuple[FileEntry, FileEntry]], keep: bool = False) -> list[FileEntry | None]:
        """One transaction: every name left or taken locked first, in one order."""
        with self._db.transaction() as cur:
            for name in sorted({n for seen, new in pairs for n in (seen.name, new.name)}):
                cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_NAME_LOCKS, name))
            taken = [self._taking(cur, seen, new, keep) for seen, new in pairs]
            batch = [e.id for e in taken if e is not None]
            for entry in taken:
                if entry is not None:
                    self._write(cur, entry, batch)
            return taken

    def _taking(self, cur, seen: FileEntry, new: FileEntry, keep: bool) -> FileEntry | None:
        """`new` replacing what its name resolves to now, or None if `seen` changed."""
        if not self._unchanged(cur, seen):
            return None
        rows = cur.execute(f"SELECT {_FILE_COLUMNS} FROM pfs_files WHERE {_NAME} = %s AND status = 'stored' "
                           "ORDER BY current_seq DESC NULLS LAST, id DESC LIMIT 1", (new.name,)).fetchall()
        current = FileEntry.from_rows(FILE_FIELDS, [list(r) for r in rows])[0]
        return self.replacing(new, current[0] if current else None, keep)

    def _unchanged(self, cur, seen: FileEntry) -> bool:
        row = cur.execute("SELECT name, status, uuid FROM pfs_files WHERE id = %s FOR UPDATE", (seen.id,)).fetchone()
        return row is not None and tuple(row) == (seen.name, seen.status, seen.uuid)

    @staticmethod
    def _write(cur, entry: FileEntry, batch: list[int] = ()) -> None:
        FileEntry.from_dict(entry.to_dict())  # only a valid record is written (BadRecord otherwise)
        DatabaseFiles._refuse_conflict(cur, entry, list(batch))
        if cur.execute(_UPSERT_FILE, entry.values()).rowcount == 0:
            raise _rolled_back(entry)

    @staticmethod
    def _refuse_conflict(cur, entry: FileEntry, batch: list[int]) -> None:
        """Raise NameConflictError if `entry` would make a name both a file and a
        directory: checked in the transaction that writes it, under a lock on its
        top-level segment, so two clients cannot make both at once."""
        if entry.status not in HOLDING:
            return
        cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_TOP_LOCKS, entry.name.split("/")[0]))
        args = {"id": entry.id, "batch": batch, "name": entry.name, "kind": entry.kind, "is_dir": entry.is_dir,
                "outer": ancestors(entry.name), "like": _like_prefix(entry.name + "/")}
        if cur.execute(_HOLDS_ALREADY, args).fetchone():
            return
        found = cur.execute(_CONFLICTING_NAME, args).fetchone()
        if found:
            other, kind = found
            raise conflict(entry.name, entry.is_dir, other, kind == DIR and other == entry.name)

    def remove(self, file_id: int) -> None:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM pfs_files WHERE id = %s", (file_id,))

    def get(self, file_id: int) -> FileEntry | None:
        found = self._select("WHERE id = %s", (file_id,))
        return found[0] if found else None

    def all(self) -> list[FileEntry]:
        return self._select("ORDER BY id", ())

    def unsettled(self) -> list[FileEntry]:
        """Found by the server: a store's open does not fetch every record."""
        return self._select("WHERE status IN ('storing', 'deleting') OR (status = 'stored' AND replaces IN "
                            "(SELECT id FROM pfs_files)) ORDER BY id", ())

    def named(self, name: str) -> list[FileEntry]:
        """Rows of stores older than current_seq (NULL) first, in id order."""
        return self._select(f"WHERE {_NAME} = %s ORDER BY current_seq NULLS FIRST, id", (name,))

    def named_each(self, names: list[str]) -> dict[str, list[FileEntry]]:
        """One query for all the names, not one per name."""
        found: dict[str, list[FileEntry]] = {name: [] for name in names}
        for entry in self._select(f"WHERE {_NAME} = ANY(%s) ORDER BY current_seq NULLS FIRST, id", (list(names),)):
            found[entry.name].append(entry)
        return found

    def volume_usage(self) -> tuple[dict[int, tuple[int, int]], list[int]]:
        """Summed by the server: no record is fetched."""
        def read(cur) -> tuple[list, list]:
            return cur.execute(_USAGE).fetchall(), cur.execute(_PLACED_UNKNOWN).fetchall()
        rows, unknown = self._db.idempotent(read)
        return {v: (n, b) for v, n, b in rows}, [row[0] for row in unknown]

    def on_volume(self, vid: int) -> tuple[list[int], list[int]]:
        def read(cur) -> tuple[list, list]:
            return (cur.execute("SELECT id FROM pfs_files WHERE status = 'stored' AND ' ' || placed LIKE %s "
                                "ORDER BY id", (f"% {vid}:%",)).fetchall(), cur.execute(_PLACED_UNKNOWN).fetchall())
        on, unknown = self._db.idempotent(read)
        return [row[0] for row in on], [row[0] for row in unknown]

    def under(self, prefix: str, recursive: bool = False) -> tuple[list[str], list[str]]:
        found = [row[0] for row in self._db.idempotent(lambda cur: cur.execute(
            f"SELECT DISTINCT {_ENTRY} AS entry FROM pfs_files WHERE {_NAME} LIKE %(like)s ESCAPE '\\' ORDER BY entry",
            {"flat": not recursive, "n": len(prefix), "like": _like_prefix(prefix)}).fetchall())]
        return [e for e in found if not e.endswith("/")], [e for e in found if e.endswith("/")]

    def _select(self, where: str, args: tuple) -> list[FileEntry]:
        rows = [list(row) for row in self._db.idempotent(
            lambda cur: cur.execute(f"SELECT {_FILE_COLUMNS} FROM pfs_files {where}", args).fetchall())]
        entries, bad = FileEntry.from_rows(FILE_FIELDS, rows)
        if bad:
            index, problem = bad[0]
            raise DamagedError(f"file {rows[index][0]} in {self._db.name} is damaged ({problem})")
        return entries

    def compact(self) -> None:
        """Nothing to fold: the database keeps its own history."""

    def close(self) -> None:
        """The connection is the Database's to close."""


class DatabaseParts(PartTable):
    """pfs_manifests and pfs_parts: the manifest of every stored file."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, manifest: Manifest) -> None:
        with self._db.transaction() as cur:
            self._save(cur, manifest)

    def save_all(self, manifests: list[Manifest]) -> None:
        """One transaction."""
        with self._db.transaction() as cur:
            for manifest in manifests:
                self._save(cur, manifest)

    @staticmethod
    def _save(cur, manifest: Manifest) -> None:
        from psycopg.types.json import Jsonb

        file_id = manifest.file.id
        row = cur.execute("SELECT status FROM pfs_files WHERE id = %s FOR SHARE", (file_id,)).fetchone()
        if row is None or row[0] not in (STORING, STORED):  # the file's put was rolled back, or it was deleted
            raise _rolled_back(manifest.file)
        cur.execute("DELETE FROM pfs_manifests WHERE file_id = %s", (file_id,))
        cur.execute("INSERT INTO pfs_manifests VALUES (%s, %s)", (file_id, Jsonb(manifest.file.to_dict())))
        columns = ", ".join(f'"{c}"' for c in _PART_COLUMNS)
        with cur.copy(f"COPY pfs_parts (file_id, {columns}) FROM STDIN") as copy:
            for part in manifest.parts:
                row = {"sealed": "", **part.to_dict()}
                copy.write_row((file_id, *(Jsonb(row[c]) if c in _JSON_PART_COLUMNS else row[c]
                                           for c in _PART_COLUMNS)))

    def load(self, file_id: int) -> Manifest | None:
        return self._db.idempotent(lambda cur: self._load(cur, file_id))

    def swap(self, seen: Manifest, new: Manifest) -> bool:
        """In one transaction, the manifest's row locked (FOR UPDATE) while compared."""
        with self._db.transaction() as cur:
            if self._load(cur, seen.file.id, " FOR UPDATE") != seen:
                return False
            self._save(cur, new)
            return True

    def _load(self, cur, file_id: int, lock: str = "") -> Manifest | None:
        columns = ", ".join(f'"{c}"' for c in _PART_COLUMNS)
        row = cur.execute(f"SELECT file FROM pfs_manifests WHERE file_id = %s{lock}", (file_id,)).fetchone()
        if row is None:
            return None
        rows = cur.execute(f'SELECT {columns} FROM pfs_parts WHERE file_id = %s ORDER BY "index"',
                           (file_id,)).fetchall()
        parts = [dict(zip(_PART_COLUMNS, r)) for r in rows]
        try:
            return Manifest.from_dict({"file": row[0], "parts": parts}, file_id)
        except BadRecord as exc:
            raise DamagedError(f"the manifest of file {file_id} in {self._db.name} is damaged ({exc})") from exc

    def load_all(self, file_ids: list[int]) -> dict[int, Manifest | None]:
        """Two queries for all of them, not two per file."""
        columns = ", ".join(f'"{c}"' for c in _PART_COLUMNS)

        def read(cur) -> tuple[list, list]:
            return (cur.execute("SELECT file_id, file FROM pfs_manifests WHERE file_id = ANY(%s)",
                                (list(file_ids),)).fetchall(),
                    cur.execute(f'SELECT file_id, {columns} FROM pfs_parts WHERE file_id = ANY(%s) '
                                'ORDER BY file_id, "index"', (list(file_ids),)).fetchall())

        files, rows = self._db.idempotent(read)
        parts: dict[int, list[dict]] = {}
        for row in rows:
            parts.setdefault(row[0], []).append(dict(zip(_PART_COLUMNS, row[1:])))
        found: dict[int, Manifest | None] = dict.fromkeys(file_ids)
        for file_id, file in files:
            try:
                found[file_id] = Manifest.from_dict({"file": file, "parts": parts.get(file_id, [])}, file_id)
            except BadRecord as exc:
                raise DamagedError(f"the manifest of file {file_id} in {self._db.name} is damaged ({exc})") from exc
        return found

    def remove(self, file_id: int) -> None:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM pfs_manifests WHERE file_id = %s", (file_id,))

    def ids(self) -> list[int]:
        return [row[0] for row in self._db.idempotent(
            lambda cur: cur.execute("SELECT file_id FROM pfs_manifests ORDER BY file_id").fetchall())]

    def highest_id(self) -> int:
        return self._db.idempotent(
            lambda cur: cur.execute("SELECT coalesce(max(file_id), 0) FROM pfs_manifests").fetchone()[0])

    def where(self, file_id: int) -> str:
        return f"pfs_parts of file {file_id} in {self._db.name}"


def _session_key(session: str) -> int:
    """The advisory lock key of a session (the two-key form):
    its first 32 bits as a signed integer, as SQL reads them."""
    key = int(session[:8], 16)
    return key - (1 << 32) if key >= 1 << 31 else key


#: The first advisory lock key of a session lock.
_SESSION_LOCKS = 0x7066
#: The first advisory lock key of the lock on moving a file's pieces (see moving()).
_MOVING_LOCKS = 0x706D

#: Whether session `s` is live: its heartbeat is younger than %(ttl)s seconds, and
#: the connection of its heartbeat holds its advisory lock, unless its last beat
#: came before the server (re)started, which dropped every lock: then only the
#: heartbeat tells, until the session's next beat takes its lock again.
_LIVE = (f"(s.heartbeat >= now() - make_interval(secs => %(ttl)s) AND (s.heartbeat < pg_postmaster_start_time() "
         f"OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
         f"AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
         f"AND l.classid = {_SESSION_LOCKS} AND l.objid = ('x' || left(s.id, 8))::bit(32)::bigint::oid)))")

#: A live session's hold on file %(file)s that the hold being taken conflicts with:
#: any, when that one is exclusive (%(exclusive)s); an exclusive one, when it is shared.
_CONFLICTING_HOLD = ("SELECT 1 FROM pfs_holds h JOIN pfs_sessions s ON s.id = h.session "
                     f"WHERE h.file_id = %(file)s AND (%(exclusive)s OR h.exclusive) AND {_LIVE} LIMIT 1")

#: A delete's hold on any of many files (a batch's readers wait for it to end).
_CONFLICTING_HOLDS = ("SELECT 1 FROM pfs_holds h JOIN pfs_sessions s ON s.id = h.session "
                      f"WHERE h.file_id = ANY(%(files)s) AND h.exclusive AND {_LIVE} LIMIT 1")

#: Seconds between two looks of a reader waiting for a delete of its file to end.
_HOLD_POLL = 0.1


class DatabaseSessions(SessionTable):
    """pfs_sessions: a row per client, kept fresh by a heartbeat thread whose
    connection holds the session's advisory lock."""

    def __init__(self, db: Database, ttl: float = SESSION_TTL) -> None:
        self._db = db
        self.ttl = ttl
        self._conn = None
        self._conn_lock = threading.Lock()  # the heartbeat thread's connection, also renewed by other threads
        self._register()
        db.on_session_lost = self._register
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="pfs-heartbeat", daemon=True)
        threads.start(self._beat, "the session's heartbeat")

    def _register(self) -> None:
        """Start a new session: its lock first (the row never shows without it),
        on a new connection (closing the old one drops a lost session's lock)."""
        import socket  # here: a directory store's start-up needs no socket

        with self._conn_lock:
            with contextlib.suppress(Exception):
                self._conn.close()
            self.id = uuid.uuid4().hex[:16]
            try:
                self._connect()
                self._conn.execute("INSERT INTO pfs_sessions (id, pid, host) VALUES (%s, %s, %s)",
                                   (self.id, os.getpid(), socket.gethostname()))
            except psycopg_errors() as exc:
                raise self._db.unreachable(exc) from None
            self._db.session = self.id

    def _connect(self) -> None:
        self._conn = self._db.connect()
        self._conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_SESSION_LOCKS, _session_key(self.id)))

    def _beat_once(self) -> None:
        """Refresh our heartbeat (connecting, and taking our lock, first if needed);
        a connection the server cut (a restart) is replaced at once."""
        with self._conn_lock:
            for _ in range(2):
                fresh = self._conn is None or self._conn.closed
                try:
                    if fresh:
                        self._connect()
                    self._conn.execute("UPDATE pfs_sessions SET heartbeat = now() WHERE id = %s", (self.id,))
                    return
                except Exception:
                    with contextlib.suppress(Exception):
                        self._conn.close()
                    if fresh:
                        raise

    def _heartbeat(self) -> None:
        """Beat every third of the TTL, on a connection of its own (a long
        transaction of another thread must not delay it)."""
        while not self._stop.wait(self.ttl / 3):
            try:
                self._beat_once()
            except Exception as exc:  # noqa: BLE001 -- the next beat retries; commands report the failure
                log.warning("session heartbeat failed: %s", exc)

    def holders(self) -> list[str]:
        return [f"pid {pid} on {host}" for pid, host in self._db.idempotent(lambda cur: cur.execute(
            "SELECT pid, host FROM pfs_sessions WHERE id <> %s AND heartbeat >= now() - make_interval(secs => %s) "
            "ORDER BY started", (self.id, self.ttl)).fetchall())]

    @contextlib.contextmanager
    def claim_dead(self) -> Iterator[Callable[[str], bool]]:
        """Dead sessions are locked (FOR UPDATE, in a transaction on a connection of
        its own) for the whole block, so other clients neither claim them nor find
        them gone, and deleted at its end."""
        conn = self._db.connect()
        try:
            with conn.transaction():
                claimed = {row[0] for row in conn.execute(
                    f"SELECT id FROM pfs_sessions s WHERE id <> %(id)s AND NOT {_LIVE} FOR UPDATE SKIP LOCKED",
                    {"id": self.id, "ttl": self.ttl})}

                def dead(session: str) -> bool:
                    if session == "" or session in claimed:
                        return True
                    return self._db.idempotent(lambda cur: cur.execute(
                        "SELECT 1 FROM pfs_sessions WHERE id = %s", (session,)).fetchone()) is None

                yield dead
                conn.execute("DELETE FROM pfs_sessions WHERE id = ANY(%s)", (list(claimed),))
        except psycopg_errors() as exc:
            raise self._db.unreachable(exc) from None
        finally:
            conn.close()

    @contextlib.contextmanager
    def moving(self, file_id: int, wait: bool = True) -> Iterator[bool]:
        """An advisory lock on a connection of its own (a killed client's connection
        ends, and its lock with it). Its second key is the file id's low 31 bits:
        two files that share them only take turns. The lock is released before the
        connection closes: the server ends a closed connection's backend, and so
        its locks, only some time after the client has gone on."""
        conn = self._db.connect()
        key = (_MOVING_LOCKS, file_id & 0x7FFFFFFF)
        taken = False
        try:
            try:
                taken = bool(conn.execute("SELECT pg_advisory_lock(%s, %s), true" if wait else
                                          "SELECT pg_try_advisory_lock(%s, %s)", key).fetchone()[-1])
            except psycopg_errors() as exc:
                raise self._db.unreachable(exc) from None
            yield taken
        finally:
            if taken:
                with contextlib.suppress(psycopg_errors()):  # a lost connection has released it already
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)
            conn.close()

    @contextlib.contextmanager
    def hold(self, file_id: int, exclusive: bool) -> Iterator[None]:
        """A row of pfs_holds naming this session: unlike an advisory lock it
        outlives a server restart, and it goes with the session when the session
        ends or is found dead (a killed client holds nothing)."""
        hold = self._take(file_id, exclusive)
        try:
            yield
        finally:
            try:
                self._db.idempotent(lambda cur: cur.execute("DELETE FROM pfs_holds WHERE id = %s", (hold,)))
            except StoreError as exc:  # the hold then ends with the session
                log.warning("file %d stays held until this pfs ends: %s", file_id, exc)

    def _take(self, file_id: int, exclusive: bool) -> int:
        """Record a hold once no live session's conflicts with it: a reader waits
        for a delete of the file to end, a delete is refused while it is read.
        The file's row is locked meanwhile (FOR UPDATE when exclusive, FOR SHARE
        when not), so the takers of one file's holds take turns."""
        while True:
            with self._db.transaction() as cur:
                cur.execute(f"SELECT 1 FROM pfs_files WHERE id = %s FOR {'UPDATE' if exclusive else 'SHARE'}",
                            (file_id,))
                cur.execute(_CONFLICTING_HOLD, {"file": file_id, "exclusive": exclusive, "ttl": self.ttl})
                if cur.fetchone() is None:
                    cur.execute("INSERT INTO pfs_holds (file_id, exclusive, session) VALUES (%s, %s, %s) RETURNING id",
                                (file_id, exclusive, self.id))
                    return cur.fetchone()[0]
            if exclusive:
                raise StoreLockedError("it is being read by a get or verify (of this pfs or another)",
                                       "try again once it is done")
            time.sleep(_HOLD_POLL)

    @contextlib.contextmanager
    def hold_all(self, file_ids: list[int]) -> Iterator[None]:
        """Shared holds of many files in one transaction (rows locked FOR SHARE,
        no delete's hold among them, one row each inserted), released in one."""
        ids = sorted(set(file_ids))
        while True:
            with self._db.transaction() as cur:
                cur.execute("SELECT 1 FROM pfs_files WHERE id = ANY(%s) ORDER BY id FOR SHARE", (ids,))
                cur.execute(_CONFLICTING_HOLDS, {"files": ids, "ttl": self.ttl})
                if cur.fetchone() is None:
                    cur.execute("INSERT INTO pfs_holds (file_id, exclusive, session) "
                                "SELECT f, false, %s FROM unnest(%s::bigint[]) AS f RETURNING id", (self.id, ids))
                    holds = [row[0] for row in cur.fetchall()]
                    break
            time.sleep(_HOLD_POLL)
        try:
            yield
        finally:
            try:
                self._db.idempotent(lambda cur: cur.execute("DELETE FROM pfs_holds WHERE id = ANY(%s)", (holds,)))
            except StoreError as exc:  # the holds then end with the session
                log.warning("%d files stay held until this pfs ends: %s", len(holds), exc)

    def close(self) -> None:
        self._stop.set()
        self._beat.join()
        with contextlib.suppress(Exception):
            self._conn.close()
        with contextlib.suppress(StoreError):
            with self._db.transaction(check_session=False) as cur:
                cur.execute("DELETE FROM pfs_sessions WHERE id = %s", (self.id,))
        self._db.session = ""

