"""Autocast and fused attention on meta tensors, as CUDA and cpu run them. Pure.

torch's autocast leaves meta tensors alone, so `Policy` applies its casts itself: matrix
products, convolutions and attention take their floating inputs in the lower precision (a leaf
weight cast once per forward, as autocast caches it), and the ops CUDA's autocast runs in float32
(normalization, softmax, losses) take float32 inputs. `scaled_dot_product_attention` becomes the
fused kernel cpu and CUDA pick for it, which saves the output and a log-sum-exp per row, not the
batch × heads × L × L matrix the math path meta takes would keep alive for backward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# Where CUDA's autocast runs an op in the lower precision, and where in float32.
_LOWER = {
    F.linear,
    F.bilinear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.conv_transpose1d,
    F.conv_transpose2d,
    F.conv_transpose3d,
    F.prelu,
    torch.matmul,
    torch.mm,
    torch.bmm,
    torch.addmm,
    torch.baddbmm,
    torch.addbmm,
    torch.einsum,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.Tensor.mm,
    torch.Tensor.bmm,
    F.scaled_dot_product_attention,
}
_FP32 = {
    F.layer_norm,
    F.group_norm,
    F.softmax,
    F.log_softmax,
    torch.softmax,
    torch.log_softmax,
    torch.Tensor.softmax,
    torch.Tensor.log_softmax,
    F.cross_entropy,
    F.nll_loss,
    F.mse_loss,
    F.l1_loss,
    F.smooth_l1_loss,
    F.binary_cross_entropy_with_logits,
    F.kl_div,
    F.softplus,
    F.cosine_similarity,
    torch.cdist,
}
if hasattr(F, "rms_norm"):
    _FP32.add(F.rms_norm)
# Re-entering this mode for the functions written in Python that a mode call runs; recent
# torch releases only.
_REDISPATCH = getattr(torch.overrides, "redispatch_function", None)


class Policy(TorchFunctionMode):
    """Fused attention, and autocast's casts when `dtype` is a lower precision."""

    def __init__(self, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.dtype = dtype
        self.cache: dict[int, torch.Tensor] = {}  # leaf weights cast, as autocast caches

    def cast(self, value: Any, to: torch.dtype, only: tuple[torch.dtype, ...]) -> Any:
        """`value` with its floating tensors of a dtype in `only` cast to `to`."""
        if isinstance(value, torch.Tensor):
            if not value.is_floating_point() or value.dtype == to or value.dtype not in only:
                return value
            if value.is_leaf and value.requires_grad:
                cached = self.cache.get(id(value))
                if cached is None:
                    cached = self.cache[id(value)] = value.to(to)
                return cached
            return value.to(to)
        if isinstance(value, list | tuple):
            return type(value)(self.cast(v, to, only) for v in value)
        return value

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.dtype is not None and func in _LOWER:
            args = self.cast(args, self.dtype, (torch.float32, torch.float64))
            kwargs = {k: self.cast(v, self.dtype, (torch.float32,)) for k, v in kwargs.items()}
        elif self.dtype is not None and func in _FP32:
            args = self.cast(args, torch.float32, (torch.float16, torch.bfloat16))
        if func is F.scaled_dot_product_attention:
            fused = _fused_attention(*args, **kwargs)
            if fused is not None:
                return fused
        if _REDISPATCH is not None and getattr(func, "__module__", "") == F.__name__:
            # Functions written in Python (multi_head_attention_forward) call others, which
            # this mode should see too; torch's own calls are not re-entered.
            with self:
                return _REDISPATCH(func, types, args, kwargs)
        return func(*args, **kwargs)


def _fused_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor | None:
    """Attention as cpu's fused (flash) kernel computes it, on meta; None where that kernel
    would not be chosen (dropout, grouped heads, a mask with causal, odd layouts)."""
    tensors = (query, key, value)
    if (
        dropout_p
        or enable_gqa
        or (attn_mask is not None and is_causal)
        or any(not isinstance(t, torch.Tensor) or t.device.type != "meta" for t in tensors)
        or any(t.dim() != 4 or t.stride(-1) != 1 for t in tensors)
        or not (query.size(-1) == key.size(-1) == value.size(-1))
        or not (query.dtype == key.dtype == value.dtype)
        or (attn_mask is not None and attn_mask.dim() not in (2, 4))
    ):
        return None
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        # As the kernel's caller does: a boolean mask becomes an additive one.
        attn_mask = torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill_(
            attn_mask.logical_not(), float("-inf")
        )
    try:
        output, _ = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, is_causal, attn_mask=attn_mask, scale=scale
        )
    except (RuntimeError, TypeError, NotImplementedError):
        return None  # a torch without the kernel's meta function: the math path
    return output  # type: ignore[no-any-return]
