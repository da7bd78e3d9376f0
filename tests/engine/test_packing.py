"""Many small parts in one task (pfs.engine.packing): one pack per volume, and
a part whose pack a volume refuses stored alone on the volumes that take it."""

from __future__ import annotations

import os

from pfs.engine import packing
from pfs.volumes import open_volume, part_id
from pfs.volumes.local import PACKS
from pfs.volumes.redundancy import Layout


def jobs(tmp_path, targets, count: int, layout: Layout = Layout()) -> list[tuple]:
    found = []
    for i in range(count):
        source = tmp_path / f"src{i}"
        source.write_bytes(os.urandom(3000) + bytes([i]))
        found.append((str(source), 0, 3001, "zstd", "xxh3-128", layout, part_id("1" * 32, i), targets))
    return found


def test_a_task_s_parts_go_into_one_pack_per_volume(tmp_path):
    dirs = [tmp_path / "v0", tmp_path / "v1"]
    for d in dirs:
        d.mkdir()
    targets = [(n, {"url": str(d)}) for n, d in enumerate(dirs)]
    done = packing.store_parts(jobs(tmp_path, targets, 30, Layout(copies=2)))
    assert all(isinstance(r, tuple) and r[3] == [0, 1] for r in done)
    for d in dirs:
        assert len(os.listdir(d / PACKS)) == 1 and not [p for p in d.iterdir() if p.name != PACKS]
        volume = open_volume(str(d))
        assert sorted(volume.keys()) == sorted(part_id("1" * 32, i) for i in range(30))


def test_parts_whose_pack_a_volume_refuses_are_stored_alone_elsewhere(tmp_path):
    """The first volume's directory is gone (an unmounted disk): nothing is
    written there when the parts are placed, only when its pack is; the parts
    are then stored again, each alone, on the next volume, and durable."""
    gone, kept = tmp_path / "gone", tmp_path / "kept"
    kept.mkdir()
    targets = [(0, {"url": str(gone)}), (1, {"url": str(kept)})]
    done = packing.store_parts(jobs(tmp_path, targets, 5))
    assert all(isinstance(r, tuple) and r[3] == [1] for r in done), done
    assert not gone.exists() and not (kept / PACKS).exists()
    volume = open_volume(str(kept))
    assert sorted(volume.keys()) == sorted(part_id("1" * 32, i) for i in range(5))
