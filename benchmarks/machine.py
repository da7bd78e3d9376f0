"""What the benchmark ran on: the machine, its filesystem, and the pfs commit and sources."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from pfs.install import DISTRIBUTION

REPO = Path(__file__).resolve().parent.parent


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path` (longest matching mount point)."""
    real = str(path.resolve())
    mounts = [p for p in psutil.disk_partitions(all=True)
              if real == p.mountpoint or real.startswith(p.mountpoint.rstrip("/") + "/")]
    return max(mounts, key=lambda p: len(p.mountpoint)).fstype if mounts else "unknown"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git(*args: str) -> str:
    """Output of a read-only git command in the repo ('unknown' without git)."""
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def source_digest(package: Path = REPO / "pfs") -> str:
    """A short digest of the pfs sources in `package`."""
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def machine_info(work: Path) -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_bytes": psutil.virtual_memory().total,
            "filesystem": filesystem_type(work), "work_dir": str(work), "kernel": platform.release(),
            "python": platform.python_version(), "pfs": metadata.version(DISTRIBUTION),
            "commit": git("rev-parse", "--short", "HEAD"),
            "pfs_uncommitted_changes": bool(git("status", "--porcelain", "pfs")),
            "load_average_at_start": os.getloadavg()}
