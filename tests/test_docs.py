"""The documentation: the site builds, the README stays short, its links resolve, and its failure
example is what the documented command prints on the example project."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 250

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$")
# pytest's last line, whose timing (and so its padding) changes from run to run.
_RESULT = re.compile(r"^=+ (?P<counts>.*) in [0-9.]+s(?: \([0-9:]+\))? =+$")


def nav_pages(nav: list[Any]) -> list[str]:
    """Every page file named in mkdocs.yml's `nav`, sections walked into."""
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_the_site_builds_strictly_and_its_nav_holds_every_page(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = nav_pages(config["nav"])
    assert sorted(pages) == sorted(p.name for p in DOCS.glob("*.md")), "nav and docs/ differ"
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    for page in pages:
        assert (site / page.removesuffix(".md").replace("index", "") / "index.html").is_file()


def test_zensical_builds_the_same_site_strictly(tmp_path: Path) -> None:
    """Material's successor reads mkdocs.yml too: the site stays plain enough for both."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    build = subprocess.run(
        [str(Path(sys.executable).parent / "zensical"), "build", "--strict"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    for page in (p.stem for p in DOCS.glob("*.md") if p.stem != "index"):
        assert (tmp_path / "site" / page / "index.html").is_file(), page


def test_the_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs' toc make it: lowercase, punctuation dropped."""
    text = re.sub(r"[`*_\[\]()]", "", heading).strip().lower()
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown file's headings, code blocks skipped."""
    found: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := _HEADING.match(line)):
            found.add(slug(match.group(1)))
    return found


def test_every_relative_link_in_the_readme_resolves() -> None:
    text = README.read_text(encoding="utf-8")
    targets = [t for t in _LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert targets
    for target in targets:
        path, _, anchor = target.partition("#")
        file = ROOT / path if path else README
        assert file.is_file(), f"README.md links to {target}, which does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file.read_text(encoding="utf-8")), (
                f"README.md links to {target}: no such heading"
            )


def failure_example() -> tuple[str, list[str]]:
    """README's failure example: the command on its `$ ` line, and the lines it shows."""
    text = README.read_text(encoding="utf-8")
    start = text.index("```text\n$ cd example_project")
    block = text[start:].split("\n", 1)[1].split("\n```\n", 1)[0]
    first, *shown = block.splitlines()
    return first.removeprefix("$ "), shown


def normalized(lines: list[str]) -> list[str]:
    """pytest's last line without the run's duration, which decides its padding too."""
    return [f"= {match['counts']} =" if (match := _RESULT.match(line)) else line for line in lines]


def test_the_readme_failure_example_is_what_its_command_prints(tmp_path: Path) -> None:
    command, shown = failure_example()
    assert shown[0] == "...", "the block stands for pytest's header with one '...' line"
    project = tmp_path / "example_project"
    shutil.copytree(
        ROOT / "example_project",
        project,
        ignore=shutil.ignore_patterns("*.egg-info", "build", ".pytest_cache", "__pycache__"),
    )
    # The same Python, its `pytest` first on PATH; no CI variables, which would add annotations.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PYTEST_"))}
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=str(project),
        COLUMNS="80",
        PYTHONDONTWRITEBYTECODE="1",
    )
    run = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    printed = run.stdout.splitlines()
    # The header (platform, rootdir, plugins) differs from machine to machine: it ends with
    # pytest's `collected N items` and a blank line.
    [collected] = [i for i, line in enumerate(printed) if re.match(r"collected \d+ items?$", line)]
    assert printed[collected + 1] == ""
    assert normalized(printed[collected + 2 :]) == normalized(shown[1:])
