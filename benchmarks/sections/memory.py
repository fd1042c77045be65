"""Section 11: the memory of a training step and an inference pass as the meta trace gives it
(pytest_cnnbudget.engine.memory) against a real cpu run of the same step, and what tracing it
adds to a gate run.

The real runs are tests/realmem.py's: torch.profiler's record of every cpu allocation and free,
with the bytes live at the start added. Each model is traced and run in a fresh process of its
own (`validate_child`), since this process must not import torch and a large real run must not
leave its allocator's cache to the next.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from context import Context
from harness import BENCH_DIR, REPO, BenchError, Job, Stats, pytest_argv, python
from report import Row, Section, runs_table, sec, table

TRAIN_TOLERANCE = 0.10  # |meta / real − 1| of the training step's peak
INFERENCE_TOLERANCE = 0.15  # the same of the inference pass's
LLAMA_WALL_TARGET = 10.0  # s, the whole `pytest --cnn-budget` process
LLAMA_RSS_TARGET_MB = 1.5 * 1024  # 1.5 GB, in the report's MB of 2**20 bytes
ADDED_TARGET = 3.0  # s, what max_train_memory adds to the ResNet-50 gate session
MEMORY_BUDGET = '"200GB"'  # far above every traced peak: the run measures, it judges nothing
PLAIN = ("-p", "no:cacheprovider")  # no cache written between timed runs
# The gate's status line of a memory budget: `109 GB peak in training`.
_PEAK = re.compile(r"([\d.]+ [kMGT]?B) peak in training")
# The child imports this module from benchmarks/ (its cwd) and runs one validation.
_LAUNCH = "import sys; from sections.memory import validate_child; validate_child(sys.argv[1:])"


@dataclass(frozen=True)
class Validated:
    """A model of tests/architectures.py, measured by both the meta trace and a real run."""

    label: str
    factory: str
    shape: tuple[int, ...]  # two dimensions: token ids (batch, tokens); else an image batch


VALIDATED = (
    Validated("ResNet-18", "resnet18", (8, 3, 224, 224)),
    Validated("ResNet-50", "resnet50", (8, 3, 224, 224)),
    Validated("ViT-B/16", "vit_b_16", (8, 3, 224, 224)),
    Validated("GPT-2", "gpt2", (8, 512)),
)
QUICK_VALIDATED = (Validated("ResNet-18", "resnet18", (2, 3, 64, 64)),)


@dataclass(frozen=True)
class Gated:
    """A model the gate checks with `max_train_memory`, in a project of its own config."""

    name: str  # its [tool.cnnbudget.models.<name>] table
    label: str
    factory: str
    shape: tuple[int, ...]
    kwargs: dict[str, int] = field(default_factory=dict)


LLAMA_7B = Gated("llama7b", "LLaMA-7B", "llama", (1, 2048))
QUICK_LLAMA = Gated(
    "llama_small",
    "LLaMA shape (2 blocks, dim 256)",
    "llama",
    (1, 128),
    {"vocab": 1000, "dim": 256, "n_layers": 2, "hidden": 512, "n_heads": 4},
)
RESNET_50 = Gated("resnet50_b32", "ResNet-50", "resnet50", (32, 3, 224, 224))
QUICK_RESNET = Gated("resnet18_b2", "ResNet-18", "resnet18", (2, 3, 64, 64))

# The gate's projects import their models through this, so that the targets read like a user's
# ("mem_models:llama") while the definitions stay those the tests check.
SHIM = """\
import sys

sys.path.insert(0, {tests!r})
from architectures import llama, resnet18, resnet50  # noqa: E402, F401
"""


def bench_memory(ctx: Context) -> Section:
    """11. The meta trace's figures vs. a real cpu run; what max_train_memory costs the gate."""
    validated = QUICK_VALIDATED if ctx.quick else VALIDATED
    section = Section("11. Memory: the meta trace vs. a real cpu run, and its cost in the gate")
    figures = {model.label: _validate(ctx, model) for model in validated}
    section.rows += _validation_rows(figures)
    section.lines += _validation_lines(validated, figures)
    llama, resnet = (QUICK_LLAMA, QUICK_RESNET) if ctx.quick else (LLAMA_7B, RESNET_50)
    rows, lines = _cost(ctx, llama, resnet)
    section.rows += rows
    section.lines += ["", *lines]
    return section


# -- validation -----------------------------------------------------------------------------


def _validate(ctx: Context, model: Validated) -> dict[str, float]:
    """The figures of one model's child process (validate_child)."""
    job = Job(
        f"{model.label} meta trace + real cpu run",
        (python(), "-c", _LAUNCH, model.factory, *map(str, model.shape)),
        BENCH_DIR,
    )
    # Bytes, not times, are what is compared: one run of each model is enough.
    inside = ctx.runner.once(job).inside
    if "real_peak_train" not in inside:
        raise BenchError(f"{job.label}: the child reported no figures ({inside})")
    return inside


def _within(value: float, tolerance: float) -> bool:
    return abs(value - 1.0) <= tolerance


def _validation_rows(figures: dict[str, dict[str, float]]) -> list[Row]:
    rows = []
    for what, key, tolerance in (
        ("meta/real peak, training step", "peak_train", TRAIN_TOLERANCE),
        ("meta/real peak, inference", "peak_inference", INFERENCE_TOLERANCE),
    ):
        ratios = {label: f[f"meta_{key}"] / f[f"real_{key}"] for label, f in figures.items()}
        worst = max(ratios, key=lambda label: abs(ratios[label] - 1.0))
        each = ", ".join(f"{label} {r:.3f}×" for label, r in ratios.items())
        rows.append(
            Row(
                "11",
                what,
                f"worst {ratios[worst]:.3f}× ({worst}); {each}",
                f"within {tolerance:.0%} ({1 - tolerance:.2f}–{1 + tolerance:.2f}×)",
                all(_within(r, tolerance) for r in ratios.values()),
            )
        )
    equal = [label for label, f in figures.items() if f["meta_activations"] == f["real_saved"]]
    differ = [label for label in figures if label not in equal]
    rows.append(
        Row(
            "11",
            "saved activations meta == real",
            f"equal for {len(equal)} of {len(figures)} models"
            + (f"; differ: {', '.join(differ)}" if differ else f" ({', '.join(equal)})"),
            "exact",
            not differ,
        )
    )
    return rows


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def _difference(real: float, meta: float) -> str:
    """What the real run had beyond the trace, in bytes where it is under 0.1 MB."""
    d = real - meta
    if d == 0:
        return "equal"
    return f"{d:+,.0f} B" if abs(d) < 0.1 * 2**20 else f"{d / 2**20:+,.1f} MB"


def _validation_lines(
    validated: Sequence[Validated], figures: dict[str, dict[str, float]]
) -> list[str]:
    lines = [
        "Each model of `tests/architectures.py` in a fresh process: `measure_memory` on a meta "
        "build (AdamW with torch's defaults, float32, train mode for the step), then "
        "`tests/realmem.py` on a cpu build of the same model, seeded: one inference forward "
        "under `no_grad` in eval mode, then one training step (forward, loss = the sum of the "
        "logits, backward, `optimizer.step()`) after a first step on zero gradients that made "
        "AdamW's state. The real peak is the running sum of every allocation and free "
        "torch.profiler recorded, plus the bytes live when it started (weights, optimizer "
        "state, inputs); saved activations are what autograd's saved-tensor hooks saw, each "
        "storage once, parameters and buffers left out. Both sides run the same optimizer "
        "implementation (single-tensor: torch picks foreach on CUDA only). MB are 2^20 bytes; "
        "the last column is what the real run had beyond the trace.",
    ]
    for model in validated:
        f = figures[model.label]
        rows = []
        for what, meta, real in (
            ("weights and buffers", "meta_weights", "real_weights"),
            ("optimizer state (AdamW)", "meta_optimizer", "real_optimizer"),
            ("gradients", "meta_gradients", "real_gradients"),
            ("saved for backward (activations)", "meta_activations", "real_saved"),
            ("peak, training step", "meta_peak_train", "real_peak_train"),
            ("peak, inference", "meta_peak_inference", "real_peak_inference"),
        ):
            rows.append(
                [
                    what,
                    _mib(f[meta]),
                    _mib(f[real]),
                    f"{f[meta] / f[real]:.3f}×" if f[real] else "—",
                    _difference(f[real], f[meta]),
                ]
            )
        shape = "×".join(map(str, model.shape))
        kind = "tokens" if len(model.shape) == 2 else "images"
        lines += [
            "",
            f"**{model.label}**, {kind} {shape} ({f['params']:,.0f} parameters):",
            "",
            *table(
                ["figure", "meta trace", "real cpu run", "meta / real", "real − meta"],
                rows,
                right=[False, True, True, True, True],
            ),
            "",
            f"The meta trace took {sec(f['trace_s'])}; the real inference forward "
            f"{sec(f['real_inference_s'])} and the two real training steps "
            f"{sec(f['real_train_s'])}. Inputs live at the start of the real step: "
            f"{_mib(f['real_inputs'])}.",
        ]
    return lines


def validate_child(argv: Sequence[str]) -> None:
    """In a fresh process: `measure_memory` of the model `argv[0]` of tests/architectures.py at
    the input shape `argv[1:]`, then a real cpu run of the same, all reported in bytes."""
    import torch
    from child import report
    from torch import nn

    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    # When mypy checks tests/ and benchmarks/ together it finds the modules; alone it does not.
    import architectures  # type: ignore[import-not-found,unused-ignore]
    import realmem  # type: ignore[import-not-found,unused-ignore]

    from pytest_cnnbudget.engine.memory import measure_memory
    from pytest_cnnbudget.inputs import InputSpec
    from pytest_cnnbudget.results import MemoryOptions

    factory = getattr(architectures, argv[0])
    shape = tuple(int(d) for d in argv[1:])
    with torch.device("meta"):
        meta_model = factory()
    start = time.perf_counter()
    meta = measure_memory(meta_model, InputSpec(args=(shape,)), MemoryOptions())
    trace = time.perf_counter() - start
    del meta_model

    torch.manual_seed(0)
    model: nn.Module = factory()
    if len(shape) == 2:
        vocab = next(m for m in model.modules() if isinstance(m, nn.Embedding)).num_embeddings

        def make_inputs() -> tuple[torch.Tensor, ...]:
            return (torch.randint(0, vocab, shape),)
    else:

        def make_inputs() -> tuple[torch.Tensor, ...]:
            return (torch.randn(shape),)

    # Inference first: its peak does not count the optimizer's state, which then exists.
    start = time.perf_counter()
    inference = realmem.inference(model, make_inputs)
    real_inference = time.perf_counter() - start
    optimizer = torch.optim.AdamW(model.parameters())
    start = time.perf_counter()
    train = realmem.train_step(model, make_inputs, optimizer)
    real_train = time.perf_counter() - start
    weights = realmem.storage_bytes([*model.parameters(), *model.buffers()])
    # As train_step counts it: the scalar step counters are no tensor memory of the device.
    state = realmem.storage_bytes(
        [
            t
            for s in optimizer.state.values()
            for t in s.values()
            if isinstance(t, torch.Tensor) and t.dim() > 0
        ]
    )
    report(
        params=float(sum(p.numel() for p in model.parameters())),
        meta_weights=float(meta.weights),
        meta_optimizer=float(meta.optimizer),
        meta_gradients=float(meta.gradients),
        meta_activations=float(meta.activations),
        meta_peak_train=float(meta.peak_train),
        meta_peak_inference=float(meta.peak_inference),
        real_weights=float(weights),
        real_optimizer=float(state),
        real_inputs=float(train.start - weights - state),
        real_gradients=float(train.gradients),
        real_saved=float(train.saved),
        real_peak_train=float(train.peak),
        real_peak_inference=float(inference.peak),
        trace_s=trace,
        real_inference_s=real_inference,
        real_train_s=real_train,
    )


# -- cost in the gate -----------------------------------------------------------------------


def _config(model: Gated, memory: bool) -> str:
    """A config of `model` alone; without `memory`, the same model and input shape with a
    parameter budget instead, so that the difference is the memory trace."""
    lines = [
        "[tool.pytest.ini_options]",
        "",
        "[tool.cnnbudget]",
        "snapshot = false",
        "",
        f"[tool.cnnbudget.models.{model.name}]",
        f'target = "mem_models:{model.factory}"',
    ]
    if model.kwargs:
        lines.append(
            "kwargs = { " + ", ".join(f"{k} = {v}" for k, v in model.kwargs.items()) + " }"
        )
    lines.append(f"input_shape = [{', '.join(map(str, model.shape))}]")
    lines.append(f"max_train_memory = {MEMORY_BUDGET}" if memory else f"max_params = {10**15}")
    return "\n".join(lines) + "\n"


def _cost(ctx: Context, llama: Gated, resnet: Gated) -> tuple[list[Row], list[str]]:
    folder = ctx.projects.root / "memory"
    folder.mkdir()
    (folder / "mem_models.py").write_text(SHIM.format(tests=str(REPO / "tests")))
    (folder / "pyproject.toml").write_text(_config(llama, memory=True))
    configs = {
        "llama_nomem.toml": _config(llama, memory=False),
        "resnet.toml": _config(resnet, memory=True),
        "resnet_nomem.toml": _config(resnet, memory=False),
    }
    for name, text in configs.items():
        (folder / name).write_text(text)

    def job(label: str, config: str, memory: bool, *extra: str) -> Job:
        where = (
            ("pyproject.toml",)
            if config == "pyproject.toml"
            else ("--cnn-budget-config", config, config)
        )
        traced = (" peak in training",)
        return Job(
            label,
            pytest_argv(*PLAIN, "--cnn-budget", *extra, *where),
            folder,
            expect=("1 passed", *(traced if memory else ())),
            reject=() if memory else traced,
        )

    llama_shape = "×".join(map(str, llama.shape))
    resnet_shape = "×".join(map(str, resnet.shape))
    jobs = {
        "llama": job(f"{llama.label} at {llama_shape}, max_train_memory", "pyproject.toml", True),
        "llama_off": job(
            f"{llama.label} at {llama_shape}, max_train_memory, --cnn-budget-isolation=off",
            "pyproject.toml",
            True,
            "--cnn-budget-isolation=off",
        ),
        "llama_nomem": job(
            f"{llama.label} at {llama_shape}, max_params only", "llama_nomem.toml", False
        ),
        "resnet": job(f"{resnet.label} at {resnet_shape}, max_train_memory", "resnet.toml", True),
        "resnet_nomem": job(
            f"{resnet.label} at {resnet_shape}, max_params only", "resnet_nomem.toml", False
        ),
    }
    measured = ctx.runner.measure(list(jobs.values()), ctx.repeat)
    s = {key: measured[j.label] for key, j in jobs.items()}

    def rounds(with_: Stats, without: Stats) -> list[float]:
        # The runs of one round are seconds apart: their difference cancels the machine's drift.
        return [a.wall - b.wall for a, b in zip(with_.samples, without.samples, strict=True)]

    def added(with_: Stats, without: Stats) -> float:
        return statistics.median(rounds(with_, without))

    def spread(with_: Stats, without: Stats) -> str:
        each = rounds(with_, without)
        return f"rounds {min(each):+.2f} to {max(each):+.2f} s" if len(each) > 1 else "one round"

    def traced(stats: Stats) -> str:
        found = _PEAK.search(stats.samples[0].stdout)
        if found is None:
            raise BenchError(f"no training peak in the gate's output:\n{stats.samples[0].stdout}")
        return found.group(1)  # as the summary shows it, three significant digits

    llama_added = added(s["llama"], s["llama_nomem"])
    resnet_added = added(s["resnet"], s["resnet_nomem"])
    rss = max(s["llama"].rss, s["llama_off"].rss)
    rows = [
        Row(
            "11",
            f"{llama.label} at {llama_shape}, max_train_memory: pytest --cnn-budget wall",
            # Two decimals: the target is a round number the median can sit next to.
            f"{s['llama'].wall:.2f} s ({s['llama'].cpu:.2f} s CPU); the memory trace "
            f"{llama_added:+.2f} s of it ({spread(s['llama'], s['llama_nomem'])})",
            f"under {LLAMA_WALL_TARGET:.0f} s",
            s["llama"].wall < LLAMA_WALL_TARGET,
        ),
        Row(
            "11",
            f"{llama.label} at {llama_shape}, max_train_memory: peak RSS",
            f"{s['llama'].rss:,.0f} MB forked check (the default); {s['llama_off'].rss:,.0f} MB "
            "all in pytest's process",
            f"under {LLAMA_RSS_TARGET_MB:,.0f} MB (1.5 GB), the larger",
            rss < LLAMA_RSS_TARGET_MB,
        ),
        Row(
            "11",
            f"{resnet.label} at {resnet_shape}: what max_train_memory adds to the gate session",
            f"{resnet_added:+.2f} s wall ({sec(s['resnet_nomem'].wall)} → "
            f"{sec(s['resnet'].wall)}; {spread(s['resnet'], s['resnet_nomem'])})",
            f"under {ADDED_TARGET:.0f} s",
            resnet_added < ADDED_TARGET,
        ),
    ]
    labels = {j.label: key for key, j in jobs.items()}
    without = {"llama": "llama_nomem", "resnet": "resnet_nomem", "llama_off": "llama_nomem"}

    def vs(label: str, stats: Stats) -> str:
        key = labels[label]
        return f"{added(stats, s[without[key]]):+.2f} s" if key in without else "—"

    lines = [
        "What `max_train_memory` costs a gate run: whole `pytest -p no:cacheprovider "
        "--cnn-budget` processes, each on a config of one model (`snapshot = false`) built on "
        "meta from `tests/architectures.py`, with its `input_shape` and "
        f"`max_train_memory = {MEMORY_BUDGET}`, against the same config with `max_params` in "
        "its place. Both sides run the forward pass on meta that an input shape asks for "
        "(shapes and MACs); the memory trace (inference pass, AdamW's state, training step) is "
        "the difference. The wall targets judge: for "
        f"{llama.label} the whole process, for {resnet.label} the paired difference (median "
        "over rounds of with − without). Peak RSS is the process's ru_maxrss from wait4(): by "
        "default the gate checks in a forked process, whose own peak that figure may not show "
        "(a fork shares the pages it only reads), so the same run with "
        "`--cnn-budget-isolation=off`, everything in one process, is measured too and the "
        "target judges the larger.",
        "",
        *runs_table(measured, {"− max_params only": vs}),
        "",
        f"The gate's traced training peaks: {llama.label} {traced(s['llama'])}, "
        f"{resnet.label} {traced(s['resnet'])} (GB of 2^30 bytes).",
    ]
    return rows, lines
