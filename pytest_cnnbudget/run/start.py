"""The start of a gate run, pytest-free: its options as plain values, the config files found and
read, the baselines read, the output paths checked. Everything that can be wrong with a run's
set-up is found here, before any model is built, as one CnnBudgetError."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.files import Configs
from ..config.settings import find_config, load_settings
from ..constants import DEFAULT_SNAPSHOT
from ..errors import CnnBudgetError, ConfigError
from ..results import SnapshotEntry
from ..snapshot.store import read_baseline
from .gitbase import commit_of
from .outputs import Streams, output_problems


def in_ci(environ: Mapping[str, str]) -> bool:
    """Whether this runs in a CI job: `CI` set as GitHub Actions, GitLab CI and most others
    set it (`CI=false` and `CI=0` say not), or GitHub's and GitLab's own variables."""
    flag = environ.get("CI", "").strip().lower()
    if flag and flag not in ("0", "false", "no"):
        return True
    return environ.get("GITHUB_ACTIONS") == "true" or environ.get("GITLAB_CI") == "true"


@dataclass(frozen=True)
class RunOptions:
    """What a gate run was asked to do, whoever asked (pytest's options, a command's flags)."""

    rootdir: Path
    started: Path  # where the run was started: option paths are relative to it
    configs: tuple[str, ...] = ()  # --cnn-budget-config, as given
    baselines: tuple[str, ...] = ()  # --cnn-budget-baseline, as given
    baseline_name: str | None = None  # --cnn-budget-baseline-name: the base as comments say it
    base_rev: str | None = None  # --cnn-budget-base-rev: the base's snapshots, read with git
    update: bool = False
    json: str | None = None
    benchmark_json: str | None = None  # --cnn-budget-benchmark-json
    summary: str | None = None  # --cnn-budget-summary: the job summary, in any CI
    comment: str | None = None
    comment_if_changed: bool = False
    plot: str | None = None
    github: bool = False  # annotations and the job summary
    step_summary: str | None = None  # GITHUB_STEP_SUMMARY, read only when `github`
    workspace: str | None = None  # GITHUB_WORKSPACE, read only when `github`
    timeout: float | None = None  # --cnn-budget-timeout
    depth: int | None = None  # --cnn-budget-depth
    group: bool = True
    ci: bool = False  # in a CI job: a missing snapshot entry is one that was not committed

    @classmethod
    def from_options(
        cls, option: Any, rootdir: Path, started: Path, environ: Mapping[str, str]
    ) -> RunOptions:
        """pytest's parsed options (`config.option`) and the environment, as a run's options."""
        mode = option.cnn_budget_github
        github = mode == "on" or (mode == "auto" and environ.get("GITHUB_ACTIONS") == "true")
        return cls(
            rootdir=rootdir,
            started=started,
            configs=tuple(option.cnn_budget_config or ()),
            baselines=tuple(option.cnn_budget_baseline or ()),
            baseline_name=option.cnn_budget_baseline_name,
            base_rev=option.cnn_budget_base_rev,
            update=option.cnn_budget_update,
            json=option.cnn_budget_json,
            benchmark_json=option.cnn_budget_benchmark_json,
            summary=option.cnn_budget_summary,
            comment=option.cnn_budget_comment,
            comment_if_changed=option.cnn_budget_comment_if_changed,
            plot=option.cnn_budget_plot,
            github=github,
            step_summary=environ.get("GITHUB_STEP_SUMMARY") if github else None,
            workspace=environ.get("GITHUB_WORKSPACE") if github else None,
            timeout=option.cnn_budget_timeout,
            depth=option.cnn_budget_depth,
            group=not option.cnn_budget_no_group,
            ci=in_ci(environ),
        )

    def path(self, option: str) -> Path:
        """An option's path, read from where the run was started."""
        return Path(self.started, option)


@dataclass(frozen=True)
class Started:
    """A run's configs and baselines, read and checked."""

    configs: Configs  # grows as collection finds the packages' configs
    explicit: tuple[Path, ...] = ()  # the files --cnn-budget-config names
    baseline: Mapping[str, SnapshotEntry] | None = None  # None: no --cnn-budget-baseline
    streams: Streams = field(default_factory=Streams)  # outputs that name a pipe, held open

    def to_collect(self, default_paths: bool) -> list[Path]:
        """The config files a run collects whatever paths it was given: those named by
        --cnn-budget-config, and the rootdir's only when the run collects its default paths, so
        that `pytest --cnn-budget packages/vision` runs that package's models alone."""
        return [
            file.path
            for file in self.configs
            if not file.default and (file.path in self.explicit or default_paths)
        ]


def start(options: RunOptions) -> Started:
    """Read and check a run's configs, baselines and output paths; CnnBudgetError if any is off."""
    configs = Configs()
    root = options.rootdir / "pyproject.toml"
    explicit = tuple(find_config(options.rootdir, options.started, o) for o in options.configs)
    for path in explicit:
        configs.load(path, load_settings(path))
    if not explicit and root.is_file():
        configs.load(root)  # without [tool.cnnbudget], packages below may have theirs
    if not explicit and not configs and (options.rootdir / DEFAULT_SNAPSHOT).is_file():
        configs.default(options.rootdir)  # fixture checks' entries, for their stale ones
    if options.base_rev is not None:
        _check_base_rev(options)
    baseline: dict[str, SnapshotEntry] | None = None
    if options.baselines:
        baseline = {}
        for name in options.baselines:
            baseline.update(read_baseline(options.path(name)))
    streams = Streams()
    problems = output_problems(
        options.started,
        options.json,
        options.plot,
        options.step_summary if options.github else None,
        options.workspace if options.github else None,
        options.comment,
        streams,
        options.benchmark_json,
        options.summary,
    )
    if problems:
        streams.close()
        raise ConfigError("--cnn-budget: " + "; ".join(problems))
    if options.plot and importlib.util.find_spec("matplotlib") is None:
        raise ConfigError(
            "--cnn-budget-plot needs matplotlib: pip install 'pytest-cnnbudget[plot]'"
        )
    _on_path(options.rootdir)
    for file in configs:
        _on_path(file.path.parent)
    return Started(configs, explicit, baseline, streams)


def _check_base_rev(options: RunOptions) -> None:
    """--cnn-budget-base-rev names a commit the checkout holds, and comes alone: its snapshots
    are read at the end of the run, when every config is known, and not a moment sooner."""
    if options.baselines:
        raise ConfigError("--cnn-budget-base-rev and --cnn-budget-baseline: give one")
    try:
        commit_of(options.base_rev or "", options.rootdir)
    except CnnBudgetError as e:
        raise ConfigError(f"--cnn-budget-base-rev: {e}") from e


def _on_path(folder: Path) -> None:
    """Targets are "package.module:attr" relative to the project, like a console script's:
    the rootdir and each config's folder are searched, appended, so that an installed package
    of the same name still wins."""
    if str(folder) not in sys.path:
        sys.path.append(str(folder))


def covered(args: Sequence[str], invocation_dir: Path, path: Path) -> bool:
    """Whether one of pytest's arguments already collects the config file at `path`."""
    for arg in args:
        target = Path(invocation_dir, arg.split("::")[0]).resolve()
        if target == path or (target.is_dir() and path.is_relative_to(target)):
            return True
    return False
