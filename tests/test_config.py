"""Reading `[tool.cnnbudget]`: finding the file, every problem it can have, and where each
model is declared, in every TOML spelling."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from project import toml_text

from pytest_cnnbudget.config import Level, find_config, load_settings
from pytest_cnnbudget.errors import ConfigError

PYPROJECT = textwrap.dedent(
    """\
    [project]
    name = "demo"

    [tool.cnnbudget]  # budgets
    snapshot = false

    [tool.cnnbudget.models.plain]
    target = "nets:A"
    max_params = 10

    [tool.cnnbudget.models."resnet/50 (small)"]
    target = "nets:R"
    max_params = 10

    [ tool . cnnbudget . models . "with space" ]
    target = "nets:B"
    kwargs = { widths = [
      [1, 2],
    ] }
    max_params = 10

    [tool.cnnbudget.models]
    inline = { target = "nets:C", max_params = 10 }
    'quoted inline' = { target = "nets:D", max_params = 10 }
    dotted.target = "nets:E"
    dotted.max_params = 10

    [[tool.other]]
    inline2 = 1
    """
)


def lines_of(tmp_path: Path, text: str) -> dict[str, int | None]:
    path = tmp_path / "pyproject.toml"
    path.write_text(text, encoding="utf-8")
    return {m.name: m.line for m in load_settings(path).models}


def test_each_model_points_at_the_line_that_declares_it(tmp_path: Path) -> None:
    numbered = {line: n for n, line in enumerate(PYPROJECT.splitlines(), start=1)}
    assert lines_of(tmp_path, PYPROJECT) == {
        "plain": numbered["[tool.cnnbudget.models.plain]"],
        "resnet/50 (small)": numbered['[tool.cnnbudget.models."resnet/50 (small)"]'],
        "with space": numbered['[ tool . cnnbudget . models . "with space" ]'],
        "inline": numbered['inline = { target = "nets:C", max_params = 10 }'],
        "quoted inline": numbered["'quoted inline' = { target = \"nets:D\", max_params = 10 }"],
        "dotted": numbered['dotted.target = "nets:E"'],
    }


def test_a_model_in_a_dotted_key_points_at_the_tool_table(tmp_path: Path) -> None:
    text = '[tool.cnnbudget]\nmodels.net = { target = "nets:A", max_params = 10 }\n'
    assert lines_of(tmp_path, text) == {"net": 1}


def test_a_thousand_models_each_on_its_own_line(tmp_path: Path) -> None:
    tables = "".join(
        f'[tool.cnnbudget.models.m{i}]\ntarget = "nets:A"\nmax_params = 10\n\n' for i in range(1000)
    )
    lines = lines_of(tmp_path, "[tool.cnnbudget]\n" + tables)
    assert lines == {f"m{i}": 2 + 4 * i for i in range(1000)}


# -- finding the file ---------------------------------------------------------------------


def test_the_rootdirs_pyproject_is_the_default(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    assert find_config(tmp_path, tmp_path / "elsewhere", None) == tmp_path / "pyproject.toml"


def test_no_configuration_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        find_config(tmp_path, tmp_path, None)
    assert str(info.value).startswith(
        f"--cnn-budget: no configuration file at {tmp_path / 'pyproject.toml'} (pytest's rootdir)"
    )


def test_the_config_option_is_relative_to_where_pytest_was_started(tmp_path: Path) -> None:
    rootdir, started = tmp_path / "repo", tmp_path / "repo" / "sub"
    (started / "ci").mkdir(parents=True)
    (started / "ci" / "budgets.toml").write_text("", encoding="utf-8")
    found = find_config(rootdir, started, "ci/budgets.toml")
    assert found == started / "ci" / "budgets.toml"
    assert find_config(tmp_path / "other", tmp_path / "other", str(found)) == found
    with pytest.raises(ConfigError, match=r"budgets\.toml \(--cnn-budget-config\)"):
        find_config(rootdir, rootdir, "ci/budgets.toml")


def test_the_snapshot_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "ci" / "budgets.toml"
    path.parent.mkdir()
    models = {"tiny": {"target": "nets:Tiny", "max_params": 100}}
    path.write_text(toml_text(models, {"snapshot": "snap.json"}), encoding="utf-8")
    settings = load_settings(path)
    assert settings.snapshot == tmp_path / "ci" / "snap.json"
    assert settings.snapshot_name(tmp_path) == "ci/snap.json"
    assert settings.snapshot_name(tmp_path / "unrelated") == str(settings.snapshot)
    path.write_text(toml_text(models, {"snapshot": False}), encoding="utf-8")
    assert load_settings(path).snapshot is None


def test_a_valid_model(tmp_path: Path) -> None:
    models = {"cifar": {"target": "nets:Cifar", "max_params": "1.5M", "level": "warn"}}
    path = tmp_path / "pyproject.toml"
    path.write_text(toml_text(models, {"device": "cpu"}), encoding="utf-8")
    [spec] = load_settings(path).models
    assert (spec.name, spec.target, spec.budgets, spec.level) == (
        "cifar",
        "nets:Cifar",
        {"max_params": 1_500_000},
        Level.WARN,
    )
    assert (spec.kwargs, spec.device, spec.input_shape, spec.line) == ({}, "cpu", None, 4)


# -- problems: each names the file, the table and the key -----------------------------------

CIFAR = "[tool.cnnbudget.models.cifar]"


@pytest.mark.parametrize(
    ("models", "top", "problems"),
    [
        pytest.param(
            {"cifar": {"target": "nets:Cifar", "max_param": 5}},
            {},
            [
                f"{CIFAR} max_param: unknown key (did you mean 'max_params'?)",
                f"{CIFAR} max_params: missing; every model needs a budget",
            ],
            id="unknown-key",
        ),
        pytest.param(
            {"cifar": {"target": 5, "max_params": "lots"}},
            {},
            [
                f"{CIFAR} target: expected a string, got int 5",
                f"{CIFAR} max_params: cannot parse 'lots'; write it like 600_000, '600k', '1.5M' "
                "or '7B'",
            ],
            id="wrong-types",
        ),
        pytest.param(
            {"cifar": {"target": "nets:Cifar", "max_params": -5}},
            {},
            [f"{CIFAR} max_params: -5 must be positive"],
            id="negative",
        ),
        pytest.param(
            {"cifar": {"target": "nets:Cifar", "max_params": 5, "kwargs": [1], "level": "fatal"}},
            {},
            [
                f"{CIFAR} kwargs: expected a table of keyword arguments, got list",
                f"{CIFAR} level: expected one of 'error', 'warn', got 'fatal'",
            ],
            id="kwargs-and-level",
        ),
        pytest.param(
            {"m": {"target": "nets", "max_params": "1.5M", "device": "gpu"}},
            {"snapshots": "x.json", "device": "cuda"},
            [
                "[tool.cnnbudget] snapshots: unknown key (did you mean 'snapshot'?)",
                "[tool.cnnbudget] device: expected one of 'meta', 'cpu', got 'cuda'",
                "[tool.cnnbudget.models.m] target: 'nets' is not of the form "
                "'package.module:ClassOrFactory'",
                "[tool.cnnbudget.models.m] device: expected one of 'meta', 'cpu', got 'gpu'",
            ],
            id="top-keys-device-and-target-form",
        ),
        pytest.param(
            {"cifar": {"max_params": 5, "weights": "x"}},
            {},
            [
                f"{CIFAR} weights: unknown key (allowed: target, kwargs, level, device, "
                "input_shape, max_params, max_total_params, max_macs, max_flops, "
                "max_param_bytes, max_buffers, max_buffer_bytes)",
                f"{CIFAR} target: missing; give 'package.module:ClassOrFactory'",
            ],
            id="no-target-and-no-close-key",
        ),
        pytest.param(
            {"cifar": {"target": "nets:Cifar", "max_params": 5, "max_macs": "1M"}},
            {},
            [f"{CIFAR} max_macs: needs input_shape: compute depends on the input size"],
            id="max-macs-without-input-shape",
        ),
        pytest.param(
            {},
            {"snapshot": False},
            ["[tool.cnnbudget]: no models configured; add a [tool.cnnbudget.models.<name>] table"],
            id="no-models",
        ),
        pytest.param(
            {},
            {"models": 5},
            [
                "[tool.cnnbudget] models: expected a table, got int",
                "[tool.cnnbudget]: no models configured; add a [tool.cnnbudget.models.<name>] table",
            ],
            id="models-not-a-table",
        ),
    ],
)
def test_every_problem_is_reported_at_once_naming_file_table_and_key(
    tmp_path: Path, models: dict[str, Any], top: dict[str, Any], problems: list[str]
) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(toml_text(models, top), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).splitlines() == [
        f"{path}: invalid [tool.cnnbudget] configuration",
        *(f"  {problem}" for problem in problems),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "[tool.other]\nx = 1\n",
            "no [tool.cnnbudget] table; add one with at least one [tool.cnnbudget.models.<name>] "
            "entry (see the README), or point --cnn-budget-config at the file that has it",
            id="no-table",
        ),
        pytest.param(
            "[tool.cnnbudget\nx = 1\n",
            "malformed TOML: Expected ']' at the end of a table declaration (at line 1, column 16)",
            id="malformed",
        ),
    ],
)
def test_a_file_without_a_readable_table(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=f"^{re.escape(str(tmp_path))}: cannot read the configuration: "
    ):
        load_settings(tmp_path)  # a directory
