"""The shell completes stored names as a path completer does, `mv a dir/` moves
into a directory as `put a dir/` does, and a line printed while a progress bar
is up ends the bar's line first."""

from __future__ import annotations

import sys

import pexpect
import pytest
from helpers import CHUNK, env, make_file
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

import pfs
from pfs.cli.shell import ShellCompleter


@pytest.fixture
def store(tmp_path):
    source = make_file(tmp_path / "src.bin", CHUNK)
    with pfs.open(tmp_path / "store", workers=1, chunk_size=CHUNK) as s:
        for name in ("logs/a.log", "logs/b.log", "logs/2026/c.log", "my file.txt", "data.bin"):
            s.put(source, name)
        yield s.core


def complete(store, text: str) -> list[str]:
    return [c.text for c in ShellCompleter(store).get_completions(Document(text), CompleteEvent())]


def test_tab_completes_stored_names_a_directory_at_a_time(store):
    assert complete(store, "get lo") == ["logs/"]
    assert complete(store, "get logs/") == ["logs/2026/", "logs/a.log", "logs/b.log"]
    assert complete(store, "info logs/a") == ["logs/a.log"]
    assert complete(store, "cat logs/2026/") == ["logs/2026/c.log"]
    assert complete(store, "verify my") == ['"my file.txt"']
    assert complete(store, 'delete "my f') == ['"my file.txt"']
    assert complete(store, "mv da") == ["data.bin"]
    assert complete(store, "list l") == ["logs/"], "list completes directories only"
    assert complete(store, "get nothing/") == []
    assert "5" in complete(store, "get 5") and "logs/a.log" not in complete(store, "get 5")


def test_mv_into_a_directory_keeps_the_file_name(pfs):
    make_file(pfs.cwd / "a.bin", 100)
    r = pfs.run("put a.bin\nwait\nmv a.bin archive/\nmv archive/a.bin old/2026/\nlist -r\n")
    assert r.returncode == 0, r.stderr
    assert "[1] renamed to archive/a.bin" in r.stdout and "[1] renamed to old/2026/a.bin" in r.stdout
    assert "old/2026/a.bin" in r.stdout


@pytest.mark.parametrize("mode", ["one-shot", "shell exit"])
def test_a_line_during_a_progress_bar_ends_the_bar_first(pfs, mode):
    make_file(pfs.cwd / "big.bin", 24 << 20)
    e = env()
    e.update(TERM="xterm", LANG="C.UTF-8", LC_ALL="C.UTF-8", PROMPT_TOOLKIT_NO_CPR="1")
    argv = pfs.argv("put", "big.bin") if mode == "one-shot" else pfs.argv()
    child = pexpect.spawn(sys.executable, argv[1:], cwd=str(pfs.cwd), env=e, dimensions=(24, 120),
                          encoding="utf-8", timeout=60)
    try:
        if mode == "shell exit":
            child.expect_exact("pfs>")
            child.sendline("put big.bin")
            child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.terminate(force=True)
    screen = child.before
    at = screen.index("[1] stored big.bin")
    assert "put big.bin" in screen[:at], "a progress bar was shown"
    assert screen[:at].endswith(("\r\x1b[2K", "\n")), f"the line ran into the bar: {screen[at - 80:at + 20]!r}"
