"""Whether a `cnn_budget` fixture check's test still exists: the rule that keeps its snapshot
entry or makes it stale. Pytest-free: the session hands over what pytest collected.

An entry is keyed by its test's node id (`tests/test_a.py::TestC::test_x[4]`, with the call's
`[name]` when given). Its test is gone only when both pytest and the source say so: its file no
longer exists; or pytest collected its module (or class) in this run, selected or deselected,
without finding it, and the file no longer names it. Pytest's collection sees tests however they
are defined (imported from a helper, under an `if`, made in a loop, inherited); the source
guards against a collection that is not whole (`--lf` trims what it reports; a doctest's
collector is off unless asked for). What this run did not collect is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..names import on_disk, unescaped

MAX_SOURCE_BYTES = 16 * 2**20  # of a test file read for the names it holds; larger is kept
_WORD = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class Collected:
    """What pytest collected in a run: each test module and class that collected without
    error, by node id, with its children's node ids (all collectors of one id merged)."""

    children: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def holds(self, name: str, folders: Sequence[Path], sources: _Sources | None = None) -> bool:
        """Whether the test of fixture entry `name` may still exist; `folders` are where a node
        id's path may be relative to (the rootdir, the config's folder); `sources` reads each
        test file once for all entries."""
        cuts = [m.start() for m in re.finditer("::", name)]
        files = _existing(name, cuts, folders)
        if not files:
            return False
        # The deepest collector this run expanded that the entry lies under: its node id is
        # the entry up to one of its `::` (a `::` inside a parameter id matches none).
        owner = next((name[:at] for at in reversed(cuts) if name[:at] in self.children), None)
        if owner is None:
            return True
        # A child is the entry itself, or above it (a class not expanded: its tests may be
        # inherited from another file), or the entry is the child's with the call's `[name]`.
        children = self.children[owner]
        ends = [m.start() for m in re.finditer(r"::|\[", name)] + [len(name)]
        if any(name[:end] in children for end in ends if end > len(owner)):
            return True
        return (sources or _Sources()).names(files, name[len(owner) + 2 :])


def add_collected(tests: dict[str, frozenset[str]], nodeid: str, children: Iterable[str]) -> None:
    """Note in `tests` one collector pytest collected whole, with its children's node ids: a
    module's or a class's (a folder's children are not `::` below it). The collectors of one
    file (its tests, its doctests) share its node id: merged. Node ids read under a C locale are
    keyed as a UTF-8 run keys them."""
    nodeid = unescaped(nodeid)
    below = {unescaped(child) for child in children}
    if all(child.startswith(nodeid + "::") for child in below):
        tests[nodeid] = tests.get(nodeid, frozenset()) | below


def kept_entries(names: Iterable[str], folders: Sequence[Path], collected: Collected) -> list[str]:
    """The stored entries that are not stale though no table configures them: the `cnn_budget`
    fixture's (their names hold `::`), while their tests may exist (`Collected.holds`)."""
    sources = _Sources()
    return [n for n in names if "::" in n and collected.holds(n, folders, sources)]


def _existing(name: str, cuts: list[int], folders: Sequence[Path]) -> list[Path]:
    """The files the entry's node id may name: its path up to any `::`, under any folder."""
    found = []
    for at in cuts:
        for folder in folders:
            try:
                path = folder / on_disk(name[:at])
                if path.is_file():
                    found.append(path)
            except (OSError, ValueError):  # a name no path can be
                continue
    return found


class _Sources:
    """The identifiers each test file holds, read once however many entries ask."""

    def __init__(self) -> None:
        self.words: dict[Path, frozenset[str] | None] = {}  # None: cannot tell (kept)

    def names(self, files: list[Path], test: str) -> bool:
        """Whether any of `files` still names the test (its function, class or the last part
        of a doctest's name, before any parameter id): a test pytest did not find but its
        source names is kept."""
        wanted = set(_WORD.findall(re.split(r"::|\[", test, maxsplit=1)[0]))
        if not wanted:
            return True
        for path in files:
            if path not in self.words:
                self.words[path] = _words(path)
            words = self.words[path]
            if words is None or wanted & words:
                return True
        return False


def _words(path: Path) -> frozenset[str] | None:
    """Every identifier in the file at `path`; None where it cannot be read or is too large."""
    try:
        if path.stat().st_size > MAX_SOURCE_BYTES:
            return None
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None
    return frozenset(_WORD.findall(text))


NOTHING_COLLECTED = Collected()  # a run end without pytest (a command): every file's entries kept
