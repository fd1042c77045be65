"""The budget gate end to end: real pytest sessions in temporary projects, real torch."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# In-process pytester runs restore sys.modules afterwards; torch is a C extension that cannot be
# imported twice in one process, so it must be loaded before the first run.
import torch  # noqa: F401
from gate_project import CIFAR, TINY, failure_section, make_project

USAGE_ERROR = pytest.ExitCode.USAGE_ERROR


def snapshot_of(pytester: pytest.Pytester) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        (pytester.path / "cnnbudget.snapshot.json").read_text(encoding="utf-8")
    )
    return data


def accepted(pytester: pytest.Pytester, *args: str) -> None:
    """Record the current state of the selected models in the snapshot."""
    pytester.runpytest("--cnn-budget-update", *args).assert_outcomes(passed=len(_models(pytester)))


def _models(pytester: pytest.Pytester) -> list[str]:
    from pytest_cnnbudget.config import tomllib  # type: ignore[attr-defined]

    text = (pytester.path / "pyproject.toml").read_text(encoding="utf-8")
    return list(tomllib.loads(text)["tool"]["cnnbudget"]["models"])


def set_model_kwargs(pytester: pytest.Pytester, model: str, kwargs: str) -> None:
    path = pytester.path / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    header = f"[tool.cnnbudget.models.{model}]\n"
    path.write_text(text.replace(header, f"{header}kwargs = {kwargs}\n"), encoding="utf-8")


# -- items, markers, selection ------------------------------------------------------------


def test_one_item_per_model_with_marker_and_node_id(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest("--cnn-budget-update", "--collect-only", "-q")
    assert "pyproject.toml::cnn_budget[cifar]" in result.outlines
    assert "pyproject.toml::cnn_budget[tiny]" in result.outlines
    only_budget = pytester.runpytest("--cnn-budget-update", "-m", "cnn_budget")
    only_budget.assert_outcomes(passed=2, deselected=1)
    no_budget = pytester.runpytest("--cnn-budget", "-m", "not cnn_budget")
    no_budget.assert_outcomes(passed=1, deselected=2)


def test_node_id_selects_one_model(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY)
    result = pytester.runpytest("--cnn-budget-update", "pyproject.toml::cnn_budget[tiny]")
    result.assert_outcomes(passed=1)
    assert list(snapshot_of(pytester)["models"]) == ["tiny"]  # type: ignore[call-overload]


def test_without_the_flag_nothing_is_collected_and_torch_is_not_imported(
    pytester: pytest.Pytester,
) -> None:
    make_project(pytester, CIFAR)
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_torch_not_imported():
            assert "torch" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "cnn-budget" not in result.stdout.str()


CYCLIC = """
import weakref

import pytest
from torch import nn

BUILT = weakref.WeakSet()


class Cyclic(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1000, 1000)
        self.me = [self]  # a reference cycle: only the cycle collector can free this model
        BUILT.add(self)


class Skipping(Cyclic):
    def __init__(self):
        super().__init__()
        pytest.skip("weights not available")  # its traceback holds the model's frame
"""


@pytest.mark.parametrize("user_disabled_gc", [False, True])
def test_torch_is_frozen_out_of_later_collections_and_models_are_not(
    pytester: pytest.Pytester, user_disabled_gc: bool
) -> None:
    shaped = CIFAR.replace('"600k"', '"600k"\ninput_shape = [1, 3, 32, 32]')
    cyclic = """
        [tool.cnnbudget.models.{name}]
        target = "cyclic:{cls}"
        max_params = "2M"
        device = "cpu"
        """
    make_project(
        pytester,
        cyclic.format(name="a_skipping", cls="Skipping"),
        cyclic.format(name="b_cyclic", cls="Cyclic"),
        shaped,
        top="snapshot = false\n",
    )
    pytester.makepyfile(cyclic=CYCLIC)
    pytester.makeconftest(
        f"""
        import gc

        if {user_disabled_gc}:
            gc.disable()

        def pytest_sessionfinish():
            import cyclic

            enabled = gc.isenabled()
            gc.collect()
            print("\\nfrozen", gc.get_freeze_count(), "enabled", enabled, "alive", len(cyclic.BUILT))
        """
    )
    result = pytester.runpytest_subprocess("--cnn-budget", "-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, skipped=1)
    [line] = [line for line in result.outlines if line.startswith("frozen ")]
    _, frozen, _, enabled, _, alive = line.split()
    # The models checked are garbage afterwards, and still collectable: never frozen.
    assert alive == "0"
    assert enabled == str(not user_disabled_gc)
    if user_disabled_gc:
        assert frozen == "0"
    else:
        # torch and torch._dynamo (for the forward pass) make several hundred thousand objects.
        assert int(frozen) > 100_000


def test_a_broken_torch_fails_the_items_not_the_run(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, top="snapshot = false\n")
    pytester.makeconftest('import sys\n\nsys.modules["torch"] = None  # as if torch were broken\n')
    result = pytester.runpytest_subprocess("--cnn-budget", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ModuleNotFoundError: import of torch halted*"])
    result.stdout.fnmatch_lines(["FAILED *cnn_budget[[]cifar[]] - ModuleNotFoundError: import of*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_in_process_runs_thaw_what_earlier_runs_froze(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, top="snapshot = false\n")
    script = """
        import gc, sys, weakref
        import pytest

        configs = weakref.WeakSet()

        class Grab:
            def pytest_configure(self, config):
                configs.add(config)

        for run in range(3):
            pytest.main(["--cnn-budget", "-q", "-p", "no:cacheprovider"], plugins=[Grab()])
            print("after run", run, "frozen", gc.get_freeze_count())
        gc.collect()
        print("configs", len(configs))
        """
    pytester.makepyfile(run_three=script)
    done = pytester.run(sys.executable, "run_three.py")
    assert done.ret == 0, done.stderr.str()
    frozen = [int(line.split()[-1]) for line in done.outlines if line.startswith("after run")]
    # The first run imports torch and freezes it with its session; the second thaws that, and
    # freezes nothing new (torch and the model are imported already).
    assert frozen[0] > 100_000
    assert frozen[1:] == [0, 0]
    assert done.outlines[-1] == "configs 1"


def test_reportinfo_names_model_and_target(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR)
    result = pytester.runpytest("--cnn-budget")
    result.stdout.fnmatch_lines(["*_ cnn_budget[[]cifar] nets:Cifar _*"])


# -- passing run and summary --------------------------------------------------------------


def test_passing_run_prints_summary(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY)
    accepted(pytester)
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*= cnn-budget =*",
            "model*trainable*budget*used*snapshot*status",
            "cifar*545,098*600,000*90.8%*ok*ok",
            "tiny*72*1,000*7.2%*ok*ok",
        ]
    )


def test_long_summary_lists_failures_and_counts_the_rest(pytester: pytest.Pytester) -> None:
    tables = [TINY.replace("tiny", f"tiny{i:02d}") for i in range(60)]
    # Two of sixty over budget: 72 parameters against 50.
    tables[17] = tables[17].replace("max_params = 1000", "max_params = 50")
    tables[42] = tables[42].replace("max_params = 1000", "max_params = 50")
    make_project(pytester, *tables, top="snapshot = false\n")
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(passed=58, failed=2)
    start = next(i for i, line in enumerate(result.outlines) if "= cnn-budget =" in line)
    summary = result.outlines[start:]
    rows = [line for line in summary if line.startswith("tiny")]
    assert [row.split()[0] for row in rows] == ["tiny17", "tiny42"]
    assert "… and 58 more (58 passed in all); -v lists every model" in summary
    verbose = pytester.runpytest("--cnn-budget", "-v")
    assert sum(1 for line in verbose.outlines if re.match(r"tiny\d\d +72 ", line)) == 60


def test_verbose_prints_per_layer_tables(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR)
    accepted(pytester)
    result = pytester.runpytest("--cnn-budget", "-v")
    result.stdout.fnmatch_lines(
        [
            "cifar (nets:Cifar)",
            "layer*type*formula*params*cumulative*share",
            "conv1*Conv2d*3×3×3/1×32 + 32*896*896*0.2%",
            "fc1*Linear*4096×128 + 128*524,416*543,808*96.2%",
            "total 545,098 · trainable 545,098 · frozen 0 · buffers 0",
        ]
    )


# -- budget failures ----------------------------------------------------------------------


def test_over_budget_fails_with_table(
    pytester: pytest.Pytester, expected: Callable[[str, str], None]
) -> None:
    make_project(pytester, CIFAR.replace('"600k"', '"500k"'))
    result = pytester.runpytest("--cnn-budget", "--cnn-budget-update")
    result.assert_outcomes(failed=1)
    section = failure_section(result.outlines, "cifar")
    expected("over_budget.txt", "\n".join(section) + "\n")
    assert "Traceback" not in result.stdout.str()
    # The snapshot only holds accepted states: an over-budget model is not written.
    assert not (pytester.path / "cnnbudget.snapshot.json").exists()
    result.stdout.fnmatch_lines(["*NOT updated cifar: it is over budget*"])


def fine_tuned_project(pytester: pytest.Pytester, layers: str, budgets: str) -> None:
    """Model `ft`: `nn.Sequential(<layers>)` with its first layer frozen, under `budgets`."""
    pytester.makepyfile(
        frozen=f"""
        from torch import nn

        def make():
            m = nn.Sequential({layers})
            m[0].requires_grad_(False)
            return m
        """
    )
    pytester.makefile(
        ".toml",
        pyproject=(
            "[tool.cnnbudget]\nsnapshot = false\n"
            f'[tool.cnnbudget.models.ft]\ntarget = "frozen:make"\n{budgets}'
        ),
    )


def test_total_budget_counts_frozen_parameters(pytester: pytest.Pytester) -> None:
    fine_tuned_project(
        pytester,
        "nn.Linear(100, 100), nn.Linear(100, 2)",
        "max_params = 300\nmax_total_params = 10_000\n",
    )
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "ft: total parameters over budget by 302 (+3.0%)",
            "*total parameters*10,302",
            "*max_total_params (budget)*10,000",
            "*Shrink the model, or raise max_total_params under [[]tool.cnnbudget.models.ft[]]*",
        ]
    )
    assert "trainable parameters over budget" not in result.stdout.str()
    # The summary shows the trainable count; the budget says what it counts.
    result.stdout.fnmatch_lines(["ft *202  10,000 total  103.0%*FAILED (over budget)"])


def test_trainable_budget_lists_the_largest_trainable_layers(pytester: pytest.Pytester) -> None:
    fine_tuned_project(
        pytester, "nn.Linear(100, 100), nn.Linear(100, 20), nn.Linear(20, 2)", "max_params = 2000\n"
    )
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1)
    # The frozen 10,100-parameter layer is the largest, but not what broke a trainable budget.
    result.stdout.fnmatch_lines(["ft: trainable parameters over budget by 62 (+3.1%)"])
    result.stdout.fnmatch_lines(
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


def test_warn_level_reports_without_failing(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR.replace('"600k"', '"500k"\nlevel = "warn"'))
    result = pytester.runpytest("--cnn-budget-update")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "cifar*545,098*500,000*109.0%*added*WARN (over budget)",
            '*cnn-budget warnings (level = "warn")*',
            "cifar: trainable parameters over budget by 45,098 (+9.0%)",
        ]
    )
    # Advisory budgets do not block the snapshot.
    assert "cifar" in snapshot_of(pytester)["models"]  # type: ignore[operator]


# -- snapshot -----------------------------------------------------------------------------


def test_layout_change_fails_with_diff_table(
    pytester: pytest.Pytester, expected: Callable[[str, str], None]
) -> None:
    make_project(pytester, CIFAR, TINY)
    accepted(pytester)
    set_model_kwargs(pytester, "cifar", "{ hidden = 256 }")
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1, passed=1)
    expected("layout_changed.txt", "\n".join(failure_section(result.outlines, "cifar")) + "\n")
    result.stdout.fnmatch_lines(["cifar*changed*FAILED*", "tiny*ok*ok"])
    assert "Traceback" not in result.stdout.str()


def test_added_and_removed_layers_in_diff(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        grow="""
        from torch import nn

        def make(extra=False, drop=False):
            layers = [nn.Linear(4, 4)] if not drop else [nn.Identity()]
            layers.append(nn.Linear(4, 2))
            if extra:
                layers.append(nn.Linear(2, 3))
            return nn.Sequential(*layers)
        """
    )
    pytester.makefile(
        ".toml",
        pyproject="""
        [tool.cnnbudget]
        [tool.cnnbudget.models.g]
        target = "grow:make"
        max_params = 1000
        """,
    )
    accepted(pytester)
    set_model_kwargs(pytester, "g", "{ extra = true, drop = true }")
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "g: parameter layout differs from the snapshot in cnnbudget.snapshot.json",
            "*layer*type*snapshot*now*delta*formula (now)",
            "*2*Linear*-*9*+9*2×3 + 3",
            "*0*Linear*20*-*-20*(removed)",
            "*total*30*19*-11",
            "If this change is intended, accept it with: pytest --cnn-budget-update",
        ]
    )


def test_freezing_a_layer_is_a_snapshot_change(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        fz="""
        from torch import nn

        def make(freeze=False):
            m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
            m[0].requires_grad_(not freeze)
            return m
        """
    )
    pytester.makefile(
        ".toml",
        pyproject='[tool.cnnbudget.models.f]\ntarget = "fz:make"\nmax_params = 100\n',
    )
    accepted(pytester)
    set_model_kwargs(pytester, "f", "{ freeze = true }")
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*total*30*30*0", "*trainable*30*10*-20", "*frozen*0*20*+20"])


def test_missing_entry_fails_with_hint(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR)
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "cifar: no snapshot entry in cnnbudget.snapshot.json",
            "Record it with: pytest --cnn-budget-update",
        ]
    )
    assert not (pytester.path / "cnnbudget.snapshot.json").exists()


def test_plain_run_never_writes_the_snapshot(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR)
    accepted(pytester)
    before = (pytester.path / "cnnbudget.snapshot.json").read_bytes()
    set_model_kwargs(pytester, "cifar", "{ hidden = 64 }")
    pytester.runpytest("--cnn-budget").assert_outcomes(failed=1)
    assert (pytester.path / "cnnbudget.snapshot.json").read_bytes() == before


def test_update_reports_changes_and_rewrites(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY)
    accepted(pytester)
    set_model_kwargs(pytester, "cifar", "{ hidden = 64 }")
    result = pytester.runpytest("--cnn-budget-update")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["cnnbudget.snapshot.json: updated cifar (fc1 -262,208, fc2 -640)", "cifar*updated*ok"]
    )
    pytester.runpytest("--cnn-budget").assert_outcomes(passed=2)


def test_snapshot_file_format(pytester: pytest.Pytester) -> None:
    make_project(pytester, TINY)
    accepted(pytester)
    text = (pytester.path / "cnnbudget.snapshot.json").read_text(encoding="utf-8")
    assert text == (
        "{\n"
        '  "models": {\n'
        '    "tiny": {\n'
        '      "buffers": 0,\n'
        '      "frozen": 0,\n'
        '      "layers": [\n'
        "        {\n"
        '          "formula": "8×8 + 8",\n'
        '          "name": "fc",\n'
        '          "params": 72,\n'
        '          "type": "Linear"\n'
        "        }\n"
        "      ],\n"
        '      "total": 72,\n'
        '      "trainable": 72\n'
        "    }\n"
        "  },\n"
        '  "version": 1\n'
        "}\n"
    )


def test_partial_update_leaves_unselected_entries(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY)
    accepted(pytester)
    tiny_before = snapshot_of(pytester)["models"]["tiny"]  # type: ignore[index]
    set_model_kwargs(pytester, "cifar", "{ hidden = 64 }")
    set_model_kwargs(pytester, "tiny", "{ width = 4 }")
    pytester.runpytest("--cnn-budget-update", "-k", "cifar").assert_outcomes(passed=1)
    models = snapshot_of(pytester)["models"]
    assert models["tiny"] == tiny_before  # type: ignore[index]
    assert models["cifar"]["total"] == 545_098 - 262_208 - 640  # type: ignore[index]


def test_stale_entries_listed_and_removed_only_by_full_update(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY)
    accepted(pytester)
    make_project(pytester, CIFAR)  # tiny is no longer configured
    plain = pytester.runpytest("--cnn-budget")
    plain.assert_outcomes(passed=1)
    plain.stdout.fnmatch_lines(["stale snapshot entries (no longer configured): tiny;*"])
    partial = pytester.runpytest("--cnn-budget-update", "-k", "nothing_matches")
    partial.stdout.fnmatch_lines(["stale snapshot entries*tiny*"])
    assert "tiny" in snapshot_of(pytester)["models"]  # type: ignore[operator]
    full = pytester.runpytest("--cnn-budget-update")
    full.stdout.fnmatch_lines(["cnnbudget.snapshot.json: removed stale tiny"])
    assert list(snapshot_of(pytester)["models"]) == ["cifar"]  # type: ignore[call-overload]


def test_snapshot_false_checks_budgets_only(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, top="snapshot = false\n")
    result = pytester.runpytest("--cnn-budget-update")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["cifar*545,098*600,000*90.8%*off*ok"])
    assert not (pytester.path / "cnnbudget.snapshot.json").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            '{\n<<<<<<< HEAD\n  "version": 1\n=======\n  "version": 1\n>>>>>>> main\n}\n',
            "line 2 has a git merge conflict marker",
        ),
        ('{"version": 2, "models": {}}\n', "written by a newer pytest-cnnbudget"),
        ('{"version": 1, "models": {', "not valid JSON"),
        ('{"version": 1, "models": {"cifar": {"total": 1}}}', "malformed entry"),
    ],
)
def test_unreadable_snapshot_is_a_usage_error_and_never_overwritten(
    pytester: pytest.Pytester, content: str, reason: str
) -> None:
    make_project(pytester, CIFAR)
    path = pytester.path / "cnnbudget.snapshot.json"
    path.write_text(content, encoding="utf-8")
    for flag in ("--cnn-budget", "--cnn-budget-update"):
        result = pytester.runpytest(flag)
        assert result.ret == USAGE_ERROR
        result.stderr.fnmatch_lines([f"*{path}*{reason}*"])
        assert "Traceback" not in result.stderr.str()
        assert path.read_text(encoding="utf-8") == content


def test_interrupted_write_leaves_the_old_snapshot(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY)
    accepted(pytester)
    path = pytester.path / "cnnbudget.snapshot.json"
    before = path.read_bytes()
    set_model_kwargs(pytester, "cifar", "{ hidden = 64 }")
    # Ctrl-C after the new bytes are written, before they replace the file; a separate process
    # because the interrupt ends the whole pytest run.
    pytester.makeconftest(
        """
        import os

        def interrupted(fd):
            raise KeyboardInterrupt

        os.fsync = interrupted
        """
    )
    result = pytester.runpytest_subprocess("--cnn-budget-update")
    assert result.ret != pytest.ExitCode.OK
    assert "KeyboardInterrupt" in result.stderr.str()
    assert path.read_bytes() == before
    assert sorted(p.name for p in pytester.path.iterdir() if "snapshot" in p.name) == [path.name]


# -- broken models ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "cause"),
    [
        ("missing_pkg.nets:Net", "cannot import module 'missing_pkg.nets'*No module named*"),
        ("nets:Nope", "module 'nets' has no attribute 'Nope'*"),
        ("nets:exploding", "*ValueError: constructor exploded: width must be even"),
        ("nets:not_a_module", "nets:not_a_module returned a int, not a torch.nn.Module"),
    ],
)
def test_broken_model_fails_alone_with_its_cause(
    pytester: pytest.Pytester, target: str, cause: str
) -> None:
    broken = f'[tool.cnnbudget.models.broken]\ntarget = "{target}"\nmax_params = 10\n'
    make_project(pytester, CIFAR, broken)
    accepted_cifar = pytester.runpytest("--cnn-budget-update")
    accepted_cifar.assert_outcomes(passed=1, failed=1)
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"broken: could not build {target}", f"*{cause}"])
    result.stdout.fnmatch_lines(["broken*-*-*-*-*ERROR", "cifar*545,098*ok*ok"])
    assert "broken" not in snapshot_of(pytester)["models"]  # type: ignore[operator]


def test_constructor_error_shows_where_it_was_raised(pytester: pytest.Pytester) -> None:
    make_project(pytester, '[tool.cnnbudget.models.b]\ntarget = "nets:exploding"\nmax_params = 1\n')
    result = pytester.runpytest("--cnn-budget")
    result.stdout.fnmatch_lines(
        ["*raised at (innermost last):", '*nets.py", line *, in exploding', "*raise ValueError*"]
    )


# -- configuration errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pyproject", "messages"),
    [
        (
            '[tool.cnnbudget.models.cifar]\ntarget = "nets:Cifar"\nmax_param = 5\n',
            [
                "*pyproject.toml: invalid [[]tool.cnnbudget[]] configuration",
                "*[[]tool.cnnbudget.models.cifar[]] max_param: unknown key (did you mean 'max_params'?)",
                "*[[]tool.cnnbudget.models.cifar[]] max_params: missing; every model needs a budget",
            ],
        ),
        (
            '[tool.cnnbudget.models.cifar]\ntarget = 5\nmax_params = "lots"\n',
            [
                "*[[]tool.cnnbudget.models.cifar[]] target: expected a string, got int 5",
                "*[[]tool.cnnbudget.models.cifar[]] max_params: cannot parse 'lots'; write it like*",
            ],
        ),
        (
            '[tool.cnnbudget.models.cifar]\ntarget = "nets:Cifar"\nmax_params = -5\n',
            ["*[[]tool.cnnbudget.models.cifar[]] max_params: -5 must be positive"],
        ),
        (
            '[tool.cnnbudget.models.cifar]\ntarget = "nets:Cifar"\nmax_params = 5\n'
            'kwargs = [1]\nlevel = "fatal"\n',
            [
                "*cifar[]] kwargs: expected a table of keyword arguments, got list",
                "*cifar[]] level: expected one of 'error', 'warn', got 'fatal'",
            ],
        ),
        (
            '[tool.cnnbudget]\nsnapshots = "x.json"\ndevice = "cuda"\n'
            '[tool.cnnbudget.models.m]\ntarget = "nets"\nmax_params = "1.5M"\n',
            [
                "*[[]tool.cnnbudget[]] snapshots: unknown key (did you mean 'snapshot'?)",
                "*[[]tool.cnnbudget[]] device: expected one of 'meta', 'cpu', got 'cuda'",
                "*models.m[]] target: 'nets' is not of the form 'package.module:ClassOrFactory'",
            ],
        ),
        (
            "[tool.cnnbudget]\nsnapshot = false\n",
            [
                "*[[]tool.cnnbudget[]]: no models configured; add a [[]tool.cnnbudget.models.<name>[]]*"
            ],
        ),
        ("[tool.other]\nx = 1\n", ["*pyproject.toml: no [[]tool.cnnbudget[]] table*"]),
    ],
)
def test_configuration_errors_are_usage_errors(
    pytester: pytest.Pytester, pyproject: str, messages: list[str]
) -> None:
    pytester.makepyfile(nets="raise AssertionError('no model may be imported')")
    pytester.makefile(".toml", pyproject=pyproject)
    result = pytester.runpytest("--cnn-budget")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(messages, consecutive=False)
    assert f"{pytester.path / 'pyproject.toml'}" in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_malformed_toml_is_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "budgets.toml").write_text("[tool.cnnbudget\nx = 1\n", encoding="utf-8")
    result = pytester.runpytest("--cnn-budget", "--cnn-budget-config", "budgets.toml")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: {pytester.path / 'budgets.toml'}: malformed TOML: Expected ']'*(at line 1*"]
    )
    assert "Traceback" not in result.stderr.str()


def test_no_configuration_file_says_where_it_looked(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest("--cnn-budget")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*no configuration file at {pytester.path / 'pyproject.toml'} (pytest's rootdir)*"]
    )


def test_config_option_points_elsewhere(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(nets="from torch import nn\n\ndef make():\n    return nn.Linear(2, 2)\n")
    budgets = pytester.mkdir("ci") / "budgets.toml"
    budgets.write_text(
        '[tool.cnnbudget]\nsnapshot = "snap.json"\n'
        '[tool.cnnbudget.models.lin]\ntarget = "nets:make"\nmax_params = 6\n',
        encoding="utf-8",
    )
    result = pytester.runpytest("--cnn-budget-update", "--cnn-budget-config", "ci/budgets.toml")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "ci" / "snap.json").exists()
    collected = pytester.runpytest(
        "--cnn-budget", "--cnn-budget-config", str(budgets), "--collect-only", "-q"
    )
    assert "ci/budgets.toml::cnn_budget[lin]" in collected.outlines


def test_example_project_passes(pytester: pytest.Pytester) -> None:
    example = Path(__file__).parent.parent / "example_project"
    for path in [example / "pyproject.toml", example / "cnnbudget.snapshot.json"]:
        (pytester.path / path.name).write_bytes(path.read_bytes())
    pytester.syspathinsert(example)
    result = pytester.runpytest("--cnn-budget", "-m", "cnn_budget", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["cifar_net*545,098*600,000*90.8%*ok*ok"])


# -- shapes, compute and charts in the gate -----------------------------------------------


def test_input_shape_adds_shapes_and_macs_and_a_macs_budget(pytester: pytest.Pytester) -> None:
    make_project(
        pytester,
        CIFAR.replace('"600k"', '"600k"\ninput_shape = [1, 3, 32, 32]\nmax_macs = "6M"'),
    )
    result = pytester.runpytest("--cnn-budget-update", "-v")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "cifar: multiply-adds (MACs) over budget by 128,896 (+2.1%)",
            "*conv1*Conv2d*3×3×3/1×32 + 32*896*1×32×32×32*884,736",
            "*fc1*Linear*4096×128 + 128*524,416*1×128*524,288",
            "total 545,098 · trainable 545,098 · frozen 0 · buffers 0 · MACs 6,128,896 · "
            "FLOPs 12,257,792 at 1×3×32×32 (1 MAC = 2 FLOPs)",
        ]
    )
    set_model_kwargs(pytester, "cifar", "{}")
    text = (pytester.path / "pyproject.toml").read_text(encoding="utf-8")
    (pytester.path / "pyproject.toml").write_text(text.replace('"6M"', '"7M"'), encoding="utf-8")
    pytester.runpytest("--cnn-budget-update").assert_outcomes(passed=1)
    entry = snapshot_of(pytester)["models"]["cifar"]  # type: ignore[index]
    assert (entry["macs"], entry["flops"], entry["input_shape"]) == (
        6_128_896,
        12_257_792,
        "1×3×32×32",
    )
    assert entry["layers"][2]["output_shape"] == [1, 128]


def test_wrong_fc_width_names_the_layer_and_the_arithmetic(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR.replace('"600k"', '"600k"\ninput_shape = [1, 3, 64, 64]'))
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "cifar: could not run forward nets:Cifar",
            "*fc1 (Linear) expects 4096 input features = 64·8·8 but receives 16384 = 64·16·16*",
            "*conv1: ⌊(64 + 2·1 − 1·(3−1) − 1)/1⌋ + 1 = 64",
        ]
    )


def test_macs_budget_needs_an_input_shape(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR.replace('"600k"', '"600k"\nmax_macs = "1M"'))
    result = pytester.runpytest("--cnn-budget")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(["*cifar[]] max_macs: needs input_shape*"])


def test_param_bytes_budget(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR.replace('"600k"', '"600k"\nmax_param_bytes = "2MB"'))
    result = pytester.runpytest("--cnn-budget", "--cnn-budget-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["cifar: parameter bytes over budget by 180,392 (+9.0%)"])


def test_plot_option_writes_charts(pytester: pytest.Pytester) -> None:
    make_project(pytester, CIFAR, TINY, top="snapshot = false\n")
    pytester.runpytest("--cnn-budget", "--cnn-budget-plot", "charts").assert_outcomes(passed=2)
    written = sorted(p.name for p in (pytester.path / "charts").iterdir())
    assert written == ["cifar.png", "cifar.svg", "tiny.png", "tiny.svg"]
    assert (pytester.path / "charts" / "cifar.png").stat().st_size > 1000
