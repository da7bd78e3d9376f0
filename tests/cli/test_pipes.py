"""Standard input and output as files: `put - NAME` stores a pipe in bounded
memory and nothing if interrupted; `get NAME -` and `cat NAME` write the
verified bytes and nothing else, and damage stops them with an error."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import threading
import time

import psutil
from pfs.cli.commands import Session
from pfs.cli.output import PlainOutput
from pfs.store.facade import Store

from helpers import CHUNK, env, make_file, part_files, pieces, read_manifest


def _run(pfs, *command: str, data: bytes = b"", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(pfs.argv(*command), input=data, capture_output=True, cwd=pfs.cwd, env=env(),
                          timeout=timeout)


def test_put_from_stdin_then_cat_and_get_to_stdout(pfs):
    data = os.urandom(20 * CHUNK + 17)
    r = _run(pfs, "put", "-", "logs/piped", data=data)
    assert r.returncode == 0, r.stderr
    assert b"[1] stored logs/piped: 1.3 MiB in 21 parts" in r.stdout, r.stdout
    for command in (["cat", "logs/piped"], ["get", "logs/piped", "-"], ["cat", "1"]):
        r = _run(pfs, *command)
        assert r.returncode == 0, r.stderr
        assert r.stdout == data, f"{command}: stdout must be the file's bytes and nothing else"
        assert b"error" not in r.stderr
    r = _run(pfs, "info", "logs/piped")
    assert b"status:     stored" in r.stdout


def test_a_file_named_dash_is_reached_as_dot_slash_dash(pfs):
    data = make_file(pfs.cwd / "-", 3 * CHUNK).read_bytes()
    r = _run(pfs, "put", "./-", "dash")
    assert r.returncode == 0, r.stderr
    (pfs.cwd / "-").unlink()
    r = _run(pfs, "get", "dash", "./-")
    assert r.returncode == 0, r.stderr
    assert (pfs.cwd / "-").read_bytes() == data
    r = pfs.run("put ./- -\nwait\nget ./- copy\n")  # and a stored name `-` is ./- too
    assert r.returncode == 0, r.stderr
    assert (pfs.cwd / "copy").read_bytes() == data


def test_put_dash_where_stdin_is_the_script_is_one_error(pfs):
    r = pfs.run("put - piped\nput -\nlist\n")
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: put -: standard input is where the commands come from here "
                      "(from the system shell: pfs put - piped < FILE)",
                      "error: put -: standard input has no file name (give one: put - NAME)"], r.stderr
    assert "no files stored yet" in r.stdout


def test_get_to_stdout_takes_no_option(pfs):
    assert _run(pfs, "put", "-", "x", data=b"abc").returncode == 0
    r = _run(pfs, "get", "x", "-", "--force")
    assert r.returncode == 1 and r.stdout == b""
    assert b"error: get: --force writes a file; standard output takes no option" in r.stderr


def test_cat_stops_at_a_damaged_part_with_an_error(pfs):
    data = os.urandom(10 * CHUNK)
    assert _run(pfs, "put", "-", "x", data=data, ).returncode == 0
    bad = read_manifest(pfs.store, 1)["parts"][4]["id"]
    path = part_files(pfs.store)[bad]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(raw)
    for command in (["cat", "x"], ["get", "x", "-"]):
        r = _run(pfs, *command)
        assert r.returncode == 1, r.stderr
        assert r.stdout == data[:4 * CHUNK], "the verified parts before the damaged one, and nothing of it"
        errors = [line for line in r.stderr.decode().splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "damaged part 4" in errors[0], r.stderr
        assert b"Traceback" not in r.stderr


def test_cat_into_a_reader_that_leaves_exits_141(pfs):
    assert _run(pfs, "put", "-", "x", data=os.urandom(40 * CHUNK)).returncode == 0
    r = subprocess.run(["bash", "-c", " ".join(pfs.argv("cat", "x")) + " | head -c 10 >/dev/null; "
                        "echo ${PIPESTATUS[0]}"], capture_output=True, text=True, cwd=pfs.cwd, env=env(), timeout=60)
    assert r.stdout.strip() == "141", r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "error" not in r.stderr, r.stderr


def _feed(proc: subprocess.Popen, total: int, block: bytes, stop: threading.Event) -> None:
    try:
        sent = 0
        while sent < total and not stop.is_set():
            proc.stdin.write(block)
            sent += len(block)
        proc.stdin.close()
    except (BrokenPipeError, ValueError):
        pass


def test_put_from_stdin_holds_bounded_memory(pfs):
    """192 MiB piped through a pfs whose memory limit is 16 MiB: its own memory
    stays far below what it stored (a put that read the pipe whole would hold it all)."""
    total, block = 192 << 20, os.urandom(1 << 20)
    proc = subprocess.Popen(pfs.argv("--max-memory", "16M", "put", "-", "big"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=pfs.cwd, env=env())
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(proc, total, block, stop))
    feeder.start()
    me, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, me.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    feeder.join()
    out, err = proc.stdout.read(), proc.stderr.read()
    assert proc.wait(60) == 0, err
    assert b"stored big: 192.0 MiB" in out, out
    assert peak < 128 << 20, f"pfs held {peak >> 20} MiB while storing 192 MiB from a pipe"
    print(f"peak RSS of the pfs process: {peak >> 20} MiB")


def test_interrupted_put_from_stdin_stores_nothing(pfs):
    proc = subprocess.Popen(pfs.argv("put", "-", "cut"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=pfs.cwd, env=env(), start_new_session=True)
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(proc, 1 << 40, os.urandom(1 << 16), stop))
    feeder.start()
    assert proc.stdout.readline().startswith(b"[1] storing cut (from standard input)")
    time.sleep(0.5)  # parts are being stored
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.stderr.read()
    stop.set()
    feeder.join()
    assert proc.wait(60) == 130, err
    assert b"interrupted (SIGINT): abandoned put 1 (cut)" in err, err
    r = _run(pfs, "list")
    assert b"rolled back" in r.stderr, r.stderr
    assert b"stored" not in r.stdout.replace(b"stored  present", b""), r.stdout  # not stored, and no part on a volume
    assert part_files(pfs.store) == {} and [p for p in pieces(pfs.store)] == []
    r = _run(pfs, "cat", "cut")
    assert r.returncode == 1 and r.stdout == b""


def test_cat_into_an_output_that_takes_only_text_is_one_error(tmp_path):
    """A session embedded with a text stream (a StringIO) for its output: cat
    says it cannot write bytes there, and the session goes on."""
    out, err = io.StringIO(), io.StringIO()
    source = make_file(tmp_path / "f.bin", 3 * CHUNK)
    with Store(tmp_path / "store", workers=1) as store:
        session = Session(store, PlainOutput(out=out, err=err))
        session.execute(f"put {source} f")
        session.jobs.wait_all()
        session.execute("cat f")
        session.execute("list")
    assert err.getvalue().splitlines() == [
        "error: this output takes text only, and the bytes of a file are not text (get NAME FILE writes them to a file)"]
    assert out.getvalue().splitlines()[-1].split()[:5] == ["1", "f", "192.0", "KiB", "1"], out.getvalue()
