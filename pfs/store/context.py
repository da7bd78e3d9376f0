"""What every room of an open store shares: its place, settings, registries, volumes and engine."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pfs.errors import UsageError
from pfs.units import format_option, format_size
from pfs.volumes.redundancy import Layout

if TYPE_CHECKING:
    from pfs.crypto.opening import StoreKeys
    from pfs.engine.engine import Engine
    from pfs.registry import FileTable, PartTable, SessionTable
    from pfs.store.repair import RepairReport
    from pfs.volumes.volset import VolumeSet

Progress = Callable[[int], None]


def no_progress(_: int) -> None:
    pass


def part_memory(size: int, layout: Layout = Layout(), sealed: bool = False) -> int:
    """Worst-case bytes a part needs in a worker (see Layout.memory)."""
    return layout.memory(size, sealed)


@dataclass(frozen=True)
class Settings:
    """How new files are stored; each file records its own, so any session reads any file."""

    chunk_size: int = 4 << 20
    codec: str = "zstd"
    hash: str = "xxh3-128"
    copies: int = 1
    ec: str = ""


class Context:
    """The state of one open store, filled in by opening and shared (not owned) by
    the rooms: each room reads what it needs here rather than reaching into the
    Store facade. `config` and `next_volume` change as volumes are changed."""

    def __init__(self, location: str, max_memory: int, keys: StoreKeys) -> None:
        self.location = location
        self.keys = keys  # unlocks an encrypted store (see pfs.crypto.opening)
        self.slots = None  # where its key slots are (see pfs.crypto.slots)
        self.sealed_for = ""  # the store id its pieces are sealed for, once unlocked ('' for a plain store)
        self.max_memory = max_memory
        self.root: Path = Path()
        self.description = ""
        self.settings = Settings()
        self.layout = Layout()
        self.config: dict[str, Any] = {}
        self.next_volume = 0
        self.created = False
        self.db = None  # the PostgreSQL Database of a database store
        self.lock_fd = -1
        self.root_id: tuple[int, int] = (0, 0)
        self.config_stamp: tuple | None = None  # store.json as the volumes were last taken from it
        self.tmp: Path = Path()
        self.files: FileTable
        self.parts: PartTable
        self.sessions: SessionTable
        self.volset: VolumeSet
        self.engine: Engine
        self.repair_report: RepairReport | None = None
        self.recovered: list = []  # what the recovery at open finished

    def check_memory(self, chunk_size: int, subject: str, layout: Layout | None = None) -> None:
        """Refuse a chunk size whose parts could never fit the memory limit."""
        need = part_memory(chunk_size, layout or self.layout, self.sealed)
        if need > self.max_memory:
            raise UsageError(f"{subject} needs {format_size(need)} per part in flight, more than "
                             f"--max-memory {format_size(self.max_memory)}",
                             f"use --max-memory {format_option(need)} or more")

    @property
    def sealed(self) -> bool:
        return bool(self.sealed_for)

    def inside_store(self, path: Path | str) -> bool:
        """Whether `path`, with every symbolic link and `..` resolved, is the store's
        directory or lies inside it (where no command may read or write a file).
        Directories are compared by identity, so a bind mount of the store counts too."""
        real = Path(os.path.realpath(path))
        for p in (real, *real.parents):
            with contextlib.suppress(OSError):
                st = os.stat(p)
                if (st.st_dev, st.st_ino) == self.root_id:
                    return True
        return False
