"""Section 9: `pytest --cnn-budget` on a sample of timm's models vs. the same pytest run
building them by hand."""

from __future__ import annotations

import json
import re
import statistics

from context import Context
from harness import BenchError, Job, Stats, child_argv, outcomes, pytest_argv
from projects import TIMM_EXCLUDE
from report import Row, Section, ratio, runs_table, sec

TIMM_TARGET = 1.05  # --cnn-budget vs. the same pytest run building the models by hand
TIMM_MODELS = 300
QUICK_MODELS = 3
PLAIN = ("-p", "no:cacheprovider")  # both sides: no cache written between timed runs
# A budget item's line in pytest's short summary: `FAILED pyproject.toml::cnn_budget[name] - …`.
_FAILED = re.compile(r"^FAILED \S*::cnn_budget\[(.+?)\]", re.MULTILINE)


def bench_timm(ctx: Context) -> Section:
    """9. `pytest --cnn-budget` on timm models vs. one plain test that builds them on meta."""
    wanted = QUICK_MODELS if ctx.quick else TIMM_MODELS
    drawn = ctx.projects.timm_models(wanted)
    if drawn is None:
        section = Section("9. Gate vs. floor, timm models")
        section.lines.append("timm does not import in this environment: not measured.")
        return section
    names, counts = drawn
    n = len(names)
    section = Section(f"9. Gate vs. floor, {n} timm models")
    folder, setup = ctx.projects.timm(f"timm_{n}", names)
    expected = outcomes(setup.stdout)
    gate_errors = sorted(_FAILED.findall(setup.stdout))
    if expected.get("passed", 0) + expected.get("failed", 0) != n or len(
        gate_errors
    ) != expected.get("failed", 0):
        raise BenchError(f"the set-up run of {n} timm models ended with {expected}")
    code = (1,) if gate_errors else (0,)
    gate = Job(
        "pytest --cnn-budget (snapshot)",
        pytest_argv(*PLAIN, "--cnn-budget", "pyproject.toml"),
        folder,
        exit_codes=code,
    )
    nosnap = Job(
        "pytest --cnn-budget (snapshot = false)",
        pytest_argv(*PLAIN, "--cnn-budget", "--cnn-budget-config", "nosnap.toml", "nosnap.toml"),
        folder,
        exit_codes=code,
    )
    floor = Job(
        "pytest floor: one test, meta build + numel",
        pytest_argv(*PLAIN, "test_floor.py"),
        folder,
        expect=("1 passed",),
    )
    # The set-up run compiled timm's bytecode and read its files, which a warm-up would do.
    stats = ctx.runner.measure([gate, nosnap, floor], ctx.repeat, warmup=False)
    for job in (gate, nosnap):
        for sample in stats[job.label].samples:
            if outcomes(sample.stdout) != expected:
                raise BenchError(
                    f"{job.label}: {outcomes(sample.stdout)}, the set-up run had {expected}"
                )
    g, ns, f = (stats[job.label] for job in (gate, nosnap, floor))
    # The one step that sees every stored layer before the first check, timed on its own.
    reading = Job("config + snapshot read", child_argv("load-config", "pyproject.toml"), folder)
    read = ctx.runner.measure([reading], ctx.repeat)[reading.label]

    floor_counts: dict[str, int | str] = json.loads((folder / "floor_counts.json").read_text())
    floor_errors = sorted(k for k, v in floor_counts.items() if isinstance(v, str))
    snapshot = folder / "cnnbudget.snapshot.json"
    snapshot_bytes = snapshot.stat().st_size
    stored = json.loads(snapshot.read_text())["models"]
    layers = sum(len(entry["layers"]) for entry in stored.values())
    built_both = [k for k in stored if isinstance(floor_counts.get(k), int)]
    agree = sum(floor_counts[k] == stored[k]["total"] for k in built_both)

    def per_model(s: Stats) -> float:
        return (s.wall - f.wall) / n * 1000

    def paired(s: Stats) -> float:
        # Samples of one round are minutes apart at most, so their ratio cancels slow drift.
        return statistics.median(x.wall / y.wall for x, y in zip(s.samples, f.samples, strict=True))

    section.rows += [
        Row(
            "9",
            f"gate / pytest floor ({n} timm models)",
            f"{ratio(g.wall / f.wall)} wall ({sec(g.wall)} / {sec(f.wall)}), "
            f"{ratio(g.cpu / f.cpu)} CPU; {per_model(g):+.1f} ms per model",
            f"≤ {TIMM_TARGET:.2f}×",
            g.wall / f.wall <= TIMM_TARGET,
        ),
        Row(
            "9",
            "gate (snapshot = false) / pytest floor",
            f"{ratio(ns.wall / f.wall)} wall, {ratio(ns.cpu / f.cpu)} CPU; "
            f"{per_model(ns):+.1f} ms per model",
            f"≤ {TIMM_TARGET:.2f}×",
            ns.wall / f.wall <= TIMM_TARGET,
        ),
        Row(
            "9",
            "timm models that do not build on meta",
            f"gate {len(gate_errors)}, floor {len(floor_errors)} (of {n}); "
            f"counts equal on {agree} of {len(built_both)} built by both",
            "—",
            None,
        ),
    ]
    section.lines += runs_table(
        stats,
        {
            "× pytest floor": lambda _, s: ratio(s.wall / f.wall),
            "per model vs floor": lambda _, s: f"{per_model(s):+.1f} ms",
        },
    )
    section.lines += [
        "",
        f"Median of the per-round ratios to the floor: {ratio(paired(g))} (snapshot), "
        f"{ratio(paired(ns))} (snapshot = false). Reading the config and the accepted snapshot "
        f"({snapshot_bytes / 2**20:.1f} MB, {layers:,} layers) before the first check: "
        f"{sec(read.inside('config') + read.inside('snapshot'))} (config "
        f"{sec(read.inside('config'))}, snapshot {sec(read.inside('snapshot'))}; median of "
        f"{len(read.samples)}).",
        "",
        f"The models: of the {counts['listed']:.0f} names `timm.list_models()` gives, sorted, "
        f"the {counts['kept']:.0f} that `{TIMM_EXCLUDE}` does not match (the largest variants, "
        f"by a size word or a parameter count in billions), then every "
        f"{counts['kept'] / n:.2f}-th of those (index `i * {counts['kept']:.0f} // {n}`), each "
        'configured as `target = "timm:create_model"`, `kwargs = { model_name = …, '
        "pretrained = false }`, `max_total_params` 10^15. The floor is one plain test that, for "
        "the same names, runs `timm.create_model(name, pretrained=False)` under "
        '`torch.device("meta")` and sums `numel()`, catching what fails. Both are whole '
        "`pytest -p no:cacheprovider` processes of the same interpreter, without xdist; the "
        "gate checks each model in its forked checking process (the default). A model that "
        "does not build on meta is a failed item in the gate and a caught exception in the "
        "floor: both pay for it.",
    ]
    if gate_errors or floor_errors:
        section.lines += ["", "Not built on meta (the floor's exception, first line):", ""]
        for name in sorted({*gate_errors, *floor_errors}):
            where = {(True, True): "both", (True, False): "gate only", (False, True): "floor only"}
            line = f"- `{name}`: {where[name in gate_errors, name in floor_errors]}"
            if name in floor_errors:
                line += f" (`{_code(str(floor_counts[name]))}`)"
            section.lines.append(line)
    return section


def _code(text: str) -> str:
    """The first line of an error message, short, safe inside one Markdown code span."""
    first = text.splitlines()[0] if text else ""
    return first.replace("`", "'").replace("|", "/")[:120]
