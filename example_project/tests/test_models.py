"""Ordinary unit tests live beside the budget gate; `pytest --cnn-budget` runs both."""

from __future__ import annotations

import torch
from example_models.cifar import CifarNet


def test_cifar_net_classifies_a_batch() -> None:
    logits = CifarNet(num_classes=10)(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10)
