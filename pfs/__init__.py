"""pfs: a parallel chunked file store with an interactive shell and a Python API.

    import pfs
    with pfs.open("/data/store") as store:
        store.put("app.log", "logs/app.log")

See pfs.library.api for the API; its names are imported on first use, so that
`import pfs` (and the shell's start) stays fast.
"""

__version__ = "0.1.0"

_API = {"open": "pfs.library.api", "Store": "pfs.library.api", "FileInfo": "pfs.library.api",
        "PfsError": "pfs.errors", "NotFoundError": "pfs.errors", "UsageError": "pfs.errors",
        "IntegrityError": "pfs.errors", "StoreError": "pfs.errors", "DamagedError": "pfs.errors",
        "StoreLockedError": "pfs.errors", "DestinationError": "pfs.errors", "Cancelled": "pfs.errors",
        "MissingDependencyError": "pfs.errors"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'pfs' has no attribute {name!r}")
