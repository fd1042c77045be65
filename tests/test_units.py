"""Quantities as a config writes them, their bounds, and how messages quote configured values."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_cnnbudget.constants import MAX_BUDGET
from pytest_cnnbudget.units import (
    QUOTED_LINES,
    SHOWN_CHARS,
    brief,
    clip,
    clip_lines,
    human_bytes,
    human_count,
    listing,
    parse_bytes,
    parse_count,
    scientific,
    short_count,
    thousands,
)

LARGEST = "a budget is at most 1e18 (1,000,000,000,000,000,000)"


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (600_000, 600_000),
        ("600_000", 600_000),
        ("600k", 600_000),
        ("1.5M", 1_500_000),
        (" 7B ", 7_000_000_000),
        ("2t", 2 * 10**12),
        (1.5e6, 1_500_000),
        (MAX_BUDGET, MAX_BUDGET),
        ("1000000T", MAX_BUDGET),
        ("0.000000000001T", 1),  # exact: no float, no rounding
        ("2e9", 2 * 10**9),
        ("11.5e6", 11_500_000),
        ("1,070,794", 1_070_794),  # as the tables print it
        ("7b", 7 * 10**9),
        ("1.5m", 1_500_000),
        ("2G", 2 * 10**9),  # G and B are both a billion
        ("1.5", 1),  # a fraction rounds down
        (1.5, 1),
        ("1.2345k", 1234),
    ],
)
def test_parse_count(value: object, count: int) -> None:
    assert parse_count(value) == count


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("100MB", 10**8),
        ("1.5GiB", 3 * 2**29),
        (1048576, 2**20),
        ("1KiB", 1024),
        ("1kB", 1000),
        ("1KB", 1000),
        ("1000000TB", 10**18),
        ("47.7MiB", 50_017_075),  # 50,017,075.2, rounded down
        ("26.95 GB", 26_950_000_000),  # as the tables print it
        ("1e9", 10**9),
        ("3 B", 3),
    ],
)
def test_parse_bytes(value: object, size: int) -> None:
    assert parse_bytes(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(float("inf"), "inf is not a finite number; write it like 600_000", id="inf"),
        pytest.param(float("-inf"), "-inf is not a finite number", id="-inf"),
        pytest.param(float("nan"), "nan is not a finite number", id="nan"),
        pytest.param(MAX_BUDGET + 1, f"1000000000000000001 is too large; {LARGEST}", id="1e18+1"),
        pytest.param(
            10**5000, f"<an integer of about 5001 digits> is too large; {LARGEST}", id="huge"
        ),
        pytest.param(-(10**5000), "<an integer of about 5001 digits> must be positive", id="-huge"),
        pytest.param(1e19, f"1e+19 is too large; {LARGEST}", id="float"),
        pytest.param("1000001T", f"'1000001T' is too large; {LARGEST}", id="suffix"),
        pytest.param(
            "9" * 5000,
            f"cannot parse '{'9' * 27}...{'9' * 28}' (5,000 characters); write it like",
            id="5000-digits",
        ),
        pytest.param("1" * 65, "(65 characters); write it like", id="65-characters"),
        # 29 nines: Decimal's default 28-digit context would round this up to a whole 1.
        pytest.param(
            "0." + "9" * 29, "must be positive (rounded down to a whole number)", id="no-rounding"
        ),
        pytest.param(0.5, "0.5 must be positive (rounded down to a whole number)", id="half"),
        pytest.param(0, "0 must be positive", id="zero"),
        pytest.param(True, "got a boolean", id="bool"),
        pytest.param("1e99", f"'1e99' is too large; {LARGEST}", id="exponent"),
        pytest.param("1,07,794", "cannot parse '1,07,794'", id="bad-grouping"),
        pytest.param("5 lots", "cannot parse '5 lots': unknown unit 'lots'", id="unit"),
        pytest.param(None, "got NoneType", id="none"),
    ],
)
def test_parse_count_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_count(value)


@pytest.mark.parametrize(
    ("value", "meant"),
    [("50Mb", "MB"), ("50mb", "MB"), ("5gB", "GB"), ("1kib", "KiB or kiB"), ("2TIB", "TiB")],
)
def test_ambiguous_byte_units_say_what_to_write(value: str, meant: str) -> None:
    ambiguous = "is ambiguous (a lowercase b is a bit, a lowercase m is milli); write "
    with pytest.raises(ValueError, match=re.escape(ambiguous + meant) + "$"):
        parse_bytes(value)


@given(st.integers(min_value=1, max_value=MAX_BUDGET))
def test_every_printed_count_and_size_reads_back_as_a_budget(n: int) -> None:
    assert parse_count(thousands(n)) == n
    for printed in (short_count(n), human_count(n)):
        # Three significant digits: the value printed, read back, is within 1% of n.
        assert parse_count(printed) == pytest.approx(n, rel=0.01, abs=1)
    assert parse_bytes(human_bytes(n)) == pytest.approx(n, rel=0.01, abs=1)


def test_parse_bytes_is_bounded_too() -> None:
    with pytest.raises(ValueError, match=re.escape(f"'1000001TB' is too large; {LARGEST}")):
        parse_bytes("1000001TB")
    with pytest.raises(ValueError, match="inf is not a finite number; write it like '100MB'"):
        parse_bytes(float("inf"))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("short", "'short'", id="as-repr"),
        pytest.param("a\nb\r\u2028\x85\x00", "'a\\nb\\r\\u2028\\x85\\x00'", id="escaped"),
        pytest.param("x" * 100, f"'{'x' * 27}...{'x' * 28}'", id="long-string"),
        pytest.param(list(range(100)), "[0, 1, 2, 3, 4, 5, ...]", id="long-list"),
        pytest.param(10**5000, "<an integer of about 5001 digits>", id="huge-int"),
        pytest.param(12345, "12345", id="int"),
        pytest.param([[[[[[[[1]]]]]]]], "[[[[[[[...]]]]]]]", id="deep"),
    ],
)
def test_brief_is_one_short_line_whatever_the_value(value: object, shown: str) -> None:
    assert brief(value) == shown


def test_listing_shows_what_fits_then_counts_the_rest() -> None:
    keys = [f"k{i}={i}" for i in range(5000)]
    shown = listing(keys)
    assert shown.startswith("k0=0, k1=1, k2=2, ")
    counted = re.fullmatch(r".*, … and ([\d,]+) more", shown)
    assert counted is not None
    assert shown.count("=") == 5000 - int(counted.group(1).replace(",", ""))
    assert len(shown) <= SHOWN_CHARS + len(", … and 5,000 more")
    assert listing(["a: x", "b: y"], "; ") == "a: x; b: y"
    assert listing([]) == ""


def test_listing_clips_one_huge_item_and_still_counts_the_rest() -> None:
    shown = listing(["k" * 20_000, "short"])
    assert shown == "k" * (SHOWN_CHARS - 1) + "…, … and 1 more"


def test_clip_and_clip_lines_bound_each_line_and_their_number() -> None:
    assert clip("short") == "short"
    assert clip("x" * 1000) == "x" * (SHOWN_CHARS - 1) + "…"
    text = "\n".join(["y" * 1000] * (QUOTED_LINES + 12))
    lines = clip_lines(text).splitlines()
    assert len(lines) == QUOTED_LINES + 1
    assert all(len(line) <= SHOWN_CHARS for line in lines)
    assert lines[-1] == "… and 12 more lines"
    assert clip_lines("a\nb") == "a\nb"


@pytest.mark.parametrize(
    ("n", "text"),
    [(10**18, "1e18"), (1_500_000, "1.5e6"), (7, "7e0"), (2**40, "1.099511627776e12")],
)
def test_scientific(n: int, text: str) -> None:
    assert scientific(n) == text
