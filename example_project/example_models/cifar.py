"""The CIFAR-10 network from the parameter-counting notes: 545,098 parameters."""

from __future__ import annotations

import torch
from torch import nn


class CifarNet(nn.Module):
    """Two 3×3 convs with 2×2 pooling, then two Linear layers.

    32×32 input → conv1 (pad 1) 32×32 → pool 16×16 → conv2 (pad 1) 16×16 → pool 8×8, so fc1 reads
    64·8·8 = 4,096 features.
    """

    def __init__(self, num_classes: int = 10, hidden: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)  # 3·3·3·32 + 32 = 896
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)  # 3·3·32·64 + 64 = 18,496
        self.pool = nn.MaxPool2d(2)
        # At hidden = 128: 896 + 18,496 + 524,416 + 1,290 = 545,098 parameters.
        self.fc1 = nn.Linear(64 * 8 * 8, hidden)  # 4,096·128 + 128 = 524,416
        self.fc2 = nn.Linear(hidden, num_classes)  # 128·10 + 10 = 1,290

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(torch.relu(self.fc1(x)))
