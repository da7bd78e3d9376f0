"""The commands of a session, one module per group, and the table built from them."""

from pfs.cli.commands.session import ALIASES, COMMANDS, TOPICS, ExitShell, Session, parse, split

__all__ = ["ALIASES", "COMMANDS", "TOPICS", "ExitShell", "Session", "parse", "split"]
