"""The benchmark's one entry point: the command line, the sections in their order,
the work directory, and the report at the end.

    python -m benchmarks [--quick] [--dir DIR] [--json OUT] [--only SECTION,...] [--install-peers]
    python benchmarks/bench.py ...      (the same)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from benchmarks import big_files, library_reads, redundancy, s3, small_files, startup
from benchmarks.big_files import BIG_REPS, BIG_SIZE
from benchmarks.context import FULL, QUICK, Bench
from benchmarks.machine import REPO, filesystem_type, machine_info, source_digest
from benchmarks.measure import CPU_METHOD
from benchmarks.peers import PEER_PACKAGES
from benchmarks.report import report
from benchmarks.text import GiB, console, size_text

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "latest.json"
#: The sections of a run, in order; "big" only with --big.
SECTIONS = ("big-file", "library", "memory", "redundancy", "ec", "s3", "concurrency", "small-files", "concurrent-small",
            "startup", "big")


def run_sections(bench: Bench, sections: Sequence[str] = SECTIONS) -> None:
    """The sections named, in their order in SECTIONS; the inputs are made once."""
    inputs = bench.make_inputs()
    if "big-file" in sections:
        for name, src in inputs.items():
            big_files.big_file(bench, name, src)
    if "library" in sections:
        library_reads.library_reads(bench, inputs)
    if "memory" in sections:
        big_files.memory(bench, inputs)
    if "redundancy" in sections:
        redundancy.redundancy(bench, inputs)
    if "ec" in sections:
        redundancy.ec_throughput(bench)
    if "s3" in sections:
        s3.s3(bench, inputs)
    if "concurrency" in sections:
        big_files.concurrent_big_puts(bench, inputs)
    if {"small-files", "concurrent-small"} & set(sections):
        with small_files.postgres_server(bench):
            if "small-files" in sections:
                small_files.small_files(bench)
            if "concurrent-small" in sections:
                small_files.concurrent_puts(bench)
    if "startup" in sections:
        startup.startup(bench)
    if "big" in sections:
        big_files.big(bench, inputs)
    if bench.recovered_messages:
        bench.observations.append(
            f"pfs rolled back {bench.recovered_messages} put(s) at store open ('was storing when pfs "
            f"stopped') although every earlier script exited 0: registry updates were lost")


def default_work_parent() -> Path:
    """The system temp dir if it is a disk on the same filesystem as this repo, else benchmarks/results/."""
    tmp = Path(tempfile.gettempdir())
    if os.stat(tmp).st_dev == os.stat(REPO).st_dev and filesystem_type(tmp) not in ("tmpfs", "ramfs"):
        return tmp
    return HERE / "results"


def sections_arg(text: str) -> tuple[str, ...]:
    names = tuple(filter(None, (t.strip() for t in text.split(","))))
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section {', '.join(unknown)} (sections: {', '.join(SECTIONS)})")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark pfs against cp, cat and the peers (restic, borg, rclone).")
    p.add_argument("--quick", action="store_true",
                   help="64 MiB files, 7 rounds, small-file counts 10/1,000/5,000 (a few minutes)")
    p.add_argument("--dir", type=Path,
                   help="parent of the work directory (default: the temp dir if it is on the repo's filesystem)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON,
                   help=f"results file (default: {DEFAULT_JSON}); the chart goes beside it as .png")
    p.add_argument("--rounds", type=int, metavar="N",
                   help="interleaved rounds of the big-file, redundancy, S3 and concurrency sections "
                        "(default: 7)")
    p.add_argument("--big", action="store_true",
                   help=f"also put and get a {size_text(BIG_SIZE)} random file ({BIG_REPS} rounds; needs some "
                        f"{4 * BIG_SIZE // GiB} GiB free)")
    p.add_argument("--only", type=sections_arg, default=SECTIONS[:-1], metavar="SECTION,...",
                   help=f"run only these sections (of: {', '.join(SECTIONS)}); the inputs are always made")
    p.add_argument("--install-peers", action="store_true",
                   help=f"first install the peers with apt-get install -y {' '.join(PEER_PACKAGES)} (as root)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install_peers:
        subprocess.run(["apt-get", "install", "-y", *PEER_PACKAGES], check=True)
    profile = QUICK if args.quick else FULL
    if args.rounds:
        profile = dataclasses.replace(profile, reps=args.rounds)
    parent = args.dir or default_work_parent()
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pfs-bench-", dir=parent))
    if filesystem_type(work) in ("tmpfs", "ramfs"):
        console.print(f"[yellow]warning: {work} is on {filesystem_type(work)}; results will not reflect a disk[/]")
    bench = Bench(profile, work)
    info = {**machine_info(work), "pfs_source_digest": source_digest(work / "pfs-under-test" / "pfs")}
    console.print(f"pfs benchmark ({profile.name}) in {work}: {info['cpu']}, {info['cores']} cores, "
                  f"{size_text(info['ram_bytes'])} RAM, {info['filesystem']}, Python {info['python']}, "
                  f"pfs {info['pfs']} ({info['commit']}{', uncommitted changes' * info['pfs_uncommitted_changes']}, "
                  f"sources {info['pfs_source_digest']}); CPU time from {CPU_METHOD}")
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    try:
        run_sections(bench, (*args.only, "big") if args.big else args.only)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["load_average_at_end"] = os.getloadavg()
    if source_digest() != info["pfs_source_digest"]:
        bench.observations.append(f"pfs/ changed during the run; every row measured the copy taken at the "
                                  f"start (digest {info['pfs_source_digest']})")
    report(bench, info, args.json, started, time.perf_counter() - t0)
    return 0
