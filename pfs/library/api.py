"""The Python API: a store opened from Python, over the same engine the shell uses.

    import pfs

    with pfs.open("/data/store") as store:
        store.put("app.log", "logs/2026/app.log")
        with store.open("logs/2026/app.log") as f:   # random access: seek, read, readinto
            f.seek(1000)
            head = f.read(100)
        with store.open("logs/summary.txt", "wb") as f:  # streamed: bounded memory
            f.write(b"...")
        for item in store.list("logs", recursive=True):
            print(item.name, item.size)
        done = store.put_tree("photos", "backup/photos")  # a whole directory (put -r)
        store.get_tree("backup/photos", "restored")       # and back (get -r)

A file is named by its path in the store or by its id (an int, or a string of
digits). Failures raise the typed errors of pfs.errors (NotFoundError,
UsageError, IntegrityError, StoreLockedError, ...), all PfsErrors.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pfs.crypto.opening import StoreKeys
from pfs.crypto.passwords import Passwords
from pfs.names import is_id
from pfs.registry import STORED, FileEntry
from pfs.registry.postgres import is_database
from pfs.store.checking import Damage
from pfs.store.facade import Store as _Core
from pfs.store.opening import default_root

Ref = str | int


@dataclass(frozen=True)
class TreeResult:
    """What put_tree or get_tree did: counts, and one line per path that failed
    (empty when everything under the tree was stored or restored)."""

    done: int
    unchanged: int
    skipped: dict[str, int]
    failed: int
    bytes: int
    problems: list[str]

    @classmethod
    def of(cls, tally, problems: list[str]) -> TreeResult:
        return cls(tally.stored, tally.unchanged, dict(tally.skipped), tally.failed, tally.bytes, problems)


@dataclass(frozen=True)
class FileInfo:
    """A stored entry: `name` is its path in the store. Directories' names end
    in `/`: a recorded one (put -r) has an id, one implied by the names under it
    only a name. `kind` is "file", "dir" or "symlink" (then `target` is its target)."""

    name: str
    id: int | None = None
    size: int = 0
    stored: int = 0
    parts: int = 0
    status: str = ""
    created: float = 0.0
    mtime: float | None = None
    digest: str = ""
    kind: str = "dir"
    target: str = ""

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @classmethod
    def of(cls, entry: FileEntry) -> FileInfo:
        mtime = entry.mtime / 1e9 if entry.mtime is not None else None
        return cls(entry.name + "/" if entry.is_dir else entry.name, entry.id, entry.size, entry.stored, entry.parts,
                   entry.status, entry.created, mtime, entry.digest, entry.kind, entry.target)


class _BufferedReader(io.BufferedReader):
    """A buffered reader that also tells the file's size, as fsspec files do."""

    @property
    def size(self) -> int:
        return self.raw.size


def open(path: str | os.PathLike | None = None, *, workers: int = os.cpu_count() or 1,
         max_memory: int = 256 << 20, chunk_size: int | None = None, codec: str | None = None,
         copies: int | None = None, ec: str | None = None, encrypt: bool = False,
         password_file: str | os.PathLike | None = None, recipient_file: str | os.PathLike | None = None,
         encrypt_names: bool = False) -> Store:
    """Open (creating if new) the store at `path`, by default $PFS_STORE or the
    user data directory, as the shell does. Holds the store's lock until closed:
    use it as a context manager. `chunk_size`, `codec`, `copies` and `ec` (as
    --copies and --ec) apply to new files. An encrypted store (a new one with
    `encrypt`) takes its password from `password_file`, else $PFS_PASSWORD_FILE
    or $PFS_PASSWORD; with `recipient_file` (else $PFS_RECIPIENT_FILE) it is
    opened write-only, without a password; `encrypt_names` (with `encrypt`, for
    a new store) seals its names too (see docs/encryption.md)."""
    return Store(path, workers=workers, max_memory=max_memory, chunk_size=chunk_size, codec=codec, copies=copies,
                 ec=ec, encrypt=encrypt, password_file=password_file, recipient_file=recipient_file,
                 encrypt_names=encrypt_names)


class Store:
    """An open store. Every method is safe to call from several threads."""

    def __init__(self, path: str | os.PathLike | None = None, *, workers: int = os.cpu_count() or 1,
                 max_memory: int = 256 << 20, chunk_size: int | None = None, codec: str | None = None,
                 copies: int | None = None, ec: str | None = None, encrypt: bool = False,
                 password_file: str | os.PathLike | None = None,
                 recipient_file: str | os.PathLike | None = None, encrypt_names: bool = False) -> None:
        overrides = {k: v for k, v in (("chunk_size", chunk_size), ("codec", codec), ("copies", copies), ("ec", ec))
                     if v is not None}
        if path is not None and is_database(os.fspath(path)):
            root: Path | str = os.fspath(path)  # a PostgreSQL URI, not a directory named like one
        else:
            root = Path(path).expanduser() if path is not None else default_root()
        keys = StoreKeys(Passwords(password_file and os.fspath(password_file), interactive=False), encrypt,
                         recipient_file and os.fspath(recipient_file), encrypt_names)
        self.core = _Core(root, overrides, workers, max_memory, keys=keys)
        self.root = self.core.root

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and release the store's lock."""
        self.core.close()

    def put(self, source: str | os.PathLike, name: str | None = None, *, keep: bool = False) -> FileInfo:
        """Store a local file under `name` (default: its file name; a name ending
        in `/` receives it). A file already under that name is replaced once the
        new one is stored, and deleted unless `keep` (its id still reaches it)."""
        entry = self.core.begin_put(os.fspath(source), name)
        return FileInfo.of(self.core.finish_put(entry, os.fspath(source), keep=keep))

    def get(self, ref: Ref, dest: str | os.PathLike | None = None, *, force: bool = False) -> Path:
        """Restore a stored file to `dest` (a file or a directory; default: its
        name in the current directory), verified; returns the path written."""
        entry = self.core.resolve(ref)
        path, _ = self.core.get(entry.id, os.fspath(dest) if dest is not None else None, force)
        return path

    def delete(self, ref: Ref) -> None:
        """Remove a stored file and its parts (by name: only if the name still gives
        that file when the delete begins; a rename or replace meanwhile wins)."""
        entry = self.core.resolve(ref)
        self.core.delete(entry.id, seen=None if isinstance(ref, int) or is_id(ref) else entry)

    def mv(self, ref: Ref, new: str, *, keep: bool = False) -> FileInfo:
        """Rename a stored file without moving its data; a file already under the
        new name is replaced (deleted unless `keep`)."""
        return FileInfo.of(self.core.rename(ref, new, keep))

    def info(self, ref: Ref) -> FileInfo:
        """What is known of one file, by name or id."""
        return FileInfo.of(self.core.resolve(ref))

    def exists(self, ref: Ref) -> bool:
        """Whether a name (or id) reaches a stored file."""
        from pfs.errors import NotFoundError

        try:
            return self.core.resolve(ref).status == STORED
        except NotFoundError:
            return False

    def list(self, prefix: str = "", *, recursive: bool = False) -> list[FileInfo]:
        """The stored files under a directory (`logs`, `logs/`, or `` for the
        top), sorted by name, like a directory listing: without `recursive`,
        each subdirectory is one entry whose name ends in `/`."""
        names, dirs = self.core.under(prefix, recursive)
        files = [FileInfo.of(e) for e in map(self.core.files.current, names) if e is not None]
        recorded = {f.name for f in files}
        dirs = [d for d in dirs if d not in recorded and self._holds_a_stored_file(d)]  # not only files in writing
        return sorted(files + [FileInfo(d) for d in dirs], key=lambda i: i.name)

    def put_tree(self, source: str | os.PathLike, prefix: str | None = None) -> TreeResult:
        """Store the directory `source` and everything under it as PREFIX/...
        (default: its own name), as put -r does: files, directories, symlinks
        (never followed), with modes, mtimes and owners. A path that cannot be
        stored is one line of the result's `problems`; the rest is stored."""
        from pfs.store import trees

        problems: list[str] = []
        return TreeResult.of(trees.put_tree(self.core, os.fspath(source), prefix, report=problems.append), problems)

    def sync(self, source: str | os.PathLike, prefix: str, *, delete: bool = False, dry_run: bool = False,
             checksum: bool = False) -> TreeResult:
        """Store what is new or changed under the directory `source` as PREFIX/...,
        as the sync command does (size and mtime differ; with `checksum`, the
        contents); with `delete`, delete the stored names it no longer has."""
        from pfs.store import sync

        problems: list[str] = []
        tally = sync.sync_tree(self.core, os.fspath(source), prefix, delete, dry_run, checksum,
                               report=problems.append)
        return TreeResult.of(tally, problems)

    def get_tree(self, prefix: str, dest: str | os.PathLike | None = None, *, force: bool = False) -> TreeResult:
        """Rebuild the tree stored under `prefix` at `dest` (default: its last
        segment in the current directory), as get -r does; existing files are
        overwritten only with `force`. A damaged file is one line of `problems`."""
        from pfs.store import restoring

        problems: list[str] = []
        tally = restoring.get_tree(self.core, prefix, os.fspath(dest) if dest is not None else None, force,
                                   report=problems.append)
        return TreeResult.of(tally, problems)

    def delete_tree(self, prefix: str) -> TreeResult:
        """Delete `prefix` and everything under it, as delete -r does (older
        versions and failed puts included); what cannot be deleted now (being
        stored, or read by a get) is one line of `problems`, and stays."""
        from pfs.store import tree_names

        problems: list[str] = []
        return TreeResult.of(tree_names.delete_tree(self.core, prefix, report=problems.append), problems)

    def _holds_a_stored_file(self, directory: str) -> bool:
        names, _ = self.core.under(directory, recursive=True)
        return any(self.core.files.current(name) is not None for name in names)

    def verify(self, ref: Ref) -> list[Damage]:
        """Check every part of a stored file; returns the damage found (none: [])."""
        return self.core.verify(self.core.resolve(ref).id).damage

    def open(self, ref: Ref, mode: str = "rb", *, keep: bool = False, autocommit: bool = True) -> BinaryIO:
        """A stored file as a binary file object. "rb": random access (seek, read,
        readinto); every part read is verified first, and a damaged one raises an
        IntegrityError naming the file, part and byte range. "wb": a new file
        under the name `ref`, streamed in bounded memory; it is stored, replacing
        any file of that name, only when closed without an error (an exception
        on its way out of the writing abandons it). Without `autocommit`, it is
        stored by its commit() after the close, or dropped by discard()."""
        if mode == "rb":
            from pfs.library.reader import Reader

            entry = self.core.stored_entry(self.core.resolve(ref).id)
            return _BufferedReader(Reader(self.core, entry), 1 << 16)
        if mode == "wb":
            from pfs.library.writer import Writer

            return Writer(self.core, str(ref), keep, autocommit)
        raise ValueError(f"mode must be 'rb' or 'wb', not {mode!r}")
