"""The one way text reaches pytest's terminal and its reports.

Text that came from a model or a config (names, messages, what a constructor printed) may hold
a line that a CI log would run as a GitHub Actions workflow command; every such text passes
through `shown` on its way out. The workflow commands this package makes itself
(report/github.py escapes them as it makes them) pass through `Terminal.commands` as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from .report.github import neutralize_text


def shown(text: str) -> str:
    """User text as the terminal may show it: no line of it starts a workflow command."""
    return neutralize_text(text)


class Terminal:
    """pytest's terminal reporter, written to through `shown`."""

    def __init__(self, reporter: pytest.TerminalReporter) -> None:
        self.reporter = reporter

    def section(
        self, title: str, lines: Iterable[str], yellow: bool = False, red: bool = False
    ) -> None:
        """A titled section of user text."""
        self.reporter.section(title, yellow=yellow, red=red)
        for line in lines:
            self.reporter.write_line(shown(line))

    def commands(self, lines: Iterable[str]) -> None:
        """Workflow commands, escaped where they were made (report.github.workflow_command)."""
        for line in lines:
            self.reporter.write_line(line)
