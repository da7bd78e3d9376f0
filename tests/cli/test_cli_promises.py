"""What the README promises of the command line: names wait for their puts as
ids do, get never silently changes what a symbolic link is, and the exit
status, help and banners say what is true."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys

import pexpect
import pytest
from helpers import CHUNK, Pfs, env, make_file

from pfs.cli.commands import COMMANDS


def test_a_name_waits_for_its_running_put_as_an_id_does(pfs):
    old = make_file(pfs.cwd / "a.bin", 3 * CHUNK).read_bytes()
    assert pfs.run("put a.bin\n").returncode == 0
    new = make_file(pfs.cwd / "a.bin", 40 * CHUNK + 3).read_bytes()
    assert new != old
    r = pfs.run("put a.bin\nget a.bin out.bin\ninfo a.bin\nverify a.bin\n")
    assert r.returncode == 0, r.stderr
    assert (pfs.cwd / "out.bin").read_bytes() == new, "get a.bin must wait for the put of a.bin, not read the older one"
    out = r.stdout
    assert -1 < out.find("[2] stored a.bin") < out.find("[2] restored a.bin") < out.find("[2] verified a.bin"), out
    assert "id:         2" in out


def test_a_name_new_to_the_store_waits_for_its_put(pfs):
    data = make_file(pfs.cwd / "b.bin", 40 * CHUNK + 3).read_bytes()
    r = pfs.run("put b.bin logs/b\nget logs/b out.bin\ndelete ./logs/b\nwait\nlist\n")
    assert r.returncode == 0, r.stderr
    assert (pfs.cwd / "out.bin").read_bytes() == data
    assert r.stdout.find("[1] restored logs/b") < r.stdout.find("[1] deleted logs/b"), r.stdout
    assert "no files stored yet" in r.stdout


def test_a_failed_put_is_reached_by_its_name(pfs):
    make_file(pfs.cwd / "big.bin", 30 << 20)
    r = pfs.run("put big.bin\ncancel 1\n")
    assert "rolled back" in r.stdout, r.stdout
    r = pfs.run("info big.bin\nget big.bin out.bin\n")
    assert "status:     failed (cancelled)" in r.stdout, r.stdout + r.stderr
    assert "file 1 (big.bin) is failed" in r.stderr, r.stderr
    assert "no file named" not in r.stderr
    r = pfs.run("delete big.bin\nwait\nlist\n")
    assert r.returncode == 0, r.stderr
    assert "no files stored yet" in r.stdout


def test_an_unknown_name_is_still_one_error(pfs):
    r = pfs.run("get nothing.bin\n")
    assert r.returncode == 1
    assert "error: no file named nothing.bin" in r.stderr


# -- get over a symbolic link --------------------------------------------------------------------

@pytest.fixture
def stored(pfs):
    data = make_file(pfs.cwd / "f.bin", CHUNK + 5).read_bytes()
    assert pfs.run("put f.bin\n").returncode == 0
    return data


@pytest.mark.parametrize("points_to, why", [
    ("/dev/null", "a symbolic link to a character device"),
    ("/proc/self/fd/1", "a symbolic link to an open file descriptor"),
    ("fd1", "a symbolic link to an open file descriptor"),    # a chain of links through /proc
    ("somewhere", "a symbolic link to nothing that exists"),
    ("adir", "a symbolic link to a directory"),
])
def test_get_force_refuses_a_link_to_anything_but_a_regular_file(pfs, stored, points_to, why):
    (pfs.cwd / "adir").mkdir()
    os.symlink("/proc/self/fd/1", pfs.cwd / "fd1")
    link = pfs.cwd / "dest"
    os.symlink(points_to, link)
    if points_to == "adir":  # a link to a directory is a directory: get writes inside it
        r = pfs.run("get f.bin dest/ --force\n")
        assert r.returncode == 0, r.stderr
        assert (pfs.cwd / "adir" / "f.bin").read_bytes() == stored
        inner = pfs.cwd / "adir" / "f.bin"
        inner.unlink()
        os.symlink("../adir", inner)  # a link inside it, to a directory, is refused
        r = pfs.run("get f.bin dest/ --force\n")
        assert f"{link}/f.bin is {why}" in r.stderr or f"dest/f.bin is {why}" in r.stderr, r.stderr
        assert os.path.islink(inner)
        return
    for force in ("", " --force"):
        r = pfs.run(f"get f.bin dest{force}\n")
        assert r.returncode == 1
        assert f"dest is {why}" in r.stderr, r.stderr
        assert os.readlink(link) == points_to, "the link itself must be left as it was"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_get_force_replaces_a_link_to_a_regular_file_and_not_the_file(pfs, stored):
    other = pfs.cwd / "other.bin"
    other.write_bytes(b"keep me")
    os.symlink("other.bin", pfs.cwd / "dest")
    r = pfs.run("get f.bin dest\n")
    assert "dest already exists" in r.stderr, r.stderr
    r = pfs.run("get f.bin dest --force\n")
    assert r.returncode == 0, r.stderr
    assert not os.path.islink(pfs.cwd / "dest"), "--force replaces the link itself"
    assert (pfs.cwd / "dest").read_bytes() == stored
    assert other.read_bytes() == b"keep me", "the file the link pointed to is left as it was"


# -- exit status, help, banner --------------------------------------------------------------------

def test_list_into_a_reader_that_leaves_exits_141(pfs):
    """README: `pfs list | head -1` exits 141 (as for SIGPIPE) when the output is
    more than the pipe holds; Python's buffered writer dropped the rest of a short
    write in silence, so pfs exited 0."""
    (pfs.cwd / "one").write_bytes(b"1")
    long = "d" * 200
    assert pfs.run("".join(f"put one {long}-{i}\n" for i in range(400))).returncode == 0
    whole = subprocess.run(pfs.argv("list"), capture_output=True, cwd=pfs.cwd, env=env(), timeout=60)
    assert whole.returncode == 0 and len(whole.stdout) > 65536, len(whole.stdout)
    for _ in range(3):
        pipeline = subprocess.run(["bash", "-c", f"{shlex.join(pfs.argv('list'))} | head -1 >/dev/null; "
                                   "echo ${PIPESTATUS[0]}"], capture_output=True, text=True, cwd=pfs.cwd,
                                  env=env(), timeout=60)
        assert pipeline.stdout.strip() == "141", pipeline.stdout + pipeline.stderr
        assert "Traceback" not in pipeline.stderr and "error" not in pipeline.stderr, pipeline.stderr


def test_help_lists_every_command_of_the_table(pfs):
    r = pfs.run("", "--help")
    assert r.returncode == 0
    summary = r.stdout[r.stdout.index("commands ("):]
    for command in COMMANDS.values():
        assert f"\n  {command.usage}" in summary, command.name
    assert "pfs --store DIR repair" in summary


def test_interactive_shell_exits_0_after_an_earlier_failed_command(pfs):
    e = env()
    e.update(TERM="xterm", LANG="C.UTF-8", LC_ALL="C.UTF-8", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(sys.executable, pfs.argv()[1:], cwd=str(pfs.cwd), env=e, dimensions=(40, 120),
                          encoding="utf-8", timeout=30)
    try:
        child.expect_exact("pfs>")
        child.sendline("gte 1")
        child.expect("unknown command")
        child.sendline("get nothing.bin")
        child.expect("no file named nothing.bin")
        child.sendline("exit")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    finally:
        child.terminate(force=True)


def test_database_store_banner_names_the_database(postgres_uri, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    store = Pfs(postgres_uri, work, ("--data", str(tmp_path / "data")))
    assert store.run("list\n").returncode == 0
    e = env()
    e.update(TERM="xterm", LANG="C.UTF-8", LC_ALL="C.UTF-8", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(sys.executable, store.argv()[1:], cwd=str(work), env=e, dimensions=(40, 200),
                          encoding="utf-8", timeout=30)
    try:
        child.expect_exact("pfs>")
        banner = child.before
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.terminate(force=True)
    assert f"store {postgres_uri} (part data in {tmp_path / 'data'})" in banner, banner


def test_a_name_made_of_digits_is_still_a_name_not_an_id(pfs):
    make_file(pfs.cwd / "a.bin", 10)
    make_file(pfs.cwd / "b.bin", 20)
    r = pfs.run("put a.bin\nput b.bin 1\nwait\ninfo ./1\nget ./1 out.bin\n")
    assert r.returncode == 0, r.stderr
    assert "name:       1\nid:         2" in r.stdout
    assert (pfs.cwd / "out.bin").read_bytes() == (pfs.cwd / "b.bin").read_bytes()
