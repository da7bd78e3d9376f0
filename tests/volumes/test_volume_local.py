"""LocalVolume: the volume contract on a directory, plus what only a local disk can suffer."""

from __future__ import annotations

import itertools
import os
import socket

import pytest

from pfs.errors import OutOfSpaceError, PartDamagedError, PartExistsError, UsageError, VolumeUnavailableError
from pfs.volumes import open_volume
from pfs.volumes.local import LocalVolume
from volume_contract import STORE_ID, VolumeContract, key


@pytest.fixture
def make_volume(tmp_path):
    counter = itertools.count()

    def make(**options) -> LocalVolume:
        path = tmp_path / f"vol{next(counter)}"
        path.mkdir()
        return open_volume({"url": str(path), **options})
    return make


def _fifo(path):
    os.mkfifo(path)


def _full_directory(path):
    path.mkdir()
    (path / "something").write_bytes(b"x")


def _symlink(path):
    (path.parent / "elsewhere").write_bytes(b"not a part of this volume")
    path.symlink_to(path.parent / "elsewhere")


def _socket(path):
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()


@pytest.fixture(params=[_fifo, _full_directory, _symlink, _socket, lambda p: p.mkdir()],
                ids=["fifo", "directory", "symlink", "socket", "empty-directory"])
def damage_part(request):
    def damage(volume: LocalVolume, k: str):
        path = volume.path(k)
        path.parent.mkdir(parents=True, exist_ok=True)
        request.param(path)
        return PartDamagedError
    return damage


class TestLocalVolume(VolumeContract):
    pass


def test_parts_are_fanned_out_as_before(make_volume):
    v = make_volume()
    v.write(key(1), b"x")
    assert (v.root / key(1)[:2] / key(1)[2:4] / key(1)).read_bytes() == b"x"


def test_something_in_a_part_place_blocks_a_write_and_is_removed(make_volume, damage_part):
    v = make_volume()
    damage_part(v, key(2))
    with pytest.raises(PartExistsError):
        v.write(key(2), b"new")
    if v.path(key(2)).is_dir() and any(v.path(key(2)).iterdir()):
        with pytest.raises(PartDamagedError, match="move .* away"):
            v.remove(key(2))
        return
    assert v.remove(key(2)) is True
    v.write(key(2), b"new")
    assert v.read(key(2)) == b"new"


def test_a_missing_directory_is_an_unavailable_volume_never_recreated(tmp_path):
    v = LocalVolume(tmp_path / "unmounted")
    for op in (lambda: v.write(key(1), b"x"), lambda: v.read(key(1)), lambda: v.remove(key(1)),
               lambda: list(v.keys()), v.free):
        with pytest.raises(VolumeUnavailableError, match="is missing"):
            op()
    assert v.status() == "missing"
    assert not (tmp_path / "unmounted").exists()


def test_full_disk_is_out_of_space_and_leaves_no_partial_part(small_fs):
    fs = small_fs("disk", 1 << 20)
    if fs.kind != "tmpfs":
        pytest.skip("needs a real small filesystem (tmpfs; run as root)")
    v = LocalVolume(fs.path)
    v.write_marker(STORE_ID, "v0")
    with pytest.raises(OutOfSpaceError, match="is full"):
        v.write(key(1), os.urandom(2 << 20))
    assert list(v.keys()) == []
    v.write(key(2), b"small")
    assert v.read(key(2)) == b"small"
    fs.fill()
    assert v.status() == "full"


def test_open_volume_by_path_and_url(tmp_path):
    assert isinstance(open_volume(tmp_path), LocalVolume)
    assert open_volume(f"file://{tmp_path}").root == tmp_path
    assert open_volume("relative/dir").root == open_volume(os.path.abspath("relative/dir")).root
    with pytest.raises(UsageError, match="unknown kind of volume"):
        open_volume("ftp://host/dir")
