"""The suite's tiers: collecting it imports no model library, and every test of a tier's folder
carries the tier's marker (tests/conftest.py).

Every run collects every tier, the fast one included (`-m` deselects after collection), so an
import of torchvision or transformers at the top of a zoo module would cost every run seconds.
The suite is collected in a fresh interpreter, which reports what it had imported and how each
test is marked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
MODEL_LIBRARIES = {"torchvision", "timm", "transformers", "peft", "diffusers", "ultralytics"}

PROBE = """
import json, sys
import pytest

class Probe:
    def pytest_collection_finish(self, session):
        items = {i.nodeid: sorted({m.name for m in i.iter_markers()}) for i in session.items}
        with open(sys.argv[1], "w", encoding="utf-8") as out:
            json.dump({"modules": sorted(sys.modules), "items": items}, out)

sys.exit(pytest.main(sys.argv[2:], plugins=[Probe()]))
"""


def test_collecting_the_suite_imports_no_model_library_and_marks_each_tier(tmp_path: Path) -> None:
    found = tmp_path / "collected.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(found), "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # only so that a hang fails instead of stalling the run
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = json.loads(found.read_text(encoding="utf-8"))
    imported = sorted({m.partition(".")[0] for m in collected["modules"]} & MODEL_LIBRARIES)
    assert imported == [], "import model libraries inside the tests and fixtures that use them"

    # A test in a folder of tests/ carries that folder's marker; pyproject registers each.
    per_folder: dict[str, int] = {}
    for nodeid, markers in collected["items"].items():
        parts = nodeid.partition("::")[0].split("/")
        if len(parts) > 2:
            assert parts[1] in markers, f"{nodeid} is not marked {parts[1]}"
            per_folder[parts[1]] = per_folder.get(parts[1], 0) + 1
    assert sorted(per_folder) == ["reference", "slow", "zoo"], per_folder
