"""One training step and one inference pass traced on meta tensors → the bytes they need. Pure.

Autograd and the optimizers run on meta tensors as they do on real ones, so a step can be
traced without allocating any of it: every tensor an operation makes is seen by a dispatch mode
as it is made, and freed when its storage dies (a weak reference to the storage says when), so
the live bytes are known after every operation, and their peak over the step. Autograd's
saved-tensor hooks see each tensor saved for backward as it is saved.

What makes the figures match a real run rather than meta's own shortcuts:

- `scaled_dot_product_attention` is traced as the fused kernel that cpu and CUDA pick for it
  (it saves the output and a log-sum-exp per row), not the math path meta takes, which would
  keep a batch × heads × L × L matrix alive for backward;
- `autocast` ("bf16", "fp16") is applied by this module, since torch's autocast leaves meta
  tensors alone: matrix products, convolutions and attention take their floating inputs in the
  lower precision (a leaf weight cast once per forward, as autocast caches it), and the ops
  CUDA's autocast runs in float32 (normalization, softmax, losses) take float32 inputs;
- the step is a step after the first: the optimizer's state exists before it starts, as in
  every step of a training run but the first, whose peak is lower.

Left out, because no tensor owns them: workspaces kernels allocate for themselves (cpu
convolutions, cuBLAS), allocator rounding and the CUDA context. README's "Memory" says by how
much a real run differs.
"""

from __future__ import annotations

import importlib
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..constants import ROOT_NAME
from ..errors import MemoryTraceError, exception_text
from ..results import Memory, MemoryOptions
from .explain import Call, explain_failure
from .profiler import tensors, token_ids

if TYPE_CHECKING:
    from ..inputs import InputSpec
    from .counting import ModelLike

AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}  # config.AUTOCAST → torch's dtype names
LOSS = "the sum of every floating-point tensor the forward returns"


def measure_memory(model: ModelLike, inputs: InputSpec, options: MemoryOptions) -> Memory:
    """Trace one inference pass and one training step of `model` on meta tensors of the shapes
    `inputs` gives; the model's own tensors, modes and flags are as they were afterwards.

    The model's parameters and buffers stand in as meta tensors of their shapes and dtypes (the
    model itself if it was built on meta), so a model on cpu is neither changed nor copied.
    """
    from .counting import as_module

    _check_torch()
    module = as_module(model)
    view = _MetaView(module)
    dtype = view.floating_dtype()
    lower = getattr(torch, AUTOCAST[options.autocast]) if options.autocast else None
    weights = _bytes(view.tensors)
    trainable = [t for t in view.params if t.requires_grad]
    with _HOST:
        optimizer = _optimizer(options, trainable)
    training = {m: m.training for m in module.modules()}
    try:
        peak_inference = _inference(view, inputs, dtype, lower)
        state = _prime(optimizer, trainable)
        module.train(options.train_mode)
        step = _train_step(view, inputs, dtype, lower, optimizer, state)
    finally:
        for m, flag in training.items():
            m.training = flag
        for t in trainable:
            t.grad = None
    return Memory(
        weights=weights,
        gradients=step.gradients,
        optimizer=_bytes(state),
        activations=sum(step.saved.values()),
        peak_train=step.peak,
        peak_inference=peak_inference,
        options=options,
        saved=tuple((name, step.saved[name]) for name in view.names if step.saved.get(name)),
    )


@cache
def _check_torch() -> None:
    """Refuse a torch whose storages get a new Python object on every `untyped_storage()` call:
    the trace keeps weak references to storages to see them freed, which such a torch (2.1)
    does not support (a weak reference to a storage there crashes the process)."""
    probe = torch.empty(1, device="meta")
    if probe.untyped_storage() is not probe.untyped_storage():
        raise MemoryTraceError(
            f"memory budgets need a newer torch than {torch.__version__}: its storages keep no "
            "single Python object, which tracing their lifetimes needs (README, Which torch, "
            "gives the supported releases)"
        )


# -- what runs --------------------------------------------------------------------------


class _MetaView:
    """The model's tensors as meta tensors, and a call that runs it on them."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.names = [name or ROOT_NAME for name, _ in module.named_modules()]
        named = [*module.named_parameters(), *module.named_buffers()]
        self.on_meta = all(t.device.type == "meta" for _, t in named)
        if self.on_meta:
            self.stand_ins: dict[str, torch.Tensor] = {}
            self.params: list[torch.Tensor] = list(module.parameters())
            self.tensors = [*self.params, *module.buffers()]
        else:
            # Meta copies the step can give gradients to and update in place; the model's own
            # tensors are never touched.
            self.stand_ins = {
                name: torch.empty_like(t, device="meta").requires_grad_(t.requires_grad)
                for name, t in named
            }
            self.params = [self.stand_ins[name] for name, _ in module.named_parameters()]
            self.tensors = list(self.stand_ins.values())

    def floating_dtype(self) -> torch.dtype:
        return next((t.dtype for t in self.tensors if t.is_floating_point()), torch.float32)

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.on_meta:
            return self.module(*args, **kwargs)
        from torch.func import functional_call

        return functional_call(self.module, self.stand_ins, args, kwargs)


def _inputs(inputs: InputSpec, dtype: torch.dtype) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args = tuple(torch.empty(s, device="meta", dtype=dtype) for s in inputs.args)
    kwargs = {n: torch.empty(s, device="meta", dtype=dtype) for n, s in inputs.kwargs}
    return args, kwargs


def _inference(
    view: _MetaView, inputs: InputSpec, dtype: torch.dtype, lower: torch.dtype | None
) -> int:
    """The peak of live bytes over one forward in eval mode under no_grad (and autocast)."""
    view.module.eval()
    live = _Live(view.tensors)
    recorder = _Recorder(view)
    with live, torch.no_grad(), recorder.hooks(), _Policy(lower), warnings.catch_warnings():
        # Reentrant checkpointing warns that nothing requires grad, which under no_grad is
        # the point; a project's -W error must not turn the pass into a failure.
        warnings.filterwarnings("ignore", module="torch.utils.checkpoint")
        try:
            args, kwargs = _inputs(inputs, dtype)
            output = view(args, kwargs)
        except Exception as e:
            raise recorder.failure("the inference pass", inputs, e) from e
        del output, args, kwargs
    return live.peak


@dataclass
class _Step:
    peak: int
    gradients: int
    saved: dict[str, int]


def _train_step(
    view: _MetaView,
    inputs: InputSpec,
    dtype: torch.dtype,
    lower: torch.dtype | None,
    optimizer: torch.optim.Optimizer | None,
    state: list[torch.Tensor],
) -> _Step:
    """Forward, backward and optimizer step, with the live bytes traced throughout."""
    live = _Live([*view.tensors, *state])
    recorder = _Recorder(view, watch_backward=True)
    saved = _Saved(live.known)
    with live, torch.enable_grad():
        try:
            args, kwargs = _inputs(inputs, dtype)
            with recorder.hooks(), saved.hooks(recorder), _Policy(lower):
                output = view(args, kwargs)
            loss = _loss(output)
        except MemoryTraceError:
            raise
        except Exception as e:
            raise recorder.failure("the training forward pass", inputs, e) from e
        # A training loop keeps the loss and its batch through backward and the step, not
        # the outputs.
        del output
        try:
            torch.autograd.backward(loss)
        except Exception as e:
            where = f"module {recorder.in_backward}" if recorder.in_backward else "the model"
            op = str(live.failing) if live.failing is not None else _op(e)
            raise MemoryTraceError(
                f"backward on meta tensors failed in {where}, at {op}: {_message(e)}"
            ) from e
        del loss
        gradients = _bytes([p.grad for p in view.params if p.grad is not None])
        if optimizer is not None:
            try:
                with _HOST:
                    optimizer.step()
            except Exception as e:
                raise MemoryTraceError(
                    f"the optimizer step ({type(optimizer).__name__}) failed on meta tensors: "
                    f"{_message(e)}"
                ) from e
    return _Step(live.peak, gradients, saved.by_module)


def _loss(output: Any) -> torch.Tensor:
    """What backward starts from: the sum of every floating output that requires grad."""
    parts = [t.sum() for t in tensors(output) if t.is_floating_point() and t.requires_grad]
    if not parts:
        raise MemoryTraceError(
            "the forward returned no floating-point tensor that requires grad, so there is "
            f"nothing to backpropagate (the loss traced is {LOSS}); have it return the "
            "logits or the loss"
        )
    loss = parts[0]
    for part in parts[1:]:
        loss = loss + part.to(loss.dtype)
    return loss


# -- the optimizer ------------------------------------------------------------------------


def _optimizer(options: MemoryOptions, params: list[torch.Tensor]) -> torch.optim.Optimizer | None:
    """The optimizer the step runs, over the trainable parameters; None for "none" or when
    nothing is trainable."""
    name = options.optimizer
    if name == "none" or not params:
        return None
    kwargs = dict(options.optimizer_kwargs)
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
        raise MemoryTraceError(f"optimizer {name} could not be made: {_message(e)}") from e


# The optimizer is made and stepped under it: tensors made without a device go to the cpu, as in
# a real training loop, whatever device context the caller measures in (a model built and
# checked inside `with torch.device("meta"):`). Older torch (2.8, for one) makes an optimizer's
# step counters with `torch.tensor(0.0)` and no device, and 2.8 imports torch._dynamo when the
# first optimizer is made, whose import-time tensors fail on meta.
_HOST = torch.device("cpu")


def optimizer_class(target: str) -> type[torch.optim.Optimizer]:
    """The optimizer class a `"pkg.mod:Class"` target names; MemoryTraceError says why not."""
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:
        raise MemoryTraceError(f"optimizer {target} cannot be imported: {_message(e)}") from e
    if not (isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)):
        raise MemoryTraceError(
            f"optimizer {target} is {_kind(obj)}, not a torch.optim.Optimizer subclass"
        )
    return obj


def _prime(optimizer: torch.optim.Optimizer | None, params: list[torch.Tensor]) -> list[Any]:
    """Make the optimizer's state with one step on zero gradients; its meta tensors."""
    if optimizer is None:
        return []
    for p in params:
        p.grad = torch.zeros_like(p)
    try:
        with _HOST:
            optimizer.step()
    except Exception as e:
        raise MemoryTraceError(
            f"the optimizer step ({type(optimizer).__name__}) failed on meta tensors: {_message(e)}"
        ) from e
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


# -- the tracing --------------------------------------------------------------------------


def _storage(t: torch.Tensor) -> Any | None:
    try:
        return t.untyped_storage()
    except Exception:  # sparse and nested tensors have no single storage
        return None


def _bytes(tensors: list[Any]) -> int:
    """Bytes of the distinct storages of `tensors`: a view or a tied weight counts once."""
    seen: dict[int, int] = {}
    for t in tensors:
        storage = _storage(t)
        if storage is not None:
            seen[storage._cdata] = storage.nbytes()
    return sum(seen.values())


_BATCH_NORM = torch.ops.aten.native_batch_norm.default


class _Live(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Live bytes of meta storages after every operation, and their peak; `start` (the
    weights, the optimizer's state) is live from the beginning."""

    def __init__(self, start: list[torch.Tensor]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.sizes: dict[int, int] = {}
        self.refs: dict[int, weakref.ref[Any]] = {}
        self.live = 0
        self.peak = 0
        self.failing: Any = None
        for t in start:
            self.add(t)

    @property
    def known(self) -> frozenset[int]:
        """The storages live now, by key."""
        return frozenset(self.sizes)

    def add(self, t: Any) -> None:
        """Count `t`'s storage if it is a meta storage not yet counted (or one that grew)."""
        if not isinstance(t, torch.Tensor) or t.device.type != "meta":
            return
        storage = _storage(t)
        if storage is None:
            return
        key, size = storage._cdata, storage.nbytes()
        old = self.sizes.get(key)
        if old == size:
            return
        if old is None:
            self.refs[key] = weakref.ref(storage, partial(self._free, key))
        self.sizes[key] = size
        self.live += size - (old or 0)  # a storage can grow (resize_, out= arguments)
        self.peak = max(self.peak, self.live)

    def _free(self, key: int, _ref: object) -> None:
        self.live -= self.sizes.pop(key, 0)
        self.refs.pop(key, None)

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self.failing = func  # until it returns: the op an error came from
        out = func(*args, **(kwargs or {}))
        self.failing = None
        if func is _BATCH_NORM and not args[5]:
            # Not training, the cpu and CUDA kernels return no batch statistics (empty tensors)
            # but meta's returns them channel-sized, and autograd would save them.
            out = (out[0], out[1].new_empty(0), out[2].new_empty(0))
        for t in tree_flatten(out)[0]:  # tree_leaves is newer than torch 2.1
            self.add(t)
        return out


@dataclass
class _Recorder:
    """Which of the model's modules is running: saved tensors are put down to it, and a
    failure names it."""

    view: _MetaView
    stack: list[tuple[str, nn.Module]] = field(default_factory=list)
    trail: list[Call] = field(default_factory=list)
    # The module whose outputs' gradients backward reached last: where a backward failure is.
    in_backward: str | None = None
    watch_backward: bool = False
    watched: set[Any] = field(default_factory=set)

    @property
    def running(self) -> str:
        return self.stack[-1][0] if self.stack else ROOT_NAME

    @contextmanager
    def hooks(self) -> Iterator[None]:
        handles = []
        for name, m in zip(self.view.names, self.view.module.modules(), strict=True):
            handles.append(m.register_forward_pre_hook(partial(self._enter, name)))
            handles.append(m.register_forward_hook(partial(self._leave, name)))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _enter(self, name: str, module: nn.Module, args: Any) -> Any:
        self.stack.append((name, module))
        return token_ids(module, args)

    def _leave(self, name: str, module: nn.Module, args: Any, output: Any) -> None:
        while self.stack and self.stack[-1][1] is not module:
            self.stack.pop()  # a submodule whose error the model caught
        if self.stack:
            self.stack.pop()
        self.trail.append(Call(name, module, None, None))
        if self.watch_backward:
            node = next((t.grad_fn for t in tensors(output) if t.grad_fn is not None), None)
            # The innermost module returns first: a parent returning its child's output as
            # its own leaves the node to the child.
            if node is not None and node not in self.watched:
                self.watched.add(node)
                node.register_prehook(partial(self._reached, name))

    def _reached(self, name: str, grad_outputs: Any) -> None:
        self.in_backward = name

    def failure(self, what: str, inputs: InputSpec, error: Exception) -> MemoryTraceError:
        running = [Call(name, m, None, None) for name, m in self.stack]
        explained = explain_failure(running, self.trail, inputs, error)
        return MemoryTraceError(f"{what} on meta tensors failed: {explained}")


class _Saved:
    """Bytes of the storages autograd saves for backward, each once, by the module saving it."""

    def __init__(self, excluded: frozenset[int]) -> None:
        self.excluded = excluded  # the weights' and the optimizer's storages
        self.seen: dict[int, Any] = {}
        self.by_module: dict[str, int] = {}

    @contextmanager
    def hooks(self, recorder: _Recorder) -> Iterator[None]:
        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = _storage(t) if t.device.type == "meta" else None
            if storage is not None:
                key = storage._cdata
                prior = self.seen.get(key)
                if key not in self.excluded and (prior is None or prior() is None):
                    self.seen[key] = weakref.ref(storage)
                    name = recorder.running
                    self.by_module[name] = self.by_module.get(name, 0) + storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
            yield


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


# -- attention and autocast ----------------------------------------------------------------


# Where CUDA's autocast runs an op in the lower precision, and where in float32.
_LOWER = {
    F.linear,
    F.bilinear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.conv_transpose1d,
    F.conv_transpose2d,
    F.conv_transpose3d,
    F.prelu,
    torch.matmul,
    torch.mm,
    torch.bmm,
    torch.addmm,
    torch.baddbmm,
    torch.addbmm,
    torch.einsum,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.Tensor.mm,
    torch.Tensor.bmm,
    F.scaled_dot_product_attention,
}
_FP32 = {
    F.layer_norm,
    F.group_norm,
    F.softmax,
    F.log_softmax,
    torch.softmax,
    torch.log_softmax,
    torch.Tensor.softmax,
    torch.Tensor.log_softmax,
    F.cross_entropy,
    F.nll_loss,
    F.mse_loss,
    F.l1_loss,
    F.smooth_l1_loss,
    F.binary_cross_entropy_with_logits,
    F.kl_div,
    F.softplus,
    F.cosine_similarity,
    torch.cdist,
}
if hasattr(F, "rms_norm"):
    _FP32.add(F.rms_norm)
# Re-entering this mode for the functions written in Python that a mode call runs; recent
# torch releases only.
_REDISPATCH = getattr(torch.overrides, "redispatch_function", None)


class _Policy(TorchFunctionMode):
    """Fused attention, and autocast's casts when `dtype` is a lower precision."""

    def __init__(self, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.dtype = dtype
        self.cache: dict[int, torch.Tensor] = {}  # leaf weights cast, as autocast caches

    def cast(self, value: Any, to: torch.dtype, only: tuple[torch.dtype, ...]) -> Any:
        if isinstance(value, torch.Tensor):
            if not value.is_floating_point() or value.dtype == to or value.dtype not in only:
                return value
            if value.is_leaf and value.requires_grad:
                cached = self.cache.get(id(value))
                if cached is None:
                    cached = self.cache[id(value)] = value.to(to)
                return cached
            return value.to(to)
        if isinstance(value, list | tuple):
            return type(value)(self.cast(v, to, only) for v in value)
        return value

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.dtype is not None and func in _LOWER:
            args = self.cast(args, self.dtype, (torch.float32, torch.float64))
            kwargs = {k: self.cast(v, self.dtype, (torch.float32,)) for k, v in kwargs.items()}
        elif self.dtype is not None and func in _FP32:
            args = self.cast(args, torch.float32, (torch.float16, torch.bfloat16))
        if func is F.scaled_dot_product_attention:
            fused = _fused_attention(*args, **kwargs)
            if fused is not None:
                return fused
        if _REDISPATCH is not None and getattr(func, "__module__", "") == F.__name__:
            # Functions written in Python (multi_head_attention_forward) call others, which
            # this mode should see too; torch's own calls are not re-entered.
            with self:
                return _REDISPATCH(func, types, args, kwargs)
        return func(*args, **kwargs)


def _fused_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor | None:
    """Attention as cpu's fused (flash) kernel computes it, on meta; None where that kernel
    would not be chosen (dropout, grouped heads, a mask with causal, odd layouts)."""
    tensors = (query, key, value)
    if (
        dropout_p
        or enable_gqa
        or (attn_mask is not None and is_causal)
        or any(not isinstance(t, torch.Tensor) or t.device.type != "meta" for t in tensors)
        or any(t.dim() != 4 or t.stride(-1) != 1 for t in tensors)
        or not (query.size(-1) == key.size(-1) == value.size(-1))
        or not (query.dtype == key.dtype == value.dtype)
        or (attn_mask is not None and attn_mask.dim() not in (2, 4))
    ):
        return None
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        # As the kernel's caller does: a boolean mask becomes an additive one.
        attn_mask = torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill_(
            attn_mask.logical_not(), float("-inf")
        )
    try:
        output, _ = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, is_causal, attn_mask=attn_mask, scale=scale
        )
    except (RuntimeError, TypeError, NotImplementedError):
        return None  # a torch without the kernel's meta function: the math path
    return output  # type: ignore[no-any-return]


# -- small things -------------------------------------------------------------------------


def _op(error: BaseException) -> str:
    """The aten operation an error came from, as far as its message says."""
    text = _message(error)
    for word in text.replace("'", " ").replace('"', " ").split():
        if word.startswith(("aten.", "aten::")):
            return word.rstrip(".,:")
    return "an operation with no meta implementation"


def _message(error: BaseException) -> str:
    return exception_text(error).splitlines()[0] if str(error) else type(error).__name__


def _kind(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__module__}.{obj.__qualname__}"
    return f"a {type(obj).__name__}"
