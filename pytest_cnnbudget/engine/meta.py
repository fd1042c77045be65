"""What a build on the meta device needs besides `torch.device("meta")`: initializers' fills
skipped and device moves kept on meta, some imports run off meta, and, for the fallback, weights
moved to meta as they are registered and the constructor's own tensors meeting them on meta.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_mod
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, is_lazy
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

# In-place random fills that initializers call and whose meta kernel is written in Python. The
# first call of such a kernel in a process imports torch._dynamo: about 0.8 s, more than
# building a 7B model takes. On meta there is nothing to fill, so the fill is skipped; the same
# call on a one-element cpu tensor (C++ kernels) still rejects what a real build would reject.
_FILLS = frozenset(
    {
        Tensor.normal_,
        Tensor.log_normal_,
        Tensor.exponential_,
        Tensor.cauchy_,
        Tensor.geometric_,
        # Not random: trunc_normal_'s later steps, whose meta kernels are Python in older
        # releases (2.8).
        Tensor.erfinv_,
        Tensor.clamp_,
        # Dispatches on its own, so the mode would not see the normal_ inside it.
        nn.init.normal_,
    }
)


# Device moves of a whole tensor. Factories often end with `model.to(device)` or `.cuda()`
# (every open_clip model does): a meta tensor has no data to copy out, and on a machine without
# a GPU the move would fail in CUDA's initialization before that. Kept on meta, the move costs
# nothing and still applies its dtype, since bytes are counted per dtype.
_MOVES = frozenset(
    getattr(Tensor, name) for name in ("to", "cuda", "cpu", "xpu", "mtia") if hasattr(Tensor, name)
)


class SkipFillsOnMeta(TorchFunctionMode):
    """Return meta tensors unchanged from random fills and from `torch.eye(out=t)` (`eye_`),
    and keep them on meta when they are moved to another device."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func in _MOVES:
            moved = _move_on_meta(func, args, kwargs)
            if moved is not None:
                return moved
        if func in _FILLS:
            key = "tensor" if "tensor" in kwargs else "self"
            tensor = args[0] if args else kwargs.get(key)
            operands = [*args[1:], *(v for k, v in kwargs.items() if k != key)]
            if (
                isinstance(tensor, Tensor)
                and tensor.is_meta
                and not is_lazy(tensor)
                # clamp_(min=t): the stand-in could not meet a tensor operand on its device.
                and not any(isinstance(v, Tensor) for v in operands)
            ):
                kwargs.pop("generator", None)  # a real generator must not advance
                stand_in = torch.empty(1, dtype=tensor.dtype, device="cpu")
                if args:
                    func(stand_in, *args[1:], **kwargs)
                else:
                    func(**{**kwargs, key: stand_in})
                return tensor
        if func is torch.eye:
            out = kwargs.get("out")
            rows = args[0] if args else kwargs.get("n")
            cols = args[1] if len(args) > 1 else kwargs.get("m", rows)
            if isinstance(out, Tensor) and out.is_meta and tuple(out.shape) == (rows, cols):
                return out
        return func(*args, **kwargs)


def _move_on_meta(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Tensor | None:
    """A meta tensor's move to another device, made a move to meta with the dtype, copy and
    memory format asked for. None for anything else (a real tensor, a `to` that names no other
    device), which runs as is.

    An uninitialized lazy parameter has no data either, wherever it is (the fallback leaves it
    on cpu), so it stays where it is too: moved to another device, `Module._apply` would
    replace it with a plain, empty `Parameter`.
    """
    tensor = args[0] if args else None
    if not isinstance(tensor, Tensor) or not (tensor.is_meta or is_lazy(tensor)):
        return None
    here = tensor.device
    if func is not Tensor.to:
        # cuda(device, non_blocking, memory_format), cpu(memory_format): no dtype to apply.
        memory_format = kwargs.get("memory_format", torch.preserve_format)
        return tensor.to(here, memory_format=memory_format)
    rest = list(args[1:])
    options = dict(kwargs)
    copy = bool(options.pop("copy", False))
    # `copy` is the argument after non_blocking in each form of to(), which _parse_to rejects:
    # to(device, dtype, non_blocking, copy), to(dtype, non_blocking, copy), to(other, …).
    copy_at = 2 if rest and isinstance(rest[0], torch.dtype | Tensor) else 3
    if len(rest) > copy_at:
        copy = bool(rest.pop(copy_at))
    # A bare index names the current accelerator, which torch 2.6 cannot resolve on a machine
    # without one; for this purpose any index is simply a device other than the tensor's own.
    other = "meta" if here.type != "meta" else "cpu"
    if rest and isinstance(rest[0], int) and not isinstance(rest[0], bool):
        rest[0] = other
    if isinstance(options.get("device"), int) and not isinstance(options["device"], bool):
        options["device"] = other
    device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*rest, **options)
    if device is None or device == here:
        return None
    return tensor.to(
        here,
        dtype,
        non_blocking,
        copy,
        memory_format=torch.preserve_format if memory_format is None else memory_format,
    )


# Imported during a build under `torch.device("meta")`, a module's import-time tensors would be
# made on meta. torch._dynamo's are computed on (torch 2.8 runs ops on them at import, which
# fail there), and a model library imports it lazily the first time a model is built
# (transformers' GenerationMixin). Its import, alone, runs as outside the build.
_IMPORTED_OFF_META = frozenset({"torch._dynamo"})


class _ImportsOffMeta(importlib.abc.MetaPathFinder):
    """Finds the modules of _IMPORTED_OFF_META as usual and runs them under `torch.device("cpu")`
    (the default device an import outside the build would see)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _IMPORTED_OFF_META:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _OffMetaLoader(spec.loader)
        return spec


class _OffMetaLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with torch.device("cpu"):
            self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, is_package …
        if name == "_loader":  # not set yet (a copy): no recursion
            raise AttributeError(name)
        return getattr(self._loader, name)


@contextmanager
def imports_off_meta() -> Iterator[None]:
    """While a build runs on meta, import the modules of _IMPORTED_OFF_META as outside it."""
    finder = _ImportsOffMeta()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        # A constructor may have replaced sys.meta_path; its own error must not be hidden.
        with suppress(ValueError):
            sys.meta_path.remove(finder)


# Their constructors take a device and a dtype, which torch's stubs do not say.
_LAZY_PARAMETER: Any = UninitializedParameter
_LAZY_BUFFER: Any = UninitializedBuffer


@dataclass
class Registered:
    """What the fallback moved to meta: the parameters' bytes, which a build on cpu would
    allocate at least."""

    bytes: int = 0


@contextmanager
def registered_on_meta() -> Iterator[Registered]:
    """Move every parameter and buffer to meta the moment a module registers it.

    Tensors the constructor makes for its own arithmetic stay real, so code that reads values
    back (`.tolist()`, `.item()`) works. Layer weights come from `torch.empty`, whose pages are
    never touched before they move, so no full-size allocation reaches resident memory.
    """
    registered = Registered()

    def param_hook(module: nn.Module, name: str, param: Any) -> Any:
        if param is None or param.device.type == "meta":
            return None
        if is_lazy(param):  # materialized on meta by the forward pass, as on a meta build
            return _LAZY_PARAMETER(param.requires_grad, device="meta", dtype=param.dtype)
        registered.bytes += param.numel() * param.element_size()
        return type(param)(param.to("meta"), requires_grad=param.requires_grad)

    def buffer_hook(module: nn.Module, name: str, buffer: Any) -> Any:
        if buffer is None or buffer.device.type == "meta":
            return None
        if is_lazy(buffer):
            return _LAZY_BUFFER(device="meta", dtype=buffer.dtype)
        return buffer.to("meta")

    handles = [
        module_mod.register_module_parameter_registration_hook(param_hook),
        module_mod.register_module_buffer_registration_hook(buffer_hook),
    ]
    try:
        yield registered
    finally:
        for handle in handles:
            handle.remove()


# Operations that take an argument on cpu whatever device their data is on: the lengths of
# pack_padded_sequence. Mixed, they run as they are.
_CPU_ARGUMENTS = frozenset({"aten::_pack_padded_sequence"})
# Arguments an operation writes without its schema saying so: batch norm's running statistics,
# updated in training.
_RUNNING = frozenset({"running_mean", "running_var"})


# TorchDispatchMode's __init_subclass__ and __init__ carry no annotations.
class MetaMeetsReal(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Run on meta an operation that meets both meta tensors and real ones.

    In the fallback the weights are on meta and the constructor's own tensors are real, and a
    constructor that runs its model forward to size a head (YOLO's stride probe, a backbone's
    feature widths) sends a real tensor through meta weights, which torch refuses. On meta the
    operation gives what the probe reads, the output's shape, and a value it computes from
    shapes (`torch.tensor([256 / y.shape[-2]])`) stays real. A value read from a meta result
    still fails, as it should: it would depend on weights that are never made.

    Writing into a real tensor what was computed with meta ones cannot be done (the real tensor
    would have to lose its values): such an operation raises, saying so. An operation on real
    tensors alone, or on meta ones alone, runs as it is.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Else torch wraps __torch_dispatch__ in dynamo's `disable`, whose first call imports
        # torch._dynamo (about 0.8 s); nothing is compiled while a model is built.
        return False

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if not _mixed(args, kwargs) or func._schema.name in _CPU_ARGUMENTS:
            return func(*args, **kwargs)
        bound = _bound(func, args, kwargs)
        for argument in func._schema.arguments:
            written = argument.alias_info is not None and argument.alias_info.is_write
            written |= argument.name in _RUNNING and bool(bound.get("training"))
            value = bound[argument.name]
            if written and any(
                isinstance(t, Tensor) and not t.is_meta for t in tree_flatten(value)[0]
            ):
                raise RuntimeError(
                    f"{func} writes into a real tensor ({argument.name}) a value computed from "
                    "meta tensors (the model's weights, which have no data while it builds on meta)"
                )
        flat, spec = tree_flatten((args, dict(kwargs)))
        flat = [t.to("meta") if isinstance(t, Tensor) and not t.is_meta else t for t in flat]
        args, moved = tree_unflatten(flat, spec)
        return func(*args, **moved)


def meta_meets_real(module: nn.Module) -> AbstractContextManager[Any]:
    """MetaMeetsReal for a pass over `module` on meta, where the module keeps a real tensor
    outside its parameters and buffers (a plain attribute, such as YOLO's strides after the
    fallback or a cpu build); else nothing, since a dispatch mode costs every operation a call
    into Python (a tenth more time for a 7B model's memory trace)."""
    return MetaMeetsReal() if _holds_real(module) else nullcontext()


# Where nn.Module keeps its own tensors and children, which a pass replaces or visits itself.
_MODULE_STATE = frozenset({"_parameters", "_buffers", "_modules"})


def _holds_real(module: nn.Module) -> bool:
    # An LSTM lists its own weights again (`_flat_weights`): those a pass replaces.
    own = {id(t) for t in (*module.parameters(), *module.buffers())}
    for m in module.modules():
        for name, value in vars(m).items():
            if name in _MODULE_STATE:
                continue
            if isinstance(value, dict):
                value = list(value.values())
            for v in value if isinstance(value, list | tuple) else (value,):
                if isinstance(v, Tensor) and not v.is_meta and id(v) not in own:
                    return True
    return False


def _mixed(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """Whether an operation's arguments hold meta and real tensors both. Tensors are arguments
    or in lists of them, one level deep: the common case, no meta, costs one pass."""
    meta = real = False
    for value in (*args, *kwargs.values()):
        for t in value if isinstance(value, list | tuple) else (value,):
            if isinstance(t, Tensor):
                if t.is_meta:
                    meta = True
                else:
                    real = True
                if meta and real:
                    return True
    return False


def _bound(func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Each schema argument's value by name, positional or by keyword (None where left out)."""
    names = [a.name for a in func._schema.arguments]
    bound: dict[str, Any] = dict.fromkeys(names)
    bound.update(zip(names, args, strict=False))
    bound.update((name, value) for name, value in kwargs.items() if name in bound)
    return bound
