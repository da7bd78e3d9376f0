"""`python -m pfs` runs the same entry point as the `pfs` script."""

import _signal  # the built-in module behind signal: imported in microseconds, where signal takes a millisecond

# First of all, as pfs.cli.main does: the signals are held until their handling is installed.
_signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP})

from pfs.cli.main import main  # noqa: E402

raise SystemExit(main())
