"""Check that a built wheel holds what the installed package needs: every module of the source
tree, py.typed, the pytest11 entry point and the `cnnbudget` command; exit 1 naming what is
missing. Used by scripts/check-wheel."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pytest_cnnbudget"


def problems(wheel: Path) -> list[str]:
    """What the wheel lacks, one line each."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        entries = archive.read(entry_points).decode() if entry_points else ""
    wanted = {f"{PACKAGE}/{p.relative_to(ROOT / PACKAGE)}" for p in (ROOT / PACKAGE).rglob("*.py")}
    wanted.add(f"{PACKAGE}/py.typed")
    wanted |= {
        f"{PACKAGE}/{p.relative_to(ROOT / PACKAGE)}" for p in (ROOT / PACKAGE).rglob("*.json")
    }
    missing = [f"missing {name}" for name in sorted(wanted - names)]
    if "cnnbudget = pytest_cnnbudget.plugin" not in entries:
        missing.append("missing the pytest11 entry point cnnbudget = pytest_cnnbudget.plugin")
    if "cnnbudget = pytest_cnnbudget.cli:main" not in entries:
        missing.append("missing the console script cnnbudget = pytest_cnnbudget.cli:main")
    return missing


def main(argv: list[str]) -> int:
    found = [f"{wheel}: {p}" for wheel in map(Path, argv) for p in problems(wheel)]
    print("\n".join(found) or f"{', '.join(argv)}: every module, py.typed and entry point")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
