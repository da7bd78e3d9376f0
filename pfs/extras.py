"""The optional parts of pfs: whether each is installed, and the one error
that says it is not, naming the command that installs it (pfs.install)."""

from __future__ import annotations

import importlib.util

from pfs.errors import MissingDependencyError
from pfs.install import install_hint

#: The import name of each optional package -> the extra that installs it.
EXTRAS = {"psycopg": "postgres", "boto3": "s3", "botocore": "s3", "fsspec": "fsspec"}


def installed(package: str) -> bool:
    """Whether an optional package can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(package) is not None
    except ValueError:  # its import was blocked (None in sys.modules)
        return False


def missing(package: str, needed_for: str, kind: type[MissingDependencyError] = MissingDependencyError
            ) -> MissingDependencyError:
    """The error (of `kind`) for an optional package that is not installed."""
    extra = EXTRAS.get(package.split(".")[0], package)
    return kind(f"{needed_for} need the Python package {package.split('.')[0]}, which is not installed",
                f"install it with `{install_hint(extra)}`", name=package)
