"""SIGINT, SIGTERM and SIGHUP: stop within moments, saying what was abandoned.

The store survives a crash at any instant (the next open rolls unfinished puts
back), so a signal is handled the way a crash would be, only politely: one line
naming what is abandoned, then os._exit(128 + signal number). Unwinding
instead would wait for pool workers and job threads, which is what made Ctrl-C
hang.

The Python-level handler only hands the signal over to a watcher thread (a
SimpleQueue put is safe inside a handler): the watcher may take locks that the
main thread held when the signal arrived, which the handler itself could not.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}

_signals: queue.SimpleQueue[int] = queue.SimpleQueue()
_abandoned: Callable[[], str] = lambda: "stopped before the store was opened; nothing was changed"  # noqa: E731
_breakable = threading.Event()  # the shell: SIGINT breaks off a wait instead of exiting
_waiting = False
_terminal: list | None = None


def install() -> None:
    """Handle the signals from now on. Called first thing at start-up, so even
    a Ctrl-C during the imports gives one line instead of a traceback."""
    global _terminal
    try:
        import termios

        _terminal = termios.tcgetattr(0) if os.isatty(0) else None
    except (ImportError, OSError, termios.error):
        _terminal = None
    for signum in HANDLED:
        signal.signal(signum, _on_signal)
    # After os._exit, multiprocessing's resource tracker (a child process) frees
    # the semaphores the pool held; its warning that it had to is expected here.
    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
    threading.Thread(target=_watch, name="pfs-signals", daemon=True).start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)  # held since the entry point's first line (see main)


def main_thread_only() -> None:
    """Block SIGINT in the calling (job) thread. A process started from it (the
    worker pool's forkserver, and through it every worker) inherits the blocked
    mask, so a Ctrl-C in the terminal, which reaches the whole process group,
    stops pfs alone instead of killing a pool process mid-start. (SIGTERM stays
    open: the pool terminates a broken pool's workers with it.) See
    start_resource_tracker for the one thing that would undo this."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


@contextmanager
def main_thread_shielded() -> Iterator[None]:
    """Block SIGINT in the main thread while it starts a process that must not
    get the terminal's Ctrl-C (the forkserver, see main_thread_only); a Ctrl-C
    meanwhile is handled as soon as the block ends."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker from the main thread, before any
    job thread needs it. Starting it unblocks SIGINT and SIGTERM in the thread
    that starts it, which in a job thread would undo main_thread_only just
    before that thread starts the forkserver."""
    from multiprocessing import resource_tracker

    from pfs import threads
    from pfs.errors import ResourceError

    try:
        resource_tracker.ensure_running()
    except OSError as exc:  # its process could not be started
        raise ResourceError(f"cannot start multiprocessing's resource tracker: {exc.strerror or exc}",
                            threads.ADVICE) from exc


def abandoning(describe: Callable[[], str]) -> None:
    """Set what a signal would abandon now, e.g. "abandoned put 1 (a.log) at 40%"."""
    global _abandoned
    _abandoned = describe


def allow_breaking_waits() -> None:
    """In the shell, Ctrl-C during a wait brings the prompt back (jobs go on)."""
    _breakable.set()


@contextmanager
def breakable() -> Iterator[None]:
    """A wait that, in the shell, Ctrl-C may break off with KeyboardInterrupt.
    Only waits are breakable: breaking off anything else could leave the
    in-memory registry out of step with the journal."""
    global _waiting
    _waiting = True
    try:
        yield
    finally:
        _waiting = False


def _on_signal(signum: int, _frame) -> None:
    global _waiting
    if signum == signal.SIGINT and _waiting and _breakable.is_set():
        _waiting = False  # here, not in breakable's finally, which the exception may skip
        raise KeyboardInterrupt
    _signals.put(signum)


def _watch() -> None:
    signum = _signals.get()
    try:
        what = _abandoned()
    except Exception:  # noqa: BLE001 - the exit must happen whatever the description does
        what = "running jobs were abandoned"
    _restore_terminal()
    word = _WORDS.get(signum, "stopped")
    line = f"pfs: {word} ({signal.Signals(signum).name}): {what}\n"
    try:  # straight to the descriptors: a lock the main thread holds must not matter
        if os.isatty(1):
            os.write(1, b"\r\x1b[2K\x1b[?25h")  # clear a progress bar, show the cursor again
        os.write(2, line.encode("utf-8", "backslashreplace"))
    except OSError:
        pass
    os._exit(128 + signum)


def _restore_terminal() -> None:
    """Leave the terminal as we found it (the shell's prompt puts it in raw mode)."""
    if _terminal is not None:
        try:
            import termios

            termios.tcsetattr(0, termios.TCSANOW, _terminal)
        except (OSError, termios.error):
            pass
