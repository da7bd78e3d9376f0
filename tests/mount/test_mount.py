"""pfs mount: the store through FUSE, read and written by ordinary programs,
checked against `pfs get`/`list` in other processes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import CHUNK, assert_clean_stderr, env, error_lines, make_file, part_path, run_pfs
from mount_helpers import Mount, wait_for

pytestmark = pytest.mark.usefixtures("fuse")


def put(store: Path, source: Path, name: str) -> None:
    r = run_pfs(store, None, "put", str(source), name)
    assert r.returncode == 0, r.stderr


def get_bytes(store: Path, name: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"got-{time.monotonic_ns()}"
    r = run_pfs(store, None, "get", "/" + name, str(out))
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


# -- starting and stopping ---------------------------------------------------------

def test_a_bad_mount_point_is_one_error_line(tmp_path: Path, store: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for point, says in ((tmp_path / "none", "does not exist"), (full, "is not empty"), (afile, "not a directory")):
        r = run_pfs(store, None, "mount", str(point))
        assert r.returncode == 2, r
        assert error_lines(r.stderr) == r.stderr.splitlines() and len(error_lines(r.stderr)) == 1, r.stderr
        assert says in r.stderr


def test_a_missing_binding_or_libfuse_names_what_to_install(tmp_path: Path, store: Path) -> None:
    (tmp_path / "mnt").mkdir()
    no_binding = "import sys; sys.modules['mfusepy'] = None; from pfs.cli.main import main; sys.exit(main())"
    for argv, extra, says in (([sys.executable, "-c", no_binding], {}, "pip install 'pfs[mount]'"),
                              ([sys.executable, "-m", "pfs"], {"FUSE_LIBRARY_PATH": "/nonexistent/libfuse.so"},
                               "apt-get install fuse3")):
        r = subprocess.run([*argv, "--store", str(store), "mount", str(tmp_path / "mnt")], capture_output=True,
                           text=True, env={**env(), **extra}, timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error:"), r.stderr
        assert says in r.stderr


@pytest.mark.parametrize("how", ["fusermount", signal.SIGTERM, signal.SIGINT])
def test_unmount_is_clean_and_exits_0(tmp_path: Path, store: Path, how) -> None:
    m = Mount(store, tmp_path / "mnt")
    assert os.path.ismount(m.point)
    if how == "fusermount":
        rc, err = m.stop()
    else:
        os.kill(m.proc.pid, how)
        rc, err = m.proc.wait(30), m.proc.stderr.read()
    assert rc == 0, err
    assert_clean_stderr(err)
    assert not os.path.ismount(m.point)


def test_a_dead_mount_point_says_how_to_clear_it(tmp_path: Path, store: Path) -> None:
    m = Mount(store, tmp_path / "mnt")
    m.proc.kill()
    m.proc.wait(30)
    r = run_pfs(store, None, "mount", str(m.point))
    assert r.returncode == 2 and "fusermount -u" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    subprocess.run(["fusermount3", "-u", "-z", str(m.point)], check=True)


# -- reading ------------------------------------------------------------------------

def test_reads_give_the_stored_bytes_anywhere(tmp_path: Path, store: Path) -> None:
    big = make_file(tmp_path / "big", 5 * CHUNK + 123)
    small = make_file(tmp_path / "small", 10)
    put(store, big, "data/big.bin")
    put(store, small, "data/deep/er/small.txt")
    put(store, small, "top")
    m = Mount(store, tmp_path / "mnt")
    try:
        root = m.point
        assert sorted(os.listdir(root)) == ["data", "top"]
        assert sorted(os.listdir(root / "data")) == ["big.bin", "deep"]
        assert os.listdir(root / "data/deep/er") == ["small.txt"]
        st = os.stat(root / "data/big.bin")
        assert st.st_size == big.stat().st_size and st.st_mtime_ns == big.stat().st_mtime_ns
        assert (root / "data/big.bin").read_bytes() == big.read_bytes()
        data = big.read_bytes()
        fd = os.open(root / "data/big.bin", os.O_RDONLY)
        try:
            for offset, size in ((0, 1), (CHUNK - 3, 7), (2 * CHUNK, 3 * CHUNK), (len(data) - 5, 100), (len(data), 9)):
                assert os.pread(fd, size, offset) == data[offset:offset + size]
        finally:
            os.close(fd)
        assert os.path.isdir(root / "data/deep")
        fs, disk = os.statvfs(root), os.statvfs(store)  # the store's one volume is on the disk of tmp_path
        assert fs.f_namemax == 255 and abs(fs.f_bavail * fs.f_frsize - disk.f_bavail * disk.f_frsize) < 1 << 30
        assert fs.f_blocks * fs.f_frsize >= fs.f_bavail * fs.f_frsize + 5 * CHUNK  # the stored bytes count as used
        with pytest.raises(FileNotFoundError):
            os.stat(root / "nothing")
        with pytest.raises(NotADirectoryError):
            os.listdir(root / "top")
    finally:
        assert m.stop()[0] == 0


def test_a_damaged_part_is_eio_for_its_range_only(tmp_path: Path, store: Path) -> None:
    src = make_file(tmp_path / "src", 4 * CHUNK)
    put(store, src, "f")
    bad = part_path(store, 1, 2)
    os.chmod(bad, 0o644)
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    m = Mount(store, tmp_path / "mnt")
    try:
        data = src.read_bytes()
        fd = os.open(m.point / "f", os.O_RDONLY)
        try:
            assert os.pread(fd, CHUNK, 0) == data[:CHUNK]
            assert os.pread(fd, CHUNK, 3 * CHUNK) == data[3 * CHUNK:]
            for _ in range(3):
                with pytest.raises(OSError) as caught:
                    os.pread(fd, 100, 2 * CHUNK + 10)
                assert caught.value.errno == errno.EIO
        finally:
            os.close(fd)
    finally:
        assert m.stop()[0] == 0
    logged = [line for line in (store / "pfs.log").read_text().splitlines() if "read through the mount" in line]
    assert len(logged) == 1 and "part 2" in logged[0], logged


def test_a_change_by_another_pfs_shows_within_a_second_or_so(tmp_path: Path, store: Path, mounted) -> None:
    src = make_file(tmp_path / "src", 1000)
    assert not os.path.exists(mounted.point / "later")
    put(store, src, "later")
    assert wait_for(lambda: os.path.exists(mounted.point / "later"), 3)
    assert (mounted.point / "later").read_bytes() == src.read_bytes()
    r = run_pfs(store, None, "delete", "/later")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: not os.path.exists(mounted.point / "later"), 3)
