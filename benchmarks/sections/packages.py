"""Section 10: what collecting one config per package costs, against one config with the same
models."""

from __future__ import annotations

import statistics

from context import Context
from harness import Job, Stats, pytest_argv
from report import Row, Section, ratio, runs_table, sec

PACKAGES_TARGET = 1.10  # n package configs vs. one config of the same n models
PACKAGES = 50
QUICK_PACKAGES = 8
COLLECT_REPEAT = 5  # × --repeat: a collection is short, so its noise needs more runs
PLAIN = ("-p", "no:cacheprovider")


def bench_packages(ctx: Context) -> Section:
    """10. `pytest --cnn-budget` over n package configs vs. one config of the same n models."""
    n = QUICK_PACKAGES if ctx.quick else PACKAGES
    section = Section(f"10. Per-package configs: {n} packages vs. one config")
    split = ctx.projects.packages(n, split=True)
    one = ctx.projects.packages(n, split=False)
    runs = {
        f"{n} package configs": split,
        "one config": one,
    }
    run_jobs = [
        Job(f"{label}: run", pytest_argv(*PLAIN, "--cnn-budget"), folder, expect=(f"{n} passed",))
        for label, folder in runs.items()
    ]
    collect_jobs = [
        Job(
            f"{label}: --collect-only",
            pytest_argv(*PLAIN, "--cnn-budget", "--collect-only", "-q"),
            folder,
            expect=(f"{n} tests collected",),
        )
        for label, folder in runs.items()
    ]
    ran = ctx.runner.measure(run_jobs, ctx.repeat)
    collected = ctx.runner.measure(
        collect_jobs, ctx.repeat if ctx.quick else ctx.repeat * COLLECT_REPEAT
    )

    def compare(stats: dict[str, Stats]) -> tuple[Stats, Stats, float, float]:
        a, b = stats.values()
        # The two runs of a round are seconds apart: their ratio cancels the drift of the machine.
        paired = statistics.median(
            x.wall / y.wall for x, y in zip(a.samples, b.samples, strict=True)
        )
        return a, b, a.wall / b.wall, paired

    for stats, what in ((ran, "full run"), (collected, "--collect-only")):
        a, b, of_medians, paired = compare(stats)
        per_config = (a.wall - b.wall) / (n - 1) * 1000
        section.rows.append(
            Row(
                "10",
                f"{n} package configs / one config, {what}",
                f"{ratio(of_medians)} wall ({sec(a.wall)} / {sec(b.wall)}), "
                f"{ratio(a.cpu / b.cpu)} CPU; {per_config:+.1f} ms per extra config "
                f"(per-round ratio {ratio(paired)})",
                f"≤ {PACKAGES_TARGET:.2f}×",
                of_medians <= PACKAGES_TARGET,
            )
        )
        section.lines += [*runs_table(stats), ""]
    section.lines += [
        f"Each of the {n} models is the tests' `nets.Tiny` (one Linear, width 8 to {8 + n - 1}) "
        "in a module of its package's own name (`pkg00_nets.py`, …), with an accepted snapshot. "
        f"Split: `packages/pkgNN/pyproject.toml` holds the package's one model and its "
        "snapshot lies beside it; the root pyproject.toml has no `[tool.cnnbudget]`. One "
        f"config: the root pyproject.toml holds all {n} models, the modules lie beside it, and "
        "one snapshot holds them all. Both run `pytest -p no:cacheprovider --cnn-budget` with "
        "no paths, so pytest walks the whole tree; the per-round ratio pairs the two runs of "
        "each round.",
    ]
    return section
