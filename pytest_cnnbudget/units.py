"""Parsing and printing of quantities: `"1.5M"` parameters, `"100MB"` of memory, `545,098`;
the brief, one-line form in which error messages quote a configured value, and the bounds of
every error text: an item clipped, a list cut short with how many more. Pure."""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Sequence
from decimal import ROUND_FLOOR, Context, Decimal

from .constants import MAX_BUDGET

# Counts: k, M, B or G (both a billion), T, in either case ("7b", "1.5m" are how model sizes are
# written). Bytes: powers of ten kB (or KB), MB, GB, TB and of two KiB, MiB, GiB, TiB, each with
# a capital B (a lowercase b is a bit) and a capital M, G, T (a lowercase m is milli).
_COUNT_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_BYTE_SUFFIX = {
    "": 1,
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "kiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}
# A number as a config or a printed table writes it: `600000`, `600_000`, `1,070,794`, `47.7`,
# `2e9`, `1.5e6`; then an optional unit.
_NUMBER = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9][0-9_]*)(?:\.[0-9_]+)?(?:[eE][+-]?[0-9]+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-z]*)\s*$")
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


# An error text shows each item (a problem, a line of a quoted exception, a list of keys on one
# line) in at most SHOWN_CHARS characters, lists at most SHOWN_LINES problems one a line, and
# quotes at most QUOTED_LINES lines of an exception's message; what is left out is counted,
# "… and 4,980 more". A configuration or `--kwargs` may hold thousands of keys, and one line
# echoing them all (74 KB) helps no one.
SHOWN_CHARS = 400
SHOWN_LINES = 50
QUOTED_LINES = 20


def middle_cut(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, `…` in its middle where it is cut: both ends of a
    path or a node id say which it is (`tests/te…::test_finetuned_cifar`)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 5  # the end says more: a test's name, a file's
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` as an error text shows one item: at most `limit` characters, `…` where it is cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip_lines(text: str, limit: int = SHOWN_CHARS) -> str:
    """A text of several lines (a quoted exception's message) as an error text shows it: each
    line clipped, at most QUOTED_LINES of them, then `… and 12 more lines`."""
    if len(text) <= limit:
        return text
    lines = text.splitlines()
    shown = [clip(line, limit) for line in lines[:QUOTED_LINES]]
    if len(lines) > QUOTED_LINES:
        shown.append(f"… and {len(lines) - QUOTED_LINES:,} more lines")
    return "\n".join(shown)


def listing(items: Sequence[str], separator: str = ", ", limit: int = SHOWN_CHARS) -> str:
    """`items` as an error text lists them on one line: as many as fit in `limit` characters
    (the first always, clipped), then `… and 4,980 more`."""
    shown: list[str] = []
    length = 0
    for item in items:
        text = clip(item, limit)
        length += len(text) + (len(separator) if shown else 0)
        if shown and length > limit:
            break
        shown.append(text)
    left = len(items) - len(shown)
    return separator.join(shown) + (f"{separator}… and {left:,} more" if left else "")


def scientific(n: int) -> str:
    """`10**18` → `1e18`; `1_500_000` → `1.5e6`."""
    mantissa, _, exponent = f"{Decimal(n).normalize():e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


_LARGEST = f"{scientific(MAX_BUDGET)} ({MAX_BUDGET:,})"


def _unit(text: str, suffixes: dict[str, int], example: str) -> int:
    """The factor of a unit as written; ValueError for one that is not in the grammar."""
    if suffixes is _COUNT_SUFFIX:
        factor = suffixes.get(text.lower())
    else:
        factor = suffixes.get(text)
        meant = [unit for unit in suffixes if unit and unit.lower() == text.lower()]
        if factor is None and meant:
            raise ValueError(
                f"{text!r} is ambiguous (a lowercase b is a bit, a lowercase m is milli); "
                f"write {' or '.join(meant)}"
            )
    if factor is None:
        raise ValueError(f"unknown unit {text!r}; write it like {example}")
    return factor


def _parse(value: object, suffixes: dict[str, int], example: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a number like {example}, got a boolean")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number; write it like {example}")
        exact = Decimal(value)
    elif isinstance(value, int):
        exact = Decimal(value)
    elif isinstance(value, str):
        too_long = len(value) > _MAX_QUANTITY_TEXT
        match = None if too_long else _QUANTITY.match(value)
        if not match:
            length = f" ({len(value):,} characters)" if too_long else ""
            raise ValueError(f"cannot parse {brief(value)}{length}; write it like {example}")
        try:
            factor = _unit(match.group(2), suffixes, example)
        except ValueError as e:
            raise ValueError(f"cannot parse {brief(value)}: {e}") from e
        number = Decimal(match.group(1).replace("_", "").replace(",", ""))
        if number.adjusted() > 40:  # an exponent past any budget: not worth multiplying out
            raise ValueError(f"{brief(value)} is too large; a budget is at most {_LARGEST}")
        exact = _EXACT.multiply(number, factor)
    else:
        raise ValueError(f"expected a number like {example}, got {type(value).__name__}")
    if exact > MAX_BUDGET:
        raise ValueError(f"{brief(value)} is too large; a budget is at most {_LARGEST}")
    # A fraction of an element or a byte rounds down: "47.7MiB" is 50,017,075 bytes.
    whole = int(exact.to_integral_value(rounding=ROUND_FLOOR))
    if whole <= 0:
        rounded = " (rounded down to a whole number)" if exact > 0 else ""
        raise ValueError(f"{brief(value)} must be positive{rounded}")
    return whole


def parse_count(value: object) -> int:
    """`600000`, `"600k"`, `"1.5M"`, `"7B"`, `"2e9"`, `"1,070,794"` → a positive integer; a
    fraction rounds down."""
    return _parse(value, _COUNT_SUFFIX, "600_000, '600k', '1.5M', '7B' or '2e9'")


def parse_bytes(value: object) -> int:
    """`"100MB"`, `"1.5GiB"`, `1048576` → bytes (MB = 1000², MiB = 1024²); a fraction of a byte
    rounds down, `"47.7MiB"` is 50,017,075."""
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


# Decimal byte units, largest first, as memory figures are shown and budgets suggested.
BYTE_UNITS = ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "kB"), (1, "B"))


def short_bytes(n: float) -> str:
    """`52000000` → `52.0 MB`, `36693416` → `36.7 MB`, `108.9e9` → `109 GB`: three significant
    digits, decimal units, as a table cell or a budget shows memory."""
    for i, (threshold, suffix) in enumerate(BYTE_UNITS):
        if abs(n) >= threshold or threshold == 1:
            value = n / threshold
            # Three significant digits, counted after rounding: 9,999,999 is 10.0 MB.
            for digits in (2, 1, 0) if threshold > 1 else (0,):
                text = f"{value:.{digits}f}"
                if abs(float(text)) < 10 ** (3 - digits):
                    break
            if i and abs(float(text)) >= 1000:  # 999,500 B rounds to 1.00 MB, not 1000 kB
                return short_bytes(BYTE_UNITS[i - 1][0] * (1 if n >= 0 else -1))
            return f"{text} {suffix}"
    raise AssertionError("unreachable")


def thousands(n: int) -> str:
    """`545098` → `545,098`."""
    return f"{n:,}"


def signed(n: int) -> str:
    """`1234` → `+1,234`; `-5` → `-5`; `0` → `0`."""
    return f"{n:+,}" if n else "0"


def percent(fraction: float) -> str:
    """`0.1234` → `12.3%`."""
    return f"{fraction * 100:.1f}%"
