"""fsspec's own abstract test suite, run against a real pfs store."""

from __future__ import annotations

import posixpath

import pytest

fsspec = pytest.importorskip("fsspec")
from fsspec.tests import abstract  # noqa: E402

from pfs.library.fs import PfsFileSystem  # noqa: E402

CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def pfs_fs(tmp_path_factory):
    fs = PfsFileSystem(store=str(tmp_path_factory.mktemp("fsspec") / "store"), workers=2,
                       skip_instance_cache=True)
    yield fs
    fs.store.close()


class PfsFixtures(abstract.AbstractFixtures):
    @pytest.fixture
    def fs(self, pfs_fs):
        return pfs_fs

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def fs_path(self):
        return "suite"

    @pytest.fixture
    def supports_empty_directories(self):
        return False  # directories are implied by the names under them, as S3 prefixes


class TestPfsCopy(abstract.AbstractCopyTests, PfsFixtures):
    pass


class TestPfsGet(abstract.AbstractGetTests, PfsFixtures):
    pass


class TestPfsPut(abstract.AbstractPutTests, PfsFixtures):
    pass


class TestPfsPipe(abstract.AbstractPipeTests, PfsFixtures):
    pass


class TestPfsOpen(abstract.AbstractOpenTests, PfsFixtures):
    pass
