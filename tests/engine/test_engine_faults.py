"""Faults of the engine, the pool and the read side: durability order, close
while jobs run, part paths that are not part files, semaphores after kill -9,
cancel, and the memory contract whatever --workers is."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pexpect
import psutil
import pytest

from helpers import (CHUNK, assert_clean_stderr, env, error_lines, make_file, open_paths, parse_list, part_files, part_path, pieces,
                     pool_workers, run_pfs)

MIB = 1 << 20


def _wait(predicate, what: str, timeout: float = 30, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return value


# -- 1. durability order (in-process: the race is between threads of one process) --

def _store(tmp_path: Path):
    from pfs.store.facade import Store
    return Store(tmp_path / "store", {"chunk_size": CHUNK}, workers=2, max_memory=16 * MIB)


def test_manifest_is_written_only_after_every_part_fsync(tmp_path, monkeypatch):
    """concurrent.futures wakes wait() before it runs done-callbacks: a callback
    slow to schedule its part's fsync must still be waited for."""
    from pfs.engine.engine import Engine

    synced: list = []
    real_soon = Engine.sync_soon

    def slow_soon(self, flush, *args):
        def recording_flush(*a) -> None:
            flush(*a)
            synced.append(a)
        time.sleep(0.1)  # the callback of the last part runs after wait() has returned
        return real_soon(self, recording_flush, *args)

    monkeypatch.setattr(Engine, "sync_soon", slow_soon)
    source = make_file(tmp_path / "src.bin", 4 * CHUNK + 3)
    with _store(tmp_path) as store:
        seen_at_manifest = []
        real_save = store.parts.save
        monkeypatch.setattr(store.parts, "save", lambda m: (seen_at_manifest.append(len(synced)), real_save(m)))
        entry = store.finish_put(store.begin_put(str(source)), str(source))
        assert seen_at_manifest == [entry.parts], f"manifest written after {seen_at_manifest} of {entry.parts} fsyncs"


def test_a_failure_to_schedule_an_fsync_fails_the_put(tmp_path, monkeypatch):
    """An exception inside a done-callback (here: the fsync cannot be scheduled)
    fails the put and rolls it back; it is never only logged and dropped."""
    from pfs.engine.engine import Engine
    from pfs.errors import PfsError

    real_soon = Engine.sync_soon
    calls = []

    def failing_soon(self, flush, *args):
        calls.append(args)
        if len(calls) == 3:
            raise RuntimeError("can't start new thread")
        return real_soon(self, flush, *args)

    monkeypatch.setattr(Engine, "sync_soon", failing_soon)
    source = make_file(tmp_path / "src.bin", 6 * CHUNK)
    with _store(tmp_path) as store:
        entry = store.begin_put(str(source))
        with pytest.raises((PfsError, RuntimeError)):
            store.finish_put(entry, str(source))
        assert store.entry(entry.id).status == "failed"
        assert store.manifest(entry.id) is None
    assert part_files(tmp_path / "store") == {}


# -- 2. close while jobs run ------------------------------------------------------

CLOSE_SCRIPT = """
import sys, threading, time
from pfs.store.facade import Store
store = Store(sys.argv[1], {"chunk_size": 64 << 10}, workers=2, max_memory=1 << 20)
entry = store.begin_put(sys.argv[2])
errors = []
def put():
    try:
        store.finish_put(entry, sys.argv[2])
    except Exception as exc:
        errors.append(exc)
t = threading.Thread(target=put)
t.start()
time.sleep(0.5)
start = time.monotonic()
store.engine.close()
print(f"closed {time.monotonic() - start:.2f}", flush=True)
t.join(10)
print("put ended" if not t.is_alive() else "put still running", errors and type(errors[0]).__name__, flush=True)
store.close()
"""


def test_engine_closes_promptly_while_a_put_runs(tmp_path):
    """close() from another thread while the pool's callbacks schedule fsyncs:
    it used to hold the engine lock while the pool's thread waited for it."""
    big = make_file(tmp_path / "big.bin", 64 * MIB)
    proc = subprocess.run([sys.executable, "-c", CLOSE_SCRIPT, str(tmp_path / "store"), str(big)],
                          capture_output=True, text=True, timeout=60, env=env())
    assert proc.returncode == 0, proc.stderr
    closed = float(re.search(r"closed (\S+)", proc.stdout).group(1))
    assert closed < 2.5, proc.stdout
    assert "put ended" in proc.stdout, proc.stdout


def test_ctrl_c_during_one_shot_put_on_a_terminal_ends(tmp_path):
    """One-shot put with a progress bar, Ctrl-C: pfs must end (it used to deadlock
    in Engine.close, only kill -9 ended it), and the put is rolled back at the next open."""
    work = tmp_path / "work"
    work.mkdir()
    make_file(work / "big.bin", 128 * MIB)
    store = tmp_path / "store"
    child = pexpect.spawn(sys.executable, ["-m", "pfs", "--store", str(store), "--chunk-size", str(CHUNK),
                                           "--workers", "2", "--max-memory", "2M", "put", "big.bin"],
                          cwd=str(work), env={**env(), "TERM": "xterm"}, timeout=30, encoding="utf-8")
    try:
        _wait(lambda: len(part_files(store)) > 20, "the put to be under way")
        child.sendintr()
        child.expect(pexpect.EOF, timeout=10)
    finally:
        if child.isalive():
            child.terminate(force=True)
            raise AssertionError("pfs did not end within 10 s of Ctrl-C")
    r = run_pfs(store, "list\n")
    assert parse_list(r.stdout)[1][1].startswith("failed"), r.stdout
    assert part_files(store) == {}


# -- 3. part paths that are not part files -----------------------------------------

def _make_special(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "directory":
        path.mkdir()
        (path / "inside").write_bytes(b"x")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink-loop":  # open fails with ELOOP: stands for any errno besides ENOENT (EACCES, EIO)
        path.symlink_to(path.name)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink-loop"])
def test_part_path_that_is_not_a_part_file_is_damage_of_that_part(tmp_path, kind):
    work = tmp_path / "work"
    work.mkdir()
    store = tmp_path / "store"
    original = make_file(work / "v.bin", 5 * CHUNK + 7).read_bytes()
    assert run_pfs(store, "put v.bin\n", cwd=work).returncode == 0
    _make_special(part_path(store, 1, 2), kind)
    where = "(v.bin): damaged part 2 bytes 131072-196607"

    r = run_pfs(store, "get 1 out.bin\n", cwd=work, timeout=20)
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    assert len(error_lines(r.stderr)) == 1 and where in r.stderr and "cannot write" not in r.stderr, r.stderr
    assert os.listdir(work) == ["v.bin"]

    r = run_pfs(store, "verify 1\n", cwd=work, timeout=20)
    assert r.returncode == 1 and where in r.stderr, r.stderr
    assert_clean_stderr(r.stderr)

    r = run_pfs(store, "get 1 out.bin --salvage\n", cwd=work, timeout=20)
    assert r.returncode == 1 and where in r.stderr, r.stderr
    salvaged = (work / "out.bin").read_bytes()
    assert salvaged[:2 * CHUNK] == original[:2 * CHUNK] and salvaged[3 * CHUNK:] == original[3 * CHUNK:]
    assert salvaged[2 * CHUNK:3 * CHUNK] == bytes(CHUNK)

    r = run_pfs(store, "delete 1\nlist\n", cwd=work, timeout=20)
    assert r.returncode == 0, r.stderr
    r = run_pfs(store, "list\n", cwd=work, timeout=20)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert pieces(store) == []


def test_store_with_an_interrupted_delete_of_a_directory_part_opens(tmp_path):
    """Recovery finishes a delete whose part path is a directory (it raised
    IsADirectoryError at every open, so the store could not be opened at all)."""
    import json
    work = tmp_path / "work"
    work.mkdir()
    store = tmp_path / "store"
    make_file(work / "v.bin", 3 * CHUNK)
    assert run_pfs(store, "put v.bin\n", cwd=work).returncode == 0
    victim = part_path(store, 1, 1)
    _make_special(victim, "directory")
    with open(store / "files.jsonl", "rb") as f:
        last = [json.loads(line) for line in f if line.strip()][-1]
    last["file"]["status"] = "deleting"
    with open(store / "files.jsonl", "a") as f:
        f.write(json.dumps(last) + "\n")
    r = run_pfs(store, "list\n", cwd=work)
    assert r.returncode == 0, r.stderr
    # The delete finishes; a directory with content is not a part pfs wrote, so it is left alone.
    assert "finished deleting" in r.stderr and (victim / "inside").read_bytes() == b"x"


# -- 4. POSIX semaphores after kill -9 ----------------------------------------------

def _semaphores_of(pids: list[int]) -> set[str]:
    """Names of the /dev/shm semaphores these processes map, and whether each is unlinked."""
    names = set()
    for pid in pids:
        with open(f"/proc/{pid}/maps") as f:
            names |= {line.split(None, 5)[5].strip() for line in f if "/dev/shm/sem." in line}
    return names


def _put_under_way(tmp_path: Path, live_sessions, size: int = 64 * MIB):
    work = tmp_path / "work"
    work.mkdir()
    make_file(work / "big.bin", size)
    assert run_pfs(tmp_path / "store", "exit\n").returncode == 0  # created here: the session's stderr stays empty
    s = live_sessions(tmp_path / "store", work, "--max-memory", "1M")
    s.send("put big.bin")
    _wait(lambda: len(part_files(tmp_path / "store")) > 20, "the put to be under way")
    return s


def test_kill_9_of_the_group_leaves_no_semaphore(tmp_path, live_sessions):
    s = _put_under_way(tmp_path, live_sessions)
    workers = [w.pid for w in pool_workers(s.pid)]
    mapped = _semaphores_of(workers)
    assert mapped, "the workers map no semaphore"
    s.kill()
    left = [name for name in mapped if os.path.exists(name.removesuffix(" (deleted)"))]
    assert left == [], f"semaphores left in /dev/shm after kill -9: {left}"


def test_kill_9_of_pfs_alone_prints_nothing_on_its_terminal(tmp_path, live_sessions):
    s = _put_under_way(tmp_path, live_sessions)
    helpers = psutil.Process(s.pid).children(recursive=True)  # resource tracker, forkserver, workers
    os.kill(s.pid, signal.SIGKILL)
    gone, alive = psutil.wait_procs(helpers, timeout=15)
    assert not alive
    s.proc.wait(5)
    for t in s._readers:
        t.join(5)
    assert "leaked" not in s.stderr() and "Traceback" not in s.stderr(), s.stderr()
    assert s.stderr() == "", s.stderr()


# -- 5. cancel ------------------------------------------------------------------------

def test_cancel_put_get_verify_and_delete(tmp_path, live_sessions):
    work = tmp_path / "work"
    work.mkdir()
    store = tmp_path / "store"
    make_file(work / "big.bin", 64 * MIB)
    s = live_sessions(store, work, "--max-memory", "1M")

    s.send("put big.bin")  # job 1
    _wait(lambda: len(part_files(store)) > 20, "the put to be under way")
    start = time.monotonic()
    s.send("cancel 1")
    s.wait_for(r"^\[1\] put of big\.bin cancelled: rolled back$", timeout=10)
    assert time.monotonic() - start < 2.5
    s.send("list")
    s.wait_for(r"failed \(cancelled\)")
    assert part_files(store) == {}

    s.send("put big.bin", "wait", "get 2 out.bin")  # jobs 2 and 3
    s.wait_for(r"^\[2\] stored big\.bin", timeout=120)
    _wait(lambda: any(p.startswith(f"{work}/") and "deleted" in p for p in open_paths(s.pid)), "the get to start")
    s.send("cancel 2")  # the file's id, which its event lines begin with: the error names its job
    s.wait_for(r"^error: no running job 2 \(\[2\] is file 2; its get is job 3: `cancel 3`\)$", "err")
    start = time.monotonic()
    s.send("cancel 3")
    s.wait_for(r"^\[2\] get of big\.bin cancelled: nothing written$", timeout=10)
    assert time.monotonic() - start < 2.5
    assert sorted(os.listdir(work)) == ["big.bin"], os.listdir(work)

    s.send("verify 2", "cancel all")  # job 4
    s.wait_for(r"^\[2\] verify of big\.bin cancelled$", timeout=10)

    s.send("delete 2", "cancel 5", "cancel 99", "wait", "list")
    s.wait_for(r"^\[2\] (delete of big\.bin cannot be cancelled halfway; it finishes|deleted big\.bin)$")
    s.wait_for(r"^\[2\] deleted big\.bin$")
    s.wait_for(r"^error: no running job 99", "err")
    assert s.close() == 1  # only `cancel 2` and `cancel 99` failed
    assert len(error_lines(s.stderr())) == 2, s.stderr()
    assert part_files(store) == {}


# -- 6. the memory contract whatever --workers is ----------------------------------

def test_workers_64_stay_within_the_memory_contract(tmp_path):
    """Each worker is an interpreter (~20 MiB) outside --max-memory: 64 of them on
    a small machine blew the contract. pfs caps them and says so."""
    from test_memory import tree_rss

    work = tmp_path / "work"
    work.mkdir()
    make_file(work / "big.bin", 64 * MIB)
    max_memory = 4 * MIB
    sane = 2 * (os.cpu_count() or 1)

    def peak(workers: int, script: str) -> tuple[int, str]:
        proc = subprocess.Popen([sys.executable, "-m", "pfs", "--store", str(tmp_path / "store"), "--chunk-size",
                                 str(CHUNK), "--max-memory", str(max_memory), "--workers", str(workers)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=work, env=env(), text=True)
        root = psutil.Process(proc.pid)
        result = {}
        talker = threading.Thread(target=lambda: result.update(zip(("out", "err"), proc.communicate(script, 120))))
        talker.start()
        high = 0
        while proc.poll() is None:
            high = max(high, tree_rss(root))
            time.sleep(0.02)
        talker.join(30)
        assert proc.returncode == 0, result["err"]
        return high, result["err"]

    baseline, _ = peak(sane, "put big.bin\n")  # the same work, so every worker has warmed up in both
    big, err = peak(64, "put big.bin\n")
    assert re.fullmatch(r"pfs: using \d+ workers, not 64: .*\n", err), err
    assert big <= baseline + max_memory + 16 * MIB, \
        f"--workers 64 peaked at {big / MIB:.0f} MiB, {sane} workers at {baseline / MIB:.0f} MiB"
