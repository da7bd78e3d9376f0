"""The `key` command: the key slots of an encrypted store (see docs/encryption.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfs.cli.commands.syntax import Args, Command
from pfs.cli.output import Table
from pfs.errors import UsageError

if TYPE_CHECKING:
    from pfs.cli.commands.session import Session

USAGE = "key add [--new-password-file FILE] | add --recipient FILE | list | remove ID [--new-password-file FILE]"


def cmd_key(s: Session, a: Args) -> None:
    """key add | list | remove ID."""
    action, rest = a.positional[0].lower(), a.positional[1:]
    wanted = {"add": 0, "list": 0, "remove": 1}
    if action not in wanted:
        raise UsageError(f"key: unknown action {action!r}", f"usage: {USAGE}")
    store, new_file, recipient = s.store, a.values.get("--new-password-file"), a.values.get("--recipient")
    if len(rest) != wanted[action] or (a.values and action == "list") or \
            (recipient is not None and (action != "add" or new_file is not None)):
        raise UsageError(f"key {action}: wrong arguments", f"usage: {USAGE}")
    if not store.sealed:
        raise UsageError(f"the store {store.description} is not encrypted: it has no keys",
                         "a store is encrypted when it is created with --encrypt")
    if action == "add" and recipient is not None:
        rid = store.keys.add_recipient(store.slots, store.sealed_for, recipient)
        s.out.line(f"added recipient {rid}: its public key is in {recipient}; a pfs given only that file "
                   f"(--recipient-key {recipient}) stores files and reads none back")
    elif action == "add":
        slot_id = store.keys.add(store.slots, store.description, new_file)
        s.out.line(f"added key slot {slot_id}")
    elif action == "list":
        rows = [[r.id, r.kind, r.created, r.host, "in use" if r.in_use else ""] for r in store.keys.rows(store.slots)]
        s.out.table(Table(["id", "kind", "created", "host", ""], rows, frozenset()))
    else:
        kind = store.keys.remove(store.slots, rest[0], store.description, new_file)
        s.out.line(f"removed key slot {rest[0]}" if kind == "password" else
                   f"removed recipient {rest[0]}: a pfs holding its public key stores nothing more; "
                   "what it stored stays readable")


COMMANDS = [
    Command("key", USAGE, "the passwords of an encrypted store: add one (asked twice, or from "
            "--new-password-file) or a write-only recipient (its public key written to FILE), list the key "
            "slots and recipients, remove one (never the last password)", cmd_key, 1, 2,
            options=frozenset({"--new-password-file", "--recipient"})),
]
