"""Journal compaction must never drop the update that triggered it."""

import dataclasses

from pfs.registry import jsonfiles
from pfs.registry import STORED, STORING, FileEntry, FileRegistry


def entry(file_id: int, status: str) -> FileEntry:
    return FileEntry(id=file_id, name=f"f{file_id}", size=1, status=status, parts=1, chunk_size=4096,
                     codec="zstd", hash="xxh3-128", uuid="0" * 32, created=0.0)


def on_disk(root) -> list[FileEntry]:
    """What a process opening the store now (say, after a crash) would see."""
    view = FileRegistry(root)
    view.close()
    return view.all()


def test_every_update_is_durable_across_compactions(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonfiles.journal, "MIN_COMPACT_BYTES", 2048)  # compact every few dozen lines
    reg = FileRegistry(tmp_path)
    compactions = 0
    for i in range(1, 150):
        updates = [lambda: reg.save(entry(reg.new_id(), STORING)),
                   lambda: reg.save(dataclasses.replace(reg.get(i), status=STORED))]
        if i % 3 == 0:
            updates.append(lambda: reg.remove(i))
        for update in updates:
            before = reg._journal.bytes
            update()
            compactions += reg._journal.bytes < before
            assert on_disk(tmp_path) == reg.all()
    reg.close()
    assert compactions > 5
    assert [e.id for e in on_disk(tmp_path)] == [i for i in range(1, 150) if i % 3]


def test_a_session_folds_the_journal_it_grew_when_it_closes(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonfiles.journal, "MIN_COMPACT_BYTES", 1024)
    reg = FileRegistry(tmp_path)
    for _ in range(20):
        reg.save(entry(reg.new_id(), STORED))
    reg.compact()  # a snapshot of 20 files
    for _ in range(6):  # past MIN_COMPACT_BYTES and a quarter of the snapshot, but smaller than it
        reg.save(entry(reg.new_id(), STORED))
    assert (tmp_path / jsonfiles.JOURNAL).stat().st_size > 1024
    reg.close()
    assert (tmp_path / jsonfiles.JOURNAL).stat().st_size == 0
    assert [e.id for e in on_disk(tmp_path)] == list(range(1, 27))

    journal = tmp_path / jsonfiles.JOURNAL
    journal.write_bytes(b"".join(b'{"op":"del","id":0}\n' for _ in range(100)))  # left by an earlier session
    FileRegistry(tmp_path).close()  # a session that only reads leaves it alone
    assert journal.stat().st_size == 2000
