"""pfs benchmark for whole directory trees: put -r and get -r against cp -a &&
sync and the peers (restic, borg, rclone, where installed), in one run.

    python benchmarks/trees.py [--rounds N] [--small N] [--tree DIR] [--files N | --million] [--dir WORK] [--pfs PYTHON]

Three inputs: N small files of 4 KiB (generated; 1,000 by default), stored by
put -r and, for comparison, by one session of N `put` lines (the only way
before put -r), and restored by get -r; a copy of a real tree (by default
/usr/include), stored with put -r and restored with get -r; and, with
`--files N` (or `--million`: 1,000,000), N generated tiny files in
directories of 1,000: put -r, list -r and get -r, each with the peak RSS of
its whole process tree. Every command runs through bench.run
(wall time, and the CPU time of its whole process tree), round-robin, best
of --rounds; each stores into a fresh store or repository. `--pfs` runs pfs
with another interpreter (another checkout's venv), to compare two versions
of pfs in one run.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo: `benchmarks` is a package
from benchmarks.files import remove  # noqa: E402
from benchmarks.measure import Case, measure  # noqa: E402
from benchmarks.report import render  # noqa: E402

from rich.console import Console  # noqa: E402

SMALL_SIZE = 4096


def small_tree(path: Path, count: int) -> Path:
    path.mkdir(parents=True)
    for i in range(count):
        (path / f"f{i:06d}").write_bytes(os.urandom(SMALL_SIZE))
    return path


def tiny_tree(path: Path, count: int, per_dir: int = 1000) -> Path:
    """`count` files of 1 to 64 bytes, `per_dir` to a directory, written without
    holding a list of them (the tree may hold a million)."""
    for i in range(count):
        d = path / f"d{i // per_dir:05d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        (d / f"f{i % per_dir:04d}").write_bytes(os.urandom(1 + i % 64))
    return path


def tiny_cases(work: Work, src: Path, label: str) -> list[Case]:
    """put -r, list -r and get -r of the tiny files, each into or from the store the put made last."""
    return [Case("pfs put -r", label, lambda _: work.pfs("st-tiny", "put", "-r", src, "t"),
                 before=lambda _: work.fresh("st-tiny"), env=work.env),
            Case("pfs list -r", label, lambda _: ["sh", "-c", f'"$@" > "{work.root}/listed"', "sh",
                                                  *work.pfs("st-tiny", "list", "-r", "t/")], env=work.env),
            Case("pfs get -r", label, lambda _: work.pfs("st-tiny", "get", "-r", "t", work.root / "out-tiny"),
                 before=lambda _: work.fresh("out-tiny"), env=work.env)]


def tree_bytes(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class Work:
    """The scratch directory of the run: inputs, stores, repositories, restores."""

    def __init__(self, root: Path, python: str) -> None:
        self.root = root
        self.python = python
        self.env = {**os.environ, "RESTIC_PASSWORD": "bench", "BORG_PASSPHRASE": "",
                    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}
        self.env.pop("PFS_STORE", None)

    def fresh(self, name: str) -> Path:
        path = self.root / name
        remove(path)
        return path

    def pfs(self, store: str, *args: str | Path) -> list[str | Path]:
        return [self.python, "-m", "pfs", "--store", self.root / store, *args]


def store_cases(work: Work, src: Path, label: str, nbytes: int, lines: Path | None) -> list[Case]:
    """Storing `src`: pfs put -r, cp -a && sync, and each peer that is installed."""
    cases = [Case("pfs put -r", label, lambda _: work.pfs("st-put", "put", "-r", src, "t"),
                  before=lambda _: work.fresh("st-put"), nbytes=nbytes, env=work.env)]
    if lines is not None:
        cases.append(Case(f"pfs: {label.split()[0]} put lines", label, lambda _: work.pfs("st-lines"),
                          before=lambda _: work.fresh("st-lines"), stdin=lines, cwd=src, nbytes=nbytes, env=work.env))
    cases.append(Case("cp -a && sync", label, lambda _: ["sh", "-c", f'cp -a "{src}" "{work.root}/cp" && sync'],
                      before=lambda _: work.fresh("cp"), nbytes=nbytes))
    if shutil.which("restic"):
        cases.append(Case("restic backup", label, lambda _: ["restic", "-q", "-r", work.root / "restic", "backup", src],
                          before=lambda _: _restic_init(work), nbytes=nbytes, env=work.env))
    if shutil.which("borg"):
        cases.append(Case("borg create (lz4)", label, lambda _: ["borg", "create", "--compression", "lz4",
                                                                 f"{work.root / 'borg'}::a", src],
                          before=lambda _: _borg_init(work), nbytes=nbytes, env=work.env))
    if shutil.which("rclone"):
        cases.append(Case("rclone copy", label, lambda _: ["rclone", "copy", "--links", src, work.root / "rclone"],
                          before=lambda _: work.fresh("rclone"), nbytes=nbytes))
    return cases


def unchanged_cases(work: Work, src: Path, label: str, nbytes: int) -> list[Case]:
    """Storing `src` again, unchanged, into what store_cases stored last: pfs sync, and the peers' incremental runs."""
    cases = [Case("pfs sync (unchanged)", label, lambda _: work.pfs("st-put", "sync", src, "t"), nbytes=nbytes,
                  env=work.env)]
    if shutil.which("restic"):
        cases.append(Case("restic backup (unchanged)", label,
                          lambda _: ["restic", "-q", "-r", work.root / "restic", "backup", src], nbytes=nbytes,
                          env=work.env))
    if shutil.which("rclone"):
        cases.append(Case("rclone sync (unchanged)", label,
                          lambda _: ["rclone", "sync", "--links", src, work.root / "rclone"], nbytes=nbytes))
    return cases


def restore_cases(work: Work, src: Path, label: str, nbytes: int) -> list[Case]:
    """Restoring what store_cases stored last (each from its own store or repository)."""
    cases = [Case("pfs get -r", label, lambda _: work.pfs("st-put", "get", "-r", "t", work.root / "out-pfs"),
                  before=lambda _: work.fresh("out-pfs"), nbytes=nbytes, env=work.env),
             Case("cp -a && sync (restore)", label,
                  lambda _: ["sh", "-c", f'cp -a "{work.root}/cp" "{work.root}/out-cp" && sync'],
                  before=lambda _: work.fresh("out-cp"), nbytes=nbytes)]
    if shutil.which("restic"):
        cases.append(Case("restic restore", label, lambda _: ["restic", "-q", "-r", work.root / "restic", "restore",
                                                             "latest", "--target", work.root / "out-restic"],
                          before=lambda _: work.fresh("out-restic"), nbytes=nbytes, env=work.env))
    if shutil.which("borg"):
        out = work.root / "out-borg"
        cases.append(Case("borg extract", label, lambda _: ["borg", "extract", f"{work.root / 'borg'}::a"],
                          before=lambda _: (work.fresh("out-borg"), out.mkdir()), cwd=out, nbytes=nbytes,
                          env=work.env))
    if shutil.which("rclone"):
        cases.append(Case("rclone copy (restore)", label, lambda _: ["rclone", "copy", "--links", work.root / "rclone",
                                                                    work.root / "out-rclone"],
                          before=lambda _: work.fresh("out-rclone"), nbytes=nbytes))
    return cases


def _restic_init(work: Work) -> None:
    import subprocess

    subprocess.run(["restic", "-q", "init", "-r", work.fresh("restic")], check=True, env=work.env,
                   stdout=subprocess.DEVNULL)


def _borg_init(work: Work) -> None:
    import subprocess

    subprocess.run(["borg", "init", "--encryption", "none", work.fresh("borg")], check=True, env=work.env)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--small", type=int, default=1000, help="how many 4 KiB files (0: none)")
    p.add_argument("--tree", default="/usr/include", help="the real tree to copy and store ('': none)")
    p.add_argument("--files", type=int, default=0, help="also N generated tiny files: put -r, list -r, get -r")
    p.add_argument("--million", action="store_const", const=1_000_000, dest="files", help="--files 1000000")
    p.add_argument("--dir", type=Path, default=None, help="the scratch directory (default: a temporary one)")
    p.add_argument("--pfs", default=sys.executable, help="the Python that runs pfs (default: this one)")
    args = p.parse_args(argv)
    if args.pfs == sys.executable:  # byte-compiled, as an installed pfs is (see benchmarks/stores.py)
        compileall.compile_dir(Path(__file__).resolve().parent.parent / "pfs", quiet=1)
    console = Console(width=200)
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        work = Work(Path(scratch), args.pfs)
        rows = []
        if args.small:
            src = small_tree(work.root / "small", args.small)
            lines = work.root / "lines"
            lines.write_text("".join(f"put f{i:06d} lines/f{i:06d}\n" for i in range(args.small)))
            label = f"{args.small} files of 4 KiB"
            rows += measure(store_cases(work, src, label, args.small * SMALL_SIZE, lines), args.rounds)
            rows += measure(restore_cases(work, src, label, args.small * SMALL_SIZE), args.rounds)
        if args.tree:
            src = work.root / "tree"
            shutil.copytree(Path(args.tree), src, symlinks=True)
            label = f"copy of {args.tree}"
            nbytes = tree_bytes(src)
            rows += measure(store_cases(work, src, label, nbytes, None), args.rounds)
            rows += measure(unchanged_cases(work, src, label, nbytes), args.rounds)
            rows += measure(restore_cases(work, src, label, nbytes), args.rounds)
        if args.files:
            src = tiny_tree(work.root / "tiny", args.files)
            tiny = measure(tiny_cases(work, src, f"{args.files:,} tiny files"), args.rounds)
            remove(src)
            rows += tiny
        console.print(render(rows, "pfs trees: best of %d rounds" % args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
