"""Parsing and printing of quantities: `"1.5M"` parameters, `"100MB"` of memory, `545,098`;
and the brief, one-line form in which error messages quote a configured value. Pure."""

from __future__ import annotations

import math
import re
import reprlib
from decimal import Context, Decimal

from .constants import MAX_BUDGET

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
# No budget needs more: 10**18 written with a separator every digit is 37 characters. Checked
# before the regex and Decimal see the text, which int() refuses past 4,300 digits.
_MAX_QUANTITY_TEXT = 64
# Exact for any text within that length times any suffix; the default context rounds at 28 digits,
# which would turn 0.999…9 (29 nines) into a whole 1.
_EXACT = Context(prec=2 * _MAX_QUANTITY_TEXT)


class _Brief(reprlib.Repr):
    """repr() cut short: long strings and containers elided, huge integers described, and (as
    repr always does) newlines and other unprintable characters escaped."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = 60
        self.maxother = 60

    def repr_int(self, x: int, level: int) -> str:
        # repr() itself raises ValueError past 4,300 digits, so describe rather than show.
        if x.bit_length() > 4 * self.maxlong:
            return f"<an integer of about {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


_BRIEF = _Brief()


def brief(value: object) -> str:
    """`value` as an error message quotes it: repr() on one line of at most about 60 characters."""
    return _BRIEF.repr(value)


def scientific(n: int) -> str:
    """`10**18` → `1e18`; `1_500_000` → `1.5e6`."""
    mantissa, _, exponent = f"{Decimal(n).normalize():e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


_LARGEST = f"{scientific(MAX_BUDGET)} ({MAX_BUDGET:,})"


def _parse(value: object, suffixes: dict[str, int], example: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a number like {example}, got a boolean")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number; write it like {example}")
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str):
        too_long = len(value) > _MAX_QUANTITY_TEXT
        match = None if too_long else _QUANTITY.match(value)
        unit = match.group(2).lower() if match else ""
        if not match or unit not in suffixes:
            length = f" ({len(value):,} characters)" if too_long else ""
            raise ValueError(f"cannot parse {brief(value)}{length}; write it like {example}")
        exact = _EXACT.multiply(Decimal(match.group(1).replace("_", "")), suffixes[unit])
        if exact != exact.to_integral_value():
            raise ValueError(f"{value!r} is not a whole number")
        number = int(exact)
    else:
        raise ValueError(f"expected a number like {example}, got {type(value).__name__}")
    if number <= 0:
        raise ValueError(f"{brief(value)} must be positive")
    if number > MAX_BUDGET:
        raise ValueError(f"{brief(value)} is too large; a budget is at most {_LARGEST}")
    return number


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


def short_count(n: int) -> str:
    """`1070794` → `1.07M`, `600000` → `600k`, `1000` → `1k`: three significant digits, no
    trailing zeros, a suffix a budget may be written with."""
    for threshold, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k")):
        if abs(n) >= threshold:
            value = n / threshold
            digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
            text = f"{value:.{digits}f}"
            return (text.rstrip("0").rstrip(".") if "." in text else text) + suffix
    return f"{n:,}"


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
