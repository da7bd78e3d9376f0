"""Space on the volumes, lost or miscounted, and drains that cannot finish:

* a heal while a volume is unusable notes that its old pieces are to be
  removed, and the next open or heal that reaches it again removes them;
* `volume list` says what the volumes really hold (the pieces on disk, copies
  counted), and so does a put's summary;
* a removed volume's directory can be added again;
* a drain that cannot finish (the only volume, too few others for the copies)
  is refused, and `volume undrain` takes a drain back.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pfs.units import format_size

from helpers import CHUNK, error_lines, make_file, parse_list, pieces, referenced_pieces, run_pfs

MIB = 1 << 20


def add_volumes(store: Path, tmp_path: Path, count: int, *options: str) -> list[Path]:
    dirs = [tmp_path / f"vol{i}" for i in range(1, count + 1)]
    for d in dirs:
        d.mkdir()
    r = run_pfs(store, "".join(f"volume add {d}\n" for d in dirs), *options)
    assert r.returncode == 0, r.stderr
    return dirs


def held(volume: Path) -> list[Path]:
    return [Path(d, n) for d, _, names in os.walk(volume) for n in names if not n.startswith("pfs-volume.json")]


def volume_rows(stdout: str) -> dict[int, list[str]]:
    return {int(line.split()[0]): line.split() for line in stdout.splitlines() if re.match(r"^ *\d+ ", line)}


@pytest.mark.parametrize("action", ["open", "heal"])
def test_a_heal_while_a_volume_is_away_removes_its_old_pieces_once_it_is_back(tmp_path, action):
    store, work = tmp_path / "store", tmp_path
    vol1, vol2 = add_volumes(store, tmp_path, 2)
    make_file(work / "f.bin", 6 * CHUNK + 5)
    assert run_pfs(store, "put f.bin\n", "--copies", "2", cwd=work).returncode == 0
    assert held(vol1), "volume 1 holds copies"
    vol1.rename(tmp_path / "away")
    r = run_pfs(store, "heal\nwait\n", cwd=work)
    assert r.returncode == 0 and "healed f.bin" in r.stdout, r.stdout + r.stderr
    (tmp_path / "away").rename(vol1)
    script = "list\n" if action == "open" else "heal\nwait\n"
    r = run_pfs(store, script, cwd=work)
    assert r.returncode == 0, r.stderr
    assert held(vol1) == [], f"{len(held(vol1))} old copies stay on volume 1 after it came back"
    on_disk = {(vid, key) for vid, key, _ in pieces(store)}
    assert on_disk == referenced_pieces(store)
    r = run_pfs(store, "get f.bin back.bin\n", cwd=work)
    assert r.returncode == 0 and (work / "back.bin").read_bytes() == (work / "f.bin").read_bytes()


def test_volume_list_and_a_puts_summary_count_every_copy(tmp_path):
    store, work = tmp_path / "store", tmp_path
    add_volumes(store, tmp_path, 2)
    make_file(work / "f.bin", 2 * MIB)
    r = run_pfs(store, "put f.bin\n", "--copies", "2", cwd=work)
    assert r.returncode == 0, r.stderr
    assert re.search(r"stored f\.bin: 2\.0 MiB in 32 parts, 4\.0 MiB on disk", r.stdout), r.stdout
    r = run_pfs(store, "volume list\n", cwd=work)
    rows = volume_rows(r.stdout)
    on_disk: dict[int, int] = {}
    for vid, _, path in pieces(store):
        on_disk[vid] = on_disk.get(vid, 0) + path.stat().st_size
    assert sum(on_disk.values()) >= 4 * MIB
    for vid, size in on_disk.items():
        # as pfs writes sizes (under 1 MiB in KiB): which volume holds how much of the copies varies
        assert format_size(size) in " ".join(rows[vid]), f"volume {vid} holds {size} bytes:\n{r.stdout}"


def test_a_removed_volumes_directory_can_be_added_again(tmp_path):
    store, work = tmp_path / "store", tmp_path
    vol1, = add_volumes(store, tmp_path, 1)
    make_file(work / "f.bin", 5 * CHUNK)
    r = run_pfs(store, f"put f.bin\nwait\nvolume drain 1\nwait\nvolume remove 1\nvolume add {vol1}\nvolume list\n",
                cwd=work)
    assert r.returncode == 0 and error_lines(r.stderr) == [], r.stderr
    assert "added volume 2" in r.stdout
    assert sorted(os.listdir(vol1)) == ["pfs-volume.json"]


def test_a_drain_that_cannot_finish_is_refused(tmp_path):
    store, work = tmp_path / "store", tmp_path
    make_file(work / "f.bin", 3 * CHUNK)
    r = run_pfs(store, "put f.bin\nwait\nvolume drain 0\nvolume list\nput f.bin g.bin\nwait\n", cwd=work)
    assert error_lines(r.stderr) == ["error: volume 0 is the store's only volume: a drain would have nowhere to "
                                     "move its pieces (add another one first with `volume add DIR`)"], r.stderr
    assert volume_rows(r.stdout)[0][-1] == "online" and "stored g.bin" in r.stdout
    add_volumes(store, tmp_path, 1)
    assert run_pfs(store, "put f.bin h.bin\n", "--copies", "2", cwd=work).returncode == 0
    r = run_pfs(store, "volume drain 1\nvolume list\n", cwd=work)
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and errors[0].startswith("error: volume 1 cannot be drained: its files' copies or "
                                                     "shards need 2 other volumes with free space, and 1 has some"), \
        r.stderr
    assert volume_rows(r.stdout)[1][-1] == "online"


def test_volume_undrain_takes_a_drain_back(tmp_path):
    store, work = tmp_path / "store", tmp_path
    vol1, = add_volumes(store, tmp_path, 1)
    make_file(work / "f.bin", 3 * CHUNK)
    r = run_pfs(store, "put f.bin\nwait\nvolume drain 1\nwait\nvolume undrain 1\nvolume list\nput f.bin g.bin\n"
                "wait\nvolume undrain 1\n", cwd=work)
    assert "volume 1 is drained" in r.stdout and "volume 1 takes pieces again" in r.stdout, r.stdout
    assert volume_rows(r.stdout)[1][-1] == "online"
    assert error_lines(r.stderr) == ["error: volume 1 is not draining (`volume drain 1` drains it)"], r.stderr
    assert parse_list(run_pfs(store, "list\n").stdout) == {1: ("f.bin", "stored"), 2: ("g.bin", "stored")}


def test_heal_with_every_volume_online_reads_no_file(tmp_path):
    """Nothing can need healing: heal says so at once, without a job per file
    (the records say no piece is on a volume that does not keep it)."""
    store, work = tmp_path / "store", tmp_path
    add_volumes(store, tmp_path, 1)
    script = ""
    for i in range(5):
        make_file(work / f"f{i}.bin", CHUNK + i)
        script += f"put f{i}.bin\n"
    assert run_pfs(store, script, "--copies", "2", cwd=work).returncode == 0
    r = run_pfs(store, "heal\nwait\n", cwd=work)
    assert r.returncode == 0 and r.stdout == "heal: nothing to heal (every copy and shard is on a volume that keeps " \
                                             "it)\n", r.stdout
