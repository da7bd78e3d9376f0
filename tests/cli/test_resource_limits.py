"""A thread or process the system refuses (a pids cgroup, as containers set; a
low RLIMIT_NPROC) fails the command that needed it with one `error:` line and
leaves the session usable: `verify --all` used to wait for ever for jobs whose
threads never started.

The tests run as root, whom RLIMIT_NPROC does not bind (nor anyone with
CAP_SYS_ADMIN or CAP_SYS_RESOURCE). So pfs runs either in a pids cgroup of its
own (where /sys/fs/cgroup lets the test make one), or under setpriv with an
unprivileged real uid and those two capabilities dropped from its bounding set,
so that the kernel counts and limits its tasks; its effective uid stays root,
so it reads the venv and writes the store as the other tests' pfs does."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import CHUNK, env, make_file

#: A real uid with no processes of its own, for the RLIMIT_NPROC case.
UID = 61000 + os.getpid() % 4000
PIDS_V1 = Path("/sys/fs/cgroup/pids")


@contextlib.contextmanager
def pids_cgroup(limit: int):
    """A pids cgroup allowing `limit` tasks: (argv prefix, preexec_fn) that run a command in it."""
    if not os.access(PIDS_V1, os.W_OK):
        pytest.skip("no writable pids cgroup (v1) here")
    group = PIDS_V1 / f"pfs-test-{os.getpid()}-{time.monotonic_ns()}"
    group.mkdir()
    try:
        (group / "pids.max").write_text(str(limit))

        def enter() -> None:
            (group / "cgroup.procs").write_text(str(os.getpid()))
        yield [], enter
    finally:
        for _ in range(100):  # its tasks have exited, or are about to
            with contextlib.suppress(OSError):
                group.rmdir()
                break
            time.sleep(0.1)


@contextlib.contextmanager
def nproc_limit(limit: int):
    if not (shutil.which("setpriv") and shutil.which("prlimit")):
        pytest.skip("setpriv or prlimit (util-linux) is missing")
    yield ["prlimit", f"--nproc={limit}", "setpriv", f"--ruid={UID}",
           "--bounding-set=-sys_admin,-sys_resource", "--"], None


LIMITS = {"pids cgroup": pids_cgroup, "RLIMIT_NPROC": nproc_limit}


def _store_of(pfs, files: int) -> None:
    script = ""
    for i in range(files):
        make_file(pfs.cwd / f"f{i}", CHUNK + i)
        script += f"put f{i}\n"
    assert pfs.run(script).returncode == 0


def _run_limited(pfs, limit: str, tasks: int, script: str, *command: str) -> subprocess.CompletedProcess:
    with LIMITS[limit](tasks) as (prefix, preexec):
        return subprocess.run([*prefix, *pfs.argv(*command)], input=script, capture_output=True, text=True,
                              cwd=pfs.cwd, env=env(), timeout=150, preexec_fn=preexec)


@pytest.mark.parametrize("limit", LIMITS)
def test_verify_all_past_the_thread_limit_is_one_error_and_a_summary(pfs, limit):
    """The pool runs (a first verify started it); of the 20 jobs of verify --all
    only some threads can start: the rest are one error and counted in the summary."""
    _store_of(pfs, 20)
    r = _run_limited(pfs, limit, 16, "verify 1\nwait\nverify --all\nlist\n")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot start the verify of f"), r.stderr
    assert "can't start new thread" in errors[0] and "raise the limit" in errors[0]
    summary = [line for line in r.stdout.splitlines() if line.startswith("verify --all:")]
    assert len(summary) == 1, r.stdout
    verified, not_checked = (int(summary[0].split(": ")[1].split()[0]),
                             int(summary[0].split(", ")[-1].split()[0]))
    assert summary[0].endswith("not checked (no job could start)") and verified + not_checked == 20, summary
    assert 0 < not_checked < 20
    assert re.search(r"^\s*20\s+f19\s", r.stdout, re.M), "the session went on: list ran"


@pytest.mark.parametrize("limit", LIMITS)
def test_verify_all_that_cannot_start_its_pool_ends(pfs, limit):
    """So few tasks that the worker pool cannot start either: the command still
    ends (it waited for ever, or 35 s per job for the pool), with its summary."""
    _store_of(pfs, 12)
    started = time.monotonic()
    r = _run_limited(pfs, limit, 8, "", "verify", "--all")
    assert time.monotonic() - started < 60
    assert r.returncode == 1
    assert [line for line in r.stdout.splitlines() if line.startswith("verify --all:")], r.stdout
    assert "cannot start" in r.stderr
    pfs_lines = [line for line in r.stderr.splitlines() if line.startswith(("error:", "pfs:"))]
    assert pfs_lines, r.stderr
