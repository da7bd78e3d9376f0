"""A real SeaweedFS S3 server for the tests and the benchmark: `weed mini`
(master, volume server, filer and S3 in one process) on free loopback ports,
serving one bucket. Clients find it the standard way, through the environment
(`environment()`): pfs's pool workers are forked from a forkserver that keeps the
environment of the moment it started, so set it before pfs starts anything."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

WEED = shutil.which("weed", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
NO_FILE = "/nonexistent/pfs-aws"  # the user's ~/.aws files play no part
PORT_NAMES = ("s3", "s3.grpc", "master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "admin")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def client_environment(endpoint: str, access_key: str, secret_key: str) -> dict[str, str]:
    """The AWS variables that point boto3 (and rclone's env_auth) at a server, and
    nowhere else (AWS_PROFILE must be unset too)."""
    return {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": NO_FILE, "AWS_SHARED_CREDENTIALS_FILE": NO_FILE,
            "AWS_EC2_METADATA_DISABLED": "true"}


class SeaweedFS:
    """`weed mini` on loopback, serving `bucket` at `endpoint`."""

    def __init__(self, data: Path, bucket: str, access_key: str, secret_key: str,
                 ports: dict[str, int] | None = None) -> None:
        self.data = data
        self.bucket = bucket
        self.access_key, self.secret_key = access_key, secret_key
        self.ports = ports or dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.proc: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        return client_environment(self.endpoint, self.access_key, self.secret_key)

    def argv(self) -> list[str]:
        ports = [f"-{name.replace('.grpc', '.port.grpc') if '.grpc' in name else name + '.port'}={port}"
                 for name, port in self.ports.items()]
        return [WEED, "mini", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false",
                "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
                "-s3.autoCreateBucket=false", f"-bucket={self.bucket}", *ports]

    def start(self, timeout: float = 60) -> float:
        """Start the server and wait until it stores objects; returns the seconds it
        took. Raises RuntimeError, with the end of its log, if it does not."""
        import boto3

        started = time.monotonic()
        log_path = self.data.parent / "weed.log"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, **self.environment()})
        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                              aws_secret_access_key=self.secret_key, region_name="us-east-1")
        while True:
            try:
                # Just (re)started, it lists buckets before its volume server has
                # registered: only a stored and read object says it is ready.
                client.put_object(Bucket=self.bucket, Key="ready-probe", Body=b"ready")
                client.get_object(Bucket=self.bucket, Key="ready-probe")["Body"].read()
                client.delete_object(Bucket=self.bucket, Key="ready-probe")
                return time.monotonic() - started
            except Exception:
                if self.proc.poll() is not None or time.monotonic() - started > timeout:
                    self.stop()
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"SeaweedFS did not start within {timeout} s:\n{tail}") from None
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The server held still (SIGSTOP) for the block: requests hang. kill()
        returns before every thread of the Go process has stopped, and one still
        running could answer a request, so wait until all of them have."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            while not all(_thread_state(task) == "T" for task in Path(f"/proc/{self.proc.pid}/task").iterdir()):
                time.sleep(0.005)
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)


def _thread_state(task: Path) -> str:
    """The state letter of one thread (R, S, T...), or "T" for one that has just ended."""
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "T"
