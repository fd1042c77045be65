"""The one table renderer: rows of cells → aligned plain text or GitHub-flavoured Markdown. Pure.

Every table the package prints goes through `render`: the per-layer tables of the terminal and
of `cnnbudget summary`, the snapshot diff, the one-line-per-model summaries, the job summary and
the benchmark report. A table is a list of `Column`s, each of which turns a row into its cell,
so a caller chooses columns (and their order) and the style independently of one another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

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


def printable(text: str) -> str:
    """`text` on one line: control characters (a newline in a quoted TOML key) are escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\n": " ", "\r": " "}
_HTML = str.maketrans(_HTML_ESCAPES)
_CELL = str.maketrans({**_HTML_ESCAPES, "\\": "\\\\", "|": "\\|"})


def markdown_escape(text: str, cell: bool = True) -> str:
    """Text that shows as itself in GitHub Markdown: no HTML, no line breaks, and in a table
    cell (`cell`) no cell breaks. Inline HTML such as `<summary>` takes no backslash escapes, so
    there (`cell=False`) only the HTML is escaped."""
    return text.translate(_CELL if cell else _HTML)


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
    if style is not Style.TEXT:
        headers = [markdown_escape(h) for h in headers]
        rows = [[markdown_escape(c) for c in row] for row in rows]
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
