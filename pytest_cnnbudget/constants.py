"""Names and values that several modules must agree on. Imports nothing."""

from __future__ import annotations

ROOT_NAME = "(root)"  # the row name of parameters or compute owned by the model itself
UPDATE_COMMAND = "pytest --cnn-budget-update"  # what every snapshot failure tells the reader
DEFAULT_SNAPSHOT = "cnnbudget.snapshot.json"
DEVICES = ("meta", "cpu")  # where a model may be built
NO_PARAMETERS = "no parameters"  # the formula of a row listed only for its compute

# Bounds on what a configuration or command line may give, checked where the value enters so that
# an absurd value is a clear error naming its key, not a hang, a MemoryError or a traceback. Each
# is far beyond any real model, and small enough that the renderers' columns and arithmetic hold.
MAX_BUDGET = 10**18  # a budget limit; renderers print it with thousands separators, in full
MAX_CONFIG_BYTES = 16 * 2**20  # the config file, read before it is parsed
MAX_MODELS = 10_000  # models in one [tool.cnnbudget.models] table
MAX_MODEL_NAME = 200  # characters of a model name (it becomes a test id and a snapshot key)
MAX_KWARGS_DEPTH = 32  # nesting of a model's kwargs: the kwargs table is level 1
MAX_TARGET = 500  # characters of a `package.module:attr` target
MAX_SNAPSHOT_PATH = 4096  # characters of the snapshot path (PATH_MAX on Linux)
MAX_TIMEOUT = 86_400  # seconds a model's check may be given; 0 means no limit
MAX_DEPTH = 64  # name levels a `depth` may keep; deeper than any real model nests
MAX_INPUTS = 64  # inputs (shapes) of one forward pass
MAX_DIMS = 16  # dimensions of one input shape
MAX_DIM = 2**31 - 1  # one dimension, the largest int32
MAX_ELEMENTS = 2**40  # elements of one input: the product of its dimensions
MAX_SHAPE_TEXT = 10_000  # characters of an input shape written as text, before it is parsed
# Seconds a check may take unless configured: a 70B model builds on meta in 3, a cpu build of
# a large one in about 60.
DEFAULT_TIMEOUT = 300.0
