"""How results reach the screen: plain aligned text for scripts, rich for people.

Commands hand over plain data (lines, tables of strings); only this module
knows about colour and layout.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from pfs.errors import printable


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

    def _write(self, stream, text: str) -> None:
        with self._lock:
            stream.write(text + "\n")
            stream.flush()

    def line(self, text: str) -> None:
        self._write(self._out or sys.stdout, text)

    def error(self, text: str) -> None:
        self._write(self._err or sys.stderr, f"error: {text}")

    def table(self, table: Table) -> None:
        table = table.escaped()
        widths = [max([len(c)] + [len(r[i]) for r in table.rows]) for i, c in enumerate(table.columns)]

        fmt = "  ".join(f"{{:{'>' if name in table.numeric else '<'}{w}}}"
                        for name, w in zip(table.columns, widths)).format
        lines = [table.title] if table.title else []
        lines += [fmt(*table.columns).rstrip()] + [fmt(*r).rstrip() for r in table.rows]
        self._write(self._out or sys.stdout, "\n".join(lines))


class RichOutput(PlainOutput):
    """Colour and boxed tables for the interactive shell."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console

        self._console = Console(highlight=False, soft_wrap=True)

    def line(self, text: str) -> None:
        self._console.print(text, markup=False)

    def error(self, text: str) -> None:
        self._console.print(f"[bold red]error:[/] {self._escape(text)}")

    @staticmethod
    def _escape(text: str) -> str:
        from rich.markup import escape

        return escape(text)

    def table(self, table: Table) -> None:
        from rich.table import Table as RichTable

        table = table.escaped()
        t = RichTable(title=table.title or None, header_style="bold")
        for c in table.columns:
            t.add_column(c, justify="right" if c in table.numeric else "left")
        for r in table.rows:
            t.add_row(*map(self._escape, r))
        self._console.print(t)
