"""The budget registry: every kind read by config, checks, renderers and the docs alike."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nets
import pytest
import torch
from project import Project

from pytest_cnnbudget.config.budgets import (
    BUDGETS,
    KINDS,
    BudgetKind,
    Unit,
    check_budgets,
    figure_text,
    limit_text,
)
from pytest_cnnbudget.config.settings import parse_settings
from pytest_cnnbudget.config.spec import ModelSpec, Order
from pytest_cnnbudget.engine.measurement import measure
from pytest_cnnbudget.errors import ConfigError
from pytest_cnnbudget.inputs import parse_input_shape
from pytest_cnnbudget.report.cells import docs_table
from pytest_cnnbudget.report.terminal import failure_lines
from pytest_cnnbudget.results import Memory, MemoryOptions, Outcome
from pytest_cnnbudget.run.gate import check_model

BUDGETS_PAGE = Path(__file__).parent.parent / "docs" / "budgets.md"
CONFIG = Path("pyproject.toml")


def settings_of(**table: object) -> ModelSpec:
    section = {"models": {"m": {"target": "nets:Normed", **table}}}
    return parse_settings(section, CONFIG).models[0]


def test_keys_are_unique_and_every_kind_parses_its_unit() -> None:
    assert len(KINDS) == len(BUDGETS)
    for kind in BUDGETS:
        assert kind.key.startswith("max_")
        written = "1.5M" if kind.unit is Unit.COUNT else "1.5MB"
        assert kind.parse(written) == 1_500_000
        with pytest.raises(ValueError, match="write it like"):
            kind.parse("lots")


def test_every_kind_measures_its_own_figure() -> None:
    with torch.device("meta"):
        model = nets.Cifar()
        model.conv1.requires_grad_(False)  # so trainable and total differ
        count = measure(model, parse_input_shape([1, 3, 32, 32]), memory=MemoryOptions())
    figures = {kind.key: kind.measure(count) for kind in BUDGETS}
    assert count.memory is not None
    params = list(model.parameters())
    assert figures == {
        "max_params": sum(p.numel() for p in params if p.requires_grad),
        "max_total_params": sum(p.numel() for p in params),
        "max_macs": nets.CIFAR_MACS,
        "max_flops": 2 * nets.CIFAR_MACS,
        "max_param_bytes": sum(p.numel() * p.element_size() for p in params),
        "max_buffers": 0,
        "max_buffer_bytes": 0,
        "max_train_memory": count.memory.peak_train,
        "max_inference_memory": count.memory.peak_inference,
    }
    without_input = measure(model)
    assert {k.key for k in BUDGETS if k.measure(without_input) is None} == {
        k.key for k in BUDGETS if k.needs_input_shape
    }
    without_memory = measure(model, parse_input_shape([1, 3, 32, 32]))
    assert {k.key for k in BUDGETS if k.measure(without_memory) is None} == {
        k.key for k in BUDGETS if k.needs_memory
    }


def test_buffer_budgets_count_batchnorm_running_statistics() -> None:
    with torch.device("meta"):
        model = nets.Normed(channels=16)
    buffers = list(model.buffers())
    # running_mean and running_var (16 float32 each) and num_batches_tracked (one int64).
    assert sum(b.numel() for b in buffers) == 33
    spec = settings_of(max_params=10_000, max_buffers=32, max_buffer_bytes="1kB")
    result = check_model(Order(spec))
    assert result.outcome is Outcome.FAILED
    checks = {c.key: (c.actual, c.limit, c.over) for c in result.budgets}
    assert checks == {
        "max_params": (3 * 3 * 3 * 16 + 2 * 16, 10_000, False),
        "max_buffers": (33, 32, True),
        "max_buffer_bytes": (sum(b.numel() * b.element_size() for b in buffers), 1000, False),
    }
    lines = failure_lines(result, "pyproject.toml", "snap.json")
    assert lines[0] == "m: buffer elements over budget by 1 (+3.1%)"
    assert "  max_buffers (budget)               32" in lines
    # Buffers are not parameters: the largest layers are ranked by all their parameters.
    assert "largest layers:" in lines
    assert lines[-1] == (
        "Shrink the model, or raise max_buffers under [tool.cnnbudget.models.m] in pyproject.toml."
    )


def test_checks_follow_the_registry_and_skip_figures_not_measured() -> None:
    with torch.device("meta"):
        count = measure(nets.Cifar())
    limits = {"max_macs": 1, "max_buffers": 5, "max_params": 600_000}
    checks = check_budgets(limits, count)
    # No input shape, so no MACs to check; the rest in registry order.
    assert [c.key for c in checks] == ["max_params", "max_buffers"]
    assert [c.label for c in checks] == [KINDS["max_params"].label, KINDS["max_buffers"].label]


def test_one_line_summaries_say_what_a_budget_counts() -> None:
    with torch.device("meta"):
        count = measure(nets.Normed())
    checks = {c.key: c for c in check_budgets(dict.fromkeys(KINDS, 52_000_000), count)}
    texts = {key: limit_text(c) for key, c in checks.items()}
    assert texts["max_params"] == "52,000,000"
    assert limit_text(checks["max_params"], human=True) == "52M"
    # Bytes read as memory everywhere, never `52.00 MB bytes`.
    assert texts["max_buffer_bytes"] == texts["max_param_bytes"] == "52.0 MB"
    assert figure_text(checks["max_buffer_bytes"]).endswith(" of buffers")
    assert figure_text(checks["max_buffers"]).endswith(" buffers")
    assert limit_text(None) == "-"
    memory = check_budgets(
        {"max_train_memory": 40_000_000},
        replace(count, memory=Memory(0, 0, 0, 0, peak_train=36_693_416, peak_inference=0)),
    )
    assert [figure_text(c) for c in memory] == ["36.7 MB peak in training"]


@pytest.mark.parametrize(
    "kind", [k for k in BUDGETS if k.needs_input_shape], ids=lambda k: str(k.key)
)
def test_compute_budgets_need_an_input_shape(kind: BudgetKind) -> None:
    key = kind.key
    with pytest.raises(ConfigError, match=rf"models.m\] {key}: needs input_shape"):
        settings_of(**{key: 10})
    assert settings_of(**{key: 10}, input_shape=[1, 3, 8, 8]).budgets == {key: 10}


def test_every_budget_key_is_accepted_alone_and_a_model_needs_one() -> None:
    for kind in BUDGETS:
        extra = {"input_shape": [1, 3, 8, 8]} if kind.needs_input_shape else {}
        assert settings_of(**{kind.key: 2000}, **extra).budgets == {kind.key: 2000}
    with pytest.raises(ConfigError, match="max_params: missing; every model needs a budget"):
        settings_of()


def test_the_docs_list_every_budget_key_from_the_registry() -> None:
    text = BUDGETS_PAGE.read_text(encoding="utf-8")
    table = "\n".join(docs_table())
    assert table in text, "docs/budgets.md's budget table is stale; paste docs_table() into it"


def test_buffer_budget_end_to_end(pytester: pytest.Pytester) -> None:
    Project(
        pytester,
        top={"snapshot": False},
        normed={"target": "nets:Normed", "max_buffers": 32},
    )
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["normed: buffer elements over budget by 1 (+3.1%)", "normed*33 buffers*32*103.1%*FAILED*"]
    )
