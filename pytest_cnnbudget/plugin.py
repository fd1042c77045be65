"""pytest hooks and options: wiring only.

Without `--cnn-budget` this module registers its options, a marker and the `cnn_budget` fixture,
and nothing else: torch and the package's engine are not imported. With it, one session object
(session.py) is registered, of the class that fits the process, and does the run's work.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

from . import keys
from .constants import DEFAULT_TIMEOUT, MAX_TIMEOUT

# Imported up front, though tiny, so that it outlives pytester's restoring of sys.modules: it
# remembers whether it froze anything.
from .run import collector

if TYPE_CHECKING:
    from .results import ModelResult
    from .session import BudgetSession


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
        "--cnn-budget-benchmark-json",
        metavar="PATH",
        help="also write each model's figures to PATH as trend data for charts over commits "
        "(github-action-benchmark's customSmallerIsBetter format)",
    )
    group.addoption(
        "--cnn-budget-summary",
        metavar="PATH",
        help="also write the job summary (Markdown: the table GITHUB_STEP_SUMMARY gets on "
        "GitHub) to PATH, in any CI",
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
        "--cnn-budget-base-rev",
        metavar="REV",
        help="compare every model with the snapshots as commit REV held them, read with git: "
        "each snapshot file of the configs the run loads (what cnnbudget ci passes; instead "
        "of --cnn-budget-baseline)",
    )
    group.addoption(
        "--cnn-budget-baseline-name",
        metavar="TEXT",
        help="how the comment names the baseline, e.g. 'main (3f2a9c1)' (default: its paths)",
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
    """A --cnn-budget-depth value: a whole number of name levels, as `depth` in a file."""
    # Here, not at the top: only a run given the option pays for the config modules.
    from .config.fields import depth_option

    return depth_option(text)


def pytest_configure(config: pytest.Config) -> None:
    # Objects an earlier session in this process froze (pytest.main called again, pytester)
    # go back to the collector now: at the end of a session, it would have to walk all of
    # torch again, several times, on every command-line run.
    collector.thaw()
    config.addinivalue_line("markers", "cnn_budget: a parameter-budget check of a configured model")
    if not (config.option.cnn_budget or config.option.cnn_budget_update):
        config.pluginmanager.register(_PlainRun(config), "cnnbudget-plain")
        return
    session = session_class(config).start(config)
    config.stash[keys.SESSION] = session
    config.pluginmanager.register(session, "cnnbudget-session")
    from .items import ShortSummary  # the session imported it

    config.pluginmanager.register(ShortSummary(), "cnnbudget-short-summary")


class _PlainRun:
    """A run without --cnn-budget: adds nothing but two notes, once each, when they apply."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.hint = _selects_budget_items(config.option.markexpr or "")
        self.unchecked = 0  # tests whose cnn_budget() checks skipped the snapshot

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        if call.when == "call" and item.stash.get(keys.UNCHECKED, 0):
            setattr(outcome.get_result(), keys.UNCHECKED_ATTR, True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Through the report, so that the xdist controller counts its workers' tests.
        if getattr(report, keys.UNCHECKED_ATTR, False):
            self.unchecked += 1

    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter, exitstatus: int
    ) -> None:
        if self.hint:
            terminalreporter.write_line(
                "cnn-budget: the budget checks of [tool.cnnbudget] are collected only with "
                "--cnn-budget: run pytest --cnn-budget -m cnn_budget"
            )
        elif exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            # A project whose only checks are its models: "no tests ran" alone says nothing.
            line = _configured_models_line(self.config)
            if line:
                terminalreporter.write_line(line)
        if self.unchecked:
            tests = "test" if self.unchecked == 1 else "tests"
            terminalreporter.write_line(
                f"cnn-budget: {self.unchecked} {tests} checked budgets with cnn_budget() "
                "but not the snapshot; run with --cnn-budget to compare it"
            )


def _configured_models_line(config: pytest.Config) -> str | None:
    """What a run that found nothing to run says when the project configures models."""
    path = config.inipath if config.inipath and config.inipath.name == "pyproject.toml" else None
    path = path or config.rootpath / "pyproject.toml"
    try:
        # Here, not at the top: read only by a run that found no test at all.
        from .config.settings import read_settings

        settings = read_settings(path)
    except Exception:  # no file, or a config with mistakes (--cnn-budget lists them): no line
        return None
    n = len(settings.models) if settings is not None else 0
    if not n:
        return None
    return (
        f"cnn-budget: {n} model{'s' if n != 1 else ''} configured in {path.name} "
        f"are checked with pytest --cnn-budget; to check them on every run, {_addopts(config)}"
    )


# Where each file pytest reads its options from keeps them (pytest's own precedence picks one).
_INI_SECTIONS = {"pytest.ini": "[pytest]", "tox.ini": "[pytest]", "setup.cfg": "[tool:pytest]"}


def _addopts(config: pytest.Config) -> str:
    """How to make --cnn-budget the default, in the file pytest read its options from."""
    ini = config.inipath
    if config.getini("addopts"):
        return f"add --cnn-budget to addopts in {ini.name if ini else 'your pytest options'}"
    if ini is not None and ini.name in _INI_SECTIONS:
        return f"add addopts = --cnn-budget under {_INI_SECTIONS[ini.name]} in {ini.name}"
    return 'add addopts = ["--cnn-budget"] under [tool.pytest.ini_options]'


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


@pytest.fixture
def cnn_budget(request: pytest.FixtureRequest) -> Callable[..., ModelResult]:
    """Check a model a test built itself: `cnn_budget(model, max_params="1M",
    input_shape=(1, 3, 224, 224))` checks its budgets like a configured model's; with
    --cnn-budget also its snapshot entry, keyed by the test's node id. Returns the result."""
    # Here, not at the top: only a test that asks for the fixture pays for the items module.
    from .items import FixtureCheck

    return FixtureCheck(request)


def session_class(config: pytest.Config) -> type[BudgetSession]:
    """The role this process plays."""
    # Here, not at the top: a run without --cnn-budget imports none of the session's modules.
    from .session import ControllerSession, LocalSession, WorkerSession

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
