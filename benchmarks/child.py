"""What one benchmark subprocess does; `run.py` starts a fresh interpreter for each measurement.

Every command ends by printing one `BENCH-REPORT {json}` line with the timings it took from the
inside, so that the parent can split a wall time into import, build and count. Peak memory is
not measured here: the parent reads it from the kernel when it reaps the process.

    python benchmarks/child.py comment-scale SIZE...
    python benchmarks/child.py count TOOL DEVICE MODELS_JSON
    python benchmarks/child.py foundation TARGET
    python benchmarks/child.py gc-pytest PYTEST_ARGS...
    python benchmarks/child.py hardening FOLDER
    python benchmarks/child.py import-torch
    python benchmarks/child.py load-config PYPROJECT
    python benchmarks/child.py plugin-import
    python benchmarks/child.py rendering ROUNDS
    python benchmarks/child.py timm-models COUNT EXCLUDE_REGEX OUTPUT_JSON
    python benchmarks/child.py warmup TARGET embedding|arithmetic
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPORT_PREFIX = "BENCH-REPORT "
TOOLS = ("numel", "cnnbudget", "torchinfo", "fvcore")
DEVICES = ("meta", "cpu")


def report(**values: float) -> None:
    """Hand the inside timings to the parent (the last line of stdout)."""
    print(REPORT_PREFIX + json.dumps(values), flush=True)


class Clock:
    """Accumulates named intervals, so that per-model work adds up across a model list."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start


def count(tool: str, device: str, models_json: str) -> None:
    """Build every listed model on `device` and count it with `tool`, timing each phase."""
    if tool not in TOOLS or device not in DEVICES:
        raise SystemExit(f"tool must be one of {TOOLS} and device one of {DEVICES}")
    specs: list[dict[str, Any]] = json.loads(Path(models_json).read_text(encoding="utf-8"))
    clock = Clock()
    with clock.time("import_torch"):
        import torch
    with clock.time("import_tool"):
        import models

        counter = _counter(tool)
    total = 0
    for spec in specs:
        factory: Callable[..., torch.nn.Module] = getattr(models, spec["factory"])
        kwargs: dict[str, Any] = spec["kwargs"]
        if tool == "cnnbudget":
            # The gate's own path: a "module:attr" string resolved by the package.
            from pytest_cnnbudget import build_model

            with clock.time("build"):
                model = build_model(f"models:{spec['factory']}", kwargs, device=device)
        else:
            # The way the peers' documentation builds a model, optionally under meta.
            with clock.time("build"):
                if device == "meta":
                    with torch.device("meta"):
                        model = factory(**kwargs)
                else:
                    # No device context on cpu: it would put a Python mode in front of every op.
                    model = factory(**kwargs)
        with clock.time("count"):
            params = counter(model)
        if params != spec["params"]:
            raise SystemExit(
                f"{tool} counted {params:,} for {spec['name']}, not {spec['params']:,}"
            )
        total += params
        del model
    report(total=total, **clock.totals)


def _counter(tool: str) -> Callable[[Any], int]:
    """The counting call of `tool`, returning the total it reports."""
    if tool == "numel":
        return lambda model: sum(p.numel() for p in model.parameters())
    if tool == "cnnbudget":
        from pytest_cnnbudget import count_parameters, format_table

        def cnnbudget(model: Any) -> int:
            result = count_parameters(model)
            format_table(result)  # the per-layer table is what the peers produce too
            return result.total

        return cnnbudget
    if tool == "torchinfo":
        from torchinfo import summary

        return lambda model: int(summary(model, verbose=0).total_params)
    # fvcore ships no type information.
    from fvcore.nn import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        parameter_count,
        parameter_count_table,
    )

    def fvcore(model: Any) -> int:
        parameter_count_table(model)
        # The table rounds its figures; the exact total comes from the dict it was built from.
        return int(parameter_count(model)[""])

    return fvcore


def foundation(target: str) -> None:
    """`build_model` + `count_parameters` of one model, timed from just after `import torch`."""
    clock = Clock()
    with clock.time("import_torch"):
        import torch  # noqa: F401
    with clock.time("after_import_torch"):
        from pytest_cnnbudget import build_model, count_parameters

        with clock.time("build"):
            model = build_model(target)
        with clock.time("count"):
            result = count_parameters(model)
    report(total=result.total, **clock.totals)


def plugin_import() -> None:
    """What loading the `pytest11` entry point costs, in a process that already has pytest."""
    import importlib

    import pytest  # noqa: F401

    clock = Clock()
    with clock.time("package"):
        importlib.import_module("pytest_cnnbudget")
    with clock.time("plugin"):
        importlib.import_module("pytest_cnnbudget.plugin")
    report(torch_imported=float("torch" in sys.modules), **clock.totals)


def gc_pytest(*args: str) -> None:
    """Run pytest with `args`, timing every cyclic garbage collection the process makes."""
    import gc
    import runpy

    started = [0.0]
    spent = [0.0]
    full = [0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - started[0]
            full[0] += info["generation"] == 2

    gc.callbacks.append(callback)
    sys.argv = ["pytest", *args]
    try:
        runpy.run_module("pytest", run_name="__main__", alter_sys=True)
    finally:
        # After pytest's own exit-time collections, which are part of what is measured.
        gc.callbacks.remove(callback)
        report(gc=spent[0], full_collections=float(full[0]))


def load_config(path: str) -> None:
    """Read and validate `[tool.cnnbudget]` and its snapshot, the steps that see every model."""
    from pytest_cnnbudget.config.settings import load_settings
    from pytest_cnnbudget.snapshot.store import read_snapshot

    clock = Clock()
    with clock.time("config"):
        settings = load_settings(Path(path).resolve())
    with clock.time("snapshot"):
        if settings.snapshot is not None:
            read_snapshot(settings.snapshot)
    report(models=float(len(settings.models)), **clock.totals)


def import_torch() -> None:
    """The memory and time floor every torch-using process starts from."""
    clock = Clock()
    with clock.time("import_torch"):
        import torch  # noqa: F401
    report(**clock.totals)


def warmup(target: str, trigger: str) -> None:
    """Separate the one-time cost of the first meta-device build from the per-model cost.

    A Linear only needs `uniform_`, which has a C++ meta kernel. `normal_` (an Embedding's
    init) and elementwise arithmetic (`torch.ones(n) * scale`, as in ConvNeXt's layer scale)
    run Python reference implementations on meta, and the first of those imports
    `torch._dynamo`. `trigger` picks which of the two pays; building `target` twice afterwards
    shows what a build costs once that has been paid.
    """
    clock = Clock()
    with clock.time("import_torch"):
        import torch
        from torch import nn
    from pytest_cnnbudget import build_model

    with clock.time("first_linear"), torch.device("meta"):
        nn.Linear(4, 4)
    dynamo_after_linear = "torch._dynamo" in sys.modules
    with clock.time("trigger"), torch.device("meta"):
        if trigger == "embedding":
            nn.Embedding(4, 4)
        elif trigger == "arithmetic":
            torch.ones(4) * 2.0
        else:
            raise SystemExit(f"trigger must be 'embedding' or 'arithmetic', not {trigger!r}")
    dynamo_after_trigger = "torch._dynamo" in sys.modules
    with clock.time("build_1"):
        model = build_model(target)
    del model
    with clock.time("build_2"):
        build_model(target)
    report(
        dynamo_after_linear=float(dynamo_after_linear),
        dynamo_after_trigger=float(dynamo_after_trigger),
        **clock.totals,
    )


def hardening(folder: str) -> None:
    """What the hardening of a gate run costs, one piece at a time: restoring global state,
    the snapshot lock (with the re-read it guards), and the forked checking process."""
    import tempfile

    from pytest_cnnbudget.config.spec import ModelSpec, Order
    from pytest_cnnbudget.run.forked import Forked
    from pytest_cnnbudget.run.isolation import InProcess, Request
    from pytest_cnnbudget.run.state import preserved
    from pytest_cnnbudget.snapshot.store import locked, read_snapshot

    rounds = 1000
    start = time.perf_counter()
    for _ in range(rounds):
        with preserved():
            pass
    restore = (time.perf_counter() - start) / rounds

    snapshot = Path(folder, "cnnbudget.snapshot.json").resolve()
    models = float(len(read_snapshot(snapshot)))
    start = time.perf_counter()
    for _ in range(100):
        with locked(snapshot):
            pass
    lock_and_read = (time.perf_counter() - start) / 100
    with tempfile.TemporaryDirectory() as empty:
        start = time.perf_counter()
        for _ in range(rounds):
            with locked(Path(empty, "cnnbudget.snapshot.json")):
                pass
        lock_only = (time.perf_counter() - start) / rounds

    def request(i: int, timeout: float | None) -> Request:
        kwargs = {"in_features": 8 + i % 7, "out_features": 8}
        spec = ModelSpec(f"m{i}", "torch.nn:Linear", kwargs, {"max_params": 10**6})
        return Request(Order(spec), timeout)

    n = 50
    checks: dict[str, float] = {}
    for label, checker, timeout in (
        ("in_process", InProcess(), None),
        ("forked", Forked(), None),
        ("forked_timeout", Forked(), 300.0),
    ):
        if label == "forked":
            start = time.perf_counter()
            checker.check(request(0, timeout))
            checks["first_forked_check"] = time.perf_counter() - start
        else:
            checker.check(request(0, timeout))  # what a first check imports, paid outside
        start = time.perf_counter()
        for i in range(1, n + 1):
            checker.check(request(i, timeout))
        checks[label] = (time.perf_counter() - start) / n
        checker.close()
    report(
        restore=restore,
        lock_only=lock_only,
        lock_and_read=lock_and_read,
        snapshot_models=models,
        **checks,
    )


RENDER_PARTS = ("failure", "overview", "annotation", "summary", "comment", "json", "dump", "wire")


def rendering(rounds: str) -> None:
    """Every output one failing LLaMA-70B-shaped model renders, each timed `rounds` times.

    The stored entry is the 80-block model at dim 8192; the checked one has dim 8448, so every
    layer changed. Each round renders it all with grouping on and off, in turn; what is
    reported is the median of each part and of the rounds' sums, in seconds, and the sizes.
    """
    import gc
    import statistics

    from pytest_cnnbudget import build_model, measure
    from pytest_cnnbudget.config.spec import ModelSpec, Order
    from pytest_cnnbudget.report.cells import shown_changes
    from pytest_cnnbudget.report.comment import comment_markdown
    from pytest_cnnbudget.report.github import anchors, annotation_lines, summary_markdown
    from pytest_cnnbudget.report.json import run_report
    from pytest_cnnbudget.report.terminal import failure_lines, overview_lines
    from pytest_cnnbudget.report.views import layer_rows
    from pytest_cnnbudget.results import SnapshotEntry, SnapshotStatus
    from pytest_cnnbudget.run.gate import check_model
    from pytest_cnnbudget.run.shards import Shard, shard_dict
    from pytest_cnnbudget.run.wire import decode, encode
    from pytest_cnnbudget.snapshot.compare import compare_with_base

    shape = {"vocab": 32000, "dim": 8192, "n_layers": 80, "hidden": 28672, "n_heads": 64}
    # The stored entry as the gate records one: the model built on meta, measured, and dropped.
    stored = SnapshotEntry.from_count(measure(build_model("models:llama", shape)))
    name = "llama70b"
    spec = ModelSpec(
        name=name,
        target="models:llama",
        kwargs={**shape, "dim": 8448},  # 8448 / 64 heads = 132 per head
        budgets={"max_total_params": 70_000_000_000},
    )
    # What the gate freezes out of the collector's way (collector.py): torch and its imports.
    gc.collect()
    gc.freeze()
    start = time.perf_counter()
    result = check_model(Order(spec, stored, snapshot_enabled=True))
    check = time.perf_counter() - start
    gc.collect()  # the checked model, as a forked check leaves none of it in pytest's process
    if result.count is None or result.diff is None or result.snapshot is not SnapshotStatus.CHANGED:
        raise SystemExit(f"expected a changed layout, got {result.snapshot.value}: {result.error}")
    config = Path("pyproject.toml")
    repo = str(Path(__file__).resolve().parent.parent)
    environments = (sys.prefix, sys.exec_prefix, sys.base_prefix)
    base = {name: stored}
    sizes: dict[str, float] = {}

    def render(group: bool) -> dict[str, float]:
        """One round of every output, as a gate run renders them; each part's seconds."""
        times: dict[str, float] = {}
        out: dict[str, Any] = {}
        clock = time.perf_counter
        t = clock()
        failed = {name: failure_lines(result, config.name, "cnnbudget.snapshot.json", group)}
        times["failure"], t = clock() - t, clock()
        out["overview"] = overview_lines([result], [], verbose=True, group=group)
        times["overview"], t = clock() - t, clock()
        where = anchors([result], {name: (config, 1)}, repo, environments)
        out["annotation"] = annotation_lines([result], where, failed)
        times["annotation"], t = clock() - t, clock()
        out["summary"] = summary_markdown([result], failed)
        times["summary"], t = clock() - t, clock()
        comparisons = compare_with_base([result], base, [name])
        out["comment"] = comment_markdown([result], comparisons, "the baseline base.json", group)
        times["comment"], t = clock() - t, clock()
        # With the shard data every report carries for `cnnbudget merge`.
        shard = Shard(
            (), {name: result}, {name: tuple(failed[name])}, frozenset(), frozenset(), group
        )
        out["json"] = run_report([result], (), (), shard_dict(shard))
        times["json"], t = clock() - t, clock()
        out["dump"] = json.dumps(out["json"], indent=2, sort_keys=True)  # as write_json does
        times["dump"], t = clock() - t, clock()
        out["wire"] = decode(encode(result))
        times["wire"] = clock() - t
        mode = "grouped" if group else "ungrouped"
        lines = failed[name]
        sizes[f"{mode}_failure_lines"] = len(lines)
        sizes[f"{mode}_failure_bytes"] = len("\n".join(lines).encode("utf-8"))
        sizes[f"{mode}_overview_lines"] = len(out["overview"])
        sizes[f"{mode}_overview_bytes"] = len("\n".join(out["overview"]).encode("utf-8"))
        # `::error title=…,file=…,line=…::message`: properties escape their colons.
        sizes[f"{mode}_annotation_bytes"] = len(out["annotation"][0].split("::", 2)[2].encode())
        for key in ("summary", "comment", "dump"):
            sizes[f"{mode}_{key}_bytes"] = len(out[key].encode("utf-8"))
        if out["wire"] != result:
            raise SystemExit("wire.decode(wire.encode(result)) is not the result")
        return times

    samples: dict[str, list[float]] = {}
    for _ in range(int(rounds)):
        for group in (True, False):
            mode = "grouped" if group else "ungrouped"
            times = render(group)
            for part, seconds in times.items():
                samples.setdefault(f"{mode}_{part}", []).append(seconds)
            samples.setdefault(f"{mode}_total", []).append(sum(times.values()))
    report(
        check=check,
        rounds=float(rounds),
        params=float(result.count.total),
        stored_params=float(stored.total),
        layer_rows=float(len(result.count.layers)),
        grouped_layer_rows=float(len(layer_rows(result.count.layers))),
        diff_layers=float(len(result.diff.layers)),
        grouped_diff_rows=float(len(shown_changes(result, True))),
        ungrouped_diff_rows=float(len(shown_changes(result, False))),
        **sizes,
        **{key: statistics.median(values) for key, values in samples.items()},
    )


COMMENT_SHAPES = ("removed", "changed")


def comment_scale(*sizes: str) -> None:
    """The pull-request comment against a baseline of each of `sizes` models, in two shapes:
    `removed`, one model checked and the baseline's others no longer configured (a row each),
    and `changed`, every model checked and grown against its baseline entry (a row and a layer
    diff each). Reports, per shape and size, the seconds of `compare_with_base` and of
    `comment_markdown`, the comment's bytes and the rows it kept."""
    import gc
    from dataclasses import replace

    from pytest_cnnbudget import build_model, measure
    from pytest_cnnbudget.config.spec import ModelSpec, Order
    from pytest_cnnbudget.report.comment import comment_markdown
    from pytest_cnnbudget.results import SnapshotEntry
    from pytest_cnnbudget.run.gate import check_model
    from pytest_cnnbudget.snapshot.compare import compare_with_base

    def entry(width: int) -> SnapshotEntry:
        return SnapshotEntry.from_count(measure(build_model("models:tiny_net", {"width": width})))

    small, stored = entry(4), entry(6)
    spec = ModelSpec("good", "models:tiny_net", budgets={"max_params": 100_000})
    checked = check_model(Order(spec, stored, snapshot_enabled=True))  # width 8: grown
    gc.collect()
    gc.freeze()  # torch, as the gate freezes it (collector.py)
    figures: dict[str, float] = {}
    for n in (100, *map(int, sizes)):  # 100 first, not shown: what a first call pays once
        names = [f"team-{i % 7}/experiments/model_{i:06d}" for i in range(n)]
        for shape in COMMENT_SHAPES:
            if shape == "removed":
                results, base, configured = [checked], dict.fromkeys(names, small), ["good"]
            else:
                results = [replace(checked, name=name) for name in names]
                base, configured = dict.fromkeys(names, stored), names
            start = time.perf_counter()
            comparisons = compare_with_base(results, base, configured)
            compared = time.perf_counter()
            text = comment_markdown(results, comparisons, "the baseline base.json")
            done = time.perf_counter()
            key = f"{shape}_{n}"
            figures[f"{key}_compare"] = compared - start
            figures[f"{key}_comment"] = done - compared
            figures[f"{key}_bytes"] = float(len(text.encode("utf-8")))
            figures[f"{key}_rows"] = float(text.count("\n| ") - 1)  # less the header
            figures[f"{key}_details"] = float(text.count("<details>"))
            del results, base, comparisons, text
    report(**figures)


def timm_models(count: str, exclude: str, output: str) -> None:
    """Write `count` of timm's model names to `output`: evenly spaced over the sorted list, once
    the names `exclude` matches are taken out. Reports how many timm lists and keeps, or
    `timm=0` and writes nothing where timm does not import."""
    import re

    try:
        import timm
    except ImportError:
        report(timm=0.0)
        return
    listed = sorted(timm.list_models())
    kept = [name for name in listed if not re.search(exclude, name)]
    n = min(int(count), len(kept))
    chosen = [kept[i * len(kept) // n] for i in range(n)]
    Path(output).write_text(json.dumps(chosen, indent=1), encoding="utf-8")
    report(timm=1.0, listed=float(len(listed)), kept=float(len(kept)), chosen=float(n))


def main(argv: list[str]) -> None:
    """Dispatch to one command; see the module docstring."""
    commands: dict[str, Callable[..., None]] = {
        "comment-scale": comment_scale,
        "count": count,
        "foundation": foundation,
        "gc-pytest": gc_pytest,
        "hardening": hardening,
        "import-torch": import_torch,
        "load-config": load_config,
        "plugin-import": plugin_import,
        "rendering": rendering,
        "timm-models": timm_models,
        "warmup": warmup,
    }
    if not argv or argv[0] not in commands:
        raise SystemExit(__doc__)
    commands[argv[0]](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
