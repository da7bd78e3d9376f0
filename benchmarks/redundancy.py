"""Redundancy: put and get with one copy, two copies and ec 4+2 beside `cp && sync`,
and pyeclib's own encode and decode rate on one core."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from benchmarks.context import Bench
from benchmarks.files import fresh_dir, remove, script_file
from benchmarks.measure import Case, Measurement, measure, run
from benchmarks.text import MiB, console, size_text


#: Redundancy layouts of the redundancy rows: pfs options and the volumes (directories on one disk) they get.
LAYOUTS: dict[str, tuple[tuple[str, ...], int]] = {
    "--copies 1": (("--copies", "1"), 1),
    "--copies 2": (("--copies", "2"), 2),
    "--ec 4+2": (("--ec", "4+2"), 6),
}
#: Part payload sizes of the in-process erasure-coding throughput rows.
EC_PARTS = (1 * MiB, 4 * MiB)
#: Encodes and decodes `total` bytes in parts of `part` bytes with pyeclib's isa_l_rs_vand 4+2
#: on one core, as pfs does per part; prints the MB per CPU second of each (argv: part total).
EC_THROUGHPUT = """\
import json, os, sys, time
from pyeclib.ec_iface import ECDriver
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
part, total = int(sys.argv[1]), int(sys.argv[2])
driver = ECDriver(k=4, m=2, ec_type="isa_l_rs_vand")
payloads = [os.urandom(part) for _ in range(8)]
coded = [driver.encode(p) for p in payloads]  # one part at a time below, as a pfs worker codes them
assert all(driver.decode(c[:4]) == driver.decode(c[2:]) == p for c, p in zip(coded, payloads))
n = max(1, total // part)

def rate(code) -> float:  # per CPU second (user + system) of this one thread: load elsewhere does not count
    t = time.thread_time()
    for i in range(n):
        code(i % 8)
    return n * part / (time.thread_time() - t) / 1e6

print(json.dumps({"encode": rate(lambda i: driver.encode(payloads[i])),
                  "decode": rate(lambda i: driver.decode(coded[i][:4])),
                  "decode, 2 data shards lost": rate(lambda i: driver.decode(coded[i][2:]))}))
"""


def redundancy(bench: Bench, inputs: dict[str, Path]) -> None:
    """put/get of each big file with 1 copy, 2 copies (2 volumes) and ec 4+2 (6
    volumes), the volumes directories on the one disk, beside `cp && sync` in the
    same rounds: what redundancy costs in CPU and wall time."""
    console.rule(f"redundancy: {', '.join(LAYOUTS)} (volumes are directories on one disk)")
    for name, src in inputs.items():
        cases = [bench.cp_sync_case(name, src)]
        for label, (options, volumes) in LAYOUTS.items():
            dirs = [bench.work / f"volume-{i}" for i in range(1, volumes)]

            def prepare(store: Path, dirs: list[Path] = dirs) -> None:
                for d in dirs:
                    fresh_dir(d)
                bench.add_volumes(store, list(map(str, dirs)))

            cases += bench.put_get_cases(name, src, label, options, prepare,
                                        cleanup=lambda _, dirs=dirs: [remove(d) for d in dirs])
        for case in cases:
            case.nbytes = src.stat().st_size
        cp_sync, *rows = measure(cases, bench.profile.reps)
        one_put, one_get = rows[:2]
        for i, m in enumerate(rows):
            m.ratio("cp && sync", cp_sync, "paired")
            if i >= 2:
                m.ratio("--copies 1", rows[i % 2], "paired")
        bench.add(cp_sync, *rows)

def ec_throughput(bench: Bench) -> None:
    """Encode and decode rate of pyeclib's isa_l_rs_vand 4+2 in one process pinned to
    one core, on parts of pfs's sizes, without pfs around it."""
    console.rule("pyeclib isa_l_rs_vand 4+2 on one core, in-process")
    total = max(bench.profile.file_size // 4, 64 * MiB)
    script = script_file(bench.work / "ec_throughput.py", [EC_THROUGHPUT])
    cases = [Case("pyeclib isa_l_rs_vand 4+2, 1 core", f"{size_text(part)} parts",
                  lambda _, p=part: [sys.executable, script, p, total], nbytes=total) for part in EC_PARTS]
    rates: dict[str, list[dict]] = {c.file: [] for c in cases}
    for rep in range(bench.profile.reps):
        for case in cases:
            r = run(case.argv(rep), capture=True)
            rates[case.file].append(json.loads(r.stdout))
    for case in cases:
        for what in rates[case.file][0]:
            m = Measurement(f"pyeclib 4+2 {what}, 1 core", case.file,
                            rate=statistics.median(r[what] for r in rates[case.file]), rate_unit="MB/s",
                            note=f"in-process, {size_text(total)} coded per round, a part at a time; MB of "
                                 f"payload per CPU second of the coding thread (what one core does, whatever "
                                 f"the load), median over {bench.profile.reps} rounds")
            console.print(f"  {m.operation:<48} {m.file:<12} {m.rate:,.0f} MB/s of CPU time")
            bench.add(m)
