"""Random-access reads of a stored file: a read loads only the parts it needs,
verifies each before any of its bytes are returned, and keeps the last few
parts in a small cache, so memory stays bounded whatever the file's size."""

from __future__ import annotations

import contextlib
import io
import threading
from collections import OrderedDict

from pfs.engine import worker
from pfs.errors import IntegrityError
from pfs.failures import unreadable
from pfs.registry import FileEntry
from pfs.store.checking import Damage
from pfs.store.facade import Store

#: Parts a reader keeps decoded (an LRU): enough for reads that straddle a boundary
#: or go back a little, at most a few chunks of memory.
CACHED_PARTS = 4


class Parts:
    """The verified parts of one stored file, loaded on demand."""

    def __init__(self, store: Store, entry: FileEntry, cached: int = CACHED_PARTS) -> None:
        self.entry = entry
        self.manifest = store.checked_manifest(entry)
        self.jobs = [store.read_job(entry, p) for p in self.manifest.parts]
        self._cache: OrderedDict[int, bytes | memoryview] = OrderedDict()
        self._cached = cached
        self._lock = threading.Lock()

    def part(self, index: int) -> bytes | memoryview:
        """Part `index`, verified; an IntegrityError names the file, part and range."""
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
        p, e = self.manifest.parts[index], self.entry
        data, problem = worker.part_bytes(self.jobs[index])
        if problem:
            damage = Damage(e.id, e.name, p.index, p.offset, p.size, problem)
            failed = unreadable([damage], f"`verify {e.id}` checks every part")
            raise IntegrityError(f"{e.name} (file {e.id}): {failed.message}", [damage], failed.advice)
        with self._lock:
            self._cache[index] = data
            while len(self._cache) > self._cached:
                self._cache.popitem(last=False)
        return data

    def read_into(self, buffer: memoryview, offset: int) -> int:
        """Fill `buffer` with the file's bytes from `offset`; return how many there were."""
        chunk, done = self.entry.chunk_size, 0
        end = min(self.entry.size, offset + len(buffer))
        while offset < end:
            index, start = divmod(offset, chunk)
            data = self.part(index)
            n = min(len(data) - start, end - offset)
            buffer[done:done + n] = data[start:start + n]
            done, offset = done + n, offset + n
        return done


class Reader(io.RawIOBase):
    """A stored file opened for reading: seek, tell, read and readinto anywhere.
    It reads the file it opened to the end, even if another is stored under its
    name meanwhile: the replaced file is deleted once its last reader closes.
    Threads may share it: each read or seek is one step on its one position."""

    def __init__(self, store: Store, entry: FileEntry) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._parts = Parts(store, entry)
        self.name = entry.name
        self.size = entry.size
        self._pos = 0
        self._holding = contextlib.ExitStack()
        self._holding.enter_context(store.reading(entry.id))  # nothing deletes it under us

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._holding.close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._lock:
            self._checkClosed()
            base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
            if base + offset < 0:
                raise ValueError(f"cannot seek to {base + offset}, before the start")
            self._pos = base + offset
            return self._pos

    def readinto(self, buffer) -> int:
        """Read up to the end of the part the position is in, at most: the buffer
        above fills itself ahead, and must not read (nor fail on a damaged) part
        that no read asked for. A read that wants more reads again."""
        with self._lock, memoryview(buffer) as view:
            self._checkClosed()
            room = self._parts.entry.chunk_size - self._pos % self._parts.entry.chunk_size
            n = self._parts.read_into(view.cast("B")[:room], self._pos)
            self._pos += n
        return n

    def readall(self) -> bytes:
        """The rest of the file at once (RawIOBase would read it in small pieces)."""
        with self._lock:
            out = bytearray(max(0, self.size - self._pos))
            done = 0
            with memoryview(out) as view:
                while done < len(out) and (n := self.readinto(view[done:])):
                    done += n
        del out[done:]
        return bytes(out)
