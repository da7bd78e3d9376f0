"""The optional parts of pfs and how to install each, said in one place for
every message that names one: from a checkout, `pip install -e 'DIR[EXTRA]'`;
from an installed package, `pip install 'DISTRIBUTION[EXTRA]'` under the
distribution's own name (which is not the import name's: `pfs` on PyPI is
another project)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from functools import cache
from pathlib import Path

from pfs.errors import MissingDependencyError

#: The import name of each optional package -> the extra that installs it.
EXTRAS = {"psycopg": "postgres", "boto3": "s3", "botocore": "s3", "fsspec": "fsspec"}


def installed(package: str) -> bool:
    """Whether an optional package can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(package) is not None
    except ValueError:  # its import was blocked (None in sys.modules)
        return False


def install_hint(extra: str) -> str:
    """The command that installs an extra, for the way pfs was installed."""
    checkout = _checkout()
    if checkout is not None:
        return f"pip install -e '{checkout}[{extra}]'"
    return f"pip install '{_distribution()}[{extra}]'"


def missing(package: str, needed_for: str, kind: type[MissingDependencyError] = MissingDependencyError
            ) -> MissingDependencyError:
    """The error (of `kind`) for an optional package that is not installed."""
    extra = EXTRAS.get(package.split(".")[0], package)
    return kind(f"{needed_for} need the Python package {package.split('.')[0]}, which is not installed",
                                  f"install it with `{install_hint(extra)}`", name=package)


@cache
def _checkout() -> Path | None:
    """The source tree pfs runs from, if it does (its pyproject.toml beside the package)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and "site-packages" not in root.parts else None


@cache
def _distribution() -> str:
    """The name of the installed distribution that holds the `pfs` package."""
    names = importlib.metadata.packages_distributions().get("pfs", [])
    return names[0] if names else "pfs"
