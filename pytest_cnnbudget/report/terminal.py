"""Results → plain text lines for the terminal and the command line. No I/O: callers print
what these return."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from ..config.budgets import BYTE_KEYS, MEMORY_KEYS, ranks_trainable
from ..config.locations import model_table
from ..config.settings import is_fixture_name
from ..constants import UPDATE_COMMAND
from ..errors import exception_text
from ..inputs import format_shape
from ..names import printable
from ..results import (
    BudgetCheck,
    LayerRow,
    ModelResult,
    Outcome,
    ParameterCount,
    SnapshotStatus,
)
from ..snapshot.merge import Merge
from ..units import clip, human_bytes, human_count, middle_cut, percent, signed, thousands
from .cells import (
    CHANGED_NOTE,
    FORMULA_NOTE,
    GROUPED_NOTE,
    STAGES,
    Failures,
    change_columns,
    change_totals,
    error_cause,
    formula_notes,
    layer_columns,
    model_columns,
    row_name,
    shown_changes,
    used_text,
)
from .memory import memory_breakdown, saving_lines
from .tables import Column, Style, grid, indent, markdown_escape, render
from .views import largest, layer_rows

LARGEST_LAYERS = 5


def layer_table(count: ParameterCount, style: Style = Style.TEXT, group: bool = True) -> list[str]:
    """The per-layer table's lines, repeated blocks grouped unless `group` is off, and the note
    that says how to read a group when there is one."""
    rows = layer_rows(count.layers, group)
    lines = render(layer_columns(count, rows), rows, style)
    notes = [GROUPED_NOTE] if any(r.repeat > 1 for r in rows) else []
    notes += formula_notes(r.formula for r in rows)
    # In Markdown, a paragraph of its own in italics below the table.
    for note in notes:
        lines += [note] if style is Style.TEXT else ["", f"_{markdown_escape(note)}_"]
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
            f" · peak memory{' per rank' if count.memory.rank else ''}: "
            f"training {human_bytes(count.memory.peak_train)}, "
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
        # A memory budget alone: the breakdown and the modules saving the most say where the
        # bytes are; the largest layers by parameters would not.
        if any(key not in MEMORY_KEYS for key in keys):
            lines += _largest_lines(result.exceeded, count, group)
        where = (
            "in its cnn_budget() call"
            if is_fixture_name(result.name)
            else f"under {model_table(result.name)} in {config_name}"
        )
        lines.append(f"Shrink the model, or raise {', '.join(keys)} {where}.")
        if not is_fixture_name(result.name) and any(key in MEMORY_KEYS for key in keys):
            # A figure to raise it to, with its headroom, rather than a guess.
            lines.append(
                f"cnnbudget summary {shlex.quote(printable(result.name))} --memory prints "
                "budget lines to paste."
            )
    return lines


def _largest_lines(
    exceeded: tuple[BudgetCheck, ...], count: ParameterCount, group: bool
) -> list[str]:
    # When only trainable parameters broke the budget, frozen layers, however large, are not
    # where to look.
    trainable = ranks_trainable(exceeded) and count.frozen > 0
    lines = ["largest trainable layers:" if trainable else "largest layers:"]
    rows = largest(count, LARGEST_LAYERS, trainable=trainable, group=group)
    lines += indent(render(_largest_columns(count, rows, trainable), rows))
    if any(r.repeat > 1 for r in rows):
        lines.append(f"  {GROUPED_NOTE}")
    return lines + indent(formula_notes(r.formula for r in rows))


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


_DIFF_COLUMNS = change_columns()


def diff_lines(
    result: ModelResult, snapshot_name: str, group: bool = True, ci: bool = False
) -> list[str]:
    """The snapshot diff table: changed, added, removed layers, the totals, then the fix."""
    if result.snapshot is SnapshotStatus.MISSING:
        return _missing_lines(result, snapshot_name, ci)
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
        lines += indent(formula_notes(c.formula for c in changes if c.after is not None))
    lines += [*indent(change_totals(diff)), _accept_hint(result, snapshot_name, ci)]
    return lines


def _missing_lines(result: ModelResult, snapshot_name: str, ci: bool) -> list[str]:
    name = printable(result.name)
    if not ci:
        return [
            f"{name}: no snapshot entry in {snapshot_name}",
            f"Record it with: {UPDATE_COMMAND}, then commit {snapshot_name}",
        ]
    # In CI the snapshot is the one committed: the usual cause is an update run where the model
    # changed whose file never made it into the commit.
    return [
        f"{name}: no entry in the committed snapshot {snapshot_name} "
        "(or the file is not committed)",
        f"Run {UPDATE_COMMAND} where the model is defined and commit {snapshot_name} "
        "with the change (a new model, or an update whose file was not committed)",
    ]


def _accept_hint(result: ModelResult, snapshot_name: str, ci: bool) -> str:
    # In CI the snapshot is the committed one: an author who ran the update and left the file
    # out of the commit reads here why it still fails.
    commit = f" and commit {snapshot_name} (ran it already? the file is not in this commit)"
    accept = UPDATE_COMMAND + (commit if ci else "")
    if result.exceeded and result.level == "error":
        # The update refuses models over budget, so the order matters.
        keys = ", ".join(c.key for c in result.exceeded)
        return f"If this change is intended, raise {keys} first, then accept it with: {accept}"
    return f"If this change is intended, accept it with: {accept}"


def failure_lines(
    result: ModelResult,
    config_name: str,
    snapshot_name: str,
    group: bool = True,
    ci: bool = False,
) -> list[str]:
    """Everything a reviewer needs about one failing model, traceback-free; a model whose
    failure cannot be rendered (a bug this model triggers) still fails with a short cause.
    `ci`: the run is a CI job's, where the snapshot is the one committed."""
    try:
        return _failure_lines(result, config_name, snapshot_name, group, ci)
    except Exception as e:
        return [
            f"{printable(result.name)}: failed, and its tables could not be rendered: "
            f"{exception_text(e)}",
            *indent(printable(line) for line in (result.error or "").splitlines()),
        ]


def _failure_lines(
    result: ModelResult, config_name: str, snapshot_name: str, group: bool, ci: bool
) -> list[str]:
    if result.outcome is Outcome.ERROR:
        what = STAGES.get(result.error_stage, "could not build")
        heading = f"{printable(result.name)}: {what} {printable(result.target)}"
        return [heading, *indent((result.error or "").splitlines())]
    budget = budget_lines(result, config_name, group)
    diff = diff_lines(result, snapshot_name, group, ci)
    if any(FORMULA_NOTE in line for line in budget):  # said once, under the first table
        diff = [line for line in diff if FORMULA_NOTE not in line]
    # Last: the first line is the one a short summary quotes.
    return [*budget, *([""] if budget and diff else []), *diff, *note_lines(result)]


def note_lines(result: ModelResult) -> list[str]:
    """`mobilenet: built on cpu: …`: what to know about how a model was measured."""
    return [f"{printable(result.name)}: {note}" for note in result.notes]


def _status(result: ModelResult) -> str:
    if result.outcome is Outcome.ERROR:
        what = STAGES.get(result.error_stage, "could not build")
        cause = error_cause(result, 48)
        return f"ERROR: {what}" + (f" ({cause})" if cause else "")
    over = bool(result.exceeded)
    word = {Outcome.PASSED: "ok", Outcome.FAILED: "FAILED", Outcome.WARNED: "WARN"}[result.outcome]
    return f"{word} (over budget)" if over else word


OVERVIEW_COLUMNS: list[Column[ModelResult]] = [
    *model_columns(),
    Column("used", used_text, right=True),
    Column("snapshot", lambda r: r.snapshot.value),
    Column("status", lambda r: _status(r)),
]


SUMMARY_WIDTH = 100  # columns of the run's summary table, whatever its names


def _overview_table(results: Sequence[ModelResult]) -> list[str]:
    """The summary's table, at most SUMMARY_WIDTH wide: a long name (a fixture check's node
    id) is shortened in the middle, where a path and a test name keep their ends; a long
    status (an error's cause) is cut at its end."""
    columns = OVERVIEW_COLUMNS
    cells = [[printable(c.cell(r)) for c in columns] for r in results]
    widths = [max(len(c.header), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    excess = sum(widths) + 2 * (len(columns) - 1) - SUMMARY_WIDTH
    # The status first: its first words say what happened, the cause is in the failure.
    for i, shorten, narrowest in ((len(columns) - 1, _short_status, 24), (0, middle_cut, 20)):
        if excess <= 0:
            break
        room = max(narrowest, widths[i] - excess)
        for row in cells:
            row[i] = shorten(row[i], room)
        excess -= widths[i] - max(room, len(columns[i].header))
    return grid([c.header for c in columns], cells, [c.right for c in columns])


def _short_status(status: str, limit: int) -> str:
    """`ERROR: could not build (cause)` in `limit` characters: the cause cut, or left out."""
    if len(status) <= limit:
        return status
    what, _, cause = status.partition(" (")
    room = limit - len(what) - 3
    # What happened is never cut (`ERROR: could not trace the memory of`); its cause may be.
    return f"{what} ({clip(cause.removesuffix(')'), room)})" if room >= 8 else what


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
    lines = _overview_table(shown) if shown else []
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
                    f"{printable(r.name)} ({printable(r.target)})",
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
            why = "it is over budget" if by_name[name].exceeded else "its test failed"
            lines.append(f"{snapshot_name}: NOT updated {printable(name)}: {why}")
        else:
            changes = shown_changes(by_name[name], group)
            named = ", ".join(
                f"{row_name(c.name, c.repeat)} {signed(c.delta)}" for c in changes[:UPDATE_CHANGES]
            )
            if len(changes) > UPDATE_CHANGES:
                named += f", and {len(changes) - UPDATE_CHANGES} more"
            lines.append(f"{snapshot_name}: updated {printable(name)} ({named or 'totals'})")
    lines += [f"{snapshot_name}: removed stale {printable(name)}" for name in merge.removed]
    if merge.added or merge.updated or merge.removed:
        # The check in CI reads the committed file: an update left out of the commit fails there.
        lines.append(f"Commit {snapshot_name} with the change.")
    return lines


def warning_lines(results: Sequence[ModelResult], failed: Failures) -> list[str]:
    """The failure tables of models configured with level = "warn"."""
    lines: list[str] = []
    for r in sorted(results, key=lambda r: r.name):
        if r.outcome is Outcome.WARNED:
            lines += [*failed[r.name], ""]
    return lines[:-1]
