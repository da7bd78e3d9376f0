"""files.json, the FileRegistry's snapshot: every file record, kept as columns.

Format 2 is a header line, then one JSON array per field of FileEntry (a
column), each followed by a newline:

    {"format":2,"next_id":7,"count":3,"fields":["id",...],"columns":[[0,8,"<xxh3-128>"],...],"check":"<xxh3-128>"}
    [1,4,6]
    ["a.bin","b.bin","logs/c.log"]
    ...

Each column is named by its offsets after the header line and carries the
hash of its bytes; the header ends with a check of itself (see `seal`). An open
reads the whole file and checks every hash, which takes milliseconds for
100,000 files, but decodes only the columns it is asked for: the name index and
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
import re
from collections.abc import Sequence
from operator import attrgetter

from pfs import codec
from dataclasses import fields

from pfs.registry.records import FILE_FIELDS, MAX_INT, BadRecord, FileEntry

#: Each field's value in a record older than the field (only fields with a default were ever added).
_DEFAULTS = {f.name: f.default for f in fields(FileEntry)}

FORMAT = 2

#: The end of a sealed JSON object: `,"check":"<xxh3-128 of everything before it>"}`.
_SEAL = re.compile(rb',"check":"([0-9a-f]{32})"}')
_SEAL_BYTES = 44


def seal(obj_json: bytes) -> bytes:
    """A JSON object with a last member that checksums the rest, so that reading
    it back can prove, at memory speed, that it is byte for byte what pfs wrote."""
    body = obj_json[:-1]
    return body + b',"check":"' + codec.digest("xxh3-128", body).encode() + b'"}'


def is_sealed(data: bytes | memoryview) -> bool:
    """Whether `data` ends with a seal (see `seal`) that matches the rest."""
    check = _SEAL.fullmatch(data, max(0, len(data) - _SEAL_BYTES))
    return check is not None and codec.digest("xxh3-128", memoryview(data)[:-_SEAL_BYTES]) == check[1].decode()


def encode(next_id: int, entries: Sequence[FileEntry]) -> bytes:
    """A format 2 snapshot of `entries`, given in the order they became current."""
    rows = sorted(entries, key=attrgetter("name"))  # stable: one name's records keep their order
    columns = [json.dumps(list(column), separators=(",", ":")).encode() + b"\n"
               for column in zip(*map(attrgetter(*FILE_FIELDS), rows))] if rows else [b"[]\n"] * len(FILE_FIELDS)
    places, offset = [], 0
    for column in columns:
        places.append([offset, offset + len(column) - 1, codec.digest("xxh3-128", column[:-1])])
        offset += len(column)
    header = {"format": FORMAT, "next_id": next_id, "count": len(rows), "fields": FILE_FIELDS, "columns": places}
    return b"".join([seal(json.dumps(header, separators=(",", ":")).encode()), b"\n", *columns])


def _places_ok(places: object) -> bool:
    """Whether a header's "columns" is one [start, stop, hash] per field."""
    return type(places) is list and all(
        type(p) is list and len(p) == 3 and type(p[0]) is int and type(p[1]) is int and type(p[2]) is str
        for p in places)


class Columns:
    """A format 2 snapshot as loaded: each column decoded when first asked for,
    from the bytes that were checked (kept until the Columns are dropped)."""

    def __init__(self, data: bytes) -> None:
        """Check `data` whole (raising BadRecord at the first thing that is off)
        without decoding any column."""
        end = data.find(b"\n")
        header = json.loads(data[:end]) if end > 0 and is_sealed(data[:end]) else None
        names = header.get("fields") if type(header) is dict else None
        if type(names) is not list or not 0 < len(names) <= len(FILE_FIELDS) or names != FILE_FIELDS[:len(names)] \
                or not _places_ok(header.get("columns")) or len(header["columns"]) != len(names) \
                or type(header.get("next_id")) is not int or not 1 <= header["next_id"] <= MAX_INT or \
                type(header.get("count")) is not int:
            raise BadRecord("its header is not one pfs wrote")
        body = memoryview(data)[end + 1:]
        for field, (start, stop, check) in zip(names, header["columns"]):
            if not 0 <= start <= stop < len(body) or body[stop] != ord("\n") or \
                    codec.digest("xxh3-128", body[start:stop]) != check:
                raise BadRecord(f"its column of {field} does not match its check")
        self.next_id: int = header["next_id"]
        self.count: int = header["count"]
        self._body = body
        self._places = dict(zip(names, header["columns"]))
        self._decoded: dict[str, list] = {}
        #: Whether it lacks fields (written before they were added): rewritten at the next close.
        self.outdated = len(names) < len(FILE_FIELDS)

    def __getitem__(self, field: str) -> list:
        """One field of every record, in snapshot order."""
        column = self._decoded.get(field)
        if column is None and field not in self._places:
            column = self._decoded[field] = [_DEFAULTS[field]] * self.count
        if column is None:
            start, stop, _ = self._places[field]
            column = self._decoded[field] = json.loads(bytes(self._body[start:stop]))
            if type(column) is not list or len(column) != self.count:
                raise BadRecord(f"its column of {field} does not hold {self.count} records")
        return column
