"""Results → plain text lines for the terminal and the command line. No I/O: callers print
what these return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .budgets import budget_text, ranks_trainable
from .config import model_table
from .constants import UPDATE_COMMAND
from .errors import exception_text
from .inputs import format_shape
from .merge import Merge
from .results import LayerChange, LayerRow, ModelResult, Outcome, ParameterCount, SnapshotStatus
from .tables import Column, Style, indent, markdown_escape, printable, render
from .units import human_bytes, human_count, percent, signed, thousands

LARGEST_LAYERS = 5


def layer_columns(count: ParameterCount) -> list[Column[LayerRow]]:
    """name, type, formula, params, cumulative, share; output shape and MACs when it ran."""
    columns: list[Column[LayerRow]] = [
        # printable in Markdown too: a line break in a name shows as `\n`, not as a space.
        Column("layer", lambda r: printable(r.name)),
        Column("type", lambda r: r.type),
        Column("formula", lambda r: r.formula),
        Column("params", lambda r: thousands(r.params), right=True),
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
    return columns


def totals_line(count: ParameterCount, compute: bool = True) -> str:
    """`total 545,098 · trainable 545,098 · frozen 0 · buffers 0`, and with `compute` the MACs
    when the model ran forward."""
    line = (
        f"total {thousands(count.total)} · trainable {thousands(count.trainable)} · "
        f"frozen {thousands(count.frozen)} · buffers {thousands(count.buffers)}"
    )
    if compute and count.compute is not None:
        line += (
            f" · MACs {thousands(count.compute.macs)} · FLOPs {thousands(count.compute.flops)}"
            f" at {count.input_shape} (1 MAC = 2 FLOPs)"
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


def format_table(count: ParameterCount) -> str:
    """The per-layer table: name, type, formula, params, cumulative, share (and output shape and
    MACs when the model ran forward), then the totals."""
    return "\n".join([*render(layer_columns(count), count.layers), totals_line(count)])


def layer_report(count: ParameterCount, style: Style = Style.TEXT) -> list[str]:
    """What `cnnbudget summary` prints: the per-layer table, then the totals, memory and
    compute lines (a list under the table in Markdown)."""
    table = render(layer_columns(count), count.layers, style)
    footer = [totals_line(count, compute=False), memory_line(count)]
    compute = compute_line(count)
    if compute is not None:
        footer.append(compute)
    if style is Style.TEXT:
        return [*table, *footer]
    return [*table, "", *(f"- {markdown_escape(line)}" for line in footer)]


def budget_lines(result: ModelResult, config_name: str) -> list[str]:
    """Why a model is over budget, its largest layers, and where the budget is set."""
    lines: list[str] = []
    for check in result.exceeded:
        lines.append(
            f"{printable(result.name)}: {check.label} over budget by {thousands(check.excess)} "
            f"(+{check.excess / check.limit * 100:.1f}%)"
        )
        width = max(len(check.label), len(check.key) + 9)
        lines += [
            f"  {check.label:<{width}}  {thousands(check.actual):>15}",
            f"  {check.key + ' (budget)':<{width}}  {thousands(check.limit):>15}",
            f"  {'excess':<{width}}  {signed(check.excess):>15}",
        ]
    count = result.count
    if lines and count is not None:
        keys = [c.key for c in result.exceeded]
        # When only trainable parameters broke the budget, frozen layers, however large, are not
        # where to look.
        trainable = ranks_trainable(result.exceeded) and count.frozen > 0
        lines.append("largest trainable layers:" if trainable else "largest layers:")
        largest = count.largest(LARGEST_LAYERS, trainable=trainable)
        lines += indent(render(_largest_columns(count, trainable), largest))
        lines.append(
            f"Shrink the model, or raise {', '.join(keys)} under {model_table(result.name)} in "
            f"{config_name}."
        )
    return lines


def _largest_columns(count: ParameterCount, trainable: bool) -> list[Column[LayerRow]]:
    """The layer table of a budget failure, by trainable parameters or by all of them."""
    column = {c.header: c for c in layer_columns(count)}
    named = [column["layer"], column["type"], column["formula"]]
    if trainable:
        return [
            *named,
            Column("trainable", lambda r: thousands(r.trainable), right=True),
            Column("share", lambda r: percent(r.trainable / count.trainable), right=True),
        ]
    return [*named, column["params"], column["share"]]


_DIFF_COLUMNS: list[Column[LayerChange]] = [
    Column("layer", lambda c: c.name),
    Column("type", lambda c: c.type),
    Column("snapshot", lambda c: "-" if c.before is None else thousands(c.before), right=True),
    Column("now", lambda c: "-" if c.after is None else thousands(c.after), right=True),
    Column("delta", lambda c: signed(c.delta), right=True),
    Column("formula (now)", lambda c: "(removed)" if c.after is None else c.formula),
]


def diff_lines(result: ModelResult, snapshot_name: str) -> list[str]:
    """The snapshot diff table: changed, added, removed layers and totals, then the fix."""
    if result.snapshot is SnapshotStatus.MISSING:
        return [
            f"{printable(result.name)}: no snapshot entry in {snapshot_name}",
            f"Record it with: {UPDATE_COMMAND}",
        ]
    diff = result.diff
    if diff is None or result.snapshot is not SnapshotStatus.CHANGED:
        return []
    # The model's totals are rows of the same table, below its layers.
    totals = [LayerChange(t.label, "", t.before, t.after, "") for t in diff.totals]
    return [
        f"{printable(result.name)}: parameter layout differs from the snapshot in {snapshot_name}",
        *indent(render(_DIFF_COLUMNS, [*diff.layers, *totals])),
        _accept_hint(result),
    ]


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
    "check": "could not check",
    "timeout": "timed out checking",
    "crash": "crashed checking",
}


def failure_lines(result: ModelResult, config_name: str, snapshot_name: str) -> list[str]:
    """Everything a reviewer needs about one failing model, traceback-free; a model whose
    failure cannot be rendered (a bug this model triggers) still fails with a short cause."""
    try:
        return _failure_lines(result, config_name, snapshot_name)
    except Exception as e:
        return [
            f"{printable(result.name)}: failed, and its tables could not be rendered: "
            f"{exception_text(e)}",
            *indent(printable(line) for line in (result.error or "").splitlines()),
        ]


def _failure_lines(result: ModelResult, config_name: str, snapshot_name: str) -> list[str]:
    if result.outcome is Outcome.ERROR:
        what = _STAGES.get(result.error_stage, "could not build")
        heading = f"{printable(result.name)}: {what} {result.target}"
        return [heading, *indent((result.error or "").splitlines())]
    budget = budget_lines(result, config_name)
    diff = diff_lines(result, snapshot_name)
    return [*budget, *([""] if budget and diff else []), *diff]


def _status(result: ModelResult) -> str:
    if result.outcome is Outcome.ERROR:
        return "ERROR"
    over = bool(result.exceeded)
    word = {Outcome.PASSED: "ok", Outcome.FAILED: "FAILED", Outcome.WARNED: "WARN"}[result.outcome]
    return f"{word} (over budget)" if over else word


def used_text(result: ModelResult) -> str:
    """How much of its primary budget a model uses, `-` without one."""
    budget = result.primary_budget
    return percent(budget.used) if budget else "-"


# The first columns of every one-line-per-model table: here and in the job summary.
MODEL_COLUMNS: list[Column[ModelResult]] = [
    Column("model", lambda r: r.name),
    Column("trainable", lambda r: thousands(r.count.trainable) if r.count else "-", right=True),
    Column("budget", lambda r: budget_text(r.primary_budget), right=True),
]
OVERVIEW_COLUMNS: list[Column[ModelResult]] = [
    *MODEL_COLUMNS,
    Column("used", used_text, right=True),
    Column("snapshot", lambda r: r.snapshot.value),
    Column("status", lambda r: _status(r)),
]


def overview_lines(
    results: Sequence[ModelResult],
    stale: Sequence[str],
    verbose: bool = False,
    max_rows: int = 50,
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
    if stale:
        lines.append(
            "stale snapshot entries (no longer configured): "
            f"{', '.join(printable(n) for n in sorted(stale))}; "
            f"a full {UPDATE_COMMAND} run removes them"
        )
    if verbose:
        for r in ordered:
            if r.count is not None:
                lines += [
                    "",
                    f"{printable(r.name)} ({r.target})",
                    *format_table(r.count).splitlines(),
                ]
    return lines


def update_lines(results: Sequence[ModelResult], merge: Merge, snapshot_name: str) -> list[str]:
    """What `--cnn-budget-update` did to each model's entry, as `merge` decided it."""
    by_name = {r.name: r for r in results}
    lines = []
    for name in sorted({*merge.added, *merge.updated, *merge.rejected}):
        if name in merge.added:
            lines.append(f"{snapshot_name}: added {printable(name)}")
        elif name in merge.rejected:
            lines.append(f"{snapshot_name}: NOT updated {printable(name)}: it is over budget")
        else:
            diff = by_name[name].diff
            changes = (
                ", ".join(f"{printable(c.name)} {signed(c.delta)}" for c in diff.layers)
                if diff is not None
                else ""
            ) or "totals"
            lines.append(f"{snapshot_name}: updated {printable(name)} ({changes})")
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
