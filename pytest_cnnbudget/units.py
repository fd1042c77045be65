"""Parsing and printing of quantities: `"1.5M"` parameters, `"100MB"` of memory, `545,098`. Pure."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_COUNT_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_BYTE_SUFFIX = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_QUANTITY = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9_]+)?)\s*([A-Za-z]*)\s*$")


def _parse(value: object, suffixes: dict[str, int], example: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a number like {example}, got a boolean")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        unit = match.group(2).lower() if match else ""
        if not match or unit not in suffixes:
            raise ValueError(f"cannot parse {value!r}; write it like {example}")
        try:
            number = Decimal(match.group(1).replace("_", "")) * suffixes[unit]
        except InvalidOperation as e:  # pragma: no cover - the regex admits only digits
            raise ValueError(f"cannot parse {value!r}; write it like {example}") from e
    else:
        raise ValueError(f"expected a number like {example}, got {type(value).__name__}")
    if number != number.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number")
    if number <= 0:
        raise ValueError(f"{value!r} must be positive")
    return int(number)


def parse_count(value: object) -> int:
    """`600000`, `"600k"`, `"1.5M"`, `"7B"` → an exact positive integer."""
    return _parse(value, _COUNT_SUFFIX, "600_000, '600k', '1.5M' or '7B'")


def parse_bytes(value: object) -> int:
    """`"100MB"`, `"1.5GiB"`, `1048576` → bytes (MB = 1000², MiB = 1024²)."""
    return _parse(value, _BYTE_SUFFIX, "'100MB', '1.5GiB' or 1048576")


def human_count(n: float) -> str:
    """`6738415616` → `6.74B`; `545098` → `545.1k`; small numbers stay exact."""
    for threshold, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k")):
        if abs(n) >= threshold:
            value = n / threshold
            return f"{value:.2f}{suffix}" if abs(value) < 10 else f"{value:.1f}{suffix}"
    return f"{n:,.0f}"


def human_bytes(n: float) -> str:
    """`26953662464` → `26.95 GB` (decimal units, as cloud and disk vendors quote them)."""
    for threshold, suffix in ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "kB")):
        if abs(n) >= threshold:
            return f"{n / threshold:.2f} {suffix}"
    return f"{n:.0f} B"


def thousands(n: int) -> str:
    """`545098` → `545,098`."""
    return f"{n:,}"


def signed(n: int) -> str:
    """`1234` → `+1,234`; `-5` → `-5`; `0` → `0`."""
    return f"{n:+,}" if n else "0"


def percent(fraction: float) -> str:
    """`0.1234` → `12.3%`."""
    return f"{fraction * 100:.1f}%"
