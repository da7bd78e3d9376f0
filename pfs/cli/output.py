"""How results reach the screen: plain aligned text for scripts, rich for people.

Commands hand over plain data (lines, tables of strings); only this module
knows about colour and layout.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat

from pfs.errors import UsageError, printable
from pfs.units import format_rate, format_size


@dataclass
class Table:
    """Plain data for a table: column names, rows of strings, and which columns are numeric."""

    columns: list[str]
    rows: list[list[str]]
    numeric: frozenset[str] = frozenset()
    title: str = ""

    def escaped(self) -> Table:
        """The same table with control characters in any cell made visible."""
        rows = [r if "".join(r).isprintable() else [printable(c) for c in r] for r in self.rows]
        return Table(self.columns, rows, self.numeric, printable(self.title))


class PlainOutput:
    """One line per event, no colour: for piped scripts and one-shot commands."""

    def __init__(self, out=None, err=None) -> None:
        self._out = out  # None: whatever sys.stdout is at the time of writing
        self._err = err
        self._lock = threading.Lock()
        #: Why output stopped reaching stdout (an errno), or None while it does.
        self.lost: int | None = None

    def _write(self, stream, text: str) -> None:
        with self._lock:
            if stream is None or self.lost is not None and stream is self._stdout():
                self._lose(stream, errno.EBADF)
                return
            try:
                _write_all(stream, text + "\n")
            except OSError as exc:
                self._lose(stream, exc.errno or errno.EIO)
            except ValueError:  # closed
                self._lose(stream, errno.EBADF)

    def _stdout(self):
        return self._out or sys.stdout

    def _lose(self, stream, code: int) -> None:
        """Output cannot be written (a reader that left, a closed stdout): drop it
        from now on, without the traceback or "Exception ignored" Python would
        print, and say so once on stderr unless the reader simply went away."""
        if stream is not self._stdout() and stream is not None or self.lost is not None:
            return
        self.lost = code
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # what is still buffered drains harmlessly
        except OSError:
            pass
        if code != errno.EPIPE:
            try:
                sys.stderr.write(f"error: cannot write to standard output ({os.strerror(code)}); "
                                 "the rest of the output is lost\n")
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):
                pass

    def line(self, text: str) -> None:
        self._write(self._stdout(), text)

    def error(self, text: str) -> None:
        self._write(self._err or sys.stderr, f"error: {text}")

    def write_bytes(self, chunks: Iterable[bytes | memoryview]) -> None:
        """Write bytes to stdout as they come, with no line of another job in
        between; stops taking chunks once stdout is lost (a reader that left)."""
        with self._lock:
            stream = self._stdout()
            for chunk in chunks:
                if self.lost is not None:
                    return
                try:
                    _write_all(stream, chunk)
                except OSError as exc:
                    self._lose(stream, exc.errno or errno.EIO)
                except ValueError:  # closed
                    self._lose(stream, errno.EBADF)

    def table(self, table: Table) -> None:
        self._write(self._stdout(), "\n".join(aligned(table)))

    def json(self, record: object) -> None:
        """One JSON document on one line (ASCII: any name, whatever its bytes, survives)."""
        self.line(json.dumps(record, separators=(",", ":")))


def _write_all(stream, data: str | bytes | memoryview) -> None:
    """Write every byte of `data` (text encoded as the stream would). To a
    stream with a descriptor, through the descriptor until all is out: Python's
    buffered writer takes the short write of a pipe whose reader left
    (`pfs list | head -1`) as done, drops the rest and never sees EPIPE, so the
    exit status could not say the output was cut."""
    if not isinstance(data, str):  # bytes (cat) go past a live progress bar's proxy, to the file it stands for
        stream = getattr(stream, "rich_proxied_file", stream)
    try:
        if hasattr(stream, "rich_proxied_file"):  # a live progress bar's: it prints text above the bar
            raise ValueError("not through the descriptor")
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # a StringIO (io.UnsupportedOperation is an OSError)
        if not isinstance(data, str) and isinstance(stream, io.TextIOBase):
            stream = getattr(stream, "buffer", None)
            if stream is None:
                raise UsageError("this output takes text only, and the bytes of a file are not text",
                                 "get NAME FILE writes them to a file")
        stream.write(data)
        stream.flush()
        return
    stream.flush()
    if isinstance(data, str):
        data = data.encode(getattr(stream, "encoding", None) or "utf-8", getattr(stream, "errors", None) or "strict")
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def aligned(table: Table) -> list[str]:
    """The table as lines of columns two spaces apart, each as wide as its widest
    cell, numbers to the right. Built a column at a time, in passes that run
    at C speed, so that 100,000 rows take a tenth of a second."""
    table = table.escaped()
    padded = []
    for name, column in zip(table.columns, zip(table.columns, *table.rows)):
        pad = str.rjust if name in table.numeric else str.ljust
        padded.append(map(pad, column, repeat(max(map(len, column)))))
    return ([table.title] if table.title else []) + list(map(str.rstrip, map("  ".join, zip(*padded))))


#: Longer tables print as plain aligned text in the shell too: rich takes about
#: a millisecond a row to box one, a minute and a half for 100,000 rows.
RICH_ROWS = 1000


class _CurrentStdout:
    """sys.stdout as it is at each write: the shell's patch_stdout, or a live
    progress bar's proxy. (A rich Console given no file writes past a proxy of
    rich's own, and its lines ran into the progress line.)"""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    def fileno(self) -> int:
        return sys.stdout.fileno()

    @property
    def encoding(self) -> str:
        return getattr(sys.stdout, "encoding", None) or "utf-8"


class RichOutput(PlainOutput):
    """Colour and boxed tables for the interactive shell."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console

        self._console = Console(file=_CurrentStdout(), highlight=False, soft_wrap=True)

    def line(self, text: str) -> None:
        self._console.print(text, markup=False)

    def error(self, text: str) -> None:
        self._console.print(f"[bold red]error:[/] {self._escape(text)}")

    @staticmethod
    def _escape(text: str) -> str:
        from rich.markup import escape

        return escape(text)

    def table(self, table: Table) -> None:
        if len(table.rows) > RICH_ROWS:
            super().table(table)
            return
        from rich.table import Table as RichTable

        table = table.escaped()
        t = RichTable(title=table.title or None, header_style="bold")
        for c in table.columns:
            t.add_column(c, justify="right" if c in table.numeric else "left")
        for r in table.rows:
            t.add_row(*map(self._escape, r))
        self._console.print(t)


def show_progress(running: Callable[[], list]) -> None:
    """Progress bars of the running jobs until none is left (on a terminal).
    Rates in binary units, as everywhere else in pfs."""
    from rich.progress import BarColumn, Progress, ProgressColumn, TimeRemainingColumn
    from rich.text import Text

    class Amount(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{format_size(task.completed)}/{format_size(task.total or 0)}")

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(task.fields.get("rate", ""))

    with Progress("{task.description}", BarColumn(), Amount(), Rate(), TimeRemainingColumn(),
                  transient=True) as progress:
        bars = {}
        while jobs := running():
            for job in jobs:
                if job.id not in bars:
                    bars[job.id] = progress.add_task(printable(f"{job.kind} {job.name}"), total=job.total or 1)
                progress.update(bars[job.id], completed=job.done, rate=format_rate(job.done, job.elapsed))
            time.sleep(0.1)
