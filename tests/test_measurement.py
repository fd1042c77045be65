"""The one measurement: counts joined with the forward pass, at every grouping depth."""

from __future__ import annotations

import architectures
import nets
import pytest
import torch
from torch import nn

from pytest_cnnbudget.constants import NO_PARAMETERS
from pytest_cnnbudget.counting import count_parameters
from pytest_cnnbudget.inputs import parse_input_shape
from pytest_cnnbudget.measurement import measure
from pytest_cnnbudget.render_terminal import format_table
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
