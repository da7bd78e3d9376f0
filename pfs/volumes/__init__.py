"""Where part files live. The volume contract (Volume, open_volume) and its
backends, a local directory (local.py) and an S3 bucket (s3.py); and the store's
set of volumes (volset.py). part_id, the key of a part on every volume, is derived
from its file's record (pfs.registry.records)."""

from pfs.registry.records import part_id
from pfs.volumes.base import MARKER, Volume, open_volume

__all__ = ["MARKER", "Volume", "open_volume", "part_id"]

