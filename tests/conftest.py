"""Fixtures shared by the test suite, and its tiers.

The heavy tiers live in folders named after their markers: every test in tests/zoo/ is marked
`zoo` (real models of torchvision, timm, transformers and ultralytics through the gate), in tests/reference/
`reference` (the meta trace against real cpu runs), in tests/slow/ `slow` (benchmark smoke runs,
attack sessions, long pytester sessions). A heavy test in a file of the fast tier carries
`@pytest.mark.slow` itself. The fast tier is the rest:
`pytest -n auto -m "not (zoo or reference or slow)"`.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from torch import nn

    from pytest_cnnbudget.engine.counting import ModelLike
    from pytest_cnnbudget.results import ParameterCount

TESTS = Path(__file__).parent
EXPECTED_DIR = TESTS / "expected"
TIERS = ("zoo", "reference", "slow")  # folders of tests/ and their markers, in pyproject


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-expected",
        action="store_true",
        help="rewrite the stored expected output in tests/expected instead of comparing with it",
    )


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(TESTS):
            folder = item.path.relative_to(TESTS).parts[0]
            if folder in TIERS:
                item.add_marker(folder)


# Set by CI services (the machine running this suite may be one): each changes what the gate
# prints (annotations, the committed-snapshot wording), so a test that wants them sets them.
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "GITHUB_STEP_SUMMARY", "GITHUB_WORKSPACE")


@pytest.fixture(autouse=True)
def _outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def expected(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare text with the stored file `tests/expected/<name>`, or rewrite it on request."""
    regen = bool(request.config.getoption("--regen-expected"))

    def check(name: str, actual: str) -> None:
        path = EXPECTED_DIR / name
        if regen:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"{path} does not exist; create it with: pytest --regen-expected")
        assert actual == path.read_text(encoding="utf-8"), (
            f"output differs from {path}; if the change is intended: pytest --regen-expected"
        )

    return check


def _count_checked(model: ModelLike) -> ParameterCount:
    """Count `model` and assert the invariants that hold for every model."""
    # Imported here so that runs which never count a model do not pay for torch.
    from pytest_cnnbudget.engine.counting import as_module, count_parameters

    count = count_parameters(model)
    module = as_module(model)
    params = list(module.parameters())
    assert count.total == sum(p.numel() for p in params)
    assert count.trainable == sum(p.numel() for p in params if p.requires_grad)
    assert count.frozen == count.total - count.trainable
    assert count.buffers == sum(b.numel() for b in module.buffers())
    assert sum(row.params for row in count.layers) == count.total
    assert sum(row.trainable for row in count.layers) == count.trainable
    assert [row.cumulative for row in count.layers] == list(
        accumulate(row.params for row in count.layers)
    )
    for row in count.layers:
        assert row.formula_params == row.params, row
    if count.total:
        assert sum(row.share for row in count.layers) == pytest.approx(1.0)
    return count


def _fallback_rows(module: nn.Module, count: ParameterCount) -> set[str]:
    """Names of the rows whose formula is not the text of their layer's textbook rule."""
    from pytest_cnnbudget.constants import ROOT_NAME
    from pytest_cnnbudget.engine.formulas import rule_for

    modules = dict(module.named_modules())
    fallback = set()
    for row in count.layers:
        layer = modules["" if row.name == ROOT_NAME else row.name]
        rule = rule_for(layer)
        if rule is None or rule(layer).text != row.formula:
            fallback.add(row.name)
    return fallback


# Session-scoped so that hypothesis tests can use them; they hold no state.
@pytest.fixture(scope="session")
def count_checked() -> Callable[[ModelLike], ParameterCount]:
    """`count_parameters`, plus the invariants: rows add up, the total is the numel sum."""
    return _count_checked


@pytest.fixture(scope="session")
def fallback_rows() -> Callable[[nn.Module, ParameterCount], set[str]]:
    """The rows of a count that fell back to parameter shapes instead of a textbook rule."""
    return _fallback_rows
