"""The mount against a local directory, side by side: random sequences of
create, write at an offset, truncate, rename, unlink (open ones too), mkdir,
rmdir, symlink, chmod and read must give the same result or the same errno on
both, and leave the same tree."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from helpers import CHUNK, assert_clean_stderr
from mount_helpers import Mount

pytestmark = pytest.mark.usefixtures("fuse")

FILES = st.sampled_from(["a", "b", "d/a", "d/b"])
DIRS = st.sampled_from(["d", "e", "d/e"])
NAMES = st.one_of(FILES, DIRS)
OFFSETS = st.sampled_from([0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 5])
SIZES = st.sampled_from([0, 1, 100, CHUNK + 3])


def outcome(action):
    """What an action gave: ("ok", its value) or ("errno", the error's code)."""
    try:
        return "ok", action()
    except OSError as exc:
        return "errno", exc.errno


def tree(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st_ = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", stat.S_IMODE(st_.st_mode), path.read_bytes())
    return out


def write_at(path: Path, offset: int, data: bytes) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        return os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def create(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))


def read_after_unlink(path: Path) -> bytes:
    """Open, unlink, then read the whole file through the open descriptor."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.unlink(path)
        chunks = []
        while block := os.read(fd, 1 << 16):
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


class SideBySide(RuleBasedStateMachine):
    mount_root: Path
    local_root: Path
    cases = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        case = f"case{next(self.cases)}"
        self.roots = (self.mount_root / case, self.local_root / case)
        for root in self.roots:
            root.mkdir()
            (root / "d").mkdir()

    def both(self, action) -> None:
        on_mount, on_local = (outcome(lambda r=r: action(r)) for r in self.roots)
        assert on_mount == on_local, f"mount gave {on_mount}, a local directory {on_local}"

    @rule(name=FILES)
    def create(self, name):
        self.both(lambda r: create(r / name))

    @rule(name=FILES, offset=OFFSETS, size=SIZES, byte=st.integers(0, 255))
    def write(self, name, offset, size, byte):
        data = bytes((byte + i) % 251 for i in range(size))  # no two neighbours alike: a shift shows
        self.both(lambda r: write_at(r / name, offset, data))

    @rule(name=FILES, length=OFFSETS)
    def truncate(self, name, length):
        self.both(lambda r: os.truncate(r / name, length))

    @rule(old=NAMES, new=NAMES)
    def rename(self, old, new):
        self.both(lambda r: os.rename(r / old, r / new))

    @rule(name=NAMES)
    def unlink(self, name):
        self.both(lambda r: os.unlink(r / name))

    @rule(name=FILES)
    def unlink_while_open(self, name):
        self.both(lambda r: read_after_unlink(r / name))

    @rule(name=DIRS)
    def mkdir(self, name):
        self.both(lambda r: os.mkdir(r / name))

    @rule(name=DIRS)
    def rmdir(self, name):
        self.both(lambda r: os.rmdir(r / name))

    @rule(name=NAMES, link=st.sampled_from(["a", "../x", "d/e"]))
    def symlink(self, name, link):
        self.both(lambda r: os.symlink(link, r / name))

    @rule(name=NAMES, mode=st.sampled_from([0o600, 0o755]))
    def chmod(self, name, mode):
        self.both(lambda r: os.chmod(r / name, mode, follow_symlinks=False) if not (r / name).is_symlink()
                  else None)

    @rule(name=FILES)
    def read(self, name):
        self.both(lambda r: (r / name).read_bytes())

    @invariant()
    def same_tree(self):
        on_mount, on_local = (tree(r) for r in self.roots)
        assert on_mount == on_local


def test_the_mount_behaves_as_a_local_directory(tmp_path: Path) -> None:
    m = Mount(tmp_path / "store", tmp_path / "mnt")
    try:
        (tmp_path / "local").mkdir()
        SideBySide.mount_root, SideBySide.local_root = m.point, tmp_path / "local"
        run_state_machine_as_test(SideBySide, settings=settings(
            max_examples=15, stateful_step_count=25, deadline=None, derandomize=True,
            suppress_health_check=list(HealthCheck)))
    finally:
        rc, err = m.stop()
    assert rc == 0, err
    assert_clean_stderr(err)
