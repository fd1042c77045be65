"""The optimizer a traced training step runs: made from the memory options, primed so that its
state exists before the step, and stepped, each on meta tensors. Pure.

Every step of a training run but the first starts with the optimizer's state already made, so
`prime` runs one step on zero gradients before the step that is traced.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any

import torch

from ..errors import MemoryTraceError, exception_text
from ..results import MemoryOptions
from ..units import brief, clip, listing

# The optimizer is made and stepped under it: tensors made without a device go to the cpu, as in
# a real training loop, whatever device context the caller measures in (a model built and
# checked inside `with torch.device("meta"):`). Older torch (2.8, for one) makes an optimizer's
# step counters with `torch.tensor(0.0)` and no device, and 2.8 imports torch._dynamo when the
# first optimizer is made, whose import-time tensors fail on meta.
_HOST = torch.device("cpu")


# The optimizers `optimizer` names: each one's class, and what the name adds to optimizer_kwargs.
_NAMED: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "adamw": (torch.optim.AdamW, {}),
    "adam": (torch.optim.Adam, {}),
    "sgd": (torch.optim.SGD, {"lr": 0.01}),
    "sgd_momentum": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
}


def make_optimizer(
    options: MemoryOptions, params: list[torch.Tensor]
) -> torch.optim.Optimizer | None:
    """The optimizer the step runs, over the trainable parameters; None for "none" or when
    nothing is trainable. One that cannot be made from `optimizer_kwargs` (a key it does not
    take, a value it refuses) is a MemoryTraceError naming the key or the optimizer: a failure
    of the memory trace, as docs/budgets.md's Memory has it, not of the model's build."""
    name = options.optimizer
    if name == "none" or not params:
        return None
    cls, defaults = _NAMED[name] if name in _NAMED else (optimizer_class(name), {})
    given = dict(options.optimizer_kwargs)
    unknown = _unknown_keys(cls, given)
    if unknown is not None:
        raise MemoryTraceError(unknown)
    shown = f"{name} ({_class_name(cls)})" if name in _NAMED else name
    try:
        with _HOST:
            return cls(params, **{**defaults, **given})
    except Exception as e:
        raise MemoryTraceError(
            f"optimizer {shown} could not be made from optimizer_kwargs {brief(given)}: "
            f"{first_line(e)}"
        ) from e


def _unknown_keys(cls: type[torch.optim.Optimizer], given: dict[str, Any]) -> str | None:
    """Why some keys of `given` are not keyword arguments of `cls`, or None: all are, or its
    signature takes any (`**kwargs`) or cannot be read."""
    try:
        parameters = list(inspect.signature(cls).parameters.values())[1:]  # after `params`
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    takes = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [key for key in given if key not in takes]
    if not unknown:
        return None
    keys = listing([brief(key) for key in unknown])
    if len(unknown) > 1:
        return (
            f"optimizer_kwargs: {keys} are not keyword arguments of {_class_name(cls)}; "
            f"it takes {listing(takes)}"
        )
    close = difflib.get_close_matches(str(unknown[0]), takes, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; it takes {listing(takes)}"
    return f"optimizer_kwargs: {keys} is not a keyword argument of {_class_name(cls)}{hint}"


def _class_name(cls: type) -> str:
    """`torch.optim.AdamW` for one of torch's optimizers, as their documentation names them;
    `package.module.Class` for any other."""
    if getattr(torch.optim, cls.__name__, None) is cls:
        return f"torch.optim.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


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
    """`error` as a trace failure quotes it: its type and the first line of its message,
    clipped."""
    return clip(exception_text(error).splitlines()[0]) if str(error) else type(error).__name__


def _kind(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__module__}.{obj.__qualname__}"
    return f"a {type(obj).__name__}"
