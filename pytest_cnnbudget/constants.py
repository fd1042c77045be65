"""Names and values that several modules must agree on. Imports nothing."""

from __future__ import annotations

ROOT_NAME = "(root)"  # the row name of parameters or compute owned by the model itself
UPDATE_COMMAND = "pytest --cnn-budget-update"  # what every snapshot failure tells the reader
DEFAULT_SNAPSHOT = "cnnbudget.snapshot.json"
DEVICES = ("meta", "cpu")  # where a model may be built
NO_PARAMETERS = "no parameters"  # the formula of a row listed only for its compute
