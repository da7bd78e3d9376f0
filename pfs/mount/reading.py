"""Reads through the mount: the verified parts of pfs.library.reader, kept in
one cache shared by every open file (bounded in bytes, so memory holds however
many files are open), with the next part of a file read sequentially loaded
ahead in the background."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from pfs.errors import IntegrityError
from pfs.library.reader import Parts
from pfs.registry import FileEntry
from pfs.store.facade import Store

log = logging.getLogger("pfs")

#: Parts loaded ahead of a sequential reader.
READ_AHEAD = 2


class PartCache:
    """Decoded, verified parts by (file id, index), least recently used dropped
    first once the cache holds more than `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: OrderedDict[tuple[int, int], bytes | memoryview] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> bytes | memoryview | None:
        with self._lock:
            data = self._parts.get(key)
            if data is not None:
                self._parts.move_to_end(key)
            return data

    def put(self, key: tuple[int, int], data: bytes | memoryview) -> None:
        with self._lock:
            if key in self._parts:
                return
            self._parts[key] = data
            self._bytes += len(data)
            while self._bytes > self.limit and self._parts:
                _, dropped = self._parts.popitem(last=False)
                self._bytes -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._parts.clear()
            self._bytes = 0


class StoredFile:
    """One stored file read through the mount: each part verified before any of
    its bytes are returned; a damaged part is an IntegrityError for reads that
    touch it (logged once), never wrong bytes."""

    def __init__(self, store: Store, entry: FileEntry, cache: PartCache, ahead: ThreadPoolExecutor) -> None:
        self.entry = entry
        self._parts = Parts(store, entry, cached=0)
        self._cache, self._ahead = cache, ahead
        self._next = 0  # the part a sequential reader reads next
        self._loading: set[int] = set()
        self._damaged: set[int] = set()
        self._lock = threading.Lock()

    def read(self, size: int, offset: int) -> bytes | memoryview:
        """The bytes at `offset`: within one part, a view of the cached part (the
        kernel's buffer is then the one copy made of them)."""
        end = min(self.entry.size, offset + size)
        if offset >= end:
            return b""
        chunk = self.entry.chunk_size
        first, last = offset // chunk, (end - 1) // chunk
        pieces = []
        for index in range(first, last + 1):
            data = self._part(index)
            start = offset - index * chunk if index == first else 0
            stop = end - index * chunk if index == last else len(data)
            pieces.append(memoryview(data)[start:stop])
        self._read_ahead(first, last)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _part(self, index: int) -> bytes | memoryview:
        key = (self.entry.id, index)
        data = self._cache.get(key)
        if data is None:
            try:
                data = self._parts.part(index)
            except IntegrityError as exc:
                with self._lock:
                    first_time = index not in self._damaged
                    self._damaged.add(index)
                if first_time:
                    log.error("read through the mount: %s", exc)
                raise
            self._cache.put(key, data)
        return data

    def _read_ahead(self, first: int, last: int) -> None:
        """After a read that continues where the last one stopped, load the next parts."""
        with self._lock:
            sequential = first <= self._next <= last + 1
            self._next = last + 1
            wanted = [i for i in range(last + 1, min(last + 1 + READ_AHEAD, self.entry.parts))
                      if i not in self._loading] if sequential else []
            self._loading.update(wanted)
        for index in wanted:
            self._ahead.submit(self._load_ahead, index)

    def _load_ahead(self, index: int) -> None:
        try:
            key = (self.entry.id, index)
            if self._cache.get(key) is None:
                self._cache.put(key, self._parts.part(index))
        except Exception:  # noqa: BLE001 - a read that needs the part reports (and logs) its failure
            pass
        finally:
            with self._lock:
                self._loading.discard(index)
