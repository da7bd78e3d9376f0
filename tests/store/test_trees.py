"""Whole directory trees: entry kinds in the store (directories, symlinks, a
name a file or a directory, never both), put -r / get -r / delete -r / mv of
a directory, on real trees copied from the machine and on generated edge cases."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sysconfig
from pathlib import Path

from helpers import assert_clean_stderr, damage_bytes, error_lines, packed_piece


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
    d = pfs.cwd / "d"
    d.mkdir()
    d.chmod(0o750)
    os.chown(d, 1234, 5678)
    r = pfs.run("put -r d\nwait\ninfo d\n")
    assert "kind:       directory" in r.stdout and "mode:       0750" in r.stdout, r.stdout
    assert "owner:      uid 1234, gid 5678" in r.stdout


# -- put -r / get -r on real trees ---------------------------------------------------

def snapshot(top: Path, owners: bool = True) -> dict[str, tuple]:
    """Everything get -r must give back: each entry's type, bytes or link target,
    permission bits, mtime in ns, and (owners) uid and gid; the top's own mode and mtime too."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [".", *dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, top)
            if stat.S_ISLNK(st.st_mode):
                what = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir",)
            elif not stat.S_ISREG(st.st_mode):
                what = ("special",)
            else:
                what = ("file", Path(path).read_bytes())
            meta = (stat.S_IMODE(st.st_mode), st.st_mtime_ns) if not stat.S_ISLNK(st.st_mode) else (st.st_mtime_ns,)
            state[rel] = (*what, *meta, *((st.st_uid, st.st_gid) if owners else ()))
    return state


def edge_cases(top: Path) -> Path:
    """A generated tree of what trees hold: empty and deeply nested directories,
    symlinks to directories, to files and dangling, 0600 files and a 0500
    directory, names with spaces, non-ASCII and leading dashes, owners other
    than root, mtimes of every age, a file of several parts, a hard link."""
    (top / "empty").mkdir(parents=True)
    deep = top.joinpath(*[f"level{i}" for i in range(40)])
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("deep")
    (top / "with space" / "-dash").mkdir(parents=True)
    (top / "with space" / "-dash" / "--leading dashes.txt").write_text("dashes")
    (top / "naïve ünïcode ☃").mkdir()
    (top / "naïve ünïcode ☃" / "日本語.txt").write_text("text")
    secret = top / "secret"
    secret.write_bytes(b"s" * 100)
    secret.chmod(0o600)
    (top / "big.bin").write_bytes(os.urandom(200_000))  # several 64 KiB parts
    os.link(top / "big.bin", top / "hardlink.bin")
    (top / "zero").write_bytes(b"")
    (top / "link-to-dir").symlink_to("with space")
    (top / "link-to-file").symlink_to("secret")
    (top / "dangling").symlink_to("../nowhere/at/all")
    (top / "absolute").symlink_to("/etc/hostname")
    owned = top / "owned"
    owned.write_text("theirs")
    os.chown(owned, 1234, 5678)
    os.chown(top / "dangling", 4321, 8765, follow_symlinks=False)
    os.utime(owned, ns=(0, 123_456_789_012_345_678))
    os.utime(top / "zero", ns=(0, 1))
    locked = top / "locked"
    locked.mkdir()
    (locked / "inside").write_text("in a directory no one may write")
    os.utime(top / "with space", ns=(0, 946_684_800_000_000_007))
    locked.chmod(0o500)
    return top


def test_put_r_then_get_r_gives_back_a_real_tree_and_the_edge_cases(pfs):
    """A copy of a real tree of the machine (part of the Python standard library:
    nested packages, data files, all sizes) plus the generated edge cases:
    identical after put -r and get -r, to the byte, the link target, the mode,
    the nanosecond and the owner."""
    src = pfs.cwd / "src"
    shutil.copytree(Path(sysconfig.get_paths()["stdlib"]) / "email", src / "email", symlinks=True)
    shutil.copytree("/usr/include/linux", src / "include-linux", symlinks=True)
    edge_cases(src / "edge")
    os.mkfifo(src / "a-fifo")
    before = snapshot(src)
    r = pfs.run("put -r src stored/tree\nwait\nget -r stored/tree out\nwait\n")
    assert r.returncode == 0, r.stderr
    assert_clean_stderr(r.stderr)
    files = sum(1 for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    summary = [line for line in r.stdout.splitlines() if line.startswith("put -r")]
    assert len(summary) == 1 and ", 1 skipped (1 FIFO), 0 failed" in summary[0], r.stdout
    after = snapshot(pfs.cwd / "out")
    del before["a-fifo"]
    assert after == before
    assert (pfs.cwd / "out" / "edge" / "hardlink.bin").stat().st_ino != (pfs.cwd / "out" / "edge" / "big.bin").stat().st_ino
    assert files > 100


def test_list_and_info_show_directories_and_symlinks_as_such(pfs):
    src = pfs.cwd / "src"
    (src / "empty").mkdir(parents=True)
    (src / "link").symlink_to("empty")
    r = pfs.run("put -r src\nwait\nlist src\ninfo src/link\ninfo src/empty\nget src/empty\n")
    assert "src/empty/" in r.stdout and "symlink -> empty" in r.stdout
    assert "kind:       symbolic link" in r.stdout and "target:     empty" in r.stdout
    assert "kind:       directory" in r.stdout
    assert error_lines(r.stderr) == ["error: src/empty is a directory (get -r restores a directory, its symbolic "
                                     "links included)"]


def test_names_pfs_cannot_store_are_reported_and_skipped(pfs):
    """A name that is not UTF-8 and a path longer than a stored name may be:
    one error line each, the rest stored, a non-zero exit."""
    src = pfs.cwd / "src"
    src.mkdir()
    (src / "fine").write_text("ok")
    bad = os.path.join(os.fsencode(src), b"latin1-\xe9t\xe9")
    with open(bad, "wb") as f:
        f.write(b"not utf-8 name")
    long = src.joinpath(*["d" * 200] * 6)
    long.mkdir(parents=True)
    (long / "too-long").write_text("x")
    top = "/".join(["p" * 200] * 35)  # with the tree's 1,200 bytes, past the longest name
    r = pfs.run(f"put -r src {top}\nwait\nget -r {top} out\nwait\n")
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == 2, r.stderr
    assert "latin1-\\udce9t\\udce9: not stored: it is not UTF-8 text" in r.stderr
    assert any("longer than 8192 bytes" in e and "nothing under it was stored" in e for e in errors)
    assert (pfs.cwd / "out" / "fine").read_text() == "ok"


def test_a_damaged_file_is_reported_and_the_rest_of_the_tree_restored(pfs):
    src = pfs.cwd / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(os.urandom(1000) + bytes([i]))
    assert pfs.run("put -r src\nwait\n").returncode == 0
    listed = pfs.run("list src\n").stdout
    victim = next(int(line.split()[0]) for line in listed.splitlines() if " src/f2 " in f" {line} ")
    pack, offset, length = packed_piece(pfs.store, victim)  # the small files share a pack
    damage_bytes(pack, offset + length // 2)
    r = pfs.run("get -r src out\nwait\n")
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    assert len(error_lines(r.stderr)) == 1 and "src/f2" in r.stderr
    assert sorted(p.name for p in (pfs.cwd / "out").iterdir()) == ["f0", "f1", "f3", "f4"]
    assert "5 restored" in r.stdout and "1 failed" in r.stdout  # the four files and the tree itself


def test_get_r_refuses_to_overwrite_without_force_and_writes_through_no_link(pfs):
    src = pfs.cwd / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("new")
    (src / "g").write_text("new g")
    assert pfs.run("put -r src\nwait\n").returncode == 0
    out = pfs.cwd / "out"
    out.mkdir()
    (out / "g").write_text("old g")
    elsewhere = pfs.cwd / "elsewhere"
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)
    r = pfs.run("get -r src out\nwait\n")
    assert r.returncode == 1 and (out / "g").read_text() == "old g" and list(elsewhere.iterdir()) == []
    assert len(error_lines(r.stderr)) == 2, r.stderr
    (out / "sub").unlink()
    r = pfs.run("get -r src out --force\nwait\n")
    assert r.returncode == 0, r.stderr
    assert (out / "g").read_text() == "new g" and (out / "sub" / "f").read_text() == "new"


def test_mv_of_a_directory_moves_every_entry_at_once_and_delete_r_removes_them(shared):
    src = shared.cwd / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f").write_text("f")
    (src / "l").symlink_to("a")
    (shared.cwd / "x").write_text("x")
    r = shared.run("put -r src\nwait\nput x taken\nwait\nmv src/ renamed/\nmv renamed/ taken/\nmv renamed/ "
                   "renamed/a/inside/\nget -r renamed out\nwait\n")
    assert "renamed src/ to renamed/ (5 entries)" in r.stdout
    assert error_lines(r.stderr) == ["error: taken already exists (mv OLD/ NEW/ renames a directory to a new name)",
                                     "error: cannot move renamed into itself (renamed/a/inside)"]
    listed = shared.run("list -r\n").stdout
    assert "src/" not in listed and "renamed/a/b/f" in listed and "renamed/l" in listed
    assert (shared.cwd / "out" / "a" / "b" / "f").read_text() == "f" and os.readlink(shared.cwd / "out" / "l") == "a"
    r = shared.run("delete -r renamed\nwait\n")
    assert r.returncode == 0 and "5 deleted" in r.stdout
    assert "renamed" not in shared.run("list -r\n").stdout


def test_an_old_store_s_file_and_directory_of_one_name_both_come_back_from_get_r(pfs):
    """The file is restored under a name that says so, and reported; the tree is whole."""
    (pfs.cwd / "f").write_bytes(b"one")
    assert pfs.run("put f t/a\nwait\n").returncode == 0
    journal = pfs.store / "files.jsonl"
    record = json.loads(journal.read_text().splitlines()[-1])["file"]
    under = dict(record, id=record["id"] + 1, name="t/a/b")
    journal.write_text(journal.read_text() + json.dumps({"op": "put", "file": under}) + "\n")
    data = json.loads((pfs.store / "manifests" / f"{record['id']}.json").read_text())
    (pfs.store / "manifests" / f"{under['id']}.json").write_text(json.dumps(dict(data, file=under)))
    r = pfs.run("get -r t out\nwait\n")
    assert (pfs.cwd / "out" / "a" / "b").read_bytes() == b"one"
    assert (pfs.cwd / "out" / f"a.pfs-file-{record['id']}").read_bytes() == b"one"
    assert error_lines(r.stderr) == [f"error: get -r: t/a is both a file and a directory in the store: the file "
                                     f"is restored as out/a.pfs-file-{record['id']}"]


def test_a_file_that_changes_while_the_tree_is_stored_fails_alone(pfs):
    """A real writer appends to one file all along: that file fails, clearly,
    and is not stored (never a mix); every other file is."""
    import subprocess
    import sys

    src = pfs.cwd / "src"
    src.mkdir()
    for i in range(20):
        (src / f"still{i}").write_bytes(os.urandom(3000))
    growing = src / "growing.log"
    growing.write_bytes(os.urandom(300_000))
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "with open(sys.argv[1], 'ab', buffering=0) as f:\n"
                               "    while True:\n        f.write(b'line\\n'); time.sleep(0.0005)\n", str(growing)])
    try:
        r = pfs.run("put -r src\nwait\nlist src\n")
    finally:
        writer.kill()
        writer.wait()
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    assert error_lines(r.stderr) == ["error: put -r: src/growing.log: src/growing.log changed size while it was "
                                     "being stored (put it again once nothing is writing it)"] or \
        len(error_lines(r.stderr)) == 1 and "growing.log was written while it was being stored" in r.stderr, r.stderr
    assert "20 stored" not in r.stdout and "21 stored" in r.stdout and "1 failed" in r.stdout
    stored = [line for line in r.stdout.splitlines() if " stored " in f" {line} " and "src/still" in line]
    assert len(stored) == 20 and "src/growing.log" in r.stdout and "failed (src/growing.log" in r.stdout


def test_the_python_api_puts_and_gets_trees(tmp_path):
    import pfs as pfs_api

    src = edge_cases(tmp_path / "src")
    (src / "locked").chmod(0o700)  # so that the test can clean up what it made
    with pfs_api.open(tmp_path / "store", workers=2) as store:
        put = store.put_tree(src, "api/tree")
        assert put.problems == [] and put.failed == 0 and put.done == len(snapshot(src))
        listed = {i.name: i for i in store.list("api/tree")}
        assert listed["api/tree/empty/"].is_dir and listed["api/tree/empty/"].id is not None
        assert listed["api/tree/dangling"].kind == "symlink" and listed["api/tree/dangling"].target == "../nowhere/at/all"
        got = store.get_tree("api/tree", tmp_path / "out")
        assert got.problems == [] and got.failed == 0
        again = store.sync(src, "api/tree")
        assert again.done == 0 and again.unchanged == put.done - 1 and again.problems == []  # the top is not counted
    assert snapshot(tmp_path / "out") == snapshot(src)


# -- kill -9 of put -r: a batch is all or nothing, a rerun finishes the job ---------------

def test_put_r_killed_at_random_moments_leaves_whole_batches_and_a_rerun_finishes(pfs):
    """Real kill -9 of the whole pfs process group at random moments of a put -r
    of 600 small files (batches of 256, 256 and 88): after reopen every file the
    store holds as stored reads back byte for byte, the number stored is a sum
    of whole batches, and running the same put -r again stores them all."""
    import random
    import subprocess
    import time as clock

    from helpers import env, kill_group, pfs_argv, run_pfs
    from pfs.store.batch import BATCH_FILES

    src = pfs.cwd / "src"
    src.mkdir()
    count = 2 * BATCH_FILES + 88
    for i in range(count):
        (src / f"f{i:04d}").write_bytes(os.urandom(1000) + i.to_bytes(2, "big"))
    sizes = {0, 88, BATCH_FILES, BATCH_FILES + 88, 2 * BATCH_FILES, count}
    rng = random.Random()
    for round_ in range(1):  # one random moment per run: each run of the suite tries another
        store = pfs.cwd / f"store{round_}"
        proc = subprocess.Popen(pfs_argv(store, "put", "-r", str(src), "t"), cwd=pfs.cwd, env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        clock.sleep(rng.uniform(0.5, 3.0))
        kill_group(proc)
        out = pfs.cwd / f"out{round_}"
        r = run_pfs(store, f"get -r t {out}\nwait\n", cwd=pfs.cwd)
        assert_clean_stderr(r.stderr)
        restored = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert len(restored) in sizes, (len(restored), r.stdout)
        for name in restored:
            assert (out / name).read_bytes() == (src / name).read_bytes()
        r = run_pfs(store, "", "put", "-r", str(src), "t", cwd=pfs.cwd)
        assert r.returncode == 0, r.stderr
        again = pfs.cwd / f"again{round_}"
        assert run_pfs(store, f"get -r t {again}\nwait\n", cwd=pfs.cwd).returncode == 0
        assert snapshot(again) == snapshot(src)


# -- sync -------------------------------------------------------------------------------

def test_sync_stores_only_what_changed_and_deletes_what_is_gone(shared):
    """The quick check (size and mtime) reads no file: a file rewritten with its
    size and mtime put back is left as stored, until --checksum compares contents."""
    src = shared.cwd / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(5):
        (src / "sub" / f"f{i}").write_bytes(os.urandom(500))
    (src / "link").symlink_to("sub")
    r = shared.run("sync src t\nwait\nsync src t\nwait\n")
    assert r.returncode == 0, r.stderr
    assert [line.split(":", 1)[1].split(", 0 skipped")[0] for line in r.stdout.splitlines()
            if line.startswith("sync src:")] == [" 8 stored (2.4 KiB), 0 unchanged", " 0 stored (0 B), 7 unchanged"]
    sneaky = src / "sub" / "f0"
    st = sneaky.stat()
    sneaky.write_bytes(os.urandom(500))
    os.utime(sneaky, ns=(st.st_atime_ns, st.st_mtime_ns))
    (src / "sub" / "f1").write_bytes(b"grown " * 100)
    (src / "sub" / "f2").unlink()
    r = shared.run("sync src t --delete --dry-run\nwait\nsync src t --delete\nwait\nsync src t --checksum\nwait\n"
                   "get -r t out\nwait\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "would store t/sub/f1" in out and "would delete t/sub/f2" in out and "would store t/sub/f0" not in out
    assert "deleted t/sub/f2" in out
    assert snapshot(shared.cwd / "out") == snapshot(src)


def test_a_sync_killed_midway_is_finished_by_running_it_again(pfs):
    import subprocess
    import time as clock

    from helpers import env, kill_group, pfs_argv, run_pfs

    src = pfs.cwd / "src"
    src.mkdir()
    for i in range(400):
        (src / f"f{i:03d}").write_bytes(os.urandom(2000))
    proc = subprocess.Popen(pfs_argv(pfs.store, "sync", str(src), "t"), cwd=pfs.cwd, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    clock.sleep(1.5)
    kill_group(proc)
    r = run_pfs(pfs.store, "", "sync", str(src), "t", cwd=pfs.cwd)
    assert r.returncode == 0, r.stderr
    assert run_pfs(pfs.store, f"get -r t {pfs.cwd / 'out'}\nwait\n", cwd=pfs.cwd).returncode == 0
    assert snapshot(pfs.cwd / "out") == snapshot(src)
    r = run_pfs(pfs.store, "", "sync", str(src), "t", cwd=pfs.cwd)
    assert "0 stored (0 B), 400 unchanged" in r.stdout, r.stdout
