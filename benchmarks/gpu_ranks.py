"""The per-rank trace against real NCCL runs, one process a GPU: each rank's peak of a training
step as `torch.cuda.max_memory_allocated()` reports it.

    python benchmarks/gpu_ranks.py                 # every GPU of the machine, each strategy
    python benchmarks/gpu_ranks.py --world 2

Each strategy is set up by `tests/parallel_runs.py`'s `setup`, as on the cpu (the same model,
`tests/nets.py`'s TokenMlp, larger, and the same torch calls), on `cuda:RANK` with nccl;
the second step's peak is measured after `torch.cuda.reset_peak_memory_stats()`. What the
caching allocator hands out is counted (its rounding included); the CUDA context and NCCL's
own buffers are not, as the trace does not count them either (docs/parallel.md says how large
they usually are).

It needs two GPUs or more: with one, there is no second rank to shard over, and a run of one
rank is the single-device trace that `benchmarks/gpu_memory.py` checks. Without two, the script
says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

REPO = Path(__file__).resolve().parent.parent
for folder in (str(REPO / "tests"), str(REPO)):
    if folder not in sys.path:
        sys.path.insert(0, folder)

# When mypy checks tests/ and benchmarks/ together it finds the modules; alone it does not.
from nets import TokenMlp  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from parallel_runs import setup  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

from pytest_cnnbudget.engine.rank_memory import measure_rank_memory  # noqa: E402
from pytest_cnnbudget.inputs import InputSpec  # noqa: E402
from pytest_cnnbudget.ranks import ParallelOptions  # noqa: E402
from pytest_cnnbudget.results import MemoryOptions  # noqa: E402

VOCAB, WIDTH, DEPTH, BATCH = 32000, 1024, 8, (4, 512)
PLAN = (
    ("embed", "vocab"),
    ("blocks.*.up", "colwise"),
    ("blocks.*.down", "rowwise"),
    ("head", "colwise_replicate"),
)
RUNS: list[dict[str, Any]] = [
    {"strategy": "fsdp"},
    {"strategy": "fsdp", "reshard_after_forward": False},
    {"strategy": "fsdp", "mixed_precision": "bf16"},
    {"strategy": "ddp"},
    {"strategy": "fsdp", "tensor_parallel": 2},
]
TOO_FEW = "fewer than two CUDA devices: no rank to shard over, nothing measured"


def _train(run: dict[str, Any], world: int, device: torch.device) -> int:
    torch.manual_seed(0)
    model, runner = setup(TokenMlp(VOCAB, WIDTH, DEPTH).to(device), run, world, "cuda")
    optimizer = torch.optim.AdamW(model.parameters())
    ids = torch.randint(0, VOCAB, BATCH, device=device)
    for step in range(2):
        if step == 1:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        loss = runner(ids).sum()
        loss.backward()
        del loss
        optimizer.step()
        optimizer.zero_grad()
    torch.cuda.synchronize(device)
    peak = int(torch.cuda.max_memory_allocated(device))
    del model, runner, optimizer
    torch.cuda.empty_cache()
    return peak


def _rank(rank: int, world: int, out: str) -> None:
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=device)
    peaks = [_train(run, world, device) for run in _runs(world)]
    Path(f"{out}.{rank}.json").write_text(json.dumps(peaks))
    dist.destroy_process_group()


def _runs(world: int) -> list[dict[str, Any]]:
    """The runs `world` ranks can make: a tensor-parallel degree must divide it."""
    return [run for run in RUNS if not world % run.get("tensor_parallel", 1)]


def traced(run: dict[str, Any], world: int) -> int:
    """The trace's per-rank training peak of `run` over `world` ranks."""
    with torch.device("meta"):
        model = TokenMlp(VOCAB, WIDTH, DEPTH)
    parallel = {**run, "world_size": world}
    if run.get("tensor_parallel", 1) > 1:
        parallel["tp_plan"] = PLAN
    options = MemoryOptions(parallel=ParallelOptions(**parallel))
    return measure_rank_memory(model, InputSpec(args=(BATCH,)), options).peak_train


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=0, help="ranks (default: every GPU)")
    args = parser.parse_args(argv)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    world = args.world or gpus
    if gpus < 2 or world < 2:
        print(TOO_FEW)
        return 0
    import torch.multiprocessing as mp

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29571")
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder, "peaks"))
        mp.spawn(_rank, args=(world, out), nprocs=world)  # type: ignore[attr-defined,no-untyped-call]
        real = [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(world)]
    name = torch.cuda.get_device_name(0)
    print(f"| run ({world} GPUs, {name}) | traced (rank 0) | CUDA, the largest rank | Δ |")
    print("|---|---|---|---|")
    for i, run in enumerate(_runs(world)):
        mine, theirs = traced(run, world), max(r[i] for r in real)
        label = ", ".join(f"{k} {v}" for k, v in run.items())
        print(f"| {label} | {mine:,} | {theirs:,} | {(mine - theirs) / theirs:+.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
