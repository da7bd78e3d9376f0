"""pfs.codec: compression with raw fallback, bounded decompression, hashes."""

import hashlib
import os
import zlib

import pytest
import xxhash
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pfs import codec
from pfs.codec import CODECS, HASHES, DecodeError, compress, decompress, digest, file_digest

SIZE = 256 * 1024  # more than codec.SAMPLE, so the sample heuristic and the full pass both run


def compressible(size: int) -> bytes:
    line = b"2026-11-25T13:00:00 INFO request served in 12 ms path=/api/items\n"
    return (line * (size // len(line) + 1))[:size]


DATA = {
    "random": os.urandom(SIZE),
    "compressible": compressible(SIZE),
    "empty": b"",
    "one byte": b"x",
    "zeros": bytes(SIZE),
}


@pytest.mark.parametrize("codec_name", CODECS)
@pytest.mark.parametrize("kind", DATA)
def test_round_trip(codec_name, kind):
    data = DATA[kind]
    used, payload = compress(codec_name, data)
    assert used in CODECS
    assert bytes(decompress(used, payload, len(data))) == data


@pytest.mark.parametrize("codec_name", CODECS)
@pytest.mark.parametrize("kind", ["random", "compressible"])
def test_round_trip_from_a_memoryview(codec_name, kind):
    """Workers hand the codec a memoryview of their reusable buffer, not bytes."""
    buf = bytearray(DATA[kind])
    used, payload = compress(codec_name, memoryview(buf))
    payload = bytes(payload)  # what is written to the part file
    assert bytes(decompress(used, memoryview(payload), len(buf))) == bytes(buf)


@pytest.mark.parametrize("codec_name", CODECS)
def test_random_data_is_stored_raw(codec_name):
    data = DATA["random"]
    used, payload = compress(codec_name, data)
    assert used == "none"
    assert bytes(payload) == data


@pytest.mark.parametrize("codec_name", ["zstd", "zlib"])
def test_compressible_data_is_compressed(codec_name):
    data = DATA["compressible"]
    used, payload = compress(codec_name, data)
    assert used == codec_name
    assert len(payload) <= len(data) * (1 - codec.MIN_SAVING)


def test_codec_none_never_compresses():
    data = DATA["compressible"]
    assert compress("none", data) == ("none", data)


def test_data_whose_tail_does_not_compress_is_stored_raw_and_round_trips():
    data = bytes(codec.SAMPLE) + os.urandom(40 * codec.SAMPLE)  # sample compresses; whole saves < 3%
    for name in ("zstd", "zlib"):
        used, payload = compress(name, data)
        assert used == "none"
        assert bytes(decompress(used, payload, len(data))) == data


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=4096), codec_name=st.sampled_from(CODECS))
def test_round_trip_any_bytes(data, codec_name):
    used, payload = compress(codec_name, data)
    assert bytes(decompress(used, payload, len(data))) == data


def test_unknown_codec_is_refused_both_ways():
    with pytest.raises(ValueError):
        compress("lz4", DATA["compressible"])
    with pytest.raises(DecodeError):
        decompress("lz4", b"abc", 3)


# -- decompression is bounded and exact ------------------------------------------

def test_zstd_bomb_is_refused():
    """10 MiB of zeros compress to a few hundred bytes; a part recorded as
    64 KiB must not be allowed to expand to 10 MiB."""
    bomb = zstandard.ZstdCompressor().compress(bytes(10 << 20))
    assert len(bomb) < 64 * 1024
    with pytest.raises(DecodeError):
        decompress("zstd", bomb, 64 * 1024)


def test_zlib_bomb_is_refused():
    bomb = zlib.compress(bytes(10 << 20), 9)
    with pytest.raises(DecodeError):
        decompress("zlib", bomb, 64 * 1024)


@pytest.mark.parametrize("codec_name", ["zstd", "zlib"])
@pytest.mark.parametrize("delta", [-1, +1, -1000])
def test_payload_that_decodes_to_another_size_is_refused(codec_name, delta):
    data = DATA["compressible"]
    used, payload = compress(codec_name, data)
    assert used == codec_name
    with pytest.raises(DecodeError):
        decompress(used, payload, len(data) + delta)


@pytest.mark.parametrize("delta", [-1, +1])
def test_raw_payload_of_another_size_is_refused(delta):
    data = DATA["random"]
    with pytest.raises(DecodeError):
        decompress("none", data, len(data) + delta)


@pytest.mark.parametrize("codec_name", ["zstd", "zlib"])
@pytest.mark.parametrize("payload", [
    os.urandom(1000),
    b"\x00" * 100,
    b"not a compressed payload at all",
    b"\x28\xb5\x2f\xfd" + os.urandom(200),  # zstd magic followed by garbage
    b"\x78\x01" + os.urandom(200),  # zlib header followed by garbage
])
def test_garbage_payload_is_refused(codec_name, payload):
    with pytest.raises(DecodeError):
        decompress(codec_name, payload, 4096)


@pytest.mark.parametrize("codec_name", ["zstd", "zlib"])
def test_truncated_payload_is_refused(codec_name):
    data = DATA["compressible"]
    used, payload = compress(codec_name, data)
    assert used == codec_name
    with pytest.raises(DecodeError):
        decompress(used, bytes(payload)[: len(payload) // 2], len(data))


def test_decode_error_message_is_one_line():
    bomb = zstandard.ZstdCompressor().compress(bytes(1 << 20))
    with pytest.raises(DecodeError) as info:
        decompress("zstd", bomb, 1000)
    assert "\n" not in str(info.value)


# -- hashes -------------------------------------------------------------------

@pytest.mark.parametrize("kind", DATA)
def test_md5_matches_hashlib(kind):
    data = DATA[kind]
    assert digest("md5", data) == hashlib.md5(data).hexdigest()
    assert digest("md5", memoryview(bytearray(data))) == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("kind", DATA)
def test_xxh3_matches_xxhash(kind):
    data = DATA[kind]
    assert digest("xxh3-128", data) == xxhash.xxh3_128_hexdigest(data)
    assert digest("xxh3-128", memoryview(bytearray(data))) == xxhash.xxh3_128_hexdigest(data)
    assert len(digest("xxh3-128", data)) == 32


def test_every_advertised_hash_works_and_unknown_is_refused():
    for name in HASHES:
        assert digest(name, b"abc") != digest(name, b"abd")
    with pytest.raises(ValueError):
        digest("sha1", b"abc")


def test_file_digest_is_xxh3_over_part_digests_in_order():
    parts = [digest("xxh3-128", DATA["random"][i:i + 1000]) for i in range(0, 5000, 1000)]
    assert file_digest(parts) == xxhash.xxh3_128_hexdigest("".join(parts).encode())
    assert file_digest(parts) != file_digest(parts[::-1])
    assert file_digest([]) == xxhash.xxh3_128_hexdigest(b"")
