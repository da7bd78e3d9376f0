"""Small files and metadata: the cost of one small put, `list`, `list -r` and store
open with 10 to 100,000 files stored, on the JSON and the PostgreSQL engines, and
the aggregate rate of concurrent pfs processes putting small files."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.context import Bench
from benchmarks.files import fresh_dir, random_blocks, remove, script_file, write_file
from benchmarks.measure import Case, Measurement, Run, Target, measure, progress
from benchmarks.servers import postgres_missing
from benchmarks.stores import DbStore, Postgres, Store
from benchmarks.text import console


#: Put lines per pfs process when populating a store with small files.
POPULATE_BATCH = 5_000


#: Runs one pfs per script concurrently, each reading its script on stdin (argv: n script... pfs-argv...).
CONCURRENT = """\
import subprocess, sys
n = int(sys.argv[1])
scripts, argv = sys.argv[2:2 + n], sys.argv[2 + n:]
procs = [subprocess.Popen(argv, stdin=open(s, "rb"), stdout=subprocess.DEVNULL) for s in scripts]
sys.exit(max(p.wait() for p in procs))
"""
#: Concurrent pfs processes in the aggregate small-put rows.
CONCURRENCY = (1, 2, 4)


def engine_label(operation: str, engine: str) -> str:
    """A row's operation, naming the metadata engine unless it is the default (JSON)."""
    return operation if engine == "JSON" else f"{operation} ({engine})"


def stored_ids(stdout: str) -> list[int]:
    """File ids from the `[ID] storing NAME` lines of a pfs script."""
    return [int(m) for m in re.findall(r"^\[(\d+)\] storing ", stdout, re.MULTILINE)]


def engine_names(bench: Bench) -> list[str]:
    return ["JSON"] + (["PostgreSQL"] if bench.postgres else [])

def new_store(bench: Bench, engine: str, name: str) -> Store:
    return bench.postgres.new(name) if engine == "PostgreSQL" else bench.work / name

def copy_store(bench: Bench, store: Store, name: str) -> Store:
    if isinstance(store, DbStore):
        return bench.postgres.copy(store, name)
    shutil.copytree(store, bench.work / name, symlinks=True)
    return bench.work / name

def drop_store(bench: Bench, store: Store) -> None:
    if isinstance(store, DbStore):
        bench.postgres.drop(store)
    else:
        remove(store)

def seed_files(bench: Bench) -> list[Path]:
    """100 distinct 1 KiB files, made once, that small puts take their bytes from."""
    seeds_dir = bench.work / "seeds"
    if not seeds_dir.exists():
        seeds_dir.mkdir()
        for i in range(100):
            write_file(seeds_dir / f"seed-{i}.bin", 1024, random_blocks(1024))
    return sorted(seeds_dir.iterdir())

def populate(bench: Bench, store: Store, seeds: list[Path], have: int, want: int, engine: str) -> int:
    """Put small files through pfs scripts until the store holds `want`; returns the new count."""
    t, start = time.perf_counter(), have
    while have < want:
        n = min(POPULATE_BATCH, want - have)
        lines = [f"put {seeds[(have + i) % len(seeds)]} small/{have + i:07d}.bin" for i in range(n)]
        bench.pfs_run(store, stdin=script_file(bench.work / "populate.pfs", lines))
        have += n
    if have - start >= 1000:
        took = time.perf_counter() - t
        text = (f"{engine}: populating {start:,} -> {have:,} files took {took:.1f} s "
                f"({(have - start) / took:.0f} puts/s in scripts of {POPULATE_BATCH:,} lines)")
        bench.observations.append(text)
        console.print(f"  {text}")
    return have

def small_counts(bench: Bench, engine: str) -> tuple[int, ...]:
    return bench.profile.db_small_counts if engine == "PostgreSQL" else bench.profile.small_counts

def small_stores(bench: Bench, engine: str) -> dict[int, Store]:
    """A store holding each of the profile's counts of 1 KiB files: one store is
    populated and copied when it reaches each smaller count."""
    seeds, counts = seed_files(bench), small_counts(bench, engine)
    tag = engine.lower()
    store, have, stores = new_store(bench, engine, f"store_small_{tag}"), 0, {}
    for count in counts:
        have = populate(bench, store, seeds, have, count, engine)
        stores[count] = store if count == counts[-1] else copy_store(bench, store, f"store_{tag}_{count}")
    return stores

def small_put_sample(bench: Bench, store: Store) -> Run:
    """One sample of the per-put cost: (T(1 + K puts) - T(1 put)) / K, both scripts
    against the same store, so start-up, store open and pool start cancel out. The
    files added are deleted afterwards, so the store keeps its count.
    Returns the per-put seconds and CPU, with the peak RSS of the K-put script."""
    k, fresh = bench.profile.small_puts, bench.work / "fresh"
    fresh_dir(fresh)
    files = [write_file(fresh / f"f{i}.bin", 1024, random_blocks(1024)) for i in range(k + 2)]
    os.sync()  # distinct names: a put to a name that exists would replace that file
    one = bench.pfs_run(store, stdin=script_file(bench.work / "one.pfs", [f"put {files[-1]}"]), capture=True)
    many = bench.pfs_run(store, stdin=script_file(bench.work / "many.pfs", [f"put {f}" for f in files[:-1]]),
                        capture=True)
    ids = stored_ids(one.stdout) + stored_ids(many.stdout)
    bench.pfs_run(store, stdin=script_file(bench.work / "delete.pfs", [f"delete {i}" for i in ids]))
    def per_put(field: str) -> float | None:
        a, b = getattr(many, field), getattr(one, field)
        return None if a is None else (a - b) / k

    return Run(per_put("seconds"), many.peak_rss, "", "", per_put("user"), per_put("system"))

def small_puts(bench: Bench, stores: dict[tuple[str, int], Store]) -> dict[tuple[str, int], Measurement]:
    """Per-put samples, round-robin over the stores, every other round in reverse
    order (which store goes first in a round turned out to matter)."""
    k = bench.profile.small_puts
    rows = {(engine, count): Measurement(
                engine_label("pfs put 1 KiB (per put)", engine), f"store holds {count:,}",
                note=f"(T(1+{k} puts) - T(1 put)) / {k} in script mode, fresh 1 KiB files; "
                     f"ratio of medians, a difference of two runs has no meaningful minimum")
            for engine, count in stores}
    for rep in range(bench.profile.small_reps):
        for key, store in list(stores.items())[::-1 if rep % 2 else 1]:
            rows[key].add(small_put_sample(bench, store))
    for row in rows.values():
        progress(row)
    return rows

def small_files(bench: Bench) -> None:
    counts, engines = bench.profile.small_counts, engine_names(bench)
    console.rule(f"small files ({' and '.join(engines)} engines): stores of {', '.join(f'{c:,}' for c in counts)}"
                 f" files ({', '.join(f'{c:,}' for c in bench.profile.db_small_counts)} on PostgreSQL)")
    stores = {(engine, count): store for engine in engines for count, store in small_stores(bench, engine).items()}
    exit_script = script_file(bench.work / "exit.pfs", ["exit"])
    puts = small_puts(bench, stores)
    cases = [case for (engine, count), store in stores.items() for case in (
        Case(engine_label("pfs list", engine), f"store holds {count:,}",
             lambda _, s=store: bench.pfs.argv(s, "list")),
        Case(engine_label("pfs list -r (every file)", engine), f"store holds {count:,}",
             lambda _, s=store: bench.pfs.argv(s, "list", "-r")),
        Case(engine_label("echo exit | pfs (store open)", engine), f"store holds {count:,}",
             lambda _, s=store: bench.pfs.argv(s), stdin=exit_script))]
    reads = measure(cases, bench.profile.fast_reps)
    lists, every, opens = (dict(zip(stores, reads[i::3])) for i in range(3))
    label = f"vs {counts[0]:,} files"
    for engine in engines:
        first = (engine, counts[0])
        for rows, stat, suffix in ((lists, "min", ""), (every, "min", ""), (opens, "min", ""),
                                   (puts, "median", " (medians)")):
            for count in small_counts(bench, engine):
                rows[engine, count].ratio(label + suffix, rows[first], stat)
                if engine != "JSON":
                    rows[engine, count].ratio("JSON engine" + suffix, rows["JSON", count], stat)
    last = ("JSON", counts[-1])
    puts[last].target = Target(f"≤ 1.2× the {counts[0]:,}-file put", puts[last].ratios[f"{label} (medians)"],
                               1.2, "×")
    for rows in (lists, every):
        rows[last].target = Target("< 0.5 s", rows[last].min, 0.5, "s")
    for engine in engines:
        bench.add(*(rows[engine, count] for rows in (puts, lists, every, opens)
                   for count in small_counts(bench, engine)))
    for store in stores.values():
        drop_store(bench, store)


def concurrent_puts(bench: Bench) -> None:
    """Aggregate small-put rate of 1, 2 and 4 pfs processes, each running a script
    of distinct puts into one store, per engine; the rounds interleave everything."""
    n, engines = bench.profile.concurrent_puts, engine_names(bench)
    console.rule(f"concurrent small puts: {', '.join(map(str, CONCURRENCY))} processes × {n:,} puts "
                 f"({' and '.join(engines)} engines)")
    seeds, cases, stores = seed_files(bench), [], []
    for engine in engines:
        store = new_store(bench, engine, f"store_concurrent_{engine.lower()}")
        stores.append(store)
        bench.pfs_run(store, "list")  # creates the store, untimed
        for procs in CONCURRENCY:
            scripts = [bench.work / f"concurrent-{engine}-{procs}-{i}.pfs" for i in range(procs)]

            def write_scripts(rep: int, scripts: list[Path] = scripts, procs: int = procs) -> None:
                for i, path in enumerate(scripts):
                    script_file(path, [f"put {seeds[j % len(seeds)]} c{procs}/r{rep}/p{i}/{j:05d}.bin"
                                       for j in range(n)])

            cases.append(Case(engine_label("pfs put 1 KiB, concurrent", engine), f"{procs} × {n:,} puts",
                              lambda _, s=store, scripts=scripts: [
                                  sys.executable, "-c", CONCURRENT, len(scripts), *scripts,
                                  *bench.pfs.argv(s)],
                              before=write_scripts))
    rows = measure(cases, bench.profile.concurrent_reps)
    for i, engine in enumerate(engines):
        group = rows[i * len(CONCURRENCY):(i + 1) * len(CONCURRENCY)]
        for procs, m in zip(CONCURRENCY, group):
            m.rate, m.rate_unit = statistics.median(procs * n / s for s in m.seconds), "puts/s"
            if procs > 1:
                m.ratios["speed-up vs 1 process"] = m.rate / group[0].rate
            m.note = "puts/s: processes × puts / wall time of all of them (each pfs's start-up and store " \
                     "open included), median over rounds"
        bench.add(*group)
        console.print(f"  {engine}: " + ", ".join(f"{p} × {n:,}: {m.rate:,.0f} puts/s"
                                                for p, m in zip(CONCURRENCY, group)))
    for store in stores:
        drop_store(bench, store)


@contextlib.contextmanager
def postgres_server(bench: Bench) -> Iterator[None]:
    """A throwaway PostgreSQL server for the database-store rows, stopped at the end;
    without the server binaries those rows are skipped, with a note saying why."""
    why = postgres_missing()
    if why:
        bench.observations.append(f"PostgreSQL rows skipped: {why}")
        console.print(f"[yellow]PostgreSQL rows skipped: {why}[/]")
        yield
        return
    bench.postgres = Postgres(bench.work)
    console.print(f"  PostgreSQL server started on port {bench.postgres.server.port} "
                  f"in {bench.postgres.server.start_seconds:.1f} s")
    try:
        yield
    finally:
        bench.postgres.close()
        bench.postgres = None
