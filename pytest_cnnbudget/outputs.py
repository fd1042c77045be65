"""The files a gate run writes besides the snapshot: the JSON report, the GitHub job summary and
the charts. Takes rendered content and plain paths; the plugin decides when to call them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .results import ModelResult


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write `document` to `path` (its folders made), stable and reviewable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")


def append_text(path: Path, text: str) -> None:
    """Append `text` to the file at `path`, as GitHub expects of `GITHUB_STEP_SUMMARY`."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def chart_stem(name: str) -> str:
    """A file name for a model's chart: characters a file system may reject become `_`."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def write_charts(directory: Path, results: Iterable[ModelResult]) -> list[Path]:
    """Each counted model's share chart as `<directory>/<model>.svg` and `.png`."""
    from .plot import save_plot

    written: list[Path] = []
    for result in results:
        if result.count is not None:
            title = f"{result.name} ({result.target})"
            written += save_plot(result.count, directory, chart_stem(result.name), title=title)
    return written
