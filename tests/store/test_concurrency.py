"""Many operations in flight in one session (many processes on one store:
test_sharing.py).

* Many puts, gets and deletes in flight together in one script session
  (including a get and a delete of the same file): afterwards the registry has
  exactly the expected files, ids are unique, exit waited for everything, and
  every get compares equal.
"""

from __future__ import annotations

import re

from helpers import (CHUNK, assert_clean_stderr, error_lines, make_file, manifest_part_ids, parse_list,
                     part_files)

MIB = 1 << 20


def test_many_operations_in_flight(pfs, tmp_path):
    sizes = [MIB + 1, 3 * CHUNK, 2 * MIB - 5, 1, 0, 5 * CHUNK + 7, MIB // 2, 3 * MIB]
    originals = {}
    for i, size in enumerate(sizes):
        originals[f"a{i}.bin"] = make_file(pfs.cwd / f"a{i}.bin", size, "random" if i % 2 else "text").read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    lines = [f"put a{i}.bin" for i in range(8)]                       # ids 1..8
    lines += [f"get {i} {out / str(i)}" for i in range(1, 9)]         # each waits for its put
    lines += ["delete 2", "delete 4", "delete 6"]                      # each after its get
    lines += [f"get 3 {out / '3b'}", "delete 3"]                       # get and delete of one file
    # ids 9, 10, 11; kept: id 1 and id 8 stay reachable. Two puts of one name in flight take it in the
    # order they end (docs/guarantees.md): 9 and 11 wait for 1 and 8 to be stored, so that each keeps
    # the one before it (a put of 1 ending after 9 would replace 9).
    lines += ["wait", "put a0.bin --keep", f"get 9 {out / '9'}", "put a1.bin --keep", "delete 10",
              "wait", "put a7.bin --keep"]
    lines += [f"get 7 {out / '7b'}", f"get 7 {out / '7c'}", "verify --all", "exit"]
    r = pfs.run("\n".join(lines) + "\n", "--max-memory", "512K", timeout=120)
    assert r.returncode == 0, r.stderr
    assert error_lines(r.stderr) == []

    started = [int(m.group(1)) for m in re.finditer(r"^\[(\d+)\] storing ", r.stdout, re.M)]
    assert sorted(started) == list(range(1, 12)), f"ids not unique / not sequential: {started}"
    assert len(re.findall(r"^\[\d+\] stored ", r.stdout, re.M)) == 11
    assert sorted(int(x) for x in re.findall(r"^\[(\d+)\] deleted ", r.stdout, re.M)) == [2, 3, 4, 6, 10]

    # exit waited for every get: all outputs are complete
    names = {i: f"a{i - 1}.bin" for i in range(1, 9)} | {9: "a0.bin", 10: "a1.bin", 11: "a7.bin"}
    for dest, fid in [(str(i), i) for i in range(1, 10)] + [("3b", 3), ("7b", 7), ("7c", 7)]:
        assert (out / dest).read_bytes() == originals[names[fid]], f"get {fid} -> {dest} differs"

    r = pfs.run("list\n")
    assert r.returncode == 0, r.stderr
    listing = {i: (name, status.removesuffix(" (older version)")) for i, (name, status) in parse_list(r.stdout).items()}
    expected = {1, 5, 7, 8, 9, 11}
    assert listing == {i: (names[i], "stored") for i in expected}, listing
    manifests = manifest_part_ids(pfs.store)
    assert set(manifests) == expected
    assert set(part_files(pfs.store)) == {p for pids in manifests.values() for p in pids}


def test_get_and_delete_racing_on_one_file(pfs, tmp_path):
    """`delete X` then `get X`: the get runs after the delete and fails cleanly;
    `delete X` twice: the second fails cleanly; the other files are untouched."""
    a = make_file(pfs.cwd / "a.bin", 4 * CHUNK)
    b = make_file(pfs.cwd / "b.bin", 4 * CHUNK, "text")
    r = pfs.run("put a.bin\nput b.bin\n")
    assert r.returncode == 0, r.stderr
    r = pfs.run(f"delete 1\nget 1 {tmp_path / 'a.out'}\ndelete 1\nget 2 {tmp_path / 'b.out'}\nexit\n")
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == 2 and all("no file with id 1" in e for e in errors), r.stderr
    assert not (tmp_path / "a.out").exists()
    assert (tmp_path / "b.out").read_bytes() == b.read_bytes()
    r = pfs.run("list\n")
    assert parse_list(r.stdout) == {2: ("b.bin", "stored")}
    assert a.exists()
