"""The stores the benchmark makes (a directory, or a PostgreSQL database on a
throwaway server) and how it invokes the pfs under test."""

from __future__ import annotations

import compileall
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.files import remove
from benchmarks.machine import REPO
from benchmarks.servers import PostgresServer


@dataclass(frozen=True)
class DbStore:
    """A store whose metadata is a PostgreSQL database, its part data in a directory."""

    uri: str
    data: Path


Store = Path | DbStore


class Postgres:
    """A throwaway PostgreSQL server (the tests' own) and the database stores made on it."""

    def __init__(self, work: Path) -> None:
        self.server = PostgresServer()
        self.work = work

    def sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.server.uri(), autocommit=True) as conn:
            conn.execute(statement)

    def new(self, name: str) -> DbStore:
        """An empty database store (pfs creates its tables on first use)."""
        self.sql(f'CREATE DATABASE "{name}"')
        return DbStore(self.server.uri(name), self.work / f"{name}-data")

    def copy(self, store: DbStore, name: str) -> DbStore:
        """A copy of a store nobody has open: its database as a template, its data copied."""
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE "{store.uri.rsplit("/", 1)[1]}"')
        copy = DbStore(self.server.uri(name), self.work / f"{name}-data")
        shutil.copytree(store.data, copy.data, symlinks=True)
        return copy

    def drop(self, store: DbStore) -> None:
        self.sql(f'DROP DATABASE "{store.uri.rsplit("/", 1)[1]}"')
        remove(store.data)

    def close(self) -> None:
        self.server.close()


@dataclass(frozen=True)
class Pfs:
    """How to invoke the pfs under test."""

    python: tuple[str, ...]  # the interpreter, with the copy first on its path: runs library scripts too

    @property
    def exe(self) -> tuple[str, ...]:
        return (*self.python, "-m", "pfs")

    @classmethod
    def snapshot(cls, into: Path) -> Pfs:
        """Copy the repo's pfs/ into `into` and run that copy (`python -m pfs` with it
        first on PYTHONPATH, which also reaches the forkserver and the workers). pfs is
        installed editable and may be edited while the benchmark runs: the copy makes
        every row measure the same version, the one whose digest the JSON records. The
        copy is byte-compiled, as an installed pfs is: under PYTHONDONTWRITEBYTECODE
        every command would compile pfs's sources again in pfs and in its forkserver
        (0.08 s of CPU per command here)."""
        shutil.copytree(REPO / "pfs", into / "pfs", ignore=shutil.ignore_patterns("__pycache__"))
        compileall.compile_dir(into / "pfs", quiet=1)
        path = os.pathsep.join([str(into), *filter(None, [os.environ.get("PYTHONPATH")])])
        return cls(("env", f"PYTHONPATH={path}", sys.executable))

    def argv(self, store: Store, *args: str | Path) -> list[str | Path]:
        """pfs --store STORE [--data DIR] ARGS... (options, then a one-shot command if any)."""
        where = ("--store", store.uri, "--data", store.data) if isinstance(store, DbStore) else ("--store", store)
        return [*self.exe, *where, *args]
