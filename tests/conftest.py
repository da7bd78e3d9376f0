"""Shared fixtures: run the real `pfs` as a subprocess against a temporary store."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

CHUNK = 64 * 1024  # small parts so that multi-part files stay small and fast


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class Pfs:
    """Runs `python -m pfs --store STORE ...` with a script on stdin."""

    def __init__(self, store: Path, cwd: Path) -> None:
        self.store = store
        self.cwd = cwd

    def argv(self, *options: str) -> list[str]:
        return [sys.executable, "-m", "pfs", "--store", str(self.store), "--chunk-size", str(CHUNK),
                "--workers", "2", *options]

    def run(self, script: str = "", *options: str, timeout: float = 60) -> Result:
        proc = subprocess.run(self.argv(*options), input=script, capture_output=True, text=True,
                              cwd=self.cwd, timeout=timeout, env=env())
        return Result(proc.returncode, proc.stdout, proc.stderr)


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("PFS_STORE", None)
    return e


@pytest.fixture
def pfs(tmp_path: Path) -> Pfs:
    work = tmp_path / "work"
    work.mkdir()
    return Pfs(tmp_path / "store", work)


def make_file(path: Path, size: int, kind: str = "random") -> Path:
    """A file of `size` bytes: random (incompressible) or text (compressible)."""
    if kind == "random":
        data = os.urandom(size)
    else:
        line = b"2026-11-25T13:00:00 INFO request served in 12 ms path=/api/items\n"
        data = (line * (size // len(line) + 1))[:size]
    path.write_bytes(data)
    return path
