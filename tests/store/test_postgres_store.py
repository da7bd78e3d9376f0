"""A store whose metadata live in a real PostgreSQL server (see conftest's
`postgres` fixture): creation, its data directory remembered, repair refused,
a server that cannot be reached, a server restart in the middle of a put or
of a get, connections cut by the server, two machines sharing the store, a
record field newer than the store (a client stopped past its session TTL: see
test_sharing)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from helpers import (CHUNK, LiveSession, Pfs, Result, assert_clean_stderr, env, error_lines, make_file, parse_list,
                     wait_until_read)
from postgres_server import free_port

MIB = 1 << 20


def test_created_on_first_use_and_its_data_directory_remembered(postgres_uri, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    a = make_file(work / "a.bin", 200_000)
    r = Pfs(postgres_uri, work).run("list\n")
    assert r.returncode == 2 and error_lines(r.stderr) == [
        f"error: there is no pfs store in {postgres_uri} yet (create one with --data DIR: the directory where "
        "its part data go)"], r.stderr
    r = Pfs(postgres_uri, work, ("--data", str(tmp_path / "data"))).run("put a.bin\n")
    assert r.returncode == 0, r.stderr
    assert f"pfs: created a new store at {postgres_uri} (part data in {tmp_path / 'data'})" in r.stderr
    r = Pfs(postgres_uri, work).run(f"list\nget 1 {tmp_path / 'a.out'}\n")  # no --data: the settings say where
    assert r.returncode == 0, r.stderr
    assert parse_list(r.stdout) == {1: ("a.bin", "stored")}
    assert (tmp_path / "a.out").read_bytes() == a.read_bytes()
    r = Pfs(postgres_uri, work).run("", "repair")
    assert r.returncode == 2 and error_lines(r.stderr) == [
        "error: repair rebuilds the files of a directory store; a database store has none (every update of a "
        "database store is a transaction: there is nothing to rebuild)"], r.stderr


def test_unreachable_server_is_one_error_line(tmp_path):
    uri = f"postgresql://pfs:secret@127.0.0.1:{free_port()}/nowhere"
    r = Pfs(uri, tmp_path).run("list\n")
    assert r.returncode == 2
    assert_clean_stderr(r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and errors[0].startswith(  # what happened, not "check that the server runs"
        f"error: nothing accepts connections at 127.0.0.1:{uri.split(':')[3].split('/')[0]}"), r.stderr
    assert "secret" not in r.stderr


def test_server_restart_in_the_middle_of_a_put(postgres, postgres_uri, tmp_path, live_sessions):
    """The server restarts (every connection cut, every advisory lock gone) while a
    pfs is in the middle of a put, held still with SIGSTOP. Another pfs opening
    the store meanwhile does not take it for dead (its heartbeat is fresh): the
    put is left alone, and once resumed it reconnects and completes."""
    work = tmp_path / "work"
    work.mkdir()
    options = ("--data", str(tmp_path / "data"))
    keep = make_file(work / "keep.bin", 300_000)
    big = make_file(work / "big.bin", 24 * MIB)
    assert Pfs(postgres_uri, work, options).run("list\n").returncode == 0
    long_session_ttl(postgres_uri)
    session: LiveSession = live_sessions(postgres_uri, work, *options)
    session.send("put keep.bin", "wait", "put big.bin")
    session.wait_for(r"^\[2\] storing big\.bin")
    os.killpg(session.pid, signal.SIGSTOP)  # held in the middle of its put while the server restarts
    try:
        postgres.restart()
        r = Pfs(postgres_uri, work).run("list\n")
    finally:
        os.killpg(session.pid, signal.SIGCONT)
    assert r.returncode == 0 and "rolled back" not in r.stderr, r.stderr
    assert parse_list(r.stdout) == {1: ("keep.bin", "stored"), 2: ("big.bin", "storing")}
    session.wait_for(r"^\[2\] stored big\.bin")
    assert session.close() == 0, session.stderr()
    assert_clean_stderr(session.stderr())

    r = Pfs(postgres_uri, work).run(f"list\nget 1 {tmp_path / 'keep.out'}\nget 2 {tmp_path / 'big.out'}\n")
    assert r.returncode == 0, r.stderr
    assert parse_list(r.stdout) == {1: ("keep.bin", "stored"), 2: ("big.bin", "stored")}
    assert (tmp_path / "keep.out").read_bytes() == keep.read_bytes()
    assert (tmp_path / "big.out").read_bytes() == big.read_bytes()
    assert len(data_parts(tmp_path / "data")) == 5 + 384  # exactly the parts of the stored files


def long_session_ttl(uri: str) -> None:
    """A session TTL no restart of a loaded machine outlasts: a client is then dead
    to the others only if the server restart lost what it holds."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("UPDATE pfs_settings SET value = '300' WHERE key = 'session_ttl'")


def data_parts(data: Path) -> list[Path]:
    """The part files in a PostgreSQL store's data directory (not the volume marker)."""
    return [p for p in (data / "volumes").glob("*/*/*/*") if p.is_file()]


def test_a_get_keeps_its_hold_on_the_file_across_a_server_restart(postgres, postgres_uri, tmp_path, live_sessions):
    """A get holds its file so that no pfs deletes it meanwhile; a server restart
    (which drops every advisory lock) in the middle of the get does not lose that
    hold: a delete from another pfs is still refused, and the get completes."""
    work = tmp_path / "work"
    work.mkdir()
    options = ("--data", str(tmp_path / "data"))
    big = make_file(work / "big.bin", 32 * MIB)
    assert Pfs(postgres_uri, work, options).run("put big.bin\n").returncode == 0
    long_session_ttl(postgres_uri)
    reader = live_sessions(postgres_uri, work, *options, workers=1)
    reader.send(f"get 1 {tmp_path / 'big.out'}")
    reader.wait_for(r"^\[1\] restoring big\.bin")
    shared = Pfs(postgres_uri, work, options)
    wait_until_read(shared, 1)
    os.killpg(reader.pid, signal.SIGSTOP)
    try:
        assert not (tmp_path / "big.out").exists(), "the get ended before it could be stopped"
        postgres.restart()
        r = shared.run("delete 1\n")
    finally:
        os.killpg(reader.pid, signal.SIGCONT)
    assert r.returncode == 1 and error_lines(r.stderr) == [
        "error: delete 1 (big.bin): it is being read by a get or verify (of this pfs or another) (try again once "
        "it is done)"], r.stderr
    assert reader.close() == 0, reader.stderr()
    assert_clean_stderr(reader.stderr())
    assert (tmp_path / "big.out").read_bytes() == big.read_bytes()
    r = shared.run("delete 1\nwait\nlist\n")
    assert r.returncode == 0 and parse_list(r.stdout) == {}, r.stderr
    assert data_parts(tmp_path / "data") == []


def test_connections_cut_by_the_server_mid_put_and_when_idle(postgres_uri, tmp_path, live_sessions):
    """pg_terminate_backend of every connection of a pfs (its commands', its
    heartbeat's) in the middle of a put, and again while it waits for a command:
    it reconnects without a word, its put completes and the next commands work."""
    import psycopg

    work = tmp_path / "work"
    work.mkdir()
    big = make_file(work / "big.bin", 8 * MIB)
    small = make_file(work / "small.bin", 3 * CHUNK)
    session = live_sessions(postgres_uri, work, "--data", str(tmp_path / "data"))

    def cut() -> int:
        with psycopg.connect(postgres_uri, autocommit=True) as conn:
            return len(conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                    "application_name = 'pfs' AND pid <> pg_backend_pid()").fetchall())

    session.send("put big.bin")
    session.wait_for(r"^\[1\] storing big\.bin")
    os.killpg(session.pid, signal.SIGSTOP)  # in the middle of its put
    try:
        assert cut() >= 2, "pfs had no connection to cut"
    finally:
        os.killpg(session.pid, signal.SIGCONT)
    session.wait_for(r"^\[1\] stored big\.bin")
    session.send("list")
    session.wait_for(r"^ +1 +big\.bin ")
    assert cut() >= 1, "pfs had no connection to cut"  # idle, waiting for a command
    session.send("put small.bin", "wait", f"get 1 {tmp_path / 'big.out'}", f"get 2 {tmp_path / 'small.out'}")
    assert session.close() == 0, session.stderr()
    assert_clean_stderr(session.stderr())
    assert (tmp_path / "big.out").read_bytes() == big.read_bytes()
    assert (tmp_path / "small.out").read_bytes() == small.read_bytes()
    r = Pfs(postgres_uri, work).run("list\n")
    assert parse_list(r.stdout) == {1: ("big.bin", "stored"), 2: ("small.bin", "stored")}, r.stderr
    assert len(data_parts(tmp_path / "data")) == 128 + 3


def test_a_record_field_newer_than_the_store_becomes_a_column_with_its_default(postgres_uri, tmp_path):
    import psycopg

    work = tmp_path / "work"
    work.mkdir()
    a = make_file(work / "a.bin", 100_000)
    assert Pfs(postgres_uri, work, ("--data", str(tmp_path / "data"))).run("put a.bin\n").returncode == 0
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        conn.execute('ALTER TABLE pfs_files DROP COLUMN "session"')  # as made by a pfs before sessions,
        conn.execute("DROP TABLE pfs_schema")  # which recorded no schema version either
    r = Pfs(postgres_uri, work).run(f"list\nget 1 {tmp_path / 'a.out'}\n")
    assert r.returncode == 0, r.stderr
    assert parse_list(r.stdout) == {1: ("a.bin", "stored")}
    assert (tmp_path / "a.out").read_bytes() == a.read_bytes()


def machine(tmp_path, name: str, uri: str, data) -> tuple[Path, Callable[[str], Result]]:
    """A pfs as on a machine of its own: its own working directory, HOME, XDG
    directories and TMPDIR; it shares only what a deployment shares, the
    database and the part directory. Returns (its working directory, run)."""
    root = tmp_path / name
    dirs = {key: root / key.lower() for key in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
                                                "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "TMPDIR")}
    work = root / "work"
    for d in (work, *dirs.values()):
        d.mkdir(parents=True)
    own_env = {**env(), **{key: str(d) for key, d in dirs.items()}}

    def run(script: str) -> Result:
        proc = subprocess.run(Pfs(uri, work, ("--data", str(data))).argv(), input=script, capture_output=True,
                              text=True, cwd=work, env=own_env, timeout=60)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return work, run


def test_two_machines_share_the_database_and_the_part_directory(postgres_uri, tmp_path):
    data = tmp_path / "shared-data"
    a_work, on_a = machine(tmp_path, "a", postgres_uri, data)
    b_work, on_b = machine(tmp_path, "b", postgres_uri, data)
    photo = make_file(a_work / "photo.bin", 5 * CHUNK + 3)
    r = on_a("put photo.bin\n")
    assert r.returncode == 0, r.stderr
    r = on_b("list\nget 1 copy.bin\n")
    assert r.returncode == 0 and not error_lines(r.stderr), r.stderr
    assert parse_list(r.stdout) == {1: ("photo.bin", "stored")}
    assert (b_work / "copy.bin").read_bytes() == photo.read_bytes()
    r = on_b("delete photo.bin\nwait\nlist\n")
    assert r.returncode == 0 and parse_list(r.stdout) == {}, r.stderr
    r = on_a("list\nget 1 again.bin\n")
    assert parse_list(r.stdout) == {} and error_lines(r.stderr) == [
        "error: no file with id 1 (`list` shows the stored files)"], r.stderr
    assert not (a_work / "again.bin").exists()
    assert data_parts(data) == []  # its parts went with it
