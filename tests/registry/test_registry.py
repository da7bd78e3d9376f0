"""pfs.registry: snapshot + journal FileRegistry, per-file manifests, atomic JSON."""

import json
import random
import subprocess
import sys
import textwrap
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from pfs.codec import file_digest
from pfs.errors import StoreError
from pfs.registry import (JOURNAL, MIN_COMPACT_BYTES, SNAPSHOT, FileEntry, FileRegistry, Manifest,
                          PartEntry, PartRegistry, write_json_atomic)
from pfs.registry.snapshot import Columns
from pfs.volumes import part_id

from helpers import snapshot_rows


def entry(file_id: int, name: str = "", status: str = "stored", **kw) -> FileEntry:
    """A valid record of file `file_id` (parts always match size and chunk size)."""
    fields = dict(id=file_id, name=name or f"file-{file_id}.bin", size=1000 * file_id, status=status,
                  chunk_size=1024, codec="zstd", hash="xxh3-128",
                  uuid=f"{file_id:032x}", created=1_700_000_000.0 + file_id)
    fields.update(kw)
    return FileEntry(**fields, parts=-(-fields["size"] // fields["chunk_size"]))



def registry_with_three_files(root) -> FileRegistry:
    """A registry holding files 1, 2 and 3."""
    reg = FileRegistry(root)
    for file_id in (1, 2, 3):
        reg.save(entry(file_id))
    return reg

def journal_line(op: dict) -> bytes:
    """A journal line exactly as FileRegistry writes it."""
    return json.dumps(op, separators=(",", ":")).encode() + b"\n"


def reopen(root: Path, registry: FileRegistry | None = None) -> FileRegistry:
    if registry is not None:
        registry.close()
    return FileRegistry(root)


def as_map(registry: FileRegistry) -> dict[int, FileEntry]:
    return {e.id: e for e in registry.all()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path


# -- persistence and ids -------------------------------------------------------------

def test_save_remove_and_new_id_persist_across_reopen(root):
    reg = FileRegistry(root)
    assert reg.all() == []
    ids = [reg.new_id() for _ in range(3)]
    assert ids == [1, 2, 3]
    for i in ids:
        reg.save(entry(i, status="storing"))
    reg.save(entry(2, status="stored", digest="abc"))  # an update replaces the record
    reg.remove(1)
    reg = reopen(root, reg)
    assert [e.id for e in reg.all()] == [2, 3]
    assert reg.get(1) is None
    assert reg.get(2) == entry(2, status="stored", digest="abc")
    assert reg.get(3) == entry(3, status="storing")
    assert reg.new_id() == 4
    reg.close()


def test_ids_are_not_reused_after_deleting_the_newest_file(root):
    reg = registry_with_three_files(root)
    reg.remove(3)
    reg.remove(2)
    reg = reopen(root, reg)
    assert [e.id for e in reg.all()] == [1]
    assert reg.new_id() == 4
    reg.close()


def test_ids_are_not_reused_after_compaction(root):
    reg = registry_with_three_files(root)
    reg.remove(3)
    reg.compact()
    assert (root / JOURNAL).stat().st_size == 0
    snap = Columns(root / SNAPSHOT)
    assert snap.next_id == 4
    assert sorted(snap["id"]) == [1, 2]
    reg = reopen(root, reg)
    assert as_map(reg) == {1: entry(1), 2: entry(2)}
    assert reg.new_id() == 4
    # the journal keeps working on top of the snapshot
    reg.save(entry(4))
    reg.remove(1)
    reg = reopen(root, reg)
    assert [e.id for e in reg.all()] == [2, 4]
    assert reg.new_id() == 5
    reg.close()


def test_record_whose_append_triggers_automatic_compaction_survives_reopen(root):
    """save() appends a journal line; once the journal outgrows MIN_COMPACT_BYTES
    it is folded into the snapshot and emptied. The record being saved must be
    part of that snapshot, or it is lost."""
    reg = FileRegistry(root)
    journal = root / JOURNAL
    saved = {}
    previous = 0
    for _ in range(100_000):
        e = entry(reg.new_id(), name="n" * 200)
        reg.save(e)
        saved[e.id] = e
        size = journal.stat().st_size
        if size < previous:  # this save compacted
            break
        previous = size
    else:
        pytest.fail("the journal was never compacted")
    trigger = e.id
    reg = reopen(root, reg)
    assert reg.get(trigger) == saved[trigger], (
        f"file {trigger}, whose save triggered compaction, is missing or stale after reopen")
    assert as_map(reg) == saved
    reg.close()


def test_remove_whose_append_triggers_automatic_compaction_survives_reopen(root):
    reg = FileRegistry(root)
    reg.save(entry(1))
    reg.save(entry(2))
    reg.compact()  # a small snapshot, so the journal outgrows it
    del_line = len(journal_line({"op": "del", "id": 2}))
    # grow the journal with updates of file 1 to exactly one byte short of
    # making the `del` line cross MIN_COMPACT_BYTES
    target = MIN_COMPACT_BYTES - del_line + 1
    filler = entry(1, name="x" * 100)
    while (root / JOURNAL).stat().st_size + 2 * len(journal_line({"op": "put", "file": filler.to_line()})) < target:
        reg.save(filler)
    remaining = target - (root / JOURNAL).stat().st_size
    base = len(journal_line({"op": "put", "file": replace(filler, name="").to_line()}))
    assert remaining > base
    last = replace(filler, name="y" * (remaining - base))
    reg.save(last)
    assert (root / JOURNAL).stat().st_size == target  # no compaction yet
    reg.remove(2)
    assert (root / JOURNAL).stat().st_size == 0, "the remove should have triggered compaction"
    reg = reopen(root, reg)
    assert reg.get(2) is None, "file 2 came back after its delete triggered compaction"
    assert as_map(reg) == {1: last}
    reg.close()


def test_random_operations_agree_with_a_model_across_reopens_and_compactions(root):
    rng = random.Random(2026)
    model: dict[int, FileEntry] = {}
    reg = FileRegistry(root)
    next_id = 1
    for step in range(3000):
        roll = rng.random()
        if roll < 0.5 or not model:
            e = entry(reg.new_id(), name="f" * rng.randint(1, 300), status="storing")
            assert e.id == next_id
            next_id += 1
            reg.save(e)
            model[e.id] = e
        elif roll < 0.8:
            e = replace(model[rng.choice(list(model))], status=rng.choice(["stored", "failed"]),
                        reason="r" * rng.randint(0, 50))
            reg.save(e)
            model[e.id] = e
        else:
            file_id = rng.choice(list(model))
            reg.remove(file_id)
            del model[file_id]
        if step % 500 == 499:
            reg = reopen(root, reg)
            assert as_map(reg) == model, f"registry and model disagree after step {step}"
    reg = reopen(root, reg)
    assert as_map(reg) == model
    assert reg.new_id() == next_id
    reg.close()


# -- crashes ----------------------------------------------------------------------------

def test_torn_last_line_is_dropped_and_later_appends_work(root):
    reg = registry_with_three_files(root)
    reg.close()
    journal = root / JOURNAL
    whole = journal.read_bytes()
    torn = journal_line({"op": "put", "file": asdict(entry(4))})
    with open(journal, "ab") as f:  # a crash in the middle of an append
        f.write(torn[: len(torn) // 2])
    reg = FileRegistry(root)
    assert [e.id for e in reg.all()] == [1, 2, 3]
    assert journal.read_bytes() == whole, "the torn tail should be cut off at open"
    reg.save(entry(reg.new_id(), name="after.bin"))
    reg.remove(1)
    reg = reopen(root, reg)
    assert [e.id for e in reg.all()] == [2, 3, 4]
    assert reg.get(4).name == "after.bin"
    reg.close()


def test_torn_line_that_is_only_missing_its_newline_is_dropped(root):
    reg = FileRegistry(root)
    reg.save(entry(reg.new_id()))
    reg.close()
    with open(root / JOURNAL, "ab") as f:
        f.write(journal_line({"op": "del", "id": 1})[:-1])
    reg = FileRegistry(root)
    assert [e.id for e in reg.all()] == [1]
    reg.close()


def test_garbled_middle_line_is_refused_naming_file_and_line(root):
    reg = registry_with_three_files(root)
    reg.close()
    journal = root / JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    lines[1] = b'{"op":"put","file":{"id":2,"na\x00me' + b"\n"
    journal.write_bytes(b"".join(lines))
    with pytest.raises(StoreError) as info:
        FileRegistry(root)
    message = str(info.value)
    assert str(journal) in message
    assert "line 2" in message
    assert "\n" not in message
    assert journal.read_bytes() == b"".join(lines), "a refused journal must not be modified"


def test_garbled_line_is_skipped_and_reported_when_not_strict(root):
    reg = registry_with_three_files(root)
    reg.close()
    journal = root / JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = b"garbage\n"
    journal.write_bytes(b"".join(lines))
    reg = FileRegistry(root, strict=False)
    assert [e.id for e in reg.all()] == [1, 3]
    assert len(reg.damage) == 1 and "line 2" in reg.damage[0]
    reg.close()


def test_replay_over_snapshot_is_idempotent(root):
    """A crash after the snapshot is written but before the journal is emptied
    leaves both: replaying the old journal over the new snapshot changes nothing."""
    reg = FileRegistry(root)
    for _ in range(4):
        reg.save(entry(reg.new_id(), status="storing"))
    reg.save(entry(1, status="stored", digest="d1"))
    reg.remove(2)
    reg.save(entry(3, status="failed", reason="interrupted"))
    reg.remove(4)  # the newest id is deleted: it must still not be reused
    expected = as_map(reg)
    old_journal = (root / JOURNAL).read_bytes()
    reg.compact()
    reg.close()
    (root / JOURNAL).write_bytes(old_journal)  # the truncation never happened
    for n in range(2):  # and replaying twice is no different
        reg = FileRegistry(root)
        assert as_map(reg) == expected
        assert reg.new_id() == 5 + n  # an id handed out once (reserved) never is again
        reg.close()


def test_damaged_snapshot_is_refused_naming_it(root):
    reg = FileRegistry(root)
    reg.save(entry(reg.new_id()))
    reg.compact()
    reg.close()
    (root / SNAPSHOT).write_bytes(b'{"format":1,"next_id":2,"files":[{"id":1')
    with pytest.raises(StoreError) as info:
        FileRegistry(root)
    assert str(root / SNAPSHOT) in str(info.value)


# -- PartRegistry -----------------------------------------------------------------------

def manifest(file_id: int, parts: int = 3) -> Manifest:
    hashes = [f"{i:032x}" for i in range(parts)]
    e = entry(file_id, size=parts * 1024, digest=file_digest(hashes))
    return Manifest(e, [PartEntry(index=i, id=part_id(e.uuid, i), offset=i * 1024, size=1024,
                                  stored=1000 + i, codec="zstd", hash=hashes[i], volume=0)
                        for i in range(parts)])


def test_part_registry_save_load_remove(root):
    parts = PartRegistry(root)
    assert parts.load(1) is None
    assert parts.ids() == []
    m1, m7 = manifest(1), manifest(7, parts=5)
    parts.save(m1)
    parts.save(m7)
    assert parts.ids() == [1, 7]
    reopened = PartRegistry(root)
    assert reopened.load(1) == m1
    assert reopened.load(7) == m7
    on_disk = json.loads(parts.path(7).read_bytes())
    assert on_disk["format"] == 1
    assert on_disk["file"]["id"] == 7
    assert [p["index"] for p in on_disk["parts"]] == list(range(5))
    reopened.remove(1)
    reopened.remove(1)  # removing twice is fine
    assert reopened.load(1) is None
    assert reopened.ids() == [7]
    assert sorted(p.name for p in (root / "manifests").iterdir()) == ["7.json"]


@pytest.mark.parametrize("content", [b"{not json", b'{"format":1,"file":{"id":1}}', b"[]", b"\xff\xfe"])
def test_damaged_manifest_is_refused_naming_it(root, content):
    parts = PartRegistry(root)
    parts.path(1).write_bytes(content)
    with pytest.raises(StoreError) as info:
        parts.load(1)
    assert str(parts.path(1)) in str(info.value)


# -- write_json_atomic ------------------------------------------------------------------

def test_write_json_atomic_writes_and_replaces_leaving_no_temp_files(root):
    target = root / "thing.json"
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_bytes()) == {"a": 1}
    big = {"files": [asdict(entry(i)) for i in range(1, 2000)]}
    write_json_atomic(target, big)
    assert json.loads(target.read_bytes()) == big
    assert [p.name for p in root.iterdir()] == ["thing.json"]


def test_write_json_atomic_that_fails_keeps_the_old_file_and_leaves_no_temp_file(root):
    """A write that fails midway (the disk fills up; here: RLIMIT_FSIZE makes
    write() fail with EFBIG) must leave the old file whole and no temp file."""
    target = root / "thing.json"
    write_json_atomic(target, {"old": True})
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        from pfs.registry import write_json_atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_json_atomic(Path({str(target)!r}), {{"new": "x" * 100000}})
        except OSError as exc:
            print("failed", exc.errno)
            sys.exit(0)
        print("succeeded")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("failed"), proc.stdout
    assert json.loads(target.read_bytes()) == {"old": True}
    leftovers = sorted(p.name for p in root.iterdir() if p.name != "thing.json")
    assert leftovers == [], f"temp files left behind: {leftovers}"


def test_new_ids_go_above_the_highest_id_known_elsewhere(root):
    """A snapshot that lists fewer files than there are manifests (restored from
    an old copy) must not hand out an id whose manifest is on disk."""
    reg = registry_with_three_files(root)
    reg.compact()
    reg.close()
    asked = []
    reg = FileRegistry(root, id_elsewhere=lambda: asked.append(1) or 41)
    assert asked == [], "opening to read should not look for ids elsewhere"
    assert [reg.new_id(), reg.new_id()] == [42, 43]
    assert asked == [1]
    reg.close()


def test_snapshot_of_the_older_format_is_checked_and_rewritten_at_close(root):
    """A snapshot of rows without a check (edited, or from an older pfs) has
    every record checked; a bad one is refused; a good one is rewritten as
    columns at close."""
    reg = registry_with_three_files(root)
    reg.compact()
    reg.close()
    snap = snapshot_rows(root / SNAPSHOT)
    snap["files"][1][snap["fields"].index("uuid")] = "not hex"
    (root / SNAPSHOT).write_text(json.dumps(snap))
    with pytest.raises(StoreError, match="record 2 is damaged .uuid is not 32 hex digits"):
        FileRegistry(root)
    snap["files"][1][snap["fields"].index("uuid")] = "ab" * 16
    (root / SNAPSHOT).write_text(json.dumps(snap))
    FileRegistry(root).close()
    assert Columns(root / SNAPSHOT)["uuid"][1] == "ab" * 16
    reg = reopen(root)
    assert reg.get(2).uuid == "ab" * 16
    reg.close()


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.mark.parametrize("where", ["header", "name column", "uuid column", "last column"])
def test_a_damaged_snapshot_is_refused_at_open_whichever_column_is_hit(root, where):
    """Every column's hash is checked at open, also of those a listing never
    decodes; opened for repair, the damage is reported and the records skipped
    (repair rebuilds them from the manifests)."""
    reg = registry_with_three_files(root)
    reg.compact()
    reg.close()
    data = (root / SNAPSHOT).read_bytes()
    at = {"header": 10, "name column": data.index(b"file-2.bin"), "uuid column": data.index(f"{2:032x}".encode()),
          "last column": len(data) - 2}[where]
    (root / SNAPSHOT).write_bytes(flip(data, at))  # one bit: still JSON in a column
    with pytest.raises(StoreError, match="files.json is damaged"):
        FileRegistry(root)
    reg = FileRegistry(root, strict=False)
    assert len(reg.damage) == 1 and "files.json is damaged" in reg.damage[0] and reg.all() == []
    reg.close()


def test_text_that_is_not_utf8_loads_from_snapshot_and_journal(root):
    """A failure reason can quote a path that is not UTF-8 (a lone surrogate in
    Python, written as a \\udcXX escape, which stricter JSON parsers such as
    orjson refuse): it reads back from the journal and from the snapshot."""
    reason = "cannot read /data/caf\udce9.bin"
    reg = FileRegistry(root)
    reg.save(entry(1, status="failed", reason=reason, stored=0))
    reg.save(entry(2))
    reg.close()
    assert b"\\udce9" in (root / JOURNAL).read_bytes()
    reg = reopen(root)
    assert reg.get(1).reason == reason
    reg.compact()
    reg = reopen(root, reg)
    assert b"\\udce9" in (root / SNAPSHOT).read_bytes() and (root / JOURNAL).read_bytes() == b""
    assert reg.get(1).reason == reason and reg.get(2) == entry(2)
    reg.close()
