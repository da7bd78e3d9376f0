"""How to install an optional part of pfs: the one pip command a message may offer."""

from __future__ import annotations

import shlex
from pathlib import Path

#: The distribution's name (`pfs` on PyPI is another project); the command and the import stay `pfs`.
DISTRIBUTION = "pfs-store"


def install_hint(extra: str) -> str:
    """The pip command that brings the optional part `extra` (an extra of
    pyproject.toml). In a checkout of the source (an editable install, or the
    source run as it is): the checkout itself with that extra. In an installed
    package: the extra's own requirements, as its metadata lists them (the
    distribution is not on PyPI, so `pip install 'pfs-store[s3]'` finds nothing)."""
    from importlib import metadata  # only when a hint is given: it costs every start-up ~15 ms

    source = Path(__file__).resolve().parent.parent
    if _is_checkout(source):
        return f"pip install -e {shlex.quote(f'{source}[{extra}]')}"
    marker = f'extra == "{extra}"'
    try:
        wanted = [r.split(";")[0].strip() for r in metadata.requires(DISTRIBUTION) or () if marker in r]
    except metadata.PackageNotFoundError:
        wanted = []
    if not wanted:
        return f"pip install {shlex.quote(f'{DISTRIBUTION}[{extra}]')}"
    return "pip install " + " ".join(map(shlex.quote, wanted))


def _is_checkout(source: Path) -> bool:
    try:
        return f'name = "{DISTRIBUTION}"' in (source / "pyproject.toml").read_text()
    except OSError:
        return False
