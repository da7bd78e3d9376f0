"""Encrypted names (`--encrypt-names`): each segment of a stored name sealed
with AES-SIV, deterministic, under a key derived from the data key, with the
sealed path of its parent as associated data; and symlink targets likewise.

Deterministic and segment by segment, so that a sealed name still has the
shape of a path: `a/b` sealed is S(a)/S(b | S(a)), every name under `a/`
starts with S(a)/, and the registries' name index, prefix listings, lookups
and the file-or-directory check work on sealed names exactly as on plain ones.
The wrappers here seal every name on its way into a registry and open it on
its way out, so nothing above them ever sees a sealed name."""

from __future__ import annotations

import base64
import re
from dataclasses import replace

from pfs.errors import NameConflictError, PfsError
from pfs.registry import FileEntry, FileTable, Manifest, PartTable

NAMES_FORMAT = 1
KEY_BYTES = 64  # AES-256-SIV: two 256-bit keys
#: Segments are padded to a multiple of this many bytes before sealing: the registry shows lengths only so closely.
BLOCK = 16
_SEALED = re.compile(r"[A-Za-z0-9_-]{43,}(?:/[A-Za-z0-9_-]{43,})*")


class NameSealer:
    """Seals and opens names and symlink targets under one names key."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESSIV

        self._siv = AESSIV(key)
        self._sealed: dict[tuple[str, str], str] = {}
        self._opened: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return "NameSealer(<key>)"

    def seal(self, name: str) -> str:
        """The sealed form of a name (`` stays ``, and so does each empty segment)."""
        out: list[str] = []
        for segment in name.split("/"):
            parent = "/".join(out)
            found = self._sealed.get((parent, segment))
            if found is None:
                found = self._seal(segment, b"pfs-name-%d:" % NAMES_FORMAT + parent.encode()) if segment else ""
                self._remember(self._sealed, (parent, segment), found)
                self._remember(self._opened, (parent, found), segment)
            out.append(found)
        return "/".join(out)

    def open(self, sealed: str) -> str:
        """The name a sealed name stands for; PfsError if it is not one this key sealed."""
        out, parents = [], []
        for segment in sealed.split("/"):
            parent = "/".join(parents)
            found = self._opened.get((parent, segment))
            if found is None:
                found = self._open(segment, b"pfs-name-%d:" % NAMES_FORMAT + parent.encode()) if segment else ""
                self._remember(self._opened, (parent, segment), found)
            out.append(found)
            parents.append(segment)
        return "/".join(out)

    def seal_target(self, target: str, sealed_name: str) -> str:
        return self._seal(target, b"pfs-target-%d:" % NAMES_FORMAT + sealed_name.encode()) if target else ""

    def open_target(self, target: str, sealed_name: str) -> str:
        return self._open(target, b"pfs-target-%d:" % NAMES_FORMAT + sealed_name.encode()) if target else ""

    def _seal(self, text: str, ad: bytes) -> str:
        data = text.encode("utf-8", "surrogateescape") + b"\x80"  # then zeros to a whole block (ISO/IEC 7816-4)
        data += bytes(-len(data) % BLOCK)
        return base64.urlsafe_b64encode(self._siv.encrypt(data, [ad])).rstrip(b"=").decode()

    def _open(self, text: str, ad: bytes) -> str:
        from cryptography.exceptions import InvalidTag

        try:
            data = self._siv.decrypt(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), [ad])
        except (InvalidTag, ValueError):
            raise PfsError("a name in the registry fails authentication (damaged, or not this store's)",
                           "`pfs verify --all` with the store's password names the files it can read") from None
        return data.rstrip(b"\x00")[:-1].decode("utf-8", "surrogateescape")

    @staticmethod
    def _remember(cache: dict, key: tuple[str, str], value: str) -> None:
        if len(cache) > 200_000:  # a bound on memory, not a policy: the next names are sealed again
            cache.clear()
        cache[key] = value

    def seal_entry(self, entry: FileEntry) -> FileEntry:
        name = self.seal(entry.name)
        return replace(entry, name=name, target=self.seal_target(entry.target, name))

    def open_entry(self, entry: FileEntry | None) -> FileEntry | None:
        if entry is None:
            return None
        return replace(entry, name=self.open(entry.name), target=self.open_target(entry.target, entry.name))

    def opened_message(self, exc: NameConflictError) -> NameConflictError:
        """The same refusal with its sealed names opened."""
        def opened(m: re.Match) -> str:
            try:
                return self.open(m[0])
            except PfsError:
                return m[0]
        return NameConflictError(_SEALED.sub(opened, exc.message), exc.advice)


class SealedFiles(FileTable):
    """A file table whose names and targets are kept sealed (see the module)."""

    def __init__(self, inner: FileTable, sealer: NameSealer) -> None:
        self.inner, self.s = inner, sealer

    def _in(self, entry: FileEntry) -> FileEntry:
        return self.s.seal_entry(entry)

    def _out(self, entry: FileEntry | None) -> FileEntry | None:
        return self.s.open_entry(entry)

    def _conflicts(self, call, *args):
        try:
            return call(*args)
        except NameConflictError as exc:
            raise self.s.opened_message(exc) from None

    def new_id(self) -> int:
        return self.inner.new_id()

    def add(self, entry: FileEntry) -> FileEntry:
        return self._out(self._conflicts(self.inner.add, self._in(entry)))

    def save(self, entry: FileEntry) -> None:
        self._conflicts(self.inner.save, self._in(entry))

    def add_all(self, entries: list[FileEntry]) -> list[FileEntry]:
        return [self._out(e) for e in self._conflicts(self.inner.add_all, [self._in(e) for e in entries])]

    def save_all(self, entries: list[FileEntry]) -> None:
        self._conflicts(self.inner.save_all, [self._in(e) for e in entries])

    def swap(self, seen: FileEntry, new: FileEntry) -> bool:
        return self._conflicts(self.inner.swap, self._in(seen), self._in(new))

    def take_name(self, seen: FileEntry, new: FileEntry, keep: bool = False) -> FileEntry | None:
        return self._out(self._conflicts(self.inner.take_name, self._in(seen), self._in(new), keep))

    def take_names(self, pairs: list[tuple[FileEntry, FileEntry]], keep: bool = False) -> list[FileEntry | None]:
        sealed = [(self._in(a), self._in(b)) for a, b in pairs]
        return [self._out(e) for e in self._conflicts(self.inner.take_names, sealed, keep)]

    def move_all(self, root: str, seen: list[FileEntry], moved: list[FileEntry]) -> bool:
        return self._conflicts(self.inner.move_all, self.s.seal(root), [self._in(e) for e in seen],
                               [self._in(e) for e in moved])

    def remove(self, file_id: int) -> None:
        self.inner.remove(file_id)

    def get(self, file_id: int) -> FileEntry | None:
        return self._out(self.inner.get(file_id))

    def all(self) -> list[FileEntry]:
        return [self._out(e) for e in self.inner.all()]

    def unsettled(self) -> list[FileEntry]:
        return [self._out(e) for e in self.inner.unsettled()]

    def named(self, name: str) -> list[FileEntry]:
        return [self._out(e) for e in self.inner.named(self.s.seal(name))]

    def named_each(self, names: list[str]) -> dict[str, list[FileEntry]]:
        sealed = {self.s.seal(n): n for n in names}
        return {sealed[k]: [self._out(e) for e in v] for k, v in self.inner.named_each(list(sealed)).items()}

    def current(self, name: str) -> FileEntry | None:
        return self._out(self.inner.current(self.s.seal(name)))

    def volume_usage(self):
        return self.inner.volume_usage()

    def on_volume(self, vid: int) -> tuple[list[int], list[int]]:
        return self.inner.on_volume(vid)

    def under(self, prefix: str, recursive: bool = False) -> tuple[list[str], list[str]]:
        found, dirs = self.inner.under(self.s.seal(prefix), recursive)
        return sorted(map(self.s.open, found)), sorted(map(self.s.open, dirs))

    def compact(self) -> None:
        self.inner.compact()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str):  # what an engine offers beyond the contract (its path, its lock)
        return getattr(self.inner, name)


class SealedParts(PartTable):
    """A part table whose manifests' copy of the file record has its name sealed."""

    def __init__(self, inner: PartTable, sealer: NameSealer) -> None:
        self.inner, self.s = inner, sealer

    def save(self, manifest: Manifest) -> None:
        self.inner.save(self._in(manifest))

    def save_all(self, manifests: list[Manifest]) -> None:
        self.inner.save_all([self._in(m) for m in manifests])

    def _in(self, manifest: Manifest) -> Manifest:
        return Manifest(self.s.seal_entry(manifest.file), manifest.parts)

    def _out(self, manifest: Manifest | None) -> Manifest | None:
        return manifest and Manifest(self.s.open_entry(manifest.file), manifest.parts)

    def load(self, file_id: int) -> Manifest | None:
        return self._out(self.inner.load(file_id))

    def load_all(self, file_ids: list[int]) -> dict[int, Manifest | None]:
        return {i: self._out(m) for i, m in self.inner.load_all(file_ids).items()}

    def swap(self, seen: Manifest, new: Manifest) -> bool:
        return self.inner.swap(self._in(seen), self._in(new))

    def remove(self, file_id: int) -> None:
        self.inner.remove(file_id)

    def ids(self) -> list[int]:
        return self.inner.ids()

    def highest_id(self) -> int:
        return self.inner.highest_id()

    def where(self, file_id: int) -> str:
        return self.inner.where(file_id)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def as_recorded(files: FileTable, entry: FileEntry) -> FileEntry:
    """`entry` as `files` records it: its name sealed if the table seals names (for
    a copy of a record written elsewhere in the store, such as an intent)."""
    return files.s.seal_entry(entry) if isinstance(files, SealedFiles) else entry
