"""The commands about the session itself: help (on commands and topics) and exit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfs.cli.commands.syntax import Args, Command, ExitShell
from pfs.cli.output import Table
from pfs.errors import UsageError

if TYPE_CHECKING:
    from pfs.cli.commands.session import Session

#: Help on what is not a command of the session.
TOPICS = {
    "names": ["A stored file has a name, a path inside the store such as logs/2026/app.log, and an id.",
              "  get, delete, info and verify take either: an argument made only of digits is an id;",
              "  ./123 or /123 is the file named 123. Names have no empty, `.` or `..` segments and no",
              "  control characters. A name resolves to the last file stored (or renamed) under it:",
              "  older versions kept by `put --keep`, and duplicate names in a store made before names",
              "  were paths, are reached by id (`list` shows them)."],
    "repair": ["pfs --store DIR repair   (from the system shell, with no pfs running on the store)",
               "  Rebuilds damaged metadata from what survives: the readable snapshot and journal lines,",
               "  the manifests, and the part files themselves. It prints a `repaired:` line for each thing",
               "  it fixed and a `lost:` line for each it could not save, moves what it cannot use to",
               "  STORE/lost+found (it deletes nothing), and exits 1 if anything was lost.",
               "  Run it when pfs says the store's metadata is damaged."],
}

#: The one command run from the system shell rather than inside a session.
REPAIR = ("pfs --store DIR repair", "(from the system shell) rebuild damaged metadata; `help repair`")


def aliases_of(name: str, aliases: dict[str, str]) -> str:
    others = [alias for alias, target in aliases.items() if target == name]
    return f" (also: {', '.join(others)})" if others else ""


def cmd_help(s: Session, a: Args) -> None:
    commands, aliases = s.commands, s.aliases
    if a.positional:
        name = aliases.get(a.positional[0].lower(), a.positional[0].lower())
        if name in TOPICS:
            s.out.line("\n".join(TOPICS[name]))
            return
        if name not in commands:
            raise UsageError(f"unknown command {name!r}", "type `help` for the list of commands")
        c = commands[name]
        s.out.line(c.usage + aliases_of(name, aliases))
        s.out.line(f"  {c.summary}")
        return
    rows = [[c.usage + aliases_of(c.name, aliases), c.summary] for c in commands.values()]
    rows.append(list(REPAIR))
    s.out.table(Table(["command", "what it does"], rows))


def cmd_exit(s: Session, a: Args) -> None:
    raise ExitShell


COMMANDS = [
    Command("help", "help [COMMAND]", "show the commands, or one command's usage (also: help names, help repair)",
            cmd_help, 0, 1),
    Command("exit", "exit", "wait for running operations, then leave (Ctrl-D does the same)", cmd_exit),
]
