"""Benchmarks of pytest-cnnbudget: what the plugin costs, and where that time goes.

    python benchmarks/run.py                 # everything; prints and writes benchmarks/results.md
    python benchmarks/run.py --quick         # smoke run: fewer models, one repeat, prints only
    python benchmarks/run.py --only size --package /tmp/patched
                                             # one section, against another copy of the package

Every figure comes from separate subprocesses (a fresh interpreter each time, so import costs are
paid the way a CI job pays them) and is the median of `--repeat` runs. The jobs of one
comparison are interleaved and their order rotates between rounds, so that drift of the machine
(thermal, page cache, neighbours) lands on both sides of a ratio. Wall time is taken around the
whole process; peak memory is the process's ru_maxrss, read with wait4() when it is reaped.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from child import REPORT_PREFIX

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CHILD = BENCH_DIR / "child.py"
RESULTS = BENCH_DIR / "results.md"
MB = 1024 * 1024  # ru_maxrss is in KiB on Linux; every "MB" below is 2**20 bytes

# Targets, as the project states them.
OVERHEAD_TARGET = 1.02  # plugin installed vs. not, without --cnn-budget
GATE_TARGET = 1.05  # --cnn-budget vs. the same pytest run building the models by hand
PER_MODEL_TARGET_MS = 15.0  # cost of one more configured model
LINEAR_BAND = (2 / 3, 3 / 2)  # slope over 500→1000 models vs. 100→500; outside: not linear
SIZE_WALL_TARGET = 5.0  # seconds for `pytest --cnn-budget` on one LLaMA-sized model
SIZE_RSS_TARGET_MB = 1024.0
FOUNDATION_TIME_TARGET = 3.0  # build_model + count_parameters of 7B, after import torch
FOUNDATION_RSS_TARGET_MB = 300.0  # ... above a process that only imports torch

# Input width of each reference model's classifier, to derive the count at any num_classes
# from the published one at 1000 classes: the head holds in*classes + classes parameters.
HEAD_IN_FEATURES = {
    "resnet18": 512,
    "resnet50": 2048,
    "vgg16": 4096,
    "mobilenet_v2": 1280,
    "efficientnet_b0": 1280,
    "convnext_tiny": 768,
    "vit_b_16": 768,
}
# 20 ImageNet-scale configurations: every reference architecture, several head sizes.
GATE_CONFIGS: tuple[tuple[str, int], ...] = (
    ("resnet18", 1000),
    ("resnet18", 10),
    ("resnet18", 100),
    ("resnet50", 1000),
    ("resnet50", 10),
    ("resnet50", 21843),
    ("vgg16", 1000),
    ("vgg16", 10),
    ("mobilenet_v2", 1000),
    ("mobilenet_v2", 10),
    ("mobilenet_v2", 100),
    ("efficientnet_b0", 1000),
    ("efficientnet_b0", 10),
    ("convnext_tiny", 1000),
    ("convnext_tiny", 10),
    ("convnext_tiny", 100),
    ("vit_b_16", 1000),
    ("vit_b_16", 10),
    ("vit_b_16", 100),
    ("vit_b_16", 21843),
)
OVERHEAD_TESTS = 200
IDLE_BUSY = 0.15  # a run starts once others use at most this share of the CPU (or on time-out)
TRACE_IMPORTS = ("-X", "importtime")
# With it, pytest needs `-s`: it captures fd 2 while a test runs, so the log of the imports
# made there (torch's, in a budget item) would land in the captured output.
TRACE_PYTEST = ("-s",)
# How pytest's "plugins:" header line names the loaded plugin (a path never has the space).
PLUGIN_IN_HEADER = " cnnbudget-"

# A benchmark project imports its models through this shim, so that the configured targets
# read like a user's ("bench_models:resnet18") while the code stays in benchmarks/models.py.
SHIM = """\
import sys

sys.path.insert(0, {bench_dir!r})
from models import *  # noqa: F403
"""

FLOOR_TEST = """\
import json
from pathlib import Path


def test_floor():
    # What the gate does, minus the gate: import torch, build on meta, sum numel().
    import torch

    import bench_models

    specs = json.loads(Path(__file__).with_name("models.json").read_text())
    total = 0
    with torch.device("meta"):
        for spec in specs:
            model = getattr(bench_models, spec["factory"])(**spec["kwargs"])
            total += sum(p.numel() for p in model.parameters())
    assert total == sum(spec["params"] for spec in specs)
"""


class BenchError(Exception):
    """A subprocess failed, timed out or printed something other than expected."""


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One command to measure, and what its output must (not) contain to count as correct."""

    label: str
    argv: tuple[str, ...]
    cwd: Path
    expect: tuple[str, ...] = ()
    reject: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sample:
    """One run of a job."""

    wall: float
    cpu: float  # user + system seconds: far less sensitive than wall to a busy machine
    rss_mb: float
    busy: float  # share of the machine's CPU others used just before the run, 0 to 1
    inside: dict[str, float]
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Stats:
    """All timed runs of one job; figures are medians."""

    samples: tuple[Sample, ...]

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def rss(self) -> float:
        return statistics.median(s.rss_mb for s in self.samples)

    @property
    def busy(self) -> float:
        return max(s.busy for s in self.samples)

    @property
    def spread(self) -> str:
        walls = [s.wall for s in self.samples]
        return f"{min(walls):.3f}–{max(walls):.3f} s"

    def inside(self, key: str) -> float:
        return statistics.median(s.inside.get(key, 0.0) for s in self.samples)


class Runner:
    """Starts, times, checks and (on timeout) kills benchmark subprocesses."""

    def __init__(self, env: dict[str, str], timeout: float, warmup: bool, idle_wait: float) -> None:
        self.env = env
        self.timeout = timeout
        self.warmup = warmup
        self.idle_wait = idle_wait

    def wait_for_idle(self) -> float:
        """Wait (at most `idle_wait` s) until others leave most of the CPU; their last share.

        On a shared machine a concurrent test run can double a wall time. Waiting for a quiet
        moment keeps most samples clean, and the share is reported so that the rest can be
        judged; CPU time is reported next to wall time for the same reason.
        """
        deadline = time.monotonic() + self.idle_wait
        while True:
            busy = cpu_busy(0.5)
            if busy <= IDLE_BUSY or time.monotonic() >= deadline:
                return busy
            time.sleep(1.0)

    def once(self, job: Job) -> Sample:
        """Run `job` to completion; its wall time, peak RSS and the numbers it reported."""
        busy = self.wait_for_idle() if self.idle_wait > 0 else cpu_busy(0.2)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            timed_out = threading.Event()
            start = time.perf_counter()
            proc = subprocess.Popen(
                job.argv,
                cwd=job.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                # Its own process group, so a timeout also ends whatever it started.
                start_new_session=True,
            )

            def kill() -> None:
                timed_out.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

            timer = threading.Timer(self.timeout, kill)
            timer.start()
            try:
                # wait4 instead of Popen.wait: it returns this one child's rusage. The
                # RUSAGE_CHILDREN alternative reports the maximum over every child reaped so
                # far, so a small run measured after a big one would inherit its peak.
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                kill()
                proc.wait()
                raise
            finally:
                timer.cancel()
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode("utf-8", "replace")
            stderr = err.read().decode("utf-8", "replace")
        where = f"{job.label} (in {job.cwd}: {' '.join(job.argv)})"
        if timed_out.is_set():
            raise BenchError(f"{where} timed out after {self.timeout:.0f} s")
        text = stdout + stderr
        if proc.returncode != 0:
            raise BenchError(f"{where} exited with {proc.returncode}:\n{_tail(text)}")
        for needle in job.expect:
            if needle not in text:
                raise BenchError(f"{where}: output lacks {needle!r}:\n{_tail(text)}")
        for needle in job.reject:
            if needle in text:
                raise BenchError(f"{where}: output contains {needle!r}:\n{_tail(text)}")
        inside: dict[str, float] = {}
        for line in stdout.splitlines():
            if line.startswith(REPORT_PREFIX):
                inside = json.loads(line[len(REPORT_PREFIX) :])
        cpu = usage.ru_utime + usage.ru_stime
        return Sample(wall, cpu, usage.ru_maxrss / 1024, busy, inside, stdout, stderr)

    def measure(self, jobs: Sequence[Job], repeat: int) -> dict[str, Stats]:
        """Median-ready samples of each job, interleaved, in a rotating order."""
        if self.warmup:
            # Untimed: fills the page cache with torch's libraries and writes the .pyc files
            # of the generated projects, which the first real run would otherwise pay alone.
            for job in jobs:
                _log(f"  warm-up  {job.label}")
                self.once(job)
        samples: dict[str, list[Sample]] = {job.label: [] for job in jobs}
        for round_ in range(repeat):
            shift = round_ % len(jobs)
            for job in [*jobs[shift:], *jobs[:shift]]:
                sample = self.once(job)
                samples[job.label].append(sample)
                _log(
                    f"  {round_ + 1}/{repeat}  {job.label}: "
                    f"{sample.wall:.3f} s wall, {sample.cpu:.3f} s CPU, {sample.rss_mb:.0f} MB, "
                    f"machine {sample.busy:.0%} busy before"
                )
        return {label: Stats(tuple(runs)) for label, runs in samples.items()}


def cpu_busy(interval: float) -> float:
    """The share of all cores that was not idle during the next `interval` seconds."""

    def times() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # idle + iowait

    try:
        total0, idle0 = times()
        time.sleep(interval)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return 0.0  # not Linux: no figure, and no waiting
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- generated projects ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConf:
    """One configured model of a benchmark project."""

    name: str
    factory: str  # a function of benchmarks/models.py
    kwargs: dict[str, int] = field(default_factory=dict)
    params: int | None = None  # the exact published count, when there is one
    budget: int = 10**12

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "factory": self.factory,
            "kwargs": self.kwargs,
            "params": self.params,
        }


def _published() -> dict[str, int]:
    """Published counts, read from the sources without importing them (they import torch)."""
    counts = _literal(REPO / "tests" / "architectures.py", "PUBLISHED_PARAMS")
    llama2_70b = _literal(BENCH_DIR / "models.py", "LLAMA2_70B_PARAMS")
    if not isinstance(counts, dict) or not isinstance(llama2_70b, int):
        raise BenchError("PUBLISHED_PARAMS or LLAMA2_70B_PARAMS is no longer a plain literal")
    return {**{str(k): int(v) for k, v in counts.items()}, "llama2_70b": llama2_70b}


def _literal(path: Path, name: str) -> object:
    """The literal value assigned to the module-level `name` in `path`."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        else:
            continue
        if target == name and value is not None:
            return ast.literal_eval(value)
    raise BenchError(f"{path} assigns no literal to {name}")


def gate_models(quick: bool) -> list[ModelConf]:
    """The 20 ImageNet-scale configurations (in quick mode, one per architecture)."""
    published = _published()
    models = []
    for factory, classes in GATE_CONFIGS:
        if quick and classes != 1000:
            continue
        params = published[factory] + (classes - 1000) * (HEAD_IN_FEATURES[factory] + 1)
        # The budget is the exact count, so a miscount in either direction shows: over fails
        # the budget, under fails the floor's assertion and the peers' checks.
        models.append(
            ModelConf(f"{factory}_c{classes}", factory, {"num_classes": classes}, params, params)
        )
    return models


def tiny_models(n: int) -> list[ModelConf]:
    """`n` small conv nets, no two configured alike."""
    return [
        ModelConf(
            f"tiny_{i:03d}",
            "tiny_net",
            {"width": 8 + i % 24, "depth": 1 + i % 3, "num_classes": 10 + i},
            budget=1_000_000,
        )
        for i in range(n)
    ]


def pyproject_text(models: Sequence[ModelConf], snapshot: bool) -> str:
    """A pyproject.toml that makes its folder pytest's rootdir and configures `models`."""
    lines = [
        "[tool.pytest.ini_options]",
        "",
        "[tool.cnnbudget]",
        "snapshot = " + ('"cnnbudget.snapshot.json"' if snapshot else "false"),
        "",
    ]
    for m in models:
        lines += [f"[tool.cnnbudget.models.{m.name}]", f'target = "bench_models:{m.factory}"']
        if m.kwargs:
            lines.append(
                "kwargs = { " + ", ".join(f"{k} = {v}" for k, v in m.kwargs.items()) + " }"
            )
        lines += [f"max_params = {m.budget}", ""]
    return "\n".join(lines)


def python() -> str:
    return sys.executable


def pytest_argv(*args: str, python_flags: Sequence[str] = ()) -> tuple[str, ...]:
    return (python(), *python_flags, "-m", "pytest", *args)


def child_argv(*args: str) -> tuple[str, ...]:
    return (python(), str(CHILD), *args)


class Projects:
    """Benchmark projects in a scratch folder, each created (and its snapshot written) once."""

    def __init__(self, root: Path, runner: Runner) -> None:
        self.root = root
        self.runner = runner
        self.made: dict[str, Path] = {}

    def gate(self, name: str, models: Sequence[ModelConf]) -> Path:
        """A project configuring `models`, with its snapshot already accepted."""
        if name in self.made:
            return self.made[name]
        folder = self.root / name
        folder.mkdir()
        (folder / "bench_models.py").write_text(SHIM.format(bench_dir=str(BENCH_DIR)))
        (folder / "pyproject.toml").write_text(pyproject_text(models, snapshot=True))
        (folder / "nosnap.toml").write_text(pyproject_text(models, snapshot=False))
        (folder / "models.json").write_text(json.dumps([m.as_json() for m in models], indent=1))
        (folder / "test_floor.py").write_text(FLOOR_TEST)
        _log(f"  set-up   {name}: writing the snapshot of {len(models)} models")
        self.runner.once(
            Job(
                f"{name} snapshot",
                pytest_argv("--cnn-budget-update", "pyproject.toml"),
                folder,
                expect=(f"{len(models)} passed",),
            )
        )
        self.made[name] = folder
        return folder

    def trivial_suite(self, n: int) -> Path:
        """`n` trivial tests, one of which asserts that torch has not been imported."""
        folder = self.root / "overhead"
        if folder.exists():
            return folder
        folder.mkdir()
        (folder / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
        per_file = 20
        for f in range(n // per_file):
            lines = ["import sys", ""]
            for t in range(per_file):
                if f == 0 and t == 0:
                    lines += [
                        "",
                        "def test_torch_not_imported():",
                        "    assert 'torch' not in sys.modules, 'torch imported without the flag'",
                        "",
                    ]
                else:
                    lines += ["", f"def test_{f:02d}_{t:02d}():", f"    assert {t} + {f} >= 0", ""]
            (folder / f"test_gen_{f:02d}.py").write_text("\n".join(lines))
        return folder


# -- report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    number: str
    what: str
    result: str
    target: str
    met: bool | None  # None: a figure without a target


@dataclass
class Section:
    """A benchmark's summary rows and its detail tables."""

    title: str
    rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()
) -> list[str]:
    """A Markdown table; columns listed in `right` are right-aligned (numbers)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if i in right else "-" * w for i, w in enumerate(widths)]
    return [line(headers), "| " + " | ".join(rule) + " |", *(line(r) for r in rows)]


def sec(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def mb(value: float) -> str:
    return f"{value:,.0f} MB"


def ratio(value: float) -> str:
    return f"{value:.3f}×"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "—"}[met]


# -- the benchmarks ----------------------------------------------------------------------------


@dataclass
class Context:
    """What every benchmark needs: how to run things, where, how often, and how thoroughly."""

    runner: Runner
    projects: Projects
    repeat: int
    overhead_repeat: int
    quick: bool
    walls: dict[str, float] = field(default_factory=dict)  # medians other sections reuse


def runs_table(
    stats: dict[str, Stats], extra: dict[str, Callable[[str, Stats], str]] | None = None
) -> list[str]:
    """The usual columns for a set of measured jobs, plus `extra` ones (given the job's label
    and figures), and the load note."""
    extra = extra or {}
    headers = ["run", "wall (median)", "min–max", "CPU (median)", "peak RSS", *extra]
    rows = [
        [
            label,
            sec(s.wall),
            s.spread,
            sec(s.cpu),
            mb(s.rss),
            *(f(label, s) for f in extra.values()),
        ]
        for label, s in stats.items()
    ]
    runs = "/".join(str(n) for n in sorted({len(s.samples) for s in stats.values()}))
    busy = max(s.busy for s in stats.values())
    return [
        *table(headers, rows, right=(1, 3, 4, *range(5, len(headers)))),
        "",
        f"Timed runs per job: {runs}. Just before a run, other processes used at most {busy:.0%} "
        "of the CPU.",
    ]


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


def bench_size(ctx: Context) -> Section:
    """5. LLaMA-7B and LLaMA-2-70B shapes through the gate, and the engine alone."""
    shapes = [("7B", "llama")] + ([] if ctx.quick else [("70B", "llama2_70b")])
    names = " and ".join({"7B": "LLaMA-7B", "70B": "LLaMA-2-70B"}[label] for label, _ in shapes)
    section = Section(f"5. Size: {names} shape{'s' if len(shapes) > 1 else ''}")
    published = _published()
    jobs = []
    for label, factory in shapes:
        params = published[factory]
        folder = ctx.projects.gate(
            f"llama_{label}", [ModelConf(f"llama_{label}", factory, {}, params, params)]
        )
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
        if engine.inside("total") != published[factory]:
            raise BenchError(
                f"{label}: counted {engine.inside('total'):,.0f}, published {published[factory]:,}"
            )
        section.rows += [
            Row(
                "5",
                f"{label} gate: wall",
                f"{sec(gate.wall)} ({sec(gate.cpu)} CPU)",
                f"< {SIZE_WALL_TARGET:.0f} s",
                gate.wall < SIZE_WALL_TARGET,
            ),
            Row(
                "5",
                f"{label} gate: peak RSS of pytest",
                mb(gate.rss),
                f"< {SIZE_RSS_TARGET_MB:.0f} MB",
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
                    f"< {FOUNDATION_TIME_TARGET:.0f} s",
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


# -- profile -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportEntry:
    """One line of `python -X importtime`: microseconds spent in the module, and with children."""

    name: str
    own: int
    cumulative: int
    level: int  # nesting depth: 0 for an import nothing else was importing at the time


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def parse_importtime(stderr: str) -> list[ImportEntry]:
    """Every import `-X importtime` logged, in order."""
    entries = []
    for line in stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            entries.append(ImportEntry(m[4], int(m[1]), int(m[2]), len(m[3]) // 2))
    return entries


@dataclass(frozen=True)
class ImportSplit:
    """The import time of one process, by who is to blame."""

    total: float
    torch: float
    dynamo: float
    ours: float
    largest: tuple[tuple[str, float], ...]  # imports nothing else was importing, by cost

    @classmethod
    def from_entries(cls, entries: Sequence[ImportEntry]) -> ImportSplit:
        def cumulative(name: str) -> float:
            return sum(e.cumulative for e in entries if e.name == name) / 1e6

        return cls(
            total=sum(e.cumulative for e in entries if e.level == 0) / 1e6,
            torch=cumulative("torch"),
            dynamo=cumulative("torch._dynamo"),
            ours=sum(e.own for e in entries if e.name.startswith("pytest_cnnbudget")) / 1e6,
            largest=tuple(
                (e.name, e.cumulative / 1e6)
                for e in sorted(entries, key=lambda e: -e.cumulative)
                if e.level == 0
            )[:6],
        )


class Profile:
    """Cumulative times of chosen functions in a cProfile dump."""

    def __init__(self, path: Path) -> None:
        # (file, line, function) -> (primitive calls, calls, own time, cumulative, callers)
        self.raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = pstats.Stats(
            str(path)
        ).stats  # type: ignore[attr-defined]
        self.total = max(ct for (_, _, _, ct, _) in self.raw.values())

    def cumulative(self, file_suffix: str, function: str) -> float:
        """Summed over matches, which is right for functions that do not call each other."""
        return sum(
            ct
            for (filename, _, name), (_, _, _, ct, _) in self.raw.items()
            if name == function and filename.replace(os.sep, "/").endswith(file_suffix)
        )

    def own_code(self) -> float:
        """Time spent in the package's own lines (not in what they call)."""
        return sum(
            tt
            for (filename, _, _), (_, _, tt, _, _) in self.raw.items()
            if "/pytest_cnnbudget/" in filename.replace(os.sep, "/")
        )

    def top(self, n: int) -> list[tuple[str, float]]:
        """The `n` functions with the most time in their own lines."""
        ranked = sorted(self.raw.items(), key=lambda item: -item[1][2])[:n]
        return [
            (_where(filename, line, name), tt)
            for (filename, line, name), (_, _, tt, _, _) in ranked
        ]


def _where(filename: str, line: int, name: str) -> str:
    path = filename.replace(os.sep, "/")
    for marker in ("site-packages/", f"{REPO.as_posix()}/", "lib/python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line}({name})" if line else name


def bench_profile(ctx: Context) -> Section:
    """6. Where the time of the 7B check and of the 20-model gate goes."""
    section = Section("6. Where the time goes")
    published = _published()
    runs = {
        "7B gate": ctx.projects.gate(
            "llama_7B", [ModelConf("llama_7B", "llama", {}, published["llama"], published["llama"])]
        ),
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
    for (label, folder), key in zip(runs.items(), ("size 7B", "gate"), strict=True):
        if key not in ctx.walls:  # this section runs alone: measure the plain wall here
            job = Job(label, pytest_argv(*args), folder, expect=("passed",))
            ctx.walls[key] = ctx.runner.measure([job], ctx.repeat)[label].wall
        walls[label] = ctx.walls[key]
        traced = ctx.runner.once(
            Job(
                f"{label} importtime",
                pytest_argv(*TRACE_PYTEST, *args, python_flags=TRACE_IMPORTS),
                folder,
                expect=("passed",),
            )
        )
        splits[label] = ImportSplit.from_entries(parse_importtime(traced.stderr))
        collected = ctx.runner.measure(
            [Job(f"{label} gc", child_argv("gc-pytest", *args), folder, expect=("passed",))],
            ctx.repeat,
        )
        gc_time[label] = collected[f"{label} gc"]
        dump = folder / "profile.out"
        ctx.runner.once(
            Job(
                f"{label} cProfile",
                pytest_argv(*args, python_flags=("-m", "cProfile", "-o", str(dump))),
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
        return prof(label, "pytest_cnnbudget/loading.py", "build_model") - prof(
            label, "torch/_dynamo/__init__.py", "<module>"
        )

    def check_rest(label: str) -> float:
        return (
            prof(label, "pytest_cnnbudget/gate.py", "check_model")
            - prof(label, "pytest_cnnbudget/loading.py", "build_model")
            - prof(label, "pytest_cnnbudget/counting.py", "count_parameters")
        )

    def reporting(label: str) -> float:
        return sum(
            prof(label, "pytest_cnnbudget/plugin.py", fn)
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
            *both(lambda k: prof(k, "pytest_cnnbudget/counting.py", "count_parameters")),
        ],
        ["– check_model: budgets, snapshot diff", *both(check_rest)],
        [
            "– BudgetSession.start: config + snapshot read",
            *both(lambda k: prof(k, "pytest_cnnbudget/plugin.py", "start")),
        ],
        ["– result → JSON → result, summary rendering", *both(reporting)],
        ["– lines of pytest_cnnbudget itself (self time)", *both(lambda k: profiles[k].own_code())],
        [
            "– pytest: assertion rewriting (test files, plugin distributions)",
            *both(lambda k: prof(k, "_pytest/assertion/rewrite.py", "_rewrite_test")),
        ],
        [
            "– pytest: gc.collect at exit (unraisableexception plugin)",
            *both(lambda k: prof(k, "_pytest/unraisableexception.py", "gc_collect_harder")),
        ],
    ]
    section.lines += table(["phase", *runs], rows, right=tuple(range(1, len(runs) + 1)))
    section.lines += [
        "",
        "Import figures come from one `-X importtime` run, the run's from one `cProfile` run; "
        "both tools slow what they watch, so read those rows as shares and the first row as the "
        "truth. Garbage collection overlaps both: it runs inside imports and inside the run.",
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
        right=(1, 3, 4),
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
            [[f"`{w}`", sec(t)] for w, t in profiles[label].top(8)],
            right=(1,),
        )
    return section


SECTIONS: dict[str, Callable[[Context], Section]] = {
    "overhead": bench_overhead,
    "gate": bench_gate,
    "peers": bench_peers,
    "scale": bench_scale,
    "size": bench_size,
    "profile": bench_profile,
}


# -- the document ------------------------------------------------------------------------------


def machine(package: str) -> list[str]:
    """Where and with what the figures were measured."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GB"

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- CPU: {cpu}, {usable} usable cores (of {os.cpu_count()}); RAM {ram}",
        f"- {platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"torch {version('torch')}; pytest {version('pytest')}; "
        f"torchinfo {version('torchinfo')}; fvcore {version('fvcore')}",
        f"- package measured: {package}",
        f"- image models: {image_models()}",
    ]


def image_models() -> str:
    """What benchmarks/models.py builds the image models from, asked of a fresh interpreter."""
    done = subprocess.run(
        [python(), "-c", "import models; print(models.image_models())"],
        cwd=BENCH_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.stdout.strip() or f"unknown ({done.stderr.strip().splitlines()[-1:]})"


def package_description(override: Path | None) -> str:
    if override is not None:
        return f"copy at {override}"
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "pytest_cnnbudget")
    state = " with uncommitted changes to pytest_cnnbudget/" if dirty else ""
    return f"pytest_cnnbudget at {commit or 'unknown commit'}{state} ({REPO})"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def document(
    sections: Sequence[Section], errors: dict[str, str], args: argparse.Namespace, elapsed: float
) -> str:
    """The whole Markdown report."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick smoke run" if args.quick else f"median of {args.repeat} runs"
    bytecode = (
        "no bytecode cache (PYTHONDONTWRITEBYTECODE=1)"
        if args.no_bytecode_cache
        else "bytecode cached after a warm-up run (PYTHONPYCACHEPREFIX in the scratch folder)"
    )
    command = " ".join(["python benchmarks/run.py", *sys.argv[1:]])
    overhead = (
        f" (overhead: {args.overhead_repeat} runs per side)"
        if any(s.title.startswith("1.") for s in sections)
        else ""
    )
    lines = [
        "# pytest-cnnbudget benchmarks",
        "",
        f"`{command}`, {now}, {mode}{overhead}, each in a fresh process; "
        f"{bytecode}; the whole benchmark took {elapsed / 60:.1f} min.",
        "",
        *machine(package_description(args.package)),
        "",
        "## Summary",
        "",
    ]
    # One run of each job cannot tell a trend from noise, so a smoke run judges nothing.
    rows = [
        [r.number, r.what, r.result, r.target, "not judged" if args.quick else verdict(r.met)]
        for s in sections
        for r in s.rows
    ]
    rows += [
        ["", f"{name}: not measured", error.splitlines()[0], "", "**error**"]
        for name, error in errors.items()
    ]
    lines += table(["#", "measurement", "result", "target", "status"], rows)
    for section in sections:
        lines += ["", f"## {section.title}", "", *section.lines]
    for name, error in errors.items():
        lines += ["", f"## {name}: failed", "", "```text", error, "```"]
    return "\n".join(lines) + "\n"


def child_env(package: Path | None, pycache: Path | None) -> dict[str, str]:
    """The environment of every benchmark process: ours, minus what would change pytest's mind."""
    drop = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k not in drop}
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        # Without cached bytecode every run recompiles the package, the model code and each
        # module pytest rewrites for assertions (all of a plugin's distribution: hypothesis is
        # ~100 modules), which no installed CI setup pays twice. A private prefix gives the
        # cached steady state without writing __pycache__ folders into the repository.
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if package is not None:
        # Ahead of site-packages, hence ahead of the editable install's finder.
        env["PYTHONPATH"] = str(package)
    return env


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks, print the report and (unless quick) write results.md."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per figure; the median is reported (default 3)"
    )
    parser.add_argument(
        "--overhead-repeat",
        type=int,
        help="runs per side of the overhead ratio "
        "(default 15 × --repeat: with fewer, a 2%% effect hides in the noise)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: one repeat, fewer models, no warm-up; writes no file unless --output",
    )
    parser.add_argument(
        "--only", action="append", choices=list(SECTIONS), help="run only this section (repeatable)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds before a subprocess is killed (default 600)",
    )
    parser.add_argument(
        "--package",
        type=Path,
        help="a folder holding another copy of pytest_cnnbudget to measure instead",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the report (default {RESULTS.relative_to(REPO)})",
    )
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=20.0,
        help="seconds to wait before each run for other processes to leave the CPU idle "
        "(default 20; 0 disables; quick runs never wait)",
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run every process with PYTHONDONTWRITEBYTECODE=1 (recompiling on each run)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated projects (their path is printed)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = 1
    if args.overhead_repeat is None:
        args.overhead_repeat = 3 if args.quick else 15 * args.repeat
    if args.package is not None:
        args.package = args.package.resolve()
        if not (args.package / "pytest_cnnbudget" / "__init__.py").is_file():
            parser.error(f"--package {args.package}: no pytest_cnnbudget/__init__.py there")

    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="cnnbudget-bench-"))
    pycache = None if args.no_bytecode_cache else root / "pycache"
    runner = Runner(
        child_env(args.package, pycache),
        args.timeout,
        warmup=not args.quick,
        idle_wait=0.0 if args.quick else args.idle_wait,
    )
    ctx = Context(runner, Projects(root, runner), args.repeat, args.overhead_repeat, args.quick)
    sections: list[Section] = []
    errors: dict[str, str] = {}
    try:
        if pycache is not None:
            # The prefix starts empty, so torch would be recompiled by whichever run came first.
            _log("compiling torch's bytecode into the scratch prefix")
            try:
                runner.once(Job("compile", (python(), "-c", "import torch, torch._dynamo"), root))
            except BenchError as e:
                errors["set-up"] = str(e)  # every section will say what is wrong, too
        for name in args.only or list(SECTIONS):
            _log(f"[{name}]")
            try:
                sections.append(SECTIONS[name](ctx))
            except BenchError as e:
                # One broken benchmark must not cost the figures of the others.
                errors[name] = str(e)
                _log(f"[{name}] failed: {e}")
    finally:
        if args.keep:
            _log(f"generated projects kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    text = document(sections, errors, args, time.perf_counter() - started)
    print(text, end="")
    output = args.output or (None if args.quick else RESULTS)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        _log(f"written to {output}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
