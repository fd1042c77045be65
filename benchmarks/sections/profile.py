"""Section 6: where the time of the 7B check and of the ImageNet-scale gate goes."""

from __future__ import annotations

from collections.abc import Callable

from context import Context
from harness import BENCH_DIR, Job, Stats, child_argv, pytest_argv
from profiling import TRACE_IMPORTS, TRACE_PYTEST, ImportSplit, Profile, parse_importtime
from projects import gate_models, llama_model
from report import Section, markdown_code, sec, table


def bench_profile(ctx: Context) -> Section:
    """6. Where the time of the 7B check and of the 20-model gate goes."""
    section = Section("6. Where the time goes")
    runs = {
        "7B gate": ctx.projects.gate("llama_7B", [llama_model("7B", "llama")]),
        f"{len(gate_models(ctx.quick))}-model gate": ctx.projects.gate(
            "gate", gate_models(ctx.quick)
        ),
    }
    warm_jobs = [
        Job(f"warm-up {trigger}", child_argv("warmup", "models:llama", trigger), BENCH_DIR)
        for trigger in ("embedding", "arithmetic")
    ]
    warm = ctx.runner.measure(warm_jobs, ctx.repeat)
    splits: dict[str, ImportSplit] = {}
    gc_time: dict[str, Stats] = {}
    profiles: dict[str, Profile] = {}
    walls: dict[str, float] = {}
    args = ("--cnn-budget", "pyproject.toml")
    # The traced runs check models in pytest's own process: in the forked checking process the
    # profiler and the collector callbacks would not see them.
    traced_args = (*args, "--cnn-budget-isolation=off")
    for (label, folder), key in zip(runs.items(), ("size 7B", "gate"), strict=True):
        if key not in ctx.walls:  # this section runs alone: measure the plain wall here
            job = Job(label, pytest_argv(*args), folder, expect=("passed",))
            ctx.walls[key] = ctx.runner.measure([job], ctx.repeat)[label].wall
        walls[label] = ctx.walls[key]
        traced = ctx.runner.once(
            Job(
                f"{label} importtime",
                pytest_argv(*TRACE_PYTEST, *traced_args, python_flags=TRACE_IMPORTS),
                folder,
                expect=("passed",),
            )
        )
        splits[label] = ImportSplit.from_entries(parse_importtime(traced.stderr))
        collected = ctx.runner.measure(
            [Job(f"{label} gc", child_argv("gc-pytest", *traced_args), folder, expect=("passed",))],
            ctx.repeat,
        )
        gc_time[label] = collected[f"{label} gc"]
        dump = folder / "profile.out"
        ctx.runner.once(
            Job(
                f"{label} cProfile",
                pytest_argv(*traced_args, python_flags=("-m", "cProfile", "-o", str(dump))),
                folder,
                expect=("passed",),
            )
        )
        profiles[label] = Profile(dump)

    def both(fn: Callable[[str], float]) -> list[str]:
        return [sec(fn(label)) for label in runs]

    def prof(label: str, file_suffix: str, function: str) -> float:
        return profiles[label].cumulative(file_suffix, function)

    def build_net(label: str) -> float:
        return prof(label, "pytest_cnnbudget/engine/loading.py", "build_model") - prof(
            label, "torch/_dynamo/__init__.py", "<module>"
        )

    def check_rest(label: str) -> float:
        return (
            prof(label, "pytest_cnnbudget/run/gate.py", "check_model")
            - prof(label, "pytest_cnnbudget/engine/loading.py", "build_model")
            - prof(label, "pytest_cnnbudget/engine/counting.py", "count_parameters")
        )

    def reporting(label: str) -> float:
        return sum(
            prof(label, "pytest_cnnbudget/session.py", fn)
            for fn in (
                "pytest_runtest_makereport",
                "pytest_runtest_logreport",
                "pytest_terminal_summary",
                "failure_text",
            )
        )

    rows = [
        ["wall, no instrumentation (median)", *both(lambda k: walls[k])],
        ["**imports** (`-X importtime`, all modules)", *both(lambda k: splits[k].total)],
        ["– import torch", *both(lambda k: splits[k].torch)],
        [
            "– torch._dynamo, imported by the first Python-implemented op on meta",
            *both(lambda k: splits[k].dynamo),
        ],
        ["– pytest_cnnbudget's own modules", *both(lambda k: splits[k].ours)],
        [
            "– everything else (pytest, plugins, stdlib, model code)",
            *both(lambda k: splits[k].total - splits[k].torch - splits[k].dynamo - splits[k].ours),
        ],
        [
            "**garbage collection** (gc callbacks, median of runs without a profiler)",
            *both(lambda k: gc_time[k].inside("gc")),
        ],
        [
            "– full (generation 2) collections",
            *[f"{gc_time[k].inside('full_collections'):.0f}" for k in runs],
        ],
        ["**run** (cProfile, inflated by tracing)", *both(lambda k: profiles[k].total)],
        ["– check_model: build_model, minus the torch._dynamo import", *both(build_net)],
        [
            "– check_model: count_parameters (formulas included)",
            *both(lambda k: prof(k, "pytest_cnnbudget/engine/counting.py", "count_parameters")),
        ],
        ["– check_model: budgets, snapshot diff", *both(check_rest)],
        [
            "– BudgetSession.start: config + snapshot read",
            *both(lambda k: prof(k, "pytest_cnnbudget/session.py", "start")),
        ],
        ["– reporting: test reports, failure text, terminal summary", *both(reporting)],
        [
            "– lines of pytest_cnnbudget itself (self time)",
            *both(lambda k: profiles[k].own_code()),
        ],
        [
            "– pytest: assertion rewriting (test files, plugin distributions)",
            *both(lambda k: prof(k, "_pytest/assertion/rewrite.py", "_rewrite_test")),
        ],
        [
            "– pytest: gc.collect at exit (unraisableexception plugin)",
            *both(lambda k: prof(k, "_pytest/unraisableexception.py", "gc_collect_harder")),
        ],
    ]
    section.lines += table(["phase", *runs], rows, right=[False] + [True] * len(runs))
    section.lines += [
        "",
        "Import figures come from one `-X importtime` run, the run's from one `cProfile` run; "
        "both tools slow what they watch, so read those rows as shares and the first row as the "
        "truth. Garbage collection overlaps both: it runs inside imports and inside the run. "
        "The traced runs check models in pytest's own process (`--cnn-budget-isolation=off`), "
        "where the tools can see them; the first row is the default, forked run.",
        "",
        "First meta-device operations in a fresh process, after `import torch` (median of "
        f"{ctx.repeat}):",
        "",
    ]

    def yes(value: float) -> str:
        return "yes" if value else "no"

    section.lines += table(
        ["first op on meta", "its time", "imports torch._dynamo", "7B build after it", "again"],
        [
            [
                "`nn.Linear(4, 4)` (`uniform_`: C++ meta kernel)",
                f"{warm[warm_jobs[0].label].inside('first_linear') * 1000:.1f} ms",
                yes(warm[warm_jobs[0].label].inside("dynamo_after_linear")),
                "",
                "",
            ],
            *(
                [
                    f"then {what}",
                    f"{warm[job.label].inside('trigger') * 1000:.0f} ms",
                    yes(warm[job.label].inside("dynamo_after_trigger")),
                    sec(warm[job.label].inside("build_1")),
                    sec(warm[job.label].inside("build_2")),
                ]
                for job, what in zip(
                    warm_jobs,
                    ("`nn.Embedding(4, 4)` (`normal_`)", "`torch.ones(4) * 2.0`"),
                    strict=True,
                )
            ),
        ],
        right=[False, True, False, True, True],
    )
    section.lines += [
        "",
        "These are plain torch calls. `build_model` returns meta tensors unchanged from random "
        "fills (`normal_` and the like), so a constructor that only initializes weights never "
        "imports torch._dynamo; arithmetic on meta tensors in a constructor or a forward pass "
        "still does. The gate imports torch with the cycle collector paused and freezes "
        "(`gc.freeze`) what each import leaves, so later collections skip those objects.",
    ]
    for label in runs:
        largest = ", ".join(f"`{name}` {sec(t)}" for name, t in splits[label].largest)
        section.lines += ["", f"Largest top-level imports, {label}: {largest}."]
    for label in runs:
        section.lines += ["", f"Top functions by own time, {label} (cProfile):", ""]
        section.lines += table(
            ["function", "own time"],
            [[markdown_code(w), sec(t)] for w, t in profiles[label].top(8)],
            right=[False, True],
        )
    return section
