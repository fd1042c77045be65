"""`cnnbudget merge`: the JSON reports of a gate run split over several jobs, joined into the
report, job summary and comment one run writes. End to end with real pytest runs of one
throwaway project (unsharded, in two and in three `-k` shards, from another config, in another
environment) and the command as a subprocess; the pure join (run/shards.py) directly."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from project import NETS_SOURCE, toml_text
from schemas import problems

from pytest_cnnbudget.config.files import Configs
from pytest_cnnbudget.config.spec import ModelSpec, Order
from pytest_cnnbudget.errors import CommandLineError
from pytest_cnnbudget.inputs import parse_input_shape
from pytest_cnnbudget.jsontext import json_text
from pytest_cnnbudget.report.json import REPORT_SCHEMA, model_dict
from pytest_cnnbudget.results import (
    MemoryOptions,
    ModelResult,
    Outcome,
    SnapshotEntry,
    SnapshotLayer,
    SnapshotStatus,
)
from pytest_cnnbudget.run.collected import Collected
from pytest_cnnbudget.run.gate import check_model
from pytest_cnnbudget.run.shard_merge import merge_shards
from pytest_cnnbudget.run.shards import (
    Shard,
    ShardConfig,
    not_checked,
    read_shard,
    run_shard,
    shard_dict,
)
from pytest_cnnbudget.run.start import RunOptions
from pytest_cnnbudget.snapshot.compare import Change
from pytest_cnnbudget.snapshot.store import write_snapshot

# A model whose size a job's environment decides: two jobs that disagree check it differently.
SIZED = """\
import os

from torch import nn


def tiny():
    width = int(os.environ.get("TINY_WIDTH", "8"))
    return nn.Linear(width, width)
"""
FIXTURE_TEST = """\
import nets


def test_fixture(cnn_budget):
    cnn_budget(nets.Tiny(4), max_params=100)
"""
# Once the snapshot is accepted: a fixture check it holds no entry for, and a test whose entry
# stays though it checks nothing now (its test still exists).
LATER_TESTS = """

def test_new(cnn_budget):
    cnn_budget(nets.Tiny(2), max_params=100)


def test_plain():
    pass
"""
CIFAR: dict[str, Any] = {
    "target": "nets:Cifar",
    "max_params": "600k",
    "input_shape": [1, 3, 32, 32],
}
ACCEPTED: dict[str, dict[str, Any]] = {
    "cifar": CIFAR,
    "tiny": {"target": "sized:tiny", "max_params": 1000},
    "grow": {"target": "nets:growing", "max_params": 1000},
}
# Then tiny is over its budget and grow's layout differs from its snapshot entry.
CHANGED = {**ACCEPTED, "tiny": {"target": "sized:tiny", "max_params": 10}}
CHANGED["grow"] = {**ACCEPTED["grow"], "kwargs": {"extra": True}}
FIXTURE = "test_fix.py::test_fixture"
MODELS = {"cifar", "grow", "tiny", FIXTURE, "test_fix.py::test_new"}


def environment(**extra: str) -> dict[str, str]:
    """This process's environment, without a CI's (GITHUB_*), with `extra`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PYTEST_"))}
    return {**kept, **extra}


def pytest_run(folder: Path, *args: str, **environ: str) -> subprocess.Popen[str]:
    """`pytest --cnn-budget ARGS` started in `folder`."""
    command = [sys.executable, "-m", "pytest", "--cnn-budget", "-p", "no:cacheprovider", *args]
    return subprocess.Popen(
        command,
        cwd=folder,
        env=environment(**environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# Each run of the project: its pytest arguments, and its environment.
RUNS: dict[str, tuple[list[str], dict[str, str]]] = {
    # Unsharded, against a baseline and against the snapshot, with every output.
    "full": (
        ["--cnn-budget-baseline", "base.json", "--cnn-budget-comment", "full.md"],
        {"GITHUB_STEP_SUMMARY": "full-summary.md"},
    ),
    "plain": (["--cnn-budget-comment", "plain.md"], {"GITHUB_STEP_SUMMARY": "plain-summary.md"}),
    # Two shards, and three (the last shared), against the baseline as cnnbudget ci runs them.
    "a": (["-k", "cifar or tiny", "--cnn-budget-baseline", "base.json"], {}),
    "b": (["-k", "grow or test_fix", "--cnn-budget-baseline", "base.json"], {}),
    "c": (["-k", "cifar", "--cnn-budget-baseline", "base.json"], {}),
    "d": (["-k", "tiny", "--cnn-budget-baseline", "base.json"], {}),
    # Two shards against the snapshots only.
    "a0": (["-k", "cifar or tiny"], {}),
    "b0": (["-k", "grow or test_fix"], {}),
    # tiny in a job whose environment builds it wider.
    "wide": (["-k", "tiny"], {"TINY_WIDTH": "9"}),
}


@dataclass(frozen=True)
class Project:
    """The project folder once every run wrote its report."""

    path: Path

    def json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def bytes(self, name: str) -> bytes:
        return (self.path / name).read_bytes()


def edited_snapshot(path: Path) -> dict[str, Any]:
    """The accepted snapshot with stale entries (a model's, a fixture check's whose test is
    gone) and a fixture check's whose test checks nothing now; the baseline, where cifar was
    smaller and two models since removed (one a fixture check's whose test is gone)."""
    stored = json.loads(path.read_text(encoding="utf-8"))
    models = stored["models"]
    for name in ("retired", "test_fix.py::test_vanished", "test_fix.py::test_plain"):
        models[name] = models["tiny"]
    path.write_text(json.dumps(stored), encoding="utf-8")
    base: dict[str, Any] = json.loads(json.dumps(stored))
    cifar = base["models"]["cifar"]
    cifar["layers"][-1]["params"] -= 290
    cifar["total"] -= 290
    cifar["trainable"] -= 290
    base["models"]["old_model"] = models["tiny"]
    base["models"]["test_gone.py::test_old"] = models["tiny"]
    del base["models"]["retired"]
    return base


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Project:
    """The project, built once per session: under xdist the workers share it (its ten pytest
    runs are the slowest part of this file), each test writing files of its own names."""
    if worker_id == "master":
        return built(tmp_path_factory.mktemp("sharded"))
    root = tmp_path_factory.getbasetemp().parent / "sharded"  # this session's, every worker's
    with FileLock(f"{root}.lock"):
        if not (root / "built").is_file():
            root.mkdir(exist_ok=True)
            built(root)
            (root / "built").touch()
    return Project(root / "project")


def built(root: Path) -> Project:
    folder = root / "project"
    folder.mkdir()
    (folder / "nets.py").write_text(NETS_SOURCE, encoding="utf-8")
    (folder / "sized.py").write_text(SIZED, encoding="utf-8")
    (folder / "test_fix.py").write_text(FIXTURE_TEST, encoding="utf-8")
    (folder / "pyproject.toml").write_text(toml_text(ACCEPTED), encoding="utf-8")
    accept = pytest_run(folder, "--cnn-budget-update")
    output = accept.communicate(timeout=300)[0]
    assert accept.returncode == 0, output
    (folder / "pyproject.toml").write_text(toml_text(CHANGED), encoding="utf-8")
    with (folder / "test_fix.py").open("a", encoding="utf-8") as tests:
        tests.write(LATER_TESTS)
    base = edited_snapshot(folder / "cnnbudget.snapshot.json")
    (folder / "base.json").write_text(json.dumps(base), encoding="utf-8")
    # The same commit, but for one model's budget: another config.
    other = root / "other"
    shutil.copytree(folder, other)
    text = toml_text({**CHANGED, "cifar": {**CIFAR, "max_params": "700k"}})
    (other / "pyproject.toml").write_text(text, encoding="utf-8")
    started = [pytest_run(other, "-k", "cifar", "--cnn-budget-json", "other.json")]
    for name, (args, environ) in RUNS.items():
        github = ["--cnn-budget-github", "on"] if environ.get("GITHUB_STEP_SUMMARY") else []
        json_option = ["--cnn-budget-json", f"{name}.json"]
        started.append(pytest_run(folder, *args, *json_option, *github, **environ))
    for run in started:
        output = run.communicate(timeout=300)[0]
        assert run.returncode in (0, 1), output
    shutil.copy(other / "other.json", folder / "other.json")
    return Project(folder)


def merge(
    project: Project, *args: str, python: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`python -m pytest_cnnbudget merge ARGS` in the project."""
    return subprocess.run(
        [sys.executable, *python, "-m", "pytest_cnnbudget", "merge", *args],
        cwd=project.path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def failed_lines(report: dict[str, Any], *names: str) -> list[str]:
    """The lines the merge prints for failing models: their failures' first lines."""
    return [f"FAILED {report['shard']['failures'][name][0]}" for name in names]


@pytest.mark.parametrize(
    ("shards", "baseline", "unsharded"),
    [
        (["a", "b"], False, "full"),
        (["c", "d", "b"], True, "full"),
        (["b0", "a0"], False, "plain"),
    ],
    ids=["two shards, their baseline", "three shards, --baseline", "two shards, no baseline"],
)
def test_the_merge_writes_what_one_run_writes(
    project: Project, shards: list[str], baseline: bool, unsharded: str
) -> None:
    out = f"merged-{''.join(shards)}"
    done = merge(
        project,
        *(f"{name}.json" for name in shards),
        *("--json", f"{out}.json", "--summary", f"{out}-summary.md", "--comment", f"{out}.md"),
        *(["--baseline", "base.json"] if baseline else []),
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""
    expected = project.json(f"{unsharded}.json")
    merged = project.json(f"{out}.json")
    assert problems(merged, "report") == []
    assert set(merged["models"]) == MODELS
    assert merged["stale"] == ["retired", "test_fix.py::test_vanished"]
    assert merged == expected
    assert project.bytes(f"{out}-summary.md") == project.bytes(f"{unsharded}-summary.md")
    assert project.bytes(f"{out}.md") == project.bytes(f"{unsharded}.md")
    assert done.stdout.splitlines() == [
        *failed_lines(expected, "grow", "test_fix.py::test_new", "tiny"),
        f"cnnbudget merge: 3 of 5 models failed ({len(shards)} reports)",
    ]


def test_the_comment_names_the_baseline_as_told(project: Project) -> None:
    named = ("--baseline", "base.json", "--baseline-name", "main (3f2a9c1)")
    done = merge(project, "a.json", "b.json", *named, "--comment", "named.md")
    assert done.returncode == 1, done.stderr
    full = project.bytes("full.md").decode()
    said = "Compared with the baseline base.json."
    assert said in full
    assert project.bytes("named.md").decode() == full.replace(said, "Compared with main (3f2a9c1).")


def test_what_the_unsharded_run_wrote_has_what_a_merge_must_rebuild(project: Project) -> None:
    # Else the equalities above would hold of empty files.
    summary = project.bytes("full-summary.md").decode()
    comment = project.bytes("full.md").decode()
    assert "3 of 5 models need attention" in summary
    assert "Δ vs base" in summary
    assert "<details><summary>tiny" in summary
    assert "Compared with the baseline base.json" in comment
    for name in ("cifar", "grow", "tiny", "old_model", "test_gone.py::test_old"):
        assert f"| {name} |" in comment
    # A fixture entry whose test is gone is removed; one whose test exists is not.
    assert "| 🗑 | test_fix.py::test_vanished |" in comment
    assert "test_plain" not in comment
    lines = project.json("full.json")["shard"]["failures"]
    assert lines["grow"][0].startswith("grow: parameter layout differs from the snapshot")
    assert lines["tiny"][0] == "tiny: trainable parameters over budget by 62 (+620.0%)"
    plain = project.bytes("plain.md").decode()
    assert "Compared with the snapshot cnnbudget.snapshot.json" in plain
    assert "| 🗑 | retired |" in plain
    assert "test_plain" not in plain
    assert "Δ vs base" not in project.bytes("plain-summary.md").decode()


def test_a_model_no_shard_checked_fails_the_merge_and_a_later_merge_with_it_passes_over(
    project: Project,
) -> None:
    outputs = ("--summary", "missing-summary.md", "--comment", "missing.md")
    done = merge(project, "a.json", "--json", "missing.json", *outputs)
    assert done.returncode == 1, done.stderr
    # Said where the reviewer reads, never as "no change".
    comment = project.bytes("missing.md").decode()
    assert "1 problem" in comment.splitlines()[1]
    assert "- ⚠️ not checked by any shard: grow" in comment
    summary = project.bytes("missing-summary.md").decode()
    assert summary.splitlines()[0].endswith(", 1 problem")
    assert "- ⚠️ not checked by any shard: grow" in summary
    assert done.stdout.splitlines()[-2:] == [
        "PROBLEM not checked by any shard: grow",
        "cnnbudget merge: 1 of 2 models failed, 1 problem (1 report)",
    ]
    merged = project.json("missing.json")
    assert problems(merged, "report") == []
    assert (merged["passed"], merged["problems"]) == (False, ["not checked by any shard: grow"])
    # Merged again with the shard that checked it: the problem goes, as the run is whole.
    again = merge(project, "missing.json", "b.json", "--json", "again.json")
    assert again.returncode == 1, again.stderr
    assert project.json("again.json") == project.json("full.json")


def test_the_merge_exits_0_only_when_every_configured_model_passed(project: Project) -> None:
    done = merge(project, "c.json")
    assert done.stdout.splitlines() == [
        "PROBLEM not checked by any shard: grow, tiny",
        "cnnbudget merge: 1 model passed, 1 problem (1 report)",
    ]
    assert done.returncode == 1
    # The same report, had its config configured cifar alone.
    report = project.json("c.json")
    report["shard"]["configs"][0]["models"] = ["cifar"]
    (project.path / "cifar-only.json").write_text(json.dumps(report), encoding="utf-8")
    done = merge(project, "cifar-only.json")
    assert (done.returncode, done.stdout) == (0, "cnnbudget merge: 1 model passed (1 report)\n")


def write(project: Project, name: str, text: str) -> str:
    (project.path / name).write_text(text, encoding="utf-8")
    return name


def without(report: dict[str, Any], key: str) -> str:
    return json.dumps({k: v for k, v in report.items() if k != key})


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("conflict", "tiny: checked by both d.json and wide.json, with different results"),
        ("config", "c.json and other.json were run with different configs: pyproject.toml differs"),
        (
            "schema",
            "old.json: a report of schema 'pytest-cnnbudget/report/1'; this cnnbudget merges",
        ),
        ("no shard", "bare.json: no shard data this cnnbudget reads"),
        ("missing", "cannot read nowhere.json: No such file or directory (ENOENT)"),
        ("not json", "page.json is not JSON (Expecting value: line 1 column 1 (char 0))"),
        ("not a report", "list.json: not a pytest-cnnbudget JSON report"),
        ("baseline", "--baseline nowhere.json: no such file"),
    ],
)
def test_reports_that_cannot_be_merged_exit_2_with_one_line_naming_the_file(
    project: Project, case: str, said: str
) -> None:
    report = project.json("c.json")
    files = {
        "conflict": ["d.json", "wide.json"],
        "config": ["c.json", "other.json"],
        "schema": [
            write(
                project, "old.json", json.dumps({**report, "schema": "pytest-cnnbudget/report/1"})
            )
        ],
        "no shard": [write(project, "bare.json", without(report, "shard"))],
        "missing": ["c.json", "nowhere.json"],
        "not json": [write(project, "page.json", "<html></html>")],
        "not a report": [write(project, "list.json", "[]")],
        "baseline": ["c.json", "--baseline", "nowhere.json"],
    }[case]
    done = merge(project, *files, "--json", "never.json")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(f"cnnbudget: error: {said}")
    assert len(done.stderr.splitlines()) == 1
    assert not (project.path / "never.json").exists()


def test_the_merge_imports_no_torch(project: Project) -> None:
    done = merge(project, "a.json", "b.json", python=("-X", "importtime"))
    assert done.returncode == 1
    imported = [line.rpartition("|")[2].strip() for line in done.stderr.splitlines()]
    assert "pytest_cnnbudget.run.shards" in imported
    assert [name for name in imported if name.split(".")[0] == "torch"] == []


def test_a_shard_report_is_about_twice_the_size_of_its_models(project: Project) -> None:
    report = project.json("full.json")
    models = len(json_text(report["models"], sort_keys=True))
    shard = len(json_text(report["shard"], sort_keys=True))
    assert shard < 2 * models


# -- the join, directly --------------------------------------------------------------------


AT_32 = parse_input_shape([1, 3, 32, 32])
AT_100 = parse_input_shape([1, 100])


def checked(name: str, target: str = "nets:Tiny", **spec: Any) -> ModelResult:
    """A real check of one model, as the gate returns it."""
    stored = spec.pop("stored", None)
    order = Order(ModelSpec(name, target, **spec), stored, snapshot_enabled=True)
    return check_model(order)


def passing(name: str) -> ModelResult:
    return ModelResult(name, f"nets:{name}", "error", Outcome.PASSED, SnapshotStatus.MATCH)


def entry(params: int) -> SnapshotEntry:
    return SnapshotEntry(params, params, 0, 0, (SnapshotLayer("fc", "Linear", params, "n"),))


def config(
    *models: str, path: str = "pyproject.toml", stored: dict[str, SnapshotEntry] | None = None
) -> ShardConfig:
    return ShardConfig(path, f"sha256:{path}", models, "cnnbudget.snapshot.json", stored or {})


def shard(*results: ModelResult, configs: tuple[ShardConfig, ...] = (), **more: Any) -> Shard:
    fields: dict[str, Any] = {"kept": frozenset(), "gone": frozenset(), "group": True, **more}
    return Shard(configs, {r.name: r for r in results}, {}, **fields)


def report_of(data: Shard) -> dict[str, Any]:
    """`data` as a report writes it and a merge reads it: strict JSON text."""
    document = {
        "schema": REPORT_SCHEMA,
        # The rows of each result's measurement are read from here, not written twice.
        "models": {name: model_dict(result) for name, result in data.results.items()},
        "stale": list(data.stale),
        "problems": list(data.problems),
        "shard": shard_dict(data),
    }
    loaded: dict[str, Any] = json.loads(json_text(document, sort_keys=True))
    return loaded


def test_results_read_back_equal_the_originals_and_the_text_is_strict_json() -> None:
    memory = MemoryOptions(optimizer="sgd", optimizer_kwargs={"lr": math.inf, "momentum": 0.9})
    accepted = checked("updated", "nets:Cifar", input_shape=AT_32, budgets={"max_params": 10**6})
    assert accepted.count is not None
    results = [
        # Compute, memory traced with an optimizer argument JSON has no number for, and rows
        # folded to a depth.
        checked("traced", "nets:fine_tuned", input_shape=AT_100, memory=memory, depth=1),
        # A diff against the snapshot, over budget, its source line.
        checked("grown", "nets:Cifar", stored=entry(10), budgets={"max_params": 100}),
        # New to the snapshot: `first`, which the xdist wire leaves out.
        checked("new", budgets={"max_params": 1000}),
        checked("broken", "nets:exploding", budgets={"max_params": 1}),
        # The entry an update writes, which is the measurement's.
        replace(
            accepted,
            snapshot=SnapshotStatus.UPDATED,
            entry=SnapshotEntry.from_count(accepted.count),
        ),
    ]
    traced, _, new, broken, _ = results
    assert traced.folded is not None
    assert new.first
    assert broken.error
    assert new.count is not None
    stored = {"grown": entry(10), "gone": entry(3), "new": SnapshotEntry.from_count(new.count)}
    original = shard(*results, configs=(config("traced", "grown", "new", stored=stored),))
    failures = {r.name: ("line one", "line two") for r in results if r.failed}
    original = replace(original, failures=failures, kept=frozenset({"t.py::a"}))
    data = report_of(original)
    assert data["shard"]["configs"][0]["stored"]["new"] is True  # not written twice
    assert data["shard"]["results"]["updated"]["entry"] is True
    read = read_shard(data, "r.json")
    assert report_of(read) == data
    # Every result whole, but for the optimizer's `inf`, which reads back as the report echoes it.
    traced_back = read.results["traced"]
    assert replace(read, results={**read.results, "traced": traced}) == original
    assert traced_back.count is not None
    assert traced_back.count.memory is not None
    assert traced_back.count.memory.options.optimizer_kwargs == {"lr": "inf", "momentum": 0.9}
    assert model_dict(traced_back) == model_dict(traced)
    assert replace(traced_back, count=traced.count, folded=traced.folded) == traced


def test_a_run_keeps_the_entries_a_comparison_needs_and_says_which_tests_are_gone(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_a.py").write_text("def test_here(): pass\n", encoding="utf-8")
    tables = "".join(
        f'[tool.cnnbudget.models.{m}]\ntarget = "nets:{m}"\nmax_params = 1\n' for m in "xy"
    )
    (tmp_path / "pyproject.toml").write_text(f"[tool.cnnbudget]\n{tables}", encoding="utf-8")
    stored = {
        "x": entry(1),  # configured, checked
        "y": entry(2),  # configured, not checked: another shard's
        "old": entry(3),  # stale
        "test_a.py::test_here": entry(4),
        "test_a.py::test_gone": entry(5),
    }
    write_snapshot(tmp_path / "cnnbudget.snapshot.json", stored)
    configs = Configs()
    configs.load(tmp_path / "pyproject.toml")
    collected = Collected({"test_a.py": frozenset({"test_a.py::test_here"})})
    options = RunOptions(rootdir=tmp_path, started=tmp_path, group=False)
    data = run_shard(configs, [passing("x")], {}, options, collected)
    (only,) = data.configs
    digest = hashlib.sha256((tmp_path / "pyproject.toml").read_bytes()).hexdigest()
    assert (only.path, only.digest, only.models) == (
        "pyproject.toml",
        f"sha256:{digest}",
        ("x", "y"),
    )
    assert sorted(only.stored) == ["old", "test_a.py::test_gone", "test_a.py::test_here", "x"]
    assert data.kept == frozenset({"test_a.py::test_here"})
    assert data.gone == frozenset({"test_a.py::test_gone"})
    assert data.group is False


def test_the_join_decides_stale_and_gone_entries_as_one_run() -> None:
    one = shard(
        passing("a"),
        stale=("old", "t.py::b"),
        kept=frozenset({"t.py::a"}),
        gone=frozenset({"t.py::c"}),
    )
    # The other shard checked t.py::b; it found t.py::a gone, which the first kept unknowing.
    two = shard(
        passing("t.py::b"), stale=("old",), kept=frozenset({"t.py::c"}), gone=frozenset({"t.py::a"})
    )
    joined = merge_shards([("1.json", one), ("2.json", two)])
    assert joined.stale == ("old",)
    assert joined.kept == frozenset()
    assert joined.gone == frozenset({"t.py::a", "t.py::c"})
    assert list(joined.results) == ["a", "t.py::b"]


def test_configs_join_in_order_and_the_comparison_takes_them_all() -> None:
    root = config("r", path="pyproject.toml", stored={"old": entry(1)})
    left = config("a", path="a/pyproject.toml")
    right = config(
        "b", path="b/pyproject.toml", stored={"a": entry(9)}
    )  # a model moved from b to a
    one = shard(passing("r"), passing("a"), configs=(root, left))
    two = shard(passing("b"), configs=(root, right), kept=frozenset({"t.py::x"}))
    joined = merge_shards([("1.json", one), ("2.json", two)])
    assert [c.path for c in joined.configs] == [
        "pyproject.toml",
        "a/pyproject.toml",
        "b/pyproject.toml",
    ]
    assert joined.snapshots() == "the snapshot " + ", ".join(["cnnbudget.snapshot.json"] * 3)
    changes = {c.name: c.change for c in joined.compared(None)}
    assert changes == {
        "a": Change.UNKNOWN,
        "b": Change.UNKNOWN,
        "r": Change.UNKNOWN,
        "old": Change.REMOVED,
    }
    baseline = {"r": entry(1), "t.py::x": entry(1), "t.py::y": entry(1)}
    removed = [c.name for c in joined.compared(baseline) if c.change is Change.REMOVED]
    assert removed == ["t.py::y"]  # t.py::x's test exists; t.py::y no shard knows


def test_one_model_checked_twice_must_read_alike() -> None:
    a, b = passing("m"), replace(passing("m"), snapshot=SnapshotStatus.CHANGED)
    assert merge_shards([("1.json", shard(a)), ("2.json", shard(a))]).results == {"m": a}
    with pytest.raises(CommandLineError, match=r"^m: checked by both 1.json and 2.json, with"):
        merge_shards([("1.json", shard(a)), ("2.json", shard(b))])


@pytest.mark.parametrize(
    ("other", "said"),
    [
        (
            replace(config("m", path="p.toml"), digest="sha256:other"),
            "1.json and 2.json were run with different configs: p.toml differs (sha256:p.toml and sha256:other)",
        ),
        (
            config("m", "n", path="p.toml"),
            "1.json and 2.json were run with different configs: p.toml differs (its models)",
        ),
        (
            config("m", path="p.toml", stored={"m": entry(2)}),
            "1.json and 2.json started from different snapshots: the entry of m in",
        ),
    ],
    ids=["digest", "models", "snapshot"],
)
def test_shards_of_other_configs_or_snapshots_cannot_be_joined(
    other: ShardConfig, said: str
) -> None:
    mine = config("m", path="p.toml", stored={"m": entry(1)})
    with pytest.raises(CommandLineError) as raised:
        merge_shards([("1.json", shard(configs=(mine,))), ("2.json", shard(configs=(other,)))])
    assert str(raised.value).startswith(said)


def test_shards_must_group_alike() -> None:
    with pytest.raises(CommandLineError, match="one with --cnn-budget-no-group"):
        merge_shards([("1.json", shard()), ("2.json", shard(group=False))])


def test_a_merged_report_names_the_models_no_shard_checked_and_reading_it_forgets_that() -> None:
    joined = merge_shards(
        [("1.json", shard(passing("a"), configs=(config("a", "b", "c"),), problems=("dup",)))]
    )
    assert joined.unchecked() == ["b", "c"]
    report = joined.report()
    assert (report["passed"], report["problems"]) == (
        False,
        ["dup", "not checked by any shard: b, c"],
    )
    assert not_checked([]) is None
    assert read_shard(json.loads(json_text(report)), "m.json").problems == ("dup",)


@pytest.mark.parametrize(
    ("document", "said"),
    [
        ({"schema": REPORT_SCHEMA, "stale": []}, "r.json: no shard data"),
        ({"schema": REPORT_SCHEMA, "shard": {"version": 2}}, "r.json: no shard data"),
        (
            {"schema": REPORT_SCHEMA, "stale": [], "shard": {"version": 1}},
            "r.json: its shard data cannot be read: KeyError",
        ),
        ({"models": {}}, "r.json: not a pytest-cnnbudget JSON report"),
    ],
)
def test_documents_without_readable_shard_data_are_refused_by_name(
    document: dict[str, Any], said: str
) -> None:
    with pytest.raises(CommandLineError) as raised:
        read_shard(document, "r.json")
    assert str(raised.value).startswith(said)


def test_rows_are_read_from_the_measurement_and_a_formulas_own_count_survives() -> None:
    result = checked("odd", "nets:Cifar", input_shape=AT_32, budgets={"max_params": 10**6})
    assert result.count is not None
    # A row whose formula disagrees with numel (what the gate reports as a bug of ours).
    first, *rest = result.count.layers
    odd = replace(
        result, count=replace(result.count, layers=(replace(first, formula_params=7), *rest))
    )
    data = report_of(shard(odd))
    stored = data["shard"]["results"]["odd"]["count"]
    assert stored["layers"] == len(result.count.layers)
    assert stored["formula_params"] == [[0, 7]]
    assert read_shard(data, "r.json").results["odd"] == odd
    # Rows that cannot be read back from the measurement are refused, naming the file.
    del data["models"]["odd"]["measurement"]["layers"][0]
    with pytest.raises(
        CommandLineError,
        match=r"r\.json: its shard data cannot be read: .* rows in the measurement",
    ):
        read_shard(data, "r.json")


def test_shards_compared_with_different_bases_are_refused(project: Project) -> None:
    done = merge(project, "a.json", "b0.json")
    assert done.returncode == 2
    assert done.stderr.startswith(
        "cnnbudget: error: a.json and b0.json were compared with different bases"
    )
