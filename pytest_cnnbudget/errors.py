"""Every exception and warning of pytest-cnnbudget. Imports nothing from the package."""

from __future__ import annotations

import errno


class CnnBudgetError(Exception):
    """Base class of every error the package raises on purpose."""


class ConfigError(CnnBudgetError):
    """`[tool.cnnbudget]` is malformed; the message names the file, the model and the key."""


class ModelBuildError(CnnBudgetError):
    """A model target could not be imported or built; chained from the original exception."""


class CountError(CnnBudgetError):
    """A model cannot be counted as it is (for example, lazy parameters not materialized)."""


class ProfileError(CnnBudgetError):
    """The forward pass on meta tensors failed; the message names the layer and its input."""


class MemoryTraceError(CnnBudgetError):
    """The training step or inference pass traced for memory failed on meta tensors, or its
    optimizer cannot be made; the message names the module, the op or the optimizer."""


class ShapeMismatchError(ProfileError):
    """A layer received a tensor of a size it was not built for (the classic wrong FC width)."""


class SnapshotError(CnnBudgetError):
    """The snapshot file cannot be read or written; the message names the file and the reason."""


class PlotUnavailableError(CnnBudgetError):
    """matplotlib, which draws the charts, is not installed."""


class CommandLineError(CnnBudgetError):
    """A `cnnbudget` command-line value that cannot be used; the message names the option."""


class GitHubApiError(CnnBudgetError):
    """GitHub refused or failed a request (the sticky comment); the message says what to fix."""


class BudgetFailure(CnnBudgetError):
    """A budget item failed; carries the rendered tables pytest shows instead of a traceback."""


class FormulaMismatchWarning(UserWarning):
    """A layer's textbook formula disagrees with `numel()`: the formula table has a bug."""


def os_error_text(error: OSError) -> str:
    """The OS's words and its errno name, `No space left on device (ENOSPC)`."""
    name = errno.errorcode.get(error.errno or 0)
    if error.strerror and name:
        return f"{error.strerror} ({name})"
    return error.strerror or str(error)


def exception_text(error: BaseException) -> str:
    """`TypeName: message`, even for an exception whose `__str__` raises."""
    try:
        message = str(error)
    except Exception as e:
        message = f"<its message could not be shown: str() raised {type(e).__name__}>"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
