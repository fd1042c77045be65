"""The start of a run (`run.start`), called directly: options as plain values, real config
files, snapshots and baselines in a temporary folder."""

from __future__ import annotations

import re
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from pytest_cnnbudget.errors import CnnBudgetError
from pytest_cnnbudget.results import SnapshotEntry, SnapshotLayer
from pytest_cnnbudget.run.start import RunOptions, start
from pytest_cnnbudget.snapshot.store import write_snapshot


@pytest.fixture(autouse=True)
def _sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """start() puts the project's folders on sys.path; each test's go when it ends."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def entry(params: int) -> SnapshotEntry:
    """A one-layer model's entry: `params` parameters in `fc`."""
    return SnapshotEntry(params, params, 0, 0, (SnapshotLayer("fc", "Linear", params, "n"),))


def config(folder: Path, *models: str) -> Path:
    """A pyproject.toml configuring `models` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = "".join(
        f'[tool.cnnbudget.models.{m}]\ntarget = "nets:{m}"\nmax_params = 100\n' for m in models
    )
    (folder / "pyproject.toml").write_text(f"[tool.cnnbudget]\n{tables}", encoding="utf-8")
    return folder / "pyproject.toml"


def options(**given: object) -> Namespace:
    """pytest's parsed options of a plain `pytest --cnn-budget`, with `given` changed."""
    defaults: dict[str, object] = {
        "cnn_budget_github": "auto",
        "cnn_budget_config": None,
        "cnn_budget_baseline": None,
        "cnn_budget_update": False,
        "cnn_budget_json": None,
        "cnn_budget_benchmark_json": None,
        "cnn_budget_summary": None,
        "cnn_budget_baseline_name": None,
        "cnn_budget_base_rev": None,
        "cnn_budget_comment": None,
        "cnn_budget_comment_if_changed": False,
        "cnn_budget_plot": None,
        "cnn_budget_timeout": None,
        "cnn_budget_depth": None,
        "cnn_budget_no_group": False,
    }
    return Namespace(**{**defaults, **{f"cnn_budget_{k}": v for k, v in given.items()}})


@pytest.mark.parametrize(
    ("mode", "actions", "github"),
    [("auto", "true", True), ("auto", None, False), ("on", None, True), ("off", "true", False)],
)
def test_github_output_follows_the_option_then_the_environment(
    tmp_path: Path, mode: str, actions: str | None, github: bool
) -> None:
    environ = {"GITHUB_STEP_SUMMARY": "/s.md", "GITHUB_WORKSPACE": "/w"}
    if actions is not None:
        environ["GITHUB_ACTIONS"] = actions
    run = RunOptions.from_options(options(github=mode), tmp_path, tmp_path, environ)
    assert run.github is github
    # The GitHub variables are read only when GitHub output is on.
    assert (run.step_summary, run.workspace) == (("/s.md", "/w") if github else (None, None))


def test_options_arrive_as_plain_values(tmp_path: Path) -> None:
    given = options(config=["a.toml"], baseline=["b.json"], no_group=True, depth=2, timeout=0.0)
    given.cnn_budget_benchmark_json = "trend.json"
    run = RunOptions.from_options(given, tmp_path, tmp_path / "sub", {})
    assert run.benchmark_json == "trend.json"
    assert (run.configs, run.baselines, run.group, run.depth, run.timeout) == (
        ("a.toml",),
        ("b.json",),
        False,
        2,
        0.0,
    )
    assert run.path("out.json") == tmp_path / "sub" / "out.json"


def test_the_rootdir_config_is_read_and_its_folder_searched_for_targets(tmp_path: Path) -> None:
    config(tmp_path, "a")
    write_snapshot(tmp_path / "cnnbudget.snapshot.json", {"a": entry(1)})
    started = start(RunOptions(rootdir=tmp_path, started=tmp_path))
    [file] = list(started.configs)
    assert file.stored == {"a": entry(1)}
    assert str(tmp_path) in sys.path
    # The rootdir's config is collected only when pytest collects its default paths.
    assert started.to_collect(default_paths=True) == [file.path]
    assert started.to_collect(default_paths=False) == []


def test_a_named_config_is_collected_whatever_the_paths(tmp_path: Path) -> None:
    path = config(tmp_path / "pkg", "a")
    started = start(RunOptions(rootdir=tmp_path, started=tmp_path, configs=("pkg/pyproject.toml",)))
    assert started.to_collect(default_paths=False) == [path.resolve()]


def test_baselines_are_read_together(tmp_path: Path) -> None:
    config(tmp_path, "a", "b")
    write_snapshot(tmp_path / "one.json", {"a": entry(1)})
    write_snapshot(tmp_path / "two.json", {"b": entry(2)})
    run = RunOptions(rootdir=tmp_path, started=tmp_path, baselines=("one.json", "two.json"))
    assert start(run).baseline == {"a": entry(1), "b": entry(2)}
    assert start(RunOptions(rootdir=tmp_path, started=tmp_path)).baseline is None


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"json": "taken"}, "--cnn-budget-json 'taken' names a folder, not a file"),
        ({"baselines": ("missing.json",)}, "missing.json: no such file; write it first"),
        ({"configs": ("nowhere.toml",)}, "--cnn-budget: no configuration file at"),
    ],
)
def test_what_is_wrong_with_a_runs_set_up_is_found_before_any_model(
    tmp_path: Path, given: dict[str, object], message: str
) -> None:
    config(tmp_path, "a")
    (tmp_path / "taken").mkdir()
    with pytest.raises(CnnBudgetError, match=re.escape(message)):
        start(RunOptions(rootdir=tmp_path, started=tmp_path, **given))  # type: ignore[arg-type]
