"""`python -m pfs` runs the same entry point as the `pfs` script."""

from pfs.cli.main import main

raise SystemExit(main())
