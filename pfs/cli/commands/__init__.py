"""The commands of a session, one module per group (files, check, volumes, jobs,
help), the table built from them (table), the session that runs them (session)
and what their tables show (tables)."""

from pfs.cli.commands.help import TOPICS
from pfs.cli.commands.session import Session
from pfs.cli.commands.syntax import ExitShell, split
from pfs.cli.commands.table import ALIASES, COMMANDS, parse

__all__ = ["ALIASES", "COMMANDS", "TOPICS", "ExitShell", "Session", "parse", "split"]
