"""What pfs is measured against, in the same rounds: the baselines (cp, cp && sync,
cat, zstd -1 in one and two processes) and the peers (restic, borg, rclone), and
the ratio of each pfs row to the fastest peer."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.context import Bench
from benchmarks.files import evict, fresh_dir, remove, shell, warm
from benchmarks.measure import Case, Measurement, run


#: The peers, as Debian packages (--install-peers installs them with apt-get).
PEER_PACKAGES = ("restic", "borgbackup", "rclone")


#: Compresses every count-th 4 MiB part of a file from `index` on, as pfs workers do (argv: path index count).
ZSTD_SLICE = """\
import sys, zstandard
path, index, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
compressor, part = zstandard.ZstdCompressor(level=1), 4 << 20
with open(path, "rb") as f:
    size = f.seek(0, 2)
    for offset in range(index * part, size, count * part):
        f.seek(offset)
        compressor.compress(f.read(part))
"""


#: The baseline of a get: pfs writes parts past the page cache, so a get reads them
#: from the disk, where `cp && sync` of the benchmark's input reads the page cache.
COLD_CP_SYNC = "cp && sync, source not cached"


#: The peers' rows that store a file, and those that give it back.
PEER_PUTS = ("restic backup", "borg create --compression lz4", "rclone copy (local to local)")
PEER_GETS = ("restic restore", "borg extract", "rclone copy (local to local)")


def zstd_processes(src: Path, n: int) -> list[str]:
    """argv compressing `src` with zstd level 1 in n concurrent processes: what the
    machine's cores give a CPU-bound job at the moment, with no pfs involved."""
    return ["sh", "-c", f'for i in $(seq 0 {n - 1}); do "$2" -c "$0" "$1" $i {n} & done; wait',
            ZSTD_SLICE, str(src), sys.executable]


def baseline_cases(bench: Bench, name: str, src: Path) -> list[Case]:
    dest = bench.work / "copy.out"
    cases = [Case("cp", name, lambda _: ["cp", src, dest], after=lambda _: remove(dest)),
             bench.cp_sync_case(name, src),
             Case(COLD_CP_SYNC, name, lambda _: shell('cp "$1" "$2" && sync', src, dest),
                  before=lambda _: evict(src), after=lambda _: (remove(dest), warm(src))),
             Case("cat > /dev/null", name, lambda _: shell('cat "$1" > /dev/null', src))]
    if name.startswith("log"):
        cases += [Case(f"zstd -1 in {n} process{'es' * (n > 1)}", name, lambda _, n=n: zstd_processes(src, n))
                  for n in (1, 2)]
    return cases


def external_cases(bench: Bench, name: str, src: Path) -> tuple[list[Case], list[Measurement]]:
    """The peers: restic and borg backup/restore into fresh local repos, rclone
    copy to a local directory; a 'not installed' row for each operation of a
    tool that is missing (`--install-peers` installs them)."""
    tools = {"restic": restic, "borg": borg, "rclone": rclone}
    cases, missing = [], []
    for tool, make in tools.items():
        pair = make(bench, name, src)
        if shutil.which(tool):
            cases += pair
        else:
            missing += [Measurement(c.operation, name, note="not installed") for c in pair]
    return cases, missing

def backup_restore(bench: Bench, tool: str, operations: tuple[str, str], name: str, env: dict[str, str],
                   init: Callable[[Path], list[str]], backup: Callable[[Path], list[str]],
                   restore: Callable[[Path, Path], list[str]]) -> list[Case]:
    repo, out = bench.work / f"{tool}-repo", bench.work / f"{tool}-out"

    def fresh_repo(_: int) -> None:
        remove(repo)
        run(init(repo), env=env)

    def clean(_: int) -> None:
        remove(out)
        remove(repo)

    return [Case(operations[0], name, lambda _: backup(repo), before=fresh_repo, env=env),
            Case(operations[1], name, lambda _: restore(repo, out), before=lambda _: fresh_dir(out),
                 after=clean, env=env, cwd=out)]

def restic(bench: Bench, name: str, src: Path) -> list[Case]:
    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(bench.work / "restic-cache")}
    return backup_restore(bench, 
        "restic", ("restic backup", "restic restore"), name, env,
        lambda repo: ["restic", "-r", str(repo), "init"],
        lambda repo: ["restic", "-r", str(repo), "backup", str(src)],
        lambda repo, out: ["restic", "-r", str(repo), "restore", "latest", "--target", str(out)])

def rclone(bench: Bench, name: str, src: Path) -> list[Case]:
    """rclone copy of the file into an empty local directory (its --local-no-preallocate
    and friends left at their defaults; rclone does not fsync, so compare with cp)."""
    out = bench.work / "rclone-out"
    return [Case("rclone copy (local to local)", name, lambda _: ["rclone", "copy", str(src), str(out)],
                 before=lambda _: fresh_dir(out), after=lambda _: remove(out),
                 env={**os.environ, "RCLONE_CONFIG": os.devnull})]

def borg(bench: Bench, name: str, src: Path) -> list[Case]:
    env = {**os.environ, "BORG_PASSPHRASE": "", "BORG_BASE_DIR": str(bench.work / "borg-base"),
           "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
    return backup_restore(bench, 
        "borg", ("borg create --compression lz4", "borg extract"), name, env,
        lambda repo: ["borg", "init", "--encryption=none", str(repo)],
        lambda repo: ["borg", "create", "--compression", "lz4", f"{repo}::bench", str(src)],
        lambda repo, out: ["borg", "extract", f"{repo}::bench"])


def fastest_peer_ratios(rows: list[Measurement]) -> None:
    """Give each pfs put and get row its ratio (paired by round) to the fastest
    peer (by median) doing the same, of those that ran."""
    by_op = {m.operation: m for m in rows if m.seconds}
    for kind, peers in (("pfs put", PEER_PUTS), ("pfs get", PEER_GETS)):
        ran = [by_op[p] for p in peers if p in by_op]
        if not ran:
            continue
        fastest = min(ran, key=lambda m: m.median)
        for m in rows:
            if m.operation.startswith(kind) and m.seconds:
                m.ratio(f"fastest peer ({fastest.operation})", fastest, "paired")
