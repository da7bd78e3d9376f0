"""Running commands and measuring them: one code path (`run`) for every command,
pfs or baseline, which times it, samples the summed RSS of its whole process tree
and measures the CPU time of that whole tree (a cgroup per command where the
machine lets us create one, else wait4's rusage); `measure` runs cases
round-robin and makes one row (a Measurement) of each."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from benchmarks.text import GiB, console, size_text, spread_text, time_text


#: RSS sampling period of the process tree.
SAMPLE_EVERY = 0.020
#: How long a command's leftover processes may take to exit before the run fails.
LEFTOVER_WAIT = 10.0



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
