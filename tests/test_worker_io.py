"""pfs.worker's I/O habits that keep system CPU down: a page-aligned part
buffer, and output writes that wait for each other instead of spinning."""

import ctypes
import fcntl
import mmap
import os
import threading

import pytest

from pfs import worker
from pfs.redundancy import Layout
from pfs.volumes import part_id


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
    part_hash, used, stored, placed, shards = worker.store_part(str(source), 0, len(data), "zstd", "xxh3-128",
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
