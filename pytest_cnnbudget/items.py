"""What pytest collects and runs: a config file as a collector of one item per configured model,
and the callable the `cnn_budget` fixture gives a test. Both hand their model to the session,
which takes them the same way into the gate."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import pytest
from _pytest._code.code import ReprFileLocation
from _pytest._code.code import TerminalRepr as TerminalReprBase
from _pytest._io import TerminalWriter

from . import keys
from .config.files import ConfigFile, duplicate_message
from .config.settings import fixture_name, fixture_spec
from .config.spec import ModelSpec, Order
from .errors import BudgetFailure, CnnBudgetError, ConfigError
from .names import printable
from .report.terminal import failure_lines
from .results import ModelResult, Outcome, SourceLocation
from .writer import shown

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from .run.isolation import Raised
    from .session import CheckingSession


class BudgetFile(pytest.File):
    """A config file, collected as the container of one item per model."""

    def __init__(self, *, problem: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problem = problem  # why the file cannot be read, reported as its collection error

    def collect(self) -> Iterator[BudgetItem]:
        if self.problem is not None:
            raise self.CollectError(self.problem)
        session = self.config.stash[keys.SESSION]
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
        if self.duplicate is not None:
            raise BudgetFailure(self.duplicate)
        # Items run only in a process that checks models (local, xdist worker).
        session = cast("CheckingSession", self.config.stash[keys.SESSION])
        self.result = session.check(self.spec, self.file)
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


class FixtureCheck:
    """The callable the `cnn_budget` fixture gives a test (see plugin.cnn_budget)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        # Fresh for each run of the test: a plugin that reruns a failed test reruns its checks.
        request.node.stash[keys.FIXTURE_RESULTS] = []

    def __call__(self, model: Any, *, name: str | None = None, **budgets: Any) -> ModelResult:
        caller = sys._getframe(1)  # the test's line: where a failure without a layer points
        site = SourceLocation(caller.f_code.co_filename, caller.f_lineno)
        try:
            result, text = self.check(model, name, budgets, site)
        except CnnBudgetError as e:
            result, text = None, str(e)
        if result is None or result.outcome in (Outcome.FAILED, Outcome.ERROR):
            # Outside the except block, so that pytest shows the message once, unchained.
            pytest.fail(shown(text), pytrace=False)
        return result

    def check(
        self, model: Any, name: str | None, budgets: dict[str, Any], site: SourceLocation
    ) -> tuple[ModelResult, str]:
        """The check and its failure text; CnnBudgetError for a call or config mistake."""
        node = self.request.node
        key = fixture_name(node.nodeid, name)
        spec = fixture_spec(key, budgets, node.nodeid, name)
        if not _is_model(model):
            raise ConfigError(
                f"cnn_budget() takes an nn.Module (or a list of layers), not a "
                f"{type(model).__name__}, in {node.nodeid}"
            )
        checked = node.stash[keys.FIXTURE_RESULTS]
        if any(r.name == key for r in checked):
            raise ConfigError(
                f"cnn_budget() checked {key} twice; give each call in a test its own name="
            )
        config = self.request.config
        session = cast("CheckingSession | None", config.stash.get(keys.SESSION, None))
        if session is None:
            # Without --cnn-budget there is no session to load the gate: the test has built
            # its model with torch already, so importing the gate here costs nothing more.
            from .run.gate import check_built

            result = check_built(Order(spec), model, site)
            node.stash[keys.UNCHECKED] = 1
            text = "\n".join(failure_lines(result, "", "(no snapshot)"))
        else:
            owner = session.configs.for_test(node.path, config.rootpath, session.explicit)
            session.configs.claim(key, owner.path)
            result = session.check_built(spec, owner, model, site)
            text = session.failure_text(result)
        checked.append(result)
        return result, text


def _is_model(model: Any) -> bool:
    """What `count_parameters` takes: a module, or a list or mapping of them."""
    # A test that calls the fixture has imported torch already.
    from torch import nn

    if isinstance(model, nn.Module):
        return True
    layers = model.values() if isinstance(model, Mapping) else model
    return isinstance(model, list | tuple | Mapping) and all(
        isinstance(layer, nn.Module) for layer in layers
    )


def raise_outcome(raised: Raised | None) -> NoReturn:
    """Raise again the pytest outcome a model's code raised in the checking process."""
    kind = raised.kind if raised else ""
    message = shown(raised.message if raised else "")
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


class ShortSummary:
    """A failing budget item's report is its tables: pytest's short test summary quotes only
    their first line. In CI pytest quotes a failure's message whole, which printed every table
    a second time at the end of the log."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        text = report.longrepr
        # A budget item's call report carries its result (True, or a dict for the xdist
        # controller); a test calling the fixture carries a list, and pytest's own report.
        payload = getattr(report, keys.REPORT_ATTR, None)
        ours = payload is not None and not isinstance(payload, list)
        if ours and report.failed and isinstance(text, str):
            report.longrepr = _Tables(text, report.location)


class _Tables(TerminalReprBase):
    """A failure's text, printed as it is, whose crash message is its first line."""

    def __init__(self, text: str, location: tuple[str, int | None, str]) -> None:
        self.text = text
        line = location[1] + 1 if location[1] is not None else 0
        self.reprcrash = ReprFileLocation(location[0], line, text.split("\n", 1)[0])

    def toterminal(self, tw: TerminalWriter) -> None:
        for line in self.text.split("\n"):
            tw.line(line)
