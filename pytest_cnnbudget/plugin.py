"""pytest hooks and options: wiring, printing rendered lines, exit status. No logic of its own.

Without `--cnn-budget` this module registers its options and a marker, and nothing else; torch
is only imported when a budget item runs. With it, one session object is registered, of the
class that fits the process:

- `LocalSession`: a run without pytest-xdist. Items check their models and hand the results
  straight to the session, which reports them and writes the files.
- `WorkerSession`: an xdist worker. Items check their models; each result travels to the
  controller in its test report (see wire.py). A worker writes nothing.
- `ControllerSession`: the xdist controller. It runs no items; it reads the results out of the
  workers' reports, then reports them and writes the files like a local run.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from .constants import DEFAULT_SNAPSHOT, DEFAULT_TIMEOUT, MAX_TIMEOUT

# Imported up front, though tiny, so that it outlives pytester's restoring of sys.modules: it
# remembers whether it froze anything.
from .run import collector

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from .config.files import ConfigFile, Configs
    from .config.settings import ModelSpec, Settings
    from .results import ModelResult, SnapshotEntry
    from .run.isolation import Checker, Raised
    from .snapshot.compare import BaseComparison
    from .snapshot.merge import Merge

_SESSION_KEY = pytest.StashKey["BudgetSession"]()
_REPORT_ATTR = "cnn_budget"  # on a budget item's call report; through xdist, the result itself
_FIXTURE_RESULTS = pytest.StashKey[list["ModelResult"]]()  # a test's cnn_budget() checks
_UNCHECKED_KEY = pytest.StashKey[int]()  # cnn_budget() checks run without --cnn-budget
_UNCHECKED_ATTR = "cnn_budget_unchecked"  # on such a test's report, for the xdist controller


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
        action="append",
        help="a TOML file with [tool.cnnbudget], collected whatever the paths given (may be "
        "repeated; default: pyproject.toml in the rootdir, and every pyproject.toml with "
        "[tool.cnnbudget] in the collected paths)",
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
    group.addoption(
        "--cnn-budget-baseline",
        metavar="PATH",
        action="append",
        help="a snapshot from the base branch (git show origin/main:cnnbudget.snapshot.json "
        "> base.json) to compare every model with, for the job summary and --cnn-budget-comment "
        "(may be repeated, one per package's snapshot)",
    )
    group.addoption(
        "--cnn-budget-comment",
        metavar="PATH",
        help="write a pull-request comment body (Markdown) to PATH: the models that changed "
        "against the baseline (else the snapshot) or broke a budget",
    )
    group.addoption(
        "--cnn-budget-comment-if-changed",
        action="store_true",
        help="with --cnn-budget-comment, leave the file empty when nothing changed (default: a "
        "one-line 'no change' body)",
    )
    group.addoption(
        "--cnn-budget-timeout",
        metavar="SECONDS",
        type=_seconds,
        help="time limit of each model's check, unless its table sets `timeout` "
        f"(default: `timeout` in [tool.cnnbudget], else {DEFAULT_TIMEOUT:g}; 0: no limit)",
    )
    group.addoption(
        "--cnn-budget-depth",
        metavar="N",
        type=_depth,
        help="fold table rows into the first N levels of their module names (layers.3.mlp.up "
        "→ layers at 1), unless a model's table sets `depth`; the snapshot keeps every layer",
    )
    group.addoption(
        "--cnn-budget-no-group",
        action="store_true",
        help="show repeated blocks row by row (by default layers alike but for their block "
        "index are one row: layers.{0..31}.mlp.up ×32)",
    )
    group.addoption(
        "--cnn-budget-isolation",
        choices=("fork", "off"),
        default="fork" if hasattr(os, "fork") else "off",
        help="fork: check models in a forked process, so that one that hangs or crashes fails "
        "alone (default where os.fork exists); off: in pytest's process, e.g. for a debugger",
    )


def _seconds(text: str) -> float:
    """A --cnn-budget-timeout value: seconds, finite, 0 to 86400."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= MAX_TIMEOUT):
        raise argparse.ArgumentTypeError(
            f"expected seconds from 0 (no limit) to {MAX_TIMEOUT:g}, got {text!r}"
        )
    return value


def _depth(text: str) -> int:
    """A --cnn-budget-depth value: a whole number of name levels."""
    import argparse

    from .config.settings import parse_depth

    try:
        return parse_depth(int(text))
    except ValueError as e:
        reason = str(e) if text.strip().isdigit() else "not a whole number"
        raise argparse.ArgumentTypeError(f"expected name levels, {text!r} is {reason}") from None


def pytest_configure(config: pytest.Config) -> None:
    # Objects an earlier session in this process froze (pytest.main called again, pytester)
    # go back to the collector now: at the end of a session, it would have to walk all of
    # torch again, several times, on every command-line run.
    collector.thaw()
    config.addinivalue_line("markers", "cnn_budget: a parameter-budget check of a configured model")
    if not (config.option.cnn_budget or config.option.cnn_budget_update):
        config.pluginmanager.register(_PlainRun(config), "cnnbudget-plain")
        return
    session = _session_class(config).start(config)
    config.stash[_SESSION_KEY] = session
    config.pluginmanager.register(session, "cnnbudget-session")


def _session_class(config: pytest.Config) -> type[BudgetSession]:
    if hasattr(config, "workerinput"):
        return WorkerSession
    # pytest-xdist turns -n N into a distribution mode and N execution environments (--tx)
    # before plugins are configured, and distributes only when it has both; with --collect-only
    # it starts no workers and the run stays local.
    option = config.option
    distributed = getattr(option, "dist", "no") != "no" and bool(getattr(option, "tx", None))
    if distributed and not option.collectonly:
        return ControllerSession
    return LocalSession


class BudgetSession:
    """What every process of a `--cnn-budget` run shares: settings, snapshot, items."""

    def __init__(
        self,
        config: pytest.Config,
        configs: Configs,
        baseline: dict[str, SnapshotEntry] | None = None,
    ) -> None:
        self.config = config
        self.configs = configs
        self.collected: dict[Path, Path] = {}  # config files collected: resolved → as found
        self.baseline = baseline  # the base branch's snapshot, with --cnn-budget-baseline
        self.update: bool = config.option.cnn_budget_update
        self.failed: dict[str, list[str]] = {}  # each failure rendered once, by model name
        self.checker: Checker | None = None  # made at the first check
        # The terminal's stderr, taken now, while pytest's capture is suspended (as its own
        # faulthandler plugin does): where an in-process time limit says where it was stuck.
        self.stderr: int | None = _dup_stderr()

    @classmethod
    def start(cls, config: pytest.Config) -> BudgetSession:
        """Load and validate everything before any model is built; UsageError if anything is off."""
        from .config.files import Configs
        from .config.settings import find_config, load_settings
        from .errors import CnnBudgetError, ConfigError
        from .report.github import neutralize_text
        from .run.outputs import output_problems
        from .snapshot.store import read_baseline

        option = config.option
        configs = Configs()
        started = config.invocation_params.dir
        try:
            explicit = [
                find_config(config.rootpath, started, o) for o in option.cnn_budget_config or ()
            ]
            for path in explicit:
                configs.load(path, load_settings(path))
            root = config.rootpath / "pyproject.toml"
            if not explicit and root.is_file():
                configs.load(root)  # without [tool.cnnbudget], packages below may have theirs
            if not explicit and not configs and (config.rootpath / DEFAULT_SNAPSHOT).is_file():
                configs.default(config.rootpath)  # fixture checks' entries, for their stale ones
            baseline = None
            if option.cnn_budget_baseline:
                baseline = {}
                for name in option.cnn_budget_baseline:
                    baseline.update(read_baseline(Path(started, name)))
            github = github_on(config)
            problems = output_problems(
                config.invocation_params.dir,
                option.cnn_budget_json,
                option.cnn_budget_plot,
                os.environ.get("GITHUB_STEP_SUMMARY") if github else None,
                os.environ.get("GITHUB_WORKSPACE") if github else None,
                option.cnn_budget_comment,
            )
            if problems:
                raise ConfigError("--cnn-budget: " + "; ".join(problems))
        except CnnBudgetError as e:
            # pytest prints the message as it is; a line of it must not start a workflow command.
            raise pytest.UsageError(neutralize_text(str(e))) from None
        _on_path(config.rootpath)
        for file in configs:
            _on_path(file.path.parent)
        if config.option.cnn_budget_plot:
            import importlib.util

            if importlib.util.find_spec("matplotlib") is None:
                raise pytest.UsageError(
                    "--cnn-budget-plot needs matplotlib: pip install 'pytest-cnnbudget[plot]'"
                )
        # A file named by --cnn-budget-config is checked whatever paths are given; the
        # rootdir's only when pytest collects its default paths, so that `pytest --cnn-budget
        # packages/vision` runs that package's models alone.
        testpaths = config.args_source is pytest.Config.ArgsSource.TESTPATHS
        for file in configs:
            if not file.default and (file.path in explicit or testpaths):
                _ensure_collected(config, file.path)
        return cls(config, configs, baseline)

    def check(self, spec: ModelSpec, file: ConfigFile) -> ModelResult:
        """Run one model's check (called by its item), where the isolation option says."""
        from .report.github import neutralize_text
        from .run.isolation import Request, make_checker, picklable_filters, replay

        if self.checker is None:
            self.checker = make_checker(self.config.option.cnn_budget_isolation, self.stderr)
        depth = self.depth(spec, file.settings)
        request = Request(
            spec if depth == spec.depth else replace(spec, depth=depth),
            file.stored.get(spec.name),
            snapshot_enabled=file.settings.snapshot is not None,
            update=self.update,
            timeout=self.timeout(spec, file.settings),
            filters=picklable_filters(),
            log_level=logging.getLogger().level,
            redirect=self.config.option.capture != "no",
        )
        checked = self.checker.check(request)
        # What the model printed, logged and warned, as pytest would have captured it; pytest
        # prints warnings in its own summary, so their text is neutralized here.
        replay(checked.captured, neutralize_text)
        if checked.result is None:
            _raise_outcome(checked.raised)
        self.record(checked.result)
        return checked.result

    def timeout(self, spec: ModelSpec, settings: Settings) -> float | None:
        """The model's time limit in seconds, None for none: its table's `timeout`, else
        --cnn-budget-timeout, else [tool.cnnbudget]'s, else the default."""
        for value in (spec.timeout, self.config.option.cnn_budget_timeout, settings.timeout):
            if value is not None:
                return value or None
        return DEFAULT_TIMEOUT

    def depth(self, spec: ModelSpec, settings: Settings) -> int | None:
        """The name levels a model's tables keep, None for every level: its table's `depth`,
        else --cnn-budget-depth, else [tool.cnnbudget]'s."""
        for value in (spec.depth, self.config.option.cnn_budget_depth, settings.depth):
            if value is not None:
                return value
        return None

    @property
    def group(self) -> bool:
        """Whether tables show repeated blocks as one row."""
        return not self.config.option.cnn_budget_no_group

    def close(self) -> None:
        """End the checking process, if one was started."""
        if self.checker is not None:
            self.checker.close()
            self.checker = None

    def record(self, result: ModelResult) -> None:
        """Keep a result for the end of the run; only a process that reports keeps them."""

    def failure_lines(self, result: ModelResult) -> list[str]:
        """The rendered failure of one model, rendered on first use."""
        lines = self.failed.get(result.name)
        if lines is None:
            from .report.terminal import failure_lines

            names = self.names(self.configs.file_of(result.name))
            lines = self.failed[result.name] = failure_lines(result, *names, self.group)
        return lines

    def report_payload(self, result: ModelResult) -> bool | dict[str, Any]:
        """What a budget item's call report carries (see _REPORT_ATTR)."""
        return True

    def failure_text(self, result: ModelResult) -> str:
        """The rendered failure of one model, safe to print in a CI log."""
        from .report.github import neutralize_text

        return neutralize_text("\n".join(self.failure_lines(result)))

    def names(self, file: ConfigFile) -> tuple[str, str]:
        """How failures name a config file and its snapshot: relative to the rootdir."""
        rootdir = self.config.rootpath
        path = file.path
        shown = str(path.relative_to(rootdir)) if path.is_relative_to(rootdir) else path.name
        return shown, file.settings.snapshot_name(rootdir)

    # -- hooks -----------------------------------------------------------------------------

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close()
        if self.stderr is not None:
            os.close(self.stderr)
            self.stderr = None

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.File | None:
        from .errors import CnnBudgetError
        from .report.github import neutralize_text

        resolved = file_path.resolve()
        # With --cnn-budget-config, the files it names and no others.
        discover = not self.config.option.cnn_budget_config and file_path.name == "pyproject.toml"
        if not discover and resolved not in self.configs.files:
            return None
        try:
            file = self.configs.load(resolved)
        except CnnBudgetError as e:
            # A package's broken config fails its collection, by file, before any model runs.
            return BudgetFile.from_parent(parent, path=file_path, problem=neutralize_text(str(e)))
        if file is None:
            return None
        # A file reached by a second path (a symlinked folder) is checked once; pytest may
        # ask again for the same path (once per argument that walks its folder).
        if self.collected.setdefault(resolved, file_path) != file_path:
            return None
        return BudgetFile.from_parent(parent, path=file_path)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, None]:
        # Here, not in the first item: see collector.py for why freezing waits for a shallow
        # stack. The xdist controller runs no items, so it never imports torch.
        if not session.config.option.collectonly and any(
            isinstance(item, BudgetItem) for item in session.items
        ):
            collector.import_frozen("pytest_cnnbudget.run.gate")
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
            checked = item.stash.get(_FIXTURE_RESULTS, None)
            if checked and call.when == "call":
                report = outcome.get_result()
                if report.failed:
                    # The test failed after its checks passed: an update accepts none of them.
                    checked[:] = [replace(r, entry=None) for r in checked]
                    for result in checked:
                        self.record(result)
                payloads = [self.report_payload(r) for r in checked]
                setattr(report, _REPORT_ATTR, payloads)
            return
        from .report.github import neutralize_text

        report = outcome.get_result()
        # What a model's constructor printed is shown with its failure; keep it from starting
        # workflow commands in the CI log.
        report.sections = [(title, neutralize_text(text)) for title, text in report.sections]
        if call.when == "call" and item.result is not None:
            setattr(report, _REPORT_ATTR, self.report_payload(item.result))

    @pytest.hookimpl(optionalhook=True)
    def pytest_json_runtest_metadata(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> dict[str, Any]:
        if call.when != "call":
            return {}
        if isinstance(item, BudgetItem):
            results = [item.result] if item.result is not None else []
        else:
            results = item.stash.get(_FIXTURE_RESULTS, [])
        if not results:
            return {}
        from .errors import exception_text
        from .report.json import metadata

        shown = []
        for result in results:
            try:
                shown.append(metadata(result)["cnn_budget"])
            except Exception as e:  # one model's odd figures must not break the whole report
                shown.append({"name": result.name, "error": exception_text(e)})
        # A test that checked several models (`name=`) carries a list.
        return {"cnn_budget": shown[0] if len(shown) == 1 else shown}


class WorkerSession(BudgetSession):
    """An xdist worker: checks its share of the models and ships each result in its report."""

    def report_payload(self, result: ModelResult) -> bool | dict[str, Any]:
        from .run.wire import encode

        # The config file too: the controller collects nothing, so a package's config it
        # has not read yet is read when its first result arrives.
        file = self.configs.file_of(result.name)
        return {"config": str(file.path), "default": file.default, "result": encode(result)}

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Every config this worker collected, so that the controller, which collects nothing,
        # knows the stale entries of a file none of whose models ran.
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput["cnn_budget_configs"] = [str(p) for p in self.collected]


class ReportingSession(BudgetSession):
    """A process that sees every result: it prints the summary and writes the files."""

    def __init__(
        self,
        config: pytest.Config,
        configs: Configs,
        baseline: dict[str, SnapshotEntry] | None = None,
    ) -> None:
        super().__init__(config, configs, baseline)
        self.results: dict[str, ModelResult] = {}
        # Per config file, decided once, at the end, for the writer and the report.
        self.merged: dict[Path, Merge] | None = None
        self.snapshot_failed = False  # the update's write of the snapshot failed
        self.output_errors: list[str] = []  # outputs that could not be written
        self.notes: list[str] = []  # what the update report adds about the snapshot
        self.compared: tuple[BaseComparison, ...] | None = None  # see comparisons()

    def record(self, result: ModelResult) -> None:
        self.results[result.name] = result
        if result.failed:
            self.failure_lines(result)

    def merge(self) -> dict[Path, Merge]:
        """What each snapshot should hold after this run, and why."""
        return {
            file.path: self.merge_file(file, file.stored, self.results_of(file))
            for file in self.configs
        }

    def results_of(self, file: ConfigFile) -> list[ModelResult]:
        """This run's results of the models (and fixture checks) of one config file."""
        owner = self.configs.owner
        return [r for r in self.results.values() if owner.get(r.name) == file.path]

    def merge_file(
        self,
        file: ConfigFile,
        entries: Mapping[str, SnapshotEntry],
        results: Iterable[ModelResult],
    ) -> Merge:
        """The merge of one snapshot: fixture entries whose tests still exist are kept."""
        from .config.files import fixture_stale
        from .config.settings import is_fixture_name
        from .snapshot.merge import merge_snapshot

        rootdir = self.config.rootpath
        kept = [n for n in entries if is_fixture_name(n) and not fixture_stale(n, rootdir)]
        return merge_snapshot(entries, results, file.configured(), kept)

    @property
    def github(self) -> bool:
        """Whether to emit GitHub Actions annotations and the job summary."""
        return github_on(self.config)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        other = self.config.pluginmanager.get_plugin("annotate_errors")
        if self.github and other is not None:
            # pytest-github-actions-annotate-failures annotates every failed report; a model
            # already gets a better-placed annotation from us, so pass it only the others.
            self.config.pluginmanager.unregister(other)
            self.config.pluginmanager.register(_SkipBudgetReports(other), "annotate_errors")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from .run import outputs

        self.close()
        results = sorted(self.results.values(), key=lambda r: r.name)
        # The snapshots first, and on their own: an accepted update must not depend on the
        # other files. Each output after them is written even when the one before failed.
        merges = self.merged = {file.path: self.write_snapshot(file) for file in self.configs}
        written = self.update and not self.snapshot_failed
        stale = sorted(n for merge in merges.values() for n in merge.stale_after(written))
        where = self.config.invocation_params.dir
        option = self.config.option
        if option.cnn_budget_json:
            from .report.json import run_report

            path = Path(where, option.cnn_budget_json)
            self.output(
                f"the JSON report (--cnn-budget-json {path})",
                lambda: outputs.write_json(path, run_report(results, stale)),
            )
        summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
        if self.github and summary_file and results:
            from .report.github import summary_markdown

            base = self.comparisons(results) if self.baseline is not None else None
            self.output(
                f"the job summary (GITHUB_STEP_SUMMARY={summary_file})",
                lambda: outputs.append_text(
                    Path(summary_file), summary_markdown(results, self.failed, base)
                ),
            )
        if option.cnn_budget_comment:
            from .report.comment import comment_markdown

            comment = Path(where, option.cnn_budget_comment)
            against = (
                f"the baseline {', '.join(option.cnn_budget_baseline)}"
                if self.baseline is not None
                else f"the snapshot {', '.join(self.names(f)[1] for f in self.configs)}"
            )
            text = comment_markdown(
                results,
                self.comparisons(results),
                against,
                self.group,
                if_changed=option.cnn_budget_comment_if_changed,
            )
            self.output(
                f"the pull-request comment (--cnn-budget-comment {comment})",
                lambda: outputs.write_text(comment, text),
            )
        if option.cnn_budget_plot:
            folder = Path(where, option.cnn_budget_plot)
            self.output(
                f"the charts (--cnn-budget-plot {folder})",
                lambda: outputs.write_charts(folder, results),
            )
        if self.output_errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def comparisons(self, results: list[ModelResult]) -> tuple[BaseComparison, ...]:
        """Every model against the base: the baseline when given, else the snapshot as it was
        before this run; compared once, for the job summary and the comment alike."""
        if self.compared is None:
            from .config.files import fixture_stale
            from .config.settings import is_fixture_name
            from .snapshot.compare import compare_with_base

            rootdir = self.config.rootpath
            base = self.baseline
            if base is None:
                base = {name: e for file in self.configs for name, e in file.stored.items()}
            # A fixture check is no table's model, and not removed while its test exists.
            kept = [n for n in base if is_fixture_name(n) and not fixture_stale(n, rootdir)]
            configured = [*self.configs.names(), *(r.name for r in results), *kept]
            self.compared = compare_with_base(results, base, configured)
        return self.compared

    def write_snapshot(self, file: ConfigFile) -> Merge:
        """Merge this run's accepted counts of one config's models into its snapshot on disk,
        under its lock, so that a concurrent update's entries are kept; the merge as written."""
        from .errors import CnnBudgetError
        from .snapshot.store import locked, write_snapshot

        path = file.settings.snapshot
        results = self.results_of(file)
        if not self.update or path is None:
            return self.merge_file(file, file.stored, results)
        try:
            with locked(path) as current:
                merge = self.merge_file(file, current.entries, results)
                if merge.changed:
                    write_snapshot(path, merge.entries)
        except CnnBudgetError as e:
            self.output_errors.append(
                f"the snapshot was not written, and still holds what it held before: {e}"
            )
            self.snapshot_failed = True
            return self.merge_file(file, file.stored, results)
        if not current.held:
            self.notes.append(
                f"{path.parent} does not support file locks: a concurrent "
                "--cnn-budget-update could have overwritten entries"
            )
        if current.entries != file.stored:
            self.notes.append(
                "the snapshot changed on disk during this run (another update); "
                "its entries were kept, merged with this run's"
            )
        return merge

    def output(self, what: str, write: Callable[[], object]) -> None:
        """Write one output; a failure is reported with `what` and fails the run, and the
        other outputs are still written."""
        from .run.outputs import failure_text

        try:
            write()
        except Exception as e:
            self.output_errors.append(f"could not write {what}: {failure_text(e)}")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        from .report.github import anchors, annotation_lines
        from .report.terminal import overview_lines, update_lines, warning_lines

        terminal = _Terminal(terminalreporter)
        results = list(self.results.values())
        merges = self.merged or self.merge()
        verbose = self.config.option.verbose > 0
        lines: list[str] = []
        stale: list[str] = []
        for file in self.configs:
            merge = merges[file.path]
            # What the update did, unless writing a snapshot failed (its error is shown below).
            updating = (
                self.update and file.settings.snapshot is not None and not self.snapshot_failed
            )
            if updating:
                ran = self.results_of(file)
                lines += update_lines(ran, merge, self.names(file)[1], self.group)
            stale += merge.stale_after(written=updating)
        lines += self.notes
        lines += overview_lines(
            results,
            stale,
            verbose=verbose,
            max_rows=10**9 if verbose else 50,
            group=self.group,
        )
        if lines:  # nothing when no model ran (a collection error stopped the run)
            terminal.section("cnn-budget", lines)
        if self.output_errors:
            terminal.section("cnn-budget: outputs not written", self.output_errors, red=True)
        warned = warning_lines(results, self.failed)
        if warned:
            terminal.section('cnn-budget warnings (level = "warn")', warned, yellow=True)
        if self.github:
            places = {
                m.name: (file.path, m.line) for file in self.configs for m in file.settings.models
            }
            workspace = os.environ.get("GITHUB_WORKSPACE")
            environments = (sys.prefix, sys.exec_prefix, sys.base_prefix)
            where = anchors(results, places, workspace, environments)
            terminal.commands(annotation_lines(results, where, self.failed))


class LocalSession(ReportingSession):
    """A run without xdist: items hand their results straight to the session."""


class ControllerSession(ReportingSession):
    """The xdist controller: results arrive inside the workers' test reports."""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, _REPORT_ATTR, None)
        payloads = [data] if isinstance(data, dict) else data if isinstance(data, list) else []
        for payload in payloads:
            if not isinstance(payload, dict):
                continue
            from .run.wire import decode

            result = decode(payload["result"])
            file = self.load(payload["config"], bool(payload.get("default")))
            if file is not None:
                self.configs.claim(result.name, file.path)
                self.record(result)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        for path in getattr(node, "workeroutput", {}).get("cnn_budget_configs", ()):
            self.load(path)

    def load(self, path: str, default: bool = False) -> ConfigFile | None:
        """A config a worker read, read here too; None if it cannot be (a worker already
        failed that file's collection, naming why)."""
        from .errors import CnnBudgetError

        try:
            if default:
                return self.configs.default(self.config.rootpath)
            return self.configs.load(Path(path))
        except CnnBudgetError:
            return None


class _Terminal:
    """The one way lines reach the terminal: user text is neutralized, commands are not."""

    def __init__(self, reporter: pytest.TerminalReporter) -> None:
        self.reporter = reporter

    def section(
        self, title: str, lines: Iterable[str], yellow: bool = False, red: bool = False
    ) -> None:
        from .report.github import neutralize_text

        self.reporter.section(title, yellow=yellow, red=red)
        for line in lines:
            self.reporter.write_line(neutralize_text(line))

    def commands(self, lines: Iterable[str]) -> None:
        """Workflow commands, escaped where they were made (report.github.workflow_command)."""
        for line in lines:
            self.reporter.write_line(line)


class _PlainRun:
    """A run without --cnn-budget: adds nothing but two notes, once each, when they apply."""

    def __init__(self, config: pytest.Config) -> None:
        self.hint = _selects_budget_items(config.option.markexpr or "")
        self.unchecked = 0  # tests whose cnn_budget() checks skipped the snapshot

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        if call.when == "call" and item.stash.get(_UNCHECKED_KEY, 0):
            setattr(outcome.get_result(), _UNCHECKED_ATTR, True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Through the report, so that the xdist controller counts its workers' tests.
        if getattr(report, _UNCHECKED_ATTR, False):
            self.unchecked += 1

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.hint:
            terminalreporter.write_line(
                "cnn-budget: the budget checks of [tool.cnnbudget] are collected only with "
                "--cnn-budget: run pytest --cnn-budget -m cnn_budget"
            )
        if self.unchecked:
            tests = "test" if self.unchecked == 1 else "tests"
            terminalreporter.write_line(
                f"cnn-budget: {self.unchecked} {tests} checked budgets with cnn_budget() "
                "but not the snapshot; run with --cnn-budget to compare it"
            )


def _selects_budget_items(expression: str) -> bool:
    """Whether a `-m` expression selects items marked `cnn_budget` (and no other mark)."""
    if "cnn_budget" not in expression:
        return False
    try:
        from _pytest.mark.expression import Expression  # pytest's own -m grammar

        return bool(Expression.compile(expression).evaluate(_only_budget_mark))
    except Exception:  # a pytest whose private grammar moved: the plain test
        return True


def _only_budget_mark(name: str, /, **kwargs: Any) -> bool:
    return name == "cnn_budget"


def pytest_itemcollected(item: pytest.Item) -> None:
    # A test that calls the fixture is a budget check too: `-m cnn_budget` selects it.
    if "cnn_budget" in getattr(item, "fixturenames", ()):
        item.add_marker("cnn_budget")


class _FixtureCheck:
    """The callable the `cnn_budget` fixture gives a test (see `cnn_budget`)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        # Fresh for each run of the test: a plugin that reruns a failed test reruns its checks.
        request.node.stash[_FIXTURE_RESULTS] = []

    def __call__(self, model: Any, *, name: str | None = None, **budgets: Any) -> ModelResult:
        from .errors import CnnBudgetError
        from .report.github import neutralize_text
        from .results import Outcome

        caller = sys._getframe(1)  # the test's line: where a failure without a layer points
        where = (caller.f_code.co_filename, caller.f_lineno)
        try:
            result, text = self.check(model, name, budgets, *where)
        except CnnBudgetError as e:
            result, text = None, str(e)
        if result is None or result.outcome in (Outcome.FAILED, Outcome.ERROR):
            # Outside the except block, so that pytest shows the message once, unchained.
            pytest.fail(neutralize_text(text), pytrace=False)
        return result

    def check(
        self, model: Any, name: str | None, budgets: dict[str, Any], file: str, line: int
    ) -> tuple[ModelResult, str]:
        """The check and its failure text; CnnBudgetError for a call or config mistake."""
        from .config.settings import fixture_name, fixture_spec
        from .errors import ConfigError
        from .report.terminal import failure_lines
        from .results import SourceLocation
        from .run.gate import check_built

        node = self.request.node
        key = fixture_name(node.nodeid, name)
        spec = fixture_spec(key, budgets, node.nodeid, name)
        if not _is_model(model):
            raise ConfigError(
                f"cnn_budget() takes an nn.Module (or a list of layers), not a "
                f"{type(model).__name__}, in {node.nodeid}"
            )
        checked = node.stash[_FIXTURE_RESULTS]
        if any(r.name == key for r in checked):
            raise ConfigError(
                f"cnn_budget() checked {key} twice; give each call in a test its own name="
            )
        site = SourceLocation(file, line)
        config = self.request.config
        session = config.stash.get(_SESSION_KEY, None)
        if session is None:
            result = check_built(
                spec, model, None, snapshot_enabled=False, update=False, call_site=site
            )
            node.stash[_UNCHECKED_KEY] = 1
            text = "\n".join(failure_lines(result, "", "(no snapshot)"))
        else:
            explicit = [Path(p) for p in (config.option.cnn_budget_config or ())]
            explicit = [Path(config.invocation_params.dir, p).resolve() for p in explicit]
            owner = session.configs.for_test(node.path, config.rootpath, explicit)
            session.configs.claim(key, owner.path)
            result = check_built(
                replace(spec, depth=session.depth(spec, owner.settings)),
                model,
                owner.stored.get(key),
                snapshot_enabled=owner.settings.snapshot is not None,
                update=session.update,
                call_site=site,
            )
            session.record(result)
            text = session.failure_text(result)
        checked.append(result)
        return result, text


def _is_model(model: Any) -> bool:
    """What `count_parameters` takes: a module, or a list or mapping of them."""
    from collections.abc import Mapping as MappingABC

    from torch import nn

    if isinstance(model, nn.Module):
        return True
    layers = model.values() if isinstance(model, MappingABC) else model
    return isinstance(model, list | tuple | MappingABC) and all(
        isinstance(layer, nn.Module) for layer in layers
    )


@pytest.fixture
def cnn_budget(request: pytest.FixtureRequest) -> Callable[..., ModelResult]:
    """Check a model a test built itself: `cnn_budget(model, max_params="1M",
    input_shape=(1, 3, 224, 224))` checks its budgets like a configured model's; with
    --cnn-budget also its snapshot entry, keyed by the test's node id. Returns the result."""
    return _FixtureCheck(request)


def _raise_outcome(raised: Raised | None) -> NoReturn:
    """Raise again the pytest outcome a model's code raised in the checking process; pytest
    prints its message, so it is neutralized like every other line of user text."""
    from .report.github import neutralize_text

    kind = raised.kind if raised else ""
    message = neutralize_text(raised.message if raised else "")
    if kind == "XFailed":
        pytest.xfail(message)
    if kind == "Failed":
        pytest.fail(message, pytrace=False)
    if kind == "Exit":
        pytest.exit(message)
    if kind != "Skipped":
        pytest.fail(f"the check raised {kind or 'nothing'}: {message}", pytrace=False)
    try:
        # As skip markers do: the short summary shows the item's location (the model's table),
        # not this line. A private argument of pytest's, hence the fallback.
        skip = pytest.skip.Exception(message, _use_item_location=True)
    except TypeError:
        skip = pytest.skip.Exception(message)
    raise skip


def _dup_stderr() -> int | None:
    try:
        return os.dup(sys.__stderr__.fileno() if sys.__stderr__ else 2)
    except (OSError, ValueError):
        return None


def github_on(config: pytest.Config) -> bool:
    """Whether to emit GitHub Actions annotations and the job summary."""
    mode = config.option.cnn_budget_github
    return bool(mode == "on" or (mode == "auto" and os.environ.get("GITHUB_ACTIONS") == "true"))


def _on_path(folder: Path) -> None:
    """Targets are "package.module:attr" relative to the project, like a console script's:
    the rootdir and each config's folder are searched, appended, so that an installed package
    of the same name still wins."""
    if str(folder) not in sys.path:
        sys.path.append(str(folder))


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
    """A config file, collected as the container of one item per model."""

    def __init__(self, *, problem: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problem = problem  # why the file cannot be read, reported as its collection error

    def collect(self) -> Iterator[BudgetItem]:
        from .config.files import duplicate_message
        from .names import printable

        if self.problem is not None:
            raise self.CollectError(self.problem)
        session: BudgetSession = self.config.stash[_SESSION_KEY]
        file = session.configs.files[self.path.resolve()]
        for spec in file.settings.models:
            name = f"cnn_budget[{printable(spec.name)}]"
            first = session.configs.claim(spec.name, file.path)
            duplicate = (
                duplicate_message(spec.name, first, file.path, self.config.rootpath)
                if first is not None
                else None
            )
            yield BudgetItem.from_parent(self, name=name, spec=spec, file=file, duplicate=duplicate)


class BudgetItem(pytest.Item):
    """One configured model's budget and snapshot check."""

    def __init__(
        self,
        *,
        spec: ModelSpec,
        file: ConfigFile,
        duplicate: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.file = file
        self.duplicate = duplicate  # why this model cannot be checked: its name is taken
        self.result: ModelResult | None = None
        self.add_marker("cnn_budget")

    def runtest(self) -> None:
        from .errors import BudgetFailure
        from .results import Outcome

        if self.duplicate is not None:
            raise BudgetFailure(self.duplicate)
        session: BudgetSession = self.config.stash[_SESSION_KEY]
        self.result = session.check(self.spec, self.file)
        if self.result.outcome in (Outcome.FAILED, Outcome.ERROR):
            raise BudgetFailure(session.failure_text(self.result))

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | TerminalRepr:
        from .errors import BudgetFailure

        if isinstance(excinfo.value, BudgetFailure):
            return str(excinfo.value)
        # pytest's own representation, not its text: the short summary takes the crash line
        # from it.
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.spec.line - 1 if self.spec.line else None
        return self.path, line, f"{self.name} {self.spec.target}"
