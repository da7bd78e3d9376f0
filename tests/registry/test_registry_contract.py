"""The registry contract (pfs/registry/base.py), one suite for every registry:
the JSON files in a store directory and the tables of a real PostgreSQL
database. Two clients of one store are two registries opened on it (as two
processes would); a dead client is a real process killed with SIGKILL after
registering its session."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pfs.codec import file_digest
from pfs.errors import NameConflictError, StoreLockedError
from pfs.registry import (BadRecord, FileEntry, FileRegistry, Manifest, PartEntry, PartRegistry, SessionFiles, FileTable,
                          PartTable, SessionTable)
from pfs.volumes import part_id


class Client:
    """One client's view of the store: its three tables."""

    def __init__(self, files: FileTable, parts: PartTable, sessions: SessionTable, close) -> None:
        self.files, self.parts, self.sessions, self._close = files, parts, sessions, close

    def close(self) -> None:
        self.sessions.close()
        self.files.close()
        self._close()


def json_client(root: Path) -> Client:
    parts = PartRegistry(root)
    return Client(FileRegistry(root, id_elsewhere=parts.highest_id), parts, SessionFiles(root), lambda: None)


def db_client(uri: str) -> Client:
    from pfs.registry.postgres import Database, DatabaseFiles, DatabaseParts, DatabaseSessions

    db = Database(uri)
    return Client(DatabaseFiles(db), DatabaseParts(db), DatabaseSessions(db), db.close)


@pytest.fixture(params=["json", "postgresql"])
def location(request, tmp_path) -> str:
    return str(tmp_path) if request.param == "json" else request.getfixturevalue("postgres_uri")


@pytest.fixture
def clients(location):
    """A factory of clients of one store, all closed at the end."""
    opened: list[Client] = []

    def open_client() -> Client:
        client = json_client(Path(location)) if not location.startswith("postgresql") else db_client(location)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def record(file_id: int, status: str = "stored", session: str = "", size: int = 3000) -> FileEntry:
    return FileEntry(id=file_id, name=f"f{file_id}.bin", size=size, status=status, parts=-(-size // 1024),
                     chunk_size=1024, codec="zstd", hash="xxh3-128", uuid=f"{file_id:032x}", created=1.5e9,
                     session=session)


def manifest(entry: FileEntry) -> Manifest:
    parts = [PartEntry(index=i, id=part_id(entry.uuid, i), offset=i * 1024, size=min(1024, entry.size - i * 1024),
                       stored=10 + i, codec="zstd", hash=f"{i:032x}") for i in range(entry.parts)]
    return Manifest(dataclasses.replace(entry, digest=file_digest([p.hash for p in parts])), parts)


def test_unsettled_lists_only_what_a_session_may_have_left_unfinished(clients):
    """Storing and deleting records, and stored ones whose replaced file is
    still recorded: what an open's recovery looks at, also after compaction
    (where the JSON engine reads it from the snapshot's columns)."""
    a = clients()
    for entry in [record(1), record(2, "storing"), record(3, "deleting"), record(4, "failed"),
                  dataclasses.replace(record(5), replaces=1), dataclasses.replace(record(6), replaces=99),
                  dataclasses.replace(record(7, "failed"), replaces=1)]:
        a.files.save(entry)
    assert [e.id for e in a.files.unsettled()] == [2, 3, 5]
    a.files.compact()
    b = clients()
    assert b.files.unsettled() == a.files.unsettled()
    assert b.files.unsettled()[2] == dataclasses.replace(record(5), replaces=1)

def test_ids_are_unique_across_clients_and_never_reused(clients):
    a, b = clients(), clients()
    ids = [a.files.new_id(), b.files.new_id(), a.files.new_id(), b.files.new_id()]
    assert len(set(ids)) == 4 and ids == sorted(ids)
    added = [a.files.add(record(0)), b.files.add(record(0)), a.files.add(record(0))]  # chosen and recorded at once
    assert [e.id for e in added] == sorted(e.id for e in added) and added[0].id > max(ids)
    assert a.files.all() == b.files.all() == added
    for entry in added:
        a.files.remove(entry.id)
    c = clients()
    assert c.files.new_id() > added[-1].id


def test_each_client_sees_the_others_updates(clients):
    a, b = clients(), clients()
    first = record(a.files.new_id(), "storing", a.sessions.id)
    a.files.save(first)
    assert b.files.get(first.id) == first
    stored = dataclasses.replace(first, status="stored", session="")
    b.files.save(stored)
    assert a.files.get(first.id) == stored
    second = record(b.files.new_id())
    b.files.save(second)
    assert a.files.all() == [stored, second]
    a.files.remove(first.id)
    a.files.remove(first.id)  # removing what is gone is a no-op
    assert b.files.all() == [second] and b.files.get(first.id) is None


def test_compaction_keeps_everything_for_every_client(clients):
    a, b = clients(), clients()
    saved = [record(a.files.new_id()) for _ in range(5)]
    for entry in saved:
        a.files.save(entry)
    b.files.all()  # b has read the history before it is folded
    a.files.compact()
    b.files.save(record(b.files.new_id()))
    assert [e.id for e in a.files.all()] == [e.id for e in saved] + [saved[-1].id + 1]
    assert clients().files.all() == a.files.all()


def test_manifests(clients):
    a, b = clients(), clients()
    entry = a.files.add(record(0, status="storing", size=5000))  # a manifest is saved for a file being stored
    m = manifest(entry)
    assert a.parts.load(entry.id) is None
    a.parts.save(m)
    assert b.parts.load(entry.id) == m
    assert b.parts.ids() == [entry.id] and b.parts.highest_id() == entry.id
    assert str(entry.id) in b.parts.where(entry.id)
    b.parts.remove(entry.id)
    b.parts.remove(entry.id)
    assert a.parts.load(entry.id) is None and a.parts.ids() == [] and a.parts.highest_id() == 0


def test_a_manifest_swap_records_only_over_the_manifest_as_it_was_seen(clients):
    """Two clients moving pieces of one file: the second to record, having seen
    the manifest before the first one's move, is refused and sees that move."""
    a, b = clients(), clients()
    entry = a.files.add(record(0, size=5000))
    seen = manifest(entry)
    a.parts.save(seen)
    moved = [dataclasses.replace(seen.parts[0], volume=3, copies=[3]), *seen.parts[1:]]
    first = Manifest(seen.file, moved)
    assert a.parts.swap(seen, first)
    other = Manifest(seen.file, [seen.parts[0], dataclasses.replace(seen.parts[1], volume=2, copies=[2]),
                                 *seen.parts[2:]])
    assert not b.parts.swap(seen, other)
    assert b.parts.load(entry.id) == first
    assert b.parts.swap(first, Manifest(seen.file, [moved[0], other.parts[1], *moved[2:]]))
    assert [p.volume for p in a.parts.load(entry.id).parts[:2]] == [3, 2]


def test_moving_a_files_pieces_is_one_client_at_a_time(clients):
    a, b = clients(), clients()
    with a.sessions.moving(7) as taken:
        assert taken
        with b.sessions.moving(7, wait=False) as other, b.sessions.moving(8, wait=False) as elsewhere:
            assert (other, elsewhere) == (False, True)
    with b.sessions.moving(7, wait=False) as taken:
        assert taken


@pytest.mark.parametrize("layout", [{"copies": 2}, {"ec": "2+1"}])
def test_records_and_manifests_keep_copies_and_shards(clients, layout):
    """A file's copies or erasure code, and the volume of each copy (or each
    shard's volume, hash and size), come back as saved for every client."""
    a, b = clients(), clients()
    entry = a.files.add(dataclasses.replace(record(0, size=5000), **layout))
    assert b.files.get(entry.id) == entry

    def pieces(i: int) -> dict:
        if "ec" in layout:
            shards = [{"volume": (i + j) % 4, "hash": f"{j:032x}", "size": 7 + j} for j in range(3)]
            return {"volume": shards[0]["volume"], "copies": [], "shards": shards}
        return {"volume": i % 4, "copies": [i % 4, (i + 1) % 4]}

    m = manifest(entry)
    m = Manifest(m.file, [dataclasses.replace(p, **pieces(p.index)) for p in m.parts])
    a.parts.save(m)
    assert b.parts.load(entry.id) == m


def test_live_sessions_are_never_claimed(clients):
    a, b = clients(), clients()
    with b.sessions.claim_dead() as dead:
        assert not dead(a.sessions.id) and not dead(b.sessions.id)
        assert dead("")  # records from before sessions existed
    assert len(b.sessions.holders()) == 1 and str(os.getpid()) in b.sessions.holders()[0]


def test_a_killed_clients_session_is_claimed_once(clients, location, tmp_path):
    """A real process registers a session and is killed with SIGKILL: its session
    is dead, one client claims it, and once claimed it is gone for everyone."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_registry_contract import json_client, db_client
        loc = {location!r}
        client = db_client(loc) if loc.startswith("postgresql") else json_client(__import__("pathlib").Path(loc))
        print(client.sessions.id, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        victim = proc.stdout.readline().strip()
        assert victim, "the client process did not start"
        a, b = clients(), clients()
        with a.sessions.claim_dead() as dead:
            assert not dead(victim), "a live session was claimed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with a.sessions.claim_dead() as dead_for_a:
        assert dead_for_a(victim)
        with b.sessions.claim_dead() as dead_for_b:
            assert not dead_for_b(victim)  # a is finishing its work: b does not do it twice
    with b.sessions.claim_dead() as dead_for_b:
        assert dead_for_b(victim)  # gone for good once a is done
    assert b.sessions.holders() == a.sessions.holders() == [f"pid {os.getpid()}" + a_host(location)]


def a_host(location: str) -> str:
    import socket

    return f" on {socket.gethostname()}" if location.startswith("postgresql") else ""


def test_a_delete_is_refused_while_a_file_is_read(clients):
    a, b = clients(), clients()
    with a.sessions.hold(7, exclusive=False), b.sessions.hold(7, exclusive=False):  # reads share
        with pytest.raises(StoreLockedError):
            with b.sessions.hold(7, exclusive=True):
                pass
        with b.sessions.hold(8, exclusive=True):  # another file is free
            pass
    with b.sessions.hold(7, exclusive=True):
        pass


def test_holds_of_many_files_taken_at_once_refuse_their_deletes_until_released(clients):
    a, b = clients(), clients()
    with a.sessions.hold_all([7, 8, 9, 12]):
        for held in (7, 9, 12):
            with pytest.raises(StoreLockedError):
                with b.sessions.hold(held, exclusive=True):
                    pass
        with b.sessions.hold(10, exclusive=True), b.sessions.hold(9, exclusive=False):  # a gap is free; reads share
            pass
    for released in (7, 8, 9, 12):
        with b.sessions.hold(released, exclusive=True):
            pass


def test_a_directory_moves_only_as_it_was_read(clients):
    a, b = clients(), clients()
    seen = [a.files.add(entry_of(name, kind)) for name, kind in (("d", "dir"), ("d/x", "file"), ("d/y", "file"))]

    def moved(entries):
        return [dataclasses.replace(e, name="e" + e.name[1:]) for e in entries]
    b.files.add(entry_of("d/z"))  # appeared since the read
    assert not a.files.move_all("d", seen, moved(seen)) and a.files.current("e/x") is None
    now = [e for name in ("d", "d/x", "d/y", "d/z") for e in b.files.named(name)]
    assert b.files.swap(now[1], dataclasses.replace(now[1], status="deleting"))  # changed since the read
    assert not a.files.move_all("d", now, moved(now))
    now = [e for name in ("d", "d/x", "d/y", "d/z") for e in b.files.named(name)]
    assert a.files.move_all("d", now, moved(now))
    assert b.files.under("", recursive=True)[0] == ["e", "e/x", "e/y", "e/z"]


def test_manifests_of_many_files_load_at_once(clients):
    a, b = clients(), clients()
    entries = [a.files.add(record(0, status="storing", size=size)) for size in (5000, 10, 2100)]
    for entry in entries[:2]:
        a.parts.save(manifest(entry))
    assert b.parts.load_all([e.id for e in entries]) == {entries[0].id: manifest(entries[0]),
                                                       entries[1].id: manifest(entries[1]), entries[2].id: None}


def test_a_hold_ends_when_released_even_if_a_child_has_a_copy_of_its_descriptor(clients):
    """A process forked while a thread held a file (the pool's forkserver starting)
    keeps copies of every descriptor until it execs: the release must not wait
    for that child, or a delete right after a get would be refused as if the
    file were still read."""
    a, b = clients(), clients()
    with a.sessions.hold(7, exclusive=True):
        child = os.fork()
        if child == 0:  # holds copies of a's descriptors, and never execs
            time.sleep(30)
            os._exit(0)
    try:
        with b.sessions.hold(7, exclusive=True):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def named(file_id: int, name: str, status: str = "stored") -> FileEntry:
    return dataclasses.replace(record(file_id, status), name=name)


def test_names_list_like_directories_for_every_client(clients):
    """Names sort by code point; LIKE's wildcards in a prefix are plain characters."""
    a, b = clients(), clients()
    for name in ["logs/2026/app.log", "logs/b.txt", "logs/a_b", "logs/a%b", "logsx", "logs/é", "top", "logs/aXb/c"]:
        a.files.add(named(0, name))
    assert b.files.under("") == (["logsx", "top"], ["logs/"])
    assert b.files.under("logs/") == (["logs/a%b", "logs/a_b", "logs/b.txt", "logs/é"], ["logs/2026/", "logs/aXb/"])
    assert b.files.under("logs/", recursive=True) == (
        ["logs/2026/app.log", "logs/a%b", "logs/aXb/c", "logs/a_b", "logs/b.txt", "logs/é"], [])
    assert b.files.under("logs/a_") == (["logs/a_b"], []) and b.files.under("logs/a%") == (["logs/a%b"], [])
    assert b.files.under("nothing/") == ([], [])
    assert [e.name for e in b.files.named("logs/b.txt")] == ["logs/b.txt"] and b.files.named("logs") == []
    listed = b.files.under("logs/", recursive=True)[0] + ["logs", "nothing"]
    assert b.files.named_each(listed) == {name: b.files.named(name) for name in listed}
    a.files.add(named(0, "later"))
    a.files.compact()  # b reloads what it had indexed, and what came since
    assert b.files.under("") == (["later", "logsx", "top"], ["logs/"])


def test_a_name_resolves_to_the_last_file_stored_under_it(clients):
    """Order is when a file became current under its name (recorded there, or
    stored there), not its id: the same for a client catching up, after a
    compaction, and for a client opened afterwards."""
    a, b = clients(), clients()
    first, second = a.files.add(named(0, "n", "storing")), a.files.add(named(0, "n", "storing"))
    assert b.files.current("n") is None and [e.id for e in b.files.named("n")] == [first.id, second.id]
    a.files.save(dataclasses.replace(second, status="stored"))
    assert b.files.current("n").id == second.id
    a.files.save(dataclasses.replace(first, status="stored"))  # stored last: the name resolves to it
    assert b.files.current("n").id == first.id and [e.id for e in b.files.named("n")] == [second.id, first.id]
    a.files.save(dataclasses.replace(a.files.get(second.id), reason="unchanged name and status: order kept"))
    assert b.files.current("n").id == first.id
    a.files.compact()
    for client in (b, clients()):
        assert client.files.current("n").id == first.id
        assert [e.id for e in client.files.named("n")] == [second.id, first.id]
        assert [e.id for e in client.files.named_each(["n", "m"])["n"]] == [second.id, first.id]
    a.files.remove(first.id)
    assert b.files.current("n").id == second.id


def test_a_rename_moves_a_file_to_its_new_name(clients):
    a, b = clients(), clients()
    old = a.files.add(named(0, "dir/old"))
    kept = a.files.add(named(0, "new"))
    b.files.save(dataclasses.replace(b.files.get(old.id), name="new"))  # renamed over `new`, which is kept
    assert a.files.named("dir/old") == [] and a.files.under("") == (["new"], [])
    assert a.files.current("new").id == old.id and [e.id for e in a.files.named("new")] == [kept.id, old.id]
    b.files.save(dataclasses.replace(b.files.get(kept.id), name="dir/kept"))
    assert clients().files.under("", recursive=True) == (["dir/kept", "new"], [])


# -- entry kinds, metadata, and a name is a file or a directory -------------------------

def entry_of(name: str, kind: str = "file", status: str = "stored", **fields) -> FileEntry:
    """A record of any kind: a directory or symlink has no parts."""
    base = named(0, name, status)
    if kind != "file":
        base = dataclasses.replace(base, size=0, parts=0)
    return dataclasses.replace(base, kind=kind, **fields)


def test_kinds_and_metadata_are_kept_for_every_client(clients):
    """Directories (empty ones too), symlinks with their target, and each
    entry's mode, mtime (ns), uid and gid, as another client, a compaction and
    a client opened afterwards see them."""
    a = clients()
    made = [a.files.add(entry_of("tree", "dir", mode=0o755, mtime=1_700_000_000_123_456_789, uid=0, gid=0)),
            a.files.add(entry_of("tree/empty", "dir", mode=0o700, mtime=-5, uid=1000, gid=100)),
            a.files.add(entry_of("tree/link", "symlink", target="../elsewhere/ü", mode=0o777, uid=65534, gid=65534)),
            a.files.add(entry_of("tree/dangling", "symlink", target="nowhere")),
            a.files.add(entry_of("tree/f", mode=0o600, mtime=2, uid=(1 << 32) - 2, gid=7))]
    b = clients()
    assert [b.files.get(e.id) for e in made] == made
    assert b.files.current("tree/empty").is_dir and b.files.current("tree/link").target == "../elsewhere/ü"
    assert b.files.under("tree/") == (["tree/dangling", "tree/empty", "tree/f", "tree/link"], [])
    a.files.compact()
    for client in (b, clients()):
        assert [client.files.get(e.id) for e in made] == made
        assert client.files.current("tree/f").kind == "file" and client.files.current("tree/f").uid == (1 << 32) - 2


@pytest.mark.parametrize("fields, problem", [
    ({"kind": "dir", "size": 10, "parts": 1}, "has a size"),
    ({"kind": "symlink", "size": 0, "parts": 0}, "target"),
    ({"target": "x"}, "target"),
    ({"kind": "pipe", "size": 0, "parts": 0}, "kind"),
    ({"kind": "fifo", "size": 0, "parts": 0, "rdev": 5}, "rdev"),
    ({"kind": "link", "size": 0, "parts": 0}, "target"),
    ({"mode": 0o10000}, "mode"),
    ({"links": 0}, "links"),
    ({"uid": -1}, "uid"),
    ({"gid": 1 << 32}, "gid"),
    ({"uid": "0"}, "uid"),
])
def test_a_record_of_no_kind_pfs_writes_is_refused(clients, fields, problem):
    a = clients()
    with pytest.raises(BadRecord, match=problem):
        a.files.add(dataclasses.replace(named(0, "x"), **fields))
    assert a.files.all() == [] and clients().files.all() == []


@pytest.mark.parametrize("first, second", [
    (("a", "file"), ("a/b", "file")),  # a file cannot hold names
    (("a/b", "file"), ("a", "file")),  # names under it make `a` a directory
    (("a/b", "file"), ("a", "symlink")),
    (("a", "dir"), ("a", "file")),
    (("a", "file"), ("a", "dir")),
    (("a", "symlink"), ("a/b/c", "dir")),  # a symlink is not a directory: it is never followed
    (("a/b/c", "file"), ("a/b", "file")),
])
def test_a_name_is_a_file_or_a_directory_never_both(clients, first, second):
    a, b = clients(), clients()
    kept = a.files.add(entry_of(first[0], first[1], target="t" if first[1] == "symlink" else ""))
    with pytest.raises(NameConflictError, match=r"^cannot record the (file|directory) "):
        b.files.add(entry_of(second[0], second[1], "storing", target="t" if second[1] == "symlink" else ""))
    assert clients().files.all() == [kept]


def test_what_makes_a_tree_is_allowed(clients):
    """Directory records hold names under them; a file replaces a file or a
    symlink; a failed or deleting record holds no name; a record that holds
    its name is saved again (stored after storing, other fields changed)."""
    a = clients()
    a.files.add(entry_of("d", "dir"))
    a.files.add(entry_of("d/e", "dir"))
    a.files.add(entry_of("d/e/f"))
    a.files.add(entry_of("d/e/f"))
    a.files.add(entry_of("d/e/f", "symlink", target="g"))
    a.files.add(entry_of("d", "dir"))
    failed = a.files.add(entry_of("x", status="failed"))
    a.files.add(entry_of("x/y"))
    gone = a.files.add(entry_of("p/q"))
    a.files.save(dataclasses.replace(gone, status="deleting"))
    put = a.files.add(entry_of("p", status="storing"))
    a.files.save(dataclasses.replace(put, status="stored", mtime=5))
    assert clients().files.current("p").mtime == 5 and clients().files.get(failed.id).status == "failed"


def test_a_rename_that_would_make_a_name_both_is_refused(clients):
    a, b = clients(), clients()
    file = a.files.add(entry_of("f"))
    a.files.add(entry_of("dir/inner"))
    with pytest.raises(NameConflictError):
        b.files.save(dataclasses.replace(file, name="dir"))
    with pytest.raises(NameConflictError):
        b.files.save(dataclasses.replace(b.files.get(file.id), name="dir/inner/deeper"))
    b.files.save(dataclasses.replace(b.files.get(file.id), name="dir/other"))
    assert a.files.under("dir/") == (["dir/inner", "dir/other"], [])


RACER = textwrap.dedent("""
    import sys, dataclasses
    sys.path.insert(0, {tests!r})
    from test_registry_contract import json_client, db_client, entry_of
    from pathlib import Path
    from pfs.errors import NameConflictError
    location, which, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    client = db_client(location) if location.startswith("postgresql") else json_client(Path(location))
    print("ready", flush=True)
    sys.stdin.readline()  # both start at once
    won = 0
    for i in range(rounds):
        name = f"n{{i}}" if (i + which) % 2 else f"n{{i}}/inner"  # the two racers claim both ways round
        try:
            client.files.add(entry_of(name))
            won += 1
        except NameConflictError:
            pass
    client.close()
    print(won)
""")


def test_two_processes_racing_for_a_name_never_make_it_both(clients, location):
    """Real concurrent processes claim each name as a file and as a directory at
    once: every time exactly one of them wins (decided where it is recorded)."""
    clients()  # the store (or database schema) exists before the racers start
    rounds = 150
    script = RACER.format(tests=str(Path(__file__).parent))
    racers = [subprocess.Popen([sys.executable, "-c", script, location, str(which), str(rounds)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for which in (0, 1)]
    assert [r.stdout.readline() for r in racers] == ["ready\n"] * 2
    for r in racers:
        r.stdin.write("go\n")
        r.stdin.flush()
    won = [int(r.communicate(timeout=120)[0]) for r in racers]
    assert all(r.returncode == 0 for r in racers)
    held = {e.name for e in clients().files.all()}
    assert sum(won) == len(held) == rounds
    assert all((f"n{i}" in held) != (f"n{i}/inner" in held) for i in range(rounds))


def make_old_pair(location: str, client: Client) -> None:
    """What a store made before kinds may hold: `a` a file and `a/b` under it,
    written as that pfs wrote them (no check to refuse them)."""
    a, b = entry_of("a"), entry_of("a/b")
    a.id, b.id = client.files.new_id(), client.files.new_id()
    if location.startswith("postgresql"):
        from pfs.registry.postgres import _UPSERT_FILE

        with client.files._db.transaction() as cur:
            for e in (a, b):
                cur.execute(_UPSERT_FILE, dataclasses.astuple(e))
    else:
        with open(Path(location) / "files.jsonl", "a") as journal:
            for e in (a, b):
                journal.write(json.dumps({"op": "put", "file": dataclasses.asdict(e)}) + "\n")


def test_a_store_that_holds_a_file_and_a_directory_of_one_name_opens_as_it_is(clients, location):
    old = clients()
    make_old_pair(location, old)
    a = clients()
    assert a.files.under("") == (["a"], ["a/"]) and a.files.current("a/b") is not None
    file = a.files.current("a")
    a.files.save(dataclasses.replace(file, reason="saved again as it was"))  # it held its name already
    with pytest.raises(NameConflictError):
        a.files.add(entry_of("a/c"))
    with pytest.raises(NameConflictError):
        a.files.add(entry_of("a"))  # a new file of that name: refused now


def test_a_store_made_before_kinds_opens_with_its_records_as_files(clients, location, monkeypatch):
    """JSON: a snapshot whose columns stop before the new fields; PostgreSQL: a
    table without their columns. Both read back as files of unknown owner."""
    old = clients()
    entries = [old.files.add(named(0, f"old/{i}")) for i in range(3)]
    if location.startswith("postgresql"):
        with old.files._db.transaction() as cur:
            cur.execute("ALTER TABLE pfs_files DROP COLUMN kind, DROP COLUMN target, DROP COLUMN uid, "
                        "DROP COLUMN gid; DELETE FROM pfs_schema")
    else:
        from pfs.registry import snapshot

        old.files.compact()
        monkeypatch.setattr(snapshot, "FILE_FIELDS", snapshot.FILE_FIELDS[:snapshot.FILE_FIELDS.index("kind")])
        data = snapshot.encode(entries[-1].id + 1, len(entries), lambda f: [getattr(e, f) for e in entries])
        monkeypatch.undo()
        assert b'"kind"' not in data
        (Path(location) / "files.json").write_bytes(data)
    new = clients()
    assert new.files.all() == entries and all(e.kind == "file" and e.uid is None for e in new.files.all())
    new.files.add(entry_of("old/d", "dir", uid=3))
    assert clients().files.current("old/d").uid == 3


def test_a_batch_is_recorded_whole_or_not_at_all(clients):
    """save_all: a renamed directory's records move at once; one record that
    would make a name both refuses the whole batch."""
    a, b = clients(), clients()
    tree = [a.files.add(entry_of("old", "dir")), a.files.add(entry_of("old/f")),
            a.files.add(entry_of("old/l", "symlink", target="f"))]
    a.files.add(entry_of("taken"))
    moved = [dataclasses.replace(e, name="new" + e.name[3:]) for e in tree]
    b.files.save_all(moved)
    assert a.files.under("", recursive=True)[0] == ["new", "new/f", "new/l", "taken"]
    with pytest.raises(NameConflictError):
        a.files.save_all([dataclasses.replace(e, name="taken" + e.name[3:]) for e in moved])
    a.files.compact()
    assert [clients().files.get(e.id) for e in tree] == moved


def test_a_group_commit_adds_a_batch_with_fresh_ids_or_nothing(clients):
    """add_all: ids chosen and records written at once; a conflict anywhere
    records none of the batch, and no id is lost to it for the JSON engine's order."""
    a, b = clients(), clients()
    added = a.files.add_all([entry_of(f"batch/{i}", status="storing") for i in range(5)])
    assert [e.id for e in added] == sorted({e.id for e in added}) and len(added) == 5
    assert [b.files.get(e.id) for e in added] == added
    b.files.add(entry_of("file"))
    with pytest.raises(NameConflictError):
        a.files.add_all([entry_of("batch/5"), entry_of("file/inside")])
    assert b.files.current("batch/5") is None and clients().files.under("batch/")[0] == [f"batch/{i}" for i in range(5)]
    later = a.files.add(entry_of("later"))
    assert later.id > max(e.id for e in added)


def test_swap_records_only_over_the_record_as_it_was_seen(clients):
    """A compare-and-swap on a file's record: a second client's rename, delete
    or status change in between makes it record nothing and say so."""
    a, b = clients(), clients()
    seen = a.files.add(record(0))
    renamed = dataclasses.replace(seen, name="elsewhere.bin")
    assert b.files.swap(seen, renamed)
    deleting = dataclasses.replace(seen, status="deleting")
    assert not a.files.swap(seen, deleting), "a rename in between went unnoticed"
    assert a.files.get(seen.id) == renamed
    assert a.files.swap(renamed, dataclasses.replace(renamed, status="deleting"))
    assert not b.files.swap(renamed, dataclasses.replace(renamed, name="again.bin"))
    a.files.remove(seen.id)
    assert not b.files.swap(renamed, renamed), "a removed file was written back"
    assert b.files.get(seen.id) is None


def test_take_name_replaces_what_the_name_gives_at_that_moment(clients):
    a, b = clients(), clients()
    old = a.files.add(dataclasses.replace(record(0), name="n.bin"))
    new = a.files.add(dataclasses.replace(record(0, "storing"), name="n.bin"))
    moved = b.files.take_name(old, dataclasses.replace(old, name="m.bin"))  # b renames old away first
    assert moved is not None and moved.replaces == 0
    done = a.files.take_name(new, dataclasses.replace(new, status="stored"))
    assert done is not None and done.replaces == 0, "the file renamed away was to be deleted"
    assert a.files.current("n.bin") == done and b.files.get(done.id) == done
    later = b.files.add(dataclasses.replace(record(0, "storing"), name="n.bin"))
    kept = b.files.take_name(later, dataclasses.replace(later, status="stored"), keep=True)
    assert kept.replaces == 0 and a.files.current("n.bin") == kept
    back = a.files.take_name(moved, dataclasses.replace(moved, name="n.bin"))
    assert back.replaces == kept.id and a.files.current("n.bin") == back
    assert b.files.take_name(moved, dataclasses.replace(moved, name="x.bin")) is None, "moved was renamed since"
    assert a.files.take_name(back, dataclasses.replace(back, mtime=5)).replaces == 0  # itself: nothing to replace


def test_take_names_swaps_a_batch_in_one_update_and_skips_what_changed(clients):
    """A batch of stored records taking their names at once (a tree's group
    commit): each replaces what its name gives at that moment; one whose record
    another client changed since it was read is skipped, and the rest recorded."""
    a, b = clients(), clients()
    old = a.files.add(dataclasses.replace(record(0), name="d/one.bin"))
    one, two, three = (a.files.add(dataclasses.replace(record(0, "storing"), name=f"d/{n}.bin"))
                       for n in ("one", "two", "three"))
    b.files.save(dataclasses.replace(b.files.get(two.id), status="failed", reason="rolled back"))
    taken = a.files.take_names([(e, dataclasses.replace(e, status="stored")) for e in (one, two, three)])
    assert [t is None for t in taken] == [False, True, False]
    assert taken[0].replaces == old.id and taken[2].replaces == 0
    c = clients()
    assert c.files.current("d/one.bin") == taken[0] and c.files.current("d/three.bin") == taken[2]
    assert c.files.get(two.id).status == "failed", "a record changed by another client was written over"


def test_take_name_from_many_clients_at_once_replaces_each_file_once(clients):
    """Clients storing onto one name at once, each from its own thread and
    registry (its own lock file handle, or its own connection): every file but
    the last replaces exactly the one before it, none is left unreplaced."""
    import threading

    per, count = 4, 12
    workers = [clients() for _ in range(per)]
    first = workers[0].files.add(dataclasses.replace(record(0), name="n.bin"))
    done: list[FileEntry] = []
    lock = threading.Lock()
    barrier = threading.Barrier(per)

    def store(c: Client) -> None:
        barrier.wait()
        for _ in range(count):
            entry = c.files.add(dataclasses.replace(record(0, "storing"), name="n.bin"))
            taken = c.files.take_name(entry, dataclasses.replace(entry, status="stored"))
            with lock:
                done.append(taken)
    threads = [threading.Thread(target=store, args=(c,)) for c in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == per * count and None not in done
    replaced = [e.replaces for e in done]
    assert len(set(replaced)) == len(replaced), "two files replaced the same one: one is left behind"
    ids = {first.id} | {e.id for e in done}
    assert set(replaced) == ids - {workers[0].files.current("n.bin").id}


def test_volume_usage_and_the_files_on_a_volume_come_from_the_records(clients):
    """Each stored record says what its pieces take on each volume: summed
    for every client without reading a manifest, also after compaction; stored
    records that do not say (older ones) are named for their manifests to tell."""
    a, b = clients(), clients()
    a.files.save(dataclasses.replace(record(1), placed="0:3:300 2:3:310"))
    a.files.save(dataclasses.replace(record(2), placed="2:1:7 10:1:7"))
    a.files.save(dataclasses.replace(record(3, "storing"), placed=""))
    a.files.save(record(4))  # an older record: where its pieces are is in its manifest
    a.files.save(dataclasses.replace(record(5, size=0), placed="-"))
    a.files.save(dataclasses.replace(record(6, "deleting"), placed="1:5:5"))
    for client in (a, b):
        assert client.files.volume_usage() == ({0: (3, 300), 2: (4, 317), 10: (1, 7)}, [4])
        assert client.files.on_volume(2) == ([1, 2], [4])
        assert client.files.on_volume(1) == ([], [4]) and client.files.on_volume(0) == ([1], [4])
    a.files.compact()
    assert clients().files.volume_usage() == ({0: (3, 300), 2: (4, 317), 10: (1, 7)}, [4])
    assert clients().files.on_volume(10) == ([2], [4])
    with pytest.raises(Exception):
        a.files.save(dataclasses.replace(record(7), placed="0:1"))
