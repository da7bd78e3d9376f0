"""Trees at the cost of batches: get -r restores small files many at once, an
unchanged sync asks the registry per directory, and a kill -9 of get -r never
leaves a half-written file under its name."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

from helpers import CHUNK, assert_clean_stderr, env, kill_group, pfs_argv, run_pfs
from test_trees import edge_cases, snapshot


def counting(monkeypatch, cls: type, *methods: str) -> dict[str, int]:
    """Count the calls of `methods` of `cls` (the registry's), behaviour unchanged."""
    calls = dict.fromkeys(methods, 0)
    for method in methods:
        original = getattr(cls, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            calls[_method] += 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(cls, method, counted)
    return calls


def small_tree(top: Path, dirs: int, files: int) -> Path:
    for d in range(dirs):
        (top / f"d{d}").mkdir(parents=True)
        for i in range(files):
            (top / f"d{d}" / f"f{i:03d}").write_bytes(os.urandom(300 + i) + bytes([d]))
    return top


def test_get_r_takes_holds_and_manifests_a_batch_at_a_time(tmp_path, monkeypatch):
    """300 small files and a few of many parts: one hold and one manifest read per
    batch of small files (a registry call each, not one per file); the big files
    alone go through get. The tree and the edge cases come back whole."""
    import pfs as pfs_api
    from pfs.registry.jsonfiles import PartRegistry, SessionFiles

    src = small_tree(tmp_path / "src", 3, 100)
    edge_cases(src / "edges")
    (src / "edges" / "locked").chmod(0o700)
    (src / "big").write_bytes(os.urandom(5 * CHUNK + 7))
    with pfs_api.open(tmp_path / "store", workers=2, chunk_size=CHUNK) as store:
        assert store.put_tree(src, "t").problems == []
        calls = counting(monkeypatch, SessionFiles, "hold", "hold_all")
        loads = counting(monkeypatch, PartRegistry, "load_all")
        got = store.get_tree("t", tmp_path / "out")
    assert got.problems == [] and got.failed == 0
    assert snapshot(tmp_path / "out") == snapshot(src)
    # one hold each for the files of many parts (big, edges/big.bin and its hard link); the batches of 256 at most
    assert calls["hold"] == 3 and 2 <= calls["hold_all"] <= 4, calls
    assert loads["load_all"] == calls["hold_all"], loads


def test_an_unchanged_sync_reads_the_registry_per_directory_not_per_entry(tmp_path, monkeypatch):
    """The quick check compares with the records of each directory, read at once:
    a few registry calls per directory (one query each on PostgreSQL), whatever
    the number of files in it."""
    import pfs as pfs_api
    from pfs.registry.jsonfiles import FileRegistry

    src = small_tree(tmp_path / "src", 4, 60)
    with pfs_api.open(tmp_path / "store", workers=2) as store:
        assert store.sync(src, "t").problems == []
        calls = counting(monkeypatch, FileRegistry, "named", "named_each", "under", "get")
        again = store.sync(src, "t")
    assert again.done == 0 and again.unchanged == 4 + 4 * 60, again
    assert sum(calls.values()) <= 3 * (4 + 2), calls


def test_get_r_killed_at_random_moments_leaves_no_half_written_file(tmp_path):
    """Real kill -9 of the whole pfs process group in the middle of a get -r of
    800 small files: every file that has its name holds every byte (and its
    mode); nothing else is left in the destination; a rerun with --force
    restores the rest."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(800):
        (src / f"f{i:03d}").write_bytes(os.urandom(20_000) + i.to_bytes(2, "big"))
        (src / f"f{i:03d}").chmod(0o640)
    store = tmp_path / "store"
    r = run_pfs(store, "", "put", "-r", str(src), "t", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    proc = subprocess.Popen(pfs_argv(store, "get", "-r", "t", str(out)), cwd=tmp_path, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(random.uniform(0.4, 2.0))
    kill_group(proc)
    restored = sorted(os.listdir(out)) if out.exists() else []
    assert set(restored) <= {f"f{i:03d}" for i in range(800)}, restored
    for name in restored:
        assert (out / name).read_bytes() == (src / name).read_bytes(), name
        assert (out / name).stat().st_mode & 0o777 == 0o640
    r = run_pfs(store, "", "get", "-r", "t", str(out), "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_clean_stderr(r.stderr)
    assert snapshot(out) == snapshot(src)
