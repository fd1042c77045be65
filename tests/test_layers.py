"""The package's shape: each layer imports only those below it (CONTRIBUTING.md's table), only the
pytest-facing modules import pytest, the lower layers never import torch, one module neutralizes
terminal text, and no module, class or function outgrows a room a person can live in."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "pytest_cnnbudget"
# Declaration tables, longer than a function should be but read as a list, not as logic.
DECLARATIONS = {"pytest_cnnbudget/plugin.py:pytest_addoption"}
PYTEST_MODULES = {"plugin", "session", "items", "keys", "writer"}
TORCH_FREE = ("config", "snapshot", "report")


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name below the package: `run.gate`."""
    return {
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")
    }


def _layers() -> list[list[str]]:
    """CONTRIBUTING.md's table of places, top row first: `plugin.py` → `plugin`, `run/` → `run`."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    rows = text[text.index("| place | its one job |") :].splitlines()[2:]
    table = []
    for row in rows:
        if not row.startswith("|"):
            break
        table.append(re.findall(r"`(\w+)(?:\.py|/)`", row.split("|")[1]))
    return table


def _place(module: str) -> str:
    """The table's name for a module's place: its subpackage, or itself at the top."""
    return module.split(".")[0]


def _imports(module: str, path: Path, type_checking: bool = False) -> set[str]:
    """The package modules `module` imports, anywhere in it; with `type_checking`, also those
    under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    if not type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(n) for n in ast.walk(node)}
    known = _modules()
    package = module.split(".")[:-1]  # `run.__init__` → run
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
            elif node.module and node.module.startswith("pytest_cnnbudget"):
                base = []
            else:
                continue
            name = node.module or ""
            if not node.level:
                name = name.removeprefix("pytest_cnnbudget").lstrip(".")
            parent = ".".join([*base, *([name] if name else [])])
            for alias in node.names:
                child = f"{parent}.{alias.name}" if parent else alias.name
                found.add(child if child in known else parent)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pytest_cnnbudget."):
                    found.add(alias.name.removeprefix("pytest_cnnbudget."))
    return {m for m in found if m in known and m != module}


def test_contributing_places_every_module_and_each_imports_only_its_row_or_below() -> None:
    rows = _layers()
    row_of = {place: i for i, row in enumerate(rows) for place in row}
    modules = _modules()
    places = {_place(m) for m in modules if m != "__init__"}
    assert places == set(row_of) - {"__init__"}, "CONTRIBUTING.md's table and the package differ"
    upward = [
        f"{module} imports {other}"
        for module, path in sorted(modules.items())
        for other in sorted(_imports(module, path, type_checking=True))
        if _place(module) != "__init__" and row_of[_place(other)] < row_of[_place(module)]
    ]
    assert upward == [], "a module imports one above it in CONTRIBUTING.md's table"


def test_contributing_names_each_modules_one_job() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    rows = text[text.index("| module | its one job |") :].splitlines()[2:]
    listed = set()
    for row in rows:
        if not row.startswith("|"):
            break
        listed |= set(re.findall(r"`([\w/]+)\.py`", row.split("|")[1]))
    modules = {p.relative_to(PACKAGE).with_suffix("").as_posix() for p in PACKAGE.rglob("*.py")}
    layers = {m for m in modules if not m.endswith("/__init__")}
    assert listed == layers, "CONTRIBUTING.md's list of modules and the package differ"


def test_no_module_imports_itself_back() -> None:
    graph = {m: _imports(m, p) for m, p in _modules().items()}
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        for other in sorted(graph[module]):
            if other in stack:
                cycles.append(" → ".join([*stack[stack.index(other) :], other]))
            elif other not in done:
                visit(other, [*stack, other])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        visit(module, [module])
    assert cycles == []


def test_only_the_pytest_facing_modules_import_pytest() -> None:
    users = {
        m
        for m, p in _modules().items()
        if re.search(r"^\s*(import _?pytest\b|from _?pytest\b)", p.read_text(), re.M)
    }
    assert users == PYTEST_MODULES


def test_the_writer_alone_neutralizes_terminal_text() -> None:
    users = set()
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            named = isinstance(node, ast.Name) and node.id == "neutralize_text"
            attribute = isinstance(node, ast.Attribute) and node.attr == "neutralize_text"
            imported = isinstance(node, ast.alias) and node.name == "neutralize_text"
            if named or attribute or imported:
                users.add(module)
    assert users == {"writer"}


@pytest.mark.parametrize("layer", TORCH_FREE)
def test_the_lower_layers_never_import_torch(layer: str) -> None:
    names = sorted(f"pytest_cnnbudget.{m}" for m in _modules() if _place(m) == layer)
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'torch' not in sys.modules, name\n"
    )
    # From the checkout's root, so that the package imported is this one.
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _sizes() -> list[str]:
    """Modules over 450 lines, classes over 150, functions over 80, declaration tables aside."""
    found = []
    for path in _modules().values():
        text = path.read_text(encoding="utf-8")
        shown = path.relative_to(ROOT).as_posix()
        if len(text.splitlines()) > 450:
            found.append(f"{shown}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            limit = 150 if isinstance(node, ast.ClassDef) else 80
            if lines > limit and f"{shown}:{node.name}" not in DECLARATIONS:
                found.append(f"{shown}:{node.name}: {lines} lines")
    return found


def test_every_room_is_one_a_person_can_live_in() -> None:
    assert _sizes() == []
