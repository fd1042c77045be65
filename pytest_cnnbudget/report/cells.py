"""The cells every report shares: a row's name and type, the per-layer and per-model columns,
a diff's rows and totals, a failure's cause and heading. The terminal, the job summary and the
pull-request comment build their tables from these, so a model reads alike in all three."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from ..config.budgets import BUDGETS, MEMORY_KEYS, Unit, figure_text, limit_text
from ..inputs import format_shape
from ..names import printable
from ..ranks import RANK_FIGURES
from ..results import (
    LayerChange,
    LayerRow,
    ModelResult,
    ParameterCount,
    SnapshotDiff,
    TotalChange,
)
from ..units import human_bytes, percent, short_count, signed, thousands
from .tables import Column, Style, grid
from .views import folded_changes, layer_changes, repeat_name


def row_name(name: str, repeat: int) -> str:
    """A row's name as tables show it: `layers.{0..31}.mlp.up ×32` for a group, on one line."""
    # printable in Markdown too: a line break in a name shows as `\n`, not as a space.
    return printable(repeat_name(name, repeat))


def type_cell(row: LayerRow) -> str:
    """A row's layer type, with the dtype of a quantized layer's weights: `Linear (qint8)`."""
    return f"{row.type} ({row.quantized})" if row.quantized else row.type


def trainable_cell(row: LayerRow) -> str:
    """`all`, `none` or how many of a row's parameters train."""
    if not row.params:
        return "-"
    if row.trainable == row.params:
        return "all"
    return thousands(row.trainable) if row.trainable else "none"


def layer_columns(
    count: ParameterCount, rows: Sequence[LayerRow] | None = None
) -> list[Column[LayerRow]]:
    """name, type, formula, params, cumulative, share; `each` when `rows` group repeated
    blocks, `trainable` when some parameters are frozen, output shape and MACs when it ran."""
    rows = count.layers if rows is None else rows
    columns: list[Column[LayerRow]] = [
        Column("layer", lambda r: row_name(r.name, r.repeat)),
        Column("type", type_cell),
        Column("formula", lambda r: r.formula),
    ]
    if any(r.repeat > 1 for r in rows):
        columns.append(
            Column("each", lambda r: thousands(r.each) if r.repeat > 1 else "", right=True)
        )
    columns.append(Column("params", lambda r: thousands(r.params), right=True))
    if count.frozen:
        columns.append(Column("trainable", trainable_cell, right=True))
    columns += [
        Column("cumulative", lambda r: thousands(r.cumulative), right=True),
        Column("share", lambda r: percent(r.share), right=True),
    ]
    if count.compute is not None:
        columns += [
            Column(
                "output", lambda r: "-" if r.output_shape is None else format_shape(r.output_shape)
            ),
            Column("MACs", lambda r: "-" if r.macs is None else thousands(r.macs), right=True),
        ]
    if count.memory is not None:
        columns.append(Column("saved", _saved_cell, right=True))
    return columns


def _saved_cell(row: LayerRow) -> str:
    """Bytes a row's modules saved for backward: `-` for none, so the ones that did stand out."""
    return human_bytes(row.activations) if row.activations else "-"


# How to read a convolution's formula, said under a table that shows one: `/1` puzzles a
# reader who has not met grouped convolutions.
FORMULA_NOTE = (
    "conv formula k×k×C_in/G×C_out + C_out: kernel, input channels / groups, output, bias"
)
_CONVOLUTION = re.compile(r"\d×\d+/\d+×\d")


def formula_notes(formulas: Iterable[str]) -> list[str]:
    """[FORMULA_NOTE] when one of `formulas` is a convolution's, else nothing."""
    return [FORMULA_NOTE] if any(_CONVOLUTION.search(f) for f in formulas) else []


GROUPED_NOTE = (
    "×N: N layers alike but for their block index; counts are their sum, formula each one's"
)


def change_columns(before: str = "snapshot", after: str = "now") -> list[Column[LayerChange]]:
    """The columns of a per-layer diff, its two states headed `before` and `after`."""
    return [
        Column("layer", lambda c: row_name(c.name, c.repeat)),
        Column("type", lambda c: c.type),
        Column(before, lambda c: "-" if c.before is None else thousands(c.before), right=True),
        Column(after, lambda c: "-" if c.after is None else thousands(c.after), right=True),
        Column("delta", lambda c: signed(c.delta), right=True),
        Column(f"formula ({after})", lambda c: "(removed)" if c.after is None else c.formula),
    ]


CHANGED_NOTE = "×N: N layers that changed alike; counts are their sum, formula each one's"


def shown_changes(
    result: ModelResult, group: bool = True, diff: SnapshotDiff | None = None
) -> tuple[LayerChange, ...]:
    """The rows of `diff` (the snapshot diff by default) as tables show them: folded to the
    model's depth, then with layers that changed alike grouped."""
    diff = result.diff if diff is None else diff
    if diff is None:
        return ()
    shown = result.shown
    depth = shown.depth if shown is not None else None
    types = {r.name: r.type for r in shown.layers} if shown is not None else {}
    return layer_changes(folded_changes(diff.layers, depth, types), group)


# The figures a diff's totals lines group: parameters, compute, what a training step holds,
# its peaks. One line each: at LLM scale all of them on one line ran to 480 characters.
_TOTAL_GROUPS = (
    ("total", "trainable", "frozen", "buffers"),
    ("MACs",),
    ("weights", "gradients", "optimizer", "activations"),
    ("peak_train", "peak_inference"),
    RANK_FIGURES,
)


def change_totals(diff: SnapshotDiff) -> list[str]:
    """`total 545,098 → 1,070,794 (+525,696) · trainable …`: the model's figures that moved,
    a line for each group of them (parameters, compute, memory, peaks)."""

    def said(t: TotalChange) -> str:
        return (
            f"{t.label} {thousands(t.before)} → {thousands(t.after)} ({signed(t.after - t.before)})"
        )

    grouped = {label: i for i, group in enumerate(_TOTAL_GROUPS) for label in group}
    lines: dict[int, list[str]] = {}
    for t in diff.totals:
        lines.setdefault(grouped.get(t.label, len(_TOTAL_GROUPS)), []).append(said(t))
    return [" · ".join(lines[i]) for i in sorted(lines)]


# The heading of a model that could not be checked, by the step that failed (ModelResult).
STAGES = {
    "build": "could not build",
    "forward": "could not run forward",
    "memory": "could not trace the memory of",
    "check": "could not check",
    "timeout": "timed out checking",
    "crash": "crashed checking",
}


def error_cause(result: ModelResult, width: int = 60) -> str:
    """The first line of why a model could not be checked, cut to `width` characters."""
    # The hint leads the failure itself; here, the exception says what happened.
    lines = [line for line in (result.error or "").splitlines() if not line.startswith("hint: ")]
    first = next(iter(lines), "").strip()
    # `building pkg:Model(…) raised TypeError: …`: the exception is the part worth the room.
    first = first.rpartition(" raised ")[2] or first
    return first if len(first) <= width else first[: width - 1] + "…"


def measured_text(result: ModelResult, human: bool = False) -> str:
    """The figure a model's tightest budget compares, named; its trainable count without one."""
    if result.primary_budget is None and result.count is not None:
        count = short_count(result.count.trainable) if human else thousands(result.count.trainable)
        return f"{count} trainable"
    return figure_text(result.primary_budget, human) + per_rank(result)


def per_rank(result: ModelResult) -> str:
    """` per rank` after a memory figure that is one rank's; nothing for any other."""
    budget, count = result.primary_budget, result.count
    memory = count.memory if count is not None else None
    if budget is None or memory is None or memory.rank is None or budget.key not in MEMORY_KEYS:
        return ""
    return " per rank"


def used_text(result: ModelResult) -> str:
    """How much of its primary budget a model uses, `-` without one."""
    budget = result.primary_budget
    return percent(budget.used) if budget else "-"


def model_columns(human: bool = False) -> list[Column[ModelResult]]:
    """The first columns of every one-line-per-model table, here and in the job summary: the
    figure its budget compares, named (`11,689,512 total`; with `human`, `11.7M total`), and
    that budget."""
    return [
        Column("model", lambda r: r.name),
        Column("measured", lambda r: measured_text(r, human), right=True),
        Column("budget", lambda r: limit_text(r.primary_budget, human), right=True),
    ]


# A failing model's lines, rendered once by `failure_lines` and shown by every report that needs
# them: the item's failure, the warnings section, the annotation, the job summary.
Failures = Mapping[str, Sequence[str]]
_WRITTEN = {
    Unit.COUNT: '600_000, "600k", "1.5M", "7B", "2e9"',
    Unit.BYTES: '"100MB", "1.5GiB", "47.7MiB", 1048576',
}


def docs_table() -> list[str]:
    """The table of budget keys in docs/budgets.md, as Markdown lines."""
    rows = [
        [
            kind.key,
            kind.description + (" (needs input_shape)" if kind.needs_input_shape else ""),
            _WRITTEN[kind.unit],
        ]
        for kind in BUDGETS
    ]
    return grid(["budget key", "limits", "written as"], rows, [False] * 3, Style.MARKDOWN)
