"""One forward pass on meta tensors: every module's output shape and multiply-adds. Pure.

The pass runs on the meta device, so it computes nothing and allocates nothing: a 7B model
profiles in about the time its constructor takes. Multiply-adds come from torch's own
`FlopCounterMode`, which counts a matrix product of (m×k)·(k×n) as 2·m·k·n FLOPs, so
MACs = FLOPs // 2 (the convention behind torchvision's published "GFLOPS", which count MACs).
Only matrix products, convolutions and attention are counted; elementwise operations,
normalization, activations and pooling count as zero, as in the published figures.

Counts are attributed to modules by this module's own hooks, not by the names FlopCounterMode
keys its table with: those are class-name paths (`ResNet.layer1.0.conv1`) assigned by
traversal order, so a module shared by two parents, or one called without being registered,
ends up under a name that `named_modules()` never yields.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.parameter import is_lazy

from ..constants import ROOT_NAME
from ..errors import ProfileError
from ..inputs import InputSpec, Shape
from .counting import ModelLike, as_module
from .explain import Call, explain_failure
from .meta import meta_meets_real

if TYPE_CHECKING:
    from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModuleProfile:
    """What one module did in the forward pass.

    `output_shape` is the shape of the first call's output. For tuple, list or dict outputs
    (an LSTM's `(output, (h, c))`, attention's `(output, weights)`) it is the first tensor
    found depth-first, which by PyTorch convention is the main output. `macs` and `flops`
    include the module's submodules, over every call; `self_macs` and `self_flops` only count
    the operations its own `forward` runs outside any submodule, so they add up to the total.
    """

    name: str
    type: str
    calls: int
    output_shape: Shape | None
    macs: int
    flops: int
    self_macs: int
    self_flops: int


@dataclass(frozen=True)
class Profile:
    """Output shapes and multiply-adds of every module, in `named_modules()` order."""

    inputs: InputSpec
    output_shape: Shape | None
    macs: int
    flops: int
    modules: tuple[ModuleProfile, ...]  # modules that never ran are listed with calls == 0

    def module(self, name: str) -> ModuleProfile:
        """The entry of the module with this qualified name (`"(root)"` for the model)."""
        for entry in self.modules:
            if entry.name == name:
                return entry
        raise KeyError(name)


@dataclass
class _Frame:
    """A module call that has started and not yet returned, with its FLOP bookkeeping."""

    name: str
    module: nn.Module
    input_shape: Shape | None  # of the first tensor among its arguments
    flops_at_entry: int
    child_flops: int = 0


@dataclass
class _Tally:
    calls: int = 0
    output_shape: Shape | None = None
    flops: int = 0
    self_flops: int = 0


@dataclass
class _Recorder:
    names: dict[int, str]
    tallies: dict[str, _Tally] = field(default_factory=dict)
    stack: list[_Frame] = field(default_factory=list)
    trail: list[Call] = field(default_factory=list)


def profile(model: ModelLike, inputs: InputSpec) -> Profile:
    """Run `model` once on meta tensors of the given shapes; record output shapes and MACs.

    The model should be built on meta (`build_model` does that). A model on another device is
    run with meta stand-ins for its parameters and buffers, so it is neither changed nor
    copied. Lazy modules (`LazyLinear`, `LazyConv2d`, …) are materialized by this pass, on
    meta, after which `count_parameters` can count them. Inputs are meta tensors of the
    model's floating dtype; an `Embedding` that receives one gets it as int64, since token ids
    are all an embedding takes. The pass runs in eval mode with the model's tensors not
    requiring grad; every module's training flag and every tensor's `requires_grad` are restored
    afterwards.
    """
    with warnings.catch_warnings():
        # torch warns once, on first import of its tensor subclasses, when NumPy is absent;
        # counting never needs NumPy, and projects running with -W error must not fail on it.
        warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
        from torch.utils.flop_counter import FlopCounterMode

    module = as_module(model)
    tensors = [*module.parameters(), *module.buffers()]
    on_meta = all(t.device.type == "meta" for t in tensors)
    args, kwargs = _meta_inputs(tensors, on_meta, inputs)

    # named_modules() yields a shared module once, under the name counting gives its row.
    named = [(name or ROOT_NAME, m) for name, m in module.named_modules()]
    recorder = _Recorder(names={id(m): name for name, m in named})
    counter = FlopCounterMode(display=False)
    training = {m: m.training for m in module.modules()}
    # Leaves only: a buffer computed from a parameter has a grad_fn and keeps its flag.
    needing_grad = [t for t in tensors if t.requires_grad and t.is_leaf]
    handles = []
    for _, m in named:
        handles.append(m.register_forward_pre_hook(_pre_hook(recorder, counter), with_kwargs=True))
        handles.append(m.register_forward_hook(_post_hook(recorder, counter)))
    try:
        module.eval()
        # Nothing requires grad, so no autograd graph is recorded, as under no_grad, which
        # cannot be used: FlopCounterMode's module tracker puts a grad hook on every module
        # input that requires grad, and under no_grad a view of a parameter (PiT's and CaiT's
        # class token, expanded) requires grad but has no grad_fn to hook, which it cannot
        # handle. Grad is enabled for tensors the forward itself makes requiring grad.
        # (Assigning the flag, not requires_grad_(): a lazy parameter refuses the method.)
        for t in needing_grad:
            t.requires_grad = False
        # A tensor the constructor kept as a plain attribute (YOLO's strides) is real on a
        # model built on cpu or by the fallback; it meets the meta ones on meta.
        with meta_meets_real(module), torch.enable_grad(), counter:
            output = module(*args, **kwargs) if on_meta else _call_on_meta(module, args, kwargs)
    except Exception as e:
        raise explain_failure(_running(recorder, e), recorder.trail, inputs, e) from e
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in training.items():
            m.training = flag
        for t in needing_grad:
            t.requires_grad = True

    flops = counter.get_total_flops()
    return Profile(
        inputs=inputs,
        output_shape=_first_shape(output),
        macs=flops // 2,
        flops=flops,
        modules=tuple(_module_profile(name, m, recorder.tallies) for name, m in named),
    )


def _meta_inputs(
    tensors: list[torch.Tensor], on_meta: bool, inputs: InputSpec
) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    """The pass's arguments: meta tensors of the shapes `inputs` gives, in the model's floating
    dtype (torch's default where it has none)."""
    if not on_meta and any(is_lazy(t) for t in tensors):
        raise ProfileError(
            "lazy modules are materialized only on the meta device here; "
            "build the model with device='meta' to profile it"
        )
    dtype = next(
        (t.dtype for t in tensors if t.is_floating_point() and not is_lazy(t)),
        torch.get_default_dtype(),
    )
    args = tuple(torch.empty(s, device="meta", dtype=dtype) for s in inputs.args)
    kwargs = {n: torch.empty(s, device="meta", dtype=dtype) for n, s in inputs.kwargs}
    return args, kwargs


def _module_profile(name: str, module: nn.Module, tallies: dict[str, _Tally]) -> ModuleProfile:
    """The entry of one module, from what the hooks tallied over its calls (none, if it never
    ran)."""
    tally = tallies.get(name, _Tally())
    return ModuleProfile(
        name=name,
        type=type(module).__name__,  # after materialization: Linear, not LazyLinear
        calls=tally.calls,
        output_shape=tally.output_shape,
        macs=tally.flops // 2,
        flops=tally.flops,
        self_macs=tally.self_flops // 2,
        self_flops=tally.self_flops,
    )


def _running(recorder: _Recorder, error: BaseException) -> list[Call]:
    """The model's module calls still running when `error` was raised, outermost first.

    Read from the traceback, which also holds a call that failed before its own pre-hook ran
    (in a global hook, such as FlopCounterMode's module tracker) and leaves out a call whose
    error the model caught. The recorder's frames give the input shapes, as the model saw them.
    """
    call_impl = nn.Module._call_impl.__code__
    shapes = {id(f.module): f.input_shape for f in recorder.stack}
    calls = []
    tb = error.__traceback__
    while tb is not None:
        local = tb.tb_frame.f_locals if tb.tb_frame.f_code is call_impl else {}
        module = local.get("self")
        name = recorder.names.get(id(module))
        if name is not None and isinstance(module, nn.Module):
            if id(module) in shapes:
                shape = shapes[id(module)]
            else:  # it failed before its pre-hook: its arguments, from its call
                shape = _first_shape((*local.get("args", ()), *local.get("kwargs", {}).values()))
            calls.append(Call(name, module, shape, None))
        tb = tb.tb_next
    return calls or [Call(f.name, f.module, f.input_shape, None) for f in recorder.stack]


def _call_on_meta(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call a model that lives on cpu/cuda with meta stand-ins for its tensors."""
    stand_ins = {
        name: torch.empty_like(t, device="meta")
        for name, t in (*module.named_parameters(), *module.named_buffers())
    }
    return functional_call(module, stand_ins, args, kwargs)


def _pre_hook(recorder: _Recorder, counter: FlopCounterMode) -> Callable[..., Any]:

    def hook(
        module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        name = recorder.names[id(module)]
        changed = None
        as_ids = token_ids(module, args)
        if as_ids is not None:
            args = as_ids
            changed = (args, kwargs)
        recorder.stack.append(
            _Frame(
                name,
                module,
                _first_shape((*args, *kwargs.values())),
                counter.get_total_flops(),
            )
        )
        return changed

    return hook


def _post_hook(recorder: _Recorder, counter: FlopCounterMode) -> Callable[..., Any]:
    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        # A model that catches an exception from a submodule leaves that frame behind;
        # unwind to this module's own frame.
        while recorder.stack and recorder.stack[-1].module is not module:
            recorder.stack.pop()
        if not recorder.stack:
            return
        frame = recorder.stack.pop()
        flops = counter.get_total_flops() - frame.flops_at_entry
        if recorder.stack:
            recorder.stack[-1].child_flops += flops
        tally = recorder.tallies.setdefault(frame.name, _Tally())
        out_shape = _first_shape(output)
        if tally.calls == 0:
            tally.output_shape = out_shape
        tally.calls += 1
        tally.flops += flops
        tally.self_flops += flops - frame.child_flops
        recorder.trail.append(Call(frame.name, module, frame.input_shape, out_shape))

    return hook


def token_ids(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """An embedding's arguments with a floating first one made int64, or None to keep them:
    the placeholder inputs are floating, and token ids never are."""
    if not isinstance(module, nn.Embedding | nn.EmbeddingBag) or not args:
        return None
    first = args[0]
    if not getattr(first, "is_floating_point", lambda: False)():
        return None
    return (first.long(), *args[1:])


def tensors(value: Any) -> Iterator[torch.Tensor]:
    """Tensors in `value`, depth-first through tuples, lists and dict values."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from tensors(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from tensors(item)


def _first_shape(value: Any) -> Shape | None:
    first = next(tensors(value), None)
    return None if first is None else tuple(int(d) for d in first.shape)
