"""What encryption at rest costs: put and get of a big file of random and of
log-like data into a plain and an encrypted store, in the same run, round-robin
(bench.py's `run`: wall time and the CPU time of the whole process tree), and
the cost of opening an encrypted store (scrypt, once per process) on its own.

    python benchmarks/encryption.py [--size 1G] [--reps 3] [--only big|names] [--dir DIR] [--json OUT]

`--only names` measures what encrypted names cost instead: a put -r of 1,000
small files and a `list` of one directory of them, into a plain, an encrypted
and an encrypted store with --encrypt-names, in the same run.

The figure to compare on a shared machine is the tree's CPU time (user +
system): it does not depend on how busy the other cores are.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo: `benchmarks` is a package
from benchmarks.files import log_blocks, random_blocks, remove, write_file  # noqa: E402
from benchmarks.measure import Case, Measurement, measure  # noqa: E402
from benchmarks.text import GiB  # noqa: E402
from pfs.units import parse_size  # noqa: E402

#: The target: past the open (the KDF, whose cost is shown on its own), an encrypted put or get
#: costs at most this much the CPU of a plain one.
TARGET = 1.15


def cpu(m: Measurement) -> float:
    """Median user + system CPU seconds of the tree over the repetitions."""
    return statistics.median(u + s for u, s in zip(m.user, m.system))


class Bench:
    def __init__(self, work: Path, size: int) -> None:
        self.work, self.size = work, size
        self.password = work / "password"
        self.password.write_text("a benchmark's password\n")
        self.env = {**os.environ, "PFS_PASSWORD_FILE": str(self.password)}
        self.env.pop("PFS_STORE", None)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)  # as pfs runs for its users: compiled once, not per process

    def pfs(self, store: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "pfs", "--store", str(store), *args]

    def cases(self, kind: str, source: Path) -> list[Case]:
        cases = []
        for label, extra in (("plain", ()), ("encrypted", ("--encrypt",))):
            store = self.work / f"{kind}-{label}"
            out = self.work / f"{kind}-{label}.out"
            subprocess.run(self.pfs(store, *extra, "list"), env=self.env, check=True, capture_output=True)
            cases.append(Case(f"put ({label})", kind, lambda rep, s=store: self.pfs(s, "put", str(source), f"f{rep}"),
                              env=self.env, nbytes=self.size))
            cases.append(Case(f"get ({label})", kind, lambda rep, s=store, o=out: self.pfs(s, "get", f"f{rep}", str(o)),
                              after=lambda rep, s=store, o=out: self._clean(s, o, rep), env=self.env,
                              nbytes=self.size))
        return cases

    def _clean(self, store: Path, out: Path, rep: int) -> None:
        if out.read_bytes()[:1 << 20] != self.first_mib:
            raise RuntimeError(f"{out} came back different")
        remove(out)
        subprocess.run(self.pfs(store, "delete", f"f{rep}"), env=self.env, check=True, capture_output=True)

    def run(self, reps: int) -> dict:
        results = {}
        for kind, blocks in (("random", random_blocks()), ("log", log_blocks())):
            source = write_file(self.work / f"{kind}.data", self.size, blocks)
            with open(source, "rb") as f:
                self.first_mib = f.read(1 << 20)
            rows = measure(self.cases(kind, source), reps)
            by = {m.operation: m for m in rows}
            for op in ("put", "get"):
                plain, sealed = by[f"{op} (plain)"], by[f"{op} (encrypted)"]
                results[f"{op} {kind}"] = {
                    "plain": {"wall": statistics.median(plain.seconds), "cpu": cpu(plain)},
                    "encrypted": {"wall": statistics.median(sealed.seconds), "cpu": cpu(sealed)},
                    "cpu_ratio": cpu(sealed) / cpu(plain), "wall_ratio": statistics.median(sealed.seconds) /
                    statistics.median(plain.seconds)}
            remove(source)
        opens = measure([Case("open (plain)", "list", lambda _: self.pfs(self.work / "log-plain", "list"),
                              env=self.env),
                         Case("open (encrypted)", "list", lambda _: self.pfs(self.work / "log-encrypted", "list"),
                              env=self.env)], reps)
        results["open"] = {m.operation: {"wall": statistics.median(m.seconds), "cpu": cpu(m)} for m in opens}
        plain_open, sealed_open = (results["open"][f"open ({k})"]["cpu"] for k in ("plain", "encrypted"))
        for name, r in results.items():
            if name != "open":  # the ratio of the work past the open, whose cost (the KDF) is shown on its own
                r["past_open_ratio"] = (r["encrypted"]["cpu"] - sealed_open) / (r["plain"]["cpu"] - plain_open)
        return results


    def names(self, reps: int, files: int = 1000) -> dict:
        """put -r of `files` small files in 10 directories, and a list of one of them."""
        tree = self.work / "tree"
        for i in range(files):
            (tree / f"dir{i % 10}").mkdir(parents=True, exist_ok=True)
            (tree / f"dir{i % 10}" / f"file-{i:05}.log").write_bytes(os.urandom(512) + b"x" * 512)
        cases = []
        for label, extra in (("plain", ()), ("encrypted", ("--encrypt",)),
                             ("encrypted names", ("--encrypt", "--encrypt-names"))):
            store = self.work / f"names-{label.replace(' ', '-')}"
            subprocess.run(self.pfs(store, *extra, "list"), env=self.env, check=True, capture_output=True)
            cases.append(Case(f"put -r 1000 ({label})", "small", env=self.env,
                              argv=lambda rep, s=store: self.pfs(s, "put", "-r", str(tree), f"run{rep}/")))
            cases.append(Case(f"list a prefix ({label})", "small", env=self.env,
                              argv=lambda rep, s=store: self.pfs(s, "list", "run0/dir3/")))
        rows = measure(cases, reps)
        return {m.operation: {"wall": statistics.median(m.seconds), "cpu": cpu(m)} for m in rows}


def report_names(results: dict) -> None:
    print("\nencrypted names, medians; CPU = user + system of the whole process tree")
    for name, r in results.items():
        print(f"{name:<34} wall {r['wall']:6.2f} s  CPU {r['cpu']:6.2f} s")


def report(results: dict, size: int) -> None:
    print(f"\n{size / GiB:g} GiB, medians; CPU = user + system of the whole process tree")
    print(f"{'operation':<14}{'plain wall':>11}{'enc wall':>10}{'plain CPU':>11}{'enc CPU':>9}{'CPU x':>7}"
          f"{'past open':>10}{'wall x':>8}")
    for name, r in results.items():
        if name == "open":
            continue
        flag = "" if r["past_open_ratio"] <= TARGET else f"  (target {TARGET}x missed)"
        print(f"{name:<14}{r['plain']['wall']:>10.2f}s{r['encrypted']['wall']:>9.2f}s{r['plain']['cpu']:>10.2f}s"
              f"{r['encrypted']['cpu']:>8.2f}s{r['cpu_ratio']:>7.2f}{r['past_open_ratio']:>10.2f}"
              f"{r['wall_ratio']:>8.2f}{flag}")
    for name, r in results["open"].items():
        print(f"{name:<18} wall {r['wall']:.2f} s, CPU {r['cpu']:.2f} s (pfs list: scrypt runs once per process)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1G", help="size of each file (default 1G)")
    p.add_argument("--reps", type=int, default=3, help="repetitions, round-robin (default 3)")
    p.add_argument("--only", choices=("big", "names"), help="only the big files, or only the names")
    p.add_argument("--dir", help="where the stores and files go (default: a temporary directory)")
    p.add_argument("--json", help="write the figures to this file as JSON")
    args = p.parse_args(argv)
    size = parse_size(args.size)
    figures: dict = {"size": size}
    with tempfile.TemporaryDirectory(prefix="pfs-enc-bench-", dir=args.dir) as work:
        if args.only != "names":
            figures["results"] = Bench(Path(work), size).run(args.reps)
            report(figures["results"], size)
        if args.only != "big":
            figures["names"] = Bench(Path(work), size).names(args.reps)
            report_names(figures["names"])
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
