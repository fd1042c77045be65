"""The frozen values a `[tool.cnnbudget]` file yields, and which setting wins where a model's
table, the command line and the file's top level each give one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ..constants import DEFAULT_TIMEOUT
from ..inputs import InputSpec
from ..results import MemoryOptions, SnapshotEntry


class Level(str, Enum):
    """What a failed check does: `error` fails the test, `warn` reports and passes."""

    ERROR = "error"
    WARN = "warn"


@dataclass(frozen=True)
class ModelSpec:
    """One configured model: how to build it and what it may cost."""

    name: str
    target: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    budgets: Mapping[str, int] = field(default_factory=dict)  # budget key → limit, see budgets.py
    level: Level = Level.ERROR
    device: str = "meta"
    line: int | None = None  # where its table starts in the config file, for annotations
    input_shape: InputSpec | None = None
    # Seconds its check may take, 0 for no limit; None when its table does not say (see
    # model_timeout).
    timeout: float | None = None
    # Name levels its tables fold rows into (`layers.3.mlp.up` → `layers.3` at 2); None when its
    # table does not say (see model_depth).
    depth: int | None = None
    # The config file's folder, where its targets are imported from first (loading.local_to).
    folder: str | None = None
    # How its training step is traced, for a model whose memory is measured; None: it is not.
    memory: MemoryOptions | None = None


@dataclass(frozen=True)
class Settings:
    """The whole `[tool.cnnbudget]` table of one file."""

    path: Path
    snapshot: Path | None
    device: str
    models: tuple[ModelSpec, ...]
    timeout: float | None = None  # the top-level `timeout`, for models without their own
    depth: int | None = None  # the top-level `depth`, likewise

    def snapshot_name(self, rootdir: Path) -> str:
        """The snapshot file as failures name it: relative to pytest's rootdir when inside it."""
        if self.snapshot is None:
            return "(no snapshot)"
        try:
            return str(self.snapshot.relative_to(rootdir))
        except ValueError:
            return str(self.snapshot)


@dataclass(frozen=True)
class Order:
    """What the gate is asked about one model, configured or built by a test: its spec as the
    run resolved it, its stored snapshot entry, and what the run does with the snapshot."""

    spec: ModelSpec
    stored: SnapshotEntry | None = None
    snapshot_enabled: bool = False  # compare with the stored entry (no snapshot: budgets only)
    update: bool = False  # --cnn-budget-update: the entry the check returns may be written


# A model's own key is the most specific thing said about it, so it wins over an option that
# applies to every model of the run, which wins over the file's default for its models.


def model_depth(spec: ModelSpec, option: int | None, settings: Settings) -> int | None:
    """The name levels a model's tables keep, None for every level: its table's `depth`, else
    the command line's, else the top level's."""
    return next((d for d in (spec.depth, option, settings.depth) if d is not None), None)


def model_timeout(spec: ModelSpec, option: float | None, settings: Settings) -> float | None:
    """A model's time limit in seconds, None for none: its table's `timeout`, else the command
    line's, else the top level's, else DEFAULT_TIMEOUT; 0 in any of them means no limit."""
    for value in (spec.timeout, option, settings.timeout):
        if value is not None:
            return value or None
    return DEFAULT_TIMEOUT
