"""The project's own lint, format and type checks run with the suite, so CI enforces them."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is missing; install the test extras: pip install -e '.[test]'"
    return found


@pytest.mark.parametrize(
    "args",
    [
        ["ruff", "check", "--no-cache", "."],
        ["ruff", "format", "--no-cache", "--check", "."],
        ["mypy", "--cache-dir", "{tmp}/mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_tool_is_clean(args: list[str], tmp_path: Path) -> None:
    command = [_tool(args[0]), *(a.replace("{tmp}", str(tmp_path)) for a in args[1:])]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def _module_table() -> list[list[str]]:
    """The modules of README's table, one list per row, top row first."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = text[text.index("| module | its one job |") :].splitlines()[2:]
    table = []
    for row in rows:
        if not row.startswith("|"):
            break
        table.append(re.findall(r"`(\w+)\.py`", row.split("|")[1]))
    return table


def _package_imports(path: Path) -> set[str]:
    """The package's own modules that `path` imports (`from .x import …`)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            imported |= {node.module} if node.module else {a.name for a in node.names}
    return imported


def test_readme_lists_every_module_and_each_imports_only_those_below_it() -> None:
    table = _module_table()
    row_of = {module: i for i, row in enumerate(table) for module in row}
    package = ROOT / "pytest_cnnbudget"
    modules = {p.stem for p in package.glob("*.py")}
    assert set(row_of) == modules, "README's module table and the package differ"
    upward = [
        f"{module} imports {other}"
        for module in sorted(modules)
        for other in sorted(_package_imports(package / f"{module}.py") & set(row_of))
        if row_of[other] < row_of[module]
    ]
    assert upward == [], "a module imports one above it in README's table"
    pytest_users = sorted(
        m for m in modules if re.search(r"^import pytest$", (package / f"{m}.py").read_text(), re.M)
    )
    assert pytest_users == ["plugin"]
