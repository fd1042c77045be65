"""The one table renderer: rows of cells → aligned plain text or GitHub-flavoured Markdown. Pure.

Every table the package prints goes through `grid`: the per-layer tables of the terminal and
of `cnnbudget summary`, the snapshot diff, the one-line-per-model summaries, the job summary and
the benchmark report. `render` is its column-driven form: a list of `Column`s, each of which
turns a row into its cell, so a caller chooses columns (and their order) and the style
independently of one another. Cells are made safe here, once: on one line in text, escaped in
Markdown.
"""

from __future__ import annotations

import re
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


_CELL_SPECIAL = re.compile(r"([\\|&<>\r\n])")


def markdown_code(text: str) -> str:
    """`text` as inline code in a Markdown table cell. The characters the cell escapes stay
    outside the code spans, where their escapes are read; inside one they would show."""
    parts = _CELL_SPECIAL.split(text)
    return "".join(p if _CELL_SPECIAL.fullmatch(p) else f"`{p}`" for p in parts if p)


def markdown_code_block(text: str, info: str = "text") -> str:
    """`text` in a fenced code block that nothing in it can close."""
    return f"```{info}\n{text.replace('```', 'ˋˋˋ')}\n```"


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
    clean = printable if style is Style.TEXT else markdown_escape
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
