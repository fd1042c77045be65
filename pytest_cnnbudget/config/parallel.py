"""A model's `parallel` table (or `cnn_budget(parallel=…)`, or `--parallel`) → ParallelOptions.

Everything that can be checked without the model is checked here, each sub-key on its own line
(`parallel.world_size: 48 is not divisible by tensor_parallel 8 × replicate 4`); what needs the
model (a TP plan pattern that matches no module, a module that is not a Linear or an Embedding)
is checked where the model is wrapped, engine/parallel.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..ranks import ParallelOptions
from ..units import brief, listing
from .fields import Problems, unknown_keys

STRATEGIES = ("ddp", "fsdp", "hsdp")
MIXED_PRECISION = ("bf16", "fp16")
# How a tp_plan entry splits its module across the tensor-parallel ranks (engine/parallel.py):
# torch's ColwiseParallel and RowwiseParallel, and an embedding split by vocabulary whose
# output is whole on every rank ("vocab") or split along the sequence ("vocab_sequence").
TP_STYLES = ("colwise", "rowwise", "colwise_replicate", "vocab", "vocab_sequence")
KEYS = (
    "strategy",
    "world_size",
    "replicate",
    "tensor_parallel",
    "tp_plan",
    "reshard_after_forward",
    "mixed_precision",
    "wrap",
)
MAX_WORLD_SIZE = 1 << 20
MAX_PATTERNS = 256
_PATTERN = re.compile(r"[A-Za-z0-9_.*]{1,200}")


def parse_parallel(
    problems: Problems, where: str, value: Any, prefix: str = "parallel."
) -> ParallelOptions | None:
    """`value` (the table) checked: None, with every problem noted under `where` (each key
    after `prefix`), when it is not a valid one."""
    if not isinstance(value, Mapping):
        problems.add(where, "parallel", f"expected a table, got {type(value).__name__}")
        return None
    before = len(problems.messages) + problems.more
    for key, message in unknown_keys(value, KEYS):
        problems.add(where, f"{prefix}{key}", message)

    def get(key: str, convert: Any, default: Any = None) -> Any:
        if key not in value:
            return default
        try:
            return convert(value[key])
        except (TypeError, ValueError) as e:
            problems.add(where, f"{prefix}{key}", str(e))
            return default

    strategy = get("strategy", _choice(STRATEGIES))
    if "strategy" not in value:
        problems.add(where, f"{prefix}strategy", f"missing; give one of {listing(STRATEGIES)}")
    world = get("world_size", _count)
    if "world_size" not in value:
        problems.add(where, f"{prefix}world_size", "missing; give the number of ranks in all")
    replicate = get("replicate", _count, 1)
    tp = get("tensor_parallel", _count, 1)
    plan = get("tp_plan", _plan, ())
    options = ParallelOptions(
        strategy=strategy or "fsdp",
        world_size=world or 1,
        replicate=replicate,
        tensor_parallel=tp,
        tp_plan=plan,
        reshard_after_forward=get("reshard_after_forward", _boolean, True),
        mixed_precision=get("mixed_precision", _choice(MIXED_PRECISION)),
        wrap=get("wrap", _patterns),
    )
    # What the keys say together is said only of keys that each hold: a world_size of 1 the
    # user never wrote, or a strategy misspelt, would make the rest read as wrong too.
    if len(problems.messages) + problems.more == before:
        for key, message in _consistency(options, value):
            problems.add(where, f"{prefix}{key}", message)
    return options if len(problems.messages) + problems.more == before else None


def _consistency(options: ParallelOptions, given: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the keys say together that no one of them says alone."""
    out = []
    world, tp, replicate = options.world_size, options.tensor_parallel, options.replicate
    if world % (tp * replicate):
        parts = f"tensor_parallel {tp:,}" + (f" × replicate {replicate:,}" if replicate > 1 else "")
        out.append(("world_size", f"{world:,} is not divisible by {parts}"))
    elif options.strategy == "hsdp" and "replicate" not in given:
        out.append(("replicate", "missing; hsdp needs the number of replica groups"))
    if replicate > 1 and options.strategy != "hsdp":
        out.append(("replicate", f"applies to hsdp, not {options.strategy}"))
    if tp > 1 and not options.tp_plan:
        state = "missing" if "tp_plan" not in given else "empty"
        out.append(("tp_plan", f"{state}; tensor_parallel {tp:,} needs the modules it splits"))
    if options.tp_plan and tp == 1:
        state = "is 1" if "tensor_parallel" in given else "missing"
        out.append(("tensor_parallel", f"{state}; a tp_plan needs a degree above 1"))
    fsdp_keys = [k for k in ("reshard_after_forward", "mixed_precision", "wrap") if k in given]
    if options.strategy == "ddp":
        if tp > 1:
            out.append(("tensor_parallel", "is not traced with ddp; use fsdp or hsdp with it"))
        for key in fsdp_keys:
            out.append((key, "applies to fsdp and hsdp, not ddp (autocast sets ddp's dtype)"))
    elif options.data_parallel == 1 and not world % tp:
        for key in fsdp_keys:
            out.append(
                (
                    key,
                    "applies to FSDP, which a run with tensor_parallel = world_size does not "
                    "use (no data-parallel ranks to shard over)",
                )
            )
    return out


def _choice(options: tuple[str, ...]) -> Any:
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{brief(value)} is not one of {listing(options)}")
        return str(value)

    return convert


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, got {type(value).__name__} {brief(value)}")
    if not 1 <= value <= MAX_WORLD_SIZE:
        raise ValueError(f"{value:,} is not from 1 to {MAX_WORLD_SIZE:,}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {brief(value)}")
    return value


def _pattern(value: Any) -> str:
    if not isinstance(value, str) or not _PATTERN.fullmatch(value):
        raise ValueError(
            f"{brief(value)} is not a module name pattern (names, dots and `*`, such as "
            "'layers.*.attn.q_proj')"
        )
    return value


def _plan(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise TypeError(
            f"expected a table of module patterns, got {type(value).__name__} {brief(value)}"
        )
    if len(value) > MAX_PATTERNS:
        raise ValueError(f"{len(value):,} entries; at most {MAX_PATTERNS}")
    plan = []
    for pattern, style in value.items():
        _pattern(pattern)
        if style not in TP_STYLES:
            raise ValueError(f"{pattern} = {brief(style)} is not one of {listing(TP_STYLES)}")
        plan.append((str(pattern), str(style)))
    return tuple(plan)


def _patterns(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise TypeError(f"expected a list of module patterns, got {brief(value)}")
    if len(value) > MAX_PATTERNS:
        raise ValueError(f"{len(value):,} patterns; at most {MAX_PATTERNS}")
    return tuple(_pattern(v) for v in value)
