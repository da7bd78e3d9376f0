"""The Bench: what every section shares (the profile, the work directory, the pfs
under test, the rows and notes collected), and the put/get cases several sections
build on."""

from __future__ import annotations

import filecmp
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.files import log_blocks, random_blocks, remove, script_file, shell, warm, write_file, zstd_ratio
from benchmarks.measure import Case, Hook, Measurement, Run, run
from benchmarks.stores import Pfs, Postgres, Store
from benchmarks.text import GiB, MiB, console, size_text


#: What pfs prints at store open when it rolls back a put it finds unfinished.
RECOVERED = re.compile(r"was storing when pfs stopped")


@dataclass(frozen=True)
class Profile:
    """How big and how often: full or --quick."""

    name: str
    file_size: int
    reps: int  # interleaved rounds of the big-file section
    small_counts: tuple[int, ...]
    db_small_counts: tuple[int, ...]  # the PostgreSQL engine's (it fills a store at about 150 puts/s)
    small_puts: int  # fresh 1 KiB files per small-put sample
    small_reps: int
    fast_reps: int  # repetitions of sub-second commands (list, start-up)
    random_reads: int  # 4 KiB reads at random offsets per big file, spread over the rounds
    concurrent_puts: int  # puts per process in the concurrent small-put rows
    concurrent_reps: int


FULL = Profile("full", GiB, 7, (10, 10_000, 100_000), (10, 10_000), 500, 7, 10, 1000, 250, 3)
QUICK = Profile("quick", 64 * MiB, 7, (10, 1_000, 5_000), (10, 1_000, 5_000), 200, 3, 5, 200, 250, 3)


class Bench:
    """What every section of a run shares: one work directory, the pfs under test, the rows collected."""

    def __init__(self, profile: Profile, work: Path) -> None:
        self.profile = profile
        self.work = work
        self.pfs = Pfs.snapshot(work / "pfs-under-test")
        self.rows: list[Measurement] = []
        self.inputs: dict[str, dict] = {}
        self.observations: list[str] = []
        self.recovered_messages = 0
        self.postgres: Postgres | None = None  # the server of the database-store rows, while they run

    def add(self, *rows: Measurement) -> None:
        self.rows.extend(rows)

    def pfs_run(self, store: Store, *args: str, stdin: Path | None = None, capture: bool = False) -> Run:
        """A pfs run outside `measure` (small-file path); counts crash-recovery messages."""
        r = run(self.pfs.argv(store, *args), stdin=stdin, capture=capture)
        self.recovered_messages += len(RECOVERED.findall(r.stderr))
        return r

    def make_inputs(self) -> dict[str, Path]:
        size = self.profile.file_size
        label = size_text(size)
        console.rule(f"inputs ({label} each)")
        t = time.perf_counter()
        files = {f"random {label}": write_file(self.work / "random.bin", size, random_blocks()),
                 f"log {label}": write_file(self.work / "app.log", size, log_blocks())}
        ratio = zstd_ratio(files[f"log {label}"])
        console.print(f"  created in {time.perf_counter() - t:.1f} s; the log file compresses to {ratio:.1%} "
                      f"with zstd level 1 on 4 MiB parts"
                      + ("" if 0.20 <= ratio <= 0.40 else "  [yellow](outside the intended 20-40%)[/]"))
        for name, path in files.items():
            warm(path)
            self.inputs[name] = {"path": str(path), "size": size}
        self.inputs[f"log {label}"]["zstd1_ratio"] = ratio
        return files

    def put_get_cases(self, name: str, src: Path, label: str, options: Sequence[str] = (),
                      prepare: Callable[[Path], object] | None = None, cleanup: Hook | None = None,
                      env: dict[str, str] | None = None) -> list[Case]:
        """put into a fresh store (made by `prepare(store)` if given, untimed), then get
        from it into a new destination; both are removed after the get (the first get is
        compared with the source), and `cleanup(rep)` runs."""
        store, dest = self.work / "store", self.work / "get.out"

        def fresh_store(_: int) -> None:
            remove(store)
            if prepare:
                prepare(store)

        def check_and_clean(rep: int) -> None:
            if rep == 0 and not filecmp.cmp(src, dest, shallow=False):
                raise RuntimeError(f"pfs get {label} of {name} returned different bytes")
            remove(dest)
            remove(store)
            if cleanup:
                cleanup(rep)

        return [Case(f"pfs put {label}", name, lambda _: self.pfs.argv(store, *options, "put", src),
                     before=fresh_store, env=env),
                Case(f"pfs get {label}", name, lambda _: self.pfs.argv(store, *options, "get", "1", dest),
                     after=check_and_clean, env=env)]

    def add_volumes(self, store: Path, volumes: Sequence[str], remove_first: bool = False,
                    env: dict[str, str] | None = None) -> None:
        """Add `volumes` (directories or s3:// URLs) to a new store, untimed; with
        remove_first its own volume 0 is drained and removed, leaving only those."""
        lines = [f"volume add {v}" for v in volumes] + ["volume drain 0", "volume remove 0"] * remove_first
        run(self.pfs.argv(store), stdin=script_file(self.work / "volumes.pfs", lines), env=env)

    def cp_sync_case(self, name: str, src: Path) -> Case:
        """`cp && sync`: the baseline of every durable put and get."""
        dest = self.work / "copy.out"
        return Case("cp && sync", name, lambda _: shell('cp "$1" "$2" && sync', src, dest),
                    after=lambda _: remove(dest), nbytes=src.stat().st_size)
