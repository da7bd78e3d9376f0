"""An encrypted store end to end: damage that only authentication catches,
passwords (wrong, missing, from where), key slots (add, list, remove, never
the last, kill -9 in the middle), and secrets that never show."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import (assert_clean_stderr, env, error_lines, make_file, pfs_argv, pool_workers, read_manifest, run_pfs,
                      tree_state, volume_dirs)

#: The password of every store here: no output, log or file may ever hold it.
MARKER_PASSWORD = "pw-MARKER-7f3a9c-never-shown"


@pytest.fixture
def password(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "password"
    path.write_text(MARKER_PASSWORD + "\n")
    monkeypatch.setenv("PFS_PASSWORD_FILE", str(path))
    monkeypatch.delenv("PFS_PASSWORD", raising=False)
    return path


def new_store(tmp_path: Path, volumes: int = 0, *options: str) -> tuple[Path, Path]:
    """An encrypted store with `volumes` more local volumes, and a work directory."""
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir(exist_ok=True)
    script = ""
    for i in range(1, volumes + 1):
        (tmp_path / f"v{i}").mkdir()
        script += f"volume add {tmp_path / f'v{i}'}\n"
    r = run_pfs(store, script, "--encrypt", *options, cwd=work)
    assert r.returncode == 0 and "created a new store" in r.stderr, r.stderr
    return store, work


def piece_path(store: Path, file_id: int, index: int, copy: int = 0, shard: int | None = None) -> Path:
    part = read_manifest(store, file_id)["parts"][index]
    key = part["id"] if shard is None else f"{part['id']}.{shard}"
    volume = part["copies"][copy] if shard is None else part["shards"][shard]["volume"]
    return volume_dirs(store)[volume] / key[:2] / key[2:4] / key


def assert_no_secret(store: Path, *texts: str, opened_by: str = MARKER_PASSWORD) -> None:
    """Neither the password, the data key, the keys derived from it nor a recipient's
    private key is in `texts` nor in any file of the store (whose slot `opened_by` opens)."""
    from test_encryption_format import doc_recipient_private, doc_subkey

    key = _data_key(store, opened_by)
    records = [json.loads(p.read_bytes()) for p in (store / "keys").glob("*.json")]
    derived = [doc_subkey(key, "recipient-wrap"), doc_subkey(key, "names", 64)]
    privates = [doc_recipient_private(r, key) for r in records if r.get("kind") == "recipient"]
    secrets = [MARKER_PASSWORD.encode()] + [form for k in (key, *derived, *privates)
                                            for form in (k, k.hex().encode(), base64.b64encode(k))]
    for text in texts:
        assert not any(s in text.encode() for s in secrets), text
    for path in store.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s in data for s in secrets), path


def _data_key(store: Path, password: str) -> bytes:
    slots = [json.loads(p.read_bytes()) for p in (store / "keys").glob("*.json")]
    return next(k for k in (_opened(s, password) for s in slots if "kdf" in s) if k)


def _opened(slot: dict, password: str) -> bytes | None:
    from test_encryption_format import doc_unwrap

    try:
        return doc_unwrap(slot, password.encode())
    except ValueError:  # another password's slot
        return None


# -- damage only authentication catches -----------------------------------------------------------

def test_a_piece_from_another_store_holding_the_same_file_fails_and_heals(tmp_path, password) -> None:
    """A plain store would take this piece: the same bytes, the same hash.
    Sealed, it is another store's piece, and fails."""
    store, work = new_store(tmp_path, 1)
    make_file(work / "f", 200_000)
    assert run_pfs(store, "put f\nwait\n", "--copies", "2", "--codec", "none", cwd=work).returncode == 0
    other = tmp_path / "other"
    assert run_pfs(other, "put f\nwait\n", "--encrypt", "--codec", "none", cwd=work).returncode == 0
    theirs = read_manifest(other, 1)["parts"][1]["id"]
    ours = piece_path(store, 1, 1)
    shutil.copyfile(volume_dirs(other)[0] / theirs[:2] / theirs[2:4] / theirs, ours)
    r = run_pfs(store, "verify 1\n", cwd=work)
    assert r.returncode != 0 and "fails authentication" in r.stderr, r.stderr
    r = run_pfs(store, "verify 1 --heal\nverify 1\nget 1 out\n", cwd=work)
    assert r.returncode == 0 and "rewritten" in r.stdout, r.stdout + r.stderr
    assert (work / "out").read_bytes() == (work / "f").read_bytes()
    assert_no_secret(store, r.stdout, r.stderr)


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "swapped with another part's"])
def test_damage_to_one_copy_fails_authentication_and_heals(tmp_path, password, damage: str) -> None:
    store, work = new_store(tmp_path, 1)
    make_file(work / "f", 200_000, "text")
    assert run_pfs(store, "put f\nwait\n", "--copies", "2", "--codec", "none", cwd=work).returncode == 0
    target, other = piece_path(store, 1, 0, copy=1), piece_path(store, 1, 1, copy=1)
    data = bytearray(target.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0x40
    elif damage == "truncated":
        del data[-1:]
    else:  # the same size, the same plain bytes (a repeated text): only the associated data differs
        data = bytearray(other.read_bytes())
        assert len(data) == target.stat().st_size
    target.write_bytes(bytes(data))
    r = run_pfs(store, "verify 1\n", cwd=work)
    assert r.returncode != 0 and len(error_lines(r.stderr)) == 1, r.stderr
    assert_clean_stderr(r.stderr)
    r = run_pfs(store, "verify 1 --heal\nverify 1\nget 1 out\n", cwd=work)
    assert r.returncode == 0 and "rewritten" in r.stdout, r.stdout + r.stderr
    assert (work / "out").read_bytes() == (work / "f").read_bytes()
    assert_no_secret(store, r.stdout, r.stderr)


def test_swapped_shards_of_one_part_fail_and_heal(tmp_path, password) -> None:
    store, work = new_store(tmp_path, 2)
    make_file(work / "f", 300_000, "text")
    assert run_pfs(store, "put f\nwait\n", "--ec", "2+1", "--codec", "none", cwd=work).returncode == 0
    a, b = piece_path(store, 1, 2, shard=0), piece_path(store, 1, 2, shard=1)
    first, second = a.read_bytes(), b.read_bytes()
    a.write_bytes(second)
    b.write_bytes(first)
    r = run_pfs(store, "verify 1\n", cwd=work)
    assert r.returncode != 0 and "fails authentication" in r.stderr, r.stderr
    r = run_pfs(store, "get 1 out\n", cwd=work)  # two of three shards are bad: the part cannot be read
    assert r.returncode != 0 and "--salvage" in r.stderr and not (work / "out").exists(), r.stderr
    r = run_pfs(store, "get 1 out --salvage\n", cwd=work)
    assert_no_secret(store, r.stdout, r.stderr)
    salvaged, original = (work / "out").read_bytes(), (work / "f").read_bytes()
    part = read_manifest(store, 1)["parts"][2]
    assert salvaged[:part["offset"]] == original[:part["offset"]]
    assert salvaged[part["offset"]:part["offset"] + part["size"]] == bytes(part["size"])
    a.write_bytes(first)  # one shard put back: the other heals from the two good ones
    r = run_pfs(store, "verify 1 --heal\nverify 1\nget 1 out2\n", cwd=work)
    assert r.returncode == 0 and "rewritten" in r.stdout, r.stdout + r.stderr
    assert (work / "out2").read_bytes() == original


# -- passwords ------------------------------------------------------------------------------------

def test_a_wrong_password_opens_and_changes_nothing(tmp_path, password, monkeypatch) -> None:
    store, work = new_store(tmp_path)
    make_file(work / "f", 100_000)
    assert run_pfs(store, "put f\nwait\n", cwd=work).returncode == 0
    before = tree_state(store)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    for how in ({"PFS_PASSWORD_FILE": str(wrong)}, {"PFS_PASSWORD": "not-it", "PFS_PASSWORD_FILE": ""}):
        for name, value in how.items():
            monkeypatch.setenv(name, value)
        r = run_pfs(store, "list\n", cwd=work)
        assert r.returncode == 2 and r.stderr == "error: the password opens none of the store's key slots\n", r.stderr
    r = run_pfs(store, "", "--password-file", str(wrong), "delete", "1", cwd=work)
    assert r.returncode == 2 and len(error_lines(r.stderr)) == 1, r.stderr
    assert tree_state(store) == before
    assert_no_secret(store, r.stdout, r.stderr)
    monkeypatch.setenv("PFS_PASSWORD", MARKER_PASSWORD)  # the right one, from the environment
    r = run_pfs(store, "get 1 out\n", cwd=work)
    assert r.returncode == 0 and (work / "out").read_bytes() == (work / "f").read_bytes(), r.stderr


def test_no_password_and_no_terminal_says_how_to_give_one(tmp_path, password, monkeypatch) -> None:
    store, work = new_store(tmp_path)
    monkeypatch.delenv("PFS_PASSWORD_FILE")
    before = tree_state(store)
    r = run_pfs(store, "list\n", cwd=work)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--password-file" in r.stderr, r.stderr
    r = run_pfs(tmp_path / "new", "list\n", "--encrypt", cwd=work)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "PFS_PASSWORD" in r.stderr, r.stderr
    assert not (tmp_path / "new" / "store.json").exists()
    assert tree_state(store) == before


def test_a_plain_store_stays_plain(tmp_path, password) -> None:
    work = tmp_path / "work"
    work.mkdir()
    assert run_pfs(tmp_path / "plain", "", cwd=work).returncode == 0
    r = run_pfs(tmp_path / "plain", "list\n", "--encrypt", cwd=work)
    assert r.returncode == 2 and "not encrypted" in r.stderr, r.stderr
    r = run_pfs(tmp_path / "plain", "key list\n", cwd=work)
    assert r.returncode != 0 and "not encrypted" in r.stderr, r.stderr


def test_repair_of_an_encrypted_store_is_refused(tmp_path, password) -> None:
    store, work = new_store(tmp_path)
    before = tree_state(store)
    r = run_pfs(store, None, "repair", cwd=work)
    assert r.returncode == 2 and "encrypted" in r.stderr, r.stderr
    assert tree_state(store) == before


# -- key slots ------------------------------------------------------------------------------------

def test_key_add_list_remove_round_trip(tmp_path, password, monkeypatch) -> None:
    store, work = new_store(tmp_path)
    make_file(work / "f", 100_000)
    new = tmp_path / "new"
    new.write_text("a second password\n")
    r = run_pfs(store, f"put f\nwait\nkey add --new-password-file {new}\nkey list\n", cwd=work)
    assert r.returncode == 0 and "added key slot" in r.stdout, r.stdout + r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line[:8].isalnum() and len(line.split()) >= 3]
    assert len(rows) == 2 and sum(line.endswith("in use") for line in r.stdout.splitlines()) == 1, r.stdout
    first = json.loads(next(p for p in (store / "keys").glob("*.json")
                            if p.stem not in r.stdout.split("added key slot ")[1][:8]).read_bytes())["id"]
    data_files = _data_files(store)
    # the slot in use goes only if the new password opens another one
    r = run_pfs(store, f"key remove {first}\n", cwd=work)
    assert r.returncode != 0 and "the one this pfs opened" in r.stderr, r.stderr
    r = run_pfs(store, f"key remove {first} --new-password-file {password}\n", cwd=work)
    assert r.returncode != 0 and "opens no other key slot" in r.stderr, r.stderr
    r = run_pfs(store, f"key remove {first} --new-password-file {new}\nkey list\n", cwd=work)
    assert r.returncode == 0 and f"removed key slot {first}" in r.stdout, r.stdout + r.stderr
    # the old password no longer opens the store, the new one does; no data was rewritten
    r = run_pfs(store, "list\n", cwd=work)
    assert r.returncode == 2 and "opens none" in r.stderr, r.stderr
    monkeypatch.setenv("PFS_PASSWORD_FILE", str(new))
    second = json.loads(next((store / "keys").glob("*.json")).read_bytes())["id"]
    r = run_pfs(store, f"get 1 out\nkey remove {second}\n", cwd=work)
    assert (work / "out").read_bytes() == (work / "f").read_bytes()
    assert r.returncode != 0 and "last one" in r.stderr, r.stderr
    assert _data_files(store) == data_files
    assert_no_secret(store, r.stdout, r.stderr, opened_by="a second password")


def _data_files(store: Path) -> dict:
    """Every file of the store but its key slots and session files: what holds data."""
    return {k: v for k, v in tree_state(store).items() if not k.startswith(("keys/", "sessions/"))}


def test_kill_9_during_key_add_and_remove_leaves_a_store_that_opens(tmp_path, password) -> None:
    store, work = new_store(tmp_path)
    rng = random.Random(18)
    new = tmp_path / "new"
    new.write_text("another password\n")
    for round in range(4):
        slots = sorted(p.stem for p in (store / "keys").glob("*.json"))
        removable = [s for s in slots if len(slots) > 1]
        command = ["key", "remove", rng.choice(removable), "--new-password-file", str(new)] \
            if removable and round % 2 else ["key", "add", "--new-password-file", str(new)]
        proc = subprocess.Popen(pfs_argv(store, *command), cwd=work, env=env(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 1.2))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        r = run_pfs(store, "key list\n", cwd=work)
        if r.returncode != 0:  # the first password's slot was the one removed: the other one opens it
            r = run_pfs(store, "key list\n", "--password-file", str(new), cwd=work)
        assert r.returncode == 0, r.stderr
        for path in (store / "keys").glob("*.json"):
            json.loads(path.read_bytes())  # every slot file whole


def test_a_slot_file_left_half_written_by_kill_9_is_swept_at_the_next_open(tmp_path, password) -> None:
    """pfs is stopped (SIGSTOP, from an audit hook) just as it renames a new slot's
    temporary file into place, then killed with -9: the temporary file, holding a
    whole wrapping of the data key under the new password, is left. The next open
    removes it, and the store opens with the password that worked before."""
    import psutil

    store, work = new_store(tmp_path)
    new = tmp_path / "new"
    new.write_text("a password that never made it\n")
    hook = ("import os, signal, sys\n"
            "sys.addaudithook(lambda e, a: os.kill(os.getpid(), signal.SIGSTOP)\n"
            "                 if e == 'os.rename' and '/keys/' in os.fsdecode(a[1]) else None)\n"
            "from pfs.cli.main import main\nsys.exit(main())\n")
    argv = [sys.executable, "-c", hook, *pfs_argv(store, "key", "add", "--new-password-file", str(new))[3:]]
    proc = subprocess.Popen(argv, cwd=work, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED:
            assert time.monotonic() < deadline and proc.poll() is None, "pfs never reached the rename"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    left = [p for p in (store / "keys").iterdir() if p.name.endswith(".tmp")]
    assert left and len(list((store / "keys").glob("*.json"))) == 1
    r = run_pfs(store, "key list\n", cwd=work)
    assert r.returncode == 0 and "in use" in r.stdout, r.stderr
    assert not [p for p in (store / "keys").iterdir() if p.name.endswith(".tmp")]


def test_an_encrypted_postgresql_store(tmp_path, password, postgres_uri) -> None:
    work = tmp_path / "work"
    work.mkdir()
    make_file(work / "f", 150_000)
    new = tmp_path / "new"
    new.write_text("the database's second password\n")
    data = ("--data", str(tmp_path / "data"))
    r = run_pfs(postgres_uri, f"put f\nwait\nkey add --new-password-file {new}\nkey list\n", "--encrypt", *data,
                cwd=work)
    assert r.returncode == 0 and "added key slot" in r.stdout, r.stdout + r.stderr
    assert not list((tmp_path / "data").glob("keys"))  # the slots are in the database
    r = run_pfs(postgres_uri, "get 1 out\n", "--password-file", str(new), cwd=work)
    assert r.returncode == 0 and (work / "out").read_bytes() == (work / "f").read_bytes(), r.stderr
    (tmp_path / "wrong").write_text("wrong\n")
    r = run_pfs(postgres_uri, "list\n", "--password-file", str(tmp_path / "wrong"), cwd=work)
    assert r.returncode == 2 and "opens none" in r.stderr, r.stderr
    pieces = [p for p in (tmp_path / "data").rglob("*") if p.is_file() and "marker" not in p.name]
    assert pieces and not any((work / "f").read_bytes()[:4096] in p.read_bytes() for p in pieces)


def test_the_library_opens_an_encrypted_store_with_a_password_file(tmp_path, password, monkeypatch) -> None:
    import pfs

    monkeypatch.delenv("PFS_PASSWORD_FILE")
    make_file(tmp_path / "f", 100_000, "text")
    with pfs.open(tmp_path / "store", encrypt=True, password_file=password, workers=1) as store:
        store.put(tmp_path / "f")
    with pytest.raises(pfs.PfsError, match="no password was given"):
        pfs.open(tmp_path / "store", workers=1)
    with pfs.open(tmp_path / "store", password_file=password, workers=1) as store:
        with store.open("f") as f:  # read in this process, not a worker
            assert f.read() == (tmp_path / "f").read_bytes()
    assert_no_secret(tmp_path / "store")


def test_the_terminal_is_asked_twice_at_creation_and_once_after(tmp_path, monkeypatch) -> None:
    import sys

    import pexpect

    monkeypatch.delenv("PFS_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("PFS_PASSWORD", raising=False)
    store = tmp_path / "store"

    def spawn(*args: str) -> pexpect.spawn:
        return pexpect.spawn(sys.executable, pfs_argv(store, *args)[1:], cwd=str(tmp_path), env=env(),
                             timeout=60, encoding="utf-8")
    child = spawn("--encrypt", "list")
    child.expect("password for .*: ")
    child.sendline(MARKER_PASSWORD)
    child.expect("again: ")
    child.sendline(MARKER_PASSWORD + "x")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2 and "the two passwords differ" in child.before
    assert not (store / "store.json").exists()
    child = spawn("--encrypt", "list")
    child.expect("password for .*: ")
    child.sendline(MARKER_PASSWORD)
    child.expect("again: ")
    child.sendline(MARKER_PASSWORD)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and "created a new store" in child.before, child.before
    for typed, status in (("wrong", 2), (MARKER_PASSWORD, 0)):
        child = spawn("list")
        child.expect("password for .*: ")
        child.sendline(typed)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == status, child.before
        assert MARKER_PASSWORD not in child.before  # never echoed


def test_two_pfs_removing_each_others_slot_at_once_leave_one(tmp_path, password) -> None:
    """Two slots, A and B; one pfs opened with A removes A (B's password proves
    another slot works), another opened with B removes B at the same moment.
    Without one lock around the look and the removal both succeed and nothing
    opens the store any more; with it, exactly one does."""
    store, work = new_store(tmp_path)
    other = tmp_path / "other"
    other.write_text("the other password\n")
    rng = random.Random(4)
    for round in range(2):
        r = run_pfs(store, f"key add --new-password-file {other}\n", cwd=work)
        assert r.returncode == 0, r.stderr
        mine = _slot_opened_by(store, MARKER_PASSWORD)
        theirs = _slot_opened_by(store, "the other password")
        procs = []
        for opened_by, slot, proves in ((password, mine, other), (other, theirs, password)):
            time.sleep(rng.uniform(0, 0.05))
            procs.append(subprocess.Popen(
                pfs_argv(store, "--password-file", str(opened_by), "key", "remove", slot,
                         "--new-password-file", str(proves)),
                cwd=work, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = [(p.wait(), p.stderr.read()) for p in procs]
        assert sorted(code for code, _ in results) == [0, 1], results
        left = list((store / "keys").glob("*.json"))
        assert len(left) == 1, results
        survivor = password if _slot_opened_by(store, MARKER_PASSWORD) else other
        assert run_pfs(store, "list\n", "--password-file", str(survivor), cwd=work).returncode == 0
        if survivor == other:  # the next round starts from the marker password's slot again
            path = tmp_path / "again"
            path.write_text(MARKER_PASSWORD + "\n")
            assert run_pfs(store, f"key add --new-password-file {path}\n", "--password-file", str(other),
                           cwd=work).returncode == 0
            gone = _slot_opened_by(store, "the other password")
            assert run_pfs(store, f"key remove {gone} --new-password-file {path}\n", "--password-file", str(other),
                           cwd=work).returncode == 0


def _slot_opened_by(store: Path, password: str) -> str:
    """The id of the slot `password` opens ('' if none)."""
    from pfs.crypto.keys import WrongPassword, open_slots

    slots = [json.loads(p.read_bytes()) for p in (store / "keys").glob("*.json")]
    try:
        return open_slots(slots, password.encode())[1]
    except WrongPassword:
        return ""


def test_two_pfs_creating_one_encrypted_database_store_at_once_seal_under_one_key(tmp_path, password,
                                                                                   postgres) -> None:
    """Both see no store and make a data key; one creation holds. The other must
    take the key of the slots that hold, or its pieces are sealed under a key no
    slot keeps."""
    work = tmp_path / "work"
    work.mkdir()
    make_file(work / "a", 100_000)
    make_file(work / "b", 100_000)
    for round in range(2):
        uri = postgres.create_database(f"enc_create_race_{os.getpid()}_{round}_{time.monotonic_ns()}")
        data = ("--data", str(tmp_path / f"data{round}"))
        procs = [subprocess.Popen(pfs_argv(uri, "--encrypt", *data, "put", name), cwd=work, env=env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in "ab"]
        assert all(p.wait() == 0 for p in procs), [p.stderr.read() for p in procs]
        r = run_pfs(uri, "get a outa --force\nget b outb --force\n", *data, cwd=work)
        assert r.returncode == 0, r.stderr
        assert (work / "outa").read_bytes() == (work / "a").read_bytes()
        assert (work / "outb").read_bytes() == (work / "b").read_bytes()


@pytest.mark.parametrize("encrypted", [False, True])
def test_only_an_encrypted_store_loads_cryptography(tmp_path, password, encrypted: bool) -> None:
    """cryptography costs a process 10-20 ms to load: pfs, its forkserver (which
    loads it once for every worker, and holds no key) and its workers load it
    only for an encrypted store."""
    import psutil

    work = tmp_path / "work"
    work.mkdir()
    make_file(work / "f", 300_000)
    proc = subprocess.Popen(pfs_argv(tmp_path / "store", *(["--encrypt"] if encrypted else [])), cwd=work, env=env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("put f\nwait\nget f out\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not (work / "out").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        loaded = [p.pid for p in tree if "cryptography" in Path(f"/proc/{p.pid}/maps").read_text()]
        assert len(tree) >= 3  # pfs, its forkserver, workers
        workers = [w.pid for w in pool_workers(proc.pid)]
        assert workers and len(tree) > len(workers) + 1  # the forkserver (and the resource tracker) too
        forkserver = [p.pid for p in tree if p.pid != proc.pid and p.pid not in workers
                      and "forkserver" in " ".join(p.cmdline())]
        assert len(forkserver) == 1, tree
        assert sorted(loaded) == (sorted([proc.pid, *forkserver, *workers]) if encrypted else []), (loaded, tree)
    finally:
        proc.communicate("exit\n", timeout=60)
    assert proc.returncode == 0 and (work / "out").read_bytes() == (work / "f").read_bytes()
