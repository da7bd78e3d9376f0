"""What a command is and how a command line is split into one and its arguments."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pfs.errors import UsageError

if TYPE_CHECKING:
    from pfs.cli.commands.session import Session


class ExitShell(Exception):
    """Raised by `exit`: the loop stops reading commands."""


@dataclass(frozen=True)
class Args:
    """A command line split into positional arguments and --flags."""

    positional: list[str]
    flags: frozenset[str]
    values: dict[str, str] = field(default_factory=dict)  # options that take a value

    def get(self, index: int) -> str | None:
        return self.positional[index] if index < len(self.positional) else None


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    handler: Callable[[Session, Args], None]
    min_args: int = 0
    max_args: int = 0
    flags: frozenset[str] = frozenset()
    options: frozenset[str] = frozenset()  # options followed by a value
    short: dict[str, str] = field(default_factory=dict)  # short flag -> its long form


def split(line: str) -> list[str]:
    """Split a command line with shell quoting rules, comments included."""
    return [str(token) for token in split_words(line)]


class Pattern(str):
    """A word with a wildcard (`*`, `?`, `[`) outside quotes: the text as typed
    (quotes removed), and `pattern`, the glob that matches it (a wildcard
    quoted or escaped matches only itself)."""

    pattern: str


#: Stand-ins for the unquoted wildcards while shlex splits the line (private-use characters).
_WILD = {c: chr(0xE000 + i) for i, c in enumerate("*?[")}
_TAME = {v: k for k, v in _WILD.items()}


def split_words(line: str) -> list[str]:
    """split(), keeping which words have a wildcard outside quotes: those are Patterns."""
    marked = []
    for i, c, bare in _scan(line):
        if bare and c == "#" and (i == 0 or line[i - 1].isspace()):  # a comment starts a word, as a shell's does
            break
        marked.append(_WILD.get(c, c) if bare else c)
    try:
        words = shlex.split("".join(marked))
    except ValueError as exc:
        raise UsageError(f"cannot parse the line: {exc}", 'close the quote, e.g. put "my file.log"') from None
    return [_word(w) for w in words]


def _word(marked: str) -> str:
    text = "".join(_TAME.get(c, c) for c in marked)
    if not any(c in _TAME for c in marked):
        return text
    word = Pattern(text)
    word.pattern = "".join(_TAME[c] if c in _TAME else f"[{c}]" if c in "*?[" else c for c in marked)
    return word


def _scan(line: str):
    """Each (index, character, whether it is outside quotes and not escaped) of a line."""
    quote, escaped = "", False
    for i, c in enumerate(line):
        if escaped:
            escaped = False
            yield i, c, False
        elif c == "\\" and quote != "'":
            escaped = True
            yield i, c, False
        elif quote:
            quote = "" if c == quote else quote
            yield i, c, False
        elif c in "'\"":
            quote = c
            yield i, c, False
        else:
            yield i, c, True


def parse_args(command: Command, rest: list[str]) -> Args:
    """Check the arguments that follow a command's name against what it takes."""
    positional, flags, values, literal = [], set(), {}, False
    tokens = iter(rest)
    for token in tokens:
        if not literal and token in command.short:
            flags.add(command.short[token])
        elif literal or token == "-" or not token.startswith("-"):  # `-` is standard input or output
            positional.append(token)
        elif token == "--":
            literal = True
        elif token in command.flags:
            flags.add(token)
        elif token in command.options:
            values[token] = next(tokens, None)
            if values[token] is None:
                raise UsageError(f"{command.name}: {token} needs a value", f"usage: {command.usage}")
        elif not token.startswith("--"):
            raise UsageError(f"{command.name}: unknown option {token!r}",
                             f"usage: {command.usage}; a name that starts with - is typed ./{token} or after --")
        else:
            raise UsageError(f"{command.name}: unknown option {token!r}", f"usage: {command.usage}")
    if not command.min_args <= len(positional) <= command.max_args:
        few = len(positional) < command.min_args
        raise UsageError(f"{command.name}: {'missing' if few else 'too many'} arguments",
                         f"usage: {command.usage}")
    return Args(positional, frozenset(flags), values)
