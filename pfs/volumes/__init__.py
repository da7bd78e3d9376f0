"""Where part files live. The volume contract (Volume, open_volume) and its
backends, a local directory (local.py) and an S3 bucket (s3.py); and the store's
volume directories under its root, fanned out by id so no directory grows huge."""

import uuid
from pathlib import Path

from pfs.volumes.base import MARKER, Volume, open_volume

__all__ = ["MARKER", "Volume", "Volumes", "open_volume", "part_id"]


def part_id(file_uuid: str, index: int) -> str:
    """The uuid of a file's index-th part. Derived from the file's uuid, so a
    put interrupted by a crash can be rolled back from its journal record alone."""
    return uuid.uuid5(uuid.UUID(file_uuid), str(index)).hex


class Volumes:
    """The store's volume directories; part i of a file goes to volume i mod n."""

    def __init__(self, root: Path, names: list[str]) -> None:
        self.dirs = [root / name for name in names]

    def place(self, index: int) -> int:
        return index % len(self.dirs)

    def path(self, volume: int, pid: str) -> Path:
        return self.dirs[volume] / pid[:2] / pid[2:4] / pid

    def all_part_files(self):
        """Every part file on every volume (for repair and sweeping)."""
        for d in self.dirs:
            yield from (p for p in d.glob("*/*/*") if p.is_file())
