"""Malformed metadata, open and repair: real bad records written into a real
store, then the real `pfs`.

Every record pfs reads is checked (types, ranges, parts against size and chunk
size, part ids derived from the file's uuid, hashes adding up to the digest).
A record that fails is damage: a strict open refuses with one `error:` line
naming the file (and line or record) and advising `pfs --store DIR repair`,
exit status 2, and nothing changes; `repair` skips and reports it, lets the
part files decide where a record and a manifest disagree, moves instead of
deleting, and every intact file comes back byte for byte.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import (CHUNK, Pfs, assert_clean_stderr, edit_records, env, error_lines, kill_group, make_file,
                     parse_list, part_files, pfs_argv, read_manifest, run_pfs, snapshot_rows, tree_state,
                     write_manifest)

VOLATILE = ("lock", "pfs.log", "reserve")
SIZES = {1: 3 * CHUNK + 11, 2: 2 * CHUNK, 3: CHUNK // 2}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict[int, bytes]]:
    """A store with files 1-3 (1 in the snapshot, 2 and 3 in the journal) and
    their bytes; tests copy it rather than storing files again."""
    base = tmp_path_factory.mktemp("template")
    pfs = Pfs(base / "store", base)
    originals = {i: make_file(base / f"f{i}.bin", size, "text" if i % 2 else "random").read_bytes()
                 for i, size in SIZES.items()}
    assert pfs.run("put f1.bin\n").returncode == 0
    assert pfs.run("", "repair").returncode == 0  # folds file 1 into a snapshot
    r = pfs.run("put f2.bin\nwait\nput f3.bin\n")
    assert r.returncode == 0, r.stderr
    assert len((pfs.store / "files.jsonl").read_bytes().splitlines()) == 4
    return pfs.store, originals


@pytest.fixture
def store(template, tmp_path) -> tuple[Pfs, dict[int, bytes]]:
    source, originals = template
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(source, tmp_path / "store")
    return Pfs(tmp_path / "store", work), originals


def journal_lines(store: Path) -> list[bytes]:
    return (store / "files.jsonl").read_bytes().splitlines(keepends=True)


def snapshot_records(store: Path) -> tuple[dict, list[dict]]:
    snap = snapshot_rows(store / "files.json")
    return snap, [dict(zip(snap["fields"], row)) for row in snap["files"]]


def write_snapshot_rows(store: Path, snap: dict, rows: list[dict]) -> None:
    snap["files"] = [[row.get(f) for f in snap["fields"]] for row in rows]
    (store / "files.json").write_text(json.dumps(snap))


def assert_refused(pfs: Pfs, *names: str) -> str:
    """A strict open: exit 2, one error line naming `names` and repair; nothing changes."""
    before = tree_state(pfs.store, VOLATILE)
    r = pfs.run("list\n", timeout=30)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert_clean_stderr(r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == 1, r.stderr
    for name in names:
        assert name in errors[0], errors[0]
    assert f"pfs --store {pfs.store} repair" in errors[0], errors[0]
    assert tree_state(pfs.store, VOLATILE) == before, "a refused open changed the store"
    return errors[0]


def repair(pfs: Pfs, expect_lost: bool = False) -> str:
    r = pfs.run("", "repair", timeout=60)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.returncode == (1 if expect_lost else 0), (r.returncode, r.stdout, r.stderr)
    assert all(line.startswith(("repaired:", "lost:", "repair done:")) for line in r.stdout.splitlines()), r.stdout
    return r.stdout


def assert_files_back(pfs: Pfs, originals: dict[int, bytes], out: Path) -> dict:
    """Every file in `originals` is listed stored and comes back byte for byte."""
    out.mkdir(exist_ok=True)
    r = pfs.run("list\n" + "".join(f"get {i} {out / str(i)} --force\n" for i in originals))
    assert r.returncode == 0, r.stderr
    assert_clean_stderr(r.stderr)
    listing = parse_list(r.stdout)
    for i, data in originals.items():
        assert listing.get(i, (None, None))[1] == "stored", listing
        assert (out / str(i)).read_bytes() == data, f"file {i} differs"
    return listing


def all_part_bytes(store: Path) -> set[bytes]:
    """The contents of every part file anywhere under the store (volumes or lost+found)."""
    return {p.read_bytes() for p in store.rglob("*") if p.is_file() and len(p.name) == 32}


# -- 1, 5. malformed records: one error line at open, skipped by repair ------------------

def _put_line(store: Path, file_id: int) -> dict:
    return next(op for op in map(json.loads, journal_lines(store))
                if op["op"] == "put" and op["file"]["id"] == file_id and op["file"]["status"] == "stored")


BAD_JOURNAL_LINES = {
    "file null": lambda s: {"op": "put", "file": None},
    "file a list": lambda s: {"op": "put", "file": [1, 2]},
    "op a number": lambda s: {"op": 7},
    "line a list": lambda s: [1, "put"],
    "del of a string": lambda s: {"op": "del", "id": "2"},
    "non-hex uuid": lambda s: {"op": "put", "file": {**_put_line(s, 2)["file"], "uuid": "zz" * 16}},
    "huge part count": lambda s: {"op": "put", "file": {**_put_line(s, 2)["file"], "status": "storing",
                                                        "parts": 10 ** 12, "size": 10 ** 12 * CHUNK}},
    "parts not matching size": lambda s: {"op": "put", "file": {**_put_line(s, 2)["file"], "parts": 0}},
    "negative size": lambda s: {"op": "put", "file": {**_put_line(s, 2)["file"], "size": -5}},
    "name a number": lambda s: {"op": "put", "file": {**_put_line(s, 2)["file"], "name": 12}},
    "size a string": lambda s: {"op": "put", "file": {**_put_line(s, 2)["file"], "size": "131072"}},
    "unknown status": lambda s: {"op": "put", "file": {**_put_line(s, 2)["file"], "status": "fine"}},
    "id zero": lambda s: {"op": "put", "file": {**_put_line(s, 2)["file"], "id": 0}},
    "created infinite": lambda s: {"op": "put", "file": {**_put_line(s, 2)["file"], "created": float("inf")}},
}


@pytest.mark.parametrize("how", BAD_JOURNAL_LINES)
def test_malformed_journal_line_is_one_error_and_repair_skips_it(store, how, tmp_path):
    pfs, originals = store
    lines = journal_lines(pfs.store)
    bad = json.dumps(BAD_JOURNAL_LINES[how](pfs.store)).encode() + b"\n"
    (pfs.store / "files.jsonl").write_bytes(b"".join([*lines[:2], bad, *lines[2:]]))
    assert_refused(pfs, "files.jsonl line 3")
    assert "line 3 is damaged" in repair(pfs)
    assert_files_back(pfs, originals, tmp_path / "out")


def _set(field: str, value):
    def change(row: dict) -> None:
        row[field] = value
    return change


BAD_SNAPSHOT_ROWS = {
    "uuid a number": _set("uuid", 12345),
    "name a list": _set("name", ["f1.bin"]),
    "size negative": _set("size", -1),
    "parts a string": _set("parts", "4"),
    "parts zero for an intact file": _set("parts", 0),
    "status null": _set("status", None),
    "created a dict": _set("created", {"t": 1}),
    "id a bool": _set("id", True),
    "mode a string": _set("mode", "rwx"),
    "mode past 07777": _set("mode", 0o10000),
    "mtime a float": _set("mtime", 1.5),
}


@pytest.mark.parametrize("how", BAD_SNAPSHOT_ROWS)
def test_wrong_typed_snapshot_row_is_one_error_and_repair_restores_the_file(store, how, tmp_path):
    pfs, originals = store
    snap, rows = snapshot_records(pfs.store)
    BAD_SNAPSHOT_ROWS[how](rows[0])
    write_snapshot_rows(pfs.store, snap, rows)
    assert_refused(pfs, "files.json record 1")
    out = repair(pfs)
    assert "files.json record 1 is damaged" in out and "file 1 (f1.bin)" in out, out
    assert_files_back(pfs, originals, tmp_path / "out")


BAD_SNAPSHOTS = {
    "not an object": lambda snap: [snap],
    "fields a string": lambda snap: {**snap, "fields": "id,name"},
    "files an object": lambda snap: {**snap, "files": {"1": snap["files"][0]}},
    "next_id a string": lambda snap: {**snap, "next_id": "2"},
    "deeply nested": lambda snap: json.loads("[" * 100 + "]" * 100),
}


@pytest.mark.parametrize("how", BAD_SNAPSHOTS)
def test_malformed_snapshot_is_one_error_and_repair_rebuilds(store, how, tmp_path):
    pfs, originals = store
    snap = snapshot_rows(pfs.store / "files.json")
    (pfs.store / "files.json").write_text(json.dumps(BAD_SNAPSHOTS[how](snap)))
    assert_refused(pfs, "files.json")
    repair(pfs)
    assert_files_back(pfs, originals, tmp_path / "out")
    assert list((pfs.store / "lost+found").glob("files.json*")), "the damaged snapshot was not kept"


@pytest.mark.parametrize("content", [b"[" * 200_000 + b"]" * 200_000, b"\xff\xfe\x00garbage", b"9" * 5000,
                                     b'{"op":"put","file":{"id":1e999}}'])
def test_unparseable_journal_line_is_one_error(store, content, tmp_path):
    """Deeply nested JSON (a RecursionError in the parser), bytes that are not
    UTF-8, a number too long to convert, a float overflowing to infinity."""
    pfs, originals = store
    lines = journal_lines(pfs.store)
    (pfs.store / "files.jsonl").write_bytes(b"".join([lines[0], content + b"\n", *lines[1:]]))
    assert_refused(pfs, "files.jsonl line 2")
    repair(pfs)
    assert_files_back(pfs, originals, tmp_path / "out")


MANIFEST_EDITS = {
    "part size a string": lambda m: m["parts"][0].update(size=str(m["parts"][0]["size"])),
    "part offset null": lambda m: m["parts"][1].update(offset=None),
    "part a list": lambda m: m["parts"].__setitem__(0, [0, "x"]),
    "part id traverses": lambda m: m["parts"][0].update(id="../../../../etc/passwd"),
    "volume out of range": lambda m: m["parts"][0].update(volume=7),
    "parts an object": lambda m: m.update(parts={"0": m["parts"][0]}),
    "file null": lambda m: m.update(file=None),
    "another file's id": lambda m: m["file"].update(id=2),
    "one part missing": lambda m: m["parts"].pop(),
}


@pytest.mark.parametrize("how", MANIFEST_EDITS)
def test_malformed_manifest_is_one_error_and_repair_rebuilds_it_from_the_parts(store, how, tmp_path):
    pfs, originals = store
    manifest = read_manifest(pfs.store, 1)
    MANIFEST_EDITS[how](manifest)
    write_manifest(pfs.store, 1, manifest)
    r = pfs.run("get 1 out.bin\nverify 1\ninfo 1\n")
    assert r.returncode == 1, r.stderr
    assert_clean_stderr(r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == 3 and all("manifests/1.json" in e and "repair" in e for e in errors), r.stderr
    assert not (pfs.cwd / "out.bin").exists()
    out = repair(pfs)
    assert "file 1 (f1.bin): manifest rebuilt from its part files" in out, out
    assert_files_back(pfs, originals, tmp_path / "out")


# -- 2. repair never makes things worse ---------------------------------------------

def test_record_failed_for_an_intact_file_is_restored_not_deleted(store, tmp_path):
    """A record that says `failed` beside an intact manifest: repair used to
    delete the manifest (the only description of the file) and then move its
    parts away. The parts prove the file: it comes back."""
    pfs, originals = store
    assert edit_records(pfs.store, 2, _set("status", "failed")) == 2
    out = repair(pfs)
    assert "file 2 (f2.bin): its record said failed" in out, out
    assert_files_back(pfs, originals, tmp_path / "out")


def test_manifest_with_another_files_parts_is_set_aside_and_rebuilt(store, tmp_path):
    """manifests/1.json replaced by file 2's whole manifest (its record, its parts):
    repair must not let file 2's description stand for file 1."""
    pfs, originals = store
    shutil.copy(pfs.store / "manifests" / "2.json", pfs.store / "manifests" / "1.json")
    parts_before = all_part_bytes(pfs.store)
    out = repair(pfs)
    assert "manifests/1.json is damaged (it describes file 2)" in out, out
    assert "file 1 (f1.bin): manifest rebuilt from its part files" in out, out
    assert_files_back(pfs, originals, tmp_path / "out")
    assert (pfs.store / "lost+found" / "manifests" / "1.json").exists()
    assert all_part_bytes(pfs.store) == parts_before, "a part was lost"


def test_record_and_manifest_that_disagree_let_the_parts_decide(store, tmp_path):
    """A valid record that says something else (another digest) than the manifest,
    whose parts are intact: the manifest wins. The other way round (the manifest's
    parts damaged, the record's intact): the record's part files rebuild it."""
    pfs, originals = store
    edit_records(pfs.store, 1, _set("digest", "0" * 32))
    out = repair(pfs)
    assert "file 1 (f1.bin): its record disagreed with its manifest; record rebuilt from its manifest" in out, out
    assert_files_back(pfs, originals, tmp_path / "out")


def test_part_files_are_never_deleted_by_repair(store):
    """A record marked failed whose manifest's parts are damaged: nothing proves the
    file, so it is lost -- but its manifest and parts are moved, not deleted."""
    pfs, _ = store
    edit_records(pfs.store, 1, _set("status", "failed"))
    part = next(p for p in part_files(pfs.store).values() if p.name == read_manifest(pfs.store, 1)["parts"][0]["id"])
    part.write_bytes(b"not the part")
    parts_before = all_part_bytes(pfs.store)
    out = repair(pfs, expect_lost=True)
    assert "lost: file 1 (f1.bin): its record said failed and its manifest's parts are not intact" in out, out
    assert (pfs.store / "lost+found" / "manifests" / "1.json").exists()
    assert all_part_bytes(pfs.store) == parts_before, "repair deleted a part"


BAD_CONFIGS = {
    "empty": b"",
    "chunk size zero": b'{"format":1,"chunk_size":0,"codec":"zstd","hash":"xxh3-128","volumes":["volumes/0"]}',
    "unknown codec": b'{"format":1,"chunk_size":65536,"codec":"lz9","hash":"xxh3-128","volumes":["volumes/0"]}',
    "no volumes": b'{"format":1,"chunk_size":65536,"codec":"zstd","hash":"xxh3-128","volumes":[]}',
    "volume outside": b'{"format":1,"chunk_size":65536,"codec":"zstd","hash":"xxh3-128","volumes":["../x"]}',
    "format a string": b'{"format":"1"}',
    "volume id a string": b'{"format":2,"id":"' + b"0" * 32 + b'","chunk_size":65536,"codec":"zstd","hash":"xxh3-128",'
                          b'"copies":1,"ec":"","next_volume":1,"volumes":[{"id":"0","url":"volumes/0"}]}',
    "copies and ec": b'{"format":2,"id":"' + b"0" * 32 + b'","chunk_size":65536,"codec":"zstd","hash":"xxh3-128",'
                     b'"copies":2,"ec":"2+1","next_volume":1,"volumes":[{"id":0,"url":"volumes/0"}]}',
    "missing": None,
    "a directory": "dir",
}


@pytest.mark.parametrize("how", BAD_CONFIGS)
def test_damaged_store_json_is_refused_and_rebuilt_by_repair(store, how, tmp_path):
    pfs, originals = store
    config = pfs.store / "store.json"
    if BAD_CONFIGS[how] is None:
        config.unlink()
    elif BAD_CONFIGS[how] == "dir":
        config.unlink()
        config.mkdir()
    else:
        config.write_bytes(BAD_CONFIGS[how])
    assert_refused(pfs, "store.json")
    out = repair(pfs)
    assert "store.json" in out and "rebuilt" in out, out
    rebuilt = json.loads(config.read_bytes())
    assert rebuilt["format"] == 2 and [v["url"] for v in rebuilt["volumes"]] == ["volumes/0"]
    assert_files_back(pfs, originals, tmp_path / "out")


# -- 3. ids are never reused over an existing manifest ------------------------------

def test_stale_snapshot_never_reuses_an_id_that_has_a_manifest(store, tmp_path):
    """files.json lists only file 1 and the journal is gone (an old snapshot put
    back): the next put must not take id 2 or 3, whose manifests are on disk."""
    pfs, originals = store
    (pfs.store / "files.jsonl").write_bytes(b"")
    manifests = {i: (pfs.store / "manifests" / f"{i}.json").read_bytes() for i in (2, 3)}
    make_file(pfs.cwd / "new.bin", 1000)
    r = pfs.run("put new.bin\nlist\n")
    assert r.returncode == 0, r.stderr
    assert {i for i, (name, _) in parse_list(r.stdout).items() if name == "new.bin"} == {4}, r.stdout
    for i, data in manifests.items():
        assert (pfs.store / "manifests" / f"{i}.json").read_bytes() == data, f"manifest {i} was overwritten"
    repair(pfs)  # and files 2 and 3 come back from their manifests
    assert_files_back(pfs, originals, tmp_path / "out")


def test_snapshot_next_id_lower_than_its_ids_is_not_trusted(store):
    pfs, _ = store
    r = pfs.run("", "repair")  # everything in the snapshot
    snap = snapshot_rows(pfs.store / "files.json")
    snap["next_id"] = 1
    (pfs.store / "files.json").write_text(json.dumps(snap))
    for i in (1, 2, 3):
        (pfs.store / "manifests" / f"{i}.json").rename(pfs.store / f"m{i}")  # only the snapshot knows the ids
    make_file(pfs.cwd / "new.bin", 1000)
    r = pfs.run("put new.bin\nlist\n")
    assert r.returncode == 0, r.stderr
    assert {i for i, (name, _) in parse_list(r.stdout).items() if name == "new.bin"} == {4}, r.stdout


# -- 4. kill -9 while a store is being created ---------------------------------------

def _kill_during_creation(store: Path, cwd: Path, delay: float | None) -> None:
    """Start pfs on a new store and kill -9 it after `delay` seconds, or (None)
    the moment the temporary file of store.json appears."""
    proc = subprocess.Popen(pfs_argv(store, "list"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=cwd, env=env(), start_new_session=True)
    deadline = time.monotonic() + 20
    if delay is not None:
        time.sleep(delay)
    else:
        while time.monotonic() < deadline and proc.poll() is None:
            if store.is_dir() and any(n.startswith(".store.json.") for n in os.listdir(store)):
                break
    kill_group(proc)


def test_kill_during_store_creation_leaves_a_store_that_opens(tmp_path):
    rng = random.Random(os.environ.get("PFS_CRASH_SEED", 7))
    data = make_file(tmp_path / "f.bin", 3 * CHUNK + 5).read_bytes()
    for attempt in range(8):
        store = tmp_path / f"store{attempt}"
        _kill_during_creation(store, tmp_path, None if attempt % 2 else rng.uniform(0.0, 0.4))
        r = run_pfs(store, "put f.bin\nwait\nget 1 out.bin --force\n", cwd=tmp_path)
        assert r.returncode == 0, (attempt, sorted(os.listdir(store)) if store.exists() else None, r.stderr)
        assert (tmp_path / "out.bin").read_bytes() == data
        assert json.loads((store / "store.json").read_bytes())["chunk_size"] == CHUNK


def test_a_directory_with_only_creation_leftovers_is_a_new_store(tmp_path):
    """What a creation killed before store.json was written leaves behind (the
    lock, the temporary of store.json) is not someone else's data."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "lock").write_text("12345")
    (store / ".store.json.12345.140000.tmp").write_text('{"format":1,"chunk')
    (store / "volumes" / "0").mkdir(parents=True)  # the first volume's marker is written just before store.json
    (store / "volumes" / "0" / "pfs-volume.json").write_text('{"format":1,"store":"' + "a" * 32 + '","volume":"0"}')
    r = run_pfs(store, "list\n", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in store.iterdir() if p.name.startswith(".")) == []
    config = json.loads((store / "store.json").read_bytes())
    assert config["format"] == 2 and config["id"] == "a" * 32  # the marker's identity is kept


# -- 6. more of the same class -----------------------------------------------------

def test_manifests_replaced_by_a_file(store, tmp_path):
    pfs, originals = store
    shutil.rmtree(pfs.store / "manifests")
    (pfs.store / "manifests").write_text("not a directory")
    assert_refused(pfs, "manifests")
    out = repair(pfs)
    assert "manifests is not a directory" in out, out
    assert (pfs.store / "lost+found" / "manifests").is_file()
    for i in originals:  # every manifest was lost: each is re-derived from its part files
        assert f"file {i} (f{i}.bin): manifest rebuilt from its part files" in out, out
    assert_files_back(pfs, originals, tmp_path / "out")


def test_journal_replaced_by_a_directory(store, tmp_path):
    pfs, originals = store
    (pfs.store / "files.jsonl").unlink()
    (pfs.store / "files.jsonl").mkdir()
    assert_refused(pfs, "files.jsonl")
    repair(pfs)
    assert_files_back(pfs, originals, tmp_path / "out")


def test_delete_line_for_a_file_whose_manifest_and_parts_remain(store, tmp_path):
    """A `del` of file 2 while its manifest and parts are all there: the open
    obeys the journal, and repair brings the provably intact file back."""
    pfs, originals = store
    with open(pfs.store / "files.jsonl", "ab") as f:
        f.write(b'{"op":"del","id":2}\n')
    r = pfs.run("list\n")
    assert r.returncode == 0 and 2 not in parse_list(r.stdout), r.stdout
    out = repair(pfs)
    assert "file 2 (f2.bin): it had no record; record rebuilt from its manifest" in out, out
    assert_files_back(pfs, originals, tmp_path / "out")


def test_manifest_for_an_id_the_registry_never_had(store, tmp_path):
    """A manifest 9.json (a copy of file 3's under id 9) that no record knows:
    it is damaged (it describes file 3), set aside; the next id is above 9."""
    pfs, originals = store
    shutil.copy(pfs.store / "manifests" / "3.json", pfs.store / "manifests" / "9.json")
    make_file(pfs.cwd / "new.bin", 1000)
    r = pfs.run("put new.bin\nlist\n")
    assert r.returncode == 0, r.stderr
    assert {i for i, (name, _) in parse_list(r.stdout).items() if name == "new.bin"} == {10}, r.stdout
    out = repair(pfs)
    assert "manifests/9.json is damaged (it describes file 3)" in out, out
    assert_files_back(pfs, originals, tmp_path / "out")


# -- 5. hypothesis: garbage anywhere in the metadata ----------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10 ** 30), max_value=10 ** 30)
    | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
FIELDS = ["id", "name", "size", "status", "parts", "chunk_size", "codec", "hash", "uuid", "created", "stored",
          "digest", "reason"]


@st.composite
def garbage(draw):
    """(where, how, payload): a whole garbage journal line, a record field or a
    manifest field replaced by garbage, or raw garbage bytes."""
    where = draw(st.sampled_from(["journal", "snapshot", "manifest"]))
    how = draw(st.sampled_from(["field", "line", "bytes"]))
    if how == "field":
        return where, how, (draw(st.integers(0, 2)), draw(st.sampled_from(FIELDS + ["index", "offset", "hash"])),
                            draw(json_values))
    if how == "line":
        return where, how, draw(json_values)
    return where, how, draw(st.binary(min_size=1, max_size=60))


def _spoil(store: Path, where: str, how: str, payload) -> None:
    if where == "journal":
        lines = journal_lines(store)
        if how == "field":
            i, field, value = payload
            op = json.loads(lines[i])
            if field in op["file"]:
                op["file"][field] = value
            lines[i] = json.dumps(op).encode() + b"\n"
        else:
            raw = payload if how == "bytes" else json.dumps(payload).encode()
            lines.insert(1, raw.replace(b"\n", b" ") + b"\n")
        (store / "files.jsonl").write_bytes(b"".join(lines))
    elif where == "snapshot":
        snap, rows = snapshot_records(store)
        if how == "field":
            rows[0][payload[1] if payload[1] in rows[0] else "name"] = payload[2]
            write_snapshot_rows(store, snap, rows)
        elif how == "line":
            snap["files"].append(payload)
            (store / "files.json").write_text(json.dumps(snap))
        else:
            data = (store / "files.json").read_bytes()
            (store / "files.json").write_bytes(data[:len(data) // 2] + payload + data[len(data) // 2:])
    else:
        manifest = read_manifest(store, 1)
        if how == "field":
            i, field, value = payload
            target = manifest["file"] if field in manifest["file"] else manifest["parts"][i]
            target[field] = value
            write_manifest(store, 1, manifest)
        elif how == "line":
            write_manifest(store, 1, payload)
        else:
            (store / "manifests" / "1.json").write_bytes(payload)


@settings(max_examples=int(os.environ.get("PFS_GARBAGE_EXAMPLES", 12)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spoil=garbage())
def test_garbage_metadata_never_gives_a_traceback(template, tmp_path_factory, spoil):
    source, originals = template
    base = tmp_path_factory.mktemp("garbage")
    shutil.copytree(source, base / "store")
    pfs = Pfs(base / "store", base)
    _spoil(pfs.store, *spoil)
    r = pfs.run("list\n" + "".join(f"get {i} {base / f'first{i}'}\n" for i in originals), timeout=30)
    assert_clean_stderr(r.stderr)
    if r.returncode == 2:  # refused at open: one line, naming repair
        errors = error_lines(r.stderr)
        assert len(errors) == 1 and f"pfs --store {pfs.store} repair" in errors[0], r.stderr
    else:
        assert r.returncode in (0, 1), (r.returncode, r.stderr)
    r = pfs.run("", "repair", timeout=60)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.returncode in (0, 1), (r.returncode, r.stdout, r.stderr)
    assert all(line.startswith(("repaired:", "lost:", "repair done:")) for line in r.stdout.splitlines()), r.stdout
    assert_files_back(pfs, originals, base / "out")


def test_journal_line_reusing_an_id_for_another_file(store, tmp_path):
    """A later journal line that gives id 2 to another file (another uuid and
    digest): get refuses the mismatch with one line; repair lets file 2's intact
    parts decide, and nothing of either is deleted."""
    pfs, originals = store
    other = {**_put_line(pfs.store, 2)["file"], "uuid": "ab" * 16, "digest": "cd" * 16, "name": "other.bin"}
    with open(pfs.store / "files.jsonl", "ab") as f:
        f.write(json.dumps({"op": "put", "file": other}).encode() + b"\n")
    r = pfs.run(f"get 2 {tmp_path / 'x'}\n")
    assert r.returncode == 1 and len(error_lines(r.stderr)) == 1, r.stderr
    assert_clean_stderr(r.stderr)
    out = repair(pfs)
    assert "file 2 (f2.bin): its record disagreed with its manifest; record rebuilt from its manifest" in out, out
    assert_files_back(pfs, originals, tmp_path / "out")


def test_put_needing_more_parts_than_a_record_may_hold_is_refused(pfs):
    """Records claim at most 1,048,576 parts (so a damaged one cannot make recovery
    loop for ever); a put that would need more is refused up front with advice.
    The source is a real sparse file of 64 GiB + 1 byte (64 KiB chunks)."""
    big = pfs.cwd / "big.bin"
    with open(big, "wb") as f:
        f.truncate((1 << 20) * CHUNK + 1)
    r = pfs.run("put big.bin\nlist\n")
    assert r.returncode == 1, r.stderr
    assert_clean_stderr(r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and "more than 1048576 parts" in errors[0] and "--chunk-size" in errors[0], errors
    assert parse_list(r.stdout) == {}
