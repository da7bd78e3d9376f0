"""The distribution is `pfs-store` (PyPI's `pfs` is another project), and every
hint that names a pip command names one that works: the checkout with its extra
in a checkout, the extra's own requirements in an installed package."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from helpers import env

import pfs
from pfs.install import DISTRIBUTION

REPO = Path(pfs.__file__).resolve().parent.parent


def _hint(pythonpath: list[Path], extra: str, cwd: Path) -> list[str]:
    """The pip command pfs offers for a missing `extra`, as argv, from a fresh
    interpreter that imports pfs from `pythonpath` (or from the checkout)."""
    e = env()
    e["PYTHONPATH"] = os.pathsep.join(map(str, pythonpath))
    r = subprocess.run([sys.executable, "-I" if pythonpath else "-c", *(["-c"] if pythonpath else []),
                        "import sys; sys.path[:0] = sys.argv[2:]; from pfs.install import install_hint; "
                        "import pfs; print(pfs.__file__); print(install_hint(sys.argv[1]))", extra,
                        *map(str, pythonpath)],
                       capture_output=True, text=True, env=e, cwd=cwd, timeout=60, check=True)
    where, hint = r.stdout.splitlines()
    return [where, *shlex.split(hint)]


def test_the_distribution_is_pfs_store_with_the_command_and_import_pfs():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "pfs-store"
    assert project["scripts"] == {"pfs": "pfs.cli.main:main"}
    dist = metadata.distribution(DISTRIBUTION)
    assert {ep.name for ep in dist.entry_points if ep.group == "console_scripts"} == {"pfs"}


def test_in_a_checkout_the_hint_installs_the_checkout_with_its_extra(tmp_path):
    where, *argv = _hint([], "postgres", tmp_path)
    assert Path(where).is_relative_to(REPO)
    assert argv[:3] == ["pip", "install", "-e"], argv
    checkout, extra = argv[3].rstrip("]").split("[")
    assert extra == "postgres" and Path(checkout) == REPO
    project = tomllib.loads((Path(checkout) / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION and "postgres" in project["optional-dependencies"]


def test_in_an_installed_package_the_hint_installs_what_the_extra_requires(tmp_path):
    """pfs installed from a wheel (not a checkout): pip would find no pfs-store
    on PyPI, so the hint names the extra's own requirements."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheels), str(REPO)], check=True, capture_output=True, timeout=300, cwd=tmp_path)
    site = tmp_path / "site"
    zipfile.ZipFile(next(wheels.glob("pfs_store-*.whl"))).extractall(site)
    for extra in ("s3", "postgres", "fsspec"):
        where, *argv = _hint([site], extra, tmp_path)
        assert Path(where).is_relative_to(site), where
        wanted = [r.split(";")[0].strip() for r in metadata.requires(DISTRIBUTION) if f'extra == "{extra}"' in r]
        assert argv == ["pip", "install", *wanted], argv
    assert argv[2].startswith("fsspec"), argv


@pytest.mark.parametrize("doc", ["README.md", "docs/commands.md"])
def test_no_document_offers_the_other_projects_name(doc):
    path = REPO / doc
    if not path.exists():
        pytest.skip(f"{doc} is not there")
    text = path.read_text()
    assert "install 'pfs[" not in text and "install pfs[" not in text and "install pfs " not in text
