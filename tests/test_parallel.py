"""Per-rank memory: the `parallel` table checked key by key, one rank traced under a fake
process group (its shards, the parts of its peak, its mistakes), and the child process the trace
runs in. The gate, the command line and the fixture: test_parallel_gate.py; the trace against
real multi-process runs: reference/test_parallel_real.py."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from nets import TokenMlp
from parallel_runs import PLAN
from parallel_runs import trace as _trace

from pytest_cnnbudget.config.settings import load_settings
from pytest_cnnbudget.engine.apart import apart
from pytest_cnnbudget.engine.parallel import repeated_blocks
from pytest_cnnbudget.errors import ConfigError, MemoryTraceError
from pytest_cnnbudget.ranks import ParallelOptions

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


@pytest.mark.parametrize(
    ("parallel", "said", "unsaid"),
    [
        # A missing world_size is said once, not again as "1 is not divisible by …".
        (
            '{ strategy = "fsdp", tensor_parallel = 8, tp_plan = { "x" = "colwise" } }',
            "parallel.world_size: missing",
            "is not divisible",
        ),
        (
            '{ strategy = "HSDP", world_size = 8, replicate = 2 }',
            "parallel.strategy: 'HSDP' is not one of",
            "applies to hsdp",
        ),
        (
            '{ strategy = "fsdp", world_size = 8, tensor_parallel = 1, tp_plan = { "x" = "colwise" } }',
            "parallel.tensor_parallel: is 1; a tp_plan needs a degree above 1",
            "missing",
        ),
        (
            '{ strategy = "fsdp", world_size = 8, tensor_parallel = 2, tp_plan = {} }',
            "parallel.tp_plan: empty; tensor_parallel 2 needs the modules it splits",
            "missing",
        ),
        (
            '{ strategy = "fsdp", world_size = 2, tensor_parallel = 2, '
            'tp_plan = { "x" = "colwise" }, mixed_precision = "bf16" }',
            "parallel.mixed_precision: applies to FSDP, which a run with tensor_parallel = "
            "world_size does not use",
            "ddp",
        ),
    ],
)
def test_keys_that_read_wrong_together_are_said_once_and_truly(
    tmp_path: Path, parallel: str, said: str, unsaid: str
) -> None:
    text = _problems(tmp_path, parallel)
    assert said in text
    assert unsaid not in text.split(said, 1)[1] + text.split(said, 1)[0].split("\n", 1)[-1]


def test_tensor_parallel_layers_save_their_activations_as_one_device_does() -> None:
    one = dict(_trace(strategy="ddp", world_size=2).saved)
    split = dict(_trace(strategy="fsdp", world_size=2, tensor_parallel=2, tp_plan=PLAN).saved)
    # A colwise layer saves its whole input on every rank; a rowwise one its half.
    assert split["blocks.0.up"] == one["blocks.0.up"] > 0
    assert split["blocks.0.down"] * 2 == one["blocks.0.down"]
    assert {"embed", "head"} <= split.keys()


def test_the_inference_peak_holds_the_weights_not_the_optimizer_or_the_buckets() -> None:
    with torch.device("meta"):
        model = TokenMlp(1000, 128, 4)
    from pytest_cnnbudget.engine.memory import measure_memory
    from pytest_cnnbudget.inputs import InputSpec
    from pytest_cnnbudget.results import MemoryOptions

    single = measure_memory(model, InputSpec(args=((4, 64),)), MemoryOptions())
    # DDP holds the whole model on every rank: serving it is serving one device's.
    assert _trace(model, strategy="ddp", world_size=4).peak_inference == single.peak_inference


def test_the_parts_of_a_peak_are_what_holds_it() -> None:
    ddp = _trace(strategy="ddp", world_size=2)
    assert ddp.rank is not None
    parts = dict(ddp.rank.at_peak)
    # DDP's buckets hold every gradient again (gradient_as_bucket_view is off by default).
    assert parts["communication"] == ddp.gradients
    assert parts["weights"] == ddp.weights
    fsdp = _trace(strategy="fsdp", world_size=2)
    assert fsdp.rank is not None
    with torch.device("meta"):
        model = TokenMlp(1000, 128, 4)
    block = sum(p.numel() * 4 for p in model.blocks[0].parameters())
    root = sum(p.numel() * 4 for p in model.parameters()) - 4 * block
    # Resharding after forward: the root's parameters, and one block or two (prefetch).
    assert root + block <= fsdp.rank.gathered_peak <= root + 2 * block


def test_the_repeated_blocks_are_the_outermost_and_own_parameters() -> None:
    nested = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)),
        torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)),
    )
    assert repeated_blocks(nested) == ["0", "1"]
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(1, 1, 1), torch.nn.ReLU(), torch.nn.Conv2d(1, 1, 1), torch.nn.MaxPool2d(2)
    )
    assert repeated_blocks(cnn) == ["0", "2"]
    assert repeated_blocks(TokenMlp(10, 4, 3)) == ["blocks.0", "blocks.1", "blocks.2"]


@pytest.mark.parametrize(
    ("parallel", "message"),
    [
        (
            {
                "tensor_parallel": 2,
                "tp_plan": (("blocks.*.up", "colwise"), ("blocks.0.up", "rowwise")),
            },
            "parallel.tp_plan: 'blocks.*.up' and 'blocks.0.up' both match blocks.0.up",
        ),
        (
            {"tensor_parallel": 2, "tp_plan": (("blocks.*.upp", "colwise"),)},
            "'blocks.*.upp' matches no module (`*` stands for one whole name part; close: "
            "blocks.*.up, blocks.*, blocks.*.norm)",
        ),
        ({"wrap": ("layer*",)}, "parallel.wrap: 'layer*' matches no module"),
    ],
)
def test_a_plan_or_wrap_that_misses_says_what_is_close(
    parallel: dict[str, Any], message: str
) -> None:
    with pytest.raises(MemoryTraceError) as info:
        _trace(strategy="fsdp", world_size=4, **parallel)
    assert message in str(info.value)


def test_ddp_refusing_a_frozen_model_is_a_trace_error_naming_the_strategy() -> None:
    model = TokenMlp(100, 16, 2)
    model.requires_grad_(False)
    with pytest.raises(MemoryTraceError, match=r"parallel.strategy: 'ddp' could not wrap"):
        _trace(model, strategy="ddp", world_size=2)


# -- the child process ----------------------------------------------------------------------


class _Picky(Exception):
    """An exception that pickles but cannot be made again from its args."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a} {b}")


def _raise_picky() -> None:
    raise _Picky("no", "room")


def test_an_error_that_does_not_unpickle_comes_back_as_its_text() -> None:
    with pytest.raises(MemoryTraceError, match="_Picky: no room"):
        apart(_raise_picky, "the call")


def test_a_child_that_dies_is_said_to_have_died() -> None:
    with pytest.raises(
        MemoryTraceError, match=r"the call: .*ended before answering \(killed by SIGKILL\)"
    ):
        apart(lambda: os.kill(os.getpid(), signal.SIGKILL), "the call")


def test_a_parent_interrupted_while_waiting_kills_its_child(tmp_path: Path) -> None:
    started = tmp_path / "pid"

    def hang() -> None:
        started.write_text(str(os.getpid()))
        time.sleep(60)

    def interrupt() -> None:
        while not started.exists():
            time.sleep(0.05)
        time.sleep(0.2)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

    def stop(signum: int, frame: object) -> None:
        raise TimeoutError("the check's time ran out")

    previous = signal.signal(signal.SIGUSR1, stop)
    threading.Thread(target=interrupt, daemon=True).start()
    try:
        with pytest.raises(TimeoutError):
            apart(hang, "the call")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    child = int(started.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # killed and reaped: no such process


def test_without_fork_the_call_runs_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "fork")  # as on Windows
    assert apart(os.getpid, "the call") == os.getpid()


class _HeadCount(torch.nn.Module):
    """Attention that reshapes by its head count, which a rank under TP holds a share of."""

    def __init__(self) -> None:
        super().__init__()
        self.q = torch.nn.Linear(64, 64)
        self.o = torch.nn.Linear(64, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        heads = self.q(x).view(b, t, 4, 16)
        out: torch.Tensor = self.o(heads.reshape(b, t, -1))
        return out


def test_a_reshape_by_head_count_under_tensor_parallel_is_told_the_fix() -> None:
    model = torch.nn.Sequential(_HeadCount(), _HeadCount())
    plan = (("*.q", "colwise"), ("*.o", "rowwise"))
    from pytest_cnnbudget.engine.rank_memory import measure_rank_memory
    from pytest_cnnbudget.inputs import InputSpec
    from pytest_cnnbudget.results import MemoryOptions

    options = MemoryOptions(
        parallel=ParallelOptions("fsdp", world_size=4, tensor_parallel=2, tp_plan=plan)
    )
    with pytest.raises(MemoryTraceError) as info:
        measure_rank_memory(model, InputSpec(args=((2, 8, 64),)), options)
    text = str(info.value)
    assert "failed in 0 (FSDP_HeadCount)" in text
    assert text.endswith(
        "hint: under tensor_parallel 2 a colwise layer gives each rank 1/2 of its outputs; "
        "reshape attention by head size, view(b, t, -1, head_dim), not by the model's head "
        "count (docs/parallel.md)"
    )
