"""SIGINT, SIGTERM and SIGHUP sent to real pfs processes, in a terminal (pexpect)
and in a pipe: pfs stops within moments with one line saying what it abandoned,
exits 128 + the signal number, leaves no process behind, and the next open rolls
the unfinished put back with every earlier file intact."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pexpect
import psutil
import pytest

from helpers import (CHUNK, assert_clean_stderr, env, group_alive, make_file, parse_list, part_files,
                     pfs_argv, run_pfs)

BIG = 200 << 20  # at 64 KiB parts, long enough for a signal to land mid-put
ABANDONED = re.compile(r"pfs: (interrupted|terminated|hung up) \(SIG(INT|TERM|HUP)\): abandoned put 2 \(big\.bin\) "
                       r"at \d+%; the next open of the store rolls unfinished puts back$", re.M)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    return make_file(tmp_path_factory.mktemp("big") / "big.bin", BIG)


@pytest.fixture(scope="module")
def kept(tmp_path_factory) -> tuple[Path, bytes]:
    """A store holding one small stored file, filled once for the module."""
    base = tmp_path_factory.mktemp("kept")
    keep = make_file(base / "keep.bin", 3 * CHUNK + 1)
    r = run_pfs(base / "store", f"put {keep}\n")
    assert r.returncode == 0, r.stderr
    return base / "store", keep.read_bytes()


@pytest.fixture
def store_with_keep(kept, tmp_path) -> tuple[Path, bytes]:
    """The test's own copy of a store holding one small stored file, which every
    interruption must leave intact."""
    template, keep = kept
    shutil.copytree(template, tmp_path / "store")
    return tmp_path / "store", keep


def spawn(argv: list[str], cwd: Path) -> pexpect.spawn:
    e = env()
    e.update(TERM="xterm", LANG="C.UTF-8", LC_ALL="C.UTF-8", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(cwd), env=e, dimensions=(40, 120), encoding="utf-8",
                          codec_errors="replace", timeout=60)
    child.logfile_read = io.StringIO()
    return child


def wait_mid_put(child: pexpect.spawn) -> None:
    """Until the progress bar shows the put has stored something (and is not done)."""
    try:
        child.expect(r"[1-9][\d.]* (KiB|MiB)/200\.0 MiB")
    except pexpect.EOF:
        shown = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", child.logfile_read.getvalue())
        raise AssertionError(f"pfs ended before its progress showed:\n{shown[-3000:]}") from None


def ended_within(child: pexpect.spawn, seconds: float) -> tuple[int, str]:
    start = time.monotonic()
    child.expect(pexpect.EOF, timeout=30)
    took = time.monotonic() - start
    child.close()
    shown = child.logfile_read.getvalue()
    assert took < seconds, f"pfs took {took:.1f} s to stop:\n{shown[-2000:]}"
    assert child.signalstatus is None, f"killed by signal {child.signalstatus}"
    assert "Traceback" not in shown and "Exception ignored" not in shown, shown
    return child.exitstatus, shown


def assert_rolled_back_and_intact(store: Path, keep: bytes, tmp_path: Path, pid: int) -> None:
    deadline = time.monotonic() + 10  # pool processes leave as soon as they see pfs gone
    while group_alive(pid):
        assert time.monotonic() < deadline, "a pfs process outlived the signal"
        time.sleep(0.05)
    r = run_pfs(store, f"list\nget 1 {tmp_path / 'keep.out'}\n")
    assert r.returncode == 0, r.stderr
    assert "pfs: file 2 (big.bin) was storing when pfs stopped: rolled back" in r.stderr, r.stderr
    assert parse_list(r.stdout)[2] == ("big.bin", "failed (interrupted)"), r.stdout
    assert (tmp_path / "keep.out").read_bytes() == keep
    manifests = json.loads((store / "manifests" / "1.json").read_bytes())
    assert len(part_files(store)) == len(manifests["parts"]), "parts of the abandoned put were left"


@pytest.mark.parametrize("how", ["ctrl-c", "SIGTERM", "SIGHUP"])
def test_one_shot_put_in_a_terminal_stops_at_once(store_with_keep, big, tmp_path, how):
    store, keep = store_with_keep
    child = spawn(pfs_argv(store, "put", str(big)), tmp_path)
    wait_mid_put(child)
    if how == "ctrl-c":
        child.sendintr()
    else:
        os.kill(child.pid, getattr(signal, how))
    status, shown = ended_within(child, 2.5)
    signum = {"ctrl-c": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}[how]
    assert status == 128 + signum
    lines = [line for line in shown.splitlines() if "pfs:" in line]
    assert len(lines) == 1 and ABANDONED.search(lines[0].strip()), shown[-1500:]
    assert_rolled_back_and_intact(store, keep, tmp_path, child.pid)


def test_script_interrupted_exits_130_and_says_the_rest_did_not_run(store_with_keep, big, tmp_path):
    store, keep = store_with_keep
    proc = subprocess.Popen(pfs_argv(store), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env(), start_new_session=True)
    proc.stdin.write(f"put {big}\nwait\nlist\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while not part_files(store) or len(part_files(store)) < 20:  # the put is under way
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 2.5
    assert proc.returncode == 130, (out, err)
    assert_clean_stderr(err)
    assert err.count("\n") == 1 and "the rest of the script was not run" in err, err
    assert "big.bin" not in out.split("[2] storing big.bin", 1)[-1], "lines after the interrupt ran"
    assert_rolled_back_and_intact(store, keep, tmp_path, proc.pid)


def _catches(pid: int, signum: int) -> bool:
    """Whether the process has installed a handler for the signal (Python's own
    for SIGINT, as it starts; pfs's for SIGTERM, its first act)."""
    try:
        caught = re.search(r"^SigCgt:\s*([0-9a-f]+)$", Path(f"/proc/{pid}/status").read_text(), re.M)
    except FileNotFoundError:
        return False
    return bool(caught and int(caught.group(1), 16) & (1 << (signum - 1)))


def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    """The signal lands while pfs is still importing its modules."""
    proc = subprocess.Popen(pfs_argv(tmp_path / "store", "list"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env(), start_new_session=True)
    deadline = time.monotonic() + 5
    while not _catches(proc.pid, signal.SIGTERM) and proc.poll() is None and time.monotonic() < deadline:
        pass
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert err == "pfs: interrupted (SIGINT): stopped before the store was opened; nothing was changed\n", err


def _forkserver_importing(pid: int) -> bool:
    """Whether the forkserver of pfs `pid` has started Python (which catches SIGINT
    from then on) but not yet ignored SIGINT (its last step before serving)."""
    try:
        servers = [c for c in psutil.Process(pid).children() if "forkserver" in " ".join(c.cmdline())]
    except psutil.Error:
        return False
    return any(_catches(server.pid, signal.SIGINT) for server in servers)


def test_ctrl_c_while_the_forkserver_starts(store_with_keep, big, tmp_path):
    """A one-shot put starts the pool's forkserver first thing, while pfs still
    imports and opens the store. A Ctrl-C in the terminal (which reaches the
    whole process group) while the forkserver imports gives one line, no
    KeyboardInterrupt traceback from the forkserver, and leaves no process behind."""
    store, keep = store_with_keep
    child = spawn(pfs_argv(store, "put", str(big)), tmp_path)
    deadline = time.monotonic() + 10
    while not _forkserver_importing(child.pid):
        assert time.monotonic() < deadline and child.isalive(), "no forkserver was seen starting"
    child.sendintr()
    status, shown = ended_within(child, 2.5)
    assert status == 130
    lines = [line for line in shown.splitlines() if "pfs:" in line]
    assert len(lines) == 1 and "pfs: interrupted (SIGINT): " in lines[0], shown[-1500:]
    deadline = time.monotonic() + 10
    while group_alive(child.pid):
        assert time.monotonic() < deadline, "a pfs process outlived the signal"
        time.sleep(0.05)
    r = run_pfs(store, f"get 1 {tmp_path / 'keep.out'}\n")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "keep.out").read_bytes() == keep


def test_ctrl_c_while_a_large_store_opens(tmp_path):
    store = tmp_path / "store"
    assert run_pfs(store, "exit\n").returncode == 0
    fields = ["id", "name", "size", "status", "parts", "chunk_size", "codec", "hash", "uuid", "created",
              "stored", "digest", "reason"]
    rows = [[i, f"f{i}", 1, "stored", 1, CHUNK, "none", "xxh3-128", f"{i:032x}", 0.0, 1, "0" * 32, ""]
            for i in range(1, 300_001)]
    (store / "files.json").write_text(json.dumps({"format": 1, "next_id": len(rows) + 1, "fields": fields,
                                                  "files": rows}))
    before = (store / "files.json").read_bytes()
    proc = subprocess.Popen(pfs_argv(store, "list"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env(), start_new_session=True)
    deadline = time.monotonic() + 10
    while not [n for n in os.listdir(store / "sessions") if n.startswith(f"{proc.pid}-")]:  # reading the registry
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert re.fullmatch(r"pfs: interrupted \(SIGINT\): stopped while opening the store .*; nothing is lost: "
                        r"the next open finishes any recovery\n", err), err
    assert (store / "files.json").read_bytes() == before
    r = run_pfs(store, "exit\n")
    assert r.returncode == 0, r.stderr


def test_shell_ctrl_c_breaks_off_a_wait_and_abandons_at_exit(store_with_keep, big, tmp_path):
    store, keep = store_with_keep
    child = spawn(pfs_argv(store), tmp_path)
    child.expect_exact("pfs>")
    child.sendline(f"put {big}")
    child.expect(r"\[2\] storing big\.bin")
    child.sendline("wait")
    time.sleep(0.3)
    child.sendintr()  # breaks off the wait, not the put
    child.expect(r"stopped waiting; 1 job still running")
    child.expect_exact("pfs>")
    child.sendline("exit")
    child.expect(r"waiting for running jobs")
    wait_mid_put(child)  # exit shows the put's progress
    child.sendintr()
    status, shown = ended_within(child, 2.5)
    assert status == 130
    lines = [line for line in shown.splitlines() if "pfs: " in line]
    assert len(lines) == 1 and ABANDONED.search(lines[0].strip()), shown[-1500:]
    assert_rolled_back_and_intact(store, keep, tmp_path, child.pid)


def test_sigterm_at_the_shell_prompt_restores_the_terminal(tmp_path):
    import termios

    child = spawn(pfs_argv(tmp_path / "store"), tmp_path)
    child.expect_exact("pfs>")
    assert not termios.tcgetattr(child.child_fd)[3] & termios.ICANON, "the prompt runs in raw mode"
    os.kill(child.pid, signal.SIGTERM)
    child.expect_exact("SIGTERM")
    child.expect(pexpect.EOF, timeout=30)
    assert termios.tcgetattr(child.child_fd)[3] & termios.ECHO | termios.ICANON, "the terminal was left raw"
    status, shown = ended_within(child, 2.5)
    assert status == 128 + signal.SIGTERM
    assert "pfs: terminated (SIGTERM): no jobs were running" in shown


def test_one_shot_get_interrupted_leaves_nothing_under_the_name(tmp_path, big):
    store = tmp_path / "store"
    r = run_pfs(store, f"put {big}\n")
    assert r.returncode == 0, r.stderr
    dest = tmp_path / "out" / "big.bin"
    dest.parent.mkdir()
    child = spawn(pfs_argv(store, "get", "1", str(dest)), tmp_path)
    wait_mid_put(child)  # the get's progress bar
    child.sendintr()
    status, shown = ended_within(child, 2.5)
    assert status == 130
    assert re.search(r"pfs: interrupted \(SIGINT\): abandoned get 1 \(big\.bin\) at \d+%; "
                     r"an abandoned get leaves no file under its destination name\s*$", shown), shown[-1000:]
    assert not dest.exists()
