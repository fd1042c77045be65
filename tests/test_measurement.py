"""The one measurement: counts joined with the forward pass, at every grouping depth."""

from __future__ import annotations

from dataclasses import replace

import architectures
import nets
import pytest
import torch
from torch import nn

from pytest_cnnbudget.constants import NO_PARAMETERS
from pytest_cnnbudget.engine.counting import count_parameters
from pytest_cnnbudget.engine.measurement import measure
from pytest_cnnbudget.inputs import parse_input_shape
from pytest_cnnbudget.report.terminal import format_table
from pytest_cnnbudget.results import ParameterCount


class WithUnused(nn.Module):
    """A head that is built but never called, and a parent that computes on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.unused = nn.Sequential(nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        out: torch.Tensor = h @ h.transpose(0, 1)  # 4×8 · 8×4 in the root's own forward
        return out


def assert_consistent(count: ParameterCount) -> None:
    """Rows add up to the totals, with or without grouping."""
    assert sum(r.params for r in count.layers) == count.total
    assert sum(r.trainable for r in count.layers) == count.trainable
    cumulative = 0
    for row in count.layers:
        cumulative += row.params
        assert row.cumulative == cumulative
    if count.compute is not None:
        assert sum(r.macs or 0 for r in count.layers) == count.compute.macs


@pytest.mark.parametrize("depth", [None, 1, 2])
def test_rows_add_up_at_every_depth(depth: int | None) -> None:
    with torch.device("meta"):
        model = architectures.resnet18()
    count = measure(model, parse_input_shape([1, 3, 224, 224]), depth=depth)
    assert_consistent(count)
    assert count.total == sum(p.numel() for p in model.parameters())
    assert count.depth == depth


def test_without_inputs_the_measurement_is_the_count() -> None:
    with torch.device("meta"):
        model = nets.Cifar()
    assert measure(model) == count_parameters(model)


@pytest.mark.parametrize("depth", [None, 1])
def test_a_module_that_never_ran_has_no_macs_and_a_computing_parent_has_a_row(
    depth: int | None,
) -> None:
    with torch.device("meta"):
        model = WithUnused()
    count = measure(model, parse_input_shape([4, 8]), depth=depth)
    rows = {r.name: r for r in count.layers}
    unused = rows["unused.0" if depth is None else "unused"]
    # Never called: no shape and no MACs, which is not the same as zero MACs.
    assert (unused.output_shape, unused.macs) == (None, None)
    root = rows["(root)"]
    assert (root.params, root.formula, root.members, root.macs) == (0, NO_PARAMETERS, 0, 4 * 8 * 4)
    assert [r.name for r in count.parameter_rows] == [
        r.name for r in count.layers if r.name != "(root)"
    ]
    assert_consistent(count)


def test_a_scalar_output_is_shown_as_one() -> None:
    class Score(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.empty(4, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x @ self.w).sum()

    with torch.device("meta"):
        count = measure(Score(), parse_input_shape([2, 4]))
    [row] = count.layers
    assert (row.name, row.output_shape, row.macs) == ("(root)", (), 2 * 4)
    assert format_table(count).splitlines()[2].split()[-2:] == ["scalar", "8"]


# -- counts are the build's, whatever the forward pass does ------------------------------------


def without_compute(count: ParameterCount) -> ParameterCount:
    """The count alone: its parameter rows without shapes and MACs, and no compute."""
    rows = tuple(replace(r, output_shape=None, macs=None, flops=None) for r in count.parameter_rows)
    return replace(count, layers=rows, compute=None)


class CachesOnFirstCall(nn.Module):
    """A forward that replaces a placeholder buffer and registers another, as ConViT does."""

    def __init__(self, lazy: bool = False) -> None:
        super().__init__()
        self.fc: nn.Module = nn.LazyLinear(4) if lazy else nn.Linear(8, 4)
        self.norm: nn.Module = nn.LazyBatchNorm1d() if lazy else nn.BatchNorm1d(4)
        self.register_buffer("positions", torch.zeros(2, dtype=torch.float16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.positions = torch.zeros(x.shape[0], 50, dtype=torch.float16, device=x.device)
        self.register_buffer("cache", torch.zeros(100, dtype=torch.float64, device=x.device))
        return self.norm(self.fc(x))  # type: ignore[no-any-return]


def test_buffers_the_forward_pass_makes_are_not_counted() -> None:
    with torch.device("meta"):
        built, run = CachesOnFirstCall(), CachesOnFirstCall()
    count = measure(run, parse_input_shape([2, 8]))
    assert sum(b.numel() for b in run.buffers()) == 100 + 100 + 4 + 4 + 1  # the forward ran
    assert without_compute(count) == measure(built)
    # positions (2 at float16), the norm's running mean and variance, its step counter.
    assert (count.buffers, count.buffer_bytes) == (2 + 4 + 4 + 1, 2 * 2 + 8 * 4 + 8)


def test_a_lazy_model_counts_its_parameters_after_the_pass_and_its_buffers_as_built() -> None:
    with torch.device("meta"):
        model = CachesOnFirstCall(lazy=True)
    count = measure(model, parse_input_shape([2, 8]))
    assert [(r.name, r.type, r.params) for r in count.parameter_rows] == [
        ("fc", "Linear", 8 * 4 + 4),
        ("norm", "BatchNorm1d", 2 * 4),
    ]
    # The lazy running statistics are the build's, at their materialized size.
    assert (count.buffers, count.buffer_bytes) == (2 + 4 + 4 + 1, 2 * 2 + 8 * 4 + 8)
    assert {d.dtype: (d.params, d.buffers) for d in count.dtypes} == {
        "float32": (44, 8),
        "float16": (0, 2),
        "int64": (0, 1),
    }
    assert_consistent(count)


def test_convit_counts_the_same_with_and_without_an_input_shape() -> None:
    timm = pytest.importorskip("timm")
    from pytest_cnnbudget.engine.loading import build_model

    def convit() -> nn.Module:
        return build_model(timm.create_model, {"model_name": "convit_tiny", "pretrained": False})

    without = measure(convit())
    model = convit()
    count = measure(model, parse_input_shape([1, 3, 224, 224]))
    # ConViT computes its relative positions into a buffer on its first call.
    assert sum(b.numel() for b in model.buffers()) == 1_152_480
    assert (count.total, count.buffers) == (5_710_512, 30)
    assert without_compute(count) == without
    assert_consistent(count)
