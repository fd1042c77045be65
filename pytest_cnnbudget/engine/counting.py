"""Module → per-layer parameter rows. Pure: no I/O, no pytest.

Totals come from `model.parameters()`, which yields each tensor once, so tied weights count once.
Rows attribute each tensor to the first module (in `named_modules()` order) that owns it, which
makes the rows sum to exactly that total. Bytes come from `element_size()`, a property of the
dtype, so a model built on meta reports exactly what it would weigh once loaded.

A quantized layer holds its weights and bias packed, not as parameters (quantized.py): its row
counts them, at their own dtype (qint8: a byte each), none of them trainable, with the textbook
formula of the float layer it stands for. So the total is the parameters plus those packed
elements, and equals `sum(p.numel() for p in model.parameters())` for every model that has no
quantized layer.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from ..constants import ROOT_NAME
from ..errors import CountError, FormulaMismatchWarning
from ..results import DtypeBytes, LayerRow, ParameterCount
from .formulas import formula_for
from .quantized import Packed, quantized_layer

ModelLike = nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module]


def as_module(model: ModelLike) -> nn.Module:
    """A module as is; a layer list or a name → layer mapping wrapped like `nn.Sequential`."""
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, Mapping):
        return nn.Sequential(OrderedDict(model))
    layers = list(model)
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layer {i} is a {type(layer).__name__}, not an nn.Module")
    return nn.Sequential(*layers)


def _numel(t: torch.Tensor) -> int:
    return t.numel()


def _check_materialized(mod_name: str, mod: nn.Module) -> None:
    # Buffers too: LazyBatchNorm2d(affine=False) has no parameters, only lazy running stats.
    tensors: list[tuple[str, str, torch.Tensor]] = [
        *(("parameter", name, p) for name, p in mod.named_parameters(recurse=False)),
        *(("buffer", name, b) for name, b in mod.named_buffers(recurse=False)),
    ]
    for kind, name, t in tensors:
        if is_lazy(t):
            qualified = f"{mod_name}.{name}" if mod_name else name
            raise CountError(
                f"{qualified} is an uninitialized lazy {kind} of {type(mod).__name__}; "
                "run one forward pass (give the model an input_shape) before counting"
            )


@dataclass(frozen=True)
class _Draft:
    """A row before the model's totals are known, which its cumulative sum and share need."""

    name: str
    type: str
    params: int
    trainable: int
    formula: str
    formula_params: int
    quantized: str | None  # a quantized layer's weights' dtype


def count_parameters(model: ModelLike) -> ParameterCount:
    """Count `model`'s parameters per layer, with textbook formulas, cumulative sums and shares."""
    module = as_module(model)
    # named_modules() yields a module once, under its first name; the other names it is
    # registered under are noted on its row, so no layer of the model seems to be missing.
    names: dict[int, list[str]] = {}
    for mod_name, mod in module.named_modules(remove_duplicate=False):
        names.setdefault(id(mod), []).append(mod_name)
    owner: dict[int, str] = {}
    drafts: list[_Draft] = []
    packed: list[Packed] = []
    for mod_name, mod in module.named_modules():
        _check_materialized(mod_name, mod)
        draft = _draft(mod_name, mod, names[id(mod)], owner, packed)
        if draft is not None:
            drafts.append(draft)

    params_list = list(module.parameters())
    buffers_list = list(module.buffers())
    quantized_total = sum(p.numel for p in packed)
    total = sum(_numel(p) for p in params_list) + quantized_total
    trainable_total = sum(_numel(p) for p in params_list if p.requires_grad)
    rows: list[LayerRow] = []
    cumulative = 0
    for d in drafts:
        cumulative += d.params
        share = d.params / total if total else 0.0
        rows.append(
            LayerRow(
                d.name,
                d.type,
                d.params,
                d.trainable,
                d.formula,
                d.formula_params,
                cumulative,
                share,
                quantized=d.quantized,
            )
        )
    dtypes = by_dtype(params_list, buffers_list, packed)
    return ParameterCount(
        total=total,
        trainable=trainable_total,
        frozen=total - trainable_total,
        buffers=sum(_numel(b) for b in buffers_list),
        layers=tuple(rows),
        param_bytes=sum(d.param_bytes for d in dtypes),
        buffer_bytes=sum(d.buffer_bytes for d in dtypes),
        dtypes=dtypes,
        quantized=quantized_total,
    )


def _draft(
    mod_name: str,
    mod: nn.Module,
    registered_as: list[str],
    owner: dict[int, str],
    packed: list[Packed],
) -> _Draft | None:
    """The row of one module: the parameters it is the first to own (noted in `owner`), and
    what it holds packed (added to `packed`); None for a module that owns nothing."""
    quantized = quantized_layer(mod)
    counted: list[tuple[str, torch.Tensor]] = []
    shared: list[tuple[str, str]] = []
    for p_name, p in mod.named_parameters(recurse=False):
        qualified = f"{mod_name}.{p_name}" if mod_name else p_name
        if id(p) in owner:
            shared.append((p_name, owner[id(p)]))
            continue
        owner[id(p)] = qualified
        counted.append((p_name, p))
    if not counted and not shared and quantized is None:
        return None
    row_name = mod_name or ROOT_NAME
    params = sum(_numel(p) for _, p in counted)
    trainable = sum(_numel(p) for _, p in counted if p.requires_grad)
    if quantized is not None:
        packed += quantized.packed
        params += quantized.numel
        # The float layer's rule, fed its hyperparameters, never the packed shapes.
        formula = formula_for(
            quantized.float_layer or mod,
            [*counted, *((p.name, p.stand_in()) for p in quantized.packed)],
        )
        text, value = formula.text, formula.value
    elif counted:
        formula = formula_for(mod, counted)
        text, value = formula.text, formula.value
    else:
        text, value = "", 0
    # A tied tensor is shown where it is reused, so the row never looks like it lost weights.
    notes = [f"{name} shared with {first}" for name, first in shared]
    aliases = [name for name in registered_as if name != mod_name]
    if aliases:
        notes.append(f"also registered as {', '.join(aliases)}")
    text = "; ".join(part for part in (text, *notes) if part)
    if value != params:
        warnings.warn(
            f"{row_name} ({type(mod).__name__}): formula {text} gives {value:,} "
            f"but numel() gives {params:,}",
            FormulaMismatchWarning,
            stacklevel=3,  # the caller of count_parameters
        )
    dtype = quantized.dtype if quantized is not None else None
    return _Draft(row_name, type(mod).__name__, params, trainable, text, value, dtype)


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` → `"bfloat16"`."""
    return str(dtype).removeprefix("torch.")


def by_dtype(
    params: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor], packed: Sequence[Packed] = ()
) -> tuple[DtypeBytes, ...]:
    """Elements and bytes per dtype, largest first; a tied tensor counts once, and what
    quantized layers hold packed counts with the parameters."""
    tally: dict[str, list[int]] = {}  # dtype → [params, param bytes, buffers, buffer bytes]
    for offset, tensors in ((0, params), (2, buffers)):
        for t in tensors:
            n = _numel(t)
            counts = tally.setdefault(dtype_name(t.dtype), [0, 0, 0, 0])
            counts[offset] += n
            counts[offset + 1] += n * t.element_size()
    for p in packed:
        counts = tally.setdefault(p.dtype, [0, 0, 0, 0])
        counts[0] += p.numel
        counts[1] += p.bytes
    rows = [DtypeBytes(name, *counts) for name, counts in sorted(tally.items())]
    return tuple(sorted(rows, key=lambda d: -d.bytes))
