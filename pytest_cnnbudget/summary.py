"""A model's parameter rows joined with its profile, optionally grouped by module depth. Pure.

This is what `cnnbudget summary` prints: the per-layer count, each row's output shape and
multiply-adds when the model was profiled, and parameter memory by dtype. Every row carries
`params` and, with a profile, `macs`; both columns add up to the model's totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .memory import MemoryUse, memory_use
from .shapes import ROOT_NAME, Profile, Shape

if TYPE_CHECKING:
    from torch import nn

    from .results import ParameterCount

NO_PARAMETERS = "no parameters"


@dataclass(frozen=True)
class SummaryRow:
    """One layer, or with a depth one group of layers, with its compute when profiled."""

    name: str
    type: str
    formula: str  # the layer's formula; "3 layers" for a group; "no parameters" for compute only
    params: int
    trainable: int
    cumulative: int
    share: float
    layers: int  # parameter-owning layers in this row: 1 for a layer, more for a group
    output_shape: Shape | None = None
    macs: int | None = None  # None when the model was not profiled
    flops: int | None = None


@dataclass(frozen=True)
class Summary:
    """Rows, totals, memory by dtype and (when profiled) the profile of one model."""

    count: ParameterCount
    memory: MemoryUse
    rows: tuple[SummaryRow, ...]
    depth: int | None = None
    profile: Profile | None = None


def group_name(name: str, depth: int | None) -> str:
    """`layer1.0.conv1` at depth 1 → `layer1`; the root and `None` (no grouping) keep the name."""
    if depth is None or name == ROOT_NAME:
        return name
    return ".".join(name.split(".")[:depth])


def summarize(
    model: nn.Module,
    count: ParameterCount,
    profile: Profile | None = None,
    depth: int | None = None,
) -> Summary:
    """Join `count` (from `count_parameters(model)`) with `profile`, grouped to `depth` levels."""
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be at least 1, not {depth}")
    modules = {name or ROOT_NAME: m for name, m in model.named_modules()}
    order = {name: i for i, name in enumerate(modules)}

    groups: dict[str, list[str]] = {}  # group → names of the parameter rows in it
    for row in count.layers:
        groups.setdefault(group_name(row.name, depth), []).append(row.name)
    compute: dict[str, tuple[int, int]] = {}  # group → (MACs, FLOPs) of its modules' own ops
    if profile is not None:
        for module_profile in profile.modules:
            if not module_profile.self_flops:
                continue
            key = group_name(module_profile.name, depth)
            groups.setdefault(key, [])
            macs, flops = compute.get(key, (0, 0))
            compute[key] = (
                macs + module_profile.self_macs,
                flops + module_profile.self_flops,
            )

    by_name = {row.name: row for row in count.layers}
    entries = {e.name: e for e in profile.modules} if profile is not None else {}
    rows: list[SummaryRow] = []
    cumulative = 0
    for key in sorted(groups, key=lambda k: order.get(k, len(order))):
        members = [by_name[n] for n in groups[key]]
        params = sum(r.params for r in members)
        cumulative += params
        if len(members) == 1 and members[0].name == key:
            formula = members[0].formula
        elif members:
            formula = f"{len(members)} layer{'s' if len(members) != 1 else ''}"
        else:
            formula = NO_PARAMETERS
        entry = entries.get(key)
        macs, flops = compute.get(key, (0, 0))
        rows.append(
            SummaryRow(
                name=key,
                type=type(modules[key]).__name__ if key in modules else "",
                formula=formula,
                params=params,
                trainable=sum(r.trainable for r in members),
                cumulative=cumulative,
                share=params / count.total if count.total else 0.0,
                layers=len(members),
                output_shape=entry.output_shape if entry is not None else None,
                macs=macs if profile is not None else None,
                flops=flops if profile is not None else None,
            )
        )
    return Summary(
        count=count, memory=memory_use(model), rows=tuple(rows), depth=depth, profile=profile
    )
