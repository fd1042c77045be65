"""The pytest projects the benchmarks run: which models they configure, and their files."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import BENCH_DIR, REPO, Job, Runner, Sample, child_argv, log, pytest_argv

# Where models.py finds them too; `published` imports no torch, which this process must not.
_TESTS = str(REPO / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# When mypy checks tests/ and benchmarks/ together it finds the module; alone it does not.
from published import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    LLAMA2_70B_PARAMS,
    PUBLISHED_PARAMS,
)

# Published counts by factory of benchmarks/models.py.
PUBLISHED: dict[str, int] = {**PUBLISHED_PARAMS, "llama2_70b": LLAMA2_70B_PARAMS}

# Input width of each reference model's classifier, to derive the count at any num_classes
# from the published one at 1000 classes: the head holds in*classes + classes parameters.
HEAD_IN_FEATURES = {
    "resnet18": 512,
    "resnet50": 2048,
    "vgg16": 4096,
    "mobilenet_v2": 1280,
    "efficientnet_b0": 1280,
    "convnext_tiny": 768,
    "vit_b_16": 768,
}
# 20 ImageNet-scale configurations: every reference architecture, several head sizes.
GATE_CONFIGS: tuple[tuple[str, int], ...] = (
    ("resnet18", 1000),
    ("resnet18", 10),
    ("resnet18", 100),
    ("resnet50", 1000),
    ("resnet50", 10),
    ("resnet50", 21843),
    ("vgg16", 1000),
    ("vgg16", 10),
    ("mobilenet_v2", 1000),
    ("mobilenet_v2", 10),
    ("mobilenet_v2", 100),
    ("efficientnet_b0", 1000),
    ("efficientnet_b0", 10),
    ("convnext_tiny", 1000),
    ("convnext_tiny", 10),
    ("convnext_tiny", 100),
    ("vit_b_16", 1000),
    ("vit_b_16", 10),
    ("vit_b_16", 100),
    ("vit_b_16", 21843),
)

# A benchmark project imports its models through this shim, so that the configured targets
# read like a user's ("bench_models:resnet18") while the code stays in benchmarks/models.py.
SHIM = """\
import sys

sys.path.insert(0, {bench_dir!r})
from models import *  # noqa: F403
"""

FLOOR_TEST = """\
import json
from pathlib import Path


def test_floor():
    # What the gate does, minus the gate: import torch, build on meta, sum numel().
    import torch

    import bench_models

    specs = json.loads(Path(__file__).with_name("models.json").read_text())
    total = 0
    with torch.device("meta"):
        for spec in specs:
            model = getattr(bench_models, spec["factory"])(**spec["kwargs"])
            total += sum(p.numel() for p in model.parameters())
    assert total == sum(spec["params"] for spec in specs)
"""


# The timm sample leaves out the largest variants by name: a size word, or a parameter count in
# billions (`aimv2_3b_…`, `vit_7b_…`). The rule reads names only, so the sample is the same on any
# machine and needs no model built to be drawn.
TIMM_EXCLUDE = r"giant|gigantic|huge|enormous|xxlarge|xxl|so400m|(?:^|_)\d+(?:p\d+)?b(?:_|$)"
# No budget fails: the run measures what checking costs, not a verdict.
TIMM_BUDGET = 10**15

TIMM_FLOOR_TEST = """\
import json
from pathlib import Path


def test_floor():
    # What the gate does, minus the gate: import torch and timm, build on meta, sum numel().
    import timm
    import torch

    here = Path(__file__).parent
    counts = {}
    for name in json.loads((here / "timm_models.json").read_text()):
        try:
            with torch.device("meta"):
                model = timm.create_model(name, pretrained=False)
            counts[name] = sum(p.numel() for p in model.parameters())
            del model
        except Exception as e:  # a model that does not build on meta: an error, as in the gate
            counts[name] = f"{type(e).__name__}: {e}"[:300]
    (here / "floor_counts.json").write_text(json.dumps(counts, indent=1))
"""

# One package's model: nets.Tiny of the tests, in a module of the package's own name.
PACKAGE_NETS = """\
from torch import nn


class Tiny(nn.Module):
    \"\"\"One Linear: width² + width parameters.\"\"\"

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
"""


@dataclass(frozen=True)
class ModelConf:
    """One configured model of a benchmark project."""

    name: str
    factory: str  # a function of benchmarks/models.py
    kwargs: dict[str, int] = field(default_factory=dict)
    params: int | None = None  # the exact published count, when there is one
    budget: int = 10**12

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "factory": self.factory,
            "kwargs": self.kwargs,
            "params": self.params,
        }


def gate_models(quick: bool) -> list[ModelConf]:
    """The 20 ImageNet-scale configurations (in quick mode, one per architecture)."""
    models = []
    for factory, classes in GATE_CONFIGS:
        if quick and classes != 1000:
            continue
        params = PUBLISHED[factory] + (classes - 1000) * (HEAD_IN_FEATURES[factory] + 1)
        # The budget is the exact count, so a miscount in either direction shows: over fails
        # the budget, under fails the floor's assertion and the peers' checks.
        models.append(
            ModelConf(f"{factory}_c{classes}", factory, {"num_classes": classes}, params, params)
        )
    return models


def llama_model(label: str, factory: str) -> ModelConf:
    """A LLaMA shape (`label` "7B" or "70B"), its budget its exact published count."""
    params = PUBLISHED[factory]
    return ModelConf(f"llama_{label}", factory, {}, params, params)


def tiny_models(n: int) -> list[ModelConf]:
    """`n` small conv nets, no two configured alike."""
    return [
        ModelConf(
            f"tiny_{i:03d}",
            "tiny_net",
            {"width": 8 + i % 24, "depth": 1 + i % 3, "num_classes": 10 + i},
            budget=1_000_000,
        )
        for i in range(n)
    ]


def pyproject_text(models: Sequence[ModelConf], snapshot: bool) -> str:
    """A pyproject.toml that makes its folder pytest's rootdir and configures `models`."""
    lines = [
        "[tool.pytest.ini_options]",
        "",
        "[tool.cnnbudget]",
        "snapshot = " + ('"cnnbudget.snapshot.json"' if snapshot else "false"),
        "",
    ]
    for m in models:
        lines += [f"[tool.cnnbudget.models.{m.name}]", f'target = "bench_models:{m.factory}"']
        if m.kwargs:
            lines.append(
                "kwargs = { " + ", ".join(f"{k} = {v}" for k, v in m.kwargs.items()) + " }"
            )
        lines += [f"max_params = {m.budget}", ""]
    return "\n".join(lines)


def timm_pyproject_text(names: Sequence[str], snapshot: bool) -> str:
    """A pyproject.toml configuring each timm model by name, built by `timm.create_model`."""
    lines = [
        "[tool.pytest.ini_options]",
        "",
        "[tool.cnnbudget]",
        "snapshot = " + ('"cnnbudget.snapshot.json"' if snapshot else "false"),
        "",
    ]
    for name in names:
        lines += [
            f"[tool.cnnbudget.models.{name}]",
            'target = "timm:create_model"',
            f'kwargs = {{ model_name = "{name}", pretrained = false }}',
            f"max_total_params = {TIMM_BUDGET}",
            "",
        ]
    return "\n".join(lines)


def package_model(i: int) -> str:
    """The `[tool.cnnbudget.models.<name>]` table of package `i`'s one model."""
    return (
        f"[tool.cnnbudget.models.pkg{i:02d}_tiny]\n"
        f'target = "pkg{i:02d}_nets:Tiny"\n'
        f"kwargs = {{ width = {8 + i} }}\n"
        "max_params = 1000000\n"
    )


class Projects:
    """Benchmark projects in a scratch folder, each created (and its snapshot written) once."""

    def __init__(self, root: Path, runner: Runner) -> None:
        self.root = root
        self.runner = runner
        self.made: dict[str, Path] = {}

    def gate(self, name: str, models: Sequence[ModelConf]) -> Path:
        """A project configuring `models`, with its snapshot already accepted."""
        if name in self.made:
            return self.made[name]
        folder = self.root / name
        folder.mkdir()
        (folder / "bench_models.py").write_text(SHIM.format(bench_dir=str(BENCH_DIR)))
        (folder / "pyproject.toml").write_text(pyproject_text(models, snapshot=True))
        (folder / "nosnap.toml").write_text(pyproject_text(models, snapshot=False))
        (folder / "models.json").write_text(json.dumps([m.as_json() for m in models], indent=1))
        (folder / "test_floor.py").write_text(FLOOR_TEST)
        log(f"  set-up   {name}: writing the snapshot of {len(models)} models")
        self.runner.once(
            Job(
                f"{name} snapshot",
                pytest_argv("--cnn-budget-update", "pyproject.toml"),
                folder,
                expect=(f"{len(models)} passed",),
            )
        )
        self.made[name] = folder
        return folder

    def timm_models(self, n: int) -> tuple[list[str], dict[str, float]] | None:
        """`n` timm model names, drawn by TIMM_EXCLUDE's rule, and how many timm lists and the
        rule keeps; None where timm does not import. (This process never imports torch, so a
        child draws them.)"""
        out = self.root / f"timm_{n}.json"
        drawn = self.runner.once(
            Job(
                "timm model names",
                child_argv("timm-models", str(n), TIMM_EXCLUDE, str(out)),
                self.root,
            )
        )
        if not drawn.inside.get("timm"):
            return None
        names: list[str] = json.loads(out.read_text(encoding="utf-8"))
        return names, drawn.inside

    def timm(self, name: str, names: Sequence[str]) -> tuple[Path, Sample]:
        """A project configuring the timm models `names`, and its set-up run, which accepted the
        snapshot of every model that built (the others fail in it, as in every run)."""
        folder = self.root / name
        folder.mkdir()
        (folder / "pyproject.toml").write_text(timm_pyproject_text(names, snapshot=True))
        (folder / "nosnap.toml").write_text(timm_pyproject_text(names, snapshot=False))
        (folder / "timm_models.json").write_text(json.dumps(list(names), indent=1))
        (folder / "test_floor.py").write_text(TIMM_FLOOR_TEST)
        log(f"  set-up   {name}: writing the snapshot of {len(names)} timm models")
        setup = self.runner.once(
            Job(
                f"{name} snapshot",
                pytest_argv("-p", "no:cacheprovider", "--cnn-budget-update", "pyproject.toml"),
                folder,
                exit_codes=(0, 1),  # 1: some models do not build on meta
            )
        )
        return folder, setup

    def packages(self, n: int, split: bool) -> Path:
        """`n` one-model packages, each with its module: budgeted in a pyproject.toml of each
        package (`split`), or all in the root's. Snapshots accepted."""
        name = f"packages_{n}_{'split' if split else 'one'}"
        if name in self.made:
            return self.made[name]
        folder = self.root / name
        folder.mkdir()
        root = ["[tool.pytest.ini_options]", ""]
        if not split:
            root += ["[tool.cnnbudget]", ""]
        for i in range(n):
            table = package_model(i)
            where = folder
            if split:
                where = folder / "packages" / f"pkg{i:02d}"
                where.mkdir(parents=True)
                (where / "pyproject.toml").write_text(
                    f'[project]\nname = "pkg{i:02d}"\n\n[tool.cnnbudget]\n\n{table}'
                )
            else:
                root.append(table)
            (where / f"pkg{i:02d}_nets.py").write_text(PACKAGE_NETS)
        (folder / "pyproject.toml").write_text("\n".join(root))
        log(f"  set-up   {name}: writing the snapshots of {n} models")
        self.runner.once(
            Job(
                f"{name} snapshot",
                pytest_argv("-p", "no:cacheprovider", "--cnn-budget-update"),
                folder,
                expect=(f"{n} passed",),
            )
        )
        self.made[name] = folder
        return folder

    def trivial_suite(self, n: int) -> Path:
        """`n` trivial tests, one of which asserts that torch has not been imported."""
        folder = self.root / "overhead"
        if folder.exists():
            return folder
        folder.mkdir()
        (folder / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
        per_file = 20
        for f in range(n // per_file):
            lines = ["import sys", ""]
            for t in range(per_file):
                if f == 0 and t == 0:
                    lines += [
                        "",
                        "def test_torch_not_imported():",
                        "    assert 'torch' not in sys.modules, 'torch imported without the flag'",
                        "",
                    ]
                else:
                    lines += ["", f"def test_{f:02d}_{t:02d}():", f"    assert {t} + {f} >= 0", ""]
            (folder / f"test_gen_{f:02d}.py").write_text("\n".join(lines))
        return folder
