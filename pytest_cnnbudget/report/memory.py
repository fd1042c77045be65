"""A traced training step as text lines: the breakdown of its bytes by what holds them, and
the modules that save the most for backward."""

from __future__ import annotations

from ..results import LayerRow, Memory, ParameterCount
from ..units import human_bytes, percent, thousands
from .cells import GROUPED_NOTE, row_name, type_cell
from .tables import Column, indent, render
from .views import saving_most

_OPTIMIZER_NAMES = {
    "adamw": "AdamW",
    "adam": "Adam",
    "sgd": "SGD",
    "sgd_momentum": "SGD with momentum",
    "none": "no optimizer",
}


def memory_setup(memory: Memory) -> str:
    """`AdamW, float32, train mode`: how the training step was traced."""
    options = memory.options
    return ", ".join(
        [
            _OPTIMIZER_NAMES.get(options.optimizer, options.optimizer),
            f"autocast {options.autocast}" if options.autocast else "no autocast",
            "train mode" if options.train_mode else "eval mode",
        ]
    )


def memory_breakdown(memory: Memory, at: str | None = None) -> list[str]:
    """The training step's bytes by what holds them, and both peaks, one figure a line."""
    parts = [
        ("weights", memory.weights, "parameters and buffers"),
        ("gradients", memory.gradients, "of the trainable parameters"),
        ("optimizer", memory.optimizer, "its state after a step"),
        ("activations", memory.activations, "saved for backward"),
        ("peak_train", memory.peak_train, "most bytes live in one training step"),
        ("peak_inference", memory.peak_inference, "most bytes live in one forward, no_grad"),
    ]
    where = f" at {at}" if at else ""
    lines = [f"memory{where} ({memory_setup(memory)}):"]
    lines += [
        f"  {label:<14}  {thousands(n):>17}  {human_bytes(n):>10}  {why}" for label, n, why in parts
    ]
    return lines


SAVING_MOST = 3


def saving_lines(count: ParameterCount, group: bool = True) -> list[str]:
    """The modules that save the most activations for backward, grouped as the layer tables."""
    memory = count.memory
    rows = saving_most(count, SAVING_MOST, group)
    if memory is None or not rows:
        return []
    columns: list[Column[LayerRow]] = [
        Column("layer", lambda r: row_name(r.name, r.repeat)),
        Column("type", type_cell),
        Column("saved", lambda r: human_bytes(r.activations or 0), right=True),
        Column(
            "share",
            lambda r: percent((r.activations or 0) / memory.activations),
            right=True,
        ),
    ]
    lines = ["modules saving the most activations:", *indent(render(columns, rows))]
    if any(r.repeat > 1 for r in rows):
        lines.append(f"  {GROUPED_NOTE}")
    return lines
