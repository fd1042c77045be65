"""Results → plain text lines for the terminal. No I/O: callers print what these return."""

from __future__ import annotations

from collections.abc import Sequence

from .config import model_table
from .results import BudgetCheck, ModelResult, Outcome, ParameterCount, SnapshotStatus


def printable(text: str) -> str:
    """`text` on one line: control characters (a newline in a quoted TOML key) are escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def thousands(n: int) -> str:
    """`545098` → `545,098`."""
    return f"{n:,}"


def signed(n: int) -> str:
    """`1234` → `+1,234`; `-5` → `-5`; `0` → `0`."""
    return f"{n:+,}" if n else "0"


def percent(fraction: float) -> str:
    """`0.1234` → `12.3%`."""
    return f"{fraction * 100:.1f}%"


# What a budget other than max_params counts, shown after its limit in one-line summaries, where
# the count next to it is the trainable one.
_BUDGET_UNITS = {
    "max_total_params": "total",
    "max_macs": "MACs",
    "max_flops": "FLOPs",
    "max_param_bytes": "bytes",
}


def budget_text(check: BudgetCheck | None) -> str:
    """`600,000`, or `1,200,000 total` for a budget that is not on trainable parameters."""
    if check is None:
        return "-"
    unit = _BUDGET_UNITS.get(check.key)
    return f"{thousands(check.limit)} {unit}" if unit else thousands(check.limit)


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]
) -> list[str]:
    """Align `rows` under `headers`; columns flagged in `right` are right-aligned (numbers)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def totals_line(result: ParameterCount) -> str:
    """`total 545,098 · trainable 545,098 · frozen 0 · buffers 0`, plus compute when measured."""
    line = (
        f"total {thousands(result.total)} · trainable {thousands(result.trainable)} · "
        f"frozen {thousands(result.frozen)} · buffers {thousands(result.buffers)}"
    )
    if result.macs is not None:
        line += (
            f" · MACs {thousands(result.macs)} · FLOPs {thousands(result.flops or 0)}"
            f" at {result.input_shape} (1 MAC = 2 FLOPs)"
        )
    return line


def format_table(result: ParameterCount) -> str:
    """The per-layer table: name, type, formula, params, cumulative, share (and output shape and
    MACs when the model ran forward), then the totals."""
    shaped = result.macs is not None
    headers = ["layer", "type", "formula", "params", "cumulative", "share"]
    right = [False, False, False, True, True, True]
    if shaped:
        headers += ["output", "MACs"]
        right += [False, True]
    rows = []
    for row in result.layers:
        cells = [
            printable(row.name),
            row.type,
            row.formula,
            thousands(row.params),
            thousands(row.cumulative),
            percent(row.share),
        ]
        if shaped:
            shape = "×".join(map(str, row.output_shape)) if row.output_shape else "-"
            cells += [shape, "-" if row.macs is None else thousands(row.macs)]
        rows.append(cells)
    return "\n".join([*table(headers, rows, right), totals_line(result)])


LARGEST_LAYERS = 5
UPDATE_COMMAND = "pytest --cnn-budget-update"


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
        trainable = keys == ["max_params"] and count.frozen > 0
        lines.append("largest trainable layers:" if trainable else "largest layers:")
        rows = [
            [
                printable(r.name),
                r.type,
                r.formula,
                thousands(r.trainable if trainable else r.params),
                percent(r.trainable / count.trainable if trainable else r.share),
            ]
            for r in count.largest(LARGEST_LAYERS, trainable=trainable)
        ]
        headers = ["layer", "type", "formula", "trainable" if trainable else "params", "share"]
        lines += indent(table(headers, rows, [False] * 3 + [True] * 2))
        lines.append(
            f"Shrink the model, or raise {', '.join(keys)} under {model_table(result.name)} in "
            f"{config_name}."
        )
    return lines


def indent(lines: Sequence[str], prefix: str = "  ") -> list[str]:
    """Prefix every line."""
    return [prefix + line for line in lines]


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
    rows = [
        [
            printable(change.name),
            change.type,
            "-" if change.before is None else thousands(change.before),
            "-" if change.after is None else thousands(change.after),
            signed(change.delta),
            "(removed)" if change.after is None else change.formula,
        ]
        for change in diff.layers
    ]
    rows += [
        [t.label, "", thousands(t.before), thousands(t.after), signed(t.after - t.before), ""]
        for t in diff.totals
    ]
    headers = ["layer", "type", "snapshot", "now", "delta", "formula (now)"]
    right = [False, False, True, True, True, False]
    return [
        f"{printable(result.name)}: parameter layout differs from the snapshot in {snapshot_name}",
        *indent(table(headers, rows, right)),
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


def failure_lines(result: ModelResult, config_name: str, snapshot_name: str) -> list[str]:
    """Everything a reviewer needs about one failing model, traceback-free."""
    if result.outcome is Outcome.ERROR:
        what = "run forward" if result.error_stage == "forward" else "build"
        heading = f"{printable(result.name)}: could not {what} {result.target}"
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


def summary_lines(
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
    rows = []
    for r in shown:
        budget = r.primary_budget
        rows.append(
            [
                printable(r.name),
                thousands(r.count.trainable) if r.count else "-",
                budget_text(budget),
                percent(budget.used) if budget else "-",
                r.snapshot.value,
                _status(r),
            ]
        )
    headers = ["model", "trainable", "budget", "used", "snapshot", "status"]
    lines = table(headers, rows, [False, True, True, True, False, False]) if rows else []
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


def update_lines(
    results: Sequence[ModelResult], removed: Sequence[str], snapshot_name: str
) -> list[str]:
    """What `--cnn-budget-update` did to each model's entry."""
    lines = []
    for r in sorted(results, key=lambda r: r.name):
        if r.snapshot is SnapshotStatus.ADDED:
            lines.append(f"{snapshot_name}: added {printable(r.name)}")
        elif r.snapshot is SnapshotStatus.UPDATED and r.diff is not None:
            changes = (
                ", ".join(f"{printable(c.name)} {signed(c.delta)}" for c in r.diff.layers)
                or "totals"
            )
            lines.append(f"{snapshot_name}: updated {printable(r.name)} ({changes})")
        elif r.snapshot is SnapshotStatus.REJECTED:
            lines.append(f"{snapshot_name}: NOT updated {printable(r.name)}: it is over budget")
    lines += [f"{snapshot_name}: removed stale {printable(name)}" for name in removed]
    return lines


def warning_lines(
    results: Sequence[ModelResult], config_name: str, snapshot_name: str
) -> list[str]:
    """The failure tables of models configured with level = "warn"."""
    lines: list[str] = []
    for r in sorted(results, key=lambda r: r.name):
        if r.outcome is Outcome.WARNED:
            lines += [*failure_lines(r, config_name, snapshot_name), ""]
    return lines[:-1]
