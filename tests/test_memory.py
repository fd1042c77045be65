"""Memory of a training step and an inference pass, traced on meta (pytest_cnnbudget.engine.memory):
figures worked out by hand, figures against a real cpu run of the same step (tests/realmem.py),
the bad inputs, and the budgets end to end through real gate sessions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import realmem
import torch
import torch.nn.functional as F
from project import Project, preload_torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from pytest_cnnbudget.engine.measurement import measure
from pytest_cnnbudget.engine.memory import measure_memory
from pytest_cnnbudget.errors import ConfigError, MemoryTraceError
from pytest_cnnbudget.inputs import InputSpec, parse_input_shape
from pytest_cnnbudget.report.suggest import rounded_up
from pytest_cnnbudget.results import Memory, MemoryOptions
from pytest_cnnbudget.units import parse_bytes

F32 = 4  # bytes of a float32


def traced(model: nn.Module, *shape: int, **options: Any) -> Memory:
    return measure_memory(model, InputSpec(args=(shape,)), MemoryOptions(**options))


def meta(build: Any, *args: Any) -> nn.Module:
    with torch.device("meta"):
        return build(*args)  # type: ignore[no-any-return]


# -- figures by hand ----------------------------------------------------------------------


def test_one_linear_layer_by_hand() -> None:
    model = meta(nn.Linear, 1000, 1000, False)
    memory = traced(model, 16, 1000)
    weight = 1000 * 1000 * F32
    assert memory.weights == weight
    assert memory.gradients == weight
    assert memory.optimizer == 2 * weight  # AdamW: exp_avg and exp_avg_sq
    # y = x·Wᵀ saves x for W's gradient; W itself is a parameter, left out.
    assert memory.activations == 16 * 1000 * F32
    # Inference: the weight, the input and the output, nothing else.
    assert memory.peak_inference == weight + 2 * 16 * 1000 * F32
    assert memory.saved == (("(root)", 16 * 1000 * F32),)


@pytest.mark.parametrize(
    ("optimizer", "states"),
    [("adamw", 2), ("adam", 2), ("sgd", 0), ("sgd_momentum", 1), ("none", 0)],
)
def test_optimizer_state_is_what_the_real_optimizer_makes(optimizer: str, states: int) -> None:
    model = meta(nn.Linear, 256, 128)
    memory = traced(model, 4, 256, optimizer=optimizer)
    params = (256 * 128 + 128) * F32
    assert memory.optimizer == states * params
    assert memory.gradients == params


class CountedSGD(torch.optim.Optimizer):
    """SGD that keeps its step counter as older torch's Adam does: `torch.tensor(0.0)`, made
    with no device, read back with `.item()`."""

    def __init__(self, params: Any) -> None:
        super().__init__(params, {"lr": 0.01})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state.setdefault("step", torch.tensor(0.0))
                state["step"] += 1
                p.add_(p.grad, alpha=-group["lr"] / state["step"].item())


def test_the_optimizer_runs_outside_the_device_context_the_model_was_built_in() -> None:
    # As in a real loop, tensors the optimizer makes without a device are cpu tensors, also
    # when the trace runs inside torch.device("meta") (a 4-byte cpu counter, not counted).
    with torch.device("meta"):
        model = nn.Linear(256, 128)
        memory = traced(model, 4, 256, optimizer=f"{__name__}:CountedSGD")
    assert memory.optimizer == 0
    assert memory.gradients == (256 * 128 + 128) * F32


def test_an_optimizer_target_and_its_kwargs_are_used() -> None:
    model = meta(nn.Linear, 256, 128)
    params = (256 * 128 + 128) * F32
    rmsprop = traced(model, 4, 256, optimizer="torch.optim:RMSprop")
    assert rmsprop.optimizer == params  # square_avg
    centered = traced(
        model,
        4,
        256,
        optimizer="torch.optim:RMSprop",
        optimizer_kwargs={"centered": True, "momentum": 0.9},
    )
    assert centered.optimizer == 3 * params  # square_avg, grad_avg, momentum_buffer


class TiedAndFrozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 32)
        self.frozen = nn.Linear(32, 32)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(32, 100, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.frozen(self.embed(tokens)))  # type: ignore[no-any-return]


def test_tied_weights_count_once_and_frozen_ones_have_no_gradient_or_state() -> None:
    model = meta(TiedAndFrozen)
    memory = traced(model, 2, 7)
    embedding, frozen = 100 * 32 * F32, (32 * 32 + 32) * F32
    assert memory.weights == embedding + frozen
    assert memory.gradients == embedding
    assert memory.optimizer == 2 * embedding


def test_the_model_is_left_as_it_was() -> None:
    torch.manual_seed(0)
    real = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    real.eval()
    before = {k: v.clone() for k, v in real.state_dict().items()}
    on_cpu = traced(real, 4, 8)
    assert all(torch.equal(before[k], v) for k, v in real.state_dict().items())
    assert all(p.grad is None for p in real.parameters())
    assert not any(m.training for m in real.modules())
    built = meta(
        nn.Sequential, nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2)
    )
    built.train()
    assert traced(built, 4, 8) == on_cpu  # a cpu model is traced on meta stand-ins, alike
    assert all(p.grad is None and p.requires_grad for p in built.parameters())
    assert all(m.training for m in built.modules())


def test_rows_share_the_activations_and_sum_to_them() -> None:
    count = measure(
        meta(nn.Sequential, nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)),
        parse_input_shape([8, 64]),
        memory=MemoryOptions(),
    )
    assert count.memory is not None
    saved = {r.name: r.activations for r in count.layers}
    # 0 saves the input, ReLU its output, 2 its input (ReLU's output: the same storage).
    assert saved == {"0": 8 * 64 * F32, "1": 8 * 64 * F32, "2": 0}
    assert sum(r.activations or 0 for r in count.layers) == count.memory.activations
    assert sum(r.params for r in count.layers) == count.total


# -- against a real cpu run ---------------------------------------------------------------


class Checkpointed(nn.Module):
    def __init__(self, reentrant: bool | None) -> None:
        super().__init__()
        self.reentrant = reentrant
        # Not checkpointed: the blocks' input must require grad, or a reentrant checkpoint
        # gives their parameters no gradient at all.
        self.stem = nn.Linear(256, 256)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 256)) for _ in range(4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            if self.reentrant is None:
                x = x + block(x)
            else:
                x = x + checkpoint(block, x, use_reentrant=self.reentrant)
        return x


class SmallConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, stride=2)
        self.fc = nn.Linear(32 * 16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(x.flatten(1))  # type: ignore[no-any-return]


def _compare(build: Any, shape: tuple[int, ...], **options: Any) -> tuple[Memory, realmem.Real]:
    torch.manual_seed(0)
    memory = traced(meta(build), *shape, **options)
    model = build()
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(options.get("autocast") or "")
    real = realmem.train_step(
        model,
        lambda: (torch.randn(shape),),
        torch.optim.AdamW(model.parameters()),
        autocast,
        train=options.get("train_mode", True),
    )
    return memory, real


def _regularized() -> nn.Module:
    return nn.Sequential(
        nn.Linear(256, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 10)
    )


def test_train_mode_off_traces_the_step_in_eval_mode() -> None:
    trained, real_trained = _compare(_regularized, (32, 256))
    frozen, real_frozen = _compare(_regularized, (32, 256), train_mode=False)
    assert trained.activations == real_trained.saved
    assert frozen.activations == real_frozen.saved
    # In eval mode dropout is the identity and BatchNorm uses its running statistics: less saved.
    assert frozen.activations < trained.activations
    assert frozen.peak_train == pytest.approx(real_frozen.peak, rel=0.10)


@pytest.mark.parametrize(
    ("reentrant", "name"), [(None, "plain"), (False, "non-reentrant"), (True, "reentrant")]
)
def test_checkpointing_is_traced_as_it_runs(reentrant: bool | None, name: str) -> None:
    memory, real = _compare(lambda: Checkpointed(reentrant), (64, 256))
    assert memory.activations == real.saved
    assert memory.gradients == real.gradients
    assert memory.peak_train == pytest.approx(real.peak, rel=0.10)
    if reentrant is not None:
        plain = traced(meta(Checkpointed, None), 64, 256)
        assert memory.activations < plain.activations / 2, name


def _wide_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(512, 2048), nn.GELU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 512)
    )


@pytest.mark.parametrize("autocast", [None, "bf16"])
def test_saved_activations_of_a_convnet_equal_a_real_step(autocast: str | None) -> None:
    memory, real = _compare(SmallConvNet, (8, 3, 32, 32), autocast=autocast)
    assert memory.activations == real.saved
    if autocast:
        full = traced(meta(SmallConvNet), 8, 3, 32, 32)
        assert memory.activations < full.activations  # bf16 copies saved, not float32
    # The peak leaves out the im2col buffers cpu's small convolutions allocate for themselves
    # (docs/budgets.md, Memory, says so): only the saved tensors are compared here.


@pytest.mark.parametrize("autocast", [None, "bf16", "fp16"])
def test_an_mlp_step_matches_a_real_step(autocast: str | None) -> None:
    memory, real = _compare(_wide_mlp, (64, 512), autocast=autocast)
    assert memory.activations == real.saved
    assert memory.gradients == real.gradients
    assert memory.peak_train == pytest.approx(real.peak, rel=0.10)


# -- bad input ----------------------------------------------------------------------------


def test_an_optimizer_that_is_not_one_is_refused() -> None:
    model = meta(nn.Linear, 4, 4)
    with pytest.raises(MemoryTraceError, match=r"^optimizer torch\.nn:Linear is the class "):
        traced(model, 1, 4, optimizer="torch.nn:Linear")
    with pytest.raises(MemoryTraceError, match=r"^optimizer no_such_pkg:Opt cannot be imported"):
        traced(model, 1, 4, optimizer="no_such_pkg:Opt")


@pytest.mark.parametrize(
    ("optimizer", "kwargs", "message"),
    [
        (
            "adamw",
            {"lrr": 0.1},
            "optimizer_kwargs: 'lrr' is not a keyword argument of torch.optim.AdamW "
            "(did you mean 'lr'?)",
        ),
        (
            "sgd_momentum",
            {"zzz": 1},
            "optimizer_kwargs: 'zzz' is not a keyword argument of torch.optim.SGD; it takes lr, "
            "momentum, dampening,",
        ),
        (
            "torch.optim:RMSprop",
            {"lrr": 0.1, "alphaa": 0.9},
            "optimizer_kwargs: 'lrr', 'alphaa' are not keyword arguments of torch.optim.RMSprop; "
            "it takes lr, alpha,",
        ),
        (
            "adam",
            {"lr": float("nan")},
            "optimizer adam (torch.optim.Adam) could not be made from optimizer_kwargs "
            "{'lr': nan}: ValueError: Invalid learning rate: nan",
        ),
        (
            "adamw",
            {"betas": 0.9},
            "optimizer adamw (torch.optim.AdamW) could not be made from optimizer_kwargs "
            "{'betas': 0.9}: TypeError:",
        ),
    ],
)
def test_an_optimizer_its_kwargs_cannot_make_is_a_trace_failure_naming_the_key(
    optimizer: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(MemoryTraceError) as info:
        traced(meta(nn.Linear, 4, 4), 1, 4, optimizer=optimizer, optimizer_kwargs=kwargs)
    assert str(info.value).startswith(message)


def test_thousands_of_unknown_optimizer_keys_are_named_within_bounds() -> None:
    kwargs = {f"k{i}": i for i in range(5000)}
    with pytest.raises(MemoryTraceError) as info:
        traced(meta(nn.Linear, 4, 4), 1, 4, optimizer_kwargs=kwargs)
    text = str(info.value)
    assert text.startswith("optimizer_kwargs: 'k0', 'k1', ")
    assert "more are not keyword arguments of torch.optim.AdamW; it takes lr, " in text
    assert len(text) < 1000


class ReturnsIndices(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices: torch.Tensor = self.fc(x).argmax(-1)
        return indices


def test_a_forward_with_nothing_to_backpropagate_says_how_the_loss_is_formed() -> None:
    with pytest.raises(MemoryTraceError) as info:
        traced(meta(ReturnsIndices), 2, 4)
    assert "no floating-point tensor that requires grad" in str(info.value)
    assert "the sum of every floating-point tensor the forward returns" in str(info.value)


class _NoMetaBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(grad).float().sum() * grad  # data-dependent: no meta result


class Odd(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NoMetaBackward.apply(x)  # type: ignore[no-any-return]


class WithOdd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.odd = Odd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.odd(self.fc(x))  # type: ignore[no-any-return]


def test_a_backward_that_fails_on_meta_names_the_module_and_the_op() -> None:
    with pytest.raises(MemoryTraceError) as info:
        traced(meta(WithOdd), 2, 4)
    text = str(info.value)
    assert text.startswith(
        "backward on meta tensors failed in module odd, at aten.nonzero.default: "
        "NotImplementedError: "
    )


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            {"max_train_memory": "1GB"},
            "max_train_memory: needs input_shape: memory depends on the batch",
        ),
        ({"memory": True}, "memory: needs input_shape: memory depends on the batch"),
        (
            {"optimizer": "sgd"},
            "optimizer: only applies when memory is measured; add max_train_memory, "
            "max_inference_memory or memory = true",
        ),
        (
            {"memory": True, "input_shape": [1, 4], "optimizer": "adamm"},
            "optimizer: unknown optimizer 'adamm'; did you mean 'adam'? expected one of 'adamw', "
            "'adam', 'sgd', 'sgd_momentum', 'none' or a 'package.module:Class' target",
        ),
        (
            {"memory": True, "input_shape": [1, 4], "autocast": "bf32"},
            "autocast: expected one of 'bf16', 'fp16', got 'bf32'",
        ),
        (
            {"memory": True, "input_shape": [1, 4], "train_mode": "yes"},
            "train_mode: expected true or false, got str 'yes'",
        ),
        (
            {"memory": False, "input_shape": [1, 4], "max_inference_memory": "1GB"},
            "memory: is false, but max_inference_memory needs memory measured",
        ),
    ],
)
def test_memory_configuration_mistakes_name_the_model_and_key(
    tmp_path: Path, table: dict[str, Any], problem: str
) -> None:
    from project import toml_text

    from pytest_cnnbudget.config.settings import load_settings

    path = tmp_path / "pyproject.toml"
    path.write_text(
        toml_text({"m": {"target": "nets:Tiny", "max_params": 10, **table}}), encoding="utf-8"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert f"  [tool.cnnbudget.models.m] {problem}" in str(info.value).splitlines()


# -- end to end ---------------------------------------------------------------------------

MODELS = """
import torch
from torch import nn


class Mlp(nn.Module):
    def __init__(self, width: int = 512, depth: int = 3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth)
        )
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class NotAnOptimizer:
    pass
"""


@pytest.fixture
def memory_project(pytester: pytest.Pytester) -> pytest.Pytester:
    preload_torch()
    pytester.makepyfile(memnets=MODELS)
    return pytester


def _mlp(**table: Any) -> dict[str, Any]:
    return {"target": "memnets:Mlp", "input_shape": [64, 512], **table}


def test_an_over_budget_step_shows_the_breakdown_and_the_modules_saving_most(
    memory_project: pytest.Pytester,
) -> None:
    Project(memory_project, top={"snapshot": False}, mlp=_mlp(max_train_memory="5MB"))
    result = memory_project.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "mlp: training step memory (peak) over budget by *",
            "  max_train_memory (budget)*5,000,000  5.00 MB",
            "memory at 64×512 (AdamW, no autocast, train mode):",
            "  weights   * 3,172,392 * parameters and buffers",
            "  gradients * 3,172,392 *",
            "  optimizer * 6,344,784 *",
            "  activations *",
            "  peak_train *",
            "  peak_inference *",
            "modules saving the most activations:",
            "  layer * type * saved * share",
            "  -*",
            "  blocks.{0..2}.1 ×3 * ReLU * 393.22 kB * 75.0%",
            "  blocks.0.0 * Linear * 131.07 kB * 25.0%",
            "  ×N: N layers alike but for their block index*",
            "Shrink the model, or raise max_train_memory under [[]tool.cnnbudget.models.mlp[]]*",
        ]
    )
    # Parameters are not where a step's bytes are: no table of the largest layers by them.
    assert "largest layers:" not in result.stdout.str()


@pytest.mark.slow
def test_memory_travels_in_json_snapshot_and_json_report_alike_under_xdist(
    memory_project: pytest.Pytester,
) -> None:
    Project(memory_project, mlp=_mlp(max_inference_memory="1GB", optimizer="sgd_momentum"))
    memory_project.runpytest("--cnn-budget-update").assert_outcomes(passed=1)
    snapshot = json.loads((memory_project.path / "cnnbudget.snapshot.json").read_text())
    stored = snapshot["models"]["mlp"]
    assert set(stored["memory"]) == {
        "weights",
        "gradients",
        "optimizer",
        "activations",
        "peak_train",
        "peak_inference",
    }
    assert all("activations" not in layer for layer in stored["layers"])  # totals only
    reports = []
    for extra in ([], ["-n", "2"]):
        out = memory_project.path / f"out{len(extra)}.json"
        report = memory_project.path / f"report{len(extra)}.json"
        result = memory_project.runpytest_subprocess(
            "--cnn-budget",
            "--cnn-budget-json",
            str(out),
            "--json-report",
            f"--json-report-file={report}",
            *extra,
        )
        result.assert_outcomes(passed=1)
        reports.append(json.loads(out.read_text())["models"]["mlp"]["measurement"]["memory"])
        metadata = json.loads(report.read_text())["tests"][0]["metadata"]["cnn_budget"]
        assert metadata["measurement"]["memory"] == reports[-1]
    assert reports[0] == reports[1]
    memory = reports[0]
    assert {k: memory[k] for k in stored["memory"]} == stored["memory"]
    assert memory["optimizer"] == memory["gradients"]  # momentum: one buffer a parameter
    assert memory["traced_with"] == {
        "optimizer": "sgd_momentum",
        "optimizer_kwargs": {},
        "autocast": None,
        "train_mode": True,
    }


def test_a_bigger_batch_changes_the_snapshot_totals(memory_project: pytest.Pytester) -> None:
    project = Project(memory_project, mlp=_mlp(memory=True, max_params="10M"))
    memory_project.runpytest("--cnn-budget-update").assert_outcomes(passed=1)
    project.set("mlp", input_shape=[128, 512])
    result = memory_project.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            # The batch is live through the step: the peak of training grows by its 131,072.
            # A line for each group of figures: compute, what the step holds, its peaks.
            "  MACs 50,659,328 → 101,318,656 (+50,659,328)",
            "  activations 524,288 → 1,048,576 (+524,288)",
            "  peak_train 14,919,840 → 15,050,912 (+131,072) · peak_inference "
            "3,696,680 → 4,220,968 (+524,288)",
            "*--cnn-budget-update*",
        ]
    )


def test_a_bad_optimizer_fails_that_model_alone(memory_project: pytest.Pytester) -> None:
    Project(
        memory_project,
        top={"snapshot": False},
        bad=_mlp(max_train_memory="1GB", optimizer="memnets:NotAnOptimizer"),
        good=_mlp(max_train_memory="1GB"),
    )
    result = memory_project.runpytest("--cnn-budget")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "bad: could not trace the memory of memnets:Mlp",
            "  optimizer memnets:NotAnOptimizer is the class memnets.NotAnOptimizer, "
            "not a torch.optim.Optimizer subclass",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_the_job_summary_and_verbose_table_show_memory(
    memory_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = memory_project.path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    Project(memory_project, top={"snapshot": False}, mlp=_mlp(max_train_memory="1GB"))
    result = memory_project.runpytest("--cnn-budget", "-v")
    result.assert_outcomes(passed=1)
    # Each storage once: a Linear's input is the ReLU output before it, which ReLU saved.
    result.stdout.fnmatch_lines(
        [
            "layer * saved",
            "blocks.0.0 * Linear * 131.07 kB",
            "blocks.{0..2}.1 ×3 * ReLU * 393.22 kB",
            "blocks.{1,2}.0 ×2 * Linear * -",
        ]
    )
    text = summary.read_text(encoding="utf-8")
    assert "peak memory (train / inference)" in text
    assert " / " in text.split("peak memory (train / inference)")[1]


def test_the_fixture_checks_memory(memory_project: pytest.Pytester) -> None:
    memory_project.makepyfile(
        test_step="""
        import torch
        from memnets import Mlp

        def test_fits(cnn_budget):
            with torch.device("meta"):
                model = Mlp()
            result = cnn_budget(model, max_train_memory="5MB", input_shape=[64, 512])
            assert result.count.memory.peak_train > 0
        """
    )
    result = memory_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*training step memory (peak) over budget by*"])


@pytest.mark.slow
def test_the_cli_prints_the_breakdown_and_its_json(memory_project: pytest.Pytester) -> None:
    argv = [sys.executable, "-m", "pytest_cnnbudget", "summary", "memnets:Mlp"]
    result = memory_project.run(*argv, "--input-shape", "64,512", "--memory")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["memory at 64×512 (AdamW, no autocast, train mode):"])
    result = memory_project.run(
        *argv, "--input-shape", "64,512", "--optimizer", "sgd", "--format", "json"
    )
    memory = json.loads(result.stdout.str())["memory"]
    assert memory["optimizer"] == 0
    assert memory["traced_with"]["optimizer"] == "sgd"
    result = memory_project.run(*argv, "--memory")
    assert result.ret == 2
    result.stderr.fnmatch_lines(["*--memory needs --input-shape*"])
    result = memory_project.run(*argv, "--input-shape", "1,512", "--optimizer", "lion")
    assert result.ret == 2
    result.stderr.fnmatch_lines(["*--optimizer: unknown optimizer 'lion'*"])


def test_the_summarys_budget_lines_pasted_into_the_table_pass_and_say_their_headroom(
    memory_project: pytest.Pytester,
) -> None:
    """`cnnbudget summary NAME --memory` ends with the lines to paste: the peaks and 15%."""
    project = Project(memory_project, top={"snapshot": False}, mlp=_mlp(max_params="10M"))
    argv = [sys.executable, "-m", "pytest_cnnbudget", "summary", "mlp", "--memory"]
    result = memory_project.run(*argv)
    assert result.ret == 0, result.stderr.str()
    *_, heading, train, inference = result.outlines
    assert heading == (
        "Budgets to paste into [tool.cnnbudget.models.mlp] (the peaks + 15%, rounded up):"
    )
    # The figures printed above them, 15% up and rounded up to two significant digits.
    peaks = {
        line.split()[0]: int(line.split()[1].replace(",", ""))
        for line in result.outlines
        if line.strip().startswith(("peak_train", "peak_inference"))
    }
    for line, peak in ((train, peaks["peak_train"]), (inference, peaks["peak_inference"])):
        value = line.partition(" = ")[2]
        written = parse_bytes(value.strip('"'))
        assert peak * 1.15 <= written <= peak * 1.15 * 1.1, (line, peak)
    budgets = {
        "max_train_memory": train.partition(" = ")[2].strip('"'),
        "max_inference_memory": inference.partition(" = ")[2].strip('"'),
    }
    project.set("mlp", **budgets)
    memory_project.runpytest("--cnn-budget").assert_outcomes(passed=1)
    # Eight times the batch: the weights dominate this MLP's peaks, but not by that much.
    project.set("mlp", input_shape=[512, 512])
    memory_project.runpytest("--cnn-budget").assert_outcomes(failed=1)


@pytest.mark.parametrize(
    ("bytes_", "written"),
    [
        (76_195_706, "77MB"),
        (25_197_825, "26MB"),
        (2_880_000, "2.9MB"),
        (1_000_000, "1.0MB"),
        (125_300_000_000, "130GB"),
        (990, "990B"),
        (999, "1.0kB"),
        (0, "1B"),
        (1_001, "1.1kB"),
    ],
)
def test_a_suggested_budget_is_rounded_up_to_two_significant_digits(
    bytes_: int, written: str
) -> None:
    assert rounded_up(bytes_) == written
    assert parse_bytes(written) >= bytes_
