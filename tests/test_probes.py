"""Constructors that run their model forward (a probe) and compute on what comes out, as
ultralytics' DetectionModel does to find its strides: built on meta by the fallback, exactly as on
cpu, and, when they still cannot be, a failure that shows the first cause and the `device`
hint."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
from project import failure_section, toml_text
from test_loading import GIB, build_in_subprocess, posix_only
from torch import nn

from pytest_cnnbudget import ModelBuildError, build_model, measure, parse_input_shape
from pytest_cnnbudget.engine.meta import MetaMeetsReal, meta_meets_real
from pytest_cnnbudget.results import MemoryOptions, ParameterCount

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_cnnbudget.engine.counting import ModelLike

MODULE = "probe_models"

PROBES = '''
import math
import statistics

import torch
from torch import nn


class ProbeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 4, 1)
        y = self.bn(self.conv(torch.zeros(1, 3, 64, 64)))
        stride = torch.tensor([64 / y.shape[-1]])
        self.head.bias.data[:] = math.log(5 / (640 / stride[0]) ** 2)

    def forward(self, x):
        return self.head(self.bn(self.conv(x)))


class EvalProbe(nn.Module):
    """Probes in eval mode under no_grad, then sizes its classifier from a value it reads."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU())
        self.eval()
        with torch.no_grad():
            y = self.body(torch.zeros(1, 3, 33, 33))
        self.train()
        width = int(torch.tensor(y.shape[1:]).prod().item())
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))


class AnchorProbe(nn.Module):
    """Concatenates its own real anchors with the probe's output, and sets its head's bias
    from a real tensor."""

    def __init__(self):
        super().__init__()
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3, 6, 3, stride=s, padding=1), nn.BatchNorm2d(6)) for s in (2, 4)
        )
        self.head = nn.Conv2d(6, 2, 1)
        x = torch.zeros(1, 3, 32, 32)
        anchors = torch.zeros(1, 6, 0)
        for level in self.levels:
            anchors = torch.cat([anchors, level(x).flatten(2)], dim=2)
        self.strides = torch.tensor([32 / level(x).shape[-1] for level in self.levels])
        self.anchor_count = int(torch.tensor(anchors.shape[-1]).item())
        self.head.bias.data.copy_(torch.log(self.strides))

    def forward(self, x):
        return [self.head(level(x)) * stride for level, stride in zip(self.levels, self.strides)]


class Probed(nn.Module):
    """A plain attribute from the probe, real after the fallback, used by the forward pass."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.stride = torch.tensor([64 / self.conv(torch.zeros(1, 3, 64, 64)).shape[-1]])
        self.scale = math.log(self.stride[0])

    def forward(self, x):
        return self.conv(x) * self.stride * self.scale


class ReadsOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        scale = self.fc(torch.ones(1, 4)).abs().max().item()
        self.register_buffer("scale", torch.tensor(scale))


class WritesReal(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        out = torch.zeros(1, 4)
        n = int(torch.tensor(3).item())
        out.copy_(self.fc(torch.ones(1, 4)))


class Averages(nn.Module):
    """Reads a value of what the model computed through the standard library."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.mean = statistics.fmean(self.fc(torch.ones(1, 4))[0].tolist())


def wrap(backbone):
    return nn.Sequential(backbone)


class Tagger(nn.Module):
    """Packs its sequences, whose lengths pack_padded_sequence takes on cpu only."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device="cpu")
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
        out, _ = self.lstm(packed)
        return self.head(nn.utils.rnn.pad_packed_sequence(out, batch_first=True)[0])


CALLS = []


class FailsAgain(nn.Module):
    """Meta is why the first build fails; the second fails for a reason of its own."""

    def __init__(self):
        super().__init__()
        CALLS.append(1)
        if len(CALLS) > 1:
            raise ValueError("registered twice")
        self.fc = nn.Linear(4, int(torch.tensor(4).item()))
'''

# Each probing model: the shape its forward pass takes.
SHAPES = {
    "ProbeNet": [1, 3, 64, 64],
    "EvalProbe": [2, 3, 33, 33],
    "AnchorProbe": [1, 3, 32, 32],
    "Probed": [1, 3, 64, 64],
}


@pytest.fixture
def probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / f"{MODULE}.py").write_text(PROBES, encoding="utf-8")
    monkeypatch.syspath_prepend(tmp_path)
    yield tmp_path
    sys.modules.pop(MODULE, None)


def line(code: str) -> int:
    """The line of PROBES that holds `code`, once."""
    lines = [n for n, text in enumerate(PROBES.splitlines(), 1) if code in text]
    assert len(lines) == 1, code
    return lines[0]


def rows(count: ParameterCount) -> list[tuple[str, str, int, str]]:
    return [(r.name, r.type, r.params, r.formula) for r in count.layers]


@pytest.mark.usefixtures("probes")
@pytest.mark.parametrize("name", list(SHAPES))
def test_a_probing_constructor_builds_on_meta_and_counts_as_on_cpu(
    name: str, count_checked: Callable[[ModelLike], ParameterCount]
) -> None:
    model = build_model(f"{MODULE}:{name}")
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"meta"}
    real = build_model(f"{MODULE}:{name}", device="cpu")
    count, expected = count_checked(model), count_checked(real)
    assert rows(count) == rows(expected)
    assert (count.total, count.buffers) == (expected.total, expected.buffers)

    shape = parse_input_shape(SHAPES[name])
    measured, on_cpu = measure(model, shape), measure(real, shape)
    assert measured.compute is not None
    assert on_cpu.compute is not None
    assert measured.compute.macs == on_cpu.compute.macs > 0
    assert measured.compute.output_shape == on_cpu.compute.output_shape


@pytest.mark.usefixtures("probes")
def test_only_a_model_that_keeps_a_real_tensor_pays_for_mixing_in_its_passes() -> None:
    assert isinstance(meta_meets_real(build_model(f"{MODULE}:Probed")), MetaMeetsReal)
    assert isinstance(meta_meets_real(build_model(f"{MODULE}:Probed", device="cpu")), MetaMeetsReal)
    # Parameters and buffers are replaced by meta stand-ins in a pass: nothing to mix.
    for model in (build_model(f"{MODULE}:ProbeNet"), build_model(f"{MODULE}:Tagger", device="cpu")):
        assert isinstance(meta_meets_real(model), nullcontext)


@pytest.mark.usefixtures("probes")
def test_a_real_attribute_from_the_probe_is_traced_like_the_model_built_on_cpu() -> None:
    shape, options = parse_input_shape([2, 3, 64, 64]), MemoryOptions()
    on_meta = measure(build_model(f"{MODULE}:Probed"), shape, memory=options).memory
    on_cpu = measure(build_model(f"{MODULE}:Probed", device="cpu"), shape, memory=options).memory
    assert on_meta is not None
    assert on_meta == on_cpu
    assert on_meta.peak_train > on_meta.weights > 0


@pytest.mark.usefixtures("probes")
def test_a_value_read_from_what_the_model_computed_fails_with_its_first_cause_and_the_hint() -> (
    None
):
    with pytest.raises(ModelBuildError) as info:
        build_model(f"{MODULE}:ReadsOutput")
    assert str(info.value).splitlines() == [
        'hint: set device = "cpu" for this model: its constructor needs values that tensors on '
        "meta do not have (a cpu build allocates its weights: 80 B were made before it failed)",
        f"building {MODULE}:ReadsOutput() on meta raised RuntimeError: "
        "Tensor.item() cannot be called on meta tensors",
        f"  at {MODULE}.py:{line('.max().item()')} in __init__: "
        "scale = self.fc(torch.ones(1, 4)).abs().max().item()",
        "built again with real arithmetic and its weights on meta, it failed there too",
    ]
    # And so it does.
    scale = build_model(f"{MODULE}:ReadsOutput", device="cpu").get_buffer("scale")
    assert scale.item() >= 0


@pytest.mark.usefixtures("probes")
def test_the_first_cause_comes_before_what_the_fallback_ran_into() -> None:
    with pytest.raises(ModelBuildError) as info:
        build_model(f"{MODULE}:WritesReal")
    hint, *lines = str(info.value).splitlines()
    assert hint.startswith('hint: set device = "cpu" for this model')
    assert lines[:2] == [
        f"building {MODULE}:WritesReal() on meta raised RuntimeError: "
        "Tensor.item() cannot be called on meta tensors",
        f"  at {MODULE}.py:{line('n = int(')} in __init__: n = int(torch.tensor(3).item())",
    ]
    assert lines[2].startswith(
        "built again with real arithmetic and its weights on meta, it raised RuntimeError: "
        "aten.copy_.default writes into a real tensor (self) a value computed from meta tensors"
    )
    assert (
        lines[3]
        == f"  at {MODULE}.py:{line('out.copy_(')} in __init__: out.copy_(self.fc(torch.ones(1, 4)))"
    )


@pytest.mark.usefixtures("probes")
def test_no_cpu_hint_when_the_second_build_fails_for_a_reason_of_its_own() -> None:
    with pytest.raises(ModelBuildError) as info:
        build_model(f"{MODULE}:FailsAgain")
    message = str(info.value)
    assert "Tensor.item() cannot be called on meta tensors" in message.splitlines()[0]
    assert "it raised ValueError: registered twice" in message
    assert "hint:" not in message


def test_an_operation_meeting_meta_and_real_tensors_runs_on_meta() -> None:
    real, shaped = torch.ones(2, 3), torch.empty(3, 4, device="meta")
    with MetaMeetsReal():
        product = real @ shaped
        joined = torch.cat([real, shaped.T[:1]])
        alone = real * 2  # nothing on meta: computed for real
        shaped.copy_(torch.zeros(3, 4))  # a real value into a meta tensor: nothing to write
        with pytest.raises(RuntimeError, match=r"writes into a real tensor \(self\)"):
            real.add_(shaped.T[:2, :3])
        # Batch norm's running statistics are written in training, which its schema hides.
        statistics, images = torch.zeros(4), torch.empty(2, 4, 3, 3, device="meta")
        with pytest.raises(RuntimeError, match=r"writes into a real tensor \(running_mean\)"):
            nn.functional.batch_norm(images, statistics, torch.ones(4), training=True)
        evaluated = nn.functional.batch_norm(images, statistics, torch.ones(4), training=False)
        # Lengths stay on cpu, where pack_padded_sequence wants them.
        lengths = torch.tensor([4, 4])
        packed = nn.utils.rnn.pack_padded_sequence(images[:, :, 0], lengths, batch_first=True)
    assert (product.device.type, tuple(product.shape)) == ("meta", (2, 4))
    assert (joined.device.type, tuple(joined.shape)) == ("meta", (3, 3))
    assert alone.tolist() == [[2.0] * 3] * 2
    assert statistics.tolist() == [0.0] * 4
    assert evaluated.device.type == packed.data.device.type == "meta"
    assert real.tolist() == [[1.0] * 3] * 2  # the refused write left it alone


@pytest.mark.usefixtures("probes")
def test_the_line_shown_is_the_users_also_through_the_standard_library_or_a_kwargs_object() -> None:
    with pytest.raises(ModelBuildError) as info:
        build_model(f"{MODULE}:Averages")
    assert str(info.value).splitlines()[2] == (
        f"  at {MODULE}.py:{line('statistics.fmean(')} in __init__: "
        "self.mean = statistics.fmean(self.fc(torch.ones(1, 4))[0].tolist())"
    )
    with pytest.raises(ModelBuildError) as info:
        build_model(f"{MODULE}:wrap", {"backbone": {"_target_": f"{MODULE}.ReadsOutput"}})
    hint, first, where = str(info.value).splitlines()[:3]
    assert hint.startswith('hint: set device = "cpu"')
    assert first == (
        f"building {MODULE}:wrap(backbone={{'_target_': '{MODULE}.ReadsOutput'}}) on meta raised "
        f"building kwargs.backbone ({MODULE}.ReadsOutput) raised RuntimeError: "
        "Tensor.item() cannot be called on meta tensors"
    )
    assert where.startswith(f"  at {MODULE}.py:{line('.max().item()')} in __init__")


@pytest.mark.usefixtures("probes")
def test_a_model_that_packs_sequences_is_profiled_and_traced_as_before() -> None:
    shape, options = parse_input_shape([2, 7, 8]), MemoryOptions()
    on_meta = measure(build_model(f"{MODULE}:Tagger"), shape, memory=options)
    on_cpu = measure(build_model(f"{MODULE}:Tagger", device="cpu"), shape, memory=options)
    assert on_meta.compute is not None
    assert on_meta.compute.macs > 0
    assert (on_meta.compute, on_meta.memory) == (on_cpu.compute, on_cpu.memory)


HUGE_PROBE = """
import math

import torch
from torch import nn


class HugeProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(20000, 20000)
        self.head = nn.Linear(20000, 4)
        y = self.fc(torch.zeros(1, 20000))
        stride = torch.tensor([y.shape[-1] / 100])
        self.head.bias.data[:] = math.log(stride[0])
"""


@pytest.mark.slow
@posix_only
def test_a_probing_constructor_builds_without_allocating(tmp_path: Path) -> None:
    (tmp_path / "huge_probe.py").write_text(HUGE_PROBE, encoding="utf-8")
    report = build_in_subprocess("huge_probe:HugeProbe", tmp_path)
    assert report["total"] == 20000 * 20000 + 20000 + 20000 * 4 + 4
    assert report["devices"] == ["meta"]
    # 1.6 GB of float32 weights, run forward by the probe: never resident.
    assert report["peak"] < GIB


# -- through the gate -------------------------------------------------------------------------


def test_the_gate_checks_a_probing_model_on_meta_and_says_why_another_needs_cpu(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pytester.path / f"{MODULE}.py").write_text(PROBES, encoding="utf-8")  # as it is: lines
    pytester.syspathinsert()
    sys.modules.pop(MODULE, None)
    models: dict[str, dict[str, Any]] = {
        "probe": {"target": f"{MODULE}:ProbeNet", "input_shape": SHAPES["ProbeNet"]},
        "reads": {"target": f"{MODULE}:ReadsOutput"},
        "reads_on_cpu": {"target": f"{MODULE}:ReadsOutput", "device": "cpu"},
    }
    (pytester.path / "pyproject.toml").write_text(
        toml_text({k: {**v, "max_params": 1000} for k, v in models.items()}), encoding="utf-8"
    )
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(pytester.path))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    result = pytester.runpytest("--cnn-budget-update", "--cnn-budget-json=report.json")
    result.assert_outcomes(passed=2, failed=1)
    # The annotation points at the line of the first cause, not at the class.
    (annotation,) = [text for text in result.outlines if text.startswith("::error ")]
    assert f",file={MODULE}.py,line={line('.max().item()')}::" in annotation
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))["models"]
    probe = report["probe"]["measurement"]
    assert probe["totals"]["params"] == 8 * 3 * 9 + 2 * 8 + 8 * 4 + 4  # 268, as on cpu
    assert probe["compute"]["macs"] > 0
    failure = failure_section(result.outlines, "reads")
    assert failure[0] == f"reads: could not build {MODULE}:ReadsOutput"
    assert failure[1].startswith('  hint: set device = "cpu" for this model')
    assert failure[2:5] == [
        f"  building {MODULE}:ReadsOutput() on meta raised RuntimeError: "
        "Tensor.item() cannot be called on meta tensors",
        f"    at {MODULE}.py:{line('.max().item()')} in __init__: "
        "scale = self.fc(torch.ones(1, 4)).abs().max().item()",
        "  built again with real arithmetic and its weights on meta, it failed there too",
    ]
    assert not any("Traceback" in text for text in failure)
    error = report["reads"]["error"].splitlines()
    assert [f"  {text}" for text in error[:4]] == failure[1:5]
    # Then the frames of the first cause, as for any failed build.
    assert error[4] == "raised at (innermost last):"
    assert error[5].endswith(f'{MODULE}.py", line {line(".max().item()")}, in __init__')
