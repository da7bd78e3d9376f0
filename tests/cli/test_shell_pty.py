"""The interactive shell, driven through a real pseudo-terminal with pexpect."""

from __future__ import annotations

import io
import re
import sys

import pexpect
import pytest

from helpers import CHUNK, Pfs, env, make_file

TIMEOUT = 30
# prompt_toolkit draws the prompt as "pfs>" and moves the cursor past the space
# with an escape sequence, so the literal text on the wire is "pfs>".
PROMPT = "pfs>"
_MOVES = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def on_screen(text: str) -> str:
    """A pattern for `text` as the terminal is sent it: prompt_toolkit sends
    only what changed, so escape sequences may come between its characters,
    and a space already on screen may be passed with a cursor move instead."""
    return _MOVES.join(r"(?: |\x1b\[\d*C)" if c == " " else re.escape(c) for c in text)


@pytest.fixture
def shell(pfs: Pfs):
    children: list[pexpect.spawn] = []

    def spawn() -> pexpect.spawn:
        e = env()
        e.update(TERM="xterm", LANG="C.UTF-8", LC_ALL="C.UTF-8",
                 PROMPT_TOOLKIT_NO_CPR="1")  # pexpect does not answer cursor position requests
        child = pexpect.spawn(sys.executable, pfs.argv()[1:], cwd=str(pfs.cwd), env=e, dimensions=(40, 120),
                              encoding="utf-8", codec_errors="replace", timeout=TIMEOUT)
        child.logfile_read = io.StringIO()  # everything the terminal showed
        children.append(child)
        child.expect_exact(PROMPT)
        return child

    yield spawn
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def ended(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    assert child.signalstatus is None, f"killed by signal {child.signalstatus}"
    assert "Traceback" not in child.logfile_read.getvalue()
    return child.exitstatus


def test_put_list_help_exit(pfs, shell):
    data = make_file(pfs.cwd / "f.bin", 5 * CHUNK + 3).read_bytes()
    child = shell()
    child.sendline("put f.bin")
    child.expect(r"\[1\] storing f\.bin")
    child.expect(r"\[1\] stored f\.bin")
    child.expect_exact(PROMPT)
    child.sendline("list")
    # a rich table row: │ 1 │ f.bin │ ... │ stored │
    child.expect(r"1\s*[│|]\s*f\.bin\s*[│|].*stored")
    child.expect_exact(PROMPT)
    child.sendline("help")
    for usage in ["put PATH", "get NAME|ID", "delete NAME|ID", "verify NAME|ID", "exit"]:
        child.expect_exact(usage)
    child.expect_exact(PROMPT)
    child.sendline("exit")
    assert ended(child) == 0

    r = pfs.run("list\nget 1 out.bin\n")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\s*1\s+f\.bin\s.*\bstored\b", r.stdout, re.M), r.stdout
    assert (pfs.cwd / "out.bin").read_bytes() == data
    history = (pfs.store / "history").read_text()  # the shell keeps its history in the store
    assert "put f.bin" in history and "list" in history


def test_bad_command_shows_an_error_and_the_shell_goes_on(pfs, shell):
    child = shell()
    child.sendline("frobnicate now")
    child.expect(r"error:.*unknown command 'frobnicate'")
    child.expect_exact(PROMPT)
    child.sendline('put "unterminated')
    child.expect(r"error:.*quote")
    child.expect_exact(PROMPT)
    child.sendline("help put")
    child.expect_exact("put PATH")
    child.expect_exact(PROMPT)
    child.send("hel\t")  # Tab completes the only matching command
    child.expect(on_screen("help"))
    child.send("\r")
    child.expect_exact("what it does")  # the header of the full help table
    child.expect_exact(PROMPT)
    assert child.isalive()
    child.sendline("quit")
    ended(child)  # (its status reflects the failed commands; not asserted here)


def test_ctrl_d_exits_after_waiting_for_the_put(pfs, shell):
    data = make_file(pfs.cwd / "g.bin", 40 * CHUNK).read_bytes()
    child = shell()
    child.sendline("put g.bin")
    child.expect(r"\[1\] storing g\.bin")
    child.expect_exact(PROMPT)
    child.sendcontrol("d")
    assert ended(child) == 0
    r = pfs.run("get 1 out.bin\n")
    assert r.returncode == 0, r.stderr
    assert (pfs.cwd / "out.bin").read_bytes() == data


def test_ctrl_c_clears_the_line_and_does_not_exit(pfs, shell):
    child = shell()
    child.send("frobnicate")  # typed, then abandoned with Ctrl-C
    child.expect_exact("frobnicate")
    child.sendintr()
    child.expect_exact(PROMPT)
    assert child.isalive()
    child.sendline("list")
    child.expect("no files stored")
    assert "unknown command" not in child.before, "the abandoned text was not cleared"
    child.expect_exact(PROMPT)
    child.sendintr()  # on an empty line too
    child.expect_exact(PROMPT)
    assert child.isalive()
    child.sendline("exit")
    assert ended(child) == 0


def test_start_up_line_names_the_store(pfs, shell):
    child = shell()
    shown = child.logfile_read.getvalue()
    assert f"store {pfs.store}, 0 files" in shown, shown
    child.sendline("exit")
    assert ended(child) == 0


def test_tab_completion_quotes_paths_and_completes_options_and_topics(pfs, shell):
    data = make_file(pfs.cwd / "my notes.txt", 3 * CHUNK).read_bytes()
    child = shell()
    child.send("put my\t")
    child.expect(on_screen('"my notes.txt"'))  # inserted quoted, so the command works as it stands
    child.send("\r")
    child.expect(r"\[1\] stored my notes\.txt")
    child.expect_exact(PROMPT)
    child.send('get 1 "my\t')  # inside an open quote
    child.expect(on_screen('"my notes.txt"'))
    child.send(" --f\t")
    child.expect(on_screen("--force"))
    child.send("\r")
    child.expect(r"\[1\] restoring my notes\.txt")
    child.expect(r"\[1\] restored my notes\.txt")
    child.expect_exact(PROMPT)
    child.send("help rep\t")
    child.expect_exact("air")  # the terminal is sent only what completion added
    child.send("\r")
    child.expect_exact("Rebuilds damaged metadata")
    child.expect_exact(PROMPT)
    child.sendline("exit")
    assert ended(child) == 0
    assert (pfs.cwd / "my notes.txt").read_bytes() == data


def test_completer_directly():
    """The completer fed a Document, as prompt_toolkit does."""
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from pfs.cli.shell import ShellCompleter

    def complete(text: str) -> list[str]:
        return [c.text for c in ShellCompleter(None).get_completions(Document(text), CompleteEvent())]

    assert complete("verify --a") == ["--all"]
    assert complete("get 1 out --") == ["--force", "--json", "--recursive", "--salvage"]
    assert complete("help q") == ["quit"]
    assert complete("he") == ["heal", "help"] and complete("hel") == ["help"]
    assert complete("frob --f") == []


def test_toolbar_collapses_to_more_instead_of_cutting_a_value():
    from pfs.cli.jobs import Job
    from pfs.cli.shell import toolbar_text

    jobs = [Job(i, "put", i, f"file-{i}.bin", 100, done=50) for i in range(1, 8)]
    text = toolbar_text(jobs, 80)
    assert len(text) <= 80
    assert text.endswith(" more"), text
    shown, more = text.rsplit(" | +", 1)
    entries = shown.strip().split(" | ")
    assert int(more.split()[0]) + len(entries) == 7, text
    for entry in entries:
        assert re.fullmatch(r"put \d file-\d\.bin 50% [\d.]+ (B|KiB|MiB|GiB)/s", entry), entry
    assert toolbar_text(jobs[:1], 80).strip().startswith("put 1 file-1.bin 50%")


def test_history_on_a_full_disk_falls_back_quietly(pfs, shell, small_fs, tmp_path):
    fs = small_fs("full", 4 << 20)
    if fs.kind != "tmpfs":
        pytest.skip("needs a real full filesystem (tmpfs)")
    pfs.store = fs.path / "store"
    assert pfs.run("exit\n").returncode == 0
    (pfs.store / "reserve").unlink()  # no slack for the history to use
    fs.fill()
    child = shell()
    for command in ("help", "list", "jobs", "list"):
        child.sendline(command)
        child.expect_exact(PROMPT)
    child.sendline("exit")
    ended(child)
    shown = child.logfile_read.getvalue()
    assert "Traceback" not in shown and "Unhandled exception" not in shown, shown
    assert shown.count("warning: cannot write the history file") == 1, shown


def test_ctrl_z_suspends_and_fg_resumes(pfs):
    """Under a job-control shell, as a user runs it (a process group with no such
    parent ignores stop signals, so bash is the parent here)."""
    import shlex

    e = env()
    e.update(TERM="xterm", LANG="C.UTF-8", LC_ALL="C.UTF-8", PROMPT_TOOLKIT_NO_CPR="1", PS1="$ ")
    bash = pexpect.spawn("bash", ["--norc", "--noprofile", "-i"], cwd=str(pfs.cwd), env=e, dimensions=(40, 120),
                         encoding="utf-8", codec_errors="replace", timeout=TIMEOUT)
    bash.logfile_read = io.StringIO()
    try:
        bash.expect_exact("$ ")
        bash.sendline(shlex.join(pfs.argv()))
        bash.expect_exact(PROMPT)
        bash.sendcontrol("z")
        bash.expect("Stopped")
        bash.expect_exact("$ ")
        bash.sendline("fg")
        bash.sendline("list")
        bash.expect("no files stored")
        bash.sendline("exit")
        bash.expect_exact("$ ")
        bash.sendline("echo status=$?")
        bash.expect("status=0")
        assert "Traceback" not in bash.logfile_read.getvalue()
    finally:
        bash.terminate(force=True)


def test_pasted_lines_run_one_command_each(pfs, shell):
    """A bracketed paste arrives as one multi-line buffer; each line is a command."""
    make_file(pfs.cwd / "a.bin", 2 * CHUNK)
    child = shell()
    child.send("\x1b[200~put a.bin\nwait\nlist\n\x1b[201~")
    child.send("\r")
    child.expect(r"\[1\] stored a\.bin")
    child.expect(r"1\s*[│|]\s*a\.bin\s*[│|].*stored")
    child.expect_exact(PROMPT)
    child.sendline("exit")
    assert ended(child) == 0
    assert "too many arguments" not in child.logfile_read.getvalue()
