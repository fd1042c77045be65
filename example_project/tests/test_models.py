"""Ordinary unit tests live beside the budget gate; `pytest --cnn-budget` runs both, and the
`cnn_budget` fixture checks a model that setup code built."""

from __future__ import annotations

from typing import Any

import torch
from example_models.cifar import CifarNet


def test_cifar_net_classifies_a_batch() -> None:
    logits = CifarNet(num_classes=10)(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10)


def test_finetuned_cifar(cnn_budget: Any) -> None:
    # Setup code a pyproject table cannot express: the convolutions frozen for fine-tuning.
    model = CifarNet(num_classes=10)
    for layer in (model.conv1, model.conv2):
        layer.requires_grad_(False)
    result = cnn_budget(model, max_params="530k", max_total_params="600k")
    assert result.count.frozen == 896 + 18_496
