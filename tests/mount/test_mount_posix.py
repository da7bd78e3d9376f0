"""POSIX metadata through pfs mount, with real syscalls: ctime and atime kept
apart from mtime, directories' times following their names, setuid, setgid
and sticky bits kept and cleared as the kernel asks, special files, hard
links, and renames as one registry change."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from pfs.registry import HARDLINKS
from pfs.store.facade import Store

from helpers import run_pfs
from mount_helpers import Mount

pytestmark = pytest.mark.usefixtures("fuse")

OLD = 1_000_000_000_123_456_789  # a time long past, in ns
NOBODY = 65534


@pytest.fixture
def shared(tmp_path: Path, store: Path):
    """The store mounted with --allow-other (other users may use it), as root."""
    if os.geteuid() != 0:
        pytest.skip("needs root: other users write through the mount")
    m = Mount(store, tmp_path / "mnt", "--allow-other")
    yield m
    rc, err = m.stop()
    assert rc == 0, err


def remount(m: Mount, *options: str) -> Mount:
    rc, err = m.stop()
    assert rc == 0, err
    return Mount(m.store, m.point, *options)


def as_user(uid: int, script: str, where: Path, *args: str) -> subprocess.CompletedProcess:
    """A shell `script` run as user and group `uid` in directory `where` ($1... = args):
    entered as root, since the test's own directories are closed to other users."""
    return subprocess.run(["/bin/sh", "-c", script, "sh", *args], user=uid, group=uid, extra_groups=[],
                          capture_output=True, text=True, timeout=60, cwd=where)


def test_ctime_and_atime_are_kept_apart_from_mtime(tmp_path: Path, store: Path, mounted) -> None:
    f = mounted.point / "f"
    f.write_bytes(b"data")
    os.utime(f, ns=(OLD + 5, OLD))
    st = os.stat(f)
    assert (st.st_atime_ns, st.st_mtime_ns) == (OLD + 5, OLD)
    assert st.st_ctime_ns > OLD  # utimensat marks the ctime now, whatever times it sets
    changed = st.st_ctime_ns
    os.chmod(f, 0o600)
    st = os.stat(f)
    assert st.st_mtime_ns == OLD and st.st_ctime_ns >= changed
    m = remount(mounted)
    try:
        st = os.stat(f)
        assert (st.st_atime_ns, st.st_mtime_ns) == (OLD + 5, OLD) and st.st_ctime_ns >= changed
        with Store(store) as other:  # the record keeps all three
            entry = other.files.current("f")
        assert (entry.atime, entry.mtime, entry.ctime) == (OLD + 5, OLD, st.st_ctime_ns)
    finally:
        m.stop()


def test_a_directory_s_times_follow_the_names_in_it(mounted) -> None:
    d = mounted.point / "d"
    d.mkdir()
    for change in (lambda: (d / "f").write_bytes(b"x"), lambda: os.mkdir(d / "sub"),
                   lambda: os.rename(d / "f", d / "g"), lambda: os.symlink("g", d / "link"),
                   lambda: os.unlink(d / "link"), lambda: os.rmdir(d / "sub")):
        os.utime(d, ns=(OLD, OLD))
        change()
        st = os.stat(d)
        assert st.st_mtime_ns > OLD and st.st_ctime_ns > OLD
    os.utime(d, ns=(OLD, OLD))
    (d / "last").write_bytes(b"x")
    m = remount(mounted)  # recorded, not only shown
    try:
        assert os.stat(d).st_mtime_ns > OLD
    finally:
        m.stop()


def test_setuid_setgid_and_sticky_bits_are_kept_and_cleared_as_posix_says(shared) -> None:
    root = shared.point / "tmp"
    root.mkdir()
    f = root / "tool"
    f.write_bytes(b"#!/bin/sh\n")
    os.chmod(f, 0o6777)
    os.chmod(root, 0o1777)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o6777
    m = remount(shared, "--allow-other")
    try:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o6777 and stat.S_IMODE(os.stat(root).st_mode) == 0o1777
        # a write by another user clears setuid and setgid (the kernel asks it of the mount)
        r = as_user(NOBODY, 'echo echo >> "$1"', root, f.name)
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o777
        os.chmod(f, 0o6755)
        os.chown(f, 1234, 1234)  # so does a change of owner
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o755
        # the sticky directory: another user may not remove what is not theirs
        r = as_user(NOBODY, 'rm -f "$1"', root, f.name)
        assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr
        assert f.exists()
    finally:
        m.stop()


def test_special_files_are_made_kept_and_listed(tmp_path: Path, store: Path, mounted) -> None:
    root = mounted.point
    os.mkfifo(root / "pipe", 0o640)
    os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "sock"))
    m = remount(mounted)
    try:
        assert stat.S_ISFIFO(os.stat(root / "pipe").st_mode) and stat.S_IMODE(os.stat(root / "pipe").st_mode) == 0o640
        st = os.stat(root / "null")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
        assert stat.S_ISSOCK(os.stat(root / "sock").st_mode)
        pid = os.fork()  # the FIFO is a FIFO: what one side writes the other reads
        if pid == 0:
            with open(root / "pipe", "wb") as w:
                w.write(b"through the pipe")
            os._exit(0)
        with open(root / "pipe", "rb") as r:
            assert r.read() == b"through the pipe"
        os.waitpid(pid, 0)
        r = run_pfs(store, None, "list", "-r")
        assert r.returncode == 0, r.stderr
        assert "fifo" in r.stdout and "character device" in r.stdout and "socket" in r.stdout
    finally:
        m.stop()
    r = run_pfs(store, None, "get", "-r", "/", str(tmp_path / "out"))
    assert stat.S_ISFIFO(os.stat(tmp_path / "out" / "pipe").st_mode)
    assert os.stat(tmp_path / "out" / "null").st_rdev == os.makedev(1, 3)
    assert not (tmp_path / "out" / "sock").exists() and "socket" in r.stdout + r.stderr


def test_hard_links_are_names_of_one_file(tmp_path: Path, store: Path, mounted) -> None:
    root = mounted.point
    (root / "d").mkdir()
    a, b, c = root / "a", root / "d" / "b", root / "c"
    a.write_bytes(b"one")
    os.link(a, b)
    os.link(b, c)
    assert [os.stat(p).st_nlink for p in (a, b, c)] == [3, 3, 3]
    with open(b, "ab") as f:
        f.write(b" two")
    os.chmod(c, 0o600)
    assert a.read_bytes() == b"one two" and stat.S_IMODE(os.stat(a).st_mode) == 0o600
    os.unlink(a)
    os.rename(c, root / "d" / "c2")
    m = remount(mounted)
    try:
        assert not a.exists() and (root / "d" / "c2").read_bytes() == b.read_bytes() == b"one two"
        assert os.stat(b).st_nlink == 2
        r = run_pfs(store, None, "list", "-r")
        assert r.returncode == 0 and "hard link" in r.stdout, r.stderr
        got = run_pfs(store, None, "get", "-r", "d", str(tmp_path / "out"))
        assert got.returncode == 0, got.stderr
        out = tmp_path / "out"
        assert (out / "b").read_bytes() == b"one two" and os.stat(out / "b").st_ino == os.stat(out / "c2").st_ino
        os.unlink(b)
        os.unlink(root / "d" / "c2")  # the last name: the file goes
    finally:
        m.stop()
    with Store(store) as other:  # nothing is left of the file, nor of its names
        assert other.files.under(HARDLINKS + "/") == ([], []) and other.files.under("d/") == ([], [])


def test_renaming_a_directory_is_one_registry_change(store: Path, mounted) -> None:
    root = mounted.point
    (root / "a" / "b").mkdir(parents=True)
    for name in ("a/x", "a/b/y", "a/b/z"):
        (root / name).write_bytes(name.encode())
    journal = store / "files.jsonl"
    before = journal.read_bytes().count(b"\n")
    os.rename(root / "a", root / "moved")
    lines = journal.read_bytes().splitlines()[before:]
    records = [json.loads(line) for line in lines if line.strip()]
    batches = [r for r in records if r.get("op") == "batch"]
    moved = sorted(f["name"] for r in batches for f in r["files"])
    assert moved == ["moved", "moved/b", "moved/b/y", "moved/b/z", "moved/x"], records
    assert len(batches) == 1
    assert (root / "moved" / "b" / "z").read_bytes() == b"a/b/z"


def test_a_size_past_the_largest_stored_file_is_efbig(mounted) -> None:
    f = mounted.point / "f"
    f.write_bytes(b"x")
    with pytest.raises(OSError) as raised:
        os.truncate(f, 1 << 60)  # not ENOSPC from the write-back cache: no store could keep it
    assert raised.value.errno == errno.EFBIG
    assert f.read_bytes() == b"x"
