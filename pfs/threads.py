"""Starting a thread where the system may refuse one (a pids cgroup, RLIMIT_NPROC):
a refusal is one PfsError that says so, never an internal error or a job that never ends."""

from __future__ import annotations

import threading

from pfs.errors import ResourceError

#: What to do about a refusal, wherever it happens.
ADVICE = ("the system allows pfs no more threads or processes (a pids limit of the container or "
          "cgroup, or ulimit -u); wait for running jobs, or raise the limit")


def start(thread: threading.Thread, what: str) -> None:
    """Start `thread` (doing `what`, for the message), or raise ResourceError."""
    try:
        thread.start()
    except RuntimeError as exc:  # "can't start new thread": the clone() was refused
        raise ResourceError(f"cannot start {what}: {exc}", ADVICE) from exc
