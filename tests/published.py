"""Published parameter and multiply-add counts of the reference models, free of torch imports.

`architectures.py` builds the models and re-exports the image and LLaMA-7B counts; the
benchmark harness reads them here because its parent process must not import torch.
"""

from __future__ import annotations

# Exact totals of `sum(p.numel() for p in model.parameters())`, from torchvision's model
# cards and, for LLaMA, the 7B configuration of the original release.
PUBLISHED_PARAMS: dict[str, int] = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "vgg16": 138_357_544,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "convnext_tiny": 28_589_128,
    "vit_b_16": 86_567_656,
    "llama": 6_738_415_616,
}

# torchvision labels these "GFLOPS", but they count multiply-adds, at a 1x3x224x224 input.
PUBLISHED_GMACS: dict[str, float] = {
    "resnet18": 1.814,
    "resnet50": 4.089,
    "vgg16": 15.47,
    "mobilenet_v2": 0.301,
    "efficientnet_b0": 0.386,
    "vit_b_16": 17.564,
    "convnext_tiny": 4.456,
}

# Published total of LLaMA-2-70B (Meta's model card rounds it; this is the exact numel sum).
# Its shape is defined in benchmarks/models.py: it needs grouped-query attention.
LLAMA2_70B_PARAMS = 68_976_648_192
