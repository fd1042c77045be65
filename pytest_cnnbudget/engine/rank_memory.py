"""One rank's training step and inference pass, traced on fake tensors → the bytes it needs.
No collective leaves the process; the trace runs in a forked child (apart.py).

The model is wrapped as rank 0 of the run wraps it (parallel.py) and traced by the same
machinery as a single device (memory.py): a first step, untraced, makes the optimizer's state,
FSDP2's buffers and DDP's buckets, as the first step of a run does; the second is the one
measured. Every storage is put down to one of the parts a rank holds (results.PEAK_PARTS), so
the peak can be told as what it is made of:

- weights, optimizer state: the rank's shards, live from the start;
- gradients: what autograd accumulates into the parameters, and FSDP2's reduce-scatter
  output, which becomes the rank's sharded gradients;
- gathered: the storages FSDP2 all-gathers a block's parameters into;
- communication: the other buffers a collective reads or writes (the all-gather's flat
  buffer, the reduce-scatter's input, DDP's gradient buckets);
- activations: everything else: what autograd saves, and the temporaries of the running op.

What a real run allocates outside any tensor (NCCL's own buffers, the caching allocator's
rounding) is not here; docs/parallel.md gives its usual size.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import MemoryTraceError
from ..ranks import PEAK_PARTS, ParallelOptions, RankMemory
from ..results import Memory, MemoryOptions
from .apart import apart
from .counting import as_module
from .live import Live, plain
from .memory import AUTOCAST, MetaView, check_torch, inference_peak, traced_memory, train_step
from .optimizer import first_line, make_optimizer
from .parallel import (
    apply_fully_shard,
    apply_tensor_parallel,
    check_available,
    data_parallel,
    device_mesh,
    fake_world,
    gathered_storages,
    meta_copy,
    uneven,
)
from .profiler import tensors

if TYPE_CHECKING:
    from ..inputs import InputSpec
    from .counting import ModelLike

_OTHER = PEAK_PARTS[-1]


def measure_rank_memory(model: ModelLike, inputs: InputSpec, options: MemoryOptions) -> Memory:
    """Trace one training step and one inference pass of rank 0 of the run `options.parallel`
    describes, on a fake-tensor copy of `model`, which is left as it was; in a forked child
    (apart.py), which leaves this process as it was too."""
    check_torch()
    if options.parallel is None:
        raise ValueError("measure_rank_memory needs MemoryOptions.parallel")
    module = as_module(model)
    return apart(partial(_measure, module, inputs, options), "the per-rank memory trace")


def _measure(model: nn.Module, inputs: InputSpec, options: MemoryOptions) -> Memory:
    parallel = options.parallel
    assert parallel is not None
    # A forked child remakes torch's thread pool on first use. Where the parent set a number of
    # threads (the gate's checker sets 1), each of the autograd device threads a backward on
    # fake tensors starts sets it again, all at once, and they race to remake the pool (one
    # finds none: "Invalid thread pool!"). Remade here first, on this one thread; torch's own
    # function, which the checker replaces for models' calls.
    torch._C.set_num_threads(torch.get_num_threads())
    module = meta_copy(model)
    lower = getattr(torch, AUTOCAST[options.autocast]) if options.autocast else None
    from torch._subclasses.fake_tensor import FakeTensorMode

    check_available(parallel)  # here, in the child: the caller imports none of it
    with fake_world(parallel.world_size), warnings.catch_warnings():
        # The wrappers' advice (FSDP2 on a root returning a view) is about training the
        # model, not its memory; a project's -W error must not make it a failure here.
        warnings.filterwarnings("ignore", module="torch.distributed")
        with _wrapping(parallel):
            mesh = device_mesh(parallel)
            apply_tensor_parallel(module, parallel, mesh)
            apply_fully_shard(module, parallel, mesh)
        with FakeTensorMode(allow_non_fake_inputs=True):
            with _wrapping(parallel):
                module.to_empty(device="cpu")
                runner = data_parallel(module, parallel, mesh)
            view = MetaView(module, runner)
            dtype = view.floating_dtype()
            trainable = [p for p in view.params if p.requires_grad]
            optimizer = make_optimizer(options, trainable)
            live = _RankLive(view.tensors)
            hooks = [
                p.register_post_accumulate_grad_hook(live.gradient)  # type: ignore[no-untyped-call]
                for p in trainable
            ]
            try:
                module.train(options.train_mode)
                with _heads_hint(parallel):
                    train_step(view, inputs, dtype, lower, optimizer, live)  # the first step
                _zero_grad(trainable)
                state = _state(optimizer)
                live.steady(state, gathered_storages(module))
                step = train_step(view, inputs, dtype, lower, optimizer, live)
                _zero_grad(trainable)
                # Serving holds the weights, not the optimizer's state or DDP's buckets.
                inference = _RankLive(view.tensors)
                inference.steady([], gathered_storages(module))
                peak_inference = inference_peak(view, inputs, dtype, lower, inference)
            finally:
                for hook in hooks:
                    hook.remove()
    return traced_memory(
        view,
        step,
        state,
        peak_inference,
        options,
        rank=RankMemory(
            options=parallel,
            at_peak=tuple((part, live.parts_at_peak.get(part, 0)) for part in PEAK_PARTS),
            gathered_peak=live.gathered_peak,
            uneven=uneven(module),
        ),
    )


# What a forward that reshapes by the model's head count says when a rank holds fewer heads.
_RESHAPE = "is invalid for input of size"


@contextmanager
def _heads_hint(parallel: ParallelOptions) -> Iterator[None]:
    """A reshape that fails under tensor parallel, with what usually causes it."""
    try:
        yield
    except MemoryTraceError as e:
        if parallel.tensor_parallel == 1 or _RESHAPE not in str(e):
            raise
        raise MemoryTraceError(
            f"{e}\nhint: under tensor_parallel {parallel.tensor_parallel} a colwise layer "
            f"gives each rank 1/{parallel.tensor_parallel} of its outputs; reshape attention "
            "by head size, view(b, t, -1, head_dim), not by the model's head count "
            "(docs/parallel.md)"
        ) from e


@contextmanager
def _wrapping(parallel: ParallelOptions) -> Iterator[None]:
    """A wrapper's failure (torch's DDP refusing a model with nothing to train, a plan torch
    cannot apply) as a trace error naming the strategy."""
    try:
        yield
    except MemoryTraceError:
        raise
    except Exception as e:
        raise MemoryTraceError(
            f"parallel.strategy: {parallel.strategy!r} could not wrap the model: {first_line(e)}"
        ) from e


def _zero_grad(params: list[torch.Tensor]) -> None:
    for p in params:
        p.grad = None


def _state(optimizer: torch.optim.Optimizer | None) -> list[torch.Tensor]:
    if optimizer is None:
        return []
    return [
        t
        for s in optimizer.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor) and t.dim() > 0  # step counters live on the host
    ]


# The collectives as torch.distributed dispatches them (c10d) and as its functional form does
# (DTensor's redistributions, under _c10d_functional).
_COLLECTIVES = ("c10d", "_c10d_functional")
_WAIT = torch.ops._c10d_functional.wait_tensor.default


class _RankLive(Live):  # type: ignore[no-untyped-call]
    """Live bytes, each storage put down to a part, and the parts at the peak."""

    device = "cpu"  # inputs made under the fake mode are fake tensors on the cpu

    def __init__(self, start: list[torch.Tensor]) -> None:
        self.part: dict[int, str] = {}
        self.by_part: dict[str, int] = dict.fromkeys(PEAK_PARTS, 0)
        self.parts_at_peak: dict[str, int] = {}
        self.gathered: set[int] = set()
        self.gathered_peak = 0
        # When each live storage was first counted, and how many had been at the last peak:
        # a storage put down to another part after the peak moves in `parts_at_peak` too.
        self.born: dict[int, int] = {}
        self.counted = 0
        self.counted_at_peak = 0
        self._resize: Any = None
        super().__init__(start)
        for key in self.sizes:
            self.retag(key, "weights")

    def steady(self, state: list[torch.Tensor], gathered: list[Any]) -> None:
        """After the first step: the optimizer's state and FSDP2's gather storages are known,
        and the peak starts again from what is live now."""
        for t in state:
            self.tag(t, "optimizer")
        for storage in gathered:
            self.gathered.add(storage._cdata)
            if storage._cdata in self.sizes:
                self.retag(storage._cdata, "gathered")
        self.peak = self.live
        self.gathered_peak = self.by_part["gathered"]
        self.at_peak()

    @property
    def known(self) -> frozenset[int]:
        # What a step saves of the weights gathered whole is no activation either.
        return frozenset(self.sizes) | frozenset(self.gathered)

    def add_storage(self, storage: Any) -> None:
        key = storage._cdata
        old = self.sizes.get(key, 0)
        if key not in self.part:
            self.part[key] = "gathered" if key in self.gathered else _OTHER
        if key not in self.sizes:
            self.counted += 1
            self.born[key] = self.counted
        self.by_part[self.part[key]] += storage.nbytes() - old
        super().add_storage(storage)
        if self.part[key] == "gathered":
            self.gathered_peak = max(self.gathered_peak, self.by_part["gathered"])

    def at_peak(self) -> None:
        self.parts_at_peak = dict(self.by_part)
        self.counted_at_peak = self.counted

    def freed(self, key: int, size: int) -> None:
        part = self.part.pop(key, None)
        self.born.pop(key, None)
        if part is not None:
            self.by_part[part] -= size

    def retag(self, key: int, part: str) -> None:
        """Put the storage `key` (live) down to `part`."""
        old = self.part.get(key)
        if old == part or key not in self.sizes:
            return
        size = self.sizes[key]
        if old is not None:
            self.by_part[old] -= size
            if self.born.get(key, self.counted_at_peak + 1) <= self.counted_at_peak:
                # Live at the peak (nothing freed it since): the peak held it as `part`.
                self.parts_at_peak[old] -= size
                self.parts_at_peak[part] = self.parts_at_peak.get(part, 0) + size
        self.by_part[part] += size
        self.part[key] = part

    def tag(self, t: torch.Tensor, part: str, keep: tuple[str, ...] = ()) -> None:
        """Count `t`'s storages (a DTensor's local shard) and put them down to `part`, unless
        they are already down to one of `keep`."""
        for inner in plain(t):
            self.add(inner)
            key = inner.untyped_storage()._cdata
            if self.part.get(key) not in keep:
                self.retag(key, part)

    def gradient(self, param: torch.Tensor) -> None:
        """Autograd accumulated `param`'s gradient (a post-accumulate-grad hook)."""
        if param.grad is not None:
            self.tag(param.grad, "gradients")

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func is _WAIT:
            # Eager, waiting on a collective returns the tensor it waited on; fake, a new
            # one, which would count the collective's output twice while both live. Nothing
            # is in flight under the fake group: the tensor is the answer.
            return args[0]
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if func.namespace in _COLLECTIVES:
            self._collective(func, args, out)
        return out

    def _collective(self, func: Any, args: tuple[Any, ...], out: Any) -> None:
        """Put the buffers of a collective down to communication; a reduce-scatter's output
        is the rank's gradient shard (FSDP2 hands it to the parameters as their grads)."""
        reduce_scatter = "reduce_scatter" in func.__name__
        for i, arg in enumerate(args):
            part = "gradients" if reduce_scatter and i == 0 else "communication"
            for t in tensors(arg):
                self.tag(t, part, keep=("weights", "optimizer", "gathered", "gradients"))

    def __enter__(self) -> _RankLive:
        # FSDP2 frees and re-allocates the storages it gathers parameters into by resizing
        # them, which no dispatch mode sees.
        self._resize = resize = torch.UntypedStorage.resize_
        live = self

        def resize_(storage: Any, size: int) -> Any:
            result = resize(storage, size)
            if storage._cdata in live.sizes or size:
                live.add_storage(storage)
            return result

        super().__enter__()  # type: ignore[no-untyped-call]
        torch.UntypedStorage.resize_ = resize_  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        torch.UntypedStorage.resize_ = self._resize  # type: ignore[method-assign]
        super().__exit__(*exc)  # type: ignore[no-untyped-call]
