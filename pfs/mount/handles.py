"""What is open through the mount: one Node per open file (shared by every
handle on it, so each handle sees the others' writes), reached by handle
number, and by name while it has one."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from pfs.errors import PfsError
from pfs.mount.reading import PartCache, StoredFile
from pfs.mount.staging import Staged, WriteBack
from pfs.mount.streaming import Streaming
from pfs.registry import FileEntry
from pfs.store.facade import Store

log = logging.getLogger("pfs")


class Node:
    """An open file: the stored version it reads (held, so that nothing deletes
    it meanwhile) and, once written, its staged bytes."""

    def __init__(self, name: str) -> None:
        self.name: str | None = name  # None once unlinked
        self.entry: FileEntry | None = None
        self.stored: StoredFile | None = None
        self.staged: Staged | None = None
        self.streaming: Streaming | None = None  # its parts stored as it is written (see pfs.mount.streaming)
        self.opens = 0
        self.writers = 0  # of the opens, those that may write
        self.owner: tuple[int, int] | None = None  # (uid, gid) given by create or chown, recorded when stored
        self.hidden_as: str | None = None  # the name its stored file was moved to when unlinked
        self._holding = contextlib.ExitStack()

    def size(self) -> int:
        if self.staged is not None and self.staged.filled:
            return self.staged.size
        return self.entry.size if self.entry is not None else 0

    def read(self, size: int, offset: int) -> bytes:
        if self.staged is not None and self.staged.filled:
            return self.staged.read(size, offset)
        return self.stored.read(size, offset) if self.stored is not None else b""

    def hold(self, store: Store, entry: FileEntry | None, cache: PartCache, ahead: ThreadPoolExecutor) -> None:
        """Read `entry` from now on (the version just stored, or the one opened)."""
        holding, stored = contextlib.ExitStack(), None
        if entry is not None:
            with contextlib.ExitStack() as failing:
                failing.callback(holding.close)
                holding.enter_context(store.reading(entry.id))
                stored = StoredFile(store, entry, cache, ahead)
                failing.pop_all()
        self._holding.close()  # after the new hold: a replaced file is deleted now if nobody else reads it
        self._holding, self.entry, self.stored = holding, entry, stored

    def staging(self, cache: WriteBack, mode: int) -> Staged:
        """The staged bytes, made (empty, not yet filled) on first need."""
        if self.staged is None:
            self.staged = Staged(cache, mode)
            if self.entry is None:
                self.staged.filled = self.staged.fresh = True
        return self.staged

    def wrote(self, store: Store, offset: int) -> None:
        """After a write from `offset` (or a truncate to it): stream the staged file
        on, start streaming it, or stop. Called with the staged file's lock held."""
        staged = self.staged
        if self.streaming is not None and not self.streaming.changes(offset):
            self._stop_streaming()
        try:
            if self.streaming is None and staged.fresh and self.name is not None and \
                    Streaming.starts(store, staged.written_to):
                self.streaming = Streaming(store, self.name, str(staged.path))
            if self.streaming is not None:
                self.streaming.wrote(staged.written_to)
        except PfsError as exc:  # stored whole at close instead, which reports what fails then
            log.warning("mount: %s is stored at its close, not as it is written: %s", self.name, exc.message)
            self._stop_streaming()

    def _stop_streaming(self) -> None:
        """Abandon what was streamed; the file is stored whole at its close."""
        streaming, self.streaming = self.streaming, None
        if self.staged is not None:
            self.staged.fresh = self.staged.size == 0  # (cut to 0: it may stream again)
        if streaming is not None:
            streaming.abandon()

    def fill(self) -> Staged:
        """The staged bytes, holding the stored file's first: ready to change."""
        staged = self.staged
        if not staged.filled:
            staged.fill(self.entry.size, self.stored.read)
        return staged

    def store_staged(self, store: Store, cache: PartCache, ahead: ThreadPoolExecutor) -> None:
        """Store the staged bytes under the node's name, whole, if they changed;
        the name then resolves to the new file (close-to-open consistency)."""
        staged = self.staged
        if staged is None or not staged.dirty or self.name is None:
            return
        with staged.lock:
            if not staged.dirty:
                return
            entry, st = self.entry, staged.stat()
            meta = {"mode": staged.mode, "ctime": st.st_ctime_ns, "atime": st.st_atime_ns,
                    "links": entry.links if entry is not None else 1}
            owner = self.owner or ((entry.uid, entry.gid) if entry is not None else None)
            if owner is not None and None not in owner:
                meta.update(uid=owner[0], gid=owner[1])
            if self.streaming is not None and self.streaming.entry.name == self.name:
                streaming, self.streaming = self.streaming, None
                staged.fresh = False
                done = streaming.finish(staged.size, {"mtime": st.st_mtime_ns, "uid": st.st_uid, "gid": st.st_gid,
                                                      **meta})
            else:
                self._stop_streaming()  # renamed with its directory: the name it streamed under is gone
                done = store.finish_put(store.begin_put(str(staged.path), self.name, meta), str(staged.path))
            staged.dirty = False
        self.hold(store, done, cache, ahead)

    def close(self) -> None:
        if self.staged is not None:
            with self.staged.lock:  # (a rename storing it meanwhile holds the lock)
                self._stop_streaming()  # unlinked while it was written: nothing of it is stored
            self.staged.close()
        self._holding.close()
        self.entry = self.stored = None


class Table:
    """Open nodes by handle number and by name; callers hold `lock` for any change."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.by_name: dict[str, Node] = {}
        self._by_handle: dict[int, tuple[Node, bool]] = {}
        self._numbers = itertools.count(1)

    def open(self, node: Node, writing: bool) -> int:
        node.opens += 1
        node.writers += writing
        if node.name is not None:
            self.by_name[node.name] = node
        fh = next(self._numbers)
        self._by_handle[fh] = node, writing
        return fh

    def node(self, fh: int) -> Node:
        return self._by_handle[fh][0]

    def release(self, fh: int) -> Node | None:
        """Forget a handle; returns its node if that was the node's last handle."""
        node, writing = self._by_handle.pop(fh)
        node.opens -= 1
        node.writers -= writing
        if node.opens:
            return None
        if node.name is not None and self.by_name.get(node.name) is node:
            del self.by_name[node.name]
        return node

    def rename(self, old: str, new: str) -> None:
        """Follow a rename: nodes named `old`, or under directory `old`, move to `new`."""
        for name in [n for n in self.by_name if n == old or n.startswith(old + "/")]:
            node = self.by_name.pop(name)
            node.name = new + name[len(old):]
            self.by_name[node.name] = node

    def unlinked(self, name: str) -> Node | None:
        node = self.by_name.pop(name, None)
        if node is not None:
            node.name = None
        return node
