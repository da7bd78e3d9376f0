"""Reads through the library: sequential reads through fsspec and `pfs get` by name
beside `cat`, and 4 KiB reads at random offsets through the Python API."""

from __future__ import annotations

import filecmp
import json
import os
import statistics
from pathlib import Path

from benchmarks.context import Bench
from benchmarks.files import remove, script_file, shell
from benchmarks.measure import Case, Measurement, measure, progress, run
from benchmarks.text import console, time_text


#: Reads a stored file sequentially through fsspec in 4 MiB blocks into a file (argv: store name out).
FSSPEC_READ = """\
import sys, fsspec
if __name__ == "__main__":
    store, name, out = sys.argv[1:4]
    with fsspec.open(f"pfs://{name}", "rb", store=store) as f, open(out, "wb") as dest:
        while block := f.read(4 << 20):
            dest.write(block)
"""
#: Times n reads of 4 KiB at random offsets of a stored file through the Python API
#: and writes their latencies in seconds as JSON (argv: store name n seed out).
RANDOM_READS = """\
import json, random, sys, time, pfs
if __name__ == "__main__":
    store, name, n, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    rng, latencies = random.Random(seed), []
    with pfs.open(store) as s, s.open(name, "rb") as f:
        size = f.seek(0, 2)
        for _ in range(n):
            offset = rng.randrange(size - 4096)
            t = time.perf_counter()
            f.seek(offset)
            if len(f.read(4096)) != 4096:
                sys.exit(f"short read at {offset}")
            latencies.append(time.perf_counter() - t)
    with open(out, "w") as f:
        json.dump(latencies, f)
"""


def library_reads(bench: Bench, inputs: dict[str, Path]) -> None:
    """Sequential reads of each big file through fsspec and `pfs get` beside `cat`,
    and 4 KiB reads at random offsets through the Python API, in the same rounds."""
    console.rule("reads through the library: fsspec, pfs get, random 4 KiB reads")
    store, reps = bench.work / "store-lib", bench.profile.reps
    reader = script_file(bench.work / "fsspec_read.py", [FSSPEC_READ])
    sampler = script_file(bench.work / "random_reads.py", [RANDOM_READS])
    per_round = -(-bench.profile.random_reads // reps)

    def latency_file(rep: int) -> Path:
        return bench.work / f"latencies-{rep}.json"

    for name, src in inputs.items():
        stored, dest = f"big/{src.name}", bench.work / "lib-read.out"
        bench.pfs_run(store, "put", str(src), stored)
        run([*bench.pfs.python, reader, store, stored, dest])
        if not filecmp.cmp(src, dest, shallow=False):
            raise RuntimeError(f"fsspec read of {name} returned different bytes")
        remove(dest)

        def check_and_clean(rep: int, src: Path = src) -> None:
            if rep == 0 and not filecmp.cmp(src, dest, shallow=False):
                raise RuntimeError(f"pfs get of {name} by name returned different bytes")
            remove(dest)

        cases = [Case("cat > /dev/null (read rounds)", name, lambda _, s=src: shell('cat "$1" > /dev/null', s)),
                 Case("pfs get NAME", name, lambda _, n=stored: bench.pfs.argv(store, "get", n, dest),
                      after=check_and_clean),
                 Case("fsspec.open read, 4 MiB blocks", name,
                      lambda _, n=stored: [*bench.pfs.python, reader, store, n, os.devnull])]
        for case in cases:
            case.nbytes = bench.profile.file_size
        cases.append(Case(f"pfs API {per_round} random 4 KiB reads", name,
                          lambda rep, n=stored: [*bench.pfs.python, sampler, store, n, per_round, rep,
                                                 latency_file(rep)]))
        cat, get, fs, command = measure(cases, reps)
        for m in (get, fs):
            m.ratio("cat", cat, "paired")
        fs.ratio("pfs get", get, "paired")
        command.note = "the whole command: interpreter start, store open, the reads"
        latencies = [t for rep in range(reps) for t in json.loads(latency_file(rep).read_text())]
        p99 = statistics.quantiles(latencies, n=100)[98]
        latency = Measurement("pfs API random 4 KiB read (latency)", name, seconds=latencies,
                              note=f"{name}: p99 {time_text(p99)} over {len(latencies)} reads at random "
                                   f"offsets ({per_round} a round), each timed inside the reader, which keeps "
                                   f"the last 4 parts read (a read in one of them is a cache hit)")
        progress(latency)
        console.print(f"  p99 {time_text(p99)}")
        bench.add(cat, get, fs, command, latency)
    remove(store)
