"""The interactive shell: a prompt_toolkit session with history, completion and
a bottom toolbar of running jobs. Output from background jobs goes through
patch_stdout, so it never garbles the line being typed."""

from __future__ import annotations

from collections.abc import Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

from pfs.commands import COMMANDS, ExitShell, Session
from pfs.output import RichOutput
from pfs.store import Store
from pfs.units import format_rate

#: Commands whose first argument is a file id.
_ID_COMMANDS = {"get", "delete", "info", "verify"}


class ShellCompleter(Completer):
    """Completes command names, file ids (with their names) and local paths."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, event: CompleteEvent) -> Iterable[Completion]:
        words = document.text_before_cursor.split()
        if document.text_before_cursor.endswith(" "):
            words.append("")
        if len(words) <= 1:
            prefix = words[0] if words else ""
            yield from (Completion(n, -len(prefix), display_meta=c.summary)
                        for n, c in COMMANDS.items() if n.startswith(prefix))
            return
        command, current = words[0], words[-1]
        if command in _ID_COMMANDS and len(words) == 2:
            yield from (Completion(str(e.id), -len(current), display_meta=f"{e.name} ({e.status})")
                        for e in self.store.list() if str(e.id).startswith(current))
        elif command == "put" or (command == "get" and len(words) == 3):
            yield from self.paths.get_completions(Document(current), event)


def toolbar(session: Session):
    """The bottom toolbar: one entry per running job, with percent and rate."""
    def render() -> str:
        jobs = session.jobs.running()
        if not jobs:
            return " no jobs running - type help for commands"
        return " " + " | ".join(f"{j.kind} {j.file_id} {j.name} {j.fraction:.0%} {format_rate(j.done, j.elapsed)}"
                                for j in jobs)
    return render


def _history(store: Store):
    try:
        path = store.root / "history"
        path.touch()
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


def run_shell(store: Store) -> int:
    """Read commands at the `pfs> ` prompt until `exit` or Ctrl-D; returns the exit status."""
    with patch_stdout(raw=True):
        session = Session(store, RichOutput())
        prompt = PromptSession("pfs> ", history=_history(store), completer=ShellCompleter(store),
                               auto_suggest=AutoSuggestFromHistory(), bottom_toolbar=toolbar(session),
                               refresh_interval=0.5, complete_while_typing=False)
        while True:
            try:
                session.execute(prompt.prompt())
            except KeyboardInterrupt:
                continue
            except (EOFError, ExitShell):
                break
        if session.jobs.running():
            session.out.line("waiting for running jobs to finish...")
        return session.finish()
