"""JSON text as the package writes it: strict (no NaN, no Infinity), configured values echoed."""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import pytest

from pytest_cnnbudget.jsontext import echoed, json_text


def strict(text: str) -> Any:
    """`text` read as strict parsers read it: NaN and Infinity refused."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_json_text_refuses_a_float_that_is_not_finite(value: float) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        json_text({"kwargs": {"nested": [1, value]}})


def test_json_text_is_indented_and_sorted_when_asked() -> None:
    assert json_text({"b": 1, "a": "é"}, sort_keys=True) == '{\n  "a": "\\u00e9",\n  "b": 1\n}'
    assert json_text({"a": "é"}, ascii_only=False) == '{\n  "a": "é"\n}'


def test_echoed_writes_each_non_finite_float_as_its_text_at_any_depth() -> None:
    configured = {
        "max_val": math.inf,
        "min_val": -math.inf,
        "fill": math.nan,
        "eps": 1e-8,
        "betas": (0.9, 0.999),
        "layers": [{"_target_": "torch.nn:Hardtanh", "max_val": math.inf}],
        "flag": True,
        "name": None,
        math.inf: "a Python caller's key",
    }
    shown = echoed(configured)
    assert shown == {
        "max_val": "inf",
        "min_val": "-inf",
        "fill": "nan",
        "eps": 1e-8,
        "betas": [0.9, 0.999],
        "layers": [{"_target_": "torch.nn:Hardtanh", "max_val": "inf"}],
        "flag": True,
        "name": None,
        "inf": "a Python caller's key",
    }
    assert strict(json_text(shown)) == shown


def test_echoed_writes_a_toml_date_or_time_as_its_text() -> None:
    moment = datetime.datetime(1979, 5, 27, 7, 32)
    assert echoed({"at": moment, "on": moment.date(), "time": moment.time()}) == {
        "at": "1979-05-27 07:32:00",
        "on": "1979-05-27",
        "time": "07:32:00",
    }
