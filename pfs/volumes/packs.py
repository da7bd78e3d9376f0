"""Packs: many small pieces in one object on a volume, written and made durable
once (restic's packs, borg's segments, Haystack's needles), instead of one
part file each with its own fsync and directory fsyncs.

A pack is an append-once object `packs/<pack id>` holding pieces, each
exactly as it would be stored alone (compressed, sealed, a shard), so reading
one is one ranged read, and an index of them (its bytes: pfs.volumes.packfile).

Packs are never rewritten. Removing a packed piece writes a dead list
`packs/<pack id>.dead.<n>` naming it; a pack mostly dead is compacted: its
live pieces go into a new pack, made durable, and only then is the old one
removed, with its dead lists. A crash leaves both (the same bytes twice: the
newer pack wins) or the new one, never neither. One compaction of a pack runs
at a time, in any process (it first creates `<pack id>.claim`, create-only). A
dead list that races a compaction is carried over: the compaction reads the
old pack's dead lists again after removing it, and a remover looks after
writing its list whether the pack is still there (if not, it removes the
pieces again wherever they are now).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

from pfs.errors import PartDamagedError, PartExistsError, PartMissingError
from pfs.volumes.base import Volume
from pfs.volumes.packfile import TAIL, decode_footer, encode, new_name, walk

#: A pack is compacted once this share of its piece bytes is dead.
MOSTLY_DEAD = 0.5
DEAD = ".dead."
#: `<pack id>.claim`: a compaction of that pack is under way (one at a time).
CLAIM = ".claim"
#: How many times a listing is taken again until two in a row agree.
LOOKS = 8
#: A claim older than this was left by a compaction that died: it is taken over.
STALE_CLAIM = 3600.0

Place = tuple[str, int, int]  # pack, offset, length


class Shelf(Protocol):
    """What a backend gives packs: named objects under its packs/ place."""

    url: str

    def shelf_put(self, name: str, data: bytes, durable: bool) -> None:
        """Create an object (create-only), durable on return if `durable`."""

    def shelf_get(self, name: str, offset: int, size: int) -> bytes:
        """At most `size` bytes from `offset`; PartMissingError if there is no such object."""

    def shelf_list(self) -> dict[str, int]:
        """Every object's name and size."""

    def shelf_drop(self, name: str) -> None:
        """Remove an object (a no-op where there is none)."""


class Packs:
    """A volume's packs as this process knows them: each pack's index, and
    which of its pieces are dead. Looked at again whenever a piece is not
    found, so packs that other processes wrote or compacted are seen."""

    def __init__(self, shelf: Shelf) -> None:
        self.shelf = shelf
        self._lock = threading.RLock()
        self._index: dict[str, dict[str, tuple[int, int]]] = {}  # pack -> key -> (offset, length)
        self._sizes: dict[str, int] = {}
        self._dead: dict[str, set[str]] = {}  # pack -> its dead keys
        self._lists: set[str] = set()  # the dead lists read
        #: key -> the packs holding it: a tuple, most keys sharing their pack's one-pack tuple
        #: (a set a key was 216 bytes, the most of what a worker kept for a piece it read)
        self._where: dict[str, tuple[str, ...]] = {}
        self._scanned = False

    # -- writing and reading ---------------------------------------------------------

    def write(self, pieces: Iterable[tuple[str, bytes | memoryview]]) -> str:
        """One new pack holding `pieces`, durable on return; its name."""
        name = new_name()
        blob, index = encode(pieces)
        self.shelf.shelf_put(name, blob, True)
        with self._lock:
            self._add(name, len(blob), index)
        return name

    def places(self, key: str, fresh: bool = False) -> list[Place]:
        """Where the live copies of `key` are, newest pack first; the packs are
        looked at again first with `fresh` (or when none holds it)."""
        looked = fresh or not self._scanned
        if looked:
            self.rescan()
        found = self._live(key)
        if not found and not looked:
            self.rescan()
            found = self._live(key)
        return found

    def read(self, key: str, offset: int = 0, size: int | None = None) -> bytes:
        for fresh in (False, True):
            places = self.places(key, fresh)
            if not places:
                break
            pack, start, length = places[0]
            want = max(0, length - offset) if size is None else max(0, min(size, length - offset))
            if not want:
                return b""
            try:
                return self.shelf.shelf_get(pack, start + offset, want)
            except PartMissingError:
                continue  # compacted away since it was looked at: look again
        raise PartMissingError(f"part {key} is missing from volume {self.shelf.url}")

    # -- removing --------------------------------------------------------------------

    def remove(self, keys: Iterable[str]) -> set[str]:
        """Record the live packed copies of `keys` dead; returns those that were
        packed. A pack left mostly dead is compacted."""
        listing = self.rescan()
        by_pack: dict[str, list[str]] = {}
        for key in dict.fromkeys(keys):
            for pack, _, _ in self._live(key):
                by_pack.setdefault(pack, []).append(key)
        for pack, dead in by_pack.items():
            self._bury(pack, dead)
        if by_pack:
            listing = self.rescan()
            for pack, dead in by_pack.items():
                if pack not in listing:  # compacted meanwhile: the pieces are elsewhere now
                    self.remove(dead)
        for pack in by_pack:
            if pack in listing and self._dead_share(pack) >= MOSTLY_DEAD:
                self._compact(pack)
        return {k for dead in by_pack.values() for k in dead}

    def compact(self, share: float = 0.0) -> tuple[int, int]:
        """Compact every pack of which more than `share` is dead, and drop what
        compactions that died left (dead lists of packs that are gone, stale
        claims); returns (packs compacted, bytes freed)."""
        listing = self.rescan()
        before = sum(listing.values())
        done = 0
        for pack in sorted(self._index):
            if self._dead.get(pack) and self._dead_share(pack) > share:
                done += self._compact(pack)
        listing = self.shelf.shelf_list()
        for name in listing:
            pack = name.split(".")[0]
            if "." in name and pack not in listing and (pack + CLAIM not in listing or self._stale(pack + CLAIM)):
                self.shelf.shelf_drop(name)
        return done, max(0, before - sum(self.rescan().values()))

    def _bury(self, pack: str, keys: list[str]) -> None:
        name = f"{pack}{DEAD}{new_name()}"
        self.shelf.shelf_put(name, "\n".join(keys).encode(), False)
        with self._lock:
            self._dead.setdefault(pack, set()).update(keys)
            self._lists.add(name)

    def _compact(self, pack: str) -> bool:
        """Copy the pack's live pieces (those no newer pack holds) into a new
        pack, make it durable, then remove the old one and its dead lists.
        One compaction of a pack at a time (its claim): a dead list written
        meanwhile is read after the old pack is gone and carried over, or its
        remover finds the pack gone and removes the pieces where they are now."""
        claim = pack + CLAIM
        try:
            self.shelf.shelf_put(claim, str(time.time()).encode(), False)
        except PartExistsError:
            if not self._stale(claim):
                return False  # another compaction of it is under way
        try:
            if pack not in self.rescan():
                return False
            with self._lock:
                dead = self._dead.get(pack, set())
                live = [(k, o, n) for k, (o, n) in self._index.get(pack, {}).items()
                        if k not in dead and not any(p > pack for p, _, _ in self._live(k))]
            pieces = [(k, self.shelf.shelf_get(pack, o, n)) for k, o, n in live]
            new = self.write(pieces) if pieces else None
            self.shelf.shelf_drop(pack)
            lists = [n for n in self.shelf.shelf_list() if n.startswith(pack + DEAD)]
            late = {k for name in lists for k in self._dead_list(name)} & {k for k, _, _ in live}
            if new and late:
                self._bury(new, sorted(late))
            for name in lists:
                self.shelf.shelf_drop(name)
            with self._lock:
                self._forget(pack)
        except PartMissingError:
            return False  # gone meanwhile: compacted by a compaction that had taken over a stale claim
        finally:
            self.shelf.shelf_drop(claim)
        return True

    def _stale(self, claim: str) -> bool:
        try:
            return time.time() - float(self.shelf.shelf_get(claim, 0, 64) or 0) > STALE_CLAIM
        except (PartMissingError, ValueError):
            return True

    def _dead_share(self, pack: str) -> float:
        index, dead = self._index.get(pack, {}), self._dead.get(pack, set())
        total = sum(n for _, n in index.values()) or 1
        return sum(index[k][1] for k in dead if k in index) / total if index else 1.0

    # -- listing ---------------------------------------------------------------------

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every live packed key starting with `prefix` (looked at afresh)."""
        self.rescan()
        with self._lock:
            found = [k for k in self._where if k.startswith(prefix) and self._live(k)]
        yield from found

    def used(self) -> int:
        """Bytes the packs and their dead lists take."""
        return sum(self.rescan().values())

    def rescan(self) -> dict[str, int]:
        """Look at the packs again: new ones indexed, gone ones forgotten, new
        dead lists read. Returns every object and its size. Under the lock, so
        a listing older than another thread's new pack never forgets it."""
        with self._lock:
            listing = self._listing()
            for pack in [p for p in self._index if p not in listing]:
                self._forget(pack)
            for name, size in listing.items():
                if "." not in name and name not in self._index:
                    index = self._read_index(name, size)
                    if index is not None:
                        self._add(name, size, index)
            for name in listing:
                if DEAD in name and name not in self._lists and name.split(DEAD)[0] in self._index:
                    self._dead.setdefault(name.split(DEAD)[0], set()).update(self._dead_list(name))
                    self._lists.add(name)
            self._scanned = True
        return listing

    def _listing(self) -> dict[str, int]:
        """A listing two looks in a row agree on. One look is not a snapshot:
        it can miss both the new pack and the old one of a compaction that
        links the one and drops the other while it reads the directory, and
        the pieces moved would be nowhere."""
        listing = self.shelf.shelf_list()
        for _ in range(LOOKS):
            again = self.shelf.shelf_list()
            if again.keys() == listing.keys():
                break
            listing = again
        return listing

    def _read_index(self, pack: str, size: int) -> dict[str, tuple[int, int]] | None:
        """The pack's index from its footer, else from its records; None if it is gone."""
        try:
            at = max(0, size - TAIL)
            index = decode_footer(self.shelf.shelf_get(pack, at, size - at), at)
            if index is None:
                index = walk(self.shelf.shelf_get(pack, 0, size))
        except PartMissingError:
            return None
        return {k: (o, n) for k, (o, n) in index.items() if o + n <= size}

    def _dead_list(self, name: str) -> list[str]:
        try:
            return self.shelf.shelf_get(name, 0, 1 << 24).decode(errors="replace").split()
        except PartMissingError:
            return []

    def _add(self, pack: str, size: int, index: dict[str, tuple[int, int]]) -> None:
        self._index[pack], self._sizes[pack] = index, size
        alone = (pack,)
        where = self._where
        for key in index:
            held = where.get(key)
            where[key] = alone if held is None else held if pack in held else (*held, pack)

    def _forget(self, pack: str) -> None:
        for key in self._index.pop(pack, {}):
            holders = tuple(p for p in self._where.get(key, ()) if p != pack)
            if holders:
                self._where[key] = holders
            else:
                self._where.pop(key, None)
        self._sizes.pop(pack, None)
        self._dead.pop(pack, None)
        self._lists = {n for n in self._lists if not n.startswith(pack + DEAD)}

    def _live(self, key: str) -> list[Place]:
        with self._lock:
            return [(p, *self._index[p][key]) for p in sorted(self._where.get(key, ()), reverse=True)
                    if key not in self._dead.get(p, ())]


class Packed:
    """What a backend with a shelf (see Shelf) gains: pieces written many at
    once into a pack (write_pack), and read, listed and removed wherever they
    are, their own object or a pack. A piece's own object comes first: a piece
    written again alone (heal rewriting a damaged packed one) shadows the
    packed copy. Put before the backend's own class: `class X(Packed, Parts)`."""

    @property
    def packs(self) -> Packs:
        packs = self.__dict__.get("_packs")
        if packs is None:
            packs = self.__dict__["_packs"] = Packs(self)
        return packs

    def write_pack(self, pieces: list[tuple[str, bytes | memoryview]]) -> None:
        """One pack for all of `pieces`, durable on return."""
        if pieces:
            self.packs.write(pieces)

    def read(self, key: str, offset: int = 0, size: int | None = None) -> bytes:
        try:
            return super().read(key, offset, size)
        except PartMissingError:
            return self.packs.read(key, offset, size)

    def read_into(self, key: str, buffer: memoryview, offset: int = 0) -> int:
        try:
            return super().read_into(key, buffer, offset)
        except PartMissingError:
            data = self.packs.read(key, offset, len(buffer))
            buffer[:len(data)] = data
            return len(data)

    def remove(self, key: str) -> bool:
        own = super().remove(key)
        return bool(self.packs.remove([key])) or own

    def remove_all(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if getattr(super().remove_all, "__func__", None) is Volume.remove_all:  # it would remove() each here
            for key in keys:
                with contextlib.suppress(PartDamagedError):
                    super().remove(key)
        else:
            super().remove_all(keys)
        self.packs.remove(keys)

    def keys(self, prefix: str = "") -> Iterator[str]:
        own = set(super().keys(prefix))
        yield from own
        yield from (k for k in self.packs.keys(prefix) if k not in own)

    def used(self) -> int:
        return super().used() + self.packs.used()

    def compact(self) -> tuple[int, int]:
        """Compact every pack with dead pieces: (packs compacted, bytes freed)."""
        return self.packs.compact()

    def release(self) -> None:
        self.packs.compact()
        super().release()
