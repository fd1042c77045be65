"""`cnnbudget ci` end to end, as a pull request's job runs it: a flat ML repository (not an
installable package) with a bare origin, a base branch and pull-request branches, each checked
out at depth 1 as `actions/checkout` leaves it, GitHub's environment and event file, and a
loopback server standing in for GitHub's REST API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from github_server import READ_ONLY, TOKEN, Repository, serving
from schemas import problems

from pytest_cnnbudget.report.comment import MARKER
from pytest_cnnbudget.run.gitbase import BaseRef, find_base

CNN = """\
import torch.nn as nn


class Cnn(nn.Module):
    def __init__(self, width={width}, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))
"""
PYPROJECT = """\
[tool.cnnbudget.models.cnn]
target = "models.cnn:Cnn"
max_params = 5000
"""
# The origin's two models: the CNN, and a head from torch itself that no branch changes.
ORIGIN_PYPROJECT = f"""{PYPROJECT}
[tool.cnnbudget.models.head]
target = "torch.nn:Linear"
kwargs = {{ in_features = 8, out_features = 2 }}
max_params = 100
"""
# Conv2d 3·3·3·w + w, Linear w·10 + 10.
PARAMS = {16: 618, 32: 1226, 64: 2442}


def git(folder: Path, *args: str) -> str:
    environ = {
        **os.environ,
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@example.com",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    done = subprocess.run(
        ["git", *args], cwd=folder, env=environ, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def run(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A real subprocess, its output captured; the timeout only turns a hang into a failure."""
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def gate_update(folder: Path) -> None:
    """What the author runs to accept a change: pytest --cnn-budget-update."""
    done = run(
        [sys.executable, "-m", "pytest", "--cnn-budget-update", "-m", "cnn_budget", "-q"],
        cwd=folder,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def write_width(folder: Path, width: int) -> None:
    (folder / "models" / "cnn.py").write_text(CNN.format(width=width), encoding="utf-8")


@dataclass(frozen=True)
class Origin:
    """The bare remote and the commits the tests compare."""

    url: str
    before_snapshot: str  # main's first commit: the models, no snapshot yet
    main: str


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Origin:
    root = tmp_path_factory.mktemp("origin")
    src = root / "src"
    (src / "models").mkdir(parents=True)
    (src / "models" / "__init__.py").write_text("", encoding="utf-8")
    (src / "scripts").mkdir()
    (src / "scripts" / "train.py").write_text("print('training')\n", encoding="utf-8")
    (src / "pyproject.toml").write_text(ORIGIN_PYPROJECT, encoding="utf-8")
    write_width(src, 16)
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-qm", "models")
    before = git(src, "rev-parse", "HEAD")
    gate_update(src)
    git(src, "add", "cnnbudget.snapshot.json")
    git(src, "commit", "-qm", "snapshot")
    main = git(src, "rev-parse", "HEAD")
    git(src, "checkout", "-qb", "wider")
    write_width(src, 32)
    gate_update(src)  # accepted: the snapshot agrees, the comment shows the change
    git(src, "commit", "-qam", "wider, accepted")
    git(src, "checkout", "-qb", "unaccepted")
    write_width(src, 64)  # not accepted: the committed snapshot disagrees
    git(src, "commit", "-qam", "wider still, not accepted")
    git(root, "clone", "-q", "--bare", str(src), "origin.git")
    return Origin(f"file://{root / 'origin.git'}", before, main)


@pytest.fixture
def github() -> Iterator[tuple[Repository, str]]:
    with serving() as served:
        yield served


def checkout(origin: Origin, branch: str, where: Path) -> Path:
    """A depth-1 clone of one branch, as actions/checkout leaves the workspace."""
    git(where.parent, "clone", "-q", "--depth", "1", "--branch", branch, origin.url, where.name)
    assert git(where, "rev-parse", "--is-shallow-repository") == "true"
    return where


def ci(
    workspace: Path, api: str, *args: str, token: str = TOKEN, base: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`cnnbudget ci` in the workspace, with the environment a pull_request run has."""
    event = workspace.parent / "event.json"
    pull = {"number": 7, "base": {"sha": base, "ref": "main"}} if base else {"number": 7}
    event.write_text(json.dumps({"pull_request": pull}), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_"))}
    environ.update(
        GITHUB_ACTIONS="true",
        GITHUB_EVENT_PATH=str(event),
        GITHUB_WORKSPACE=str(workspace),
        GITHUB_STEP_SUMMARY=str(workspace.parent / "step_summary.md"),
        GITHUB_REPOSITORY="octo/models",
        GITHUB_TOKEN=token,
        GITHUB_API_URL=api,
    )
    return run([sys.executable, "-m", "pytest_cnnbudget", "ci", *args], cwd=workspace, env=environ)


def test_the_first_run_creates_the_comment_the_next_update_it_and_a_failure_says_so(
    origin: Origin, github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, api = github
    workspace = checkout(origin, "wider", tmp_path / "ws")
    first = ci(workspace, api, "--comment", "post", base=origin.main)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"comparing with main ({origin.main[:12]}), from the pull_request event" in first.stdout
    assert "created the comment on octo/models#7" in first.stdout
    [comment] = state.comments[7]
    body = comment["body"]
    assert body.startswith(MARKER)
    for figure in ("618", "1,226", "+608"):
        assert figure in body, body
    head = git(workspace, "rev-parse", "HEAD")[:12]
    assert f"Compared with main ({origin.main[:12]}), at head {head}." in body
    # The outputs are in one folder that git ignores: the workspace stays clean.
    out = workspace / ".cnn-budget"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert problems(report, "report") == []
    assert report["passed"] is True
    assert report["models"]["cnn"]["measurement"]["totals"]["params"] == PARAMS[32]
    assert (out / "comment.md").read_text(encoding="utf-8") == body
    assert "cnn" in (out / "summary.md").read_text(encoding="utf-8")
    assert git(workspace, "status", "--porcelain") == ""
    step_summary = (tmp_path / "step_summary.md").read_text(encoding="utf-8")
    assert step_summary == (out / "summary.md").read_text(encoding="utf-8")

    again = ci(workspace, api, "--comment", "post", base=origin.main)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "updated the comment on octo/models#7" in again.stdout
    assert [c["id"] for c in state.comments[7]] == [comment["id"]]

    broken = checkout(origin, "unaccepted", tmp_path / "ws2")
    failed = ci(broken, api, "--comment", "post", base=origin.main)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "updated the comment on octo/models#7" in failed.stdout
    [comment] = state.comments[7]
    for figure in ("2,442", "+1,824"):
        assert figure in comment["body"], comment["body"]
    assert "1 not accepted" in comment["body"]
    assert "the check fails" in comment["body"]
    assert "pytest --cnn-budget-update" in comment["body"]
    assert [m for m, _ in state.requests].count("POST") == 1


def test_a_fork_writes_the_body_and_posts_nothing_and_a_read_only_token_is_said(
    origin: Origin, github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, api = github
    workspace = checkout(origin, "wider", tmp_path / "ws")
    fork = ci(workspace, api, "--comment", "file=../body.md", token=READ_ONLY, base=origin.main)
    assert fork.returncode == 0, fork.stdout + fork.stderr
    assert state.requests == []
    body = (tmp_path / "body.md").read_text(encoding="utf-8")
    assert body.startswith(MARKER)
    assert "1,226" in body
    refused = ci(workspace, api, "--comment", "post", token=READ_ONLY, base=origin.main)
    # GitHub's refusal is said, in the log and as a warning; the gate's verdict decides.
    assert refused.returncode == 0, refused.stdout + refused.stderr
    assert "the comment was not posted" in refused.stderr
    assert "403" in refused.stderr
    assert "workflow_run" in refused.stderr
    assert "::warning title=cnn-budget comment::the comment was not posted" in refused.stdout
    assert state.comments[7] == []
    invalid = ci(workspace, api, "--comment", "post", token="wrong", base=origin.main)
    assert invalid.returncode == 0
    assert "401" in invalid.stderr
    assert "not a valid token" in invalid.stderr


def test_no_change_updates_an_earlier_comment_but_makes_none(
    origin: Origin, github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, api = github
    workspace = checkout(origin, "main", tmp_path / "ws")
    quiet = ci(workspace, api, "--comment", "post", base=origin.main)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "has no comment: none made" in quiet.stdout
    assert state.comments[7] == []
    earlier = state.add(7, f"{MARKER}\nan earlier push changed 1 model")
    again = ci(workspace, api, "--comment", "post", base=origin.main)
    assert "updated the comment" in again.stdout
    assert "no change" in earlier["body"]
    assert len(state.comments[7]) == 1


def test_a_base_without_the_snapshot_makes_every_model_new(
    origin: Origin, github: tuple[Repository, str], tmp_path: Path
) -> None:
    _, api = github
    workspace = checkout(origin, "wider", tmp_path / "ws")
    done = ci(workspace, api, "--base", origin.before_snapshot)
    assert done.returncode == 0, done.stdout + done.stderr
    said = f"the base {origin.before_snapshot[:12]} has no cnnbudget.snapshot.json"
    assert f"{said}: its models count as new" in done.stdout
    body = (workspace / ".cnn-budget" / "comment.md").read_text(encoding="utf-8")
    assert "🆕" in body


def test_an_updated_snapshot_left_out_of_the_commit_is_said_where_it_still_passes(
    origin: Origin, github: tuple[Repository, str], tmp_path: Path
) -> None:
    """The author accepted the change with the update and committed the model alone: the run
    in their work tree reads the updated file and passes, the pull request's would fail."""
    _, api = github
    workspace = checkout(origin, "unaccepted", tmp_path / "ws")
    failing = ci(workspace, api, "--base", "origin/main", "--comment", "none")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "and commit cnnbudget.snapshot.json (ran it already?" in failing.stdout
    assert "is not as committed" not in failing.stderr
    gate_update(workspace)
    passing = ci(workspace, api, "--base", "origin/main", "--comment", "none")
    assert passing.returncode == 0, passing.stdout + passing.stderr
    said = (
        "cnnbudget.snapshot.json is not as committed: this run read it from the work tree, a "
        "pull request's run reads the committed one; commit it with the change"
    )
    assert f"cnnbudget ci: {said}" in passing.stderr
    assert f"::warning title=cnn-budget::{said}" in passing.stdout
    git(workspace, "commit", "-qam", "accepted, this time with the snapshot")
    committed = ci(workspace, api, "--base", "origin/main", "--comment", "none")
    assert committed.returncode == 0, committed.stdout + committed.stderr
    assert "not as committed" not in committed.stderr + committed.stdout


def test_a_base_branch_by_name_is_fetched_into_the_shallow_checkout(
    origin: Origin, github: tuple[Repository, str], tmp_path: Path
) -> None:
    _, api = github
    workspace = checkout(origin, "unaccepted", tmp_path / "ws")
    done = ci(workspace, api, "--base", "origin/wider", "--pytest-args", '-q -k "cnn or x"')
    assert done.returncode == 1, done.stdout + done.stderr
    assert "comparing with origin/wider (" in done.stdout
    assert "-m cnn_budget -q -k 'cnn or x'" in done.stdout  # one -k, its words kept together
    body = (workspace / ".cnn-budget" / "comment.md").read_text(encoding="utf-8")
    assert "1,226" in body
    assert "2,442" in body


def test_mistakes_name_what_to_fix(
    origin: Origin, github: tuple[Repository, str], tmp_path: Path
) -> None:
    _, api = github
    workspace = checkout(origin, "wider", tmp_path / "ws")
    no_base = ci(workspace, api)
    assert no_base.returncode == 2
    assert "no base to compare with" in no_base.stderr
    assert "--base REF" in no_base.stderr
    unknown = ci(workspace, api, "--base", "no-such-branch")
    assert unknown.returncode == 2
    assert "could not be fetched" in unknown.stderr
    assert "a commit's full hash" in unknown.stderr
    quote = ci(workspace, api, "--pytest-args", '-k "open', base=origin.main)
    assert quote.returncode == 2
    assert "--pytest-args '-k \"open': No closing quotation" in quote.stderr
    assert "Traceback" not in unknown.stderr
    mode = ci(workspace, api, "--comment", "sticky", base=origin.main)
    assert mode.returncode == 2
    assert "give post, file=PATH or none" in mode.stderr
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    lost = ci(outside, api, "--no-base")
    assert lost.returncode == 2
    assert "is not inside a git work tree" in lost.stderr
    push = ci(workspace, api, "--no-base")  # a push to main: the committed snapshot only
    assert push.returncode == 0, push.stdout + push.stderr


def test_a_gitlab_merge_request_pipeline_finds_its_base_and_keeps_the_summary(
    origin: Origin, tmp_path: Path
) -> None:
    workspace = checkout(origin, "unaccepted", tmp_path / "ws")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_"))}
    environ.update(
        GITLAB_CI="true",
        CI_MERGE_REQUEST_DIFF_BASE_SHA=origin.main,
        CI_MERGE_REQUEST_TARGET_BRANCH_NAME="main",
    )
    done = run(
        [sys.executable, "-m", "pytest_cnnbudget", "ci", "--comment", "file=note.md"],
        cwd=workspace,
        env=environ,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"comparing with main ({origin.main[:12]}), from GitLab's merge request" in done.stdout
    assert "::error" not in done.stdout  # GitHub's workflow commands only on GitHub
    summary = (workspace / ".cnn-budget" / "summary.md").read_text(encoding="utf-8")
    assert "cnn" in summary
    assert "Δ vs base" in summary
    note = (workspace / "note.md").read_text(encoding="utf-8")
    assert "2,442" in note


def action_step(name: str, key: str = "name") -> dict[str, Any]:
    """One step of the composite action, as action.yml has it, by its name (or its id)."""
    action = yaml.safe_load((Path(__file__).parent.parent / "action.yml").read_text("utf-8"))
    step: dict[str, Any] = next(s for s in action["runs"]["steps"] if s.get(key) == name)
    return step


def run_step(
    step: dict[str, Any], workspace: Path, api: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """A `run` step as the runner runs it (bash --noprofile --norc -eo pipefail), with the
    environment a pull_request job has and the step's own, `cnnbudget` on PATH."""
    event = workspace.parent / "event.json"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_"))}
    environ.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        GITHUB_ACTIONS="true",
        GITHUB_EVENT_NAME="pull_request",
        GITHUB_EVENT_PATH=str(event),
        GITHUB_WORKSPACE=str(workspace),
        GITHUB_STEP_SUMMARY=str(workspace.parent / "step_summary.md"),
        GITHUB_OUTPUT=str(workspace.parent / "output.txt"),
        GITHUB_REPOSITORY="octo/models",
        GITHUB_API_URL=api,
    )
    environ.update(env)
    script = workspace.parent / "step.sh"
    script.write_text(step["run"], encoding="utf-8")
    return run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=workspace,
        env=environ,
    )


def test_the_actions_own_steps_gate_comment_and_post_a_forks_body(
    origin: Origin, github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, api = github
    workspace = checkout(origin, "wider", tmp_path / "ws")
    event = {"pull_request": {"number": 7, "base": {"sha": origin.main, "ref": "main"}}}
    (tmp_path / "event.json").write_text(json.dumps(event), encoding="utf-8")
    paths = run_step(action_step("paths", key="id"), workspace, api)
    assert paths.returncode == 0, paths.stderr
    assert f"report={workspace}/.cnn-budget/report.json" in (tmp_path / "output.txt").read_text()
    gate = action_step("Check the models' budgets")
    common = {"COMMENT": "auto", "BASE": "", "PYTEST_ARGS": '-q -p no:cacheprovider -k "cnn"'}
    fork = run_step(gate, workspace, api, GITHUB_TOKEN=READ_ONLY, SAME_REPOSITORY="false", **common)
    assert fork.returncode == 0, fork.stdout + fork.stderr
    assert state.requests == []  # a fork's run posts nothing
    # For the workflow_run workflow: which pull request the artifact's body is for.
    assert (workspace / ".cnn-budget" / "pr-number").read_text(encoding="utf-8") == "7\n"
    assert "1,226" in (workspace / ".cnn-budget" / "comment.md").read_text(encoding="utf-8")
    # The workflow_run workflow: the artifact's body, posted for the run's own commit only.
    post = action_step("Post the comment a fork's run computed")
    state.heads[7], state.head_repos[7] = git(workspace, "rev-parse", "HEAD"), "fork/models"
    artifact = {
        "REPORTS": str(workspace / ".cnn-budget"),
        "GITHUB_TOKEN": TOKEN,
        "HEAD_REPO": "fork/models",
    }
    stranger = run_step(post, tmp_path, api, HEAD_SHA="f" * 40, **artifact)
    assert stranger.returncode == 0, stranger.stdout + stranger.stderr
    assert "not posted: pull request #7's head is" in stranger.stdout
    assert state.comments[7] == []
    # Outside a workflow_run workflow the head commit is empty: refused, not trusted.
    unchecked = run_step(post, tmp_path, api, HEAD_SHA="", **artifact)
    assert unchecked.returncode != 0
    assert "mode: post runs in a workflow_run workflow" in unchecked.stdout
    # Another fork's run at the same commit: not this pull request's body.
    spoof = run_step(
        post, tmp_path, api, HEAD_SHA=state.heads[7], **{**artifact, "HEAD_REPO": "evil/models"}
    )
    assert spoof.returncode == 0, spoof.stdout + spoof.stderr
    assert "not posted" in spoof.stdout
    assert "::warning title=cnn-budget comment::not posted" in spoof.stdout  # beside a green step
    assert state.comments[7] == []
    posted = run_step(post, tmp_path, api, HEAD_SHA=state.heads[7], **artifact)
    assert posted.returncode == 0, posted.stdout + posted.stderr
    [comment] = state.comments[7]
    assert "1,226" in comment["body"]
    # A pull request from the repository itself: the gate step comments (updates) itself.
    own = run_step(gate, workspace, api, GITHUB_TOKEN=TOKEN, SAME_REPOSITORY="true", **common)
    assert own.returncode == 0, own.stdout + own.stderr
    assert "updated the comment on octo/models#7" in own.stdout
    assert [c["id"] for c in state.comments[7]] == [comment["id"]]


def test_the_actions_gate_step_on_a_push_checks_the_snapshot_and_writes_the_trend(
    origin: Origin, tmp_path: Path
) -> None:
    workspace = checkout(origin, "main", tmp_path / "ws")
    trend = ".cnn-budget/trend.json"
    done = run_step(
        action_step("Check the models' budgets"),
        workspace,
        "http://127.0.0.1:9",  # nothing is posted on a push
        GITHUB_EVENT_NAME="push",
        GITHUB_TOKEN=TOKEN,
        COMMENT="auto",
        BASE="",
        PYTEST_ARGS=f"-q -p no:cacheprovider --cnn-budget-benchmark-json={trend}",
        SAME_REPOSITORY="false",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no base (--no-base): comparing with the committed snapshots" in done.stdout
    entries = json.loads((workspace / trend).read_text(encoding="utf-8"))
    assert {"name": "cnn: trainable parameters", "unit": "parameters", "value": PARAMS[16]} in [
        {k: e[k] for k in ("name", "unit", "value")} for e in entries
    ]


def test_the_actions_merge_step_joins_shards_and_comments_once(
    origin: Origin, github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, api = github
    shards = tmp_path / "cnn-budget-shards"
    for shard, selects in (("a", "cnn"), ("b", "head")):
        workspace = checkout(origin, "wider", tmp_path / f"ws-{shard}")
        done = ci(workspace, api, "--comment", "none", "--", "-k", selects, base=origin.main)
        assert done.returncode == 0, done.stdout + done.stderr
        # What actions/download-artifact leaves: each artifact in a folder of its own.
        shutil.copytree(workspace / ".cnn-budget", shards / f"cnn-budget-{shard}")
    merger = tmp_path / "merge"
    merger.mkdir()
    (tmp_path / "step_summary.md").unlink()  # the shards' jobs had their own
    done = run_step(
        action_step("Join the shards' reports"),
        merger,
        api,
        GITHUB_TOKEN=TOKEN,
        COMMENT="auto",
        REPORTS=str(shards),
        SAME_REPOSITORY="true",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((merger / ".cnn-budget" / "report.json").read_text(encoding="utf-8"))
    assert list(report["models"]) == ["cnn", "head"]
    assert report["passed"] is True
    [comment] = state.comments[7]
    assert f"Compared with main ({origin.main[:12]}), at head " in comment["body"]
    assert "1,226" in comment["body"]
    summary = (tmp_path / "step_summary.md").read_text(encoding="utf-8")
    assert summary == (merger / ".cnn-budget" / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("## cnn-budget: all 2 models within budget")
    # No shard's artifact: said, and the step fails.
    empty = run_step(
        action_step("Join the shards' reports"),
        merger,
        api,
        GITHUB_TOKEN=TOKEN,
        COMMENT="auto",
        REPORTS=str(tmp_path / "nothing"),
        SAME_REPOSITORY="true",
    )
    assert empty.returncode == 1
    assert "no report.json under" in empty.stdout


BLOCKED = (
    "import sys\n"
    "sys.modules['torch'] = sys.modules['pytest'] = None  # import torch: ImportError\n"
    "from pytest_cnnbudget.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


def test_merge_and_comment_post_run_without_torch_or_pytest(
    origin: Origin, github: tuple[Repository, str], tmp_path: Path
) -> None:
    # What the action's merge and post modes install: the package alone, --no-deps.
    state, api = github
    workspace = checkout(origin, "wider", tmp_path / "ws")
    done = ci(workspace, api, base=origin.main)
    assert done.returncode == 0, done.stdout + done.stderr
    out = workspace / ".cnn-budget"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    environ.update(GITHUB_API_URL=api, GITHUB_REPOSITORY="octo/models", GITHUB_TOKEN=TOKEN)
    for args in (
        # The base the shard compared with is in its report.
        ["merge", str(out / "report.json"), "--comment", str(tmp_path / "merged.md")],
        ["comment", "post", str(tmp_path / "merged.md"), "--pr", "7"],
    ):
        done = run([sys.executable, "-c", BLOCKED, *args], env=environ)
        assert done.returncode == 0, done.stdout + done.stderr
    [comment] = state.comments[7]
    assert "1,226" in comment["body"]


def test_a_monorepo_package_run_compares_only_what_it_loaded_and_hides_the_token(
    tmp_path: Path, github: tuple[Repository, str]
) -> None:
    _, api = github
    repo = tmp_path / "mono"
    for package, width in (("vision", 16), ("text", 32)):
        folder = repo / "pkgs" / package
        folder.mkdir(parents=True)
        (folder / f"{package}_net.py").write_text(CNN.format(width=width), encoding="utf-8")
        config = PYPROJECT.replace("cnn]", f"{package}]").replace("models.cnn:", f"{package}_net:")
        (folder / "pyproject.toml").write_text(config, encoding="utf-8")
    git(repo, "init", "-q", "-b", "main")
    gate_update(repo)
    assert (repo / "pkgs" / "text" / "cnnbudget.snapshot.json").is_file()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "two packages")
    # What the models' code sees: a conftest.py of the checkout writes the token it was given.
    (repo / "pkgs" / "vision" / "conftest.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path('seen-token').write_text(os.environ.get('GITHUB_TOKEN', 'none'))\n",
        encoding="utf-8",
    )
    done = ci(repo, api, "--base", "HEAD", "--", "pkgs/vision")
    assert done.returncode == 0, done.stdout + done.stderr
    body = (repo / ".cnn-budget" / "comment.md").read_text(encoding="utf-8")
    # The text package's snapshot is not read: its model is not "removed".
    assert body.startswith(f"{MARKER}\n✅ **cnn-budget**: no change"), body
    assert "(1 model checked)" in body
    assert (repo / "seen-token").read_text(encoding="utf-8") == "none"
    # One job per package: each read its own configs' base snapshots; the merge joins them.
    shutil.copy(repo / ".cnn-budget" / "report.json", tmp_path / "vision.json")
    other = ci(repo, api, "--base", "HEAD", "--", "pkgs/text")
    assert other.returncode == 0, other.stdout + other.stderr
    merged = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_cnnbudget",
            "merge",
            str(tmp_path / "vision.json"),
            str(repo / ".cnn-budget" / "report.json"),
            "--comment",
            str(tmp_path / "both.md"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert merged.returncode == 0, merged.stdout + merged.stderr
    both = (tmp_path / "both.md").read_text(encoding="utf-8")
    assert "no change" in both
    assert "(2 models checked)" in both


def test_a_run_that_does_not_complete_says_so_where_the_last_comment_stood(
    origin: Origin, github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, api = github
    workspace = checkout(origin, "wider", tmp_path / "ws")
    state.add(7, f"{MARKER}\n### cnn-budget: 1 of 1 model changed, 1 over budget")
    (workspace / "test_broken.py").write_text("def broken(:\n", encoding="utf-8")
    args = ("--comment", "post", "--", "test_broken.py", "pyproject.toml")
    done = ci(workspace, api, *args, base=origin.main)
    assert done.returncode == 2, done.stdout + done.stderr
    [comment] = state.comments[7]
    assert comment["body"].startswith(f"{MARKER}\n⚠️ **cnn-budget** did not check the models")
    assert "interrupted (a collection error" in comment["body"]
    # A run that cannot start (its base is nowhere): said where the comment stood.
    lost = ci(workspace, api, "--comment", "post", "--base", "no-such-branch")
    assert lost.returncode == 2
    [comment] = state.comments[7]
    assert (
        "did not check the models: it could not start: base 'no-such-branch'" in (comment["body"])
    )
    # A run that selects nothing makes no comment where there is none.
    state.comments[7].clear()
    (workspace / "test_broken.py").unlink()
    nothing = ci(workspace, api, "--comment", "post", "--", "-k", "nothing", base=origin.main)
    assert nothing.returncode == 5
    assert state.comments[7] == []


def test_the_base_rev_option_is_checked_before_any_model_is_built(
    origin: Origin, tmp_path: Path
) -> None:
    workspace = checkout(origin, "wider", tmp_path / "ws")

    def gate(*args: str) -> subprocess.CompletedProcess[str]:
        return run(
            [sys.executable, "-m", "pytest", "--cnn-budget", "-p", "no:cacheprovider", *args],
            cwd=workspace,
        )

    unknown = gate("--cnn-budget-base-rev", "no-such-branch")
    assert unknown.returncode == 4
    assert "--cnn-budget-base-rev: 'no-such-branch' is not a commit this checkout holds" in (
        unknown.stderr
    )
    both = gate("--cnn-budget-base-rev", "HEAD", "--cnn-budget-baseline=x.json")
    assert both.returncode == 4
    assert "--cnn-budget-base-rev and --cnn-budget-baseline: give one" in both.stderr
    # An output folder that holds someone else's files is not taken over.
    (workspace / "reports").mkdir()
    (workspace / "reports" / "notes.md").write_text("mine", encoding="utf-8")
    taken = ci(workspace, "http://127.0.0.1:9", "--no-base", "--out", "reports")
    assert taken.returncode == 2
    assert "holds files cnnbudget ci did not write" in taken.stderr
    assert (workspace / "reports" / "notes.md").read_text(encoding="utf-8") == "mine"


def test_a_merge_commit_is_compared_with_its_first_parent_not_a_stale_event_base(
    origin: Origin, tmp_path: Path
) -> None:
    # GitHub's refs/pull/N/merge: the base branch as it is now, merged with the pull request.
    workspace = tmp_path / "ws"
    git(tmp_path, "clone", "-q", "--branch", "main", origin.url, "ws")
    git(workspace, "fetch", "-q", "origin", "wider")
    git(workspace, "merge", "-q", "--no-ff", "-m", "Merge wider into main", "FETCH_HEAD")
    merge = git(workspace, "rev-parse", "HEAD")
    event = {"pull_request": {"number": 7, "base": {"sha": origin.before_snapshot, "ref": "main"}}}
    (tmp_path / "event.json").write_text(json.dumps(event), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_"))}
    environ.update(GITHUB_EVENT_PATH=str(tmp_path / "event.json"), GITHUB_SHA=merge)
    done = run([sys.executable, "-m", "pytest_cnnbudget", "ci"], cwd=workspace, env=environ)
    assert done.returncode == 0, done.stdout + done.stderr
    # Not the event's base (older, without the snapshot): the merge's first parent.
    assert f"comparing with main ({origin.main[:12]}), from the pull request's merge commit" in (
        done.stdout
    )
    body = (workspace / ".cnn-budget" / "comment.md").read_text(encoding="utf-8")
    assert "+608" in body
    # Not the merge of this pull request's head, or not a pull_request run: the event's base.
    for other in (
        {"GITHUB_EVENT_NAME": "pull_request_target"},
        {"GITHUB_EVENT_PATH": str(tmp_path / "other.json")},
    ):
        head = {"sha": "f" * 40}
        pull = {**event["pull_request"], "head": head}
        (tmp_path / "other.json").write_text(json.dumps({"pull_request": pull}), "utf-8")
        kept = subprocess.run(
            [sys.executable, "-m", "pytest_cnnbudget", "ci"],
            cwd=workspace,
            env={**environ, **other},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert f"({origin.before_snapshot[:12]}), from the pull_request event" in kept.stdout


def test_gitlab_pipelines_name_their_base() -> None:
    request = {
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": "1" * 40,
        "CI_MERGE_REQUEST_TARGET_BRANCH_SHA": "2" * 40,
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
    }
    detached = find_base(None, {**request, "CI_MERGE_REQUEST_EVENT_TYPE": "detached"})
    merged = find_base(None, {**request, "CI_MERGE_REQUEST_EVENT_TYPE": "merged_result"})
    assert detached is not None
    assert merged is not None
    assert (detached.ref, detached.branch) == ("1" * 40, "main")
    # A merged-results pipeline merged the target branch as it is now: its tip is the base.
    assert (merged.ref, merged.branch) == ("2" * 40, "main")
    assert find_base(None, {}) is None
    assert find_base("develop", request) == BaseRef("develop", "--base")


def test_a_snapshot_outside_the_repository_is_said_not_a_crash(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "cnn.py").write_text(CNN.format(width=16), encoding="utf-8")
    config = PYPROJECT.replace(
        "[tool.cnnbudget.models.cnn]",
        "[tool.cnnbudget]\nsnapshot = '../outside.json'\n\n[tool.cnnbudget.models.cnn]",
    )
    (repo / "pyproject.toml").write_text(config, encoding="utf-8")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "models")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--cnn-budget",
            "-p",
            "no:cacheprovider",
            "--cnn-budget-base-rev",
            "HEAD",
            "--cnn-budget-comment",
            "c.md",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "Traceback" not in done.stdout + done.stderr
    # A note, not an output error: the other snapshot files would still count.
    assert "is outside the git work tree" in done.stdout
    assert "its models count as new" in done.stdout
    assert "outputs not written" not in done.stdout
