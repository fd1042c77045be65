"""Every `[tool.cnnbudget]` file a run collects, its snapshot, and which file each model is in.

A monorepo budgets each package in its own pyproject.toml, with its snapshot beside it. Models
are named across files as in one file: a name keys the run's results, the JSON report and the
summary, so a name configured in two collected files is an error of the second one's model.
Tests that call the `cnn_budget` fixture store their entries in the snapshot of the nearest
config above their file. Torch-free: the xdist controller uses it too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..constants import DEFAULT_SNAPSHOT
from ..errors import CnnBudgetError, ConfigError
from ..names import printable
from ..results import SnapshotEntry
from ..snapshot.store import read_stored, snapshot_owner
from .settings import read_settings
from .spec import Settings


@dataclass
class ConfigFile:
    """One collected config and what its snapshot held when the run started."""

    settings: Settings
    stored: dict[str, SnapshotEntry]
    default: bool = False  # no file: the rootdir's default snapshot, for fixture checks

    @property
    def path(self) -> Path:
        """The config file."""
        return self.settings.path

    def shown_names(self, rootdir: Path) -> tuple[str, str]:
        """How failures name the file and its snapshot: relative to the rootdir."""
        path = self.path
        shown = str(path.relative_to(rootdir)) if path.is_relative_to(rootdir) else path.name
        return shown, self.settings.snapshot_name(rootdir)

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
        stored: dict[str, SnapshotEntry] = {}
        if settings.snapshot is not None:
            self._refuse_shared(path, settings.snapshot)
            stored, recorded = read_stored(settings.snapshot)
            owner = snapshot_owner(settings.snapshot, recorded)
            if owner != path and _claims(owner, settings.snapshot):
                raise ConfigError(_shared_message(settings.snapshot, owner, path))
        self.files[path] = entry = ConfigFile(settings, stored)
        return entry

    def _refuse_shared(self, path: Path, snapshot: Path) -> None:
        """ConfigError where a config collected before names the same snapshot file: each
        would drop the other's entries as no longer configured."""
        for other in self.files.values():
            mine = other.settings.snapshot
            if mine is not None and _same_file(mine, snapshot):
                raise ConfigError(_shared_message(snapshot, other.path, path))

    def claim(self, name: str, path: Path) -> Path | None:
        """Record that `name` is configured in `path`; the other file, if one claimed it first."""
        first = self.owner.setdefault(name, path)
        return None if first == path else first

    def file_of(self, name: str) -> ConfigFile:
        """The config file a claimed model belongs to."""
        return self.files[self.owner[name]]

    def for_test(self, test_file: Path, rootdir: Path, explicit: Sequence[Path] = ()) -> ConfigFile:
        """The config whose snapshot a fixture check in `test_file` uses, by the test file
        alone, whatever this run collected: the nearest `[tool.cnnbudget]` above it on disk (up
        to the rootdir), else the one `--cnn-budget-config` file, else the default snapshot in
        the rootdir."""
        test_file, rootdir = test_file.resolve(), rootdir.resolve()
        if test_file.is_relative_to(rootdir):
            for folder in test_file.parents:
                candidate = folder / "pyproject.toml"
                found = self.load(candidate) if candidate.is_file() else None
                if found is not None:
                    return found
                if folder == rootdir:
                    break
        if len(explicit) == 1:
            return self.files[explicit[0].resolve()]
        return self.default(rootdir)

    def default(self, rootdir: Path) -> ConfigFile:
        """Where fixture checks go when no config covers them: `cnnbudget.snapshot.json` in
        the rootdir, as a config there would put it, with no models of its own."""
        path = (rootdir / "pyproject.toml").resolve()
        known = self.files.get(path)
        if known is not None:
            return known
        settings = Settings(
            path=path, snapshot=path.parent / DEFAULT_SNAPSHOT, device="meta", models=()
        )
        loaded = self.load(path, settings)
        assert loaded is not None
        loaded.default = True
        return loaded

    def names(self) -> list[str]:
        """Every configured model's name, across files."""
        return [name for f in self for name in f.configured()]


def _same_file(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _claims(config: Path, snapshot: Path) -> bool:
    """Whether the config file `config` still names `snapshot` as its snapshot (a config that
    cannot be read is taken to: its entries are not ours to drop)."""
    if not config.is_file():
        return False
    try:
        settings = read_settings(config)
    except CnnBudgetError:
        return True
    return (
        settings is not None
        and settings.snapshot is not None
        and _same_file(settings.snapshot, snapshot)
    )


def _shared_message(snapshot: Path, first: Path, second: Path) -> str:
    """Why a second config cannot use a snapshot file another config uses."""
    return (
        f"{printable(str(second))}: its snapshot {printable(str(snapshot))} is also the "
        f"snapshot of {printable(str(first))}; an update of either would drop the other's "
        "entries as no longer configured: give each config a snapshot file of its own "
        "(the `snapshot` key)"
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
