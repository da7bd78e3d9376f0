"""Failures said once, in the words of what happened.

"Damaged" is only ever said of bytes that fail their hash (or a part file
that is gone or the wrong size); a part whose pieces could not be reached
(a volume missing, a server down or refusing) is unreachable, and may be read
once it is back. A thousand parts failing for one cause are one line: the
parts are grouped by cause and counted; each part is in the log."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Protocol

from pfs.errors import IntegrityError

log = logging.getLogger("pfs")

#: Lines shown at most (damaged parts one by one up to this many); the rest are counted, and logged.
SHOWN = 8

SALVAGE = "`get --salvage` writes what is readable, zero-filling the damaged parts"
RETRY = "try again once the volume can be reached"


class PartFailure(Protocol):
    index: int
    offset: int
    size: int
    problem: str

    @property
    def unreachable(self) -> bool: ...


def unreadable(damage: Sequence[PartFailure], done: str = "") -> IntegrityError:
    """The error of a file some of whose parts cannot be read: its first
    cause, how many more there are, and advice that fits (--salvage only
    for damage)."""
    lines = grouped(damage)
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    damaged = any(not d.unreachable for d in damage)
    advice = "; ".join(a for a in (done, SALVAGE if damaged else RETRY) if a)
    return IntegrityError(lines[0] + more, list(damage), advice)


def grouped(damage: Sequence[PartFailure]) -> list[str]:
    """Damage first, each damaged part on a line of its own (`damaged part 3
    bytes 0-99: hash mismatch`) where there are at most SHOWN; more, and what
    could not be reached, one line per cause (`unreachable parts 0-19: ...`)."""
    causes: dict[tuple[bool, str], list[PartFailure]] = {}
    one_by_one = sum(not d.unreachable for d in damage) <= SHOWN
    for d in damage:
        causes.setdefault((d.unreachable, cause(d.problem) if d.unreachable or not one_by_one else str(d.index)),
                          []).append(d)
    lines = []
    for (unreachable, _), parts in sorted(causes.items(), key=lambda c: (c[0][0], -len(c[1]), c[1][0].index)):
        word, p = "unreachable" if unreachable else "damaged", parts[0]
        if len(parts) == 1:
            lines.append(f"{word} part {p.index} bytes {p.offset}-{p.offset + max(p.size, 1) - 1}: {p.problem}")
        else:
            lines.append(f"{word} parts {spans(p.index for p in parts)}: {p.problem}")
    return lines


def grouped_pieces(bad: Sequence[str]) -> list[str]:
    """Lines `part 3 bytes 0-99: copy 1 on volume 2: why`: damaged ones each on a
    line of its own where there are at most SHOWN, the others grouped by their
    why (`37 copies or shards: why`); only damage is called damaged (an
    Unreachable line is none: see pfs.engine.worker)."""
    causes: dict[tuple[bool, str], list[str]] = {}
    one_by_one = sum(not is_unreachable(line) for line in bad) <= SHOWN  # damage is named exactly, where it can be
    for line in bad:
        _, _, piece = line.partition(": ")
        _, _, why = piece.partition(": ")
        unreachable = is_unreachable(line)
        causes.setdefault((unreachable, cause(why or piece) if unreachable or not one_by_one else line),
                          []).append(line)
    return [f"{'' if unreachable else 'damaged '}{lines[0]}" if len(lines) == 1 else
            f"{len(lines)} copies or shards{'' if unreachable else ' damaged'}: {why}"
            for (unreachable, why), lines in sorted(causes.items(), key=lambda c: (c[0][0], -len(c[1])))]


def cause(problem: str) -> str:
    """A problem without what differs between parts failing for one cause: how
    long each tried, how long ago the last failure was."""
    return _TIMES.sub("", str(problem))


_TIMES = re.compile(r"(?: after trying for| for)? \d+(?:\.\d+)? s(?: ago)?|, \d+(?:\.\d+)? s ago")


def any_damage(damage: Sequence[PartFailure | None], bad: Sequence[str]) -> bool:
    """Whether any part (None: a failure that is not about parts) or piece is damaged, not only unreachable."""
    return any(d is None or not d.unreachable for d in damage) or any(not is_unreachable(b) for b in bad)


def is_unreachable(problem: str) -> bool:
    """Whether a problem is no damage (worker.Unreachable, known by its type's name:
    this module sits below the engine)."""
    return type(problem).__name__ == "Unreachable"


def shown(lines: list[str], detail: Sequence[object], context: str) -> list[str]:
    """The first SHOWN lines, and one counting the rest; every line and every
    part behind them go to the log."""
    for item in detail:
        log.info("%s: %s", context, item)
    if len(lines) <= SHOWN:
        return lines
    rest = len(lines) - SHOWN + 1
    return lines[:SHOWN - 1] + [f"and {rest} more (each is in the store's log, pfs.log)"]


def spans(indexes, shown: int = 4) -> str:
    """Part numbers as ranges, the first `shown` of them: `0-19, 23, 30-31`,
    or `0-9, 12, 14, 16 and 40 more (56 parts)`."""
    runs: list[list[int]] = []
    for i in sorted(indexes):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    text = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs[:shown])
    if len(runs) > shown:
        rest = sum(len(r) for r in runs[shown:])
        text += f" and {rest} more ({sum(len(r) for r in runs)} parts)"
    return text
