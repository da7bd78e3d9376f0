"""Many pfs processes on one store, as real processes (each test runs on a JSON
store and on a PostgreSQL store, see the `shared` fixture in conftest):

* three processes put, list and delete at once: ids are unique, each sees the
  others' files, every file comes back byte for byte;
* a process opening the store while another is in the middle of a put (held
  still with SIGSTOP) leaves that put alone; kill -9 of the putter then leaves
  a put that the next process rolls back, the others' files untouched;
* a delete is refused while another process reads the file, which comes back whole;
* repair needs the store alone: refused naming the pid of a live pfs;
* a process stopped past the session TTL: alive to the others on one machine,
  dead (rolled back) on a PostgreSQL store, where it then goes on anew;
* four processes run a random mix of puts, gets, deletes and lists.
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

import pytest
from helpers import (CHUNK, assert_clean_stderr, cont, error_lines, make_file, parse_list, pieces, referenced_pieces,
                     run_at_once, stop, wait_until_read)

MIB = 1 << 20


def stored_ids(stdout: str) -> dict[int, str]:
    return {int(i): name for i, name in re.findall(r"^\[(\d+)\] stored (\S+):", stdout, re.M)}


def test_three_processes_put_list_delete_at_once(shared, tmp_path):
    names = [[f"p{n}-{k}.bin" for k in range(4)] for n in range(3)]
    for group in names:
        for k, name in enumerate(group):
            make_file(shared.cwd / name, k * CHUNK + 7 * (k + 1))
    scripts = ["".join(f"put {name}\nlist\n" for name in group) + "delete 1\n" * (n == 0) for n, group in
               enumerate(names)]
    outputs = [(out, err) for _, out, err in run_at_once(shared.argv(), scripts, shared.cwd, 120)]
    stored: dict[int, str] = {}
    for (out, err), group in zip(outputs, names):
        assert "Traceback" not in err, err
        mine = stored_ids(out)
        assert sorted(mine.values()) == sorted(group), (out, err)
        assert not set(mine) & set(stored), f"an id was given twice: {mine} {stored}"
        stored |= mine
    assert sorted(stored) == list(range(1, 13))
    # each process saw the others' files at some point, or at the latest the last listing does
    r = shared.run("list\n")
    listing = parse_list(r.stdout)
    # the delete finds file 1 stored, or being stored or not there yet (then refused)
    deleted = 1 if re.search(r"^\[1\] deleted ", outputs[0][0], re.M) else None
    expected = {fid: (name, "stored") for fid, name in stored.items() if fid != deleted}
    assert listing == expected, r.stdout
    out = tmp_path / "out"
    out.mkdir()
    r = shared.run("".join(f"get {fid} {out / str(fid)}\n" for fid in expected))
    assert r.returncode == 0, r.stderr
    for fid, (name, _) in expected.items():
        assert (out / str(fid)).read_bytes() == (shared.cwd / name).read_bytes()


def test_open_during_anothers_put_leaves_it_alone_and_kill9_is_rolled_back_later(shared, live_sessions, tmp_path):
    keep = make_file(shared.cwd / "keep.bin", 3 * CHUNK + 1)
    big = make_file(shared.cwd / "big.bin", 24 * MIB)
    first = live_sessions(shared.store, shared.cwd, *shared.options)
    first.send("put keep.bin", "wait", "put big.bin")
    first.wait_for(r"^\[2\] storing big\.bin")
    stop(first)  # held still in the middle of its put
    try:
        r = shared.run("list\n")
    finally:
        cont(first)
    assert r.returncode == 0, r.stderr
    assert "rolled back" not in r.stderr, r.stderr
    assert parse_list(r.stdout) == {1: ("keep.bin", "stored"), 2: ("big.bin", "storing")}
    first.wait_for(r"^\[2\] stored big\.bin")

    first.send("put big.bin")
    first.wait_for(r"^\[3\] storing big\.bin")
    assert first.kill(), "pfs had already exited"
    r = shared.run(f"list\nget 1 {tmp_path / 'keep.out'}\nget 2 {tmp_path / 'big.out'}\n")
    assert r.returncode == 0, r.stderr
    assert "file 3 (big.bin) was storing when pfs stopped: rolled back" in r.stderr, r.stderr
    assert parse_list(r.stdout) == {1: ("keep.bin", "stored"), 2: ("big.bin", "stored"),
                                    3: ("big.bin", "failed (interrupted)")}
    assert (tmp_path / "keep.out").read_bytes() == keep.read_bytes()
    assert (tmp_path / "big.out").read_bytes() == big.read_bytes()


def test_delete_is_refused_while_another_process_reads_the_file(shared, live_sessions, tmp_path):
    big = make_file(shared.cwd / "big.bin", 64 * MIB)
    assert shared.run("put big.bin\n").returncode == 0
    reader = live_sessions(shared.store, shared.cwd, *shared.options, workers=1)
    reader.send(f"get 1 {tmp_path / 'big.out'}")
    reader.wait_for(r"^\[1\] restoring big\.bin")
    wait_until_read(shared, 1)
    stop(reader)
    try:
        assert not (tmp_path / "big.out").exists(), "the get ended before it could be stopped"
        r = shared.run("delete 1\n")
    finally:
        cont(reader)
    assert r.returncode == 1
    assert error_lines(r.stderr) == ["error: delete 1 (big.bin): it is being read by a get or verify (of this pfs or "
                                     "another) (try again once it is done)"], r.stderr
    assert reader.close() == 0, reader.stderr()
    assert (tmp_path / "big.out").read_bytes() == big.read_bytes()
    r = shared.run("delete 1\nwait\nlist\n")
    assert r.returncode == 0 and parse_list(r.stdout) == {}, r.stderr


def test_a_reader_killed_holds_nothing(shared, live_sessions, tmp_path):
    """kill -9 of a pfs in the middle of a get: its hold on the file goes with it
    (a lock the kernel drops; a row of a session whose lock the server dropped),
    so a delete from a pfs that had the store open already proceeds at once."""
    make_file(shared.cwd / "big.bin", 16 * MIB)
    assert shared.run("put big.bin\n").returncode == 0
    deleter = live_sessions(shared.store, shared.cwd, *shared.options)
    deleter.send("list")
    deleter.wait_for(r"^ +1 +big\.bin ")  # open before the kill: it claims no dead session meanwhile
    reader = live_sessions(shared.store, shared.cwd, *shared.options, workers=1)
    reader.send(f"get 1 {tmp_path / 'big.out'}")
    wait_until_read(shared, 1)
    stop(reader)
    assert not (tmp_path / "big.out").exists(), "the get ended before it could be stopped"
    assert reader.kill(), "pfs had already exited"
    deleter.send("delete 1")
    assert deleter.close() == 0, deleter.stderr()
    assert "[1] deleted big.bin" in deleter.stdout()
    r = shared.run("list\n")
    assert r.returncode == 0 and parse_list(r.stdout) == {}, r.stderr
    on_disk, referenced = part_files_and_references(shared)
    assert on_disk == referenced == set()


def test_repair_needs_the_store_alone(shared, live_sessions):
    if shared.database:
        return  # repair rebuilds a directory store's files; a database store has none to rebuild
    make_file(shared.cwd / "a.bin", CHUNK)
    first = live_sessions(shared.store, shared.cwd, *shared.options)
    first.send("put a.bin", "wait", "jobs")
    first.wait_for(r"^no jobs running$")
    r = shared.run("", "repair")
    assert r.returncode == 2, r.stderr
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and f"in use by pid {first.pid}" in errors[0], r.stderr
    assert first.close() == 0
    r = shared.run("", "repair")
    assert r.returncode == 0, r.stderr


def test_kill9_of_one_of_three_while_the_others_put(shared, live_sessions, tmp_path):
    """Three pfs put at once; one is killed with SIGKILL in the middle of its put.
    The others' puts all complete; the next pfs to open (one of the others, if it
    was still opening, or a later one) rolls back the killed one's put, and every
    stored file comes back byte for byte."""
    sources = {}
    for n in range(3):
        for k in range(3):
            sources[f"p{n}-{k}.bin"] = make_file(shared.cwd / f"p{n}-{k}.bin", (8 if n == 0 else 1) * MIB + k)
    sessions = [live_sessions(shared.store, shared.cwd, *shared.options) for _ in range(3)]
    for n, session in enumerate(sessions):
        session.send(*(f"put p{n}-{k}.bin" for k in range(3)))
    victim = sessions[0]
    victim.wait_for(r"^\[\d+\] storing p0-")
    assert victim.kill(), "the pfs to kill had already exited"
    stored: dict[int, str] = {}
    for session in sessions[1:]:
        assert session.close() == 0, session.stderr()
        mine = stored_ids(session.stdout())
        assert sorted(mine.values()) == [f"p{sessions.index(session)}-{k}.bin" for k in range(3)]
        stored |= mine
    killed = {int(i): name for i, name in re.findall(r"^\[(\d+)\] storing (p0-\S+) ", victim.stdout(), re.M)}
    out = tmp_path / "out"
    out.mkdir()
    r = shared.run("list\n" + "".join(f"get {fid} {out / str(fid)}\n" for fid in stored))
    assert r.returncode == 0, r.stderr
    listing = parse_list(r.stdout)
    for fid, name in stored.items():
        assert listing[fid] == (name, "stored")
        assert (out / str(fid)).read_bytes() == sources[name].read_bytes()
    interrupted = {fid for fid, (_, status) in listing.items() if status == "failed (interrupted)"}
    assert interrupted and interrupted <= set(killed), (listing, killed)
    notices = r.stderr + "".join(session.stderr() for session in sessions[1:])  # whoever opened after the kill
    for fid in interrupted:
        assert f"file {fid} ({killed[fid]}) was storing when pfs stopped: rolled back" in notices, notices
    assert set(listing) == set(stored) | set(killed)
    assert all(listing[fid][1] in ("stored", "failed (interrupted)") for fid in killed), listing


def test_a_client_stopped_past_the_session_ttl(shared, live_sessions, tmp_path):
    """A pfs stopped (SIGSTOP) in the middle of two puts for longer than the
    session TTL. On a directory store the kernel keeps the stopped process's
    session lock: it is alive to the others, who leave its puts alone, and they
    complete once it resumes. On a PostgreSQL store its heartbeat expires: the
    next pfs rolls its puts back. Resumed, the stopped pfs says so, one line per
    put, leaves nothing of them (no part, no manifest), and goes on with a new
    session: its next put is stored."""
    keep = make_file(shared.cwd / "keep.bin", 300_000)
    big = make_file(shared.cwd / "big.bin", 24 * MIB)
    mid = make_file(shared.cwd / "mid.bin", 8 * MIB)
    assert shared.run("put keep.bin\n").returncode == 0
    if shared.database:
        import psycopg

        with psycopg.connect(shared.store, autocommit=True) as conn:
            conn.execute("UPDATE pfs_settings SET value = '1' WHERE key = 'session_ttl'")
    stopped = live_sessions(shared.store, shared.cwd, *shared.options)
    stopped.send("put big.bin", "put mid.bin")
    stopped.wait_for(r"^\[3\] storing mid\.bin")
    stop(stopped)
    try:
        time.sleep(1.5)  # past the TTL without a heartbeat
        r = shared.run("list\n")
    finally:
        cont(stopped)
    stopped.send("wait", "put keep.bin again.bin", "wait")
    stopped.wait_for(r"^\[4\] stored again\.bin")
    if shared.database:
        for fid, name in ((2, "big.bin"), (3, "mid.bin")):
            assert f"file {fid} ({name}) was storing when pfs stopped: rolled back" in r.stderr, r.stderr
        assert parse_list(r.stdout) == {1: ("keep.bin", "stored"), 2: ("big.bin", "failed (interrupted)"),
                                        3: ("mid.bin", "failed (interrupted)")}
        assert stopped.close() == 1
        # one line per put: the first to meet the database learns that the session was lost,
        # the other is refused its manifest
        errors = error_lines(stopped.stderr())
        assert sorted(e.split(": ")[1] for e in errors) == ["put 2 (big.bin)", "put 3 (mid.bin)"], errors
        assert len([e for e in errors if e.endswith(
            ": this pfs lost its session on the store (no heartbeat within the session TTL), and another pfs "
            "rolled back its unfinished work (it goes on with a new session: run the command again)")]) == 1, errors
        assert len([e for e in errors if "was rolled back or deleted by another pfs meanwhile (this pfs had lost "
                    "its session on the store (no heartbeat within the session TTL))" in e]) == 1, errors
    else:
        assert "rolled back" not in r.stderr, r.stderr
        assert parse_list(r.stdout) == {1: ("keep.bin", "stored"), 2: ("big.bin", "storing"),
                                        3: ("mid.bin", "storing")}
        assert stopped.close() == 0, stopped.stderr()
    assert_clean_stderr(stopped.stderr())
    gets = {1: keep, 4: keep} | ({} if shared.database else {2: big, 3: mid})
    r = shared.run("list\n" + "".join(f"get {fid} {tmp_path / str(fid)}\n" for fid in gets))
    assert r.returncode == 0, r.stderr
    listing = parse_list(r.stdout)
    assert listing[1] == ("keep.bin", "stored") and listing[4] == ("again.bin", "stored"), r.stdout
    for fid, name in ((2, "big.bin"), (3, "mid.bin")):
        assert listing[fid][0] == name
        assert listing[fid][1].startswith("failed (") if shared.database else listing[fid][1] == "stored", listing
    for fid, source in gets.items():
        assert (tmp_path / str(fid)).read_bytes() == source.read_bytes()
    on_disk, referenced = part_files_and_references(shared)
    assert on_disk == referenced, f"orphan parts {on_disk - referenced}, missing {referenced - on_disk}"


# -- a random mix of puts, gets, deletes and lists from four processes at once ---------

def mixed_script(rng: random.Random, n: int, ops: int, cwd: Path, out: Path) -> tuple[str, dict[str, str]]:
    """A script of `ops` random commands for process `n`, on its own files only
    (so that every command must succeed): puts of new small files, gets and
    deletes of its files already stored (after a `wait`), lists. Returns the
    script and what each get writes: {destination: source name}."""
    lines: list[str] = []
    settled: list[str] = []  # put, then waited for: gets and deletes may name them
    pending: list[str] = []
    gets: dict[str, str] = {}
    for k in range(ops):
        roll = rng.random()
        if roll < 0.4 or not settled:
            name = f"p{n}-{k}.bin"
            make_file(cwd / name, rng.randrange(1, 3 * CHUNK + 2))
            lines.append(f"put {name}")
            pending.append(name)
        elif roll < 0.65:
            dest = out / f"p{n}-{k}.out"
            gets[str(dest)] = rng.choice(settled)
            lines.append(f"get {gets[str(dest)]} {dest}")
        elif roll < 0.85:
            lines.append(f"delete {settled.pop(rng.randrange(len(settled)))}")
        else:
            lines.append("list")
        if pending and rng.random() < 0.3:
            lines.append("wait")
            settled += pending
            pending = []
    return "".join(line + "\n" for line in lines), gets


def part_files_and_references(shared) -> tuple[set[str], set[str]]:
    """(part files on the store's volumes, parts its manifests reference), by part key."""
    if not shared.database:
        return {key for _, key, _ in pieces(shared.store)}, {key for _, key in referenced_pieces(shared.store)}
    import psycopg

    data = Path(shared.options[shared.options.index("--data") + 1])
    on_disk = {p.name for p in (data / "volumes").glob("*/*/*/*") if p.is_file()}  # not the volume marker
    with psycopg.connect(shared.store) as conn:
        referenced = {row[0] for row in conn.execute("SELECT id FROM pfs_parts")}
    return on_disk, referenced


def unexpected(stderr: str) -> list[str]:
    """What a pfs printed on stderr other than the creation notice of a new store."""
    return [line for line in stderr.splitlines() if not line.startswith("pfs: created a new store")]


def run_mixed_ops(shared, tmp_path: Path, ops: int) -> None:
    """Four script sessions, each piping its whole random script into one
    `python -m pfs`: one process keeps its session and runs its puts, gets and
    deletes as concurrent jobs, so the store sees four clients with several
    operations each in flight at any moment (one-shot runs would spend most of
    their time starting Python, one operation per client at a time). Checked
    after: no error, ids unique and never reused, no lost update (every file
    not deleted is listed and comes back byte for byte), deleted files gone,
    no orphan part."""
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    out = tmp_path / "out"
    out.mkdir()
    scripts = [mixed_script(rng, n, ops, shared.cwd, out) for n in range(4)]
    results = run_at_once(shared.argv(), [script for script, _ in scripts], shared.cwd, 60 + ops)
    ids: dict[int, str] = {}
    deleted: set[str] = set()
    for code, stdout, stderr in results:
        assert code == 0 and not unexpected(stderr), f"seed {seed}:\n{stderr}"
        mine = {int(i): name for i, name in re.findall(r"^\[(\d+)\] storing (\S+) ", stdout, re.M)}
        assert not set(mine) & set(ids), f"seed {seed}: an id was given twice: {mine} {ids}"
        ids |= mine
        deleted |= set(re.findall(r"^\[\d+\] deleted (\S+)$", stdout, re.M))
    for _, gets in scripts:
        for dest, name in gets.items():
            assert Path(dest).read_bytes() == (shared.cwd / name).read_bytes(), f"seed {seed}: {dest}"
    kept = {fid: name for fid, name in ids.items() if name not in deleted}
    final = tmp_path / "final"
    final.mkdir()
    r = shared.run("list\n" + "".join(f"get {fid} {final / str(fid)}\n" for fid in kept), timeout=120)
    assert r.returncode == 0 and not unexpected(r.stderr), f"seed {seed}:\n{r.stderr}"
    assert parse_list(r.stdout) == {fid: (name, "stored") for fid, name in kept.items()}, f"seed {seed}"
    for fid, name in kept.items():
        assert (final / str(fid)).read_bytes() == (shared.cwd / name).read_bytes(), f"seed {seed}: file {fid}"
    make_file(shared.cwd / "again.bin", 10)
    r = shared.run("put again.bin\n")
    new_id = int(re.search(r"^\[(\d+)\] storing", r.stdout, re.M).group(1))
    assert new_id > max(ids), f"seed {seed}: id {new_id} was given before"  # deleted ids are not reused
    on_disk, referenced = part_files_and_references(shared)
    assert on_disk == referenced, f"seed {seed}: orphan parts {on_disk - referenced}, missing {referenced - on_disk}"


def test_four_processes_mixed_puts_gets_deletes(shared, tmp_path):
    run_mixed_ops(shared, tmp_path, ops=40)


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_four_processes_mixed_puts_gets_deletes_soak(shared, tmp_path):
    run_mixed_ops(shared, tmp_path, ops=500)
