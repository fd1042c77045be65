"""Every budget kind, declared once: the config key, what it measures, how it reads and prints.

Config validation, the checks, the terminal and GitHub renderers, the JSON report and the
table of budget keys in docs/budgets.md all read `BUDGETS`. Adding a kind is one entry here,
plus the figure it reads if the measurement does not have it yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from ..results import BudgetCheck, ParameterCount
from ..units import parse_bytes, parse_count, short_bytes, short_count, thousands


class Unit(str, Enum):
    """What a budget's figure is a number of."""

    COUNT = "count"  # written 600_000, "600k", "1.5M", "7B", "2e9" (units.py's grammar)
    BYTES = "bytes"  # written "100MB", "1.5GiB", "47.7MiB", 1048576

    def parse(self, value: object) -> int:
        """A config value → an exact positive integer; ValueError says how to write it."""
        return parse_bytes(value) if self is Unit.BYTES else parse_count(value)


@dataclass(frozen=True)
class BudgetKind:
    """One kind of budget a model may set."""

    key: str  # the config key, e.g. "max_params"
    label: str  # what is measured, in a failure's first line: "trainable parameters"
    unit: Unit
    # After the limit in one-line summaries, whose count column is the trainable one: "total"
    # for max_total_params; "" for max_params, which is that column.
    suffix: str
    measure: Callable[[ParameterCount], int | None]  # None: not measured (no input_shape)
    description: str  # for the table of keys in docs/budgets.md
    needs_input_shape: bool = False
    # Whether the "largest layers" of a failure rank trainable parameters (a frozen backbone is
    # not where to look when only the trainable ones broke the budget).
    ranks_trainable: bool = False
    # Whether the figure needs the training step and inference pass traced (memory.py), which
    # only models that set such a budget (or `memory = true`) pay for.
    needs_memory: bool = False

    def parse(self, value: object) -> int:
        """The configured limit."""
        return self.unit.parse(value)


BUDGETS: tuple[BudgetKind, ...] = (
    BudgetKind(
        "max_params",
        "trainable parameters",
        Unit.COUNT,
        "",
        lambda m: m.trainable,
        "trainable parameters (requires_grad), tied weights once",
        ranks_trainable=True,
    ),
    BudgetKind(
        "max_total_params",
        "total parameters",
        Unit.COUNT,
        "total",
        lambda m: m.total,
        "all parameters, frozen ones and quantized layers' packed weights included",
    ),
    BudgetKind(
        "max_macs",
        "multiply-adds (MACs)",
        Unit.COUNT,
        "MACs",
        lambda m: m.macs,
        "multiply-adds of one forward pass at input_shape",
        needs_input_shape=True,
    ),
    BudgetKind(
        "max_flops",
        "FLOPs",
        Unit.COUNT,
        "FLOPs",
        lambda m: m.flops,
        "floating-point operations of one forward pass at input_shape, 2 per MAC",
        needs_input_shape=True,
    ),
    BudgetKind(
        "max_param_bytes",
        "parameter bytes",
        Unit.BYTES,
        "of parameters",
        lambda m: m.param_bytes,
        "bytes of the parameters at their dtypes",
    ),
    BudgetKind(
        "max_buffers",
        "buffer elements",
        Unit.COUNT,
        "buffers",
        lambda m: m.buffers,
        "elements of the buffers (BatchNorm's running statistics, masks, rotary tables)",
    ),
    BudgetKind(
        "max_buffer_bytes",
        "buffer bytes",
        Unit.BYTES,
        "of buffers",
        lambda m: m.buffer_bytes,
        "bytes of the buffers at their dtypes",
    ),
    BudgetKind(
        "max_train_memory",
        "training step memory (peak)",
        Unit.BYTES,
        "peak in training",
        lambda m: m.memory.peak_train if m.memory is not None else None,
        "peak bytes of one training step at input_shape: weights, gradients, optimizer state, "
        "activations, traced on meta",
        needs_input_shape=True,
        needs_memory=True,
    ),
    BudgetKind(
        "max_inference_memory",
        "inference memory (peak)",
        Unit.BYTES,
        "peak in inference",
        lambda m: m.memory.peak_inference if m.memory is not None else None,
        "peak bytes of one forward pass under no_grad at input_shape, weights included",
        needs_input_shape=True,
        needs_memory=True,
    ),
)

KINDS: Mapping[str, BudgetKind] = {kind.key: kind for kind in BUDGETS}
KEYS: tuple[str, ...] = tuple(KINDS)
MEMORY_KEYS: tuple[str, ...] = tuple(kind.key for kind in BUDGETS if kind.needs_memory)
BYTE_KEYS: tuple[str, ...] = tuple(kind.key for kind in BUDGETS if kind.unit is Unit.BYTES)


def check_budgets(limits: Mapping[str, int], count: ParameterCount) -> tuple[BudgetCheck, ...]:
    """Every budget in `limits` (key → limit) against what `count` measured, in registry order;
    a kind whose figure was not measured is left out."""
    checks = []
    for kind in BUDGETS:
        limit = limits.get(kind.key)
        actual = kind.measure(count) if limit is not None else None
        if limit is not None and actual is not None:
            checks.append(BudgetCheck(kind.key, kind.label, actual, limit))
    return tuple(checks)


def amount(check: BudgetCheck, value: int, human: bool = False) -> str:
    """`value` in its budget's unit: `1,070,794`, or with `human` `1.07M`; bytes always as
    memory is read, `47.7 MB` (a byte count to the unit says nothing a reviewer uses)."""
    kind = KINDS.get(check.key)
    if kind is not None and kind.unit is Unit.BYTES:
        return short_bytes(value)
    return short_count(value) if human else thousands(value)


def noun(check: BudgetCheck) -> str:
    """What a budget's figure counts, in a word or two: `trainable`, `total`, `MACs`."""
    kind = KINDS.get(check.key)
    return (kind.suffix or "trainable") if kind is not None else check.key


def figure_text(check: BudgetCheck | None, human: bool = False) -> str:
    """What a budget compares, as measured and named: `1,070,794 trainable`, `11.7M total`,
    `36.7 MB peak in training`."""
    if check is None:
        return "-"
    return f"{amount(check, check.actual, human)} {noun(check)}"


def limit_text(check: BudgetCheck | None, human: bool = False) -> str:
    """A budget's limit, in the unit its measured figure names: `600,000`, `600.0k`."""
    return amount(check, check.limit, human) if check is not None else "-"


def ranks_trainable(checks: tuple[BudgetCheck, ...]) -> bool:
    """Whether every one of `checks` counts trainable parameters only."""
    return bool(checks) and all(KINDS[c.key].ranks_trainable for c in checks if c.key in KINDS)
