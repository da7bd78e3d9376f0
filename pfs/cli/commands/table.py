"""The command table, built from the group modules, and the lookup of a command line in it."""

from __future__ import annotations

from pfs.cli.commands import check, files, help, jobs, keys, streams, trees, volumes
from pfs.cli.commands.syntax import Args, Command, parse_args
from pfs.errors import UsageError

COMMANDS: dict[str, Command] = {c.name: c for group in (files, trees, streams, check, volumes, keys, jobs, help)
                                for c in group.COMMANDS}
ALIASES = {"quit": "exit", "ls": "list", "rm": "delete"}


def parse(tokens: list[str]) -> tuple[Command, Args]:
    """Match tokens to a command and check its arguments."""
    name, rest = tokens[0], tokens[1:]
    command = COMMANDS.get(ALIASES.get(name.lower(), name.lower()))
    if command is None:
        raise UsageError(f"unknown command {name!r}", "type `help` for the list of commands")
    return command, parse_args(command, rest)
