"""Objects in kwargs: `_target_` tables (Hydra) and `class_path` tables (LightningCLI).

The checks of a configuration and the builder are tested directly; real pytest sessions show
what only a run shows: transformers models whose config is an object in kwargs, a bad target
failing its own model alone, and a malformed one stopping the run before anything is built.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from project import Project, failure_section, toml_text
from torch import nn

from pytest_cnnbudget import ModelBuildError, build_model
from pytest_cnnbudget.config.instantiate import instantiate, kwargs_problems
from pytest_cnnbudget.config.settings import load_settings
from pytest_cnnbudget.engine.loading import resolve_target
from pytest_cnnbudget.errors import ConfigError

USAGE_ERROR = pytest.ExitCode.USAGE_ERROR


def resolve(target: str, key: str) -> Callable[..., Any]:
    """What loading.py resolves objects' targets with: both forms."""
    return resolve_target(target, key, dotted=True)


def linear(n_in: int, n_out: int, form: str = "torch.nn:Linear") -> dict[str, Any]:
    return {"_target_": form, "in_features": n_in, "out_features": n_out}


# -- the builder -------------------------------------------------------------------------------


def test_sequential_of_objects_in_args_in_both_target_forms() -> None:
    kwargs = {
        "_args_": [
            {
                "_target_": "torch.nn:Sequential",
                "_args_": [linear(4, 8), {"_target_": "torch.nn.ReLU"}],
            },
            linear(8, 2, form="torch.nn.modules.linear.Linear"),
        ]
    }
    args, keywords = instantiate(kwargs, resolve)
    assert keywords == {}
    model = nn.Sequential(*args)
    assert [type(m).__name__ for m in model.modules()] == [
        "Sequential",
        "Sequential",
        "Linear",
        "ReLU",
        "Linear",
    ]
    assert model(torch.ones(1, 4)).shape == (1, 2)
    assert sum(p.numel() for p in model.parameters()) == (4 * 8 + 8) + (8 * 2 + 2)


def test_a_list_of_objects_and_plain_tables_beside_them() -> None:
    kwargs = {
        "layers": [linear(2, 3), linear(3, 4)],
        "options": {"depth": [1, 2], "names": {"a": "b"}},
        "width": 5,
    }
    _, keywords = instantiate(kwargs, resolve)
    assert [type(m) for m in keywords["layers"]] == [nn.Linear, nn.Linear]
    assert [m.out_features for m in keywords["layers"]] == [3, 4]
    # Tables without a target stay the dicts they were, arrays the lists.
    assert keywords["options"] is kwargs["options"]
    assert keywords["width"] == 5


def test_objects_are_built_innermost_first_and_targets_imported_before_their_arguments() -> None:
    events: list[str] = []

    def fake(target: str, key: str) -> Callable[..., Any]:
        events.append(f"import {key}")

        def build(*args: Any, **kwargs: Any) -> str:
            events.append(f"build {target}")
            return f"{target}({', '.join(map(str, [*args, *kwargs.values()]))})"

        return build

    kwargs = {
        "head": {
            "_target_": "m:Head",
            "_args_": [{"_target_": "m:Backbone", "blocks": [{"_target_": "m:Block"}]}],
            "norm": {"_target_": "m.Norm"},
        }
    }
    _, keywords = instantiate(kwargs, fake)
    assert keywords == {"head": "m:Head(m:Backbone(['m:Block()']), m.Norm())"}
    assert events == [
        "import kwargs.head._target_",
        "import kwargs.head._args_[0]._target_",
        "import kwargs.head._args_[0].blocks[0]._target_",
        "build m:Block",
        "build m:Backbone",
        "import kwargs.head.norm._target_",
        "build m.Norm",
        "build m:Head",
    ]


def test_partial_and_lightning_class_path() -> None:
    kwargs = {
        "make": {"_target_": "torch.nn:Linear", "_partial_": True, "in_features": 3},
        "head": {
            "class_path": "torch.nn.Linear",
            "init_args": {"in_features": 3, "out_features": 1},
        },
        "act": {"class_path": "torch.nn:ReLU"},
    }
    _, keywords = instantiate(kwargs, resolve)
    assert isinstance(keywords["make"], functools.partial)
    assert keywords["make"](out_features=2).weight.shape == (2, 3)
    assert keywords["head"].weight.shape == (1, 3)
    assert isinstance(keywords["act"], nn.ReLU)


def test_kwargs_without_objects_are_passed_as_they_are() -> None:
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    kwargs = {"a": [1, {"b": 2}], "cyclic": cyclic, "t": (1, 2)}
    args, keywords = instantiate(kwargs, resolve)
    assert args == []
    assert all(keywords[k] is kwargs[k] for k in kwargs)


PARTS = """
import torch

WIDTH = 3


class Box:
    def __init__(self, size=1):
        self.size = size


class Widths(torch.nn.Module):
    \"\"\"Reads widths back from a tensor, which meta tensors cannot do: the fallback builds it.\"\"\"

    def __init__(self):
        super().__init__()
        self.widths = (torch.arange(3) * 4 + 4).tolist()
        self.fc = torch.nn.Linear(self.widths[0], self.widths[-1])
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package whose `__init__` imports neither of its modules; one needs a missing one."""
    name = "cnnbudget_objects"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / name / "parts.py").write_text(PARTS, encoding="utf-8")
    (tmp_path / name / "needy.py").write_text("import cnnbudget_not_installed\n", "utf-8")
    monkeypatch.syspath_prepend(tmp_path)
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def test_a_dotted_target_imports_its_longest_importable_prefix(package: str) -> None:
    _, keywords = instantiate({"box": {"_target_": f"{package}.parts.Box", "size": 4}}, resolve)
    assert keywords["box"].size == 4
    assert type(keywords["box"]).__module__ == f"{package}.parts"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        pytest.param(
            "{p}.needy.Thing",
            "cannot import module '{p}.needy' for kwargs.x._target_ '{p}.needy.Thing': "
            "ModuleNotFoundError: No module named 'cnnbudget_not_installed'",
            id="a-module-missing-what-it-imports",
        ),
        pytest.param(
            "cnnbudget_absent.mod.Thing",
            "cannot import module 'cnnbudget_absent' for kwargs.x._target_ "
            "'cnnbudget_absent.mod.Thing': ModuleNotFoundError: No module named 'cnnbudget_absent'",
            id="no-such-package",
        ),
        pytest.param(
            "{p}.parts:Missing",
            "module '{p}.parts' has no attribute 'Missing' (kwargs.x._target_ '{p}.parts:Missing')",
            id="no-such-attribute",
        ),
        pytest.param(
            "{p}.parts.WIDTH",
            "kwargs.x._target_ '{p}.parts.WIDTH' is a int, not a class or factory",
            id="not-callable",
        ),
        pytest.param(
            "{p}.parts:Box",
            "building kwargs.x ({p}.parts:Box) raised TypeError: Box.__init__() got an "
            "unexpected keyword argument 'colour'",
            id="the-constructor-raises",
        ),
    ],
)
def test_build_errors_name_the_key_path_and_the_target(
    package: str, target: str, message: str
) -> None:
    kwargs = {"x": {"_target_": target.format(p=package), "colour": "red"}}
    with pytest.raises(ModelBuildError) as info:
        instantiate(kwargs, resolve)
    assert str(info.value) == message.format(p=package)


def test_objects_are_built_on_the_models_device() -> None:
    kwargs = {"_args_": [linear(3, 4), {"_target_": "torch.nn.BatchNorm1d", "num_features": 4}]}
    on_meta = build_model("torch.nn:Sequential", kwargs)
    assert {t.device.type for t in [*on_meta.parameters(), *on_meta.buffers()]} == {"meta"}
    assert sum(p.numel() for p in on_meta.parameters()) == 3 * 4 + 4 + 2 * 4
    on_cpu = build_model("torch.nn:Sequential", kwargs, device="cpu")
    assert {p.device.type for p in on_cpu.parameters()} == {"cpu"}


def test_the_meta_fallback_builds_objects_again_with_the_model(package: str) -> None:
    model = build_model(
        "torch.nn:Sequential", {"_args_": [{"_target_": f"{package}.parts.Widths"}]}
    )
    assert model.get_submodule("0").widths == [4, 8, 12]
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert sum(p.numel() for p in model.parameters()) == 4 * 12 + 12


def test_a_failed_object_is_the_models_error_by_its_key_path() -> None:
    kwargs = {"_args_": [{"_target_": "torch.nn:Linear", "in_features": 3}]}
    with pytest.raises(ModelBuildError) as info:
        build_model("torch.nn:Sequential", kwargs)
    assert str(info.value) == (
        "building kwargs._args_[0] (torch.nn:Linear) raised TypeError: Linear.__init__() missing "
        "1 required positional argument: 'out_features'"
    )
    assert type(info.value.__cause__) is ModelBuildError
    assert type(info.value.__cause__.__cause__) is TypeError


# -- the checks of a configuration --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "problems"),
    [
        pytest.param(
            {
                "config": {"_target_": "transformers:LlamaConfig", "hidden_size": 64},
                "blocks": [linear(1, 2), {"_target_": "torch.nn.Identity", "_args_": []}],
                "alt": {"class_path": "torch.nn.Linear", "init_args": {"in_features": 1}},
                "make": {"_target_": "m:f", "_partial_": True},
                "_args_": [linear(1, 1)],
                "plain": {"class": "x", "_private": 1, "list": [{"a": 1}]},
            },
            [],
            id="valid",
        ),
        pytest.param(
            {"config": {"_target_": ["a:b"]}, "other": {"_target_": 5}},
            [
                ("kwargs.config._target_", "expected a string, got list ['a:b']"),
                ("kwargs.other._target_", "expected a string, got int 5"),
            ],
            id="not-a-string",
        ),
        pytest.param(
            {
                "a": {"_target_": "transformers"},
                "b": [{"_target_": "a:b c"}],
                "c": {"_target_": "x..y"},
            },
            [
                (
                    "kwargs.a._target_",
                    "'transformers' is not of the form 'package.module:ClassOrFactory' or "
                    "'package.module.ClassOrFactory'",
                ),
                (
                    "kwargs.b[0]._target_",
                    "'a:b c' is not of the form 'package.module:ClassOrFactory' or "
                    "'package.module.ClassOrFactory': it has 'b c', not a Python identifier",
                ),
                (
                    "kwargs.c._target_",
                    "'x..y' is not of the form 'package.module:ClassOrFactory' or "
                    "'package.module.ClassOrFactory': it has an empty name",
                ),
            ],
            id="malformed",
        ),
        pytest.param(
            {"blocks": [1, {"_target_": "m:B", "_args_": 2}], "_args_": "x"},
            [
                ("kwargs._args_", "expected an array of positional arguments, got str 'x'"),
                ("kwargs.blocks[1]._args_", "expected an array of positional arguments, got int 2"),
            ],
            id="args-not-an-array",
        ),
        pytest.param(
            {
                "config": {"_target_": "m:C", "_recursive_": False, "_partial_": "yes"},
                "deep": {"inner": {"_targt_": "m:C", "_args_": [1]}},
            },
            [
                (
                    "kwargs.config._partial_",
                    "expected true or false, got str 'yes'",
                ),
                (
                    "kwargs.config._recursive_",
                    "not supported: nested objects are always built, innermost first; supported: "
                    "_target_, _args_, _partial_ (Hydra), or class_path with init_args (LightningCLI)",
                ),
                (
                    "kwargs.deep.inner._targt_",
                    "not supported (did you mean '_target_'?); supported: _target_, _args_, "
                    "_partial_ (Hydra), or class_path with init_args (LightningCLI)",
                ),
                ("kwargs.deep.inner._args_", "only a table with _target_ takes _args_"),
            ],
            id="underscore-keys",
        ),
        pytest.param(
            {
                "_target_": "m:Model",
                "a": {"_target_": "m:A", "class_path": "m.A"},
                "b": {"class_path": "m.B", "init_args": [1], "dict_kwargs": {}},
                "my key": [{"class_path": "m", "init_args": {"_convert_": "all"}}],
            },
            [
                (
                    "kwargs._target_",
                    "the model's own target is its `target` key; an object goes under a key of "
                    "kwargs (kwargs.config._target_)",
                ),
                ("kwargs.a", "has both _target_ and class_path; give one"),
                ("kwargs.b.dict_kwargs", "unknown key; a class_path table has only init_args"),
                ("kwargs.b.init_args", "expected a table of keyword arguments, got list"),
                (
                    "kwargs['my key'][0].class_path",
                    "'m' is not of the form 'package.module:ClassOrFactory' or "
                    "'package.module.ClassOrFactory'",
                ),
                (
                    "kwargs['my key'][0].init_args._convert_",
                    "not supported: init_args holds keyword arguments only",
                ),
            ],
            id="misplaced-and-lightning",
        ),
    ],
)
def test_kwargs_problems(kwargs: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    assert kwargs_problems(kwargs) == problems


def test_config_lists_each_problem_with_file_model_and_key_path(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    models: dict[str, dict[str, Any]] = {
        "llama": {
            "target": "transformers:LlamaForCausalLM",
            "kwargs": {"config": {"_target_": ["transformers:LlamaConfig"]}},
            "max_params": "1M",
        },
        "seq": {
            "target": "torch.nn:Sequential",
            "kwargs": {"_args_": [{"_target_": "torch.nn:Linear", "_recursive_": False}]},
            "max_params": 10,
        },
        "fine": {
            "target": "torch.nn:Sequential",
            "kwargs": {"_args_": [linear(1, 1)]},
            "max_params": 10,
        },
    }
    path.write_text(toml_text(models), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).splitlines() == [
        f"{path}: invalid [tool.cnnbudget] configuration",
        "  [tool.cnnbudget.models.llama]: kwargs.config._target_: expected a string, got list "
        "['transformers:LlamaConfig']",
        "  [tool.cnnbudget.models.seq]: kwargs._args_[0]._recursive_: not supported: nested "
        "objects are always built, innermost first; supported: _target_, _args_, _partial_ "
        "(Hydra), or class_path with init_args (LightningCLI)",
    ]
    del models["llama"], models["seq"]
    path.write_text(toml_text(models), encoding="utf-8")
    [spec] = load_settings(path).models
    assert spec.kwargs == {"_args_": [linear(1, 1)]}


# -- in real pytest sessions ---------------------------------------------------------------------

LLAMA_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "vocab_size": 1000,
}


def test_transformers_models_from_an_object_config_and_a_bad_target_failing_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing here may download
    transformers = pytest.importorskip("transformers")
    expected = sum(
        p.numel()
        for p in transformers.LlamaForCausalLM(
            transformers.LlamaConfig(**LLAMA_CONFIG)
        ).parameters()
    )
    llama_config = {"_target_": "transformers:LlamaConfig", **LLAMA_CONFIG}
    project = Project(
        pytester,
        top={"snapshot": False},
        llama={
            "target": "transformers:LlamaForCausalLM",
            "kwargs": {"config": llama_config},
            "max_total_params": "1M",
        },
        auto={
            "target": "transformers:AutoModelForCausalLM.from_config",
            "kwargs": {"config": {**llama_config, "_target_": "transformers.LlamaConfig"}},
            "max_total_params": "1M",
        },
        seq={
            "target": "torch.nn:Sequential",
            "kwargs": {"_args_": [linear(4, 8), {"_target_": "torch.nn.ReLU"}, linear(8, 2)]},
            "max_params": 100,
        },
        broken={
            "target": "transformers:LlamaForCausalLM",
            "kwargs": {"config": {"_target_": "cnnbudget_absent.configs:LlamaConfig"}},
            "max_params": "1M",
        },
    )
    result = pytester.runpytest("--cnn-budget", "--cnn-budget-json=budget.json")
    result.assert_outcomes(passed=3, failed=1)
    report = json.loads((project.path / "budget.json").read_text(encoding="utf-8"))["models"]
    total = {
        name: m["measurement"]["totals"]["params"] for name, m in report.items() if m["measurement"]
    }
    assert total["llama"] == total["auto"] == expected
    assert total["seq"] == (4 * 8 + 8) + (8 * 2 + 2)
    section = failure_section(result.outlines, "broken")
    assert section[:2] == [
        "broken: could not build transformers:LlamaForCausalLM",
        "  cannot import module 'cnnbudget_absent.configs' for kwargs.config._target_ "
        "'cnnbudget_absent.configs:LlamaConfig': ModuleNotFoundError: No module named "
        "'cnnbudget_absent'",
    ]
    assert "Traceback" not in result.stdout.str()


def test_a_malformed_target_stops_the_run_naming_file_model_and_key_path(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(poisoned="raise AssertionError('no model may be imported')")
    project = Project(
        pytester,
        net={
            "target": "poisoned:Net",
            "kwargs": {"config": {"_target_": ["poisoned:Config"]}},
            "max_params": 5,
        },
    )
    result = pytester.runpytest("--cnn-budget")
    assert result.ret == USAGE_ERROR
    assert result.errlines[:2] == [
        f"ERROR: {project.pyproject}: invalid [tool.cnnbudget] configuration",
        "  [tool.cnnbudget.models.net]: kwargs.config._target_: expected a string, got "
        "list ['poisoned:Config']",
    ]
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
