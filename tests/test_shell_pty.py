"""The interactive shell, driven through a real pseudo-terminal with pexpect."""

from __future__ import annotations

import io
import re
import sys

import pexpect
import pytest

from conftest import CHUNK, Pfs, env, make_file

TIMEOUT = 30
# prompt_toolkit draws the prompt as "pfs>" and moves the cursor past the space
# with an escape sequence, so the literal text on the wire is "pfs>".
PROMPT = "pfs>"


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
    for usage in ["put PATH", "get ID", "delete ID", "verify ID", "exit"]:
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
    child.expect_exact("help")
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
