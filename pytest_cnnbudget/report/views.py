"""What a table shows of a measurement: repeated blocks as one row, diff rows folded to a depth,
only the trainable rows. Pure: rows in, rows out, for every renderer alike.

The measurement keeps one row per module and the snapshot stores them all; these views change
only what is shown. Grouped rows still sum to the model's total, as the rows they stand for do.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace

from ..names import fold_name
from ..results import LayerChange, LayerRow, ParameterCount
from .grouping import Group, group_rows, ungrouped


def repeat_name(name: str, repeat: int) -> str:
    """`layers.{0..31}.mlp.up ×32` for a group of 32; a single row keeps its name."""
    return f"{name} ×{repeat}" if repeat > 1 else name


def _layer_signature(row: LayerRow) -> Hashable:
    return (
        row.type,
        row.formula,
        row.params,
        row.trainable,
        row.formula_params,
        row.output_shape,
        row.macs,
        row.flops,
        row.members,
        row.activations,
    )


def _merged_row(group: Group[LayerRow]) -> LayerRow:
    if group.size == 1:
        return group.first
    first = group.first
    macs = [r.macs for r in group.members]
    flops = [r.flops for r in group.members]
    return replace(
        first,
        name=group.name,
        params=sum(r.params for r in group.members),
        trainable=sum(r.trainable for r in group.members),
        formula_params=sum(r.formula_params for r in group.members),
        share=sum(r.share for r in group.members),
        macs=None if first.macs is None else sum(m or 0 for m in macs),
        flops=None if first.flops is None else sum(f or 0 for f in flops),
        activations=None
        if first.activations is None
        else sum(r.activations or 0 for r in group.members),
        members=sum(r.members for r in group.members),
        repeat=sum(r.repeat for r in group.members),
    )


def layer_rows(rows: Sequence[LayerRow], group: bool = True) -> tuple[LayerRow, ...]:
    """`rows` with repeated blocks grouped (unless `group` is off), the cumulative column
    counted again in the order shown: a group takes its first member's place."""
    if not group:
        return tuple(rows)
    out = []
    cumulative = 0
    for g in group_rows(rows, lambda r: r.name, _layer_signature):
        row = _merged_row(g)
        cumulative += row.params
        out.append(row if row.cumulative == cumulative else replace(row, cumulative=cumulative))
    return tuple(out)


def grouped(count: ParameterCount, group: bool = True) -> ParameterCount:
    """`count` with its rows grouped as `layer_rows` groups them."""
    return replace(count, layers=layer_rows(count.layers, group)) if group else count


def largest(
    count: ParameterCount, n: int, trainable: bool = False, group: bool = True
) -> tuple[LayerRow, ...]:
    """`ParameterCount.largest` of the rows as shown: a group ranks by its sum."""
    return grouped(count, group).largest(n, trainable)


def saving_most(count: ParameterCount, n: int, group: bool = True) -> tuple[LayerRow, ...]:
    """The `n` rows (groups ranking by their sum) whose modules saved the most bytes for
    backward, most first; rows that saved nothing are left out."""
    rows = [r for r in grouped(count, group).layers if r.activations]
    return tuple(sorted(rows, key=lambda r: -(r.activations or 0))[:n])


def trainable_only(count: ParameterCount) -> ParameterCount:
    """Only the rows that train, each row's count its trainable parameters and its share a
    share of the trainable total: an adapter's view of a model whose base is frozen."""
    rows = []
    cumulative = 0
    for r in count.layers:
        if not r.trainable:
            continue
        cumulative += r.trainable
        share = r.trainable / count.trainable if count.trainable else 0.0
        formula = r.formula if r.trainable == r.params else f"{r.formula} (trainable part)"
        rows.append(
            replace(
                r,
                params=r.trainable,
                formula=formula,
                formula_params=r.trainable,
                cumulative=cumulative,
                share=share,
            )
        )
    return replace(count, layers=tuple(rows))


def _change_signature(change: LayerChange) -> Hashable:
    return (change.type, change.before, change.after, change.formula)


def _merged_change(group: Group[LayerChange]) -> LayerChange:
    if group.size == 1:
        return group.first
    first = group.first

    def total(values: list[int | None]) -> int | None:
        return None if values[0] is None else sum(v or 0 for v in values)

    return replace(
        first,
        name=group.name,
        before=total([c.before for c in group.members]),
        after=total([c.after for c in group.members]),
        repeat=sum(c.repeat for c in group.members),
    )


def layer_changes(changes: Sequence[LayerChange], group: bool = True) -> tuple[LayerChange, ...]:
    """Diff rows with layers that changed alike grouped: a change to every block is one row,
    a change to some of them a row for those."""
    groups = (
        group_rows(changes, lambda c: c.name, _change_signature)
        if group
        else ungrouped(changes, lambda c: c.name)
    )
    return tuple(_merged_change(g) for g in groups)


def folded_changes(
    changes: Sequence[LayerChange], depth: int | None, types: Mapping[str, str]
) -> tuple[LayerChange, ...]:
    """Diff rows summed into their first `depth` name levels (`layers.3.mlp.up` → `layers.3`
    at depth 2), in the order of their first row; `types` names a folded module's class."""
    if depth is None:
        return tuple(changes)
    folded: dict[str, list[LayerChange]] = {}
    for change in changes:
        folded.setdefault(fold_name(change.name, depth), []).append(change)
    out = []
    for key, members in folded.items():
        if len(members) == 1 and members[0].name == key:
            out.append(members[0])
            continue
        befores = [c.before for c in members if c.before is not None]
        afters = [c.after for c in members if c.after is not None]
        out.append(
            LayerChange(
                name=key,
                type=types.get(key, ""),
                before=sum(befores) if befores else None,
                after=sum(afters) if afters else None,
                formula=f"{len(members)} layer{'s' if len(members) != 1 else ''} changed",
            )
        )
    return tuple(out)
