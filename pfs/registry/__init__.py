"""The store's metadata: file records, part manifests, and where they are kept.

records: the record types and their validation, shared by every registry;
jsonfiles: the registries as JSON files in the store's directory.
"""

from pfs.registry.jsonfiles import (JOURNAL, MANIFESTS, MIN_COMPACT_BYTES, RESERVE, SNAPSHOT, FileRegistry,
                                    PartRegistry, damaged, fsync_dir, fsync_file, read_json, write_json_atomic)
from pfs.registry.records import (DELETING, FAILED, MAX_INT, MAX_PARTS, STATUSES, STORED, STORING, BadRecord,
                                  FileEntry, Manifest, PartEntry)

__all__ = ["DELETING", "FAILED", "JOURNAL", "MANIFESTS", "MAX_INT", "MAX_PARTS", "MIN_COMPACT_BYTES", "RESERVE",
           "SNAPSHOT", "STATUSES", "STORED", "STORING", "BadRecord", "FileEntry", "FileRegistry", "Manifest",
           "PartEntry", "PartRegistry", "damaged", "fsync_dir", "fsync_file", "read_json", "write_json_atomic"]
