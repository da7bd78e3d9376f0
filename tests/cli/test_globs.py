"""Wildcards in a put's local paths expand as a shell expands them (bash with
failglob), in the shell and in scripts; quoted or escaped, they are part of the name."""

from __future__ import annotations

from helpers import assert_clean_stderr, error_lines
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from pfs.cli.shell import ShellCompleter


def logs(pfs):
    top = pfs.cwd / "logs"
    (top / "old").mkdir(parents=True)
    for name in ("b.log", "a.log", "c.txt", ".hidden.log", "we*rd.log", "-dash.log"):
        (top / name).write_text(name)
    return top


def stored(pfs) -> list[str]:
    return sorted(line.split()[1] for line in pfs.run("list -r\n").stdout.splitlines()[1:] if line.split()[0] != "-")


def test_put_expands_a_wildcard_into_one_put_per_match_in_name_order(pfs):
    logs(pfs)
    r = pfs.run("put logs/*.log dest/\nwait\n")
    assert r.returncode == 0, r.stderr
    assert_clean_stderr(r.stderr)
    assert stored(pfs) == ["dest/-dash.log", "dest/a.log", "dest/b.log", "dest/we*rd.log"]  # no hidden file, as bash
    order = [line.split()[2] for line in r.stdout.splitlines() if "] storing " in line]
    assert order == ["dest/-dash.log", "dest/a.log", "dest/b.log", "dest/we*rd.log"]
    assert (pfs.cwd / "back").mkdir() is None and pfs.run("get dest/a.log back/\n").returncode == 0
    assert (pfs.cwd / "back" / "a.log").read_text() == "a.log"


def test_a_wildcard_that_matches_nothing_is_one_error_and_runs_nothing(pfs):
    logs(pfs)
    r = pfs.run("put logs/*.nope logs/a.log dest/\nput logs/a.log kept\nwait\n")
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    assert error_lines(r.stderr) == [error_lines(r.stderr)[0]] and "no match: logs/*.nope" in r.stderr
    assert stored(pfs) == ["kept"]  # the line failed whole; the session went on


def test_a_quoted_or_escaped_wildcard_is_part_of_the_name(pfs):
    logs(pfs)
    r = pfs.run("put 'logs/we*rd.log' q\nput logs/we\\*rd.log e\nput \"logs/*\" nothing\nwait\n")
    assert r.returncode == 1  # the last: no file is named logs/* itself
    assert len(error_lines(r.stderr)) == 1 and "logs/*" in r.stderr
    assert stored(pfs) == ["e", "q"]


def test_several_matches_need_a_directory_and_put_r_puts_each_inside(pfs):
    top = logs(pfs)
    (top / "new").mkdir()
    (top / "new" / "x").write_text("x")
    r = pfs.run("put logs/*.log onefile\nput -r logs/[no]* backup/\nwait\n")
    assert r.returncode == 1
    assert len(error_lines(r.stderr)) == 1 and "onefile/" in r.stderr
    assert [n for n in stored(pfs) if not n.endswith("/")] == ["backup/new/x"]
    listed = pfs.run("list backup/\n").stdout
    assert "backup/new/" in listed and "backup/old/" in listed


def test_tab_completion_of_local_paths_keeps_working(pfs, monkeypatch):
    logs(pfs)
    monkeypatch.chdir(pfs.cwd)

    def complete(text: str) -> list[str]:
        return [c.text for c in ShellCompleter(None).get_completions(Document(text), CompleteEvent())]
    assert complete("put logs/o") == ["logs/old"]
    assert complete("put -r logs/ol") == ["logs/old"]
    assert complete("put logs/*") == []  # a pattern being typed is no path: nothing offered, nothing fails
