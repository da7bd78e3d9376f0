"""The name index every registry keeps: stored names -> file ids."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from pfs.errors import NameConflictError


def ancestors(name: str) -> list[str]:
    """The directories a name lies in, outermost first: `a/b/c` -> [`a`, `a/b`]."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def conflict(name: str, is_dir: bool, other: str, other_is_dir: bool) -> NameConflictError:
    """The refusal of a record named `name` that another (`other`) makes both a file and a directory."""
    if other != name and name.startswith(other + "/"):
        why = f"{other} is a file, not a directory"
    elif other == name:
        why = f"{name} is a {'directory' if other_is_dir else 'file'} already"
    else:
        why = f"{name} is a directory (it holds {other})"
    what = "directory" if is_dir else "file"
    return NameConflictError(f"cannot record the {what} {name}: {why}",
                             "a name is a file or a directory, never both: choose another name, or delete "
                             "what holds it first")


class NameIndex:
    """Stored names -> file ids, kept sorted so that listing a prefix costs the
    size of the answer, not of the store. Each name's ids are in the order they
    became current (stored, or renamed to the name): the last stored one is
    what the name resolves to, which also settles the duplicate names a store
    made before names were paths may hold. A name of one id keeps the id
    alone, not a list of it: a list is 88 bytes more a name, of a million."""

    def __init__(self, names: Iterable[tuple[str, int]]) -> None:
        """Index (name, file id) pairs given in the order they became current."""
        self._ids: dict[str, int | list[int]] = {}
        for name, file_id in names:
            self.add(name, file_id, sort=False)
        self._sorted = sorted(self._ids)

    def add(self, name: str, file_id: int, sort: bool = True) -> None:
        ids = self._ids.get(name)
        if ids is None:
            self._ids[name] = file_id
            if sort:
                bisect.insort(self._sorted, name)
        elif type(ids) is int:
            self._ids[name] = [ids, file_id]
        else:
            ids.append(file_id)

    def discard(self, name: str, file_id: int) -> None:
        ids = self.ids(name)
        if file_id in ids:
            ids.remove(file_id)
            if not ids:
                del self._ids[name]
                del self._sorted[bisect.bisect_left(self._sorted, name)]
            else:
                self._ids[name] = ids[0] if len(ids) == 1 else ids

    def names_under(self, prefix: str) -> Iterator[str]:
        """Every name that starts with `prefix`, in order, one at a time (a
        conflict check needs only the first that holds its name)."""
        i = bisect.bisect_left(self._sorted, prefix)
        while i < len(self._sorted) and self._sorted[i].startswith(prefix):
            yield self._sorted[i]
            i += 1

    def ids(self, name: str) -> list[int]:
        """The ids recorded under `name`, oldest first."""
        ids = self._ids.get(name, ())
        return [ids] if type(ids) is int else list(ids)

    def ids_each(self, names: list[str]) -> list[list[int]]:
        """`ids` of each name, taken before the index changes."""
        return list(map(self.ids, names))

    def under(self, prefix: str, recursive: bool) -> tuple[list[str], list[str]]:
        """(names, directories) under `prefix` (`` or ending in `/`); not
        recursive, a subdirectory is one entry and its names are skipped over."""
        i = bisect.bisect_left(self._sorted, prefix)
        if recursive:  # the names from `prefix` up to the first after its directory ("0" follows "/")
            end = bisect.bisect_left(self._sorted, prefix[:-1] + "0", i) if prefix else len(self._sorted)
            return self._sorted[i:end], []
        names, dirs = [], []
        while i < len(self._sorted) and self._sorted[i].startswith(prefix):
            name = self._sorted[i]
            slash = name.find("/", len(prefix))
            if slash < 0:
                names.append(name)
                i += 1
            else:
                dirs.append(name[:slash + 1])
                i = bisect.bisect_left(self._sorted, name[:slash] + "0", i)  # "0" follows "/"
        return names, dirs
