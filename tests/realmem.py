"""What a real cpu run of a training step or an inference pass allocates: the reference the
meta-traced memory figures are validated against (tests/test_memory_real.py and the memory
benchmark). Independent of pytest_cnnbudget.engine.memory on purpose: it measures, it does not trace.

The peak comes from torch.profiler's allocation records (`profile_memory=True`): every
allocation and free the cpu allocator made, with its size and time, read from the raw kineto
events. (`prof.events()` only lists, as `[memory]` entries, the allocations made outside any
operator; the raw records hold all of them.) The bytes live when the profile starts (weights,
optimizer state, inputs) are added to the running sum. Saved activations come from autograd's
saved-tensor hooks on the real run, each storage once, parameters and buffers left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch._C._autograd import DeviceType

MEMORY_EVENT = "[memory]"


@dataclass(frozen=True)
class Real:
    """Bytes a real cpu run needed."""

    peak: int  # live bytes at the worst moment, the bytes live at the start included
    start: int  # bytes live when the profile started
    saved: int  # bytes autograd saved for backward (0 for inference)
    gradients: int


def storage_bytes(tensors: Iterator[torch.Tensor] | list[torch.Tensor]) -> int:
    """Bytes of the distinct storages of `tensors`."""
    seen: dict[int, int] = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


@contextmanager
def allocations() -> Iterator[list[int]]:
    """Profile the block; afterwards the list holds the peak of the running sum of every
    allocation (+) and free (−) the cpu allocator recorded in it, relative to its start."""
    result: list[int] = []
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        yield result
    records = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == MEMORY_EVENT and e.device_type() == DeviceType.CPU
    )
    live = peak = 0
    for _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
    result.append(peak)


def floating(output: Any) -> list[torch.Tensor]:
    """The floating tensors of a forward's output that backward can start from."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() and output.requires_grad else []
    if isinstance(output, list | tuple):
        return [t for item in output for t in floating(item)]
    if isinstance(output, dict):
        return [t for item in output.values() for t in floating(item)]
    return []


def train_step(
    model: nn.Module,
    make_inputs: Callable[[], tuple[Any, ...]],
    optimizer: torch.optim.Optimizer | None,
    autocast: torch.dtype | None = None,
    train: bool = True,
) -> Real:
    """One training step on cpu after a first that made the optimizer's state, as the meta
    trace runs it: forward (under cpu autocast to `autocast`, if given), the sum of the
    floating outputs, backward, optimizer step; with `train` off, in eval mode."""
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer is not None:
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
        for p in params:
            p.grad = None
    model.train(train)
    inputs = make_inputs()
    state = [
        t
        for s in (optimizer.state.values() if optimizer is not None else ())
        for t in s.values()
        if isinstance(t, torch.Tensor) and t.dim() > 0
    ]
    weights = [*model.parameters(), *model.buffers()]
    excluded = {t.untyped_storage().data_ptr() for t in weights}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in excluded:
            seen.setdefault(s.data_ptr(), s.nbytes())
        return t

    start = storage_bytes([*weights, *state, *(i for i in inputs if isinstance(i, torch.Tensor))])
    with allocations() as peak:
        with (
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
            torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None),
        ):
            output = model(*inputs)
        parts = floating(output)
        loss = parts[0].sum()
        for part in parts[1:]:
            loss = loss + part.sum()
        del output, parts
        torch.autograd.backward(loss)
        del loss
        gradients = storage_bytes([p.grad for p in params if p.grad is not None])
        if optimizer is not None:
            optimizer.step()
    for p in params:
        p.grad = None
    return Real(peak=start + peak[0], start=start, saved=sum(seen.values()), gradients=gradients)


def inference(model: nn.Module, make_inputs: Callable[[], tuple[Any, ...]]) -> Real:
    """One forward in eval mode under no_grad on cpu."""
    model.eval()
    inputs = make_inputs()
    weights = [*model.parameters(), *model.buffers()]
    start = storage_bytes([*weights, *(i for i in inputs if isinstance(i, torch.Tensor))])
    with torch.no_grad(), allocations() as peak:
        output = model(*inputs)
        del output
    return Real(peak=start + peak[0], start=start, saved=0, gradients=0)
