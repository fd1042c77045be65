"""The files a gate run writes besides the snapshot: the JSON report, the GitHub job summary and
the charts. Takes rendered content and plain paths; run/finish.py decides when to call them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import exception_text, os_error_text
from ..report.plot import save_plot
from ..results import ModelResult
from ..snapshot.store import replace_file


def output_problems(
    where: Path,
    json_option: str | None,
    plot_option: str | None,
    step_summary: str | None,
    workspace: str | None,
    comment_option: str | None = None,
) -> list[str]:
    """Outputs that could never be written, refused before any model is built: the options'
    paths (relative to `where`), and the GitHub variables (None when GitHub output is off)."""
    problems = []
    for option, value in (
        ("--cnn-budget-json", json_option),
        ("--cnn-budget-comment", comment_option),
    ):
        if value and Path(where, value).is_dir():
            problems.append(f"{option} {value!r} names a folder, not a file")
    plot = Path(where, plot_option) if plot_option else None
    if plot is not None and plot.exists() and not plot.is_dir():
        problems.append(f"--cnn-budget-plot {plot_option!r} names a file, not a folder")
    if step_summary is not None and (not step_summary.isprintable() or Path(step_summary).is_dir()):
        problems.append(
            f"GITHUB_STEP_SUMMARY={step_summary!r} is not a file GitHub could have given this step"
        )
    if workspace is not None and (not workspace.isprintable() or not Path(workspace).is_dir()):
        problems.append(f"GITHUB_WORKSPACE={workspace!r} is not a folder")
    return problems


def failure_text(error: Exception) -> str:
    """Why an output could not be written: the OS's words and the file, else the exception."""
    if isinstance(error, OSError) and error.strerror:
        text = os_error_text(error)
        return f"{text}: {error.filename}" if error.filename else text
    return exception_text(error)


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write `document` to `path` (its folders made), stable and reviewable, atomically."""
    text = json.dumps(document, indent=2, sort_keys=True)
    write_text(path, text + "\n")


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` (its folders made), replacing what it held, atomically."""
    # Encoded first: a text that cannot be (a lone surrogate) leaves the old file as it was.
    data = text.encode("utf-8")
    if _stream(path):
        with open(path, "wb") as handle:
            handle.write(data)
        return
    # A reader (the CI step posting the comment) sees the old file or the new one, never a part,
    # and a write that fails midway (a full disk) leaves the old file.
    replace_file(path, data)


def _stream(path: Path) -> bool:
    """Whether `path` is a pipe or a device (`/dev/stdout`): written to, as there is no file to
    replace."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def append_text(path: Path, text: str) -> None:
    """Append `text` to the file at `path`, as GitHub expects of `GITHUB_STEP_SUMMARY`."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


STEM_LENGTH = 60  # of a chart's file name's readable part; a hash may follow
_HASH_DIGITS = 8  # at first; more only where two names' hashes begin alike
_ALL_DIGITS = 64  # of a SHA-256 in hex
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# Names Windows reserves for devices, whatever the extension: `NUL.svg` is the null device.
_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"{port}{n}" for port in ("COM", "LPT") for n in range(10)),
}


def _readable(name: str) -> str:
    """The part of a chart's file name a reader recognises the model by."""
    stem = _UNSAFE.sub("_", name)[:STEM_LENGTH]
    # A leading `.` hides the file; a leading `-` reads as an option to a shell command.
    stem = re.sub(r"^[.-]", "_", stem)
    # A reserved name stays reserved whatever follows its first dot (`NUL.tar.gz` is `NUL`).
    return "_" + stem if stem.split(".")[0].upper() in _RESERVED else stem


def _plain(name: str) -> bool:
    """Whether `name` can be its own file name on every common file system."""
    return bool(name) and _readable(name) == name


def _stem(name: str, digits: int) -> str:
    if not digits:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:digits]
    readable = _readable(name)
    return f"{readable}-{digest}" if readable else digest


def chart_stems(names: Iterable[str]) -> dict[str, str]:
    """A file name (without extension) for each model's chart in one run, unique even on a
    file system that ignores case, of bounded length, and the same in every run of these names.

    A name that is safe as it is stays as it is (`resnet18`). Any other (`a b`, `a/b`, a name
    too long, `CON`) becomes its readable part plus `-` and the start of its SHA-256, as do
    names that would clash with another's, `Net` and `net` alike."""
    unique = sorted(set(names))
    digits = {name: 0 if _plain(name) else _HASH_DIGITS for name in unique}
    while True:
        stems = {name: _stem(name, digits[name]) for name in unique}
        folded: dict[str, list[str]] = {}
        for name, stem in stems.items():
            folded.setdefault(stem.lower(), []).append(name)
        clashing = [name for group in folded.values() if len(group) > 1 for name in group]
        if not clashing or all(digits[name] == _ALL_DIGITS for name in clashing):
            return stems
        # A plain name that meets another's hashed one, or two hashes that share a prefix:
        # both take a hash, or a longer one, until they differ.
        for name in clashing:
            digits[name] = min(2 * digits[name], _ALL_DIGITS) if digits[name] else _HASH_DIGITS


def write_charts(directory: Path, results: Iterable[ModelResult]) -> list[Path]:
    """Each counted model's share chart as `<directory>/<stem>.svg` and `.png`, its stem from
    `chart_stems`."""
    counted = [(r, r.count) for r in results if r.count is not None]
    stems = chart_stems(r.name for r, _ in counted)
    written: list[Path] = []
    for result, count in counted:
        title = f"{result.name} ({result.target})"
        written += save_plot(count, directory, stems[result.name], title=title)
    return written
