"""`python -m benchmarks`: the benchmark's entry point."""

from benchmarks.main import main

raise SystemExit(main())
