"""Per-rank memory: the `parallel` table checked, one rank traced under a fake process group,
and the trace held to real multi-process runs on the cpu (gloo)."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

# Loaded before any pytester test: pytester drops the modules a test imported when it ends, and
# torch's operators cannot be registered twice in one process (or its forks).
import torch.distributed.fsdp
import torch.distributed.tensor.parallel
import torch.testing._internal.distributed.fake_pg
from nets import TokenMlp
from project import preload_torch
from schemas import problems

from pytest_cnnbudget.config.settings import load_settings
from pytest_cnnbudget.engine.rank_memory import measure_rank_memory
from pytest_cnnbudget.errors import ConfigError, MemoryTraceError
from pytest_cnnbudget.inputs import InputSpec
from pytest_cnnbudget.ranks import PEAK_PARTS, ParallelOptions
from pytest_cnnbudget.results import Memory, MemoryOptions

HERE = Path(__file__).parent
preload_torch()  # a meta build imports torch._dynamo: before any pytester test, not in one
PLAN = (
    ("embed", "vocab"),
    ("blocks.*.up", "colwise"),
    ("blocks.*.down", "rowwise"),
    ("head", "colwise_replicate"),
)
IDS = InputSpec(args=((4, 64),))  # as tests/parallel_runs.py trains each rank


def _trace(model: torch.nn.Module | None = None, **parallel: Any) -> Memory:
    if model is None:
        with torch.device("meta"):
            model = TokenMlp(1000, 128, 4)
    options = MemoryOptions(parallel=ParallelOptions(**parallel))
    return measure_rank_memory(model, IDS, options)


# -- the table ------------------------------------------------------------------------------


def _problems(tmp_path: Path, parallel: str, extra: str = 'max_train_memory = "1GB"') -> str:
    path = tmp_path / "pyproject.toml"
    path.write_text(
        "[tool.cnnbudget.models.llama]\n"
        'target = "nets:TokenMlp"\n'
        "input_shape = [1, 64]\n"
        f"{extra}\n"
        f"parallel = {parallel}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("parallel", "message"),
    [
        (
            '{ strategy = "fsdp", world_size = 60, tensor_parallel = 8, '
            'tp_plan = { "blocks.*.up" = "colwise" } }',
            "[tool.cnnbudget.models.llama] parallel.world_size: 60 is not divisible by "
            "tensor_parallel 8",
        ),
        (
            '{ strategy = "hsdp", world_size = 64, replicate = 3 }',
            "parallel.world_size: 64 is not divisible by tensor_parallel 1 × replicate 3",
        ),
        (
            '{ strategy = "fdsp", world_size = 8 }',
            "parallel.strategy: 'fdsp' is not one of ddp, fsdp, hsdp",
        ),
        ("{ world_size = 8 }", "parallel.strategy: missing; give one of ddp, fsdp, hsdp"),
        (
            '{ strategy = "fsdp", world_size = 0 }',
            "parallel.world_size: 0 is not from 1 to 1,048,576",
        ),
        (
            '{ strategy = "fsdp", world_size = 8, tensor_parallel = 2, '
            'tp_plan = { "blocks.*.up" = "rowise" } }',
            "parallel.tp_plan: blocks.*.up = 'rowise' is not one of colwise, rowwise, "
            "colwise_replicate, vocab, vocab_sequence",
        ),
        (
            '{ strategy = "fsdp", world_size = 8, tensor_parallel = 2 }',
            "parallel.tp_plan: missing; tensor_parallel 2 needs the modules it splits",
        ),
        (
            '{ strategy = "ddp", world_size = 8, mixed_precision = "bf16" }',
            "parallel.mixed_precision: applies to fsdp and hsdp, not ddp",
        ),
        ('{ strategy = "fsdp", world_size = 8, wrap = "x" }', "parallel.wrap: expected a list"),
        (
            '{ strategy = "fsdp", world_size = 8, sharding = 2 }',
            "parallel.sharding: unknown key",
        ),
        ('"fsdp"', "[tool.cnnbudget.models.llama] parallel: expected a table, got str"),
    ],
)
def test_a_bad_parallel_table_names_the_model_and_the_key(
    tmp_path: Path, parallel: str, message: str
) -> None:
    assert message in _problems(tmp_path, parallel)


def test_parallel_without_memory_measured_is_a_mistake(tmp_path: Path) -> None:
    text = _problems(tmp_path, '{ strategy = "fsdp", world_size = 8 }', "max_params = 10")
    assert "[tool.cnnbudget.models.llama] parallel: only applies when memory is measured" in text


def test_a_valid_table_reads_as_the_options_it_gives(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(
        "[tool.cnnbudget.models.llama]\n"
        'target = "nets:TokenMlp"\ninput_shape = [1, 64]\nmax_train_memory = "1GB"\n'
        "[tool.cnnbudget.models.llama.parallel]\n"
        'strategy = "hsdp"\nworld_size = 64\nreplicate = 2\ntensor_parallel = 8\n'
        'tp_plan = { "blocks.*.up" = "colwise", "embed" = "vocab" }\n'
        'mixed_precision = "bf16"\nwrap = ["blocks.*"]\n'
    )
    memory = load_settings(path).models[0].memory
    assert memory is not None
    assert memory.parallel is not None
    parallel = memory.parallel
    assert parallel.tp_plan == (("blocks.*.up", "colwise"), ("embed", "vocab"))
    assert (parallel.shard, parallel.data_parallel, parallel.wrap) == (4, 8, ("blocks.*",))


# -- the trace ------------------------------------------------------------------------------


def _shard_bytes(model: torch.nn.Module, ranks: int) -> int:
    """Rank 0's bytes of every parameter split along its first dimension over `ranks`."""
    total = 0
    for p in model.parameters():
        rows = -(-p.shape[0] // ranks)  # torch.chunk: the first ranks take one row more
        total += rows * (p.numel() // p.shape[0]) * p.element_size()
    return total


@pytest.mark.parametrize(
    "parallel",
    [
        {"strategy": "fsdp", "world_size": 2},
        {"strategy": "fsdp", "world_size": 3},
        {"strategy": "fsdp", "world_size": 64},
        {"strategy": "hsdp", "world_size": 8, "replicate": 2},
        {"strategy": "ddp", "world_size": 4},
    ],
    ids=lambda p: "-".join(str(v) for v in p.values()),
)
def test_a_rank_holds_its_shard_of_weights_gradients_and_optimizer_state(
    parallel: dict[str, Any],
) -> None:
    with torch.device("meta"):
        model = TokenMlp(1000, 128, 4)
    memory = _trace(model, **parallel)
    options = ParallelOptions(**parallel)
    expected = _shard_bytes(model, options.shard)
    assert memory.weights == expected
    assert memory.gradients == expected
    assert memory.optimizer == 2 * expected  # AdamW: two moments a parameter
    assert memory.rank is not None
    assert sum(n for _, n in memory.rank.at_peak) == memory.peak_train
    parts = dict(memory.rank.at_peak)
    assert parts["weights"] == expected
    assert parts["optimizer"] == 2 * expected
    uneven = sum(p.shape[0] % options.shard != 0 for p in model.parameters())
    assert memory.rank.uneven == uneven
    assert uneven or options.shard in (1, 2, 4)


def test_sharding_more_and_resharding_after_forward_lower_the_peak() -> None:
    two = _trace(strategy="fsdp", world_size=2)
    eight = _trace(strategy="fsdp", world_size=8)
    kept = _trace(strategy="fsdp", world_size=8, reshard_after_forward=False)
    assert eight.peak_train < two.peak_train
    assert kept.peak_train > eight.peak_train
    assert kept.rank is not None
    assert eight.rank is not None
    # Kept gathered after forward: every block's parameters at once, not one or two.
    assert kept.rank.gathered_peak > 2 * eight.rank.gathered_peak


def test_a_process_that_traced_a_rank_still_forks_children_that_run_backward() -> None:
    # A backward on fake tensors starts autograd's device threads for good; the trace runs
    # in a child of its own so that the gate's checker, forked later, can still train.
    _trace(TokenMlp(100, 16, 2), strategy="fsdp", world_size=2)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            x = torch.ones(2, requires_grad=True)
            torch.autograd.backward((x * 2).sum())
            os.write(write, b"ok")
        except BaseException as e:
            os.write(write, str(e).encode()[:200])
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 200)
    os.waitpid(pid, 0)
    assert answer == b"ok"


def test_the_model_is_left_as_it_was_and_no_process_group_remains() -> None:
    import torch.distributed as dist

    model = TokenMlp(100, 16, 2)
    before = [(id(p), p.device.type, p.shape) for p in model.parameters()]
    _trace(model, strategy="fsdp", world_size=4)
    assert [(id(p), p.device.type, p.shape) for p in model.parameters()] == before
    assert type(model) is TokenMlp
    assert not dist.is_initialized()


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ((("blocks.*.attn", "colwise"),), "parallel.tp_plan: 'blocks.*.attn' matches no module"),
        (
            (("blocks.*.norm", "colwise"),),
            "parallel.tp_plan: 'blocks.*.norm' matches blocks.0.norm, a LayerNorm; tensor "
            "parallel splits nn.Linear and nn.Embedding modules",
        ),
        ((("embed", "rowwise"),), "would split its token ids along the sequence; use 'vocab'"),
        ((("head", "vocab"),), "splits an embedding by vocabulary, and head is a Linear"),
    ],
)
def test_a_tp_plan_that_does_not_fit_the_model_says_so(
    plan: tuple[tuple[str, str], ...], message: str
) -> None:
    with pytest.raises(MemoryTraceError, match="parallel") as info:
        _trace(strategy="fsdp", world_size=4, tensor_parallel=2, tp_plan=plan)
    assert message in str(info.value)


# -- real runs ------------------------------------------------------------------------------

# Each run as tests/parallel_runs.py sets it up, and as the `parallel` table says it.
RUNS_2: list[dict[str, Any]] = [
    {"strategy": "fsdp"},
    {"strategy": "fsdp", "reshard_after_forward": False},
    {"strategy": "fsdp", "mixed_precision": "bf16"},
    {"strategy": "ddp"},
    {"strategy": "fsdp", "tensor_parallel": 2},
]
RUNS_4: list[dict[str, Any]] = [
    {"strategy": "hsdp", "replicate": 2},
    {"strategy": "fsdp", "tensor_parallel": 2},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _real(world: int, runs: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """Every rank's results of the real runs."""
    out = folder / f"world{world}"
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    subprocess.run(
        [sys.executable, str(HERE / "parallel_runs.py"), str(world), str(out), json.dumps(runs)],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    return [json.loads(Path(f"{out}.{rank}.json").read_text()) for rank in range(world)]


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("parallel")
    return {2: _real(2, RUNS_2, folder), 4: _real(4, RUNS_4, folder)}


def test_the_allocator_count_sees_a_free_on_another_thread(
    real_runs: dict[int, list[dict[str, Any]]],
) -> None:
    known = real_runs[2][0]["known"]
    assert known["peak"] - known["start"] == 20_000_000
    assert known["end"] == known["start"]


@pytest.mark.parametrize(
    ("world", "index"),
    [(2, i) for i in range(len(RUNS_2))] + [(4, i) for i in range(len(RUNS_4))],
    ids=lambda v: str(v),
)
def test_the_trace_matches_every_real_rank(
    real_runs: dict[int, list[dict[str, Any]]], world: int, index: int
) -> None:
    run = (RUNS_2 if world == 2 else RUNS_4)[index]
    parallel: dict[str, Any] = {**run, "world_size": world}
    if run.get("tensor_parallel", 1) > 1:
        parallel["tp_plan"] = PLAN
    traced = _trace(**parallel)
    tolerance = 0.10  # what torch's own FSDP2 memory tests accept
    for rank in real_runs[world]:
        real = rank["runs"][index]
        # Rank 0 is traced: it holds at least what any other rank does.
        assert (traced.weights, traced.gradients, traced.optimizer) >= (
            real["weights"],
            real["gradients"],
            real["optimizer"],
        )
        assert abs(traced.peak_train - real["peak_train"]) <= tolerance * real["peak_train"], (
            run,
            traced.peak_train,
            real["peak_train"],
        )
    first = real_runs[world][0]["runs"][index]
    assert (traced.weights, traced.gradients, traced.optimizer) == (
        first["weights"],
        first["gradients"],
        first["optimizer"],
    )


def test_a_ranks_breakdown_names_the_run_and_the_parts_of_its_peak() -> None:
    from pytest_cnnbudget.report.memory import memory_breakdown

    memory = _trace(strategy="fsdp", world_size=3)
    lines = memory_breakdown(memory, "4×64")
    assert lines[0].startswith("memory at 4×64 per rank, rank 0 of fsdp 3 (3 ranks); ")
    assert "parameters shard unevenly, rank 0 holds the most" in lines[0]
    assert lines[7] == "the training peak of the rank holds:"
    assert [line.split()[0] for line in lines[8:]] == [
        "weights",
        "gradients",
        "optimizer",
        "gathered",
        "communication",
        "activations",
    ]
    assert sum(int(line.split()[1].replace(",", "")) for line in lines[8:]) == memory.peak_train


def _summary(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_cnnbudget", "summary", "nets:TokenMlp", *args],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_command_line_traces_a_rank_from_the_table_inline() -> None:
    table = '{ strategy = "fsdp", world_size = 3 }'
    done = _summary("--input-shape", "4,64", "--format", "json", "--parallel", table)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert problems(document, "summary") == []
    memory = document["memory"]
    traced = _trace(strategy="fsdp", world_size=3)
    assert memory["peak_train"] == traced.peak_train
    parallel = memory["parallel"]
    assert (parallel["strategy"], parallel["world_size"], parallel["data_parallel"]) == (
        "fsdp",
        3,
        3,
    )
    assert sum(parallel["peak_train_parts"].values()) == memory["peak_train"]
    assert traced.rank is not None
    assert parallel["uneven_parameters"] == traced.rank.uneven


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '{ strategy = "fsdp", world_size = 9, tensor_parallel = 2 }',
            "  --parallel world_size: 9 is not divisible by tensor_parallel 2",
        ),
        ("fsdp", "--parallel is not a TOML inline table"),
    ],
)
def test_a_bad_parallel_option_is_a_usage_error(table: str, message: str) -> None:
    done = _summary("--input-shape", "4,64", "--parallel", table)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_strategy_this_torch_lacks_is_named_with_its_key() -> None:
    # torch.distributed.fsdp made unimportable, as in a torch before FSDP2.
    block = "import sys; sys.modules['torch.distributed.fsdp'] = None; "
    run = "from pytest_cnnbudget.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            block + run,
            "summary",
            "nets:TokenMlp",
            "--input-shape",
            "4,64",
            "--parallel",
            '{ strategy = "fsdp", world_size = 8 }',
        ],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert (
        "parallel.strategy: 'fsdp' needs FSDP2's fully_shard (torch.distributed.fsdp, torch "
        "2.6 or newer), which this torch" in done.stderr
    )


FIXTURE_TEST = """
import torch
from nets import TokenMlp


def test_rank(cnn_budget):
    with torch.device("meta"):
        model = TokenMlp(1000, 128, 4)
    cnn_budget(
        model,
        input_shape=(4, 64),
        max_train_memory="{budget}",
        parallel={{"strategy": "fsdp", "world_size": 3}},
    )
"""


@pytest.mark.parametrize("budget", ["100MB", "1MB"])
def test_the_fixture_checks_a_rank_and_the_gate_trains_after_it(
    pytester: pytest.Pytester, budget: str
) -> None:
    pytester.makepyfile(nets=(HERE / "nets.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_rank=FIXTURE_TEST.format(budget=budget))
    (pytester.path / "pyproject.toml").write_text(
        "[tool.cnnbudget]\nsnapshot = false\n"
        "[tool.cnnbudget.models.single]\n"
        'target = "nets:TokenMlp"\ninput_shape = [4, 64]\nmax_train_memory = "100MB"\n'
    )
    out = pytester.path / "out.json"
    # The fixture's test first: the gate's checker forks after the rank was traced.
    result = pytester.runpytest_subprocess(
        "--cnn-budget", "--cnn-budget-json", str(out), "test_rank.py", "pyproject.toml"
    )
    traced = _trace(strategy="fsdp", world_size=3)
    if budget == "1MB":
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(
            [
                "*over budget*",
                "memory at 4×64 per rank, rank 0 of fsdp 3 (3 ranks); * parameters shard "
                "unevenly, rank 0 holds the most (AdamW, no autocast, train mode):",
                "the training peak of the rank holds:",
            ]
        )
        return
    result.assert_outcomes(passed=2)
    models = json.loads(out.read_text())["models"]
    rank = models["test_rank.py::test_rank"]["measurement"]["memory"]
    assert rank["peak_train"] == traced.peak_train
    assert rank["parallel"]["world_size"] == 3
    assert "parallel" not in models["single"]["measurement"]["memory"]


def test_the_docs_sample_is_what_the_command_prints() -> None:
    page = (HERE.parent / "docs" / "parallel.md").read_text(encoding="utf-8")
    command = re.search(r"\$ cnnbudget summary (nets:TokenMlp .*)\n", page)
    assert command is not None
    done = _summary(*shlex.split(command.group(1))[1:])
    assert done.returncode == 0, done.stderr
    shown = page.split(command.group(0), 1)[1].split("```text\n", 1)[1].split("\n```", 1)[0]
    printed = done.stdout.split("\nmemory at ", 1)[1]
    assert printed.startswith(shown.removeprefix("memory at ")), (shown, printed)


def test_the_gate_traces_ranks_in_its_checker_again_and_again(pytester: pytest.Pytester) -> None:
    # The checker sets torch to one thread; a trace's child forked from it once raced its
    # autograd threads to remake the thread pool and died about one time in two.
    pytester.makepyfile(nets=(HERE / "nets.py").read_text(encoding="utf-8"))
    tables = "".join(
        f"[tool.cnnbudget.models.rank{n}]\n"
        'target = "nets:TokenMlp"\nkwargs = { vocab = 100, width = 16, depth = 2 }\n'
        'input_shape = [2, 8]\nmax_train_memory = "1GB"\n'
        f'parallel = {{ strategy = "fsdp", world_size = {n} }}\n'
        for n in range(2, 8)
    )
    (pytester.path / "pyproject.toml").write_text("[tool.cnnbudget]\nsnapshot = false\n" + tables)
    result = pytester.runpytest_subprocess("--cnn-budget", "pyproject.toml")
    result.assert_outcomes(passed=6)


def test_the_snapshot_keeps_what_a_ranks_peak_holds_and_a_diff_shows_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(nets=(HERE / "nets.py").read_text(encoding="utf-8"))

    def configure(world: int) -> None:
        (pytester.path / "pyproject.toml").write_text(
            '[tool.cnnbudget]\nsnapshot = "cnnbudget.snapshot.json"\n'
            "[tool.cnnbudget.models.lm]\n"
            'target = "nets:TokenMlp"\ninput_shape = [4, 64]\nmax_train_memory = "1GB"\n'
            f'parallel = {{ strategy = "fsdp", world_size = {world} }}\n'
        )

    configure(8)
    pytester.runpytest_subprocess("--cnn-budget-update", "pyproject.toml").assert_outcomes(passed=1)
    stored = json.loads((pytester.path / "cnnbudget.snapshot.json").read_text())
    assert problems(stored, "snapshot") == []
    memory = stored["models"]["lm"]["memory"]
    parts = {k: v for k, v in memory.items() if k.startswith("rank_peak_")}
    assert sorted(parts) == sorted(f"rank_peak_{p}" for p in PEAK_PARTS)
    assert sum(parts.values()) == memory["peak_train"]
    configure(4)
    result = pytester.runpytest_subprocess("--cnn-budget", "pyproject.toml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*weights 392,564 → 785,128 (+392,564)*", "*rank_peak_weights 392,564 → 785,128*"]
    )
    result.stdout.fnmatch_lines(["lm *MB peak in training per rank*"])
    # The job summary and the pull-request comment say per rank too.
    summary, comment = pytester.path / "summary.md", pytester.path / "comment.md"
    pytester.runpytest_subprocess(
        "--cnn-budget",
        f"--cnn-budget-summary={summary}",
        f"--cnn-budget-comment={comment}",
        "pyproject.toml",
    )
    assert " per rank" in summary.read_text()
    assert "1.00 GB peak in training per rank" in comment.read_text()
