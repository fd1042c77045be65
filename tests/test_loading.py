"""Building models from `"package.module:attr"` targets, on meta by default, without allocating."""

from __future__ import annotations

import functools
import importlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pytest_cnnbudget import ModelBuildError, build_model, count_parameters
from pytest_cnnbudget.engine import meta

PACKAGE = "cnnbudget_zoo"
MODELS = f"{PACKAGE}.models"
TESTS_DIR = Path(__file__).parent
GIB = 1024**3

ZOO = '''
import torch
from torch import nn

WIDTH = 8


class Net(nn.Module):
    def __init__(self, width=8, classes=10):
        super().__init__()
        self.width = width
        self.conv = nn.Conv2d(3, width, 3)
        self.norm = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, classes)


def make_net(width=8):
    return Net(width=width)


class Outer:
    @staticmethod
    def factory(width=8):
        return Net(width=width)


def make_dict():
    return {"not": "a module"}


def exploding(width=8):
    raise ValueError("width must be even")


class Stages(nn.Module):
    """Widths computed with tensor ops and read back, as torchvision's RegNet does."""

    def __init__(self, depth=4):
        super().__init__()
        self.widths = (torch.arange(depth) * 16 + 16).tolist()
        self.stem = nn.Conv2d(3, self.widths[0], 3)
        self.stages = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(self.widths, self.widths[1:])
        )
        self.norm = nn.BatchNorm1d(self.widths[-1])
        self.scale = nn.Parameter(torch.ones(self.widths[-1]), requires_grad=False)
'''

# Net(width=16): conv 3·3·3·16 + 16, norm 2·16, fc 16·10 + 10.
NET_16 = 448 + 32 + 170
# Stages(): widths 16, 32, 48, 64; stem, three Linear layers, norm, and the frozen scale.
STAGES = 448 + (16 * 32 + 32) + (32 * 48 + 48) + (48 * 64 + 64) + 2 * 64 + 64


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A package of models, importable as `cnnbudget_zoo` for the duration of one test."""
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "models.py").write_text(ZOO, encoding="utf-8")
    (package / "broken.py").write_text('raise RuntimeError("broken at import")\n', "utf-8")
    monkeypatch.syspath_prepend(tmp_path)
    yield
    # Each test writes its own copy; a module cached by an earlier test would shadow it.
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def devices(model: nn.Module) -> set[str]:
    return {t.device.type for t in [*model.parameters(), *model.buffers()]}


# -- targets -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("zoo")
@pytest.mark.parametrize("attr", ["Net", "make_net", "Outer.factory"])
def test_target_forms(attr: str) -> None:
    model = build_model(f"{MODELS}:{attr}", {"width": 16})
    assert type(model).__name__ == "Net"
    assert model.width == 16
    assert devices(model) == {"meta"}
    assert count_parameters(model).total == NET_16


@pytest.mark.usefixtures("zoo")
def test_callable_target() -> None:
    net = importlib.import_module(MODELS).Net
    model = build_model(net, {"width": 16})
    assert devices(model) == {"meta"}
    assert count_parameters(model).total == NET_16


@pytest.mark.usefixtures("zoo")
def test_cpu_builds_real_tensors() -> None:
    model = build_model(f"{MODELS}:Net", {"width": 16}, device="cpu")
    assert devices(model) == {"cpu"}
    # Reading values back only works on tensors with storage.
    assert model.get_parameter("norm.weight").tolist() == [1.0] * 16
    assert count_parameters(model).total == NET_16


# -- the fallback for constructors that compute on tensors --------------------------------------


@pytest.mark.usefixtures("zoo")
def test_fallback_for_constructors_that_read_tensors_back() -> None:
    stages = importlib.import_module(MODELS).Stages
    with pytest.raises(NotImplementedError, match="meta"), torch.device("meta"):
        stages()

    model = build_model(f"{MODELS}:Stages")
    assert model.widths == [16, 32, 48, 64]
    assert devices(model) == {"meta"}
    count = count_parameters(model)
    assert count.total == STAGES == count_parameters(stages()).total
    # Moving a parameter to meta must not thaw it.
    assert (count.trainable, count.frozen) == (STAGES - 64, 64)
    assert count.buffers == 64 + 64 + 1


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("zoo")
@pytest.mark.parametrize(
    ("target", "kwargs", "fragments", "cause"),
    [
        pytest.param(
            f"{PACKAGE}.missing:Net",
            {},
            [f"cannot import module '{PACKAGE}.missing'", "ModuleNotFoundError"],
            ModuleNotFoundError,
            id="missing-module",
        ),
        pytest.param(
            f"{PACKAGE}.broken:Net",
            {},
            [f"cannot import module '{PACKAGE}.broken'", "RuntimeError: broken at import"],
            RuntimeError,
            id="module-raises-on-import",
        ),
        pytest.param(
            f"{MODELS}:Nope",
            {},
            [f"module '{MODELS}' has no attribute 'Nope'"],
            AttributeError,
            id="missing-attribute",
        ),
        pytest.param(
            f"{MODELS}:Outer.nope",
            {},
            [f"module '{MODELS}' has no attribute 'Outer.nope'"],
            AttributeError,
            id="missing-nested-attribute",
        ),
        pytest.param(
            f"{MODELS}:Net",
            {"depth": 3},
            ["(depth=3) raised TypeError", "unexpected keyword argument 'depth'"],
            TypeError,
            id="bad-kwarg",
        ),
        pytest.param(
            f"{MODELS}:exploding",
            {},
            ["raised ValueError: width must be even"],
            ValueError,
            id="constructor-raises",
        ),
        pytest.param(
            f"{MODELS}:make_dict",
            {},
            ["returned a dict, not a torch.nn.Module"],
            None,
            id="not-a-module",
        ),
        pytest.param(
            f"{MODELS}:WIDTH",
            {},
            ["is a int, not a class or factory"],
            None,
            id="not-callable",
        ),
        pytest.param(
            f"{MODELS}.Net",
            {},
            ["is not of the form 'package.module:attr'"],
            None,
            id="no-colon",
        ),
        pytest.param(":Net", {}, ["is not of the form"], None, id="no-module"),
        pytest.param(f"{MODELS}:", {}, ["is not of the form"], None, id="no-attribute"),
    ],
)
def test_build_errors(
    target: str,
    kwargs: dict[str, Any],
    fragments: list[str],
    cause: type[BaseException] | None,
) -> None:
    with pytest.raises(ModelBuildError) as info:
        build_model(target, kwargs)
    message = str(info.value)
    assert target in message
    for fragment in fragments:
        assert fragment in message
    if cause is None:
        assert info.value.__cause__ is None
    else:
        assert type(info.value.__cause__) is cause


@pytest.mark.usefixtures("zoo")
def test_unknown_device() -> None:
    with pytest.raises(ModelBuildError, match="device must be 'meta' or 'cpu', not 'cuda'"):
        build_model(f"{MODELS}:Net", device="cuda")


# -- memory ------------------------------------------------------------------------------------


def build_in_subprocess(target: str, *path: Path) -> dict[str, Any]:
    """Build and count `target` in a fresh interpreter; its total, devices and peak RSS."""
    code = textwrap.dedent(
        f"""
        import json, resource, sys
        sys.path[:0] = sys.argv[1:]
        from pytest_cnnbudget import build_model, count_parameters
        model = build_model({target!r})
        total = count_parameters(model).total
        # Linux: the high-water mark of this program's own memory (VmHWM). ru_maxrss would
        # carry over the peak of the process that forked it (a large xdist worker) across exec.
        try:
            with open("/proc/self/status") as status:
                line = next(l for l in status if l.startswith("VmHWM:"))
            peak = int(line.split()[1]) * 1024
        except (OSError, StopIteration):
            # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak *= 1 if sys.platform == "darwin" else 1024
        devices = sorted({{p.device.type for p in model.parameters()}})
        dynamo = "torch._dynamo" in sys.modules
        print(json.dumps({{"total": total, "peak": peak, "devices": devices, "dynamo": dynamo}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,  # only so that a hang fails instead of stalling the run
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return report


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="the resource module is POSIX-only")


@pytest.mark.slow
@posix_only
def test_llama_7b_builds_without_allocating() -> None:
    report = build_in_subprocess("architectures:llama", TESTS_DIR)
    assert report["total"] == 6_738_415_616
    assert report["devices"] == ["meta"]
    # As float32 the weights alone would take 27 GB; importing torch takes a few hundred MB.
    assert report["peak"] < GIB
    # nn.Embedding initializes with normal_, whose meta kernel would import torch._dynamo.
    assert report["dynamo"] is False


INITIALIZED = """
from torch import nn


class Initialized(nn.Module):
    def __init__(self, fallback=False):
        super().__init__()
        if fallback:
            self.widths = __import__("torch").arange(3).tolist()  # meta cannot do this
        self.embed = nn.Embedding(100, 16)
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)
        self.c = nn.Linear(16, 16)
        nn.init.trunc_normal_(self.a.weight, std=0.02)
        nn.init.kaiming_normal_(self.a.weight)
        nn.init.normal_(tensor=self.b.weight, std=0.02)
        nn.init.xavier_normal_(self.b.weight)
        nn.init.eye_(self.c.weight)
        self.b.bias.data.log_normal_()
"""


@pytest.mark.parametrize("target", ["init_model:Initialized", "init_model:fallback"])
def test_initializers_on_meta_are_skipped(tmp_path: Path, target: str) -> None:
    source = INITIALIZED + "\n\ndef fallback():\n    return Initialized(fallback=True)\n"
    (tmp_path / "init_model.py").write_text(source, encoding="utf-8")
    report = build_in_subprocess(target, tmp_path)
    assert report["total"] == 100 * 16 + 3 * (16 * 16 + 16)
    assert report["devices"] == ["meta"]
    assert report["dynamo"] is False


def test_an_in_place_op_with_a_tensor_operand_runs_on_meta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The skip checks a fill's arguments on a one-element cpu tensor, which a meta operand
    # could not meet: such a call runs on meta as it is, with no retry off meta.
    source = (
        "import torch\nfrom torch import nn\n\nCALLS = []\n\n\nclass Clamped(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        CALLS.append(1)\n"
        "        self.fc = nn.Linear(4, 4)\n"
        "        self.fc.bias.data.clamp_(min=torch.zeros(()))\n"
    )
    (tmp_path / "clamped_model.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model("clamped_model:Clamped")
    assert sys.modules["clamped_model"].CALLS == [1]
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert count_parameters(model).total == 4 * 4 + 4


def test_a_module_listed_as_imported_off_meta_gets_cpu_tensors_in_a_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its import-time tensors are made as an import outside the build would make them.
    (tmp_path / "import_time.py").write_text(
        "import torch\n\nCONSTANT = torch.ones(2)\n", encoding="utf-8"
    )
    (tmp_path / "imports_late.py").write_text(
        "import importlib\nfrom torch import nn\n\n\nclass Late(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.constant = importlib.import_module('import_time').CONSTANT\n"
        "        self.fc = nn.Linear(2, 2)\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(meta, "_IMPORTED_OFF_META", frozenset({"import_time"}))
    model = build_model("imports_late:Late")
    assert model.constant.device.type == "cpu"
    assert model.constant.tolist() == [1.0, 1.0]
    assert all(p.is_meta for p in model.parameters())


DYNAMO_LATE = """
import torch
from torch import nn


class DynamoLate(nn.Module):
    def __init__(self):
        super().__init__()
        import torch._dynamo  # first imported here, as transformers' GenerationMixin does

        self.fc = nn.Linear(4, 4)
"""


@pytest.mark.slow
def test_torch_dynamo_first_imported_by_a_constructor_on_meta(tmp_path: Path) -> None:
    # torch 2.8 fails this import inside torch.device("meta") ("partially initialized module
    # 'torch._dynamo'").
    (tmp_path / "dynamo_late.py").write_text(DYNAMO_LATE, encoding="utf-8")
    report = build_in_subprocess("dynamo_late:DynamoLate", tmp_path)
    assert report == {**report, "total": 4 * 4 + 4, "devices": ["meta"], "dynamo": True}


BROKEN_INITS = """
import torch
from torch import nn


class NegativeStd(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.empty(10, 10))
        nn.init.normal_(self.w, std=-1.0)


class OneDimKaiming(nn.Module):
    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.empty(10))
        nn.init.kaiming_normal_(self.b)


class IntegerNormal(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("idx", torch.empty(10, dtype=torch.long))
        self.idx.normal_()


class LazyNormal(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(8)
        nn.init.normal_(self.fc.weight)
"""


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        ("NegativeStd", "normal expects std >= 0.0"),
        ("OneDimKaiming", "Fan in and fan out can not be computed"),
        ("IntegerNormal", "not implemented for 'Long'"),
        ("LazyNormal", "uninitialized parameter"),
    ],
)
def test_skipped_initializers_still_reject_what_cpu_rejects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls: str, message: str
) -> None:
    (tmp_path / "broken_inits.py").write_text(BROKEN_INITS, encoding="utf-8")
    monkeypatch.syspath_prepend(tmp_path)
    for device in ("meta", "cpu"):
        with pytest.raises(ModelBuildError, match=message):
            build_model(f"broken_inits:{cls}", device=device)


EYE_OUT = """
import torch
from torch import nn


class EyeOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("identity", torch.empty(0))
        torch.eye(8, out=self.identity)  # resizes its output
        self.w = nn.Parameter(torch.empty(self.identity.shape[0], 4))
"""


def test_eye_into_a_buffer_of_another_shape_still_resizes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "eye_out.py").write_text(EYE_OUT, encoding="utf-8")
    monkeypatch.syspath_prepend(tmp_path)
    for device in ("meta", "cpu"):
        model = build_model("eye_out:EyeOut", device=device)
        assert count_parameters(model).total == 32
        assert count_parameters(model).buffers == 64


def test_initializers_still_run_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "init_model.py").write_text(INITIALIZED, encoding="utf-8")
    monkeypatch.syspath_prepend(tmp_path)
    model = build_model("init_model:Initialized", device="cpu")
    weights = dict(model.named_parameters())
    assert torch.equal(weights["c.weight"], torch.eye(16))
    assert 0.5 < float(weights["embed.weight"].detach().std()) < 1.5


HUGE = """
import torch
from torch import nn


class Huge(nn.Module):
    def __init__(self):
        super().__init__()
        self.widths = (torch.arange(4) * 16 + 16).tolist()
        self.fc = nn.Linear(20000, 20000)
"""


@pytest.mark.slow
@posix_only
def test_fallback_builds_without_allocating(tmp_path: Path) -> None:
    (tmp_path / "huge_model.py").write_text(HUGE, encoding="utf-8")
    report = build_in_subprocess("huge_model:Huge", tmp_path)
    assert report["total"] == 20000 * 20000 + 20000
    assert report["devices"] == ["meta"]
    # The fallback builds on cpu and moves each weight to meta as it is registered; the 1.6 GB
    # float32 weight must never become resident.
    assert report["peak"] < GIB


LAZY_READS_BACK = """
import torch
from torch import nn


class LazyReadsBack(nn.Module):
    def __init__(self):
        super().__init__()
        width = int(torch.tensor(8).item())  # meta cannot read a value back: the fallback runs
        self.fc = nn.LazyLinear(width)
        self.bn = nn.LazyBatchNorm1d()

    def forward(self, x):
        return self.bn(self.fc(x))
"""


def test_the_fallback_leaves_lazy_modules_on_meta_for_the_forward_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_cnnbudget import measure, parse_input_shape

    (tmp_path / "lazy_model.py").write_text(LAZY_READS_BACK, encoding="utf-8")
    monkeypatch.syspath_prepend(tmp_path)
    model = build_model("lazy_model:LazyReadsBack")
    tensors = [*model.parameters(), *model.buffers()]
    assert {t.device.type for t in tensors} == {"meta"}
    count = measure(model, parse_input_shape([2, 5]))
    assert (count.total, count.buffers) == (5 * 8 + 8 + 2 * 8, 8 + 8 + 1)


@pytest.mark.parametrize(
    ("target", "meant", "said"),
    [
        # The module's last part, the package, the attribute, a dotted attribute.
        ("typomodels.net:TinyCnn", "typomodels.nets:TinyCnn", "typomodels.nets"),
        ("typomodel.nets:TinyCnn", "typomodels.nets:TinyCnn", "typomodels.nets"),
        ("typomodels.nets:TinyCNN", "typomodels.nets:TinyCnn", "typomodels.nets:TinyCnn"),
        (
            "typomodels.nets:zoo.tiny_cn",
            "typomodels.nets:zoo.tiny_cnn",
            "typomodels.nets:zoo.tiny_cnn",
        ),
    ],
)
def test_a_target_typo_gets_a_did_you_mean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, meant: str, said: str
) -> None:
    package = tmp_path / "typomodels"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "nets.py").write_text(
        "import types\nfrom torch import nn\n\n"
        "class TinyCnn(nn.Linear):\n    def __init__(self):\n        super().__init__(2, 2)\n\n"
        "zoo = types.SimpleNamespace(tiny_cnn=TinyCnn)\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("typomodel")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ModelBuildError) as raised:
        build_model(target)
    assert str(raised.value).endswith(f" (did you mean {said!r}?)"), str(raised.value)
    assert sum(p.params for p in count_parameters(build_model(meant)).layers) == 6


def test_a_missing_dependency_gets_no_did_you_mean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The target's module exists; what it imports does not: no guess at a name.
    (tmp_path / "needs_dep.py").write_text("import torchvisionn\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelBuildError) as raised:
        build_model("needs_dep:Net")
    assert "No module named 'torchvisionn'" in str(raised.value)
    assert "did you mean" not in str(raised.value)


class Needs(nn.Module):
    def __init__(  # type: ignore[no-untyped-def]
        self, num_classes: int, in_channels, *, depth: int, width: int = 8, **options: object
    ) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels * width * depth, num_classes)


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        (
            {"depth": 2},
            "Needs needs num_classes (int) and in_channels: add them to the model's kwargs: "
            "kwargs = { depth = 2, num_classes = …, in_channels = … }",
        ),
        (
            {"num_classes": 10, "in_channels": 3, "width": 4},
            "Needs needs depth (int): add it to the model's kwargs: "
            "kwargs = { num_classes = 10, in_channels = 3, width = 4, depth = … }",
        ),
        # Positional arguments (`_args_`) count, and stay in the line.
        (
            {"_args_": [10], "depth": 1, "scale": float("inf")},
            "Needs needs in_channels: add it to the model's kwargs: "
            "kwargs = { _args_ = [10], depth = 1, scale = inf, in_channels = … }",
        ),
        # A value TOML cannot show briefly is elided; a key TOML must quote is quoted.
        (
            {"depth": 1, "note": "x" * 80, "my.key": 2},
            "Needs needs num_classes (int) and in_channels: add them to the model's kwargs: "
            "kwargs = { …, num_classes = …, in_channels = … }",
        ),
    ],
)
def test_a_constructor_missing_arguments_gets_the_kwargs_line_to_add(
    kwargs: dict[str, Any], hint: str
) -> None:
    with pytest.raises(ModelBuildError) as raised:
        build_model(Needs, kwargs)
    message = str(raised.value)
    assert message.splitlines()[0] == f"hint: {hint}", message
    assert "missing" in message.splitlines()[1]  # then Python's own words


def test_a_missing_argument_inside_the_constructor_gets_no_kwargs_hint() -> None:
    def factory(width: int = 4) -> nn.Module:
        # The factory's own call lacks depth, not the config.
        return Needs(10, 3, width=width)  # type: ignore[call-arg]

    with pytest.raises(ModelBuildError) as raised:
        build_model(factory, {"width": 2})
    assert "hint:" not in str(raised.value)
    assert "missing 1 required keyword-only argument: 'depth'" in str(raised.value)


def test_the_missing_arguments_hint_names_a_partials_function_and_skips_positional_only() -> None:
    def net(width: int, depth: int) -> nn.Module:
        return nn.Linear(width, depth)

    with pytest.raises(ModelBuildError) as raised:
        build_model(functools.partial(net, depth=2))
    assert str(raised.value).startswith(
        "hint: test_the_missing_arguments_hint_names_a_partials_function_and_skips_positional_"
        "only.<locals>.net needs width (int): add it to the model's kwargs: "
        "kwargs = { width = … }"
    )

    def positional(width: int, /) -> nn.Module:
        return nn.Linear(width, 2)

    with pytest.raises(ModelBuildError) as raised:
        build_model(positional)
    assert "hint:" not in str(raised.value)  # a keyword line would not work
