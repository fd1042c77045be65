"""Builders for throwaway projects that the gate's end-to-end tests run pytest in."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest


def preload_torch() -> None:
    """Import everything a gate run imports, before the first in-process pytester run.

    pytester restores sys.modules after each in-process run, and parts of torch cannot be
    imported twice in one process (C extensions, operator registrations). Loading them here,
    once, keeps them out of what each run adds and removes.
    """
    import torch
    from torch import nn

    import pytest_cnnbudget.gate  # noqa: F401 - else each run collects all of torch to freeze it
    from pytest_cnnbudget.inputs import parse_input_shape
    from pytest_cnnbudget.measurement import measure

    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Flatten(), nn.Linear(1, 1))
    measure(model, parse_input_shape([1, 1, 1, 1]))


preload_torch()

# One module of small models, configured differently per test through kwargs in pyproject.toml.
NETS = """
import torch
from torch import nn


class Cifar(nn.Module):
    def __init__(self, num_classes=10, hidden=128, fc1_in=64 * 8 * 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(fc1_in, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class Tiny(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.fc = nn.Linear(width, width)


def exploding(**kwargs):
    raise ValueError("constructor exploded: width must be even")


def not_a_module():
    return 42
"""

CIFAR = """
[tool.cnnbudget.models.cifar]
target = "nets:Cifar"
max_params = "600k"
"""

TINY = """
[tool.cnnbudget.models.tiny]
target = "nets:Tiny"
max_params = 1000
"""


def make_project(pytester: pytest.Pytester, *tables: str, top: str = "") -> None:
    """A project with `nets.py` and a pyproject.toml holding `top` and the model `tables`."""
    pytester.makepyfile(nets=NETS)
    body = "[tool.cnnbudget]\n" + textwrap.dedent(top) + "".join(textwrap.dedent(t) for t in tables)
    pytester.makefile(".toml", pyproject=body)


def failure_section(lines: list[str], model: str) -> list[str]:
    """The lines pytest printed for `model`'s failure, without its `___ header ___` line."""
    start = next(
        i for i, line in enumerate(lines) if f" cnn_budget[{model}] " in line and "_" in line
    )
    end = start + 1
    while end < len(lines) and not lines[end].startswith(("____", "====")):
        end += 1
    return lines[start + 1 : end]
