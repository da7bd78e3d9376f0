"""Secrets never echo: a marker password (or S3 secret key) sent down every
error path that can be reached (URI parsing, nothing listening, login refused,
a missing database, a TLS demand, S3 credentials refused by a real SeaweedFS)
appears in no stdout, stderr, log file or stored file, and no URI makes a
traceback. Each failure is also said in its own words."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from helpers import assert_clean_stderr, env, error_lines, make_file

MARKER = "Zq7MarkerSecret"
ROLE = "pfs_secret_role"


@pytest.fixture(scope="module")
def password_server(postgres):
    """The run's PostgreSQL, where ROLE (whose password is MARKER) must log in
    with its password; every other role keeps the fixture's trust."""
    import psycopg

    hba = postgres.data / "pg_hba.conf"
    text = hba.read_text()
    if ROLE not in text:
        hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + text)
        postgres._run(_pg_ctl(), "-D", postgres.data, "reload")
    with psycopg.connect(postgres.uri(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone():
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{MARKER}'")
            conn.execute(f"CREATE DATABASE secrets_db OWNER {ROLE}")
    return postgres


def _pg_ctl() -> Path:
    from postgres_server import BIN

    return BIN / "pg_ctl"


def run(store: str, *args: str, data: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pfs", "--store", store, "--data", str(data), "--workers", "1",
                           *args], capture_output=True, text=True, timeout=60, env={**env(), **(extra_env or {})})


def assert_nowhere(proc: subprocess.CompletedProcess | None, *places: Path, secret: str = MARKER) -> None:
    if proc is not None:
        assert secret not in proc.stdout and secret not in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
    for place in places:
        for path in [place] if place.is_file() else place.rglob("*") if place.exists() else []:
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), f"{secret} is in {path}"


#: (how the URI is written, given the port; what the one error line must say)
CASES = {
    "space in the password": (f"{ROLE}:{MARKER} x@127.0.0.1:{{port}}/secrets_db", "URI is not valid"),
    "bad %-escape": (f"{ROLE}:{MARKER}%zz@127.0.0.1:{{port}}/secrets_db", "URI is not valid"),
    "IPv6 host without its bracket": (f"{ROLE}:{MARKER}@[::1:{{port}}/secrets_db", "URI is not valid"),
    "wrong password": (f"{ROLE}:{MARKER}wrong@127.0.0.1:{{port}}/secrets_db", "refused the login"),
    "password as a parameter": (f"{ROLE}@127.0.0.1:{{port}}/secrets_db?password={MARKER}wrong", "refused the login"),
    "missing database": (f"{ROLE}:{MARKER}@127.0.0.1:{{port}}/no_such_db", "no_such_db does not exist"),
    "nothing listening": (f"{ROLE}:{MARKER}@127.0.0.1:1/secrets_db", "nothing accepts connections"),
    "TLS demanded": (f"{ROLE}:{MARKER}@127.0.0.1:{{port}}/secrets_db?sslmode=require", "TLS problem"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_database_uri_that_fails_never_shows_its_password(password_server, tmp_path, case):
    written, words = CASES[case]
    uri = "postgresql://" + written.format(port=password_server.port)
    proc = run(uri, "list", data=tmp_path / "data")
    assert proc.returncode == 2, proc.stderr
    assert_clean_stderr(proc.stderr)
    assert len(error_lines(proc.stderr)) == 1 and words in proc.stderr, proc.stderr
    assert "check that the server runs" not in proc.stderr
    assert_nowhere(proc, tmp_path)

    import pfs
    from pfs.errors import StoreError

    with pytest.raises(StoreError) as caught:  # the API: a typed error, scrubbed too
        pfs.open(uri, workers=1)
    assert MARKER not in "".join(traceback.format_exception(caught.value)) and MARKER not in repr(caught.value)


def test_a_store_opened_with_a_password_keeps_it_nowhere(password_server, tmp_path):
    """A database store used with its password in the URI: no stdout, stderr,
    log or data file holds it, nor any table of the database."""
    import psycopg

    uri = f"postgresql://{ROLE}:{MARKER}@127.0.0.1:{password_server.port}/secrets_db"
    source = make_file(tmp_path / "f.bin", 200_000)
    data = tmp_path / "data"
    scripts = (f"put {source} f\nwait\nlist\nverify --all\nget f {tmp_path / 'back.bin'}\n", "volume list\nbogus\n")
    for script in scripts:
        proc = subprocess.run([sys.executable, "-m", "pfs", "--store", uri, "--data", str(data), "--workers", "1"],
                              input=script, capture_output=True, text=True, timeout=60, env=env())
        assert_nowhere(proc, data)
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    with psycopg.connect(uri) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                assert MARKER not in repr(row), f"{MARKER} is stored in {table}"


def test_s3_credentials_refused_never_show_the_secret(seaweedfs, tmp_path):
    store = tmp_path / "store"
    source = make_file(tmp_path / "f.bin", 300_000)
    argv = [sys.executable, "-m", "pfs", "--store", str(store), "--workers", "1", "--chunk-size", "65536"]
    for command in (["volume", "add", f"s3://{seaweedfs.bucket}/secrets-{os.getpid()}"], ["volume", "drain", "0"],
                    ["put", str(source), "f"]):
        subprocess.run([*argv, *command], check=True, capture_output=True, env=env(), timeout=60)
    wrong = {**env(), "AWS_SECRET_ACCESS_KEY": MARKER, "PFS_S3_TIMEOUT": "1", "PFS_S3_RETRY_SECONDS": "2"}
    for command in (["get", "f", str(tmp_path / "out")], ["verify", "--all"], ["verify", "f", "--heal"],
                    ["volume", "list"], ["put", str(source), "g"]):
        proc = subprocess.run([*argv, *command], capture_output=True, text=True, env=wrong, timeout=90)
        assert_clean_stderr(proc.stderr)
        assert_nowhere(proc, store, tmp_path)
    assert not (tmp_path / "out").exists()


def test_a_secret_a_library_quotes_is_masked_in_log_lines_tracebacks_and_messages(tmp_path):
    """Whatever carries it: a log record's message, the traceback it logs, a
    PfsError's words, the one-line reason of any other exception."""
    import logging

    from pfs import redact
    from pfs.errors import PfsError, describe

    redact.remember_uri_password(f"postgresql://u:{MARKER}%21@h/db")  # as a store's URI tells it
    handler = logging.FileHandler(tmp_path / "pfs.log")
    logging.getLogger("pfs").addHandler(handler)
    try:
        try:
            raise ValueError(f'invalid token "{MARKER}!" in postgresql://u:{MARKER}%21@h/db')
        except ValueError as exc:
            logging.getLogger("pfs").error("failed with %s", exc, exc_info=True)
            words = [str(PfsError(f"cannot: {exc}", f"not {MARKER}!")), describe(exc)]
    finally:
        logging.getLogger("pfs").removeHandler(handler)
        handler.close()
    logged = (tmp_path / "pfs.log").read_text()
    assert "Traceback" in logged and "ValueError" in logged
    assert MARKER not in logged and all(MARKER not in w and "***" in w for w in words), (logged, words)
    assert "user:PASSWORD@" in redact.scrub("write postgresql://user:PASSWORD@host/db")  # a placeholder stays
