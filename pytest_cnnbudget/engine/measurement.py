"""A built model (and optional input shapes) → its one measurement, a `ParameterCount`.

The gate, `cnnbudget summary`, the charts and the Python API all measure through `measure`, so
a row means the same thing wherever it is shown: its parameters from `count_parameters`, and,
when the model ran forward, the output shape and the multiply-adds of that module's own
operations. Modules that own no parameters but compute (a parent calling
`F.scaled_dot_product_attention`) get a row of their own, so the MACs column adds up to the
model's total as the params column does.

Counts are those of the model as it was built, taken before the forward pass: a forward that
registers or replaces buffers (timm's ConViT computes its relative positions into a buffer on
first call) would otherwise make the counts depend on the input shape. Lazy modules have no
count until the forward pass materializes them, so their parameters are counted after it; the
buffers are still those of the build, lazy ones at their materialized size. Buffers the forward
pass adds are in none of the figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from torch.nn.parameter import is_lazy

from ..constants import NO_PARAMETERS, ROOT_NAME
from ..names import fold_name
from ..results import Compute, LayerRow, Memory, MemoryOptions, ParameterCount
from .counting import as_module, by_dtype, count_parameters
from .profiler import profile

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..inputs import InputSpec
    from .counting import ModelLike
    from .profiler import ModuleProfile, Profile


def measure(
    model: ModelLike,
    inputs: InputSpec | None = None,
    depth: int | None = None,
    memory: MemoryOptions | None = None,
) -> ParameterCount:
    """Count `model` per layer as built; with `inputs`, also run it forward once on meta
    tensors of those shapes (which materializes lazy modules, counted after it); with `depth`,
    group the rows by the first `depth` levels of their names (`layer1.0.conv1` → `layer1`);
    with `memory` (and `inputs`), trace a training step and an inference pass for the bytes
    they need (memory.py)."""
    return measure_folded(model, inputs, depth, memory)[1]


def measure_folded(
    model: ModelLike,
    inputs: InputSpec | None = None,
    depth: int | None = None,
    memory: MemoryOptions | None = None,
) -> tuple[ParameterCount, ParameterCount]:
    """`measure` without a depth and with it, from one forward pass: the gate stores every
    layer and shows them folded."""
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be at least 1, not {depth}")
    if memory is not None and inputs is None:
        raise ValueError("memory is measured at an input shape; give inputs")
    module = as_module(model)
    built = list(module.buffers())
    lazy = any(is_lazy(t) for t in (*module.parameters(), *built))
    if inputs is None or not lazy:
        count, types = count_parameters(module), _types(module)
        measured = profile(module, inputs) if inputs is not None else None
    else:
        measured = profile(module, inputs)
        count, types = _with_buffers(count_parameters(module), module, built), _types(module)
    if memory is not None and inputs is not None:
        # After the profile, which materialized any lazy module the step needs built.
        if memory.parallel is None:
            from .memory import measure_memory

            count = replace(count, memory=measure_memory(module, inputs, memory))
        else:
            from .rank_memory import measure_rank_memory

            count = replace(count, memory=measure_rank_memory(module, inputs, memory))
    if measured is None and depth is None and count.memory is None:
        return count, count  # one row per parameter-owning module, as counted: nothing to join
    full = join(count, measured, types)
    folded = join(count, measured, types, depth) if depth is not None else full
    return full, folded


def _types(module: nn.Module) -> dict[str, str]:
    """Every module's class name by qualified name, in `named_modules()` order."""
    return {name or ROOT_NAME: type(m).__name__ for name, m in module.named_modules()}


def _with_buffers(
    count: ParameterCount, module: nn.Module, buffers: list[torch.Tensor]
) -> ParameterCount:
    """`count` with the buffer figures of `buffers`, the build's, instead of the module's now."""
    if [id(b) for b in module.buffers()] == [id(b) for b in buffers]:
        return count
    built = {d.dtype: d for d in by_dtype((), buffers)}
    rows = []
    for d in count.dtypes:
        b = built.pop(d.dtype, None)
        row = replace(d, buffers=b.buffers if b else 0, buffer_bytes=b.buffer_bytes if b else 0)
        if row.params or row.buffers:
            rows.append(row)
    rows += built.values()  # dtypes that only the build's buffers have
    dtypes = tuple(sorted(sorted(rows, key=lambda d: d.dtype), key=lambda d: -d.bytes))
    return replace(
        count,
        buffers=sum(d.buffers for d in dtypes),
        buffer_bytes=sum(d.buffer_bytes for d in dtypes),
        dtypes=dtypes,
    )


def _saved(memory: Memory | None, depth: int | None) -> dict[str, int]:
    """Bytes saved for backward by each row's modules, rows folded to `depth`."""
    out: dict[str, int] = {}
    for name, n in memory.saved if memory is not None else ():
        key = fold_name(name, depth)
        out[key] = out.get(key, 0) + n
    return out


def join(
    count: ParameterCount,
    measured: Profile | None,
    types: Mapping[str, str],
    depth: int | None = None,
) -> ParameterCount:
    """`count` with the profile's shapes and MACs on its rows, and the bytes each module saved
    for backward when memory was measured, grouped to `depth` levels.

    `types` maps every module name (in `named_modules()` order, the model as `(root)`) to its
    class name; it orders the rows and names the type of a group.
    """
    order = {name: i for i, name in enumerate(types)}
    groups: dict[str, list[LayerRow]] = {}
    for row in count.layers:
        groups.setdefault(fold_name(row.name, depth), []).append(row)
    ran: dict[str, ModuleProfile] = {}  # modules that ran, by name
    ran_groups: set[str] = set()  # groups with at least one module that ran
    compute: dict[str, tuple[int, int]] = {}  # group → (MACs, FLOPs) of its modules' own ops
    if measured is not None:
        for module in measured.modules:
            if module.calls:
                ran[module.name] = module
                ran_groups.add(fold_name(module.name, depth))
            if module.self_flops:
                key = fold_name(module.name, depth)
                groups.setdefault(key, [])
                macs, flops = compute.get(key, (0, 0))
                compute[key] = (macs + module.self_macs, flops + module.self_flops)
    saved = _saved(count.memory, depth)
    for key in saved:
        groups.setdefault(key, [])

    rows: list[LayerRow] = []
    cumulative = 0
    for key in sorted(groups, key=lambda k: order.get(k, len(order))):
        members = groups[key]
        params = sum(r.params for r in members)
        cumulative += params
        if len(members) == 1 and members[0].name == key:
            formula = members[0].formula
        elif members:
            formula = f"{len(members)} layer{'s' if len(members) != 1 else ''}"
        else:
            formula = NO_PARAMETERS
        entry = ran.get(key)
        # A module that never ran has no MACs to show, which is not the same as zero.
        profiled = key in ran_groups
        macs, flops = compute.get(key, (0, 0))
        rows.append(
            LayerRow(
                name=key,
                type=types.get(key, members[0].type if members else ""),
                params=params,
                trainable=sum(r.trainable for r in members),
                formula=formula,
                formula_params=sum(r.formula_params for r in members),
                cumulative=cumulative,
                share=params / count.total if count.total else 0.0,
                output_shape=entry.output_shape if entry is not None else None,
                macs=macs if profiled else None,
                flops=flops if profiled else None,
                members=len(members),
                # A group of several layers keeps no single dtype to show.
                quantized=members[0].quantized if len(members) == 1 else None,
                activations=saved.get(key, 0) if count.memory is not None else None,
            )
        )
    result = replace(count, layers=tuple(rows), depth=depth)
    if measured is None:
        return result
    return replace(
        result,
        compute=Compute(measured.inputs, measured.output_shape, measured.macs, measured.flops),
    )
