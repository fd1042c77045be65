"""The Markdown report: summary rows, tables, number formats, and where it was measured."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness import BENCH_DIR, REPO, Stats, python

# The report is drawn by this checkout's renderer, whichever copy of the package is installed
# or measured (`--package`); importing it imports no torch, which this process must not.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from pytest_cnnbudget.report.tables import Style, grid
from pytest_cnnbudget.report.tables import markdown_code as markdown_code  # for the sections


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    number: str
    what: str
    result: str
    target: str
    met: bool | None  # None: a figure without a target


@dataclass
class Section:
    """A benchmark's summary rows and its detail tables."""

    title: str
    rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None
) -> list[str]:
    """A Markdown table, padded to read as text; `right` says per column whether it is a number."""
    return grid(headers, rows, right or [False] * len(headers), Style.MARKDOWN_PADDED)


def sec(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def mb(value: float) -> str:
    return f"{value:,.0f} MB"


def ratio(value: float) -> str:
    return f"{value:.3f}×"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "—"}[met]


def runs_table(
    stats: dict[str, Stats], extra: dict[str, Callable[[str, Stats], str]] | None = None
) -> list[str]:
    """The usual columns for a set of measured jobs, plus `extra` ones (given the job's label
    and figures), and the load note."""
    extra = extra or {}
    headers = ["run", "wall (median)", "min–max", "CPU (median)", "peak RSS", *extra]
    rows = [
        [
            label,
            sec(s.wall),
            s.spread,
            sec(s.cpu),
            mb(s.rss),
            *(f(label, s) for f in extra.values()),
        ]
        for label, s in stats.items()
    ]
    runs = "/".join(str(n) for n in sorted({len(s.samples) for s in stats.values()}))
    busy = max(s.busy for s in stats.values())
    low = min(s.loads[0] for s in stats.values())
    high = max(s.loads[1] for s in stats.values())
    return [
        *table(headers, rows, right=[False, True, False, True, True] + [True] * len(extra)),
        "",
        f"Timed runs per job: {runs}. Just before a run, other processes used at most {busy:.0%} "
        f"of the CPU; the 1-minute load average was {low:.2f}–{high:.2f}.",
    ]


def document(
    sections: Sequence[Section], errors: dict[str, str], args: argparse.Namespace, elapsed: float
) -> str:
    """The whole Markdown report."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick smoke run" if args.quick else f"median of {args.repeat} runs"
    bytecode = "bytecode cached after a warm-up run (PYTHONPYCACHEPREFIX in the scratch folder)"
    if args.no_bytecode_cache:
        bytecode = "no bytecode cache (PYTHONDONTWRITEBYTECODE=1)"
    elif args.quick:
        bytecode = "the environment's own bytecode cache"
    command = " ".join(["python benchmarks/run.py", *sys.argv[1:]])
    overhead = (
        f" (overhead: {args.overhead_repeat} runs per side)"
        if any(s.title.startswith("1.") for s in sections)
        else ""
    )
    lines = [
        "# pytest-cnnbudget benchmarks",
        "",
        f"`{command}`, {now}, {mode}{overhead}, each in a fresh process; "
        f"{bytecode}; the whole benchmark took {elapsed / 60:.1f} min.",
        "",
        *machine(package_description(args.package)),
        "",
        "## Summary",
        "",
    ]
    # One run of each job cannot tell a trend from noise, so a smoke run judges nothing.
    rows = [
        [r.number, r.what, r.result, r.target, "not judged" if args.quick else verdict(r.met)]
        for s in sections
        for r in s.rows
    ]
    rows += [
        ["", f"{name}: not measured", error.splitlines()[0], "", "**error**"]
        for name, error in errors.items()
    ]
    lines += table(["#", "measurement", "result", "target", "status"], rows)
    for section in sections:
        lines += ["", f"## {section.title}", "", *section.lines]
    for name, error in errors.items():
        lines += ["", f"## {name}: failed", "", "```text", error, "```"]
    return "\n".join(lines) + "\n"


def machine(package: str) -> list[str]:
    """Where and with what the figures were measured."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GB"

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- CPU: {cpu}, {usable} usable cores (of {os.cpu_count()}); RAM {ram}",
        f"- {platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"torch {version('torch')}; pytest {version('pytest')}; "
        f"torchinfo {version('torchinfo')}; fvcore {version('fvcore')}",
        f"- package measured: {package}",
        f"- image models: {image_models()}",
    ]


def image_models() -> str:
    """What benchmarks/models.py builds the image models from, asked of a fresh interpreter."""
    done = subprocess.run(
        [python(), "-c", "import models; print(models.image_models())"],
        cwd=BENCH_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.stdout.strip() or f"unknown ({done.stderr.strip().splitlines()[-1:]})"


def package_description(override: Path | None) -> str:
    if override is not None:
        return f"copy at {override}"
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "pytest_cnnbudget")
    state = " with uncommitted changes to pytest_cnnbudget/" if dirty else ""
    return f"pytest_cnnbudget at {commit or 'unknown commit'}{state} ({REPO})"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()
