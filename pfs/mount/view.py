"""What a path of the mount is: stored names are paths (`a/b/c`), so a
directory is any prefix some stored name has, as `list` shows it, plus the
empty directories made through this mount (kept while it runs)."""

from __future__ import annotations

import errno

from pfs import names
from pfs.errors import UsageError
from pfs.registry import FileEntry
from pfs.store.core import Store

#: Where files unlinked while open wait for their last close (never listed).
HIDDEN = ".pfs-mount"


def name_of(path: str) -> str:
    """The stored name of a mount path ("/a/b" -> "a/b"; the root is "")."""
    name = path.strip("/")
    if name:
        try:
            names.check(name)
        except UsageError as exc:
            too_long = "longer than" in exc.message
            raise OSError(errno.ENAMETOOLONG if too_long else errno.EINVAL, exc.message) from None
    return name


def parent_of(name: str) -> str:
    return name.rpartition("/")[0]


class Namespace:
    """Stored files and directories by name, as every pfs sees them now."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.made: set[str] = set()  # empty directories made here

    def file(self, name: str) -> FileEntry | None:
        return self.store.files.current(name) if name else None

    def is_dir(self, name: str) -> bool:
        if not name or name in self.made:
            return True
        return bool(self.store.files.under(name + "/", recursive=True)[0])

    def children(self, name: str) -> tuple[list[str], list[str]]:
        """(file names, directory names) directly inside directory `name`, without the path."""
        prefix = name + "/" if name else ""
        files, dirs = self.store.files.under(prefix)
        cut = len(prefix)
        found_files = [f[cut:] for f in files]
        found_dirs = {d[cut:-1] for d in dirs}
        found_dirs.update(m[cut:] for m in self.made if parent_of(m) == name)
        if not name:
            found_dirs.discard(HIDDEN)
        return found_files, sorted(found_dirs)

    def forget_made(self, name: str) -> None:
        """A made directory that stored names now imply (or that moved) needs no keeping."""
        self.made = {m for m in self.made if m != name and not m.startswith(name + "/")}

    def check_parent(self, name: str) -> None:
        """ENOENT unless the directory a new name goes into exists, ENOTDIR if it is a file."""
        parent = parent_of(name)
        if self.file(parent) is not None:
            raise OSError(errno.ENOTDIR, parent)
        if not self.is_dir(parent):
            raise OSError(errno.ENOENT, parent)
