"""Section 13: memory per rank (pytest_cnnbudget.engine.rank_memory): what tracing one rank of a
parallel run costs a gate run, and its figures next to real multi-process runs and to torch's
own FSDPMemTracker on the same models.

The real runs are tests/parallel_runs.py's: one process per rank over gloo, each rank's second
step measured by the cpu allocator's count of live bytes. FSDPMemTracker (torch.distributed.
_tools.fsdp2_mem_tracker) traces the same set-up under a fake process group and fake tensors,
as the plugin does, but set up here with torch's own calls. Every one of them runs in a fresh
process of its own: this process must not import torch, and a backward on fake tensors leaves
a process unable to fork another that trains (engine/apart.py).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from context import Context
from harness import BENCH_DIR, REPO, BenchError, Job, Stats, pytest_argv, python
from report import Row, Section, mb, runs_table, sec, table

if TYPE_CHECKING:
    from torch import nn

WALL_TARGET = 15.0  # s, the whole `pytest --cnn-budget` process
RSS_TARGET_MB = 2000.0  # in the report's MB of 2**20 bytes
TOLERANCE = 0.10  # |trace / real − 1| of a rank's peak, as test_parallel_real.py holds it
MEMORY_BUDGET = '"200GB"'  # above every traced peak, single device too: the run measures only
PLAIN = ("-p", "no:cacheprovider")  # no cache written between timed runs
SAMPLE_EVERY = 0.2  # s between two readings of the process tree's memory
_PEAK = re.compile(r"([\d.]+ [kMGT]?B) peak in training")
_LAUNCH = "import sys; from sections.parallel import {}; {}(sys.argv[1:])"
NOT_SUPPORTED = "not supported"

# docs/parallel.md's plan for a LLaMA: attention and feed-forward split column- then row-wise,
# the embedding by vocabulary, the head column-wise with its logits gathered whole.
LLAMA_PLAN = (
    ("tok_embeddings", "vocab"),
    ("layers.*.attention.wq", "colwise"),
    ("layers.*.attention.wk", "colwise"),
    ("layers.*.attention.wv", "colwise"),
    ("layers.*.attention.wo", "rowwise"),
    ("layers.*.feed_forward.w1", "colwise"),
    ("layers.*.feed_forward.w3", "colwise"),
    ("layers.*.feed_forward.w2", "rowwise"),
    ("lm_head", "colwise_replicate"),
)
# tests/parallel_runs.py's PLAN for TokenMlp, as its runs split it.
TOKEN_PLAN = (
    ("embed", "vocab"),
    ("blocks.*.up", "colwise"),
    ("blocks.*.down", "rowwise"),
    ("head", "colwise_replicate"),
)


@dataclass(frozen=True)
class Ranked:
    """A model of tests/architectures.py the gate checks per rank, in a project of its own."""

    name: str  # its [tool.cnnbudget.models.<name>] table
    label: str
    factory: str
    shape: tuple[int, ...]
    world_size: int
    tensor_parallel: int
    kwargs: dict[str, int] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return f"fsdp {self.world_size // self.tensor_parallel} × tp {self.tensor_parallel}"

    @property
    def setting(self) -> str:
        return f"{self.short} ({self.world_size} ranks)"


LLAMA_7B = Ranked("llama7b", "LLaMA-7B", "llama", (1, 4096), 64, 8)
QUICK_LLAMA = Ranked(
    "llama_small",
    "LLaMA shape (2 blocks, dim 256)",
    "llama",
    (1, 128),
    8,
    2,
    {"vocab": 1000, "dim": 256, "n_layers": 2, "hidden": 512, "n_heads": 4},
)

# The same shim as section 11's: targets read like a user's, definitions stay the tests'.
SHIM = """\
import sys

sys.path.insert(0, {tests!r})
from architectures import llama  # noqa: E402, F401
"""


@dataclass(frozen=True)
class Run:
    """One run of test_parallel_real.py's comparison: TokenMlp(1000, 128, 4), 4×64 ids a rank."""

    label: str
    world: int
    settings: tuple[tuple[str, Any], ...]  # as tests/parallel_runs.py takes a run

    @property
    def parallel(self) -> dict[str, Any]:
        """The `parallel` table of the same run."""
        out: dict[str, Any] = {**dict(self.settings), "world_size": self.world}
        if out.get("tensor_parallel", 1) > 1:
            out["tp_plan"] = [list(entry) for entry in TOKEN_PLAN]
        return out

    @property
    def unsupported(self) -> str | None:
        """Why FSDPMemTracker cannot track this run, if it cannot: it takes an FSDP module."""
        settings = dict(self.settings)
        if settings["strategy"] == "ddp":
            return "DDP"
        if self.world // settings.get("tensor_parallel", 1) == 1:
            return "tensor parallel alone, no fully_shard"
        return None


RUNS = (
    Run("fsdp 2", 2, (("strategy", "fsdp"),)),
    Run(
        "fsdp 2, reshard_after_forward = false",
        2,
        (("strategy", "fsdp"), ("reshard_after_forward", False)),
    ),
    Run('fsdp 2, mixed_precision = "bf16"', 2, (("strategy", "fsdp"), ("mixed_precision", "bf16"))),
    Run("ddp 2", 2, (("strategy", "ddp"),)),
    Run("tp 2 (fsdp, world 2)", 2, (("strategy", "fsdp"), ("tensor_parallel", 2))),
    Run("hsdp 2 × 2", 4, (("strategy", "hsdp"), ("replicate", 2))),
    Run("fsdp 2 × tp 2", 4, (("strategy", "fsdp"), ("tensor_parallel", 2))),
)
QUICK_RUNS = (RUNS[0], RUNS[3])
TOKEN_MLP: dict[str, Any] = {
    "factory": "TokenMlp",
    "kwargs": {"vocab": 1000, "width": 128, "depth": 4},
    "shape": [4, 64],
    "blocks": "blocks",
    "plan": [list(entry) for entry in TOKEN_PLAN],
}


def bench_parallel(ctx: Context) -> Section:
    """13. Memory per rank: its cost in the gate, and its figures against real runs and
    FSDPMemTracker."""
    section = Section("13. Memory per rank: its cost in the gate, real runs and FSDPMemTracker")
    model = QUICK_LLAMA if ctx.quick else LLAMA_7B
    rows, lines = _cost(ctx, model)
    section.rows += rows
    section.lines += lines
    rows, lines = _comparison(ctx, QUICK_RUNS if ctx.quick else RUNS)
    section.rows += rows
    section.lines += ["", *lines]
    if not ctx.quick:
        rows, lines = _at_scale(ctx, LLAMA_7B)
        section.rows += rows
        section.lines += ["", *lines]
    return section


# -- memory of a process tree ---------------------------------------------------------------


class TreeMemory:
    """The most memory this process's descendants held at once, read from /proc every
    SAMPLE_EVERY seconds while the block runs: their summed PSS, and their summed RSS.

    ru_maxrss from wait4() is the peak of the largest single process of a tree: Linux folds the
    peak of each child a process reaps into its own, so the gate's forked checker and the
    trace's own fork are covered, but processes alive at once are not added up. PSS splits each
    page among the processes that map it (after a fork: parent and child; a shared library:
    every process on the machine that loaded it), so the tree's sum counts a page once, or
    less where other processes map the same libraries. Summed RSS counts a shared page once
    per process: a bound from above.
    """

    def __init__(self) -> None:
        self.pss_mb = 0.0
        self.rss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = os.getpid()
        page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
        while not self._stop.wait(SAMPLE_EVERY):
            pids = _descendants(me)
            self.pss_mb = max(self.pss_mb, sum(_pss_kib(pid) for pid in pids) / 1024)
            rss = sum(_resident_pages(pid) for pid in pids) * page_kib
            self.rss_mb = max(self.rss_mb, rss / 1024)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                # The command name is in parentheses and may hold spaces: the fields follow it.
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, ())
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass  # gone meanwhile
    return 0


def _resident_pages(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0  # gone meanwhile


def _measured(ctx: Context, job: Job) -> tuple[Stats, TreeMemory]:
    """`job`'s figures, and the most its process tree held at once in any of its runs."""
    with TreeMemory() as tree:
        stats = ctx.runner.measure([job], ctx.repeat)[job.label]
    return stats, tree


def _tree_columns(trees: dict[str, TreeMemory]) -> dict[str, Callable[[str, Stats], str]]:
    """The tree's figures as runs_table's extra columns."""
    return {
        "tree at once, PSS": lambda label, _: mb(trees[label].pss_mb),
        "tree, RSS summed": lambda label, _: mb(trees[label].rss_mb),
    }


# -- cost in the gate -----------------------------------------------------------------------


def _config(model: Ranked, parallel: bool) -> str:
    """A config of `model` alone with a memory budget, per rank or (without `parallel`) for a
    single device."""
    lines = [
        "[tool.pytest.ini_options]",
        "",
        "[tool.cnnbudget]",
        "snapshot = false",
        "",
        f"[tool.cnnbudget.models.{model.name}]",
        f'target = "rank_models:{model.factory}"',
    ]
    if model.kwargs:
        lines.append(
            "kwargs = { " + ", ".join(f"{k} = {v}" for k, v in model.kwargs.items()) + " }"
        )
    lines += [
        f"input_shape = [{', '.join(map(str, model.shape))}]",
        f"max_train_memory = {MEMORY_BUDGET}",
    ]
    if parallel:
        plan = ", ".join(f'"{name}" = "{style}"' for name, style in LLAMA_PLAN)
        lines += [
            "",
            f"[tool.cnnbudget.models.{model.name}.parallel]",
            'strategy = "fsdp"',
            f"world_size = {model.world_size}",
            f"tensor_parallel = {model.tensor_parallel}",
            f"tp_plan = {{ {plan} }}",
        ]
    return "\n".join(lines) + "\n"


def _cost(ctx: Context, model: Ranked) -> tuple[list[Row], list[str]]:
    folder = ctx.projects.root / "parallel"
    folder.mkdir()
    (folder / "rank_models.py").write_text(SHIM.format(tests=str(REPO / "tests")))
    (folder / "pyproject.toml").write_text(_config(model, parallel=True))
    (folder / "single.toml").write_text(_config(model, parallel=False))
    shape = "×".join(map(str, model.shape))
    traced = " peak in training"
    per_rank = Job(
        f"{model.label} at {shape}, {model.setting}",
        pytest_argv(*PLAIN, "--cnn-budget", "pyproject.toml"),
        folder,
        expect=("1 passed", traced),
    )
    single = Job(
        f"{model.label} at {shape}, single device (no parallel table)",
        pytest_argv(*PLAIN, "--cnn-budget", "--cnn-budget-config", "single.toml", "single.toml"),
        folder,
        expect=("1 passed", traced),
    )
    rank, rank_tree = _measured(ctx, per_rank)
    one, one_tree = _measured(ctx, single)
    rss = max(rank.rss, rank_tree.pss_mb)

    def peak(stats: Stats) -> str:
        found = _PEAK.search(stats.samples[0].stdout)
        if found is None:
            raise BenchError(f"no training peak in the gate's output:\n{stats.samples[0].stdout}")
        return found.group(1)

    what = f"{model.label} at {shape}, {model.short}, max_train_memory"
    rows = [
        Row(
            "13",
            f"{what}: pytest --cnn-budget wall",
            f"{rank.wall:.2f} s ({rank.cpu:.2f} s CPU); single device {one.wall:.2f} s",
            f"under {WALL_TARGET:.0f} s",
            rank.wall < WALL_TARGET,
        ),
        Row(
            "13",
            f"{what}: peak RSS",
            f"{mb(rank.rss)} largest process; {mb(rank_tree.pss_mb)} the tree at once (PSS; "
            f"RSS summed {mb(rank_tree.rss_mb)}); single device {mb(one.rss)}, "
            f"{mb(one_tree.pss_mb)}",
            f"under {RSS_TARGET_MB:,.0f} MB, largest process or tree PSS",
            rss < RSS_TARGET_MB,
        ),
    ]
    lines = [
        "What tracing one rank costs a gate run: whole `pytest -p no:cacheprovider --cnn-budget` "
        f"processes on a config of one model (`snapshot = false`), {model.label} of "
        f"`tests/architectures.py` built on meta, input_shape [{', '.join(map(str, model.shape))}]"
        f" per rank, `max_train_memory = {MEMORY_BUDGET}` and a `parallel` table of strategy "
        f'"fsdp", world_size {model.world_size}, tensor_parallel {model.tensor_parallel} and '
        "docs/parallel.md's tp_plan (attention and feed-forward column- then row-wise, the "
        "embedding by vocabulary, the head column-wise gathered); next to it the same config "
        "without the table, traced for a single device. The gate checks in a forked process and "
        "the per-rank trace forks again (engine/apart.py), so three processes are alive during "
        "the trace. Peak RSS is ru_maxrss from wait4(): on Linux the peak of the largest "
        "process of the tree, each process folding in the peaks of the children it reaped, so "
        "the trace's fork is covered. The tree columns add up the processes alive at once, "
        f"read from /proc every {SAMPLE_EVERY} s over all runs of the job: PSS splits a page "
        "among the processes mapping it (after a fork, parent and child; a shared library, "
        "every process on the machine that loaded it, so it reads low while other torch "
        "processes run), RSS summed counts a shared page once per process (torch's libraries "
        "and the pages a fork shares, three times): a bound from above. The target judges the "
        "larger of the largest process and the tree's PSS.",
        "",
        *runs_table(
            {per_rank.label: rank, single.label: one},
            _tree_columns({per_rank.label: rank_tree, single.label: one_tree}),
        ),
        "",
        f"The gate's traced training peaks: per rank {peak(rank)}, single device {peak(one)} "
        "(GB of 2^30 bytes).",
    ]
    return rows, lines


# -- the trace against real runs and FSDPMemTracker -----------------------------------------


def _comparison(ctx: Context, runs: Sequence[Run]) -> tuple[list[Row], list[str]]:
    spec = json.dumps(TOKEN_MLP)
    tables = json.dumps([r.parallel for r in runs])
    traced = ctx.runner.once(
        Job("per-rank traces, TokenMlp", _launch("trace_child", spec, tables), BENCH_DIR)
    ).inside
    real: dict[int, dict[str, float]] = {}
    real_s: dict[int, float] = {}
    for world in sorted({r.world for r in runs}):
        settings = json.dumps([dict(r.settings) for r in runs if r.world == world])
        sample = ctx.runner.once(
            Job(f"real runs, world {world}", _launch("real_child", str(world), settings), BENCH_DIR)
        )
        real[world] = sample.inside
        real_s[world] = sample.wall
    tracked: dict[str, dict[str, float] | str] = {}
    for run in runs:
        if run.unsupported is not None:
            tracked[run.label] = f"{NOT_SUPPORTED} ({run.unsupported})"
            continue
        job = Job(
            f"FSDPMemTracker, {run.label}",
            _launch("tracker_child", spec, json.dumps(run.parallel)),
            BENCH_DIR,
        )
        try:
            tracked[run.label] = ctx.runner.once(job).inside
        except BenchError as e:
            tracked[run.label] = f"failed: {_last_line(str(e))}"

    def real_of(run: Run, key: str) -> float:
        index = [r for r in runs if r.world == run.world].index(run)
        return real[run.world][f"{key}_{index}"]

    rows: list[list[str]] = []
    trace_vs: dict[str, float] = {}
    tracker_vs: dict[str, float] = {}
    ranks_vs: dict[str, float] = {}
    for i, run in enumerate(runs):
        trace = traced[f"peak_train_{i}"]
        first = real_of(run, "rank0")
        trace_vs[run.label] = trace / first - 1
        # The reference test holds the trace to every rank: the one it is furthest from.
        each = [trace / real_of(run, f"rank{r}") - 1 for r in range(run.world)]
        furthest_rank = max(range(run.world), key=lambda r: abs(each[r]))
        ranks_vs[run.label] = abs(each[furthest_rank])
        other = tracked[run.label]
        if isinstance(other, dict):
            tracker_vs[run.label] = other["peak"] / first - 1
            cells = [f"{other['peak']:,.0f}", f"{tracker_vs[run.label]:+.2%}"]
        else:
            cells = [other, "—"]
        rows.append(
            [
                run.label,
                f"{trace:,.0f}",
                f"{first:,.0f}",
                f"{trace_vs[run.label]:+.2%}",
                f"{each[furthest_rank]:+.2%} (rank {furthest_rank})",
                *cells,
            ]
        )
    worst = max(ranks_vs, key=lambda label: ranks_vs[label])
    rest = [d for label, d in ranks_vs.items() if label != worst]
    out = [
        Row(
            "13",
            f"trace vs real runs, training peak per rank (TokenMlp, {len(runs)} runs)",
            f"worst {ranks_vs[worst]:.2%} off ({worst}, any rank)"
            + (f"; the other {len(rest)} within {max(rest):.2%}" if rest else ""),
            f"within {TOLERANCE:.0%}",
            ranks_vs[worst] <= TOLERANCE,
        ),
    ]
    skipped = [label for label, t in tracked.items() if not isinstance(t, dict)]
    if tracker_vs:
        furthest = max(tracker_vs, key=lambda label: abs(tracker_vs[label]))
        others = [abs(d) for label, d in tracker_vs.items() if label != furthest]
        out.append(
            Row(
                "13",
                "FSDPMemTracker vs real runs, training peak of rank 0 (TokenMlp)",
                f"worst {tracker_vs[furthest]:+.2%} ({furthest})"
                + (f"; the other {len(others)} within {max(others):.2%}" if others else "")
                + (f"; {len(skipped)} not supported" if skipped else ""),
                "—",
                None,
            )
        )
    trace_times = ", ".join(f"{traced[f'seconds_{i}']:.2f}" for i in range(len(runs)))
    tracker_times = ", ".join(
        f"{label} {t['seconds']:.2f} s" for label, t in tracked.items() if isinstance(t, dict)
    )
    lines = [
        "The per-rank trace against real runs and against torch's FSDPMemTracker, on "
        "`tests/nets.py`'s TokenMlp(1000, 128, 4) with 4×64 token ids a rank, AdamW, float32: "
        "the runs `tests/reference/test_parallel_real.py` checks. **trace**: "
        "`measure_rank_memory`'s "
        "`peak_train` (rank 0, the second step). **real**: `tests/parallel_runs.py`, one "
        "process a rank over gloo, set up with torch's own calls, the second step's most live "
        "bytes by the cpu allocator's own count, rank 0 (the column after it: the trace against "
        "the rank it is furthest from, of all ranks). **FSDPMemTracker**: "
        "`torch.distributed._tools.fsdp2_mem_tracker`, in a fresh process a run: the model "
        "built on meta, tensor parallel then `fully_shard` on each block and the root as "
        "`tests/parallel_runs.py` sets it up, under torch's fake process group; `to_empty` on "
        "the cpu under `FakeTensorMode`, one step untracked (AdamW's state), then the peak "
        "`Total` of the cpu in its `peak` snapshot of the second. It takes an FSDP module, so "
        "DDP and tensor parallel without `fully_shard` are not tracked. Bytes; the "
        "percentages are against the real rank 0.",
        "",
        *table(
            [
                "run",
                "trace",
                "real, rank 0",
                "trace vs real",
                "vs furthest rank",
                "FSDPMemTracker",
                "vs real",
            ],
            rows,
            right=[False, True, True, True, True, True, True],
        ),
        "",
        f"Seconds per trace (in one process, each forked): {trace_times}. Real runs: "
        + ", ".join(f"world {w} {sec(s)} for all its runs" for w, s in real_s.items())
        + f". FSDPMemTracker, its two steps: {tracker_times or 'none run'}.",
    ]
    if ctx.quick:
        lines.append("Quick run: the fsdp 2 and ddp 2 runs only, with their real runs (world 2).")
    return out, lines


# -- at scale: the trace and FSDPMemTracker on LLaMA-7B ---------------------------------------


def _at_scale(ctx: Context, model: Ranked) -> tuple[list[Row], list[str]]:
    """Both tracers on the gate's LLaMA-7B set-up, each in a process of its own."""
    spec = json.dumps(
        {
            "factory": model.factory,
            "kwargs": model.kwargs,
            "shape": list(model.shape),
            "blocks": "layers",
            "plan": [list(entry) for entry in LLAMA_PLAN],
        }
    )
    parallel: dict[str, Any] = {
        "strategy": "fsdp",
        "world_size": model.world_size,
        "tensor_parallel": model.tensor_parallel,
        "tp_plan": [list(entry) for entry in LLAMA_PLAN],
    }
    ours = Job(
        f"measure_rank_memory, {model.label} {model.setting}",
        _launch("trace_child", spec, json.dumps([parallel])),
        BENCH_DIR,
    )
    theirs = Job(
        f"FSDPMemTracker, {model.label} {model.setting}",
        _launch("tracker_child", spec, json.dumps(parallel)),
        BENCH_DIR,
    )
    ours_stats, ours_tree = _measured(ctx, ours)
    theirs_stats, theirs_tree = _measured(ctx, theirs)
    our_peak = ours_stats.samples[0].inside["peak_train_0"]
    their_peak = theirs_stats.samples[0].inside["peak"]
    shape = "×".join(map(str, model.shape))
    rows = [
        Row(
            "13",
            f"{model.label} at {shape}, {model.short}: the per-rank trace vs FSDPMemTracker",
            f"{ours_stats.wall:.2f} s, {mb(max(ours_stats.rss, ours_tree.pss_mb))} vs "
            f"{theirs_stats.wall:.2f} s, {mb(max(theirs_stats.rss, theirs_tree.pss_mb))}; "
            f"training peak {our_peak / 1e9:.2f} vs {their_peak / 1e9:.2f} GB (10^9 B)",
            "—",
            None,
        )
    ]
    inside_ours = ours_stats.inside("seconds_0")
    lines = [
        f"Both tracers on {model.label} at {shape} a rank, {model.setting} with docs/parallel.md's "
        "plan: `python -c` processes that import torch, build the model on meta and trace it. "
        f"`measure_rank_memory` took {sec(inside_ours)} of the wall (in its fork: wrapping, both "
        "steps and an inference pass); FSDPMemTracker's set-up is torch's own calls "
        f"({sec(theirs_stats.inside('setup'))} to import torch, build and wrap, "
        f"{sec(theirs_stats.inside('first'))} for "
        f"the untracked first step, {sec(theirs_stats.inside('tracked'))} for the tracked "
        "second). Peak RSS as above: the largest process, and the tree at once.",
        "",
        *runs_table(
            {ours.label: ours_stats, theirs.label: theirs_stats},
            _tree_columns({ours.label: ours_tree, theirs.label: theirs_tree}),
        ),
        "",
        f"Training peak of rank 0: the trace {our_peak:,.0f} bytes, FSDPMemTracker "
        f"{their_peak:,.0f} ({their_peak / our_peak - 1:+.2%}).",
    ]
    return rows, lines


def _launch(function: str, *args: str) -> tuple[str, ...]:
    return (python(), "-c", _LAUNCH.format(function, function), *args)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else text


# -- the children ---------------------------------------------------------------------------


def _tests_on_path() -> None:
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


def _build(spec: dict[str, Any]) -> nn.Module:
    """The model `spec` names, on meta: TokenMlp of tests/nets.py, or a tests/architectures.py
    factory."""
    import torch

    _tests_on_path()
    # When mypy checks tests/ and benchmarks/ together it finds the modules; alone it does not.
    import architectures  # type: ignore[import-not-found,unused-ignore]
    import nets  # type: ignore[import-not-found,unused-ignore]

    factory = getattr(nets if spec["factory"] == "TokenMlp" else architectures, spec["factory"])
    with torch.device("meta"):
        model: nn.Module = factory(**spec["kwargs"])
    return model


def trace_child(argv: Sequence[str]) -> None:
    """In a fresh process: `measure_rank_memory` of the model `argv[0]` (a JSON spec) under
    each `parallel` table of the JSON list `argv[1]`, reported by index."""
    from child import report

    from pytest_cnnbudget.engine.rank_memory import measure_rank_memory
    from pytest_cnnbudget.inputs import InputSpec
    from pytest_cnnbudget.ranks import ParallelOptions
    from pytest_cnnbudget.results import MemoryOptions

    spec = json.loads(argv[0])
    model = _build(spec)
    inputs = InputSpec(args=(tuple(spec["shape"]),))
    figures: dict[str, float] = {}
    for i, setting in enumerate(json.loads(argv[1])):
        if "tp_plan" in setting:
            setting["tp_plan"] = tuple(tuple(entry) for entry in setting["tp_plan"])
        options = MemoryOptions(parallel=ParallelOptions(**setting))
        start = time.perf_counter()
        memory = measure_rank_memory(model, inputs, options)
        figures[f"seconds_{i}"] = time.perf_counter() - start
        figures[f"peak_train_{i}"] = float(memory.peak_train)
        figures[f"weights_{i}"] = float(memory.weights)
    report(**figures)


def real_child(argv: Sequence[str]) -> None:
    """In a fresh process: tests/parallel_runs.py over `argv[0]` ranks for the runs of the JSON
    list `argv[1]`, as tests/reference/test_parallel_real.py starts it; every rank's peak, by
    run index."""
    from child import report

    world, runs = int(argv[0]), json.loads(argv[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / f"world{world}"
        done = subprocess.run(
            [python(), str(REPO / "tests" / "parallel_runs.py"), str(world), str(out), argv[1]],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"tests/parallel_runs.py failed:\n{done.stdout}\n{done.stderr}")
        ranks = [json.loads(Path(f"{out}.{rank}.json").read_text()) for rank in range(world)]
    figures: dict[str, float] = {}
    for i in range(len(runs)):
        for rank, result in enumerate(ranks):
            figures[f"rank{rank}_{i}"] = float(result["runs"][i]["peak_train"])
    report(**figures)


def tracker_child(argv: Sequence[str]) -> None:
    """In a fresh process: FSDPMemTracker's peak for the second training step of the model
    `argv[0]` (a JSON spec) under the `parallel` table `argv[1]`, set up with torch's calls."""
    start = time.perf_counter()
    import torch
    import torch.distributed as dist
    from child import report
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.testing._internal.distributed.fake_pg import FakeStore

    spec, setting = json.loads(argv[0]), json.loads(argv[1])
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=setting["world_size"])
    model = _build(spec)
    _torch_setup(model, spec, setting)
    setup = time.perf_counter() - start
    vocab = spec["kwargs"].get("vocab", 32000)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model.to_empty(device="cpu")
        optimizer = torch.optim.AdamW(model.parameters())
        ids = torch.randint(0, vocab, tuple(spec["shape"]))
        tracker = FSDPMemTracker(model, optimizer)
        tracker.track_inputs((ids,))

        def step() -> None:
            loss = model(ids).sum()
            loss.backward()
            del loss
            optimizer.step()
            optimizer.zero_grad()

        start = time.perf_counter()
        step()  # makes AdamW's state, as a run's first step does
        first = time.perf_counter() - start
        start = time.perf_counter()
        with tracker:
            step()
        tracked = time.perf_counter() - start
        peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    dist.destroy_process_group()
    report(peak=float(peak), setup=setup, first=first, tracked=tracked, seconds=first + tracked)


def _torch_setup(model: nn.Module, spec: dict[str, Any], setting: dict[str, Any]) -> None:
    """`model` wrapped as tests/parallel_runs.py's _setup wraps TokenMlp: tensor parallel by the
    plan, then `fully_shard` on each block and the root, over the mesh `setting` gives."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        ParallelStyle,
        RowwiseParallel,
        parallelize_module,
    )

    world, tp = setting["world_size"], setting.get("tensor_parallel", 1)
    if setting["strategy"] == "hsdp":
        replicate = setting.get("replicate", 1)
        mesh = init_device_mesh(
            "cpu", (replicate, world // replicate // tp, tp), mesh_dim_names=("rep", "shard", "tp")
        )
        dp = mesh["rep", "shard"]
    else:
        mesh = init_device_mesh("cpu", (world // tp, tp), mesh_dim_names=("dp", "tp"))
        dp = mesh["dp"]
    if tp > 1:
        styles: dict[str, ParallelStyle] = {
            "vocab": RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate()),
            "colwise_replicate": ColwiseParallel(output_layouts=Replicate()),
            "colwise": ColwiseParallel(),
            "rowwise": RowwiseParallel(),
        }
        plan: dict[str, ParallelStyle] = {}
        for pattern, style in spec["plan"]:
            regex = re.compile(pattern.replace(".", r"\.").replace("*", r"[^.]+"))
            for name, _ in model.named_modules():
                if name and regex.fullmatch(name):
                    plan[name] = styles[style]
        parallelize_module(model, mesh["tp"], plan)
    kwargs: dict[str, Any] = {
        "mesh": dp,
        "reshard_after_forward": setting.get("reshard_after_forward", True),
    }
    if setting.get("mixed_precision") == "bf16":
        kwargs["mp_policy"] = MixedPrecisionPolicy(torch.bfloat16, torch.float32)
    for block in model.get_submodule(spec["blocks"]).children():
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
