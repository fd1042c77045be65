"""Exceptions and warnings of pytest-cnnbudget. Imports nothing from the package."""

from __future__ import annotations


class CnnBudgetError(Exception):
    """Base class of every error the package raises on purpose."""


class ConfigError(CnnBudgetError):
    """`[tool.cnnbudget]` is malformed; the message names the file, the model and the key."""


class ModelBuildError(CnnBudgetError):
    """A model target could not be imported or built; chained from the original exception."""


class CountError(CnnBudgetError):
    """A model cannot be counted as it is (for example, lazy parameters not materialized)."""


class SnapshotError(CnnBudgetError):
    """The snapshot file cannot be read or written; the message names the file and the reason."""


class FormulaMismatchWarning(UserWarning):
    """A layer's textbook formula disagrees with `numel()`: the formula table has a bug."""
