"""A small MobileNet-style CNN built from depthwise-separable convolutions."""

from __future__ import annotations

import torch
from torch import nn


def separable(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3×3 (groups = C_in) then pointwise 1×1: 9·C_in + C_in·C_out weights
    instead of 9·C_in·C_out for a full 3×3 conv."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class MobileCNN(nn.Module):
    """Stem conv, four separable blocks, global pooling, one Linear classifier."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.blocks = nn.Sequential(
            separable(width, 2 * width, stride=2),
            separable(2 * width, 2 * width),
            separable(2 * width, 4 * width, stride=2),
            separable(4 * width, 4 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(x, 1))
