"""A traced training step as text lines: the breakdown of its bytes by what holds them, and
the modules that save the most for backward."""

from __future__ import annotations

from ..ranks import RankMemory
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
    rank = memory.rank
    if rank is not None:
        where += f" per rank, {_ranks(rank)}"
    lines = [f"memory{where} ({memory_setup(memory)}):"]
    lines += [
        f"  {label:<14}  {thousands(n):>17}  {human_bytes(n):>10}  {why}" for label, n, why in parts
    ]
    if rank is not None:
        lines.append("the training peak of the rank holds:")
        lines += [
            f"  {part:<14}  {thousands(n):>17}  {human_bytes(n):>10}  {_PART_NOTES[part]}"
            for part, n in rank.at_peak
        ]
    return lines


# What each part of a rank's training peak is (results.PEAK_PARTS).
_PART_NOTES = {
    "weights": "its shards of the parameters, and the buffers",
    "gradients": "its gradients (sharded under FSDP)",
    "optimizer": "its shards of the optimizer's state",
    "gathered": "parameters FSDP gathered whole for the blocks running",
    "communication": "buffers of collectives (all-gather, reduce-scatter, DDP buckets)",
    "activations": "saved for backward, and the running operation's temporaries",
}


def rank_line(memory: Memory) -> str | None:
    """`rank 0 of fsdp 4 (4 ranks): training peak 11.13 MB = weights 392.56 kB · …`: what a
    rank's peak holds, on one line; None for one device's memory."""
    rank = memory.rank
    if rank is None:
        return None
    parts = " · ".join(f"{part} {human_bytes(n)}" for part, n in rank.at_peak)
    return f"{_ranks(rank)}: training peak {human_bytes(memory.peak_train)} = {parts}"


def _ranks(rank: RankMemory) -> str:
    """`rank 0 of fsdp 8 × tp 8 (64 ranks)`, and which rank holds the most when shards differ."""
    settings = rank.options
    parts = [f"{settings.strategy} {settings.data_parallel:,}"]
    if settings.strategy == "hsdp":
        parts = [f"hsdp {settings.replicate:,} × {settings.shard:,}"]
    if settings.tensor_parallel > 1:
        parts.append(f"tp {settings.tensor_parallel:,}")
    uneven = (
        f"; {rank.uneven:,} parameters shard unevenly, rank 0 holds the most" if rank.uneven else ""
    )
    fsdp = settings.strategy != "ddp" and settings.data_parallel > 1
    options = [f"{settings.mixed_precision} parameters"] if settings.mixed_precision else []
    if fsdp and not settings.reshard_after_forward:
        options.append("kept gathered after forward")
    said = f", {', '.join(options)}" if options else ""
    return f"rank 0 of {' × '.join(parts)} ({settings.world_size:,} ranks){said}{uneven}"


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
