"""`python benchmarks/bench.py ...`: the benchmark's entry point as a script, the same as `python -m benchmarks`."""

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo: `benchmarks` is a package, its modules shadow nothing

from benchmarks.main import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
