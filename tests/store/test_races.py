"""Check-then-act races between pfs processes and threads, on a JSON store and
on a PostgreSQL store (the `shared` fixture in conftest), run as real processes:

* puts, renames and deletes of one name from three processes at once, in a
  random mix: a file reported renamed is never lost, no replaced file is left
  behind under the name, a delete of a name deletes only what the name gave,
  every stored file reads back, and every piece on the volumes is referenced;
* a drain waits for the puts begun before it (it says "drained" only when the
  volume holds nothing), and `volume remove` during such a put names the put;
* a streaming writer and a reader shared by several threads.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pfs
from helpers import CHUNK, env, make_file, parse_list, pieces, referenced_pieces, run_at_once

MIB = 1 << 20
NAME = "shared/n.bin"


def pieces_and_references(shared) -> tuple[set[str], set[str]]:
    """(keys of the pieces on the store's volumes, keys its manifests reference)."""
    if not shared.database:
        return {key for _, key, _ in pieces(shared.store)}, {key for _, key in referenced_pieces(shared.store)}
    import psycopg

    data = Path(shared.options[shared.options.index("--data") + 1])
    on_disk = {p.name for p in (data / "volumes").glob("*/*/*/*") if p.is_file()}
    with psycopg.connect(shared.store) as conn:
        referenced = {row[0] for row in conn.execute("SELECT id FROM pfs_parts")}
        shards = {f"{row[0]}.{j}" for row in conn.execute("SELECT id, shards FROM pfs_parts")
                  for j in range(len(row[1]))}
    return on_disk, (referenced - {s.rsplit(".", 1)[0] for s in shards}) | shards


def tagged_source(path: Path, tag: str, rng: random.Random) -> Path:
    """A source whose content starts with its own name, so a stored file says what it must equal."""
    path.write_bytes(f"{tag}\n".encode() + os.urandom(rng.randrange(1, 3 * CHUNK)))
    return path


def one_name_script(rng: random.Random, p: int, ops: int, cwd: Path) -> str:
    """Random puts onto NAME, renames of NAME to fresh names, deletes of NAME, waits."""
    lines = []
    for k in range(ops):
        roll = rng.random()
        if roll < 0.45:
            src = tagged_source(cwd / f"src-{p}-{k}", f"src-{p}-{k}", rng)
            lines.append(f"put {src.name} {NAME}")
        elif roll < 0.75:
            lines.append(f"mv {NAME} moved/{p}-{k}.bin")
        elif roll < 0.9:
            lines.append(f"delete {NAME}")
        else:
            lines.append("wait")
    return "".join(line + "\n" for line in lines)


def run_all(shared, scripts: list[str], timeout: float = 240) -> list[tuple[int, str, str]]:
    return run_at_once(shared.argv(), scripts, shared.cwd, timeout)


def check_reads_back(shared, tmp_path: Path, listing: dict[int, tuple[str, str]], seed: int) -> None:
    out = tmp_path / "back"
    out.mkdir()
    r = shared.run("".join(f"get {i} {out / str(i)}\n" for i in listing), timeout=120)
    assert r.returncode == 0, f"seed {seed}:\n{r.stderr}"
    for i in listing:
        data = (out / str(i)).read_bytes()
        tag = data.split(b"\n", 1)[0].decode()
        assert data == (shared.cwd / tag).read_bytes(), f"seed {seed}: file {i} is not its source {tag}"


@pytest.mark.timeout(600)
def test_puts_renames_and_deletes_of_one_name_from_three_processes(shared, tmp_path):
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    first = tagged_source(shared.cwd / "src-first", "src-first", rng)
    assert shared.run(f"put {first.name} {NAME}\n").returncode == 0
    scripts = [one_name_script(rng, p, 20, shared.cwd) for p in range(3)]
    outputs = run_all(shared, scripts)
    renamed: dict[int, list[str]] = {}
    deleted: set[int] = set()
    for _, stdout, stderr in outputs:
        assert "Traceback" not in stderr and "internal error" not in stderr, f"seed {seed}:\n{stderr}"
        for line in stderr.splitlines():
            assert line.startswith(("error:", "pfs:")), f"seed {seed}: {line}"
        for i, new in re.findall(r"^\[(\d+)\] renamed to (\S+)$", stdout, re.M):
            renamed.setdefault(int(i), []).append(new)
        deleted |= {int(i) for i in re.findall(r"^\[(\d+)\] deleted ", stdout, re.M)}
    r = shared.run("list -r\n")
    assert r.returncode == 0, r.stderr
    listing = parse_list(r.stdout)
    assert all(status == "stored" for _, status in listing.values()), f"seed {seed}: a file left behind:\n{r.stdout}"
    names = [name for name, _ in listing.values()]
    assert len(names) == len(set(names)), f"seed {seed}: a replaced file is left under its name:\n{r.stdout}"
    for i, new in renamed.items():
        assert len(new) == 1, f"seed {seed}: file {i} was renamed twice from {NAME}: {new}"
        assert listing.get(i) == (new[0], "stored"), f"seed {seed}: file {i}, renamed to {new[0]}, is gone"
        assert i not in deleted, f"seed {seed}: file {i} was renamed to {new[0]}, and deleted as {NAME}"
    assert not deleted & set(listing), f"seed {seed}: files reported deleted are listed"
    check_reads_back(shared, tmp_path, listing, seed)
    on_disk, referenced = pieces_and_references(shared)
    assert on_disk == referenced, f"seed {seed}: orphan pieces {on_disk - referenced}, missing {referenced - on_disk}"


# -- a drain, or a remove, while a put begun before it places pieces -----------------------------

def held(volume: Path) -> list[Path]:
    """The piece files a volume directory holds (everything but its marker)."""
    return [Path(d, n) for d, _, names in os.walk(volume) for n in names if not n.startswith("pfs-volume.json")]


def start_held_put(shared, live_sessions, tmp_path: Path):
    """Two volumes, and a put of a big file in its own pfs, held still (SIGSTOP)
    once it has placed pieces on volume 1; returns (session, volume 1, source)."""
    vol1 = tmp_path / "vol1"
    vol1.mkdir()
    assert shared.run(f"volume add {vol1}\n").returncode == 0
    big = make_file(shared.cwd / "big.bin", 12 * MIB)
    a = live_sessions(shared.store, shared.cwd, *shared.options)
    a.send("put big.bin")
    a.wait_for(r"^\[\d+\] storing big\.bin")
    deadline = time.monotonic() + 60
    while not held(vol1) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(a.pid, signal.SIGSTOP)
    assert held(vol1), "the put placed nothing on volume 1"
    return a, vol1, big


@pytest.mark.timeout(300)
def test_a_drain_waits_for_a_put_begun_before_it(shared, live_sessions, tmp_path):
    seed = int.from_bytes(os.urandom(4), "big")
    a, vol1, big = start_held_put(shared, live_sessions, tmp_path)
    script = shared.cwd / "drain.txt"
    script.write_text("volume drain 1\nwait\n")
    with script.open() as stdin:
        drain = subprocess.Popen(shared.argv(), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=shared.cwd, env=env(), start_new_session=True)
    time.sleep(random.Random(seed).uniform(0.5, 2.5))  # the drain has begun, the put is still held
    os.killpg(a.pid, signal.SIGCONT)
    out, err = drain.communicate(timeout=240)
    a.wait_for(r"^\[\d+\] stored big\.bin", timeout=240)
    assert a.close() == 0, a.stderr()
    assert "volume 1 is drained" in out, f"seed {seed}:\n{out}\n{err}"
    assert held(vol1) == [], f"seed {seed}: volume 1 was said drained, and holds {len(held(vol1))} pieces"
    r = shared.run("volume remove 1\nget big.bin back.bin\n")
    assert r.returncode == 0, f"seed {seed}:\n{r.stderr}"
    assert (shared.cwd / "back.bin").read_bytes() == big.read_bytes()


@pytest.mark.timeout(300)
def test_volume_remove_during_a_put_names_the_put(shared, live_sessions, tmp_path):
    a, vol1, big = start_held_put(shared, live_sessions, tmp_path)
    try:
        r = shared.run("volume remove 1\n")
    finally:
        os.killpg(a.pid, signal.SIGCONT)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "big.bin) is being stored" in errors[0] and "repair" not in errors[0], r.stderr
    a.wait_for(r"^\[\d+\] stored big\.bin", timeout=240)
    assert a.close() == 0, a.stderr()
    r = shared.run("volume drain 1\nwait\nvolume remove 1\nget big.bin back.bin\n")
    assert r.returncode == 0, r.stderr
    assert (shared.cwd / "back.bin").read_bytes() == big.read_bytes()


# -- two drains moving pieces of the same files at once ---------------------------------------------

@pytest.mark.timeout(300)
def test_two_drains_of_different_volumes_at_once_lose_no_copy(shared, tmp_path):
    """Files with 2 copies on volumes 1 and 2 among others, both volumes drained
    at once by two pfs: each moves pieces of the same files. Every part keeps
    both copies, on volumes that keep them, and no piece is left unreferenced
    (before moves were exclusive per file, the second drain to record undid the
    first one's moves, whose old pieces it had removed: parts with no copy left)."""
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    dirs = [tmp_path / f"v{i}" for i in range(1, 5)]
    for d in dirs:
        d.mkdir()
    sources = [make_file(shared.cwd / f"f{k}.bin", rng.randrange(20, 50) * CHUNK + rng.randrange(CHUNK))
               for k in range(3)]
    setup = "".join(f"volume add {d}\n" for d in dirs) + "".join(f"put {f.name}\nwait\n" for f in sources)
    assert shared.run(setup, "--copies", "2", timeout=120).returncode == 0
    drains = [f"volume drain {v}\nwait\n" for v in rng.sample([1, 2], 2)]
    for code, out, err in run_all(shared, drains):
        assert code == 0 and "is drained" in out, f"seed {seed}:\n{out}\n{err}"
    r = shared.run("".join(f"verify {f.name}\n" for f in sources))
    assert r.returncode == 0 and r.stdout.count("every part is intact") == len(sources), f"seed {seed}:\n{r.stderr}"
    r = shared.run("volume drain 1\nwait\nvolume drain 2\nwait\nlist\n")
    assert r.returncode == 0, f"seed {seed}:\n{r.stderr}"
    assert "volume 1 is drained" in r.stdout and "volume 2 is drained" in r.stdout, f"seed {seed}:\n{r.stdout}"
    assert held(dirs[0]) == held(dirs[1]) == [], f"seed {seed}: a drained volume holds pieces"
    listing = r.stdout.split("volume 2 is drained", 1)[1]
    assert listing.count(" 2/2 ") == len(sources), f"seed {seed}: a part lost a copy:\n{listing}"
    r = shared.run("".join(f"verify {f.name}\nget {f.name} back-{f.name}\n" for f in sources))
    assert r.returncode == 0, f"seed {seed}:\n{r.stderr}"
    assert all((shared.cwd / f"back-{f.name}").read_bytes() == f.read_bytes() for f in sources)
    data = shared.store if not shared.database else Path(shared.options[shared.options.index("--data") + 1])
    on_disk = {p.name for d in [*dirs, Path(data) / "volumes"] for p in held(d)}
    referenced = pieces_and_references(shared)[1]
    assert on_disk == referenced, f"seed {seed}: orphan pieces {on_disk - referenced}, missing {referenced - on_disk}"


# -- one writer, one reader, several threads ------------------------------------------------------

RECORD = 1000  # bytes a thread writes at once; a record is whole wherever it lands


def records(thread: int, count: int) -> list[bytes]:
    return [f"{thread:02d}:{k:05d}:".encode().ljust(RECORD, bytes([65 + thread])) for k in range(count)]


def test_a_writer_shared_by_threads_stores_every_write_whole(tmp_path):
    threads, count = 6, 150
    with pfs.open(tmp_path / "store", workers=2, chunk_size=CHUNK) as store:
        w = store.open("threads.bin", "wb")
        barrier = threading.Barrier(threads)

        def write(t: int) -> None:
            barrier.wait()
            for r in records(t, count):
                w.write(r)
        workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        w.close()
        with store.open("threads.bin") as f:
            data = f.read()
    assert len(data) == threads * count * RECORD
    got = sorted(data[i:i + RECORD] for i in range(0, len(data), RECORD))
    assert got == sorted(r for t in range(threads) for r in records(t, count))


def test_a_reader_shared_by_threads_returns_each_byte_once(tmp_path):
    threads, count = 6, 400
    all_records = [r for t in range(threads) for r in records(t, count // threads)]
    src = tmp_path / "src.bin"
    src.write_bytes(b"".join(all_records))
    with pfs.open(tmp_path / "store", workers=2, chunk_size=CHUNK) as store:
        store.put(src, "r.bin")
        f = store.open("r.bin")
        raw = f.raw  # the Reader itself, as callers of .raw use it
        seen: list[bytes] = []
        lock = threading.Lock()
        barrier = threading.Barrier(threads)

        def read() -> None:
            barrier.wait()
            mine = []
            while chunk := raw.read(RECORD // 2):
                mine.append(chunk)
            with lock:
                seen.extend(mine)
        workers = [threading.Thread(target=read) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        f.close()
    assert sum(map(len, seen)) == src.stat().st_size, "a byte was returned twice, or not at all"


# -- a streaming writer killed while a part waits in its spool ------------------------------------

SPOOLING_WRITER = """
import os, sys, pfs
if __name__ == "__main__":
    with pfs.open(sys.argv[1], workers=2, chunk_size=65536) as store:
        with store.open("stream/big.bin", "wb") as f:
            for i in range(10_000):
                f.write(os.urandom(65536))
                if i == 2:
                    print("writing", flush=True)
"""


def test_kill_9_while_a_part_waits_in_the_spool_leaves_nothing_in_tmp(tmp_path):
    """The pool held still (SIGSTOP of its workers), the writer spools parts
    into STORE/tmp/ and waits; kill -9 then, and the next open rolls the write
    back and leaves tmp/ empty (a spool file names the process that wrote it)."""
    from helpers import frozen_workers, kill_group, part_files, run_pfs

    script = tmp_path / "writer.py"
    script.write_text(SPOOLING_WRITER)
    root = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE, env=env(),
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == b"writing\n"
        with frozen_workers(proc.pid):
            deadline = time.monotonic() + 30
            while not list((root / "tmp").iterdir()) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert list((root / "tmp").iterdir()), "no part waited in the spool"
            kill_group(proc)
    finally:
        kill_group(proc)
    r = run_pfs(root, "list -r\n")
    assert r.returncode == 0 and "was storing when pfs stopped: rolled back" in r.stderr, r.stderr
    assert part_files(root) == {}
    assert list((root / "tmp").iterdir()) == []
