"""The real `pfs` process: errors as one line, exit statuses, modes, locking,
damage detection and crash recovery. Every test runs pfs as a subprocess
against a store in a temporary directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

import pfs as pfs_package
from helpers import CHUNK, Pfs, Result, env, error_lines, make_file, part_path, pieces, pool_workers

KEEP_SIZE = 3 * CHUNK + 17  # a multi-part file whose last part is short


# -- helpers ---------------------------------------------------------------------------

def no_traceback(r: Result) -> None:
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr


def without_notice(stderr: str) -> str:
    """stderr less the one line that says a new store was created."""
    return "".join(line for line in stderr.splitlines(keepends=True)
                   if not line.startswith("pfs: created a new store at "))


def one_error(r: Result, *fragments: str) -> str:
    """stderr is exactly one `error: ...` line containing every fragment; returns it."""
    no_traceback(r)
    lines = without_notice(r.stderr).splitlines()
    assert len(lines) == 1, f"expected one error line, got: {r.stderr!r}"
    assert lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def part_files(store: Path) -> list[Path]:
    return [path for _, _, path in pieces(store)]


def list_rows(stdout: str) -> dict[int, str]:
    """Rows of the plain `list` table, by file id."""
    return {int(m.group(1)): line for line in stdout.splitlines() if (m := re.match(r"^\s*(\d+)\s+\S", line))}


def popen(pfs: Pfs, *options: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(pfs.argv(*options), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=pfs.cwd, env=env(), **kw)


def assert_intact(pfs: Pfs, data: bytes, file_id: int = 1) -> None:
    """Get the file back in a fresh process and compare it byte for byte."""
    out = pfs.cwd / f"check-{uuid.uuid4().hex[:8]}.bin"
    r = pfs.run(f"get {file_id} {out.name}\n")
    assert r.returncode == 0, r.stderr
    no_traceback(r)
    assert out.read_bytes() == data
    out.unlink()


@pytest.fixture
def stored(pfs: Pfs) -> bytes:
    """A store holding file 1 (keep.bin, 4 parts); returns its bytes."""
    data = make_file(pfs.cwd / "keep.bin", KEEP_SIZE).read_bytes()
    r = pfs.run("put keep.bin\n")
    assert r.returncode == 0, r.stderr
    assert len(part_files(pfs.store)) == 4
    return data


# -- bad commands: one error line, nothing damaged -----------------------------------------

@pytest.fixture(scope="module")
def shared_store(tmp_path_factory) -> tuple[Path, bytes]:
    """One store with file 1 (keep.bin) for the tests that only read it; each
    test checks that its bad input changed nothing, so sharing is safe."""
    base = tmp_path_factory.mktemp("shared")
    (base / "work").mkdir()
    data = make_file(base / "work" / "keep.bin", KEEP_SIZE).read_bytes()
    r = Pfs(base / "store", base / "work").run("put keep.bin\n")
    assert r.returncode == 0, r.stderr
    return base / "store", data


@pytest.fixture
def spfs(shared_store, tmp_path) -> Pfs:
    """A pfs on the shared store, running in a fresh working directory."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "adir" / "keep.bin").mkdir(parents=True)
    (work / "existing.bin").write_bytes(b"do not overwrite me")
    return Pfs(shared_store[0], work)


def check_nothing_changed(pfs: Pfs, data: bytes, r: Result) -> None:
    """After a bad command (and `list` + `get 1 back.bin` in the same script)."""
    assert (pfs.cwd / "back.bin").read_bytes() == data
    rows = list_rows(r.stdout)
    assert list(rows) == [1] and "keep.bin" in rows[1] and "stored" in rows[1], r.stdout
    assert (pfs.cwd / "existing.bin").read_bytes() == b"do not overwrite me"
    assert (pfs.cwd / "adir" / "keep.bin").is_dir()
    assert sorted(p.name for p in pfs.cwd.iterdir()) == ["adir", "back.bin", "existing.bin"]
    assert len(part_files(pfs.store)) == 4


# Commands refused as they are read: their errors come out at once, in order.
BAD_COMMANDS = [
    ("frobnicate", ["unknown command 'frobnicate'"]),
    ("help frobnicate", ["unknown command"]),
    ("put", ["put: missing arguments"]),
    ("put a b c", ["put: too many arguments"]),
    ("put keep.bin a//b", ["bad name 'a//b'", "empty segment"]),
    ("put keep.bin ../up", ["bad name '../up'", "'..' segment"]),
    ("get", ["get: missing arguments"]),
    ("get 1 a b", ["get: too many arguments"]),
    ("delete", ["delete: missing arguments"]),
    ("delete 1 2", ["delete: too many arguments"]),
    ("list a b", ["list: too many arguments"]),
    ("list now", ["nothing is stored under now"]),
    ("info", ["info: missing arguments"]),
    ("verify", ["verify"]),
    ("verify 1 --all", ["verify"]),
    ('put "keep.bin', ["quote"]),
    ("get 1 'back.bin", ["quote"]),
    ("get 1 --bogus", ["unknown option '--bogus'"]),
    ("put missing.bin", ["missing.bin", "does not exist"]),
    ("put adir", ["adir", "is a directory"]),
    ("get one", ["no file named one"]),
    ("delete 1x", ["no file named 1x"]),
    ("info -1", ["unknown option '-1'", "typed ./-1 or after --"]),
    ("verify ./1", ["no file named 1"]),  # ./ makes it a name, not the id 1
    ("get 99", ["no file with id 99"]),
    ("delete 99", ["no file with id 99"]),
    ("info 99", ["no file with id 99"]),
    ("verify 99", ["no file with id 99"]),
    ("get 0", ["no file with id 0"]),
]


def test_each_bad_command_is_one_error_line_and_damages_nothing(spfs, shared_store):
    """All the bad commands in one script (one process, to keep the suite fast):
    each is refused when it is read, so stderr line i belongs to bad command i."""
    script = "".join(f"{bad}\n" for bad, _ in BAD_COMMANDS) + "list\nget 1 back.bin\n"
    r = spfs.run(script)
    assert r.returncode == 1
    no_traceback(r)
    lines = r.stderr.splitlines()
    for i, (bad, fragments) in enumerate(BAD_COMMANDS):
        assert i < len(lines), f"no error line for {bad!r}: {r.stderr}"
        assert lines[i].startswith("error: "), (bad, lines[i])
        for fragment in fragments:
            assert fragment in lines[i], (bad, fragment, lines[i])
    assert len(lines) == len(BAD_COMMANDS), f"extra output on stderr: {lines[len(BAD_COMMANDS):]}"
    check_nothing_changed(spfs, shared_store[1], r)


# Commands accepted and then failed by their job.
BAD_JOBS = [
    ("get 1 nodir/out.bin", ["nodir", "does not exist"]),
    ("get 1 nodir/", ["nodir"]),  # a trailing slash names a directory, and it is missing
    ("get 1 existing.bin", ["existing.bin", "already exists"]),
    ("get 1 adir", ["is a directory"]),  # adir/keep.bin is itself a directory
]


@pytest.mark.parametrize("bad, fragments", BAD_JOBS, ids=[b for b, _ in BAD_JOBS])
def test_bad_destination_is_one_error_line_and_damages_nothing(spfs, shared_store, bad, fragments):
    r = spfs.run(f"{bad}\nlist\nget 1 back.bin\n")
    assert r.returncode == 1, (r.stdout, r.stderr)
    one_error(r, *fragments)
    assert not (spfs.cwd / "nodir").exists()
    check_nothing_changed(spfs, shared_store[1], r)


def test_bad_command_in_one_shot_mode(spfs, shared_store):
    r = spfs.run("", "get", "one")
    assert r.returncode == 1
    one_error(r, "no file named one")
    r = spfs.run("", "frobnicate")
    assert r.returncode == 1
    one_error(r, "unknown command")
    r = spfs.run("", "put", "missing.bin")
    assert r.returncode == 1
    one_error(r, "does not exist")
    assert_intact(spfs, shared_store[1])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway, so there is no error to see")
def test_put_of_unreadable_file(pfs, stored):
    src = make_file(pfs.cwd / "secret.bin", 1000)
    src.chmod(0)
    r = pfs.run("put secret.bin\n")
    assert r.returncode == 1
    one_error(r, "secret.bin", "permission denied")
    assert_intact(pfs, stored)


def test_get_of_a_deleted_file(pfs, stored):
    r = pfs.run("delete 1\nwait\nget 1 out.bin\n")
    assert r.returncode == 1
    one_error(r, "no file with id 1")
    assert "[1] deleted keep.bin" in r.stdout
    assert not (pfs.cwd / "out.bin").exists()
    assert part_files(pfs.store) == []
    # and straight after the delete, without `wait`: the get queues behind the delete
    r = pfs.run("get 1 out.bin\n")
    one_error(r, "no file with id 1")


def test_existing_destination_needs_force(pfs, stored):
    existing = pfs.cwd / "existing.bin"
    existing.write_bytes(b"old")
    r = pfs.run("get 1 existing.bin\n")
    assert r.returncode == 1
    one_error(r, "already exists", "--force")
    assert existing.read_bytes() == b"old"
    r = pfs.run("get 1 existing.bin --force\n")
    assert r.returncode == 0, r.stderr
    assert without_notice(r.stderr) == ""
    assert existing.read_bytes() == stored
    assert sorted(p.name for p in pfs.cwd.iterdir()) == ["existing.bin", "keep.bin"]  # no temp files


def test_default_destination_is_the_name_in_the_current_directory(pfs, stored):
    (pfs.cwd / "keep.bin").unlink()
    r = pfs.run("get 1\n")
    assert r.returncode == 0, r.stderr
    assert (pfs.cwd / "keep.bin").read_bytes() == stored
    r = pfs.run("get 1\n")  # now it exists
    assert r.returncode == 1
    one_error(r, "already exists")


# -- a failed file --------------------------------------------------------------------------

def put_shrinking_file(pfs: Pfs) -> Result:
    """Make an honestly failed file: its source is truncated while the put reads it.

    The `storing` line is printed before the put job starts its worker pool, so
    the truncation lands before (or while) the parts are read; whichever part
    reads short or the final size check fails the put."""
    src = make_file(pfs.cwd / "shrinks.bin", 8 << 20)  # 128 parts
    proc = popen(pfs)
    proc.stdin.write(b"put shrinks.bin\n")
    proc.stdin.flush()
    first = proc.stdout.readline().decode()
    assert first.startswith("[1] storing shrinks.bin"), first
    os.truncate(src, 0)
    proc.stdin.write(b"wait\n")
    proc.stdin.close()
    out = first + proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    proc.wait(60)
    return Result(proc.returncode, out, err)


def test_source_that_shrinks_during_put_fails_cleanly(pfs):
    r = put_shrinking_file(pfs)
    assert r.returncode == 1
    line = one_error(r, "put 1 (shrinks.bin)")
    assert "internal error" not in line, (
        "a source file that shrinks is the user's doing, not an internal error: " + line)
    assert part_files(pfs.store) == []


def test_get_of_a_failed_file(pfs):
    r = put_shrinking_file(pfs)
    assert r.returncode == 1
    no_traceback(r)
    assert part_files(pfs.store) == [], "a failed put must leave no parts"
    r = pfs.run("list\nget 1 out.bin\n")
    assert "failed" in list_rows(r.stdout)[1], r.stdout
    assert "Error" not in r.stdout, "the reason speaks the user's language, not an exception class: " + r.stdout
    assert re.search(r"failed \(.*shrinks\.bin (shrank|changed size) while it was being stored\)", r.stdout), r.stdout
    assert r.returncode == 1
    one_error(r, "file 1 (shrinks.bin) is failed")
    assert not (pfs.cwd / "out.bin").exists()
    assert [p.name for p in pfs.cwd.iterdir()] == ["shrinks.bin"]
    # a failed file can be deleted, and then it is gone
    r = pfs.run("delete 1\nwait\nlist\n")
    assert r.returncode == 0, r.stderr
    assert "no files stored" in r.stdout


# -- bad options and bad stores ----------------------------------------------------------------

BAD_OPTIONS = [
    ["--chunk-size", "0"],
    ["--chunk-size", "-1"],
    ["--chunk-size", "lots"],
    ["--workers", "-1"],
    ["--workers", "0"],
    ["--workers", "two"],
    ["--workers", "257"],
    ["--max-memory", "abc"],
    ["--max-memory", "0"],
    ["--chunk-size", "64M", "--max-memory", "32M"],
    ["--codec", "lz4"],
    ["--hash", "sha1"],
    ["--bogus"],
]


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=[" ".join(o) for o in BAD_OPTIONS])
def test_bad_options_exit_2_with_one_error_line(spfs, shared_store, options):
    r = spfs.run("list\n", *options)
    assert r.returncode == 2, (r.stdout, r.stderr)
    one_error(r)
    assert r.stdout == ""
    assert_intact(spfs, shared_store[1])


@pytest.mark.parametrize("value, why", [
    ("1", "'1' is 1 B; a chunk size must be between 64.0 KiB and 1.0 GiB"),
    ("63k", "'63k' is 63.0 KiB; a chunk size must be between 64.0 KiB and 1.0 GiB"),
    ("2G", "'2G' is 2.0 GiB; a chunk size must be between 64.0 KiB and 1.0 GiB"),
    ("-4M", "not a size: '-4M'"),
])
def test_chunk_size_out_of_range_or_negative_says_why(pfs, value, why):
    r = pfs.run("list\n", "--chunk-size", value)
    assert r.returncode == 2
    line = one_error(r, "--chunk-size", why)
    assert "expected one argument" not in line
    assert not pfs.store.exists(), "a refused option created the store"


def test_new_store_is_announced_once(tmp_path):
    store = tmp_path / "new store"
    r = subprocess.run([sys.executable, "-m", "pfs", "--store", str(store), "list"], capture_output=True, text=True,
                       env=env(), cwd=tmp_path, timeout=60)
    assert r.returncode == 0
    assert r.stderr == f"pfs: created a new store at {store}\n"
    r = subprocess.run([sys.executable, "-m", "pfs", "--store", str(store), "list"], capture_output=True, text=True,
                       env=env(), cwd=tmp_path, timeout=60)
    assert r.returncode == 0 and r.stderr == ""


@pytest.mark.parametrize("name", ["list", "put", "ls", "repair"])
def test_store_named_like_a_command_is_refused_with_advice(tmp_path, name):
    """`pfs --store list` silently made a store called "list" in the current directory."""
    r = subprocess.run([sys.executable, "-m", "pfs", "--store", name], input="exit\n", capture_output=True,
                       text=True, env=env(), cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    assert r.stderr == (f"error: there is no store named '{name}': did you mean `pfs {name}`? "
                        f"(--store ./{name} creates a store of that name)\n"), r.stderr
    assert list(tmp_path.iterdir()) == []
    r = subprocess.run([sys.executable, "-m", "pfs", "--store", f"./{name}", "list"], capture_output=True,
                       text=True, env=env(), cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / name / "store.json").exists()


def test_chunk_too_large_for_memory_limit_says_what_to_do(pfs):
    r = pfs.run("list\n", "--chunk-size", "64M", "--max-memory", "32M")
    assert r.returncode == 2
    one_error(r, "--max-memory")


def test_file_with_parts_too_big_for_the_memory_limit(pfs):
    """Each file keeps the chunk size it was stored with. Reading a file whose
    parts do not fit the current --max-memory must either work or be refused
    with one clear line that says what to do -- not an internal error."""
    data = make_file(pfs.cwd / "wide.bin", 600 * 1024).read_bytes()
    r = pfs.run("put wide.bin\n", "--chunk-size", "256K")  # parts of 256 KiB need 512 KiB each
    assert r.returncode == 0, r.stderr
    small = ("--chunk-size", "64K", "--max-memory", "256K")  # fine for new files (2 x 64 KiB)
    r = pfs.run("get 1 out.bin\n", *small)
    no_traceback(r)
    if r.returncode == 0:
        assert (pfs.cwd / "out.bin").read_bytes() == data
    else:
        line = one_error(r, "--max-memory")
        assert "internal error" not in line, line
        assert not (pfs.cwd / "out.bin").exists()
    assert_intact(pfs, data)


def test_refused_options_do_not_set_up_a_store_with_them(tmp_path):
    """`--chunk-size 64M --max-memory 32M` is refused; the refused run must not
    leave behind a new store whose default chunk size is the refused 64M, which
    makes every later run with --max-memory 32M fail too."""
    store = tmp_path / "new-store"
    base = [sys.executable, "-m", "pfs", "--store", str(store)]
    r = subprocess.run(base + ["--chunk-size", "64M", "--max-memory", "32M", "list"],
                       capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 2
    config = store / "store.json"
    recorded = json.loads(config.read_bytes()).get("chunk_size") if config.exists() else None
    r2 = subprocess.run(base + ["--max-memory", "32M", "list"], capture_output=True, text=True, env=env(),
                        timeout=60)
    assert recorded != 64 << 20, "the refused chunk size was recorded as the new store's default"
    assert r2.returncode == 0, r2.stderr


def test_store_in_a_non_empty_directory_that_is_not_a_store(pfs, tmp_path):
    other = tmp_path / "not-a-store"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    r = subprocess.run([sys.executable, "-m", "pfs", "--store", str(other), "list"],
                       capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 2
    one_error(Result(r.returncode, r.stdout, r.stderr), "not a pfs store")
    assert [p.name for p in other.iterdir()] == ["notes.txt"], "pfs must not touch a directory it refused"
    assert (other / "notes.txt").read_text() == "mine"


def test_store_that_is_a_regular_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    r = subprocess.run([sys.executable, "-m", "pfs", "--store", str(path), "list"],
                       capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 2
    one_error(Result(r.returncode, r.stdout, r.stderr))
    assert path.read_text() == "x"


def test_store_made_by_a_newer_pfs_is_refused_untouched(spfs, shared_store):
    config = spfs.store / "store.json"
    original = config.read_bytes()
    newer = json.loads(original)
    newer["format"] = 99
    config.write_text(json.dumps(newer))
    try:
        before = sorted(str(p.relative_to(spfs.store)) for p in spfs.store.rglob("*"))
        r = spfs.run("list\n")
        assert r.returncode == 2
        one_error(r, "99")
        assert config.read_text() == json.dumps(newer)
        assert sorted(str(p.relative_to(spfs.store)) for p in spfs.store.rglob("*")) == before
    finally:
        config.write_bytes(original)
    assert_intact(spfs, shared_store[1])


@pytest.mark.parametrize("content", [b"[]", b'{"format": 1', b'{"format": 1}', b'{"format": "1"}', b""],
                         ids=["a list", "truncated", "missing keys", "format is a string", "empty"])
def test_damaged_store_json_is_one_error_line(spfs, shared_store, content):
    config = spfs.store / "store.json"
    original = config.read_bytes()
    config.write_bytes(content)
    try:
        r = spfs.run("list\n")
    finally:
        config.write_bytes(original)
    assert r.returncode == 2, (r.stdout, r.stderr)
    one_error(r)
    assert_intact(spfs, shared_store[1])


# -- script mode ----------------------------------------------------------------------------

def test_script_exit_status_is_0_when_everything_succeeds(pfs):
    a = make_file(pfs.cwd / "a.bin", 2 * CHUNK + 1).read_bytes()
    make_file(pfs.cwd / "b.log", 5 * CHUNK, "text")
    r = pfs.run("# a comment\n\nput a.bin\nput b.log\nwait\nlist\ninfo 1\nverify --all\njobs\nhelp\nget 1 a.out\n")
    assert r.returncode == 0, r.stderr
    assert without_notice(r.stderr) == ""
    assert (pfs.cwd / "a.out").read_bytes() == a
    assert "[1] verified a.bin" in r.stdout and "[2] verified b.log" in r.stdout


def test_script_exit_status_is_1_when_a_command_fails(pfs):
    make_file(pfs.cwd / "a.bin", 1000)
    r = pfs.run("put a.bin\nget 99\nlist\n")
    assert r.returncode == 1
    one_error(r, "no file with id 99")
    assert "[1] stored a.bin" in r.stdout  # the other commands still ran


def test_script_exit_status_is_1_when_a_job_fails(pfs):
    make_file(pfs.cwd / "a.bin", 1000)
    (pfs.cwd / "a.out").write_bytes(b"x")
    r = pfs.run("put a.bin\nget 1 a.out\n")  # the command is accepted; the job fails
    assert r.returncode == 1
    one_error(r, "already exists")


def test_exit_stops_reading_and_waits_for_jobs(pfs):
    data = make_file(pfs.cwd / "a.bin", 20 * CHUNK).read_bytes()
    r = pfs.run("put a.bin\nexit\nfrobnicate\n")
    assert r.returncode == 0, r.stderr
    assert without_notice(r.stderr) == ""
    assert "[1] stored a.bin" in r.stdout
    assert_intact(pfs, data)


def test_get_and_delete_right_after_put_wait_for_it(pfs):
    data = make_file(pfs.cwd / "big.bin", 40 * CHUNK + 3).read_bytes()
    r = pfs.run("put big.bin\nget 1 big.out\ninfo 1\ndelete 1\n")
    assert r.returncode == 0, r.stderr
    assert without_notice(r.stderr) == ""
    assert (pfs.cwd / "big.out").read_bytes() == data
    out = r.stdout
    stored, restored, deleted = out.find("[1] stored big.bin"), out.find("[1] restored big.bin"), \
        out.find("[1] deleted big.bin")
    assert -1 < stored < restored < deleted, out
    assert re.search(r"^status: +stored$", out, re.M), out  # info waited for the put too
    assert part_files(pfs.store) == []
    r = pfs.run("list\n")
    assert "no files stored" in r.stdout


def test_second_process_sees_the_files_and_ids_are_never_reused(pfs):
    a = make_file(pfs.cwd / "a.bin", 2 * CHUNK).read_bytes()
    b = make_file(pfs.cwd / "b c.txt", 3 * CHUNK, "text").read_bytes()
    r = pfs.run('put a.bin --keep\nput "b c.txt"\nput a.bin --keep\n')  # either may be stored last
    assert r.returncode == 0, r.stderr
    r = pfs.run("list\ndelete 3\n")
    rows = list_rows(r.stdout)
    assert sorted(rows) == [1, 2, 3]
    assert "a.bin" in rows[1] and "b c.txt" in rows[2]
    assert all("stored" in row for row in rows.values())
    assert_intact(pfs, b, 2)
    assert_intact(pfs, a, 1)
    r = pfs.run("put a.bin\n")
    assert "[4] storing a.bin" in r.stdout, "id 3 was deleted and must not be reused"


def test_second_pfs_shares_the_store_and_repair_is_refused_while_it_does(pfs):
    first = popen(pfs)  # stdin stays open: it has the store open
    try:
        sessions = pfs.store / "sessions"
        deadline = time.monotonic() + 30
        while not (sessions.is_dir() and [n for n in os.listdir(sessions) if not n.startswith(".")]):
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first pfs never registered its session"
            time.sleep(0.01)
        for r in (pfs.run("list\n"), pfs.run("", "list")):  # script and one-shot mode share it
            assert r.returncode == 0 and error_lines(r.stderr) == [], r.stderr
        r = pfs.run("", "repair")
        assert r.returncode == 2
        one_error(r, f"in use by pid {first.pid}; repair needs it alone")
    finally:
        first.stdin.close()
        assert first.wait(60) == 0
    r = pfs.run("", "repair")  # alone now
    assert r.returncode == 0, r.stderr


def test_version_and_help(pfs):
    r = pfs.run("", "--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"pfs {pfs_package.__version__}"
    r = pfs.run("", "--help")
    assert r.returncode == 0
    assert "usage:" in r.stdout and "--max-memory" in r.stdout and "--store" in r.stdout
    assert without_notice(r.stderr) == ""


def test_one_shot_put_then_get(pfs):
    data = make_file(pfs.cwd / "in.bin", 5 * CHUNK + 9).read_bytes()
    r = pfs.run("", "put", "in.bin")
    assert r.returncode == 0, r.stderr
    assert "[1] storing in.bin" in r.stdout and "[1] stored in.bin" in r.stdout
    r = pfs.run("", "get", "1", "out.bin")
    assert r.returncode == 0, r.stderr
    assert (pfs.cwd / "out.bin").read_bytes() == data
    r = pfs.run("", "get", "1", "out.bin")
    assert r.returncode == 1
    one_error(r, "already exists")
    r = pfs.run("", "get", "1", "out.bin", "--force")
    assert r.returncode == 0, r.stderr


def test_names_with_spaces(pfs, tmp_path):
    data = make_file(pfs.cwd / "my data file.log", 2 * CHUNK + 5, "text").read_bytes()
    r = pfs.run("", "put", "my data file.log")  # one-shot: the shell already split it
    assert r.returncode == 0, r.stderr
    assert "[1] storing my data file.log" in r.stdout
    r = pfs.run('list\nget 1 "restored copy.log"\n')
    assert r.returncode == 0, r.stderr
    assert "my data file.log" in list_rows(r.stdout)[1]
    assert (pfs.cwd / "restored copy.log").read_bytes() == data


def test_get_into_a_directory_uses_only_the_base_name(pfs, tmp_path):
    src = pfs.cwd / "sub" / "dir" / "x.bin"
    src.parent.mkdir(parents=True)
    data = make_file(src, 2 * CHUNK + 1).read_bytes()
    dest = tmp_path / "dest"
    dest.mkdir()
    r = pfs.run(f"put sub/dir/x.bin\nget 1 {dest}\n")
    assert r.returncode == 0, r.stderr
    assert "[1] storing x.bin" in r.stdout
    assert [p.name for p in dest.iterdir()] == ["x.bin"]
    assert (dest / "x.bin").read_bytes() == data


# -- damage ---------------------------------------------------------------------------

def test_flipped_byte_is_detected_and_nothing_is_written(pfs, stored):
    manifest = json.loads((pfs.store / "manifests" / "1.json").read_bytes())
    part = manifest["parts"][2]
    assert part["codec"] == "none"  # random data is stored raw, so a flipped byte is a hash mismatch
    path = part_path(pfs.store, 1, 2)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    byte_range = f"bytes {2 * CHUNK}-{3 * CHUNK - 1}"

    r = pfs.run("get 1 out.bin\n")
    assert r.returncode == 1
    line = one_error(r, "get 1 (keep.bin): damaged part 2", byte_range)
    assert line.count("keep.bin") == 1, "the file is named once"
    assert sorted(p.name for p in pfs.cwd.iterdir()) == ["keep.bin"], "no output and no temp file"

    r = pfs.run("verify 1\n")
    assert r.returncode == 1
    one_error(r, "verify 1 (keep.bin): damaged part 2", byte_range)

    r = pfs.run("verify --all\n")
    assert r.returncode == 1
    one_error(r, "part 2", byte_range)

    r = pfs.run("get 1 salvaged.bin --salvage\n")  # writes what is readable, zero-fills the rest
    assert r.returncode == 1
    no_traceback(r)
    assert "part 2" in r.stderr
    salvaged = (pfs.cwd / "salvaged.bin").read_bytes()
    assert salvaged[: 2 * CHUNK] == stored[: 2 * CHUNK]
    assert salvaged[2 * CHUNK:3 * CHUNK] == bytes(CHUNK)
    assert salvaged[3 * CHUNK:] == stored[3 * CHUNK:]


# -- kill -9 -----------------------------------------------------------------------------------

def wait_group_gone(pgid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
        if not alive:
            return
        time.sleep(0.02)
    pytest.fail(f"processes of group {pgid} survived SIGKILL")


def test_kill_9_during_put_leaves_earlier_files_intact_and_no_half_stored_file(pfs):
    keep = make_file(pfs.cwd / "keep.bin", KEEP_SIZE).read_bytes()
    make_file(pfs.cwd / "big.bin", 64 << 20)  # 1024 parts
    proc = popen(pfs, start_new_session=True)
    try:
        proc.stdin.write(b"put keep.bin\nwait\nput big.bin\n")
        proc.stdin.flush()
        seen = []
        while not (seen and seen[-1].startswith("[2] storing big.bin")):
            line = proc.stdout.readline().decode()
            assert line, f"pfs ended early: {seen} {proc.stderr.read()}"
            seen.append(line)
        assert any(line.startswith("[1] stored keep.bin") for line in seen), seen
        time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        wait_group_gone(proc.pid)
    assert proc.returncode == -signal.SIGKILL

    r = pfs.run("list\nget 1 keep.out\n")
    assert r.returncode == 0, r.stderr
    no_traceback(r)
    assert (pfs.cwd / "keep.out").read_bytes() == keep
    rows = list_rows(r.stdout)
    assert sorted(rows) == [1, 2]
    assert "stored" in rows[1]
    parts = part_files(pfs.store)
    if "failed (interrupted)" in rows[2]:
        assert "file 2 (big.bin) was storing when pfs stopped: rolled back" in r.stderr
        assert len(parts) == 4, f"{len(parts) - 4} part files of the interrupted put remain"
        assert not (pfs.store / "manifests" / "2.json").exists()
    else:  # it finished before the kill: then it is whole
        assert "stored" in rows[2], rows[2]
        assert len(parts) == 4 + 1024
        v = pfs.run("verify 2\n")
        assert v.returncode == 0, v.stderr
    assert list((pfs.store / "tmp").iterdir()) == []
    # the store keeps working: ids go on, the interrupted file can be deleted
    r = pfs.run("put keep.bin --keep\ndelete 2\n")
    assert r.returncode == 0, r.stderr
    assert "[3] storing keep.bin" in r.stdout
    assert len(part_files(pfs.store)) == 8
    (pfs.cwd / "big.bin").unlink()


# -- what the commands say ------------------------------------------------------------

def test_info_is_a_summary_and_lists_parts_on_request(pfs):
    make_file(pfs.cwd / "wide.log", 300 * CHUNK + 5, "text")
    r = pfs.run("put wide.log\ninfo 1\n")
    assert r.returncode == 0, r.stderr
    info = r.stdout.split("[1] stored wide.log", 1)[1]
    lines = info.splitlines()[1:]
    labels = [line.split(":", 1)[0] for line in lines if ":" in line and not line.startswith("(")]
    assert labels == ["name", "id", "size", "status", "parts", "stored", "codec", "redundancy", "present", "volumes",
                      "hash", "digest", "created"], info
    assert re.search(r"^parts: +301 of 64\.0 KiB$", info, re.M), info
    assert re.search(r"^codec: +zstd \(300 parts\), none \(1 part\)$", info, re.M), info  # 5 bytes stay raw
    assert re.search(r"^stored: +\d+\.\d KiB on disk \(0\.\d% of its size\)$", info, re.M), info
    assert "(info 1 --parts lists the 301 parts)" in info
    assert len(lines) < 15, "info without --parts must not list every part"
    r = pfs.run("info 1 --parts\n")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if re.match(r"^\s*\d+\s+\d+\s+\d+\s+\d+\s+(zstd|none)\s", line)]
    assert len(rows) == 301, r.stdout


def test_verify_all_says_what_it_skipped_and_sums_up(pfs):
    make_file(pfs.cwd / "a.bin", 3 * CHUNK)
    make_file(pfs.cwd / "b.bin", 2 * CHUNK)
    r = put_shrinking_file(pfs)  # file 1 fails
    r = pfs.run("put a.bin\nput b.bin\nverify --all\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"^\[1\] skipped shrinks\.bin: it is failed \(.*\), not stored$", out, re.M), out
    assert "[2] verified a.bin" in out and "[3] verified b.bin" in out, out
    assert out.rstrip().splitlines()[-1] == "verify --all: 2 verified, 0 damaged, 1 skipped", out
    part = next(p for p in part_files(pfs.store))
    part.write_bytes(b"garbage")
    r = pfs.run("verify --all\n")
    assert r.returncode == 1
    assert r.stdout.rstrip().splitlines()[-1] == "verify --all: 1 verified, 1 damaged, 1 skipped", r.stdout


def test_get_says_when_it_starts_and_help_shows_aliases_and_repair(pfs):
    make_file(pfs.cwd / "a.bin", 3 * CHUNK)
    r = pfs.run("put a.bin\nget 1 out.bin\nhelp\nhelp repair\nhelp quit\n")
    assert r.returncode == 0, r.stderr
    assert "[1] restoring a.bin (192.0 KiB, 3 parts)\n" in r.stdout, r.stdout
    for usage in ("exit (also: quit)", "list [PREFIX] [-r|--recursive] [--json] (also: ls)",
                  "delete NAME|ID | delete -r PREFIX (also: rm)", "pfs --store DIR repair"):
        assert usage in r.stdout, (usage, r.stdout)
    assert "Rebuilds damaged metadata" in r.stdout and "lost+found" in r.stdout
    r = pfs.run("repair\n")
    assert r.returncode == 1
    one_error(r, "repair cannot run inside a session", f"pfs --store {pfs.store} repair")


def test_script_exit_says_which_jobs_it_waits_for(pfs):
    make_file(pfs.cwd / "a.bin", 40 * CHUNK)
    r = pfs.run("put a.bin\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["[1] storing a.bin (2.5 MiB, 40 parts)", "[1] waiting for put of a.bin to finish"], lines
    assert lines[2].startswith("[1] stored a.bin"), lines


def test_closed_stdin_is_an_empty_script(pfs):
    r = subprocess.run(pfs.argv(), stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env(),
                       cwd=pfs.cwd, timeout=60, preexec_fn=lambda: os.close(0))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("options, status", [(["list"], 0), (["bogus"], 1), (["--chunk-size", "1", "list"], 2)])
def test_closed_stderr_keeps_the_exit_status(pfs, options, status):
    r = subprocess.run(pfs.argv(*options), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env(), cwd=pfs.cwd,
                       timeout=60, preexec_fn=lambda: os.close(2))
    assert r.returncode == status


def test_commands_that_read_metadata_start_no_process(pfs, live_sessions):
    """list, info, mv, volume list and help answer from the registry: no forkserver
    or worker is started for them (pfs stays one process); a get starts the pool."""
    make_file(pfs.cwd / "a.bin", 100_000)
    assert pfs.run("put a.bin\nput a.bin b/c.bin\n").returncode == 0
    s = live_sessions(pfs.store, pfs.cwd)
    s.send("list", "list -r", "list b", "info 1", "mv 2 d.bin", "volume list", "help", "info 2")
    s.wait_for(r"^name:\s+d\.bin")
    assert psutil.Process(s.pid).children(recursive=True) == []
    s.send("get 1 out.bin", "wait")
    s.wait_for(r"restored a\.bin")
    assert pool_workers(s.pid), "the test cannot see workers: it proves nothing"
    assert s.close() == 0


def imported_modules(r: subprocess.CompletedProcess) -> set[str]:
    """The modules a run under `python -X importtime` imported (its children's too)."""
    return {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("command", [["list"], ["info", "1"], ["volume", "list"], ["help"]], ids=" ".join)
def test_one_shot_metadata_commands_import_no_worker_pool(pfs, command):
    """A command that needs no worker does not import multiprocessing, which was
    a tenth of its start-up; a get, whose work runs in the pool, does."""
    make_file(pfs.cwd / "a.bin", 1000)
    assert pfs.run("put a.bin\n").returncode == 0

    def run(*tokens: str) -> set[str]:
        r = subprocess.run([sys.executable, "-X", "importtime", *pfs.argv(*tokens)[1:]], capture_output=True,
                           text=True, cwd=pfs.cwd, timeout=60, env=env())
        assert r.returncode == 0, r.stderr[-2000:]
        return imported_modules(r)

    pool, imported = {"multiprocessing", "concurrent.futures.process"}, run(*command)
    assert "pfs.store.facade" in imported and not pool & imported
    assert pool <= run("get", "1", "out.bin"), "the test cannot see the pool's imports: it proves nothing"
