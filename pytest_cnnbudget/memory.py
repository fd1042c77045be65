"""Bytes of a model's parameters and buffers, by dtype. Pure; works on meta (no storage needed).

`element_size()` is a property of the dtype, so a model built on meta reports exactly what it
would weigh once loaded: fp32 4 bytes per element, fp16/bf16 2, int8 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING

from .errors import CountError

if TYPE_CHECKING:
    import torch

    from .counting import ModelLike


@dataclass(frozen=True)
class DtypeMemory:
    """Elements and bytes of one dtype's parameters and buffers."""

    dtype: str  # "float32", "bfloat16", "int8", … (torch's name without "torch.")
    params: int
    param_bytes: int
    buffers: int
    buffer_bytes: int

    @property
    def bytes(self) -> int:
        """Parameters and buffers together."""
        return self.param_bytes + self.buffer_bytes


@dataclass(frozen=True)
class MemoryUse:
    """Parameter and buffer memory of a model, split by dtype (largest first)."""

    dtypes: tuple[DtypeMemory, ...]
    param_bytes: int
    buffer_bytes: int

    @property
    def total_bytes(self) -> int:
        """Parameters and buffers together."""
        return self.param_bytes + self.buffer_bytes

    def param_bytes_by_dtype(self) -> dict[str, int]:
        """`{"float32": 2180392}`: parameter bytes per dtype, dtypes without parameters left out."""
        return {d.dtype: d.param_bytes for d in self.dtypes if d.params}

    def buffer_bytes_by_dtype(self) -> dict[str, int]:
        """Buffer bytes per dtype, dtypes without buffers left out."""
        return {d.dtype: d.buffer_bytes for d in self.dtypes if d.buffers}


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` → `"bfloat16"`."""
    return str(dtype).removeprefix("torch.")


def memory_use(model: ModelLike) -> MemoryUse:
    """Bytes of `model`'s parameters and buffers by dtype; a tied tensor counts once."""
    from .counting import as_module

    module = as_module(model)
    # parameters() and buffers() yield each tensor once, so tied weights are not doubled.
    params = _tally(module.parameters())
    buffers = _tally(module.buffers())
    rows = [
        DtypeMemory(name, *params.get(name, (0, 0)), *buffers.get(name, (0, 0)))
        for name in sorted(params.keys() | buffers.keys())
    ]
    rows.sort(key=lambda d: -d.bytes)
    return MemoryUse(
        dtypes=tuple(rows),
        param_bytes=sum(d.param_bytes for d in rows),
        buffer_bytes=sum(d.buffer_bytes for d in rows),
    )


def _tally(tensors: Iterable[torch.Tensor]) -> dict[str, tuple[int, int]]:
    """dtype name → (elements, bytes)."""
    from torch.nn.parameter import is_lazy

    totals: dict[str, tuple[int, int]] = {}
    for t in tensors:
        if is_lazy(t):
            raise CountError(
                "the model has uninitialized lazy parameters, whose size is not known yet; "
                "run one forward pass (give the model an input_shape) first"
            )
        n = prod(int(d) for d in t.shape)
        elements, size = totals.get(dtype_name(t.dtype), (0, 0))
        totals[dtype_name(t.dtype)] = (elements + n, size + n * t.element_size())
    return totals
