"""Compression of parts (zstd, zlib or none) and their hashes (xxh3-128 or md5).

Everything here works on buffers and is safe to call in pool workers. The
decompressors are bounded: a part can never expand past its recorded size, so a
crafted part file cannot make a worker use more than one chunk of memory.
"""

import threading
import zlib
from functools import cache

import xxhash

CODECS = ("zstd", "zlib", "none")
HASHES = ("xxh3-128", "md5")

#: A part is stored compressed only if that saves at least this fraction.
MIN_SAVING = 0.03
#: Bytes of a part compressed first to decide whether the whole part is worth it.
SAMPLE = 64 * 1024


class DecodeError(Exception):
    """A stored payload that cannot be decompressed to its recorded size."""


def digest(hash_name: str, data) -> str:
    """Hex digest of a buffer with the named hash."""
    if hash_name == "xxh3-128":
        return xxhash.xxh3_128_hexdigest(data)
    if hash_name == "md5":
        import hashlib  # here: its OpenSSL binding costs every process 2 ms at start-up

        return hashlib.md5(data).hexdigest()
    raise ValueError(f"unknown hash {hash_name!r}")


def file_digest(part_digests: list[str]) -> str:
    """A file's digest: xxh3-128 over its parts' digests in order (no second pass)."""
    h = xxhash.xxh3_128()
    for d in part_digests:
        h.update(d.encode())
    return h.hexdigest()


@cache
def _zstd_compressor():
    import zstandard

    return zstandard.ZstdCompressor(level=1)


def _zstd_decompressor():
    """This thread's decompressor (one may not be used by two threads at once)."""
    decompressor = getattr(_decompressors, "zstd", None)
    if decompressor is None:
        import zstandard

        decompressor = _decompressors.zstd = zstandard.ZstdDecompressor()
    return decompressor


_decompressors = threading.local()


def _compress_with(codec: str, data) -> bytes:
    if codec == "zstd":
        return _zstd_compressor().compress(data)
    if codec == "zlib":
        return zlib.compress(data, 1)
    raise ValueError(f"unknown codec {codec!r}")


def _worth_it(original: int, compressed: int) -> bool:
    return compressed <= original * (1 - MIN_SAVING)


def compress(codec: str, data) -> tuple[str, bytes | memoryview]:
    """Return (codec actually used, payload). Data that does not compress is
    returned as is with codec "none"; a sample is tried first so that random
    data costs almost nothing."""
    if codec == "none" or len(data) == 0:
        return "none", data
    sample = data[:SAMPLE]
    if not _worth_it(len(sample), len(_compress_with(codec, sample))):
        return "none", data
    packed = _compress_with(codec, data)
    if not _worth_it(len(data), len(packed)):
        return "none", data
    return codec, packed


def decompress(codec: str, payload, size: int, into: memoryview | None = None) -> bytes | memoryview:
    """Decode a payload that must expand to exactly `size` bytes (zstd decodes
    into `into`, `size` bytes, if given)."""
    if codec == "none":
        out = payload
    elif codec == "zstd":
        try:
            reader = _zstd_decompressor().stream_reader(payload)
            out = reader.read(size + 1) if into is None else _read_into(reader, into[:size])
        except DecodeError:
            raise
        except Exception as exc:  # zstandard raises its own ZstdError
            raise DecodeError(f"zstd: {exc}") from exc
    elif codec == "zlib":
        try:
            out = zlib.decompressobj().decompress(payload, size + 1)
        except zlib.error as exc:
            raise DecodeError(f"zlib: {exc}") from exc
    else:
        raise DecodeError(f"unknown codec {codec!r}")
    if len(out) != size:
        raise DecodeError(f"decodes to {'more' if len(out) > size else len(out)} bytes, expected {size}")
    return out


def _read_into(reader, into: memoryview) -> memoryview:
    """The bytes a stream reader decodes, read into `into`; DecodeError if there are more."""
    done = 0
    while done < len(into) and (n := reader.readinto(into[done:])):
        done += n
    if done == len(into) and reader.read(1):
        raise DecodeError(f"decodes to more bytes, expected {len(into)}")
    return into[:done]
