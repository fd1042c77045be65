"""Section 7: what crash isolation, time limits, restoring global state and the snapshot lock
cost a gate run."""

from __future__ import annotations

from context import Context
from harness import Job, child_argv, pytest_argv
from projects import tiny_models
from report import Row, Section, runs_table

PER_MODEL_TARGET_MS = 15.0  # the same budget as section 4: one more configured model


def bench_hardening(ctx: Context) -> Section:
    """7. Forked checks vs in-process, with and without a time limit; the pieces on their own."""
    n = 40 if ctx.quick else 200
    section = Section(f"7. Hardening: {n} small models, and its pieces one at a time")
    folder = ctx.projects.gate(f"hardening_{n}", tiny_models(n))
    runs = {
        "forked, time limit (default)": (),
        "forked, no time limit": ("--cnn-budget-timeout=0",),
        "in pytest's process": ("--cnn-budget-isolation=off",),
        "update, nothing changed (lock + re-read)": ("--cnn-budget-update",),
    }
    jobs = [
        Job(
            label,
            pytest_argv("--cnn-budget", "pyproject.toml", *args),
            folder,
            expect=(f"{n} passed",),
        )
        for label, args in runs.items()
    ]
    pieces = Job("pieces", child_argv("hardening", str(folder)), folder)
    stats = ctx.runner.measure([*jobs, pieces], ctx.repeat)
    forked = stats["forked, time limit (default)"]
    no_limit = stats["forked, no time limit"]
    local = stats["in pytest's process"]
    update = stats["update, nothing changed (lock + re-read)"]
    inside = stats["pieces"]

    def per_model(a: float, b: float) -> float:
        return (a - b) / n * 1000

    isolation = per_model(forked.wall, local.wall)
    limit_inside = (inside.inside("forked_timeout") - inside.inside("forked")) * 1e3
    read = inside.inside("lock_and_read") * 1e3
    section.rows += [
        Row(
            "7",
            f"forked checks vs in pytest's process, per model ({n} models)",
            f"{isolation:+.2f} ms wall, {per_model(forked.cpu, local.cpu):+.2f} ms CPU "
            f"(fork {inside.inside('first_forked_check') * 1000:.1f} ms, once per run)",
            f"≤ {PER_MODEL_TARGET_MS:.0f} ms",
            isolation <= PER_MODEL_TARGET_MS,
        ),
        Row(
            "7",
            "time limit, per model",
            f"{per_model(forked.wall, no_limit.wall):+.2f} ms wall "
            f"(inside: {limit_inside:+.3f} ms)",
            "—",
            None,
        ),
        Row(
            "7",
            "global state saved and restored, per model",
            f"{inside.inside('restore') * 1e6:.0f} µs",
            "—",
            None,
        ),
        Row(
            "7",
            "snapshot lock, per update",
            f"{inside.inside('lock_only') * 1e6:.0f} µs; with the re-read of "
            f"{inside.inside('snapshot_models'):.0f} entries {read:.1f} ms; "
            f"whole update run {update.wall - forked.wall:+.3f} s vs a check run",
            "—",
            None,
        ),
    ]
    section.lines += runs_table({label: stats[label] for label in runs})
    section.lines += [
        "",
        "One check of a one-layer model, from the inside (median of 50 after the first): "
        f"in pytest's process {inside.inside('in_process') * 1e3:.2f} ms, forked "
        f"{inside.inside('forked') * 1e3:.2f} ms, forked with a time limit "
        f"{inside.inside('forked_timeout') * 1e3:.2f} ms.",
    ]
    return section
