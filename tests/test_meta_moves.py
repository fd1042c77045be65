"""Factories that move their model (`.to(device)`, `.cuda()`, `.half()`) build on meta.

A move of a meta tensor stays on meta and keeps its dtype change; CUDA is never initialized, so
these tests mean the same on a machine without a GPU (where a real move would fail) as on one
with a GPU. Each model is compared with a real cpu build of the same model at the same dtype.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pytest_cnnbudget import ModelBuildError, build_model, count_parameters

PACKAGE = "cnnbudget_moves"

MOVES = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)
        self.norm = nn.BatchNorm2d(width)  # running statistics and an int64 counter: buffers
        self.fc = nn.Linear(width, 10)
        self.register_buffer("index", torch.arange(4))
        self.scale = nn.Parameter(torch.ones(width), requires_grad=False)


def to_cuda():
    return Net().to("cuda")


def to_cuda_index():
    return Net().to("cuda:0")


def to_device_object():
    return Net().to(torch.device("cuda", 0))


def to_device_and_dtype():
    return Net().to(device="cuda", dtype=torch.bfloat16)


def cuda():
    return Net().cuda()


def half_then_cuda():
    return Net().half().cuda()


def cuda_then_bfloat16():
    return Net().cuda().to(torch.bfloat16)


def to_cpu():
    return Net().to("cpu")


def half():
    return Net().half()


def bfloat16():
    return Net().to(torch.bfloat16)


def channels_last():
    return Net().to("cuda", memory_format=torch.channels_last)


def swapped():
    """Module.to with torch's future behaviour: parameters swapped, not assigned through .data."""
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        return Net().to("cuda", torch.float16)
    finally:
        torch.__future__.set_swap_module_params_on_conversion(False)


def half_16():
    return Net(width=16).half()


def fallback_then_cuda():
    """Reads a tensor back (meta cannot), so it is built by the fallback, then moved."""
    widths = (torch.arange(2) * 8 + 8).tolist()
    return Net(width=widths[1]).to("cuda", torch.float16)


class TensorMoves(nn.Module):
    """Every form of Tensor.to, .cuda and .cpu on a tensor the constructor makes."""

    def __init__(self):
        super().__init__()
        base = torch.empty(2, 3)
        other = torch.empty(1, dtype=torch.float64, device="cpu")
        self.register_buffer("to_device", base.to("cuda"))
        self.register_buffer("to_index", base.to(0))
        self.register_buffer("to_index_keyword", base.to(device=1, dtype=torch.float16))
        self.register_buffer("to_dtype_positional", base.to("cuda", torch.float16, False, True))
        self.register_buffer("to_other", base.to(other))
        self.register_buffer("to_other_copy", base.to(other, False, True))
        self.register_buffer("to_dtype_only", base.to(torch.bfloat16, False, True))
        self.register_buffer("to_copy", base.to("cuda", copy=True))
        self.register_buffer("by_cuda", base.cuda(0, non_blocking=True))
        self.register_buffer("by_cpu", base.cpu())
        self.same = base.to("cuda") is base  # a move to where it is returns the tensor itself
        self.copied = base.to("cuda", copy=True) is not base


def cpu_tensor_to_cuda():
    """A real tensor moved to the GPU: not a meta tensor, so it is not kept anywhere."""
    widths = (torch.arange(2) * 8 + 8).tolist()
    net = Net(width=widths[1])
    net.register_buffer("real", torch.ones(3, device="cpu").to("cuda"))
    return net


def lazy_then_cuda():
    widths = (torch.arange(2) * 8 + 8).tolist()
    return nn.Sequential(nn.Linear(widths[0], 4), nn.LazyLinear(3)).to("cuda", torch.float16)
'''


@pytest.fixture
def moves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The factories above, importable as `cnnbudget_moves.models` for one test."""
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "models.py").write_text(MOVES, encoding="utf-8")
    monkeypatch.syspath_prepend(tmp_path)
    yield
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any CUDA initialization fails the test, on a machine with a GPU as on one without."""

    def fail() -> None:
        raise AssertionError("CUDA was initialized")

    # What every CUDA call runs first, whether from C++ (a tensor's move) or from Python.
    monkeypatch.setattr(torch.cuda, "_lazy_init", fail)


def kinds(model: nn.Module) -> set[tuple[str, str]]:
    return {(t.device.type, str(t.dtype)) for t in [*model.parameters(), *model.buffers()]}


@pytest.mark.usefixtures("moves", "no_cuda")
@pytest.mark.parametrize(
    ("factory", "reference"),
    [
        ("to_cuda", "Net"),
        ("to_cuda_index", "Net"),
        ("to_device_object", "Net"),
        ("to_device_and_dtype", "bfloat16"),
        ("cuda", "Net"),
        ("half_then_cuda", "half"),
        ("cuda_then_bfloat16", "bfloat16"),
        ("to_cpu", "Net"),
        ("channels_last", "Net"),
        ("swapped", "half"),
    ],
)
def test_a_moved_model_builds_on_meta_as_a_cpu_build_counts_it(
    factory: str, reference: str
) -> None:
    model = build_model(f"{PACKAGE}.models:{factory}")
    real = build_model(f"{PACKAGE}.models:{reference}", device="cpu")
    assert {device for device, _ in kinds(model)} == {"meta"}
    assert kinds(model) == {("meta", dtype) for _, dtype in kinds(real)}
    # Totals, rows, frozen parameters, buffers, and bytes by dtype: all as the real build's.
    assert count_parameters(model) == count_parameters(real)


@pytest.mark.usefixtures("moves", "no_cuda")
def test_the_fallback_moves_on_meta_too() -> None:
    model = build_model(f"{PACKAGE}.models:fallback_then_cuda")
    real = build_model(f"{PACKAGE}.models:half_16", device="cpu")
    assert kinds(model) == {("meta", "torch.float16"), ("meta", "torch.int64")}
    assert count_parameters(model) == count_parameters(real)


@pytest.mark.usefixtures("moves", "no_cuda")
def test_every_form_of_a_tensor_move() -> None:
    model = build_model(f"{PACKAGE}.models:TensorMoves")
    # A move to where a tensor is returns it itself, so several of these are one tensor.
    buffers = {
        name: (b.device.type, b.dtype) for name, b in model.named_buffers(remove_duplicate=False)
    }
    assert buffers == {
        "to_device": ("meta", torch.float32),
        "to_index": ("meta", torch.float32),
        "to_index_keyword": ("meta", torch.float16),
        "to_dtype_positional": ("meta", torch.float16),
        "to_other": ("meta", torch.float64),
        "to_other_copy": ("meta", torch.float64),
        "to_dtype_only": ("meta", torch.bfloat16),
        "to_copy": ("meta", torch.float32),
        "by_cuda": ("meta", torch.float32),
        "by_cpu": ("meta", torch.float32),
    }
    assert (vars(model)["same"], vars(model)["copied"]) == (True, True)


@pytest.mark.usefixtures("moves", "no_cuda")
def test_lazy_parameters_stay_lazy_when_moved() -> None:
    model = build_model(f"{PACKAGE}.models:lazy_then_cuda")
    lazy = model.get_submodule("1")
    assert isinstance(lazy, nn.LazyLinear)
    assert type(lazy.weight).__name__ == "UninitializedParameter"
    assert lazy.weight.dtype == torch.float16


@pytest.mark.usefixtures("moves")
@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the move succeeds")
def test_a_real_tensor_moved_to_cuda_is_still_refused() -> None:
    with pytest.raises(ModelBuildError, match="hint: the constructor needs a GPU"):
        build_model(f"{PACKAGE}.models:cpu_tensor_to_cuda")


def test_cpu_builds_do_not_move_on_meta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cpu_moves.py").write_text(MOVES, encoding="utf-8")
    monkeypatch.syspath_prepend(tmp_path)
    model = build_model("cpu_moves:half", device="cpu")
    assert kinds(model) == {("cpu", "torch.float16"), ("cpu", "torch.int64")}
    if not torch.cuda.is_available():  # a real build makes the real move
        with pytest.raises(ModelBuildError, match="hint: the constructor needs a GPU"):
            build_model("cpu_moves:to_cuda", device="cpu")


# -- open_clip: every model's factory ends with model.to(device) -------------------------------


def test_open_clip_builds_on_meta_at_the_precision_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    open_clip = pytest.importorskip("open_clip")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    logging.disable(logging.WARNING)  # "No pretrained weights loaded", as asked
    try:
        kwargs: dict[str, Any] = {"model_name": "ViT-B-32", "pretrained": None}
        fp32 = count_parameters(build_model(open_clip.create_model, {**kwargs, "device": "cuda"}))
        fp16 = build_model(
            open_clip.create_model, {**kwargs, "device": "cuda", "precision": "fp16"}
        )
    finally:
        logging.disable(logging.NOTSET)
    assert {p.device.type for p in fp16.parameters()} == {"meta"}
    # The published ViT-B-32 count, and the bytes a real cpu build at fp16 has (open_clip
    # keeps norms and the class and positional embeddings in float32).
    assert fp32.total == count_parameters(fp16).total == 151_277_313
    assert fp32.param_bytes_by_dtype() == {"float32": 4 * 151_277_313}
    assert count_parameters(fp16).param_bytes_by_dtype() == {
        "float16": 251_672_576,
        "float32": 101_764_100,
    }
