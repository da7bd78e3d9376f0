"""Encrypted names (`--encrypt-names`): names and symlink targets are found
nowhere in the store (its files, or the PostgreSQL tables), while every
command that takes or shows a name works as on any store: lookups, listings
of a prefix, renames, trees, sync, the file-or-directory refusal; and a
write-only pfs given the recipient file lists and stores under names too."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import error_lines, make_file, run_pfs
from test_encryption_store import assert_no_secret, password  # noqa: F401 (a fixture)

#: Name segments and a symlink target that must never rest in the store as they are.
SECRET_WORDS = ["quarterly-zx81", "salaries-qq7", "payroll-kk3.csv", "target-ww5"]


def _holding(root: Path, words: list[str]) -> list[str]:
    r = subprocess.run(["grep", "-rlaF", *[f"-e{w}" for w in words], str(root)], capture_output=True, text=True)
    return r.stdout.split()


def _workload(work: Path) -> str:
    (work / "tree" / "salaries-qq7").mkdir(parents=True)
    make_file(work / "tree" / "salaries-qq7" / "payroll-kk3.csv", 20_000, "text")
    (work / "tree" / "link").symlink_to("target-ww5")
    make_file(work / "f", 100_000)
    return ("put f quarterly-zx81/2026/payroll-kk3.csv\nput -r tree quarterly-zx81/tree\nwait\n"
            "mv quarterly-zx81/2026/payroll-kk3.csv quarterly-zx81/2026/salaries-qq7\n"
            "put f quarterly-zx81/2026/other\nwait\ndelete quarterly-zx81/2026/other\n")


def test_names_are_nowhere_in_the_store_and_every_command_still_takes_them(tmp_path, password) -> None:
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    r = run_pfs(store, _workload(work), "--encrypt", "--encrypt-names", cwd=work)
    assert r.returncode == 0, r.stderr
    make_file(work / "tree" / "new", 3000)
    r = run_pfs(store, "sync tree quarterly-zx81/tree\nwait\nlist quarterly-zx81/2026\nlist -r quarterly-zx81/tree\n"
                "get quarterly-zx81/2026/salaries-qq7 out\nget -r quarterly-zx81/tree back\n"
                "put f quarterly-zx81/2026/salaries-qq7/x\ninfo quarterly-zx81/2026/salaries-qq7\n", cwd=work)
    assert r.returncode == 1, r.stderr  # only the put under a file's name fails
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and "quarterly-zx81/2026/salaries-qq7 is a file" in errors[0], r.stderr
    listed = r.stdout
    assert "quarterly-zx81/2026/salaries-qq7" in listed and "quarterly-zx81/2026/other" not in listed, listed
    assert "quarterly-zx81/tree/salaries-qq7/payroll-kk3.csv" in listed and "link -> target-ww5" in listed, listed
    assert "quarterly-zx81/tree/new" in listed, listed
    assert (work / "out").read_bytes() == (work / "f").read_bytes()
    assert (work / "back" / "link").readlink() == Path("target-ww5")
    assert (work / "back" / "new").read_bytes() == (work / "tree" / "new").read_bytes()
    assert _holding(store, SECRET_WORDS) == []
    assert_no_secret(store, r.stdout, r.stderr)


def test_a_write_only_pfs_lists_and_stores_under_encrypted_names(tmp_path, password, monkeypatch) -> None:
    store, work, rcpt = tmp_path / "store", tmp_path / "work", tmp_path / "rcpt"
    work.mkdir()
    r = run_pfs(store, f"key add --recipient {rcpt}\n", "--encrypt", "--encrypt-names", cwd=work)
    assert r.returncode == 0, r.stderr
    assert rcpt.stat().st_mode & 0o077 == 0  # it holds the names key: for its owner only
    monkeypatch.delenv("PFS_PASSWORD_FILE")
    r = run_pfs(store, _workload(work) + "list -r\n", "--recipient-key", str(rcpt), cwd=work)
    assert r.returncode == 0 and "quarterly-zx81/2026/salaries-qq7" in r.stdout, r.stdout + r.stderr
    assert _holding(store, SECRET_WORDS) == []
    monkeypatch.setenv("PFS_PASSWORD_FILE", str(password))
    r = run_pfs(store, "get quarterly-zx81/2026/salaries-qq7 out\n", cwd=work)
    assert r.returncode == 0 and (work / "out").read_bytes() == (work / "f").read_bytes(), r.stderr


def test_encrypt_names_is_for_a_new_encrypted_store(tmp_path, password) -> None:
    work = tmp_path
    r = run_pfs(tmp_path / "a", None, "--encrypt-names", "list", cwd=work)
    assert r.returncode == 2 and "needs --encrypt" in r.stderr, r.stderr
    assert run_pfs(tmp_path / "b", "", "--encrypt", cwd=work).returncode == 0
    r = run_pfs(tmp_path / "b", None, "--encrypt-names", "list", cwd=work)
    assert r.returncode == 2 and "applies to a new store" in r.stderr, r.stderr


def test_encrypted_names_on_a_postgresql_store(tmp_path, password, postgres_uri) -> None:
    work = tmp_path / "work"
    work.mkdir()
    r = run_pfs(postgres_uri, _workload(work) + "list -r\n", "--encrypt", "--encrypt-names",
                "--data", str(tmp_path / "data"), cwd=work)
    assert r.returncode == 0 and "symlink -> target-ww5" in r.stdout, r.stdout + r.stderr
    r = run_pfs(postgres_uri, "list quarterly-zx81/2026\nget quarterly-zx81/2026/salaries-qq7 out\n", cwd=work)
    assert r.returncode == 0 and "salaries-qq7" in r.stdout, r.stdout + r.stderr
    dump = _every_row(postgres_uri)
    assert "pfs_files" in dump and not [w for w in SECRET_WORDS if w in dump]
    assert _holding(tmp_path / "data", SECRET_WORDS) == []


def _every_row(uri: str) -> str:
    """Every row of every table of the database, as text."""
    import psycopg

    with psycopg.connect(uri) as conn:
        tables = [t for (t,) in conn.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = 'public'")]
        return "\n".join(f"{t}: {row}" for t in tables for (row,) in conn.execute(f"SELECT r::text FROM {t} r"))
