"""Stores whose parts live on S3 volumes, end to end: the real `python -m pfs`
against a real SeaweedFS, which the tests kill, pause and restart, and whose
objects they delete and overwrite behind pfs's back (through boto3)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import (CHUNK, assert_clean_stderr, env, error_lines, make_file, parse_list, pfs_argv, pieces,
                     read_manifest, referenced_pieces, run_pfs)

boto3 = pytest.importorskip("boto3", reason="S3 volumes need boto3: pip install 'pfs[s3]'")

from pfs.volumes.s3 import DEFAULT_RETRY_SECONDS  # noqa: E402

#: The core suite's sizes: empty, one byte, around one part, several parts.
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]
#: A volume gives up on a server that does not answer after about three seconds.
FAST = {"PFS_S3_TIMEOUT": "1", "PFS_S3_RETRY_SECONDS": "2"}
#: kill -9s per layout: three by default (PFS_REMOTE_KILLS), PFS_SOAK_KILLS // 5 under pytest -m soak.
KILLS = int(os.environ.get("PFS_REMOTE_KILLS", "3"))
SOAK_KILLS = int(os.environ.get("PFS_SOAK_KILLS", "300")) // 5


def s3():
    return boto3.client("s3")


def new_bucket() -> str:
    name = f"pfs-{uuid.uuid4().hex[:12]}"
    s3().create_bucket(Bucket=name)
    return name


def remote_volumes(store: Path) -> dict[int, tuple[str, str]]:
    """{volume id: (bucket, prefix)} of the store's S3 volumes, as store.json lists them."""
    found = {}
    for v in json.loads((store / "store.json").read_bytes())["volumes"]:
        if v["url"].startswith("s3://"):
            bucket, _, prefix = v["url"][5:].partition("/")
            found[v["id"]] = (bucket, prefix)
    return found


def objects(bucket: str, prefix: str = "") -> list[str]:
    """Every object key in the bucket under `prefix`."""
    pages = s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", ())]


def stored_pieces(store: Path) -> set[tuple[int, str]]:
    """(volume id, key) of every piece on the store's volumes, local and remote."""
    found = {(vid, key) for vid, key, _ in pieces(store)}
    for vid, (bucket, prefix) in remote_volumes(store).items():
        found |= {(vid, k.rsplit("/", 1)[1]) for k in objects(bucket, prefix + "/") if not k.endswith(".json")}
    return found


def assert_no_orphans(store: Path) -> None:
    orphans = stored_pieces(store) - referenced_pieces(store)
    assert not orphans, f"{len(orphans)} pieces no manifest references, e.g. {sorted(orphans)[:3]}"


def new_store(tmp_path: Path, volumes: int, local: bool) -> tuple[Path, Path, str]:
    """A store to be, and the script that makes it: `volumes` S3 volumes, each
    in a bucket of its own; without `local`, the store's own directory volume
    drained and removed."""
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    script = "".join(f"volume add s3://{new_bucket()}/v\n" for _ in range(volumes))
    if not local:
        script += "volume drain 0\nwait\nvolume remove 0\n"
    return store, work, script


def put_and_get(store: Path, work: Path, sizes: list[int], *options: str, before: str = "") -> dict[int, bytes]:
    """Run `before`, then store a file of each size and get each back
    byte-identical; {file id: bytes}."""
    datas = {i + 1: make_file(work / f"f{i}", size).read_bytes() for i, size in enumerate(sizes)}
    script = before + "".join(f"put f{i - 1}\n" for i in datas) + "".join(f"get {i} out{i}\n" for i in datas)
    r = run_pfs(store, script, *options, cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    check_gets(work, datas)
    return datas


def check_gets(work: Path, datas: dict[int, bytes]) -> None:
    for i, data in datas.items():
        out = work / f"out{i}"
        assert out.read_bytes() == data, f"file {i} ({len(data)} bytes) came back different"
        out.unlink()


def get_all(store: Path, work: Path, datas: dict[int, bytes], then: str = "") -> str:
    r = run_pfs(store, "".join(f"get {i} out{i}\n" for i in datas) + then, cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    check_gets(work, datas)
    return r.stdout


# -- erasure coding over buckets -------------------------------------------------------------------

def test_erasure_coding_over_buckets_survives_the_loss_of_one(seaweedfs, tmp_path):
    """ec 2+1 over four buckets and no local volume: every bucket's objects of
    one volume deleted (its marker too: the bucket is lost), the files still
    read byte-identical, heal rebuilds the lost shards on the other buckets."""
    store, work, script = new_store(tmp_path, 4, False)
    datas = put_and_get(store, work, SIZES, "--ec", "2+1", before=script)
    held = {vid: objects(b, p + "/") for vid, (b, p) in remote_volumes(store).items()}
    lost = max(held, key=lambda vid: len(held[vid]))
    assert len(held[lost]) > 3
    bucket, prefix = remote_volumes(store)[lost]
    for k in held[lost]:
        s3().delete_object(Bucket=bucket, Key=k)
    out = get_all(store, work, datas, f"volume list\nlist\nheal\nwait\nvolume remove {lost}\nverify --all\n")
    assert f"volume {lost} missing" in out and " healed, 0 damaged, 0 skipped" in out, out
    assert "removed volume" in out and "verify --all: 6 verified, 0 damaged" in out, out
    assert lost not in {vid for vid, _ in referenced_pieces(store)}
    assert_no_orphans(store)


# -- every part remote; the server killed, or down when the store opens ----------------------------

def wait_for_remote(store: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(stored_pieces(store)) < count:
        assert time.monotonic() < deadline, "the put wrote nothing remote"
        time.sleep(0.05)


def test_every_part_remote_then_the_server_killed_mid_get_and_mid_put(seaweedfs, tmp_path, monkeypatch,
                                                                      live_sessions):
    """One S3 volume only (the store's own directory volume drained and removed):
    metadata in the store's directory, every part in the bucket. Then the
    server dies mid-get, is down when the store opens, dies mid-put: each
    command fails within the retry budget, in clear lines, leaving no file
    behind; once it is back, nothing stored before is lost and nothing of the
    failed put is left in the bucket."""
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    store, work, script = new_store(tmp_path, 1, False)
    datas = put_and_get(store, work, [*SIZES, 120 * CHUNK], before=script)
    assert not list((store / "volumes").glob("*/*/*")), "a part was stored locally"
    assert len(stored_pieces(store)) == sum(-(-len(d) // CHUNK) for d in datas.values())
    assert_no_orphans(store)
    big = max(datas, key=lambda i: len(datas[i]))

    # killed mid-get: clear lines, no destination file
    session = live_sessions(store, work)
    session.send(f"get {big} big.out")
    session.wait_for(r"restoring f")
    time.sleep(0.5)
    seaweedfs.stop(signal.SIGKILL)
    killed = time.monotonic()
    session.wait_for(r"^error: ", "err", timeout=60)
    assert time.monotonic() - killed < 15, "the get failed too long after the server died"
    assert session.close() != 0
    errors = error_lines(session.stderr())  # one line: every part failed for one cause
    assert len(errors) == 1 and errors[0].startswith(f"error: get {big} (f6): unreachable parts ") and \
        "nothing was written" in errors[0] and "damaged" not in errors[0] and "--salvage" not in errors[0], errors
    assert_clean_stderr(session.stderr())
    assert sorted(os.listdir(work)) == sorted(f"f{i - 1}" for i in datas), "the get left a file behind"

    # down when the store opens: it opens, says the volume is missing, a get fails clearly
    r = run_pfs(store, "volume list\nlist\nget 6 out6\n", cwd=work)
    assert r.returncode != 0 and "missing" in r.stdout, r.stdout + r.stderr
    errors = error_lines(r.stderr)  # as for a local volume: one line, saying why the volume is missing
    assert len(errors) == 1 and errors[0].startswith("error: get 6") and "unreachable parts 0-3: " in errors[0] \
        and "no connection" in errors[0], r.stderr
    assert not (work / "out6").exists()
    assert_clean_stderr(r.stderr)

    # killed mid-put: one clear line, the put's parts removed at the next open
    seaweedfs.start()
    make_file(work / "big", 120 * CHUNK)
    session = live_sessions(store, work)
    session.send("put big")
    wait_for_remote(store, len(stored_pieces(store)) + 10)
    seaweedfs.stop(signal.SIGKILL)
    killed = time.monotonic()
    session.wait_for(r"^error: ", "err", timeout=60)
    assert time.monotonic() - killed < 15, "the put failed too long after the server died"
    session.send("list")
    session.wait_for(r"failed")
    assert session.close() != 0
    assert len(error_lines(session.stderr())) == 1, session.stderr()
    assert "unavailable" in session.stderr() and "check that it is running" in session.stderr(), session.stderr()
    assert_clean_stderr(session.stderr())
    seaweedfs.start()
    get_all(store, work, datas, "list\n")
    assert_no_orphans(store)


def test_pfs_leaves_boto3_to_its_workers_on_a_get(seaweedfs, tmp_path):
    """On a get from an S3 volume, pfs itself only describes the volume to its
    workers, which make the requests: it never imports boto3 (0.2 s of CPU)."""
    store, work, script = new_store(tmp_path, 1, False)
    data = make_file(work / "f", 3 * CHUNK).read_bytes()
    assert run_pfs(store, script + "put f\n", cwd=work).returncode == 0
    argv = pfs_argv(store)
    report = "import atexit, runpy, sys; atexit.register(lambda: print('boto3 imported:', 'boto3' in sys.modules)); " \
             "sys.argv[1:] = sys.argv[2:]; runpy.run_module('pfs', run_name='__main__', alter_sys=True)"
    r = subprocess.run([argv[0], "-c", report, *argv[2:]], input="get 1 out1\n", capture_output=True, text=True,
                       cwd=work, timeout=60, env=env())
    assert r.returncode == 0 and "boto3 imported: False" in r.stdout, r.stdout + r.stderr
    check_gets(work, {1: data})


# -- a slow server ---------------------------------------------------------------------------------

def test_a_server_paused_mid_put_is_waited_for(seaweedfs, tmp_path, live_sessions):
    """SIGSTOP for three seconds mid-put (within the default retry budget): the put completes."""
    store, work, script = new_store(tmp_path, 1, True)
    run_pfs(store, script, cwd=work)
    data = make_file(work / "big", 80 * CHUNK).read_bytes()
    session = live_sessions(store, work, "--copies", "2")
    session.send("put big")
    wait_for_remote(store, 20)
    with seaweedfs.paused():
        time.sleep(3)
    session.wait_for(r"stored big", timeout=60)
    assert session.close() == 0, session.stderr()
    get_all(store, work, {1: data})
    assert_no_orphans(store)


@contextlib.contextmanager
def server_down(seaweedfs, sig: int) -> Iterator[None]:
    """The server paused (SIGSTOP: requests hang) or killed (SIGKILL: refused)
    for the block, then back."""
    if sig == signal.SIGSTOP:
        with seaweedfs.paused():
            yield
        return
    seaweedfs.stop(sig)
    try:
        yield
    finally:
        seaweedfs.start()


def timed(store: Path, work: Path, script: str, *options: str):
    """run_pfs, and the seconds it took."""
    started = time.monotonic()
    r = run_pfs(store, script, *options, cwd=work)
    return r, time.monotonic() - started


#: Half the default retry budget: a command that waited on the server would take the whole budget,
#: one that asked none takes a fraction of this even on a loaded machine.
HALF_BUDGET = DEFAULT_RETRY_SECONDS / 2


@pytest.mark.parametrize("sig", [signal.SIGSTOP, signal.SIGKILL], ids=["paused", "killed"])
def test_a_server_down_keeps_no_command_waiting(seaweedfs, tmp_path, sig):
    """With the default retry budget (30 s) and the server paused (requests hang)
    or killed: `list` and `info` ask no server, `volume list` says missing after a short
    probe, a get reads the local copies, a put of two copies fails in one clear
    line; none waits out the budget."""
    store, work, script = new_store(tmp_path, 1, True)
    data = make_file(work / "f", 8 * CHUNK).read_bytes()
    r = run_pfs(store, script + "put f\n", "--copies", "2", cwd=work)
    assert r.returncode == 0, r.stderr
    with server_down(seaweedfs, sig):
        r, took = timed(store, work, "list\ninfo 1\n")
        assert r.returncode == 0 and parse_list(r.stdout)[1] == ("f", "stored"), r.stdout + r.stderr
        assert took < HALF_BUDGET, f"list and info took {took:.1f} s"
        r, took = timed(store, work, "volume list\n")
        assert r.returncode == 0 and "missing" in r.stdout, r.stdout + r.stderr
        assert took < HALF_BUDGET, f"volume list took {took:.1f} s"
        r, took = timed(store, work, "get 1 out1\n")
        assert r.returncode == 0, r.stderr
        assert took < HALF_BUDGET, f"get took {took:.1f} s"
        check_gets(work, {1: data})
        r, took = timed(store, work, "put f\n", "--copies", "2")
        assert r.returncode != 0 and len(error_lines(r.stderr)) == 1 and "volume 1 missing" in r.stderr, r.stderr
        assert_clean_stderr(r.stderr)
        assert took < HALF_BUDGET, f"put took {took:.1f} s"
    get_all(store, work, {1: data}, "verify --all\n")
    assert_no_orphans(store)


@pytest.mark.parametrize("sig", [signal.SIGSTOP, signal.SIGKILL], ids=["paused", "killed"])
def test_a_get_reads_local_copies_first_so_a_server_down_since_its_status_is_not_waited_for(
        seaweedfs, tmp_path, live_sessions, sig):
    """--copies 2 over the store's directory and a bucket, the default retry
    budget (30 s): the server paused or killed while the session still holds
    its status as online; a get reads the local copy of every part, even where
    the manifest lists the remote one first, so it never waits on the server."""
    store, work, script = new_store(tmp_path, 1, True)
    data = make_file(work / "f", 16 * CHUNK).read_bytes()
    assert run_pfs(store, script + "put f\n", "--copies", "2", cwd=work).returncode == 0
    (vid, _), = remote_volumes(store).items()
    assert sum(p["copies"][0] == vid for p in read_manifest(store, 1)["parts"]) >= 2
    session = live_sessions(store, work)
    session.send("volume list")  # the status is now known: online, for some seconds
    session.wait_for(r"s3://.*online")
    with server_down(seaweedfs, sig):
        started = time.monotonic()
        session.send("get 1 out1")
        session.wait_for(r"restored", timeout=60)
        took = time.monotonic() - started
    assert took < 5, f"the get took {took:.1f} s"
    assert session.close() == 0, session.stderr()
    check_gets(work, {1: data})


# -- damage behind pfs's back ----------------------------------------------------------------------

def test_a_remote_copy_deleted_or_overwritten_is_detected_and_healed(seaweedfs, tmp_path):
    """A get reads the local copies, even of parts whose manifest lists the
    remote copy first, so it never meets the damaged remote ones; a scrub
    finds and rewrites them."""
    store, work, script = new_store(tmp_path, 1, True)
    data = make_file(work / "f", 16 * CHUNK).read_bytes()
    r = run_pfs(store, script + "put f\n", "--copies", "2", cwd=work)
    assert r.returncode == 0, r.stderr
    (vid, (bucket, prefix)), = remote_volumes(store).items()
    remote_first = [p["id"] for p in read_manifest(store, 1)["parts"] if p["copies"][0] == vid]
    assert len(remote_first) >= 2, "too few parts list the bucket's copy first"
    gone, bad = remote_first[:2]
    s3().delete_object(Bucket=bucket, Key=f"{prefix}/{gone[:2]}/{gone}")
    s3().put_object(Bucket=bucket, Key=f"{prefix}/{bad[:2]}/{bad}", Body=os.urandom(CHUNK))
    out = get_all(store, work, {1: data})
    assert "rewritten" not in out and f"{prefix}/{gone[:2]}/{gone}" not in objects(bucket, prefix + "/"), out
    out = run_pfs(store, "verify --all --heal\nverify --all\n", cwd=work).stdout
    assert out.count("rewritten") == 2 and "part file missing" in out, out
    assert "verify --all: 1 verified, 0 damaged" in out, out
    body = s3().get_object(Bucket=bucket, Key=f"{prefix}/{bad[:2]}/{bad}")["Body"].read()
    assert body == (pieces_of(store, bad)), "the overwritten copy was not rewritten"
    assert_no_orphans(store)


def pieces_of(store: Path, part: str) -> bytes:
    """The local copy of a part (the remote one must hold the same bytes)."""
    return next(path.read_bytes() for _, key, path in pieces(store) if key == part)


# -- kill -9 loops ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kills", [KILLS, pytest.param(SOAK_KILLS, marks=pytest.mark.soak)], ids=["default", "soak"])
@pytest.mark.parametrize("local", [True, False], ids=["local+s3", "s3-only"])
def test_kill_9_mid_put_loses_nothing_and_leaves_no_orphan(seaweedfs, tmp_path, live_sessions, local, kills):
    """--copies 2 over the store's directory and a bucket, or over two buckets:
    pfs killed at random moments of a put; every reopen finds no orphan piece,
    and every stored file reads back byte-identical."""
    store, work, script = new_store(tmp_path, 1 if local else 2, local)
    assert run_pfs(store, script, cwd=work).returncode == 0
    rng = random.Random()
    datas: dict[str, bytes] = {}
    for n in range(kills):
        make_file(work / f"f{n}", rng.randrange(48, 96) * CHUNK + rng.randrange(CHUNK))
        session = live_sessions(store, work, "--copies", "2")
        session.send("list")  # once it answers, the store is open and recovered
        session.wait_for(r"^id\s+name|no files", timeout=60)
        assert_no_orphans(store)
        if n % 2:  # and a put that gets through
            session.send(f"put f{n} g{n}")
            session.wait_for(f"stored g{n}")
            datas[f"g{n}"] = (work / f"f{n}").read_bytes()
        session.send(f"put f{n}")
        wait_for_remote(store, len(referenced_pieces(store)) + 1)
        time.sleep(rng.uniform(0, 0.3) if n else 0)  # the first kill lands mid-put for certain
        session.kill()
    r = run_pfs(store, "list\n", cwd=work)
    stored = {name: i for i, (name, status) in parse_list(r.stdout).items() if status == "stored"}
    assert set(datas) <= set(stored), r.stdout
    assert "failed (interrupted)" in r.stdout, "no kill hit a put"
    get_all(store, work, {i: datas[name] if name in datas else (work / name).read_bytes()
                          for name, i in stored.items()})
    assert_no_orphans(store)


# -- the same store round trips against Ceph's radosgw (opt-in: pytest -m ceph) --------------------

@pytest.mark.ceph
def test_round_trips_and_a_lost_bucket_on_ceph(ceph, tmp_path):
    """ec 2+1 over four Ceph buckets, named by their endpoint, no local volume:
    the core sizes round trip; a bucket emptied behind pfs's back is healed."""
    client = boto3.client("s3", endpoint_url=ceph)
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    buckets = [f"pfs-{uuid.uuid4().hex[:12]}" for _ in range(4)]
    for b in buckets:
        client.create_bucket(Bucket=b)
    script = "".join(f"volume add s3://{b}/v --endpoint {ceph}\n" for b in buckets)
    datas = put_and_get(store, work, SIZES, "--ec", "2+1",
                        before=script + "volume drain 0\nwait\nvolume remove 0\n")
    bucket = buckets[0]
    for k in [obj["Key"] for obj in client.list_objects_v2(Bucket=bucket).get("Contents", ())]:
        if not k.endswith(".json"):
            client.delete_object(Bucket=bucket, Key=k)
    out = get_all(store, work, datas, "verify --all --heal\nwait\nverify --all\n")
    assert "verify --all: 6 verified, 0 damaged" in out, out


# -- small files in packs ---------------------------------------------------------------------------

def test_small_files_in_packs_on_buckets_survive_damage_and_leave_no_orphan(seaweedfs, tmp_path):
    """put -r of small files onto buckets: their pieces are packs (one PUT each),
    read back with ranged GETs; a pack overwritten behind pfs's back with bytes
    flipped inside one piece costs that piece only, which a scrub rewrites from
    the other copy; delete -r leaves no piece."""
    from pfs.volumes import open_volume

    store, work, script = new_store(tmp_path, 2, False)
    assert run_pfs(store, script, cwd=work).returncode == 0
    src = work / "src"
    src.mkdir()
    for i in range(60):
        (src / f"f{i}").write_bytes(os.urandom(2000) + bytes([i]))
    r = run_pfs(store, "", "--copies", "2", "put", "-r", str(src), "t", cwd=work)
    assert r.returncode == 0, r.stderr
    volumes = {vid: open_volume(f"s3://{b}/{p}") for vid, (b, p) in remote_volumes(store).items()}
    for vid, (b, p) in remote_volumes(store).items():
        assert all("/packs/" in k or k.endswith(".json") for k in objects(b, p + "/"))
    keys = {(vid, k) for vid, v in volumes.items() for k in v.keys()}
    assert keys == referenced_pieces(store) and len(keys) == 120
    vid, volume = next(iter(volumes.items()))
    (pack, size), = list(volume.shelf_list().items())[:1]
    blob = bytearray(volume.shelf_get(pack, 0, size))
    blob[100:110] = bytes(b ^ 0xFF for b in blob[100:110])  # inside the first piece
    s3().put_object(Bucket=volume.bucket, Key=volume._shelf_key(pack), Body=bytes(blob))
    r = run_pfs(store, "verify --all\nwait\nverify --all --heal\nwait\nverify --all\n", cwd=work)
    assert "1 damaged" not in r.stdout.splitlines()[-1] and "rewritten" in r.stdout, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1].startswith("verify --all: 61 verified, 0 damaged"), r.stdout
    out = work / "out"
    assert run_pfs(store, f"get -r t {out}\nwait\n", cwd=work).returncode == 0
    assert all((out / f"f{i}").read_bytes() == (src / f"f{i}").read_bytes() for i in range(60))
    assert run_pfs(store, "", "delete", "-r", "t", cwd=work).returncode == 0
    assert {(v, k) for v, vol in volumes.items() for k in vol.keys()} == set()
