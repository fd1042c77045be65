"""One training step and one inference pass traced on meta tensors → the bytes they need. Pure.

Autograd and the optimizers run on meta tensors as they do on real ones, so a step can be
traced without allocating any of it: every tensor an operation makes is seen by a dispatch mode
as it is made, and freed when its storage dies (a weak reference to the storage says when), so
the live bytes are known after every operation, and their peak over the step. Autograd's
saved-tensor hooks see each tensor saved for backward as it is saved.

What makes the figures match a real run rather than meta's own shortcuts:

- `scaled_dot_product_attention` is traced as the fused kernel that cpu and CUDA pick for it,
  not the math path meta takes, and `autocast` ("bf16", "fp16") is applied here, since torch's
  leaves meta tensors alone (autocast.py);
- the step is a step after the first: the optimizer's state exists before it starts, as in
  every step of a training run but the first, whose peak is lower (optimizer.py).

Left out, because no tensor owns them: workspaces kernels allocate for themselves (cpu
convolutions, cuBLAS), allocator rounding and the CUDA context. docs/budgets.md's "Memory"
says by how much a real run differs.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from ..constants import ROOT_NAME
from ..errors import MemoryTraceError
from ..ranks import RankMemory
from ..results import Memory, MemoryOptions
from .autocast import Policy
from .counting import as_module
from .explain import Call, explain_failure
from .live import Live, distinct_bytes, is_fake, plain, storage_of
from .meta import meta_meets_real
from .optimizer import first_line, make_optimizer, optimizer_step, prime
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
    check_torch()
    module = as_module(model)
    view = MetaView(module)
    dtype = view.floating_dtype()
    lower = getattr(torch, AUTOCAST[options.autocast]) if options.autocast else None
    trainable = [t for t in view.params if t.requires_grad]
    optimizer = make_optimizer(options, trainable)
    training = {m: m.training for m in module.modules()}
    try:
        # Outside the trace's own mode, so that a plain attribute's real tensor moved to meta
        # is not counted as an allocation: a real run has it on its device from the start.
        with meta_meets_real(module):
            peak_inference = inference_peak(view, inputs, dtype, lower)
            state = prime(optimizer, trainable)
            module.train(options.train_mode)
            step = train_step(view, inputs, dtype, lower, optimizer, Live([*view.tensors, *state]))
    finally:
        for m, flag in training.items():
            m.training = flag
        for t in trainable:
            t.grad = None
    return traced_memory(view, step, state, peak_inference, options)


def traced_memory(
    view: MetaView,
    step: Step,
    state: list[torch.Tensor],
    peak_inference: int,
    options: MemoryOptions,
    rank: RankMemory | None = None,
) -> Memory:
    """The figures of a traced step and inference pass (`rank`: one rank's parts besides)."""
    return Memory(
        weights=distinct_bytes(view.tensors),
        gradients=step.gradients,
        optimizer=distinct_bytes(state),
        activations=sum(step.saved.values()),
        peak_train=step.peak,
        peak_inference=peak_inference,
        options=options,
        saved=tuple((name, step.saved[name]) for name in view.names if step.saved.get(name)),
        rank=rank,
    )


@cache
def check_torch() -> None:
    """Refuse a torch whose storages get a new Python object on every `untyped_storage()` call:
    the trace keeps weak references to storages to see them freed, which such a torch (2.1)
    does not support (a weak reference to a storage there crashes the process)."""
    probe = torch.empty(1, device="meta")
    if probe.untyped_storage() is not probe.untyped_storage():
        raise MemoryTraceError(
            f"memory budgets need a newer torch than {torch.__version__}: its storages keep no "
            "single Python object, which tracing their lifetimes needs (docs/compatibility.md, "
            "gives the supported releases)"
        )


# -- what runs --------------------------------------------------------------------------


class MetaView:
    """The model's tensors as meta tensors, and a call that runs it on them.

    `runner` (a wrapper such as DDP's around the module) is what is called, when given; a
    module whose tensors are fake (a rank's, parallel.py) runs on them as they are."""

    def __init__(self, module: nn.Module, runner: nn.Module | None = None) -> None:
        self.module = module
        self.runner = runner or module
        self.names = [name or ROOT_NAME for name, _ in module.named_modules()]
        named = [*module.named_parameters(), *module.named_buffers()]
        self.on_meta = runner is not None or all(t.device.type == "meta" for _, t in named)
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
            return self.runner(*args, **kwargs)
        return functional_call(self.module, self.stand_ins, args, kwargs)


def _inputs(
    inputs: InputSpec, dtype: torch.dtype, device: str = "meta"
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args = tuple(torch.empty(s, device=device, dtype=dtype) for s in inputs.args)
    kwargs = {n: torch.empty(s, device=device, dtype=dtype) for n, s in inputs.kwargs}
    return args, kwargs


def inference_peak(
    view: MetaView,
    inputs: InputSpec,
    dtype: torch.dtype,
    lower: torch.dtype | None,
    live: Live | None = None,
) -> int:
    """The peak of live bytes over one forward in eval mode under no_grad (and autocast)."""
    view.runner.eval()
    live = live or Live(view.tensors)
    recorder = _Recorder(view)
    with live, torch.no_grad(), recorder.hooks(), Policy(lower), warnings.catch_warnings():
        # Reentrant checkpointing warns that nothing requires grad, which under no_grad is
        # the point; a project's -W error must not turn the pass into a failure.
        warnings.filterwarnings("ignore", module="torch.utils.checkpoint")
        try:
            args, kwargs = _inputs(inputs, dtype, live.device)
            output = view(args, kwargs)
        except MemoryTraceError:
            raise
        except Exception as e:
            raise recorder.failure("the inference pass", inputs, e) from e
        del output, args, kwargs
    return live.peak


@dataclass
class Step:
    peak: int
    gradients: int
    saved: dict[str, int]


def train_step(
    view: MetaView,
    inputs: InputSpec,
    dtype: torch.dtype,
    lower: torch.dtype | None,
    optimizer: torch.optim.Optimizer | None,
    live: Live,
) -> Step:
    """Forward, backward and optimizer step, with the live bytes traced throughout by `live`
    (which counts the weights and the optimizer's state from the start)."""
    recorder = _Recorder(view, watch_backward=True)
    saved = _Saved(live.known)
    with live, torch.enable_grad():
        try:
            args, kwargs = _inputs(inputs, dtype, live.device)
            with recorder.hooks(), saved.hooks(recorder), Policy(lower):
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
                f"backward on meta tensors failed in {where}, at {op}: {first_line(e)}"
            ) from e
        del loss
        gradients = distinct_bytes([p.grad for p in view.params if p.grad is not None])
        if optimizer is not None:
            optimizer_step(optimizer)
    return Step(live.peak, gradients, saved.by_module)


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


def _op(error: BaseException) -> str:
    """The aten operation an error came from, as far as its message says."""
    text = first_line(error)
    for word in text.replace("'", " ").replace('"', " ").split():
        if word.startswith(("aten.", "aten::")):
            return word.rstrip(".,:")
    return "an operation with no meta implementation"


# -- the recording ---------------------------------------------------------------------


@dataclass
class _Recorder:
    """Which of the model's modules is running: saved tensors are put down to it, and a
    failure names it."""

    view: MetaView
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
            if t.device.type == "meta" or is_fake(t):
                self._count(storage_of(t), recorder)
            elif is_traceable_wrapper_subclass(t):  # a DTensor: its local shard is saved
                for inner in plain(t):
                    if is_fake(inner) or inner.device.type == "meta":
                        self._count(storage_of(inner), recorder)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
            yield

    def _count(self, storage: Any | None, recorder: _Recorder) -> None:
        if storage is None:
            return
        key = storage._cdata
        prior = self.seen.get(key)
        if key not in self.excluded and (prior is None or prior() is None):
            self.seen[key] = weakref.ref(storage)
            name = recorder.running
            self.by_module[name] = self.by_module.get(name, 0) + storage.nbytes()


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t
