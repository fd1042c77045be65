"""One config per package: every pyproject.toml with [tool.cnnbudget] in the collected paths is
collected like a test file, with its snapshot beside it, in real pytest sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nets import CIFAR_PARAMS

# Importing it loads torch, which must happen before the first in-process pytester run.
from project import NETS_SOURCE, toml_text

VISION: dict[str, dict[str, Any]] = {
    "cifar": {"target": "vision_nets:Cifar", "max_params": "600k"},
    "tiny": {"target": "vision_nets:Tiny", "max_params": 1000},
}
TEXT: dict[str, dict[str, Any]] = {
    "lm": {"target": "text_nets:Tiny", "max_params": 1000, "kwargs": {"width": 4}}
}
ROOT: dict[str, dict[str, Any]] = {"root_net": {"target": "nets:Tiny", "max_params": 1000}}


class Monorepo:
    """A repository with a root config and two packages, each with its models and config."""

    def __init__(self, pytester: pytest.Pytester, root: bool = True) -> None:
        self.pytester = pytester
        self.path = pytester.path
        ini = '[tool.pytest.ini_options]\naddopts = "-p no:cacheprovider"\n\n'
        (self.path / "pyproject.toml").write_text(
            ini + (toml_text(ROOT) if root else ""), encoding="utf-8"
        )
        (self.path / "nets.py").write_text(NETS_SOURCE, encoding="utf-8")
        self.package("vision", VISION)
        self.package("text", TEXT)

    def package(self, name: str, models: dict[str, Any], top: dict[str, Any] | None = None) -> Path:
        folder = self.path / "packages" / name
        folder.mkdir(parents=True, exist_ok=True)
        # Each package's own module, importable from its config's folder only.
        (folder / f"{name}_nets.py").write_text(NETS_SOURCE, encoding="utf-8")
        (folder / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\n\n' + toml_text(models, top), encoding="utf-8"
        )
        return folder

    def stored(self, package: str | None = None) -> list[str]:
        folder = self.path / "packages" / package if package else self.path
        data = json.loads((folder / "cnnbudget.snapshot.json").read_text(encoding="utf-8"))
        return list(data["models"])

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(*args, timeout=300)


def test_every_package_config_is_collected_with_its_own_node_ids(
    pytester: pytest.Pytester,
) -> None:
    repo = Monorepo(pytester)
    # A package that budgets nothing is passed over.
    (repo.path / "packages" / "docs").mkdir()
    (repo.path / "packages" / "docs" / "pyproject.toml").write_text(
        '[project]\nname = "docs"\n', encoding="utf-8"
    )
    collected = repo.run("--cnn-budget", "--collect-only", "-q")
    assert sorted(collected.outlines[:4]) == [
        "packages/text/pyproject.toml::cnn_budget[lm]",
        "packages/vision/pyproject.toml::cnn_budget[cifar]",
        "packages/vision/pyproject.toml::cnn_budget[tiny]",
        "pyproject.toml::cnn_budget[root_net]",
    ]


def test_each_snapshot_lives_beside_its_config_and_a_path_runs_its_package_alone(
    pytester: pytest.Pytester,
) -> None:
    repo = Monorepo(pytester)
    repo.run("--cnn-budget-update").assert_outcomes(passed=4)
    assert repo.stored() == ["root_net"]
    assert repo.stored("vision") == ["cifar", "tiny"]
    assert repo.stored("text") == ["lm"]

    only = repo.run("--cnn-budget", "packages/vision")
    only.assert_outcomes(passed=2)
    summary = only.stdout.str()
    assert "cifar" in summary
    assert "lm" not in summary
    assert "root_net" not in summary
    repo.run("--cnn-budget", "packages/text", "-k", "lm").assert_outcomes(passed=1)


def test_a_package_models_change_fails_naming_its_own_files(pytester: pytest.Pytester) -> None:
    repo = Monorepo(pytester)
    repo.run("--cnn-budget-update").assert_outcomes(passed=4)
    grown = {**VISION, "cifar": {**VISION["cifar"], "kwargs": {"hidden": 256}}}
    repo.package("vision", grown)
    result = repo.run("--cnn-budget")
    result.assert_outcomes(failed=1, passed=3)
    out = result.stdout.str()
    assert (
        "parameter layout differs from the snapshot in packages/vision/cnnbudget.snapshot.json"
        in out
    )
    assert (
        "raise max_params under [tool.cnnbudget.models.cifar] in packages/vision/pyproject.toml"
        in out
    )
    # Accepting it touches that package's snapshot alone.
    before = {
        p: (repo.path / p).read_bytes()
        for p in ("cnnbudget.snapshot.json", "packages/text/cnnbudget.snapshot.json")
    }
    repo.package("vision", {**grown, "cifar": {**grown["cifar"], "max_params": "2M"}})
    repo.run("--cnn-budget-update").assert_outcomes(passed=4)
    assert {p: (repo.path / p).read_bytes() for p in before} == before


def test_stale_entries_are_removed_per_file_only_when_that_file_fully_ran(
    pytester: pytest.Pytester,
) -> None:
    repo = Monorepo(pytester)
    repo.run("--cnn-budget-update").assert_outcomes(passed=4)
    repo.package("vision", {"cifar": VISION["cifar"]})
    # Only the text package ran: vision's stale entry stays.
    repo.run("--cnn-budget-update", "packages/text").assert_outcomes(passed=1)
    assert repo.stored("vision") == ["cifar", "tiny"]
    # Vision ran in full: its stale entry goes, the others are untouched.
    result = repo.run("--cnn-budget-update", "packages/vision")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["packages/vision/cnnbudget.snapshot.json: removed stale tiny"])
    assert repo.stored("vision") == ["cifar"]
    assert repo.stored("text") == ["lm"]
    assert repo.stored() == ["root_net"]


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_name_configured_in_two_packages_fails_in_the_second_and_the_rest_still_run(
    pytester: pytest.Pytester, workers: str
) -> None:
    repo = Monorepo(pytester, root=False)
    repo.package("text", {**TEXT, "tiny": {"target": "text_nets:Tiny", "max_params": 1000}})
    result = repo.run(
        "--cnn-budget", "--cnn-budget-update", "--cnn-budget-json", "report.json", "-n", workers
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*tiny: the model name is configured in both packages/*/pyproject.toml and "
            "packages/*/pyproject.toml; names key the results across config files, so rename "
            "one of them"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    # The JSON report keys models by name, so it holds one `tiny`: the other fails the report.
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    assert report["passed"] is False
    (problem,) = report["problems"]
    assert "tiny: the model name is configured in both" in problem


def test_a_broken_package_config_stops_the_run_naming_its_file_and_key(
    pytester: pytest.Pytester,
) -> None:
    repo = Monorepo(pytester)
    repo.package("text", {"lm": {**TEXT["lm"], "max_parms": 5}})
    result = repo.run("--cnn-budget")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "ERROR collecting packages/text/pyproject.toml" in out
    assert (
        f"{repo.path}/packages/text/pyproject.toml: invalid [tool.cnnbudget] configuration\n"
        "  [tool.cnnbudget.models.lm] max_parms: unknown key (did you mean 'max_params'?)\n"
    ) in out
    assert "Traceback" not in out
    assert "passed" not in out


def test_the_config_option_may_be_repeated(pytester: pytest.Pytester) -> None:
    repo = Monorepo(pytester)
    args = ["--cnn-budget-config", "packages/vision/pyproject.toml"]
    args += ["--cnn-budget-config", "packages/text/pyproject.toml"]
    result = repo.run("--cnn-budget-update", *args)
    # The files it names and no others: the root config is not discovered.
    result.assert_outcomes(passed=3)
    assert repo.stored("vision") == ["cifar", "tiny"]
    assert repo.stored("text") == ["lm"]
    assert not (repo.path / "cnnbudget.snapshot.json").exists()


def test_packages_under_xdist_write_the_same_snapshots(pytester: pytest.Pytester) -> None:
    repo = Monorepo(pytester)
    repo.run("--cnn-budget-update").assert_outcomes(passed=4)
    files = [
        "cnnbudget.snapshot.json",
        *(f"packages/{p}/cnnbudget.snapshot.json" for p in ("vision", "text")),
    ]
    local = {f: (repo.path / f).read_bytes() for f in files}
    for f in files:
        (repo.path / f).unlink()
    distributed = repo.run("--cnn-budget-update", "-n", "2", "-p", "xdist")
    distributed.assert_outcomes(passed=4)
    assert {f: (repo.path / f).read_bytes() for f in files} == local
    assert (
        json.loads(local["packages/vision/cnnbudget.snapshot.json"])["models"]["cifar"]["total"]
        == CIFAR_PARAMS
    )


def test_a_fixture_check_is_stored_beside_the_nearest_config_even_when_only_its_tests_run(
    pytester: pytest.Pytester,
) -> None:
    repo = Monorepo(pytester)
    tests = repo.path / "packages" / "vision" / "tests"
    tests.mkdir()
    (tests / "test_vision.py").write_text(
        "from torch import nn\n\n\ndef test_tiny(cnn_budget):\n"
        "    cnn_budget(nn.Linear(10, 8), max_params=1000)\n",
        encoding="utf-8",
    )
    # Only the tests folder: vision's config is not collected, its snapshot still takes the entry.
    repo.run("--cnn-budget-update", "packages/vision/tests").assert_outcomes(passed=1)
    assert repo.stored("vision") == ["packages/vision/tests/test_vision.py::test_tiny"]
    assert not (repo.path / "cnnbudget.snapshot.json").exists()
    # A full run keeps it (its test exists) beside the package's models.
    repo.run("--cnn-budget-update", "packages").assert_outcomes(passed=4)
    assert repo.stored("vision") == [
        "cifar",
        "packages/vision/tests/test_vision.py::test_tiny",
        "tiny",
    ]


SAME_NAME = """
from torch import nn


class Net(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(10, {width}))
"""


def test_packages_with_modules_of_the_same_name_each_count_their_own(
    pytester: pytest.Pytester,
) -> None:
    for package, width in (("vision", 8), ("text", 3)):
        folder = pytester.path / "packages" / package
        folder.mkdir(parents=True)
        (folder / "nets.py").write_text(SAME_NAME.format(width=width), encoding="utf-8")
        model = {f"{package}_net": {"target": "nets:Net", "max_params": 1000}}
        (folder / "pyproject.toml").write_text(toml_text(model), encoding="utf-8")
    expected = {"vision_net": 10 * 8 + 8, "text_net": 10 * 3 + 3}
    for order in (["packages/vision", "packages/text"], ["packages/text", "packages/vision"]):
        report = pytester.path / "report.json"
        args = [*order, "--cnn-budget", "--cnn-budget-json", str(report), "-p", "no:cacheprovider"]
        for extra in ([], ["-n", "2", "-p", "xdist"]):
            result = pytester.runpytest_subprocess(*args, *extra, timeout=300)
            result.assert_outcomes(failed=2)  # no snapshot entries yet
            models = json.loads(report.read_text(encoding="utf-8"))["models"]
            totals = {name: m["measurement"]["totals"]["params"] for name, m in models.items()}
            assert totals == expected
