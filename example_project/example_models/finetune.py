"""Fine-tuning: a frozen convolutional backbone with a small trainable head."""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class FrozenBackboneClassifier(nn.Module):
    """Backbone weights (including BatchNorm γ/β) are frozen; only `head` trains.

    The budget distinguishes the two: `max_params` bounds what the optimizer updates,
    `max_total_params` bounds what ships.
    """

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            _block(3, 64), _block(64, 128), _block(128, 256), _block(256, 256)
        )
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.backbone(x)), 1))
