"""What the tests share: running the real `pfs` against a temporary store, live
sessions in their own process group, kill -9, the store's on-disk layout, small
(full-able) filesystems and the S3 server's address. Fixtures are in conftest.py."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from seaweedfs_server import PORT_NAMES, free_ports

CHUNK = 64 * 1024  # small parts so that multi-part files stay small and fast


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class Pfs:
    """Runs `python -m pfs --store STORE ...` with a script on stdin. `store` is a
    directory, or a PostgreSQL URI with `options` saying where its data go."""

    def __init__(self, store: Path | str, cwd: Path, options: tuple[str, ...] = ()) -> None:
        self.store = store
        self.cwd = cwd
        self.options = options
        self.database = isinstance(store, str)

    def argv(self, *options: str) -> list[str]:
        return [sys.executable, "-m", "pfs", "--store", str(self.store), "--chunk-size", str(CHUNK),
                "--workers", "2", *self.options, *options]

    def run(self, script: str = "", *options: str, timeout: float = 60) -> Result:
        proc = subprocess.run(self.argv(*options), input=script, capture_output=True, text=True,
                              cwd=self.cwd, timeout=timeout, env=env())
        return Result(proc.returncode, proc.stdout, proc.stderr)


def run_at_once(argv: list[str], scripts: list[str], cwd: Path, timeout: float = 240) -> list[tuple[int, str, str]]:
    """(exit status, stdout, stderr) of each script run by a pfs of its own, all at
    once: each reads its script from a file, so none waits for another to have
    read its own (communicate() in turn would feed them one after another)."""
    procs = []
    for k, script in enumerate(scripts):
        path = cwd / f".script-{k}"
        path.write_text(script)
        with path.open() as stdin:
            procs.append(subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, cwd=cwd, env=env(), start_new_session=True))
    outputs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, *out) for p, out in zip(procs, outputs)]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("PFS_STORE", None)
    return e


def make_file(path: Path, size: int, kind: str = "random") -> Path:
    """A file of `size` bytes: random (incompressible) or text (compressible)."""
    if kind == "random":
        data = os.urandom(size)
    else:
        line = b"2026-11-25T13:00:00 INFO request served in 12 ms path=/api/items\n"
        data = (line * (size // len(line) + 1))[:size]
    path.write_bytes(data)
    return path


#: `list` rows: id, name, size ("1.0 MiB" / "100 B"), parts, status (+ reason), stored, redundancy.
_SIZE = r"\d+(?:\.\d)? (?:B|KiB|MiB|GiB|TiB)"
_LIST_ROW = re.compile(rf"^\s*(\d+)\s+(.*?)\s+{_SIZE}\s+(\d+)\s+"
                       rf"(storing|stored|failed|deleting)( \(.*?\))?\s+(?:-|{_SIZE})\s+(?:-|\d+/\d+)"
                       r"\s+(?:\d+ cop(?:y|ies)|ec \d+\+\d+)(?:: .*)?$")


def pfs_argv(store: Path, *options: str, workers: int = 2, chunk: int | None = CHUNK) -> list[str]:
    """argv of `python -m pfs --store STORE [--chunk-size CHUNK] --workers N OPTIONS...`."""
    argv = [sys.executable, "-m", "pfs", "--store", str(store)]
    if chunk:
        argv += ["--chunk-size", str(chunk)]
    return argv + ["--workers", str(workers), *options]


def run_pfs(store: Path, script: str | None = None, *options: str, cwd: Path | None = None,
            timeout: float = 90, preexec_fn=None, workers: int = 2, chunk: int | None = CHUNK) -> Result:
    """Run pfs once (script on stdin, or one-shot options) in its own process group."""
    proc = subprocess.run(pfs_argv(store, *options, workers=workers, chunk=chunk),
                          input=script if script is not None else "", capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env(), start_new_session=True, preexec_fn=preexec_fn)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_clean_stderr(stderr: str) -> None:
    """Every stderr line is an `error:` line or a `pfs:` recovery notice; no traceback."""
    assert "Traceback" not in stderr, stderr
    for line in stderr.splitlines():
        assert line.startswith(("error:", "pfs:")), f"stray stderr line {line!r} in:\n{stderr}"


def parse_list(stdout: str) -> dict[int, tuple[str, str]]:
    """`list` output -> {id: (name, status)}; status keeps its reason, e.g. 'failed (interrupted)'."""
    rows = {}
    for line in stdout.splitlines():
        m = _LIST_ROW.match(line)
        if m:
            rows[int(m.group(1))] = (m.group(2), m.group(4) + (m.group(5) or ""))
    return rows


def group_alive(pgid: int) -> list[psutil.Process]:
    """Processes of a process group that are still running (zombies count as dead)."""
    alive = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return alive


def kill_group(proc: subprocess.Popen, timeout: float = 30) -> bool:
    """kill -9 the whole process group of `proc` (started with start_new_session=True)
    and wait until every member is gone. Returns whether proc was still running."""
    was_running = proc.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while group_alive(proc.pid):
        assert time.monotonic() < deadline, f"process group {proc.pid} survived SIGKILL"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.01)
    return was_running


def pool_workers(pid: int) -> list[psutil.Process]:
    """The pool workers of the pfs process `pid`: the children of its forkserver."""
    try:
        children = psutil.Process(pid).children(recursive=False)
    except psutil.NoSuchProcess:
        return []
    workers = []
    for child in children:
        try:
            if any("forkserver" in part for part in child.cmdline()):
                workers += [w for w in child.children() if w.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:
            pass
    return workers


@contextlib.contextmanager
def frozen_workers(pid: int, timeout: float = 60):
    """SIGSTOP every pool worker of pfs `pid` for the duration of the block."""
    deadline = time.monotonic() + timeout
    while not (workers := pool_workers(pid)):
        assert time.monotonic() < deadline, "timed out waiting for the pool workers"
        time.sleep(0.002)
    for w in workers:
        os.kill(w.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGCONT)


def open_paths(pid: int) -> list[str]:
    """What process `pid` has open, as /proc shows it: an unnamed (O_TMPFILE) file
    reads as "DIR/#INODE (deleted)"."""
    paths = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return paths


class LiveSession:
    """pfs in script mode in its own process group, with stdin kept open: write
    commands, wait for replies, write more, close (EOF) or kill -9."""

    def __init__(self, store: Path, cwd: Path, *options: str, workers: int = 2, chunk: int | None = CHUNK,
                 preexec_fn=None) -> None:
        self.proc = subprocess.Popen(pfs_argv(store, *options, workers=workers, chunk=chunk),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, cwd=cwd, env=env(), start_new_session=True,
                                     preexec_fn=preexec_fn)
        self.out: list[str] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(s, d), daemon=True)
                         for s, d in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    def _read(self, stream, into: list[str]) -> None:
        for line in stream:
            with self._cond:
                into.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, *lines: str) -> None:
        self.proc.stdin.write("".join(line + "\n" for line in lines))
        self.proc.stdin.flush()

    def wait_for(self, pattern: str, stream: str = "out", timeout: float = 60, start: int = 0) -> re.Match:
        """Wait for a line of stdout ("out") or stderr ("err") matching `pattern`."""
        lines = self.out if stream == "out" else self.err
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {stream} line matching {pattern!r} within {timeout} s\n"
                                         f"stdout:\n" + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err))
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._readers):
                    raise AssertionError(f"pfs exited ({self.proc.returncode}) before {pattern!r}\nstdout:\n"
                                         + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err))
                self._cond.wait(min(left, 0.2))

    def close(self, timeout: float = 90) -> int:
        """EOF on stdin: pfs waits for its jobs and exits; returns the exit status."""
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.close()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            raise AssertionError(f"pfs did not exit within {timeout} s after EOF")
        for t in self._readers:
            t.join(timeout)
        return rc

    def kill(self) -> bool:
        """kill -9 the whole process group; returns whether pfs was still running."""
        running = kill_group(self.proc)
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.close()
        for t in self._readers:
            t.join(10)
        return running

    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.err)

    def stdout(self) -> str:
        with self._cond:
            return "\n".join(self.out)


# -- the store on disk ----------------------------------------------------------

def volume_dirs(store: Path) -> dict[int, Path]:
    """{volume id: directory} of the store's local volumes, as store.json lists them
    (a store of the first format lists plain names)."""
    try:
        config = json.loads((store / "store.json").read_bytes())
    except FileNotFoundError:  # not created yet
        return {}
    dirs = {}
    for i, v in enumerate(config["volumes"]):
        vid, url = (i, v) if isinstance(v, str) else (v["id"], v["url"])
        if "://" not in url:
            dirs[vid] = store / url
    return dirs


def pieces(store: Path) -> list[tuple[int, str, Path]]:
    """Every piece (part copy or shard) on the store's local volumes: (volume id, key, path)."""
    return [(vid, p.name, p) for vid, d in volume_dirs(store).items() for p in sorted(d.glob("*/*/*"))
            if p.is_file()]


def referenced_pieces(store: Path) -> set[tuple[int, str]]:
    """(volume id, key) of every copy or shard the manifests reference."""
    found = set()
    for m in (store / "manifests").glob("*.json"):
        if m.stem.isdigit():
            for part in json.loads(m.read_bytes())["parts"]:
                if part.get("shards"):
                    found |= {(s["volume"], f"{part['id']}.{j}") for j, s in enumerate(part["shards"])}
                else:
                    found |= {(v, part["id"]) for v in part.get("copies", [part.get("volume", 0)])}
    return found


def part_files(store: Path) -> dict[str, Path]:
    """Every part file on the store's volumes: {part id (file name): path}."""
    found = {}
    for _, key, path in pieces(store):
        assert key not in found, f"part id {key} is stored twice"
        found[key] = path
    return found


def read_manifest(store: Path, file_id: int) -> dict:
    return json.loads((store / "manifests" / f"{file_id}.json").read_bytes())


def write_manifest(store: Path, file_id: int, manifest: dict) -> None:
    (store / "manifests" / f"{file_id}.json").write_text(json.dumps(manifest))


def manifest_part_ids(store: Path) -> dict[int, list[str]]:
    """{file id: [part id, ...]} from every manifest on disk."""
    out = {}
    for p in (store / "manifests").glob("*.json"):
        if p.stem.isdigit():
            out[int(p.stem)] = [part["id"] for part in json.loads(p.read_bytes())["parts"]]
    return out


def part_path(store: Path, file_id: int, index: int) -> Path:
    part = read_manifest(store, file_id)["parts"][index]
    pid = part["id"]
    return volume_dirs(store)[part.get("volume", 0)] / pid[:2] / pid[2:4] / pid


def packed_piece(store: Path, file_id: int, index: int = 0, copy: int = 0) -> tuple[Path, int, int]:
    """Where a packed piece of a file is: (its pack's path, offset, length),
    found through the volume's own pack index (pfs.volumes.packs)."""
    from pfs.volumes.local import PACKS, LocalVolume

    part = read_manifest(store, file_id)["parts"][index]
    if part.get("shards"):
        vid, key = part["shards"][copy]["volume"], f"{part['id']}.{copy}"
    else:
        vid, key = part.get("copies", [part.get("volume", 0)])[copy], part["id"]
    root = volume_dirs(store)[vid]
    pack, offset, length = LocalVolume(root).packs.places(key, fresh=True)[0]
    return root / PACKS / pack, offset, length


def damage_bytes(path: Path, offset: int, length: int = 1) -> None:
    """Flip `length` bytes of a file from `offset` (a bad sector's worth of damage)."""
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        data = bytes(b ^ 0xFF for b in f.read(length))
        f.seek(offset)
        f.write(data)


def volume_keys(store: Path) -> set[tuple[int, str]]:
    """(volume id, key) of every piece on the store's local volumes, packed or
    not, as each volume lists them."""
    from pfs.volumes.local import LocalVolume

    return {(vid, k) for vid, d in volume_dirs(store).items() if d.is_dir() for k in LocalVolume(d).keys()}


def snapshot_rows(path: Path) -> dict:
    """files.json as one object of rows under "fields" and "files" (format 1, which
    pfs still reads and checks row by row: the form tests edit and write back)."""
    from pfs.registry.records import FILE_FIELDS
    from pfs.registry.snapshot import Columns

    columns = Columns(path)
    return {"format": 1, "next_id": columns.next_id, "fields": FILE_FIELDS,
            "files": list(map(list, zip(*(columns[f] for f in FILE_FIELDS))))}


def edit_records(store: Path, file_id: int, change) -> int:
    """Apply change(record dict) to every record of `file_id` in files.json and
    files.jsonl (the registry's snapshot and journal). Returns how many were changed."""
    changed = 0
    snap = store / "files.json"
    if snap.exists():
        data = snapshot_rows(snap)
        names = data["fields"]
        for row in data["files"]:
            rec = dict(zip(names, row))
            if rec["id"] == file_id:
                change(rec)
                row[:] = [rec[n] for n in names]
                changed += 1
        snap.write_text(json.dumps(data))
    journal = store / "files.jsonl"
    if journal.exists():
        lines = []
        for line in journal.read_bytes().splitlines():
            op = json.loads(line) if line.strip() else None
            if op and op["op"] == "put" and op["file"]["id"] == file_id:
                change(op["file"])
                changed += 1
                line = json.dumps(op).encode()
            lines.append(line + b"\n")
        journal.write_bytes(b"".join(lines))
    return changed


def tree_state(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, str]]:
    """{relative path: (size, sha256)} of every file under root (names in `skip` ignored)."""
    state = {}
    if root.exists():
        for p in sorted(root.rglob("*")):
            if p.is_file() and not p.is_symlink() and p.name not in skip:
                state[str(p.relative_to(root))] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return state


# -- small filesystems: tmpfs, else RLIMIT_FSIZE -----------------------------------

@dataclass
class SmallFs:
    """A directory whose writes fail once `size` bytes are used: a real tmpfs of that
    size ("tmpfs"), or, where mounting is impossible, a plain directory plus a
    preexec_fn that caps the size of any file the pfs process writes ("rlimit",
    writes then fail with EFBIG)."""

    path: Path
    size: int
    kind: str

    def preexec(self):
        if self.kind == "tmpfs":
            return None
        limit = self.size

        def cap() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        return cap

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, name: str = "filler") -> Path:
        """Use up every free byte (tmpfs only)."""
        assert self.kind == "tmpfs"
        filler = self.path / name
        with open(filler, "ab", buffering=0) as f:
            for block in (1 << 16, 4096, 1):
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\xa5" * block)
        assert self.free() == 0
        return filler


# -- the S3 server's address --------------------------------------------------------

BUCKET = "pfs-test"
ACCESS_KEY, SECRET_KEY = "pfs-test-access", "pfs-test-secret"
#: Chosen once per run: conftest puts the endpoint in the environment before any pfs starts.
PORTS = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
ENDPOINT = f"http://127.0.0.1:{PORTS['s3']}"


# -- tests/store/test_sharing.py and others: holding a pfs still ----------------------

def wait_until_read(shared, file_id: int, timeout: float = 30) -> None:
    """Wait until some pfs holds file `file_id` for reading: its shared lock shows
    in /proc/locks (an OFD lock on the store's files.lock), or its row in pfs_holds."""
    deadline = time.monotonic() + timeout
    while not read_held(shared, file_id):
        assert time.monotonic() < deadline, f"no pfs started reading file {file_id}"
        time.sleep(0.01)


def read_held(shared, file_id: int) -> bool:
    if shared.database:
        import psycopg

        with psycopg.connect(shared.store) as conn:
            return conn.execute("SELECT count(*) FROM pfs_holds WHERE file_id = %s AND NOT exclusive",
                                (file_id,)).fetchone()[0] > 0
    inode = (shared.store / "files.lock").stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "OFDLCK" and fields[3] == "READ" and fields[5].endswith(f":{inode}") and \
                fields[6] == str(file_id):
            return True
    return False


def stop(session: LiveSession) -> None:
    os.killpg(session.pid, signal.SIGSTOP)


def cont(session: LiveSession) -> None:
    os.killpg(session.pid, signal.SIGCONT)
