"""PartRegistry: each file's part manifest as one JSON file, manifests/<file id>.json."""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from itertools import compress
from pathlib import Path

from pfs.errors import StoreError, advice_for
from pfs.registry.base import PartTable
from pfs.registry.jsonfiles.common import MANIFESTS, SCRATCH, damaged, fsync_dir, read_json, sync_filesystem, \
    write_json_atomic
from pfs.registry.records import BadRecord, Manifest


class PartRegistry(PartTable):
    """Per-file manifests: manifests/<file id>.json, written through STORE/tmp."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._dir = root / MANIFESTS
        self._dir.mkdir(exist_ok=True)
        self._scratch = root / SCRATCH
        self._scratch.mkdir(exist_ok=True)

    def path(self, file_id: int) -> Path:
        return self._dir / f"{file_id}.json"

    def where(self, file_id: int) -> str:
        return str(self.path(file_id))

    def save(self, manifest: Manifest) -> None:
        try:
            write_json_atomic(self.path(manifest.file.id), manifest.to_dict(), self._scratch)
        except OSError as exc:
            raise StoreError(f"cannot write {self.path(manifest.file.id)}: {exc.strerror}", advice_for(exc)) from exc

    def save_all(self, manifests: list[Manifest]) -> None:
        """Every manifest written to tmp/ first, then one syncfs of the store's file
        system (instead of an fsync each), then each renamed into place and one
        fsync of manifests/: a crash leaves each old or new, whole."""
        written: list[tuple[Path, Path]] = []
        try:
            try:
                for manifest in manifests:
                    path = self.path(manifest.file.id)
                    tmp = self._scratch / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
                    written.append((tmp, path))
                    tmp.write_bytes(json.dumps(manifest.to_dict(), separators=(",", ":")).encode())
                sync_filesystem(self._scratch, [tmp for tmp, _ in written])
                for tmp, path in written:
                    os.replace(tmp, path)
                fsync_dir(self._dir)
            except OSError as exc:
                raise StoreError(f"cannot write the manifests in {self._dir}: {exc.strerror}",
                                 advice_for(exc)) from exc
        finally:
            for tmp, _ in written:
                tmp.unlink(missing_ok=True)

    def load(self, file_id: int) -> Manifest | None:
        path = self.path(file_id)
        if not path.exists():
            return None
        try:
            return Manifest.from_dict(read_json(path, self._root), file_id)
        except BadRecord as exc:
            raise damaged(self._root, f"{path} is damaged ({exc})") from exc

    def swap(self, seen: Manifest, new: Manifest) -> bool:
        """Under an exclusive flock of manifests/ (every pfs process takes the same)."""
        fd = os.open(self._dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self.load(seen.file.id) != seen:
                return False
            self.save(new)
            return True
        finally:
            os.close(fd)

    def remove(self, file_id: int) -> None:
        self.path(file_id).unlink(missing_ok=True)

    def ids(self) -> list[int]:
        """File ids that have a manifest on disk."""
        return sorted(int(name[:-5]) for name in self._id_names())

    def highest_id(self) -> int:
        """The highest file id that has a manifest on disk, or 0. Cheap enough for
        every open (one listing, as bytes, and C-speed passes over it): the
        biggest id has the longest name, and is the greatest of those."""
        names = os.listdir(os.fsencode(self._dir))
        longest = max(map(len, names), default=0)
        top = max(compress(names, map(longest.__eq__, map(len, names))), default=b"")
        if _MANIFEST_NAME.fullmatch(top.decode(errors="replace")):
            return int(top[:-5])
        ids = self.ids()  # a name that is not a manifest's is the longest: look closer
        return ids[-1] if ids else 0

    def _id_names(self) -> list[str]:
        """The names in manifests/ that are file ids (of a manifest)."""
        return _MANIFEST_NAME.findall("\n".join(os.listdir(self._dir)))


#: A manifest's file name: a file id (no leading zeros) and .json.
_MANIFEST_NAME = re.compile(r"^[1-9][0-9]*\.json$", re.MULTILINE)
