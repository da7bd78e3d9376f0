"""S3Volume: the volume contract against a real SeaweedFS server (started once per
session), plus what only a remote store can suffer: a server that stops answering
or dies, refused credentials, a missing bucket, a wrong endpoint."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid

import pytest

from helpers import ACCESS_KEY, BUCKET, ENDPOINT, PORTS, SECRET_KEY, free_ports
from pfs.errors import PartExistsError, UsageError, VolumeUnavailableError
from pfs.volumes import open_volume
from volume_contract import STORE_ID, VolumeContract, key

boto3 = pytest.importorskip("boto3", reason="S3 volumes need boto3: pip install 'pfs[s3]'")
from pfs.volumes.s3 import QUIET_SECONDS  # noqa: E402 - needs boto3

@pytest.fixture
def make_volume(seaweedfs):
    def make(**options):
        return open_volume({"url": f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}", **options})
    return make


@pytest.fixture
def damage_part():
    """A "directory" in a part's place: objects under the key's name as a prefix,
    none at the key itself. S3 sees no part there."""
    from pfs.errors import PartMissingError

    def damage(volume, k: str):
        boto3.client("s3").put_object(Bucket=volume.bucket, Key=volume.object_key(k) + "/inside", Body=b"x")
        return PartMissingError
    return damage


class TestS3Volume(VolumeContract):
    pass


def fast(make_volume):
    """A volume that gives up on an unreachable server after about two seconds."""
    return make_volume(timeout=0.5, retry_seconds=1.5)


def test_a_paused_server_is_a_bounded_clear_error_and_work_resumes(make_volume, seaweedfs):
    v = fast(make_volume)
    v.write_marker(STORE_ID, "v0")
    v.write(key(1), b"before the pause")
    with seaweedfs.paused():
        started = time.monotonic()
        with pytest.raises(VolumeUnavailableError, match=r"unavailable .*no answer in time.*AWS_ENDPOINT_URL"):
            v.read(key(1))
        assert time.monotonic() - started < 1.5 + 0.5 * 2 + 1.5
        assert v.status() == "missing"
    assert v.status() == "online"  # a probe always asks: the server is used again at once
    assert v.read(key(1)) == b"before the pause"


def test_a_server_killed_mid_writes_keeps_every_acknowledged_part(make_volume, seaweedfs):
    v = make_volume(timeout=0.5, retry_seconds=1.0)
    acknowledged: list[str] = []
    failures: list[Exception] = []

    def writer() -> None:
        for n in range(100_000):
            try:
                v.write(key(n), key(n).encode() * 100)
            except Exception as exc:  # noqa: BLE001 - the test inspects what came out
                failures.append(exc)
                return
            acknowledged.append(key(n))

    thread = threading.Thread(target=writer)
    thread.start()
    while len(acknowledged) < 20:
        time.sleep(0.01)
    seaweedfs.stop(signal.SIGKILL)
    thread.join(30)
    assert not thread.is_alive()
    assert len(failures) == 1 and isinstance(failures[0], VolumeUnavailableError), failures
    assert "no connection" in str(failures[0])
    seaweedfs.start()
    time.sleep(QUIET_SECONDS)  # until then, this process's requests fail at once (it counts the server down)
    # Just restarted, the server answers 500 until its volume server has registered
    # again: transient, so a patient volume rides it out.
    v = open_volume({**v.describe(), "retry_seconds": 30})
    started = time.monotonic()
    for k in acknowledged:
        assert v.read(k) == k.encode() * 100
    print(f"\nfirst reads after the restart took {time.monotonic() - started:.2f} s")
    # The part in flight at the kill either made it whole or not at all; it can be written now.
    in_flight = key(len(acknowledged))
    try:
        v.write(in_flight, in_flight.encode() * 100)
    except PartExistsError:
        pass
    assert v.read(in_flight) == in_flight.encode() * 100


class AnswerDroppingProxy:
    """A TCP relay to the server that, when armed, passes one request of `method`
    on but closes the connection after relaying `keep` bytes of the server's
    answer: a real lost (or broken-off) answer."""

    def __init__(self, upstream: int, method: bytes = b"PUT ", keep: int = 0) -> None:
        self.upstream, self.method, self.keep = upstream, method, keep
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.armed = threading.Event()
        self.dropped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            drop = threading.Event()
            threading.Thread(target=self._relay, args=(client, server, drop, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(server, client, drop, False), daemon=True).start()

    def _relay(self, src: socket.socket, dst: socket.socket, drop: threading.Event, request: bool) -> None:
        try:
            relayed = 0
            while data := src.recv(1 << 16):
                if request and data.startswith(self.method) and self.armed.is_set():
                    self.armed.clear()
                    drop.set()
                if not request and drop.is_set() and not data.startswith(b"HTTP/1.1 100 "):
                    dst.sendall(data[:self.keep - relayed])
                    relayed += len(data)
                    if relayed >= self.keep:
                        self.dropped.set()
                        break  # the client never hears the rest
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def test_a_write_whose_answer_was_lost_is_retried_and_succeeds(make_volume, seaweedfs, monkeypatch):
    proxy = AnswerDroppingProxy(PORTS["s3"])
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        v = make_volume(timeout=2, retry_seconds=10)
        v.write(key(1), b"first")
        proxy.armed.set()
        v.write(key(2), b"stored, but the answer was lost")  # the retry meets its own object: 412
        assert proxy.dropped.is_set()
        assert v.read(key(2)) == b"stored, but the answer was lost"
        proxy.armed.set()
        with pytest.raises(PartExistsError):  # another writer's part stays a conflict
            v.write(key(1), b"not the first")
        assert v.read(key(1)) == b"first"
    finally:
        proxy.close()


def test_a_read_whose_answer_broke_off_is_retried(make_volume, seaweedfs, monkeypatch):
    """A part's answer cut off after 100 KiB of its 1 MiB: the read straight
    into a buffer finds the body short of its length, asks again on a new
    connection and returns the whole part."""
    proxy = AnswerDroppingProxy(PORTS["s3"], b"GET ", keep=100 << 10)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        v = make_volume(timeout=2, retry_seconds=10)
        data = os.urandom(1 << 20)
        v.write(key(1), data)
        proxy.armed.set()
        buffer = memoryview(bytearray(2 << 20))
        assert v.read_into(key(1), buffer) == len(data) and buffer[:len(data)] == data
        assert proxy.dropped.is_set()
    finally:
        proxy.close()


def test_an_answer_longer_than_the_buffer_is_read_by_botocore(make_volume):
    """The straight-into-the-buffer read takes only an answer of a known length
    that fits; any other (here: a whole object into a smaller buffer) goes
    through botocore's own read and fills what fits."""
    from pfs.volumes.s3 import _fill

    v = make_volume()
    data = os.urandom(300_000)
    v.write(key(1), data)
    body = boto3.client("s3").get_object(Bucket=v.bucket, Key=v.object_key(key(1)))["Body"]
    buffer = memoryview(bytearray(100_000))
    assert _fill(body, buffer) == len(buffer) and buffer == data[:len(buffer)]


def test_wrong_secret_key(make_volume, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    v = make_volume()
    with pytest.raises(VolumeUnavailableError, match="refused access .*secret key does not match") as err:
        v.write(key(1), b"x")
    assert "AWS_SECRET_ACCESS_KEY" in err.value.advice
    assert v.status() == "missing"


def test_unknown_access_key(make_volume, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(VolumeUnavailableError, match="does not know the access key"):
        make_volume().read(key(1))


def test_no_credentials(make_volume, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(VolumeUnavailableError, match="no S3 credentials found"):
        list(make_volume().keys())


def test_missing_bucket(seaweedfs):
    v = open_volume("s3://no-such-bucket/p")
    for op in (lambda: v.write(key(1), b"x"), lambda: v.read(key(1)), lambda: v.remove(key(1)),
               lambda: list(v.keys())):
        with pytest.raises(VolumeUnavailableError, match="bucket no-such-bucket does not exist"):
            op()
    assert v.status() == "missing"


def test_wrong_endpoint_is_a_bounded_clear_error(monkeypatch):
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", closed)
    v = open_volume({"url": f"s3://{BUCKET}/p", "timeout": 0.5, "retry_seconds": 1.0})
    started = time.monotonic()
    with pytest.raises(VolumeUnavailableError, match=f"server at {closed} is unavailable .*no connection"):
        v.read(key(1))
    assert time.monotonic() - started < 3


def test_retry_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv("PFS_S3_TIMEOUT", "0.5")
    monkeypatch.setenv("PFS_S3_RETRY_SECONDS", "2.5")
    v = open_volume(f"s3://{BUCKET}/p")
    assert (v.timeout, v.retry_seconds) == (0.5, 2.5)
    assert open_volume(v.describe()).retry_seconds == 2.5  # a worker gets the same budget
    monkeypatch.setenv("PFS_S3_RETRY_SECONDS", "soon")
    with pytest.raises(UsageError, match="PFS_S3_RETRY_SECONDS=soon is not a number of seconds"):
        open_volume(f"s3://{BUCKET}/p")


def test_a_server_found_down_is_tried_once_by_later_requests(make_volume, monkeypatch):
    """The first request waits out the retry budget, and says how long it
    tried; the next ones of the process fail at once, so a put of many parts
    fails in one budget."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_ports(1)[0]}")
    v = make_volume(timeout=0.5, retry_seconds=1.5)
    started = time.monotonic()
    with pytest.raises(VolumeUnavailableError, match=r"no connection after trying for") as failed:
        v.read(key(1))
    took = time.monotonic() - started
    # retried until the next jittered backoff would pass the budget: at least
    # 0.375 s of pauses (0.025 + 0.05 + 0.1 + 0.2 at their smallest), each attempt milliseconds
    assert took >= 0.375
    # the message says how long it tried (the budget, 1.5 s, would overstate it)
    assert 0.3 < said_seconds(failed.value) <= took + 0.05, f"{failed.value}, yet the read took {took:.2f} s"
    started = time.monotonic()
    for n in range(20):
        with pytest.raises(VolumeUnavailableError, match=r"no connection after trying for [\d.]+ s, [\d.]+ s ago"):
            v.write(key(n), b"x")
    assert time.monotonic() - started < 2


def said_seconds(failure: Exception) -> float:
    """How long a request tried, as its message says."""
    return float(re.search(r"trying for ([\d.]+) s", str(failure)).group(1))


def test_a_hanging_server_given_up_on_costs_later_requests_no_timeout(make_volume, seaweedfs):
    """Paused (requests hang until their timeout): once a request has given
    up, the process's next ones fail at once for a few seconds instead of each
    waiting a request timeout, then one asks again; a resumed server is used again."""
    v = make_volume(timeout=0.5, retry_seconds=1.0)
    v.write(key(1), b"before the pause")
    with seaweedfs.paused():
        with pytest.raises(VolumeUnavailableError, match="no answer in time"):
            v.read(key(1))
        started = time.monotonic()
        for _ in range(10):
            with pytest.raises(VolumeUnavailableError, match=r" s ago\)"):
                v.read(key(1))
        assert time.monotonic() - started < 0.5, "later requests waited on the paused server"
        time.sleep(QUIET_SECONDS)
        started = time.monotonic()
        with pytest.raises(VolumeUnavailableError, match=r"no answer in time after trying for") as failed:
            v.read(key(1))  # asked once: within a request timeout (connect and read), not the budget again
        took = time.monotonic() - started
        assert 0.4 < said_seconds(failed.value) <= took + 0.05 and took < 1.4, f"{failed.value} in {took:.2f} s"
    time.sleep(QUIET_SECONDS)
    assert v.read(key(1)) == b"before the pause"


def test_describe_names_no_endpoint_and_no_secret(make_volume):
    desc = make_volume().describe()
    text = str(desc)
    assert ENDPOINT not in text and SECRET_KEY not in text and ACCESS_KEY not in text
    assert desc["url"].startswith(f"s3://{BUCKET}/t-")


def test_missing_boto3_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "pfs.volumes.s3", raising=False)
    from pfs.errors import MissingDependencyError
    from pfs.extras import install_hint

    with pytest.raises(VolumeUnavailableError, match="need the Python package boto3") as err:
        open_volume("s3://bucket/prefix")
    assert install_hint("s3") in err.value.advice and isinstance(err.value, MissingDependencyError)


# -- a store with local and remote volumes ---------------------------------------------

def _remote_keys(prefix: str) -> set[str]:
    client = boto3.client("s3", endpoint_url=ENDPOINT)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    return {obj["Key"].rsplit("/", 1)[1] for page in pages for obj in page.get("Contents", ())} - {"pfs-volume.json"}


def test_a_store_with_a_local_and_a_remote_copy(seaweedfs, tmp_path, monkeypatch):
    """--copies 2 over the store's own directory and an S3 prefix whose endpoint
    is given once, to `volume add`: the endpoint is stored, credentials are not;
    a damaged local copy is healed from the remote one on get; a put killed
    midway leaves no remote part behind once the store is opened again."""
    import json

    from helpers import LiveSession, make_file, manifest_part_ids, run_pfs, volume_dirs

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # from here on, only the stored endpoint finds the server
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    prefix = f"store-{uuid.uuid4().hex[:8]}"
    r = run_pfs(store, f"volume add s3://{BUCKET}/{prefix} --endpoint {ENDPOINT}\nvolume list\n", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "online" in r.stdout.splitlines()[-1], r.stdout
    assert json.loads((store / "store.json").read_bytes())["volumes"][1]["endpoint"] == ENDPOINT
    for path in store.rglob("*"):
        if path.is_file():
            assert SECRET_KEY.encode() not in path.read_bytes() and ACCESS_KEY.encode() not in path.read_bytes()

    data = make_file(work / "a.bin", 5 * 65536 + 7).read_bytes()
    r = run_pfs(store, "put a.bin\n", "--copies", "2", cwd=work)
    assert r.returncode == 0, r.stderr
    parts = json.loads((store / "manifests" / "1.json").read_bytes())["parts"]
    assert all(sorted(p["copies"]) == [0, 1] for p in parts)
    assert _remote_keys(prefix) == {p["id"] for p in parts}

    pid = parts[2]["id"]
    local = volume_dirs(store)[0] / pid[:2] / pid[2:4] / pid  # the copy in the store's own directory
    local.write_bytes(b"x" * local.stat().st_size)  # read first, whatever the manifest's order
    r = run_pfs(store, "get 1 out.bin\n", cwd=work)
    assert (work / "out.bin").read_bytes() == data
    assert r.returncode == 0 and "rewritten" in r.stdout, r.stdout + r.stderr
    assert run_pfs(store, "verify --all\n", cwd=work).returncode == 0

    make_file(work / "big.bin", 400 * 65536)
    session = LiveSession(store, work, "--copies", "2")
    session.send("put big.bin")
    deadline = time.monotonic() + 60
    while len(_remote_keys(prefix)) < len(parts) + 20:
        assert time.monotonic() < deadline, "the put wrote nothing remote"
        time.sleep(0.05)
    session.kill()
    r = run_pfs(store, "list\n", cwd=work)
    assert r.returncode == 0 and "failed (interrupted)" in r.stdout, r.stdout + r.stderr
    assert _remote_keys(prefix) == set(manifest_part_ids(store)[1]), "a remote part of the killed put is left"


# -- the same contract against Ceph's radosgw (opt-in: pytest -m ceph) ---------------------------

@pytest.mark.ceph
class TestCephVolume(VolumeContract):
    @pytest.fixture
    def make_volume(self, ceph):
        bucket = f"pfs-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=ceph).create_bucket(Bucket=bucket)

        def make(**options):
            return open_volume({"url": f"s3://{bucket}/t-{uuid.uuid4().hex[:12]}", "endpoint": ceph, **options})
        return make

    @pytest.fixture
    def damage_part(self, ceph):
        from pfs.errors import PartMissingError

        def damage(volume, k: str):
            boto3.client("s3", endpoint_url=ceph).put_object(Bucket=volume.bucket, Key=volume.object_key(k) + "/inside",
                                                             Body=b"x")
            return PartMissingError
        return damage
