"""The bytes of a pack (see pfs.volumes.packs):

    record* footer trailer
    record  = b"PFSp" | u8 key length | key | u64 piece length | u32 crc32 of the header before it | piece
    footer  = (u8 key length | key | u64 offset | u64 length)*
    trailer = b"PFSPACK1" | u64 footer offset | u32 footer length | u32 crc32 of the footer

The footer is the pack's index, read once per process; where it is damaged
the records' own headers are walked instead (past a damaged record to the next
good header), so damaged bytes lose only the pieces they cover, which pfs's
hashes then catch."""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterable

from pfs.volumes.base import check_key

RECORD = b"PFSp"
TRAILER = b"PFSPACK1"
_HEADER = struct.Struct(">QI")  # after the key: piece length, crc32 of the header up to here
_ENTRY = struct.Struct(">QQ")  # after the key: offset, length
_TRAILER = struct.Struct(">8sQII")
#: The bytes read from a pack's end to find its index (a footer of 256 entries is ~15 KiB).
TAIL = 64 << 10


def new_name() -> str:
    """A pack's id: the time first, so that newer packs sort after older ones."""
    return f"{time.time_ns():016x}{os.urandom(8).hex()}"


def encode(pieces: Iterable[tuple[str, bytes | memoryview]]) -> tuple[bytearray, dict[str, tuple[int, int]]]:
    """A pack's bytes, and its index (key -> offset, length)."""
    blob, index = bytearray(), {}
    for key, data in pieces:
        name = check_key(key).encode()
        head = RECORD + bytes([len(name)]) + name + struct.pack(">Q", len(data))
        blob += head + struct.pack(">I", zlib.crc32(head))
        index[key] = (len(blob), len(data))
        blob += data
    footer = b"".join(bytes([len(k)]) + k.encode() + _ENTRY.pack(o, n) for k, (o, n) in index.items())
    blob += footer + _TRAILER.pack(TRAILER, len(blob), len(footer), zlib.crc32(footer))
    return blob, index


def decode_footer(tail: bytes, tail_at: int) -> dict[str, tuple[int, int]] | None:
    """The index from a pack's last bytes (`tail`, starting at `tail_at`);
    None if the trailer or footer is damaged, or the footer is not all in `tail`."""
    if len(tail) < _TRAILER.size:
        return None
    magic, at, length, crc = _TRAILER.unpack(tail[-_TRAILER.size:])
    start = at - tail_at
    if magic != TRAILER or start < 0 or start + length != len(tail) - _TRAILER.size:
        return None
    footer = tail[start:start + length]
    if zlib.crc32(footer) != crc:
        return None
    index, pos = {}, 0
    try:
        while pos < len(footer):
            n = footer[pos]
            key = footer[pos + 1:pos + 1 + n].decode()
            index[key] = _ENTRY.unpack_from(footer, pos + 1 + n)
            pos += 1 + n + _ENTRY.size
    except (UnicodeDecodeError, struct.error, IndexError):
        return None
    return index


def walk(blob: bytes) -> dict[str, tuple[int, int]]:
    """The index from the records' own headers (the footer is damaged): a
    damaged header is passed over by searching for the next one that checks."""
    index, pos = {}, blob.find(RECORD)
    while pos >= 0:
        found = _record(blob, pos)
        if found is None:
            pos = blob.find(RECORD, pos + 1)
            continue
        key, start, length = found
        index[key] = (start, length)
        pos = blob.find(RECORD, start + length)
    return index


def _record(blob: bytes, pos: int) -> tuple[str, int, int] | None:
    n = blob[pos + 4] if pos + 4 < len(blob) else 0
    end = pos + 5 + n + _HEADER.size
    if not n or end > len(blob):
        return None
    length, crc = _HEADER.unpack_from(blob, pos + 5 + n)
    if zlib.crc32(blob[pos:end - 4]) != crc or end + length > len(blob):
        return None
    try:
        return check_key(blob[pos + 5:pos + 5 + n].decode()), end, length
    except (UnicodeDecodeError, ValueError):
        return None
