"""The `cnn_budget` fixture: a model built by a test's own setup code, checked like a
configured one, in real pytest sessions (with and without --cnn-budget, under xdist)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from nets import CIFAR_PARAMS

# Importing it loads torch, which must happen before the first in-process pytester run.
from project import CIFAR, NETS_SOURCE, Project

TESTS = """
import pytest
from nets import Cifar, Tiny


def test_cifar(cnn_budget):
    model = Cifar(hidden=HIDDEN)
    for p in model.conv1.parameters():
        p.requires_grad_(False)  # setup code a table cannot express
    result = cnn_budget(model, max_total_params="600k", input_shape=(1, 3, 32, 32))
    assert result.count.total == result.count.trainable + 896


def test_tiny(cnn_budget):
    cnn_budget(Tiny(), max_params=1000, name="a")
    cnn_budget(Tiny(width=4), max_params=1000, name="b")
"""


def write_tests(path: Path, hidden: int = 128, extra: str = "") -> None:
    source = textwrap.dedent(TESTS).replace("HIDDEN", str(hidden)) + textwrap.dedent(extra)
    (path / "test_models.py").write_text(source, encoding="utf-8")


def stored(project: Project) -> dict[str, dict[str, object]]:
    return dict(project.stored()["models"])


def test_without_the_flag_budgets_are_checked_and_the_snapshot_skipped_said_once(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(nets=NETS_SOURCE)
    write_tests(pytester.path, hidden=256)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    assert "total parameters over budget by 470,794 (+78.5%)" in out
    assert "Shrink the model, or raise max_total_params in its cnn_budget() call." in out
    assert "Traceback" not in out
    lines = [line for line in result.outlines if "but not the snapshot" in line]
    assert lines == [
        "cnn-budget: 2 tests checked budgets with cnn_budget() but not the snapshot; run with "
        "--cnn-budget to compare it"
    ]
    assert not (pytester.path / "cnnbudget.snapshot.json").exists()


def test_with_the_flag_the_entry_is_keyed_by_node_id_and_updated_like_a_models(
    pytester: pytest.Pytester,
) -> None:
    project = Project(pytester, cifar=CIFAR)
    write_tests(project.path)
    missing = pytester.runpytest("--cnn-budget")
    missing.assert_outcomes(failed=3)
    assert "no snapshot entry" in missing.stdout.str() or "missing" in missing.stdout.str()

    pytester.runpytest("--cnn-budget-update").assert_outcomes(passed=3)
    entries = stored(project)
    assert sorted(entries) == [
        "cifar",
        "test_models.py::test_cifar",
        "test_models.py::test_tiny[a]",
        "test_models.py::test_tiny[b]",
    ]
    assert entries["test_models.py::test_cifar"]["total"] == CIFAR_PARAMS
    assert entries["test_models.py::test_cifar"]["frozen"] == 896
    json_path = project.path / "report.json"
    ok = pytester.runpytest("--cnn-budget", "--cnn-budget-json", str(json_path), "-v")
    ok.assert_outcomes(passed=3)
    assert "test_models.py::test_tiny[b]" in ok.stdout.str()  # in the summary table
    report = json.loads(json_path.read_text(encoding="utf-8"))
    fixture_check = report["models"]["test_models.py::test_cifar"]
    assert fixture_check["measurement"]["totals"]["params"] == CIFAR_PARAMS

    # A change the test makes fails with the per-layer diff, and the update accepts it.
    write_tests(project.path, hidden=64)
    changed = pytester.runpytest("--cnn-budget")
    changed.assert_outcomes(failed=1, passed=2)
    out = changed.stdout.str()
    assert "test_models.py::test_cifar: parameter layout differs from the snapshot" in out
    assert "pytest --cnn-budget-update" in out


def test_a_deleted_test_s_entry_is_stale_a_deselected_one_is_kept(
    pytester: pytest.Pytester,
) -> None:
    project = Project(pytester, cifar=CIFAR)
    write_tests(project.path)
    pytester.runpytest("--cnn-budget-update").assert_outcomes(passed=3)
    # Deselected: its test still exists, so its entries stay.
    pytester.runpytest("--cnn-budget-update", "-k", "cifar").assert_outcomes(passed=2, deselected=1)
    assert "test_models.py::test_tiny[a]" in stored(project)
    # Deleted: its entries are stale, removed by an update that ran every configured model.
    source = (project.path / "test_models.py").read_text(encoding="utf-8")
    (project.path / "test_models.py").write_text(source.split("def test_tiny")[0], encoding="utf-8")
    result = pytester.runpytest("--cnn-budget-update")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*removed stale test_models.py::test_tiny?a?"])
    assert sorted(stored(project)) == ["cifar", "test_models.py::test_cifar"]


def test_a_bad_call_names_the_test_and_the_key(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(nets=NETS_SOURCE)
    pytester.makepyfile(
        test_bad="""
        from nets import Tiny

        def test_typo(cnn_budget):
            cnn_budget(Tiny(), max_parms=10)

        def test_compute_without_shape(cnn_budget):
            cnn_budget(Tiny(), max_macs="1M")

        def test_fine(cnn_budget):
            cnn_budget(Tiny(), max_params=1000)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(failed=2, passed=1)
    out = result.stdout.str()
    assert "test_bad.py::test_typo: invalid cnn_budget() call" in out
    assert (
        "cnn_budget(test_bad.py::test_typo) max_parms: unknown key (did you mean 'max_params'?)"
        in out
    )
    assert "max_macs: needs input_shape" in out
    assert "Traceback" not in out


def test_fixture_checks_travel_through_xdist_into_the_snapshot_and_annotations(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = Project(pytester, cifar=CIFAR)
    write_tests(project.path)
    args = ("--cnn-budget-update", "-n", "2", "-p", "xdist", "-p", "no:cacheprovider")
    pytester.runpytest_subprocess(*args, timeout=300).assert_outcomes(passed=3)
    assert "test_models.py::test_tiny[b]" in stored(project)

    write_tests(project.path, hidden=256)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(project.path))
    summary = project.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = pytester.runpytest_subprocess(
        "--cnn-budget", "-n", "2", "-p", "xdist", "-p", "no:cacheprovider", timeout=300
    )
    result.assert_outcomes(failed=1, passed=2)
    annotations = [line for line in result.outlines if line.startswith("::error ")]
    # One, from the controller, on the layer that grew (nets.py), not the generic test failure.
    assert len(annotations) == 1, annotations
    assert "file=nets.py" in annotations[0]
    assert "test_models.py::test_cifar" in summary.read_text(encoding="utf-8")


def test_mistakes_in_a_call_fail_that_test_once_each_without_a_traceback(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(nets=NETS_SOURCE)
    pytester.makepyfile(
        test_calls="""
        from nets import Tiny

        def test_not_a_model(cnn_budget):
            cnn_budget("Tiny", max_params=10)

        def test_bad_name(cnn_budget):
            cnn_budget(Tiny(), max_params=1000, name="a\\nb")

        def test_twice(cnn_budget):
            cnn_budget(Tiny(), max_params=1000)
            cnn_budget(Tiny(), max_params=1000)

        def test_warned(cnn_budget):
            result = cnn_budget(Tiny(), max_params=10, level="warn")
            assert result.outcome.value == "warned"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(failed=3, passed=1)
    out = result.stdout.str()
    assert "cnn_budget() takes an nn.Module (or a list of layers), not a str" in out
    assert "name: model name 'a\\nb' contains the control character '\\n'" in out
    assert "cnn_budget() checked test_calls.py::test_twice twice; give each call" in out
    assert "During handling of the above exception" not in out
    assert "Traceback" not in out


def test_a_config_without_models_sets_the_fixture_snapshot_and_the_marker_selects_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(nets=NETS_SOURCE)
    pytester.makepyprojecttoml('[tool.cnnbudget]\nsnapshot = "budgets.json"\n')
    write_tests(pytester.path)
    pytester.makepyfile(test_other="def test_other():\n    pass\n")
    args = ("--cnn-budget-update", "-m", "cnn_budget", "-p", "no:cacheprovider")
    result = pytester.runpytest_subprocess(*args, timeout=300)
    result.assert_outcomes(passed=2, deselected=1)
    entries = json.loads((pytester.path / "budgets.json").read_text(encoding="utf-8"))
    assert sorted(entries["models"]) == [
        "test_models.py::test_cifar",
        "test_models.py::test_tiny[a]",
        "test_models.py::test_tiny[b]",
    ]


def test_a_test_that_fails_after_its_check_passed_has_its_entry_refused(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(nets=NETS_SOURCE)
    pytester.makepyfile(
        test_after="""
        from nets import Tiny

        def test_checked_then_broken(cnn_budget):
            cnn_budget(Tiny(), max_params=1000)
            assert False, "the test's own assertion"
        """
    )
    result = pytester.runpytest_subprocess(
        "--cnn-budget-update", "-p", "no:cacheprovider", timeout=300
    )
    result.assert_outcomes(failed=1)
    assert not (pytester.path / "cnnbudget.snapshot.json").exists()


def test_without_any_config_fixture_checks_keep_the_rootdirs_default_snapshot_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(nets=NETS_SOURCE)
    write_tests(pytester.path)
    for extra in ([], ["-n", "2", "-p", "xdist"]):
        snapshot = pytester.path / "cnnbudget.snapshot.json"
        snapshot.unlink(missing_ok=True)
        args = ("--cnn-budget-update", "-p", "no:cacheprovider", *extra)
        pytester.runpytest_subprocess(*args, timeout=300).assert_outcomes(passed=2)
        assert len(json.loads(snapshot.read_text(encoding="utf-8"))["models"]) == 3
    # A deleted test's entries are reported stale in a plain run, and the update removes them.
    source = (pytester.path / "test_models.py").read_text(encoding="utf-8")
    (pytester.path / "test_models.py").write_text(
        source.split("def test_tiny")[0], encoding="utf-8"
    )
    plain = pytester.runpytest_subprocess("--cnn-budget", "-p", "no:cacheprovider", timeout=300)
    plain.assert_outcomes(passed=1)
    plain.stdout.fnmatch_lines(["stale snapshot entries*test_models.py::test_tiny?a?*"])
