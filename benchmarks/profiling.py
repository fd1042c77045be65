"""Reading what the profilers wrote: `python -X importtime` logs and cProfile dumps."""

from __future__ import annotations

import os
import pstats
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import REPO

TRACE_IMPORTS = ("-X", "importtime")
# With it, pytest needs `-s`: it captures fd 2 while a test runs, so the log of the imports
# made there (torch's, in a budget item) would land in the captured output.
TRACE_PYTEST = ("-s",)


@dataclass(frozen=True)
class ImportEntry:
    """One line of `python -X importtime`: microseconds spent in the module, and with children."""

    name: str
    own: int
    cumulative: int
    level: int  # nesting depth: 0 for an import nothing else was importing at the time


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def parse_importtime(stderr: str) -> list[ImportEntry]:
    """Every import `-X importtime` logged, in order."""
    entries = []
    for line in stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            entries.append(ImportEntry(m[4], int(m[1]), int(m[2]), len(m[3]) // 2))
    return entries


@dataclass(frozen=True)
class ImportSplit:
    """The import time of one process, by who is to blame."""

    total: float
    torch: float
    dynamo: float
    ours: float
    largest: tuple[tuple[str, float], ...]  # imports nothing else was importing, by cost

    @classmethod
    def from_entries(cls, entries: Sequence[ImportEntry]) -> ImportSplit:
        def cumulative(name: str) -> float:
            return sum(e.cumulative for e in entries if e.name == name) / 1e6

        return cls(
            total=sum(e.cumulative for e in entries if e.level == 0) / 1e6,
            torch=cumulative("torch"),
            dynamo=cumulative("torch._dynamo"),
            ours=sum(e.own for e in entries if e.name.startswith("pytest_cnnbudget")) / 1e6,
            largest=tuple(
                (e.name, e.cumulative / 1e6)
                for e in sorted(entries, key=lambda e: -e.cumulative)
                if e.level == 0
            )[:6],
        )


class Profile:
    """Cumulative times of chosen functions in a cProfile dump."""

    def __init__(self, path: Path) -> None:
        # (file, line, function) -> (primitive calls, calls, own time, cumulative, callers)
        self.raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = pstats.Stats(
            str(path)
        ).stats  # type: ignore[attr-defined]
        self.total = max(ct for (_, _, _, ct, _) in self.raw.values())

    def cumulative(self, file_suffix: str, function: str) -> float:
        """Summed over matches, which is right for functions that do not call each other."""
        return sum(
            ct
            for (filename, _, name), (_, _, _, ct, _) in self.raw.items()
            if name == function and filename.replace(os.sep, "/").endswith(file_suffix)
        )

    def own_code(self) -> float:
        """Time spent in the package's own lines (not in what they call)."""
        return sum(
            tt
            for (filename, _, _), (_, _, tt, _, _) in self.raw.items()
            if "/pytest_cnnbudget/" in filename.replace(os.sep, "/")
        )

    def top(self, n: int) -> list[tuple[str, float]]:
        """The `n` functions with the most time in their own lines."""
        ranked = sorted(self.raw.items(), key=lambda item: -item[1][2])[:n]
        return [
            (_where(filename, line, name), tt)
            for (filename, line, name), (_, _, tt, _, _) in ranked
        ]


def _where(filename: str, line: int, name: str) -> str:
    path = filename.replace(os.sep, "/")
    for marker in ("site-packages/", f"{REPO.as_posix()}/", "lib/python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line}({name})" if line else name
