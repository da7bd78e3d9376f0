"""Hostile input: random command lines, crafted stored names, crafted parts and
manifests.

* Random command lines (tokens, quotes, control characters, huge numbers,
  unicode) go to pfs.cli.commands.Session.execute against a real Store: nothing but
  ExitShell escapes, every line on the error stream is one `error:` line, and
  nothing is a traceback.
* A stored name with `../`, an absolute path or control characters (made by
  editing the file's record in the journal and its manifest's copy) never makes
  `get` write outside its destination directory or the current directory.
* A zstd bomb part (a valid frame that decodes to far more than the recorded
  size) is rejected as damaged; a manifest claiming a part larger than the chunk
  size is rejected with a clear error.
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import string
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import (CHUNK, assert_clean_stderr, edit_records, env, error_lines, make_file, part_path,
                     pfs_argv, read_manifest, run_pfs, tree_state, write_manifest)
from pfs.cli.commands import COMMANDS, ExitShell, Session
from pfs.cli.output import PlainOutput
from pfs.store.facade import Store

EXAMPLES = int(os.environ.get("PFS_HOSTILE_EXAMPLES", "200"))

# -- random command lines ------------------------------------------------------------

_WORDS = sorted(COMMANDS) + ["quit", "ls", "rm", "PUT", "Get", "LiSt", "repair", "--force", "--salvage",
                             "--all", "--", "--bogus", "-", "#", "'", '"', "\\", ";", "|", "&&", "$(id)", "`id`",
                             "~", "~root", ".", "..", "*", "?", "", " ", "\t", "\x00", "\x1b[2J", "\r",
                             "/dev/null", "/etc", "/proc/self/mem", "-1", "0", "1", "2", "3", "007", "1e9",
                             "1.5", "0x10", "\u0661", "\u00b2", "\uff11", "\U0001d7d9", "\u202e", "\ufeff",
                             str(2 ** 63), str(10 ** 40), "9" * 500]
_weird = st.text(max_size=12)  # any unicode: control characters, NUL, RTL marks, ...
_token = st.one_of(
    st.sampled_from(_WORDS),
    _weird,
    st.text(alphabet=string.printable, max_size=12),
    _weird.map(shlex.quote),
    st.integers(-(10 ** 40), 10 ** 40).map(str),
    st.sampled_from(["victim.bin", "dir", "missing.bin", "dir/new.bin"]),
)
_file_id = st.one_of(st.sampled_from(["1", "2", "3", "4"]), _token)
_command_line = st.one_of(
    # a command with random arguments
    st.tuples(st.sampled_from(sorted(COMMANDS) + ["quit", "ls", "rm"]), st.lists(_token, max_size=4))
      .map(lambda t: " ".join([t[0], *t[1]])),
    # put of a hostile path
    st.tuples(_weird, st.sampled_from(["", "dir/", "victim.bin/"]))
      .map(lambda t: f"put {shlex.quote(t[1] + t[0])}"),
    # a file command on a real id with hostile arguments and flags
    st.tuples(st.sampled_from(["get", "delete", "info", "verify"]), _file_id, st.lists(
        st.one_of(_token, _weird.map(shlex.quote), st.sampled_from(["--force", "--salvage", "--all"])),
        max_size=3)).map(lambda t: " ".join([t[0], t[1], *t[2]])),
    # anything at all
    st.lists(_token, min_size=1, max_size=6).map(" ".join),
    st.text(max_size=60),
)


def _defused(line: str) -> str:
    """The only change to a random line: a `get` must not be pointed outside the
    sandbox (absolute or home paths), since it really writes."""
    try:
        first = shlex.split(line, comments=True)[:1]
    except ValueError:
        first = []
    if "get" in line.lower() or (first and first[0].lower() == "get"):
        line = line.replace("/", "_").replace("~", "-")
    return line


def test_random_command_lines(tmp_path, monkeypatch, caplog):
    sandbox = tmp_path / "sandbox" / "a" / "b"  # even `get 1 ..` stays under tmp_path
    sandbox.mkdir(parents=True)
    (sandbox / "dir").mkdir()
    victim = make_file(sandbox / "victim.bin", 2 * CHUNK + 3, "text")
    monkeypatch.chdir(sandbox)
    out, err = io.StringIO(), io.StringIO()
    caplog.set_level(logging.ERROR, logger="pfs")
    seen = {"examples": 0, "lines": 0, "errors": 0}

    with Store(tmp_path / "store", {"chunk_size": 65536}, workers=1, max_memory=1 << 20) as store:
        session = Session(store, PlainOutput(out=out, err=err))

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        @given(st.lists(_command_line, min_size=1, max_size=4))
        def run(lines):
            if not any(e.status == "stored" for e in store.list()):
                session.execute("put victim.bin")
                session.jobs.wait_all()
            out.seek(0), out.truncate(), err.seek(0), err.truncate()
            caplog.clear()
            lines = [_defused(line) for line in lines]
            for line in lines:
                try:
                    session.execute(line)
                except ExitShell:
                    pass
                # anything else propagates and fails the example
            session.jobs.wait_all()
            seen["examples"] += 1
            seen["lines"] += len(lines)
            text_out, text_err = out.getvalue(), err.getvalue()
            assert "Traceback" not in text_out + text_err, (lines, text_out, text_err)
            assert not [r for r in caplog.records if r.exc_info], \
                (lines, [r.getMessage() for r in caplog.records])  # a traceback logged for pfs.log
            for e in text_err.splitlines():
                assert e.startswith("error:"), f"stray error-stream line {e!r} for {lines!r}:\n{text_err}"
            assert "internal error" not in text_err, \
                f"hostile input reached pfs's generic 'internal error' handler: {lines!r}:\n{text_err}"
            seen["errors"] += text_err.count("error:")

        try:
            run()
        finally:
            session.jobs.wait_all()
            print(f"\nhostile command lines: {seen}", file=sys.__stderr__)
    assert victim.exists()


@pytest.mark.parametrize("line", ['put "a\x00b"', 'get 1 "out\x00.bin"', 'put "no\nsuch\nfile"',
                                  'get 1 "no\nsuch\ndir/x.bin"', 'put "\r"', "info 1\x00",
                                  "put ~no_such_user_pfs/x.bin", "get 1 ~no_such_user_pfs/x.bin"],
                         ids=["nul-put", "nul-get", "newline-put", "newline-get", "cr-put", "nul-id",
                              "unknown-user-put", "unknown-user-get"])
def test_awkward_arguments_give_one_clean_error(tmp_path, monkeypatch, line):
    """Deterministic cases of the above (NUL, newline and CR in paths, ~unknown-user):
    exactly one `error:` line, never an internal error."""
    monkeypatch.chdir(tmp_path)
    make_file(tmp_path / "victim.bin", 100)
    out, err = io.StringIO(), io.StringIO()
    with Store(tmp_path / "store", {"chunk_size": 65536}, workers=1, max_memory=1 << 20) as store:
        session = Session(store, PlainOutput(out=out, err=err))
        session.execute("put victim.bin")
        session.jobs.wait_all()
        err.seek(0), err.truncate()
        session.execute(line)
        session.jobs.wait_all()
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), f"{line!r} -> {err.getvalue()!r}"
    assert "internal error" not in lines[0], f"{line!r} -> {lines[0]!r}"


# -- crafted stored names ---------------------------------------------------------------

NAMES = {
    "dotdot": "../../evil.bin",
    "absolute": None,  # filled in: an absolute path into the test's own directory
    "dot": ".",
    "dotdot-only": "..",
    "empty": "",
    "slash": "/",
    "hidden-dotdot": "a/../../b.bin",
    "backslash": "..\\..\\evil.bin",
    "control": "evil\x1b[31m\nname\x07\r.bin",
    "nul": "nul\x00.bin",
    "trailing-slash": "evil.bin/",
}


def test_crafted_names_never_escape_the_destination(pfs, tmp_path):
    """One stored file per crafted name (ids in sorted case order); `get ID DIR`
    and `get ID` (default destination: the current directory) must each write
    exactly one file, directly inside DIR / the current directory, whose name is
    a plain printable file name, and nothing anywhere else."""
    names = dict(NAMES)
    (tmp_path / "abs").mkdir()
    names["absolute"] = str(tmp_path / "abs" / "evil.bin")
    cases = sorted(names)
    originals = {}
    for i, case in enumerate(cases, 1):
        originals[i] = make_file(pfs.cwd / f"v{i}.bin", 2 * CHUNK + i).read_bytes()
    r = pfs.run("".join(f"put v{i}.bin\n" for i in originals))
    assert r.returncode == 0, r.stderr
    for i, case in enumerate(cases, 1):
        def rename(rec: dict, name=names[case]) -> None:
            rec["name"] = name
        assert edit_records(pfs.store, i, rename) >= 2
        manifest = read_manifest(pfs.store, i)
        manifest["file"]["name"] = names[case]
        write_manifest(pfs.store, i, manifest)

    deep = tmp_path / "x" / "y" / "z"  # so that ../../ would still land inside tmp_path
    dirs = {i: (deep / case / "dest", deep / case / "here") for i, case in enumerate(cases, 1)}
    for d in dirs.values():
        d[0].mkdir(parents=True)
        d[1].mkdir()
    before = tree_state(tmp_path, ("lock", "pfs.log"))
    results = {0: run_pfs(pfs.store, "".join(f"get {i} {dirs[i][0]}\n" for i in originals), cwd=pfs.cwd)}
    for i in originals:
        results[i] = run_pfs(pfs.store, f"get {i}\n", cwd=dirs[i][1])

    problems = []
    for i, r in results.items():
        if r.returncode != 0 or "Traceback" in r.stderr:
            problems.append(f"{cases[i - 1] if i else 'get ID DIR'}: exit {r.returncode}: {r.stderr.strip()}")
    after = tree_state(tmp_path, ("lock", "pfs.log"))
    outside = {p for p in after if p not in before and not p.startswith(("store/", "x/y/z/"))}
    outside |= {p for p in before if p in after and after[p] != before[p] and not p.startswith("store/")}
    if outside:
        problems.append(f"files written or changed outside the destinations: {sorted(outside)}")
    for i, case in enumerate(cases, 1):
        for d in dirs[i]:
            files = os.listdir(d)
            if len(files) != 1:
                problems.append(f"{case}: {d.name}/ holds {files}")
                continue
            written = files[0]
            if written in (".", "..") or "/" in written or not written.isprintable():
                problems.append(f"{case}: wrote {written!r}")
            elif (d / written).read_bytes() != originals[i]:
                problems.append(f"{case}: {d.name}/{written} differs from the original")
        stray = {p for p in after if p not in before and p.startswith(f"x/y/z/{case}/")
                 and not p.startswith((f"x/y/z/{case}/dest/", f"x/y/z/{case}/here/"))}
        if stray:
            problems.append(f"{case}: wrote outside its directories: {sorted(stray)}")
        stray = {p for p in after if p not in before and p.startswith("x/y/z/")
                 and p.split("/")[3] not in cases}
        if stray:
            problems.append(f"wrote into x/y/z itself: {sorted(stray)}")
    assert not problems, "\n".join(problems)


# -- crafted parts and manifests ------------------------------------------------------------

def test_zstd_bomb_part_is_rejected_as_damaged(pfs, tmp_path):
    zstandard = pytest.importorskip("zstandard")
    src = make_file(pfs.cwd / "logs.txt", 4 * CHUNK, "text")
    r = pfs.run("put logs.txt\n")
    assert r.returncode == 0, r.stderr
    manifest = read_manifest(pfs.store, 1)
    assert manifest["parts"][1]["codec"] == "zstd"
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(256 << 20))  # 256 MiB of zeros, ~8 KiB
    assert len(bomb) < CHUNK
    part_path(pfs.store, 1, 1).write_bytes(bomb)
    manifest["parts"][1]["stored"] = len(bomb)  # so that only the decoder stands in the way
    write_manifest(pfs.store, 1, manifest)

    dest = tmp_path / "out.bin"
    r = pfs.run(f"get 1 {dest}\nverify 1\n")
    assert r.returncode == 1
    assert_clean_stderr(r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == 2, r.stderr
    for e in errors:
        assert f"part 1 bytes {CHUNK}-{2 * CHUNK - 1}" in e, e
        assert "internal error" not in e
    assert not dest.exists()
    r = pfs.run(f"get --salvage 1 {dest}\n")
    assert r.returncode == 1
    data = dest.read_bytes()
    assert data[:CHUNK] == src.read_bytes()[:CHUNK] and data[CHUNK:2 * CHUNK] == bytes(CHUNK)
    assert data[2 * CHUNK:] == src.read_bytes()[2 * CHUNK:]


def test_manifest_claiming_part_larger_than_chunk_is_rejected(pfs, tmp_path):
    make_file(pfs.cwd / "f.bin", 4 * CHUNK)
    r = pfs.run("put f.bin\n")
    assert r.returncode == 0, r.stderr
    manifest = read_manifest(pfs.store, 1)
    manifest["parts"][0]["size"] = 1 << 40  # a 1 TiB part
    write_manifest(pfs.store, 1, manifest)
    dest = tmp_path / "out.bin"
    for command in (f"get 1 {dest}", "verify 1"):
        r = pfs.run(command + "\n")
        assert r.returncode == 1
        assert_clean_stderr(r.stderr)
        errors = error_lines(r.stderr)
        assert len(errors) == 1, r.stderr
        assert "manifests/1.json" in errors[0] and "part 0" in errors[0], errors[0]
        assert "internal error" not in errors[0], errors[0]
        assert sorted(os.listdir(tmp_path)) == ["store", "work"], "nothing may be written"


def test_part_larger_than_max_memory_is_a_clear_error(tmp_path):
    """Each file keeps its own chunk size, so any session reads any file -- a
    session whose --max-memory cannot hold one of its parts must say so clearly."""
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    src = make_file(work / "big-parts.bin", 3 << 20)
    r = run_pfs(store, "put big-parts.bin\n", cwd=work, chunk=1 << 20)
    assert r.returncode == 0, r.stderr
    dest = tmp_path / "out.bin"
    r = run_pfs(store, f"get 1 {dest}\nverify 1\n", "--max-memory", "1M", cwd=work)
    assert_clean_stderr(r.stderr)
    for e in error_lines(r.stderr):
        assert "internal error" not in e, e
        assert "--max-memory" in e or "memory" in e, e
    if r.returncode == 0:
        assert dest.read_bytes() == src.read_bytes()
    else:
        assert not dest.exists()


# -- where the output goes, and odd bytes coming in --------------------------------------

def _stored_files(store, tmp_path, count: int) -> None:
    srcs = [make_file(tmp_path / f"f{i}.txt", 10, "text") for i in range(count)]
    r = run_pfs(store, "".join(f"put {s}\n" for s in srcs))
    assert r.returncode == 0, r.stderr


def _run_raw(store, stdin: bytes = b"", *argv, stdout=subprocess.PIPE, preexec_fn=None) -> subprocess.CompletedProcess:
    """pfs with bytes in and out, decoding stdin strictly as Python does under a
    full UTF-8 locale such as en_US.UTF-8 (under C or C.UTF-8 it is lenient)."""
    return subprocess.run(pfs_argv(store, *argv), input=stdin, stdout=stdout, stderr=subprocess.PIPE,
                          env={**env(), "PYTHONIOENCODING": "utf-8:strict"}, timeout=60, start_new_session=True,
                          preexec_fn=preexec_fn)


def test_reader_that_left_gives_no_traceback_and_status_141(tmp_path):
    """`pfs list | head -1`, with the reader gone before pfs writes (a pipe whose
    read end is closed), and a put whose report cannot be written: no traceback,
    no "Exception ignored", the put still completes."""
    store = tmp_path / "store"
    _stored_files(store, tmp_path, 3)
    read, write = os.pipe()
    os.close(read)
    try:
        for argv in (["list"], ["put", str(make_file(tmp_path / "late.bin", 3 * CHUNK))]):
            r = _run_raw(store, b"", *argv, stdout=write)
            assert r.stderr == b"", r.stderr.decode()
            assert r.returncode == 141, argv
    finally:
        os.close(write)
    r = run_pfs(store, "list\n")
    assert "late.bin" in r.stdout and "storing" not in r.stdout, r.stdout


def test_closed_stdout_is_one_error_line_and_no_store_file_takes_its_place(tmp_path):
    store = tmp_path / "store"
    _stored_files(store, tmp_path, 2)
    journal = (store / "files.jsonl").read_bytes()
    src = make_file(tmp_path / "c.bin", 2 * CHUNK)
    r = subprocess.run(pfs_argv(store, "put", str(src)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(),
                       timeout=60, pass_fds=(), preexec_fn=lambda: os.close(1))
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert err == "error: cannot write to standard output (Bad file descriptor); the rest of the output is lost\n"
    after = (store / "files.jsonl").read_bytes()
    assert after.startswith(journal) and b"[" not in after[len(journal):].replace(b'"["', b""), \
        "screen output went into the journal"
    r = run_pfs(store, f"get 3 {tmp_path / 'c.out'}\n")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c.out").read_bytes() == src.read_bytes()


def test_script_with_bytes_that_are_not_utf8(tmp_path):
    """A piped script naming a file whose name is not UTF-8 (and a line of pure
    junk bytes): the file is stored under a name given to it, and got back; its
    own name is refused in one line (a stored name is UTF-8 text)."""
    store = tmp_path / "store"
    name = b"caf\xe9 \xff.bin"
    src = os.path.join(os.fsencode(tmp_path), name)
    with open(src, "wb") as f:
        f.write(os.urandom(2 * CHUNK + 5))
    out = os.fsencode(tmp_path / "back.bin")
    r = _run_raw(store, b'put "' + src + b'" cafe.bin\n\xfe\xfd\xfc\nlist\nwait\nget 1 ' + out + b"\n")
    err = r.stderr.decode()
    assert "Traceback" not in err and "UnicodeDecodeError" not in err, err
    assert err.count("error:") == 1 and "unknown command" in err, err
    assert r.returncode == 1
    with open(src, "rb") as f:
        assert open(out, "rb").read() == f.read()
    r = _run_raw(store, b"", "put", src.decode("utf-8", "surrogateescape"))  # its own name, in argv
    assert r.returncode == 1 and r.stderr.decode("utf-8", "backslashreplace").startswith(
        "error: bad name 'caf\\udce9 \\udcff.bin': it is not UTF-8 text"), r.stderr  # escaped, never raw bytes


def test_low_open_file_limit_is_raised_or_refused_up_front(tmp_path):
    """Too few file descriptors made a put fail midway, with a traceback from the
    pool's forkserver. Now pfs raises a low soft limit itself, and refuses at once,
    in one line, a hard limit it cannot work with."""
    import resource

    store = tmp_path / "store"
    src = make_file(tmp_path / "a.bin", 3 * CHUNK)
    _stored_files(store, tmp_path, 1)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for soft, limit in ((10, hard), (14, hard), (10, 10), (18, 18)):
        def cap(soft=soft, limit=limit) -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, limit))
        r = _run_raw(store, f"put {src}\nlist\nget 1 {tmp_path / f'o{soft}-{limit}'}\n".encode(), preexec_fn=cap)
        err = r.stderr.decode()
        if limit == hard:
            assert r.returncode == 0 and err == "", err
        else:
            assert r.returncode == 2, err
            assert err == (f"error: pfs may open only {limit} files at once (ulimit -n) and needs 40 with --workers 2 "
                           "(raise the limit with `ulimit -n 40`, or use fewer workers)\n"), err
    r = run_pfs(store, "verify --all\n")
    assert r.returncode == 0, r.stderr


def test_stdout_on_a_full_device_is_one_error_line(tmp_path):
    store = tmp_path / "store"
    _stored_files(store, tmp_path, 2)
    with open("/dev/full", "wb") as full:
        r = _run_raw(store, b"", "list", stdout=full)
    assert r.returncode == 1
    assert r.stderr.decode() == ("error: cannot write to standard output (No space left on device); "
                                 "the rest of the output is lost\n")
