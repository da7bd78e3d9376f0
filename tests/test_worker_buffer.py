"""pfs.worker's reusable part buffer: page-aligned, since the kernel copies
between the page cache and a misaligned buffer at a much higher CPU cost."""

import ctypes
import mmap

import pytest

from pfs import worker


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
