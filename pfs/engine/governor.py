"""MemoryGovernor: a byte budget shared by every job, so the bytes of parts in
flight never exceed --max-memory however many jobs run and however big the files."""

import threading
from contextlib import contextmanager
from collections.abc import Iterator

from pfs.errors import Cancelled

#: Seconds between checks of a cancel signal while waiting for memory.
CANCEL_POLL = 0.05


class MemoryGovernor:
    """Blocking acquire/release of bytes against a fixed limit.

    Requests are served in arrival order, so a large request is not starved by
    a stream of small ones.
    """

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("memory limit must be positive")
        self.limit = limit
        self._used = 0
        self._peak = 0
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    @property
    def peak(self) -> int:
        """The most bytes ever reserved at once."""
        return self._peak

    def acquire(self, nbytes: int, cancel: threading.Event | None = None) -> None:
        """Block until `nbytes` fit under the limit, then reserve them; raises
        Cancelled (reserving nothing) as soon as `cancel` is set."""
        if nbytes > self.limit:
            raise ValueError(f"{nbytes} bytes can never fit a {self.limit}-byte limit")
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while not self._cond.wait_for(lambda: self._serving == ticket and self._used + nbytes <= self.limit,
                                          CANCEL_POLL if cancel else None):
                if cancel.is_set():
                    self._abandoned.add(ticket)  # later requests must not wait for this one
                    self._skip_abandoned()
                    raise Cancelled("cancelled")
            self._serving += 1
            self._used += nbytes
            self._peak = max(self._peak, self._used)
            self._skip_abandoned()

    def _skip_abandoned(self) -> None:
        while self._serving in self._abandoned:
            self._abandoned.remove(self._serving)
            self._serving += 1
        self._cond.notify_all()

    def release(self, nbytes: int) -> None:
        """Give back bytes reserved by acquire()."""
        with self._cond:
            if nbytes > self._used:
                raise ValueError("release of more bytes than are reserved")
            self._used -= nbytes
            self._cond.notify_all()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold `nbytes` for the duration of a with block."""
        self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(nbytes)
