"""Counts in machine-readable reports, and parallel runs with pytest-xdist, in real sessions.

The JSON structures themselves are tested directly in test_render.py; here, that they reach
pytest-json-report and `--cnn-budget-json` from a real run, with and without xdist.
"""

from __future__ import annotations

import json
from typing import Any

import nets
import pytest

# Importing project loads torch first: in-process pytester runs restore sys.modules, and torch
# cannot be imported twice in one process.
from project import CIFAR, TINY, Project
from schemas import problems


def read_json(project: Project, name: str) -> Any:
    return json.loads((project.path / name).read_text(encoding="utf-8"))


def test_json_report_metadata(pytester: pytest.Pytester) -> None:
    project = Project(pytester, cifar=CIFAR, tiny=TINY)
    project.accept()
    result = pytester.runpytest(
        "--cnn-budget", "--json-report", "--json-report-file=report.json", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)
    tests = {t["nodeid"]: t for t in read_json(project, "report.json")["tests"]}
    meta = tests["pyproject.toml::cnn_budget[cifar]"]["metadata"]["cnn_budget"]
    assert problems(meta, "model") == []
    totals = meta["measurement"]["totals"]
    assert totals["trainable"] == totals["params"] == nets.CIFAR_PARAMS
    assert (totals["frozen"], totals["buffers"], meta["snapshot"]) == (0, 0, "ok")
    assert meta["budgets"] == {
        "max_params": {"limit": 600_000, "actual": nets.CIFAR_PARAMS, "over": False}
    }
    layers = meta["measurement"]["layers"]
    assert [(row["name"], row["params"]) for row in layers] == [
        ("conv1", 896),
        ("conv2", 18_496),
        ("fc1", 524_416),
        ("fc2", 1_290),
    ]
    assert layers[2]["formula"] == "4096×128 + 128"


# BatchNorm's running mean and variance (float32) and its batch counter (int64) are buffers.
NORMED = {"target": "nets:Normed", "max_buffers": 100, "max_buffer_bytes": "1KiB"}


@pytest.mark.parametrize(
    "xdist", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["in-process", "xdist"]
)
def test_both_json_reports_carry_the_buffer_budgets(pytester: pytest.Pytester, xdist: bool) -> None:
    project = Project(pytester, top={"snapshot": False}, normed=NORMED, cifar=CIFAR, tiny=TINY)
    reports = ["--json-report", "--json-report-file=report.json", "--cnn-budget-json=budget.json"]
    if xdist:
        # Workers count; the metadata and the controller's report travel back in test reports.
        result = pytester.runpytest_subprocess("--cnn-budget", "-n", "2", *reports)
    else:
        result = pytester.runpytest("--cnn-budget", "-p", "no:cacheprovider", *reports)
    result.assert_outcomes(passed=3)
    buffers = list(nets.Normed().buffers())
    budgets = {
        "max_buffers": {"limit": 100, "actual": sum(b.numel() for b in buffers), "over": False},
        "max_buffer_bytes": {
            "limit": 1024,
            "actual": sum(b.numel() * b.element_size() for b in buffers),
            "over": False,
        },
    }
    tests = read_json(project, "report.json")["tests"]
    metadata = {t["nodeid"]: t["metadata"]["cnn_budget"] for t in tests}
    by_model = read_json(project, "budget.json")["models"]
    for meta in (metadata["pyproject.toml::cnn_budget[normed]"], by_model["normed"]):
        assert meta["budgets"] == budgets
        totals = meta["measurement"]["totals"]
        assert totals["buffers"] == budgets["max_buffers"]["actual"]
        assert totals["buffer_bytes"] == budgets["max_buffer_bytes"]["actual"]
    # Every model's counts arrive, not only the one with buffers.
    total = {node: meta["measurement"]["totals"]["params"] for node, meta in metadata.items()}
    assert total == {
        "pyproject.toml::cnn_budget[normed]": sum(p.numel() for p in nets.Normed().parameters()),
        "pyproject.toml::cnn_budget[cifar]": nets.CIFAR_PARAMS,
        "pyproject.toml::cnn_budget[tiny]": sum(p.numel() for p in nets.Tiny().parameters()),
    }
    assert by_model == {meta["model"]: meta for meta in metadata.values()}


def test_cnn_budget_json_report(pytester: pytest.Pytester) -> None:
    frozen = {**TINY, "max_params": 5, "level": "warn"}
    project = Project(pytester, top={"snapshot": False}, cifar=CIFAR, tiny=TINY, frozen=frozen)
    result = pytester.runpytest("--cnn-budget", "--cnn-budget-json", "out/budget.json")
    result.assert_outcomes(passed=3)
    data = read_json(project, "out/budget.json")
    assert data["schema"] == "pytest-cnnbudget/report/2"
    assert problems(data, "report") == []
    assert data["passed"] is True
    assert sorted(data["models"]) == ["cifar", "frozen", "tiny"]
    assert data["models"]["frozen"]["outcome"] == "warned"
    assert data["models"]["cifar"]["budgets"] == {
        "max_params": {"limit": 600_000, "actual": nets.CIFAR_PARAMS, "over": False}
    }


def _run(pytester: pytest.Pytester, *args: str) -> tuple[bytes, str]:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    snapshot = (pytester.path / "cnnbudget.snapshot.json").read_bytes()
    summary = result.stdout.str()
    section = summary[summary.index("= cnn-budget =") :].split("\n", 1)[1]
    return snapshot, section.split("===")[0].strip()


@pytest.mark.slow
def test_xdist_gives_the_same_results_and_a_byte_identical_snapshot(
    pytester: pytest.Pytester,
) -> None:
    widths = {f"m{i}": {**TINY, "kwargs": {"width": i + 1}, "max_params": 100} for i in range(6)}
    project = Project(pytester, cifar=CIFAR, **widths)
    serial_snapshot, serial_summary = _run(pytester, "--cnn-budget-update")
    project.snapshot.unlink()
    parallel_snapshot, parallel_summary = _run(pytester, "--cnn-budget-update", "-n", "2")
    assert parallel_snapshot == serial_snapshot
    assert parallel_summary == serial_summary
    # A plain parallel run agrees with the snapshot it wrote.
    check = pytester.runpytest_subprocess("--cnn-budget", "-n", "2", "-p", "no:cacheprovider")
    check.assert_outcomes(passed=7)


@pytest.mark.slow
def test_xdist_partial_update_keeps_other_entries(pytester: pytest.Pytester) -> None:
    project = Project(pytester, cifar=CIFAR, tiny=TINY)
    pytester.runpytest_subprocess("--cnn-budget-update", "-n", "2").assert_outcomes(passed=2)
    before = project.stored()
    project.set("tiny", kwargs={"width": 4})
    pytester.runpytest_subprocess("--cnn-budget-update", "-n", "2", "-k", "tiny").assert_outcomes(
        passed=1
    )
    after = project.stored()
    assert after["models"]["cifar"] == before["models"]["cifar"]
    assert after["models"]["tiny"]["total"] == sum(p.numel() for p in nets.Tiny(4).parameters())
