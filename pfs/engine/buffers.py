"""A worker's reusable part buffers and its I/O into them and out of them (pread into a
buffer, a checked part written into a get's output), shaped to keep system CPU down."""

import contextlib
import fcntl
import mmap
import os
import threading

from pfs.volumes.local import DIRECT_ALIGN, write_past_cache

#: Each thread's reusable buffers, by use: a part's bytes, and its stored bytes when they differ
#: (a worker's one thread, or a thread of pfs itself storing a small part in place: see Engine.run).
_local = threading.local()
PART, STORED, OPENED = "part", "stored", "opened"


def _buffers() -> dict[str, mmap.mmap]:
    if not hasattr(_local, "buffers"):
        _local.buffers = {}
    return _local.buffers


def release(use: str) -> None:
    """Give back the buffer of one use: the next part that needs that memory has it."""
    _buffers().pop(use, None)


def view(size: int, use: str = PART) -> memoryview:
    """A reusable buffer of `size` bytes: one allocation per worker and use, not
    per part (a fresh buffer per part faults in its pages again: 0.7 s of system
    CPU per GiB here). It is an mmap, so it starts on a page boundary, as
    O_DIRECT needs (see volumes.local.write_direct); the kernel's copies between
    the page cache and a buffer 16 bytes past a page boundary, where a
    bytearray's data starts, also cost more system CPU (AMD EPYC: 0.57 against
    0.33 s per GiB read and written in one process). See _huge_buffer for its pages."""
    buffers = _buffers()
    buffer = buffers.get(use)
    if buffer is None or len(buffer) < size:
        buffer = buffers[use] = _huge_buffer(max(size, mmap.PAGESIZE))
    return memoryview(buffer)[:size]


def _huge_buffer(size: int) -> mmap.mmap:
    """Private anonymous memory on huge pages where the kernel has them: every
    O_DIRECT transfer pins the buffer's pages, one 2 MiB page instead of 512
    small ones (a get of 1 GiB, read and written with O_DIRECT: 0.08 s less
    system CPU here). A shared mapping (mmap's default) is shmem, which gets no
    huge pages unless the administrator allows them."""
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(AttributeError, OSError):  # no MADV_HUGEPAGE here, or no huge pages at all
        buffer.madvise(mmap.MADV_HUGEPAGE)
    return buffer


def read_at(fd: int, view: memoryview, offset: int) -> int:
    """Fill `view` from `fd` at `offset`; return how many bytes there were."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            break
        done += n
    return done


def whole_blocks(size: int) -> int:
    """`size` rounded up to whole O_DIRECT blocks: a read into that many bytes
    goes past the page cache to the very end of the part."""
    return -(-size // DIRECT_ALIGN) * DIRECT_ALIGN


def write_output(path: str, data, offset: int, cached: bool = False) -> None:
    """pwrite a checked part into the output, one worker at a time: workers
    writing into one file at once spin on its inode lock, which burnt more
    system CPU than the copies themselves; waiting on flock sleeps instead.
    Past the page cache, unless `cached` (small files synced in a batch: a
    write past the cache waits for the disk, file by file)."""
    out = os.open(path, os.O_WRONLY)
    try:
        fcntl.flock(out, fcntl.LOCK_EX)  # released by close
        if cached:
            view = memoryview(data).cast("B")
            while view:
                n = os.pwrite(out, view, offset)
                view, offset = view[n:], offset + n
        else:
            write_past_cache(out, data, offset)
    finally:
        os.close(out)
