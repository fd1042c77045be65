"""Section 2: `pytest --cnn-budget` on the ImageNet-scale models vs. the same work by hand."""

from __future__ import annotations

from context import Context
from harness import Job, child_argv, pytest_argv
from projects import gate_models
from report import Row, Section, ratio, runs_table, sec

GATE_TARGET = 1.05  # --cnn-budget vs. the same pytest run building the models by hand


def bench_gate(ctx: Context) -> Section:
    """2. `pytest --cnn-budget` on the 20 models vs. the same work without the plugin."""
    models = gate_models(ctx.quick)
    n = len(models)
    section = Section(f"2. Gate vs. floor, {n} ImageNet-scale models")
    folder = ctx.projects.gate("gate", models)
    passed = f"{n} passed"
    gate = Job(
        "pytest --cnn-budget (snapshot)",
        pytest_argv("--cnn-budget", "pyproject.toml"),
        folder,
        expect=(passed,),
    )
    nosnap = Job(
        "pytest --cnn-budget (snapshot = false)",
        pytest_argv("--cnn-budget", "--cnn-budget-config", "nosnap.toml", "nosnap.toml"),
        folder,
        expect=(passed,),
    )
    floor = Job(
        "pytest floor: one test, meta build + numel",
        pytest_argv("test_floor.py"),
        folder,
        expect=("1 passed",),
    )
    bare = Job(
        "bare Python: meta build + numel",
        child_argv("count", "numel", "meta", str(folder / "models.json")),
        folder,
    )
    stats = ctx.runner.measure([gate, nosnap, floor, bare], ctx.repeat)
    ctx.walls["gate"] = stats[gate.label].wall
    g, ns, f, b = (stats[job.label] for job in (gate, nosnap, floor, bare))
    section.rows += [
        Row(
            "2",
            f"gate / pytest floor ({n} models)",
            f"{ratio(g.wall / f.wall)} wall ({sec(g.wall)} / {sec(f.wall)}), "
            f"{ratio(g.cpu / f.cpu)} CPU",
            f"≤ {GATE_TARGET:.2f}×",
            g.wall / f.wall <= GATE_TARGET,
        ),
        Row(
            "2",
            "gate (snapshot = false) / pytest floor",
            f"{ratio(ns.wall / f.wall)} wall, {ratio(ns.cpu / f.cpu)} CPU",
            f"≤ {GATE_TARGET:.2f}×",
            ns.wall / f.wall <= GATE_TARGET,
        ),
        Row(
            "2",
            "gate / bare-Python floor",
            f"{ratio(g.wall / b.wall)} wall ({sec(g.wall)} / {sec(b.wall)})",
            "—",
            None,
        ),
    ]
    section.lines += runs_table(stats, {"× pytest floor": lambda _, s: ratio(s.wall / f.wall)})
    section.lines += [
        "",
        f"Inside the bare-Python floor: import torch {sec(b.inside('import_torch'))}, "
        f"build {sec(b.inside('build'))}, numel {sec(b.inside('count'))}.",
    ]
    return section
