"""Section 3: the same models counted by torchinfo and fvcore, next to cnnbudget and numel()."""

from __future__ import annotations

import importlib.util

from context import Context
from harness import Job, child_argv
from projects import gate_models
from report import Row, Section, mb, ratio, runs_table, sec


def bench_peers(ctx: Context) -> Section:
    """3. The same models through torchinfo and fvcore, on cpu (as documented) and on meta."""
    models = gate_models(ctx.quick)
    section = Section(f"3. Peers on the same {len(models)} models (bare Python, no pytest)")
    folder = ctx.projects.gate("gate", models)
    models_json = str(folder / "models.json")
    devices = ("meta",) if ctx.quick else ("meta", "cpu")
    jobs: list[Job] = []
    missing: list[str] = []
    for tool in ("numel", "cnnbudget", "torchinfo", "fvcore"):
        if tool in ("torchinfo", "fvcore") and importlib.util.find_spec(tool) is None:
            missing.append(tool)
            continue
        jobs += [
            Job(f"{tool} {device}", child_argv("count", tool, device, models_json), folder)
            for device in devices
        ]
    stats = ctx.runner.measure(jobs, ctx.repeat)
    base = stats["cnnbudget meta"]
    section.lines += runs_table(
        stats,
        {
            "× cnnbudget meta": lambda _, s: ratio(s.wall / base.wall),
            "import tool": lambda _, s: sec(s.inside("import_tool")),
            "build": lambda _, s: sec(s.inside("build")),
            "count + table": lambda _, s: sec(s.inside("count")),
        },
    )
    section.lines += [
        "",
        "`numel` is `sum(p.numel() for p in model.parameters())`; `cnnbudget` is `build_model` + "
        "`count_parameters` + `format_table`; `torchinfo` is `summary(model, verbose=0)`; "
        "`fvcore` is `parameter_count_table(model)`. On cpu the models are built the way the "
        "peers' documentation shows, with real weights. Each run checks every model's total "
        "against the published count. Wall times include `import torch` "
        f"({sec(base.inside('import_torch'))}).",
    ]
    if missing:
        section.lines.append(f"Not installed, so not measured: {', '.join(missing)}.")
    for tool in ("torchinfo", "fvcore"):
        if tool not in missing and "cpu" in devices:
            peer = stats[f"{tool} cpu"]
            section.rows.append(
                Row(
                    "3",
                    f"{tool} (cpu, as documented) / cnnbudget (meta)",
                    f"{ratio(peer.wall / base.wall)} time, {ratio(peer.rss / base.rss)} memory "
                    f"({sec(peer.wall)}, {mb(peer.rss)})",
                    "—",
                    None,
                )
            )
    return section
