"""The one table renderer: rows of cells → aligned plain text or GitHub-flavoured Markdown. Pure.

Every table the package prints goes through `grid`: the per-layer tables of the terminal and
of `cnnbudget summary`, the snapshot diff, the one-line-per-model summaries, the job summary and
the benchmark report. `render` is its column-driven form: a list of `Column`s, each of which
turns a row into its cell, so a caller chooses columns (and their order) and the style
independently of one another. Cells are made safe here, once: on one line in text, escaped in
Markdown (or, for a `Code` cell, made inline code that shows every character as itself).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from ..names import INVISIBLE, printable, shows_as_itself

Row = TypeVar("Row")


class Style(str, Enum):
    """How a table is written."""

    TEXT = "text"  # columns padded with spaces, a rule of dashes under the header
    MARKDOWN = "markdown"  # a GitHub-flavoured Markdown table, cells escaped
    # The same, its columns padded to one width: for Markdown files read as text as often as
    # rendered (a README, a benchmark report).
    MARKDOWN_PADDED = "markdown-padded"


@dataclass(frozen=True)
class Column(Generic[Row]):
    """One column: its header, how a row becomes its cell, and whether it is a number."""

    header: str
    cell: Callable[[Row], str]
    right: bool = False  # numbers are right-aligned


# Every line break str.splitlines honours. CommonMark ends a line only at \n, \r and \r\n, but
# a browser or another reader may break at the others: in Markdown each is a space, and the CI
# log's guard (report.github.neutralize_text) treats each as the end of a line.
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", **dict.fromkeys(LINE_BREAKS, " ")}
_HTML = str.maketrans(_HTML_ESCAPES)
# A backtick would open a code span, inside which the other escapes show as typed; brackets
# would make a link or an image of a key such as `[docs](https://…)`. Emphasis is left to show
# (`*`, `_` and `~` change how text looks, not where it leads, and `snake_case` is common).
_CELL = str.maketrans({**_HTML_ESCAPES, **{c: "\\" + c for c in "\\|`[]"}})


def visible(text: str, keep: str = "") -> str:
    """`text` with every character not shown as itself escaped the way the terminal escapes
    names (names.printable, `\\u202e`), but those in `keep`: controls, format characters (a
    bidi override, which shows a name reversed as in "Trojan Source"; zero-width ones), lone
    surrogates, line and paragraph separators, spaces other than ASCII's."""
    if text.isprintable() and (text.isascii() or not INVISIBLE.search(text)):
        return text  # nearly always: one pass in C
    return "".join(c if shows_as_itself(c) or c in keep else printable(c) for c in text)


def markdown_escape(text: str, cell: bool = True) -> str:
    """Text that GitHub Markdown shows as itself (emphasis aside): no HTML, no line breaks,
    and in a table cell (`cell`) no cell breaks, code spans or links. Inline HTML such as
    `<summary>` takes no backslash escapes, so there (`cell=False`) only the HTML and the line
    breaks go. Either way every character that would not show as itself is `visible`; the
    backslash that starts its escape is a literal one in Markdown (`\\u` escapes nothing)."""
    return visible(text.translate(_CELL if cell else _HTML))


class Code(str):
    """A cell that a Markdown table shows as inline code; a text table shows it as it is."""


def markdown_code(text: str) -> Code:
    """`text` as a cell that a Markdown table shows as inline code."""
    return Code(text)


# Inside a code span a backslash shows as typed, yet GitHub's table reads `\|` as a pipe that
# stays in the cell wherever it stands: so backslashes and pipes stay outside the spans, where
# their escapes are read. Line breaks are spaces, as in any cell.
_OUTSIDE_CODE = re.compile(r"([\\|])")
_BREAKS = str.maketrans(dict.fromkeys(LINE_BREAKS, " "))


def _code_span(text: str) -> str:
    """`text` as inline code in a Markdown table cell, every character shown as itself."""
    parts = []
    for part in _OUTSIDE_CODE.split(visible(text.translate(_BREAKS))):
        if not part:
            continue
        if _OUTSIDE_CODE.fullmatch(part):
            parts.append(markdown_escape(part))
            continue
        # A span is closed only by a run of backticks as long as the one that opened it.
        fence = "`" * (max(map(len, re.findall("`+", part)), default=0) + 1)
        # One space inside each end is dropped when both ends have one (CommonMark 6.1): pad
        # where the text would lose its own, or would touch the fence with a backtick.
        padded = part.startswith("`") or part.endswith("`")
        padded = padded or (part[0] == part[-1] == " " and part.strip(" ") != "")
        pad = " " if padded else ""
        parts.append(f"{fence}{pad}{part}{pad}{fence}")
    return "".join(parts)


def markdown_code_block(text: str, info: str = "text") -> str:
    """`text` in a fenced code block that nothing in it can close: its fence is longer than any
    run of backticks in the text (a `~~~` line cannot close a backtick fence); every character
    but its `\\n` line ends `visible`."""
    text = visible(text, keep="\n")
    longest = max(map(len, re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _markdown_cell(cell: str) -> str:
    """The one way a cell reaches a Markdown table: escaped, or as inline code."""
    return _code_span(cell) if isinstance(cell, Code) else markdown_escape(cell)


def render(
    columns: Sequence[Column[Row]], rows: Iterable[Row], style: Style = Style.TEXT
) -> list[str]:
    """The table's lines: header, rule, one line per row."""
    headers = [c.header for c in columns]
    right = [c.right for c in columns]
    cells = [[c.cell(row) for c in columns] for row in rows]
    return grid(headers, cells, right, style)


def grid(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Sequence[bool],
    style: Style = Style.TEXT,
) -> list[str]:
    """A table of cells already made; `render` is the column-driven form of this."""
    # A line break inside a cell would break the table, and in a CI log could start a workflow
    # command; every cell stays on its line.
    clean = printable if style is Style.TEXT else _markdown_cell
    headers = [clean(h) for h in headers]
    rows = [[clean(c) for c in row] for row in rows]
    if style is Style.MARKDOWN:
        lines = ["| " + " | ".join(headers) + " |"]
        lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return lines
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    if style is Style.MARKDOWN_PADDED:
        # GitHub needs at least one hyphen in every cell of the rule, besides the colon.
        widths = [max(w, 2) for w in widths]

        def padded(cells: Sequence[str]) -> str:
            parts = [
                cell.rjust(w) if r else cell.ljust(w)
                for cell, w, r in zip(cells, widths, right, strict=True)
            ]
            return "| " + " | ".join(parts) + " |"

        rule = ["-" * (w - 1) + ":" if r else "-" * w for w, r in zip(widths, right, strict=True)]
        return [padded(headers), "| " + " | ".join(rule) + " |", *(padded(r) for r in rows)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def indent(lines: Iterable[str], prefix: str = "  ") -> list[str]:
    """Prefix every line."""
    return [prefix + line for line in lines]
