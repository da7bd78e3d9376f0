"""Write-only recipients end to end: a pfs given only a recipient's public key
stores files (put, put -r, sync) and lists them, reads nothing back (one
`error:` line, exit status 2, for every command that would), and never holds
the data key; a password holder reads back what it stored, on a directory and
on a PostgreSQL store; a removed recipient stores nothing more."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import assert_clean_stderr, error_lines, make_file, read_manifest, run_pfs, tree_state
from test_encryption_store import assert_no_secret, new_store, password  # noqa: F401 (a fixture)


def recipient_store(tmp_path: Path, volumes: int = 0) -> tuple[Path, Path, Path]:
    """An encrypted store with a recipient; its work directory and the recipient's file."""
    store, work = new_store(tmp_path, volumes)
    rcpt = tmp_path / "recipient.txt"
    r = run_pfs(store, f"key add --recipient {rcpt}\n", cwd=work)
    assert r.returncode == 0 and "added recipient" in r.stdout, r.stdout + r.stderr
    return store, work, rcpt


def write_only(rcpt: Path, monkeypatch) -> tuple[str, str]:
    """The options of a write-only pfs; no password is anywhere in its environment."""
    monkeypatch.delenv("PFS_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("PFS_PASSWORD", raising=False)
    return "--recipient-key", str(rcpt)


def test_a_write_only_pfs_stores_files_that_a_key_holder_reads_back(tmp_path, password, monkeypatch) -> None:
    store, work, rcpt = recipient_store(tmp_path, 3)
    make_file(work / "random", 700_000)
    make_file(work / "log", 300_000, "text")
    (work / "tree" / "sub").mkdir(parents=True)
    make_file(work / "tree" / "sub" / "a", 90_000, "text")
    (work / "tree" / "link").symlink_to("sub/a")
    wo = write_only(rcpt, monkeypatch)
    r = run_pfs(store, "put random\nwait\n", *wo, "--copies", "2", cwd=work)
    assert r.returncode == 0, r.stderr
    r = run_pfs(store, "put log\nput -r tree\nwait\nlist -r\n", *wo, "--ec", "2+1", cwd=work)
    assert r.returncode == 0 and "tree/sub/a" in r.stdout, r.stdout + r.stderr
    make_file(work / "tree" / "b", 5000)
    r = run_pfs(store, "sync tree tree\nwait\n", *wo, cwd=work)
    assert r.returncode == 0 and "3 unchanged" in r.stdout and "0 failed" in r.stdout, r.stdout + r.stderr
    assert all(p["sealed"] for p in read_manifest(store, 1)["parts"])
    monkeypatch.setenv("PFS_PASSWORD_FILE", str(password))
    r = run_pfs(store, "get random out1\nget log out2\nget -r tree back\nverify --all\n", cwd=work)
    assert r.returncode == 0 and "0 damaged" in r.stdout, r.stdout + r.stderr
    assert (work / "out1").read_bytes() == (work / "random").read_bytes()
    assert (work / "out2").read_bytes() == (work / "log").read_bytes()
    assert (work / "back" / "sub" / "a").read_bytes() == (work / "tree" / "sub" / "a").read_bytes()
    assert (work / "back" / "b").read_bytes() == (work / "tree" / "b").read_bytes()
    assert (work / "back" / "link").readlink() == Path("sub/a")
    assert_no_secret(store, r.stdout, r.stderr, rcpt.read_text())  # the recipient's private key too


def test_a_damaged_piece_sealed_to_a_recipient_fails_authentication_and_heals(tmp_path, password,
                                                                             monkeypatch) -> None:
    from test_encryption_store import piece_path

    store, work, rcpt = recipient_store(tmp_path, 1)
    make_file(work / "f", 200_000)
    r = run_pfs(store, "put f\nwait\n", *write_only(rcpt, monkeypatch), "--copies", "2", "--codec", "none", cwd=work)
    assert r.returncode == 0, r.stderr
    piece = piece_path(store, 1, 0, copy=0)  # read first: its tag is checked
    data = bytearray(piece.read_bytes())
    data[10] ^= 1
    piece.write_bytes(bytes(data))
    monkeypatch.setenv("PFS_PASSWORD_FILE", str(password))
    r = run_pfs(store, "verify 1\n", cwd=work)
    assert r.returncode != 0 and "fails authentication" in r.stderr, r.stderr
    r = run_pfs(store, "verify 1 --heal\nwait\nverify 1\n", cwd=work)
    assert r.returncode == 0 and "rewritten" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("command", [["get", "f", "out"], ["cat", "f"], ["verify", "f"], ["verify", "--all"],
                                     ["heal"], ["volume", "drain", "1"]])
def test_a_write_only_pfs_reads_nothing_back(tmp_path, password, monkeypatch, command: list[str]) -> None:
    store, work, rcpt = recipient_store(tmp_path, 1)
    make_file(work / "f", 100_000)
    wo = write_only(rcpt, monkeypatch)
    assert run_pfs(store, "put f\nwait\n", *wo, cwd=work).returncode == 0
    before = tree_state(store)
    r = run_pfs(store, None, *wo, *command, cwd=work)
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    assert len(error_lines(r.stderr)) == 1 and "write-only" in r.stderr, r.stderr
    assert_clean_stderr(r.stderr)
    assert not (work / "out").exists()
    r = run_pfs(store, " ".join(command) + "\nlist\n", *wo, cwd=work)  # a script goes on after the error
    assert r.returncode == 1 and len(error_lines(r.stderr)) == 1 and " f " in r.stdout, r.stdout + r.stderr
    assert {k: v for k, v in tree_state(store).items() if not k.startswith("sessions/")} == \
        {k: v for k, v in before.items() if not k.startswith("sessions/")}


def test_a_write_only_pfs_refuses_to_mount(tmp_path, password, monkeypatch) -> None:
    from mount.mount_helpers import fuse_missing  # mount's options are checked first: FUSE must be there

    if why := fuse_missing():
        pytest.skip(why)
    pytest.importorskip("mfusepy", reason="mount needs mfusepy")
    store, work, rcpt = recipient_store(tmp_path)
    (tmp_path / "mnt").mkdir()
    r = run_pfs(store, None, *write_only(rcpt, monkeypatch), "mount", str(tmp_path / "mnt"), cwd=work)
    assert r.returncode == 2 and len(error_lines(r.stderr)) == 1 and "write-only" in r.stderr, r.stderr


def test_a_write_only_library_store_holds_no_data_key(tmp_path, password, monkeypatch) -> None:
    """In the process itself: the keyring holds the recipient's public key and nothing else."""
    store, work, rcpt = recipient_store(tmp_path)
    make_file(work / "f", 50_000)
    write_only(rcpt, monkeypatch)
    code = f"""
import pfs
from pfs.crypto import keyring
with pfs.open({str(store)!r}, recipient_file={str(rcpt)!r}) as s:
    s.put({str(work / "f")!r}, "f")
    held = list(keyring._held.values())
    assert len(held) == 1 and held[0].key is None and held[0].recipients == {{}} and held[0].write_only
    try:
        s.open("f", "rb")
    except pfs.PfsError as exc:
        print("refused:", exc)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=work, timeout=90)
    assert r.returncode == 0 and "refused: " in r.stdout and "write-only" in r.stdout, r.stdout + r.stderr


def test_recipient_files_that_are_not_the_stores_are_refused(tmp_path, password, monkeypatch) -> None:
    store, work, rcpt = recipient_store(tmp_path)
    (tmp_path / "o").mkdir()
    other, _ = new_store(tmp_path / "o")
    other_rcpt = tmp_path / "other.txt"
    assert run_pfs(other, f"key add --recipient {other_rcpt}\n", cwd=work).returncode == 0
    r = run_pfs(store, f"key add --recipient {rcpt}\n", cwd=work)
    assert r.returncode != 0 and "cannot create the recipient file" in r.stderr, r.stderr  # never overwritten
    forged = tmp_path / "forged.txt"
    ours, theirs = rcpt.read_text().splitlines()[-1], other_rcpt.read_text().splitlines()[-1]
    forged.write_text(ours.rsplit(":", 1)[0] + ":" + theirs.rsplit(":", 1)[1] + "\n")  # another public key
    (tmp_path / "junk.txt").write_text("age1notapfsrecipient\n")
    wo = write_only(rcpt, monkeypatch)
    for path, why in ((other_rcpt, "another store"), (forged, "is not a recipient"),
                      (tmp_path / "junk.txt", "not one pfs writes"), (tmp_path / "none.txt", "cannot read")):
        r = run_pfs(store, None, "--recipient-key", str(path), "list", cwd=work)
        assert r.returncode == 2 and len(error_lines(r.stderr)) == 1 and why in r.stderr, (why, r.stderr)
    r = run_pfs(tmp_path / "plain", None, *wo, "list", cwd=work)
    assert r.returncode == 2 and "not encrypted" in r.stderr or "recipient" in r.stderr, r.stderr
    r = run_pfs(tmp_path / "new", None, *wo, "--encrypt", "list", cwd=work)
    assert r.returncode == 2 and "needs a password" in r.stderr, r.stderr
    r = run_pfs(store, "key add --new-password-file /dev/null\n", *wo, cwd=work)
    assert r.returncode == 1 and "write-only" in r.stderr, r.stderr


def test_a_removed_recipient_stores_nothing_more_and_what_it_stored_stays_readable(tmp_path, password,
                                                                                 monkeypatch) -> None:
    store, work, rcpt = recipient_store(tmp_path)
    make_file(work / "f", 150_000)
    rid = rcpt.read_text().split(":")[-2]
    wo = write_only(rcpt, monkeypatch)
    assert run_pfs(store, "put f\nwait\n", *wo, cwd=work).returncode == 0
    monkeypatch.setenv("PFS_PASSWORD_FILE", str(password))
    r = run_pfs(store, f"key remove {rid}\nkey list\n", cwd=work)
    assert r.returncode == 0 and f"removed recipient {rid}" in r.stdout and "recipient (removed)" in r.stdout, \
        r.stdout + r.stderr
    r = run_pfs(store, "get f out\n", cwd=work)
    assert r.returncode == 0 and (work / "out").read_bytes() == (work / "f").read_bytes(), r.stderr
    wo = write_only(rcpt, monkeypatch)
    r = run_pfs(store, None, *wo, "put", "f", "g", cwd=work)
    assert r.returncode == 2 and "was removed" in r.stderr, r.stderr


def test_a_write_only_pfs_on_a_postgresql_store(tmp_path, password, postgres_uri, monkeypatch) -> None:
    work, rcpt = tmp_path / "work", tmp_path / "recipient.txt"
    work.mkdir()
    make_file(work / "f", 600_000, "text")
    r = run_pfs(postgres_uri, f"key add --recipient {rcpt}\n", "--encrypt", "--data", str(tmp_path / "data"),
                cwd=work)
    assert r.returncode == 0, r.stderr
    r = run_pfs(postgres_uri, "put f\nwait\nlist\n", *write_only(rcpt, monkeypatch), cwd=work)
    assert r.returncode == 0 and " f " in r.stdout, r.stdout + r.stderr
    r = run_pfs(postgres_uri, None, "--recipient-key", str(rcpt), "get", "f", "out", cwd=work)
    assert r.returncode == 2 and "write-only" in r.stderr, r.stderr
    monkeypatch.setenv("PFS_PASSWORD_FILE", str(password))
    r = run_pfs(postgres_uri, "get f out\nkey list\n", cwd=work)
    assert r.returncode == 0 and "recipient" in r.stdout, r.stdout + r.stderr
    assert (work / "out").read_bytes() == (work / "f").read_bytes()
