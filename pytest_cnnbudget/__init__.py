"""pytest-cnnbudget: parameter budgets for PyTorch models, checked by pytest.

Importing this package must stay cheap: pytest imports it at start-up through the `pytest11`
entry point, and a suite that does not ask for `--cnn-budget` must not pay for torch. The public
names below are therefore resolved on first use, even the light ones: defining a handful of
dataclasses costs a few milliseconds, which is most of what the plugin adds to a run without it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .counting import count_parameters
    from .errors import CnnBudgetError, ConfigError, CountError, ModelBuildError, SnapshotError
    from .loading import build_model
    from .memory import MemoryUse, memory_use
    from .plot import PlotUnavailableError, save_plot
    from .render_terminal import format_table
    from .results import LayerRow, ParameterCount
    from .shapes import (
        InputSpec,
        ModuleProfile,
        Profile,
        ProfileError,
        ShapeMismatchError,
        parse_input_shape,
        profile,
    )

__all__ = [
    "CnnBudgetError",
    "ConfigError",
    "CountError",
    "InputSpec",
    "LayerRow",
    "MemoryUse",
    "ModelBuildError",
    "ModuleProfile",
    "ParameterCount",
    "PlotUnavailableError",
    "Profile",
    "ProfileError",
    "ShapeMismatchError",
    "SnapshotError",
    "build_model",
    "count_parameters",
    "format_table",
    "memory_use",
    "parse_input_shape",
    "profile",
    "save_plot",
]

_LAZY = {
    "CnnBudgetError": ".errors",
    "ConfigError": ".errors",
    "CountError": ".errors",
    "ModelBuildError": ".errors",
    "SnapshotError": ".errors",
    "LayerRow": ".results",
    "ParameterCount": ".results",
    "count_parameters": ".counting",
    "build_model": ".loading",
    "format_table": ".render_terminal",
    "InputSpec": ".shapes",
    "ModuleProfile": ".shapes",
    "Profile": ".shapes",
    "ProfileError": ".shapes",
    "ShapeMismatchError": ".shapes",
    "parse_input_shape": ".shapes",
    "profile": ".shapes",
    "MemoryUse": ".memory",
    "memory_use": ".memory",
    "PlotUnavailableError": ".plot",
    "save_plot": ".plot",
    # `plot` itself is not re-exported: importing the submodule `pytest_cnnbudget.plot` binds
    # that name on the package, so the function would turn into the module after first use.
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)
