"""Models the benchmarks build: the reference architectures, a LLaMA-2-70B shape, tiny nets.

The image models are torchvision's when torchvision imports beside this torch, and otherwise,
like the 7B decoder, the `torch.nn` definitions in `tests/architectures.py` that the tests check
against the same published counts. `image_models()` says which were used. That file's decoder
has no grouped-query attention, which the 70B shape needs (8 key/value heads for 64 query
heads), so that one is defined here.

Benchmark projects import this file through a one-line shim (see `projects.py`), which is why it
puts `tests/` on `sys.path` itself instead of relying on the caller.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# When mypy checks tests/ and benchmarks/ together it finds the module; alone it does not.
import architectures  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from architectures import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    PUBLISHED_PARAMS,
    llama,
)
from published import LLAMA2_70B_PARAMS  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

__all__ = [
    "LLAMA2_70B_PARAMS",
    "PUBLISHED_PARAMS",
    "convnext_tiny",
    "efficientnet_b0",
    "image_models",
    "llama",
    "llama2_70b",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "tiny_net",
    "vgg16",
    "vit_b_16",
]


@functools.cache
def _torchvision() -> ModuleType | None:
    """`torchvision.models`, or None when it is absent or does not import beside this torch."""
    try:
        import torchvision.models  # type: ignore[import-not-found,unused-ignore]
    except Exception:  # a torchvision built for another torch fails in many ways
        return None
    return torchvision.models  # type: ignore[no-any-return,unused-ignore]


def image_models() -> str:
    """Where the image models come from, for the report."""
    if _torchvision() is not None:
        return f"torchvision {importlib.metadata.version('torchvision')}"
    return "torch.nn definitions in tests/architectures.py (torchvision not importable)"


def _image(name: str) -> Callable[..., nn.Module]:
    """The factory `name(num_classes=1000)`, from torchvision when it imports."""

    def build(num_classes: int = 1000) -> nn.Module:
        source = _torchvision() or architectures
        return getattr(source, name)(num_classes=num_classes)  # type: ignore[no-any-return]

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{name}: {PUBLISHED_PARAMS[name]:,} parameters at 1000 classes."
    return build


resnet18 = _image("resnet18")
resnet50 = _image("resnet50")
vgg16 = _image("vgg16")
mobilenet_v2 = _image("mobilenet_v2")
efficientnet_b0 = _image("efficientnet_b0")
convnext_tiny = _image("convnext_tiny")
vit_b_16 = _image("vit_b_16")


class GQAttention(nn.Module):
    """Causal self-attention with grouped key/value heads, bias-free, as in LLaMA-2-70B."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int) -> None:
        super().__init__()
        if dim % n_heads or n_heads % n_kv_heads:
            raise ValueError(f"dim={dim}, n_heads={n_heads}, n_kv_heads={n_kv_heads} do not divide")
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = dim // n_heads
        kv_dim = n_kv_heads * self.head_dim
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, kv_dim, bias=False)
        self.wv = nn.Linear(dim, kv_dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend causally over a (B, T, dim) input; each K/V head serves a group of Q heads."""
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        # Rotary positions are left out: they hold no parameters and the benchmark only counts.
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))  # type: ignore[no-any-return]


class GQABlock(nn.Module):
    """Pre-norm decoder block: grouped-query attention and a SwiGLU MLP, RMSNorm before each."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, hidden: int) -> None:
        super().__init__()
        self.attention = GQAttention(dim, n_heads, n_kv_heads)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.attention_norm = nn.RMSNorm(dim, eps=1e-5)
        self.ffn_norm = nn.RMSNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention then MLP, each with its own residual."""
        h: torch.Tensor = x + self.attention(self.attention_norm(x))
        y = self.ffn_norm(h)
        return h + self.w2(F.silu(self.w1(y)) * self.w3(y))  # type: ignore[no-any-return]


class GQADecoder(nn.Module):
    """Decoder-only language model with grouped-query attention and untied embeddings."""

    def __init__(
        self, vocab: int, dim: int, n_layers: int, hidden: int, n_heads: int, n_kv_heads: int
    ) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(
            GQABlock(dim, n_heads, n_kv_heads, hidden) for _ in range(n_layers)
        )
        self.norm = nn.RMSNorm(dim, eps=1e-5)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits of shape (B, T, vocab)."""
        h: torch.Tensor = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.lm_head(self.norm(h))  # type: ignore[no-any-return]


def llama2_70b(
    vocab: int = 32000,
    dim: int = 8192,
    n_layers: int = 80,
    hidden: int = 28672,
    n_heads: int = 64,
    n_kv_heads: int = 8,
) -> nn.Module:
    """LLaMA-2-70B shape: 68,976,648,192 parameters (about 276 GB as float32: build on meta)."""
    return GQADecoder(vocab, dim, n_layers, hidden, n_heads, n_kv_heads)


class TinyNet(nn.Module):
    """A small conv + linear classifier whose size follows its arguments."""

    def __init__(self, width: int = 8, depth: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width)]
        for _ in range(depth - 1):
            layers += [nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.fc(torch.flatten(x, 1))  # type: ignore[no-any-return]


def tiny_net(width: int = 8, depth: int = 1, num_classes: int = 10) -> nn.Module:
    """A `TinyNet`; the scale benchmark configures hundreds of them with different kwargs."""
    return TinyNet(width, depth, num_classes)
