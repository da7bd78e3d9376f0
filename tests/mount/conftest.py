"""The mount tests' fixtures: FUSE (libfuse installed by the run where it is
missing, else the tests skip saying why), a store, and a mount of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import assert_clean_stderr
from mount_helpers import Mount, fuse_missing


@pytest.fixture(scope="session")
def fuse() -> None:
    why = fuse_missing()
    if why:
        pytest.skip(why)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def mounted(tmp_path: Path, store: Path):
    """The store mounted at tmp_path/mnt; unmounted cleanly at the end."""
    m = Mount(store, tmp_path / "mnt")
    yield m
    rc, err = m.stop()
    assert rc == 0, err
    assert_clean_stderr(err)
