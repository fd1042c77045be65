"""`cnnbudget summary|plot`: every format, grouping by depth, profiling, and clean errors."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import architectures
import nets
import pytest
import torch
from project import NETS_SOURCE, toml_text
from schemas import problems

from pytest_cnnbudget.cli import _parser, main
from pytest_cnnbudget.config.fields import AUTOCAST
from pytest_cnnbudget.engine.measurement import measure
from pytest_cnnbudget.inputs import parse_input_shape
from pytest_cnnbudget.names import fold_name

Expected = Callable[[str, str], None]

# A name no other test's project uses: an imported module stays in sys.modules.
NETS_MODULE = "cli_nets"
CIFAR = f"{NETS_MODULE}:Cifar"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with the models module, as the working directory and importable."""
    (tmp_path / f"{NETS_MODULE}.py").write_text(NETS_SOURCE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(NETS_MODULE, None)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- summary -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("cli_summary.txt", ()),
        ("cli_summary_shapes.txt", ("--input-shape", "1,3,32,32")),
        ("cli_summary_shapes.md", ("--input-shape", "1,3,32,32", "--format", "markdown")),
        ("cli_summary_shapes.json", ("--input-shape", "1,3,32,32", "--format", "json")),
    ],
)
def test_summary_formats(
    capsys: pytest.CaptureFixture[str], expected: Expected, name: str, options: tuple[str, ...]
) -> None:
    status, out, err = run(capsys, "summary", CIFAR, "--kwargs", '{"num_classes": 10}', *options)
    assert (status, err) == (0, "")
    expected(name, out)


@pytest.mark.usefixtures("project")
def test_summary_json_structure(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "summary", CIFAR, "--input-shape", "1x3x32x32", "--format", "json")
    assert status == 0
    doc = json.loads(out)
    assert doc["target"] == CIFAR
    assert doc["schema"] == "pytest-cnnbudget/summary/2"
    assert problems(doc, "summary") == []
    assert doc["totals"] == {
        "params": 545_098,
        "trainable": 545_098,
        "frozen": 0,
        "buffers": 0,
        "param_bytes": 4 * 545_098,
        "buffer_bytes": 0,
    }
    assert doc["bytes_by_dtype"] == {
        "float32": {"params": 545_098, "param_bytes": 4 * 545_098, "buffers": 0, "buffer_bytes": 0}
    }
    assert doc["compute"] == {
        "inputs": {"args": [[1, 3, 32, 32]], "kwargs": {}},
        "output_shape": [1, 10],
        "macs": 6_128_896,
        "flops": 12_257_792,
    }
    layers = doc["layers"]
    assert [(r["name"], r["output_shape"], r["macs"]) for r in layers] == [
        ("conv1", [1, 32, 32, 32], 884_736),
        ("conv2", [1, 64, 16, 16], 4_718_592),
        ("fc1", [1, 128], 524_288),
        ("fc2", [1, 10], 1_280),
    ]
    assert sum(r["params"] for r in layers) == doc["totals"]["params"]
    assert sum(r["macs"] for r in layers) == doc["compute"]["macs"]


def test_summary_depth_groups_by_module_name(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys,
        "summary",
        "architectures:resnet18",
        "--depth",
        "1",
        "--input-shape",
        "1,3,224,224",
        "--format",
        "json",
    )
    assert status == 0
    doc = json.loads(out)
    rows = {r["name"]: r for r in doc["layers"]}
    assert list(rows) == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert (rows["layer1"]["type"], rows["layer1"]["formula"]) == ("Sequential", "8 layers")
    assert rows["layer2"]["formula"] == "10 layers"  # with the downsample conv and norm
    assert rows["layer1"]["params"] == 147_968
    assert rows["layer4"]["output_shape"] == [1, 512, 7, 7]
    assert rows["fc"]["formula"] == "512×1000 + 1000"
    assert sum(r["params"] for r in rows.values()) == architectures.PUBLISHED_PARAMS["resnet18"]
    assert sum(r["macs"] for r in rows.values()) == doc["compute"]["macs"]
    assert doc["compute"]["macs"] == pytest.approx(1.814e9, rel=0.01)


def test_summary_groups_repeated_blocks_unless_told_not_to(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(capsys, "summary", "architectures:vit_b_16")
    assert status == 0
    lines = out.splitlines()
    (fc1,) = [line for line in lines if ".mlp.0" in line]
    # torchvision names its blocks encoder_layer_0 … encoder_layer_11: one row for the twelve.
    assert fc1.split()[:5] == [
        "encoder.layers.encoder_layer_{0..11}.mlp.0",
        "×12",
        "Linear",
        "768×3072",
        "+",
    ]
    assert "2,362,368" in fc1  # each one's
    assert "28,348,416" in fc1  # the twelve together
    status, flat, _ = run(capsys, "summary", "architectures:vit_b_16", "--no-group")
    assert sum(".mlp.0 " in line for line in flat.splitlines()) == 12
    assert len(flat.splitlines()) > len(lines) + 50


def test_summary_trainable_only_shows_what_trains(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys,
        "summary",
        "nets:fine_tuned",
        "--kwargs",
        '{"widths": [100, 100, 20, 2], "frozen": 1}',
        "--trainable-only",
    )
    assert status == 0
    lines = out.splitlines()
    # The frozen first layer is gone; the shares are of the trainable total.
    assert [line.split()[0] for line in lines[2:4]] == ["1", "2"]
    assert lines[2].split()[-1] == "98.0%"
    assert lines[4].startswith("total 12,162 · trainable 2,062 · frozen 10,100")


def test_summary_depth_as_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "summary", "architectures:vit_b_16", "--depth", "1")
    assert status == 0
    assert out.splitlines()[:6] == [
        "layer      type               formula                  params  cumulative  share",
        "---------  -----------------  -------------------  ----------  ----------  -----",
        "(root)     VisionTransformer  class_token 1×1×768         768         768   0.0%",
        "conv_proj  Conv2d             16×16×3/1×768 + 768     590,592     591,360   0.7%",
        # The encoder's own position embedding, 12 blocks of 6 layers, the final norm.
        "encoder    Encoder            74 layers            85,207,296  85,798,656  98.4%",
        "heads      Sequential         1 layer                 769,000  86,567,656   0.9%",
    ]


def test_measure_adds_rows_for_compute_in_modules_without_parameters() -> None:
    with torch.device("meta"):
        model = architectures.llama(vocab=100, dim=32, n_layers=2, hidden=64, n_heads=2)
    summary = measure(model, parse_input_shape([1, 16]))
    assert summary.compute is not None
    rows = {r.name: r for r in summary.layers}
    attention = rows["layers.0.attention"]
    # Scores and weighted sum: two (16×16)·16 products per head, done in the module itself.
    assert (attention.params, attention.formula, attention.macs) == (0, "no parameters", 16_384)
    assert rows["layers.0.attention.wq"].macs == 16 * 32 * 32
    assert sum(r.macs or 0 for r in summary.layers) == summary.compute.macs
    assert sum(r.params for r in summary.layers) == summary.total
    assert [r.name for r in summary.parameter_rows] == [r.name for r in summary.layers if r.params]
    grouped = measure(model, parse_input_shape([1, 16]), depth=2)
    assert [r.name for r in grouped.layers] == [
        "tok_embeddings",
        "layers.0",
        "layers.1",
        "norm",
        "lm_head",
    ]
    assert sum(r.macs or 0 for r in grouped.layers) == summary.compute.macs
    with pytest.raises(ValueError, match="depth must be at least 1"):
        measure(model, depth=0)


@pytest.mark.parametrize(
    ("name", "depth", "group"),
    [("layer1.0.conv1", 1, "layer1"), ("layer1.0.conv1", 2, "layer1.0"), ("fc", 3, "fc")],
)
def test_fold_name(name: str, depth: int, group: str) -> None:
    assert fold_name(name, depth) == group
    assert fold_name("(root)", depth) == "(root)"
    assert fold_name(name, None) == name


@pytest.mark.usefixtures("project")
def test_summary_of_a_lazy_model_needs_an_input_shape(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "summary", f"{NETS_MODULE}:lazy_net")
    assert status == 2
    assert "uninitialized lazy parameter" in err
    assert err.rstrip().endswith("(--input-shape)")
    status, out, _ = run(capsys, "summary", f"{NETS_MODULE}:lazy_net", "--input-shape", "1,3,10,10")
    assert status == 0
    assert "3×3×3/1×8 + 8" in out
    assert "512×10 + 10" in out  # 8 channels of 8×8 after the 3×3 conv without padding


# -- errors: one message, status 2, no traceback ------------------------------------------------


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["summary", NETS_MODULE],
            f"'{NETS_MODULE}' is not a target ('package.module:attr'), and no pyproject.toml with "
            "[tool.cnnbudget] configures models in",
        ),
        (
            ["summary", CIFAR, "--kwargs", '{"x": {"_target_": 5}}'],
            "--kwargs: kwargs.x._target_: expected a string, got int 5",
        ),
        (["summary", CIFAR, "--config", "pyproject.toml"], "--config goes with the name of a"),
        (["summary", "no_such_module:Net"], "cannot import module 'no_such_module'"),
        (["summary", f"{NETS_MODULE}:Missing"], f"module '{NETS_MODULE}' has no attribute"),
        (["summary", CIFAR, "--kwargs", "{num_classes: 10}"], "--kwargs is not valid JSON"),
        (["summary", CIFAR, "--kwargs", "[10]"], "--kwargs must be a JSON object"),
        (
            ["summary", CIFAR, "--kwargs", '{"width": 3}'],
            "unexpected keyword argument 'width'",
        ),
        (
            ["summary", CIFAR, "--kwargs", "[" * 50_000 + "]" * 50_000],
            "--kwargs is not valid JSON (maximum recursion depth exceeded",
        ),
        (
            ["summary", CIFAR, "--kwargs", '{"a": ' + "[" * 40 + "]" * 40 + "}"],
            "--kwargs: tables and arrays nest more than 32 levels deep",
        ),
        (["summary", CIFAR, "--input-shape", "1," + "9" * 30], "a dimension of 30 digits"),
        (["summary", CIFAR, "--input-shape", "2048,1024,1024,1024"], "elements"),
        (["summary", f"{NETS_MODULE}:exploding"], "constructor exploded: width must be even"),
        (["summary", CIFAR, "--input-shape", "1,3,a"], "--input-shape '1,3,a': cannot read"),
        (
            ["summary", CIFAR, "--kwargs", '{"hidden": 64, "hidden": 128}'],
            "--kwargs: the key 'hidden' is written twice in one object; a JSON reader would "
            "keep only one",
        ),
        (
            ["summary", CIFAR, "--input-shape", '{"x": [1, 3], "x": [1, 3, 32, 32]}'],
            "the key 'x' is written twice in one object",
        ),
        (["plot", CIFAR, "--input-shape", "1,0"], "dimension 1 of [1, 0] is 0"),
        (
            ["summary", CIFAR, "--input-shape", "1,3,64,64"],
            "fc1 (Linear) expects 4096 input features = 64·8·8 but receives 16384 = 64·16·16",
        ),
    ],
)
def test_errors_are_one_clean_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.startswith("cnnbudget: error: ")
    assert message in err
    assert "Traceback" not in err


THOUSANDS_OF_KEYS = json.dumps({f"k{i}": i for i in range(5000)})


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            THOUSANDS_OF_KEYS,
            r"building cli_nets:Cifar\(k0=0, k1=1, .*, … and [\d,]+ more\) raised TypeError: "
            r"Cifar.__init__\(\) got an unexpected keyword argument 'k0'",
        ),
        (
            json.dumps({"k" * 20_000: 1}),
            r"building cli_nets:Cifar\(k{399}…\) raised TypeError: .* argument 'k+…",
        ),
        (
            json.dumps({f"_k{i}_": i for i in range(5000)}),
            r"--kwargs: kwargs\._k0_: not supported; .*; … and [\d,]+ more",
        ),
    ],
    ids=["5000-keys", "20000-character-key", "5000-problems"],
)
def test_an_error_quoting_a_huge_kwargs_object_stays_a_few_hundred_characters(
    capsys: pytest.CaptureFixture[str], kwargs: str, message: str
) -> None:
    status, _, err = run(capsys, "summary", CIFAR, "--kwargs", kwargs)
    assert status == 2
    (line,) = err.splitlines()
    assert len(line) <= 1000
    assert re.search(message, line), line[:500]


NON_FINITE = {
    "_args_": [
        {"_target_": "torch.nn:Linear", "in_features": 2, "out_features": 2},
        {"_target_": "torch.nn:Hardtanh", "min_val": -math.inf, "max_val": math.inf},
        {"_target_": "torch.nn:Threshold", "threshold": math.nan, "value": 0.0},
    ]
}
NON_FINITE_ECHOED = {
    "_args_": [
        {"_target_": "torch.nn:Linear", "in_features": 2, "out_features": 2},
        {"_target_": "torch.nn:Hardtanh", "min_val": "-inf", "max_val": "inf"},
        {"_target_": "torch.nn:Threshold", "threshold": "nan", "value": 0.0},
    ]
}


def strict_json(text: str) -> Any:
    """`text` as strict parsers (jq, Go) read it: NaN and Infinity refused."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON (RFC 8259)")

    return json.loads(text, parse_constant=refuse)


def test_summary_json_writes_a_configured_inf_or_nan_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = {
        "target": "torch.nn:Sequential",
        "kwargs": NON_FINITE,
        "input_shape": [1, 2],
        "max_params": 100,
        "memory": True,
        "optimizer": "sgd",
        "optimizer_kwargs": {"lr": math.inf, "momentum": math.nan},
    }
    (tmp_path / "pyproject.toml").write_text(toml_text({"odd": model}), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, "summary", "odd", "--format", "json")
    assert (status, err) == (0, "")
    doc = strict_json(out)
    assert problems(doc, "summary") == []
    assert doc["kwargs"] == NON_FINITE_ECHOED
    assert doc["memory"]["traced_with"]["optimizer_kwargs"] == {"lr": "inf", "momentum": "nan"}


@pytest.mark.slow
def test_a_huge_or_non_finite_kwargs_object_as_users_run_it(project: Path) -> None:
    def summary(kwargs: str, *options: str) -> subprocess.CompletedProcess[str]:
        argv = ["summary", "torch.nn:Sequential", "--kwargs", kwargs, *options]
        return subprocess.run(
            [sys.executable, "-m", "pytest_cnnbudget", *argv],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = summary(THOUSANDS_OF_KEYS)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert len(refused.stderr) < 1000
    assert re.search(r", … and [\d,]+ more\) raised TypeError", refused.stderr)
    # JSON has no `Infinity` (Python writes one unless told not to): the value is its text.
    done = summary(json.dumps(NON_FINITE), "--format", "json")
    assert (done.returncode, done.stderr) == (0, "")
    doc = strict_json(done.stdout)
    assert problems(doc, "summary") == []
    assert doc["kwargs"] == NON_FINITE_ECHOED


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["summary", CIFAR, "--format", "yaml"], "invalid choice: 'yaml'"),
        # As --cnn-budget-depth and `depth` in a file say it.
        (["summary", CIFAR, "--depth", "0"], "--depth: expected name levels, '0' is 0 is not from"),
        (["summary", CIFAR, "--depth", "65"], "--depth: expected name levels, '65' is 65 is not"),
        (["summary", CIFAR, "--depth", "two"], "expected name levels, 'two' is not a whole number"),
        (["plot", CIFAR, "--top", "many"], "'many' is not a whole number"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert message in err


def test_autocast_takes_the_names_the_config_validates() -> None:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    summary = commands.choices["summary"]
    autocast = next(a for a in summary._actions if "--autocast" in a.option_strings)
    assert autocast.choices is AUTOCAST


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "summary", "--help")
    assert status == 0
    assert "--input-shape" in out


# -- plot --------------------------------------------------------------------------------------


def test_plot_writes_svg_and_png(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "plot", CIFAR, "--top", "2", "--out", "charts")
    assert status == 0
    paths = [project / "charts" / "Cifar.svg", project / "charts" / "Cifar.png"]
    assert out.splitlines() == [str(Path("charts") / p.name) for p in paths]
    assert all(p.stat().st_size > 1000 for p in paths)


# -- as users run it ---------------------------------------------------------------------------


@pytest.mark.slow
def test_python_dash_m_in_a_project_folder(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["summary", CIFAR, "--input-shape", "1,3,32,32", "--format", "markdown"]
    run_m = subprocess.run(
        [sys.executable, "-m", "pytest_cnnbudget", *argv],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (run_m.returncode, run_m.stderr) == (0, "")
    assert run(capsys, *argv)[1] == run_m.stdout


@pytest.mark.slow
def test_console_script_imports_from_the_working_directory(project: Path) -> None:
    script = Path(sys.executable).with_name("cnnbudget")
    if not script.exists():
        pytest.skip("the cnnbudget console script is not installed next to this interpreter")
    failed = subprocess.run(
        [str(script), "summary", CIFAR, "--input-shape", "1,3,64,64"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert failed.stderr.startswith(
        "cnnbudget: error: fc1 (Linear) expects 4096 input features = 64·8·8"
    )
    assert "Traceback" not in failed.stderr
    assert len(failed.stderr.splitlines()) == 7  # the message, the arithmetic, the fix


# -- a configured model by its name ------------------------------------------------------------

CONFIGURED_MODULE = "cli_configured_nets"  # on sys.path only through its config's folder
MLP: dict[str, Any] = {
    "target": "torch.nn:Sequential",
    "kwargs": {
        "_args_": [
            {
                "_target_": "torch.nn:Sequential",
                "_args_": [
                    {"_target_": "torch.nn:Linear", "in_features": 8, "out_features": 16},
                    {"_target_": "torch.nn.ReLU"},
                ],
            },
            {"_target_": f"{CONFIGURED_MODULE}:fine_tuned", "widths": [16, 4], "frozen": 0},
        ]
    },
    "input_shape": [1, 8],
    "max_params": 1000,
}
MLP_PARAMS = (8 * 16 + 16) + (16 * 4 + 4)


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Path]:
    """A project whose pyproject.toml configures `cifar_small` and `mlp`; not on sys.path."""
    project = tmp_path / "project"
    (project / "src" / "deeper").mkdir(parents=True)
    (project / f"{CONFIGURED_MODULE}.py").write_text(NETS_SOURCE, encoding="utf-8")
    models = {
        "cifar_small": {
            "target": f"{CONFIGURED_MODULE}:Cifar",
            "kwargs": {"hidden": 64},
            "input_shape": [1, 3, 32, 32],
            "max_params": "600k",
        },
        "mlp": {**MLP, "depth": 1},
    }
    (project / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n' + toml_text(models, {"depth": 2}), encoding="utf-8"
    )
    # A package's own pyproject.toml without budgets is walked past.
    (project / "src" / "pyproject.toml").write_text('[project]\nname = "inner"\n', "utf-8")
    yield project
    sys.modules.pop(CONFIGURED_MODULE, None)


def summary_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    status, out, err = run(capsys, "summary", *argv, "--format", "json")
    assert (status, err) == (0, "")
    document: dict[str, Any] = json.loads(out)
    return document


@pytest.mark.parametrize("where", [".", "src/deeper"], ids=["project", "subfolder"])
def test_a_configured_model_by_name_from_the_project_and_below_it(
    configured: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    monkeypatch.chdir(configured / where)
    before = list(sys.path)
    doc = summary_json(capsys, "cifar_small")
    assert sys.path == before  # the config's folder was there only while the model was built
    assert (doc["model"], doc["target"], doc["kwargs"]) == (
        "cifar_small",
        f"{CONFIGURED_MODULE}:Cifar",
        {"hidden": 64},
    )
    assert doc["totals"]["params"] == sum(p.numel() for p in nets.Cifar(hidden=64).parameters())
    assert doc["compute"]["inputs"]["args"] == [[1, 3, 32, 32]]  # its input_shape
    assert [r["name"] for r in doc["layers"]] == ["conv1", "conv2", "fc1", "fc2"]


def test_objects_input_shape_and_depth_come_from_the_config_and_options_win(
    configured: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(configured)
    doc = summary_json(capsys, "mlp")
    # Nested `_target_` objects built, the model's own depth (1) over the top level's (2).
    assert [(r["name"], r["params"]) for r in doc["layers"]] == [("0", 144), ("1", 68)]
    assert doc["totals"]["params"] == MLP_PARAMS
    assert doc["compute"]["inputs"]["args"] == [[1, 8]]
    doc = summary_json(capsys, "mlp", "--input-shape", "3,8")
    assert doc["compute"]["inputs"]["args"] == [[3, 8]]


def test_depth_is_the_tables_else_the_options_else_the_top_levels_as_in_pytest(
    configured: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(configured)
    # mlp's table says depth 1: --depth does not override it, as --cnn-budget-depth does not.
    doc = summary_json(capsys, "mlp", "--depth", "2")
    assert [r["name"] for r in doc["layers"]] == ["0", "1"]
    # Without a depth of its own, --depth wins over the top level's (2).
    Path("inherits.toml").write_text(toml_text({"mlp": MLP}, {"depth": 2}), "utf-8")
    doc = summary_json(capsys, "mlp", "--config", "inherits.toml")
    assert [r["name"] for r in doc["layers"]] == ["0.0", "1.0"]
    doc = summary_json(capsys, "mlp", "--config", "inherits.toml", "--depth", "1")
    assert [r["name"] for r in doc["layers"]] == ["0", "1"]


def test_config_option_from_anywhere(
    configured: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = str(Path("..", "project", "pyproject.toml"))
    assert summary_json(capsys, "mlp", "--config", config)["totals"]["params"] == MLP_PARAMS
    status, out, _ = run(capsys, "plot", "mlp", "--config", config, "--out", "charts")
    assert status == 0
    assert out.splitlines() == [str(Path("charts", "mlp.svg")), str(Path("charts", "mlp.png"))]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["summary", "cifar_smal"],
            "no model 'cifar_smal' in {config} (did you mean 'cifar_small'?); configured: "
            "cifar_small, mlp",
            id="unknown-name",
        ),
        pytest.param(
            ["summary", "models.Cifar"],
            "no model 'models.Cifar' in {config}; configured: cifar_small, mlp; a target is "
            "written 'package.module:attr'",
            id="a-dotted-name",
        ),
        pytest.param(
            ["summary", "mlp", "--kwargs", "{}"],
            "--kwargs goes with a target ('package.module:attr'); the configured model 'mlp' "
            "takes its kwargs from its table",
            id="kwargs-with-a-name",
        ),
        pytest.param(
            ["plot", "mlp", "--config", "missing.toml"],
            "--config: no file at {project}/missing.toml",
            id="no-such-config",
        ),
    ],
)
def test_configured_model_errors(
    configured: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(configured)
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    config = configured / "pyproject.toml"
    assert err == f"cnnbudget: error: {message.format(config=config, project=configured)}\n"


def test_a_config_with_problems_says_them_all(
    configured: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configured / "pyproject.toml"
    bad = {"bad": {"target": "x:Y", "kwargs": {"c": {"_target_": ["x:Y"]}}, "max_params": 1}}
    config.write_text(toml_text({"mlp": MLP, **bad}), encoding="utf-8")
    monkeypatch.chdir(configured)
    status, _, err = run(capsys, "summary", "mlp")
    assert status == 2
    assert err.splitlines() == [
        f"cnnbudget: error: {config}: invalid [tool.cnnbudget] configuration",
        "  [tool.cnnbudget.models.bad]: kwargs.c._target_: expected a string, got list ['x:Y']",
    ]


def test_python_dash_m_from_a_subfolder_finds_the_config(
    configured: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_cnnbudget", "summary", "mlp"],
        cwd=configured / "src" / "deeper",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stderr) == (0, "")
    monkeypatch.chdir(configured / "src" / "deeper")
    assert run(capsys, "summary", "mlp")[1] == done.stdout
    assert (
        done.stdout.splitlines()[-1] == "input 1×8 → output 1×4 · MACs 192 (192) · FLOPs 384 (384)"
    )


ODD_NAMES = """
from torch import nn


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.add_module("s\\ud800t", nn.Linear(2, 2))  # a lone surrogate, as model code can
"""


@pytest.mark.slow
def test_the_command_prints_in_a_c_locale_and_escapes_a_lone_surrogate(project: Path) -> None:
    (project / "odd_nets.py").write_text(ODD_NAMES, encoding="utf-8")

    def summary(
        *argv: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "pytest_cnnbudget", "summary", *argv],
            cwd=project,
            capture_output=True,
            env={**os.environ, **(env or {})},
            timeout=120,
        )

    # An ASCII stdout: the `×` of a formula is escaped, not a UnicodeEncodeError.
    ascii_only = summary(CIFAR, env={"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"})
    assert (ascii_only.returncode, ascii_only.stderr) == (0, b"")
    assert b"545,098" in ascii_only.stdout
    done = summary("odd_nets:Odd", "--format", "json")
    assert (done.returncode, done.stderr) == (0, b"")
    doc = strict_json(done.stdout.decode("utf-8"))
    assert [layer["name"] for layer in doc["layers"]] == ["s\ud800t"]  # escaped in the text


def test_a_target_missing_arguments_is_told_the_kwargs_option_a_configured_one_its_table(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    (project / "needs_args.py").write_text(
        "from torch import nn\n\nclass Net(nn.Module):\n"
        "    def __init__(self, num_classes: int, width: int = 4) -> None:\n"
        "        super().__init__()\n        self.fc = nn.Linear(width, num_classes)\n",
        encoding="utf-8",
    )
    status, _, err = run(capsys, "summary", "needs_args:Net", "--kwargs", '{"width": 8}')
    assert status == 2
    assert err.splitlines()[0] == (
        "cnnbudget: error: hint: Net needs num_classes (int): give it with "
        """--kwargs '{"width": 8, "num_classes": …}'"""
    )
    (project / "pyproject.toml").write_text(
        '[tool.cnnbudget.models.net]\ntarget = "needs_args:Net"\nkwargs = { width = 8 }\n'
        "max_params = 100\n",
        encoding="utf-8",
    )
    status, _, err = run(capsys, "summary", "net")
    assert status == 2
    assert "add it to the model's kwargs: kwargs = { width = 8, num_classes = … }" in err
    sys.modules.pop("needs_args", None)
