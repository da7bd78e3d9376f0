"""Big files: put and get against the baselines and the peers, the memory contract,
concurrent puts in one pfs, and the opt-in 10 GiB rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.context import Bench
from benchmarks.files import random_blocks, remove, script_file, warm, write_file
from benchmarks.measure import Case, Measurement, Target, measure
from benchmarks.peers import COLD_CP_SYNC, baseline_cases, external_cases, fastest_peer_ratios
from benchmarks.text import GiB, MiB, console, size_text


#: pfs options of the four big-file configurations.
CONFIGS: dict[str, tuple[str, ...]] = {
    "default": (),
    "--workers 1": ("--workers", "1"),
    "--workers 2": ("--workers", "2"),
    "--codec none": ("--codec", "none"),
}


#: Size and rounds of the opt-in --big rows.
BIG_SIZE, BIG_REPS = 10 * GiB, 3


#: Concurrent puts, in one pfs process, of the concurrency row (each 1/N of the big file's size).
CONCURRENT_PUTS = 4


def big_file(bench: Bench, name: str, src: Path) -> None:
    console.rule(f"big file: {name}")
    baselines = baseline_cases(bench, name, src)
    external, missing = external_cases(bench, name, src)
    pfs_cases = [case for config, options in CONFIGS.items()
                 for case in bench.put_get_cases(name, src, config, options)]
    cases = baselines + external + pfs_cases
    for case in cases:
        case.nbytes = bench.profile.file_size
    rows = measure(cases, bench.profile.reps)
    by_op = {m.operation: m for m in rows}
    for m in rows[len(baselines):]:
        m.ratio("cp && sync", by_op["cp && sync"], "paired")
        m.ratio("cp", by_op["cp"], "paired")
        if m.operation.startswith("pfs get"):  # it reads parts that were written past the cache
            m.ratio(COLD_CP_SYNC, by_op[COLD_CP_SYNC], "paired")
    fastest_peer_ratios(rows)
    put, get = by_op["pfs put default"], by_op["pfs get default"]
    if name.startswith("random"):
        put.target = Target("≤ 1.0× cp && sync", put.ratios["cp && sync"], 1.0, "×")
    get.target = Target("≤ 1.0× cp && sync", get.ratios["cp && sync"], 1.0, "×")
    if name.startswith("log"):
        speedup_target(by_op)
    n = len(baselines) + len(external)
    bench.add(*rows[:n], *missing, *rows[n:])

def speedup_target(by_op: dict[str, Measurement]) -> None:
    """--workers 2 against --workers 1 on the compressible file, next to what the
    machine gave two plain zstd processes in the same rounds."""
    machine = by_op["zstd -1 in 2 processes"]
    machine.ratios["speed-up vs 1 process"] = by_op["zstd -1 in 1 process"].min / machine.min
    one, two = by_op["pfs put --workers 1"], by_op["pfs put --workers 2"]
    speedup = one.min / two.min
    two.ratios["speed-up vs --workers 1"] = speedup
    two.target = Target("≥ 1.8× faster than --workers 1", speedup, 1.8, "×", higher_is_better=True)
    two.note = f"in the same rounds, 2 plain zstd processes had a speed-up of " \
               f"{machine.ratios['speed-up vs 1 process']:.2f}× over 1 (what the shared cores allowed)"


def memory(bench: Bench, inputs: dict[str, Path]) -> None:
    console.rule("memory contract: --max-memory 32M")
    files = {"random 1.0 MiB": write_file(bench.work / "one-mib.bin", MiB, random_blocks(MiB)), **inputs}
    store = bench.work / "store-mem"

    def put(src: Path) -> Callable[[int], list]:
        return lambda _: bench.pfs.argv(store, "--max-memory", "32M", "put", src)

    cases = [Case("pfs put --max-memory 32M", name, put(src), before=lambda _: remove(store),
                  after=lambda _: remove(store)) for name, src in files.items()]
    tiny, *big = measure(cases, bench.profile.reps)
    bench.add(tiny)
    for m in big:
        diff = Measurement("memory difference (vs 1 MiB put)", m.file, peak_rss=[m.peak - tiny.peak],
                           note="peak tree RSS of this put minus that of the 1 MiB put, both --max-memory 32M")
        diff.target = Target("≤ 32 MiB", diff.peak / MiB, 32, "MiB")
        bench.add(m, diff)


def concurrent_big_puts(bench: Bench, inputs: dict[str, Path]) -> None:
    """4 puts of a quarter of the random file's size each, in one pfs process (one
    script of 4 put lines: they run at once), against 1 put of the whole size."""
    n, size = CONCURRENT_PUTS, bench.profile.file_size
    name, src = next((k, v) for k, v in inputs.items() if k.startswith("random"))
    console.rule(f"concurrent big puts: {n} × {size_text(size // n)} in one pfs against 1 × {size_text(size)}")
    parts = [write_file(bench.work / f"quarter-{i}.bin", size // n, random_blocks()) for i in range(n)]
    for path in parts:
        warm(path)
    store = bench.work / "store-concurrent"
    label = f"{n} × {size_text(size // n)}"
    one = script_file(bench.work / "one-put.pfs", [f"put {src}"])
    many = script_file(bench.work / "many-puts.pfs", [f"put {p}" for p in parts])
    cases = [Case("pfs put, 1 file", name, lambda _: bench.pfs.argv(store), stdin=one,
                  before=lambda _: remove(store), after=lambda _: remove(store), nbytes=size),
             Case(f"pfs put, {n} files at once", label, lambda _: bench.pfs.argv(store), stdin=many,
                  before=lambda _: remove(store), after=lambda _: remove(store), nbytes=size)]
    single, concurrent = measure(cases, bench.profile.reps)
    ratio = concurrent.ratio("1 file of the total size", single, "paired")
    concurrent.target = Target("≤ 1.1× 1 file of the total size", ratio, 1.1, "×")
    bench.add(single, concurrent)
    for path in parts:
        remove(path)


def big(bench: Bench, inputs: dict[str, Path]) -> None:
    """put/get of a 10 GiB random file beside `cp && sync`, and of the profile's random
    file in the same rounds: the ratios, and the tree's peak RSS of each size."""
    label = size_text(BIG_SIZE)
    console.rule(f"big: random {label}, {BIG_REPS} rounds")
    small_name, small = next((k, v) for k, v in inputs.items() if k.startswith("random"))
    name = f"random {label}"
    src = write_file(bench.work / "random-big.bin", BIG_SIZE, random_blocks())
    cases = [bench.cp_sync_case(name, src), *bench.put_get_cases(name, src, "default"),
             *bench.put_get_cases(small_name, small, "default (same rounds)")]
    for case in cases[:3]:
        case.nbytes = BIG_SIZE
    for case in cases[3:]:
        case.nbytes = small.stat().st_size
    cp_sync, put, get, small_put, small_get = measure(cases, BIG_REPS)
    for m, base in ((put, small_put), (get, small_get)):
        m.ratio("cp && sync", cp_sync, "paired")
        m.note = f"peak tree RSS {size_text(m.peak)} at {label}, {size_text(base.peak)} at " \
                 f"{size_text(small.stat().st_size)} (the same rounds)"
        m.target = Target(f"peak RSS ≤ the {size_text(small.stat().st_size)} run's + 32 MiB",
                          (m.peak - base.peak) / MiB, 32, "MiB")
    bench.add(cp_sync, put, get, small_put, small_get)
    remove(src)
