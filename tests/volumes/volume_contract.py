"""One test suite for every Volume backend.

A backend's test file subclasses VolumeContract and supplies two fixtures:
`make_volume(**options)`, a factory of fresh, empty, unclaimed volumes (a new
directory, a new key prefix), and `damage_part(volume, key)`, which puts what
that backend can find in a part's place instead of a part and returns the
error a read must raise."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from pfs.errors import PartExistsError, PartMissingError
from pfs.volumes import Volume, open_volume

STORE_ID = "store-2f1c"


def key(n: int) -> str:
    """A part id like pfs's (32 hex digits), spread over the fan-out directories."""
    return f"{(n * 2654435761) % (1 << 32):08x}{n:024x}"


def read_described(desc: dict, k: str) -> bytes:
    """Runs in a pool worker: rebuild the volume from its description and read."""
    return open_volume(desc).read(k)


def write_described(desc: dict, k: str, data: bytes) -> None:
    open_volume(desc).write(k, data)


def read_pickled(volume: Volume, k: str) -> bytes:
    return volume.read(k)


class VolumeContract:
    """What every volume must do, whatever holds its bytes."""

    @pytest.fixture
    def volume(self, make_volume) -> Volume:
        v = make_volume()
        v.write_marker(STORE_ID, "v0")
        return v

    def test_round_trip_and_ranged_reads(self, volume):
        data = os.urandom(100_000)
        volume.write(key(1), data)
        assert volume.read(key(1)) == data
        assert volume.read(key(1), 1000, 5000) == data[1000:6000]
        assert volume.read(key(1), 99_000) == data[99_000:]
        assert volume.read(key(1), 99_990, 100) == data[99_990:]
        assert volume.read(key(1), 200_000, 10) == b""
        assert volume.read(key(1), 5, 0) == b""
        buf = bytearray(4096)
        assert volume.read_into(key(1), memoryview(buf), 777) == 4096
        assert bytes(buf) == data[777:777 + 4096]
        assert volume.read_into(key(1), memoryview(buf), 99_000) == 1000
        assert bytes(buf[:1000]) == data[99_000:]

    def test_empty_part(self, volume):
        volume.write(key(2), b"")
        assert volume.read(key(2)) == b""
        assert list(volume.keys(key(2))) == [key(2)]

    def test_write_is_create_only(self, volume):
        volume.write(key(3), b"first")
        with pytest.raises(PartExistsError) as err:
            volume.write(key(3), b"second, longer than the first")
        assert key(3) in str(err.value)
        assert volume.read(key(3)) == b"first"

    def test_missing_part(self, volume):
        for read in (lambda: volume.read(key(4)), lambda: volume.read(key(4), 10, 10),
                     lambda: volume.read(key(4), 0, 0), lambda: volume.read_into(key(4), memoryview(bytearray(8)))):
            with pytest.raises(PartMissingError) as err:
                read()
            assert key(4) in str(err.value)

    def test_remove_twice_then_write_again(self, volume):
        volume.write(key(5), b"x" * 10)
        assert volume.remove(key(5)) is True
        assert volume.remove(key(5)) is False
        with pytest.raises(PartMissingError):
            volume.read(key(5))
        volume.write(key(5), b"again")
        assert volume.read(key(5)) == b"again"

    def test_remove_all_removes_parts_and_leaves_what_is_not_one(self, volume, damage_part):
        many = [key(n) for n in range(20, 1030)]  # past one S3 DeleteObjects request (1000 keys)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: volume.write(k, b"doomed"), many))
        volume.write(key(16), b"kept")
        error = damage_part(volume, key(17))
        volume.remove_all([*many, key(18), key(17)])  # key(18) was never written
        assert set(volume.keys()) - {key(17)} == {key(16)}
        assert volume.read(key(16)) == b"kept"
        with pytest.raises((error, PartMissingError)):  # removed as remove() would, or left alone
            volume.read(key(17))

    def test_keys_lists_many_parts_by_prefix(self, volume):
        keys = [key(n) for n in range(1, 1101)]  # past one S3 listing page (1000)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: volume.write(k, k.encode()), keys))
        assert sorted(volume.keys()) == sorted(keys)
        for prefix in ("a", keys[7][:2], keys[7][:3], keys[7][:5], keys[7]):
            assert sorted(volume.keys(prefix)) == sorted(k for k in keys if k.startswith(prefix))
        assert list(volume.keys("zz")) == []

    def test_bad_keys_are_refused(self, volume):
        for bad in ("../../etc/passwd", "AB", "a/b/cdef", "", "ABCDEF", "ab cd"):
            with pytest.raises(ValueError):
                volume.write(bad, b"x")
        with pytest.raises(ValueError):
            list(volume.keys("../"))

    def test_usage_moves(self, volume):
        used, free = volume.usage()
        assert used == 0 and (free is None or free > 0)
        volume.write(key(6), os.urandom(65_536))
        volume.write(key(7), os.urandom(1000))
        assert volume.usage()[0] == 66_536
        volume.remove(key(6))
        assert volume.used() == 1000

    def test_flush_written_parts(self, volume):
        volume.write(key(8), b"durable")
        volume.flush([key(8)])
        volume.flush([])
        assert volume.read(key(8)) == b"durable"

    def test_describe_opens_in_a_worker_process(self, volume):
        desc = volume.describe()
        assert json.loads(json.dumps(desc)) == desc
        assert desc["store_id"] == STORE_ID and desc["volume_id"] == "v0"
        secrets = {v for k, v in os.environ.items() if "SECRET" in k or "TOKEN" in k}
        assert not secrets & {str(v) for v in desc.values()}
        volume.write(key(10), b"from the parent")
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            assert pool.submit(read_described, desc, key(10)).result(timeout=60) == b"from the parent"
            pool.submit(write_described, desc, key(11), b"from a worker").result(timeout=60)
            assert pool.submit(read_pickled, volume, key(11)).result(timeout=60) == b"from a worker"
        assert volume.read(key(11)) == b"from a worker"
        assert open_volume(desc).status() == "online"

    def test_pickle_round_trip(self, volume):
        volume.write(key(12), b"pickled")  # the volume has been used (a live client, if any)
        copy = pickle.loads(pickle.dumps(volume))
        assert type(copy) is type(volume) and copy.describe() == volume.describe()
        assert copy.read(key(12)) == b"pickled"

    def test_marker_identity(self, make_volume):
        v = make_volume()
        assert v.read_marker() is None
        assert v.status() == "missing"  # an empty place is never taken for an empty volume
        v.write_marker(STORE_ID, "v3")
        assert v.read_marker() == {"format": 1, "store": STORE_ID, "volume": "v3"}
        assert v.status() == "online"
        desc = v.describe()
        assert open_volume({**desc, "volume_id": "v4"}).status() == "missing"
        assert open_volume({**desc, "store_id": "another-store"}).status() == "missing"
        assert list(v.keys()) == []  # the marker is not a part

    def test_a_released_volume_can_be_claimed_again(self, volume):
        volume.write(key(5), b"x")
        volume.remove(key(5))
        volume.release()
        assert volume.read_marker() is None
        again = open_volume({k: v for k, v in volume.describe().items() if k not in ("store_id", "volume_id")})
        assert again.read_marker() is None and list(again.keys()) == []
        again.write_marker(STORE_ID, "v9")
        assert again.status() == "online"

    def test_foreign_marker_makes_the_volume_missing(self, volume):
        place = {k: v for k, v in volume.describe().items() if k not in ("store_id", "volume_id")}
        intruder = open_volume(place)  # the same place (and server), claimed by another store
        intruder.write_marker("another-store", "v0")
        assert volume.status() == "missing"
        volume.write_marker(STORE_ID, "v0")
        assert volume.status() == "online"

    def test_full_below_the_reserve(self, volume):
        free = volume.free()
        volume.reserve = (free or 0) + (1 << 40)
        assert volume.status() == ("online" if free is None else "full")
        assert open_volume(volume.describe()).reserve == volume.reserve

    def test_damaged_part_is_an_error_not_a_hang(self, volume, damage_part):
        volume.write(key(13), b"a good neighbour")
        error = damage_part(volume, key(14))
        started = time.monotonic()
        with pytest.raises(error):
            volume.read(key(14))
        with pytest.raises(error):
            volume.read_into(key(14), memoryview(bytearray(16)))
        assert time.monotonic() - started < 5
        assert volume.read(key(13)) == b"a good neighbour"
        assert key(13) in set(volume.keys())

    def test_big_part(self, volume):
        data = os.urandom(8 << 20)
        volume.write(key(15), memoryview(data))
        assert volume.read(key(15)) == data
        assert volume.read(key(15), 3 << 20, 1 << 20) == data[3 << 20:4 << 20]
        buf = bytearray(8 << 20)
        assert volume.read_into(key(15), memoryview(buf)) == len(data) and buf == data

    # -- packs: many small pieces in one object (Volume.write_pack) ------------------------

    def test_a_pack_reads_lists_and_removes_like_parts(self, volume):
        pieces = [(key(n), os.urandom(n * 37)) for n in range(100, 160)]  # an empty piece among them
        volume.write_pack(pieces)
        other = open_volume(volume.describe())  # another process's view: it finds the pack itself
        for k, data in pieces:
            assert other.read(k) == data
        k, data = pieces[30]
        assert other.read(k, 100, 50) == data[100:150] and other.read(k, len(data) + 5, 10) == b""
        buf = bytearray(len(data) + 10)
        assert other.read_into(k, memoryview(buf), 7) == len(data) - 7 and buf[:len(data) - 7] == data[7:]
        assert sorted(other.keys()) == sorted(k for k, _ in pieces)
        assert sorted(other.keys(pieces[3][0][:3])) == sorted(k for k, _ in pieces if k.startswith(pieces[3][0][:3]))
        assert other.remove(pieces[0][0]) is True and volume.remove(pieces[0][0]) is False
        for v in (volume, other):
            with pytest.raises(PartMissingError):
                v.read(pieces[0][0])
        volume.remove_all(k for k, _ in pieces)
        assert list(volume.keys()) == [] and list(open_volume(volume.describe()).keys()) == []
        assert volume.used() == 0  # a pack wholly dead is removed at once

    def test_a_pack_mostly_dead_is_compacted_and_its_live_pieces_read_on(self, volume):
        pieces = [(key(n), os.urandom(1000) + bytes([n % 256])) for n in range(200, 210)]
        volume.write_pack(pieces)
        stale = open_volume(volume.describe())
        assert stale.read(pieces[9][0]) == pieces[9][1]  # it has read the old pack's index
        full = volume.used()
        volume.remove_all([k for k, _ in pieces[:4]])
        volume.remove(pieces[4][0])  # past half dead: compacted into a new pack at once
        assert volume.used() < full * 0.7
        for k, data in pieces[5:]:
            assert stale.read(k) == data  # a stale index looks again
        assert sorted(stale.keys()) == sorted(k for k, _ in pieces[5:])
        volume.remove_all([pieces[5][0]])
        packs, freed = volume.compact()  # the command: whatever is dead goes
        assert packs == 1 and freed > 0 and sorted(volume.keys()) == sorted(k for k, _ in pieces[6:])

    def test_a_piece_written_alone_shadows_its_packed_copy(self, volume):
        volume.write_pack([(key(300), b"packed, and damaged"), (key(301), b"neighbour")])
        volume.write(key(300), b"rewritten alone")  # what heal does with a damaged packed piece
        assert volume.read(key(300)) == b"rewritten alone"
        assert sorted(volume.keys()) == sorted([key(300), key(301)])
        volume.remove(key(300))
        with pytest.raises(PartMissingError):
            volume.read(key(300))
        assert volume.read(key(301)) == b"neighbour"

    def test_damaged_bytes_in_a_pack_damage_only_the_pieces_they_cover(self, volume):
        pieces = [(key(n), os.urandom(3000)) for n in range(400, 420)]
        volume.write_pack(pieces)
        (pack, size), = volume.shelf_list().items()
        blob = bytearray(volume.shelf_get(pack, 0, size))
        start = blob.find(pieces[5][1])
        blob[start + 1000:start + 1010] = bytes(10)  # inside piece 5
        header = blob.find(pieces[9][1]) - 20
        blob[header] ^= 0xFF  # piece 9's record header
        blob[-40] ^= 0xFF  # the footer: the records' headers are read instead
        volume.shelf_drop(pack)
        volume.shelf_put(pack, bytes(blob), True)
        fresh = open_volume(volume.describe())
        for n, (k, data) in enumerate(pieces):
            if n == 9:
                with pytest.raises(PartMissingError):
                    fresh.read(k)
            else:
                assert (fresh.read(k) == data) is (n != 5)
