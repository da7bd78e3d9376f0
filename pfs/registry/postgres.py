"""The registries as tables of a PostgreSQL database, shared by clients on many machines.

Tables (created on first use): pfs_settings (key -> JSON value: the store's
settings), pfs_volumes (index -> directory), pfs_files (one row per file, one
column per FileEntry field), pfs_manifests and pfs_parts (the manifest of each
stored file: its record's copy and one row per part), pfs_sessions (the clients
that have the store open, with their heartbeats). File ids come from the
sequence pfs_file_ids. A file's current_seq (from the sequence
pfs_current_seqs) is taken anew whenever it becomes current under its name
(recorded under it, or stored there), so ordering by it is the order the JSON
registry keeps: a name resolves to its last stored file. Every update is one transaction, and every transaction
of a session first proves the session still registered (a row lock on it), so
a client whose session was declared dead can change nothing any more.

A session is live while its heartbeat (updated every third of the session TTL,
the setting session_ttl, by a thread of its own) is younger than the TTL and
the connection of that thread is open: it holds an advisory lock on the
session, which the server drops as soon as the client's connection closes (a
killed process is seen dead at once, a stopped or cut-off one after the TTL).
Any client claims a dead session by deleting its row, then finishes its work.
Operations on one file are ordered by PostgreSQL advisory locks on its id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
import xxhash
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, astuple, fields, replace
from urllib.parse import unquote, urlsplit

from pfs.errors import DamagedError, StoreError, StoreLockedError
from pfs.registry.base import FileTable, PartTable, SessionTable
from pfs.registry.records import FILE_FIELDS, BadRecord, FileEntry, Manifest

log = logging.getLogger("pfs")

#: Seconds after its last heartbeat that a session counts as dead, unless the store's settings say otherwise.
SESSION_TTL = 30.0

#: The SQL type of each FileEntry field: a field added to FileEntry needs its type here,
#: and becomes a column of existing stores at their next open.
_COLUMN_TYPES = {"id": "bigint PRIMARY KEY", "name": "text", "size": "bigint", "status": "text", "parts": "bigint",
                 "chunk_size": "bigint", "codec": "text", "hash": "text", "uuid": "text",
                 "created": "double precision", "stored": "bigint", "digest": "text", "reason": "text",
                 "mode": "integer", "mtime": "bigint", "session": "text",
                 "copies": "integer", "ec": "text"}
_PART_COLUMNS = ["index", "id", "offset", "size", "stored", "codec", "hash", "volume", "status", "copies", "shards"]
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
CREATE TABLE IF NOT EXISTS pfs_sessions (
    id text PRIMARY KEY, pid integer NOT NULL, host text NOT NULL,
    started timestamptz NOT NULL DEFAULT now(), heartbeat timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS pfs_schema (version text NOT NULL);
"""
#: Which schema a database holds: opening one that is current runs no DDL.
SCHEMA_VERSION = xxhash.xxh3_64_hexdigest(SCHEMA.encode())

_FILE_COLUMNS = ", ".join(f'"{c}"' for c in FILE_FIELDS)
#: A record written: one that becomes current under its name (new, renamed, or
#: now stored) takes a new current_seq, as the JSON registry moves it to the end.
_UPSERT_FILE = (f"INSERT INTO pfs_files ({_FILE_COLUMNS}, current_seq) "
                f"VALUES ({', '.join(['%s'] * len(FILE_FIELDS))}, nextval('pfs_current_seqs')) "
                f"ON CONFLICT (id) DO UPDATE SET "
                + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in FILE_FIELDS if c != "id")
                + ", current_seq = CASE WHEN pfs_files.name = EXCLUDED.name AND (pfs_files.status = 'stored' "
                  "OR EXCLUDED.status <> 'stored') THEN pfs_files.current_seq ELSE EXCLUDED.current_seq END")
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
    parts = urlsplit(uri)
    where = parts.netloc.rpartition("@")[2]
    user = f"{unquote(parts.username)}@" if parts.username else ""
    return f"{parts.scheme}://{user}{where}{parts.path}"


class Database:
    """One connection to the store's database, shared by the threads of this
    client one transaction at a time, reconnected after a failure. Every
    failure to reach the database is one StoreError saying so."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.name = describe(uri)
        self._lock = threading.RLock()
        self._conn = None
        self.session = ""  # set once registered: every transaction then proves it still is
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
        try:
            import psycopg
        except ImportError:
            raise StoreError("a PostgreSQL store needs the psycopg package",
                             "install it with `pip install 'pfs[postgres]'`") from None
        try:
            return psycopg.connect(self.uri, autocommit=True, connect_timeout=10, application_name="pfs")
        except psycopg.Error as exc:
            raise self.unreachable(exc) from None

    def unreachable(self, exc: BaseException) -> StoreError:
        reason = _first_line(exc) or "the connection failed"
        return StoreError(f"cannot reach the database {self.name}: {reason}",
                          "check that the server runs and accepts connections; nothing was changed by the "
                          "command that failed")

    @contextlib.contextmanager
    def transaction(self, check_session: bool = True) -> Iterator:
        """A cursor inside one transaction: committed whole, or rolled back whole."""
        import psycopg

        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self.connect()
                with self._conn.transaction(), self._conn.cursor() as cur:
                    if check_session and self.session:
                        cur.execute("SELECT 1 FROM pfs_sessions WHERE id = %s FOR SHARE", (self.session,))
                        if cur.fetchone() is None:
                            raise StoreError("this pfs lost its session on the store (no heartbeat within the "
                                             "session TTL), and another pfs rolled back its unfinished work",
                                             "run the command again")
                    yield cur
            except psycopg.OperationalError as exc:
                self._drop()
                raise self.unreachable(exc) from None
            except psycopg.Error as exc:
                raise StoreError(f"the database {self.name} refused an update: {_first_line(exc)}") from None

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def settings(self) -> dict:
        """The store's settings (empty for a new store)."""
        with self.transaction(check_session=False) as cur:
            cur.execute("SELECT key, value FROM pfs_settings")
            settings = dict(cur.fetchall())
            cur.execute("SELECT path FROM pfs_volumes ORDER BY index")
            volumes = [row[0] for row in cur.fetchall()]
        return {**settings, "volumes": volumes} if settings else {}

    def create(self, settings: dict) -> dict:
        """Record the settings of a new store, unless another client did first; the settings that hold."""
        from psycopg.types.json import Jsonb

        with self.transaction(check_session=False) as cur:
            cur.execute("LOCK TABLE pfs_settings IN EXCLUSIVE MODE")
            cur.execute("SELECT count(*) FROM pfs_settings")
            if cur.fetchone()[0] == 0:
                for key, value in settings.items():
                    if key != "volumes":
                        cur.execute("INSERT INTO pfs_settings VALUES (%s, %s)", (key, Jsonb(value)))
                for index, path in enumerate(settings["volumes"]):
                    cur.execute("INSERT INTO pfs_volumes VALUES (%s, %s)", (index, path))
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

    @staticmethod
    def _write(cur, entry: FileEntry) -> None:
        FileEntry.from_dict(asdict(entry))  # only a valid record is written (BadRecord otherwise)
        cur.execute(_UPSERT_FILE, astuple(entry))

    def remove(self, file_id: int) -> None:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM pfs_files WHERE id = %s", (file_id,))

    def get(self, file_id: int) -> FileEntry | None:
        found = self._select("WHERE id = %s", (file_id,))
        return found[0] if found else None

    def all(self) -> list[FileEntry]:
        return self._select("ORDER BY id", ())

    def named(self, name: str) -> list[FileEntry]:
        """Rows of stores older than current_seq (NULL) first, in id order."""
        return self._select(f"WHERE {_NAME} = %s ORDER BY current_seq NULLS FIRST, id", (name,))

    def named_each(self, names: list[str]) -> dict[str, list[FileEntry]]:
        """One query for all the names, not one per name."""
        found: dict[str, list[FileEntry]] = {name: [] for name in names}
        for entry in self._select(f"WHERE {_NAME} = ANY(%s) ORDER BY current_seq NULLS FIRST, id", (list(names),)):
            found[entry.name].append(entry)
        return found

    def under(self, prefix: str, recursive: bool = False) -> tuple[list[str], list[str]]:
        with self._db.transaction(check_session=False) as cur:
            cur.execute(f"SELECT DISTINCT {_ENTRY} AS entry FROM pfs_files WHERE {_NAME} LIKE %(like)s ESCAPE '\\' "
                        "ORDER BY entry", {"flat": not recursive, "n": len(prefix), "like": _like_prefix(prefix)})
            found = [row[0] for row in cur.fetchall()]
        return [e for e in found if not e.endswith("/")], [e for e in found if e.endswith("/")]

    def _select(self, where: str, args: tuple) -> list[FileEntry]:
        with self._db.transaction(check_session=False) as cur:
            cur.execute(f"SELECT {_FILE_COLUMNS} FROM pfs_files {where}", args)
            rows = [list(row) for row in cur.fetchall()]
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
        from psycopg.types.json import Jsonb

        file_id = manifest.file.id
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM pfs_manifests WHERE file_id = %s", (file_id,))
            cur.execute("INSERT INTO pfs_manifests VALUES (%s, %s)", (file_id, Jsonb(asdict(manifest.file))))
            columns = ", ".join(f'"{c}"' for c in _PART_COLUMNS)
            with cur.copy(f"COPY pfs_parts (file_id, {columns}) FROM STDIN") as copy:
                for part in manifest.parts:
                    row = asdict(part)
                    copy.write_row((file_id, *(Jsonb(row[c]) if c in _JSON_PART_COLUMNS else row[c]
                                               for c in _PART_COLUMNS)))

    def load(self, file_id: int) -> Manifest | None:
        columns = ", ".join(f'"{c}"' for c in _PART_COLUMNS)
        with self._db.transaction(check_session=False) as cur:
            cur.execute("SELECT file FROM pfs_manifests WHERE file_id = %s", (file_id,))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(f'SELECT {columns} FROM pfs_parts WHERE file_id = %s ORDER BY "index"', (file_id,))
            parts = [dict(zip(_PART_COLUMNS, r)) for r in cur.fetchall()]
        try:
            return Manifest.from_dict({"file": row[0], "parts": parts}, file_id)
        except BadRecord as exc:
            raise DamagedError(f"the manifest of file {file_id} in {self._db.name} is damaged ({exc})") from exc

    def remove(self, file_id: int) -> None:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM pfs_manifests WHERE file_id = %s", (file_id,))

    def ids(self) -> list[int]:
        with self._db.transaction(check_session=False) as cur:
            cur.execute("SELECT file_id FROM pfs_manifests ORDER BY file_id")
            return [row[0] for row in cur.fetchall()]

    def highest_id(self) -> int:
        with self._db.transaction(check_session=False) as cur:
            cur.execute("SELECT coalesce(max(file_id), 0) FROM pfs_manifests")
            return cur.fetchone()[0]

    def where(self, file_id: int) -> str:
        return f"pfs_parts of file {file_id} in {self._db.name}"


def _session_key(session: str) -> int:
    """The advisory lock key of a session (the two-key form: apart from file ids):
    its first 32 bits as a signed integer, as SQL reads them."""
    key = int(session[:8], 16)
    return key - (1 << 32) if key >= 1 << 31 else key


#: The first advisory lock key of a session lock (file holds use one bigint key: another space).
_SESSION_LOCKS = 0x7066


class DatabaseSessions(SessionTable):
    """pfs_sessions: a row per client, kept fresh by a heartbeat thread whose
    connection holds the session's advisory lock."""

    def __init__(self, db: Database, ttl: float = SESSION_TTL) -> None:
        self._db = db
        self.ttl = ttl
        self.id = uuid.uuid4().hex[:16]
        self._conn = None
        try:
            self._connect()  # the lock first: the row never shows without it
            self._conn.execute("INSERT INTO pfs_sessions (id, pid, host) VALUES (%s, %s, %s)",
                               (self.id, os.getpid(), socket.gethostname()))
        except psycopg_errors() as exc:
            raise db.unreachable(exc) from None
        db.session = self.id
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="pfs-heartbeat", daemon=True)
        self._beat.start()

    def _connect(self) -> None:
        self._conn = self._db.connect()
        self._conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_SESSION_LOCKS, _session_key(self.id)))

    def _beat_once(self) -> None:
        """Refresh our heartbeat (connecting, and taking our lock, first if needed)."""
        if self._conn is None or self._conn.closed:
            self._connect()
        self._conn.execute("UPDATE pfs_sessions SET heartbeat = now() WHERE id = %s", (self.id,))

    def _heartbeat(self) -> None:
        """Beat every third of the TTL, on a connection of its own (a long
        transaction of another thread must not delay it)."""
        while not self._stop.wait(self.ttl / 3):
            try:
                self._beat_once()
            except Exception as exc:  # noqa: BLE001 -- the next beat retries; commands report the failure
                log.warning("session heartbeat failed: %s", exc)
                with contextlib.suppress(Exception):
                    self._conn.close()

    def holders(self) -> list[str]:
        with self._db.transaction(check_session=False) as cur:
            cur.execute("SELECT pid, host FROM pfs_sessions WHERE id <> %s AND heartbeat >= now() - "
                        "make_interval(secs => %s) ORDER BY started", (self.id, self.ttl))
            return [f"pid {pid} on {host}" for pid, host in cur.fetchall()]

    @contextlib.contextmanager
    def claim_dead(self) -> Iterator[Callable[[str], bool]]:
        """Dead sessions are locked (FOR UPDATE, in a transaction on a connection of
        its own) for the whole block, so other clients neither claim them nor find
        them gone, and deleted at its end."""
        conn = self._db.connect()
        try:
            with conn.transaction():
                claimed = {row[0] for row in conn.execute(
                    "SELECT id FROM pfs_sessions WHERE id <> %s AND (heartbeat < now() - make_interval(secs => %s) "
                    "OR pg_try_advisory_xact_lock(%s, ('x' || left(id, 8))::bit(32)::integer)) FOR UPDATE SKIP LOCKED",
                    (self.id, self.ttl, _SESSION_LOCKS))}

                def dead(session: str) -> bool:
                    if session == "" or session in claimed:
                        return True
                    with self._db.transaction(check_session=False) as cur:
                        cur.execute("SELECT 1 FROM pfs_sessions WHERE id = %s", (session,))
                        return cur.fetchone() is None

                yield dead
                conn.execute("DELETE FROM pfs_sessions WHERE id = ANY(%s)", (list(claimed),))
        except psycopg_errors() as exc:
            raise self._db.unreachable(exc) from None
        finally:
            conn.close()

    @contextlib.contextmanager
    def hold(self, file_id: int, exclusive: bool) -> Iterator[None]:
        """An advisory lock on the file id, on a connection of its own: it is
        released when the operation ends, or when this client dies."""
        import psycopg

        conn = self._db.connect()
        try:
            try:
                if exclusive:
                    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (file_id,)).fetchone()[0]
                    if not got:
                        raise StoreLockedError("it is being read by a get or verify (of this pfs or another)",
                                               "try again once it is done")
                else:
                    conn.execute("SELECT pg_advisory_lock_shared(%s)", (file_id,))
            except psycopg.OperationalError as exc:
                raise self._db.unreachable(exc) from None
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._beat.join()
        with contextlib.suppress(Exception):
            self._conn.close()
        with contextlib.suppress(StoreError):
            with self._db.transaction(check_session=False) as cur:
                cur.execute("DELETE FROM pfs_sessions WHERE id = %s", (self.id,))
        self._db.session = ""

