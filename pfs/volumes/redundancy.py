"""How a part is kept: N identical copies, or K data + M parity shards of its
stored bytes (erasure coding with pyeclib's isa_l_rs_vand, a Reed-Solomon code:
any K of the K+M shards rebuild the part). Each copy or shard is a piece, kept
on its own volume under a key derived from the part id."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pfs.errors import UsageError
from pfs.registry import FileEntry, parse_ec

EC_BACKEND = "isa_l_rs_vand"


@dataclass(frozen=True)
class Layout:
    """copies > 1 or k > 0 (erasure coded), never both."""

    copies: int = 1
    k: int = 0
    m: int = 0

    @classmethod
    def of(cls, entry: FileEntry) -> Layout:
        ec = parse_ec(entry.ec)
        return cls(1, *ec) if ec else cls(entry.copies)

    @property
    def ec(self) -> bool:
        return self.k > 0

    @property
    def width(self) -> int:
        """Pieces per part: the copies, or the shards."""
        return self.k + self.m if self.ec else self.copies

    @property
    def needed(self) -> int:
        """Good pieces needed to read the part."""
        return self.k if self.ec else 1

    def keys(self, part_id: str) -> list[str]:
        """The key of each piece: copies share the part id, shard j is PART.j."""
        return [f"{part_id}.{j}" for j in range(self.width)] if self.ec else [part_id] * self.copies

    def memory(self, size: int, sealed: bool = False) -> int:
        """Worst-case bytes a part of `size` needs in a worker: input and codec output,
        plus the shards (K+M of them, each about size/K) when erasure coded; and,
        when its pieces are sealed, each piece once more (a sealed copy of them)."""
        shards = -(-size // self.k) * self.width + 4096 * self.width if self.ec else 0
        return 2 * size + shards + ((shards or size) + 64 * self.width if sealed else 0)

    def describe(self) -> str:
        return f"ec {self.k}+{self.m}" if self.ec else f"{self.copies} cop{'y' if self.copies == 1 else 'ies'}"


def check_layout(copies: int, ec: str) -> Layout:
    """A layout from the --copies and --ec options; UsageError if it makes no sense."""
    try:
        shards = parse_ec(ec)
    except ValueError as exc:
        raise UsageError(f"--ec {ec}: {exc}", "e.g. --ec 4+2") from None
    if shards and copies != 1:
        raise UsageError("--copies and --ec cannot be combined", "erasure coding already keeps M spare shards")
    return Layout(1, *shards) if shards else Layout(copies)


@lru_cache(maxsize=8)
def _driver(k: int, m: int):
    from pyeclib.ec_iface import ECDriver  # imported by the processes that code shards only
    return ECDriver(k=k, m=m, ec_type=EC_BACKEND)


def encode(layout: Layout, payload) -> list[bytes]:
    """The K+M shards of a part's stored bytes."""
    return _driver(layout.k, layout.m).encode(bytes(payload))


def decode(layout: Layout, shards: list[bytes]) -> bytes:
    """A part's stored bytes from at least K good shards."""
    return _driver(layout.k, layout.m).decode(shards)
