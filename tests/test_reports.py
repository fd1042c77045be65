"""Counts in machine-readable reports, and parallel runs with pytest-xdist."""

from __future__ import annotations

import json

import pytest

# In-process pytester runs restore sys.modules; torch cannot be imported twice in one process.
import torch  # noqa: F401
from gate_project import CIFAR, TINY, make_project

FROZEN = '[tool.cnnbudget.models.frozen]\ntarget = "nets:Tiny"\nmax_params = 5\nlevel = "warn"\n'


def test_json_report_metadata(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY)
    pytester.runpytest("--cnn-budget-update").assert_outcomes(passed=2)
    result = pytester.runpytest(
        "--cnn-budget", "--json-report", "--json-report-file=report.json", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    tests = {t["nodeid"]: t for t in report["tests"]}
    meta = tests["pyproject.toml::cnn_budget[cifar]"]["metadata"]["cnn_budget"]
    assert meta["trainable"] == meta["total"] == 545_098
    assert (meta["frozen"], meta["buffers"], meta["budget"], meta["snapshot"]) == (
        0,
        0,
        600_000,
        "ok",
    )
    assert [(row["name"], row["params"]) for row in meta["layers"]] == [
        ("conv1", 896),
        ("conv2", 18_496),
        ("fc1", 524_416),
        ("fc2", 1_290),
    ]
    assert meta["layers"][2]["formula"] == "4096×128 + 128"


def test_json_report_metadata_under_xdist(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY, top="snapshot = false\n")
    result = pytester.runpytest_subprocess(
        "--cnn-budget", "-n", "2", "--json-report", "--json-report-file=report.json"
    )
    result.assert_outcomes(passed=2)
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    totals = {t["nodeid"]: t["metadata"]["cnn_budget"]["total"] for t in report["tests"]}
    assert totals == {
        "pyproject.toml::cnn_budget[cifar]": 545_098,
        "pyproject.toml::cnn_budget[tiny]": 72,
    }


def test_cnn_budget_json_report(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY, FROZEN, top="snapshot = false\n")
    result = pytester.runpytest("--cnn-budget", "--cnn-budget-json", "out/budget.json")
    result.assert_outcomes(passed=3)
    data = json.loads((pytester.path / "out" / "budget.json").read_text(encoding="utf-8"))
    assert data["version"] == 1
    assert data["passed"] is True
    assert sorted(data["models"]) == ["cifar", "frozen", "tiny"]
    assert data["models"]["frozen"]["outcome"] == "warned"
    assert data["models"]["cifar"]["budgets"] == {
        "max_params": {"limit": 600_000, "actual": 545_098}
    }


def _run(pytester: pytest.Pytester, *args: str) -> tuple[bytes, str]:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    snapshot = (pytester.path / "cnnbudget.snapshot.json").read_bytes()
    summary = result.stdout.str()
    section = summary[summary.index("= cnn-budget =") :].split("\n", 1)[1]
    return snapshot, section.split("===")[0].strip()


def test_xdist_gives_the_same_results_and_a_byte_identical_snapshot(
    pytester: pytest.Pytester,
) -> None:
    tables = [
        f'[tool.cnnbudget.models.m{i}]\ntarget = "nets:Tiny"\nkwargs = {{ width = {i + 1} }}\n'
        f"max_params = 100\n"
        for i in range(6)
    ]
    make_project(pytester, CIFAR, *tables)
    serial_snapshot, serial_summary = _run(pytester, "--cnn-budget-update")
    (pytester.path / "cnnbudget.snapshot.json").unlink()
    parallel_snapshot, parallel_summary = _run(pytester, "--cnn-budget-update", "-n", "2")
    assert parallel_snapshot == serial_snapshot
    assert parallel_summary == serial_summary
    # A plain parallel run agrees with the snapshot it wrote.
    check = pytester.runpytest_subprocess("--cnn-budget", "-n", "2", "-p", "no:cacheprovider")
    check.assert_outcomes(passed=7)


def test_xdist_partial_update_keeps_other_entries(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY)
    pytester.runpytest_subprocess("--cnn-budget-update", "-n", "2").assert_outcomes(passed=2)
    before = json.loads((pytester.path / "cnnbudget.snapshot.json").read_text(encoding="utf-8"))
    text = (pytester.path / "pyproject.toml").read_text(encoding="utf-8")
    (pytester.path / "pyproject.toml").write_text(
        text.replace('target = "nets:Tiny"', 'target = "nets:Tiny"\nkwargs = { width = 4 }'),
        encoding="utf-8",
    )
    pytester.runpytest_subprocess("--cnn-budget-update", "-n", "2", "-k", "tiny").assert_outcomes(
        passed=1
    )
    after = json.loads((pytester.path / "cnnbudget.snapshot.json").read_text(encoding="utf-8"))
    assert after["models"]["cifar"] == before["models"]["cifar"]
    assert after["models"]["tiny"]["total"] == 20
