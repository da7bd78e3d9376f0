"""Sizes as people write them ("4M", "1GiB", "512k") and as pfs prints them."""

import re

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse a byte count; suffixes are binary (k = 1024) and case-insensitive."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 512k, 4M, 1GiB or plain bytes)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def format_size(n: float) -> str:
    """Human-readable binary size: 0 B, 1023 B, 4.0 MiB, 1.5 GiB."""
    if n < 1024:
        return f"{int(n)} B"
    power = (int(n).bit_length() - 1) // 10
    if power > 4:
        power = 4
    return f"{n / (1 << 10 * power):.1f} {_NAMES[power]}"


_NAMES = ("B", "KiB", "MiB", "GiB", "TiB")


def format_option(n: int) -> str:
    """A size as an option value pfs accepts: "128M", "1536k", "100"."""
    for suffix, factor in (("G", 1 << 30), ("M", 1 << 20), ("k", 1 << 10)):
        if n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


def format_rate(nbytes: int, seconds: float) -> str:
    """Throughput such as "312.4 MiB/s"."""
    return f"{format_size(nbytes / max(seconds, 1e-9))}/s"
