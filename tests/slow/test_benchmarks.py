"""The benchmark script runs end to end (a smoke run: its figures are not checked here)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
GPU_MEMORY = RUN.with_name("gpu_memory.py")


def _summary_rows(text: str, number: str) -> list[str]:
    """The `measurement` cells of the summary rows numbered `number`."""
    return [
        line.split("|")[2].strip()
        for line in text.splitlines()
        if line.split("|")[1:2] and line.split("|")[1].strip() == number
    ]


def test_a_smoke_run_of_the_sections_writes_each_ones_rows(tmp_path: Path) -> None:
    # One run of the sections that fit a smoke run: each section is its own process tree, so
    # one run costs the set-up once and still shows every section working.
    report = tmp_path / "results.md"
    sections = ("scale", "packages", "timm", "memory", "comment", "parallel")
    done = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--quick",
            *(arg for name in sections for arg in ("--only", name)),
            "--output",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=900,  # only so that a hang fails instead of stalling the run
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = report.read_text(encoding="utf-8")
    assert text == done.stdout
    assert "- image models: " in text
    assert "the environment's own bytecode cache" in text

    assert "## 4. Scale: 10, 30, 60, 120 small models" in text
    assert _summary_rows(text, "4") == [
        "cost per additional model (30→60)",
        "linear growth: slope 60→120 / slope 30→60",
        "config + snapshot read, 60 → 120 models",
    ]

    assert "## 10. Per-package configs: 8 packages vs. one config" in text
    assert _summary_rows(text, "10") == [
        "8 package configs / one config, full run",
        "8 package configs / one config, --collect-only",
    ]

    if importlib.util.find_spec("timm") is None:
        assert "timm does not import in this environment: not measured." in text
    else:
        assert "## 9. Gate vs. floor, 3 timm models" in text
        assert _summary_rows(text, "9") == [
            "gate / pytest floor (3 timm models)",
            "gate (snapshot = false) / pytest floor",
            "timm models that do not build on meta",
        ]

    assert "## 11. Memory: the meta trace vs. a real cpu run, and its cost in the gate" in text
    assert "**ResNet-18**, images 2×3×64×64" in text
    assert _summary_rows(text, "11") == [
        "meta/real peak, training step",
        "meta/real peak, inference",
        "saved activations meta == real",
        "LLaMA shape (2 blocks, dim 256) at 1×128, max_train_memory: pytest --cnn-budget wall",
        "LLaMA shape (2 blocks, dim 256) at 1×128, max_train_memory: peak RSS",
        "ResNet-18 at 2×3×64×64: what max_train_memory adds to the gate session",
    ]

    assert "## 12. The pull-request comment of a baseline of up to" in text
    assert _summary_rows(text, "12") == [
        "PR comment of a 5,000-model baseline, removed: comment_markdown",  # --quick: 5,000
        "PR comment of a 5,000-model baseline, changed: comment_markdown",
    ]
    assert "## 13. Memory per rank: its cost in the gate, real runs and FSDPMemTracker" in text
    assert _summary_rows(text, "13") == [
        "LLaMA shape (2 blocks, dim 256) at 1×128, fsdp 4 × tp 2, max_train_memory: "
        "pytest --cnn-budget wall",
        "LLaMA shape (2 blocks, dim 256) at 1×128, fsdp 4 × tp 2, max_train_memory: peak RSS",
        "trace vs real runs, training peak per rank (TokenMlp, 2 runs)",
        "FSDPMemTracker vs real runs, training peak of rank 0 (TokenMlp)",
    ]


@pytest.mark.parametrize(
    ("script", "said"),
    [
        ("gpu_memory.py", "no CUDA device (torch.cuda.is_available() is False): nothing measured"),
        ("gpu_ranks.py", "fewer than two CUDA devices: no rank to shard over, nothing measured"),
    ],
)
def test_a_gpu_script_without_the_gpus_it_needs_says_so(script: str, said: str) -> None:
    # Hiding every device gives the path a machine without one takes, on any machine.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(GPU_MEMORY.with_name(script))],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{said}\n"
