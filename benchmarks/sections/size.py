"""Section 5: foundation-model shapes (LLaMA-7B, LLaMA-2-70B) through the gate and the engine."""

from __future__ import annotations

from context import Context
from harness import BENCH_DIR, BenchError, Job, Stats, child_argv, pytest_argv
from projects import PUBLISHED, llama_model
from report import Row, Section, mb, runs_table, sec

SIZE_WALL_TARGET = 5.0  # seconds for `pytest --cnn-budget` on one LLaMA-sized model
SIZE_RSS_TARGET_MB = 1024.0
FOUNDATION_TIME_TARGET = 3.0  # build_model + count_parameters of 7B, after import torch
FOUNDATION_RSS_TARGET_MB = 300.0  # ... above a process that only imports torch


def bench_size(ctx: Context) -> Section:
    """5. LLaMA-7B and LLaMA-2-70B shapes through the gate, and the engine alone."""
    shapes = [("7B", "llama")] + ([] if ctx.quick else [("70B", "llama2_70b")])
    names = " and ".join({"7B": "LLaMA-7B", "70B": "LLaMA-2-70B"}[label] for label, _ in shapes)
    section = Section(f"5. Size: {names} shape{'s' if len(shapes) > 1 else ''}")
    jobs = []
    for label, factory in shapes:
        folder = ctx.projects.gate(f"llama_{label}", [llama_model(label, factory)])
        jobs.append(
            Job(
                f"pytest --cnn-budget, {label}",
                pytest_argv("--cnn-budget", "pyproject.toml"),
                folder,
                expect=("1 passed",),
            )
        )
        jobs.append(
            Job(
                f"build_model + count_parameters, {label}",
                child_argv("foundation", f"models:{factory}"),
                BENCH_DIR,
            )
        )
    torch_only = Job("python -c 'import torch'", child_argv("import-torch"), BENCH_DIR)
    stats = ctx.runner.measure([*jobs, torch_only], ctx.repeat)
    base = stats[torch_only.label]
    for label, factory in shapes:
        gate = stats[f"pytest --cnn-budget, {label}"]
        ctx.walls[f"size {label}"] = gate.wall
        engine = stats[f"build_model + count_parameters, {label}"]
        if engine.inside("total") != PUBLISHED[factory]:
            raise BenchError(
                f"{label}: counted {engine.inside('total'):,.0f}, published {PUBLISHED[factory]:,}"
            )
        section.rows += [
            Row(
                "5",
                f"{label} gate: wall",
                f"{sec(gate.wall)} ({sec(gate.cpu)} CPU)",
                f"under {SIZE_WALL_TARGET:.0f} s",
                gate.wall < SIZE_WALL_TARGET,
            ),
            Row(
                "5",
                f"{label} gate: peak RSS of pytest",
                mb(gate.rss),
                f"under {SIZE_RSS_TARGET_MB:.0f} MB",
                gate.rss < SIZE_RSS_TARGET_MB,
            ),
        ]
        if label == "7B":
            after = engine.inside("after_import_torch")
            delta = engine.rss - base.rss
            section.rows += [
                Row(
                    "5",
                    "7B build_model + count_parameters after import torch",
                    sec(after),
                    f"under {FOUNDATION_TIME_TARGET:.0f} s",
                    after < FOUNDATION_TIME_TARGET,
                ),
                Row(
                    "5",
                    "7B engine peak RSS above bare import torch",
                    f"+{mb(delta)} ({mb(engine.rss)} vs {mb(base.rss)})",
                    f"≤ {FOUNDATION_RSS_TARGET_MB:.0f} MB",
                    delta <= FOUNDATION_RSS_TARGET_MB,
                ),
            ]

    def inside(_: str, s: Stats) -> str:
        if "build" not in s.samples[0].inside:
            return ""
        return (
            f"after import torch {sec(s.inside('after_import_torch'))}: "
            f"build {sec(s.inside('build'))}, count {sec(s.inside('count'))}"
        )

    section.lines += runs_table(
        stats, {"RSS above import torch": lambda _, s: f"+{mb(s.rss - base.rss)}", "inside": inside}
    )
    return section
