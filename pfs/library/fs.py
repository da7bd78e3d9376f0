"""pfs as an fsspec filesystem, registered for the protocol `pfs`:

    fsspec.filesystem("pfs", store="/data/store")
    fsspec.open("pfs://logs/app.log", store="/data/store")
    pandas.read_csv("pfs://logs/app.csv", storage_options={"store": "/data/store"})

The store defaults, as in the shell, to $PFS_STORE or the user data directory.
A URL's path is the stored name; directories are implied by the names (like
S3 prefixes), so there are no empty directories.
"""

from __future__ import annotations

import contextlib
import shutil
from datetime import datetime, timezone
from glob import has_magic

from pfs import extras

try:
    from fsspec import AbstractFileSystem
except ModuleNotFoundError as exc:
    if not (exc.name or "").startswith("fsspec"):
        raise
    raise extras.missing("fsspec", "pfs:// URLs (fsspec)") from None

from pfs.library import api
from pfs.errors import NotFoundError, UsageError

#: pfs.open's options a filesystem takes (as storage_options too): workers and memory, and how new files are stored.
_OPEN_OPTIONS = ("workers", "max_memory", "chunk_size", "codec", "copies", "ec")


@contextlib.contextmanager
def _as_os_errors(path: str):
    """pfs's typed errors as the OSErrors fsspec's callers expect."""
    try:
        yield
    except NotFoundError as exc:
        raise FileNotFoundError(str(exc), path) from exc


class PfsFileSystem(AbstractFileSystem):
    """A pfs store as an fsspec filesystem. Reads are random access and verified
    part by part; writes stream and the file appears when it is closed, or
    when its transaction ends well; a write that fails leaves nothing."""

    protocol = "pfs"
    root_marker = ""

    def __init__(self, store: str | None = None, **kwargs) -> None:
        super().__init__(store=store, **kwargs)
        self.store = api.open(store, **{k: kwargs[k] for k in _OPEN_OPTIONS if k in kwargs})

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return super()._strip_protocol(path).lstrip("/")

    def _file_info(self, info: api.FileInfo) -> dict:
        if info.is_dir:
            return {"name": info.name.rstrip("/"), "size": 0, "type": "directory"}
        return {"name": info.name, "size": info.size, "type": "file", "id": info.id, "created": info.created,
                "mtime": info.mtime, "digest": info.digest}

    def _current(self, path: str) -> api.FileInfo | None:
        """The stored file a path names, or None (a directory, or nothing)."""
        if not path:
            return None
        try:
            return self.store.info(self._name(path))
        except (NotFoundError, UsageError):
            return None

    def ls(self, path: str, detail: bool = True, **kwargs):
        """A file lists as itself, a directory as what is in it; a name that is
        both (a store made before names were paths may hold `a` and `a/b`)
        lists as both, so that walk, find, glob and rm -r reach everything."""
        path = self._strip_protocol(path)
        found = self._current(path)
        entries = [self._file_info(found)] if found is not None else []
        with _as_os_errors(path):
            entries += [self._file_info(i) for i in self.store.list(path)]
        if not entries and path:
            raise FileNotFoundError(path)
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs) -> dict:
        path = self._strip_protocol(path)
        found = self._current(path)
        if found is not None:
            return self._file_info(found)
        if not path or self.store.list(path):
            return {"name": path, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def _open(self, path: str, mode: str = "rb", block_size=None, autocommit: bool = True,
              cache_options=None, **kwargs):
        path = self._strip_protocol(path)
        if mode == "xb":
            if self.exists(path):
                raise FileExistsError(path)
            mode = "wb"
        if mode not in ("rb", "wb"):
            raise NotImplementedError(f"pfs files open as 'rb', 'wb' or 'xb', not {mode!r}")
        if self._current(path) is None and self.isdir(path):
            raise IsADirectoryError(path)
        with _as_os_errors(path):
            if mode == "rb":
                return self.store.open(self._name(path))
            return self.store.open(self._name(path), "wb", autocommit=autocommit)  # a transaction commits it

    def _name(self, path: str) -> str:
        """A path as the API's name for it: a path is never an id, even all digits."""
        return "/" + path

    def cp_file(self, path1: str, path2: str, **kwargs) -> None:
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if self.isdir(path1):
            return  # directories are implied by the names copied into them
        if path1 == path2 and self.isfile(path1):
            raise shutil.SameFileError(f"{path1!r} and {path2!r} are the same file")
        # a copy is made at once, inside a transaction too, as fsspec's own filesystems copy
        with self.open(path1, "rb") as src, self.open(path2, "wb", autocommit=True) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    def mv(self, path1, path2, recursive: bool = False, maxdepth=None, **kwargs) -> None:
        """A file is renamed without moving its data; anything else is copied, then
        removed. As LocalFileSystem: nothing there is FileNotFoundError, a directory
        moves whole (recursive or not), and one moved into itself is refused (its
        copy would be removed with it)."""
        if isinstance(path1, str) and isinstance(path2, str):
            source, dest = self._strip_protocol(path1), self._strip_protocol(path2)
            if self.isfile(source):
                if self.isdir(dest) or kwargs.get("trailing_slash"):
                    dest = f"{dest}/{source.rsplit('/', 1)[-1]}"
                    if dest != source and self.isfile(dest):  # into a directory: never over a file, as shutil.move
                        raise shutil.Error(f"Destination path {dest!r} already exists")
                if source != dest:
                    self.store.mv(self._name(source), dest)
                return
            if source != dest and dest.startswith(source + "/" if source else ""):
                raise shutil.Error(f"Cannot move a directory {source!r} into itself {dest!r}.")
            if not has_magic(source) and not self.exists(source):
                raise FileNotFoundError(source)
            recursive = recursive or not has_magic(source)  # a directory moves whole, as shutil.move moves it
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)

    def rm(self, path, recursive: bool = False, maxdepth=None) -> None:
        """Remove the files a path expands to; a directory goes away with the last
        name under it. As LocalFileSystem: nothing there is FileNotFoundError,
        a directory without `recursive` a ValueError."""
        for p in self.expand_path(path, recursive=recursive, maxdepth=maxdepth):
            if self._current(p) is not None:
                self.rm_file(p)
            elif not self.isdir(p):
                raise FileNotFoundError(p)
            elif not recursive:
                raise ValueError(f"Cannot delete directory {p}, set recursive=True")

    def rm_file(self, path: str) -> None:
        path = self._strip_protocol(path)
        with _as_os_errors(path):
            self.store.delete(self._name(path))

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rmdir(self, path: str) -> None:
        pass  # directories are implied by the names under them

    def mkdir(self, path: str, create_parents: bool = True, **kwargs) -> None:
        pass

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        if self.isfile(path):
            raise FileExistsError(path)

    def created(self, path: str) -> datetime:
        return datetime.fromtimestamp(self.info(path)["created"], timezone.utc)

    def modified(self, path: str) -> datetime:
        return datetime.fromtimestamp(self.info(path)["mtime"], timezone.utc)

    def ukey(self, path: str) -> str:
        """A stored file's digest: it changes whenever its contents do."""
        return self.info(path)["digest"]
