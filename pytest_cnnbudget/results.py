"""Frozen values shared by the engine, the gate and the renderers.

Imports nothing from the package but `inputs` (itself a leaf), and nothing heavy: a result
crosses process boundaries and is rendered where torch was never imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .inputs import InputSpec, Shape
from .names import storable
from .ranks import ParallelOptions, RankMemory


@dataclass(frozen=True)
class LayerRow:
    """One row of a model's per-layer table: a module that directly owns parameters; with a
    depth, a group of them; with a forward pass, also a module that only computes."""

    name: str
    type: str
    params: int
    trainable: int
    formula: str
    formula_params: int
    cumulative: int
    share: float
    # Filled in when the model ran forward on an input shape; None otherwise.
    output_shape: Shape | None = None
    macs: int | None = None  # multiply-adds of this module's own forward, outside submodules
    flops: int | None = None
    # Parameter-owning modules in the row: 1 for a layer, more for a group, 0 for a module that
    # owns none and is listed for its compute.
    members: int = 1
    # Rows alike but for their block index shown as this one (grouping.py): its name is their
    # pattern, its counts their sum, its type, formula and shape each one's.
    repeat: int = 1
    # A quantized layer's weights' dtype ("qint8"): its params are the weights and biases it
    # holds packed, none of them trainable (quantized.py). None for every other row.
    quantized: str | None = None
    # Bytes autograd saved for backward while this module's own forward ran (outside its
    # submodules); None when memory was not measured.
    activations: int | None = None

    @property
    def each(self) -> int:
        """Parameters of one of the rows it stands for."""
        return self.params // self.repeat


@dataclass(frozen=True)
class DtypeBytes:
    """Elements and bytes of one dtype's parameters and buffers."""

    dtype: str  # "float32", "bfloat16", "int8", … (torch's name without "torch.")
    params: int
    param_bytes: int
    buffers: int
    buffer_bytes: int

    @property
    def bytes(self) -> int:
        """Parameters and buffers together."""
        return self.param_bytes + self.buffer_bytes


@dataclass(frozen=True)
class Compute:
    """What one forward pass on meta tensors measured for the whole model."""

    inputs: InputSpec
    output_shape: Shape | None
    macs: int  # 1 MAC = 2 FLOPs
    flops: int


@dataclass(frozen=True)
class MemoryOptions:
    """How a model's training step is traced: which optimizer, autocast, train or eval mode,
    and, with `parallel`, on one rank of a multi-device run."""

    # "adamw", "adam", "sgd", "sgd_momentum", "none", or a "pkg.mod:Class" optimizer target.
    optimizer: str = "adamw"
    optimizer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    autocast: str | None = None  # "bf16" or "fp16"; None: off
    train_mode: bool = True  # model.train() for the step (dropout, BatchNorm statistics)
    parallel: ParallelOptions | None = None


# The figures of a Memory, in the order every output lists them.
MEMORY_FIGURES = (
    "weights",
    "gradients",
    "optimizer",
    "activations",
    "peak_train",
    "peak_inference",
)


@dataclass(frozen=True)
class Memory:
    """Bytes one training step and one inference pass need, traced on meta tensors.

    `peak_train` is the most bytes live at once over forward, backward and optimizer step,
    with the optimizer's state already made (a step as every one after the first runs);
    `peak_inference` the most over one forward under no_grad. Both count the weights and the
    inputs. `activations` are the bytes autograd saves for backward (each storage once,
    parameters and buffers left out); `saved` splits them by the module whose own forward saved
    them, in `named_modules()` order.
    """

    weights: int
    gradients: int
    optimizer: int
    activations: int
    peak_train: int
    peak_inference: int
    options: MemoryOptions = field(default_factory=MemoryOptions)
    saved: tuple[tuple[str, int], ...] = ()
    # With MemoryOptions.parallel, every figure above is one rank's, and this says more.
    rank: RankMemory | None = None

    def figures(self) -> dict[str, int]:
        """The six figures by name, as JSON stores them."""
        return {name: getattr(self, name) for name in MEMORY_FIGURES}

    def stored_figures(self) -> dict[str, int]:
        """The figures the snapshot stores: the six, and a rank's peak parts."""
        parts = dict(self.rank.at_peak) if self.rank is not None else {}
        stored = {f"rank_peak_{part}": n for part, n in parts.items()}
        return {**self.figures(), **stored}


@dataclass(frozen=True)
class ParameterCount:
    """The one measurement of a model: counts, per-layer rows (summing to `total`), bytes by
    dtype and, when it ran forward on an input shape, its compute."""

    total: int
    trainable: int
    frozen: int
    buffers: int
    layers: tuple[LayerRow, ...]
    param_bytes: int = 0
    buffer_bytes: int = 0
    dtypes: tuple[DtypeBytes, ...] = ()  # largest first
    compute: Compute | None = None
    depth: int | None = None  # rows grouped to this many name levels; None: one per module
    # Of `total` (and `frozen`), the weights and biases quantized layers hold packed, which are
    # no parameters: a quantized model counts what it holds, as its float original would.
    quantized: int = 0
    memory: Memory | None = None  # measured only for a model that asks (memory.py)

    @property
    def macs(self) -> int | None:
        """Multiply-adds of the whole forward pass; None without an input shape."""
        return self.compute.macs if self.compute is not None else None

    @property
    def flops(self) -> int | None:
        """FLOPs of the whole forward pass; None without an input shape."""
        return self.compute.flops if self.compute is not None else None

    @property
    def input_shape(self) -> str | None:
        """The inputs it ran forward on, e.g. `1×3×32×32`; None without an input shape."""
        return self.compute.inputs.describe() if self.compute is not None else None

    @property
    def parameter_rows(self) -> tuple[LayerRow, ...]:
        """The rows that own parameters: what the snapshot stores and the charts show."""
        return tuple(r for r in self.layers if r.members)

    def largest(self, n: int, trainable: bool = False) -> tuple[LayerRow, ...]:
        """The `n` layers with the most parameters (or trainable ones), largest first (ties keep
        module order); with `trainable`, layers that have none are left out."""
        if trainable:
            rows = [r for r in self.parameter_rows if r.trainable]
            return tuple(sorted(rows, key=lambda r: -r.trainable)[:n])
        return tuple(sorted(self.parameter_rows, key=lambda r: -r.params)[:n])

    def param_bytes_by_dtype(self) -> dict[str, int]:
        """`{"float32": 2180392}`: parameter bytes per dtype, dtypes without parameters left out."""
        return {d.dtype: d.param_bytes for d in self.dtypes if d.params}

    def buffer_bytes_by_dtype(self) -> dict[str, int]:
        """Buffer bytes per dtype, dtypes without buffers left out."""
        return {d.dtype: d.buffer_bytes for d in self.dtypes if d.buffers}


@dataclass(frozen=True)
class SnapshotLayer:
    """One stored layer row."""

    name: str
    type: str
    params: int
    formula: str
    output_shape: Shape | None = None
    macs: int | None = None


@dataclass(frozen=True)
class SnapshotEntry:
    """One model's accepted state, as the snapshot file stores it."""

    trainable: int
    total: int
    frozen: int
    buffers: int
    layers: tuple[SnapshotLayer, ...]
    macs: int | None = None
    flops: int | None = None
    input_shape: str | None = None
    # The memory figures (Memory.figures), by name, for a model whose memory is measured.
    memory: tuple[tuple[str, int], ...] | None = None

    @classmethod
    def from_count(cls, count: ParameterCount) -> SnapshotEntry:
        """The entry that would accept `count` as it is."""
        return cls(
            trainable=count.trainable,
            total=count.total,
            frozen=count.frozen,
            buffers=count.buffers,
            layers=tuple(
                SnapshotLayer(
                    storable(r.name),
                    storable(r.type),
                    r.params,
                    storable(r.formula),
                    r.output_shape,
                    r.macs,
                )
                for r in count.parameter_rows
            ),
            macs=count.macs,
            flops=count.flops,
            input_shape=count.input_shape,
            memory=(
                tuple(count.memory.stored_figures().items()) if count.memory is not None else None
            ),
        )


class Outcome(str, Enum):
    """How one model's check ended."""

    PASSED = "passed"
    FAILED = "failed"
    WARNED = "warned"  # a check failed on a model configured with level = "warn"
    ERROR = "error"  # the model could not be imported, built or counted


class SnapshotStatus(str, Enum):
    """How the model compares with its stored snapshot entry."""

    MATCH = "ok"
    CHANGED = "changed"
    MISSING = "missing"
    ADDED = "added"  # --cnn-budget-update wrote a new entry
    UPDATED = "updated"  # --cnn-budget-update replaced a different entry
    # --cnn-budget-update did not write it: over budget, its test failed after the check, or
    # its snapshot file could not be written.
    REJECTED = "not written"
    OFF = "off"  # snapshot = false
    UNKNOWN = "-"  # the model could not be counted


@dataclass(frozen=True)
class BudgetCheck:
    """One budget from the config against the measured figure."""

    key: str  # the config key, e.g. "max_params"
    label: str  # what is measured, e.g. "trainable parameters"
    actual: int
    limit: int

    @property
    def over(self) -> bool:
        """True when the figure exceeds the budget."""
        return self.actual > self.limit

    @property
    def excess(self) -> int:
        """How far above the budget (negative: headroom)."""
        return self.actual - self.limit

    @property
    def used(self) -> float:
        """The figure as a fraction of the budget."""
        return self.actual / self.limit


@dataclass(frozen=True)
class LayerChange:
    """A layer that differs from the snapshot; `before`/`after` is None when added/removed.
    With `repeat`, layers alike but for their block index that changed alike: the counts are
    their sum, the type and formula each one's."""

    name: str
    type: str
    before: int | None
    after: int | None
    formula: str
    repeat: int = 1

    @property
    def delta(self) -> int:
        """Signed change in parameters."""
        return (self.after or 0) - (self.before or 0)


@dataclass(frozen=True)
class TotalChange:
    """A model-level figure (total, trainable, …) in the snapshot and now."""

    label: str
    before: int
    after: int


@dataclass(frozen=True)
class SnapshotDiff:
    """What differs between the stored entry and the model as it is now."""

    layers: tuple[LayerChange, ...]
    totals: tuple[TotalChange, ...]


@dataclass(frozen=True)
class SourceLocation:
    """A place in a source file a reviewer should look at."""

    path: str
    line: int


@dataclass(frozen=True)
class ModelResult:
    """Everything one model's check found; plain data, so it can cross process boundaries."""

    name: str
    target: str
    level: str
    outcome: Outcome
    snapshot: SnapshotStatus
    count: ParameterCount | None = None
    budgets: tuple[BudgetCheck, ...] = ()
    diff: SnapshotDiff | None = None
    entry: SnapshotEntry | None = None  # the entry --cnn-budget-update may write
    error: str | None = None
    # The step that failed: "build" (import, construct, count), "forward" (input_shape), "check"
    # (judging the counts), "timeout" (the time limit), "crash" (the checking process died).
    error_stage: str = "build"
    source: SourceLocation | None = None
    # Where the model's class or factory is defined: where an annotation points when `source`
    # lies in an installed library, which a pull request's diff never shows.
    target_source: SourceLocation | None = None
    # The rows as its tables show them, folded to the model's `depth`; None: as `count` has them.
    folded: ParameterCount | None = None
    # What a reader should know about how it was measured: "built on cpu: …".
    notes: tuple[str, ...] = ()
    # The snapshot held no entry for it when the run started: whatever an update then did, its
    # change against the snapshot is "new", not 0.
    first: bool = False

    @property
    def shown(self) -> ParameterCount | None:
        """The measurement as tables show it: folded to the model's depth, if it has one."""
        return self.folded if self.folded is not None else self.count

    @property
    def failed(self) -> bool:
        """True when the check failed, whatever the level."""
        return self.outcome is not Outcome.PASSED

    @property
    def exceeded(self) -> tuple[BudgetCheck, ...]:
        """The budgets this model is over."""
        return tuple(b for b in self.budgets if b.over)

    @property
    def primary_budget(self) -> BudgetCheck | None:
        """The budget shown in one-line summaries: the one most used."""
        return max(self.budgets, key=lambda b: b.used, default=None)
