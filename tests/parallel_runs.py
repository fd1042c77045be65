"""Real multi-process training runs on the cpu (gloo), each rank's memory measured: what the
per-rank trace is checked against.

`python tests/parallel_runs.py WORLD OUT RUNS_JSON` starts WORLD processes; each sets its run
up as a user would (torch's own calls, none of the plugin's), trains two steps and writes
`OUT.RANK.json`: per run, the second step's peak of live bytes and the rank's shards of the
weights, gradients and optimizer state.

The peak is the cpu allocator's own process-wide count of live bytes, which it keeps (and
reports on each profiler memory event) once FLAGS_caffe2_report_cpu_memory_usage is set: gloo
frees collective buffers on its worker threads, where the profiler records no event, so a sum
of the events alone drifts upward; the allocator's count does not. `known_allocations` checks
the method on allocations of known sizes, one of them freed on another thread.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from nets import TokenMlp

from pytest_cnnbudget.engine.rank_memory import measure_rank_memory
from pytest_cnnbudget.inputs import InputSpec
from pytest_cnnbudget.ranks import ParallelOptions
from pytest_cnnbudget.results import Memory, MemoryOptions

VOCAB, WIDTH, DEPTH = 1000, 128, 4
BATCH = (4, 64)  # token ids per rank
# The tensor-parallel plan of every run with tensor_parallel, as a `parallel` table gives it.
PLAN = (
    ("embed", "vocab"),
    ("blocks.*.up", "colwise"),
    ("blocks.*.down", "rowwise"),
    ("head", "colwise_replicate"),
)


def trace(model: nn.Module | None = None, **parallel: Any) -> Memory:
    """The per-rank trace of `model` (TokenMlp as the runs build it, by default) at BATCH."""
    if model is None:
        with torch.device("meta"):
            model = TokenMlp(VOCAB, WIDTH, DEPTH)
    options = MemoryOptions(parallel=ParallelOptions(**parallel))
    return measure_rank_memory(model, InputSpec(args=(BATCH,)), options)


def report_allocations() -> None:
    """Have the cpu allocator count live bytes on every thread (a C10 flag; no Python API)."""
    lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libc10.so"))
    ctypes.c_bool.in_dll(lib, "FLAGS_caffe2_report_cpu_memory_usage").value = True


def allocator_peak(run: Callable[[], object]) -> tuple[int, int]:
    """The most live bytes of the process while `run` runs, and the count when it ends."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "trace.json")
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    if not totals:  # nothing allocated: one more allocation reads the count
        return allocator_peak(lambda: torch.empty(1))
    return max(totals), totals[-1]


def known_allocations() -> dict[str, int]:
    """Allocate 10 MB, free it on another thread, allocate 20 MB and free it: the peak must be
    20 MB and the count must end at what it started from."""
    kept: list[torch.Tensor] = []

    def run() -> None:
        kept.append(torch.empty(10_000_000, dtype=torch.uint8))
        worker = threading.Thread(target=kept.clear)
        worker.start()
        worker.join()
        twenty = torch.empty(20_000_000, dtype=torch.uint8)
        del twenty

    start = allocator_peak(lambda: torch.empty(1))[1]
    peak, end = allocator_peak(run)
    return {"start": start, "peak": peak, "end": end}


def _local(tensors: list[Any]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        t = getattr(t, "_local_tensor", t)
        storage = t.untyped_storage()
        seen[storage._cdata] = storage.nbytes()
    return sum(seen.values())


def setup(
    model: TokenMlp, run: dict[str, Any], world: int, device: str = "cpu"
) -> tuple[nn.Module, nn.Module]:
    """`model` (a TokenMlp on `device`) set up as the run's settings say, and what is called to
    train it: torch's own calls, as a user's training script makes them."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    strategy, tp = run["strategy"], run.get("tensor_parallel", 1)
    replicate = run.get("replicate", 1)
    if strategy == "hsdp":
        mesh = init_device_mesh(
            device,
            (replicate, world // replicate // tp, tp),
            mesh_dim_names=("rep", "shard", "tp"),
        )
        dp = mesh["rep", "shard"]
    else:
        mesh = init_device_mesh(device, (world // tp, tp), mesh_dim_names=("dp", "tp"))
        dp = mesh["dp"]
    if tp > 1:
        plan: dict[str, Any] = {
            "embed": RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate()),
            "head": ColwiseParallel(output_layouts=Replicate()),
        }
        for i in range(len(model.blocks)):
            plan[f"blocks.{i}.up"] = ColwiseParallel()
            plan[f"blocks.{i}.down"] = RowwiseParallel()
        parallelize_module(model, mesh["tp"], plan)
    if strategy == "ddp":
        return model, nn.parallel.DistributedDataParallel(model, process_group=dp.get_group())
    if world // tp > 1:
        kwargs: dict[str, Any] = {
            "mesh": dp,
            "reshard_after_forward": run.get("reshard_after_forward", True),
        }
        if run.get("mixed_precision") == "bf16":
            kwargs["mp_policy"] = MixedPrecisionPolicy(torch.bfloat16, torch.float32)
        for block in model.blocks:
            fully_shard(block, **kwargs)
        fully_shard(model, **kwargs)
    return model, model


def train(run: dict[str, Any], world: int) -> dict[str, int]:
    """Two steps of `run`; the second's peak counts from what the process held before the
    model was built (an earlier run's garbage collected first)."""
    gc.collect()
    before = allocator_peak(lambda: None)[1]
    torch.manual_seed(0)
    model, runner = setup(TokenMlp(VOCAB, WIDTH, DEPTH), run, world)
    optimizer = torch.optim.AdamW(model.parameters())
    ids = torch.randint(0, VOCAB, BATCH)
    grads: list[int] = []

    def step() -> None:
        loss = runner(ids).sum()
        loss.backward()
        del loss
        grads.append(_local([p.grad for p in model.parameters() if p.grad is not None]))
        optimizer.step()
        optimizer.zero_grad()

    step()
    peak, _ = allocator_peak(step)
    state = [t for s in optimizer.state.values() for t in s.values() if t.dim() > 0]
    return {
        "peak_train": peak - before,
        "weights": _local(list(model.parameters())),
        "gradients": grads[-1],
        "optimizer": _local(state),
    }


def _rank(rank: int, world: int, out: str, runs: list[dict[str, Any]]) -> None:
    report_allocations()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = [train(run, world) for run in runs]
    checked = known_allocations() if rank == 0 else {}
    Path(f"{out}.{rank}.json").write_text(json.dumps({"runs": results, "known": checked}))
    dist.destroy_process_group()


def main(argv: list[str]) -> None:
    import torch.multiprocessing as mp

    world, out, runs = int(argv[0]), argv[1], json.loads(argv[2])
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    mp.spawn(_rank, args=(world, out, runs), nprocs=world)  # type: ignore[attr-defined,no-untyped-call]


if __name__ == "__main__":
    main(sys.argv[1:])
