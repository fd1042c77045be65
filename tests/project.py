"""Throwaway projects for the end-to-end tests: models as keyword arguments → pyproject.toml.

    project = Project(pytester, cifar=CIFAR, tiny=TINY, top={"snapshot": False})
    project.set("cifar", kwargs={"hidden": 256})   # rewrites pyproject.toml

The TOML is written from the data each time, never edited as text, so a test states the
configuration it runs and nothing else.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

NETS_SOURCE = (Path(__file__).parent / "nets.py").read_text(encoding="utf-8")

# The reference models as a project configures them.
CIFAR: dict[str, Any] = {"target": "nets:Cifar", "max_params": "600k"}
TINY: dict[str, Any] = {"target": "nets:Tiny", "max_params": 1000}


def preload_torch() -> None:
    """Import everything a gate run imports, before the first in-process pytester run.

    pytester restores sys.modules after each in-process run, and parts of torch cannot be
    imported twice in one process (C extensions, operator registrations). Loading them here,
    once, keeps them out of what each run adds and removes.
    """
    import torch
    from torch import nn

    import pytest_cnnbudget.run.gate  # noqa: F401 - else each run collects all of torch to freeze it
    from pytest_cnnbudget.engine.measurement import measure
    from pytest_cnnbudget.inputs import parse_input_shape

    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Flatten(), nn.Linear(1, 1))
    measure(model, parse_input_shape([1, 1, 1, 1]))


_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    """A TOML key, quoted unless it is bare."""
    return key if _BARE.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """A TOML value: strings, integers, booleans, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"no TOML form for {type(value).__name__} {value!r}")


def toml_text(models: Mapping[str, Mapping[str, Any]], top: Mapping[str, Any] | None = None) -> str:
    """`[tool.cnnbudget]` with `top`'s keys, then one `[tool.cnnbudget.models.<name>]` each."""
    lines = ["[tool.cnnbudget]"]
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in (top or {}).items()]
    for name, table in models.items():
        lines += ["", f"[tool.cnnbudget.models.{toml_key(name)}]"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


class Project:
    """A pytester project: `nets.py` and a pyproject.toml configuring `models`."""

    def __init__(
        self,
        pytester: pytest.Pytester,
        top: Mapping[str, Any] | None = None,
        **models: Mapping[str, Any],
    ) -> None:
        self.pytester = pytester
        self.top = dict(top or {})
        self.models = {name: dict(table) for name, table in models.items()}
        pytester.makepyfile(nets=NETS_SOURCE)
        # The project's own nets.py, not tests/nets.py, must be what an in-process run imports:
        # failures point at the file that defines the layer. pytester restores both afterwards.
        pytester.syspathinsert()
        sys.modules.pop("nets", None)
        self.write()

    @property
    def path(self) -> Path:
        """The project folder."""
        return self.pytester.path

    @property
    def pyproject(self) -> Path:
        """Its pyproject.toml."""
        return self.path / "pyproject.toml"

    @property
    def snapshot(self) -> Path:
        """Where its snapshot is written by default."""
        return self.path / "cnnbudget.snapshot.json"

    def write(self) -> None:
        """Write pyproject.toml from the current models."""
        self.pyproject.write_text(toml_text(self.models, self.top), encoding="utf-8")

    def set(self, model: str, **keys: Any) -> None:
        """Change (or, with None, remove) keys of one model's table, and rewrite the file."""
        table = self.models[model]
        for key, value in keys.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        self.write()

    def configure(self, **models: Mapping[str, Any] | None) -> None:
        """Add, replace or (with None) remove whole models, and rewrite the file."""
        for name, table in models.items():
            if table is None:
                self.models.pop(name, None)
            else:
                self.models[name] = dict(table)
        self.write()

    def stored(self, path: Path | None = None) -> dict[str, Any]:
        """The snapshot file (or the one at `path`), parsed."""
        data: dict[str, Any] = json.loads((path or self.snapshot).read_text(encoding="utf-8"))
        return data

    def accept(self, *args: str) -> None:
        """Record the current state of the selected models in the snapshot."""
        self.pytester.runpytest("--cnn-budget-update", *args).assert_outcomes(
            passed=len(self.models)
        )


def failure_section(lines: list[str], model: str) -> list[str]:
    """The lines pytest printed for `model`'s failure, without its `___ header ___` line."""
    start = next(
        i for i, line in enumerate(lines) if f" cnn_budget[{model}] " in line and "_" in line
    )
    end = start + 1
    while end < len(lines) and not lines[end].startswith(("____", "====")):
        end += 1
    return lines[start + 1 : end]


preload_torch()
