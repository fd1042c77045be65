"""Results → GitHub Actions workflow commands and a job-summary Markdown report. No I/O.

The runner reads every line of a step's output, strips leading white space, and executes any line
that starts with `::`. Everything here that carries user text (model keys, layer names, exception
messages) is therefore escaped exactly as GitHub's own toolkit (`@actions/core`) escapes it, and
lines printed elsewhere go through `neutralize`. In annotations, the job summary and the comment
alike, a character GitHub would not show as itself (U+202E shows a name reversed) is written as
its escape, `\\u202e`, as the terminal writes it (report.tables.visible).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..constants import UPDATE_COMMAND
from ..frames import is_installed
from ..results import ModelResult, Outcome, SnapshotStatus
from ..snapshot.compare import BaseComparison, Change
from ..units import human_bytes, signed, thousands
from .cells import Failures, error_cause, model_columns, used_text
from .tables import (
    LINE_BREAKS,
    Column,
    Style,
    markdown_code,
    markdown_code_block,
    markdown_escape,
    render,
    visible,
)

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


_EOL = "\r\n"  # the line breaks escape_data writes as %0D and %0A


def escape_data(text: str) -> str:
    """A workflow command's message, escaped like `@actions/core`'s escapeData."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value, escaped like `@actions/core`'s escapeProperty."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


# A property that locates, not one that is read: the runner must find the file by its path.
_LOCATORS = ("file",)


def workflow_command(command: str, message: str, **properties: str | int | None) -> str:
    """`::command key=value,…::message`, properties in the order given. Beyond what the
    toolkit escapes, every character GitHub would not show as itself (a bidi override, which
    shows a name reversed; a zero-width or non-ASCII space) is written `visible`, as the
    terminal writes it (`\\u202e`): the message's and the title's line breaks are left to
    escape_data, a file's path is left as the runner finds the file."""
    props = ",".join(
        f"{key}={escape_property(str(value) if key in _LOCATORS else visible(str(value), _EOL))}"
        for key, value in properties.items()
        if value is not None
    )
    return f"::{command}{' ' + props if props else ''}::{escape_data(visible(message, _EOL))}"


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


def _inside(path: str, folder: str) -> bool:
    try:
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    except ValueError:  # different drives on Windows
        return False
    return relative != ".." and not relative.startswith(".." + os.sep)


def relative_to_workspace(path: str, workspace: str | None) -> str:
    """`path` relative to GITHUB_WORKSPACE when it lies inside it, else unchanged."""
    if not workspace or not _inside(path, workspace):
        return path
    return os.path.relpath(os.path.abspath(path), os.path.abspath(workspace)).replace(os.sep, "/")


def reviewable(path: str, workspace: str | None, environments: Sequence[str] = ()) -> bool:
    """Whether GitHub can show an annotation on `path` in a pull request: a file inside the
    workspace (when there is one), outside the interpreter's environments (`environments`,
    e.g. a virtual environment inside the checkout) and outside any site-packages."""
    if path.startswith("<"):  # <string>, <frozen …>: no file at all
        return False
    if is_installed(os.path.normpath(os.path.abspath(path))):
        return False  # installed code: never the lines a pull request changed
    # An environment that holds the whole workspace (a conda prefix checked out into) says
    # nothing about which of its files are the user's.
    envs = [e for e in environments if e and not (workspace and _inside(workspace, e))]
    if any(_inside(path, env) for env in envs):
        return False
    return workspace is None or _inside(path, workspace)


def anchors(
    results: Iterable[ModelResult],
    tables: Mapping[str, tuple[Path, int | None]],
    workspace: str | None,
    environments: Sequence[str] = (),
) -> dict[str, Anchor]:
    """Where each model's annotation points: the source line its failure names, else the line
    that defines its class or factory, else its table in its config file (`tables`: name →
    file and line); a line is used only where the pull request can show it (`reviewable`)."""
    out = {}
    for result in results:
        line: int | None
        candidates = [s for s in (result.source, result.target_source) if s is not None]
        if _only_unrecorded(result) and result.name in tables:
            candidates = []  # nothing in the code is wrong: the table is what lacks an entry
        chosen = next((s for s in candidates if reviewable(s.path, workspace, environments)), None)
        if chosen is not None:
            path, line = chosen.path, chosen.line
        elif result.name in tables:
            config_path, line = tables[result.name]
            path = str(config_path)
        else:  # a fixture check whose test lies outside the workspace: no file to name
            path, line = (candidates[0].path, candidates[0].line) if candidates else ("", None)
        out[result.name] = Anchor(relative_to_workspace(path, workspace), line)
    return out


def _only_unrecorded(result: ModelResult) -> bool:
    """A model whose one problem is a missing snapshot entry (a model table not yet recorded)."""
    return (
        result.snapshot is SnapshotStatus.MISSING
        and result.outcome is not Outcome.ERROR
        and not result.exceeded
    )


# An annotation's title for a model that could not be checked, by the step that failed.
_ERRORS = {
    "forward": "could not run forward",
    "memory": "could not trace its memory",
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


ANNOTATION_LIMIT = 4096  # bytes of an annotation's message, as the runner receives it
FULL_REPORT = "Full tables: the job summary and this step's log."


_LONGEST_LINE = 500  # characters of one line of an annotation; a longer one is cut


def bounded_message(lines: Sequence[str], limit: int = ANNOTATION_LIMIT) -> str:
    """`lines` as one annotation message whose escaped form fits `limit` bytes, ending with
    where the full tables are; lines past the limit are left out and counted."""

    def fits(parts: Sequence[str]) -> bool:
        return len(escape_data("\n".join(parts)).encode("utf-8")) <= limit

    def more(n: int) -> list[str]:
        return [f"… {n} more line{'s' if n != 1 else ''}"] if n else []

    # Escaped before they are measured: workflow_command would otherwise make them longer.
    shown = [visible(line) for line in lines]
    shown = [
        line if len(line) <= _LONGEST_LINE else line[: _LONGEST_LINE - 1] + "…" for line in shown
    ]
    kept: list[str] = []
    for i, line in enumerate(shown):
        # Each step keeps room for the count of what follows, so a cut message always says so.
        if not fits([*kept, line, *more(len(shown) - i - 1), FULL_REPORT]):
            break
        kept.append(line)
    return "\n".join([*kept, *more(len(shown) - len(kept)), FULL_REPORT])


def annotation_lines(
    results: Sequence[ModelResult],
    anchors: dict[str, Anchor],
    failed: Failures,
) -> list[str]:
    """One `::error` (or `::warning` for level = "warn") per failing model, within GitHub's
    limits: the first 10 of each kind, then one `::notice` counting the rest; each message at
    most ANNOTATION_LIMIT bytes."""
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
        lines.append(
            workflow_command(
                kind,
                bounded_message(failed[result.name]),
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
    """A unicode bar of `width` cells for `fraction` of the budget; past 100% the bar is full
    and an overrun follows the `▶`, one `▒` per tenth of the budget (at most five, then `+`),
    so 99.6% and 110.6% never look alike."""
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    if fraction > 1.0:
        tenths = math.ceil(round((fraction - 1.0) * 10, 9))
        return "█" * width + "▶" + "▒" * min(tenths, 5) + ("+" if tenths > 5 else "")
    if fraction < 1.0:
        eighths = min(eighths, width * 8 - 1)  # 99.96% is not full: full means at the budget
    full, rest = divmod(eighths, 8)
    return ("█" * full + (_BLOCKS[rest] if rest else "")).ljust(width, "·")


def _status(result: ModelResult) -> str:
    if result.outcome is Outcome.ERROR:
        cause = error_cause(result)
        return f"❌ {_problems(result)}" + (f": {cause}" if cause else "")
    if result.outcome is Outcome.PASSED:
        return "✅ ok"
    icon = "⚠️" if result.outcome is Outcome.WARNED else "❌"
    return f"{icon} {_problems(result)}"


def arrow(change: int) -> str:
    """`🔺 ` for growth, `🔽 ` for a drop, nothing for none."""
    return "🔺 " if change > 0 else "🔽 " if change < 0 else ""


def _delta(result: ModelResult) -> str:
    if result.snapshot in (SnapshotStatus.UNKNOWN, SnapshotStatus.OFF):
        return "-"  # not counted, or no snapshot to compare with
    if result.diff is None:
        new = result.first or result.snapshot in (SnapshotStatus.MISSING, SnapshotStatus.ADDED)
        return "new" if new else "0"
    total = next((t for t in result.diff.totals if t.label == "total"), None)
    change = total.after - total.before if total else 0
    return f"{arrow(change)}{signed(change)}"


def base_delta(comparison: BaseComparison | None) -> str:
    """A model's change against the base branch, in a cell: `🔺 +1,024`, `🆕 new`, `0`."""
    if comparison is None or comparison.change is Change.UNKNOWN:
        return "-"
    if comparison.change is Change.NEW:
        return "🆕 new"
    if comparison.change is Change.REMOVED:
        return "🗑 removed"
    delta = comparison.delta or 0
    return f"{arrow(delta)}{signed(delta)}"


def _used(result: ModelResult) -> str:
    budget = result.primary_budget
    # In code, where every character has one width: the bars line up from row to row.
    return markdown_code(f"{used_text(result)} {usage_bar(budget.used)}") if budget else "-"


def _macs(result: ModelResult) -> str:
    macs = result.count.macs if result.count is not None else None
    return thousands(macs) if macs is not None else "-"


def _peaks(result: ModelResult) -> str:
    memory = result.count.memory if result.count is not None else None
    if memory is None:
        return "-"
    peaks = f"{human_bytes(memory.peak_train)} / {human_bytes(memory.peak_inference)}"
    return f"{peaks} per rank" if memory.rank is not None else peaks


PEAKS = "peak memory (train / inference)"

# The job summary's table of models; the MACs column only when some model has an input_shape,
# the memory column only when some model's memory was measured, the base column only with a
# baseline.
SUMMARY_COLUMNS: list[Column[ModelResult]] = [
    *model_columns(human=True),
    Column("used", _used),
    Column("MACs", _macs, right=True),
    Column(PEAKS, _peaks, right=True),
    Column("Δ vs snapshot", _delta, right=True),
    Column("status", _status),
]


def summary_markdown(
    results: Sequence[ModelResult],
    failed: Failures,
    base: Sequence[BaseComparison] | None = None,
    problems: Sequence[str] = (),
) -> str:
    """The job summary: a table of every model and, per failure, its tables in <details>;
    with `base` (the comparison with a base branch's snapshot), a column of that change;
    `problems`, what failed the run before a model could be checked (a model no shard
    checked), listed first."""
    # Failures first: they are what the reader came for, and what truncation must keep.
    ordered = sorted(results, key=lambda r: (not r.failed, r.name))
    failing = [r for r in ordered if r.failed]
    one = len(ordered) == 1
    head = f"## cnn-budget: {len(failing)} of {len(ordered)} model{'' if one else 's'} "
    head += "needs attention" if one else "need attention"
    if not failing:
        every = f"all {len(ordered)} models" if len(ordered) != 1 else "the 1 model"
        head = (
            f"## cnn-budget: {every} within budget"
            if ordered
            else "## cnn-budget: no model checked"
        )
    if problems:
        listed = "\n".join(f"- ⚠️ {markdown_escape(p, cell=False)}" for p in problems)
        head = f"{head}, {len(problems)} problem{'s' if len(problems) != 1 else ''}\n\n{listed}"
    # MACs only when some model was given an input_shape: an empty column is noise.
    compute = any(r.count is not None and r.count.macs is not None for r in ordered)
    memory = any(r.count is not None and r.count.memory is not None for r in ordered)
    hidden = {"MACs"} if not compute else set()
    hidden |= {PEAKS} if not memory else set()
    columns = [c for c in SUMMARY_COLUMNS if c.header not in hidden]
    if base is not None:
        compared = {c.name: c for c in base}
        columns = [
            *columns[:-1],
            Column("Δ vs base", lambda r: base_delta(compared.get(r.name)), right=True),
            columns[-1],
        ]
    rows = render(columns, ordered, Style.MARKDOWN) if ordered else []
    details = []
    for r in failing:
        body = markdown_code_block("\n".join(failed[r.name]))
        summary = markdown_escape(f"{r.name}: {_problems(r)}", cell=False)
        details.append(f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>")
    footer = (
        f"Accept intended changes with `{UPDATE_COMMAND}` and commit the snapshot."
        if failing
        else ""
    )
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
