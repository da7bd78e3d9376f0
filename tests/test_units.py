"""pfs.units: sizes as people type them and as pfs prints them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfs.units import format_rate, format_size, parse_size

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize("text, expected", [
    ("0", 0),
    ("1", 1),
    ("123", 123),
    ("512k", 512 * KiB),
    ("512K", 512 * KiB),
    ("512kb", 512 * KiB),
    ("512KiB", 512 * KiB),
    ("4M", 4 * MiB),
    ("4m", 4 * MiB),
    ("4MB", 4 * MiB),
    ("4MiB", 4 * MiB),
    ("4mib", 4 * MiB),
    ("1G", GiB),
    ("1GiB", GiB),
    ("2T", 2 * TiB),
    ("1.5M", 3 * MiB // 2),
    ("0.5k", 512),
    (" 64K ", 64 * KiB),
    ("4 M", 4 * MiB),
    ("7b", 7),
    ("7B", 7),
])
def test_parse_size_accepts_what_people_write(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", [
    "", " ", "abc", "M", "k4", "-1", "-4M", "+4M", "4X", "4 MM", "4MiBs", "1e3", "0x10",
    "4,5M", "4M4", "four", "4.M", "∞", "M4",
])
def test_parse_size_rejects_garbage_with_value_error(text):
    with pytest.raises(ValueError) as info:
        parse_size(text)
    message = str(info.value)
    assert "\n" not in message
    assert repr(text) in message, "the message should quote the bad input"


@given(st.integers(min_value=0, max_value=1 << 50))
def test_plain_byte_counts_parse_to_themselves(n):
    assert parse_size(str(n)) == n


@given(st.integers(min_value=0, max_value=4096), st.sampled_from(["k", "M", "G", "KiB", "MiB", "GiB", "kb", "mb"]))
def test_suffixes_are_binary_multiples(n, suffix):
    factor = {"k": KiB, "m": MiB, "g": GiB}[suffix[0].lower()]
    assert parse_size(f"{n}{suffix}") == n * factor


@pytest.mark.parametrize("n, expected", [
    (0, "0 B"),
    (1, "1 B"),
    (1023, "1023 B"),
    (1024, "1.0 KiB"),
    (1536, "1.5 KiB"),
    (4 * MiB, "4.0 MiB"),
    (3 * GiB // 2, "1.5 GiB"),
    (5 * TiB, "5.0 TiB"),
    (2048 * TiB, "2048.0 TiB"),  # TiB is the largest unit: no PiB
])
def test_format_size(n, expected):
    assert format_size(n) == expected


@given(st.integers(min_value=0, max_value=1 << 45))
def test_format_size_round_trips_within_its_precision(n):
    text = format_size(n)
    number, unit = text.split()
    back = parse_size(number + {"B": "", "KiB": "k", "MiB": "M", "GiB": "G", "TiB": "T"}[unit])
    # one decimal of the unit: within 0.05 of a unit (plus float truncation)
    unit_bytes = {"B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": TiB}[unit]
    assert abs(back - n) <= unit_bytes * 0.05 + 1


def test_format_rate():
    assert format_rate(4 * MiB, 1.0) == "4.0 MiB/s"
    assert format_rate(4 * MiB, 2.0) == "2.0 MiB/s"
    assert format_rate(0, 0.0) == "0 B/s"  # no division by zero for an instant job
