"""The benchmark script runs end to end (a smoke run: its figures are not checked here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def test_benchmark_smoke_run_writes_a_report(tmp_path: Path) -> None:
    report = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--only", "scale", "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=600,  # only so that a hang fails instead of stalling the run
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = report.read_text(encoding="utf-8")
    assert text == done.stdout
    assert "- image models: " in text
    assert "## 4. Scale: 10, 30, 60, 120 small models" in text
    summary = [
        line
        for line in text.splitlines()
        if line.split("|")[1:2] and line.split("|")[1].strip() == "4"
    ]
    assert [line.split("|")[2].strip() for line in summary] == [
        "cost per additional model (30→60)",
        "linear growth: slope 60→120 / slope 30→60",
        "config + snapshot read, 60 → 120 models",
    ]
