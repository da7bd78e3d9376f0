"""The registries as JSON files in the store's directory (processes of one machine).

common: the directory's file names and the durable-write, damage and session helpers;
journal: the append-only journal of file records; filemap: the records as a process read them;
files: FileRegistry (snapshot + journal); parts: PartRegistry (manifests); sessions: SessionFiles.
"""

from pfs.registry.jsonfiles.common import (FILES_LOCK, JOURNAL, MANIFESTS, RESERVE, SCRATCH, SESSIONS, SNAPSHOT,
                                           damaged, fsync_dir, fsync_file, live_sessions, pid_alive, read_json,
                                           write_json_atomic)
from pfs.registry.jsonfiles.files import FileRegistry
from pfs.registry.jsonfiles.journal import MIN_COMPACT_BYTES
from pfs.registry.jsonfiles.parts import PartRegistry
from pfs.registry.jsonfiles.sessions import SessionFiles

__all__ = ["FILES_LOCK", "FileRegistry", "JOURNAL", "MANIFESTS", "MIN_COMPACT_BYTES", "PartRegistry", "RESERVE",
           "SCRATCH", "SESSIONS", "SNAPSHOT", "SessionFiles", "damaged", "fsync_dir", "fsync_file", "live_sessions",
           "pid_alive", "read_json", "write_json_atomic"]
