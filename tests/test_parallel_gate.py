"""Per-rank memory through the gate, the command line and the `cnn_budget` fixture: what each
shows of a rank (per rank, the parts of its peak), the snapshot it keeps, and the gate's checker
tracing ranks one after another."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

# Loaded before any pytester test: pytester drops the modules a test imported when it ends, and
# torch's operators cannot be registered twice in one process (or its forks).
import torch.distributed.fsdp
import torch.distributed.tensor.parallel
import torch.testing._internal.distributed.fake_pg  # noqa: F401
from parallel_runs import trace as _trace
from project import preload_torch
from schemas import problems

from pytest_cnnbudget.ranks import PEAK_PARTS

HERE = Path(__file__).parent
preload_torch()  # a meta build imports torch._dynamo: before any pytester test, not in one


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
    out = pytester.path / "out.json"
    # Under xdist too: a rank's figures cross from the worker to the controller whole.
    result = pytester.runpytest_subprocess(
        "--cnn-budget", "--cnn-budget-json", str(out), "-n", "2", "pyproject.toml"
    )
    result.assert_outcomes(passed=6)
    models = json.loads(out.read_text())["models"]
    for n in range(2, 8):
        memory = models[f"rank{n}"]["measurement"]["memory"]
        assert memory["parallel"]["world_size"] == n
        assert sum(memory["parallel"]["peak_train_parts"].values()) == memory["peak_train"]


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
    body = comment.read_text()
    assert "1.00 GB peak in training per rank" in body
    # What the rank's peak holds, under the model's diff: the parts as the snapshot has them.
    line = next(line for line in body.splitlines() if line.startswith("rank 0 of fsdp 4"))
    assert line.startswith("rank 0 of fsdp 4 (4 ranks): training peak ")
    assert [part.split()[0] for part in line.split(" = ", 1)[1].split(" · ")] == list(PEAK_PARTS)


def test_the_budget_lines_a_rank_suggests_pass_when_pasted(pytester: pytest.Pytester) -> None:
    table = '{ strategy = "fsdp", world_size = 3 }'
    done = _summary("--input-shape", "4,64", "--parallel", table)
    assert done.returncode == 0, done.stderr
    pasted = done.stdout.split("rounded up):\n", 1)[1].strip().splitlines()
    assert pasted[1] == f"parallel = {table}"
    pytester.makepyfile(nets=(HERE / "nets.py").read_text(encoding="utf-8"))
    (pytester.path / "pyproject.toml").write_text(
        '[tool.cnnbudget]\nsnapshot = false\n[tool.cnnbudget.models.lm]\ntarget = "nets:TokenMlp"\n'
        + "\n".join(pasted)
        + "\n"
    )
    result = pytester.runpytest_subprocess("--cnn-budget", "pyproject.toml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["lm *MB peak in * per rank *ok*"])


def test_the_command_line_table_replaces_only_the_keys_it_gives(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(nets=(HERE / "nets.py").read_text(encoding="utf-8"))
    (pytester.path / "pyproject.toml").write_text(
        '[tool.cnnbudget]\nsnapshot = false\n[tool.cnnbudget.models.lm]\ntarget = "nets:TokenMlp"\n'
        'input_shape = [4, 64]\nmax_train_memory = "1GB"\n[tool.cnnbudget.models.lm.parallel]\n'
        'strategy = "fsdp"\nworld_size = 4\ntensor_parallel = 2\n'
        'tp_plan = { "blocks.*.up" = "colwise", "blocks.*.down" = "rowwise" }\n'
    )
    bf16 = ["--parallel", '{ mixed_precision = "bf16" }']
    done = subprocess.run(
        [sys.executable, "-m", "pytest_cnnbudget", "summary", "lm", "--format", "json", *bf16],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    parallel = json.loads(done.stdout)["memory"]["parallel"]
    assert parallel["mixed_precision"] == "bf16"
    assert (parallel["world_size"], parallel["tensor_parallel"]) == (4, 2)
    assert parallel["tp_plan"] == {"blocks.*.up": "colwise", "blocks.*.down": "rowwise"}
