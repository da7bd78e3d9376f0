"""How the benchmark writes figures: sizes, times, spreads, and the console it prints on."""

from __future__ import annotations

import sys

from rich.console import Console

MiB = 1 << 20
GiB = 1 << 30
console = Console(highlight=False, width=None if sys.stdout.isatty() else 180)


def size_text(n: float) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def time_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.3f} s"
    return f"{seconds * 1000:.1f} ms" if seconds >= 0.001 else f"{seconds * 1e6:.0f} µs"


def value_text(value: float, unit: str) -> str:
    return {"×": f"{value:.2f}×", "s": time_text(value), "MiB": f"{value:.1f} MiB"}[unit]


def spread_text(spread: float | None) -> str:
    return "-" if spread is None else f"{spread:.0%}"
