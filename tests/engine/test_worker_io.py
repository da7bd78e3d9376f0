"""pfs.engine.worker's I/O habits that keep system CPU down: a page-aligned part
buffer, output writes that wait for each other instead of spinning, and parts
and outputs written past the page cache."""

import ctypes
import fcntl
import mmap
import os
import subprocess
import threading

import pytest

from pfs.engine import worker
from pfs.volumes.redundancy import Layout
from pfs.volumes import part_id
from pfs.volumes.local import LocalVolume


def address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


@pytest.mark.parametrize("sizes", [[4 << 20], [64 << 10, 4 << 20, 1 << 20], [1000, 3 * 4096 + 1]])
def test_part_buffer_starts_on_a_page_boundary(sizes):
    for size in sizes:
        view = worker._view(size)
        assert len(view) == size
        assert address(view) % mmap.PAGESIZE == 0


def test_part_buffer_of_nothing_is_empty():
    assert len(worker._view(0)) == 0


def test_output_writes_wait_for_each_other(tmp_path):
    """Workers write a get's output one at a time (flock), not all at once
    (spinning on the inode lock): while another holder has the lock, a part
    waits; once it is released, the part lands intact."""
    data = os.urandom(256 * 1024)
    source, out, key = tmp_path / "source", tmp_path / "out", part_id("0" * 32, 0)
    source.write_bytes(data)
    (tmp_path / "volume").mkdir()
    volume = {"url": str(tmp_path / "volume")}
    part_hash, used, stored, placed, shards, _ = worker.store_part(str(source), 0, len(data), "zstd", "xxh3-128",
                                                                Layout(), key, [(0, volume)])
    job = worker.PartCheck(Layout(), key, stored, used, len(data), "xxh3-128", part_hash, [(0, volume)], shards,
                           str(out), len(data))
    out.write_bytes(bytes(2 * len(data)))
    result = []
    with open(out, "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        writer = threading.Thread(target=lambda: result.append(worker.check_part(job)))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and out.read_bytes()[len(data):] == bytes(len(data))
    writer.join(10)
    assert result[0].problem is None and out.read_bytes()[len(data):] == data


def cached_pages(path) -> int:
    """How many pages of the file are in the page cache (mincore of a mapping)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
        pages = -(-size // mmap.PAGESIZE)
        vec = (ctypes.c_ubyte * pages)()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
        assert libc.mincore(address(memoryview(m)), size, vec) == 0, os.strerror(ctypes.get_errno())
        return sum(v & 1 for v in vec)


@pytest.fixture
def disk_dir(tmp_path):
    """tmp_path, where it is on a disk whose files O_DIRECT can bypass the page cache of."""
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True).stdout.strip()
    if kind in ("tmpfs", "ramfs", ""):
        pytest.skip(f"{tmp_path} is on {kind or 'an unknown filesystem'}: all its files are page cache")
    try:
        fd = os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
        os.close(fd)
    except OSError:
        pytest.skip(f"{tmp_path} refuses O_DIRECT")
    return tmp_path


SIZES = [4 << 20, (1 << 20) + 3, 4096, 100]


@pytest.mark.parametrize("size", SIZES)
def test_parts_and_get_output_bypass_the_page_cache(disk_dir, size):
    """A part and a get's output are written past the page cache (nobody here
    reads them soon; fresh cache pages and the copy into them were most of the
    system CPU of a put and a get): at most the last partial page is cached, and
    the bytes read back through the worker's buffer are the bytes written."""
    data = os.urandom(size)
    source, out, key = disk_dir / "source", disk_dir / "out", part_id("0" * 32, 0)
    source.write_bytes(data)
    (disk_dir / "volume").mkdir()
    volume = {"url": str(disk_dir / "volume")}
    part_hash, used, stored, placed, shards, _ = worker.store_part(str(source), 0, size, "none", "xxh3-128",
                                                                Layout(), key, [(0, volume)])
    part = next((disk_dir / "volume").rglob(key))
    assert cached_pages(part) <= (size % mmap.PAGESIZE > 0)
    out.write_bytes(b"")
    os.truncate(out, size)
    job = worker.PartCheck(Layout(), key, stored, used, size, "xxh3-128", part_hash, [(0, volume)], shards,
                           str(out), 0)
    assert worker.check_part(job).problem is None
    assert cached_pages(out) <= (size % mmap.PAGESIZE > 0)
    assert out.read_bytes() == data


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["compressed bytes", "random bytes", "unaligned view"])
def test_unaligned_buffers_are_written_through_the_cache(tmp_path, size, kind):
    """Bytes not on a page boundary (a compressed part, a part rebuilt from shards,
    a view into the middle of a buffer) cannot go past the cache: they are
    written as usual, and read back whole."""
    data = (b"pfs " * size)[:size] if kind == "compressed bytes" else os.urandom(size)
    if kind == "unaligned view":
        view = mmap.mmap(-1, size + 1)
        view[1:] = data
        data = memoryview(view)[1:]
    (tmp_path / "volume").mkdir()
    volume, key = LocalVolume(tmp_path / "volume"), part_id("1" * 32, 0)
    volume.write(key, data)
    buffer = worker._view(size + mmap.PAGESIZE, worker.STORED)
    assert buffer[:volume.read_into(key, buffer)] == data
    out = tmp_path / "out"
    out.write_bytes(bytes(size + 4096))
    worker._write_output(str(out), data, 4096)
    assert out.read_bytes()[4096:] == data
