"""A real `pfs mount` for the tests, run as a subprocess, and whether FUSE can
run here (libfuse installed by the run itself where it is missing: CI's
machine starts without it)."""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import time
from pathlib import Path

from helpers import env, pfs_argv


def fuse_missing() -> str:
    """Why FUSE cannot be used here, after installing libfuse if we may ("" if it can)."""
    if not os.path.exists("/dev/fuse"):
        return "this machine has no /dev/fuse"
    if shutil.which("fusermount3") and ctypes.util.find_library("fuse3"):
        return ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "libfuse is missing and only root with apt-get can install it (apt-get install fuse3)"
    install = ["apt-get", "install", "-y", "-q", "fuse3"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        done = subprocess.run(install, capture_output=True, text=True)
        if done.returncode != 0:
            return f"apt-get install fuse3 failed: {done.stderr.strip()[-300:]}"
    return "" if ctypes.util.find_library("fuse3") else "fuse3 installed, yet libfuse3 is not found"


class Mount:
    """`pfs --store STORE mount POINT` in the background, until stop()."""

    def __init__(self, store: Path | str, point: Path, *options: str, pfs_options: tuple[str, ...] = ()) -> None:
        self.store, self.point = store, point
        point.mkdir(exist_ok=True)
        self.proc = subprocess.Popen([*pfs_argv(store, *pfs_options), "mount", str(point), *options],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                                     start_new_session=True)
        self.line = self.proc.stdout.readline()
        if not self.line.startswith("pfs: mounted"):
            self.proc.kill()
            raise AssertionError(f"not mounted: {self.line!r} {self.proc.stderr.read()}")

    def stop(self, timeout: float = 30) -> tuple[int, str]:
        """Unmount with fusermount -u; (exit status, stderr) of the mount."""
        if self.proc.poll() is None:
            for _ in range(50):
                if subprocess.run(["fusermount3", "-u", str(self.point)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)  # busy: a process of the test is still leaving it
        rc = self.proc.wait(timeout)
        return rc, self.proc.stderr.read()

    def kill(self) -> None:
        """kill -9 the mount; its mount point is left dead until fusermount -u clears it."""
        self.proc.kill()
        self.proc.wait(30)
        subprocess.run(["fusermount3", "-u", "-z", str(self.point)], capture_output=True)


def wait_for(check, timeout: float = 5.0):
    """Poll `check` until it returns something true (or time runs out); return its last answer."""
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > end:
            return result
        time.sleep(0.05)
