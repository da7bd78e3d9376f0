"""Say what actually failed, once: against a real SeaweedFS (wrong secret key,
no credentials, a missing bucket, the server stopped, the server not answering)
and local volumes (an erasure-coded file with a shard's volume gone), each
failure is one `error:` line in its own words; unreachable data is never called
damaged nor offered --salvage; damage is bytes that fail their hash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from helpers import CHUNK, assert_clean_stderr, env, error_lines, make_file

pytest.importorskip("boto3", reason="S3 volumes need boto3")

FAST = {"PFS_S3_TIMEOUT": "1", "PFS_S3_RETRY_SECONDS": "2"}
PARTS = 40


def pfs(store: Path, *args: str, extra: dict | None = None, script: str = "") -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pfs", "--store", str(store), "--workers", "2",
                           "--chunk-size", str(CHUNK), *args], input=script, capture_output=True, text=True,
                          timeout=120, env={**env(), **FAST, **(extra or {})})
    assert_clean_stderr(proc.stderr)
    return proc


def never_damaged(stderr: str) -> None:
    assert "damaged" not in stderr and "--salvage" not in stderr and "its volume is missing" not in stderr, stderr


@pytest.fixture
def remote_store(seaweedfs, tmp_path):
    """A store whose only volume is a prefix of the SeaweedFS bucket, holding one file of PARTS parts."""
    store = tmp_path / "store"
    prefix = f"words-{uuid.uuid4().hex[:8]}"
    assert pfs(store, "volume", "add", f"s3://{seaweedfs.bucket}/{prefix}").returncode == 0
    assert pfs(store, "volume", "drain", "0").returncode == 0
    source = make_file(tmp_path / "f.bin", PARTS * CHUNK)
    assert pfs(store, "put", str(source), "f").returncode == 0
    return store, tmp_path


def test_credentials_refused_and_tls_are_said_once_and_not_called_damage(remote_store):
    store, tmp = remote_store
    cases = {"the secret key does not match the access key": {"AWS_SECRET_ACCESS_KEY": "not-the-secret"},
             "no S3 credentials found": {"AWS_SECRET_ACCESS_KEY": "", "AWS_ACCESS_KEY_ID": ""},
             "a TLS problem with the S3 server":  # https:// to a server that speaks plain http
                 {"AWS_ENDPOINT_URL_S3": env()["AWS_ENDPOINT_URL_S3"].replace("http://", "https://")}}
    for words, extra in cases.items():
        for command in (["get", "f", str(tmp / "out")], ["verify", "f"]):
            proc = pfs(store, *command, extra=extra)
            lines = error_lines(proc.stderr)
            assert proc.returncode == 1 and len(lines) == 1, proc.stderr
            assert "unreachable" in lines[0] and words in lines[0], proc.stderr
            never_damaged(proc.stderr)
    assert not (tmp / "out").exists()
    log = (store / "pfs.log").read_text()  # each part is in the log
    assert all(f"part {i} bytes" in log for i in range(PARTS)), log


def test_a_server_stopped_or_not_answering_is_unreachable_once(seaweedfs, remote_store):
    store, tmp = remote_store
    with seaweedfs.paused():
        proc = pfs(store, "get", "f", str(tmp / "out"))
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "unreachable" in lines[0] and "no answer in time" in lines[0], proc.stderr
    never_damaged(proc.stderr)
    seaweedfs.stop()
    try:
        for command in (["get", "f", str(tmp / "out")], ["verify", "--all"]):
            proc = pfs(store, *command)
            lines = error_lines(proc.stderr)
            assert proc.returncode == 1 and len(lines) == 1, proc.stderr
            assert "unreachable" in lines[0] and "no connection" in lines[0], proc.stderr
            assert "try again" in proc.stderr or command[0] == "verify", proc.stderr
            never_damaged(proc.stderr)
        assert "0 damaged, 1 unreachable" in proc.stdout, proc.stdout
    finally:
        seaweedfs.start()
    assert pfs(store, "get", "f", str(tmp / "out")).returncode == 0  # back: nothing was lost
    assert (tmp / "out").read_bytes() == (tmp / "f.bin").read_bytes()


def test_a_missing_bucket_is_named_and_create_bucket_makes_it(seaweedfs, tmp_path):
    store = tmp_path / "store"
    url = f"s3://pfs-new-{uuid.uuid4().hex[:10]}/p"
    proc = pfs(store, "volume", "add", url)
    lines = error_lines(proc.stderr)
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert "does not exist" in lines[0] and f"volume add {url} --create-bucket" in lines[0], proc.stderr
    assert pfs(store, "volume", "add", url, "--create-bucket").returncode == 0
    assert pfs(store, "volume", "drain", "0").returncode == 0
    source = make_file(tmp_path / "g.bin", 3 * CHUNK + 1)
    assert pfs(store, "put", str(source), "g").returncode == 0
    assert pfs(store, "get", "g", str(tmp_path / "back")).returncode == 0
    assert (tmp_path / "back").read_bytes() == source.read_bytes()


def test_an_erasure_coded_file_with_a_shard_volume_gone_is_not_damaged(tmp_path):
    """2+1 over three local volumes, one moved away: every part still reads,
    verify says which shards are unreachable in one line, never damaged."""
    store = tmp_path / "store"
    disks = [tmp_path / f"disk{i}" for i in range(3)]
    for disk in disks:
        disk.mkdir()
        assert pfs(store, "volume", "add", str(disk)).returncode == 0
    assert pfs(store, "volume", "drain", "0").returncode == 0
    source = make_file(tmp_path / "e.bin", PARTS * CHUNK)
    assert pfs(store, "--ec", "2+1", "put", str(source), "e").returncode == 0
    shutil.move(disks[1], tmp_path / "away")
    proc = pfs(store, "verify", "e")
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and f"{PARTS} copies or shards: volume directory" in lines[0], proc.stderr
    never_damaged(proc.stderr)
    proc = pfs(store, "verify", "--all")
    assert "0 damaged, 1 unreachable" in proc.stdout, proc.stdout
    proc = pfs(store, "heal")  # two volumes left for three shards: nowhere to restore them, said once
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "not healed" in lines[0] and f"{PARTS} copies or shards" in lines[0], proc.stderr
    never_damaged(proc.stderr)
    assert pfs(store, "get", "e", str(tmp_path / "back")).returncode == 0
    assert (tmp_path / "back").read_bytes() == source.read_bytes()


def test_real_damage_is_still_damage(tmp_path):
    """Bytes that fail their hash are damaged, and only then is --salvage offered."""
    store = tmp_path / "store"
    source = make_file(tmp_path / "d.bin", 4 * CHUNK)
    assert pfs(store, "put", str(source), "d").returncode == 0
    part = next(p for p in (store / "volumes" / "0").rglob("*") if p.is_file() and not p.name.startswith("pfs-"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(part, 0o644)
    part.write_bytes(bytes(data))
    proc = pfs(store, "get", "d", str(tmp_path / "out"))
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "damaged part" in lines[0] and "--salvage" in lines[0], proc.stderr
    assert "unreachable" not in proc.stderr
