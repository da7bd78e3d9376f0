"""Fill a store with many small files through the Python API, the fastest
honest way to get a store to measure `list` on (every file is a real put:
record, manifest, part).

    python benchmarks/small_store.py STORE 100000 [--dirs 100]

Names are small/DDD/NNNNNNN.bin, spread over --dirs directories (0: all at
the top of small/), so that both `list` and `list -r` have work to do."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pfs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", type=Path)
    p.add_argument("count", type=int)
    p.add_argument("--dirs", type=int, default=100, help="directories under small/ (0: none)")
    p.add_argument("--size", type=int, default=1024, help="bytes per file")
    p.add_argument("--threads", type=int, default=8, help="puts in flight at once")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, pfs.open(args.store, chunk_size=64 << 10) as store:
        seeds = []
        for i in range(100):
            seed = Path(tmp) / f"seed-{i}.bin"
            seed.write_bytes(os.urandom(args.size))
            seeds.append(seed)

        def name(i: int) -> str:
            return f"small/{i % args.dirs:03d}/{i:07d}.bin" if args.dirs else f"small/{i:07d}.bin"

        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            for n, _ in enumerate(pool.map(lambda i: store.put(seeds[i % len(seeds)], name(i)),
                                           range(args.count)), 1):
                if n % 5000 == 0:
                    print(f"{n:,} files, {n / (time.perf_counter() - started):.0f} puts/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
