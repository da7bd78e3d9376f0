"""Standard input and output as files: `put - NAME` stores what is piped in,
`get NAME -` and `cat NAME` write a stored file's verified bytes to stdout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pfs.cli import interrupts
from pfs.cli.commands.syntax import Args, Command
from pfs.errors import Cancelled, UsageError, printable
from pfs.registry import FileEntry

if TYPE_CHECKING:
    from pfs.cli.commands.session import Session
    from pfs.cli.jobs import Job

#: The argument that stands for standard input or output (a file named so is ./-).
STDIO = "-"


def put_stdin(s: Session, a: Args) -> None:
    """Store standard input as NAME, streamed in bounded memory (one part at a
    time, as a streaming writer does); the file is stored only once the input
    ends, and an interrupted put leaves nothing (the next open rolls it back)."""
    from pfs.library.writer import Writer

    name = a.get(1)
    if name is None:
        raise UsageError("put -: standard input has no file name", "give one: put - NAME")
    if not s.stdin_free:
        raise UsageError("put -: standard input is where the commands come from here",
                         f"from the system shell: pfs put - {name} < FILE")
    writer = Writer(s.store, name, "--keep" in a.flags)
    s.out.line(f"[{writer.id}] storing {printable(writer.name)} (from standard input)")

    def work(job: Job) -> FileEntry:
        try:
            for chunk in _chunks(0, s.store.settings.chunk_size):
                if job.cancelled.is_set():
                    raise Cancelled("cancelled")
                writer.write(chunk)
                job.advance(len(chunk))
        except BaseException:
            writer.discard()
            raise
        writer.close()
        return writer.stored
    s.start("put", writer.id, writer.name, 0, work)


def _chunks(fd: int, size: int) -> Iterator[bytes]:
    """What descriptor `fd` gives until its end, a read of at most `size` at a time."""
    while chunk := os.read(fd, size):
        yield chunk


def cat(s: Session, entry: FileEntry) -> None:
    """Write a stored file to standard output, each part verified before any of
    its bytes go out, after the jobs already started on it (its put). Damage
    stops the output there: an `error:` line, and a failed command."""
    from pfs.library.reader import Parts

    with interrupts.breakable():
        s.jobs.wait_file(entry.id)
    entry = s.store.stored_entry(entry.id)
    with s.store.reading(entry.id):
        parts = Parts(s.store, entry)
        s.out.write_bytes(parts.part(i) for i in range(len(parts.manifest.parts)))


def cmd_cat(s: Session, a: Args) -> None:
    cat(s, s.resolve(a.positional[0]))


COMMANDS = [
    Command("cat", "cat NAME|ID", "write a file's bytes to standard output, each part verified first "
            "(as get NAME|ID - does); damage stops it with an error", cmd_cat, 1, 1),
]
