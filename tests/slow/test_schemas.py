"""Every JSON output against the JSON Schema it names, from real gate sessions, pytest-json-report
and the command line; and the schemas themselves: valid, and able to refuse a wrong document."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from project import NETS_SOURCE
from schemas import NAMES, problems, schema


def test_the_schemas_are_valid_and_each_has_its_own_id() -> None:
    ids = []
    for name in NAMES:
        Draft202012Validator.check_schema(schema(name))
        ids.append(schema(name)["$id"])
    assert len(set(ids)) == len(NAMES)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One gate session's JSON report, json-report file, snapshot and the CLI's JSON, from a
    project with a profiled model whose memory is measured, a plain one and a broken one."""
    root = tmp_path_factory.mktemp("schemas")
    (root / "nets.py").write_text(NETS_SOURCE, encoding="utf-8")
    (root / "pyproject.toml").write_text(
        "[tool.cnnbudget.models.cifar]\n"
        'target = "nets:Cifar"\nmax_params = "600k"\ninput_shape = [8, 3, 32, 32]\n'
        'max_train_memory = "1GB"\n\n'
        '[tool.cnnbudget.models.tiny]\ntarget = "nets:Tiny"\nmax_params = 1000\n\n'
        '[tool.cnnbudget.models.broken]\ntarget = "nets:exploding"\nmax_params = 10\n',
        encoding="utf-8",
    )

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *argv], cwd=root, capture_output=True, text=True, check=False
        )

    run("-m", "pytest", "--cnn-budget-update", "-p", "no:cacheprovider")
    run(
        "-m",
        "pytest",
        "--cnn-budget",
        "-p",
        "no:cacheprovider",
        "--cnn-budget-json=out.json",
        "--json-report",
        "--json-report-file=report.json",
    )
    cli = run("-m", "pytest_cnnbudget", "summary", "cifar", "--memory", "--format", "json")
    target = run("-m", "pytest_cnnbudget", "summary", "nets:Tiny", "--format", "json")
    read = json.loads
    return {
        "report": read((root / "out.json").read_text(encoding="utf-8")),
        "json_report": read((root / "report.json").read_text(encoding="utf-8")),
        "snapshot": read((root / "cnnbudget.snapshot.json").read_text(encoding="utf-8")),
        "cli": read(cli.stdout),
        "cli_target": read(target.stdout),
    }


def test_the_json_report_matches_its_schema(outputs: dict[str, Any]) -> None:
    report = outputs["report"]
    assert problems(report, "report") == []
    assert sorted(report["models"]) == ["broken", "cifar", "tiny"]
    assert report["models"]["broken"]["measurement"] is None
    assert report["models"]["cifar"]["measurement"]["memory"]["peak_train"] > 0


def test_json_report_metadata_is_the_same_model_structure(outputs: dict[str, Any]) -> None:
    tests = outputs["json_report"]["tests"]
    metadata = {t["nodeid"]: t["metadata"]["cnn_budget"] for t in tests}
    assert len(metadata) == 3
    for meta in metadata.values():
        assert problems(meta, "model") == []
    # One vocabulary: the metadata of each model is its entry in the JSON report.
    assert {m["model"]: m for m in metadata.values()} == outputs["report"]["models"]


def test_the_snapshot_and_the_cli_match_their_schemas(outputs: dict[str, Any]) -> None:
    assert problems(outputs["snapshot"], "snapshot") == []
    assert problems(outputs["cli"], "summary") == []
    assert problems(outputs["cli_target"], "summary") == []
    assert outputs["cli"]["model"] == "cifar"
    assert outputs["cli_target"]["model"] is None
    # The command line's measurement is the gate's, key for key.
    gate = outputs["report"]["models"]["cifar"]["measurement"]
    cli = {k: v for k, v in outputs["cli"].items() if k in gate}
    assert cli == gate


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (
            lambda m: m["measurement"]["compute"]["inputs"].update(args=["8×3×32×32"]),
            "'8×3×32×32' is not of type 'array'",
        ),
        (lambda m: m["measurement"]["totals"].update(params=545098.5), "is not of type 'integer'"),
        (lambda m: m.update(budget=600000), "Unevaluated|Additional properties"),
        (lambda m: m.pop("notes"), "'notes' is a required property"),
        (lambda m: m.update(schema="pytest-cnnbudget/model/1"), "was expected"),
    ],
)
def test_a_wrong_document_is_refused(outputs: dict[str, Any], change: Any, complaint: str) -> None:
    model = copy.deepcopy(outputs["report"]["models"]["cifar"])
    change(model)
    found = problems(model, "model")
    assert found, "the schema accepted a wrong document"
    assert any(re.search(complaint, line) for line in found), found


def test_a_snapshot_with_a_float_count_is_refused(outputs: dict[str, Any]) -> None:
    snapshot = copy.deepcopy(outputs["snapshot"])
    snapshot["models"]["cifar"]["total"] = 1.5
    assert problems(snapshot, "snapshot") != []
