"""pytest hooks and options: wiring and printing only.

Without `--cnn-budget` this module registers three options and a marker, and nothing else: the
hooks that do work live on `BudgetSession`, which is only registered when the flag is given, and
torch is only imported when a budget item runs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Imported up front, though tiny, so that it outlives pytester's restoring of sys.modules: it
# remembers whether it froze anything.
from . import collector

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from .config import ModelSpec, Settings
    from .results import ModelResult, SnapshotEntry

_SESSION_KEY = pytest.StashKey["BudgetSession"]()
_REPORT_ATTR = "cnn_budget"  # travels with the test report, through xdist, to the controller


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cnn-budget", "parameter budgets for PyTorch models")
    group.addoption(
        "--cnn-budget",
        action="store_true",
        help="check the models in [tool.cnnbudget] against their budgets and snapshot",
    )
    group.addoption(
        "--cnn-budget-update",
        action="store_true",
        help="like --cnn-budget, and write the selected models' passing counts to the snapshot",
    )
    group.addoption(
        "--cnn-budget-config",
        metavar="PATH",
        help="the TOML file with [tool.cnnbudget] (default: pyproject.toml in the rootdir)",
    )
    group.addoption(
        "--cnn-budget-github",
        choices=("auto", "on", "off"),
        default="auto",
        help="GitHub Actions annotations and job summary (auto: when GITHUB_ACTIONS=true)",
    )
    group.addoption(
        "--cnn-budget-plot",
        metavar="DIR",
        help="write each model's per-layer share chart to DIR as SVG and PNG (needs matplotlib)",
    )
    group.addoption(
        "--cnn-budget-json",
        metavar="PATH",
        help="also write a JSON report of every model's counts and checks to PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Objects an earlier session in this process froze (pytest.main called again, pytester)
    # go back to the collector now: at the end of a session, it would have to walk all of
    # torch again, several times, on every command-line run.
    collector.thaw()
    config.addinivalue_line("markers", "cnn_budget: a parameter-budget check of a configured model")
    if not (config.option.cnn_budget or config.option.cnn_budget_update):
        return
    session = BudgetSession.start(config)
    config.stash[_SESSION_KEY] = session
    config.pluginmanager.register(session, "cnnbudget-session")


class BudgetFailure(Exception):
    """Raised by a budget item; carries the rendered table shown instead of a traceback."""


class BudgetSession:
    """State and hooks of one `--cnn-budget` run, registered only when the flag is given."""

    def __init__(
        self,
        config: pytest.Config,
        settings: Settings,
        stored: dict[str, SnapshotEntry],
    ) -> None:
        self.config = config
        self.settings = settings
        self.stored = stored
        self.update: bool = config.option.cnn_budget_update
        self.results: dict[str, ModelResult] = {}

    @classmethod
    def start(cls, config: pytest.Config) -> BudgetSession:
        """Load and validate everything before any model is built; UsageError if anything is off."""
        from .config import load_settings
        from .errors import CnnBudgetError
        from .snapshot import read_snapshot

        option = config.option.cnn_budget_config
        path = (
            Path(config.invocation_params.dir, option)
            if option
            else config.rootpath / "pyproject.toml"
        )
        path = path.resolve()
        if not path.is_file():
            where = "--cnn-budget-config" if option else "pytest's rootdir"
            raise pytest.UsageError(
                f"--cnn-budget: no configuration file at {path} ({where}); add "
                "[tool.cnnbudget] to pyproject.toml there, or pass --cnn-budget-config PATH"
            )
        try:
            settings = load_settings(path)
            stored = read_snapshot(settings.snapshot) if settings.snapshot else {}
        except CnnBudgetError as e:
            raise pytest.UsageError(str(e)) from None
        # Targets are "package.module:attr" relative to the project, like a console script's;
        # appended, so an installed package of the same name still wins.
        for folder in (config.rootpath, path.parent):
            if str(folder) not in sys.path:
                sys.path.append(str(folder))
        if config.option.cnn_budget_plot:
            import importlib.util

            if importlib.util.find_spec("matplotlib") is None:
                raise pytest.UsageError(
                    "--cnn-budget-plot needs matplotlib: pip install 'pytest-cnnbudget[plot]'"
                )
        _ensure_collected(config, path)
        return cls(config, settings, stored)

    @property
    def is_worker(self) -> bool:
        """True inside a pytest-xdist worker, which must leave writing to the controller."""
        return hasattr(self.config, "workerinput")

    def check(self, spec: ModelSpec) -> ModelResult:
        """Run one model's check (called by its item, possibly in a worker)."""
        from .gate import check_model

        return check_model(
            spec,
            self.stored.get(spec.name),
            snapshot_enabled=self.settings.snapshot is not None,
            update=self.update,
        )

    def failure_text(self, result: ModelResult) -> str:
        """The rendered failure of one model."""
        from .render_github import neutralize
        from .render_terminal import failure_lines

        lines = failure_lines(result, self.settings.path.name, self._snapshot_name)
        return "\n".join(neutralize(line) for line in lines)

    @property
    def _snapshot_name(self) -> str:
        snapshot = self.settings.snapshot
        if snapshot is None:
            return "(no snapshot)"
        try:
            return str(snapshot.relative_to(self.config.rootpath))
        except ValueError:
            return str(snapshot)

    @property
    def stale(self) -> list[str]:
        """Snapshot entries whose model is no longer configured."""
        configured = {m.name for m in self.settings.models}
        return sorted(name for name in self.stored if name not in configured)

    # -- hooks -----------------------------------------------------------------------------

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.File | None:
        if file_path.resolve() == self.settings.path:
            return BudgetFile.from_parent(parent, path=file_path)
        return None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, None]:
        # Here, not in the first item: see collector.py for why freezing waits for a shallow
        # stack. The xdist controller collects no items, so it never imports torch.
        if not session.config.option.collectonly and any(
            isinstance(item, BudgetItem) for item in session.items
        ):
            collector.import_frozen("pytest_cnnbudget.gate")
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, Any, None]:
        if not isinstance(item, BudgetItem):
            yield
            return
        with collector.paused():
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        if not isinstance(item, BudgetItem):
            return
        from .render_github import neutralize

        report = outcome.get_result()
        # What a model's constructor printed is shown with its failure; keep it from starting
        # workflow commands in the CI log.
        report.sections = [
            (title, "\n".join(neutralize(line) for line in content.split("\n")))
            for title, content in report.sections
        ]
        if call.when == "call" and item.result is not None:
            from .render_json import result_to_json

            setattr(report, _REPORT_ATTR, result_to_json(item.result))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, _REPORT_ATTR, None)
        if data is not None:
            from .render_json import result_from_json

            result = result_from_json(data)
            self.results[result.name] = result

    @pytest.hookimpl(optionalhook=True)
    def pytest_json_runtest_metadata(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> dict[str, Any]:
        result = getattr(item, "result", None)
        if not isinstance(item, BudgetItem) or call.when != "call" or result is None:
            return {}
        from .render_json import metadata

        return metadata(result)

    @property
    def github(self) -> bool:
        """Whether to emit GitHub Actions annotations and the job summary."""
        mode = self.config.option.cnn_budget_github
        return mode == "on" or (mode == "auto" and os.environ.get("GITHUB_ACTIONS") == "true")

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        other = self.config.pluginmanager.get_plugin("annotate_errors")
        if self.github and other is not None and not self.is_worker:
            # pytest-github-actions-annotate-failures annotates every failed report; a model
            # already gets a better-placed annotation from us, so pass it only the others.
            self.config.pluginmanager.unregister(other)
            self.config.pluginmanager.register(_SkipBudgetReports(other), "annotate_errors")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker:
            return
        results = list(self.results.values())
        if self.config.option.cnn_budget_json:
            from .render_json import run_report

            path = Path(self.config.invocation_params.dir, self.config.option.cnn_budget_json)
            path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(run_report(results, self.stale), indent=2, sort_keys=True)
            path.write_text(text + "\n", encoding="utf-8")
        summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
        if self.github and summary_file and results:
            from .render_github import summary_markdown

            markdown = summary_markdown(results, self.settings.path.name, self._snapshot_name)
            with open(summary_file, "a", encoding="utf-8") as handle:
                handle.write(markdown)
        if self.config.option.cnn_budget_plot:
            self._write_plots(results)
        if self.update and self.settings.snapshot is not None:
            self._write_snapshot()

    def _write_plots(self, results: list[ModelResult]) -> None:
        import re

        from .plot import save_plot

        directory = Path(self.config.invocation_params.dir, self.config.option.cnn_budget_plot)
        for result in results:
            if result.count is not None:
                stem = re.sub(r"[^A-Za-z0-9_.-]", "_", result.name)
                save_plot(result.count, directory, stem, title=f"{result.name} ({result.target})")

    def _write_snapshot(self) -> None:
        assert self.settings.snapshot is not None
        from .results import SnapshotStatus
        from .snapshot import write_snapshot

        entries = dict(self.stored)
        for result in self.results.values():
            if result.entry is not None and result.snapshot in (
                SnapshotStatus.ADDED,
                SnapshotStatus.UPDATED,
            ):
                entries[result.name] = result.entry
        # Removing an entry is only safe when every configured model ran: a partial run (-k, -m,
        # node ids) cannot tell "no longer configured" from "not selected".
        if {m.name for m in self.settings.models} <= set(self.results):
            for name in self.stale:
                del entries[name]
        # Only what changed is written: an update that accepts nothing leaves the file (and its
        # absence) alone.
        if entries != self.stored:
            write_snapshot(self.settings.snapshot, entries)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        from .render_terminal import summary_lines, update_lines, warning_lines

        verbose = self.config.option.verbose > 0
        results = list(self.results.values())
        stale = self.stale
        if self.update and self.settings.snapshot is not None:
            complete = {m.name for m in self.settings.models} <= set(self.results)
            lines = update_lines(results, stale if complete else [], self._snapshot_name)
        else:
            lines = []
        lines += summary_lines(results, stale, verbose=verbose, max_rows=10**9 if verbose else 50)
        from .render_github import neutralize

        terminalreporter.section("cnn-budget")
        for line in lines:
            terminalreporter.write_line(neutralize(line))
        warned = warning_lines(results, self.settings.path.name, self._snapshot_name)
        if warned:
            terminalreporter.section('cnn-budget warnings (level = "warn")', yellow=True)
            for line in warned:
                terminalreporter.write_line(neutralize(line))
        if self.github:
            for line in self._annotations(results):
                terminalreporter.write_line(line)

    def _annotations(self, results: list[ModelResult]) -> list[str]:
        from .render_github import Anchor, annotation_lines, relative_to_workspace

        workspace = os.environ.get("GITHUB_WORKSPACE")
        anchors = {}
        for result in results:
            line: int | None
            if result.source is not None:
                path, line = result.source.path, result.source.line
            else:
                path, line = str(self.settings.path), self.settings.model(result.name).line
            anchors[result.name] = Anchor(relative_to_workspace(path, workspace), line)
        return annotation_lines(results, anchors, self.settings.path.name, self._snapshot_name)


def _ensure_collected(config: pytest.Config, path: Path) -> None:
    """Add the config file to what pytest collects, unless an argument already covers it."""
    for arg in config.args:
        target = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if target == path or (target.is_dir() and path.is_relative_to(target)):
            return
    config.args.append(str(path))


class _SkipBudgetReports:
    """Forwards test reports to another annotating plugin, except the budget items' own."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if getattr(report, _REPORT_ATTR, None) is None:
            self.inner.pytest_runtest_logreport(report)


class BudgetFile(pytest.File):
    """The configuration file, collected as the container of one item per model."""

    def collect(self) -> Iterator[BudgetItem]:
        from .render_terminal import printable

        session: BudgetSession = self.config.stash[_SESSION_KEY]
        for spec in session.settings.models:
            name = f"cnn_budget[{printable(spec.name)}]"
            yield BudgetItem.from_parent(self, name=name, spec=spec)


class BudgetItem(pytest.Item):
    """One configured model's budget and snapshot check."""

    def __init__(self, *, spec: ModelSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.result: ModelResult | None = None
        self.add_marker("cnn_budget")

    def runtest(self) -> None:
        from .results import Outcome

        session: BudgetSession = self.config.stash[_SESSION_KEY]
        self.result = session.check(self.spec)
        if self.result.outcome in (Outcome.FAILED, Outcome.ERROR):
            raise BudgetFailure(session.failure_text(self.result))

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, BudgetFailure):
            return str(excinfo.value)
        # pytest's own representation, not its text: the short summary takes the crash line
        # from it.
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.spec.line - 1 if self.spec.line else None
        return self.path, line, f"{self.name} {self.spec.target}"
