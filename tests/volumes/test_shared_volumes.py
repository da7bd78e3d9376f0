"""The volume configuration shared by many pfs processes, on a JSON store and on
a PostgreSQL store (see the `shared` fixture in conftest):

* a shell opened before another process drains and removes a volume puts
  nothing there afterwards, and uses a volume added meanwhile;
* `volume remove` is refused while another process's put (held still with
  SIGSTOP) may still write to the volume; once it has ended, drain and remove
  go through and every file comes back whole;
* volume add, list, drain and remove, with copies and erasure coding, on both engines.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from helpers import CHUNK, error_lines, make_file, parse_list

MIB = 1 << 20


def held(volume: Path) -> list[Path]:
    """The piece files a volume directory holds (everything but its marker)."""
    return [Path(d, n) for d, _, names in os.walk(volume) for n in names if not n.startswith("pfs-volume.json")]


def add_volumes(shared, tmp_path: Path, count: int) -> list[Path]:
    dirs = [tmp_path / f"vol{i}" for i in range(1, count + 1)]
    for d in dirs:
        d.mkdir()
    r = shared.run("".join(f"volume add {d}\n" for d in dirs))
    assert r.returncode == 0, r.stderr
    return dirs


def assert_files_come_back(shared, tmp_path: Path, files: dict[int, Path]) -> None:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    r = shared.run("".join(f"get {i} {out / str(i)} --force\n" for i in files))
    assert r.returncode == 0, r.stderr
    for i, source in files.items():
        assert (out / str(i)).read_bytes() == source.read_bytes(), f"file {i} came back different"


def run_while_stopped(session, shared, script: str):
    """Run `script` in another pfs while `session` is held still (SIGSTOP), then let it go on."""
    os.killpg(session.pid, signal.SIGSTOP)
    try:
        return shared.run(script)
    finally:
        os.killpg(session.pid, signal.SIGCONT)


def test_a_shell_opened_before_volume_changes_places_by_the_current_volumes(shared, live_sessions, tmp_path):
    vol1, vol2 = add_volumes(shared, tmp_path, 2)
    f1, f2 = (make_file(shared.cwd / f"f{i}.bin", 8 * CHUNK - i) for i in (1, 2))
    a = live_sessions(shared.store, shared.cwd, *shared.options, "--copies", "2")
    a.send("volume list")
    a.wait_for(r"^ *2 ")  # A has the store open, with volumes 0, 1 and 2

    r = shared.run("volume drain 1\nvolume remove 1\n")
    assert r.returncode == 0, r.stderr
    a.send("put f1.bin")
    a.wait_for(r"^\[1\] stored f1\.bin")
    assert held(vol1) == [], "a piece went to a removed volume"
    assert len(held(vol2)) == 8, "each part has a copy on volume 0 and one on volume 2"

    vol3 = tmp_path / "vol3"
    vol3.mkdir()
    r = shared.run(f"volume add {vol3}\nvolume drain 2\nwait\nvolume remove 2\n")
    assert r.returncode == 0, r.stderr
    a.send("put f2.bin")  # two copies: only volumes 0 and 3 can take them now
    a.wait_for(r"^\[2\] stored f2\.bin")
    assert a.close() == 0, a.stderr()
    assert held(vol1) == [] and held(vol2) == []
    assert len(held(vol3)) == 16
    assert_files_come_back(shared, tmp_path, {1: f1, 2: f2})


def test_volume_remove_waits_for_a_put_in_progress_elsewhere(shared, live_sessions, tmp_path):
    vol1, = add_volumes(shared, tmp_path, 1)
    big = make_file(shared.cwd / "big.bin", 12 * MIB)
    a = live_sessions(shared.store, shared.cwd, *shared.options)
    a.send("put big.bin")
    a.wait_for(r"^\[1\] storing big\.bin")
    r = run_while_stopped(a, shared, "volume remove 1\nvolume list\n")  # a held still in the middle of its put
    assert error_lines(r.stderr) == ["error: file 1 (big.bin) is being stored, and its parts may go to volume 1 "
                                     "(run `volume remove 1` again once it is stored)"], r.stderr
    assert re.search(r"^ *1 .* online$", r.stdout, re.M), "a refused remove leaves the volume as it was"
    a.wait_for(r"^\[1\] stored big\.bin")
    assert a.close() == 0, a.stderr()

    r = shared.run("volume drain 1\nwait\nvolume remove 1\nlist\n")
    assert r.returncode == 0, r.stderr
    assert "removed volume 1" in r.stdout
    assert parse_list(r.stdout) == {1: ("big.bin", "stored")}
    assert held(vol1) == []
    assert_files_come_back(shared, tmp_path, {1: big})


@pytest.mark.parametrize("option", ["--copies=2", "--ec=2+1"])
def test_volume_commands_with_copies_and_erasure_coding(shared, tmp_path, option):
    dirs = add_volumes(shared, tmp_path, 4)
    name, value = option.split("=")
    files = {i: make_file(shared.cwd / f"f{i}.bin", 5 * CHUNK + i) for i in (1, 2)}
    r = shared.run("put f1.bin\nput f2.bin\nwait\nvolume list\n", name, value)
    assert r.returncode == 0, r.stderr
    rows = re.findall(r"^ *(\d+) +(\S+) .* (\d+) +online$", r.stdout, re.M)
    assert [(int(i), loc) for i, loc, _ in rows][1:] == [(i, str(d)) for i, d in enumerate(dirs, 1)], r.stdout
    assert sum(int(n) for _, _, n in rows) == 2 * 6 * (2 if name == "--copies" else 3), r.stdout

    shutil.rmtree(dirs[0])  # volume 1 lost
    r = shared.run("heal\nwait\nvolume remove 1\nvolume drain 2\nwait\nvolume remove 2\nvolume list\n")
    assert r.returncode == 0, r.stderr
    assert "removed volume 1" in r.stdout and "removed volume 2" in r.stdout
    assert held(dirs[1]) == []
    assert_files_come_back(shared, tmp_path, files)


def test_volume_changes_by_two_processes_both_hold(shared, live_sessions, tmp_path):
    vol1, vol2, vol3 = (tmp_path / f"vol{i}" for i in (1, 2, 3))
    for d in (vol1, vol2, vol3):
        d.mkdir()
    a = live_sessions(shared.store, shared.cwd, *shared.options)
    a.send("volume list")
    a.wait_for(r"^ *0 ")  # A has the store open, with volume 0 only
    r = shared.run(f"volume add {vol1}\nvolume add {vol2}\n")
    assert r.returncode == 0, r.stderr
    a.send(f"volume add {vol3}", "volume drain 1", "volume list")
    a.wait_for(r"^ *3 .* online$")  # its change starts from the volumes as they are now, ids never reused
    assert a.close() == 0, a.stderr()
    r = shared.run("volume list\n")
    rows = {int(i): (loc, status) for i, loc, status in re.findall(r"^ *(\d+) +(\S+) .* (\S+)$", r.stdout, re.M)}
    assert rows == {0: (rows[0][0], "online"), 1: (str(vol1), "draining"), 2: (str(vol2), "online"),
                    3: (str(vol3), "online")}, r.stdout


def test_a_database_store_of_one_volume_is_migrated(postgres_uri, tmp_path):
    import psycopg

    from helpers import Pfs

    work = tmp_path / "work"
    work.mkdir()
    pfs = Pfs(postgres_uri, work, ("--data", str(tmp_path / "data")))
    a = make_file(work / "a.bin", 3 * CHUNK + 5)
    assert pfs.run("put a.bin\n").returncode == 0
    with psycopg.connect(postgres_uri, autocommit=True) as conn:  # as made before volumes were configurable
        conn.execute("ALTER TABLE pfs_volumes DROP COLUMN config")
        conn.execute("DELETE FROM pfs_settings WHERE key = 'next_volume'")
        conn.execute("DROP TABLE pfs_schema")
    vol1 = tmp_path / "vol1"
    vol1.mkdir()
    r = pfs.run(f"volume add {vol1}\nvolume drain 0\nwait\nvolume remove 0\nvolume list\n")
    assert r.returncode == 0, r.stderr
    assert "added volume 1" in r.stdout and "removed volume 0" in r.stdout
    assert re.findall(r"^ *(\d+) +(\S+) .* (\d+) +online$", r.stdout, re.M) == [("1", str(vol1), "4")], r.stdout
    r = pfs.run(f"get 1 {tmp_path / 'a.out'}\n")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.out").read_bytes() == a.read_bytes()


@pytest.mark.parametrize("option, width", [("--copies=2", 2), ("--ec=2+1", 3)])
def test_list_and_info_show_the_copies_or_shards_present_and_where(shared, tmp_path, option, width):
    dirs = add_volumes(shared, tmp_path, width - 1)
    name, value = option.split("=")
    make_file(shared.cwd / "f.bin", 4 * CHUNK + 1)
    r = shared.run("put f.bin\nwait\nlist\ninfo 1\n", name, value)
    assert r.returncode == 0, r.stderr
    layout = "2 copies" if width == 2 else "ec 2+1"
    shown = re.escape(layout)
    assert re.search(rf"^ *1 +f\.bin .* stored .* {width}/{width}  {shown}$", r.stdout, re.M), r.stdout
    assert f"\npresent:    {width}/{width} on every part\n" in r.stdout, r.stdout
    assert "\nvolumes:    " + ", ".join(f"{v}: 5 pieces" for v in range(width)) + "\n" in r.stdout, r.stdout
    on_disk = re.search(r"^stored: .* compressed .*, (\d+\.\d) KiB on disk with " + shown, r.stdout, re.M)
    every_piece = 256 * (width if width == 2 else 1.5)  # KiB: 2 copies, or 3 shards of half a part each
    assert on_disk and every_piece <= float(on_disk[1]) < every_piece * 1.05, r.stdout

    shutil.rmtree(dirs[-1])  # a volume lost
    r = shared.run("list\ninfo 1\n")
    assert re.search(rf"^ *1 +f\.bin .* {width - 1}/{width}  {shown}: 5 parts with {width - 1} of {width} "
                     rf"\(volume {width - 1} missing\)$", r.stdout, re.M), r.stdout
    assert f"\npresent:    {width - 1}/{width} on its worst part\n" in r.stdout, r.stdout
    assert f"{width - 1}: 5 pieces (missing)\n" in r.stdout, r.stdout


def test_volume_remove_waits_for_a_drain_moving_pieces_elsewhere(shared, live_sessions, tmp_path):
    drained, = add_volumes(shared, tmp_path, 1)
    big = make_file(shared.cwd / "big.bin", 12 * MIB)
    assert shared.run("put big.bin\n").returncode == 0
    target = tmp_path / "target"  # added after the put: it holds nothing, and the drain moves pieces there
    target.mkdir()
    assert shared.run(f"volume add {target}\n").returncode == 0  # volume 2
    intents = (tmp_path / ("store" if not shared.database else "data")) / "intents"
    a = live_sessions(shared.store, shared.cwd, *shared.options)
    a.send("volume drain 1")
    deadline = time.monotonic() + 60
    while not any(not i.name.startswith(".") for i in intents.iterdir()):  # not a write of one under way
        assert time.monotonic() < deadline, "the drain never noted its moves"
        time.sleep(0.002)
    r = run_while_stopped(a, shared, "volume remove 2\n")  # a held still while it moves pieces
    assert error_lines(r.stderr) == ["error: pieces are being moved (a heal, drain or scrub is running), and may go "
                                     "to volume 2 (run `volume remove 2` again once it has finished)"], r.stderr
    a.wait_for(r"volume 1 is drained")
    assert a.close() == 0, a.stderr()
    assert held(drained) == [] and held(target), "the drained pieces went to volumes 0 and 2"
    assert_files_come_back(shared, tmp_path, {1: big})
