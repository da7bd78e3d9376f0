"""The interactive shell: a prompt_toolkit session with history, completion and
a bottom toolbar of running jobs. Output from background jobs goes through
patch_stdout, so it never garbles the line being typed."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app_or_none
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

from pfs import __version__
from pfs.cli import interrupts
from pfs.cli.commands import ALIASES, COMMANDS, TOPICS, ExitShell, Session
from pfs.cli.output import RichOutput
from pfs.errors import PfsError, printable
from pfs.store.facade import Store
from pfs.units import format_rate

#: Commands whose first argument is a stored file (a name or an id).
_FILE_COMMANDS = {"get", "delete", "info", "verify", "cat", "mv"}
_PLAIN = re.compile(r"^[\w@%+=:,./~-]*$")


def quote(text: str) -> str:
    """A word as it must be typed so that the shell's splitting gives `text` back."""
    if _PLAIN.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_partial(text: str) -> tuple[list[str], int]:
    """Split the text before the cursor as the shell would, tolerating an open
    quote: the words (the last one is the one being typed, maybe ""), and
    where the last word starts in `text`."""
    words, start, current, quote_char, escaped, in_word = [], len(text), [], "", False, False
    for i, c in enumerate(text):
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\" and quote_char != "'":
            if not in_word:
                start, in_word = i, True
            escaped = True
        elif quote_char:
            if c == quote_char:
                quote_char = ""
            else:
                current.append(c)
        elif c in "'\"":
            if not in_word:
                start, in_word = i, True
            quote_char = c
        elif c.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            start = i + 1
        else:
            if not in_word:
                start, in_word = i, True
            current.append(c)
    words.append("".join(current))
    return words, start


class ShellCompleter(Completer):
    """Completes command names, options, help topics, stored names (a level of
    directories at a time, as a path), file ids (with their names) and local
    paths, quoting what needs quotes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.paths = PathCompleter(expanduser=True)

    def _stored(self, typed: str, replace: int, files: bool) -> Iterable[Completion]:
        for name, what in _stored_names(self.store, typed, files):
            yield Completion(quote(name), replace, display=printable(name), display_meta=what)

    def get_completions(self, document: Document, event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        words, start = split_partial(text)
        replace = start - len(text)  # negative: from the start of the word being typed
        current = words[-1]
        if len(words) == 1:
            yield from (Completion(n, replace, display_meta=c.summary)
                        for n, c in COMMANDS.items() if n.startswith(current.lower()))
            return
        name = ALIASES.get(words[0].lower(), words[0].lower())
        command = COMMANDS.get(name)
        if command is None:
            return
        if current.startswith("-"):
            yield from (Completion(f, replace) for f in sorted(command.flags) if f.startswith(current))
            return
        position = len([w for w in words[1:-1] if w == "-" or not w.startswith("-")])  # which positional argument
        if name == "help" and position == 0:
            topics = sorted({*COMMANDS, *ALIASES, *TOPICS})
            yield from (Completion(t, replace) for t in topics if t.startswith(current.lower()))
        elif name in _FILE_COMMANDS and position == 0:
            yield from self._stored(current, replace, files=True)
            if current.isdigit() or not current:
                yield from (Completion(str(e.id), replace, display_meta=printable(f"{e.name} ({e.status})"))
                            for e in self.store.list() if str(e.id).startswith(current))
        elif name == "list" and position == 0:
            yield from self._stored(current, replace, files=False)
        elif (name == "put" and position == 0) or (name == "get" and position == 1):
            for c in self.paths.get_completions(Document(current), event):
                yield Completion(quote(current + c.text), replace, display=c.display)


def _stored_names(store: Store, typed: str, files: bool) -> list[tuple[str, str]]:
    """The stored names (and, ending in /, directories) one level below what is
    typed that begin with it, with what each is: like a path completer's."""
    directory = typed[:typed.rfind("/") + 1]
    try:
        found, dirs = store.under(directory)
    except PfsError:  # not a name (yet): nothing to offer
        return []
    shown = [(d, "directory") for d in dirs] + ([(n, "file") for n in found] if files else [])
    return [(n, what) for n, what in shown if n.startswith(typed)]


def toolbar_text(jobs: list, width: int) -> str:
    """The toolbar's text: one entry per running job, as many as fit in
    `width`, then "+N more" rather than an entry cut in the middle."""
    if not jobs:
        return " no jobs running - type help for commands"
    entries = [printable(f"{j.kind} {j.file_id} {j.name} {j.fraction:.0%} {format_rate(j.done, j.elapsed)}")
               for j in jobs]
    shown = " " + entries[0][:max(width - 12, 10)]
    for i, entry in enumerate(entries[1:], 1):
        more = f" | +{len(entries) - i - 1} more" if i < len(entries) - 1 else ""
        if len(shown) + 3 + len(entry) + len(more) > width:
            return f"{shown} | +{len(entries) - i} more"
        shown += " | " + entry
    return shown


def toolbar(session: Session) -> Callable[[], str]:
    def render() -> str:
        app = get_app_or_none()
        width = app.output.get_size().columns if app else 80
        return toolbar_text(session.jobs.running(), width - 1)
    return render


class QuietFileHistory(FileHistory):
    """FileHistory that, when the file cannot be written (a full disk), keeps
    the history in memory and says so once, instead of a stack trace per command."""

    def __init__(self, path: str, warn: Callable[[str], None]) -> None:
        super().__init__(path)
        self._warn = warn
        self._failed = False

    def store_string(self, string: str) -> None:
        if self._failed:
            return
        try:
            super().store_string(string)
        except OSError as exc:
            self._failed = True
            self._warn(f"cannot write the history file {self.filename} ({exc.strerror}); "
                       "history is kept for this session only")


def _history(store: Store, warn: Callable[[str], None]) -> History:
    if store.names_sealed:  # the history names files, and a store with encrypted names must not
        return InMemoryHistory()
    path = store.root / "history"
    try:
        path.touch()
        return QuietFileHistory(str(path), warn)
    except OSError as exc:
        warn(f"cannot use the history file {path} ({exc.strerror}); history is kept for this session only")
        return InMemoryHistory()


def run_shell(store: Store) -> int:
    """Read commands at the `pfs> ` prompt until `exit` or Ctrl-D; returns the exit status."""
    interrupts.allow_breaking_waits()
    with patch_stdout(raw=True):
        session = Session(store, RichOutput())
        interrupts.abandoning(session.abandoned)
        warn = lambda text: session.out.line(f"warning: {text}")  # noqa: E731
        count = len(store.list())
        session.out.line(f"pfs {__version__}: store {store.description}, {count} file{'s' * (count != 1)}; "
                         "type help for commands, Ctrl-D to leave")
        prompt = PromptSession("pfs> ", history=_history(store, warn), completer=ShellCompleter(store),
                               auto_suggest=AutoSuggestFromHistory(), bottom_toolbar=toolbar(session),
                               refresh_interval=0.5, complete_while_typing=False, enable_suspend=True)
        while True:
            try:
                line = prompt.prompt()
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            try:
                for one in line.splitlines():  # a pasted block: one command per line, as in a script
                    session.execute(one)
            except KeyboardInterrupt:
                running = len(session.jobs.running())
                session.out.line(f"stopped waiting; {running} job{'s' * (running != 1)} still running "
                                 "(jobs shows them)")
            except ExitShell:
                break
    session.forget_failures()  # each was said as it happened; the status is that of what is waited for now
    if session.jobs.running():
        session.out.line("waiting for running jobs to finish (Ctrl-C abandons them)...")
    return session.finish(live=True)
