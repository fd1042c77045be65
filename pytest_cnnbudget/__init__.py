"""pytest-cnnbudget: parameter budgets for PyTorch models, checked by pytest.

Importing this package must stay cheap: pytest imports it at start-up through the `pytest11`
entry point, and a suite that does not ask for `--cnn-budget` must not pay for torch. The public
names below are therefore resolved on first use, even the light ones: defining a handful of
dataclasses costs a few milliseconds, which is most of what the plugin adds to a run without it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# The one place the version is written: pyproject.toml reads it from here when the package is
# built (setuptools reads the assignment without importing the package).
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .engine.counting import count_parameters
    from .engine.loading import build_model
    from .engine.measurement import measure
    from .engine.profiler import ModuleProfile, Profile, profile
    from .errors import (
        CnnBudgetError,
        ConfigError,
        CountError,
        ModelBuildError,
        PlotUnavailableError,
        ProfileError,
        ShapeMismatchError,
        SnapshotError,
    )
    from .inputs import InputSpec, parse_input_shape
    from .report.plot import plot, save_plot
    from .report.terminal import format_table
    from .results import Compute, DtypeBytes, LayerRow, ParameterCount

__all__ = [
    "CnnBudgetError",
    "Compute",
    "ConfigError",
    "CountError",
    "DtypeBytes",
    "InputSpec",
    "LayerRow",
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
    "measure",
    "parse_input_shape",
    "plot",
    "profile",
    "save_plot",
]

_LAZY = {
    "CnnBudgetError": ".errors",
    "ConfigError": ".errors",
    "CountError": ".errors",
    "ModelBuildError": ".errors",
    "SnapshotError": ".errors",
    "ProfileError": ".errors",
    "ShapeMismatchError": ".errors",
    "PlotUnavailableError": ".errors",
    "Compute": ".results",
    "DtypeBytes": ".results",
    "LayerRow": ".results",
    "ParameterCount": ".results",
    "count_parameters": ".engine.counting",
    "measure": ".engine.measurement",
    "build_model": ".engine.loading",
    "format_table": ".report.terminal",
    "InputSpec": ".inputs",
    "parse_input_shape": ".inputs",
    "ModuleProfile": ".engine.profiler",
    "Profile": ".engine.profiler",
    "profile": ".engine.profiler",
    "plot": ".report.plot",
    "save_plot": ".report.plot",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)
