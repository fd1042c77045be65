"""One model's check, called directly: `gate.check_model` and `compare.diff_entries`, no session.

Each test states a model's configuration as `[tool.cnnbudget.models.<name>]` would, checks it
against a stored entry (or none), and reads the result and what the terminal would print of it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NoReturn

import nets
import pytest
from project import CIFAR

from pytest_cnnbudget.config.budgets import KEYS, KINDS, MEMORY_KEYS
from pytest_cnnbudget.config.settings import parse_settings
from pytest_cnnbudget.config.spec import ModelSpec, Order
from pytest_cnnbudget.errors import (
    CountError,
    MemoryTraceError,
    ModelBuildError,
    ShapeMismatchError,
)
from pytest_cnnbudget.report.terminal import failure_lines, format_table, overview_lines
from pytest_cnnbudget.results import (
    LayerChange,
    ModelResult,
    Outcome,
    SnapshotEntry,
    SnapshotLayer,
    SnapshotStatus,
    SourceLocation,
    TotalChange,
)
from pytest_cnnbudget.run import gate
from pytest_cnnbudget.run.gate import check_model
from pytest_cnnbudget.snapshot.compare import diff_entries

CONFIG = Path("pyproject.toml")
SNAPSHOT = "cnnbudget.snapshot.json"
NETS = Path(nets.__file__)
SHAPE = [1, 3, 32, 32]


def spec(name: str = "cifar", **table: Any) -> ModelSpec:
    """The model `name` as `[tool.cnnbudget.models.<name>]` with `table` configures it."""
    return parse_settings({"models": {name: table}}, CONFIG).models[0]


def check(
    model: ModelSpec,
    stored: SnapshotEntry | None = None,
    *,
    snapshot: bool = True,
    update: bool = False,
) -> ModelResult:
    """`model`'s check against `stored`, in a plain run unless `update`."""
    return check_model(Order(model, stored, snapshot_enabled=snapshot, update=update))


def accepted(model: ModelSpec) -> SnapshotEntry:
    """The entry `--cnn-budget-update` would write for `model` as it is now."""
    entry = check(model, update=True).entry
    assert entry is not None
    return entry


def printed(result: ModelResult) -> list[str]:
    """What a failing item prints for `result`."""
    return failure_lines(result, CONFIG.name, SNAPSHOT)


def summary_row(result: ModelResult) -> list[str]:
    """The columns of the result's line in the cnn-budget summary table."""
    return re.split(r"\s{2,}", overview_lines([result], [])[2].strip())


def nets_line(text: str) -> SourceLocation:
    """Where `text` first stands in nets.py."""
    lines = NETS.read_text(encoding="utf-8").splitlines()
    return SourceLocation(str(NETS), next(i for i, line in enumerate(lines, 1) if text in line))


# -- a model within its budgets -----------------------------------------------------------


def test_a_model_within_budget_that_matches_its_entry_passes() -> None:
    cifar = spec(**CIFAR)
    result = check(cifar, accepted(cifar))
    assert (result.outcome, result.snapshot) == (Outcome.PASSED, SnapshotStatus.MATCH)
    assert result.count is not None
    assert result.count.total == result.count.trainable == nets.CIFAR_PARAMS
    assert [(b.key, b.actual, b.limit, b.over) for b in result.budgets] == [
        ("max_params", nets.CIFAR_PARAMS, 600_000, False)
    ]
    assert (result.diff, result.error, result.source) == (None, None, None)
    assert printed(result) == []
    assert summary_row(result) == ["cifar", "545,098 trainable", "600,000", "90.8%", "ok", "ok"]


# -- budgets ------------------------------------------------------------------------------

# Each budget kind on a model whose figure is known without the package: target, input shape,
# figure.
FIGURES: dict[str, tuple[str, list[int] | None, int]] = {
    "max_params": ("nets:Cifar", None, nets.CIFAR_PARAMS),
    "max_total_params": ("nets:fine_tuned", None, (100 * 100 + 100) + (100 * 2 + 2)),
    "max_macs": ("nets:Cifar", SHAPE, nets.CIFAR_MACS),
    "max_flops": ("nets:Cifar", SHAPE, 2 * nets.CIFAR_MACS),
    "max_param_bytes": ("nets:Cifar", None, 4 * nets.CIFAR_PARAMS),  # float32
    # BatchNorm2d(16): running mean and variance (float32), and an int64 batch counter.
    "max_buffers": ("nets:Normed", None, 2 * 16 + 1),
    "max_buffer_bytes": ("nets:Normed", None, 2 * 16 * 4 + 8),
    # One AdamW step of Dense at 16 × 1000: the weight W (4 MB), AdamW's two states (8 MB) and
    # the batch (64 kB) are live throughout; backward adds W's gradient (4 MB); the step's
    # `exp_avg_sq.sqrt() / bias_correction` holds two W-sized temporaries at once (8 MB).
    "max_train_memory": ("nets:Dense", [16, 1000], 24_000_000 + 64_000),
    # Inference: W, the batch and the output.
    "max_inference_memory": ("nets:Dense", [16, 1000], 4_000_000 + 2 * 64_000),
}


def test_every_budget_kind_has_a_figure_to_check() -> None:
    assert sorted(FIGURES) == sorted(KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_each_budget_kind_passes_at_its_limit_and_fails_one_above(key: str) -> None:
    target, shape, figure = FIGURES[key]
    table: dict[str, Any] = {"target": target, **({"input_shape": shape} if shape else {})}
    at_limit = check(spec("m", **table, **{key: figure}), snapshot=False)
    assert at_limit.outcome is Outcome.PASSED
    assert [(b.key, b.actual, b.over) for b in at_limit.budgets] == [(key, figure, False)]

    over = check(spec("m", **table, **{key: figure - 1}), snapshot=False)
    assert over.outcome is Outcome.FAILED
    assert [(b.key, b.excess) for b in over.exceeded] == [(key, 1)]
    lines = printed(over)
    assert lines[0].startswith(f"m: {KINDS[key].label} over budget by 1 (+")
    assert any(line.split()[:2] == [key, "(budget)"] for line in lines)
    shrink = f"Shrink the model, or raise {key} under [tool.cnnbudget.models.m] in pyproject.toml."
    if key in MEMORY_KEYS:  # then where a figure to raise it to comes from
        assert lines[-2:] == [shrink, "cnnbudget summary m --memory prints budget lines to paste."]
    else:
        assert lines[-1] == shrink


def test_over_budget_names_the_largest_layers_and_points_at_the_largest() -> None:
    result = check(spec(**{**CIFAR, "max_params": "500k"}))
    assert (result.outcome, result.snapshot) == (Outcome.FAILED, SnapshotStatus.MISSING)
    pytest.LineMatcher(printed(result)).fnmatch_lines(
        [
            "cifar: trainable parameters over budget by 45,098 (+9.0%)",
            "largest layers:",
            "*fc1*Linear*4096×128 + 128*524,416*96.2%",
        ]
    )
    assert result.source == nets_line("self.fc1 = ")


def test_total_budget_counts_frozen_parameters() -> None:
    # Linear(100, 100) frozen, Linear(100, 2) trainable: 10,100 + 202 parameters.
    ft = spec("ft", target="nets:fine_tuned", max_params=300, max_total_params=10_000)
    result = check(ft, snapshot=False)
    assert result.outcome is Outcome.FAILED
    assert [(b.key, b.actual, b.over) for b in result.budgets] == [
        ("max_params", 202, False),
        ("max_total_params", 10_302, True),
    ]
    lines = printed(result)
    pytest.LineMatcher(lines).fnmatch_lines(
        [
            "ft: total parameters over budget by 302 (+3.0%)",
            "*total parameters*10,302",
            "*max_total_params (budget)*10,000",
            "Shrink the model, or raise max_total_params under [[]tool.cnnbudget.models.ft[]]*",
        ]
    )
    assert not any("trainable parameters over budget" in line for line in lines)
    # The summary shows the figure the budget compares, named: the total, not the trainable.
    assert summary_row(result) == [
        "ft",
        "10,302 total",
        "10,000",
        "103.0%",
        "off",
        "FAILED (over budget)",
    ]


def test_trainable_budget_lists_the_largest_trainable_layers() -> None:
    ft = spec("ft", target="nets:fine_tuned", kwargs={"widths": [100, 100, 20, 2]}, max_params=2000)
    result = check(ft, snapshot=False)
    # The frozen 10,100-parameter layer is the largest, but not what broke a trainable budget.
    lines = printed(result)
    assert lines[0] == "ft: trainable parameters over budget by 62 (+3.1%)"
    pytest.LineMatcher(lines).fnmatch_lines(
        [
            "largest trainable layers:",
            "  layer  type    formula      trainable  share",
            "  -----  ------  -----------  ---------  -----",
            "  1      Linear  100×20 + 20      2,020  98.0%",
            "  2      Linear  20×2 + 2            42   2.0%",
            "Shrink the model, or raise max_params under [[]tool.cnnbudget.models.ft[]]*",
        ],
        consecutive=True,
    )


def test_warn_level_warns_and_its_update_is_still_written() -> None:
    warned = spec(**{**CIFAR, "max_params": "500k", "level": "warn"})
    result = check(warned, update=True)
    # Advisory budgets do not block the snapshot.
    assert (result.outcome, result.snapshot) == (Outcome.WARNED, SnapshotStatus.ADDED)
    assert result.entry is not None
    assert result.entry.total == nets.CIFAR_PARAMS
    assert printed(result)[0] == "cifar: trainable parameters over budget by 45,098 (+9.0%)"
    assert summary_row(result)[1:] == [
        "545,098 trainable",
        "500,000",
        "109.0%",
        "added",
        "WARN (over budget)",
    ]
    missing = check(warned)
    assert (missing.outcome, missing.snapshot) == (Outcome.WARNED, SnapshotStatus.MISSING)


# -- the snapshot -------------------------------------------------------------------------


def test_no_entry_fails_with_the_command_that_records_it() -> None:
    result = check(spec(**CIFAR))
    assert (result.outcome, result.snapshot, result.entry) == (
        Outcome.FAILED,
        SnapshotStatus.MISSING,
        None,
    )
    assert printed(result) == [
        "cifar: no snapshot entry in cnnbudget.snapshot.json",
        "Record it with: pytest --cnn-budget-update, then commit cnnbudget.snapshot.json",
    ]


def test_an_update_adds_a_missing_entry() -> None:
    result = check(spec(**CIFAR), update=True)
    assert (result.outcome, result.snapshot) == (Outcome.PASSED, SnapshotStatus.ADDED)
    assert result.count is not None
    assert result.entry == SnapshotEntry.from_count(result.count)
    assert result.entry.total == nets.CIFAR_PARAMS


def test_a_changed_layout_fails_with_its_diff_and_an_update_accepts_it() -> None:
    before = accepted(spec(**CIFAR))
    smaller = spec(**CIFAR, kwargs={"hidden": 64})
    result = check(smaller, before)
    assert (result.outcome, result.snapshot, result.entry) == (
        Outcome.FAILED,
        SnapshotStatus.CHANGED,
        None,
    )
    assert result.diff is not None
    # fc1 4096×64 + 64, fc2 64×10 + 10.
    assert [(c.name, c.before, c.after) for c in result.diff.layers] == [
        ("fc1", 524_416, 262_208),
        ("fc2", 1_290, 650),
    ]
    pytest.LineMatcher(printed(result)).fnmatch_lines(
        [
            "cifar: parameter layout differs from the snapshot in cnnbudget.snapshot.json",
            "*fc1*Linear*524,416*262,208*-262,208*4096×64 + 64",
            "  total 545,098 → 282,250 (-262,848) · trainable 545,098 → 282,250 (-262,848)",
            "If this change is intended, accept it with: pytest --cnn-budget-update",
        ]
    )
    assert result.source == nets_line("self.fc1 = ")  # the layer that changed most

    updated = check(smaller, before, update=True)
    assert (updated.outcome, updated.snapshot) == (Outcome.PASSED, SnapshotStatus.UPDATED)
    assert updated.entry == accepted(smaller) != before
    assert check(smaller, updated.entry).snapshot is SnapshotStatus.MATCH


def test_an_update_rejects_a_model_over_budget() -> None:
    over = spec(**{**CIFAR, "max_params": "500k"})
    for stored in (None, accepted(spec(**CIFAR, kwargs={"hidden": 64}))):
        result = check(over, stored, update=True)
        # The snapshot only ever holds accepted states; an over-budget model is not one.
        assert (result.outcome, result.snapshot, result.entry) == (
            Outcome.FAILED,
            SnapshotStatus.REJECTED,
            None,
        )
    changed = check(spec(**CIFAR, kwargs={"hidden": 256}), accepted(spec(**CIFAR)))
    # Over budget and changed: the fix says to raise the budget before accepting.
    assert printed(changed)[-1] == (
        "If this change is intended, raise max_params first, then accept it with: "
        "pytest --cnn-budget-update"
    )


def test_snapshot_off_checks_budgets_only() -> None:
    stored = accepted(spec(**CIFAR, kwargs={"hidden": 64}))
    for update in (False, True):
        result = check(spec(**CIFAR), stored, snapshot=False, update=update)
        assert (result.outcome, result.snapshot) == (Outcome.PASSED, SnapshotStatus.OFF)
        assert (result.diff, result.entry) == (None, None)
    assert summary_row(result)[-2:] == ["off", "ok"]


def test_added_and_removed_layers_in_the_diff() -> None:
    before = accepted(spec("g", target="nets:growing", max_params=1000))
    # Linear(4, 4) becomes an Identity and a Linear(2, 3) is appended; Linear(4, 2) stays.
    grown = spec("g", target="nets:growing", kwargs={"extra": True, "drop": True}, max_params=1000)
    result = check(grown, before)
    assert result.diff is not None
    assert result.diff.layers == (
        LayerChange("2", "Linear", None, 9, "2×3 + 3"),
        LayerChange("0", "Linear", 20, None, "4×4 + 4"),
    )
    pytest.LineMatcher(printed(result)).fnmatch_lines(
        [
            "g: parameter layout differs from the snapshot in cnnbudget.snapshot.json",
            "*layer*type*snapshot*now*delta*formula (now)",
            "*2*Linear*-*9*+9*2×3 + 3",
            "*0*Linear*20*-*-20*(removed)",
            "  total 30 → 19 (-11) · trainable 30 → 19 (-11)",
            "If this change is intended, accept it with: pytest --cnn-budget-update",
        ]
    )


def test_freezing_a_layer_is_a_snapshot_change() -> None:
    def fine_tuned(frozen: int) -> ModelSpec:
        kwargs = {"widths": [4, 4, 2], "frozen": frozen}
        return spec("f", target="nets:fine_tuned", kwargs=kwargs, max_params=100)

    result = check(fine_tuned(frozen=1), accepted(fine_tuned(frozen=0)))
    assert result.snapshot is SnapshotStatus.CHANGED
    assert result.diff is not None
    assert result.diff.layers == ()  # the same layers, only their trainability differs
    assert result.diff.totals == (
        TotalChange("total", 30, 30),
        TotalChange("trainable", 30, 10),
        TotalChange("frozen", 0, 20),
    )
    pytest.LineMatcher(printed(result)).fnmatch_lines(
        ["  total 30 → 30 (0) · trainable 30 → 10 (-20) · frozen 0 → 20 (+20)"]
    )


def entry(*layers: tuple[str, int], macs: int | None = None, buffers: int = 0) -> SnapshotEntry:
    rows = tuple(SnapshotLayer(name, "Linear", params, f"{params}") for name, params in layers)
    total = sum(params for _, params in layers)
    return SnapshotEntry(total, total, 0, buffers, rows, macs=macs)


def test_diff_entries_lists_changes_in_module_order_then_removals() -> None:
    before = entry(("a", 1), ("b", 2), ("c", 3), macs=10)
    after = entry(("new", 5), ("b", 4), ("a", 1), buffers=7)
    assert diff_entries(before, after).layers == (
        LayerChange("new", "Linear", None, 5, "5"),
        LayerChange("b", "Linear", 2, 4, "4"),
        LayerChange("c", "Linear", 3, None, "3"),
    )
    # The total always; the other figures only when they changed, a missing MAC count as 0.
    assert diff_entries(before, after).totals == (
        TotalChange("total", 6, 10),
        TotalChange("trainable", 6, 10),
        TotalChange("buffers", 0, 7),
        TotalChange("MACs", 10, 0),
    )


def test_diff_entries_sees_a_layer_that_changed_but_kept_its_count() -> None:
    before = entry(("fc", 6))
    retyped = SnapshotEntry(6, 6, 0, 0, (SnapshotLayer("fc", "Bilinear", 6, "6"),))
    assert diff_entries(before, retyped).layers == (LayerChange("fc", "Bilinear", 6, 6, "6"),)
    assert diff_entries(before, before) == diff_entries(retyped, retyped)
    assert diff_entries(before, before).layers == ()


# -- models that cannot be checked --------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "cause", "source"),
    [
        ("missing_pkg.nets:Net", "cannot import module 'missing_pkg.nets'*No module named*", None),
        ("nets:Nope", "module 'nets' has no attribute 'Nope'*", None),
        ("nets:exploding", "*ValueError: constructor exploded: width must be even", "raise "),
        (
            "nets:not_a_module",
            "nets:not_a_module returned a int, not a torch.nn.Module",
            "def not_a",
        ),
        # Counted without the forward pass that would materialize its lazy layers.
        (
            "nets:lazy_net",
            "0.weight is an uninitialized lazy parameter of LazyConv2d;*",
            "def lazy",
        ),
    ],
)
def test_a_broken_model_is_an_error_with_its_cause(
    target: str, cause: str, source: str | None
) -> None:
    broken = spec("broken", target=target, max_params=10)
    result = check(broken, update=True)
    assert (result.outcome, result.snapshot, result.error_stage) == (
        Outcome.ERROR,
        SnapshotStatus.UNKNOWN,
        "build",
    )
    assert (result.count, result.entry, result.budgets) == (None, None, ())
    lines = printed(result)
    assert lines[0] == f"broken: could not build {target}"
    pytest.LineMatcher(lines[1:]).fnmatch_lines([f"  {cause}"])
    assert result.source == (nets_line(source) if source else None)
    row = summary_row(result)
    assert row[:5] == ["broken", "-", "-", "-", "-"]
    # The status says why, in the error's first words.
    assert row[5].startswith("ERROR: could not build (")
    assert row[5].removeprefix("ERROR: could not build (")[:20] in (result.error or "")


def test_a_constructor_error_shows_where_it_was_raised() -> None:
    result = check(spec("b", target="nets:exploding", max_params=1))
    pytest.LineMatcher(printed(result)).fnmatch_lines(
        [
            "  building nets:exploding() raised ValueError: constructor exploded: width must be even",
            "  raised at (innermost last):",
            f'    File "{NETS}", line {nets_line("raise ValueError").line}, in exploding',
            '      raise ValueError("constructor exploded: width must be even")',
        ],
        consecutive=True,
    )


@pytest.mark.parametrize(
    ("error", "reached", "stage"),
    [
        (ShapeMismatchError("fc1"), "check", "forward"),
        (MemoryTraceError("step"), "check", "memory"),
        (CountError("lazy"), "check", "build"),
        (ModelBuildError("import"), "check", "build"),
        (RuntimeError("a bug of ours"), "check", "check"),  # the step the check had reached
        (RuntimeError("a bug of ours"), "build", "build"),
    ],
)
def test_one_rule_names_the_stage_an_error_comes_from(
    error: Exception, reached: str, stage: str
) -> None:
    assert gate.error_stage(error, reached) == stage


@pytest.mark.parametrize(
    ("error", "stage"),
    [
        (ShapeMismatchError("fc1"), "forward"),
        (MemoryTraceError("step"), "memory"),
        (CountError("lazy"), "build"),
        (RuntimeError("a bug of ours"), "build"),
    ],
)
def test_a_configured_and_a_fixture_check_name_the_same_stage(
    monkeypatch: pytest.MonkeyPatch, error: Exception, stage: str
) -> None:
    def measure_folded(*args: object) -> NoReturn:
        raise error

    monkeypatch.setattr(gate, "measure_folded", measure_folded)
    configured = check(spec(**CIFAR))
    built = gate.check_built(Order(spec(**CIFAR), None, snapshot_enabled=True), nets.Cifar())
    assert (configured.error_stage, built.error_stage) == (stage, stage)


# -- input shapes: output shapes and compute ----------------------------------------------


def test_input_shape_adds_shapes_and_macs() -> None:
    result = check(spec(**CIFAR, input_shape=SHAPE, max_macs="6M"), update=True)
    assert (result.outcome, result.snapshot) == (Outcome.FAILED, SnapshotStatus.REJECTED)
    assert printed(result)[0] == "cifar: multiply-adds (MACs) over budget by 128,896 (+2.1%)"
    assert result.count is not None
    assert (result.count.macs, result.count.flops) == (nets.CIFAR_MACS, 2 * nets.CIFAR_MACS)
    rows = {r.name: (r.output_shape, r.macs) for r in result.count.parameter_rows}
    # conv1: 3·3·3 multiply-adds for each of 32×32×32 outputs; fc1: 4096 for each of 128.
    assert rows["conv1"] == ((1, 32, 32, 32), 27 * 32 * 32 * 32)
    assert rows["fc1"] == ((1, 128), 4096 * 128)
    pytest.LineMatcher(format_table(result.count).splitlines()).fnmatch_lines(
        [
            "layer*type*formula*params*cumulative*share*output*MACs",
            "conv1*Conv2d*3×3×3/1×32 + 32*896*1×32×32×32*884,736",
            "fc1*Linear*4096×128 + 128*524,416*1×128*524,288",
            "total 545,098 · trainable 545,098 · frozen 0 · buffers 0 · MACs 6,128,896 · "
            "FLOPs 12,257,792 at 1×3×32×32 (1 MAC = 2 FLOPs)",
        ]
    )

    within = check(spec(**CIFAR, input_shape=SHAPE, max_macs="7M"), update=True)
    assert within.snapshot is SnapshotStatus.ADDED
    assert within.entry is not None
    assert (within.entry.macs, within.entry.flops, within.entry.input_shape) == (
        nets.CIFAR_MACS,
        2 * nets.CIFAR_MACS,
        "1×3×32×32",
    )
    assert [(x.name, x.output_shape) for x in within.entry.layers][2] == ("fc1", (1, 128))


def test_a_new_input_shape_is_a_snapshot_change() -> None:
    stored = accepted(spec(**CIFAR, input_shape=SHAPE))
    result = check(spec(**CIFAR, input_shape=[2, 3, 32, 32]), stored)
    assert result.snapshot is SnapshotStatus.CHANGED
    assert result.diff is not None
    assert TotalChange("MACs", nets.CIFAR_MACS, 2 * nets.CIFAR_MACS) in result.diff.totals


def test_wrong_fc_width_names_the_layer_and_the_arithmetic() -> None:
    result = check(spec(**CIFAR, input_shape=[1, 3, 64, 64]))
    assert (result.outcome, result.error_stage) == (Outcome.ERROR, "forward")
    pytest.LineMatcher(printed(result)).fnmatch_lines(
        [
            "cifar: could not run forward nets:Cifar",
            "*fc1 (Linear) expects 4096 input features = 64·8·8 but receives 16384 = 64·16·16*",
            "*conv1: ⌊(64 + 2·1 − 1·(3−1) − 1)/1⌋ + 1 = 64",
        ]
    )
    assert result.source == nets_line("self.fc1(x)")  # the forward line that called it


def test_a_failure_deep_in_a_library_still_shows_the_projects_line_that_called_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "lib" / "site-packages"
    installed.mkdir(parents=True)
    (installed / "deeplib.py").write_text(
        "def a():\n    return b()\n\ndef b():\n    return c()\n\ndef c():\n    return d()\n\n"
        "def d():\n    return e()\n\ndef e():\n    raise OSError('no route to the hub')\n",
        encoding="utf-8",
    )
    (tmp_path / "own_models.py").write_text(
        "import deeplib\n\ndef net():\n    return deeplib.a()\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = check_model(Order(ModelSpec("net", "own_models:net", budgets={"max_params": 10})))
    assert result.error is not None
    frames = result.error.split("raised at (innermost last):\n", 1)[1].splitlines()
    assert frames[0].endswith('own_models.py", line 4, in net')  # the project's own line
    # Then the library's innermost frames, the rest left out.
    gap = frames.index("  …")
    assert not any("deeplib.py" in line for line in frames[:gap])
    assert frames[-2].endswith('deeplib.py", line 14, in e')
    assert sum("deeplib.py" in line for line in frames) == 3
