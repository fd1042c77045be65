"""The documentation's recipes, run against the real libraries they configure.

Every ```toml block of docs/recipes.md (its `# Recipes` section) goes, as it is written, into one throwaway
project's pyproject.toml, and one `pytest --cnn-budget` session checks them all on meta (one
subprocess, so transformers, timm, torchvision, diffusers and ultralytics are imported once).
Every model must pass, and its counts must equal those of a real cpu build made here with the
library's own API from the same table's numbers: a recipe pasted from the page is right by
construction.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    from torch import nn

PAGE = Path(__file__).parent.parent / "docs" / "recipes.md"
SECTION = "Recipes"
# Each of these has a recipe of its own, and its model a real build below.
LIBRARIES = ("transformers", "peft", "timm", "torchvision", "diffusers", "ultralytics")


# -- the Markdown ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string's first word, its text, its opening fence's line."""

    language: str
    text: str
    line: int


_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^ \t`]*)")
_HEADING = re.compile(r"^ {0,3}(?P<level>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")


def section(markdown: str, title: str) -> tuple[str, list[Block]]:
    """The text of the section headed `title` (at any level) and its fenced code blocks.

    The section ends at the next heading of its level or above, so a page's `# title` holds its
    `## ` subsections. Fences are read as CommonMark reads them: a `# ` line inside a code block
    is code, and a fence closes only on a line of the same character, at least as many of them,
    and nothing else.
    """
    lines = markdown.splitlines()
    start: int | None = None
    level = 0
    end = len(lines)
    blocks: list[Block] = []
    fence: str | None = None
    body: list[str] = []
    language = ""
    opened = 0
    for number, line in enumerate(lines, 1):
        if fence is not None:
            if line.strip() and set(line.strip()) == {fence[0]} and len(line.strip()) >= len(fence):
                if start is not None:
                    blocks.append(Block(language, "\n".join(body) + "\n", opened))
                fence = None
            else:
                body.append(line)
            continue
        if match := _FENCE.match(line):
            fence, language, body, opened = match["fence"], match["info"], [], number
            continue
        heading = _HEADING.match(line)
        if heading and start is not None and len(heading["level"]) <= level:
            end = number - 1
            break
        if heading and start is None and heading["text"] == title:
            start, level = number, len(heading["level"])
    assert start is not None, f"{PAGE.name} has no '{title}' heading"
    return "\n".join(lines[start:end]), blocks


def recipe_blocks() -> tuple[str, list[Block]]:
    """The recipes page's section and its TOML blocks."""
    text, blocks = section(PAGE.read_text(encoding="utf-8"), SECTION)
    return text, [b for b in blocks if b.language == "toml"]


def models_of(block: Block) -> dict[str, dict[str, Any]]:
    """The model tables of one block, which must hold complete model tables and nothing else."""
    data = tomllib.loads(block.text)
    models: dict[str, dict[str, Any]] = data["tool"]["cnnbudget"]["models"]
    assert data == {"tool": {"cnnbudget": {"models": models}}}, (
        f"docs/recipes.md:{block.line}: a recipe holds [tool.cnnbudget.models.<name>] tables only"
    )
    return models


# -- the real builds ------------------------------------------------------------------------------

Build = Callable[[dict[str, Any]], "nn.Module"]
# Model key → its target, and a build of it from its kwargs with the library's own API.
REAL_BUILDS: dict[str, tuple[str, Build]] = {}


def real_build(model: str, target: str) -> Callable[[Build], Build]:
    """Register the real build of the recipes' model `model`, whose table has this `target`."""

    def register(build: Build) -> Build:
        REAL_BUILDS[model] = (target, build)
        return build

    return register


def arguments(table: Mapping[str, Any], target: str) -> dict[str, Any]:
    """An object table's keyword arguments, once it is seen to name `target`."""
    assert table["_target_"] == target
    return {key: value for key, value in table.items() if key != "_target_"}


def llama(config: Mapping[str, Any]) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    settings = arguments(config, "transformers:LlamaConfig")
    model: nn.Module = transformers.LlamaForCausalLM(transformers.LlamaConfig(**settings))
    return model


@real_build("llama_lm", "transformers:LlamaForCausalLM")
def _llama_lm(kwargs: dict[str, Any]) -> nn.Module:
    return llama(kwargs["config"])


@real_build("bert_encoder", "transformers:BertModel")
def _bert(kwargs: dict[str, Any]) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    settings = arguments(kwargs["config"], "transformers:BertConfig")
    model: nn.Module = transformers.BertModel(transformers.BertConfig(**settings))
    return model


@real_build("llama_lora", "peft:get_peft_model")
def _lora(kwargs: dict[str, Any]) -> nn.Module:
    peft = pytest.importorskip("peft")
    base = arguments(kwargs["model"], "transformers:LlamaForCausalLM")
    lora = arguments(kwargs["peft_config"], "peft:LoraConfig")
    model: nn.Module = peft.get_peft_model(llama(base["config"]), peft.LoraConfig(**lora))
    return model


@real_build("convnext_atto", "timm:create_model")
def _timm(kwargs: dict[str, Any]) -> nn.Module:
    timm = pytest.importorskip("timm")
    model: nn.Module = timm.create_model(**kwargs)
    return model


@real_build("mobilenet_v3_small", "torchvision.models:get_model")
def _torchvision(kwargs: dict[str, Any]) -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    model: nn.Module = torchvision.models.get_model(**kwargs)
    return model


@real_build("unet", "diffusers:UNet2DConditionModel")
def _unet(kwargs: dict[str, Any]) -> nn.Module:
    diffusers = pytest.importorskip("diffusers")
    model: nn.Module = diffusers.UNet2DConditionModel(**kwargs)
    return model


@real_build("yolo11n", "ultralytics.nn.tasks:DetectionModel")
def _yolo(kwargs: dict[str, Any]) -> nn.Module:
    tasks = pytest.importorskip("ultralytics.nn.tasks")
    model: nn.Module = tasks.DetectionModel(**kwargs)
    return model


@real_build("hydra_cnn", "torch.nn:Sequential")
def _hydra_cnn(kwargs: dict[str, Any]) -> nn.Module:
    from torch import nn

    layers = []
    for table in kwargs["_args_"]:
        module, _, name = table["_target_"].rpartition(".")
        assert module == "torch.nn"
        layers.append(getattr(nn, name)(**arguments(table, table["_target_"])))
    return nn.Sequential(*layers)


def counts(model: nn.Module) -> dict[str, int]:
    """What the gate reports, as `numel()` sums: parameters() yields a tied weight once."""
    params = list(model.parameters())
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "buffers": sum(b.numel() for b in model.buffers()),
    }


# -- the tests ------------------------------------------------------------------------------------


def test_every_library_has_a_recipe_and_every_recipe_a_real_build() -> None:
    _, blocks = recipe_blocks()
    assert len(blocks) >= len(LIBRARIES), (
        f"docs/recipes.md's '# {SECTION}' has {len(blocks)} TOML blocks, fewer than the "
        f"{len(LIBRARIES)} libraries it covers: {', '.join(LIBRARIES)}"
    )
    models: dict[str, dict[str, Any]] = {}
    for block in blocks:
        tables = models_of(block)
        assert not tables.keys() & models.keys(), f"docs/recipes.md:{block.line}: a model key twice"
        models.update(tables)
    packages = {table["target"].partition(":")[0].partition(".")[0] for table in models.values()}
    assert set(LIBRARIES) <= packages
    assert {name: table["target"] for name, table in models.items()} == {
        name: target for name, (target, _) in REAL_BUILDS.items()
    }


@pytest.mark.slow
# peft's get_peft_model asks transformers 5 a question it has renamed; a build here sees the
# deprecation as an error (filterwarnings = error), the gate session shows it as a warning.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_every_recipe_passes_and_counts_what_a_real_build_counts(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for library in LIBRARIES:
        pytest.importorskip(library)
    # Counting needs no weights: a model that tried to download should fail, not wait.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    # ultralytics writes its settings file on first import: here, not in the user's home.
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(pytester.path / "ultralytics-settings"))
    # The session needs this plugin alone; the others installed here (hypothesis's takes seconds
    # to load) are left out.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    text, blocks = recipe_blocks()
    models = {name: table for block in blocks for name, table in models_of(block).items()}
    pyproject = "\n".join(["[tool.cnnbudget]", "snapshot = false", *(b.text for b in blocks)])
    (pytester.path / "pyproject.toml").write_text(pyproject, encoding="utf-8")

    result = pytester.runpytest_subprocess(
        "-p",
        "pytest_cnnbudget.plugin",
        "--cnn-budget",
        "--cnn-budget-json=budget.json",
        "--cnn-budget-github=off",  # not the job summary of the CI run this runs in
        "-p",
        "no:cacheprovider",
        timeout=300,
    )
    written = pytester.path / "budget.json"
    assert written.exists(), "\n".join(result.outlines + result.errlines)
    report = json.loads(written.read_text(encoding="utf-8"))["models"]
    outcomes = {name: entry["outcome"] for name, entry in report.items()}
    assert outcomes == dict.fromkeys(models, "passed"), "\n".join(result.outlines)
    result.assert_outcomes(passed=len(models))

    built = {name: REAL_BUILDS[name][1](table.get("kwargs", {})) for name, table in models.items()}
    real = {name: counts(model) for name, model in built.items()}
    gate = {
        name: {
            "total": totals["params"],
            "trainable": totals["trainable"],
            "buffers": totals["buffers"],
        }
        for name in models
        for totals in [report[name]["measurement"]["totals"]]
    }
    assert gate == real
    # PEFT's own count of what trains agrees, and the recipes page says what both count.
    lora: Any = built["llama_lora"]
    trainable, total = lora.get_nb_trainable_parameters()
    assert (trainable, total) == (gate["llama_lora"]["trainable"], gate["llama_lora"]["total"])
    assert gate["llama_lora"]["trainable"] < gate["llama_lora"]["total"]
    stated = {name: f"{figures['total']:,}" for name, figures in gate.items()}
    stated["llama_lora trainable"] = f"{trainable:,}"
    assert {name: figure for name, figure in stated.items() if figure not in text} == {}
