"""Results compared with a base → the body of one sticky pull-request comment. Pure.

The comment answers a reviewer's one question, what did this pull request do to the models,
in the form size-limit's action made familiar: a table of only the models that changed or
broke a budget, with base, head and the change, then each one's grouped per-layer diff folded
away. A hidden marker line lets a sticky-comment step find and update the same comment on
every push. GitHub refuses a comment over 65,536 characters, so the body stays under
COMMENT_LIMIT bytes, leaving out layer diffs and then rows, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..config.budgets import limit_text, noun
from ..constants import UPDATE_COMMAND
from ..results import ModelResult, Outcome, SnapshotStatus
from ..snapshot.compare import BaseComparison, Change
from ..units import signed, thousands
from .cells import (
    CHANGED_NOTE,
    change_columns,
    change_totals,
    error_cause,
    shown_changes,
    used_text,
)
from .github import arrow, usage_bar
from .tables import Column, Style, markdown_code, markdown_escape, render

MARKER = "<!-- cnn-budget-comment -->"
# Bytes of the body; GitHub's limit is 65,536 characters, and a character is at least a byte.
COMMENT_LIMIT = 60_000
_ICONS = {
    Change.NEW: "🆕",
    Change.REMOVED: "🗑",
    Change.GREW: "🔺",
    Change.SHRANK: "🔽",
    Change.CHANGED: "🔁",
    Change.SAME: "",
    Change.UNKNOWN: "❌",
}


@dataclass(frozen=True)
class _Row:
    """One model in the comment: its comparison with the base and, if it ran, its result."""

    comparison: BaseComparison
    result: ModelResult | None

    @property
    def breached(self) -> bool:
        return self.result is not None and bool(self.result.exceeded)


def _icon(row: _Row) -> str:
    result = row.result
    if result is not None and result.outcome is Outcome.ERROR:
        return "❌"
    icon = _ICONS[row.comparison.change]
    if row.breached:
        return f"{icon} ⛔".strip()
    return icon or "⚠️"  # unchanged against the base, but failing against the snapshot


def _count(value: int | None) -> str:
    return thousands(value) if value is not None else "-"


def _relative(row: _Row) -> str:
    relative = row.comparison.relative
    if relative is None:
        return "-"
    return f"{relative * 100:+.1f}%" if relative else "0%"


def _delta(row: _Row, icon: bool = False) -> str:
    delta = row.comparison.delta
    if delta is None:
        return "-"
    return f"{arrow(delta)}{signed(delta)}" if icon else signed(delta)


def _budget(row: _Row) -> str:
    budget = row.result.primary_budget if row.result is not None else None
    return f"{limit_text(budget, human=True)} {noun(budget)}" if budget is not None else "-"


def _used(row: _Row) -> str:
    result = row.result
    if result is None:
        return "-"
    if result.outcome is Outcome.ERROR:
        return error_cause(result, 80) or "could not be checked"
    budget = result.primary_budget
    return markdown_code(f"{used_text(result)} {usage_bar(budget.used)}") if budget else "-"


_COLUMNS: list[Column[_Row]] = [
    Column("", _icon),
    Column("model", lambda r: r.comparison.name),
    Column("base", lambda r: _count(r.comparison.before), right=True),
    Column("head", lambda r: _count(r.comparison.after), right=True),
    Column("Δ", _delta, right=True),
    Column("Δ%", _relative, right=True),
    Column("budget", _budget, right=True),
    Column("used", _used),
]


def _rows(results: Sequence[ModelResult], comparisons: Sequence[BaseComparison]) -> list[_Row]:
    """The models worth a reviewer's look: changed against the base, failing against the
    snapshot, over budget, or not checked at all."""
    by_name = {r.name: r for r in results}
    rows = []
    for comparison in comparisons:
        result = by_name.get(comparison.name)
        failing = result is not None and (
            result.failed or result.snapshot in (SnapshotStatus.CHANGED, SnapshotStatus.MISSING)
        )
        if comparison.change is not Change.SAME or failing:
            rows.append(_Row(comparison, result))
    return rows


def _details(row: _Row, group: bool) -> str | None:
    """A model's per-layer diff against the base, grouped, in a collapsed block."""
    comparison, result = row.comparison, row.result
    if comparison.diff is None or result is None:
        return None
    changes = shown_changes(result, group, comparison.diff)
    layers = sum(c.repeat for c in changes)
    counted = f"{len(changes)} row{'s' if len(changes) != 1 else ''}"
    if layers != len(changes):
        counted += f" ({layers} layers)"
    summary = markdown_escape(
        f"{comparison.name}: {_delta(row, icon=True)} ({_relative(row)}), {counted} changed",
        cell=False,
    )
    table = render(change_columns("base", "head"), changes, Style.MARKDOWN) if changes else []
    notes = [f"_{markdown_escape(CHANGED_NOTE)}_"] if any(c.repeat > 1 for c in changes) else []
    totals = markdown_escape(change_totals(comparison.diff))
    body = "\n".join([*table, "", *notes, *([""] if notes else []), totals])
    # Blank lines around the body: Markdown inside an HTML block is read only after one.
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def comment_markdown(
    results: Sequence[ModelResult],
    comparisons: Sequence[BaseComparison],
    against: str,
    group: bool = True,
    limit: int = COMMENT_LIMIT,
    if_changed: bool = False,
) -> str:
    """The comment body: MARKER, a heading, the table of models that need a look, their layer
    diffs folded away, and the command that accepts intended changes; when nothing changed, a
    one-line body, or with `if_changed` none at all (""). `against` names the base (`the
    baseline base.json`)."""
    rows = _rows(results, comparisons)
    checked = len(results)
    models = f"{checked} model{'s' if checked != 1 else ''}"
    if not rows:
        if if_changed:
            return ""
        return (
            f"{MARKER}\n✅ **cnn-budget**: no change in parameter counts against "
            f"{markdown_escape(against, cell=False)} ({models} checked)\n"
        )
    head = [
        MARKER,
        f"### cnn-budget: {_headline(rows, models)}",
        "",
        f"Compared with {markdown_escape(against)}. Base and head count every parameter, "
        "frozen ones included; `used` is the share of each model's tightest budget.",
        "",
    ]
    table = render(_COLUMNS, rows, Style.MARKDOWN)
    details = [d for d in (_details(r, group) for r in rows) if d is not None]
    return _Body(head, _footer(rows)).fit(table, details, limit)


def _headline(rows: Sequence[_Row], models: str) -> str:
    """`2 of 5 models changed, 1 over budget`: what the comment is about, in its heading."""
    changes = [r.comparison.change for r in rows]
    moved = (Change.NEW, Change.GREW, Change.SHRANK, Change.CHANGED)
    changed = sum(1 for c in changes if c in moved)
    removed = changes.count(Change.REMOVED)
    breached = sum(1 for r in rows if r.breached)
    errors = sum(1 for r in rows if r.result is not None and r.result.outcome is Outcome.ERROR)
    parts = [f"{changed} of {models} changed" if changed else f"{models} checked"]
    if removed:
        parts.append(f"{removed} removed")
    if breached:
        parts.append(f"{breached} over budget")
    if errors:
        parts.append(f"{errors} not checked")
    return ", ".join(parts)


def _footer(rows: Sequence[_Row]) -> list[str]:
    """What a reviewer can do about the rows: shrink or re-budget, accept with the update."""
    footer = []
    if any(r.breached for r in rows):
        footer.append(
            "⛔ Over budget: shrink the model, or raise its budget in the project's config (the "
            "update refuses a model over budget)."
        )
    if any(
        r.result is not None
        and r.result.snapshot in (SnapshotStatus.CHANGED, SnapshotStatus.MISSING)
        for r in rows
    ):
        footer.append(f"Accept intended changes with `{UPDATE_COMMAND}` and commit the snapshot.")
    return footer


@dataclass(frozen=True)
class _Body:
    """The comment around its table and layer diffs, which shrink to fit GitHub's limit."""

    head: list[str]
    footer: list[str]

    def text(self, table: list[str], details: list[str], notes: list[str]) -> str:
        """The whole body with these table lines, layer diffs and notes."""
        blocks = [line for block in details for line in ("", block)]
        ending = [*(["", *notes] if notes else []), *(["", *self.footer] if self.footer else [])]
        return "\n".join([*self.head, *table, *blocks, *ending]) + "\n"

    def fit(self, table: list[str], details: list[str], limit: int) -> str:
        """The body within `limit` bytes: layer diffs left out first, from the last model up,
        then table rows; each left out with a note that says so."""
        text = self.text(table, details, [])
        if _size(text) <= limit:
            return text
        shown = list(details)
        while shown:
            shown.pop()
            left = len(details) - len(shown)
            note = (
                f"_The layer diffs of {left} model{'s' if left != 1 else ''} are left out: the "
                "comment would pass GitHub's size limit. The job summary and the log have them "
                "all._"
            )
            text = self.text(table, shown, [note])
            if _size(text) <= limit:
                return text
        rows_shown = list(table)
        while len(rows_shown) > 2:
            rows_shown.pop()
            note = (
                f"_{len(table) - len(rows_shown)} more models, and every layer diff, are left "
                "out: the comment would pass GitHub's size limit. The job summary and the log "
                "have them all._"
            )
            text = self.text(rows_shown, [], [note])
            if _size(text) <= limit:
                return text
        return text
