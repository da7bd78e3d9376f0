"""A real PostgreSQL server for the tests: initdb into a temporary directory
(as the postgres user when run as root: initdb refuses root), pg_ctl start on a
free loopback port with its socket in that directory, stopped and removed at
the end. Each test gets a database of its own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BIN = Path(os.environ.get("PFS_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "pfs"


def missing() -> str:
    """Why the PostgreSQL tests cannot run here ("" if they can)."""
    if not (BIN / "initdb").exists() or not (BIN / "pg_ctl").exists():
        return f"PostgreSQL server binaries not found in {BIN} (set PFS_PG_BIN to their directory)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'pfs[postgres]')"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pfs-pg-"))  # under /tmp: the postgres user can reach it
        self.data = self.base / "data"
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.base, "postgres")
        started = time.monotonic()
        self._run(BIN / "initdb", "-D", self.data, "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8")
        self.start()
        self.start_seconds = time.monotonic() - started

    def _run(self, *argv) -> None:
        subprocess.run([*self._as, *map(str, argv)], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(BIN / "pg_ctl", "-D", self.data, "-w", "-l", self.base / "log", "-o",
                  f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(BIN / "pg_ctl", "-D", self.data, "-w", "-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        """pg_ctl restart: every connection is cut, every advisory lock dropped."""
        self._run(BIN / "pg_ctl", "-D", self.data, "-w", "-m", mode, "-l", self.base / "log", "restart")

    def uri(self, db: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.uri(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.base, ignore_errors=True)
