"""The optimizer a traced training step runs: made from the memory options, primed so that its
state exists before the step, and stepped, each on meta tensors. Pure.

Every step of a training run but the first starts with the optimizer's state already made, so
`prime` runs one step on zero gradients before the step that is traced.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from ..errors import MemoryTraceError, exception_text
from ..results import MemoryOptions

# The optimizer is made and stepped under it: tensors made without a device go to the cpu, as in
# a real training loop, whatever device context the caller measures in (a model built and
# checked inside `with torch.device("meta"):`). Older torch (2.8, for one) makes an optimizer's
# step counters with `torch.tensor(0.0)` and no device, and 2.8 imports torch._dynamo when the
# first optimizer is made, whose import-time tensors fail on meta.
_HOST = torch.device("cpu")


def make_optimizer(
    options: MemoryOptions, params: list[torch.Tensor]
) -> torch.optim.Optimizer | None:
    """The optimizer the step runs, over the trainable parameters; None for "none" or when
    nothing is trainable."""
    name = options.optimizer
    if name == "none" or not params:
        return None
    kwargs = dict(options.optimizer_kwargs)
    with _HOST:
        if name == "adamw":
            return torch.optim.AdamW(params, **kwargs)
        if name == "adam":
            return torch.optim.Adam(params, **kwargs)
        if name == "sgd":
            return torch.optim.SGD(params, **{"lr": 0.01, **kwargs})
        if name == "sgd_momentum":
            return torch.optim.SGD(params, **{"lr": 0.01, "momentum": 0.9, **kwargs})
        cls = optimizer_class(name)
        try:
            return cls(params, **kwargs)
        except Exception as e:
            raise MemoryTraceError(f"optimizer {name} could not be made: {first_line(e)}") from e


def optimizer_class(target: str) -> type[torch.optim.Optimizer]:
    """The optimizer class a `"pkg.mod:Class"` target names; MemoryTraceError says why not."""
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:
        raise MemoryTraceError(f"optimizer {target} cannot be imported: {first_line(e)}") from e
    if not (isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)):
        raise MemoryTraceError(
            f"optimizer {target} is {_kind(obj)}, not a torch.optim.Optimizer subclass"
        )
    return obj


def prime(optimizer: torch.optim.Optimizer | None, params: list[torch.Tensor]) -> list[Any]:
    """Make the optimizer's state with one step on zero gradients; its meta tensors."""
    if optimizer is None:
        return []
    for p in params:
        p.grad = torch.zeros_like(p)
    try:
        optimizer_step(optimizer)
    finally:
        for p in params:
            p.grad = None
    # The step counters torch keeps on the cpu (a 4-byte scalar each) hold no memory on the
    # device the model trains on.
    return [
        t
        for s in optimizer.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor) and t.device.type == "meta"
    ]


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """One optimizer step; MemoryTraceError where it fails on meta tensors."""
    try:
        with _HOST:
            optimizer.step()
    except Exception as e:
        raise MemoryTraceError(
            f"the optimizer step ({type(optimizer).__name__}) failed on meta tensors: "
            f"{first_line(e)}"
        ) from e


def first_line(error: BaseException) -> str:
    """`error` as a trace failure quotes it: its type and the first line of its message."""
    return exception_text(error).splitlines()[0] if str(error) else type(error).__name__


def _kind(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__module__}.{obj.__qualname__}"
    return f"a {type(obj).__name__}"
