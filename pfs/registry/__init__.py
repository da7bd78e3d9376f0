"""The store's metadata: file records, part manifests, sessions, and where they are kept.

records: the record types and their validation, shared by every registry;
names: the name index (names as paths) a registry keeps in memory;
snapshot: the JSON registry's snapshot format (columns decoded when asked for);
base: the contract every registry keeps (FileTable, PartTable, SessionTable);
jsonfiles: the registries as files in the store's directory (processes of one machine);
postgres: the registries as tables of a PostgreSQL database (clients on many machines).
"""

from pfs.registry.base import FileTable, PartTable, SessionTable
from pfs.registry.jsonfiles import (FILES_LOCK, JOURNAL, MANIFESTS, MIN_COMPACT_BYTES, RESERVE, SCRATCH, SESSIONS,
                                    SNAPSHOT, FileRegistry, PartRegistry, SessionFiles, damaged, fsync_dir, fsync_file,
                                    live_sessions, pid_alive, read_json, write_json_atomic)
from pfs.registry.names import NameIndex
from pfs.registry.records import (BLOCK, CHAR, DELETING, DIR, FAILED, FIFO, FILE, HARDLINKS, HOLDING, KINDS, LINK,
                                  MAX_COPIES, MAX_INT, MAX_PARTS, SOCKET, SPECIAL, STATUSES, STORED, STORING, SYMLINK,
                                  BadRecord, FileEntry, Manifest, PartEntry, bulk,
                                  parse_ec, part_id)
from pfs.registry.snapshot import is_sealed

__all__ = ["BLOCK", "BadRecord", "CHAR", "DELETING", "DIR", "FAILED", "FIFO", "FILE", "FILES_LOCK", "FileEntry",
           "FileRegistry", "FileTable", "HARDLINKS", "HOLDING", "LINK", "SOCKET", "SPECIAL", "JOURNAL", "KINDS", "MANIFESTS", "MAX_COPIES", "MAX_INT", "MAX_PARTS", "MIN_COMPACT_BYTES",
           "Manifest", "NameIndex", "PartEntry", "PartRegistry", "PartTable", "RESERVE", "SCRATCH", "SESSIONS",
           "SNAPSHOT", "STATUSES", "STORED", "STORING", "SYMLINK", "SessionFiles", "SessionTable", "bulk", "damaged",
           "fsync_dir", "fsync_file", "is_sealed", "live_sessions", "parse_ec", "part_id", "pid_alive", "read_json",
           "write_json_atomic"]
