"""Many small files' parts in one task (see pfs.store.batch): one trip to a
worker for all of them, and their pieces written into one pack per volume
(Volume.write_pack: one object made durable once), not one part file each."""

from __future__ import annotations

from pfs.engine.worker import SourceShrank, store_part, volume_for
from pfs.errors import OutOfSpaceError, PfsError, VolumeUnavailableError
from pfs.volumes import Volume


def store_parts(jobs: list[tuple]) -> list[tuple | BaseException]:
    """store_part of the parts of many small files in one task: one trip to a
    worker for all of them, not one each, and their pieces written into one
    pack per volume (Volume.write_pack: one object made durable once), not one
    part file each. A part whose pack a volume refused (full, gone) is stored
    again alone, as store_part would, on the volumes that take it; a part that
    fails is handed back as its error (SourceShrank, or a PfsError), so the
    others are stored. Every piece is durable when this returns."""
    packing, done = _Packing(), []
    for packing.part, args in enumerate(jobs):
        done.append(_stored(args, packing.add))
    for i in packing.write():
        done[i] = _stored(jobs[i])
        if isinstance(done[i], tuple):
            for vid, key in zip(done[i][3], jobs[i][5].keys(jobs[i][6])):
                volume_for(dict(jobs[i][7])[vid]).flush([key])
    return done


def _stored(args: tuple, write=None) -> tuple | BaseException:
    try:
        return store_part(*args, write=write)
    except (SourceShrank, PfsError) as exc:
        return exc
    except OSError as exc:
        return PfsError(f"cannot store it: {exc.strerror or exc}")


class _Packing:
    """The pieces of a task's parts, by volume, until each volume's pack is written."""

    def __init__(self) -> None:
        self.pieces: dict[int, tuple[Volume, list[tuple[str, bytes]], set[int]]] = {}
        self.part = 0

    def add(self, vid: int, volume: Volume, key: str, piece) -> None:
        _, pieces, parts = self.pieces.setdefault(vid, (volume, [], set()))
        pieces.append((key, bytes(piece)))  # a worker's buffer is reused by its next part
        parts.add(self.part)

    def write(self) -> set[int]:
        """Write each volume's pack; the parts (indexes) whose pack was refused."""
        refused = set()
        for volume, pieces, parts in self.pieces.values():
            try:
                volume.write_pack(pieces)
            except (OutOfSpaceError, VolumeUnavailableError):
                refused |= parts
        return refused
