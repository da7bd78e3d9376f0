"""pfs as an fsspec filesystem, registered for the protocol `pfs`:

    fsspec.filesystem("pfs", store="/data/store")
    fsspec.open("pfs://logs/app.log", store="/data/store")
    pandas.read_csv("pfs://logs/app.csv", storage_options={"store": "/data/store"})

The store defaults, as in the shell, to $PFS_STORE or the user data directory.
A URL's path is the stored name; directories are implied by the names (like
S3 prefixes), or recorded by put -r (then an empty one exists too). A
recursive put, get or rm of one directory is one put_tree, get_tree or
delete_tree, not a call per file; symlinks stored by put -r are links.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from datetime import datetime, timezone
from glob import has_magic

from pfs import extras

try:
    from fsspec import AbstractFileSystem
    from fsspec.callbacks import DEFAULT_CALLBACK
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


def _raise_problems(result: api.TreeResult, path: str) -> None:
    """A tree operation's failures as the OSError fsspec's callers expect (the rest was done)."""
    if result.problems:
        raise OSError(f"{path}: {len(result.problems)} failed: " + "; ".join(result.problems[:8]))


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
            return {"name": info.name.rstrip("/"), "size": 0, "type": "directory", "islink": False}
        if info.kind == "symlink":  # stored as a link, never followed (put -r)
            return {"name": info.name, "size": 0, "type": "link", "islink": True, "destination": info.target,
                    "id": info.id, "created": info.created, "mtime": info.mtime}
        return {"name": info.name, "size": info.size, "type": "file", "islink": False, "id": info.id,
                "created": info.created, "mtime": info.mtime, "digest": info.digest}

    def islink(self, path: str) -> bool:
        return self.info(path).get("islink", False) if self.exists(path) else False

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
        entries = [self._file_info(found)] if found is not None and not found.is_dir else []
        with _as_os_errors(path):
            entries += [self._file_info(i) for i in self.store.list(path)]
        if not entries and path and found is None:
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

    # -- whole trees: one put_tree, get_tree or delete_tree, not a call per file --------
    def put(self, lpath, rpath, recursive: bool = False, callback=DEFAULT_CALLBACK, maxdepth=None, **kwargs) -> None:
        """A local directory put recursively is stored as put -r stores it (its
        directories, empty ones too, and symlinks as links), at the place
        fsspec's rules give it: into `rpath` as `rpath/NAME` when rpath is a
        directory (and lpath has no trailing slash), else as `rpath` itself."""
        if not self._whole(lpath, rpath, recursive, maxdepth) or not os.path.isdir(lpath) or os.path.islink(lpath):
            return super().put(lpath, rpath, recursive=recursive, callback=callback, maxdepth=maxdepth, **kwargs)
        dest, name = self._strip_protocol(rpath).rstrip("/"), os.path.basename(os.path.abspath(lpath))
        if not lpath.endswith("/") and (rpath.endswith("/") or self.isdir(dest)):
            dest = f"{dest}/{name}".lstrip("/")
        if not dest:  # the contents of lpath at the top: file by file
            return super().put(lpath, rpath, recursive=recursive, callback=callback, maxdepth=maxdepth, **kwargs)
        _raise_problems(self.store.put_tree(lpath, dest), lpath)

    def get(self, rpath, lpath, recursive: bool = False, callback=DEFAULT_CALLBACK, maxdepth=None, **kwargs) -> None:
        """A stored directory got recursively is rebuilt as get -r rebuilds it (in
        batches, symlinks as links, modes and mtimes), at the place fsspec's
        rules give it, over files already there."""
        source = self._strip_protocol(rpath) if isinstance(rpath, str) else ""
        found = self._current(source.rstrip("/"))
        if not self._whole(rpath, lpath, recursive, maxdepth) or not source.rstrip("/") or \
                (found is not None and not found.is_dir) or not self.isdir(source):
            return super().get(rpath, lpath, recursive=recursive, callback=callback, maxdepth=maxdepth, **kwargs)
        dest = lpath.rstrip("/") or "/"
        if not rpath.endswith("/") and (lpath.endswith("/") or os.path.isdir(dest)):
            dest = os.path.join(dest, source.rstrip("/").rsplit("/", 1)[-1])
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        _raise_problems(self.store.get_tree(source.rstrip("/"), dest, force=True), source)

    @staticmethod
    def _whole(source, dest, recursive: bool, maxdepth) -> bool:
        """Whether a copy is of one whole tree: recursive, to any depth, one path each, no wildcards."""
        return recursive and maxdepth is None and isinstance(source, str) and isinstance(dest, str) and \
            not has_magic(source)

    def rm(self, path, recursive: bool = False, maxdepth=None) -> None:
        """Remove the files a path expands to; a directory goes away with the last
        name under it (recursively, in one delete_tree). As LocalFileSystem:
        nothing there is FileNotFoundError, a directory without `recursive` a ValueError."""
        if self._whole(path, "", recursive, maxdepth) and self._strip_protocol(path).rstrip("/"):
            tree = self._strip_protocol(path).rstrip("/")
            if self.isdir(tree):
                return _raise_problems(self.store.delete_tree(tree), tree)
        for p in self.expand_path(path, recursive=recursive, maxdepth=maxdepth):
            if self._current(p) is not None:
                self.rm_file(p)
            elif not self.isdir(p):
                raise FileNotFoundError(p)
            elif not recursive:
                raise ValueError(f"Cannot delete directory {p}, set recursive=True")

    def rm_file(self, path: str) -> None:
        """Remove a file; the directories recorded above it (put -r records them)
        that it leaves empty go with it, as a directory goes with its last name."""
        path = self._strip_protocol(path)
        with _as_os_errors(path):
            self.store.delete(self._name(path))
        parent = path.rpartition("/")[0]
        while parent and (found := self._current(parent)) is not None and found.is_dir and \
                self.store.core.under(parent + "/") == ([], []):
            self.store.delete(found.id)
            parent = parent.rpartition("/")[0]

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
