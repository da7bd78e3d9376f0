"""The `key` command: the key slots of an encrypted store (see docs/encryption.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfs.cli.commands.syntax import Args, Command
from pfs.cli.output import Table
from pfs.errors import UsageError

if TYPE_CHECKING:
    from pfs.cli.commands.session import Session

USAGE = "key add [--new-password-file FILE] | list | remove ID [--new-password-file FILE]"


def cmd_key(s: Session, a: Args) -> None:
    """key add | list | remove ID."""
    action, rest = a.positional[0].lower(), a.positional[1:]
    wanted = {"add": 0, "list": 0, "remove": 1}
    if action not in wanted:
        raise UsageError(f"key: unknown action {action!r}", f"usage: {USAGE}")
    if len(rest) != wanted[action] or (a.values and action == "list"):
        raise UsageError(f"key {action}: wrong arguments", f"usage: {USAGE}")
    store, new_file = s.store, a.values.get("--new-password-file")
    if not store.sealed:
        raise UsageError(f"the store {store.description} is not encrypted: it has no keys",
                         "a store is encrypted when it is created with --encrypt")
    if action == "add":
        slot_id = store.keys.add(store.slots, store.description, new_file)
        s.out.line(f"added key slot {slot_id}")
    elif action == "list":
        rows = [[r.id, r.created, r.host, "in use" if r.in_use else ""] for r in store.keys.rows(store.slots)]
        s.out.table(Table(["id", "created", "host", ""], rows, frozenset()))
    else:
        store.keys.remove(store.slots, rest[0], store.description, new_file)
        s.out.line(f"removed key slot {rest[0]}")


COMMANDS = [
    Command("key", USAGE, "the passwords of an encrypted store: add one (asked twice, or from "
            "--new-password-file), list the key slots, remove one (never the last)", cmd_key, 1, 2,
            options=frozenset({"--new-password-file"})),
]
