"""Results compared with a base → the body of one sticky pull-request comment. Pure.

The comment answers a reviewer's one question, what did this pull request do to the models,
in the form size-limit's action made familiar: a table of only the models that changed or
broke a budget, with base, head and the change, then each one's grouped per-layer diff folded
away. A hidden marker line lets a sticky-comment step find and update the same comment on
every push. GitHub refuses a comment over 65,536 characters, so the body stays under
COMMENT_LIMIT bytes, leaving out layer diffs and then rows, and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..config.budgets import MEMORY_KEYS, limit_text, noun
from ..constants import UPDATE_COMMAND
from ..results import ModelResult, Outcome, SnapshotDiff, SnapshotStatus
from ..snapshot.compare import BaseComparison, Change
from ..units import signed, thousands
from .cells import (
    CHANGED_NOTE,
    change_columns,
    change_totals,
    error_cause,
    per_rank,
    shown_changes,
    used_text,
)
from .github import arrow, usage_bar
from .memory import rank_line
from .tables import Column, Style, markdown_code, markdown_escape, render

MARKER = "<!-- cnn-budget-comment -->"
# How a body that found nothing to show begins.
NO_CHANGE = f"{MARKER}\n✅ **cnn-budget**: no change in "
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
    if result is not None and result.outcome is Outcome.FAILED and _unaccepted(row):
        return f"{icon} ❌".strip()  # the footer says why: not in the committed snapshot
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
    """The budget `used` compares with; every one a model breaks, each named by its key."""
    result = row.result
    if result is not None and result.exceeded:
        rank = " per rank" if _per_rank(result) else ""
        return ", ".join(
            f"{c.key} {limit_text(c, human=True)}{rank if c.key in MEMORY_KEYS else ''}"
            for c in result.exceeded
        )
    budget = result.primary_budget if result is not None else None
    if budget is None or result is None:
        return "-"
    return f"{limit_text(budget, human=True)} {noun(budget)}{per_rank(result)}"


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


def _details(row: _Row, result: ModelResult, diff: SnapshotDiff | None, group: bool) -> str:
    """A model's per-layer diff against the base (`diff`), grouped, and for a rank's memory
    what its peak holds, in a collapsed block."""
    memory = result.count.memory if result.count is not None else None
    held = rank_line(memory) if memory is not None else None
    ranked = [markdown_escape(held, cell=False)] if held else []
    if diff is None:
        summary = markdown_escape(f"{row.comparison.name}: memory per rank", cell=False)
        return f"<details><summary>{summary}</summary>\n\n{ranked[0]}\n\n</details>"
    comparison = row.comparison
    changes = shown_changes(result, group, diff)
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
    # A line break in Markdown: two spaces before it.
    totals = "  \n".join(markdown_escape(line) for line in change_totals(diff))
    body = "\n".join(
        [*table, "", *notes, *([""] if notes else []), totals, *([""] if ranked else []), *ranked]
    )
    # Blank lines around the body: Markdown inside an HTML block is read only after one.
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def _per_rank(result: ModelResult) -> bool:
    memory = result.count.memory if result.count is not None else None
    return memory is not None and memory.rank is not None


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def comment_markdown(
    results: Sequence[ModelResult],
    comparisons: Sequence[BaseComparison],
    against: str,
    group: bool = True,
    limit: int = COMMENT_LIMIT,
    if_changed: bool = False,
    problems: Sequence[str] = (),
) -> str:
    """The comment body: MARKER, a heading, the table of models that need a look, their layer
    diffs folded away, and the command that accepts intended changes; when nothing changed, a
    one-line body, or with `if_changed` none at all (""). `against` names the base (`the
    baseline base.json`)."""
    rows = _rows(results, comparisons)
    checked = len(results)
    models = f"{checked} model{'s' if checked != 1 else ''}"
    said = [f"- ⚠️ {markdown_escape(p, cell=False)}" for p in problems]
    if not rows and said:  # the run is not whole: never a "no change" body
        heading = f"### cnn-budget: {models} checked, {_count_of(len(said), 'problem')}"
        return "\n".join([MARKER, heading, "", *said]) + "\n"
    if not rows:
        if if_changed:
            return ""
        return (
            f"{NO_CHANGE}parameter counts against "
            f"{markdown_escape(against, cell=False)} ({models} checked)\n"
        )
    problem_count = f", {_count_of(len(said), 'problem')}" if said else ""
    head = [
        MARKER,
        f"### cnn-budget: {_headline(rows, models)}{problem_count}",
        "",
        *([*said, ""] if said else []),
        f"Compared with {markdown_escape(against)}. Base and head count every parameter, "
        "frozen ones included; `used` is the share of each model's tightest budget.",
        "",
    ]
    diffed = [
        (r, r.result, r.comparison.diff)
        for r in rows
        if r.result is not None and (r.comparison.diff is not None or _per_rank(r.result))
    ]
    table = _Pieces(_table_rows(rows), len(rows))
    details = _Pieces(
        (_details(row, result, diff, group) for row, result, diff in diffed), len(diffed)
    )
    return _Body(head, _footer(rows)).fit(
        render(_COLUMNS, [], Style.MARKDOWN), table, details, limit
    )


def _table_rows(rows: Sequence[_Row], chunk: int = 64) -> Iterator[str]:
    """The lines of the table's rows, rendered a chunk at a time (in Markdown no row's line
    depends on another's)."""
    for start in range(0, len(rows), chunk):
        yield from render(_COLUMNS, rows[start : start + chunk], Style.MARKDOWN)[2:]


def _headline(rows: Sequence[_Row], models: str) -> str:
    """`2 of 5 models changed, 1 over budget`: what the comment is about, in its heading."""
    changes = [r.comparison.change for r in rows]
    moved = (Change.NEW, Change.GREW, Change.SHRANK, Change.CHANGED)
    changed = sum(1 for c in changes if c in moved)
    removed = changes.count(Change.REMOVED)
    breached = sum(1 for r in rows if r.breached)
    errors = sum(1 for r in rows if r.result is not None and r.result.outcome is Outcome.ERROR)
    unaccepted = sum(1 for r in rows if _unaccepted(r))
    parts = [f"{changed} of {models} changed" if changed else f"{models} checked"]
    if removed:
        parts.append(f"{removed} removed")
    if breached:
        parts.append(f"{breached} over budget")
    if unaccepted:
        parts.append(f"{unaccepted} not accepted")  # the snapshot lacks its figures
    if errors:
        parts.append(f"{errors} not checked")
    return ", ".join(parts)


def _footer(rows: Sequence[_Row]) -> list[str]:
    """What a reviewer can do about the rows: shrink or re-budget, accept with the update."""
    footer = []
    if any(r.breached for r in rows):
        footer.append(
            "⛔ Over budget: shrink the model, or raise the budget keys its row names in the "
            "project's config (the update refuses a model over budget)."
        )
    unaccepted = [r for r in rows if _unaccepted(r)]
    if any(r.result is not None and r.result.outcome is Outcome.FAILED for r in unaccepted):
        footer.append("❌ The committed snapshot does not hold these figures: the check fails.")
    if unaccepted:
        footer.append(f"Accept intended changes with `{UPDATE_COMMAND}` and commit the snapshot.")
    # A paragraph each: Markdown joins lines that no blank line separates.
    return [line for i, said in enumerate(footer) for line in ([""] if i else []) + [said]]


def _unaccepted(row: _Row) -> bool:
    """A model whose figures the committed snapshot does not hold (changed, or no entry)."""
    result = row.result
    return result is not None and result.snapshot in (
        SnapshotStatus.CHANGED,
        SnapshotStatus.MISSING,
    )


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

    def fit(self, table: list[str], rows: _Pieces, details: _Pieces, limit: int) -> str:
        """The body within `limit` bytes: the table (`table`, its header and rule, then `rows`)
        and the layer diffs, which are left out first, from the last model up, then the
        table's rows; each left out with a note that says so. Each piece is measured once, and
        each cut costs a sum (the body is Σ(line + `\\n`)); rendering the whole body again
        for each piece left out would make a baseline of 20,000 models take minutes."""
        ending = _lines(["", *self.footer]) if self.footer else 0
        fixed = _lines(self.head) + _lines(table) + ending  # without rows, diffs and notes
        # Each diff or row left out frees more bytes than its note's count can gain (a digit,
        # an `s`): no cut above the pieces drawn can fit, and the first that fits from the top
        # is the one that cutting one piece at a time would have kept.
        shown, row_bytes, every_row = _drawn(rows.lines, limit - fixed, 1)
        if every_row:
            room = limit - fixed - row_bytes[-1]
            diffs, diff_bytes, every_diff = _drawn(details.lines, room, 2)
            if every_diff:
                return self.text([*table, *shown], diffs, [])
            for kept in range(len(diffs), -1, -1):
                note = _diffs_note(details.count - kept)
                if diff_bytes[kept] + _lines(["", note]) <= room:
                    return self.text([*table, *shown], diffs[:kept], [note])
        for kept in range(min(len(shown), rows.count - 1), -1, -1):
            note = _rows_note(rows.count - kept)
            if fixed + row_bytes[kept] + _lines(["", note]) <= limit:
                return self.text([*table, *shown[:kept]], [], [note])
        # Nothing fits: the smallest body there is, as cutting one piece at a time ended.
        if rows.count:
            return self.text(table, [], [_rows_note(rows.count)])
        return self.text(table, [], [_diffs_note(details.count)] if details.count else [])


@dataclass(frozen=True)
class _Pieces:
    """Table rows or layer diffs, rendered only as the fitting draws them: of a baseline of
    thousands of models, a few hundred rows fit, and only then any diff."""

    lines: Iterable[str]
    count: int


def _drawn(pieces: Iterable[str], room: int, extra: int) -> tuple[list[str], list[int], bool]:
    """`pieces` drawn in order while the bytes they take (each its own and `extra`) fit in
    `room`: those kept, the bytes of each prefix of them, and whether every piece was kept."""
    kept: list[str] = []
    taken = [0]
    for piece in pieces:
        size = taken[-1] + _size(piece) + extra
        if size > room:
            return kept, taken, False
        kept.append(piece)
        taken.append(size)
    return kept, taken, True


def _lines(lines: Sequence[str]) -> int:
    """The bytes `lines` take in the body: each one and its line end."""
    return sum(_size(line) + 1 for line in lines)


def _diffs_note(left: int) -> str:
    return (
        f"_The layer diffs of {left} model{'s' if left != 1 else ''} are left out: the "
        "comment would pass GitHub's size limit. The job summary and the log have them all._"
    )


def _rows_note(left: int) -> str:
    return (
        f"_{left} more models, and every layer diff, are left out: the comment would pass "
        "GitHub's size limit. The job summary and the log have them all._"
    )


def says_no_change(body: str) -> bool:
    """Whether a comment body is the one-line "no change" one (or empty): worth updating a
    comment an earlier push made with, not worth a new comment."""
    return not body.strip() or body.startswith((NO_CHANGE, NOTHING_CHECKED))


def _count_of(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


# What each of pytest's exit statuses besides 0, 1 and 5 means for a gate run.
_INCOMPLETE = {
    2: "interrupted (a collection error, or Ctrl-C)",
    3: "an internal error",
    4: "a usage error (its options or configuration)",
}
# The body of a run that selected no model: as quiet as "no change".
NOTHING_CHECKED = f"{MARKER}\nℹ️ **cnn-budget**: no model was checked "


def incomplete_markdown(status: int, reason: str | None = None) -> str:
    """The comment body of a gate run that did not complete: pytest exited with `status` (not
    0 or 1; negative: killed by that signal), or `reason` kept it from starting. What an earlier
    push's comment is updated to, so that it says nothing stale."""
    if reason is not None:
        why = f"it could not start: {markdown_escape(reason, cell=False)}"
    elif status == 5:
        return f"{NOTHING_CHECKED}(pytest selected none).\n"
    elif status < 0:
        why = f"pytest was stopped by signal {-status}"
    else:
        why = f"pytest ended with {_INCOMPLETE.get(status, 'an error')} (exit status {status})"
    return f"{MARKER}\n⚠️ **cnn-budget** did not check the models: {why}; the job's log says more.\n"
