"""Quantities as a config writes them, their bounds, and how messages quote configured values."""

from __future__ import annotations

import re

import pytest

from pytest_cnnbudget.constants import MAX_BUDGET
from pytest_cnnbudget.units import brief, parse_bytes, parse_count, scientific

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
        ("1kib", 1024),
        ("1000000TB", 10**18),
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
        # 29 nines: Decimal's default 28-digit context would round this to a whole 1.
        pytest.param("0." + "9" * 29, "is not a whole number", id="no-rounding"),
        pytest.param("1.5", "'1.5' is not a whole number", id="fraction"),
        pytest.param(0, "0 must be positive", id="zero"),
        pytest.param(True, "got a boolean", id="bool"),
        pytest.param("1e6", "cannot parse '1e6'", id="exponent-text"),
        pytest.param("5 lots", "cannot parse '5 lots'", id="unit"),
        pytest.param(None, "got NoneType", id="none"),
    ],
)
def test_parse_count_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_count(value)


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


@pytest.mark.parametrize(
    ("n", "text"),
    [(10**18, "1e18"), (1_500_000, "1.5e6"), (7, "7e0"), (2**40, "1.099511627776e12")],
)
def test_scientific(n: int, text: str) -> None:
    assert scientific(n) == text
