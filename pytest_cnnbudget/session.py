"""The roles a `--cnn-budget` run's processes play, one class each, behind one interface:

- `LocalSession`: a run without pytest-xdist. Items check their models and hand the results
  straight to the session, which reports them and writes the files.
- `WorkerSession`: an xdist worker. Items check their models; each result travels to the
  controller in its test report (see run/wire.py). A worker writes nothing.
- `ControllerSession`: the xdist controller. It runs no items; it reads the results out of the
  workers' reports, then reports them and writes the files like a local run.

Their hooks stay thin: the run's start and end are pytest-free (run/start.py, run/finish.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from . import keys
from .config.files import ConfigFile, Configs
from .config.spec import ModelSpec, Order, model_depth, model_timeout
from .errors import CnnBudgetError
from .items import BudgetFile, BudgetItem, raise_outcome
from .report.json import json_report_metadata, settle_json_report
from .report.terminal import failure_lines, warning_lines
from .results import ModelResult, SourceLocation
from .run import collector, wire
from .run.collected import Collected, add_collected
from .run.finish import (
    RunEnd,
    annotation_commands,
    end_run,
    read_base,
    summary_lines,
    withheld,
    write_outputs,
)
from .run.forked import dup_stderr, make_checker
from .run.isolation import Checker, Request, picklable_filters, replay
from .run.start import RunOptions, Started, covered, start
from .writer import Terminal, shown


class BudgetSession:
    """What every process of a `--cnn-budget` run shares: options, configs, failures."""

    def __init__(self, config: pytest.Config, options: RunOptions, started: Started) -> None:
        self.config = config
        self.options = options
        self.configs: Configs = started.configs
        self.baseline = started.baseline  # the base branch's snapshot, with --cnn-budget-baseline
        self.explicit = started.explicit  # the config files --cnn-budget-config names
        self.streams = started.streams  # outputs that name a pipe, held from the start
        self.failed: dict[str, list[str]] = {}  # each failure rendered once, by model name
        # Each test module and class collected, by node id → its children's (run/collected.py):
        # what says whether a fixture check's test still exists.
        self.tests: dict[str, frozenset[str]] = {}

    @classmethod
    def start(cls, config: pytest.Config) -> BudgetSession:
        """Load and validate everything before any model is built; UsageError if anything is off."""
        options = RunOptions.from_options(
            config.option, config.rootpath, config.invocation_params.dir, os.environ
        )
        try:
            started = start(options)
        except CnnBudgetError as e:
            # pytest prints the message as it is; a line of it must not start a workflow command.
            raise pytest.UsageError(shown(str(e))) from None
        default_paths = config.args_source is pytest.Config.ArgsSource.TESTPATHS
        for path in started.to_collect(default_paths):
            if not covered(config.args, config.invocation_params.dir, path):
                config.args.append(str(path))
        return cls(config, options, started)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # Where items are collected (not in the xdist controller). Deselection (-k, -m) comes
        # after this: what it drops still counts as existing. --lf reports a module's failed
        # tests alone, so it tells nothing of the others.
        if not report.passed or self.config.getoption("lf", False):
            return
        add_collected(self.tests, report.nodeid, [node.nodeid for node in report.result])

    def close(self) -> None:
        """End what the process started to check models; nothing, where it checks none."""

    def record(self, result: ModelResult) -> None:
        """Keep a result for the end of the run; only a process that reports keeps them."""

    def failure_lines(self, result: ModelResult) -> list[str]:
        """The rendered failure of one model, rendered on first use."""
        lines = self.failed.get(result.name)
        if lines is None:
            file = self.configs.file_of(result.name)
            names = file.shown_names(self.options.rootdir)
            lines = self.failed[result.name] = failure_lines(
                result, *names, self.options.group, self.options.ci
            )
        return lines

    def failure_text(self, result: ModelResult) -> str:
        """The rendered failure of one model, as the terminal may show it."""
        return shown("\n".join(self.failure_lines(result)))

    def report_payload(self, result: ModelResult) -> bool | dict[str, Any]:
        """What a budget item's call report carries (see keys.REPORT_ATTR)."""
        return True

    def problem(self, text: str) -> dict[str, Any]:
        """Keep a check that failed before its model could be checked (a name configured twice)
        for the JSON report; what its call report carries to the xdist controller."""
        return {"problem": text}


class CheckingSession(BudgetSession):
    """A process that runs items (local, xdist worker): it collects the config files and checks
    their models, and the models of tests that call the fixture."""

    def __init__(self, config: pytest.Config, options: RunOptions, started: Started) -> None:
        super().__init__(config, options, started)
        self.collected: dict[Path, Path] = {}  # config files collected: resolved → as found
        self.checker: Checker | None = None  # made as the first model's item starts
        # The terminal's stderr, taken now, while pytest's capture is suspended (as its own
        # faulthandler plugin does): where an in-process time limit says where it was stuck.
        self.stderr: int | None = dup_stderr()

    def order(self, spec: ModelSpec, file: ConfigFile) -> Order:
        """What the gate is asked about one model, configured or built by a test: the one way
        in, so that both are judged by the same settings."""
        depth = model_depth(spec, self.options.depth, file.settings)
        return Order(
            spec if depth == spec.depth else replace(spec, depth=depth),
            file.stored.get(spec.name),
            snapshot_enabled=file.settings.snapshot is not None,
            update=self.options.update,
        )

    def check(self, spec: ModelSpec, file: ConfigFile) -> ModelResult:
        """Build and check one configured model (called by its item), where isolation says."""
        # Made as the first model's item started (pytest_runtest_protocol).
        assert self.checker is not None
        request = Request(
            self.order(spec, file),
            timeout=model_timeout(spec, self.options.timeout, file.settings),
            filters=picklable_filters(),
            log_level=logging.getLogger().level,
            redirect=self.config.option.capture != "no",
        )
        checked = self.checker.check(request)
        # What the model printed, logged and warned, as pytest would have captured it; pytest
        # prints warnings in its own summary, so their text goes out through the writer.
        replay(checked.captured, shown)
        if checked.result is None:
            raise_outcome(checked.raised)
        self.record(checked.result)
        return checked.result

    def check_built(
        self, spec: ModelSpec, file: ConfigFile, model: Any, site: SourceLocation
    ) -> ModelResult:
        """Check a model a test built (the `cnn_budget` fixture), in the test's process."""
        # The test has imported torch to build its model; the gate's import costs nothing more.
        from .run.gate import check_built

        result = check_built(self.order(spec, file), model, site)
        self.record(result)
        return result

    def close(self) -> None:
        """End the checking process, if one was started."""
        if self.checker is not None:
            self.checker.close()
            self.checker = None

    # -- hooks -----------------------------------------------------------------------------

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close()
        if self.stderr is not None:
            os.close(self.stderr)
            self.stderr = None

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.File | None:
        resolved = file_path.resolve()
        # With --cnn-budget-config, the files it names and no others.
        discover = not self.options.configs and file_path.name == "pyproject.toml"
        if not discover and resolved not in self.configs.files:
            return None
        try:
            file = self.configs.load(resolved)
        except CnnBudgetError as e:
            # A package's broken config fails its collection, by file, before any model runs.
            return BudgetFile.from_parent(parent, path=file_path, problem=shown(str(e)))
        if file is None:
            return None
        # A file reached by a second path (a symlinked folder) is checked once; pytest may
        # ask again for the same path (once per argument that walks its folder).
        if self.collected.setdefault(resolved, file_path) != file_path:
            return None
        return BudgetFile.from_parent(parent, path=file_path)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, None]:
        # Here, not in the first item: see run/collector.py for why freezing waits for a
        # shallow stack. The xdist controller runs no items, so it never imports torch.
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
            if self.checker is None:
                # The first model's: forked here, before the item's own hooks run, so that
                # the checking process, which runs every check on the stack it was forked
                # with, starts from the same shallow one whatever plugins wrap the item (how
                # deep it is decides how often CPython maps and unmaps a 16 KiB chunk of its
                # frame stack in a deep import: 23,000 times, +0.1 s, forked inside the item).
                self.checker = make_checker(self.config.option.cnn_budget_isolation, self.stderr)
                _start_checker(self.config, self.checker)
            yield

    # Innermost: the fixture's results are settled before pytest-json-report's wrapper asks
    # for their metadata.
    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        report = outcome.get_result()
        if isinstance(item, BudgetItem):
            # What a model's constructor printed is shown with its failure.
            report.sections = [(title, shown(text)) for title, text in report.sections]
            if call.when == "call" and item.result is not None:
                setattr(report, keys.REPORT_ATTR, self.report_payload(item.result))
            elif call.when == "call" and item.duplicate is not None:
                setattr(report, keys.REPORT_ATTR, self.problem(item.duplicate))
            return
        checked = item.stash.get(keys.FIXTURE_RESULTS, None)
        # The test failed after its checks passed, or its teardown did: an update accepts
        # none of them. A teardown's report carries them again, for the xdist controller.
        failed = report.failed and call.when in ("call", "teardown")
        if checked and (call.when == "call" or failed):
            if failed:
                checked[:] = [withheld(r) for r in checked]
                for result in checked:
                    self.record(result)
            setattr(report, keys.REPORT_ATTR, [self.report_payload(r) for r in checked])

    @pytest.hookimpl(optionalhook=True)
    def pytest_json_runtest_metadata(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> dict[str, Any]:
        if call.when != "call":
            return {}
        if isinstance(item, BudgetItem):
            return json_report_metadata([item.result] if item.result is not None else [])
        checked: list[ModelResult] = item.stash.get(keys.FIXTURE_RESULTS, [])
        return json_report_metadata(checked)


class WorkerSession(CheckingSession):
    """An xdist worker: checks its share of the models and ships each result in its report."""

    def report_payload(self, result: ModelResult) -> bool | dict[str, Any]:
        # The config file too: the controller collects nothing, so a package's config it
        # has not read yet is read when its first result arrives.
        file = self.configs.file_of(result.name)
        return {"config": str(file.path), "default": file.default, "result": wire.encode(result)}

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Every config this worker collected, so that the controller, which collects nothing,
        # knows the stale entries of a file none of whose models ran.
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput["cnn_budget_configs"] = [str(p) for p in self.collected]
            workeroutput["cnn_budget_tests"] = {k: sorted(v) for k, v in self.tests.items()}


class ReportingSession(BudgetSession):
    """A process that sees every result: it prints the summary and writes the files."""

    def __init__(self, config: pytest.Config, options: RunOptions, started: Started) -> None:
        super().__init__(config, options, started)
        self.results: dict[str, ModelResult] = {}
        self.problems: list[str] = []  # checks that failed before a model could be checked
        self.ended: RunEnd | None = None  # the snapshots as the run left them
        self.output_errors: list[str] = []  # outputs that could not be written

    def record(self, result: ModelResult) -> None:
        self.results[result.name] = result
        if result.failed:
            self.failure_lines(result)

    def problem(self, text: str) -> dict[str, Any]:
        self.problems.append(text)
        return super().problem(text)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        other = self.config.pluginmanager.get_plugin("annotate_errors")
        if self.options.github and other is not None:
            # pytest-github-actions-annotate-failures annotates every failed report; a model
            # already gets a better-placed annotation from us, so pass it only the others.
            self.config.pluginmanager.unregister(other)
            self.config.pluginmanager.register(_SkipBudgetReports(other), "annotate_errors")

    # A wrapper, so that the run ends before any other plugin's session finish: pytest-json-report
    # builds its file there (tryfirst), and asks pytest_json_modifyreport below to correct it.
    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        self.end(session)
        return (yield)

    def end(self, session: pytest.Session) -> None:
        """End the run: the snapshots, then the outputs."""
        self.close()
        results = sorted(self.results.values(), key=lambda r: r.name)
        # The snapshots first, and on their own: an accepted update must not depend on the
        # other files.
        rootdir = self.options.rootdir
        collected = Collected(self.tests)
        ended = end_run(self.configs, results, rootdir, self.options.update, collected)
        base = read_base(self.options, self.configs, self.baseline)
        self.ended = replace(ended, notes=(*ended.notes, *base.notes))
        # From here on, the results as the snapshots now hold them.
        results = list(self.ended.results)
        self.output_errors = [
            *self.ended.errors,
            *base.errors,
            *write_outputs(
                self.options,
                self.configs,
                results,
                self.ended,
                self.failed,
                base.baseline,
                self.streams,
                self.problems,
            ),
        ]
        if self.output_errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(optionalhook=True)
    def pytest_json_modifyreport(self, json_report: dict[str, Any]) -> None:
        # pytest-json-report took each test's metadata as the test ran; what the update then
        # wrote (a snapshot that could not be written, a check whose teardown failed) is only
        # known now.
        if self.ended is not None:
            settle_json_report(json_report, self.ended.results)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        terminal = Terminal(terminalreporter)
        rootdir = self.options.rootdir
        ended = self.ended or end_run(
            self.configs, list(self.results.values()), rootdir, False, Collected(self.tests)
        )
        results = list(ended.results)
        verbose = self.config.option.verbose > 0
        lines = summary_lines(ended, results, rootdir, verbose, self.options.group)
        if lines:  # nothing when no model ran (a collection error stopped the run)
            terminal.section("cnn-budget", lines)
        if self.output_errors:
            terminal.section("cnn-budget: outputs not written", self.output_errors, red=True)
        warned = warning_lines(results, self.failed)
        if warned:
            terminal.section('cnn-budget warnings (level = "warn")', warned, yellow=True)
        if self.options.github:
            terminal.commands(
                annotation_commands(self.configs, results, self.failed, self.options.workspace)
            )


class LocalSession(CheckingSession, ReportingSession):
    """A run without xdist: items hand their results straight to the session."""


class ControllerSession(ReportingSession):
    """The xdist controller: results arrive inside the workers' test reports."""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, keys.REPORT_ATTR, None)
        payloads = [data] if isinstance(data, dict) else data if isinstance(data, list) else []
        for payload in payloads:
            if not isinstance(payload, dict):
                continue
            if "problem" in payload:
                self.problems.append(str(payload["problem"]))
                continue
            result = wire.decode(payload["result"])
            file = self.load(payload["config"], bool(payload.get("default")))
            if file is not None:
                self.configs.claim(result.name, file.path)
                self.record(result)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {})
        for path in output.get("cnn_budget_configs", ()):
            self.load(path)
        for nodeid, children in output.get("cnn_budget_tests", {}).items():
            add_collected(self.tests, nodeid, children)

    def load(self, path: str, default: bool = False) -> ConfigFile | None:
        """A config a worker read, read here too; None if it cannot be (a worker already
        failed that file's collection, naming why)."""
        try:
            if default:
                return self.configs.default(self.config.rootpath)
            return self.configs.load(Path(path))
        except CnnBudgetError:
            return None


class _SkipBudgetReports:
    """Forwards test reports to another annotating plugin, except the budget items' own."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if getattr(report, keys.REPORT_ATTR, None) is None:
            self.inner.pytest_runtest_logreport(report)


def _start_checker(config: pytest.Config, checker: Checker) -> None:
    """Start the checking process with the output descriptors an item's would have:
    pytest's capture files, where what a model writes to them is captured, then shown
    through the writer, as when it is forked inside an item."""
    capture = config.pluginmanager.getplugin("capturemanager")
    capturing = capture is not None and capture.is_globally_capturing()
    if capturing:
        capture.resume_global_capture()
    try:
        checker.start()
    except Exception:
        pass  # not started: the item's check forks again, and fails that model if it cannot
    finally:
        if capturing:
            capture.suspend_global_capture()
