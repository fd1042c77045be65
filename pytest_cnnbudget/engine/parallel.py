"""A model as one rank of a multi-device training run holds it: the real `torch.distributed`
wrappers applied under a fake process group of the run's world size. Pure (no collective
leaves the process).

torch's fake process group (backend "fake") answers every collective at once without moving
data, so `parallelize_module`, `fully_shard` and `DistributedDataParallel` set a model up
exactly as they do on rank 0 of a real run: the same shards, the same buffers, the same hooks.
The model is a copy on meta; it is wrapped there, and materialized as fake tensors (meta
storage, a real device) because FSDP2 refuses to train meta parameters.

Rank 0 is the rank traced: torch splits a dimension that does not divide evenly by giving the
first ranks one more row, so rank 0 holds at least as much as any other.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import MemoryTraceError

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

    from ..ranks import ParallelOptions

# One fake world at a time in a process: a process group is process-wide state.
_WORLD = threading.Lock()
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_TP_MODULES = (nn.Linear, nn.Embedding)


@contextmanager
def fake_world(world_size: int) -> Iterator[None]:
    """A fake default process group of `world_size` ranks, this process rank 0, for the block."""
    import torch.distributed as dist

    if not dist.is_available():
        raise MemoryTraceError(
            f"parallel: this torch ({torch.__version__}) is built without torch.distributed"
        )
    try:
        from torch.testing._internal.distributed.fake_pg import FakeStore
    except ImportError as e:
        raise MemoryTraceError(
            f"parallel: this torch ({torch.__version__}) has no fake process group to trace "
            "a rank with (torch 2.6 or newer has)"
        ) from e
    with _WORLD:
        if dist.is_initialized():
            raise MemoryTraceError(
                "parallel: a process group is already initialized in this process; the "
                "per-rank trace needs one of its own (measure outside the distributed run)"
            )
        dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world_size)
        try:
            yield
        finally:
            dist.destroy_process_group()


# What each part of a run needs from torch.distributed, and the release that brought it.
_NEEDS = {
    "fsdp": ("torch.distributed.fsdp", "fully_shard", "FSDP2's fully_shard", "2.6"),
    "hsdp": ("torch.distributed.fsdp", "fully_shard", "FSDP2's fully_shard", "2.6"),
    "tp": (
        "torch.distributed.tensor.parallel",
        "parallelize_module",
        "tensor parallel's parallelize_module",
        "2.5",
    ),
    "mesh": ("torch.distributed.device_mesh", "init_device_mesh", "DeviceMesh", "2.4"),
}


def check_available(options: ParallelOptions) -> None:
    """MemoryTraceError, naming the key, when the installed torch lacks what the run uses."""
    wanted = [("strategy", "mesh"), ("strategy", options.strategy)]
    if options.tensor_parallel > 1:
        wanted.append(("tensor_parallel", "tp"))
    for key, part in wanted:
        if part not in _NEEDS:
            continue
        module, name, what, release = _NEEDS[part]
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            value = options.strategy if key == "strategy" else options.tensor_parallel
            raise MemoryTraceError(
                f"parallel.{key}: {value!r} needs {what} ({module}, torch {release} or newer), "
                f"which this torch ({torch.__version__}) lacks"
            ) from e


def device_mesh(options: ParallelOptions) -> DeviceMesh:
    """The mesh of the run: data-parallel dimensions (replicate, shard), then tensor parallel."""
    from torch.distributed.device_mesh import init_device_mesh

    shape: list[int] = []
    names: list[str] = []
    if options.strategy == "hsdp":
        shape += [options.replicate, options.shard]
        names += ["dp_replicate", "dp_shard"]
    else:
        shape.append(options.data_parallel)
        names.append("dp")
    shape.append(options.tensor_parallel)
    names.append("tp")
    return init_device_mesh("cpu", tuple(shape), mesh_dim_names=tuple(names))


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` whose parameters and buffers are meta tensors of the same shapes and
    dtypes: the wrappers change the module they wrap, never the caller's, and nothing of a
    model built on a real device is copied but its structure."""
    memo: dict[int, Any] = {}
    for p in module.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)
    for b in module.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(module, memo)


def pattern_names(module: nn.Module, pattern: str) -> list[str]:
    """The names of `module`'s submodules `pattern` matches: `*` stands for one name part."""
    regex = re.compile(".".join("[^.]+" if p == "*" else re.escape(p) for p in pattern.split(".")))
    return [name for name, _ in module.named_modules() if name and regex.fullmatch(name)]


def apply_tensor_parallel(module: nn.Module, options: ParallelOptions, mesh: DeviceMesh) -> None:
    """`parallelize_module` over the mesh's tp dimension with the plan's styles."""
    if options.tensor_parallel == 1:
        return
    from torch.distributed.tensor.parallel import parallelize_module

    plan: dict[str, Any] = {}
    matched_by: dict[str, str] = {}
    for pattern, style in options.tp_plan:
        for name in matching(module, pattern, "parallel.tp_plan"):
            if name in matched_by:
                raise MemoryTraceError(
                    f"parallel.tp_plan: {matched_by[name]!r} and {pattern!r} both match "
                    f"{name}; give each module one style"
                )
            matched_by[name] = pattern
            plan[name] = _style(name, module.get_submodule(name), style, pattern)
    parallelize_module(module, mesh["tp"], plan)


def matching(module: nn.Module, pattern: str, key: str) -> list[str]:
    """`pattern_names`, or MemoryTraceError naming `key` and the closest module names."""
    names = pattern_names(module, pattern)
    if names:
        return names
    every = [name for name, _ in module.named_modules() if name]
    # Block indices as `*`, as a plan writes them: `blocks.*.attn.q_proj`, once, not per block.
    patterns = list(dict.fromkeys(_generalized(name) for name in every))
    close = difflib.get_close_matches(pattern, patterns, n=3, cutoff=0.5)
    hint = f"; close: {', '.join(close)}" if close else ""
    raise MemoryTraceError(
        f"{key}: {pattern!r} matches no module (`*` stands for one whole name part{hint})"
    )


def _generalized(name: str) -> str:
    return ".".join("*" if part.isdigit() else part for part in name.split("."))


def _style(name: str, sub: nn.Module, style: str, pattern: str) -> Any:
    """torch's ParallelStyle for one tp_plan entry, checked against the module it splits."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    if not isinstance(sub, _TP_MODULES):
        raise MemoryTraceError(
            f"parallel.tp_plan: {pattern!r} matches {name}, a {type(sub).__name__}; tensor "
            "parallel splits nn.Linear and nn.Embedding modules"
        )
    embedding = isinstance(sub, nn.Embedding)
    if style.startswith("vocab") and not embedding:
        raise MemoryTraceError(
            f"parallel.tp_plan: {pattern!r} = {style!r} splits an embedding by vocabulary, "
            f"and {name} is a {type(sub).__name__}; use colwise or rowwise"
        )
    if style == "rowwise" and embedding:
        # torch's RowwiseParallel takes its input split on the last dimension, which for
        # token ids is the sequence, not the vocabulary.
        raise MemoryTraceError(
            f"parallel.tp_plan: {pattern!r} = 'rowwise' on the embedding {name} would split "
            "its token ids along the sequence; use 'vocab' (split by vocabulary, output "
            "whole) or 'vocab_sequence' (output split along the sequence)"
        )
    if style == "vocab":
        return RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate())
    if style == "vocab_sequence":
        return RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1))
    if style == "colwise_replicate":
        return ColwiseParallel(output_layouts=Replicate())
    return ColwiseParallel() if style == "colwise" else RowwiseParallel()


def repeated_blocks(module: nn.Module) -> list[str]:
    """The children of every outermost container (ModuleList, Sequential) that holds two or
    more modules of one class with parameters: a transformer's layers, a ResNet's blocks."""
    found: list[str] = []
    for name, sub in module.named_modules():
        inside = any(name == b or name.startswith(f"{b}.") for b in found)
        if inside or not isinstance(sub, nn.ModuleList | nn.Sequential):
            continue
        owning = [(n, c) for n, c in sub.named_children() if any(True for _ in c.parameters())]
        kinds = [type(c) for _, c in owning]
        if len(kinds) >= 2 and len(set(kinds)) < len(kinds):
            prefix = f"{name}." if name else ""
            found += [f"{prefix}{child}" for child, _ in owning]
    return found


def apply_fully_shard(module: nn.Module, options: ParallelOptions, mesh: DeviceMesh) -> None:
    """FSDP2's `fully_shard` on each wrapped block, then the model (HSDP: over a 2-D mesh)."""
    if options.strategy == "ddp" or options.data_parallel == 1:
        return
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    dp = mesh["dp_replicate", "dp_shard"] if options.strategy == "hsdp" else mesh["dp"]
    kwargs: dict[str, Any] = {"mesh": dp, "reshard_after_forward": options.reshard_after_forward}
    if options.mixed_precision is not None:
        kwargs["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=_DTYPES[options.mixed_precision], reduce_dtype=torch.float32
        )
    if options.wrap is None:
        names = repeated_blocks(module)
    else:
        names = []
        for pattern in options.wrap:
            matched = matching(module, pattern, "parallel.wrap")
            names += [n for n in matched if n not in names]
    for name in sorted(names, key=lambda n: -n.count(".")):  # innermost first, as FSDP2 wants
        fully_shard(module.get_submodule(name), **kwargs)
    fully_shard(module, **kwargs)


def data_parallel(module: nn.Module, options: ParallelOptions, mesh: DeviceMesh) -> nn.Module:
    """`module` under DistributedDataParallel, for a ddp run; else itself. Its parameters must
    be materialized (fake) already: DDP reads them when it is made."""
    if options.strategy != "ddp" or options.data_parallel == 1:
        return module
    import torch.nn.parallel.distributed as ddp

    # Three things a single process with a fake group cannot do as a real run does, each
    # without a bearing on memory: compare parameter shapes with the other ranks (reads
    # data), take the result of the default all-reduce (the fake group's work has none; the
    # hook below all-reduces the bucket in place as the default does), and rebuild the
    # buckets after the first step in the order gradients came (it exchanges the order as
    # data; the buckets keep their sizes).
    verify = ddp._verify_param_shape_across_processes  # type: ignore[attr-defined]
    ddp._verify_param_shape_across_processes = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    try:
        wrapped = ddp.DistributedDataParallel(module, process_group=mesh["dp"].get_group())
    finally:
        ddp._verify_param_shape_across_processes = verify  # type: ignore[attr-defined]
    wrapped.register_comm_hook(options.data_parallel, _all_reduce_in_place)
    wrapped.reducer = _NoRebuild(wrapped.reducer)  # type: ignore[assignment]
    return wrapped


# DDP refuses a hook whose bucket is annotated as anything but dist.GradBucket, and this
# module's annotations are strings: the bucket goes unannotated.
def _all_reduce_in_place(world: int, bucket):  # type: ignore[no-untyped-def]
    import torch.distributed as dist

    buffer = bucket.buffer()
    buffer.div_(world)
    dist.all_reduce(buffer)
    done: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    done.set_result(buffer)
    return done


class _NoRebuild:
    """DDP's reducer, but for rebuilding its buckets, which it is told there is no need for."""

    def __init__(self, reducer: Any) -> None:
        self._reducer = reducer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reducer, name)

    def _rebuild_buckets(self) -> bool:
        return False


def gathered_storages(module: nn.Module) -> list[Any]:
    """The storages FSDP2 gathers each wrapped block's parameters whole into, for its forward
    and backward (resized to nothing between them, kept across steps)."""
    out = []
    for sub in module.modules():
        state = getattr(sub, "_get_fsdp_state", None)
        group = getattr(state(), "_fsdp_param_group", None) if state is not None else None
        for param in getattr(group, "fsdp_params", ()):
            for t in getattr(param, "all_gather_outputs", ()):
                out.append(t.untyped_storage())
            unsharded = getattr(param, "_unsharded_param", None)
            if isinstance(unsharded, torch.Tensor):
                out.append(unsharded.untyped_storage())
    return out


def uneven(module: nn.Module) -> int:
    """Parameters whose shards differ in size across ranks (a dimension the degree does not
    divide): rank 0 holds the larger piece."""
    from torch.distributed.tensor import DTensor, Shard

    count = 0
    for p in module.parameters():
        if not isinstance(p, DTensor):
            continue
        for dim_size, placement in zip(p.device_mesh.shape, p.placements, strict=True):
            if isinstance(placement, Shard) and p.shape[placement.dim] % dim_size:
                count += 1
                break
    return count
