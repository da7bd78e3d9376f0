"""Full filesystems: the store's, and a get's destination.

The small filesystem is a real tmpfs of a few MiB (needs root and mount). Where
it cannot be mounted (or PFS_TEST_NO_TMPFS=1) the tests fall back to
RLIMIT_FSIZE on the pfs process (SIGXFSZ ignored, so writes fail with EFBIG),
or skip the checks that only a truly full filesystem can make.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import (CHUNK, assert_clean_stderr, error_lines, make_file, manifest_part_ids, parse_list,
                     part_files, run_pfs)

MIB = 1 << 20
#: Space a failed put may legitimately keep: its journal lines, fan-out directories.
SLACK = 64 * 1024


def _space_words(fs, line: str) -> bool:
    """A disk-full error must say so; under the RLIMIT_FSIZE fallback it is EFBIG."""
    text = line.lower()
    if fs.kind == "tmpfs":
        return "space" in text
    return "space" in text or "too large" in text


def _assert_only_parts_of(store: Path, ids: set[int]) -> None:
    manifests = manifest_part_ids(store)
    assert set(manifests) == ids
    referenced = {pid for pids in manifests.values() for pid in pids}
    assert set(part_files(store)) == referenced, "a failed put left part files behind"


def test_put_larger_than_free_space(tmp_path, small_fs):
    fs = small_fs("storefs", 4 * MIB)
    store = fs.path / "store"
    work = tmp_path / "work"
    work.mkdir()
    if fs.kind == "rlimit":  # the cap is per file: make it smaller than one raw part
        fs.size = CHUNK // 2
    keep = make_file(work / "keep.bin", 512 * 1024 + 3 if fs.kind == "tmpfs" else CHUNK // 4)
    make_file(work / "big.bin", 8 * MIB)
    r = run_pfs(store, "put keep.bin\n", cwd=work, preexec_fn=fs.preexec())
    assert r.returncode == 0, r.stderr
    free_before = fs.free()

    r = run_pfs(store, "put big.bin\nwait\nlist\n", cwd=work, preexec_fn=fs.preexec())
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == 1, r.stderr
    assert errors[0].startswith("error: put 2 (big.bin)") and _space_words(fs, errors[0]), errors[0]
    assert "internal error" not in errors[0]
    listing = parse_list(r.stdout)
    assert listing[1] == ("keep.bin", "stored")
    assert listing[2][1].startswith("failed ("), listing[2]
    _assert_only_parts_of(store, {1})
    if fs.kind == "tmpfs":
        assert fs.free() >= free_before - SLACK, \
            f"the failed put kept {free_before - fs.free()} bytes of the filesystem"

    r = run_pfs(store, f"get 1 {tmp_path / 'keep.out'}\n", cwd=work, preexec_fn=fs.preexec())
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "keep.out").read_bytes() == keep.read_bytes()


@pytest.mark.parametrize("dest_kind", ["file", "directory"])
def test_get_to_full_filesystem(tmp_path, small_fs, pfs, dest_kind):
    src = make_file(pfs.cwd / "data.bin", 4 * MIB + 17)
    r = pfs.run("put data.bin\n")
    assert r.returncode == 0, r.stderr
    fs = small_fs("destfs", 1 * MIB)
    dest = fs.path / "data.out" if dest_kind == "file" else fs.path
    landed = fs.path / ("data.out" if dest_kind == "file" else "data.bin")

    r = run_pfs(pfs.store, f"get 1 {dest}\n", cwd=pfs.cwd, preexec_fn=fs.preexec())
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and _space_words(fs, errors[0]), r.stderr
    assert "internal error" not in errors[0]
    assert not landed.exists()
    assert os.listdir(fs.path) == [], f"get left {os.listdir(fs.path)} on the full filesystem"

    r = pfs.run(f"get 1 {tmp_path / 'ok.bin'}\n")  # the store is unaffected
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ok.bin").read_bytes() == src.read_bytes()


def _pad_journal_to_block(store: Path, room: int = 0) -> None:
    """End files.jsonl `room` bytes short of a 4 KiB block boundary with blank lines
    (which pfs reads as nothing), as appends leave it now and then: on a full
    disk the next record then finds exactly that much room."""
    journal = store / "files.jsonl"
    with journal.open("ab") as f:
        f.write(b"\n" * ((-journal.stat().st_size - room) % 4096))


def _fill_or_skip(fs):
    if fs.kind != "tmpfs":
        pytest.skip("needs a real full filesystem (tmpfs could not be mounted); RLIMIT_FSIZE caps single "
                    "files and cannot model a shared full disk")
    return fs.fill()


def test_errors_on_a_completely_full_store_are_clean(tmp_path, small_fs):
    """With not one free byte (not even in the journal's last block), every command
    fails with one clear `error:` line that mentions space (no traceback, no
    'internal error'), and the store opens again once space is freed."""
    fs = small_fs("storefs", 2 * MIB)
    store = fs.path / "store"
    work = tmp_path / "work"
    work.mkdir()
    keep = make_file(work / "keep.bin", 3 * CHUNK)
    for i in range(4):
        make_file(work / f"s{i}.bin", 100 + i)
    assert run_pfs(store, "put keep.bin\n", cwd=work).returncode == 0
    _pad_journal_to_block(store)  # so that the very next record needs a new block
    (store / "reserve").unlink()  # as if the space reserve were already spent
    filler = _fill_or_skip(fs)

    r = run_pfs(store, "".join(f"put s{i}.bin\n" for i in range(4)) + "wait\nput s0.bin\n", cwd=work)
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    for line in error_lines(r.stderr):
        assert "internal error" not in line and "space" in line.lower(), line

    filler.unlink()
    r = run_pfs(store, f"list\nget 1 {tmp_path / 'keep.out'}\n", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "keep.out").read_bytes() == keep.read_bytes()


def test_full_disk_does_not_tear_the_journal(tmp_path, small_fs, live_sessions):
    """Appends to files.jsonl on a full disk can be cut short. A record cut short
    must not stay in the journal, or the next record appended once space is back
    turns it into a damaged line in the middle and the store refuses to open."""
    fs = small_fs("storefs", 2 * MIB)
    store = fs.path / "store"
    work = tmp_path / "work"
    work.mkdir()
    keep = make_file(work / "keep.bin", 3 * CHUNK)
    assert run_pfs(store, "put keep.bin\n", cwd=work).returncode == 0
    _pad_journal_to_block(store, room=100)  # less than one record
    (store / "reserve").unlink()  # as if the space reserve were already spent
    filler = _fill_or_skip(fs)
    journal = store / "files.jsonl"

    s = live_sessions(store, work)
    for i in range(40):  # each put appends records; on a full disk some are cut short
        make_file(work / f"t{i}.bin", 50)
        seen = len(s.out)
        s.send(f"put t{i}.bin", "wait", "jobs")
        s.wait_for(r"^no jobs running$", start=seen)
        assert journal.read_bytes().endswith(b"\n"), f"put {i} left half a line in the journal"
    assert any("space" in line for line in s.err), "the disk never filled up (condition not reproduced)"
    filler.unlink()  # space comes back while the session goes on
    s.send("put keep.bin --keep", "exit")  # kept: file 1 stays as it was
    s.close()

    r = run_pfs(store, f"list\nget 1 {tmp_path / 'keep.out'}\n", cwd=work)
    assert error_lines(r.stderr) == [], f"the store no longer opens after the disk was full:\n{r.stderr}"
    assert r.returncode == 0
    assert (tmp_path / "keep.out").read_bytes() == keep.read_bytes()


def test_delete_frees_space_on_a_full_disk(tmp_path, small_fs):
    """`delete` is how a user frees space, so it must work when the disk is full --
    also when the journal's last block has no room left for the delete's record
    (made so here by padding the journal to a block boundary with blank lines,
    which pfs reads as nothing)."""
    fs = small_fs("storefs", 2 * MIB)
    store = fs.path / "store"
    work = tmp_path / "work"
    work.mkdir()
    make_file(work / "big.bin", 12 * CHUNK)
    keep = make_file(work / "keep.bin", 2 * CHUNK)
    assert run_pfs(store, "put big.bin\nput keep.bin\n", cwd=work).returncode == 0
    _pad_journal_to_block(store)
    _fill_or_skip(fs)

    r = run_pfs(store, "delete 1\n", cwd=work)
    assert r.returncode == 0, f"delete on a full disk failed:\n{r.stderr}"
    assert fs.free() >= 12 * CHUNK - SLACK
    r = run_pfs(store, f"list\nget 2 {tmp_path / 'keep.out'}\n", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "keep.out").read_bytes() == keep.read_bytes()
    _assert_only_parts_of(store, {2})
