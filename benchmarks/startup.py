"""Start-up: `pfs list` and `echo exit | pfs` on an empty store, beside `python -c pass`."""

from __future__ import annotations

import sys

from benchmarks.context import Bench
from benchmarks.files import script_file
from benchmarks.measure import Case, Target, measure
from benchmarks.text import console


def startup(bench: Bench) -> None:
    console.rule("start-up (empty store)")
    store = bench.work / "store-empty"
    bench.pfs_run(store, "list")  # creates the store, untimed
    python, *rows = measure([
        Case("python -c pass", "-", lambda _: [sys.executable, "-c", "pass"]),
        Case("pfs list", "empty store", lambda _: bench.pfs.argv(store, "list")),
        Case("echo exit | pfs", "empty store", lambda _: bench.pfs.argv(store),
             stdin=script_file(bench.work / "exit.pfs", ["exit"]))], bench.profile.fast_reps)
    for m in rows:
        m.ratio("python -c pass", python)
        m.target = Target("< 0.3 s", m.min, 0.3, "s")
    bench.add(python, *rows)
