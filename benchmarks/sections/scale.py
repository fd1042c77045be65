"""Section 4: how wall time and memory grow with the number of configured models."""

from __future__ import annotations

from context import Context
from harness import Job, child_argv, pytest_argv
from projects import tiny_models
from report import Row, Section, runs_table

PER_MODEL_TARGET_MS = 15.0  # cost of one more configured model
LINEAR_BAND = (2 / 3, 3 / 2)  # slope over 500→1000 models vs. 100→500; outside: not linear


def bench_scale(ctx: Context) -> Section:
    """4. Wall time and memory as the number of configured models grows."""
    # The slope is read over 100→500 models; whether it holds is judged over 500→1000, where
    # both spans are long enough for run-to-run noise (~0.1 s) to matter little. A step that
    # grows with the square of the model count shows up as a steeper second slope.
    sizes = (10, 30, 60, 120) if ctx.quick else (10, 100, 500, 1000)
    section = Section(f"4. Scale: {', '.join(map(str, sizes))} small models")
    folders = {n: ctx.projects.gate(f"scale_{n}", tiny_models(n)) for n in sizes}
    gates = [
        Job(
            f"{n} models",
            pytest_argv("--cnn-budget", "pyproject.toml"),
            folders[n],
            expect=(f"{n} passed",),
        )
        for n in sizes
    ]
    # Garbage collection makes the wall curve move in steps (each full collection walks all of
    # torch's objects), so the one step that reads every model is also timed on its own.
    configs = [
        Job(f"{n} models, config", child_argv("load-config", "pyproject.toml"), folders[n])
        for n in sizes
    ]
    measured = ctx.runner.measure([*gates, *configs], ctx.repeat)
    stats = {job.label: measured[job.label] for job in gates}
    config = {f"{n} models": measured[f"{n} models, config"] for n in sizes}
    _, (n1, s1), (n2, s2), (n3, s3) = [(n, stats[f"{n} models"]) for n in sizes]
    slope = (s2.wall - s1.wall) / (n2 - n1) * 1000
    cpu_slope = (s2.cpu - s1.cpu) / (n2 - n1) * 1000
    late = (s3.wall - s2.wall) / (n3 - n2) * 1000
    growth = late / slope if slope > 0 else float("inf")
    rss_slope = (s2.rss - s1.rss) / (n2 - n1) * 1024

    def reading(label: str) -> float:
        return config[label].inside("config") + config[label].inside("snapshot")

    read2, read3 = reading(f"{n2} models"), reading(f"{n3} models")
    read_growth = read3 / read2 if read2 > 0 else float("inf")
    linear_read = (n3 / n2) * LINEAR_BAND[1]
    section.rows += [
        Row(
            "4",
            f"cost per additional model ({n1}→{n2})",
            f"{slope:.1f} ms wall, {cpu_slope:.1f} ms CPU, {rss_slope:.0f} KB",
            f"≤ {PER_MODEL_TARGET_MS:.0f} ms",
            slope <= PER_MODEL_TARGET_MS,
        ),
        Row(
            "4",
            f"linear growth: slope {n2}→{n3} / slope {n1}→{n2}",
            f"{growth:.2f} ({late:.1f} / {slope:.1f} ms)",
            f"{LINEAR_BAND[0]:.2f}–{LINEAR_BAND[1]:.2f}",
            LINEAR_BAND[0] <= growth <= LINEAR_BAND[1],
        ),
        Row(
            "4",
            f"config + snapshot read, {n2} → {n3} models",
            f"{read2 * 1000:.0f} → {read3 * 1000:.0f} ms (×{read_growth:.1f})",
            f"≤ ×{linear_read:.1f} (linear: ×{n3 / n2:.0f})",
            read_growth <= linear_read,
        ),
    ]
    count = {f"{n} models": n for n in sizes}
    section.lines += runs_table(
        stats,
        {
            "wall / models": lambda label, s: f"{s.wall / count[label] * 1000:.1f} ms",
            "config + snapshot read": lambda label, _: f"{reading(label) * 1000:.0f} ms",
        },
    )
    return section
