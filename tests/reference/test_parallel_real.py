"""The per-rank trace against real multi-process training runs on the cpu (gloo): world size 2
and 4, FSDP2 (resharding after forward and not; bf16 mixed precision), HSDP, DDP and tensor
parallel. Each rank's shards of weights, gradients and optimizer state must be exact, its
second step's peak within 10% (what torch's own FSDP2 memory tests accept)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from parallel_runs import PLAN
from parallel_runs import trace as _trace

TESTS = Path(__file__).parent.parent


# Each run as tests/parallel_runs.py sets it up, and as the `parallel` table says it.
RUNS_2: list[dict[str, Any]] = [
    {"strategy": "fsdp"},
    {"strategy": "fsdp", "reshard_after_forward": False},
    {"strategy": "fsdp", "mixed_precision": "bf16"},
    {"strategy": "ddp"},
    {"strategy": "fsdp", "tensor_parallel": 2},
]
RUNS_4: list[dict[str, Any]] = [
    {"strategy": "hsdp", "replicate": 2},
    {"strategy": "fsdp", "tensor_parallel": 2},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _real(world: int, runs: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """Every rank's results of the real runs."""
    out = folder / f"world{world}"
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    done = subprocess.run(
        [sys.executable, str(TESTS / "parallel_runs.py"), str(world), str(out), json.dumps(runs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(Path(f"{out}.{rank}.json").read_text()) for rank in range(world)]


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("parallel")
    return {2: _real(2, RUNS_2, folder), 4: _real(4, RUNS_4, folder)}


def test_the_allocator_count_sees_a_free_on_another_thread(
    real_runs: dict[int, list[dict[str, Any]]],
) -> None:
    known = real_runs[2][0]["known"]
    assert known["peak"] - known["start"] == 20_000_000
    assert known["end"] == known["start"]


@pytest.mark.parametrize(
    ("world", "index"),
    [(2, i) for i in range(len(RUNS_2))] + [(4, i) for i in range(len(RUNS_4))],
    ids=lambda v: str(v),
)
def test_the_trace_matches_every_real_rank(
    real_runs: dict[int, list[dict[str, Any]]], world: int, index: int
) -> None:
    run = (RUNS_2 if world == 2 else RUNS_4)[index]
    parallel: dict[str, Any] = {**run, "world_size": world}
    if run.get("tensor_parallel", 1) > 1:
        parallel["tp_plan"] = PLAN
    traced = _trace(**parallel)
    tolerance = 0.10  # what torch's own FSDP2 memory tests accept
    for rank in real_runs[world]:
        real = rank["runs"][index]
        # Rank 0 is traced: it holds at least what any other rank does.
        assert (traced.weights, traced.gradients, traced.optimizer) >= (
            real["weights"],
            real["gradients"],
            real["optimizer"],
        )
        assert abs(traced.peak_train - real["peak_train"]) <= tolerance * real["peak_train"], (
            run,
            traced.peak_train,
            real["peak_train"],
        )
    first = real_runs[world][0]["runs"][index]
    assert (traced.weights, traced.gradients, traced.optimizer) == (
        first["weights"],
        first["gradients"],
        first["optimizer"],
    )
