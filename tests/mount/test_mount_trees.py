"""Entry kinds through pfs mount: symlinks, empty directories, and the mode,
owner and mtime of every entry, recorded in the store (so another mount, or
another pfs, sees them) -- and cp -a of a real tree in and out, identical."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import pfs
from helpers import assert_clean_stderr
from mount_helpers import Mount

pytestmark = pytest.mark.usefixtures("fuse")


def remount(m: Mount) -> Mount:
    rc, err = m.stop()
    assert rc == 0, err
    assert_clean_stderr(err)
    return Mount(m.store, m.point)


def test_symlinks_empty_dirs_and_metadata_are_recorded(tmp_path: Path) -> None:
    m = Mount(tmp_path / "store", tmp_path / "mnt")
    try:
        root = m.point
        os.mkdir(root / "empty", 0o701)
        os.symlink("../elsewhere/ü", root / "link")
        (root / "f").write_bytes(b"data")
        os.chmod(root / "f", 0o600)
        os.chown(root / "f", 1234, 567)
        os.utime(root / "f", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
        os.chmod(root / "empty", 0o1750)  # the sticky bit is kept with the permissions
        m = remount(m)
        assert os.readlink(root / "link") == "../elsewhere/ü"
        assert os.path.islink(root / "link") and not os.path.exists(root / "link")  # dangling, never followed
        assert os.path.isdir(root / "empty") and os.listdir(root / "empty") == []
        assert stat.S_IMODE(os.stat(root / "empty").st_mode) == 0o1750
        st = os.stat(root / "f")
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 1234, 567)
        assert st.st_mtime_ns == 1_600_000_000_123_456_789
        assert (root / "f").read_bytes() == b"data"
        with pfs.open(m.store) as other:  # what another pfs sees
            info = {i.name: i for i in other.list(recursive=True)}
            assert info["f"].size == 4 and info["f"].mtime == pytest.approx(1_600_000_000.123456789)
            assert {"empty/", "link", "f"} <= set(info)  # a directory record is listed as one
        os.rmdir(root / "empty")
        os.unlink(root / "link")
        m = remount(m)
        assert sorted(os.listdir(root)) == ["f"]
    finally:
        m.stop()


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry under root: kind, permission bits, mtime (files and links), bytes or target."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, path.read_bytes())
    return out


def test_cp_a_of_a_real_tree_in_and_out_is_identical(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(Path(shutil.__file__).parent / "json", source / "json", symlinks=True)
    shutil.copytree(Path(shutil.__file__).parent / "email", source / "email", symlinks=True)
    os.symlink("json/decoder.py", source / "decoder-link")
    os.symlink("missing/target", source / "email/dangling")
    (source / "empty").mkdir()
    os.chmod(source / "json/__init__.py", 0o640)
    m = Mount(tmp_path / "store", tmp_path / "mnt")
    try:
        subprocess.run(["cp", "-a", str(source), str(m.point / "tree")], check=True)
        m = remount(m)  # another pfs process reads what the first stored
        assert _tree(m.point / "tree") == _tree(source)
        out = tmp_path / "out"
        subprocess.run(["cp", "-a", str(m.point / "tree"), str(out)], check=True)
        assert _tree(out) == _tree(source)
    finally:
        m.stop()
