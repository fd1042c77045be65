"""Quantized models count what they hold: packed weights and biases, at their own dtype.

Static (`prepare`/`convert`) and dynamic (`quantize_dynamic`) quantization of small nets, the
quantized layers built directly, and torchvision's quantized models: each against the float
model it came from, through counting, loading, the gate, the renderers, the wire and the
snapshot, and one real pytest session.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import warnings
from collections.abc import Iterator
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import Any

import nets
import pytest
import torch
from project import Project, failure_section
from torch import nn
from torch.ao import quantization
from torch.ao.nn import quantized

from pytest_cnnbudget.config.spec import ModelSpec, Order
from pytest_cnnbudget.engine.counting import count_parameters
from pytest_cnnbudget.engine.loading import build_model
from pytest_cnnbudget.engine.quantized import contains_quantized, quantized_layer
from pytest_cnnbudget.errors import ModelBuildError
from pytest_cnnbudget.report.json import json_report_metadata, summary_dict
from pytest_cnnbudget.report.terminal import failure_lines, format_table, overview_lines
from pytest_cnnbudget.results import ParameterCount, SnapshotEntry
from pytest_cnnbudget.run import wire
from pytest_cnnbudget.run.gate import check_model
from pytest_cnnbudget.snapshot.format import dumps, parse_snapshot

# torch's quantization API and torchvision are untyped; through Any, strict mypy checks the rest.
tq: Any = quantization
nnq: Any = quantized

pytestmark = [
    # torch deprecates eager-mode quantization and creating quantized tensors, which every
    # quantized layer still does: a project that turns warnings into errors cannot build one.
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max:UserWarning"),
    pytest.mark.filterwarnings("ignore:must run observer before calling calculate_qparams"),
    pytest.mark.skipif(
        not {"fbgemm", "qnnpack"} & set(torch.backends.quantized.supported_engines),
        reason="this torch build has no quantized cpu engine",
    ),
]


@pytest.fixture(autouse=True)
def _engine() -> Iterator[None]:
    # torchvision's quantize=True sets the process's quantized engine; the next test gets its own.
    engine = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = engine


def checked(model: nn.Module) -> ParameterCount:
    """Count `model` and assert what holds for every model, quantized or not: the rows add up
    to the total, each row's formula gives its count, the total is the parameters plus what the
    quantized rows hold, and only those rows are marked."""
    count = count_parameters(model)
    params = list(model.parameters())
    assert count.total == sum(p.numel() for p in params) + count.quantized
    assert count.trainable == sum(p.numel() for p in params if p.requires_grad)
    assert count.frozen == count.total - count.trainable
    assert sum(r.params for r in count.layers) == count.total
    assert sum(r.trainable for r in count.layers) == count.trainable
    assert [r.cumulative for r in count.layers] == list(accumulate(r.params for r in count.layers))
    for row in count.layers:
        assert row.formula_params == row.params, row
    modules = dict(model.named_modules())
    marked = {r.name for r in count.layers if r.quantized}
    assert marked == {
        name or "(root)" for name, m in modules.items() if quantized_layer(m) is not None
    }
    assert sum(r.params for r in count.layers if r.quantized) == count.quantized
    assert all(r.trainable == 0 for r in count.layers if r.quantized)
    assert count.param_bytes == sum(d.param_bytes for d in count.dtypes)
    return count


def by_dtype(count: ParameterCount) -> dict[str, tuple[int, int]]:
    """dtype → (parameter elements, parameter bytes)."""
    return {d.dtype: (d.params, d.param_bytes) for d in count.dtypes if d.params}


def rows(count: ParameterCount) -> list[tuple[str, str, int, str, str | None]]:
    return [(r.name, r.type, r.params, r.formula, r.quantized) for r in count.layers]


# -- quantized layers built directly -------------------------------------------------------------


def test_a_quantized_linear_counts_its_packed_weight_and_bias() -> None:
    count = checked(nnq.Linear(10, 5))
    float_count = checked(nn.Linear(10, 5))
    assert rows(count) == [("(root)", "Linear", 55, "10×5 + 5", "qint8")]
    assert rows(float_count) == [("(root)", "Linear", 55, "10×5 + 5", None)]
    assert (count.total, count.trainable, count.frozen, count.quantized) == (55, 0, 55, 55)
    # The weight at a byte an element, the bias as float32; the float layer at 4 bytes each.
    assert by_dtype(count) == {"qint8": (50, 50), "float32": (5, 20)}
    assert (count.param_bytes, float_count.param_bytes) == (70, 220)
    assert format_table(count).splitlines() == [
        "layer   type            formula   params  trainable  cumulative   share",
        "------  --------------  --------  ------  ---------  ----------  ------",
        "(root)  Linear (qint8)  10×5 + 5      55       none          55  100.0%",
        "total 55 · trainable 0 · frozen 55 · buffers 0 · quantized 55",
    ]


def test_quantized_layers_of_every_kind_match_their_float_layers() -> None:
    quantized = nn.Sequential(
        nnq.Linear(6, 4, bias_=False),
        nnq.Conv1d(3, 6, 5),
        nnq.Conv2d(4, 8, 3, groups=2),
        nnq.Conv3d(2, 4, (1, 2, 3), bias=False),
        nnq.ConvTranspose2d(4, 8, 3, groups=2),
        nnq.Embedding(10, 4),
        nnq.EmbeddingBag(12, 4, dtype=torch.quint4x2),
    )
    original = nn.Sequential(
        nn.Linear(6, 4, bias=False),
        nn.Conv1d(3, 6, 5),
        nn.Conv2d(4, 8, 3, groups=2),
        nn.Conv3d(2, 4, (1, 2, 3), bias=False),
        nn.ConvTranspose2d(4, 8, 3, groups=2),
        nn.Embedding(10, 4),
        nn.EmbeddingBag(12, 4),
    )
    count, float_count = checked(quantized), checked(original)
    # Same names, types, counts and textbook formulas as the float layers: only the mark differs.
    assert [row[:4] for row in rows(count)] == [row[:4] for row in rows(float_count)]
    assert [r.quantized for r in count.layers] == ["qint8"] * 5 + ["quint8", "quint4x2"]
    assert count.total == float_count.total == 24 + 96 + 152 + 48 + 152 + 40 + 48
    biases = 6 + 8 + 8
    assert by_dtype(count) == {
        "qint8": (24 + 90 + 144 + 48 + 144, 24 + 90 + 144 + 48 + 144),
        "float32": (biases, 4 * biases),
        "quint8": (40, 40),
        "quint4x2": (48, 24),  # two elements a byte
    }
    assert float_count.param_bytes == 4 * float_count.total


def test_float_layers_beside_quantized_ones_stay_on_meta_and_say_so() -> None:
    # A quantized layer packs its weight with a cpu kernel, so building on meta fails; the retry
    # with real arithmetic keeps every float weight on meta and the packed one on cpu.
    model = build_model(mixed_net)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    count = checked(model)
    assert rows(count) == [
        ("0", "Linear", 2_020, "100×20 + 20", None),
        ("1", "Linear", 105, "20×5 + 5", "qint8"),
    ]
    result = check_model(
        Order(ModelSpec("mixed", "test_quantized:mixed_net", budgets={"max_total_params": 10_000}))
    )
    assert result.notes == (
        "its quantized layers were built on cpu (meta cannot hold packed weights)",
    )


def mixed_net() -> nn.Module:
    """A float Linear and a quantized one, as the target of a configured model."""
    return nn.Sequential(nn.Linear(100, 20), nnq.Linear(20, 5))


# -- static quantization: prepare, calibrate, convert ---------------------------------------------


class SmallNet(nn.Module):
    """A conv and a linear between the stubs that eager-mode static quantization needs."""

    def __init__(self) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 2)
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv(self.quant(x)))
        out: torch.Tensor = self.dequant(self.fc(x.mean((2, 3))))
        return out


def static_net() -> nn.Module:
    """SmallNet quantized to int8: observed on one calibration batch, then converted."""
    torch.manual_seed(0)
    model = SmallNet().eval()
    model.qconfig = tq.get_default_qconfig(torch.backends.quantized.engine)
    tq.prepare(model, inplace=True)
    model(torch.randn(2, 3, 8, 8))
    converted: nn.Module = tq.convert(model)
    return converted


def test_static_quantization_keeps_the_counts_and_quarters_the_weights() -> None:
    count = checked(build_model(static_net))
    float_count = checked(SmallNet())
    assert rows(count) == [
        ("conv", "Conv2d", 224, "3×3×3/1×8 + 8", "qint8"),
        ("fc", "Linear", 18, "8×2 + 2", "qint8"),
    ]
    assert [row[:4] for row in rows(float_count)] == [row[:4] for row in rows(count)]
    assert (count.total, count.trainable) == (float_count.total, 0) == (242, 0)
    assert by_dtype(count) == {"qint8": (232, 232), "float32": (10, 40)}
    assert (count.param_bytes, float_count.param_bytes) == (272, 4 * 242)


# -- dynamic quantization --------------------------------------------------------------------------


def recurrent_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(8, 4),
        nn.LSTM(4, 6, num_layers=2, bidirectional=True),
        nn.GRU(3, 5),
        nn.LSTMCell(3, 4),
        nn.GRUCell(3, 4),
        nn.RNNCell(3, 4, nonlinearity="relu"),
        nn.Embedding(10, 3),  # left float: dynamic quantization does not touch it
    )


DYNAMIC = {nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell}


@pytest.mark.parametrize(("dtype", "size"), [(torch.qint8, 1), (torch.float16, 2)])
def test_dynamic_quantization_of_linear_and_recurrent_layers(dtype: torch.dtype, size: int) -> None:
    original = recurrent_net()
    count = checked(tq.quantize_dynamic(copy.deepcopy(original), DYNAMIC, dtype=dtype))
    float_count = checked(original)
    assert [row[:4] for row in rows(count)] == [row[:4] for row in rows(float_count)]
    name = str(dtype).removeprefix("torch.")
    assert [r.quantized for r in count.layers] == [name] * 6 + [None]
    assert count.total == float_count.total == 2_040
    assert (count.trainable, count.quantized) == (30, 2_010)  # the float Embedding trains
    weights = 32 + 4 * 6 * (4 + 6) * 2 + 4 * 6 * (12 + 6) * 2 + 120 + 112 + 84 + 28
    assert count.quantized - weights == 4 + 2 * 4 * 6 * 4 + 2 * 3 * 5 + 2 * (16 + 12 + 4)
    assert by_dtype(count) == {
        name: (weights, size * weights),
        "float32": (2_040 - weights, 4 * (2_040 - weights)),
    }


def dynamic_lstm() -> nn.Module:
    """A float LSTM classifier quantized dynamically, as a factory a project would name."""
    torch.manual_seed(0)
    float_model = nn.Sequential(nn.LSTM(16, 32), nn.Linear(32, 4))
    quantized_model: nn.Module = tq.quantize_dynamic(float_model, {nn.LSTM, nn.Linear})
    return quantized_model


def test_a_model_quantized_in_its_factory_is_built_on_cpu() -> None:
    # quantize_dynamic reads the float weights' values (.item() on meta): built on cpu.
    model = build_model(dynamic_lstm)
    assert contains_quantized(model)
    count = checked(model)
    assert rows(count) == [
        ("0", "LSTM", 6_400, "4×32×(16 + 32) + 2×4×32", "qint8"),
        ("1", "Linear", 132, "32×4 + 4", "qint8"),
    ]


# -- what falls back to cpu, and what does not -----------------------------------------------------


def calibrated_float_net() -> nn.Module:
    """Observed and calibrated, but never converted: float, with quantization code on the stack
    when meta fails."""
    model = SmallNet().eval()
    model.qconfig = tq.get_default_qconfig(torch.backends.quantized.engine)
    tq.prepare(model, inplace=True)
    model(torch.randn(2, 3, 8, 8))
    return model


def test_a_float_model_is_never_accepted_from_cpu() -> None:
    assert contains_quantized(calibrated_float_net()) is False
    with pytest.raises(ModelBuildError, match=r"cannot be called on meta tensors"):
        build_model(calibrated_float_net)


def test_a_float_model_that_fails_on_meta_is_not_retried_on_cpu() -> None:
    calls: list[str] = []

    def reads_a_weight() -> nn.Module:
        layer = nn.Linear(4, 4)
        calls.append(layer.weight.device.type)
        layer.weight.sum().item()
        return layer

    with pytest.raises(ModelBuildError, match=r"cannot be called on meta tensors"):
        build_model(reads_a_weight)
    assert calls == ["meta", "meta"]  # the first try and the retry, both on meta


def test_a_retry_that_fails_for_another_reason_is_not_retried_again() -> None:
    calls: list[int] = []

    def offline_the_second_time() -> nn.Module:
        calls.append(1)
        if len(calls) > 1:
            raise ConnectionError("offline")
        layer: nn.Module = nnq.Linear(4, 4)  # fails on meta: a cpu kernel packs its weight
        return layer

    with pytest.raises(ModelBuildError, match=r"ConnectionError: offline"):
        build_model(offline_the_second_time)
    assert len(calls) == 2


def test_a_warning_made_an_error_is_the_constructors_and_fails_at_once() -> None:
    calls: list[int] = []

    def warns() -> nn.Module:
        calls.append(1)
        layer: nn.Module = nnq.Linear(4, 4)  # fails on meta, for quantization's sake
        warnings.warn("this layer is deprecated", UserWarning, stacklevel=1)
        return layer

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="this layer is deprecated")
        with pytest.raises(ModelBuildError, match=r"UserWarning: this layer is deprecated"):
            build_model(warns)
    # On meta, then in the retry, which warns: a warning is never meta's doing, so no cpu.
    assert len(calls) == 2


# -- torchvision's quantized models --------------------------------------------------------------


TORCHVISION = ["mobilenet_v2", "resnet18", "shufflenet_v2_x0_5"]


def torchvision_quantization() -> Any:
    """torchvision.models.quantization, imported by the tests that use it, not at collection
    (tests/slow/test_collection.py). A test imports it before a pytester run of its own that
    builds one of its models: an in-process run drops what it imported, and torchvision's
    operators cannot be registered twice in one process."""
    return importlib.import_module("torchvision.models.quantization")


@cache
def torchvision_counts(name: str) -> tuple[ParameterCount, ParameterCount, ParameterCount, int]:
    """The quantized model (built as the gate builds it), its float original, that original with
    its layers fused as quantization fuses them, and the float original's BatchNorm channels."""
    factory = getattr(torchvision_quantization(), name)
    quantized = build_model(factory, {"weights": None, "quantize": True})
    original = factory(weights=None, quantize=False)
    norms = sum(m.num_features for m in original.modules() if isinstance(m, nn.BatchNorm2d))
    float_count = checked(original)
    original.eval()
    original.fuse_model()
    return checked(quantized), float_count, checked(original), norms


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_quantized_models_hold_what_their_float_originals_hold(name: str) -> None:
    count, float_count, fused, norms = torchvision_counts(name)
    # Quantizing fuses each BatchNorm into the conv before it: its scale is folded into the
    # weights, its shift becomes the conv's bias. Those are the only elements that go.
    assert count.total == fused.total == float_count.total - norms
    assert sorted(r.params for r in count.layers) == sorted(r.params for r in fused.layers)
    assert count.quantized == count.total
    assert count.trainable == 0
    assert {r.quantized for r in count.layers} == {"qint8"}
    dtypes = by_dtype(count)
    assert set(dtypes) == {"qint8", "float32"}
    weights, biases = dtypes["qint8"][0], dtypes["float32"][0]
    assert weights + biases == count.total
    assert count.param_bytes == weights + 4 * biases < float_count.param_bytes / 3


def test_mobilenet_v2_in_numbers() -> None:
    count, float_count, _, norms = torchvision_counts("mobilenet_v2")
    assert (float_count.total, norms, count.total) == (3_504_872, 17_056, 3_487_816)
    assert (float_count.param_bytes, count.param_bytes) == (14_019_488, 3_541_984)
    rows_by_name = {r.name: r for r in count.layers}
    assert rows(count)[0] == ("features.0.0", "ConvReLU2d", 896, "3×3×3/1×32 + 32", "qint8")
    head = rows_by_name["classifier.1"]
    assert (head.type, head.params, head.formula) == ("Linear", 1_281_000, "1280×1000 + 1000")


def test_a_quantized_models_results_cross_the_wire_and_the_snapshot() -> None:
    count = torchvision_counts("mobilenet_v2")[0]
    entry = SnapshotEntry.from_count(count)
    assert parse_snapshot(dumps({"mobilenet": entry}), Path("s.json")) == {"mobilenet": entry}
    # The snapshot stores counts, as for float dtypes: a row's mark is not one of its fields.
    assert '"quantized"' not in dumps({"mobilenet": entry})
    summary = summary_dict(count)
    assert summary["totals"]["quantized"] == count.total
    assert {row["quantized"] for row in summary["layers"]} == {"qint8"}
    held = {dtype for dtype, sizes in summary["bytes_by_dtype"].items() if sizes["params"]}
    assert held == {"qint8", "float32"}  # int64 holds the input's zero point, a buffer


def test_float_models_report_as_they_did() -> None:
    count = checked(nets.Cifar())
    assert count.quantized == 0
    assert {r.quantized for r in count.layers} == {None}
    summary = summary_dict(count)
    assert "quantized" not in summary["totals"]
    assert all("quantized" not in row for row in summary["layers"])
    assert "quantized" not in format_table(count)


# -- the gate ------------------------------------------------------------------------------------


def mobilenet_spec(**budgets: Any) -> ModelSpec:
    return ModelSpec(
        "mobilenet",
        "torchvision.models.quantization:mobilenet_v2",
        kwargs={"quantize": True},
        budgets=budgets,
    )


def test_the_gate_budgets_a_quantized_model_on_what_it_holds() -> None:
    result = check_model(
        Order(mobilenet_spec(max_total_params=3_000_000, max_param_bytes=3_000_000))
    )
    assert [b.key for b in result.exceeded] == ["max_total_params", "max_param_bytes"]
    assert [b.actual for b in result.exceeded] == [3_487_816, 3_541_984]
    assert result.notes == ("built on cpu: meta cannot build quantized layers",)
    lines = failure_lines(result, "pyproject.toml", "cnnbudget.snapshot.json")
    assert lines[0] == "mobilenet: total parameters over budget by 487,816 (+16.3%)"
    assert any(
        re.search(r"classifier\.1 +Linear \(qint8\) +1280×1000 \+ 1000 +1,281,000", line)
        for line in lines
    )
    assert lines[-1] == "mobilenet: built on cpu: meta cannot build quantized layers"
    assert "mobilenet: built on cpu: meta cannot build quantized layers" in overview_lines(
        [result], []
    )
    data = json.loads(json.dumps(wire.encode(result)))
    assert wire.decode(data) == result
    meta = json_report_metadata([result])["cnn_budget"]
    assert meta["notes"] == list(result.notes)
    assert meta["measurement"]["totals"]["quantized"] == 3_487_816


def test_a_quantized_model_budgeted_on_trainable_parameters_alone_is_told_so() -> None:
    result = check_model(Order(mobilenet_spec(max_params=1_000)))
    # Its weights are quantized, not trainable: within any trainable budget, and told why.
    assert not result.failed
    assert result.notes[1] == (
        "max_params counts trainable parameters, and the 3,487,816 elements its quantized "
        "layers hold are not: budget it with max_total_params or max_param_bytes"
    )


# -- a real session ------------------------------------------------------------------------------


def test_a_quantized_torchvision_model_fails_over_budget_in_a_session(
    pytester: pytest.Pytester,
) -> None:
    torchvision_quantization()
    Project(
        pytester,
        top={"snapshot": False},
        mobilenet={
            "target": "torchvision.models.quantization:mobilenet_v2",
            "kwargs": {"quantize": True},  # weights default to None: nothing to download
            "max_total_params": "3M",
        },
    )
    result = pytester.runpytest("--cnn-budget", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    section = failure_section(result.outlines, "mobilenet")
    assert section[0] == "mobilenet: total parameters over budget by 487,816 (+16.3%)"
    assert any("Linear (qint8)" in line for line in section)
    assert "mobilenet: built on cpu: meta cannot build quantized layers" in section
    result.stdout.fnmatch_lines(
        [
            "mobilenet*3,487,816 total*3,000,000*116.3%*FAILED (over budget)",
            "mobilenet: built on cpu: meta cannot build quantized layers",
        ]
    )
