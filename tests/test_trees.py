"""Whole directory trees: entry kinds in the store (directories, symlinks, a
name a file or a directory, never both), put -r / get -r / delete -r / mv of
a directory, on real trees copied from the machine and on generated edge cases."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from conftest import assert_clean_stderr, error_lines


def test_a_put_that_would_make_a_name_both_a_file_and_a_directory_is_refused(shared):
    (shared.cwd / "f").write_bytes(b"one")
    r = shared.run("put f a\nwait\nput f a/b\nwait\nput f c/d\nwait\nput f c\nwait\nmv a c\nlist\n")
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    assert error_lines(r.stderr) == [
        "error: cannot record the file a/b: a is a file, not a directory (a name is a file or a directory, never "
        "both: choose another name, or delete what holds it first)",
        "error: cannot record the file c: c is a directory (it holds c/d) (a name is a file or a directory, never "
        "both: choose another name, or delete what holds it first)",
        "error: cannot record the file c: c is a directory (it holds c/d) (a name is a file or a directory, never "
        "both: choose another name, or delete what holds it first)"]
    listed = [line.split()[:2] for line in r.stdout.splitlines() if line.startswith((" ", "1", "-"))]
    assert ["1", "a"] in listed and ["-", "c/"] in listed and not any(row[1] == "a/b" for row in listed)


def test_a_put_of_a_directory_without_r_is_refused_with_the_hint(pfs):
    (pfs.cwd / "tree").mkdir()
    for arg in ("tree", ".", "tree/"):
        r = pfs.run("", "put", arg)
        assert r.returncode == 1 and error_lines(r.stderr) == [
            f"error: {arg} is a directory (put -r stores a whole directory)"], r.stderr


def test_an_old_store_with_a_file_and_a_directory_of_one_name_opens_and_list_marks_them(pfs):
    """Made as an earlier pfs made such pairs: the records written to the journal as they were."""
    (pfs.cwd / "f").write_bytes(b"one")
    assert pfs.run("put f a\nwait\n").returncode == 0
    journal = pfs.store / "files.jsonl"
    record = json.loads(journal.read_text().splitlines()[-1])["file"]
    under = dict(record, id=record["id"] + 1, name="a/b")  # the same uuid: the same parts
    journal.write_text(journal.read_text() + json.dumps({"op": "put", "file": under}) + "\n")
    for manifest in (pfs.store / "manifests").iterdir():
        data = json.loads(manifest.read_text())
        (pfs.store / "manifests" / f"{under['id']}.json").write_text(json.dumps(dict(data, file=under)))
    r = pfs.run("list\nlist -r\nget a/b out\nwait\n")
    assert_clean_stderr(r.stderr)
    rows = [line for line in r.stdout.splitlines() if " a " in f" {line} " or "a/" in line]
    assert any("stored (also a directory: a/)" in row for row in rows), r.stdout
    assert (pfs.cwd / "out").read_bytes() == b"one"
    r = pfs.run("put f a/c\n")
    assert r.returncode == 1 and "a is a file, not a directory" in r.stderr


def test_info_says_what_an_entry_is_and_its_metadata(pfs):
    f = pfs.cwd / "f"
    f.write_bytes(b"x")
    f.chmod(0o640)
    r = pfs.run("put f\nwait\ninfo f\n")
    assert "kind:       regular file" in r.stdout and "mode:       0640" in r.stdout, r.stdout
