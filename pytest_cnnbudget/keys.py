"""What the plugin's parts leave on pytest's objects for one another: stash keys and the
attributes of test reports (which travel from an xdist worker to the controller)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .results import ModelResult
    from .session import BudgetSession  # noqa: F401 - named in a string, for the type only

SESSION = pytest.StashKey["BudgetSession"]()  # on the config, with --cnn-budget
FIXTURE_RESULTS = pytest.StashKey[list["ModelResult"]]()  # on an item: its cnn_budget() checks
UNCHECKED = pytest.StashKey[int]()  # on an item: cnn_budget() checks run without --cnn-budget
REPORT_ATTR = "cnn_budget"  # on a call report: a result, or a list of them (see session.py)
UNCHECKED_ATTR = "cnn_budget_unchecked"  # on a call report, for the xdist controller
