"""Section 1: what the installed plugin costs a pytest run that never passes --cnn-budget."""

from __future__ import annotations

import statistics

from context import Context
from harness import BENCH_DIR, BenchError, Job, child_argv, pytest_argv
from profiling import TRACE_IMPORTS, TRACE_PYTEST, parse_importtime
from report import Row, Section, ratio, runs_table, sec

OVERHEAD_TARGET = 1.02  # plugin installed vs. not, without --cnn-budget
OVERHEAD_TESTS = 200
# How pytest's "plugins:" header line names the loaded plugin (a path never has the space).
PLUGIN_IN_HEADER = " cnnbudget-"


def bench_overhead(ctx: Context) -> Section:
    """1. Plugin installed vs. disabled, on a suite that never passes --cnn-budget."""
    section = Section("1. Overhead without --cnn-budget")
    suite = ctx.projects.trivial_suite(OVERHEAD_TESTS)
    passed = f"{OVERHEAD_TESTS} passed"
    # `-p no:cnnbudget` blocks the entry point, which is what uninstalling would do; pytest's
    # header lists a plugin only when it is loaded, which proves each side is what it claims.
    on = Job("plugin installed", pytest_argv(), suite, expect=(passed, PLUGIN_IN_HEADER))
    off = Job(
        "plugin disabled (-p no:cnnbudget)",
        pytest_argv("-p", "no:cnnbudget"),
        suite,
        expect=(passed,),
        reject=(PLUGIN_IN_HEADER,),
    )
    stats = ctx.runner.measure([on, off], ctx.overhead_repeat)
    a, b = stats[on.label], stats[off.label]
    # The two runs of a round are seconds apart, so their ratio cancels the drift of a shared
    # machine that shifts whole stretches of runs by more than the 2% looked for; the median
    # of those ratios is the figure, the ratio of the medians is shown next to it.
    paired = statistics.median(x.wall / y.wall for x, y in zip(a.samples, b.samples, strict=True))
    paired_cpu = statistics.median(x.cpu / y.cpu for x, y in zip(a.samples, b.samples, strict=True))
    section.rows += [
        Row(
            "1",
            f"pytest on {OVERHEAD_TESTS} trivial tests, plugin installed / disabled",
            f"{ratio(paired)} wall, {ratio(paired_cpu)} CPU (median of per-round ratios; "
            f"ratio of medians {ratio(a.wall / b.wall)}: {sec(a.wall)} / {sec(b.wall)})",
            f"≤ {OVERHEAD_TARGET:.2f}×",
            paired <= OVERHEAD_TARGET,
        ),
        Row(
            "1",
            "torch imported without the flag",
            "no (test_torch_not_imported passed in every run)",
            "never",
            True,
        ),
    ]
    # The wall ratio is at the mercy of noise, so the entry point's import is also timed alone,
    # in a process that has already imported pytest, and broken down with -X importtime.
    load = Job("import pytest_cnnbudget.plugin", child_argv("plugin-import"), BENCH_DIR)
    alone = ctx.runner.measure([load], ctx.overhead_repeat)[load.label]
    if alone.inside("torch_imported"):
        raise BenchError("importing pytest_cnnbudget.plugin imported torch")
    traced = ctx.runner.once(
        Job(
            "importtime",
            pytest_argv(*TRACE_PYTEST, python_flags=TRACE_IMPORTS),
            suite,
            expect=(passed,),
        )
    )
    # pytest loads the entry point with importlib.import_module, which -X importtime does not
    # log; what that module imports with a statement is logged, so the breakdown is by those.
    modules = ", ".join(
        f"`{e.name}` {e.own / 1000:.1f} ms"
        for e in sorted(parse_importtime(traced.stderr), key=lambda e: -e.own)
        if e.name.startswith("pytest_cnnbudget")
    )
    modules = modules or "none"
    cost = alone.inside("package") + alone.inside("plugin")
    section.lines += runs_table(stats)
    section.lines += [
        "",
        f"Loading the entry point in a process that already imported pytest (median of "
        f"{len(alone.samples)}): {cost * 1000:.1f} ms, {cost / b.wall:.1%} of the run without "
        f"the plugin; the package `__init__` {alone.inside('package') * 1000:.1f} ms, "
        f"`plugin.py` {alone.inside('plugin') * 1000:.1f} ms; torch not imported. "
        f"Modules the package imports, by own time (`-X importtime`): {modules}.",
    ]
    return section
