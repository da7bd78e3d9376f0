"""Pool worker faults: a worker killed with SIGKILL in the middle of a put or a get,
a worker killed while idle, and a worker that raises (the source file shrinks
while it is being put). Each time the command fails with one clear error line,
the same script session stays usable (more commands are written to its stdin
after the failure), and nothing already stored is affected.

Workers are found with psutil: the children of the pfs process's forkserver.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

from helpers import error_lines, make_file, manifest_part_ids, parse_list, part_files, pool_workers

MIB = 1 << 20
#: Big enough (1024 parts of 64 KiB) that the put/get is still running when a worker is killed.
BIG = 64 * MIB


def _wait(predicate, what: str, timeout: float = 60, interval: float = 0.002):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def _kill_a_worker(pid: int) -> int:
    victim = _wait(lambda: pool_workers(pid), "a pool worker")[0]
    os.kill(victim.pid, signal.SIGKILL)
    return victim.pid


def _assert_parts_match_manifests(store: Path, stored_ids: set[int]) -> None:
    manifests = manifest_part_ids(store)
    assert set(manifests) == stored_ids
    referenced = {pid for pids in manifests.values() for pid in pids}
    assert set(part_files(store)) == referenced, "part files left behind (or missing) after the failure"


def _setup(tmp_path: Path):
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    return store, work


def _big_put_under_way(tmp_path, live_sessions, keep_size: int):
    """A session that has stored keep.bin (file 1) and is part-way through putting big.bin (file 2)."""
    store, work = _setup(tmp_path)
    keep = make_file(work / "keep.bin", keep_size)
    big = make_file(work / "big.bin", BIG)
    s = live_sessions(store, work)
    s.send("put keep.bin")
    s.wait_for(r"^\[1\] stored keep\.bin")
    before = len(part_files(store))
    s.send("put big.bin")
    s.wait_for(r"^\[2\] storing big\.bin")
    _wait(lambda: len(part_files(store)) > before + 8, "the put to be under way")
    return s, store, work, keep, big


def test_worker_killed_during_put(tmp_path, live_sessions):
    s, store, work, keep, big = _big_put_under_way(tmp_path, live_sessions, MIB + 5)
    _kill_a_worker(s.pid)

    line = s.wait_for(r"^error: put 2 \(big\.bin\)", "err", timeout=60).string
    assert "worker" in line and "internal error" not in line, line
    assert len(error_lines(s.stderr())) == 1, s.stderr()
    assert not any(l.startswith("[2] stored") for l in s.out), "the put claims success"

    # The same session goes on: put and get work, the earlier file is intact.
    after = make_file(work / "after.bin", 5 * 64 * 1024 + 7, "text")
    s.send("put after.bin", "get 1 keep.out", "get 3 after.out", "wait", "list", "exit")
    rc = s.close()
    assert rc == 1, "exit status must report the failed put"
    assert len(error_lines(s.stderr())) == 1, s.stderr()
    assert (work / "keep.out").read_bytes() == keep.read_bytes()
    assert (work / "after.out").read_bytes() == after.read_bytes()
    listing = parse_list(s.stdout())
    assert listing[1] == ("keep.bin", "stored") and listing[3] == ("after.bin", "stored")
    assert listing[2][1].startswith("failed ("), listing[2]
    _assert_parts_match_manifests(store, {1, 3})
    assert big.exists()


def test_worker_killed_during_get(tmp_path, live_sessions):
    store, work = _setup(tmp_path)
    big = make_file(work / "big.bin", BIG)
    keep = make_file(work / "keep.bin", 3 * 64 * 1024)
    out = work / "out"
    out.mkdir()
    s = live_sessions(store, work)
    s.send("put big.bin", "put keep.bin")
    s.wait_for(r"^\[1\] stored big\.bin", timeout=120)
    s.wait_for(r"^\[2\] stored keep\.bin")
    workers = _wait(lambda: len(w := pool_workers(s.pid)) == 2 and w, "both pool workers")

    # A worker is killed once it has read a few parts of the get: the get is then
    # certainly mid-flight (a kill before its first part is submitted would only
    # make the next submit start a fresh pool, and the get would rightly
    # succeed). Freezing workers instead can stop the one that holds the pool's
    # task queue lock, and with it the whole get.
    victim = workers[0]
    before = victim.io_counters().read_chars
    s.send(f"get 1 {out / 'big.bin'}")
    _wait(lambda: victim.io_counters().read_chars > before + 4 * 64 * 1024, "the get to read parts", 30)
    os.kill(victim.pid, signal.SIGKILL)

    line = s.wait_for(r"^error: get 1 \(big\.bin\)", "err", timeout=60).string
    assert "worker" in line and "internal error" not in line, line
    assert len(error_lines(s.stderr())) == 1, s.stderr()
    assert os.listdir(out) == [], f"a failed get left {os.listdir(out)}"

    s.send(f"get 1 {out / 'big.bin'}", f"get 2 {out / 'keep.bin'}", "wait", "list", "exit")
    assert s.close() == 1
    assert len(error_lines(s.stderr())) == 1, s.stderr()
    assert (out / "big.bin").read_bytes() == big.read_bytes()
    assert (out / "keep.bin").read_bytes() == keep.read_bytes()
    assert {i: st for i, (_, st) in parse_list(s.stdout()).items()} == {1: "stored", 2: "stored"}
    _assert_parts_match_manifests(store, {1, 2})


def test_worker_killed_while_idle(tmp_path, live_sessions):
    """A worker that dies between commands must not fail the next command."""
    store, work = _setup(tmp_path)
    a = make_file(work / "a.bin", 10 * 64 * 1024)
    b = make_file(work / "b.bin", 10 * 64 * 1024, "text")
    s = live_sessions(store, work)
    s.send("put a.bin")
    s.wait_for(r"^\[1\] stored a\.bin")
    workers = _wait(lambda: pool_workers(s.pid), "the pool workers")
    os.kill(workers[0].pid, signal.SIGKILL)
    # The executor notices the death and retires the whole (broken) pool.
    _wait(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers),
          "the broken pool to be retired", 30, 0.01)

    s.send("put b.bin", "get 1 a.out", "get 2 b.out", "exit")
    assert s.close() == 0, s.stderr()
    assert error_lines(s.stderr()) == []
    assert (work / "a.out").read_bytes() == a.read_bytes()
    assert (work / "b.out").read_bytes() == b.read_bytes()


def test_worker_raises_when_source_shrinks(tmp_path, live_sessions):
    s, store, work, keep, big = _big_put_under_way(tmp_path, live_sessions, MIB)
    os.truncate(big, 0)  # the workers still to read their slice find it gone

    line = s.wait_for(r"^error: put 2 \(big\.bin\)", "err", timeout=60).string
    assert "shrank" in line or "changed size" in line, line
    assert "internal error" not in line, f"a shrinking source is reported as an internal error: {line}"
    assert len(error_lines(s.stderr())) == 1, s.stderr()

    after = make_file(work / "after.bin", 2 * 64 * 1024 + 1)
    s.send("list", "put after.bin", "get 1 keep.out", "get 3 after.out", "exit")
    assert s.close() == 1
    assert len(error_lines(s.stderr())) == 1, s.stderr()
    listing = parse_list(s.stdout())
    assert listing[2][1].startswith("failed ("), listing[2]
    assert (work / "keep.out").read_bytes() == keep.read_bytes()
    assert (work / "after.out").read_bytes() == after.read_bytes()
    _assert_parts_match_manifests(store, {1, 3})


def test_no_worker_outlives_pfs_killed_alone(tmp_path, live_sessions):
    """kill -9 of the pfs process only (not its group): the forkserver and the
    pool workers must go too, instead of waiting forever on a dead parent."""
    s, store, work, keep, big = _big_put_under_way(tmp_path, live_sessions, MIB)
    children = psutil.Process(s.pid).children(recursive=True)
    assert pool_workers(s.pid), "no pool workers to watch"
    os.kill(s.pid, signal.SIGKILL)
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"still running after pfs was killed: {[p.pid for p in alive]}"
