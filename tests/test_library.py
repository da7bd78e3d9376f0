"""pfs as a library: names as paths, the Python API (random-access reads,
streaming writes), the fsspec filesystem beyond fsspec's own suite, and the
shell's name commands."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import textwrap
import time

import pytest

import pfs
from pfs.errors import IntegrityError, NotFoundError, UsageError
from pfs.registry import FileEntry, NameIndex

from conftest import (CHUNK, env, kill_group, make_file, parse_list, part_files, part_path, pieces, read_manifest,
                      run_pfs)


@pytest.fixture
def store(tmp_path):
    with pfs.open(tmp_path / "store", workers=2, chunk_size=CHUNK) as s:
        yield s


def test_random_reads_across_part_boundaries_match_the_source(store, tmp_path):
    data = make_file(tmp_path / "src.bin", 5 * CHUNK + 123).read_bytes()
    store.put(tmp_path / "src.bin", "data/src.bin")
    rng = random.Random(7)
    with store.open("data/src.bin") as f:
        assert f.size == len(data)
        for _ in range(300):
            start = rng.choice([rng.randrange(len(data)), rng.randrange(1, 6) * CHUNK - rng.randrange(1, 50)])
            n = rng.randrange(1, 3 * CHUNK)
            f.seek(start)
            assert f.read(n) == data[start:start + n], (start, n)
        buf = bytearray(CHUNK + 10)
        f.seek(CHUNK - 5)
        assert f.readinto(buf) == len(buf) and bytes(buf) == data[CHUNK - 5:2 * CHUNK + 5]
        f.seek(-10, os.SEEK_END)
        assert f.read() == data[-10:] and f.read(5) == b""


def test_a_damaged_part_raises_naming_file_part_and_range(store, tmp_path):
    data = make_file(tmp_path / "src.bin", 3 * CHUNK).read_bytes()
    info = store.put(tmp_path / "src.bin", "d/x.bin")
    path = part_path(store.root, info.id, 1)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(raw)
    with store.open("d/x.bin") as f:
        assert f.read(CHUNK) == data[:CHUNK]  # the good part before it still reads
        with pytest.raises(IntegrityError) as exc:
            f.read(10)
    message = str(exc.value)
    assert "d/x.bin" in message and f"file {info.id}" in message, message
    assert f"part 1 bytes {CHUNK}-{2 * CHUNK - 1}: hash mismatch" in message, message


def test_streaming_write_stores_on_close_and_replaces_the_old_file(store, tmp_path):
    data = os.urandom(7 * CHUNK + 11)
    old = store.put(make_file(tmp_path / "old.bin", 100), "w/f.bin")
    with store.open("w/f.bin", "wb") as f:
        for i in range(0, len(data), 10_000):
            f.write(data[i:i + 10_000])
        assert store.info("w/f.bin").id == old.id, "readers get the old file until the new one is stored"
    new = store.info("w/f.bin")
    assert new.id != old.id and new.size == len(data) and new.parts == 8
    with pytest.raises(NotFoundError):
        store.info(old.id)  # replaced without keep: deleted
    with store.open("w/f.bin") as f:
        assert f.read() == data
    assert store.verify("w/f.bin") == []
    assert list((store.root / "tmp").iterdir()) == []


def test_a_reader_keeps_reading_the_file_it_opened_while_it_is_replaced(store, tmp_path):
    old = make_file(tmp_path / "old.bin", 4 * CHUNK).read_bytes()
    new = make_file(tmp_path / "new.bin", 2 * CHUNK).read_bytes()
    first = store.put(tmp_path / "old.bin", "r/f.bin")
    with store.open("r/f.bin") as f:
        assert f.read(10) == old[:10]
        second = store.put(tmp_path / "new.bin", "r/f.bin")
        with store.open("r/f.bin") as g:
            assert g.read() == new, "a new open gets the new file"
        assert f.read() == old[10:], "the open reader still reads the old file whole"
        assert store.info(first.id).status == "stored"
    with pytest.raises(NotFoundError):
        store.info(first.id)  # deleted when its last reader closed
    assert store.info("r/f.bin").id == second.id


def test_the_spool_of_a_streaming_write_is_bounded_by_the_memory_governor(tmp_path):
    limit = 1 << 20  # room for 8 parts of 64 KiB in flight (each counts twice: input and output)
    with pfs.open(tmp_path / "store", workers=1, chunk_size=CHUNK, max_memory=limit) as store:
        most = 0
        with store.open("big.bin", "wb") as f:
            for _ in range(60):
                f.write(os.urandom(CHUNK))
                most = max(most, len(os.listdir(store.root / "tmp")))
        assert store.info("big.bin").size == 60 * CHUNK
    # in the pool + queued for the one worker + held by the feeder + being written
    assert 1 <= most <= limit // (2 * CHUNK) + 1 + 1 + 1, most


def test_an_abandoned_writer_leaves_nothing(store, tmp_path):
    before = set(part_files(store.root))
    with pytest.raises(KeyError):
        with store.open("a/left.bin", "wb") as f:
            f.write(os.urandom(3 * CHUNK + 5))
            raise KeyError("the caller failed midway")
    f = store.open("a/dropped.bin", "wb")
    f.write(os.urandom(2 * CHUNK))
    del f  # never closed
    assert store.list("", recursive=True) == []
    assert store.core.files.all() == [], "no record left, not even a failed one"
    assert set(part_files(store.root)) == before
    assert list((store.root / "tmp").iterdir()) == []


WRITER = textwrap.dedent("""
    import os, sys, time, pfs
    if __name__ == "__main__":
        with pfs.open(sys.argv[1], workers=2, chunk_size=65536) as store:
            with store.open("stream/big.bin", "wb") as f:
                for i in range(10_000):
                    f.write(os.urandom(65536))
                    if i == 8:
                        print("parts stored", flush=True)
                    time.sleep(0.01)
""")


def test_kill_9_during_a_streaming_write_is_rolled_back_at_next_open(tmp_path):
    """A streaming write names its session like a put: another pfs opening the
    store meanwhile leaves it alone; once its process is killed, it is rolled back."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    root = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE, env=env(),
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == b"parts stored\n"
        time.sleep(0.2)
        assert part_files(root), "the writer stored parts before it was killed"
        alive = run_pfs(root, "list -r\n")
        assert alive.returncode == 0 and "rolled back" not in alive.stderr, alive.stderr
        assert parse_list(alive.stdout) == {1: ("stream/big.bin", "storing")}
        assert part_files(root), "another pfs removed the parts of a live write"
    finally:
        assert kill_group(proc)
    r = run_pfs(root, "list -r\n")
    assert r.returncode == 0, r.stderr
    assert "was storing when pfs stopped: rolled back" in r.stderr, r.stderr
    assert parse_list(r.stdout) == {1: ("stream/big.bin", "failed (interrupted)")}
    assert part_files(root) == {}
    assert list((root / "tmp").iterdir()) == []


def test_names_list_mv_keep_and_all_digit_names(store, tmp_path):
    src = make_file(tmp_path / "app.log", CHUNK + 1, "text")
    store.put(src, "logs/2026/")
    store.put(src, "logs/top.log")
    store.put(src, "123")
    assert [i.name for i in store.list()] == ["123", "logs/"]
    assert [i.name for i in store.list("logs")] == ["logs/2026/", "logs/top.log"]
    assert [i.name for i in store.list("/logs/", recursive=True)] == ["logs/2026/app.log", "logs/top.log"]
    assert store.info("./123").name == "123" and store.info("/123").name == "123"
    with pytest.raises(NotFoundError):
        store.info("123")  # all digits: the id 123
    kept = store.put(src, "logs/top.log", keep=True)
    older = [e for e in store.core.files.named("logs/top.log") if e.id != kept.id]
    assert len(older) == 1 and store.info(older[0].id).name == "logs/top.log"
    moved = store.mv("logs/top.log", "archive/top.log")
    assert moved.id == kept.id and store.info("logs/top.log").id == older[0].id  # the kept one shows again
    for bad in ("a//b", "../x", "a/./b", "x\ny", ""):
        with pytest.raises(UsageError):
            store.mv("archive/top.log", bad)


def test_the_current_name_survives_compaction_and_reopening(tmp_path):
    """A name resolves to the last file stored or renamed under it, not the
    highest id: the registry's order must survive its snapshot."""
    src = make_file(tmp_path / "a.bin", 10)
    root = tmp_path / "store"
    with pfs.open(root, workers=1, chunk_size=CHUNK) as s:
        first = s.put(src, "x")
        s.put(src, "y")
        second = s.put(src, "y", keep=True)
        s.mv(first.id, "y", keep=True)  # the older id becomes what y names
        assert s.info("y").id == first.id
        s.core.files.compact()
    with pfs.open(root, workers=1) as s:
        assert s.info("y").id == first.id
        assert {e.id for e in s.core.files.named("y")} >= {first.id, second.id}


def test_a_store_with_duplicate_plain_names_opens_and_resolves_the_newest(tmp_path):
    """A store made before names were paths may hold one name many times."""
    src = make_file(tmp_path / "a.bin", 3 * CHUNK)
    root = tmp_path / "store"
    r = run_pfs(root, f"put {src}\nwait\nput {src} --keep\nwait\nlist\n")
    assert r.returncode == 0, r.stderr
    rows = parse_list(r.stdout)
    assert rows == {1: ("a.bin", "stored (older version)"), 2: ("a.bin", "stored")}, r.stdout
    r = run_pfs(root, "info a.bin\ndelete a.bin\nwait\ninfo a.bin\n")
    assert r.returncode == 0, r.stderr
    ids = re.findall(r"^id:\s+(\d+)$", r.stdout, re.M)
    assert sorted(ids) == ["1", "2"], r.stdout


def test_shell_put_name_mv_and_list(tmp_path):
    src = make_file(tmp_path / "app.log", 2 * CHUNK)
    root = tmp_path / "store"
    r = run_pfs(root, f"put {src} logs/2026/\nwait\nput {src} logs/x.log\nwait\nmv logs/x.log old/x.log\n"
                      "list\nlist logs -r\nget logs/2026/app.log back.log\nwait\nput {src} a/../b\n", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == ("error: bad name 'a/../b': it has a '..' segment "
                                         "(names are paths like logs/2026/app.log)"), r.stderr
    assert "[2] renamed to old/x.log" in r.stdout
    assert ["-", "logs/", "-", "-", "directory", "-", "-", "-"] in [line.split() for line in r.stdout.splitlines()], r.stdout
    assert (tmp_path / "back.log").read_bytes() == src.read_bytes()


def test_fsspec_url_and_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    fsspec = pytest.importorskip("fsspec")
    root = str(tmp_path / "store")
    frame = pd.DataFrame({"n": range(5000), "s": [f"row {i}" for i in range(5000)]})
    with fsspec.open("pfs://tables/t.csv", "w", store=root) as f:
        frame.to_csv(f, index=False)
    back = pd.read_csv("pfs://tables/t.csv", storage_options={"store": root})
    assert back.equals(frame)
    fs = fsspec.filesystem("pfs", store=root)
    assert fs.ls("tables", detail=False) == ["tables/t.csv"]
    assert fs.cat_file("tables/t.csv", 0, 5) == b"n,s\n0"


def test_prefix_listing_stays_fast_at_100k_names():
    entries = [FileEntry(i, f"d{i % 100}/sub{i % 7}/f{i}", 0, "stored", 0, CHUNK, "zstd", "xxh3-128",
                         "0" * 32, 0.0) for i in range(1, 100_001)]
    t = time.perf_counter()
    index = NameIndex(entries)
    built = time.perf_counter() - t
    t = time.perf_counter()
    names, dirs = index.under("d42/", recursive=False)
    listed = time.perf_counter() - t
    assert names == [] and dirs == [f"d42/sub{k}/" for k in range(7)]
    assert len(index.under("d42/sub3/", recursive=True)[0]) == len([i for i in range(1, 100_001)
                                                                      if i % 100 == 42 and i % 7 == 3])
    assert built < 2 and listed < 0.01, (built, listed)


@pytest.mark.parametrize("layout", [{"copies": 2}, {"ec": "2+1"}])
def test_a_streamed_file_gets_its_copies_or_shards_and_reads_with_a_volume_gone(tmp_path, layout):
    """The writer places each part's pieces on distinct volumes like a put, and
    the reader reads through the volume layer: with every piece on one volume
    deleted, each part still reads from its other copy or its other shards."""
    root, vols = tmp_path / "store", [tmp_path / "vol1", tmp_path / "vol2"]
    for v in vols:
        v.mkdir()
    assert run_pfs(root, "".join(f"volume add {v}\n" for v in vols), cwd=tmp_path).returncode == 0
    data = random.Random(3).randbytes(4 * CHUNK + 5)
    with pfs.open(root, workers=2, chunk_size=CHUNK, **layout) as store:
        with store.open("w.bin", "wb") as f:
            f.write(data)
        parts = read_manifest(root, store.info("w.bin").id)["parts"]
        width = layout.get("copies") or 3
        assert all(len(set(p["copies"] or [s["volume"] for s in p["shards"]])) == width for p in parts), parts
        lost = [path for vid, _, path in pieces(root) if vid == 1]
        assert lost
        for path in lost:
            path.unlink()
        with store.open("w.bin") as f:
            assert f.read() == data
