"""Results → GitHub Actions workflow commands and a job-summary Markdown report. No I/O.

The runner reads every line of a step's output, strips leading white space, and executes any line
that starts with `::`. Everything here that carries user text (model keys, layer names, exception
messages) is therefore escaped exactly as GitHub's own toolkit (`@actions/core`) escapes it, and
lines printed elsewhere go through `neutralize`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .constants import UPDATE_COMMAND
from .render_terminal import MODEL_COLUMNS, Failures, used_text
from .results import ModelResult, Outcome, SnapshotStatus
from .tables import (
    LINE_BREAKS,
    Column,
    Style,
    markdown_code,
    markdown_code_block,
    markdown_escape,
    render,
)
from .units import signed, thousands

# Every line break str.splitlines honours. The runner itself ends a line at \n, \r and \r\n
# (.NET's StreamReader.ReadLine), but a log viewer, a log shipper or a later step that rereads
# the log may also end one at \v, \f, the ASCII separators, NEL or the Unicode separators.
_LINE_BREAK = re.compile(f"(\r\n|[{re.escape(LINE_BREAKS)}])")
# What the runner trims before it looks for `::`: .NET's TrimStart removes Unicode white space
# (U+00A0, U+3000, …), which Python's `\s` matches too, and .NET Framework's also removed the
# zero-width space and the byte-order mark; the other zero-width characters are defused as well,
# since a prefix too many costs nothing and a command too many runs.
_COMMAND = re.compile(r"[\s\u180e\u200b\u200c\u200d\u2060\ufeff]*::")
MAX_ANNOTATIONS = 10  # GitHub shows at most 10 error and 10 warning annotations per step
SUMMARY_LIMIT = 1024 * 1024  # GitHub rejects a step summary above 1 MiB
_SUMMARY_BUDGET = SUMMARY_LIMIT - 16 * 1024  # headroom for what other steps appended


def escape_data(text: str) -> str:
    """A workflow command's message, escaped like `@actions/core`'s escapeData."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value, escaped like `@actions/core`'s escapeProperty."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: str, **properties: str | int | None) -> str:
    """`::command key=value,…::message`, properties in the order given."""
    props = ",".join(
        f"{key}={escape_property(str(value))}"
        for key, value in properties.items()
        if value is not None
    )
    return f"::{command}{' ' + props if props else ''}::{escape_data(message)}"


def neutralize(line: str) -> str:
    """Keep a line of user text from being read as a workflow command by the runner."""
    return f"| {line}" if _COMMAND.match(line) else line


def neutralize_text(text: str) -> str:
    """`neutralize` applied to every line of `text`, its line breaks (any that `str.splitlines`
    honours, a lone carriage return among them) kept."""
    parts = _LINE_BREAK.split(text)
    # Odd positions hold the breaks themselves.
    return "".join(part if i % 2 else neutralize(part) for i, part in enumerate(parts))


@dataclass(frozen=True)
class Anchor:
    """Where an annotation points: a path relative to the workspace and a 1-based line."""

    path: str
    line: int | None


def relative_to_workspace(path: str, workspace: str | None) -> str:
    """`path` relative to GITHUB_WORKSPACE when it lies inside it, else unchanged."""
    if not workspace:
        return path
    try:
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(workspace))
    except ValueError:  # different drives on Windows
        return path
    return path if relative.startswith("..") else relative.replace(os.sep, "/")


def anchors(
    results: Iterable[ModelResult],
    config_path: Path,
    config_lines: Mapping[str, int | None],
    workspace: str | None,
) -> dict[str, Anchor]:
    """Where each model's annotation points: the source line its failure names, else the line
    of the config file that declares the model."""
    out = {}
    for result in results:
        line: int | None
        if result.source is not None:
            path, line = result.source.path, result.source.line
        else:
            path, line = str(config_path), config_lines.get(result.name)
        out[result.name] = Anchor(relative_to_workspace(path, workspace), line)
    return out


# An annotation's title for a model that could not be checked, by the step that failed.
_ERRORS = {
    "forward": "could not run forward",
    "check": "could not be checked",
    "timeout": "timed out",
    "crash": "crashed the process checking it",
}


def _problems(result: ModelResult) -> str:
    """`over budget, layout changed`: what is wrong with a failing model, in a few words."""
    if result.outcome is Outcome.ERROR:
        return _ERRORS.get(result.error_stage, "could not be built")
    problems = []
    if result.exceeded:
        problems.append("over budget")
    if result.diff is not None and result.snapshot is SnapshotStatus.CHANGED:
        problems.append("layout changed")
    if result.snapshot is SnapshotStatus.MISSING:
        problems.append("no snapshot entry")
    return ", ".join(problems) or "failed"


def _title(result: ModelResult) -> str:
    return f"cnn-budget: {result.name} {_problems(result)}"


def annotation_lines(
    results: Sequence[ModelResult],
    anchors: dict[str, Anchor],
    failed: Failures,
) -> list[str]:
    """One `::error` (or `::warning` for level = "warn") per failing model, within GitHub's
    limits: the first 10 of each kind, then one `::notice` counting the rest."""
    lines: list[str] = []
    dropped = 0
    emitted = {"error": 0, "warning": 0}
    for result in sorted(results, key=lambda r: r.name):
        if not result.failed:
            continue
        kind = "warning" if result.outcome is Outcome.WARNED else "error"
        if emitted[kind] >= MAX_ANNOTATIONS:
            dropped += 1
            continue
        emitted[kind] += 1
        anchor = anchors.get(result.name)
        message = "\n".join(failed[result.name])
        lines.append(
            workflow_command(
                kind,
                message,
                title=_title(result),
                file=anchor.path if anchor else None,
                line=anchor.line if anchor else None,
            )
        )
    if dropped:
        lines.append(
            workflow_command(
                "notice",
                f"{dropped} more cnn-budget failures are not annotated (GitHub shows at most "
                f"{MAX_ANNOTATIONS} per step); see the job summary or the log",
                title="cnn-budget: more failures",
            )
        )
    return lines


_BLOCKS = " ▏▎▍▌▋▊▉█"


def usage_bar(fraction: float, width: int = 10) -> str:
    """A unicode bar of `width` cells for `fraction` of the budget (full at 100% and beyond)."""
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (_BLOCKS[rest] if rest else "")).ljust(width, "·")


def _status(result: ModelResult) -> str:
    if result.outcome is Outcome.ERROR:
        return "❌ error"
    if result.outcome is Outcome.PASSED:
        return "✅ ok"
    icon = "⚠️" if result.outcome is Outcome.WARNED else "❌"
    return f"{icon} {_problems(result)}"


def _delta(result: ModelResult) -> str:
    if result.snapshot in (SnapshotStatus.UNKNOWN, SnapshotStatus.OFF):
        return "-"  # not counted, or no snapshot to compare with
    if result.diff is None:
        return "new" if result.snapshot in (SnapshotStatus.MISSING, SnapshotStatus.ADDED) else "0"
    total = next((t for t in result.diff.totals if t.label == "total"), None)
    change = total.after - total.before if total else 0
    arrow = "🔺 " if change > 0 else "🔽 " if change < 0 else ""
    return f"{arrow}{signed(change)}"


def _used(result: ModelResult) -> str:
    budget = result.primary_budget
    # In code, where every character has one width: the bars line up from row to row.
    return markdown_code(f"{used_text(result)} {usage_bar(budget.used)}") if budget else "-"


def _macs(result: ModelResult) -> str:
    macs = result.count.macs if result.count is not None else None
    return thousands(macs) if macs is not None else "-"


# The job summary's table of models; the MACs column only when some model has an input_shape.
SUMMARY_COLUMNS: list[Column[ModelResult]] = [
    *MODEL_COLUMNS,
    Column("used", _used),
    Column("MACs", _macs, right=True),
    Column("Δ vs snapshot", _delta, right=True),
    Column("status", _status),
]


def summary_markdown(results: Sequence[ModelResult], failed: Failures) -> str:
    """The job summary: a table of every model and, per failure, its tables in <details>."""
    # Failures first: they are what the reader came for, and what truncation must keep.
    ordered = sorted(results, key=lambda r: (not r.failed, r.name))
    failing = [r for r in ordered if r.failed]
    head = f"## cnn-budget: {len(failing)} of {len(ordered)} models need attention"
    if not failing:
        head = f"## cnn-budget: all {len(ordered)} models within budget"
    # MACs only when some model was given an input_shape: an empty column is noise.
    compute = any(r.count is not None and r.count.macs is not None for r in ordered)
    columns = SUMMARY_COLUMNS if compute else [c for c in SUMMARY_COLUMNS if c.header != "MACs"]
    rows = render(columns, ordered, Style.MARKDOWN)
    details = []
    for r in failing:
        body = markdown_code_block("\n".join(failed[r.name]))
        summary = markdown_escape(f"{r.name}: {_title(r)}", cell=False)
        details.append(f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>")
    footer = f"Accept intended changes with `{UPDATE_COMMAND}`." if failing else ""
    # The blank line ends the HTML block that <details> opened: without it the footer would be
    # read as raw HTML, its code span shown with the backticks.
    parts = [head, "", *rows, "", *details, "", footer]
    text = "\n".join(parts).rstrip() + "\n"
    if len(text.encode("utf-8")) <= _SUMMARY_BUDGET:
        return text
    # Too big for GitHub: keep the table, drop the detail blocks (the log has them all).
    note = "_Details omitted: the report exceeds GitHub's 1 MiB summary limit; see the job log._"
    text = "\n".join([head, "", *rows, "", note, "", footer]).rstrip() + "\n"
    while len(text.encode("utf-8")) > _SUMMARY_BUDGET and len(rows) > 2:
        rows.pop()
        text = "\n".join([head, "", *rows, "", "_…table truncated._", note]).rstrip() + "\n"
    return text
