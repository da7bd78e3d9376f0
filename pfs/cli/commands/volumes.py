"""The `volume` command: add, list, drain, undrain, remove and compact the volumes parts are kept on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfs.cli.commands import records, tables
from pfs.cli.commands.check import check_all
from pfs.cli.commands.syntax import Args, Command
from pfs.errors import UsageError, printable
from pfs.units import format_size

if TYPE_CHECKING:
    from pfs.cli.commands.session import Session

USAGE = ("volume add DIR|s3://BUCKET/PREFIX [--weight W] [--endpoint URL] [--create-bucket] | list [--json] | "
         "drain ID | undrain ID | remove ID | compact [ID]")


def cmd_volume(s: Session, a: Args) -> None:
    """volume add PATH [--weight W] | list | drain ID | undrain ID | remove ID | compact [ID]."""
    action, rest = a.positional[0].lower(), a.positional[1:]
    wanted = {"add": {1}, "list": {0}, "drain": {1}, "undrain": {1}, "remove": {1}, "compact": {0, 1}}
    if action not in wanted:
        raise UsageError(f"volume: unknown action {action!r}", f"usage: {USAGE}")
    allowed = {"list": {"--json"}, "add": {"--create-bucket"}}.get(action, set())
    if len(rest) not in wanted[action] or (a.values and action != "add") or not a.flags <= allowed:
        raise UsageError(f"volume {action}: wrong arguments", f"usage: {USAGE}")
    if action == "add":
        config = s.store.add_volume(rest[0], _weight(a.values.get("--weight", "1")), a.values.get("--endpoint", ""),
                                    "--create-bucket" in a.flags)
        s.out.line(printable(f"added volume {config.id}: {s.store.volset.location(config)}"))
    elif action == "list":
        report = s.store.volume_report()
        if "--json" in a.flags:
            s.out.json([records.volume_record(v) for v in report])
        else:
            s.out.table(tables.volume_table(report))
    elif action == "drain":
        _drain(s, s.store.volume_id(rest[0]))
    elif action == "undrain":
        vid = s.store.volume_id(rest[0])
        s.store.stop_drain(vid)
        s.out.line(f"volume {vid} takes pieces again")
    elif action == "remove":
        vid = s.store.volume_id(rest[0])
        s.store.remove_volume(vid)
        s.out.line(f"removed volume {vid}")
    else:
        for vid, packs, freed in s.store.compact_volumes(s.store.volume_id(rest[0]) if rest else None):
            s.out.line(f"volume {vid}: {packs} pack(s) compacted, {format_size(freed)} freed")


def _drain(s: Session, vid: int) -> None:
    """Move every piece off the volume: those of the stored files on it, and
    those that puts begun before the drain (in any pfs) place there, once
    each has ended. Refused at once if it cannot finish."""
    s.store.check_readable()  # a write-only pfs moves no piece: it would have to read them
    earlier = frozenset(s.store.start_drain(vid))

    def after() -> str:
        left = s.store.files_on(vid)
        return f"volume {vid} still holds pieces of {len(left)} file(s): `volume drain {vid}` again" if left \
            else f"volume {vid} is drained: `volume remove {vid}` removes it"
    check_all(s, "heal", f"volume drain {vid}", lambda i, job: s.store.heal(i, job.advance, job.cancelled),
              set(s.store.files_on(vid)) | earlier, after, earlier)


def _weight(text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = 0.0
    if not 0 < weight < 1e9:
        raise UsageError(f"--weight {text}: not a positive number", "e.g. --weight 2 for a disk twice the size")
    return weight


COMMANDS = [
    Command("volume", USAGE,
            "manage the volumes parts are kept on: add one, list them (used, free, parts, status), "
            "move everything off one (undrain: take that back), forget an empty one, "
            "reclaim the space of deleted small files' packs (compact)", cmd_volume, 1, 2,
            frozenset({"--json", "--create-bucket"}),
            options=frozenset({"--weight", "--endpoint"})),
]
