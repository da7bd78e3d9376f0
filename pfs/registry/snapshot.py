"""files.json, the FileRegistry's snapshot: every file record, kept as columns.

Format 2 is a header line, then one JSON array per field of FileEntry (a
column), each followed by a newline:

    {"format":2,"next_id":7,"count":3,"fields":["id",...],"columns":[[0,8,"<xxh3-128>"],...],"check":"<xxh3-128>"}
    [1,4,6]
    ["a.bin","b.bin","logs/c.log"]
    ...

Each column is named by its offsets after the header line and carries the
hash of its bytes; the header ends with a check of itself (see `seal`). An open
reads the file a column at a time and checks every hash, which takes
milliseconds for 100,000 files, keeps none of its bytes (the file stays open)
and decodes only the columns it is asked for: the name index and
a listing need ids, names and statuses, not every record's uuid, digest and
times, and decoding is most of what opening a big store costs. Records come
sorted by name (stably: the records of one name keep their order, the order
they became current), so the name index sorts names already in order.

Format 1, one JSON object with rows under "fields" and "files", is still read;
its rows are checked one by one unless it is sealed. A format 2 snapshot written
before fields were added to FileEntry (its "fields" are the first of ours) is
read with those fields at their defaults.
"""

from __future__ import annotations

import json
import os
import re
import weakref
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from itertools import accumulate, pairwise
from pathlib import Path

from pfs import codec

from pfs.registry.records import FILE_FIELDS, MAX_INT, BadRecord, FileEntry

#: Each field's value in a record older than the field (only fields with a default were ever added).
_DEFAULTS = {f.name: f.default for f in fields(FileEntry)}

FORMAT = 2
#: How a format 2 snapshot starts.
FORMAT_2 = b'{"format":2,'

#: The end of a sealed JSON object: `,"check":"<xxh3-128 of everything before it>"}`.
_SEAL = re.compile(rb',"check":"([0-9a-f]{32})"}')
_SEAL_BYTES = 44
#: A header line is at most this long (one place a field, some 60 bytes each).
_HEADER_BYTES = 64 << 10


def seal(obj_json: bytes) -> bytes:
    """A JSON object with a last member that checksums the rest, so that reading
    it back can prove, at memory speed, that it is byte for byte what pfs wrote."""
    body = obj_json[:-1]
    return body + b',"check":"' + codec.digest("xxh3-128", body).encode() + b'"}'


def is_sealed(data: bytes | memoryview) -> bool:
    """Whether `data` ends with a seal (see `seal`) that matches the rest."""
    check = _SEAL.fullmatch(data, max(0, len(data) - _SEAL_BYTES))
    return check is not None and codec.digest("xxh3-128", memoryview(data)[:-_SEAL_BYTES]) == check[1].decode()


def encode(next_id: int, count: int, column: Callable[[str], Sequence]) -> bytes:
    """A format 2 snapshot of `count` records, given as `column(field)`: one field
    of every record, in the order they became current. Built a column at a
    time: no record is made an object for it."""
    names = column("name")
    order = sorted(range(count), key=names.__getitem__)  # stable: one name's records keep their order
    columns = [json.dumps(list(map(column(field).__getitem__, order)), separators=(",", ":")).encode() + b"\n"
               for field in FILE_FIELDS]
    places, offset = [], 0
    for data in columns:
        places.append([offset, offset + len(data) - 1, codec.digest("xxh3-128", data[:-1])])
        offset += len(data)
    header = {"format": FORMAT, "next_id": next_id, "count": count, "fields": FILE_FIELDS, "columns": places}
    return b"".join([seal(json.dumps(header, separators=(",", ":")).encode()), b"\n", *columns])


def _places_ok(places: object) -> bool:
    """Whether a header's "columns" is one [start, stop, hash] per field."""
    return type(places) is list and all(
        type(p) is list and len(p) == 3 and type(p[0]) is int and type(p[1]) is int and type(p[2]) is str
        for p in places)


class Coded(Sequence):
    """A column of few distinct values (a status, a codec, a mode, a session):
    one byte a record, an index into those values."""

    __slots__ = ("values", "codes")

    def __init__(self, values: list, codes: bytes) -> None:
        self.values, self.codes = values, codes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, row: int) -> object:
        return self.values[self.codes[row]]

    def __iter__(self) -> Iterator:
        return map(self.values.__getitem__, self.codes)


class Texts(Sequence):
    """A column of ASCII text (uuids, digests): its bytes in one string and
    where each value ends, not an object a value (a 32-digit uuid is 40 bytes
    so, 89 as a str in a list)."""

    __slots__ = ("text", "ends")

    def __init__(self, values: list[str]) -> None:
        self.text = "".join(values).encode("ascii")
        self.ends = array("Q", accumulate(map(len, values), initial=0))

    def __len__(self) -> int:
        return len(self.ends) - 1

    def __getitem__(self, row: int) -> str:
        return self.text[self.ends[row]:self.ends[row + 1]].decode("ascii")

    def __iter__(self) -> Iterator[str]:
        return (self.text[start:end].decode("ascii") for start, end in pairwise(self.ends))


def take(column: Sequence, rows: list[int]) -> list:
    """A column's values at `rows`, without a Python call a value where it is coded."""
    if isinstance(column, Coded):
        return list(map(column.values.__getitem__, map(column.codes.__getitem__, rows)))
    return list(map(column.__getitem__, rows))


#: The fields whose values are kept as objects: the name index holds the names themselves.
_OBJECTS = frozenset({"name"})


def compact(field: str, values: list) -> Sequence:
    """A decoded column as it is kept in memory: a few distinct values coded,
    ints and floats in an array, ASCII text in one string, else the list. A
    store of small files has most columns alike (status, codec, chunk size,
    session): as lists of their own objects they took most of its memory."""
    types = set(map(type, values))
    if field in _OBJECTS or not types <= {str, int, float, type(None)} or len(types & {int, float}) > 1:
        return values  # (1 and 1.0 are one key of a dict: a column holding both is kept as it is)
    if len(dict.fromkeys(values[:4096])) <= 256:  # (a first look: a column of uuids makes no dict of them all)
        distinct = {value: code for code, value in enumerate(dict.fromkeys(values))}
        if len(distinct) <= 256:
            return Coded(list(distinct), bytes(map(distinct.__getitem__, values)))
    if types == {int} and -MAX_INT <= min(values) and max(values) <= MAX_INT:
        return array("q", values)
    if types == {float}:
        return array("d", values)
    if types == {str} and all(map(str.isascii, values)):
        return Texts(values)
    return values


class Columns:
    """A format 2 snapshot as loaded: each column read and decoded when first
    asked for, from the file that was checked (held open: a compaction
    replaces the file, never writes into it), and kept compact (see `compact`).
    The file's bytes are not kept: for a million files they were 250 MB."""

    def __init__(self, path: Path) -> None:
        """Check the snapshot a column at a time, raising BadRecord at the first
        thing that is off, without decoding any column; it is held open until
        the Columns are dropped."""
        self._fd = fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, fd)
        first = os.pread(fd, _HEADER_BYTES, 0)
        end = first.find(b"\n")
        header = json.loads(first[:end]) if end > 0 and is_sealed(first[:end]) else None
        names = header.get("fields") if type(header) is dict else None
        if type(names) is not list or not 0 < len(names) <= len(FILE_FIELDS) or names != FILE_FIELDS[:len(names)] \
                or not _places_ok(header.get("columns")) or len(header["columns"]) != len(names) \
                or type(header.get("next_id")) is not int or not 1 <= header["next_id"] <= MAX_INT or \
                type(header.get("count")) is not int:
            raise BadRecord("its header is not one pfs wrote")
        self._body, size = end + 1, os.fstat(fd).st_size - end - 1
        self._places = dict(zip(names, header["columns"]))
        for field, (start, stop, _) in self._places.items():
            if not 0 <= start <= stop < size:
                raise BadRecord(f"its column of {field} does not match its check")
            self._read(field)
        self.next_id: int = header["next_id"]
        self.count: int = header["count"]
        self._decoded: dict[str, Sequence] = {}
        #: Whether it lacks fields (written before they were added): rewritten at the next close.
        self.outdated = len(names) < len(FILE_FIELDS)

    def _read(self, field: str) -> bytes:
        """A column's JSON, checked against its hash."""
        start, stop, check = self._places[field]
        data = os.pread(self._fd, stop + 1 - start, self._body + start)
        if len(data) != stop + 1 - start or data[-1] != ord("\n") or codec.digest("xxh3-128", data[:-1]) != check:
            raise BadRecord(f"its column of {field} does not match its check")
        return data

    def __getitem__(self, field: str) -> Sequence:
        """One field of every record, in snapshot order."""
        column = self._decoded.get(field)
        if column is None and field not in self._places:
            column = self._decoded[field] = Coded([_DEFAULTS[field]], bytes(self.count))
        if column is None:
            values = json.loads(self._read(field))
            if type(values) is not list or len(values) != self.count:
                raise BadRecord(f"its column of {field} does not hold {self.count} records")
            column = self._decoded[field] = compact(field, values)
        return column
