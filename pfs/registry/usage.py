"""What each volume holds, kept in every stored file's record (`placed`), so
that `volume list` sums records instead of reading every manifest, and a drain
or heal finds the files with pieces on a volume from the records alone.

`placed` is "VOLUME:PIECES:BYTES" for each volume the file's pieces are on,
space-separated, in volume order; "-" for a file with no pieces (an empty
one); "" for a file not stored, or one recorded before records kept it (its
manifest says: see `FileTable.volume_usage`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from pfs.registry.records import FileEntry, PartEntry

#: Volume id -> (pieces, bytes).
Usage = dict[int, tuple[int, int]]

_PLACED = re.compile(r"(?:-|\d+:\d+:\d+(?: \d+:\d+:\d+)*)?\Z")
NOTHING = "-"


def placed(parts: Iterable[PartEntry]) -> str:
    """The `placed` of a file whose parts are `parts`."""
    pieces: Counter = Counter()
    size: Counter = Counter()
    for p in parts:
        for volume, n in zip(p.volumes(), p.piece_sizes()):
            pieces[volume] += 1
            size[volume] += n
    return " ".join(f"{v}:{pieces[v]}:{size[v]}" for v in sorted(pieces)) or NOTHING


def valid(text: object) -> bool:
    return type(text) is str and _PLACED.match(text) is not None


def usage(text: str) -> Usage:
    """A `placed` as volume id -> (pieces, bytes)."""
    out: Usage = {}
    for item in text.split() if text != NOTHING else ():
        v, n, b = item.split(":")
        out[int(v)] = (int(n), int(b))
    return out


def on(text: str, vid: int) -> bool:
    """Whether a `placed` has pieces on volume `vid`."""
    return f" {vid}:" in f" {text}"


def add(into: Usage, more: Usage) -> Usage:
    for v, (n, b) in more.items():
        have = into.get(v, (0, 0))
        into[v] = (have[0] + n, have[1] + b)
    return into


def total(texts: Iterable[str]) -> Usage:
    """What the files of these `placed` hold on each volume, summed."""
    pieces: Counter = Counter()
    size: Counter = Counter()
    for text in texts:
        for item in text.split() if text != NOTHING else ():
            v, n, b = item.split(":")
            pieces[v] += int(n)
            size[v] += int(b)
    return {int(v): (pieces[v], size[v]) for v in pieces}


def on_disk(entry: FileEntry) -> int:
    """The bytes a stored file's pieces take on the volumes, every copy or shard
    counted (an older record that does not say: its parts' stored bytes)."""
    return sum(b for _, b in usage(entry.placed).values()) if entry.placed else entry.stored
