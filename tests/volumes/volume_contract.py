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
