"""pfs: a parallel chunked file store with an interactive shell."""

__version__ = "0.1.0"
