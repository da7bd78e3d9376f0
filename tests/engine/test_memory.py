"""--max-memory bounds what the whole pfs process tree holds, however big the file.

We sample the resident set of every process of a running pfs (the main
process, the forkserver, the resource tracker and the pool workers) and compare
the peak while storing or restoring a file far larger than --max-memory with
the peak for a small file run the same way. The interpreters and their
imports are the same in both runs, so they cancel out; what remains is what
the file's size costs, which --max-memory is meant to bound.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from helpers import env

MiB = 1 << 20
MAX_MEMORY = 16 * MiB
CHUNK = 1 * MiB
BIG = 256 * MiB
# The baseline is 4 one-MiB parts rather than a single 1 MiB part: the pool
# starts workers on demand, and with a single part only one of the two workers
# would ever start, so the baseline would lack a whole interpreter (~20-30 MiB)
# that the big run has. With 4 parts submitted at once, both workers start.
SMALL = 4 * MiB
# Margin on top of MAX_MEMORY. Everything proportional to the part size is
# already in the baseline (each worker's reusable part buffer, the codec's
# output for one part). What varies between two runs of the same processes is
# allocator and page-table noise, pymalloc arenas touched by a few thousand
# more small objects (futures, results), and the sampling itself catching a
# worker while it briefly holds a part's input and output. 16 MiB covers that
# with room to spare and is still 15x smaller than the file: a pfs that held
# even a sixteenth of the file anywhere in the tree would fail.
MARGIN = 16 * MiB
SAMPLE_EVERY = 0.02
#: Samples taken with the whole tree idle and alive after the script's work is done.
SAMPLES_AFTER = 10
#: What `jobs` answers once `wait` has seen every job end.
IDLE = b"no jobs running\n"


def tree_processes(root: psutil.Process) -> dict[str, int]:
    """Resident set of each process of the tree, by pid and name."""
    try:
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    sizes = {}
    for p in procs:
        try:
            sizes[f"{p.pid} {p.name()}"] = p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass
    return sizes


def tree_rss(root: psutil.Process) -> int:
    return sum(tree_processes(root).values())


class Peak(int):
    """The highest total RSS of a run, remembering which processes made it up
    (so that a failure says whether a process came or a process grew)."""

    processes: dict[str, int]

    def __new__(cls, processes: dict[str, int]) -> Peak:
        peak = super().__new__(cls, sum(processes.values()))
        peak.processes = processes
        return peak

    def __str__(self) -> str:
        return ", ".join(f"{name} {rss / MiB:.1f} MiB" for name, rss in self.processes.items())


def peak_tree_rss(store: Path, cwd: Path, script: str, options: list[str]) -> Peak:
    """Run a pfs script; return the highest total RSS of its process tree."""
    argv = [sys.executable, "-m", "pfs", "--store", str(store), "--chunk-size", str(CHUNK),
            "--max-memory", str(MAX_MEMORY), "--workers", "2", *options]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                cwd=cwd, env=env())
        root = psutil.Process(proc.pid)
        samples = [0]
        out: list[bytes] = []

        def talk() -> None:
            # stdin stays open after the script until every job has ended and the
            # sampler has seen the idle tree a few times, so it sees every process
            # of the tree alive at once however quickly the script runs (a 4 MiB
            # get could end between two samples, leaving a worker out of the
            # baseline and its ~20 MiB counted as growth of the big run)
            proc.stdin.write(script.encode() + b"wait\njobs\n")
            proc.stdin.flush()
            for line in proc.stdout:
                out.append(line)
                if line == IDLE:
                    idle = samples[0]
                    while samples[0] < idle + SAMPLES_AFTER and proc.poll() is None:
                        time.sleep(SAMPLE_EVERY)
                    proc.stdin.close()

        talker = threading.Thread(target=talk)
        talker.start()
        peak = Peak({})
        while proc.poll() is None:
            peak = max(peak, Peak(tree_processes(root)))
            samples[0] += 1
            time.sleep(SAMPLE_EVERY)
        talker.join(60)
        stderr.seek(0)
        assert proc.returncode == 0 and IDLE in out, (b"".join(out) + stderr.read()).decode()
    return peak


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
        f.write(os.urandom(size % (16 * MiB)))


#: Layouts checked: options of every run, and the volumes the store has.
LAYOUTS = {"one copy": ([], 1), "copies 2": (["--copies", "2"], 2), "ec 4+2": (["--ec", "4+2"], 6)}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """small.bin and big.bin, written once for every layout (pfs only reads them)."""
    base = tmp_path_factory.mktemp("sources")
    write_random(base / "small.bin", SMALL)
    write_random(base / "big.bin", BIG)
    yield base
    shutil.rmtree(base, ignore_errors=True)  # a quarter of a GiB: do not leave it for pytest's tmp retention


@pytest.fixture(scope="module", params=list(LAYOUTS))
def peaks(sources, tmp_path_factory, request) -> dict[str, int]:
    options, volumes = LAYOUTS[request.param]
    base = tmp_path_factory.mktemp("memory")
    work = base / "work"
    work.mkdir()
    store = base / "store"
    extra = [base / f"vol{i}" for i in range(1, volumes)]
    for d in extra:
        d.mkdir()
    if extra:
        peak_tree_rss(store, work, "".join(f"volume add {d}\n" for d in extra), options)
    result = {
        "put small": peak_tree_rss(store, work, f"put {sources / 'small.bin'}\n", options),
        "put big": peak_tree_rss(store, work, f"put {sources / 'big.bin'}\n", options),
        "get small": peak_tree_rss(store, work, "get 1 small.out\n", options),
        "get big": peak_tree_rss(store, work, "get 2 big.out\n", options),
    }
    assert (work / "small.out").stat().st_size == SMALL
    assert (work / "big.out").stat().st_size == BIG
    with open(sources / "big.bin", "rb") as a, open(work / "big.out", "rb") as b:
        while chunk := a.read(16 * MiB):
            assert chunk == b.read(16 * MiB), "the big file did not round trip"
    yield result
    shutil.rmtree(base, ignore_errors=True)  # half a GiB: do not leave it for pytest's tmp retention


@pytest.mark.parametrize("op", ["put", "get"])
def test_memory_of_the_process_tree_is_bounded_by_max_memory(peaks, op):
    small, big = peaks[f"{op} small"], peaks[f"{op} big"]
    assert small > 0 and big > 0
    growth = big - small
    assert growth <= MAX_MEMORY + MARGIN, (
        f"{op} of a {BIG // MiB} MiB file peaked at {big / MiB:.1f} MiB for the process tree, "
        f"{growth / MiB:.1f} MiB more than for a {SMALL // MiB} MiB file "
        f"(allowed: --max-memory {MAX_MEMORY // MiB} MiB + {MARGIN // MiB} MiB margin); "
        f"big: {big}; small: {small}")
