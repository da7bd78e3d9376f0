"""The registries as JSON files in the store's directory (processes of one machine)."""

from pfs.registry.jsonfiles.files import (FILES_LOCK, JOURNAL, MANIFESTS, MIN_COMPACT_BYTES, RESERVE, SCRATCH, SESSIONS,
                                          SNAPSHOT, FileRegistry, PartRegistry, SessionFiles, damaged, fsync_dir,
                                          fsync_file, live_sessions, pid_alive, read_json, write_json_atomic)

__all__ = ["FILES_LOCK", "FileRegistry", "JOURNAL", "MANIFESTS", "MIN_COMPACT_BYTES", "PartRegistry", "RESERVE",
           "SCRATCH", "SESSIONS", "SNAPSHOT", "SessionFiles", "damaged", "fsync_dir", "fsync_file", "live_sessions",
           "pid_alive", "read_json", "write_json_atomic"]
