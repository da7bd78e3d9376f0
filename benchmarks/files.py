"""The benchmark's files: the inputs (random bytes, a realistic access log), the
page cache (warm, evict), pfs scripts, and cleaning up."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import zstandard

from benchmarks.measure import run
from benchmarks.text import MiB


def shell(script: str, *args: Path | str) -> list[str]:
    """argv running a small sh script with positional arguments $1... (no quoting issues)."""
    return ["sh", "-c", script, "sh", *map(str, args)]


def remove(path: Path) -> None:
    """Delete a file or a directory tree if it exists."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def fresh_dir(path: Path) -> None:
    remove(path)
    path.mkdir()


LEVELS = ("INFO ",) * 14 + ("DEBUG",) * 4 + ("WARN ",) * 2 + ("ERROR",)
METHODS = ("GET",) * 6 + ("POST",) * 2 + ("PUT", "DELETE")
ROUTES = ("/api/v1/users/{}", "/api/v1/users/{}/orders", "/api/v1/orders/{}/items/{}",
          "/api/v2/search?q=item{}&page={}", "/static/img/{}.png", "/api/v1/carts/{}", "/health",
          "/api/v1/sessions/{}/refresh")
STATUSES = (200,) * 20 + (201, 204, 301, 304, 400, 401, 403, 404, 404, 500, 503)
SERVICES = tuple(f"{s}-{i}" for s in ("api-gateway", "auth", "orders", "billing", "search", "inventory")
                 for i in range(1, 9))


def log_lines(rng: random.Random, start: float, n: int) -> str:
    """n access-log lines from second `start` on: timestamps, levels, request ids,
    methods, paths with numbers of varying length, statuses, latencies, sizes."""
    ids = rng.randbytes(8 * n).hex()
    nums = [rng.randint(1, 10 ** rng.randint(1, 6)) for _ in range(2 * n)]
    lines = []
    for i, (level, service, method, route, status) in enumerate(zip(
            rng.choices(LEVELS, k=n), rng.choices(SERVICES, k=n), rng.choices(METHODS, k=n),
            rng.choices(ROUTES, k=n), rng.choices(STATUSES, k=n))):
        t = start + (i + rng.random()) * 0.0005
        s = int(t)
        lines.append(f"2026-11-25T{s // 3600 % 24:02}:{s // 60 % 60:02}:{s % 60:02}.{int(t % 1 * 1e6):06}Z "
                     f"{level} [{service}] req={ids[16 * i:16 * i + 16]} {method} "
                     f"{route.format(nums[2 * i], nums[2 * i + 1])} status={status} "
                     f"latency={rng.lognormvariate(2.5, 0.9):.1f}ms bytes={rng.getrandbits(16)}\n")
    return "".join(lines)


def write_file(path: Path, size: int, blocks: Iterator[bytes]) -> Path:
    """Write exactly `size` bytes taken from `blocks`."""
    with open(path, "wb") as f:
        left = size
        for block in blocks:
            f.write(block[:left])
            left -= min(left, len(block))
            if not left:
                break
    return path


def random_blocks(size: int = 16 * MiB) -> Iterator[bytes]:
    while True:
        yield os.urandom(size)


def log_blocks(seed: int = 4) -> Iterator[bytes]:
    rng, start, n = random.Random(seed), 36_000.0, 100_000
    while True:
        yield log_lines(rng, start, n).encode()
        start += n * 0.0005


def zstd_ratio(path: Path, chunk: int = 4 * MiB) -> float:
    """Stored/original size with zstd level 1 on pfs-sized parts, as pfs compresses."""
    compressor, stored, total = zstandard.ZstdCompressor(level=1), 0, 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            stored += len(compressor.compress(block))
            total += len(block)
    return stored / total


def warm(path: Path) -> None:
    """Read a file into the page cache, as `cat FILE > /dev/null`."""
    run(shell('cat "$1" > /dev/null', path))


def evict(path: Path) -> None:
    """Drop a file's (clean) pages from the page cache: its next reader reads the disk."""
    with open(path, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def script_file(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path
