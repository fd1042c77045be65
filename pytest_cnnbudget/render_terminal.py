"""Results → plain text lines for the terminal and the command line. No I/O: callers print
what these return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .budgets import BYTE_KEYS, MEMORY_KEYS, figure_text, limit_text, ranks_trainable
from .config import is_fixture_name, model_table
from .constants import UPDATE_COMMAND
from .errors import exception_text
from .inputs import format_shape
from .merge import Merge
from .results import (
    LayerChange,
    LayerRow,
    Memory,
    ModelResult,
    Outcome,
    ParameterCount,
    SnapshotDiff,
    SnapshotStatus,
)
from .tables import Column, Style, indent, markdown_escape, printable, render
from .units import human_bytes, human_count, percent, short_count, signed, thousands
from .views import folded_changes, largest, layer_changes, layer_rows, repeat_name, saving_most

LARGEST_LAYERS = 5


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


_OPTIMIZER_NAMES = {
    "adamw": "AdamW",
    "adam": "Adam",
    "sgd": "SGD",
    "sgd_momentum": "SGD with momentum",
    "none": "no optimizer",
}


def memory_setup(memory: Memory) -> str:
    """`AdamW, float32, train mode`: how the training step was traced."""
    options = memory.options
    return ", ".join(
        [
            _OPTIMIZER_NAMES.get(options.optimizer, options.optimizer),
            f"autocast {options.autocast}" if options.autocast else "no autocast",
            "train mode" if options.train_mode else "eval mode",
        ]
    )


def memory_breakdown(memory: Memory, at: str | None = None) -> list[str]:
    """The training step's bytes by what holds them, and both peaks, one figure a line."""
    parts = [
        ("weights", memory.weights, "parameters and buffers"),
        ("gradients", memory.gradients, "of the trainable parameters"),
        ("optimizer", memory.optimizer, "its state after a step"),
        ("activations", memory.activations, "saved for backward"),
        ("peak_train", memory.peak_train, "most bytes live in one training step"),
        ("peak_inference", memory.peak_inference, "most bytes live in one forward, no_grad"),
    ]
    where = f" at {at}" if at else ""
    lines = [f"memory{where} ({memory_setup(memory)}):"]
    lines += [
        f"  {label:<14}  {thousands(n):>17}  {human_bytes(n):>10}  {why}" for label, n, why in parts
    ]
    return lines


SAVING_MOST = 3


def saving_lines(count: ParameterCount, group: bool = True) -> list[str]:
    """The modules that save the most activations for backward, grouped as the layer tables."""
    memory = count.memory
    rows = saving_most(count, SAVING_MOST, group)
    if memory is None or not rows:
        return []
    columns: list[Column[LayerRow]] = [
        Column("layer", lambda r: row_name(r.name, r.repeat)),
        Column("type", type_cell),
        Column("saved", lambda r: human_bytes(r.activations or 0), right=True),
        Column(
            "share",
            lambda r: percent((r.activations or 0) / memory.activations),
            right=True,
        ),
    ]
    lines = ["modules saving the most activations:", *indent(render(columns, rows))]
    if any(r.repeat > 1 for r in rows):
        lines.append(f"  {GROUPED_NOTE}")
    return lines


GROUPED_NOTE = (
    "×N: N layers alike but for their block index; counts are their sum, formula each one's"
)


def layer_table(count: ParameterCount, style: Style = Style.TEXT, group: bool = True) -> list[str]:
    """The per-layer table's lines, repeated blocks grouped unless `group` is off, and the note
    that says how to read a group when there is one."""
    rows = layer_rows(count.layers, group)
    lines = render(layer_columns(count, rows), rows, style)
    if any(r.repeat > 1 for r in rows):
        # In Markdown, a paragraph of its own in italics below the table.
        lines += (
            [GROUPED_NOTE] if style is Style.TEXT else ["", f"_{markdown_escape(GROUPED_NOTE)}_"]
        )
    return lines


def totals_line(count: ParameterCount, compute: bool = True) -> str:
    """`total 545,098 · trainable 545,098 · frozen 0 · buffers 0`, the packed elements of
    quantized layers when there are some, and with `compute` the MACs when the model ran
    forward."""
    line = (
        f"total {thousands(count.total)} · trainable {thousands(count.trainable)} · "
        f"frozen {thousands(count.frozen)} · buffers {thousands(count.buffers)}"
    )
    if count.quantized:
        line += f" · quantized {thousands(count.quantized)}"
    if compute and count.compute is not None:
        line += (
            f" · MACs {thousands(count.compute.macs)} · FLOPs {thousands(count.compute.flops)}"
            f" at {count.input_shape} (1 MAC = 2 FLOPs)"
        )
    if compute and count.memory is not None:
        line += (
            f" · peak memory: training {human_bytes(count.memory.peak_train)}, "
            f"inference {human_bytes(count.memory.peak_inference)}"
        )
    return line


def memory_line(count: ParameterCount) -> str:
    """`parameter memory 2.18 MB (float32) · buffer memory 0 B`, split by dtype when mixed."""

    def part(label: str, total: int, by_dtype: dict[str, int]) -> str:
        if len(by_dtype) == 1:
            return f"{label} {human_bytes(total)} ({next(iter(by_dtype))})"
        if by_dtype:
            split = ", ".join(f"{name} {human_bytes(n)}" for name, n in by_dtype.items())
            return f"{label} {human_bytes(total)} ({split})"
        return f"{label} {human_bytes(total)}"

    return " · ".join(
        [
            part("parameter memory", count.param_bytes, count.param_bytes_by_dtype()),
            part("buffer memory", count.buffer_bytes, count.buffer_bytes_by_dtype()),
        ]
    )


def compute_line(count: ParameterCount) -> str | None:
    """`input 1×3×32×32 → output 1×10 · MACs 6,128,896 (6.13M) · FLOPs 12,257,792 (12.26M)`."""
    compute = count.compute
    if compute is None:
        return None
    output = format_shape(compute.output_shape) if compute.output_shape is not None else "-"
    return (
        f"input {compute.inputs.describe()} → output {output} · "
        f"MACs {thousands(compute.macs)} ({human_count(compute.macs)}) · "
        f"FLOPs {thousands(compute.flops)} ({human_count(compute.flops)})"
    )


def format_table(count: ParameterCount, group: bool = True) -> str:
    """The per-layer table: name, type, formula, params, cumulative, share (and output shape and
    MACs when the model ran forward), then the totals."""
    return "\n".join([*layer_table(count, group=group), totals_line(count)])


def layer_report(count: ParameterCount, style: Style = Style.TEXT, group: bool = True) -> list[str]:
    """What `cnnbudget summary` prints: the per-layer table, then the totals, memory and
    compute lines (a list under the table in Markdown)."""
    table = layer_table(count, style, group)
    footer = [totals_line(count, compute=False), memory_line(count)]
    compute = compute_line(count)
    if compute is not None:
        footer.append(compute)
    if count.memory is not None:
        footer += memory_breakdown(count.memory, count.input_shape)
    if style is Style.TEXT:
        return [*table, *footer]
    return [*table, "", *(f"- {markdown_escape(line)}" for line in footer)]


def budget_lines(result: ModelResult, config_name: str, group: bool = True) -> list[str]:
    """Why a model is over budget, its largest layers, and where the budget is set."""
    lines: list[str] = []
    for check in result.exceeded:
        lines.append(
            f"{printable(result.name)}: {check.label} over budget by {thousands(check.excess)} "
            f"(+{check.excess / check.limit * 100:.1f}%)"
        )
        width = max(len(check.label), len(check.key) + 9)
        in_bytes = check.key in BYTE_KEYS

        def human(n: int, in_bytes: bool = in_bytes) -> str:
            return f"  {human_bytes(n)}" if in_bytes else ""

        lines += [
            f"  {check.label:<{width}}  {thousands(check.actual):>15}{human(check.actual)}",
            f"  {check.key + ' (budget)':<{width}}  {thousands(check.limit):>15}"
            f"{human(check.limit)}",
            f"  {'excess':<{width}}  {signed(check.excess):>15}{human(check.excess)}",
        ]
    count = result.shown
    if lines and count is not None and count.memory is not None and _memory_over(result):
        lines += memory_breakdown(count.memory, count.input_shape)
        lines += saving_lines(count, group)
    if lines and count is not None:
        keys = [c.key for c in result.exceeded]
        # When only trainable parameters broke the budget, frozen layers, however large, are not
        # where to look.
        trainable = ranks_trainable(result.exceeded) and count.frozen > 0
        lines.append("largest trainable layers:" if trainable else "largest layers:")
        rows = largest(count, LARGEST_LAYERS, trainable=trainable, group=group)
        lines += indent(render(_largest_columns(count, rows, trainable), rows))
        if any(r.repeat > 1 for r in rows):
            lines.append(f"  {GROUPED_NOTE}")
        where = (
            "in its cnn_budget() call"
            if is_fixture_name(result.name)
            else f"under {model_table(result.name)} in {config_name}"
        )
        lines.append(f"Shrink the model, or raise {', '.join(keys)} {where}.")
    return lines


def _memory_over(result: ModelResult) -> bool:
    return any(c.key in MEMORY_KEYS for c in result.exceeded)


def _largest_columns(
    count: ParameterCount, rows: Sequence[LayerRow], trainable: bool
) -> list[Column[LayerRow]]:
    """The layer table of a budget failure, by trainable parameters or by all of them."""
    column = {c.header: c for c in layer_columns(count, rows)}
    named = [column["layer"], column["type"], column["formula"]]
    if "each" in column and not trainable:
        named.append(column["each"])
    if trainable:
        return [
            *named,
            Column("trainable", lambda r: thousands(r.trainable), right=True),
            Column("share", lambda r: percent(r.trainable / count.trainable), right=True),
        ]
    return [*named, column["params"], column["share"]]


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


_DIFF_COLUMNS = change_columns()
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


def change_totals(diff: SnapshotDiff) -> str:
    """`total 545,098 → 1,070,794 (+525,696) · trainable …`: the model's figures that moved."""
    return " · ".join(
        f"{t.label} {thousands(t.before)} → {thousands(t.after)} ({signed(t.after - t.before)})"
        for t in diff.totals
    )


def diff_lines(result: ModelResult, snapshot_name: str, group: bool = True) -> list[str]:
    """The snapshot diff table: changed, added, removed layers, the totals, then the fix."""
    if result.snapshot is SnapshotStatus.MISSING:
        return [
            f"{printable(result.name)}: no snapshot entry in {snapshot_name}",
            f"Record it with: {UPDATE_COMMAND}",
        ]
    diff = result.diff
    if diff is None or result.snapshot is not SnapshotStatus.CHANGED:
        return []
    changes = shown_changes(result, group)
    lines = [
        f"{printable(result.name)}: parameter layout differs from the snapshot in {snapshot_name}"
    ]
    if changes:
        lines += indent(render(_DIFF_COLUMNS, changes))
        if any(c.repeat > 1 for c in changes):
            lines.append(f"  {CHANGED_NOTE}")
    lines += [f"  {change_totals(diff)}", _accept_hint(result)]
    return lines


def _accept_hint(result: ModelResult) -> str:
    if result.exceeded and result.level == "error":
        # The update refuses models over budget, so the order matters.
        keys = ", ".join(c.key for c in result.exceeded)
        return (
            f"If this change is intended, raise {keys} first, then accept it with: {UPDATE_COMMAND}"
        )
    return f"If this change is intended, accept it with: {UPDATE_COMMAND}"


# The heading of a model that could not be checked, by the step that failed (ModelResult).
_STAGES = {
    "build": "could not build",
    "forward": "could not run forward",
    "memory": "could not trace the memory of",
    "check": "could not check",
    "timeout": "timed out checking",
    "crash": "crashed checking",
}


def failure_lines(
    result: ModelResult, config_name: str, snapshot_name: str, group: bool = True
) -> list[str]:
    """Everything a reviewer needs about one failing model, traceback-free; a model whose
    failure cannot be rendered (a bug this model triggers) still fails with a short cause."""
    try:
        return _failure_lines(result, config_name, snapshot_name, group)
    except Exception as e:
        return [
            f"{printable(result.name)}: failed, and its tables could not be rendered: "
            f"{exception_text(e)}",
            *indent(printable(line) for line in (result.error or "").splitlines()),
        ]


def _failure_lines(
    result: ModelResult, config_name: str, snapshot_name: str, group: bool
) -> list[str]:
    if result.outcome is Outcome.ERROR:
        what = _STAGES.get(result.error_stage, "could not build")
        heading = f"{printable(result.name)}: {what} {result.target}"
        return [heading, *indent((result.error or "").splitlines())]
    budget = budget_lines(result, config_name, group)
    diff = diff_lines(result, snapshot_name, group)
    # Last: the first line is the one a short summary quotes.
    return [*budget, *([""] if budget and diff else []), *diff, *note_lines(result)]


def note_lines(result: ModelResult) -> list[str]:
    """`mobilenet: built on cpu: …`: what to know about how a model was measured."""
    return [f"{printable(result.name)}: {note}" for note in result.notes]


def error_cause(result: ModelResult, width: int = 60) -> str:
    """The first line of why a model could not be checked, cut to `width` characters."""
    first = next(iter((result.error or "").splitlines()), "").strip()
    # `building pkg:Model(…) raised TypeError: …`: the exception is the part worth the room.
    first = first.rpartition(" raised ")[2] or first
    return first if len(first) <= width else first[: width - 1] + "…"


def _status(result: ModelResult) -> str:
    if result.outcome is Outcome.ERROR:
        what = _STAGES.get(result.error_stage, "could not build")
        cause = error_cause(result, 48)
        return f"ERROR: {what}" + (f" ({cause})" if cause else "")
    over = bool(result.exceeded)
    word = {Outcome.PASSED: "ok", Outcome.FAILED: "FAILED", Outcome.WARNED: "WARN"}[result.outcome]
    return f"{word} (over budget)" if over else word


def measured_text(result: ModelResult, human: bool = False) -> str:
    """The figure a model's tightest budget compares, named; its trainable count without one."""
    if result.primary_budget is None and result.count is not None:
        count = short_count(result.count.trainable) if human else thousands(result.count.trainable)
        return f"{count} trainable"
    return figure_text(result.primary_budget, human)


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


OVERVIEW_COLUMNS: list[Column[ModelResult]] = [
    *model_columns(),
    Column("used", used_text, right=True),
    Column("snapshot", lambda r: r.snapshot.value),
    Column("status", lambda r: _status(r)),
]


def overview_lines(
    results: Sequence[ModelResult],
    stale: Sequence[str],
    verbose: bool = False,
    max_rows: int = 50,
    group: bool = True,
) -> list[str]:
    """One line per model (failures first past `max_rows`), stale entries, and with `verbose`
    each model's full per-layer table."""
    ordered = sorted(results, key=lambda r: r.name)
    shown = ordered
    hidden = 0
    if len(ordered) > max_rows:
        # Past a screenful, only what needs attention is listed, so failures are not buried.
        shown = [r for r in ordered if r.failed][:max_rows]
        hidden = len(ordered) - len(shown)
    lines = render(OVERVIEW_COLUMNS, shown) if shown else []
    if hidden:
        passed = sum(1 for r in ordered if not r.failed)
        lines.append(f"… and {hidden} more ({passed} passed in all); -v lists every model")
    for r in shown:
        lines += note_lines(r)
    if stale:
        lines.append(
            "stale snapshot entries (no longer configured): "
            f"{', '.join(printable(n) for n in sorted(stale))}; "
            f"a full {UPDATE_COMMAND} run removes them"
        )
    if verbose:
        for r in ordered:
            if r.shown is not None:
                lines += [
                    "",
                    f"{printable(r.name)} ({r.target})",
                    *format_table(r.shown, group).splitlines(),
                ]
    return lines


UPDATE_CHANGES = 6  # changed rows named in an update's line about one model


def update_lines(
    results: Sequence[ModelResult], merge: Merge, snapshot_name: str, group: bool = True
) -> list[str]:
    """What `--cnn-budget-update` did to each model's entry, as `merge` decided it."""
    by_name = {r.name: r for r in results}
    lines = []
    for name in sorted({*merge.added, *merge.updated, *merge.rejected}):
        if name in merge.added:
            lines.append(f"{snapshot_name}: added {printable(name)}")
        elif name in merge.rejected:
            lines.append(f"{snapshot_name}: NOT updated {printable(name)}: it is over budget")
        else:
            changes = shown_changes(by_name[name], group)
            named = ", ".join(
                f"{row_name(c.name, c.repeat)} {signed(c.delta)}" for c in changes[:UPDATE_CHANGES]
            )
            if len(changes) > UPDATE_CHANGES:
                named += f", and {len(changes) - UPDATE_CHANGES} more"
            lines.append(f"{snapshot_name}: updated {printable(name)} ({named or 'totals'})")
    lines += [f"{snapshot_name}: removed stale {printable(name)}" for name in merge.removed]
    return lines


# A failing model's lines, rendered once by `failure_lines` and shown by every report that needs
# them: the item's failure, the warnings section, the annotation, the job summary.
Failures = Mapping[str, Sequence[str]]


def warning_lines(results: Sequence[ModelResult], failed: Failures) -> list[str]:
    """The failure tables of models configured with level = "warn"."""
    lines: list[str] = []
    for r in sorted(results, key=lambda r: r.name):
        if r.outcome is Outcome.WARNED:
            lines += [*failed[r.name], ""]
    return lines[:-1]
