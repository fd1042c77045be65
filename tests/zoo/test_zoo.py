"""The zoo tier: real models through the gate, each checked against a real build.

Every torchvision classifier, one model of each of 60 timm families, 48 small transformers
architectures and 21 ultralytics models of six tasks run through `pytest --cnn-budget` on meta,
a few real sessions with many models each (zoo.py, beside this file, writes their tables). Each
model is then one test here, which reads its counts from the session's `--cnn-budget-json`
report and asserts:

- the rows add up to the total and to the trainable count;
- the total, trainable and buffer counts equal a real cpu build's (`numel()` sums), for models
  small enough to build quickly (and every ultralytics model); larger ones are built on meta
  here too;
- that build, counted here, has the gate's rows, and every row's formula equals its `numel()`.

A session is shared by all of its models' tests, also across xdist workers: the first worker
that needs it runs it, under a file lock, and the others read its report (see `GateRuns`).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import zoo

# Importing project loads torch first: in-process pytester runs restore sys.modules, and torch
# cannot be imported twice in one process.
from project import toml_text

from pytest_cnnbudget.engine.counting import ModelLike
from pytest_cnnbudget.engine.loading import build_model
from pytest_cnnbudget.results import ParameterCount

if TYPE_CHECKING:
    from torch import nn

CountChecked = Callable[[ModelLike], ParameterCount]

# Models with fewer parameters are also built for real, on cpu, to compare totals with.
CPU_BUILD_LIMIT = 30_000_000

LIBRARIES: dict[str, list[zoo.ZooModel]] = {
    "torchvision": zoo.torchvision_models(),
    "timm": zoo.timm_models(),
    "transformers": zoo.transformers_models(),
    "ultralytics": zoo.ultralytics_models(),
}

# Models per gate session: fewer sessions start fewer interpreters (importing transformers
# alone takes seconds), more let xdist workers run them side by side.
SESSION_SIZE = {"torchvision": 40, "timm": 30, "transformers": 50, "ultralytics": 11}

# Failures the gate has today, each with its cause. Strict: once fixed, the test fails until
# its entry here is removed.
KNOWN_FAILURES: dict[str, dict[str, str]] = {}  # {"timm": {"pit_ti_224": "why"}}

ZOO_SOURCE = Path(zoo.__file__).read_text(encoding="utf-8")

# The session that checks each model: consecutive models of a library, SESSION_SIZE at a time.
SESSION_OF = {
    (library, model.key): f"{library}-{i // SESSION_SIZE[library]}"
    for library, models in LIBRARIES.items()
    for i, model in enumerate(models)
}


# ultralytics writes its settings file where YOLO_CONFIG_DIR says (else in the user's home) on
# first import, and checks for a network unless offline.
ULTRALYTICS_ENV = {
    "YOLO_OFFLINE": "1",
    "YOLO_CONFIG_DIR": os.environ.get("YOLO_CONFIG_DIR")
    or str(Path(tempfile.gettempdir(), "cnnbudget-tests-ultralytics")),
}


@pytest.fixture(scope="module", autouse=True)
def _ultralytics_settings() -> Iterator[None]:
    """The same for this process, where the real builds import ultralytics."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ULTRALYTICS_ENV.items():
            patch.setenv(key, value)
        yield


def _gate_env() -> dict[str, str]:
    """This process's environment without what would change the inner session's behaviour:
    pytest's and xdist's variables, GitHub Actions' (annotations, the job summary file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GITHUB_"))}
    # Counting needs no weights; a model that tried to download should fail, not wait.
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **ULTRALYTICS_ENV)
    return env


class GateRuns:
    """Each session's report, run once for all xdist workers.

    `sessions` holds each session's selected models. Sessions run in folders under `root`,
    which every worker shares; a session's lock file makes one worker run it and the others
    wait for its report. A worker that would wait runs a session nobody has started instead,
    so both workers stay busy.
    """

    def __init__(self, root: Path, sessions: dict[str, list[zoo.ZooModel]]) -> None:
        self.root = root
        self.sessions = sessions
        self.reports: dict[str, dict[str, Any]] = {}

    def report(self, name: str) -> dict[str, Any]:
        """The `--cnn-budget-json` report of session `name` (and its output, under "output")."""
        while name not in self.reports and not self._take(name, block=False):
            others = (n for n in self.sessions if n != name and n not in self.reports)
            if not any(self._take(other, block=False) for other in others):
                self._take(name, block=True)
        return self.reports[name]

    def _take(self, name: str, block: bool) -> bool:
        """Load session `name`'s report, running the session first if no worker has; False
        when another worker holds it and `block` is false."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            except BlockingIOError:
                return False
            done = folder / "done.json"
            if not done.exists():
                report = run_gate(folder, self.sessions[name])
                done.write_text(json.dumps(report), encoding="utf-8")
            self.reports[name] = json.loads(done.read_text(encoding="utf-8"))
        return True


def run_gate(folder: Path, models: list[zoo.ZooModel]) -> dict[str, Any]:
    """Run `pytest --cnn-budget` on a project configuring `models`."""
    (folder / "zoo.py").write_text(ZOO_SOURCE, encoding="utf-8")
    pyproject = toml_text({m.key: m.table() for m in models}, top={"snapshot": False})
    (folder / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    args = ["--cnn-budget", "--cnn-budget-json=report.json", "--cnn-budget-github=off"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:xdist", "-p", "no:cacheprovider"],
        cwd=folder,
        env=_gate_env(),
        capture_output=True,
        text=True,
        timeout=600,  # only so that a hang fails instead of stalling the run
        check=False,
    )
    output = done.stdout + done.stderr
    # 1: some models failed, which their own tests report.
    if done.returncode not in (0, 1) or not (folder / "report.json").exists():
        return {"models": {}, "output": output}
    report: dict[str, Any] = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    report["output"] = output
    return report


@pytest.fixture(scope="session")
def gate_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> GateRuns:
    """The sessions' reports; under xdist, shared by all workers of this run."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker's basetemp is a folder of the run's
    # Only the models selected (-k, node ids), which every worker of a run agrees on.
    sessions: dict[str, list[zoo.ZooModel]] = {}
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        model = params.get("model")
        if isinstance(model, zoo.ZooModel):
            sessions.setdefault(SESSION_OF[params["library"], model.key], []).append(model)
    return GateRuns(root / "zoo", sessions)


def test_the_zoo_has_every_torchvision_classifier() -> None:
    import torchvision.models

    # An older release (scripts/check-torch) lists fewer; their tests skip what it lacks.
    missing = set(torchvision.models.list_models(module=torchvision.models))
    missing -= set(zoo.TORCHVISION_CLASSIFIERS)
    assert not missing, (
        f"the installed torchvision lists classifiers the zoo lacks: {sorted(missing)}; "
        "copy its list into TORCHVISION_CLASSIFIERS in tests/zoo/zoo.py"
    )


def _params() -> list[Any]:
    params = []
    for library, models in LIBRARIES.items():
        known = KNOWN_FAILURES.get(library, {})
        for model in models:
            reason = known.get(model.key)
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            params.append(pytest.param(library, model, id=f"{library}-{model.key}", marks=marks))
    return params


@pytest.mark.parametrize(("library", "model"), _params())
def test_counts_through_the_gate_match_a_real_build(
    library: str, model: zoo.ZooModel, gate_runs: GateRuns, count_checked: CountChecked
) -> None:
    if library == "torchvision":
        import torchvision.models

        if model.key not in torchvision.models.list_models(module=torchvision.models):
            pytest.skip(f"torchvision {torchvision.__version__} has no {model.key}")
    report = gate_runs.report(SESSION_OF[library, model.key])
    entry = report["models"].get(model.key)
    assert entry is not None, f"the gate session reported no {model.key}:\n{report['output']}"
    assert entry["outcome"] == "passed", entry["error"]
    totals = entry["measurement"]["totals"]
    # The rows that own parameters; a profiled model also lists modules that only compute.
    layers = [row for row in entry["measurement"]["layers"] if row["layers"]]
    assert sum(row["params"] for row in layers) == totals["params"]
    assert sum(row["trainable"] for row in layers) == totals["trainable"]

    small = totals["params"] < CPU_BUILD_LIMIT or library == "ultralytics"  # RT-DETR: 33M
    device = "cpu" if small else "meta"
    count = count_checked(build_model(model.target, model.kwargs, device=device))
    assert (count.total, count.trainable, count.buffers) == (
        totals["params"],
        totals["trainable"],
        totals["buffers"],
    )
    here = [(r.name, r.type, r.params, r.trainable, r.formula) for r in count.parameter_rows]
    gate = [(r["name"], r["type"], r["params"], r["trainable"], r["formula"]) for r in layers]
    assert here == gate


# -- ultralytics' FLOPs ---------------------------------------------------------------------------


# One model of each kind that counts differently: plain (v8), re-parameterized branches (v9),
# end-to-end heads (v10, 26), each other task, and RT-DETR. The counts of all are checked above;
# these build, profile and fuse twice more.
FLOPS_CHECKED = (
    "yolov8n",
    "yolov9t",
    "yolov10n",
    "yolo11n-seg",
    "yolo26n-pose",
    "yolov8n-obb",
    "yolo11n-cls",
    "rtdetr-l",
)


def _ultralytics_params() -> list[Any]:
    models = {model.key: model for model in LIBRARIES["ultralytics"]}
    return [
        pytest.param("ultralytics", models[key], id=f"ultralytics-{key}") for key in FLOPS_CHECKED
    ]


def _pooled(model: nn.Module, shape: list[int]) -> int:
    """What thop counts for the model's average pools at this input: one add per pooled input,
    one divide per output (global pools only, which is what ultralytics' classifiers have)."""
    import torch

    counted = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        assert module.output_size in (1, (1, 1))
        counted.append(args[0].numel() + output.numel())

    pools = [m for m in model.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
    handles = [m.register_forward_hook(hook) for m in pools]
    with torch.no_grad():
        model.eval()(torch.zeros(shape))
    for handle in handles:
        handle.remove()
    return sum(counted)


@pytest.mark.parametrize(("library", "model"), _ultralytics_params())
def test_flops_are_ultralytics_get_flops_less_batchnorm_and_equal_on_the_fused_model(
    library: str, model: zoo.ZooModel, gate_runs: GateRuns
) -> None:
    """The gate counts no BatchNorm (torchvision's convention); ultralytics' `get_flops` (thop)
    counts it at 4 operations per element, 8 FLOPs, and a global average pool at one add per
    input and one divide per output. Once `fuse()` has folded each BatchNorm into its
    convolution the two agree: on the fused model, as ultralytics reports a trained one."""
    from ultralytics.nn.modules import RepConv, RepVGGDW
    from ultralytics.utils import torch_utils

    get_flops: Callable[[nn.Module, int], float] = torch_utils.get_flops

    from pytest_cnnbudget import measure, parse_input_shape

    entry = gate_runs.report(SESSION_OF[library, model.key])["models"][model.key]
    assert entry["outcome"] == "passed", entry["error"]
    gate = entry["measurement"]["compute"]["flops"]
    assert model.input_shape is not None
    size = model.input_shape[-1]
    normalized = sum(
        math.prod(row["output_shape"])
        for row in entry["measurement"]["layers"]
        if row["type"].startswith("BatchNorm") and row["output_shape"] is not None  # ran
    )
    task = zoo.ultralytics_task(model.key)
    real: Any = build_model(model.target, model.kwargs, device="cpu")  # a BaseModel: fuse()
    pooled = _pooled(real, model.input_shape) if task == "classify" else 0
    # RT-DETR: thop also counts LayerNorm and softmax, and attention by its own formula.
    rel = 1e-3 if task == "rtdetr" else 1e-9
    assert get_flops(real, size) * 1e9 == pytest.approx(gate + 8 * normalized + 2 * pooled, rel)
    # fuse() also merges re-parameterized branches into one convolution and drops the
    # one-to-many head an end-to-end model trains with: then the model computes less.
    merges = any(isinstance(m, RepConv | RepVGGDW) for m in real.modules())
    merges |= getattr(real.model[-1], "one2one_cv2", None) is not None

    # The fused model, built by a factory that fuses, on meta as the gate builds it.
    task_class = model.target.rpartition(":")[2]
    factory = {"task_class": task_class, "cfg": model.kwargs["cfg"]}
    on_meta = measure(
        build_model(zoo.ultralytics_fused, factory), parse_input_shape(model.input_shape)
    )
    fused = on_meta.compute
    assert fused is not None
    real.fuse(verbose=False)
    assert on_meta.total == sum(p.numel() for p in real.parameters())
    assert get_flops(real, size) * 1e9 == pytest.approx(fused.flops + 2 * pooled, rel)
    assert fused.flops < gate if merges else fused.flops == gate


def test_the_yolo_wrapper_counts_the_model_of_its_task(
    count_checked: CountChecked,
) -> None:
    """docs/recipes.md: `ultralytics:YOLO` with a yaml counts what the task's class does."""
    wrapper = count_checked(build_model("ultralytics:YOLO", {"model": "yolo11n.yaml"}))
    kwargs = {"cfg": "yolo11n.yaml", "verbose": False}
    real = count_checked(build_model("ultralytics.nn.tasks:DetectionModel", kwargs, device="cpu"))
    assert (wrapper.total, wrapper.trainable, wrapper.buffers) == (
        real.total,
        real.trainable,
        real.buffers,
    )
