"""The real servers the tests start (PostgreSQL, SeaweedFS for S3), which the benchmark starts too."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "servers"))
from postgres_server import PostgresServer, missing as postgres_missing  # noqa: E402
from seaweedfs_server import WEED, SeaweedFS  # noqa: E402

__all__ = ["WEED", "PostgresServer", "SeaweedFS", "postgres_missing"]
