"""The plugin in real pytest sessions: items, selection, the summary, what --cnn-budget-update
writes, usage errors, and what only a whole process shows (imports, garbage collection).

What one check decides is tested directly in test_check.py, the merge rule in test_merge.py, the
snapshot file in test_snapshot.py and the configuration in test_config.py; a test here runs a
session only for what a session adds to them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from nets import CIFAR_MACS, CIFAR_PARAMS

# Importing it loads torch, which must happen before the first in-process pytester run.
from project import CIFAR, TINY, Project, failure_section, toml_text

USAGE_ERROR = pytest.ExitCode.USAGE_ERROR
SHAPE = [1, 3, 32, 32]


# -- items, markers, selection ------------------------------------------------------------


def test_one_item_per_model_with_marker_node_id_and_selection(pytester: pytest.Pytester) -> None:
    project = Project(pytester, cifar=CIFAR, tiny=TINY)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    collected = pytester.runpytest("--cnn-budget", "--collect-only", "-q")
    assert collected.outlines[:3] == [
        "pyproject.toml::cnn_budget[cifar]",
        "pyproject.toml::cnn_budget[tiny]",
        "test_plain.py::test_plain",
    ]
    only_budget = pytester.runpytest("--cnn-budget", "--collect-only", "-q", "-m", "cnn_budget")
    only_budget.stdout.fnmatch_lines(["2/3 tests collected (1 deselected)*"])
    no_budget = pytester.runpytest("--cnn-budget", "-m", "not cnn_budget")
    no_budget.assert_outcomes(passed=1, deselected=2)
    # A node id selects one model, and an update records only that one.
    by_id = pytester.runpytest("--cnn-budget-update", "pyproject.toml::cnn_budget[tiny]")
    by_id.assert_outcomes(passed=1)
    assert list(project.stored()["models"]) == ["tiny"]


# -- the process: imports and garbage collection ------------------------------------------


def test_without_the_flag_nothing_is_collected_and_torch_is_not_imported(
    pytester: pytest.Pytester,
) -> None:
    Project(pytester, cifar=CIFAR)
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


@pytest.mark.slow
def test_selecting_the_budget_marker_without_the_flag_says_how_to_run_them(
    pytester: pytest.Pytester,
) -> None:
    Project(pytester, cifar=CIFAR)
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_torch_not_imported():
            assert "torch" not in sys.modules
        """
    )
    hint = (
        "cnn-budget: the budget checks of [tool.cnnbudget] are collected only with "
        "--cnn-budget: run pytest --cnn-budget -m cnn_budget"
    )
    alone = pytester.runpytest_subprocess("-m", "cnn_budget")
    assert alone.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert [line for line in alone.outlines if line.startswith("cnn-budget")] == [hint]
    either = pytester.runpytest_subprocess("-m", "cnn_budget or smoke")
    assert hint in either.outlines
    # An expression that leaves the checks out needs no hint; the plain test runs, torch unimported.
    negated = pytester.runpytest_subprocess("-m", "not cnn_budget")
    negated.assert_outcomes(passed=1)
    assert hint not in negated.outlines
    assert hint not in pytester.runpytest_subprocess("-m", "slow or fast").outlines


def test_plain_pytest_in_a_project_of_models_alone_says_how_to_check_them(
    pytester: pytest.Pytester,
) -> None:
    """The project's only checks are its models: `pytest` alone ran nothing, and says why."""
    Project(pytester, cifar=CIFAR, tiny=TINY)
    line = (
        "cnn-budget: 2 models configured in pyproject.toml are checked with pytest "
        '--cnn-budget; to check them on every run, add addopts = ["--cnn-budget"] under '
        "[tool.pytest.ini_options]"
    )
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert plain.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert [text for text in plain.outlines if text.startswith("cnn-budget")] == [line]
    # Where tests ran, or no model is configured, nothing is added.
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    ran = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    ran.assert_outcomes(passed=1)
    assert "cnn-budget" not in ran.stdout.str()
    (pytester.path / "test_plain.py").unlink()
    pytester.makepyprojecttoml("[tool.cnnbudget]\nsnapshot = false\n")
    assert "cnn-budget" not in pytester.runpytest_subprocess().stdout.str()
    # Following the line's advice makes the checks the default.
    Project(pytester, cifar=CIFAR, tiny=TINY)
    text = (pytester.path / "pyproject.toml").read_text(encoding="utf-8")
    (pytester.path / "pyproject.toml").write_text(
        text + '\n[tool.pytest.ini_options]\naddopts = ["--cnn-budget"]\n', encoding="utf-8"
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(failed=2)
    # Options in pytest.ini win over pyproject.toml's: the advice names that file, and an
    # addopts already there is added to, not written twice.
    pytester.makefile(".ini", pytest="[pytest]\naddopts = -ra\n")
    advice = pytester.runpytest_subprocess("-p", "no:cacheprovider").outlines[-2]
    assert advice.endswith("to check them on every run, add --cnn-budget to addopts in pytest.ini")
    pytester.makefile(".ini", pytest="[pytest]\n")
    advice = pytester.runpytest_subprocess("-p", "no:cacheprovider").outlines[-2]
    assert advice.endswith("add addopts = --cnn-budget under [pytest] in pytest.ini")


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


@pytest.mark.slow
@pytest.mark.parametrize("user_disabled_gc", [False, True])
def test_torch_is_frozen_out_of_later_collections_and_models_are_not(
    pytester: pytest.Pytester, user_disabled_gc: bool
) -> None:
    cyclic = {"max_params": "2M", "device": "cpu"}
    Project(
        pytester,
        top={"snapshot": False},
        a_skipping={"target": "cyclic:Skipping", **cyclic},
        b_cyclic={"target": "cyclic:Cyclic", **cyclic},
        cifar={**CIFAR, "input_shape": SHAPE},
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
    # In pytest's process, where the collector of this test's conftest can see the models.
    args = ("--cnn-budget", "--cnn-budget-isolation=off", "-s", "-p", "no:cacheprovider")
    result = pytester.runpytest_subprocess(*args)
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
    Project(pytester, top={"snapshot": False}, cifar=CIFAR)
    pytester.makeconftest('import sys\n\nsys.modules["torch"] = None  # as if torch were broken\n')
    result = pytester.runpytest_subprocess("--cnn-budget", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ModuleNotFoundError: import of torch halted*"])
    result.stdout.fnmatch_lines(["FAILED *cnn_budget[[]cifar[]] - ModuleNotFoundError: import of*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_checks_see_what_the_tests_before_them_set_up(pytester: pytest.Pytester) -> None:
    # The checking process is forked when the first model's item starts, not earlier: a
    # session fixture of an earlier test still holds when the models are built.
    Project(pytester, top={"snapshot": False}, needs=dict(CIFAR, target="needs:Net"))
    pytester.makepyfile(
        needs="import os\nfrom nets import Cifar\n\n\n"
        "def Net():\n    assert os.environ.get('NEEDED') == '1', 'NEEDED not set'\n"
        "    return Cifar()\n"
    )
    pytester.makeconftest(
        "import os\nimport pytest\n\n\n@pytest.fixture(scope='session', autouse=True)\n"
        "def needed():\n    os.environ['NEEDED'] = '1'\n    yield\n"
    )
    pytester.makepyfile(test_first="def test_first():\n    pass\n")
    args = ("--cnn-budget", "-p", "no:cacheprovider", "test_first.py", "pyproject.toml")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2)


def test_a_fork_that_fails_fails_the_items_not_the_run(pytester: pytest.Pytester) -> None:
    Project(pytester, top={"snapshot": False}, cifar=CIFAR, tiny=TINY)
    pytester.makeconftest(
        "import errno, os\n\n\ndef fork():\n"
        "    raise OSError(errno.EAGAIN, 'Resource temporarily unavailable')\n\n\n"
        "os.fork = fork\n"
    )
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("--cnn-budget", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.slow
def test_in_process_runs_thaw_what_earlier_runs_froze(pytester: pytest.Pytester) -> None:
    Project(pytester, top={"snapshot": False}, cifar=CIFAR)
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


# -- the summary --------------------------------------------------------------------------


def test_passing_run_prints_summary_and_with_verbose_the_layer_tables(
    pytester: pytest.Pytester,
) -> None:
    Project(pytester, cifar=CIFAR, tiny=TINY).accept()
    result = pytester.runpytest("--cnn-budget", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*= cnn-budget =*",
            "model*measured*budget*used*snapshot*status",
            "cifar*545,098*600,000*90.8%*ok*ok",
            "tiny*72*1,000*7.2%*ok*ok",
            "cifar (nets:Cifar)",
            "layer*type*formula*params*cumulative*share",
            "conv1*Conv2d*3×3×3/1×32 + 32*896*896*0.2%",
            "fc1*Linear*4096×128 + 128*524,416*543,808*96.2%",
            "total 545,098 · trainable 545,098 · frozen 0 · buffers 0",
            "tiny (nets:Tiny)",
        ]
    )


def test_long_summary_lists_failures_and_counts_the_rest(pytester: pytest.Pytester) -> None:
    models = {f"tiny{i:02d}": TINY for i in range(60)}
    # Two of sixty over budget: 72 parameters against 50.
    models["tiny17"] = models["tiny42"] = {**TINY, "max_params": 50}
    Project(pytester, top={"snapshot": False}, **models)
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(passed=58, failed=2)
    start = next(i for i, line in enumerate(result.outlines) if "= cnn-budget =" in line)
    summary = result.outlines[start:]
    rows = [line for line in summary if line.startswith("tiny")]
    assert [row.split()[0] for row in rows] == ["tiny17", "tiny42"]
    assert "… and 58 more (58 passed in all); -v lists every model" in summary
    verbose = pytester.runpytest("--cnn-budget", "-v")
    assert sum(1 for line in verbose.outlines if re.match(r"tiny\d\d +72 ", line)) == 60
    tables = [line for line in verbose.outlines if re.fullmatch(r"tiny\d\d \(nets:Tiny\)", line)]
    assert len(tables) == 60


# -- failures -----------------------------------------------------------------------------


def test_over_budget_fails_with_table_and_is_not_written(
    pytester: pytest.Pytester, expected: Callable[[str, str], None]
) -> None:
    project = Project(pytester, cifar={**CIFAR, "max_params": "500k"})
    result = pytester.runpytest("--cnn-budget", "--cnn-budget-update")
    result.assert_outcomes(failed=1)
    # The item's report names the model and its target; the short summary, the first line.
    result.stdout.fnmatch_lines(
        [
            "*_ cnn_budget[[]cifar] nets:Cifar _*",
            "FAILED pyproject.toml::cnn_budget[[]cifar[]] - cifar: trainable parameters over*",
        ]
    )
    section = failure_section(result.outlines, "cifar")
    expected("over_budget.txt", "\n".join(section) + "\n")
    assert "Traceback" not in result.stdout.str()
    # The snapshot only holds accepted states: an over-budget model is not written.
    assert not project.snapshot.exists()
    result.stdout.fnmatch_lines(["*NOT updated cifar: it is over budget*"])


def test_layout_change_fails_with_diff_table_and_is_not_written(
    pytester: pytest.Pytester, expected: Callable[[str, str], None]
) -> None:
    project = Project(pytester, cifar=CIFAR, tiny=TINY)
    project.accept()
    before = project.snapshot.read_bytes()
    project.set("cifar", kwargs={"hidden": 256})
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1, passed=1)
    expected("layout_changed.txt", "\n".join(failure_section(result.outlines, "cifar")) + "\n")
    result.stdout.fnmatch_lines(["cifar*changed*FAILED*", "tiny*ok*ok"])
    assert "Traceback" not in result.stdout.str()
    assert project.snapshot.read_bytes() == before


def test_a_broken_model_fails_its_own_item_only(pytester: pytest.Pytester) -> None:
    project = Project(pytester, cifar=CIFAR, broken={"target": "nets:exploding", "max_params": 10})
    result = pytester.runpytest("--cnn-budget-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "broken: could not build nets:exploding",
            "*ValueError: constructor exploded: width must be even",
            "*raised at (innermost last):",
            f'*File "{project.path / "nets.py"}", line *, in exploding',
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "broken*-*-*-*-*ERROR: could not build (ValueError: construct*",
            "cifar*545,098*added*ok",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert list(project.stored()["models"]) == ["cifar"]


def test_warn_level_passes_the_run_and_prints_a_warnings_section(pytester: pytest.Pytester) -> None:
    project = Project(pytester, cifar={**CIFAR, "max_params": "500k", "level": "warn"})
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
    assert "cifar" in project.stored()["models"]


# -- --cnn-budget-update ------------------------------------------------------------------


def test_update_rewrites_the_selected_models_and_says_what_changed(
    pytester: pytest.Pytester,
) -> None:
    project = Project(pytester, cifar=CIFAR, tiny=TINY)
    project.accept()
    tiny_before = project.stored()["models"]["tiny"]
    project.set("cifar", kwargs={"hidden": 64})
    project.set("tiny", kwargs={"width": 4})
    update = pytester.runpytest("--cnn-budget-update", "-k", "cifar")
    update.assert_outcomes(passed=1)
    # fc1 4096×64 + 64 and fc2 64×10 + 10 instead of 4096×128 + 128 and 128×10 + 10.
    update.stdout.fnmatch_lines(
        ["cnnbudget.snapshot.json: updated cifar (fc1 -262,208, fc2 -640)", "cifar*updated*ok"]
    )
    models = project.stored()["models"]
    assert models["tiny"] == tiny_before  # not selected: left alone
    assert models["cifar"]["total"] == CIFAR_PARAMS - 262_208 - 640
    # The next run checks against what was written.
    check = pytester.runpytest("--cnn-budget")
    check.assert_outcomes(passed=1, failed=1)
    check.stdout.fnmatch_lines(["cifar*ok*ok", "tiny*changed*FAILED"])


def test_stale_entries_are_listed_and_removed_only_by_a_full_update(
    pytester: pytest.Pytester,
) -> None:
    project = Project(pytester, cifar=CIFAR, tiny=TINY)
    project.accept()
    project.configure(tiny=None)
    before = project.snapshot.read_bytes()
    plain = pytester.runpytest("--cnn-budget")
    plain.assert_outcomes(passed=1)
    plain.stdout.fnmatch_lines(
        [
            "stale snapshot entries (no longer configured): tiny; "
            "a full pytest --cnn-budget-update run removes them"
        ]
    )
    partial = pytester.runpytest("--cnn-budget-update", "-k", "nothing_matches")
    partial.stdout.fnmatch_lines(["stale snapshot entries*tiny*"])
    # Neither a plain run nor a partial update writes.
    assert project.snapshot.read_bytes() == before
    full = pytester.runpytest("--cnn-budget-update")
    full.stdout.fnmatch_lines(["cnnbudget.snapshot.json: removed stale tiny"])
    # What the update removed is no longer reported as stale in the same run.
    assert "stale snapshot entries" not in full.stdout.str()
    assert list(project.stored()["models"]) == ["cifar"]


# -- usage errors -------------------------------------------------------------------------


def test_an_unreadable_snapshot_is_a_usage_error_and_never_overwritten(
    pytester: pytest.Pytester,
) -> None:
    project = Project(pytester, cifar=CIFAR)
    content = '{\n<<<<<<< HEAD\n  "version": 1\n=======\n  "version": 1\n>>>>>>> main\n}\n'
    project.snapshot.write_text(content, encoding="utf-8")
    for flag in ("--cnn-budget", "--cnn-budget-update"):
        result = pytester.runpytest(flag)
        assert result.ret == USAGE_ERROR
        result.stderr.fnmatch_lines(
            [f"ERROR: {project.snapshot}: line 2 has a git merge conflict*"]
        )
        assert "Traceback" not in result.stderr.str()
        assert project.snapshot.read_text(encoding="utf-8") == content


def test_configuration_errors_are_usage_errors_before_any_model_is_imported(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(poisoned="raise AssertionError('no model may be imported')")
    project = Project(pytester, cifar={"target": "poisoned:Net", "max_param": 5})
    result = pytester.runpytest("--cnn-budget")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: {project.pyproject}: invalid [[]tool.cnnbudget[]] configuration",
            "  [[]tool.cnnbudget.models.cifar[]] max_param: unknown key (did you mean 'max_params'?)",
            "  [[]tool.cnnbudget.models.cifar[]] max_params: missing; every model needs a budget",
        ],
        consecutive=True,
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_config_option_points_elsewhere(pytester: pytest.Pytester) -> None:
    project = Project(pytester, cifar=CIFAR)  # the rootdir's configuration, not used
    budgets = pytester.mkdir("ci") / "budgets.toml"
    lin = {"target": "nets:Tiny", "kwargs": {"width": 2}, "max_params": 6}
    budgets.write_text(toml_text({"lin": lin}, {"snapshot": "snap.json"}), encoding="utf-8")
    result = pytester.runpytest("--cnn-budget-update", "--cnn-budget-config", "ci/budgets.toml")
    result.assert_outcomes(passed=1)
    assert list(project.stored(project.path / "ci" / "snap.json")["models"]) == ["lin"]
    assert not project.snapshot.exists()
    collected = pytester.runpytest(
        "--cnn-budget", "--cnn-budget-config", str(budgets), "--collect-only", "-q"
    )
    assert [line for line in collected.outlines if "::" in line] == [
        "ci/budgets.toml::cnn_budget[lin]"
    ]


# -- the example project, charts and compute ----------------------------------------------


@pytest.mark.slow
def test_the_rootdir_config_is_collected_beside_testpaths(pytester: pytest.Pytester) -> None:
    project = Project(pytester, cifar=CIFAR)
    with project.pyproject.open("a", encoding="utf-8") as file:
        file.write('\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_plain.py").write_text(
        "def test_plain():\n    pass\n", encoding="utf-8"
    )
    # pytest walks the rootdir once for `tests` and again for the config file added to it.
    pytester.runpytest("--cnn-budget-update").assert_outcomes(passed=2)
    assert list(project.stored()["models"]) == ["cifar"]
    pytester.runpytest("--cnn-budget", "-n", "2", "-p", "xdist").assert_outcomes(passed=2)


def test_example_project_passes(pytester: pytest.Pytester) -> None:
    example = Path(__file__).parent.parent / "example_project"
    for path in [example / "pyproject.toml", example / "cnnbudget.snapshot.json"]:
        (pytester.path / path.name).write_bytes(path.read_bytes())
    pytester.syspathinsert(example)
    result = pytester.runpytest("--cnn-budget", "-m", "cnn_budget", "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "cifar_net *545,098*600,000*90.8%*ok*ok",
            "mobile_cnn *36,874 trainable*40,000*92.2%*ok*ok",
            # One table carries mobile_cnn's parameter and memory budgets; -v shows both peaks.
            "total 36,874 · trainable 36,874 * at 64×3×32×32 * · peak memory: training 66.26 MB, "
            "inference 21.91 MB",
        ]
    )


def test_plot_option_writes_charts(pytester: pytest.Pytester) -> None:
    project = Project(pytester, top={"snapshot": False}, cifar=CIFAR, tiny=TINY)
    result = pytester.runpytest("--cnn-budget-update", "--cnn-budget-plot", "charts")
    result.assert_outcomes(passed=2)
    written = sorted(p.name for p in (pytester.path / "charts").iterdir())
    assert written == ["cifar.png", "cifar.svg", "tiny.png", "tiny.svg"]
    assert (pytester.path / "charts" / "cifar.png").stat().st_size > 1000
    # snapshot = false: budgets only, even for an update.
    result.stdout.fnmatch_lines(["cifar*545,098*600,000*90.8%*off*ok"])
    assert not project.snapshot.exists()


def test_input_shape_adds_shapes_and_macs_to_the_tables_and_the_snapshot(
    pytester: pytest.Pytester,
) -> None:
    project = Project(pytester, cifar={**CIFAR, "input_shape": SHAPE, "max_macs": "7M"})
    result = pytester.runpytest("--cnn-budget-update", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "layer*type*formula*params*cumulative*share*output*MACs",
            "fc1*Linear*4096×128 + 128*524,416*1×128*524,288",
            "total 545,098 · trainable 545,098 · frozen 0 · buffers 0 · MACs 6,128,896 · "
            "FLOPs 12,257,792 at 1×3×32×32 (1 MAC = 2 FLOPs)",
        ]
    )
    entry = project.stored()["models"]["cifar"]
    assert (entry["macs"], entry["flops"], entry["input_shape"]) == (
        CIFAR_MACS,
        2 * CIFAR_MACS,
        "1×3×32×32",
    )
    assert entry["layers"][2]["output_shape"] == [1, 128]
