"""The volume contract: where part bytes live (a local directory, an S3 bucket).

A volume stores opaque parts under short keys (part ids). Its few abstract
members are what a backend must do; everything else (identity markers, status,
description, pickling, ranged reads into buffers) is built once here on top of
them, so every backend behaves the same and one test suite checks them all.
Backends are found by URL scheme and imported only when used, so pfs runs
without the packages of backends it does not use.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Literal

from pfs import extras
from pfs.errors import MissingBackendError, PartDamagedError, UsageError, VolumeUnavailableError

#: The name of the identity marker at a volume's root.
MARKER = "pfs-volume.json"
MARKER_FORMAT = 1

Status = Literal["online", "missing", "full"]

_KEY = re.compile(r"[0-9a-z][0-9a-z._-]{3,127}\Z")
_PREFIX = re.compile(r"[0-9a-z._-]{0,128}\Z")


def check_key(key: str) -> str:
    """A key as a volume stores it: lower-case letters, digits, '.', '_', '-' (a part
    id is 32 hex digits). Anything else is a programming error, never a path."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"not a volume key: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValueError(f"not a volume key prefix: {prefix!r}")
    return prefix


class Volume(ABC):
    """Where part bytes live. Writes are create-only: a key, once written, is only
    ever read or removed, so a retried or duplicated write can never replace good
    data. A volume carries the identity it expects to find in its marker (the
    store's id and its own), so that an empty or foreign directory mounted in its
    place reads as "missing", never as an empty volume."""

    def __init__(self, url: str, *, store_id: str | None = None, volume_id: str | None = None,
                 reserve: int = 0) -> None:
        self.url = url
        self.store_id = store_id
        self.volume_id = volume_id
        #: Free bytes below which the volume counts as full.
        self.reserve = reserve

    # -- what a backend implements ---------------------------------------------------

    @abstractmethod
    def write(self, key: str, data: bytes | memoryview) -> None:
        """Store a new part; PartExistsError if `key` is taken (never overwrites)."""

    @abstractmethod
    def read(self, key: str, offset: int = 0, size: int | None = None) -> bytes:
        """The part's bytes (from `offset`, at most `size`); PartMissingError if absent."""

    @abstractmethod
    def remove(self, key: str) -> bool:
        """Delete a part; False if there was none."""

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored key starting with `prefix`, in no particular order."""

    @abstractmethod
    def flush(self, keys: Iterable[str]) -> None:
        """Make written parts durable (a no-op where a write is durable on return)."""

    @abstractmethod
    def used(self) -> int:
        """Bytes taken by stored parts."""

    @abstractmethod
    def free(self) -> int | None:
        """Bytes still free, or None where the backend cannot know."""

    @abstractmethod
    def _save_marker(self, marker: dict) -> None:
        """Write the marker at the volume's root, atomically (creating the root if needed)."""

    @abstractmethod
    def _load_marker(self) -> bytes | None:
        """The marker's raw bytes, or None where there is none."""

    @abstractmethod
    def _drop_marker(self) -> None:
        """Remove the marker (a no-op where there is none)."""

    def release(self) -> None:
        """Give the volume up once it holds no part: its marker goes, and what
        pfs made to hold parts, so that the place is as it was before it was
        claimed and can be added again. Anything pfs did not write stays."""
        self._drop_marker()
        self.store_id = self.volume_id = None

    def options(self) -> dict:
        """Backend settings beyond the URL that describe() must carry (never secrets)."""
        return {}

    # -- built once on top -----------------------------------------------------------

    def remove_all(self, keys: Iterable[str]) -> None:
        """Remove parts, missing ones too (a sweep after a failed put or a delete).
        What is not a part (PartDamagedError) is left alone: pfs did not write it.
        A backend overrides it where it can remove many in one request."""
        for key in keys:
            with contextlib.suppress(PartDamagedError):
                self.remove(key)

    def write_pack(self, pieces: list[tuple[str, bytes | memoryview]]) -> None:
        """Store many new pieces at once, durable on return (a batch of small
        files' parts). Backends with packs (pfs.volumes.packs) write them all
        into one object with one flush; this default writes each as its own
        part, then flushes them together."""
        for key, data in pieces:
            self.write(key, data)
        self.flush([key for key, _ in pieces])

    def compact(self) -> tuple[int, int]:
        """Reclaim the space of removed packed pieces: (packs compacted, bytes
        freed). Nothing to do for a backend without packs."""
        return 0, 0

    def read_into(self, key: str, buffer: memoryview, offset: int = 0) -> int:
        """Read the part from `offset` into `buffer`; returns the bytes read."""
        data = self.read(key, offset, len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def usage(self) -> tuple[int, int | None]:
        """(bytes used by parts, bytes free or None where unknown)."""
        return self.used(), self.free()

    def describe(self) -> dict:
        """A small JSON-able description; open_volume(description) rebuilds the volume
        in another process. Credentials and endpoints are never in it: they come
        from the environment of the process that opens the volume."""
        identity = {"store_id": self.store_id, "volume_id": self.volume_id,
                    "reserve": self.reserve or None}
        return {"url": self.url, **{k: v for k, v in identity.items() if v is not None}, **self.options()}

    def __reduce__(self):
        # Pickle as the description: open connections and clients are not sent to
        # workers, and what a worker rebuilds is exactly what describe() promises.
        return open_volume, (self.describe(),)

    def create(self) -> None:
        """Make the place the volume lives in, where the backend can (a bucket);
        a directory is the user's to make."""
        raise UsageError(f"{self.url} cannot be created by pfs", "create it yourself, then add it")

    def write_marker(self, store_id: str, volume_id: str) -> None:
        """Claim the volume for a store: the marker names the store and the volume."""
        self._save_marker({"format": MARKER_FORMAT, "store": store_id, "volume": volume_id})
        self.store_id, self.volume_id = store_id, volume_id

    def read_marker(self) -> dict | None:
        """The marker's content; None if there is none, {} if it is unreadable."""
        raw = self._load_marker()
        if raw is None:
            return None
        try:
            marker = json.loads(raw)
        except ValueError:
            return {}
        return marker if isinstance(marker, dict) else {}

    def status(self) -> Status:
        """"missing" if the volume cannot be reached or its marker is absent or names
        another store or volume; "full" if free space is below the reserve."""
        return self.diagnose()[0]

    def diagnose(self) -> tuple[Status, str]:
        """The status, and why a missing volume is missing (what reaching it
        answered: no connection, credentials refused, no marker...)."""
        try:
            marker = self.read_marker()
            if marker is None:
                return "missing", f"volume {self.url} has no marker (not mounted, or not this store's)"
            if not self._is_own(marker):
                return "missing", f"volume {self.url} belongs to another store or volume"
            free = self.free()
        except VolumeUnavailableError as exc:
            return "missing", str(exc)
        return ("full" if free is not None and free <= self.reserve else "online"), ""

    def _is_own(self, marker: dict) -> bool:
        return (marker.get("format") == MARKER_FORMAT
                and isinstance(marker.get("store"), str) and isinstance(marker.get("volume"), str)
                and self.store_id in (None, marker["store"]) and self.volume_id in (None, marker["volume"]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


#: URL scheme -> (module, class, the optional packages it imports). Imported on first use.
BACKENDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "file": ("pfs.volumes.local", "LocalVolume", ()),
    "s3": ("pfs.volumes.s3", "S3Volume", ("boto3", "botocore")),
}


def open_volume(url_or_desc: str | dict) -> Volume:
    """The volume at a URL (a plain path is a local directory, s3://bucket/prefix a
    bucket) or rebuilt from a describe() dict."""
    desc = dict(url_or_desc) if isinstance(url_or_desc, dict) else {"url": str(url_or_desc)}
    url = desc.pop("url")
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme not in BACKENDS:
        raise UsageError(f"unknown kind of volume: {url}",
                         "give a directory or one of " + ", ".join(f"{s}://" for s in BACKENDS))
    return backend(scheme)(url, **desc)


def backend(scheme: str) -> type[Volume]:
    """The Volume class for a URL scheme; a missing optional package is named."""
    module, name, packages = BACKENDS[scheme]
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in packages:
            raise extras.missing(packages[0], f"{scheme}:// volumes", MissingBackendError) from None
        raise
