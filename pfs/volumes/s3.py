"""S3Volume: parts as objects in an S3 bucket (AWS or any S3-compatible server),
under s3://bucket/prefix/ab/<key>, and packs of many small pieces under
s3://bucket/prefix/packs/ (one PUT per pack, a ranged GET per piece: see
pfs.volumes.packs).

Built on boto3 directly: it exposes the HTTP status of every failure, which
create-only writes need (If-None-Match: "*" answered with 412), and it is
synchronous, like the worker processes that call it. The endpoint, region and
credentials come from boto3's standard places (AWS_* variables, ~/.aws/config,
AWS_PROFILE), never from pfs's own files. boto3 and botocore are imported
where a request is made: pfs itself only describes the volumes of a get or put
to its workers, and spares the import (0.2 s of CPU).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from pfs import extras, redact
from pfs.errors import (BucketMissingError, OutOfSpaceError, PartExistsError, PartMissingError, UsageError,
                        VolumeUnavailableError)
from pfs.volumes.base import MARKER, Volume, check_key, check_prefix
from pfs.volumes.packs import Packed

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRY_SECONDS = 30.0
#: At most this long to tell whether the server is there (status): a down server
#: shows as missing at once, not after a whole retry budget.
PROBE_SECONDS = 2.0
#: While a server counts as down, the process's requests to it fail at once
#: for this long after each failed one, then one asks it again (once).
QUIET_SECONDS = 2.0
#: Environment variables that change those defaults for a process (and the workers it starts).
TIMEOUT_VARIABLE, RETRY_VARIABLE = "PFS_S3_TIMEOUT", "PFS_S3_RETRY_SECONDS"

#: Answers worth retrying, as are no connection and no answer in time: the
#: server is busy, restarting, or briefly unreachable.
_TRANSIENT_STATUS = {409, 429, 500, 502, 503, 504}  # 409: a concurrent conditional write
_CREDENTIALS = {"InvalidAccessKeyId": "the server does not know the access key",
                "SignatureDoesNotMatch": "the secret key does not match the access key",
                "AccessDenied": "access denied",
                "ExpiredToken": "the session token has expired",
                "InvalidToken": "the session token is not valid"}
_CREDENTIALS_ADVICE = "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"


if not extras.installed("boto3"):  # boto3 itself is imported where a client is made
    raise ModuleNotFoundError("No module named 'boto3'", name="boto3")

_sessions: dict[tuple, object] = {}
_clients: dict[tuple, object] = {}
_cache_pid = 0
_cache_lock = threading.Lock()
#: Endpoint -> (when a request last failed on it, until when it counts as down
#: (time.monotonic()), why): see S3Volume._call.
_given_up: dict[str, tuple[float, float, str]] = {}


def s3_client(timeout: float, endpoint: str | None = None):
    """The process's S3 client for a request timeout (and an endpoint other than
    the standard one, where given), shared by every volume: boto3
    clients are thread-safe, and the first one of a session costs a fifth of a
    second. Keyed by the AWS_* environment too, so a changed environment is read
    afresh; a forked child builds its own rather than share the parent's connections."""
    import boto3  # here, not at the top: a process that only describes volumes (pfs itself, on a get) skips it
    from botocore.config import Config

    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    with _cache_lock:
        _forget_if_forked()
        if (env, timeout, endpoint) not in _clients:
            if env not in _sessions:
                _sessions[env] = boto3.session.Session()
                _remember_secrets(_sessions[env])
            config = Config(connect_timeout=timeout, read_timeout=timeout,
                            retries={"total_max_attempts": 1},  # retried by S3Volume, within a deadline
                            # pfs checks every part against its own hash: no CRC of every body besides
                            response_checksum_validation="when_required")
            _clients[env, timeout, endpoint] = _sessions[env].client("s3", config=config, endpoint_url=endpoint)
        return _clients[env, timeout, endpoint]


def _remember_secrets(session) -> None:
    """Mask the session's secret key and token in every message and log line
    (pfs.redact), wherever boto3 found them (environment, files, a profile)."""
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        redact.remember(os.environ.get(name))
    try:
        found = session.get_credentials()
    except Exception:  # noqa: BLE001 - a profile that cannot be read fails the request, which says why
        return
    if found is not None:
        frozen = found.get_frozen_credentials()
        redact.remember(frozen.secret_key)
        redact.remember(frozen.token)


def _forget_if_forked() -> None:
    """A forked child builds its own clients rather than share the parent's
    connections; it keeps the sessions, which hold none, and whose loaded
    service model spares it a third of a second of CPU. Called under _cache_lock."""
    global _cache_pid
    if _cache_pid != os.getpid():
        _clients.clear()
        _given_up.clear()
        _cache_pid = os.getpid()


def warm() -> None:
    """Load boto3 and the S3 service model into the process's session, for the
    processes it forks (the worker pool's forkserver: see pfs.volumes.s3_warm).
    Only a head start: a worker whose client cannot be made says why itself."""
    with contextlib.suppress(Exception):
        s3_client(_seconds(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT))


class S3Parts(Volume):
    """A bucket (and key prefix) of part objects. Every write is create-only;
    transient failures are retried with backoff for at most `retry_seconds`
    (each request bounded by `timeout`), then reported as VolumeUnavailableError."""

    def __init__(self, url: str, *, timeout: float | None = None, retry_seconds: float | None = None,
                 endpoint: str | None = None, **options) -> None:
        bucket, _, prefix = url.split("://", 1)[1].partition("/")
        if not bucket:
            raise UsageError(f"no bucket in volume URL {url}", "write s3://BUCKET or s3://BUCKET/PREFIX")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.timeout = timeout if timeout is not None else _seconds(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT)
        self.retry_seconds = retry_seconds if retry_seconds is not None else \
            _seconds(RETRY_VARIABLE, DEFAULT_RETRY_SECONDS)
        self.endpoint = endpoint
        super().__init__(f"s3://{bucket}/{self.prefix}".rstrip("/"), **options)

    def options(self) -> dict:
        given = {"endpoint": self.endpoint} if self.endpoint else {}  # a server's address, never a secret
        return {"timeout": self.timeout, "retry_seconds": self.retry_seconds, **given}

    @property
    def client(self):
        return s3_client(self.timeout, self.endpoint)

    def object_key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key[:2]}/{key}" if self.prefix else f"{key[:2]}/{key}"

    # -- the contract ----------------------------------------------------------------

    def write(self, key: str, data: bytes | memoryview) -> None:
        body = data if isinstance(data, bytes) else bytes(data)
        attempts = 0

        def put() -> None:
            nonlocal attempts
            attempts += 1
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=body, IfNoneMatch="*")

        try:
            self._call(put, key)
        except PartExistsError:
            # After a lost answer, the object that blocks the retry may be our own first attempt.
            if attempts > 1 and self._holds(key, body):
                return
            raise

    def read(self, key: str, offset: int = 0, size: int | None = None) -> bytes:
        if size == 0:
            self._head(key)
            return b""
        last = "" if size is None else offset + size - 1
        ranged = {"Range": f"bytes={offset}-{last}"} if offset or size is not None else {}
        try:
            return self._call(lambda: self._get(key, **ranged).read(), key)
        except _RangeBeyondEnd:
            return b""

    def read_into(self, key: str, buffer: memoryview, offset: int = 0) -> int:
        """Straight from the socket into `buffer` (a worker's reusable one; see _fill)."""
        if not len(buffer):
            return super().read_into(key, buffer, offset)
        ranged = {"Range": f"bytes={offset}-{offset + len(buffer) - 1}"}
        try:
            return self._call(lambda: _fill(self._get(key, **ranged), buffer), key)
        except _RangeBeyondEnd:
            return 0

    def remove(self, key: str) -> bool:
        try:
            self._head(key)
            existed = True
        except PartMissingError:
            existed = False  # still delete: it tells a missing bucket from a missing part
        self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key)), key)
        return existed

    def remove_all(self, keys: Iterable[str]) -> None:
        """One DeleteObjects request per thousand keys, rather than a HEAD and a
        DELETE per key: rolling back a put of ten thousand parts over a link of
        30 ms takes a second, not ten minutes."""
        keys = [self.object_key(k) for k in keys]
        for start in range(0, len(keys), 1000):
            batch = {"Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True}
            answer = self._call(lambda: self.client.delete_objects(Bucket=self.bucket, Delete=batch))
            for error in answer.get("Errors", ())[:1]:
                raise VolumeUnavailableError(f"the S3 server failed to remove {error.get('Key')} from volume "
                                             f"{self.url}: {error.get('Code')} {error.get('Message', '')}".rstrip())

    def keys(self, prefix: str = "") -> Iterator[str]:
        for key, _ in self._list(check_prefix(prefix)):
            yield key

    def flush(self, keys: Iterable[str]) -> None:
        """Nothing to do: S3 has made an object durable when its PUT returns."""

    def used(self) -> int:
        return sum(size for _, size in self._list(""))

    def free(self) -> None:
        return None

    def _save_marker(self, marker: dict) -> None:
        body = json.dumps(marker).encode()
        self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=self._marker_key(), Body=body))

    def _drop_marker(self) -> None:
        self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=self._marker_key()))

    def _load_marker(self) -> bytes | None:
        """Within PROBE_SECONDS: this is how status() probes the server."""
        probe = s3_client(min(self.timeout, PROBE_SECONDS), self.endpoint)
        try:
            return self._call(lambda: probe.get_object(Bucket=self.bucket, Key=self._marker_key())["Body"].read(),
                              budget=PROBE_SECONDS)
        except PartMissingError:
            return None

    def create(self) -> None:
        """Create the bucket (in the client's region); one that is already ours will do."""
        region = self.client.meta.region_name
        where = {"CreateBucketConfiguration": {"LocationConstraint": region}} \
            if region and region != "us-east-1" else {}
        try:
            self._call(lambda: self.client.create_bucket(Bucket=self.bucket, **where))
        except VolumeUnavailableError as exc:
            if "BucketAlreadyOwnedByYou" not in exc.message:
                raise

    # -- helpers ---------------------------------------------------------------------

    def _marker_key(self) -> str:
        return f"{self.prefix}/{MARKER}" if self.prefix else MARKER

    def _get(self, key: str, **kwargs):
        return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key), **kwargs)["Body"]

    def _head(self, key: str) -> None:
        self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=self.object_key(key)), key)

    def _holds(self, key: str, body: bytes) -> bool:
        try:
            return self.read(key) == body
        except PartMissingError:
            return False

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every part whose key starts with `prefix`, page by page."""
        base = f"{self.prefix}/" if self.prefix else ""
        listing = base + (f"{prefix[:2]}/{prefix}" if len(prefix) >= 2 else prefix)
        token: dict = {}
        while True:
            page = self._call(lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=listing, **token))
            for obj in page.get("Contents", ()):
                fan, _, key = obj["Key"][len(base):].partition("/")
                if key.startswith(prefix) and fan == key[:2] and "/" not in key:
                    yield key, obj["Size"]
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def _call(self, request: Callable[[], T], key: str = "", budget: float | None = None) -> T:
        """Run one request, retrying transient failures with backoff until the
        deadline; every failure leaves as one of the volume's typed errors. Once
        a request has given up on the server, it counts as down for a retry
        budget: the process's next requests fail at once for QUIET_SECONDS after
        each failed one, then one asks once, rather than each wait out the
        budget again (or, where the server hangs, a request timeout each): a put
        or get of many parts fails in one budget, not one per part, a part with
        another copy moves on to it at once, and a server back is used again
        within seconds. `budget` shortens the retry budget of a probe, which
        always asks the server."""
        from botocore import exceptions as aws

        endpoint = self.client.meta.endpoint_url
        started = time.monotonic()
        probe, down_until = budget is not None, _given_up.get(endpoint, (0.0, 0.0, ""))[1]
        if not probe and started < down_until:
            self._fail_fast(endpoint, started)
            budget = 0.0  # ask once
        deadline = started + (self.retry_seconds if budget is None else min(budget, self.retry_seconds))
        for attempt in itertools.count():
            try:
                result = request()
                _given_up.pop(endpoint, None)
                return result
            except aws.ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if status not in _TRANSIENT_STATUS:
                    _given_up.pop(endpoint, None)  # it answered
                    raise self._translate(exc, status, key) from None
                failure = f"the server answered {status} {exc.response.get('Error', {}).get('Code', '')}".strip()
            except aws.SSLError as exc:  # no retry mends a certificate or a protocol mismatch
                raise VolumeUnavailableError(f"a TLS problem with the S3 server at {endpoint} for volume "
                                             f"{self.url}: {_tls_reason(exc)}",
                                             "check the endpoint's scheme (https:// or http://) and its "
                                             "certificate (AWS_CA_BUNDLE)") from None
            except (aws.ConnectionError, aws.HTTPClientError, aws.IncompleteReadError) as exc:
                failure = "no connection" if isinstance(exc, aws.ConnectionError) else "no answer in time"
            except aws.NoCredentialsError:
                raise VolumeUnavailableError(f"no S3 credentials found for volume {self.url}",
                                             _CREDENTIALS_ADVICE) from None
            except aws.BotoCoreError as exc:
                raise VolumeUnavailableError(f"cannot use volume {self.url}: {exc}") from None
            pause = min(2.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.0)
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
        now = time.monotonic()
        why = f"{failure} after trying for {now - started:.1f} s"
        _given_up[endpoint] = (now, down_until if probe else max(down_until, now + self.retry_seconds), why)
        raise self._unavailable(endpoint, why)

    def _fail_fast(self, endpoint: str, now: float) -> None:
        """VolumeUnavailableError if a request to the server failed less than
        QUIET_SECONDS ago."""
        when, _, why = _given_up[endpoint]
        if now < when + QUIET_SECONDS:
            raise self._unavailable(endpoint, f"{why}, {now - when:.1f} s ago")

    def _unavailable(self, endpoint: str, why: str) -> VolumeUnavailableError:
        return VolumeUnavailableError(f"the S3 server at {endpoint} is unavailable for volume {self.url} ({why})",
                                      "check that it is running and the endpoint (AWS_ENDPOINT_URL)")

    def _translate(self, exc: Exception, status: int, key: str) -> Exception:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        if status == 412 or code == "PreconditionFailed":
            return PartExistsError(f"part {key} already exists on volume {self.url}")
        if code == "InvalidRange":
            return _RangeBeyondEnd()
        if code == "NoSuchBucket":
            return BucketMissingError(f"the S3 bucket {self.bucket} does not exist",
                                      "check the volume URL and the endpoint, or create the bucket")
        if code == "NoSuchKey" or status == 404:
            return PartMissingError(f"part {key} is missing from volume {self.url}")
        if code in _CREDENTIALS or status == 403:
            reason = _CREDENTIALS.get(code, "access denied")
            return VolumeUnavailableError(f"the S3 server refused access to volume {self.url}: {reason}",
                                          _CREDENTIALS_ADVICE)
        if status == 507 or code in ("QuotaExceeded", "EntityTooLarge"):
            return OutOfSpaceError(f"volume {self.url} is full", "free some space or add a volume")
        return VolumeUnavailableError(f"the S3 server failed on volume {self.url}: "
                                      f"{code or status} {error.get('Message', '')}".rstrip())


def _fill(body, buffer: memoryview) -> int:
    """Read an answer's body into `buffer` with http.client's readinto (recv_into
    the buffer itself), then hand the connection back to urllib3's pool. Through
    botocore and urllib3, each read makes a new bytes object that is then copied
    out: some 0.2 s more CPU per GiB here. A body that breaks off or falls short
    of its length raises IncompleteReadError (retried), as botocore's read does."""
    from botocore import exceptions as aws

    response = body._raw_stream  # urllib3's
    fp = getattr(response, "_fp", None)  # http.client's response, where this urllib3 keeps it
    length = int(response.headers.get("content-length", -1))
    if not 0 <= length <= len(buffer) or not hasattr(fp, "readinto"):
        # no length given (chunked), not the range asked for, or a urllib3 laid out otherwise: botocore reads it
        data = body.read()[:len(buffer)]
        buffer[:len(data)] = data
        return len(data)
    done = 0
    try:
        while done < length:
            n = fp.readinto(buffer[done:length])
            if not n:
                break
            done += n
    except (OSError, http.client.HTTPException):
        pass
    if done < length:
        response.close()  # the connection is in an unknown state: not reused
        raise aws.IncompleteReadError(actual_bytes=done, expected_bytes=length)
    response.release_conn()
    return done


def _tls_reason(exc: Exception) -> str:
    """The SSL library's own reason (`wrong version number`, `certificate verify
    failed`), without botocore's wrapping of the URL and the request."""
    text = str(exc)
    found = re.search(r"\[SSL[^\]]*\] ([^(]*?)(?: \(_ssl|\)|$)", text)
    return found[1].strip() if found else text


def _seconds(variable: str, default: float) -> float:
    """A duration from the environment (a slow link may need longer than the
    default, a test shorter); refused unless a positive number of seconds."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 1e6:
        raise UsageError(f"{variable}={text} is not a number of seconds",
                         f"unset it or give e.g. {variable}={default:g}")
    return seconds


class _RangeBeyondEnd(Exception):
    """A ranged read that starts past the end of an existing part: it reads nothing."""


class S3Volume(Packed, S3Parts):
    """A bucket of part objects and of packs (prefix/packs/<pack id>): a pack is
    one create-only PUT, durable when it returns."""

    def _shelf_key(self, name: str) -> str:
        return f"{self.prefix}/packs/{name}" if self.prefix else f"packs/{name}"

    def shelf_put(self, name: str, data: bytes, durable: bool) -> None:
        body = bytes(data)
        self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=self._shelf_key(name), Body=body,
                                                  IfNoneMatch="*"))

    def shelf_get(self, name: str, offset: int, size: int) -> bytes:
        if size <= 0:
            return b""
        ranged = {"Range": f"bytes={offset}-{offset + size - 1}"}
        try:
            return self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=self._shelf_key(name),
                                                             **ranged)["Body"].read(), name)
        except _RangeBeyondEnd:
            return b""

    def shelf_list(self) -> dict[str, int]:
        base, token, found = self._shelf_key(""), {}, {}
        while True:
            page = self._call(lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=base, **token))
            for obj in page.get("Contents", ()):
                name = obj["Key"][len(base):]
                if name and "/" not in name:
                    found[name] = obj["Size"]
            if not page.get("IsTruncated"):
                return found
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def shelf_drop(self, name: str) -> None:
        self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=self._shelf_key(name)))
