"""The state every section is handed, and that sections share with one another."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness import Runner
from projects import Projects


@dataclass
class Context:
    """What every benchmark needs: how to run things, where, how often, and how thoroughly."""

    runner: Runner
    projects: Projects
    repeat: int
    overhead_repeat: int
    quick: bool
    walls: dict[str, float] = field(default_factory=dict)  # medians other sections reuse
