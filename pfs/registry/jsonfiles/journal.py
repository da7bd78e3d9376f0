"""Journal: the append-only file (files.jsonl) of whole-record upserts and deletes over the snapshot.

An update costs one fsynced line however many files are stored; replaying the
journal over the snapshot is idempotent, and a torn last line (a crash
mid-append) is dropped.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

from pfs.errors import StoreError, advice_for
from pfs.registry.jsonfiles.common import BAD_JSON, RESERVE_BYTES, write_atomic
from pfs.registry.records import MAX_INT, BadRecord, FileEntry, _ints, _one_of, _types

#: The journal is folded into the snapshot once it outgrows both this and the snapshot.
MIN_COMPACT_BYTES = 256 * 1024

#: Journal operations that carry a file id rather than a record.
ID_OPS = ("del", "id")


def _journal_op(op: object) -> tuple[str, FileEntry | int | list[FileEntry]]:
    """A parsed journal line as (kind, record, records or id); raises BadRecord if it is not one.
    Kinds: put (a record), batch (records written at once, all or nothing: the line is
    whole or torn), del (a file id forgotten), id (a file id reserved)."""
    if type(op) is dict and op.get("op") == "put":
        return "put", FileEntry.from_dict(op.get("file"))
    if type(op) is dict and op.get("op") == "batch" and type(op.get("files")) is list:
        entries, bad = FileEntry.from_dicts(op["files"])
        if bad:
            raise BadRecord(f"record {bad[0][0] + 1} of the batch: {bad[0][1]}")
        return "batch", entries
    if type(op) is dict and op.get("op") in ID_OPS:
        if _ints(0, MAX_INT)([op.get("id")]):  # deleting id 0, which never exists, is a no-op
            return op["op"], op["id"]
        raise BadRecord(f"a{'' if op['op'] == 'id' else ' delete of'} {op['op']} of something that is not a file id")
    raise BadRecord("not a journal operation")


#: What replaying a journal operation does: (kind, record, records or id).
Apply = Callable[[str, FileEntry | int | list[FileEntry]], None]


class Journal:
    """The journal file as this process reads and appends it: where it has read
    to, what it appended, and the space reserve that lets a full disk still
    record deletes and rollbacks. Every call but close is made holding the
    registry's lock (exclusive to append, cut or restart)."""

    def __init__(self, path: Path, reserve: Path, damaged: Callable[[str, BaseException | str], None]) -> None:
        self.path = path
        self._reserve = reserve
        self._damaged = damaged  # reports a damaged line (raises, unless the registry is opened for repair)
        self._fd = -1
        self.bytes = 0  # how far this process has read (and appended to) the file
        self._lines_read = 0
        self.appended = 0  # journal bytes this process appended: compacted at close when many

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1

    def is_open_on_current(self) -> bool:
        """Whether the file open is still the journal (no compaction replaced it since)."""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return False
        if self._fd < 0:
            return False
        st = os.fstat(self._fd)
        return (current.st_dev, current.st_ino) == (st.st_dev, st.st_ino)

    def reopen(self, create: bool) -> bool:
        """Open the journal afresh, to be read from its start; False if there is
        none (and not `create`): a writer makes it, until then there is nothing to read."""
        self.close()
        if create:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        else:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                return False
        self.bytes = 0
        return True

    def replay(self, apply: Apply, exclusive: bool) -> None:
        """Apply the journal lines appended after our offset. A tail with no
        newline is an append cut short by a crash (appends hold the exclusive
        lock, so no live writer is mid-line): a writer cuts it off."""
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size - self.bytes, self.bytes) if size > self.bytes else b""
        complete = data.rfind(b"\n") + 1
        lines = data[:complete].split(b"\n")[:-1]
        first_line = self._lines_read if self.bytes else 0
        if not self._replay_at_once(lines, apply):
            for number, line in enumerate(lines, first_line + 1):
                if line.strip():
                    try:
                        apply(*_journal_op(json.loads(line)))
                    except BAD_JSON as exc:
                        self._damaged(f"{self.path} line {number}", exc)
        self._lines_read = first_line + len(lines)
        self.bytes += complete
        if exclusive and complete < len(data):
            os.ftruncate(self._fd, self.bytes)

    @staticmethod
    def _replay_at_once(lines: list[bytes], apply: Apply) -> bool:
        """Parse every line in one json.loads call and check every record at once
        (several times faster than line by line). False if anything is off; the
        caller then replays line by line, which names the damaged line. Nothing is
        applied before everything checked out, and replay is idempotent anyway."""
        lines = [line for line in lines if line.strip()]
        if not lines:  # the common case of a reader caught up already: nothing to parse or check
            return True
        try:
            ops = json.loads(b"[" + b",".join(lines) + b"]")
        except BAD_JSON:
            return False
        if len(ops) != len(lines) or not _types(dict)(ops):
            return False
        kinds = [op.get("op") for op in ops]
        if "batch" in kinds:  # rare enough (a renamed directory) to take line by line
            return False
        puts, bad = FileEntry.from_dicts([op.get("file") for op, kind in zip(ops, kinds) if kind == "put"])
        if bad or not _one_of(("put", *ID_OPS))(kinds) or \
                not _ints(0, MAX_INT)([op.get("id") for op, kind in zip(ops, kinds) if kind != "put"]):
            return False
        puts = iter(puts)
        for op, kind in zip(ops, kinds):
            apply(kind, next(puts) if kind == "put" else op["id"])
        return True

    def append(self, op: dict, durable: bool = True) -> None:
        """Append one line (durably unless told), or leave the journal as it was and raise.
        On a full disk the space reserve is given up once, so that deletes and
        rollbacks, which free space, can still be recorded. Called holding the
        exclusive lock, caught up: the journal ends where we read it to."""
        line = json.dumps(op, separators=(",", ":")).encode() + b"\n"
        for attempt in range(2):
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view):]
                if durable:
                    os.fsync(self._fd)
                self.bytes += len(line)
                self._lines_read += 1
                self.appended += len(line)
                return
            except OSError as exc:
                os.ftruncate(self._fd, self.bytes)  # never leave half a line
                if attempt == 0 and exc.errno in (errno.ENOSPC, errno.EDQUOT) and self._release_reserve():
                    continue
                raise StoreError(f"cannot write {self.path}: {exc.strerror}", advice_for(exc)) from exc

    def outgrows(self, snapshot_bytes: int) -> bool:
        """Whether the journal is due to be folded into a snapshot of that size: amortised O(1) per update."""
        return self.bytes > MIN_COMPACT_BYTES and self.bytes > snapshot_bytes

    def grew_much(self) -> bool:
        """Whether this process appended enough to fold the journal in at close."""
        return self.appended > MIN_COMPACT_BYTES

    def restart(self) -> None:
        """Replace the journal by a new, empty file (once the snapshot holds it all)."""
        write_atomic(self.path, b"")
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        self.bytes = self._lines_read = self.appended = 0

    def keep_reserve(self) -> None:
        """Hold RESERVE_BYTES of disk in a file while space allows."""
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:
            self._reserve.unlink(missing_ok=True)

    def refill_reserve(self) -> None:
        """Hold the reserve again if it was given up (a delete may have freed enough)."""
        if not self._reserve.exists():
            self.keep_reserve()

    def _release_reserve(self) -> bool:
        try:
            self._reserve.unlink()
            return True
        except FileNotFoundError:
            return False
