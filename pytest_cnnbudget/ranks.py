"""How the ranks of a multi-device training run split a model, and what one rank holds: the
`parallel` table as checked, and the parts of a rank's training peak. Frozen values, as
results.py's; imports nothing from the package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParallelOptions:
    """How the ranks of a multi-device training run split a model: the `parallel` table.

    `world_size` = `replicate` × shard × `tensor_parallel`; the data-parallel degree (ranks
    that each see a batch of their own) is `world_size // tensor_parallel`. `tp_plan` pairs a
    module name pattern with how that module is split across the tensor-parallel ranks.
    """

    strategy: str  # "ddp", "fsdp" (FSDP2's fully_shard) or "hsdp"
    world_size: int
    replicate: int = 1
    tensor_parallel: int = 1
    tp_plan: tuple[tuple[str, str], ...] = ()
    reshard_after_forward: bool = True
    mixed_precision: str | None = None  # "bf16" or "fp16": FSDP2's parameter dtype
    wrap: tuple[str, ...] | None = None  # None: the repeated blocks get their own fully_shard

    @property
    def data_parallel(self) -> int:
        """Ranks that each train on a batch of their own."""
        return self.world_size // self.tensor_parallel

    @property
    def shard(self) -> int:
        """Ranks one parameter is sharded over by FSDP (1 for DDP)."""
        if self.strategy == "ddp":
            return 1
        return self.world_size // (self.replicate * self.tensor_parallel)


# What a rank holds at its training peak, in the order every output lists the parts: its
# shards of the weights, gradients and optimizer state; parameters gathered whole for the
# module running (FSDP); the buffers collectives read or write (all-gather, reduce-scatter,
# DDP's gradient buckets); and everything else, the activations saved for backward and the
# temporaries of the operation running.
PEAK_PARTS = (
    "weights",
    "gradients",
    "optimizer",
    "gathered",
    "communication",
    "activations",
)


# A rank's peak parts as the snapshot stores them, beside the six figures: a change in what
# the peak holds (more gathered, a bigger bucket) shows as its own line in a diff.
RANK_FIGURES = tuple(f"rank_peak_{part}" for part in PEAK_PARTS)


@dataclass(frozen=True)
class RankMemory:
    """Where a rank's training peak goes: `at_peak` pairs each of PEAK_PARTS with its bytes,
    summing to the peak. Sharded figures are rank 0's, the largest of any rank (a dimension
    that does not divide evenly leaves the later ranks less); `uneven` counts the parameters
    so sharded."""

    options: ParallelOptions
    at_peak: tuple[tuple[str, int], ...]
    gathered_peak: int = 0  # the most bytes of parameters gathered whole at any one time
    uneven: int = 0
