"""Proof at rest: a file full of a marker, stored uncompressed with copies on a
local volume and an S3 bucket (a real SeaweedFS), is found nowhere at rest
(the volumes, the server's data directory), comes back identical, and a piece
damaged, swapped or replayed on the bucket fails authentication and heals."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from helpers import read_manifest, run_pfs, volume_dirs

boto3 = pytest.importorskip("boto3", reason="S3 volumes need boto3: pip install 'pfs[s3]'")

MARKER = b"MARKER-8d1c-plaintext-that-must-never-rest "


def _marker_file(path: Path, blocks: int = 700) -> bytes:
    """The marker every KiB or so, between random bytes: SeaweedFS gzips what
    compresses well, which would hide the marker from the search whatever pfs does."""
    data = b"".join(MARKER + os.urandom(1000) for _ in range(blocks))
    path.write_bytes(data)
    return data


def _holding_marker(*roots: Path) -> list[str]:
    """Every file under `roots` that holds the marker (grep, on the bytes as they rest)."""
    r = subprocess.run(["grep", "-rlaF", MARKER.decode().strip(), *map(str, roots)], capture_output=True, text=True)
    return r.stdout.split()


def _store(tmp_path: Path, name: str, seaweedfs, *options: str) -> tuple[Path, Path, str]:
    """A store with copies 2 over its own directory volume and a new bucket; and its bucket."""
    bucket = f"pfs-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    store, work = tmp_path / name, tmp_path / f"{name}-work"
    work.mkdir()
    r = run_pfs(store, f"volume add s3://{bucket}/v\n", *options, cwd=work)
    assert r.returncode == 0, r.stderr
    return store, work, bucket


def _objects(bucket: str) -> dict[str, int]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", ()) if not o["Key"].endswith(".json")}


def test_the_marker_rests_nowhere_and_damage_on_the_bucket_heals(seaweedfs, tmp_path, monkeypatch) -> None:
    (tmp_path / "pw").write_text("at rest\n")
    monkeypatch.setenv("PFS_PASSWORD_FILE", str(tmp_path / "pw"))
    store, work, bucket = _store(tmp_path, "sealed", seaweedfs, "--encrypt")
    data = _marker_file(work / "m")
    r = run_pfs(store, "put m\nwait\nget m out\n", "--codec", "none", "--copies", "2", cwd=work)
    assert r.returncode == 0 and (work / "out").read_bytes() == data, r.stderr
    parts = read_manifest(store, 1)["parts"]
    assert {k.rsplit("/", 1)[1] for k in _objects(bucket)} == {p["id"] for p in parts}  # a copy of each on the bucket
    assert _holding_marker(store, seaweedfs.data) == []
    s3 = boto3.client("s3")
    assert not any(MARKER[:16] in s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in _objects(bucket))

    # the control: the same file in a plain store is found at rest, so the search above could fail
    plain, plain_work, _ = _store(tmp_path, "plain", seaweedfs)
    (plain_work / "m").write_bytes(data)
    assert run_pfs(plain, "put m\nwait\n", "--codec", "none", "--copies", "2", cwd=plain_work).returncode == 0
    assert _holding_marker(plain) and _holding_marker(seaweedfs.data)

    # damage on the bucket: a flipped byte in one object, another part's object over a third;
    # their local copies set aside, so the bucket's are the ones read
    sizes = _objects(bucket)
    keys = sorted((k for k, n in sizes.items() if n == max(sizes.values())), key=lambda k: k.rsplit("/", 1)[1])
    flipped = bytearray(s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read())
    flipped[100] ^= 1
    s3.put_object(Bucket=bucket, Key=keys[0], Body=bytes(flipped))
    s3.put_object(Bucket=bucket, Key=keys[2], Body=s3.get_object(Bucket=bucket, Key=keys[1])["Body"].read())
    local = [volume_dirs(store)[0] / k[-32:][:2] / k[-32:][2:4] / k[-32:] for k in (keys[0], keys[2])]
    for path in local:
        path.rename(path.with_suffix(".aside"))
    r = run_pfs(store, "verify 1\nget m out2\n", cwd=work)
    assert r.returncode != 0 and r.stderr.count("fails authentication") == 4, r.stderr
    assert "--salvage" in r.stderr and not (work / "out2").exists(), r.stderr
    for path in local:
        path.with_suffix(".aside").rename(path)
    r = run_pfs(store, "verify 1 --heal\nverify 1\nget m out2\n", cwd=work)
    assert r.returncode == 0 and r.stdout.count(" rewritten (") == 2, r.stdout + r.stderr
    assert (work / "out2").read_bytes() == data
