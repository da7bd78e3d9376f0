"""Many volumes: copies and erasure coding on real directories, volumes lost,
replaced by empty directories, damaged piece by piece, drained and removed;
heal on read, scrub and heal; the first store format upgraded in place."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from helpers import (CHUNK, assert_clean_stderr, error_lines, frozen_workers, make_file, parse_list, pfs_argv, pieces,
                     read_manifest, referenced_pieces, run_at_once, run_pfs, volume_dirs)

#: A file of several parts whose last part is short.
SIZE = 7 * CHUNK + 123

#: A file to store: its name, the put's options, its size and its kind (see make_file).
Put = tuple[str, tuple[str, ...], int, str]


def stored(name: str, *options: str, size: int = SIZE, kind: str = "random") -> Put:
    return name, options, size, kind


class Volumes:
    """A store with extra volume directories vol1..volN (volume 0 is inside the store),
    new or copied from a template: the store, its work directory and its volumes."""

    def __init__(self, tmp_path: Path, extra: int, template: Path | None = None) -> None:
        self.tmp = tmp_path
        self.store = tmp_path / "store"
        self.work = tmp_path / "work"
        self.dirs = [tmp_path / f"vol{i}" for i in range(1, extra + 1)]
        if template is not None:
            self._copy(template)
            return
        self.work.mkdir()
        for d in self.dirs:
            d.mkdir()
        r = self.run("".join(f"volume add {d}\n" for d in self.dirs))
        assert r.returncode == 0, r.stderr

    def _copy(self, template: Path) -> None:
        """Copy a template's store, work directory and volumes here. store.json lists the
        volume inside the store by a relative URL and the others by absolute paths: those
        are pointed at the copies, so nothing done here ever reaches the template."""
        for d in (self.store, self.work, *self.dirs):
            shutil.copytree(template / d.name, d)
        path = self.store / "store.json"
        config = json.loads(path.read_bytes())
        for volume in config["volumes"]:
            if Path(volume["url"]).is_absolute():
                volume["url"] = str(self.tmp / Path(volume["url"]).relative_to(template))
        path.write_text(json.dumps(config, separators=(",", ":")))
        assert sorted(volume_dirs(self.store).values()) == sorted([self.store / "volumes" / "0", *self.dirs])

    def run(self, script: str, *options: str):
        r = run_pfs(self.store, script, *options, cwd=self.work)
        assert_clean_stderr(r.stderr)
        return r

    def put(self, name: str, *options: str, size: int = SIZE, kind: str = "random") -> bytes:
        return self.put_all((stored(name, *options, size=size, kind=kind),))[0]

    def put_all(self, puts: tuple[Put, ...]) -> list[bytes]:
        """Store the files in order (ids follow it), one pfs run for each set of options."""
        datas = [make_file(self.work / name, size, kind).read_bytes() for name, _, size, kind in puts]
        for options, group in itertools.groupby(puts, key=lambda put: put[1]):
            r = self.run("".join(f"put {name}\nwait\n" for name, *_ in group), *options)
            assert r.returncode == 0, r.stderr
        return datas

    def get_all(self, originals: dict[int, bytes]) -> str:
        """Get every file and compare; returns stdout (heal lines)."""
        out = self.tmp / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        r = self.run("".join(f"get {i} {out / str(i)}\n" for i in originals))
        assert r.returncode == 0, r.stderr
        for i, data in originals.items():
            assert (out / str(i)).read_bytes() == data, f"file {i} came back different"
        return r.stdout

    def piece_paths(self, file_id: int, index: int) -> list[Path]:
        """The path of each copy or shard of a part, in piece order."""
        part = read_manifest(self.store, file_id)["parts"][index]
        dirs = volume_dirs(self.store)
        if part.get("shards"):
            keys = [(s["volume"], f"{part['id']}.{j}") for j, s in enumerate(part["shards"])]
        else:
            keys = [(v, part["id"]) for v in part.get("copies", [part.get("volume", 0)])]
        return [dirs[v] / key[:2] / key[2:4] / key for v, key in keys]

    def assert_no_orphans(self) -> None:
        on_disk, referenced = {(vid, key) for vid, key, _ in pieces(self.store)}, referenced_pieces(self.store)
        assert on_disk == referenced, f"orphans: {on_disk - referenced}, missing: {referenced - on_disk}"


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """Factory: layouts(extra, puts) -> (template directory, the files' bytes by id). Each
    layout (its extra volumes, then its puts) is built once per module, on a copy of the
    empty layout, for tests to copy rather than fill again."""
    built: dict[tuple[int, tuple[Put, ...]], tuple[Path, dict[int, bytes]]] = {}

    def layout(extra: int, puts: tuple[Put, ...]) -> tuple[Path, dict[int, bytes]]:
        if (extra, puts) not in built:
            base = tmp_path_factory.mktemp(f"layout{extra}-")
            v = Volumes(base, extra, layout(extra, ())[0] if puts else None)
            built[extra, puts] = base, dict(enumerate(v.put_all(puts), 1))
        return built[extra, puts]
    return layout


@pytest.fixture
def volumes(layouts, tmp_path):
    """Factory: volumes(extra, *puts) -> (Volumes, the files' bytes by id): the test's own
    copy of a layout, to damage or lose as it likes."""
    def make(extra: int, *puts: Put) -> tuple[Volumes, dict[int, bytes]]:
        template, originals = layouts(extra, puts)
        return Volumes(tmp_path, extra, template), dict(originals)
    return make


@pytest.mark.parametrize("extra, option", [(2, "--copies=1"), (2, "--copies=2"), (3, "--copies=3"),
                                           (2, "--ec=2+1"), (5, "--ec=4+2")])
def test_round_trip_with_copies_and_erasure_coding(volumes, extra, option):
    name, value = option.split("=")
    v, originals = volumes(extra, stored("r.bin", name, value), stored("t.log", name, value, kind="text"),
                           stored("tiny", name, value, size=5))
    width = int(value) if name == "--copies" else sum(map(int, value.split("+")))
    for i in originals:
        for part in read_manifest(v.store, i)["parts"]:
            volumes = [s["volume"] for s in part["shards"]] if part["shards"] else part["copies"]
            assert len(volumes) == len(set(volumes)) == width, part
    used = {vid for vid, _, _ in pieces(v.store)}
    assert len(used) == extra + 1, f"placement used only volumes {used}"
    v.get_all(originals)
    r = v.run("verify --all\n")
    assert r.returncode == 0 and "verify --all: 3 verified, 0 damaged, 0 skipped" in r.stdout, r.stdout + r.stderr
    wanted = f"{value} copies" if name == "--copies" and value != "1" else \
        "1 copy" if name == "--copies" else f"ec {value}"
    rows = v.run("list\n").stdout.splitlines()[1:]
    assert len(rows) == 3 and all(row.endswith(f"  {wanted}") for row in rows), rows
    r = v.run("info 1 --parts\n")
    assert f"redundancy: {wanted}" in r.stdout, r.stdout
    v.assert_no_orphans()


def test_more_copies_than_volumes_is_a_clear_error(volumes):
    v, _ = volumes(1)
    make_file(v.work / "a.bin", SIZE)
    r = v.run("put a.bin\n", "--copies", "3")
    assert r.returncode == 1
    assert error_lines(r.stderr) == ["error: storing 3 copies needs 3 volumes with free space, and 2 have some "
                                     "(free some space, add a volume with `volume add DIR`, or ask for fewer copies)"]
    r = v.run("put a.bin\n", "--ec", "2+2")
    assert r.returncode == 1 and "storing ec 2+2 needs 4 volumes" in r.stderr
    assert pieces(v.store) == [] and "no files stored yet" in v.run("list\n").stdout


@pytest.mark.parametrize("option, loss", [("--copies=2", "removed"), ("--copies=2", "emptied"),
                                          ("--ec=2+1", "removed"), ("--ec=2+2", "emptied")])
def test_lost_volume_then_heal_then_a_second_loss(volumes, option, loss):
    """A whole volume directory is removed (or replaced by an empty directory): the
    store opens, lists, gives every file back; heal restores full redundancy on
    the remaining volumes; a second loss is survived again."""
    name, value = option.split("=")
    # two losses leave 4 volumes, enough for the widest layout here
    v, originals = volumes(5, stored("f1.bin", name, value), stored("f2.bin", name, value, kind="text"))

    def lose(d: Path) -> None:
        shutil.rmtree(d)
        if loss == "emptied":
            d.mkdir()  # an empty directory mounted in its place is missing, never an empty volume

    for round_, lost in enumerate((v.dirs[1], v.dirs[3])):
        lose(lost)
        vid = v.dirs.index(lost) + 1
        r = v.run("volume list\nlist\n")
        assert r.returncode == 0, r.stderr
        row = next(line for line in r.stdout.splitlines() if line.split()[:1] == [str(vid)])
        assert row.split()[-1] == "missing", r.stdout
        assert all(status == "stored" for _, status in parse_list(r.stdout).values()), r.stdout
        assert f"volume {vid} missing" in r.stdout, "list must show the lost redundancy"
        v.get_all(originals)
        assert not lost.exists() or not any(lost.iterdir()), "nothing is ever written to a missing volume"
        r = v.run("heal\n")
        assert r.returncode == 0, r.stderr
        summary = re.search(r"^heal: (\d) intact, (?:(\d) healed, )?0 damaged, 0 skipped$", r.stdout, re.M)
        assert summary and summary[1] == "0" and summary[2], r.stdout  # only the files on the lost volume
        r = v.run("verify --all\nlist\n")
        assert r.returncode == 0 and "2 verified" in r.stdout, r.stdout + r.stderr
        assert "missing" not in r.stdout.split("verify --all")[-1], "heal must restore full redundancy"
        assert all(vid not in part_volumes for part_volumes in _volumes_of(v.store)), "still on the lost volume"
        r = v.run(f"volume remove {vid}\n")
        assert r.returncode == 0, r.stderr
    v.get_all(originals)
    v.assert_no_orphans()


def _volumes_of(store: Path) -> list[list[int]]:
    out = []
    for m in (store / "manifests").glob("*.json"):
        for part in json.loads(m.read_bytes())["parts"]:
            out.append([s["volume"] for s in part["shards"]] if part["shards"] else part["copies"])
    return out


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


DAMAGE = {"flip": _flip, "truncate": lambda p: os.truncate(p, p.stat().st_size // 2), "delete": os.unlink}


@pytest.mark.parametrize("option", ["--copies=2", "--ec=2+1", "--ec=3+2"])
def test_damaged_pieces_are_healed_on_read_and_by_scrub(volumes, option):
    name, value = option.split("=")
    v, originals = volumes(4, stored("f.bin", name, value))
    original = originals[1]
    parts = read_manifest(v.store, 1)["parts"]
    # Damage one piece of every part: the first piece (read by get) of parts 0-2,
    # the last piece (only a scrub reads it) of the others.
    hows = list(DAMAGE)
    for i in range(len(parts)):
        paths = v.piece_paths(1, i)
        DAMAGE[hows[i % 3]](paths[0] if i < 3 else paths[-1])
    out = v.get_all({1: original})
    healed = [line for line in out.splitlines() if line.startswith("[1] healed")]
    assert len(healed) == 1 and healed[0].count("rewritten") == 3, out
    r = v.run("verify 1\n")
    assert r.returncode == 1 and len(error_lines(r.stderr)) == len(parts) - 3, r.stderr  # verify finds, fixes nothing
    r = v.run("verify --all --heal\n")
    assert r.returncode == 0, r.stderr
    assert f"({len(parts) - 3} copies or shards)" in r.stdout and "1 healed" in r.stdout, r.stdout
    r = v.run("verify --all\n")
    assert r.returncode == 0 and "1 verified, 0 damaged" in r.stdout, r.stdout + r.stderr
    for i in range(len(parts)):
        assert all(p.is_file() for p in v.piece_paths(1, i))
    v.get_all({1: original})


@pytest.mark.parametrize("option", ["--copies=2", "--ec=2+1"])
def test_damage_beyond_redundancy_is_reported_exactly(volumes, option):
    name, value = option.split("=")
    v, _ = volumes(3, stored("f.bin", name, value))
    width = int(value) if name == "--copies" else 3
    needed = 1 if name == "--copies" else 2
    for path in v.piece_paths(1, 4)[:width - needed + 1]:  # one piece too many
        _flip(path)
    DAMAGE["delete"](v.piece_paths(1, 6)[0])  # and part 6 keeps enough
    start, end = 4 * CHUNK, 5 * CHUNK - 1
    for script in ("get 1 out.bin\n", "verify --all --heal\n"):
        r = v.run(script)
        assert r.returncode == 1
        lost = [line for line in error_lines(r.stderr) if "damaged part" in line]
        assert len(lost) == 1 and f"damaged part 4 bytes {start}-{end}: too few good" in lost[0], r.stderr
        assert v.piece_paths(1, 6)[0].is_file(), "a failed get still heals what it read on the way"
    assert not (v.work / "out.bin").exists()


def test_drain_moves_everything_then_remove(volumes):
    v, originals = volumes(3, stored("a.bin", "--copies", "2"), stored("b.bin", "--ec", "2+1"), stored("c.bin"))
    r = v.run("volume drain 1\n")
    assert r.returncode == 0, r.stderr
    assert "volume 1 is drained: `volume remove 1` removes it" in r.stdout, r.stdout
    assert not any((v.dirs[0]).glob("*/*/*")), "a drained volume holds no piece"
    r = v.run("volume list\n")
    assert "draining" in r.stdout
    make_file(v.work / "d.bin", SIZE)
    assert v.run("put d.bin\n", "--ec", "2+1").returncode == 0
    assert not any((v.dirs[0]).glob("*/*/*")), "placement skips a draining volume"
    r = v.run("volume remove 2\n")
    assert r.returncode == 1 and "volume 2 still holds pieces" in r.stderr
    r = v.run("volume remove 1\nvolume list\n")
    assert r.returncode == 0 and "removed volume 1" in r.stdout, r.stderr
    assert str(v.dirs[0]) not in r.stdout
    v.get_all(originals)
    v.assert_no_orphans()


def test_volume_add_refuses_what_is_in_use(tmp_path, volumes):
    v, _ = volumes(1)
    other = tmp_path / "other"
    other.mkdir()
    assert run_pfs(tmp_path / "store2", f"volume add {other}\n", cwd=v.work).returncode == 0
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    r = v.run(f"volume add {v.dirs[0]}\nvolume add {other}\nvolume add {tmp_path / 'nowhere'}\n"
              f"volume add {v.store / 'manifests'}\nvolume add x --weight 0\nvolume drain 9\nvolume add {full}\n")
    errors = error_lines(r.stderr)
    assert len(errors) == 7, r.stderr
    assert "already a volume of this store" in errors[0]
    assert "already a volume (of another store)" in errors[1]
    assert "missing" in errors[2] and "inside the store" in errors[3] and "--weight" in errors[4]
    assert "no volume 9" in errors[5] and f"{full} is not empty" in errors[6]


def test_a_foreign_volume_in_place_is_missing(tmp_path, volumes):
    """The directory of volume 1 swapped for another store's volume: missing, never used."""
    v, originals = volumes(2, stored("a.bin", "--copies", "2"))
    original = originals[1]
    other = tmp_path / "other"
    other.mkdir()
    assert run_pfs(tmp_path / "store2", f"volume add {other}\n", cwd=v.work).returncode == 0
    shutil.rmtree(v.dirs[0])
    other.rename(v.dirs[0])
    r = v.run("volume list\n")
    assert next(l for l in r.stdout.splitlines() if l.split()[:1] == ["1"]).split()[-1] == "missing"
    v.get_all({1: original})
    assert v.run("heal\n").returncode == 0
    assert not any(v.dirs[0].glob("*/*/*")), "nothing written to another store's volume"


def test_full_volume_is_skipped_and_enospc_retried_elsewhere(volumes, small_fs):
    fs = small_fs("tiny", 1 << 20)
    if fs.kind != "tmpfs":
        pytest.skip("needs a tmpfs")
    v, _ = volumes(2)
    # Placement weighs free space: a huge weight makes the 1 MiB volume the first choice of every part.
    r = v.run(f"volume add {fs.path} --weight 100000000\n")
    assert r.returncode == 0, r.stderr
    # 4 MiB do not fit the 1 MiB volume: its parts hit ENOSPC and go elsewhere.
    original = v.put("big.bin", "--copies", "2", size=64 * CHUNK)
    assert any(fs.path.glob("*/*/*")), "the small volume took some parts before it filled up"
    v.get_all({1: original})
    fs.fill()
    r = v.run("volume list\n")
    assert next(l for l in r.stdout.splitlines() if l.split()[:1] == ["3"]).split()[-1] == "full"
    second = v.put("more.bin", "--copies", "3")
    v.get_all({1: original, 2: second})
    v.assert_no_orphans()


@pytest.mark.parametrize("crashed", [False, True], ids=["fresh", "upgrade-cut-short"])
def test_a_store_of_the_first_format_opens_and_is_upgraded(tmp_path, volumes, crashed):
    """store.json listing "volumes": ["volumes/0"], no markers, parts with only a
    `volume` field: opened, upgraded in place, read, and given new volumes. An
    upgrade cut short after the marker was written keeps the marker's identity."""
    v, originals = volumes(0, stored("a.bin"))
    original = originals[1]
    config = json.loads((v.store / "store.json").read_bytes())
    old = {"format": 1, **{k: config[k] for k in ("chunk_size", "codec", "hash")}, "volumes": ["volumes/0"]}
    (v.store / "store.json").write_text(json.dumps(old))
    marker = v.store / "volumes" / "0" / "pfs-volume.json"
    if crashed:
        marker.write_text(json.dumps({"format": 1, "store": "b" * 32, "volume": "0"}))
    else:
        marker.unlink()
    (v.store / "intents").rmdir()
    manifest = read_manifest(v.store, 1)
    for part in manifest["parts"]:
        del part["copies"], part["shards"]
    for key in ("copies", "ec"):
        del manifest["file"][key]
    (v.store / "manifests" / "1.json").write_text(json.dumps(manifest))
    journal = [json.loads(line) for line in (v.store / "files.jsonl").read_text().splitlines()]
    for op in journal:
        op["file"].pop("copies", None), op["file"].pop("ec", None)
    (v.store / "files.jsonl").write_text("".join(json.dumps(op) + "\n" for op in journal))
    v.get_all({1: original})
    upgraded = json.loads((v.store / "store.json").read_bytes())
    assert upgraded["format"] == 2 and upgraded["volumes"][0]["url"] == "volumes/0"
    marker = json.loads(marker.read_bytes())
    assert marker["store"] == upgraded["id"] and marker["volume"] == "0"
    assert (upgraded["id"] == "b" * 32) == crashed
    extra = tmp_path / "vol1"
    extra.mkdir()
    assert v.run(f"volume add {extra}\n").returncode == 0
    second = v.put("b.bin", "--copies", "2")
    v.get_all({1: original, 2: second})


def test_pieces_of_an_interrupted_heal_are_removed_at_open(volumes):
    """What a kill between a heal's writes and its manifest leaves: its note in
    intents/ and a copy that no manifest references. The next open removes that
    copy, and only that."""
    v, originals = volumes(2, stored("a.bin", "--copies", "2"))
    original = originals[1]
    part = read_manifest(v.store, 1)["parts"][0]
    spare = next(vid for vid in volume_dirs(v.store) if vid not in part["copies"])
    source = v.piece_paths(1, 0)[0]
    stray = volume_dirs(v.store)[spare] / source.relative_to(source.parents[2])
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(source.read_bytes())
    record = json.loads((v.store / "manifests" / "1.json").read_bytes())["file"]
    (v.store / "intents" / "1.json").write_text(json.dumps(record))
    r = v.run("list\n")
    assert r.returncode == 0, r.stderr
    assert not stray.exists() and list((v.store / "intents").iterdir()) == []
    v.assert_no_orphans()
    v.get_all({1: original})


def wait_until_idle(pid: int, timeout: float = 30) -> None:
    """Wait until every thread of process `pid` sleeps (none runs, none waits on the
    disk as an fsync does), a few looks in a row: with its workers held still, the
    fsyncs it had queued are then done."""
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 3:
        assert time.monotonic() < deadline, f"pfs still busy: threads {busy_threads(pid)}"
        quiet = 0 if busy_threads(pid) else quiet + 1
        time.sleep(0.01)


def busy_threads(pid: int) -> list[str]:
    """The threads of process `pid` that are not sleeping, as `ID:STATE` (R running, D waiting on the disk)."""
    busy = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            state = (task / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:  # the thread ended
            continue
        if state != "S":
            busy.append(f"{task.name}:{state}")
    return busy


@pytest.mark.parametrize("copies", [2, 1])
@pytest.mark.parametrize("moment", ["writing", "flushed"])
def test_a_volume_that_vanishes_mid_put(tmp_path, volumes, live_sessions, copies, moment):
    """The directory of a volume is moved away while a put writes to it: with two
    copies the put completes with both copies on the volumes left; with one, it
    fails and is rolled back. Nothing is written to the vanished volume's place.
    `flushed`: the pieces the workers had handed back were already fsynced when
    it went (the workers held still meanwhile), so no flush of theirs fails:
    the put must still not count those pieces as stored."""
    v, _ = volumes(3)
    data = make_file(v.work / "big.bin", 600 * CHUNK).read_bytes()
    victim = v.dirs[1]
    s = live_sessions(v.store, v.work, "--copies", str(copies))
    s.send("put big.bin")
    deadline = time.monotonic() + 30
    while not any(victim.glob("*/*/*")):
        assert time.monotonic() < deadline, "the put wrote nothing to the victim"
        time.sleep(0.005)
    if moment == "flushed":
        with frozen_workers(s.pid):
            wait_until_idle(s.pid)  # the fsync threads finish what the workers wrote
            victim.rename(tmp_path / "gone")
    else:
        victim.rename(tmp_path / "gone")
    assert s.close() == (0 if copies == 2 else 1), s.stderr()
    r = v.run("list\n")
    assert not victim.exists()
    if copies == 2:
        assert parse_list(r.stdout)[1] == ("big.bin", "stored") and "2 copies" in r.stdout and "missing" not in r.stdout
        assert all(2 not in volumes for volumes in _volumes_of(v.store))
        v.get_all({1: data})
    else:
        assert "volume directory" in s.stderr() and parse_list(r.stdout)[1][1].startswith("failed"), s.stderr()
    v.assert_no_orphans()


def test_repair_rebuilds_manifests_from_copies_and_shards_on_every_volume(volumes):
    v, originals = volumes(3, stored("a.bin", "--copies", "2"), stored("b.bin", "--ec", "2+1"),
                           stored("c.bin", "--ec", "2+2", kind="text"))
    wanted = {i: read_manifest(v.store, i) for i in originals}
    for i in originals:
        (v.store / "manifests" / f"{i}.json").unlink()
    stray = v.dirs[1] / "ab" / "cd" / ("abcd" + "0" * 28)
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"belongs to no file")
    r = run_pfs(v.store, "", "repair", cwd=v.work)
    assert r.returncode == 1, r.stdout + r.stderr  # the stray part is reported lost
    assert r.stdout.count("manifest rebuilt from its part files") == 3, r.stdout
    assert f"moved to {v.dirs[1] / 'lost+found'}" in r.stdout and not stray.exists()
    def same(part: dict) -> dict:  # the order of copies is only a preference
        return {**part, "copies": sorted(part["copies"]), "volume": None}

    for i in originals:
        assert list(map(same, read_manifest(v.store, i)["parts"])) == list(map(same, wanted[i]["parts"])), i
    v.get_all(originals)


def test_a_damaged_heal_note_is_refused_then_set_aside_by_repair(volumes):
    v, originals = volumes(1, stored("a.bin", "--copies", "2"))
    original = originals[1]
    (v.store / "intents" / "1.json").write_text('{"id": 1, "na')
    r = run_pfs(v.store, "list\n", cwd=v.work)
    assert r.returncode == 2 and error_lines(r.stderr) == [error_lines(r.stderr)[0]], r.stderr
    assert "intents/1.json is damaged" in r.stderr and "repair" in r.stderr
    r = run_pfs(v.store, "", "repair", cwd=v.work)
    assert r.returncode == 0 and "intents/1.json is damaged; moved to" in r.stdout, r.stdout + r.stderr
    assert list((v.store / "intents").iterdir()) == []
    v.get_all({1: original})


def test_pfs_processes_creating_one_store_at_once_agree_on_its_identity(tmp_path):
    """Several pfs started at once on a new directory: one creates the store (and
    marks its first volume), the others open that store; every put lands on a
    volume that reads as online."""
    store = tmp_path / "store"
    sources = [make_file(tmp_path / f"s{i}.bin", CHUNK) for i in range(6)]
    results = run_at_once(pfs_argv(store), [f"put {src}\n" for src in sources], tmp_path, 60)
    assert [code for code, _, _ in results] == [0] * len(sources), [err for _, _, err in results]
    marker = json.loads((store / "volumes" / "0" / "pfs-volume.json").read_bytes())
    assert marker["store"] == json.loads((store / "store.json").read_bytes())["id"]
    r = run_pfs(store, "verify --all\n", cwd=tmp_path)
    assert r.returncode == 0 and "6 verified" in r.stdout, r.stdout + r.stderr
