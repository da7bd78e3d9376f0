"""pfs as a library: names as paths, the Python API (random-access reads,
streaming writes), the fsspec filesystem beyond fsspec's own suite, and the
shell's name commands."""

from __future__ import annotations

import collections
import contextlib
import io
import os
import random
import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import pfs
from pfs.errors import IntegrityError, NotFoundError, UsageError
from pfs.registry import NameIndex

from helpers import (CHUNK, Pfs, cont, env, error_lines, kill_group, make_file, parse_list, part_files, part_path,
                     pieces, read_manifest, run_pfs, stop, wait_until_read)


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


def test_a_script_without_a_main_guard_stores_and_reads_back(tmp_path):
    """multiprocessing runs a script's top level again in each process it starts:
    pfs's workers must not, or a script that opens a store at its top level (no
    `if __name__ == "__main__":`) would open it again in every worker."""
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent("""
        import sys, pfs
        with pfs.open(sys.argv[1], workers=2, chunk_size=65536) as store:
            store.put(sys.argv[2], "a.bin")
            print(store.get("a.bin", sys.argv[3]))
    """))
    source = make_file(tmp_path / "source.bin", 5 * CHUNK + 3)
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "store"), str(source), str(tmp_path / "out.bin")],
                       capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert (tmp_path / "out.bin").read_bytes() == source.read_bytes()


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


class CountedName(str):
    """A name that counts the comparisons and prefix tests made on it: the work of
    a listing, measured in steps rather than seconds."""

    steps = 0

    def __lt__(self, other: str) -> bool:
        CountedName.steps += 1
        return str.__lt__(self, other)

    def startswith(self, prefix, *args) -> bool:
        CountedName.steps += 1
        return str.startswith(self, prefix, *args)


def test_prefix_listing_costs_the_answer_not_the_store_at_100k_names():
    """Listing one directory of 100,000 names looks at a few hundred of them
    (bisections and the entries it returns), not at every name."""
    index = NameIndex((CountedName(f"d{i % 100}/sub{i % 7}/f{i}"), i) for i in range(1, 100_001))
    CountedName.steps = 0
    names, dirs = index.under("d42/", recursive=False)
    assert names == [] and dirs == [f"d42/sub{k}/" for k in range(7)]
    assert CountedName.steps < 500, CountedName.steps
    CountedName.steps = 0
    deep = index.under("d42/sub3/", recursive=True)[0]
    assert len(deep) == len([i for i in range(1, 100_001) if i % 100 == 42 and i % 7 == 3])
    assert CountedName.steps < 100, CountedName.steps  # two bisections; the slice compares nothing


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


# -- replacing a name: old or new, never neither (nor both) --------------------

HOLDER = textwrap.dedent("""
    import sys, time, pfs
    if __name__ == "__main__":
        with pfs.open(sys.argv[1], workers=1, chunk_size=65536) as store:
            with store.open("r/f.bin") as f:
                f.read(10)
                store.put(sys.argv[2], "r/f.bin")
                print("replaced", flush=True)
                time.sleep(60)
""")


def _part_file_count(data: Path) -> int:
    """Part files on the volumes under a store's data directory (not the volume markers)."""
    return sum(1 for p in (data / "volumes").glob("*/*/*/*") if p.is_file())


def _stored_rows(listing: dict[int, tuple[str, str]], name: str) -> list[tuple[int, str]]:
    return [(fid, status) for fid, (n, status) in listing.items() if n == name and status.startswith("stored")]


def test_kill_9_while_a_reader_holds_the_replaced_file_deletes_it_at_next_open(tmp_path):
    """The replaced file outlives its replacement's record while a reader holds
    it; a crash then must not leave it behind as a second version of the name."""
    root = tmp_path / "store"
    old = make_file(tmp_path / "old.bin", 5 * CHUNK)
    new = make_file(tmp_path / "new.bin", 3 * CHUNK + 1)
    assert run_pfs(root, f"put {old} r/f.bin\n").returncode == 0
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(new)], stdout=subprocess.PIPE, env=env(),
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == b"replaced\n"
    finally:
        assert kill_group(proc)
    r = run_pfs(root, f"list -r\nget r/f.bin {tmp_path / 'back.bin'}\n")
    assert r.returncode == 0, r.stderr
    listing = parse_list(r.stdout)
    assert _stored_rows(listing, "r/f.bin") == [(2, "stored")], r.stdout
    assert (tmp_path / "back.bin").read_bytes() == new.read_bytes()
    assert _part_file_count(root) == 4, "the replaced file's parts are gone"


def _replace_kill_loop(pfs_: Pfs, kills: int, capsys) -> None:
    """kill -9 a pfs that keeps replacing one name, at random instants; after
    each kill the name holds the old file or the new one, whole, exactly once,
    and no part of anything else is left on the volumes."""
    seed = int(os.environ.get("PFS_CRASH_SEED") or random.randrange(1 << 32))
    rng = random.Random(seed)
    sources = {"a.bin": 6 * CHUNK + 7, "b.bin": 9 * CHUNK + 1}
    originals = {make_file(pfs_.cwd / name, size).read_bytes(): -(-size // CHUNK) for name, size in sources.items()}
    data = Path(pfs_.options[1]) if pfs_.database else pfs_.store
    assert pfs_.run("put a.bin r/f.bin\n").returncode == 0
    counts = collections.Counter()
    last = None
    start = time.monotonic()
    try:
        while counts["kills"] < kills:
            counts["runs"] += 1
            assert counts["runs"] <= 4 * kills, f"only {counts['kills']} kills in {counts['runs']} runs"
            script = pfs_.cwd / "script.txt"
            script.write_text("".join(f"put {rng.choice(list(sources))} r/f.bin\nwait\n" for _ in range(30)))
            with script.open() as stdin:
                proc = subprocess.Popen(pfs_.argv(), stdin=stdin, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, cwd=pfs_.cwd, env=env(), start_new_session=True)
            while b"] stored r/f.bin" not in proc.stdout.readline():  # past start-up: replacing from now on
                assert proc.poll() is None, "pfs exited before its first put was stored"
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=rng.uniform(0, 0.5))
            counts["kills"] += kill_group(proc)
            proc.stdout.close()
            back = pfs_.cwd / "back.bin"
            back.unlink(missing_ok=True)
            r = pfs_.run(f"list -r\nget r/f.bin {back}\n")
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
            rows = _stored_rows(parse_list(r.stdout), "r/f.bin")
            assert [status for _, status in rows] == ["stored"], f"run {counts['runs']}:\n{r.stdout}"
            got = back.read_bytes()
            assert got in originals, f"run {counts['runs']}: r/f.bin is neither the old file nor the new"
            assert _part_file_count(data) == originals[got], f"run {counts['runs']}: parts left beside r/f.bin's"
            counts["replaced since the last kill"] += rows[0][0] != last
            last = rows[0][0]
    finally:
        with capsys.disabled():
            print(f"\nreplace kill loop (PFS_CRASH_SEED={seed}): "
                  + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) + f" in {time.monotonic() - start:.0f} s")


def test_kill_9_while_replacing_a_name_leaves_the_old_file_or_the_new(shared, capsys):
    _replace_kill_loop(shared, int(os.environ.get("PFS_REPLACE_KILLS", "4")), capsys)


@pytest.mark.soak
@pytest.mark.timeout(0)
def test_kill_9_while_replacing_a_name_soak(shared, capsys):
    _replace_kill_loop(shared, int(os.environ.get("PFS_SOAK_KILLS", "300")), capsys)


# -- a write that fails stores nothing -----------------------------------------

def _fail_writing(open_file, text: bool) -> None:
    """Write into what `open_file()` opens as a `with` block that fails midway."""
    with pytest.raises(RuntimeError):
        with open_file() as f:
            f.write("new text " * 20_000 if text else os.urandom(3 * CHUNK + 5))
            raise RuntimeError("the caller failed midway")


def test_a_write_that_fails_stores_nothing_and_the_name_keeps_its_file(tmp_path):
    """However the writer is wrapped (fsspec's text mode, fsspec.open, a
    TextIOWrapper, a try/finally that closes it), an exception on its way out
    of the writing abandons the file; a write inside an `except` block that
    ends well stores it."""
    fsspec = pytest.importorskip("fsspec")
    from pfs.library.writer import Writer

    root = tmp_path / "store"
    fs = fsspec.filesystem("pfs", store=str(root), workers=2, skip_instance_cache=True)
    store = fs.store
    old = store.put(make_file(tmp_path / "old.bin", 100), "x.txt")

    def finally_closed():
        w = Writer(store.core, "x.txt")
        try:
            w.write(b"partial")
            raise RuntimeError("the caller failed midway")
        finally:
            w.close()

    ways = {"fsspec text": (lambda: fs.open("pfs://x.txt", "w"), True),
            "fsspec binary": (lambda: fs.open("pfs://x.txt", "wb"), False),
            "fsspec.open text": (lambda: fsspec.open("pfs://x.txt", "w", store=str(root)), True),
            "api binary": (lambda: store.open("x.txt", "wb"), False),
            "text wrapper": (lambda: io.TextIOWrapper(store.open("x.txt", "wb")), True),
            "writer": (lambda: Writer(store.core, "x.txt"), False)}
    try:
        for way, (open_file, text) in ways.items():
            _fail_writing(open_file, text)
            assert [(i.name, i.id) for i in store.list(recursive=True)] == [("x.txt", old.id)], way
            assert [e.id for e in store.core.files.all()] == [old.id], f"{way}: a record was left"
        with pytest.raises(RuntimeError):
            finally_closed()
        assert [e.id for e in store.core.files.all()] == [old.id], "try/finally: a record was left"
        assert list((root / "tmp").iterdir()) == []
        assert len(part_files(root)) == 1
        try:
            raise KeyError("handled before the writer was opened")
        except KeyError:
            with fs.open("pfs://x.txt", "w") as f:
                f.write("written in an except block")
        assert fs.cat_file("x.txt") == b"written in an except block"
    finally:
        store.close()


def test_an_fsspec_transaction_stores_its_files_when_it_ends_well_and_none_when_it_fails(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("pfs", store=str(tmp_path / "store"), workers=2, skip_instance_cache=True)
    try:
        fs.pipe_file("t/a", b"old")
        with pytest.raises(RuntimeError):
            with fs.transaction:
                fs.pipe_file("t/a", b"new a")
                with fs.open("t/b", "w") as f:
                    f.write("new b")
                raise RuntimeError("the transaction failed")
        assert fs.find("t") == ["t/a"] and fs.cat_file("t/a") == b"old"
        with fs.transaction:
            fs.pipe_file("t/a", b"new a")
            fs.pipe_file("t/b", b"new b")
            assert fs.cat_file("t/a") == b"old", "a file of a transaction is stored when it ends"
        assert fs.cat({"t/a", "t/b"}) == {"t/a": b"new a", "t/b": b"new b"}
        assert len(fs.store.core.files.all()) == 2
    finally:
        fs.store.close()


# -- odd names: one rule, whatever the registry --------------------------------

def test_odd_names_behave_alike_on_every_registry(shared):
    """Names that are not UTF-8 (a local file name in another encoding) are
    refused with one line, as a PostgreSQL text cannot hold them; spaces,
    quotes, LIKE wildcards, non-ASCII text and names at the length limits are
    stored, listed and got back alike; control characters and overlong names
    are refused alike."""
    work = shared.cwd
    src = os.path.join(os.fsencode(work), b"caf\xe9 \xff.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(CHUNK + 5))
    data = make_file(work / "a.bin", CHUNK + 5).read_bytes()
    long_segment, longest = "s" * 255, "/".join(["é" * 127] * 4)[:-1]  # 255 bytes; 1023 + 1 bytes of UTF-8
    good = ["dir one/it's \"q\".bin", "p_c/x%", "pxc/y", "日本/データ.bin", f"{long_segment}/x", longest]
    script = ["put a.bin " + shlex.quote(name) for name in good]
    script += ['put "' + src.decode("utf-8", "surrogateescape") + '"',  # its own, non-UTF-8 name
               f"put a.bin {'é' * 128}/x", f"put a.bin {'x' * 256}", "put a.bin 'tab\there'", "put a.bin 'nul\x00x'",
               "wait", "mv 1 'caf\udce9.bin'", "list -r"]
    script += [f"get {shlex.quote(name)} {i}.out" for i, name in enumerate(good)]
    r = subprocess.run(shared.argv(), input="".join(line + "\n" for line in script).encode("utf-8", "surrogateescape"),
                       capture_output=True, cwd=work, env={**env(), "PYTHONIOENCODING": "utf-8:strict"}, timeout=90)
    out, err = r.stdout.decode(), r.stderr.decode("utf-8", "backslashreplace")
    assert r.returncode == 1 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 6 and all(line.startswith("error: bad name") for line in errors), err
    assert "'caf\\udce9 \\udcff.bin': it is not UTF-8 text" in errors[0], errors
    assert "'caf\\udce9.bin': it is not UTF-8 text" in errors[5], errors
    listing = parse_list(out)
    assert sorted(name for name, _ in listing.values()) == sorted(good), out
    for i, _ in enumerate(good):
        assert (work / f"{i}.out").read_bytes() == data
    for directory, names in (("p_c", ["p_c/x%"]), ("日本", ["日本/データ.bin"]), (long_segment, [f"{long_segment}/x"])):
        r = shared.run(f"list {directory}\n")
        assert r.returncode == 0 and [n for n, _ in parse_list(r.stdout).values()] == names, r.stdout


def test_a_get_of_the_old_file_ends_whole_while_another_pfs_replaces_it(shared, live_sessions, tmp_path):
    """Another pfs stores a new file under the name while a get of the old one
    runs: the get restores the old file whole; the old file, which the other
    pfs could not delete under the reader, is deleted by the next open once
    both are done, so the name is left with the new file alone."""
    old = make_file(shared.cwd / "old.bin", 8 << 20)
    new = make_file(shared.cwd / "new.bin", 3 * CHUNK)
    assert shared.run("put old.bin r/f.bin\n").returncode == 0
    reader = live_sessions(shared.store, shared.cwd, *shared.options, workers=1)
    reader.send(f"get r/f.bin {tmp_path / 'old.out'}")
    wait_until_read(shared, 1)
    stop(reader)
    try:
        assert not (tmp_path / "old.out").exists(), "the get ended before it could be stopped"
        r = shared.run(f"put new.bin r/f.bin\nwait\nget r/f.bin {tmp_path / 'new.out'}\n")
    finally:
        cont(reader)
    assert r.returncode == 0 and error_lines(r.stderr) == [], r.stderr
    assert (tmp_path / "new.out").read_bytes() == new.read_bytes()
    reader.send("wait", "exit")
    assert reader.close() == 0, reader.stderr()
    assert (tmp_path / "old.out").read_bytes() == old.read_bytes()
    r = shared.run("list -r\n")
    assert r.returncode == 0 and parse_list(r.stdout) == {2: ("r/f.bin", "stored")}, r.stdout + r.stderr


def test_a_ranged_read_touches_only_the_parts_it_needs(tmp_path):
    """Parts outside the range read are damaged (one missing, one corrupt): a
    read of the range between them succeeds, through the API and fsspec, even
    one that ends at the edge of a damaged part (no read-ahead into it)."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("pfs", store=str(tmp_path / "store"), workers=2, chunk_size=CHUNK, skip_instance_cache=True)
    store = fs.store
    try:
        data = make_file(tmp_path / "src.bin", 5 * CHUNK).read_bytes()
        info = store.put(tmp_path / "src.bin", "r.bin")
        part_path(store.root, info.id, 0).unlink()
        corrupt = part_path(store.root, info.id, 3)
        raw = bytearray(corrupt.read_bytes())
        raw[50] ^= 0xFF
        corrupt.write_bytes(raw)
        with store.open("r.bin") as f:
            f.seek(CHUNK)
            assert f.read(2 * CHUNK) == data[CHUNK:3 * CHUNK]
            f.seek(3 * CHUNK - 10)
            assert f.read(10) == data[3 * CHUNK - 10:3 * CHUNK], "read ahead into the damaged part"
            f.seek(5 * CHUNK - 100)
            assert f.read(100) == data[-100:]
            f.seek(3 * CHUNK - 10)
            with pytest.raises(IntegrityError):
                f.read(11)  # a read that needs a damaged part still fails
        assert fs.cat_file("r.bin", CHUNK + 7, 3 * CHUNK) == data[CHUNK + 7:3 * CHUNK]
        with fs.open("r.bin") as f:
            f.seek(3 * CHUNK - 1)
            assert f.read(1) == data[3 * CHUNK - 1:3 * CHUNK]
    finally:
        store.close()
