"""Where part files live. The volume contract (Volume, open_volume) and its
backends, a local directory (local.py) and an S3 bucket (s3.py); and the store's
set of volumes (volset.py)."""

import uuid

from pfs.volumes.base import MARKER, Volume, open_volume

__all__ = ["MARKER", "Volume", "open_volume", "part_id"]


def part_id(file_uuid: str, index: int) -> str:
    """The uuid of a file's index-th part. Derived from the file's uuid, so a
    put interrupted by a crash can be rolled back from its journal record alone."""
    return uuid.uuid5(uuid.UUID(file_uuid), str(index)).hex
