"""Damaged data and damaged metadata.

Data: real bad bytes in real part files -- a flipped byte, a truncated part, a
deleted part, two parts' files swapped -- for raw (random) and zstd (text)
parts. `get` fails naming the file id, part index and byte range and writes
nothing; `verify ID` / `verify --all` report each damaged part and write
nothing; `get --salvage` writes what is readable, zero-fills the damaged
ranges, lists them and exits non-zero.

Metadata: a truncated or garbled files.json, a garbled middle line of
files.jsonl, a garbled manifest: pfs refuses with one `error:` line naming the
damaged file and pointing at `pfs --store DIR repair` (exit status 2 when the
store cannot open), changes nothing, and `repair` brings every intact file
back byte for byte. A torn last journal line (a crash mid-append) is not
damage: the store opens as usual.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import (CHUNK, Pfs, assert_clean_stderr, error_lines, make_file, parse_list, part_path,
                     read_manifest, tree_state)

#: Store files that legitimately change on every open.
VOLATILE = ("lock", "pfs.log")
VICTIM_SIZE = 8 * CHUNK + 1000  # 9 parts, the last one short


def _byte_range(index: int, size: int = VICTIM_SIZE) -> tuple[int, int]:
    start = index * CHUNK
    return start, min(start + CHUNK, size) - 1


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _swap(a: Path, b: Path) -> None:
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


#: How each damaged file is damaged, and which of its parts that damages.
KINDS = {"flip": {3}, "flip-last": {8}, "truncate": {3}, "delete": {3}, "swap": {2, 5}}
#: File ids as stored by the fixture: one file per kind, then an intact one.
IDS = {how: i for i, how in enumerate(KINDS, 1)}
OTHER = len(KINDS) + 1


def _damage(store: Path, file_id: int, how: str) -> None:
    if how == "flip":
        _flip(part_path(store, file_id, 3))
    elif how == "flip-last":
        _flip(part_path(store, file_id, 8))
    elif how == "truncate":
        _truncate(part_path(store, file_id, 3))
    elif how == "delete":
        part_path(store, file_id, 3).unlink()
    elif how == "swap":
        _swap(part_path(store, file_id, 2), part_path(store, file_id, 5))
    else:
        raise AssertionError(how)


def _template(tmp_path_factory, name: str) -> Pfs:
    """A store of the module's own, to be copied by tests rather than filled again by each."""
    base = tmp_path_factory.mktemp(name)
    (base / "work").mkdir()
    return Pfs(base / "store", base / "work")


def _copy(template: Pfs, pfs: Pfs) -> Pfs:
    """The test's own copy of a template store, at the place of its `pfs` fixture."""
    shutil.copytree(template.store, pfs.store)
    return pfs


@pytest.fixture(scope="module", params=["random", "text"], ids=["raw", "zstd"])
def stored_victims(tmp_path_factory, request) -> tuple[Pfs, dict[int, bytes]]:
    """One stored file per kind of damage (ids per IDS, named <kind>.bin), and one
    other file (OTHER). Parts are raw (random data) or zstd (text)."""
    kind = request.param
    pfs = _template(tmp_path_factory, f"victims-{kind}")
    originals = {}
    for how, i in IDS.items():
        originals[i] = make_file(pfs.cwd / f"{how}.bin", VICTIM_SIZE, kind).read_bytes()
    originals[OTHER] = make_file(pfs.cwd / "other.bin", 3 * CHUNK - 5, kind).read_bytes()
    r = pfs.run("".join(f"put {how}.bin\nwait\n" for how in IDS) + "put other.bin\n")
    assert r.returncode == 0, r.stderr
    for how, i in IDS.items():
        codecs = {p["codec"] for p in read_manifest(pfs.store, i)["parts"]}
        assert codecs == ({"none"} if kind == "random" else {"zstd"}), codecs
    return pfs, originals


@pytest.fixture
def damaged_store(stored_victims, pfs):
    """A copy of stored_victims, each <kind>.bin damaged that way; OTHER intact.
    Returns (pfs, {id: original bytes})."""
    template, originals = stored_victims
    _copy(template, pfs)
    for how, i in IDS.items():
        _damage(pfs.store, i, how)
    return pfs, originals


def _assert_names_damage(stderr: str, how: str) -> None:
    """Each damaged part of <how>.bin is named with its byte range; no intact part is."""
    i, damaged = IDS[how], KINDS[how]
    for index in damaged:
        start, end = _byte_range(index)
        assert f" {i} ({how}.bin): damaged part {index} bytes {start}-{end}:" in stderr, \
            f"{how}: part {index} (bytes {start}-{end}) not reported:\n{stderr}"
    for index in set(range(9)) - damaged:
        assert f" {i} ({how}.bin): damaged part {index} bytes" not in stderr, \
            f"{how}: intact part {index} reported as damaged:\n{stderr}"


def test_get_of_damaged_file_fails_and_writes_nothing(damaged_store, tmp_path):
    pfs, originals = damaged_store
    for form in ("file", "directory"):  # explicit destination name, and a directory (default name)
        dest = {how: tmp_path / form / how for how in IDS}
        for d in dest.values():
            d.mkdir(parents=True)
        r = pfs.run("".join(f"get {i} {dest[how] / 'out.bin' if form == 'file' else dest[how]}\n"
                            for how, i in IDS.items()))
        assert r.returncode == 1
        assert_clean_stderr(r.stderr)
        for how, i in IDS.items():
            mine = [l for l in error_lines(r.stderr) if f" {i} ({how}.bin): " in l]
            assert mine and mine[0].startswith(f"error: get {i} ({how}.bin): damaged part "), \
                f"{how}: {r.stderr}"
            assert len(mine) == len(KINDS[how]), f"{how}: one line per damaged part expected:\n{r.stderr}"
            _assert_names_damage(r.stderr, how)
            assert os.listdir(dest[how]) == [], f"{how}: a failed get left {os.listdir(dest[how])}"
    r = pfs.run(f"get {OTHER} {tmp_path / 'other.bin'}\n")  # the intact file is unaffected
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "other.bin").read_bytes() == originals[OTHER]


def test_verify_reports_each_damaged_part_and_writes_nothing(damaged_store):
    pfs, _ = damaged_store
    store_before, cwd_before = tree_state(pfs.store, VOLATILE), tree_state(pfs.cwd)
    for script in ("".join(f"verify {i}\n" for i in IDS.values()) + f"verify {OTHER}\n", "verify --all\n"):
        r = pfs.run(script)
        assert r.returncode == 1, r.stderr
        assert_clean_stderr(r.stderr)
        assert len(error_lines(r.stderr)) == sum(len(d) for d in KINDS.values()), r.stderr
        for how in IDS:
            _assert_names_damage(r.stderr, how)
        assert f"[{OTHER}] verified other.bin: every part is intact" in r.stdout, r.stdout
        assert f" {OTHER} (other.bin)" not in r.stderr
    assert tree_state(pfs.store, VOLATILE) == store_before, "verify changed the store"
    assert tree_state(pfs.cwd) == cwd_before, "verify wrote files"


def test_salvage_zero_fills_damaged_ranges(damaged_store, tmp_path):
    pfs, originals = damaged_store
    out = tmp_path / "salvaged"
    out.mkdir()
    for how, i in IDS.items():
        r = pfs.run(f"get --salvage {i} {out / how}\n")
        assert r.returncode != 0, f"{how}: a salvage with damage must not exit 0"
        assert_clean_stderr(r.stderr)
        _assert_names_damage(r.stderr, how)
        assert f"{len(KINDS[how])} damaged part(s) were zero-filled" in r.stderr, r.stderr
        expected = bytearray(originals[i])
        for index in KINDS[how]:
            start, end = _byte_range(index)
            expected[start:end + 1] = bytes(end + 1 - start)
        got = (out / how).read_bytes()
        assert len(got) == VICTIM_SIZE, how
        assert got == bytes(expected), f"{how}: salvaged bytes differ from the original with damaged ranges zeroed"
    assert sorted(os.listdir(out)) == sorted(IDS), f"salvage left extra files: {os.listdir(out)}"


# -- damaged metadata -------------------------------------------------------------

@pytest.fixture(scope="module")
def meta_template(tmp_path_factory) -> tuple[Pfs, dict[int, bytes]]:
    """Files 1..5 where 1-3 are in the snapshot (files.json, written by `repair` on
    a healthy store) and 4, 5 and the delete of 2 are journal lines after it.
    Journal lines: 1 put 4 storing, 2 put 4 stored, 3 put 5 storing, 4 put 5 stored,
    5 put 2 deleting, 6 del 2. Returns (pfs, {id: original bytes} of files 1, 3, 4, 5)."""
    pfs = _template(tmp_path_factory, "meta")
    sizes = {1: 5 * CHUNK + 1, 2: 2 * CHUNK, 3: 4 * CHUNK - 9, 4: 3 * CHUNK + 77, 5: 6 * CHUNK}
    originals = {}
    for i, size in sizes.items():
        originals[i] = make_file(pfs.cwd / f"f{i}.bin", size, "text" if i % 2 else "random").read_bytes()
    r = pfs.run("put f1.bin\nwait\nput f2.bin\nwait\nput f3.bin\n")
    assert r.returncode == 0, r.stderr
    r = pfs.run("", "repair")
    assert r.returncode == 0, f"repair of a healthy store: {r.stdout}{r.stderr}"
    assert (pfs.store / "files.json").exists() and (pfs.store / "files.jsonl").stat().st_size == 0
    r = pfs.run("put f4.bin\nwait\nput f5.bin\nwait\ndelete 2\n")
    assert r.returncode == 0, r.stderr
    lines = (pfs.store / "files.jsonl").read_bytes().splitlines()
    assert len(lines) == 6, lines
    del originals[2]
    return pfs, originals


@pytest.fixture
def meta_store(meta_template, pfs):
    """The test's own copy of meta_template's store."""
    template, originals = meta_template
    return _copy(template, pfs), originals


def _garble(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at:at + 12] = b"\x00#garbage\xff}{"
    path.write_bytes(bytes(data))


def _assert_refused(pfs, damaged_name: str) -> None:
    """Opening refuses with one error line naming the file and `repair`; nothing changes."""
    before = tree_state(pfs.store, VOLATILE)
    r = pfs.run("list\n")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert_clean_stderr(r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == 1, r.stderr
    assert damaged_name in errors[0], errors[0]
    assert f"pfs --store {pfs.store} repair" in errors[0], errors[0]
    assert r.stdout == ""
    assert tree_state(pfs.store, VOLATILE) == before, "a refused open changed the store"


def _repair_and_check(pfs, originals: dict[int, bytes], tmp_path: Path) -> None:
    r = pfs.run("", "repair")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)  # every file survived: nothing lost
    assert r.stdout.strip(), "repair printed nothing"
    assert all(line.startswith(("repaired:", "lost:", "repair done:")) for line in r.stdout.splitlines()), r.stdout
    out = tmp_path / "restored"
    out.mkdir()
    r = pfs.run("list\n" + "".join(f"get {i} {out / str(i)}\n" for i in originals))
    assert r.returncode == 0, r.stderr
    assert error_lines(r.stderr) == []
    listing = parse_list(r.stdout)
    assert {i: st for i, (_, st) in listing.items() if st == "stored"} == {i: "stored" for i in originals}, listing
    assert 2 not in listing, "the deleted file came back"
    for i, data in originals.items():
        assert (out / str(i)).read_bytes() == data, f"file {i} differs after repair"


def test_truncated_snapshot(meta_store, tmp_path):
    pfs, originals = meta_store
    snap = pfs.store / "files.json"
    os.truncate(snap, snap.stat().st_size // 2)
    _assert_refused(pfs, "files.json")
    _repair_and_check(pfs, originals, tmp_path)


def test_garbled_snapshot(meta_store, tmp_path):
    pfs, originals = meta_store
    snap = pfs.store / "files.json"
    _garble(snap, snap.stat().st_size // 2)
    _assert_refused(pfs, "files.json")
    _repair_and_check(pfs, originals, tmp_path)


def test_garbled_middle_journal_line(meta_store, tmp_path):
    pfs, originals = meta_store
    journal = pfs.store / "files.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1][:40] + b"\x00#garbage\xff" + lines[1][52:]  # "put 4 stored"
    journal.write_bytes(b"".join(lines))
    _assert_refused(pfs, "files.jsonl line 2")
    _repair_and_check(pfs, originals, tmp_path)


def test_torn_last_journal_line_opens_without_repair(meta_store, tmp_path):
    pfs, originals = meta_store
    journal = pfs.store / "files.jsonl"
    with journal.open("ab") as f:
        f.write(b'{"op":"put","file":{"id":6,"name":"f6.b')  # a crash in the middle of an append
    out = tmp_path / "restored"
    out.mkdir()
    r = pfs.run("list\n" + "".join(f"get {i} {out / str(i)}\n" for i in originals))
    assert r.returncode == 0, r.stderr
    assert error_lines(r.stderr) == []
    assert {i for i, (_, st) in parse_list(r.stdout).items()} == set(originals)
    for i, data in originals.items():
        assert (out / str(i)).read_bytes() == data
    assert journal.read_bytes().endswith(b"\n"), "the torn tail was not dropped"


def test_garbled_manifest(meta_store, tmp_path):
    pfs, originals = meta_store
    manifest = pfs.store / "manifests" / "3.json"
    _garble(manifest, manifest.stat().st_size // 3)
    out = tmp_path / "out"
    out.mkdir()
    for command in (f"get 3 {out / 'f3'}", "verify 3", "verify --all", "info 3"):
        r = pfs.run(f"{command}\nget 1 {out / 'f1'}\n")
        assert r.returncode == 1, (command, r.returncode, r.stderr)
        assert_clean_stderr(r.stderr)
        errors = error_lines(r.stderr)
        assert len(errors) == 1, (command, r.stderr)
        assert "manifests/3.json" in errors[0] and f"pfs --store {pfs.store} repair" in errors[0], errors[0]
        assert "internal error" not in errors[0], errors[0]
        assert not (out / "f3").exists()
        assert (out / "f1").read_bytes() == originals[1]  # the other files still work
        (out / "f1").unlink()
    _repair_and_check(pfs, originals, tmp_path)
