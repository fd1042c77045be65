"""Trend data for charts over commits: `--cnn-budget-benchmark-json` in github-action-benchmark's
`customSmallerIsBetter` format, one entry per model and figure, equal to the JSON report's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from project import CIFAR, TINY, Project

from pytest_cnnbudget.report.trend import trend_entries
from pytest_cnnbudget.results import ModelResult, Outcome, ParameterCount, SnapshotStatus
from pytest_cnnbudget.run.outputs import output_problems

SHAPE = [2, 3, 32, 32]


def expected_entries(report: dict[str, Any]) -> list[dict[str, Any]]:
    """What the trend data must hold, read from the JSON report of the same run."""
    entries = []
    for name, model in sorted(report["models"].items()):
        measurement = model["measurement"]
        if measurement is None:
            continue
        totals, compute, memory = (measurement[k] for k in ("totals", "compute", "memory"))
        figures = [
            ("trainable parameters", "parameters", totals["trainable"]),
            ("total parameters", "parameters", totals["params"]),
        ]
        if compute is not None:
            figures.append(("MACs", "MACs", compute["macs"]))
        if memory is not None:
            figures.append(("peak training memory", "bytes", memory["peak_train"]))
            figures.append(("peak inference memory", "bytes", memory["peak_inference"]))
        entries += [
            {"name": f"{name}: {figure}", "unit": unit, "value": value, "extra": model["target"]}
            for figure, unit, value in figures
        ]
    return entries


@pytest.mark.parametrize("xdist", [False, True], ids=["local", "xdist"])
def test_every_measured_figure_is_an_entry_equal_to_the_json_reports(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    Project(
        pytester,
        cifar={**CIFAR, "input_shape": SHAPE, "max_train_memory": "1GB"},
        tiny=TINY,
        broken={"target": "nowhere:Net", "max_params": 10},
        top={"snapshot": False},
    )
    args = [
        "--cnn-budget",
        "--cnn-budget-json=report.json",
        "--cnn-budget-benchmark-json=trend.json",
    ]
    result = pytester.runpytest(*args, *(["-n", "2"] if xdist else []))
    result.assert_outcomes(passed=2, failed=1)
    trend = json.loads((pytester.path / "trend.json").read_text(encoding="utf-8"))
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    assert trend == expected_entries(report)
    # github-action-benchmark reads an array of {name, value, unit} (range, extra optional).
    assert [entry["name"] for entry in trend] == [
        "cifar: trainable parameters",
        "cifar: total parameters",
        "cifar: MACs",
        "cifar: peak training memory",
        "cifar: peak inference memory",
        "tiny: trainable parameters",
        "tiny: total parameters",
    ]
    assert all(isinstance(entry["value"], int) and entry["value"] > 0 for entry in trend)
    assert trend[0]["value"] == 545_098


def test_a_model_without_a_measurement_has_no_entries_and_models_come_by_name() -> None:
    def result(name: str, count: ParameterCount | None) -> ModelResult:
        outcome = Outcome.PASSED if count is not None else Outcome.ERROR
        return ModelResult(name, "nets:Net", "error", outcome, SnapshotStatus.MISSING, count)

    count = ParameterCount(total=10, trainable=7, frozen=3, buffers=0, layers=())
    entries = trend_entries([result("zeta", count), result("alpha", None), result("beta", count)])
    assert [(e["name"], e["value"]) for e in entries] == [
        ("beta: trainable parameters", 7),
        ("beta: total parameters", 10),
        ("zeta: trainable parameters", 7),
        ("zeta: total parameters", 10),
    ]


def test_a_trend_output_that_could_never_be_written_is_refused_before_the_run(
    tmp_path: Path, pytester: pytest.Pytester
) -> None:
    (tmp_path / "out").mkdir()
    problems = output_problems(tmp_path, None, None, None, None, benchmark_option="out")
    assert problems == ["--cnn-budget-benchmark-json 'out' names a folder, not a file"]

    Project(pytester, tiny=TINY, top={"snapshot": False})
    (pytester.path / "trend").mkdir()
    result = pytester.runpytest("--cnn-budget", "--cnn-budget-benchmark-json=trend")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--cnn-budget-benchmark-json 'trend' names a folder, not a file*"]
    )
