"""Odd sources and destinations of put and get, against the real program.

* No command writes inside the store (its lock, metadata, parts, tmp/), however
  the path is spelled (symlinks, `..`), and put refuses the store's own files.
* The store's lock holds even when its file is replaced.
* A source renamed over, removed or written while it is stored is never stored
  as a mix: the put stores exactly the old contents or fails clearly.
* Files whose size lies (/proc, /sys), FIFOs and sockets are refused, never
  reported stored; a FIFO never hangs put.
* get never replaces a FIFO, socket or device, leaves nothing behind when
  killed, gives one clean error for a read-only directory, and restores the
  file's mode and modification time.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (CHUNK, assert_clean_stderr, error_lines, make_file, open_paths, parse_list, part_files,
                     frozen_workers, part_path, run_pfs, tree_state)

MIB = 1 << 20
#: Enough 64 KiB parts (256) that a put or get is certainly under way when its workers are frozen.
BIG = 16 * MIB


def _wait(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)
    return value


def _stored(tmp_path: Path, size: int = 3 * CHUNK + 5):
    """A store holding one file (id 1); returns (store, work dir, that file)."""
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    src = make_file(work / "a.bin", size)
    r = run_pfs(store, "put a.bin\n", cwd=work)
    assert r.returncode == 0, r.stderr
    return store, work, src


def _one_error_each(r, count: int, words: str) -> None:
    assert_clean_stderr(r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == count and all(words in e for e in errors), r.stderr


# -- the store's own directory ----------------------------------------------------

def test_get_never_writes_inside_the_store(tmp_path):
    store, work, src = _stored(tmp_path)
    (work / "to-store").symlink_to(store)
    (work / "to-lock").symlink_to(store / "files.lock")
    inside = [store / "files.lock", store / "store.json", store / "files.json", store / "files.jsonl",
              store / "manifests" / "1.json", part_path(store, 1, 0), store / "tmp" / "x", store,
              store / "volumes", "to-store/x", "to-store", "to-lock", f"../{store.name}/manifests/../x"]
    before = tree_state(store, ("lock", "pfs.log"))
    lock_before = (store / "files.lock").stat().st_ino
    r = run_pfs(store, "".join(f"get 1 {d} --force\n" for d in inside), cwd=work)
    assert r.returncode == 1
    _one_error_each(r, len(inside), "is inside the store")
    assert tree_state(store, ("lock", "pfs.log")) == before
    assert (store / "files.lock").stat().st_ino == lock_before

    os.chdir(store)  # no DEST: the current directory, here the store itself
    try:
        r = run_pfs(store, "get 1\n", cwd=store)
    finally:
        os.chdir(work)
    _one_error_each(r, 1, "is inside the store")
    r = run_pfs(store, "get 1 out.bin\n", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "out.bin").read_bytes() == src.read_bytes()


def test_get_never_writes_into_a_bind_mount_of_the_store(tmp_path):
    store, work, _ = _stored(tmp_path)
    bind = work / "bind"
    bind.mkdir()
    if subprocess.run(["mount", "--bind", str(store), str(bind)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        r = run_pfs(store, "get 1 bind/lock --force\nget 1 bind/tmp/\n", cwd=work)
        _one_error_each(r, 2, "is inside the store")
        assert not list((store / "tmp").iterdir())
    finally:
        subprocess.run(["umount", str(bind)], check=True)


def test_put_refuses_the_stores_own_files(tmp_path):
    store, work, _ = _stored(tmp_path)
    (work / "to-journal").symlink_to(store / "files.jsonl")
    sources = [store / "files.jsonl", store / "store.json", part_path(store, 1, 0), "to-journal"]
    r = run_pfs(store, "".join(f"put {s}\n" for s in sources) + "list\n", cwd=work)
    assert r.returncode == 1
    _one_error_each(r, len(sources), "is inside the store")
    assert parse_list(r.stdout) == {1: ("a.bin", "stored")}


def test_lock_holds_when_its_file_is_replaced(tmp_path, live_sessions):
    """The lock that keeps repair out is an flock of the store directory itself:
    replacing STORE/lock (as a get --force onto it once could) changes nothing."""
    store, work, _ = _stored(tmp_path)
    first = live_sessions(store, work)
    _wait(lambda: [n for n in os.listdir(store / "sessions") if n.startswith(f"{first.pid}-")],
          "the first pfs to open the store")
    impostor = tmp_path / "impostor"
    impostor.write_text("")
    os.replace(impostor, store / "lock")

    r = run_pfs(store, "", "repair", cwd=work)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    _one_error_each(r, 1, f"is in use by pid {first.pid}")
    first.send("exit")
    assert first.close() == 0
    assert run_pfs(store, "list\n", cwd=work).returncode == 0


# -- sources that change or lie -----------------------------------------------------

@pytest.mark.parametrize("change", ["rename over", "remove", "write in place", "append"])
def test_source_changed_mid_put_is_never_stored_as_a_mix(tmp_path, live_sessions, change):
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    big = make_file(work / "big.bin", BIG)
    old = big.read_bytes()
    s = live_sessions(store, work)
    s.send("put big.bin")
    s.wait_for(r"^\[1\] storing big\.bin")
    _wait(lambda: len(part_files(store)) >= 4, "the put to write parts")
    with frozen_workers(s.pid):
        assert len(part_files(store)) < BIG // CHUNK and not any("stored" in line for line in s.out), \
            "the put finished before its source could be changed"
        if change == "rename over":
            os.replace(make_file(work / "new.bin", BIG), big)
        elif change == "remove":
            big.unlink()
        else:
            with open(big, "r+b") as f:
                f.seek(0, os.SEEK_END if change == "append" else os.SEEK_SET)
                f.write(b"\0" * 100 if change == "append" else os.urandom(BIG))
    s.send("wait", f"get 1 {tmp_path / 'out.bin'}", "exit")
    s.close()
    out = tmp_path / "out.bin"
    if out.exists():
        assert change in ("rename over", "remove"), f"a source that was {change} mid-put was stored"
        assert out.read_bytes() == old, "the stored file is a mix of two versions"
    else:
        errors = error_lines(s.stderr())
        assert errors[0].startswith("error: put 1 (big.bin): ") and "while it was being stored" in errors[0], errors
        assert parse_list(run_pfs(store, "list\n", cwd=work).stdout)[1][1].startswith("failed (")
        assert part_files(store) == {}


def _lying_files() -> list[str]:
    """Files whose size is not their content: /proc (0 B) and /sys (4 KiB)."""
    candidates = ["/proc/cpuinfo", "/proc/self/status", "/sys/devices/system/cpu/online",
                  "/sys/kernel/mm/transparent_hugepage/enabled"]
    return [p for p in candidates if os.path.isfile(p) and os.access(p, os.R_OK)]


def test_files_whose_size_lies_are_refused(pfs):
    lying = _lying_files()
    assert lying, "no /proc file to try"
    r = pfs.run("".join(f"put {p}\n" for p in lying) + "list\n")
    assert r.returncode == 1
    _one_error_each(r, len(lying), "its size says")
    assert "stored:" not in r.stdout and parse_list(r.stdout) == {}


def test_fifos_and_sockets_are_refused_without_hanging(pfs):
    fifo = pfs.cwd / "fifo"
    os.mkfifo(fifo)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(pfs.cwd / "sock"))
        r = pfs.run("put fifo\nput sock\nput /dev/null\nlist\n", timeout=20)
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    assert [e.split(" is ")[1] for e in error_lines(r.stderr)] == \
        ["a FIFO (put stores one regular file at a time)", "a socket (put stores one regular file at a time)",
         "a character device (put stores one regular file at a time)"]
    assert parse_list(r.stdout) == {}
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# -- destinations -----------------------------------------------------------------

def test_get_never_replaces_fifos_sockets_or_devices(tmp_path):
    """The device is a private copy of /dev/null (mknod), never the real one: a pfs
    with this bug, run as root, would replace the machine's /dev/null."""
    store, work, _ = _stored(tmp_path)
    os.mkfifo(work / "fifo")
    kinds = ["a FIFO", "a socket"]
    with contextlib.suppress(PermissionError):
        os.mknod(work / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        kinds.append("a character device")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(work / "sock"))
        r = run_pfs(store, "get 1 fifo --force\nget 1 sock --force\nget 1 null --force\n", cwd=work)
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    assert [e.split(" is ", 1)[1] for e in error_lines(r.stderr)][:len(kinds)] == \
        [f"{kind} (get writes only regular files)" for kind in kinds]
    assert stat.S_ISFIFO(os.lstat(work / "fifo").st_mode)
    assert stat.S_ISSOCK(os.lstat(work / "sock").st_mode)
    if "a character device" in kinds:
        assert stat.S_ISCHR(os.lstat(work / "null").st_mode)


def test_get_force_replaces_a_hard_link_not_its_other_name(tmp_path):
    store, work, src = _stored(tmp_path)
    other = work / "other"
    other.write_bytes(b"keep me")
    os.link(other, work / "dest")
    r = run_pfs(store, "get 1 dest --force\n", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "dest").read_bytes() == src.read_bytes()
    assert other.read_bytes() == b"keep me"


def test_killed_get_leaves_nothing_in_the_destination(tmp_path, live_sessions):
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    make_file(work / "big.bin", BIG)
    out = tmp_path / "out"
    out.mkdir()
    s = live_sessions(store, work)
    s.send("put big.bin")
    s.wait_for(r"^\[1\] stored big\.bin", timeout=120)
    with frozen_workers(s.pid):
        s.send(f"get 1 {out / 'big.bin'}")
        _wait(lambda: os.listdir(out) or any(p.startswith(f"{out}/") for p in open_paths(s.pid)),
              "the get to create its output")
        assert s.kill()
    assert os.listdir(out) == [], f"a killed get left {os.listdir(out)}"


def _read_only_dir(tmp_path: Path):
    """A directory nobody can create files in: a read-only tmpfs, else (not root) mode 0555."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return path, lambda: path.chmod(0o755)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1M", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("root cannot be refused by permissions and no read-only tmpfs can be mounted")
    return path, lambda: subprocess.run(["umount", str(path)], check=True)


def test_read_only_destination_is_one_clean_error(tmp_path):
    store, work, _ = _stored(tmp_path)
    ro, undo = _read_only_dir(tmp_path)
    try:
        r = run_pfs(store, f"get 1 {ro / 'x'}\nget 1 {ro}\n", cwd=work)
        assert r.returncode == 1
        _one_error_each(r, 2, f"cannot write {ro}/")
        assert "internal error" not in r.stderr
        assert os.listdir(ro) == []
    finally:
        undo()


# -- mode and modification time ------------------------------------------------------

def test_get_restores_mode_and_mtime(tmp_path):
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    src = make_file(work / "a.bin", 2 * CHUNK + 1)
    src.chmod(0o640)
    mtime = 981_173_106_123_456_789  # 2001-02-03, to the nanosecond
    os.utime(src, ns=(mtime, mtime))
    r = run_pfs(store, "put a.bin\nget 1 out.bin\nget 1 again.bin --force\n", cwd=work)
    assert r.returncode == 0, r.stderr
    for out in ("out.bin", "again.bin"):
        st = (work / out).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o640, mtime)
        assert (work / out).read_bytes() == src.read_bytes()


def test_records_without_mode_and_mtime_still_load(tmp_path):
    """A store written before records had mode and mtime: its files still come back."""
    store, work, src = _stored(tmp_path)
    journal = store / "files.jsonl"
    ops = [json.loads(line) for line in journal.read_bytes().splitlines()]
    for op in ops:
        assert op["file"].pop("mode") == stat.S_IMODE(src.stat().st_mode) and op["file"].pop("mtime") == src.stat().st_mtime_ns
    journal.write_text("".join(json.dumps(op) + "\n" for op in ops))
    r = run_pfs(store, "get 1 out.bin\n", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "out.bin").read_bytes() == src.read_bytes()
