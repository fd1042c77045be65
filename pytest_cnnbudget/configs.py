"""Every `[tool.cnnbudget]` file a run collects, its snapshot, and which file each model is in.

A monorepo budgets each package in its own pyproject.toml, with its snapshot beside it. Models
are named across files as in one file: a name keys the run's results, the JSON report and the
summary, so a name configured in two collected files is an error of the second one's model.
Tests that call the `cnn_budget` fixture store their entries in the snapshot of the nearest
config above their file. Torch-free: the xdist controller uses it too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .config import Settings, read_settings
from .constants import DEFAULT_SNAPSHOT
from .results import SnapshotEntry
from .snapshot import read_snapshot
from .tables import printable


@dataclass
class ConfigFile:
    """One collected config and what its snapshot held when the run started."""

    settings: Settings
    stored: dict[str, SnapshotEntry]
    # Names of this run's `cnn_budget` fixture checks whose entries belong to this file.
    fixtures: set[str] = field(default_factory=set)

    @property
    def path(self) -> Path:
        """The config file."""
        return self.settings.path

    def configured(self) -> list[str]:
        """The models of its tables, which a complete run must all have checked."""
        return [m.name for m in self.settings.models]


class Configs:
    """The collected config files, in the order they were found, and each model's file."""

    def __init__(self) -> None:
        self.files: dict[Path, ConfigFile] = {}
        self.owner: dict[str, Path] = {}  # model or fixture name → its config file

    def __iter__(self) -> Iterator[ConfigFile]:
        return iter(self.files.values())

    def __len__(self) -> int:
        return len(self.files)

    def load(self, path: Path, settings: Settings | None = None) -> ConfigFile | None:
        """The file at `path`, read (settings and snapshot) on first use; None when it has no
        `[tool.cnnbudget]` table. CnnBudgetError when it, or its snapshot, cannot be read."""
        path = path.resolve()
        known = self.files.get(path)
        if known is not None:
            return known
        if settings is None:
            settings = read_settings(path)
            if settings is None:
                return None
        stored = read_snapshot(settings.snapshot) if settings.snapshot else {}
        self.files[path] = entry = ConfigFile(settings, stored)
        return entry

    def claim(self, name: str, path: Path) -> Path | None:
        """Record that `name` is configured in `path`; the other file, if one claimed it first."""
        first = self.owner.setdefault(name, path)
        return None if first == path else first

    def file_of(self, name: str) -> ConfigFile:
        """The config file a claimed model belongs to."""
        return self.files[self.owner[name]]

    def for_test(self, test_file: Path, rootdir: Path, discover: bool = True) -> ConfigFile:
        """The config whose snapshot a fixture check in `test_file` uses: the nearest config
        above the file (with `discover`, also one this run did not collect: its snapshot, not
        its models), else the first collected, else the default snapshot in the rootdir."""
        test_file = test_file.resolve()
        rootdir = rootdir.resolve()
        if discover and test_file.is_relative_to(rootdir):
            for folder in test_file.parents:
                candidate = folder / "pyproject.toml"
                found = self.load(candidate) if candidate.is_file() else None
                if found is not None or folder == rootdir:
                    break
        above = [f for f in self if test_file.is_relative_to(f.path.parent)]
        if above:
            return max(above, key=lambda f: len(f.path.parent.parts))
        if self.files:
            return next(iter(self))
        # No config at all: the fixture alone, with the snapshot where a config would put it.
        path = (rootdir / "pyproject.toml").resolve()
        settings = Settings(
            path=path, snapshot=path.parent / DEFAULT_SNAPSHOT, device="meta", models=()
        )
        loaded = self.load(path, settings)
        assert loaded is not None
        return loaded

    def names(self) -> list[str]:
        """Every configured model's name, across files."""
        return [name for f in self for name in f.configured()]


def fixture_stale(name: str, rootdir: Path) -> bool:
    """Whether a fixture check's stored entry (keyed `path/test_x.py::test_y[…]`) names a test
    that is gone: its file no longer exists or defines no function of that name. Read from the
    source, not from what this run collected: a `-k` run deselects tests that still exist."""
    file, _, rest = name.partition("::")
    function = rest.split("::")[-1].split("[")[0]
    path = rootdir / file
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return not path.exists()
    return not any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function
        for node in ast.walk(tree)
    )


def duplicate_message(name: str, first: Path, second: Path, rootdir: Path) -> str:
    """Why a model configured twice fails in the second file."""
    return (
        f"{printable(name)}: the model name is configured in both {_shown(first, rootdir)} "
        f"and {_shown(second, rootdir)}; names key the results across config files, so "
        "rename one of them"
    )


def _shown(path: Path, rootdir: Path) -> str:
    try:
        return printable(str(path.relative_to(rootdir)))
    except ValueError:
        return printable(str(path))
