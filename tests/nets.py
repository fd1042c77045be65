"""The small models the tests build, in one importable module.

Unit tests import it; the end-to-end tests copy its source into each throwaway project as
`nets.py` (see project.py), so a configured target reads like a user's: `"nets:Cifar"`.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

CIFAR_PARAMS = 545_098  # conv1 896 + conv2 18,496 + fc1 524,416 + fc2 1,290
CIFAR_MACS = 6_128_896  # at 1×3×32×32


class Cifar(nn.Module):
    """The CIFAR-10 network of the formula notes; one pooling module used twice."""

    def __init__(self, num_classes: int = 10, hidden: int = 128, fc1_in: int = 64 * 8 * 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(fc1_in, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(torch.relu(self.fc1(x)))  # type: ignore[no-any-return]


class Tiny(nn.Module):
    """One Linear: width² + width parameters."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)


class Dense(nn.Module):
    """One bias-free Linear(1000, 1000): 4,000,000 bytes of float32 weight, so the memory of a
    step can be worked out by hand (tests/test_check.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1000, 1000, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)  # type: ignore[no-any-return]


class Normed(nn.Module):
    """A conv and a BatchNorm: 2·C parameters and 2·C + 1 buffer elements in the norm."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, bias=False)
        self.bn = nn.BatchNorm2d(channels)


def fine_tuned(widths: list[int] | None = None, frozen: int = 1) -> nn.Module:
    """`Linear` layers of the given widths, the first `frozen` of them frozen."""
    widths = widths or [100, 100, 2]
    model = nn.Sequential(*(nn.Linear(a, b) for a, b in itertools.pairwise(widths)))
    for layer in list(model)[:frozen]:
        layer.requires_grad_(False)
    return model


def growing(extra: bool = False, drop: bool = False) -> nn.Module:
    """Two Linears; `extra` adds a third, `drop` replaces the first with an Identity."""
    layers: list[nn.Module] = [nn.Linear(4, 4)] if not drop else [nn.Identity()]
    layers.append(nn.Linear(4, 2))
    if extra:
        layers.append(nn.Linear(2, 3))
    return nn.Sequential(*layers)


def lazy_net() -> nn.Module:
    """Lazy layers: countable only after one forward pass."""
    return nn.Sequential(nn.LazyConv2d(8, 3), nn.Flatten(), nn.LazyLinear(10))


def exploding(**kwargs: object) -> nn.Module:
    """A constructor that raises."""
    raise ValueError("constructor exploded: width must be even")


def not_a_module() -> int:
    """A factory that returns something other than a module."""
    return 42


class Block(nn.Module):
    """A pre-norm MLP block with a residual: one of a language model's repeated layers."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.down(torch.nn.functional.gelu(self.up(self.norm(x))))
        return out


class TokenMlp(nn.Module):
    """Token ids → embedding → repeated blocks → logits: the shape of a language model that
    every parallel strategy applies to (tensor parallel splits `embed`, `up`, `down`, `head`)."""

    def __init__(self, vocab: int = 1000, width: int = 128, depth: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.norm(x))
        return logits
