"""What a release is made of: one version, named alike by the installed metadata, the changelog
and the release workflow; the built wheel itself is checked by scripts/check-wheel in .ci/run."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import pytest_cnnbudget

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_version_is_the_one_written_in_the_package() -> None:
    assert importlib.metadata.version("pytest-cnnbudget") == pytest_cnnbudget.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:\.dev\d+|rc\d+)?", pytest_cnnbudget.__version__)


def test_the_changelog_has_a_section_for_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    first = re.search(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert first is not None
    assert first.group(1) == pytest_cnnbudget.__version__


def test_the_release_workflow_checks_the_tag_and_publishes_with_trusted_publishing() -> None:
    text = (ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    assert 'tags: ["v*"]' in text
    assert '"$TAG" != "v$version"' in text
    assert "id-token: write" in text
    assert "pypa/gh-action-pypi-publish@release/v1" in text
    assert "password" not in text  # no stored token


def _wheel(tmp_path: Path, drop: str | None = None) -> Path:
    """A wheel-shaped archive of the source tree, `drop` left out."""
    path = tmp_path / "pytest_cnnbudget-0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        package = ROOT / "pytest_cnnbudget"
        for source in sorted(package.rglob("*")):
            name = f"pytest_cnnbudget/{source.relative_to(package).as_posix()}"
            if source.suffix in (".py", ".typed", ".json") and name != drop:
                archive.write(source, name)
        archive.writestr(
            "pytest_cnnbudget-0.dist-info/entry_points.txt",
            "[console_scripts]\ncnnbudget = pytest_cnnbudget.cli:main\n\n"
            "[pytest11]\ncnnbudget = pytest_cnnbudget.plugin\n",
        )
    return path


@pytest.mark.parametrize(
    "drop",
    [
        None,
        "pytest_cnnbudget/engine/memory.py",
        "pytest_cnnbudget/py.typed",
        "pytest_cnnbudget/schemas/model.schema.json",
    ],
)
def test_the_wheel_check_names_a_missing_file(tmp_path: Path, drop: str | None) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "wheel_contents.py"), str(_wheel(tmp_path, drop))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == (1 if drop else 0), done.stdout
    if drop:
        assert f": missing {drop}" in done.stdout


def _check_torch(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "check-torch"), *args],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("version", "pins"),
    [
        ("2.6.0", "torch==2.6.0 torchvision==0.21.0"),
        ("2.14.1", "torch==2.14.1 torchvision==0.29.1"),
        # Built against NumPy 1.
        ("2.1.2", "torch==2.1.2 torchvision==0.16.2 numpy<2"),
    ],
)
def test_check_torch_pairs_each_torch_with_its_torchvision(version: str, pins: str) -> None:
    result = _check_torch(version, DRY_RUN="1")
    assert result.returncode == 0, result.stderr
    assert f"would install {pins} and the checkout's test extra" in result.stdout


@pytest.mark.parametrize("argument", ["2.6", "latest", "1.13.1"])
def test_check_torch_refuses_what_is_not_a_2_x_release(argument: str) -> None:
    result = _check_torch(argument, DRY_RUN="1")
    assert result.returncode == 2
    assert "usage: scripts/check-torch 2.MINOR.PATCH" in result.stderr


def test_the_torch_range_is_the_one_the_docs_show_checked() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (torch_requirement,) = [d for d in project["dependencies"] if d.startswith("torch")]
    lowest = re.fullmatch(r"torch>=(\d+)\.(\d+),<3", torch_requirement)
    assert lowest is not None, torch_requirement
    bound = (int(lowest.group(1)), int(lowest.group(2)))
    section = (ROOT / "docs" / "compatibility.md").read_text(encoding="utf-8")
    assert f"(`{torch_requirement}`)" in section
    lines = [line for line in section.splitlines() if re.match(r"\| \d", line)]
    row = re.compile(r"\| (\d+)\.(\d+)\.\d+[^|]*\| [^|]* \| 3\.\d+ \| ([^|]+) \|")
    rows = [row.fullmatch(line) for line in lines]
    assert rows
    assert all(rows), lines
    for major, minor, result in (m.groups() for m in rows if m):
        below = (int(major), int(minor)) < bound
        expected = ("below the range",) if below else ("all pass", "gate only")
        assert result.startswith(expected), (major, minor, result)
    # The range's lowest release is one the table shows checked.
    assert any(m and (int(m[1]), int(m[2])) == bound for m in rows)


def test_ci_runs_readmes_test_command_and_it_runs_the_whole_suite() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("Run the test suite:") :].split("```")[1]
    [command] = [line for line in block.splitlines() if line.strip() and line != "bash"]
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    # Every tier: no marker expression, no path that would narrow the run.
    assert command.endswith("&& .venv/bin/python -m pytest -n auto")
