"""Writes through pfs mount: what a program writes is stored whole at close or
fsync, seen by `pfs get`/`list` in other processes; names change without data
moving; a kill -9 of the mount loses only what was not yet closed."""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from pathlib import Path

import pytest

import pfs

from helpers import CHUNK, make_file, parse_list, pieces, referenced_pieces, run_pfs
from mount_helpers import Mount, wait_for

pytestmark = pytest.mark.usefixtures("fuse")


def get_bytes(store: Path, name: str, tmp_path: Path) -> bytes | None:
    out = tmp_path / "got"
    out.unlink(missing_ok=True)
    r = run_pfs(store, None, "get", "/" + name, str(out))
    return out.read_bytes() if r.returncode == 0 else None


def names(store: Path) -> dict[str, str]:
    r = run_pfs(store, None, "list", "-r")
    assert r.returncode == 0, r.stderr
    return {name: status for name, status in parse_list(r.stdout).values()}


def test_a_closed_file_is_stored_whole_for_other_pfs(tmp_path: Path, store: Path, mounted) -> None:
    data = os.urandom(3 * CHUNK + 17)
    with pfs.open(store) as other:  # in this process: a child would close (so flush) the open file too
        with open(mounted.point / "a.bin", "wb") as f:
            f.write(data[:CHUNK])
            assert not other.exists("a.bin")  # not before close
            f.write(data[CHUNK:])
        assert other.info("a.bin").size == len(data)
    assert get_bytes(store, "a.bin", tmp_path) == data
    assert names(store) == {"a.bin": "stored"}
    (mounted.point / "empty").touch()
    assert get_bytes(store, "empty", tmp_path) == b""


def test_writes_at_offsets_append_and_truncate(tmp_path: Path, store: Path, mounted) -> None:
    path, local = mounted.point / "f", tmp_path / "local"
    for p in (path, local):
        with open(p, "wb") as f:
            f.write(b"x" * (2 * CHUNK))
        fd = os.open(p, os.O_RDWR)
        os.pwrite(fd, b"middle", CHUNK - 3)
        os.pwrite(fd, b"past the end", 3 * CHUNK)  # a hole before it
        os.ftruncate(fd, 3 * CHUNK + 5)
        os.close(fd)
        with open(p, "ab") as f:
            f.write(b"appended")
        os.truncate(p, 3 * CHUNK + 10)
    assert path.read_bytes() == local.read_bytes()
    assert get_bytes(store, "f", tmp_path) == local.read_bytes()
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert path.stat().st_size == 0 and get_bytes(store, "f", tmp_path) == b""


def test_create_exclusive_and_directories(tmp_path: Path, store: Path, mounted) -> None:
    root = mounted.point
    fd = os.open(root / "x", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
    os.close(fd)
    assert (os.stat(root / "x").st_mode & 0o777) == 0o640
    with pytest.raises(FileExistsError):
        os.open(root / "x", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.mkdir(root / "d")
    assert os.path.isdir(root / "d") and os.listdir(root / "d") == []
    with pytest.raises(FileExistsError):
        os.mkdir(root / "d")
    (root / "d/e").mkdir()
    (root / "d/e/f").write_bytes(b"f")
    with pytest.raises(OSError) as caught:
        os.rmdir(root / "d")
    assert caught.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileNotFoundError):
        (root / "nodir/f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        (root / "x/f").write_bytes(b"")
    os.unlink(root / "d/e/f")
    assert os.listdir(root / "d/e") == []  # the directory stays when its last file goes
    os.rmdir(root / "d/e")
    os.rmdir(root / "d")
    assert sorted(os.listdir(root)) == ["x"]
    with pytest.raises(IsADirectoryError):
        os.unlink(root)


def test_rename_moves_names_not_data(tmp_path: Path, store: Path, mounted) -> None:
    root = mounted.point
    src = make_file(tmp_path / "src", 2 * CHUNK)
    (root / "dir/sub").mkdir(parents=True)
    for name in ("dir/a", "dir/sub/b", "other"):
        (root / name).write_bytes(src.read_bytes())
    before = {k: v for k, v in parse_list(run_pfs(store, None, "list", "-r").stdout).items()}
    os.rename(root / "dir", root / "moved")
    os.rename(root / "moved/a", root / "other")  # replaces it
    assert sorted(os.listdir(root)) == ["moved", "other"]
    assert sorted(os.listdir(root / "moved")) == ["sub"]
    after = parse_list(run_pfs(store, None, "list", "-r").stdout)
    assert {name for name, _ in after.values()} == {"moved/sub/b", "other"}
    assert set(after) < set(before)  # the same files (ids) under new names: nothing copied
    assert get_bytes(store, "moved/sub/b", tmp_path) == src.read_bytes()
    (root / "empty").mkdir()
    with pytest.raises(OSError) as caught:
        os.rename(root / "moved", root / "moved/sub/inside")
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(IsADirectoryError):
        os.rename(root / "other", root / "empty")
    with pytest.raises(NotADirectoryError):
        os.rename(root / "empty", root / "other")
    os.rename(root / "moved", root / "empty")  # onto an empty directory
    assert os.listdir(root / "empty") == ["sub"]


def test_renameat2_noreplace_keeps_the_target_and_exchange_is_refused(mounted) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    root = mounted.point
    (root / "a").write_bytes(b"a")
    (root / "b").write_bytes(b"b")

    def renameat2(old: str, new: str, flags: int) -> int:
        done = libc.renameat2(-100, os.fsencode(root / old), -100, os.fsencode(root / new), flags)  # AT_FDCWD
        return 0 if done == 0 else ctypes.get_errno()

    assert renameat2("a", "b", 1) == errno.EEXIST and (root / "b").read_bytes() == b"b"  # RENAME_NOREPLACE
    assert renameat2("a", "b", 2) == errno.EINVAL and (root / "a").read_bytes() == b"a"  # RENAME_EXCHANGE
    assert renameat2("a", "c", 1) == 0 and (root / "c").read_bytes() == b"a" and not (root / "a").exists()


def test_an_unlinked_open_file_keeps_reading(tmp_path: Path, store: Path, mounted) -> None:
    data = os.urandom(3 * CHUNK)
    (mounted.point / "f").write_bytes(data)
    with open(mounted.point / "f", "rb") as f:
        head = f.read(10)
        os.unlink(mounted.point / "f")
        assert not os.path.exists(mounted.point / "f")
        assert "f" not in names(store)
        assert head + f.read() == data
    assert wait_for(lambda: names(store) == {}, 5)  # gone from the store at the last close


def test_fsync_is_durable_and_kill_9_loses_only_the_unclosed(tmp_path: Path, store: Path) -> None:
    m = Mount(store, tmp_path / "mnt")
    (m.point / "closed").write_bytes(b"closed earlier")
    synced = os.open(m.point / "synced", os.O_CREAT | os.O_WRONLY)
    os.write(synced, b"fsynced")
    os.fsync(synced)
    unfinished = os.open(m.point / "unfinished", os.O_CREAT | os.O_WRONLY)
    os.write(unfinished, os.urandom(2 * CHUNK))
    big = make_file(tmp_path / "big", 40 * CHUNK)
    writing = threading.Thread(target=lambda: _copy_ignoring_errors(big, m.point / "being-stored"))
    writing.start()
    assert wait_for(lambda: os.path.exists(m.point / "being-stored"), 5)  # killed while it is written
    m.kill()
    writing.join(30)
    for fd in (synced, unfinished):
        try:
            os.close(fd)
        except OSError:
            pass
    r = run_pfs(store, None, "list", "-r")
    assert r.returncode == 0, r.stderr
    stored = {name: status for name, status in parse_list(r.stdout).values()}
    assert stored.get("closed") == "stored" and stored.get("synced") == "stored"
    # rolled back: a file big enough to be streamed as it was written is recorded as an interrupted put is
    assert stored.get("unfinished", "failed (interrupted)") == "failed (interrupted)"
    assert stored.get("being-stored", "failed (interrupted)") in ("stored", "failed (interrupted)")
    assert get_bytes(store, "closed", tmp_path) == b"closed earlier"
    assert get_bytes(store, "synced", tmp_path) == b"fsynced"
    if stored.get("being-stored") == "stored":
        assert get_bytes(store, "being-stored", tmp_path) == big.read_bytes()  # never a part of it
    assert run_pfs(store, None, "verify", "--all").returncode == 0
    assert {(vid, key) for vid, key, _ in pieces(store)} == referenced_pieces(store)  # nothing of it stays


def _copy_ignoring_errors(src: Path, dst: Path) -> None:
    try:
        dst.write_bytes(src.read_bytes())
    except OSError:
        pass  # the mount was killed under it


def test_read_only_mount_refuses_writes(tmp_path: Path, store: Path) -> None:
    src = make_file(tmp_path / "src", 100)
    assert run_pfs(store, None, "put", str(src), "f").returncode == 0
    m = Mount(store, tmp_path / "mnt", "--read-only")
    try:
        assert (m.point / "f").read_bytes() == src.read_bytes()
        for attempt in (lambda: (m.point / "g").write_bytes(b""), lambda: os.unlink(m.point / "f"),
                        lambda: os.mkdir(m.point / "d")):
            with pytest.raises(OSError) as caught:
                attempt()
            assert caught.value.errno == errno.EROFS
    finally:
        assert m.stop()[0] == 0


def test_a_file_written_in_order_is_stored_as_it_is_written(tmp_path: Path, store: Path, mounted) -> None:
    """Its chunks reach the volumes before close, which has only the last ones left;
    a write back into a chunk already stored, a truncate below one, or a rename
    of its directory ends that, and the file is stored whole at close, as written."""
    data = os.urandom(12 * CHUNK + 5)
    with open(mounted.point / "seq.bin", "wb") as f:
        for at in range(0, len(data), CHUNK // 2):
            f.write(data[at:at + CHUNK // 2])
            f.flush()
        assert wait_for(lambda: len(pieces(store)) >= 10, 10), "no chunk was stored before close"
    assert get_bytes(store, "seq.bin", tmp_path) == data

    changed = bytearray(os.urandom(8 * CHUNK))
    with open(mounted.point / "rewritten.bin", "wb") as f:
        f.write(changed)
        f.flush()
        f.seek(100)
        f.write(b"back in the first chunk")
        changed[100:123] = b"back in the first chunk"
        f.seek(len(changed))
        f.write(b"tail")
    assert get_bytes(store, "rewritten.bin", tmp_path) == bytes(changed) + b"tail"

    cut = os.urandom(8 * CHUNK)
    fd = os.open(mounted.point / "cut.bin", os.O_CREAT | os.O_WRONLY)
    os.write(fd, cut)
    os.ftruncate(fd, CHUNK + 3)
    os.close(fd)
    assert get_bytes(store, "cut.bin", tmp_path) == cut[:CHUNK + 3]

    (mounted.point / "d").mkdir()
    moved = os.urandom(6 * CHUNK)
    with open(mounted.point / "d" / "m.bin", "wb") as f:
        f.write(moved)
        f.flush()
        os.rename(mounted.point / "d", mounted.point / "e")
        f.write(b"!")
    assert get_bytes(store, "e/m.bin", tmp_path) == moved + b"!"

    assert names(store) == {"seq.bin": "stored", "rewritten.bin": "stored", "cut.bin": "stored",
                            "e/m.bin": "stored"}
    assert {(vid, key) for vid, key, _ in pieces(store)} == referenced_pieces(store)  # nothing abandoned stays
