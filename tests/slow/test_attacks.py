"""Adversarial inputs and faults, each a real pytest session with one machine verdict.

Every attack is one row of ATTACKS: the configuration it writes (tables, or raw bytes), the
files beside it, the command line and environment, and what must come of it. `kind` says which
verdict applies besides the common one:

- "usage": a configuration mistake. Exit 4, a message naming the file and the key or model, no
  model built.
- "model": a faulty model. That model fails by name with a short cause; every other model is
  still checked and reported (the `good` model's row says ok).
- "output": a file the run writes cannot be written. The run exits 1 with one line naming that
  output, and the accepted snapshot is still written.

Common to every session: no INTERNALERROR and no traceback; with GitHub annotations on, no line
of stdout or stderr (split at every line break str.splitlines honours) is a workflow command
but our own annotations; the job summary shows no raw HTML from user text and every table row
has the header's column count; a snapshot is valid and holds the old or the new content.

Payloads use the property-less command forms (`::error::PWNED`, `::add-mask::PWNED`, ...), which
our annotations never use: any of them that reaches the start of a line is a leak.

Process-level faults (kill -9 mid-update, two concurrent updates, a file size limit) are separate
tests below the table.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import resource
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pytest
from nets import Tiny

# Importing project loads torch first: in-process pytester runs restore sys.modules, and torch
# cannot be imported twice in one process.
from project import NETS_SOURCE, Project, toml_text, toml_value

from pytest_cnnbudget.snapshot.format import dumps
from pytest_cnnbudget.snapshot.store import read_snapshot

ExitCode = pytest.ExitCode
Kind = Literal["usage", "model", "output"]
IS_ROOT = os.geteuid() == 0

# -- the projects ---------------------------------------------------------------------------

# The model every project has besides the attack's. It logs each build, so a test can tell
# that it ran (model faults) or that nothing ran (usage errors).
GOOD_SOURCE = """
import os

from torch import nn

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "built.log")


class Good(nn.Module):
    def __init__(self):
        super().__init__()
        with open(LOG, "a", encoding="utf-8") as log:
            log.write("good\\n")
        self.fc = nn.Linear(8, 8)
"""
GOOD: dict[str, Any] = {"target": "good_net:Good", "max_params": 1000}
GOOD_PARAMS = 72
BAD: dict[str, Any] = {"target": "attack:Net", "max_params": 1000}
SNAPSHOT_FILE = "cnnbudget.snapshot.json"
RAW_CONFIG = "budgets.toml"

PAYLOADS = (
    "::error::PWNED",
    "::warning::PWNED",
    "::add-mask::PWNED",
    "::stop-commands::PWNED",
    "::set-output name=x::PWNED",
)
INJECT = "\n::error::PWNED"


def constructor(body: str, prelude: str = "") -> dict[str, str]:
    """`attack.py`, whose `Net` runs `body` in its constructor and then builds one Linear."""
    source = (
        "import logging, os, sys, warnings\n\nimport torch\nfrom torch import nn\n"
        + textwrap.dedent(prelude)
        + "\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        + textwrap.indent(textwrap.dedent(body).strip("\n") or "pass", " " * 8)
        + "\n        self.fc = nn.Linear(2, 2)\n"
    )
    return {"attack.py": source}


def raw_config(*model_lines: str) -> bytes:
    """A configuration file as text: no snapshot, a model `bad` of `model_lines`, and `good`."""
    good = toml_text({"good": GOOD}).split("\n", 1)[1]
    text = "[tool.cnnbudget]\nsnapshot = false\n\n[tool.cnnbudget.models.bad]\n"
    return (text + "\n".join(model_lines) + "\n" + good).encode("utf-8")


BAD_LINES = ('target = "attack:Net"', "max_params = 5")


def nested_kwargs(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@cache
def entry_json(width: int) -> dict[str, Any]:
    """The snapshot entry of a Linear(width, width) called `fc`, as the plugin stores it."""
    import torch

    from pytest_cnnbudget.engine.measurement import measure
    from pytest_cnnbudget.results import SnapshotEntry
    from pytest_cnnbudget.snapshot.format import entry_to_json

    with torch.device("meta"):
        model = Tiny(width)
    return entry_to_json(SnapshotEntry.from_count(measure(model)))


def snapshot_text(names: Mapping[str, int]) -> bytes:
    """A valid snapshot file: each model name → the entry of Tiny(width)."""
    models = {name: entry_json(width) for name, width in names.items()}
    return (json.dumps({"version": 1, "models": models}, indent=2) + "\n").encode("utf-8")


def snapshot_with(**changes: Any) -> bytes:
    """The good model's snapshot with `changes` made to its first layer."""
    document = json.loads(snapshot_text({"good": 8}))
    document["models"]["good"]["layers"][0].update(changes)
    return json.dumps(document).encode("utf-8")


def make_fifo(project: Path) -> None:
    os.mkfifo(project / SNAPSHOT_FILE)


def make_folder(project: Path) -> None:
    (project / SNAPSHOT_FILE).mkdir()


def make_sparse(project: Path) -> None:
    with open(project / SNAPSHOT_FILE, "wb") as handle:
        handle.truncate(300 * 2**20)  # past the 256 MiB bound, and no disk used


def make_link(project: Path) -> None:
    (project / "store").mkdir()
    (project / "store" / "real.json").write_bytes(snapshot_text({"good": 4}))
    (project / SNAPSHOT_FILE).symlink_to(Path("store") / "real.json")


def make_read_only(project: Path) -> None:
    (project / "locked").mkdir(mode=0o555)


# -- one attack -----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Attack:
    """One adversarial session and what must come of it (see the module docstring)."""

    id: str
    kind: Kind
    exit: ExitCode
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # before `good`
    top: Mapping[str, Any] = field(default_factory=lambda: {"snapshot": False})
    # The configuration as written, instead of models and top: in a file of its own, passed
    # with --cnn-budget-config, since pytest itself reads pyproject.toml (and fails on some of
    # these before any plugin could say a word).
    config: bytes | None = None
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # "{dir}" is the project folder
    snapshot: bytes | None = None  # what the snapshot file holds before the run
    setup: Callable[[Path], None] | None = None
    expect: tuple[str, ...] = ()  # substrings of stdout + stderr; "{dir}", "{config}"
    failing: tuple[str, ...] = ()  # models that must fail, as their test ids show them
    skipped: tuple[str, ...] = ()
    xfailed: tuple[str, ...] = ()
    good: bool = True  # whether the good model is configured, and so must pass
    subprocess: bool = False  # a separate pytest process, where fd-level output shows
    check: Callable[[Session], None] | None = None  # what this attack adds to the verdict
    skip: str | None = None
    xfail: str | None = None  # a package bug this attack exposes, until it is fixed

    def __repr__(self) -> str:  # some raw configs are megabytes: keep assertion messages short
        return f"Attack({self.id})"

    @property
    def config_name(self) -> str:
        return "pyproject.toml" if self.config is None else RAW_CONFIG

    @property
    def snapshot_path(self) -> str | None:
        value = self.top.get("snapshot", SNAPSHOT_FILE)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Session:
    """What one attack's pytest session left behind."""

    attack: Attack
    ret: int
    stdout: str
    stderr: str
    path: Path  # the project folder
    summary: Path  # GITHUB_STEP_SUMMARY as the session was given it

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr

    @property
    def built(self) -> list[str]:
        log = self.path / "built.log"
        return log.read_text(encoding="utf-8").split() if log.exists() else []

    def section(self, title: str) -> list[str]:
        """The lines of one of pytest's `=== title ===` sections, [] if it has none."""
        lines = self.stdout.splitlines()
        heading = re.compile(rf"=+ {re.escape(title)} =+")
        start = next((i for i, line in enumerate(lines) if heading.fullmatch(line)), None)
        if start is None:
            return []
        end = start + 1
        while end < len(lines) and not lines[end].startswith("="):
            end += 1
        return lines[start + 1 : end]

    def outcomes(self) -> dict[str, int]:
        """`{"passed": 1, "failed": 1}` from pytest's last line."""
        last = [line for line in self.stdout.splitlines() if line.startswith("=")][-1:]
        found = re.findall(r"(\d+) (\w+)", last[0]) if last else []
        return {word: int(n) for n, word in found}


# -- the verdict ----------------------------------------------------------------------------

# Trimmed, besides Unicode white space, before looking for `::`: the byte-order mark, which
# .NET Framework's TrimStart removed, and the zero-width space.
_TRIM = "\ufeff\u200b"
# An annotation with properties: ours (`title=` first), or pytest-github-actions-annotate-
# failures' (`file=` first) for what it annotates. No payload has properties.
OURS = re.compile(r"^::(error|warning|notice) [a-z]+=")


def leaked_commands(text: str) -> list[str]:
    """Every piece of `text`, split at any line break, that would run as a workflow command and
    is not one of our annotations (which always carry properties)."""
    pieces = (piece.strip().strip(_TRIM).strip() for piece in text.splitlines())
    return [p for p in pieces if p.startswith("::") and not OURS.match(p)]


def markdown_problems(text: str) -> list[str]:
    """Raw HTML from user text outside code, and table rows whose column count differs from
    their header's; read loosely, as GitHub's renderer would."""
    problems = []
    prose = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1`*[ \t]*$", "", text)  # fenced code blocks
    for tag in ("<script", "<img"):
        if tag in re.sub(r"(`+).*?\1", "", prose).lower():  # code spans too
            problems.append(f"raw {tag} outside code")
    columns: int | None = None
    for line in prose.splitlines():
        if not line.startswith("|"):
            columns = None
            continue
        # A pipe is a cell border unless an odd run of backslashes escapes it, in code too.
        borders = sum(1 for m in re.finditer(r"(\\*)\|", line) if len(m.group(1)) % 2 == 0)
        if columns is None:
            columns = borders
        elif borders != columns:
            problems.append(f"{borders - 1} cells, the header has {columns - 1}: {line}")
    return problems


def check_snapshot(path: Path, before: bytes | None, unchanged: bool) -> None:
    """The snapshot at `path` reads, and holds `before` or exactly what the plugin writes."""
    if not path.is_file() or path.stat().st_size > 2**24:
        return
    now = path.read_bytes()
    if unchanged:
        assert now == before, "a usage error must leave the snapshot as it was"
        return
    entries = read_snapshot(path)
    writer = json.loads(now).get("config")  # where its config is not beside it
    assert now == before or now == dumps(entries, writer).encode("utf-8"), "partly written"


def judge(session: Session) -> None:
    """The verdict every attack gets, then its kind's, then its own."""
    attack = session.attack
    out = session.output
    tail = out[-4000:]
    assert session.ret == attack.exit, tail
    assert "INTERNALERROR" not in out, tail
    assert "Traceback (most recent call last)" not in out, tail
    for stream in (session.stdout, session.stderr):
        assert leaked_commands(stream) == [], tail
    summary = session.summary
    if summary.is_file() and summary.parent == session.path:
        assert markdown_problems(summary.read_text(encoding="utf-8")) == []
    if attack.snapshot_path is not None:
        path = session.path / attack.snapshot_path
        check_snapshot(path, attack.snapshot, unchanged=attack.kind == "usage")
    config = session.path / attack.config_name
    for expected in attack.expect:
        assert expected.format(dir=session.path, config=config) in out, (expected, tail)
    if attack.kind == "usage":
        judge_usage(session)
    else:
        judge_run(session)
    if attack.check is not None:
        attack.check(session)


def judge_usage(session: Session) -> None:
    assert session.built == [], "a model was built despite a usage error"
    assert session.section("cnn-budget") == [], "a usage error still printed a summary"
    assert session.attack.expect, "a usage error must say what is wrong, and where"
    for line in session.stderr.splitlines():
        assert len(line) <= 500, f"a usage error line of {len(line):,} characters"


def judge_run(session: Session) -> None:
    attack = session.attack
    rows = session.section("cnn-budget")
    if attack.good:
        assert "good" in session.built
        assert any(re.fullmatch(rf"good +{GOOD_PARAMS} .* ok", row) for row in rows), rows
    configured = len(attack.models) + attack.good
    expected = {
        "passed": configured - len(attack.failing) - len(attack.skipped) - len(attack.xfailed),
        "failed": len(attack.failing),
        "skipped": len(attack.skipped),
        "xfailed": len(attack.xfailed),
    }
    outcomes = session.outcomes()
    outcomes.pop("warnings", None)
    outcomes.pop("warning", None)
    assert outcomes == {k: v for k, v in expected.items() if v}, session.stdout[-3000:]
    for name in attack.failing:
        assert f"FAILED {attack.config_name}::cnn_budget[{name}]" in session.stdout
    # Short causes, not pages of traceback.
    failures = session.section("FAILURES")
    assert len(failures) <= 30 * len(attack.failing), "\n".join(failures)
    assert all(len(line) <= 1000 for line in failures)
    if "GITHUB_STEP_SUMMARY" not in attack.env:  # so that its checks in judge() saw one
        assert session.summary.is_file()
    not_written = session.section("cnn-budget: outputs not written")
    if attack.kind == "output":
        assert len(not_written) == 1, session.stdout[-3000:]
    else:
        assert not_written == []


# -- checks particular to one attack ----------------------------------------------------------


def next_model_is_float32(session: Session) -> None:
    report = json.loads((session.path / "report.json").read_text(encoding="utf-8"))
    param_bytes = {
        n: m["measurement"]["totals"]["param_bytes"] for n, m in report["models"].items()
    }
    assert param_bytes["bad"] == 8 * 6  # its own Linear(2, 2) in float64
    assert param_bytes["good"] == 4 * GOOD_PARAMS


def stuck_at_the_loop(session: Session) -> None:
    source = (session.path / "attack.py").read_text(encoding="utf-8").splitlines()
    line = 1 + next(i for i, text in enumerate(source) if "while True" in text)
    assert f'File "{session.path / "attack.py"}", line {line}, in __init__' in session.stdout


def built_once(session: Session) -> None:
    calls = (session.path / "calls.log").read_text(encoding="utf-8").split()
    assert calls == ["call"], "the constructor ran again after a network error"


def written_in_the_project(session: Session) -> None:
    assert set(read_snapshot(session.path / SNAPSHOT_FILE)) == {"bad", "good"}
    assert not Path("/", SNAPSHOT_FILE).exists()


def accepted_snapshot_written(session: Session) -> None:
    assert set(read_snapshot(session.path / SNAPSHOT_FILE)) == {"good"}


def charts(session: Session) -> list[str]:
    return sorted(p.name for p in (session.path / "charts").iterdir())


def six_distinct_charts(session: Session) -> None:
    names = [name for name in charts(session) if not name.startswith("good.")]
    assert len(names) == 6, names


def math_title_charted(session: Session) -> None:
    assert len(charts(session)) == 4, charts(session)


def updated_through_the_link(session: Session) -> None:
    link = session.path / SNAPSHOT_FILE
    assert link.is_symlink()
    assert read_snapshot(session.path / "store" / "real.json")["good"].total == GOOD_PARAMS


def summary_keeps_its_columns(session: Session) -> None:
    text = session.summary.read_text(encoding="utf-8")
    # Header, rule and two rows, each with the header's cells (markdown_problems counts them).
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 4, text
    assert any("onerror" in row for row in table)


def skip_names_the_model(session: Session) -> None:
    where = rf"SKIPPED \[1\] {session.attack.config_name}:\d+: weights not available"
    assert re.search(where, session.stdout), session.stdout[-1000:]


def warning_neutralized(session: Session) -> None:
    assert "UserWarning: | ::error::PWNED" in session.stdout


def shown_neutralized(*payloads: str) -> Callable[[Session], None]:
    """Each payload is shown, defused: `| ::error::PWNED`."""

    def check(session: Session) -> None:
        pieces = session.output.splitlines()
        for payload in payloads:
            defused = re.compile(rf"\s*\| +{re.escape(payload)}")
            assert any(defused.match(piece) for piece in pieces), payload

    return check


def strict_json(path: Path) -> Any:
    """The JSON document at `path`, read as strict parsers (jq, Go) read it: no NaN, no
    Infinity."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path.name} holds {constant}, which is not JSON (RFC 8259)")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def non_finite_options_as_text(session: Session) -> None:
    """The JSON report and pytest-json-report's metadata: strict JSON, and each non-finite
    optimizer option written as its documented text."""
    from schemas import problems

    report = strict_json(session.path / "report.json")
    assert problems(report, "report") == []
    traced = report["models"]["bad"]["measurement"]["memory"]["traced_with"]
    assert traced["optimizer_kwargs"] == {"lr": "inf", "momentum": "nan", "dampening": "-inf"}
    tests = strict_json(session.path / "pytest-report.json")["tests"]
    shown = [t["metadata"]["cnn_budget"] for t in tests if "metadata" in t]
    assert [m["measurement"]["memory"]["traced_with"] for m in shown if m["model"] == "bad"] == [
        traced
    ]


def failed_at_the_memory_stage(session: Session) -> None:
    report = strict_json(session.path / "report.json")
    assert report["models"]["bad"]["error_stage"] == "memory"


def failures_bounded(session: Session) -> None:
    """A failure that quotes thousands of keys, or one huge key, shows a few hundred characters
    of each item: every line of the output and the job summary stays short."""
    lines = session.output.splitlines()
    lines += session.summary.read_text(encoding="utf-8").splitlines()
    # An annotation carries the whole message on one line: a few items, each bounded.
    assert max(len(line) for line in lines if not line.startswith("::")) <= 1000
    assert max(map(len, lines)) <= 2500
    assert len(session.output) <= 20_000


def usage_bounded(session: Session) -> None:
    """A configuration with thousands of problems: the first few dozen said, then how many
    more."""
    lines = session.output.splitlines()
    assert len(lines) <= 100, f"{len(lines):,} lines"
    assert max(map(len, lines)) <= 500


# A model whose memory is measured, for the optimizer's options.
TRACED: dict[str, Any] = {
    "target": "torch.nn:Linear",
    "kwargs": {"in_features": 8, "out_features": 8},
    "max_params": 1000,
    "input_shape": [1, 8],
    "memory": True,
}


# -- the attacks ----------------------------------------------------------------------------

CONFIG_ERROR = "{config}: invalid [tool.cnnbudget] configuration"
BAD_TABLE = "[tool.cnnbudget.models.bad]"
USAGE = ExitCode.USAGE_ERROR
FAILED = ExitCode.TESTS_FAILED
OK = ExitCode.OK
UPDATE = ("--cnn-budget-update",)
SNAP = {"snapshot": SNAPSHOT_FILE}
CRASHED = "bad: crashed checking attack:Net"
NOT_WRITTEN = "the snapshot was not written, and still holds what it held before"
MATH = "$\\foo$"
MARKDOWN_KEY = "a|b<img src=x onerror=alert(1)>`c"


def usage(id: str, *expect: str, **fields: Any) -> Attack:
    return Attack(id, "usage", USAGE, expect=expect, **fields)


def bad_config(id: str, problem: str, *more: str, **table: Any) -> Attack:
    """A usage error in the attack model's table: `problem` is what the line about it says
    after the table's name."""
    models = {"bad": {**BAD, **table}}
    return usage(id, CONFIG_ERROR, f"{BAD_TABLE} {problem}", *more, models=models)


def bad_snapshot(id: str, content: bytes, *expect: str) -> Attack:
    """A snapshot that cannot be read: a usage error, for an update too, and left alone."""
    where = "{dir}/" + SNAPSHOT_FILE
    return usage(id, where, *expect, top=SNAP, snapshot=content, args=UPDATE)


def fault(
    id: str,
    body: str,
    *expect: str,
    prelude: str = "",
    heading: str = "bad: could not build attack:Net",
    **fields: Any,
) -> Attack:
    """A model `bad` whose constructor runs `body`: it fails with `heading` and `expect` (unless
    `failing` says otherwise), and `good` passes."""
    fields.setdefault("failing", ("bad",))
    fields.setdefault("exit", FAILED)
    table = {**BAD, **fields.pop("table", {})}
    headings = (heading,) if heading and fields["failing"] else ()
    return Attack(
        id,
        "model",
        models={"bad": table},
        files=constructor(body, prelude),
        expect=(*headings, *expect),
        **fields,
    )


def hostile_key(label: str, key: str, problem: str) -> Attack:
    """A model key that starts a command: refused before any model is built (it holds `::`,
    and some a character that does not show as itself), and its error starts no command."""
    return usage(
        f"key_{label}",
        CONFIG_ERROR,
        problem,
        models={key: {"target": "nets:Tiny", "max_params": 5}},
        args=("-v",),
    )


def unwritable(id: str, *expect: str, **fields: Any) -> Attack:
    """An output that cannot be written, in an update that otherwise succeeds."""
    fields.setdefault("check", accepted_snapshot_written)
    fields.setdefault("top", SNAP)
    args = ("--cnn-budget-update", *fields.pop("args", ()))
    return Attack(id, "output", FAILED, args=args, expect=expect, **fields)


def charted(id: str, check: Callable[[Session], None], *names: str) -> Attack:
    tiny = {"target": "nets:Tiny", "max_params": 1000}
    models = {name: tiny for name in names}
    return Attack(id, "model", OK, models=models, args=("--cnn-budget-plot", "charts"), check=check)


TINY_TABLE: dict[str, Any] = {"target": "nets:Tiny", "max_params": 1000}
# A package config whose snapshot is the root config's.
SHARING_CONFIG = '[tool.cnnbudget]\nsnapshot = "../cnnbudget.snapshot.json"\n\n[tool.cnnbudget.models.other]\ntarget = "nets:Tiny"\nmax_params = 1000\n'


def surrogate_stored(id: str, body: str) -> Attack:
    """A model whose constructor `body` names a layer with a lone surrogate: it passes, and an
    update stores both models, the surrogate as its escape."""
    escaped = re.search(r'"(\w*\\ud800)"', body)
    assert escaped is not None
    check = stored_escaped(escaped.group(1))
    return fault(id, body, heading="", failing=(), exit=OK, top=SNAP, args=UPDATE, check=check)


def stored_escaped(text: str) -> Callable[[Session], None]:
    """Both models written, `bad`'s with `text` (a lone surrogate's escape) where model code
    had the surrogate."""

    def check(session: Session) -> None:
        entries = read_snapshot(session.path / SNAPSHOT_FILE)
        assert set(entries) == {"bad", "good"}
        layers = entries["bad"].layers
        assert any(text in f"{layer.name} {layer.formula}" for layer in layers)
        report = session.path / SNAPSHOT_FILE
        report.read_bytes().decode("utf-8")  # strict UTF-8

    return check


def fifo_at(name: str) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(project / name)

    return setup


def chart_replaced_the_fifo(session: Session) -> None:
    chart = session.path / "charts" / "good.svg"
    assert chart.is_file()
    assert chart.read_bytes().startswith(b"<?xml")


def no_raw_format_characters(session: Session) -> None:
    shown = {
        *session.summary.read_text(encoding="utf-8"),
        *(c for line in session.stdout.split("\n") if line.startswith("::") for c in line),
    }
    assert not set("\u202e\u200b\u2066\xa0\u3000\ud800") & shown, "raw on GitHub"


def write_a_30000_model_baseline(path: Path) -> None:
    # Written as the attack starts: collecting this module imports no torch.
    models = {f"team-{i % 7}/{'x' * 150}_{i:05d}": 4 for i in range(30_000)}
    (path / "base.json").write_bytes(snapshot_text(models))


def comment_cut_to_githubs_limit(session: Session) -> None:
    # Within GitHub's limit, the rows left out counted; in the subprocess's time limit, which
    # the old fitting (the body rendered again per row left out) ran far past.
    comment = (session.path / "comment.md").read_text(encoding="utf-8")
    assert len(comment.encode("utf-8")) <= 60_000
    assert "more models, and every layer diff, are left out" in comment


def linked_package(project: Path) -> None:
    """A package whose own snapshot is a link to the root config's."""
    (project / "pkg").mkdir()
    config = SHARING_CONFIG.replace('snapshot = "../cnnbudget.snapshot.json"\n', "")
    (project / "pkg" / "pyproject.toml").write_text(config, encoding="utf-8")
    (project / "pkg" / SNAPSHOT_FILE).symlink_to(Path("..") / SNAPSHOT_FILE)


ATTACKS: list[Attack] = [
    # -- values in the configuration --
    bad_config("max_params_inf", "max_params: inf is not a finite", max_params=math.inf),
    bad_config("max_params_nan", "max_params: nan is not a finite", max_params=math.nan),
    bad_config("max_params_negative", "max_params: -5 must be positive", max_params=-5),
    bad_config("max_params_zero", "max_params: 0 must be positive", max_params=0),
    bad_config("max_params_bool", "max_params: expected a number", max_params=True),
    usage(
        "max_params_5000_digits",
        "{config}: malformed TOML: a value cannot be read",
        config=raw_config('target = "attack:Net"', "max_params = " + "9" * 5000),
    ),
    bad_config(
        "max_params_5000_digit_string",
        "max_params: cannot parse '99999",
        "(5,000 characters)",
        max_params="9" * 5000,
    ),
    bad_config("max_params_1e19", f"max_params: {10**19} is too large", max_params=10**19),
    bad_config(
        "kwargs_40_deep",
        "kwargs: tables and arrays nest more than 32",
        kwargs=nested_kwargs(40),
    ),
    usage(
        "toml_100000_deep",
        "{config}: malformed TOML",
        config=raw_config(*BAD_LINES, "kwargs = { x = " + "[" * 100_000 + "]" * 100_000 + " }"),
    ),
    usage(
        "binary_config",
        "{config}: is not UTF-8 text (byte 0x80 at offset 128)",
        config=bytes(range(256)) * 64,
    ),
    usage(
        "non_utf8_byte",
        "{config}: is not UTF-8 text (byte 0xff",
        config=raw_config(*BAD_LINES) + b"# caf\xff\n",
    ),
    usage(
        "config_over_16mib",
        "{config}: larger than 16 MiB",
        config=raw_config(*BAD_LINES) + b"#" * (16 * 2**20) + b"\n",
    ),
    bad_config(
        "unknown_key_injection",
        "'x\\n::error::PWNED': unknown key",
        **{"x" + INJECT: 1},
    ),
    usage(
        "model_key_injection",
        CONFIG_ERROR,
        "model name 'bad\\n::error::PWNED' contains the control character '\\n'",
        models={"bad" + INJECT: BAD},
    ),
    usage(
        "model_key_10000_chars",
        CONFIG_ERROR,
        "is 10,000 characters long; at most 200",
        models={"k" * 10_000: BAD},
    ),
    bad_config(
        "target_injection",
        "target: 'nets:Tiny\\n::error::PWNED' is not of the form",
        target="nets:Tiny" + INJECT,
    ),
    bad_config(
        "target_space",
        "target: 'nets:Tiny Bad' is not of the form",
        target="nets:Tiny Bad",
    ),
    usage(
        "snapshot_path_injection",
        CONFIG_ERROR,
        "[tool.cnnbudget] snapshot: 'snap\\n::error::PWNED' contains the control character",
        top={"snapshot": "snap" + INJECT},
    ),
    bad_config("shape_1e20", "input_shape: dimension 1 of", input_shape=[1, 10**20]),
    bad_config(
        "shape_17_dims",
        "input_shape:",
        "has 17 dimensions; at most 16",
        input_shape=[1] * 17,
    ),
    bad_config(
        "shape_2p50_elements",
        "input_shape:",
        "an input has at most",
        input_shape=[1024] * 5,
    ),
    bad_config(
        "shape_negative",
        "input_shape: dimension 1 of [1, -3] is -3",
        input_shape=[1, -3],
    ),
    bad_config(
        "shape_text_20000_chars",
        "input_shape:",
        "20,000 characters long",
        input_shape="1," * 10_000,
    ),
    bad_config("timeout_negative", "timeout: -1 is negative", timeout=-1),
    bad_config("timeout_inf", "timeout: inf is not a finite", timeout=math.inf),
    usage(
        "top_timeout_over_a_day",
        CONFIG_ERROR,
        "[tool.cnnbudget] timeout: 1000000 seconds is more than a day",
        top={"snapshot": False, "timeout": 10**6},
    ),
    bad_config("level_fatal", "level: expected one of 'error', 'warn'", level="fatal"),
    bad_config("device_cuda", "device: expected one of 'meta', 'cpu'", device="cuda:0"),
    usage(
        "models_not_a_table",
        CONFIG_ERROR,
        "[tool.cnnbudget] models: expected a table, got list",
        config=f"[tool.cnnbudget]\nmodels = [{toml_value(GOOD)}]\n".encode(),
        good=False,
    ),
    usage(
        "duplicate_key",
        "{config}: malformed TOML",
        config=raw_config(*BAD_LINES, "max_params = 6"),
    ),
    # -- options and environment --
    usage(
        "config_option_folder",
        "no configuration file at {dir}/conf (--cnn-budget-config)",
        files={"conf/keep.txt": ""},
        args=("--cnn-budget-config", "conf"),
    ),
    usage(
        "timeout_option_negative",
        "--cnn-budget-timeout: expected seconds from 0",
        args=("--cnn-budget-timeout=-3",),
    ),
    usage(
        "timeout_option_nan",
        "--cnn-budget-timeout: expected seconds from 0",
        args=("--cnn-budget-timeout=nan",),
    ),
    usage(
        "timeout_option_1e309",
        "--cnn-budget-timeout: expected seconds from 0",
        args=("--cnn-budget-timeout=1e309",),
    ),
    usage(
        "json_option_folder",
        "--cnn-budget-json 'out' names a folder, not a file",
        files={"out/keep.txt": ""},
        args=("--cnn-budget-json", "out"),
    ),
    usage(
        "plot_option_file",
        "--cnn-budget-plot 'nets.py' names a file, not a folder",
        args=("--cnn-budget-plot", "nets.py"),
    ),
    usage(
        "step_summary_folder",
        "GITHUB_STEP_SUMMARY='{dir}/out' names a folder, not a file",
        files={"out/keep.txt": ""},
        env={"GITHUB_STEP_SUMMARY": "{dir}/out"},
    ),
    usage(
        "workspace_missing",
        "GITHUB_WORKSPACE='{dir}/gone' is not a folder",
        env={"GITHUB_WORKSPACE": "{dir}/gone"},
    ),
    # -- the snapshot file, each with --cnn-budget-update: it must not be overwritten either --
    bad_snapshot("snapshot_not_json", b"this is not JSON {\n", "not valid JSON"),
    bad_snapshot(
        "snapshot_null_shape",
        snapshot_with(output_shape=[None]),
        "models.good.layers[0].output_shape is not a list of sizes",
    ),
    bad_snapshot(
        "snapshot_non_utf8",
        snapshot_text({"good": 8}).replace(b"Linear", b"Lin\xffear"),
        "not UTF-8 text (byte 0xff",
    ),
    bad_snapshot("snapshot_100000_deep", b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
    bad_snapshot(
        "snapshot_5000_digits",
        snapshot_text({"good": 8}).replace(b'"total": 72', b'"total": ' + b"9" * 5000),
        "models.good.total is out of range",
    ),
    bad_snapshot(
        "snapshot_key_injection",
        json.dumps({"version": 1, "models": {"x" + INJECT: 5}}).encode(),
        "models.'x\\n::error::PWNED' is not an object",
    ),
    bad_snapshot(
        "snapshot_conflict_markers",
        b'{\n<<<<<<< HEAD\n  "version": 1\n=======\n  "version": 1\n>>>>>>> main\n}\n',
        "line 2 has a git merge conflict marker",
    ),
    bad_snapshot(
        "snapshot_version_99",
        json.dumps({"version": 99, "models": {}}).encode(),
        "written by a newer pytest-cnnbudget (format version 99",
    ),
    usage(
        "snapshot_fifo",
        "{dir}/cnnbudget.snapshot.json: cannot read the snapshot: not a file",
        top=SNAP,
        setup=make_fifo,
        args=UPDATE,
    ),
    usage(
        "snapshot_is_a_folder",
        "{dir}/cnnbudget.snapshot.json: cannot read the snapshot: Is a directory",
        top=SNAP,
        setup=make_folder,
        args=UPDATE,
    ),
    usage(
        "snapshot_300mib_sparse",
        "{dir}/cnnbudget.snapshot.json: larger than 256 MiB",
        top=SNAP,
        setup=make_sparse,
        args=UPDATE,
    ),
    # -- models that end, hang or break the process checking them --
    fault("os_exit", "os._exit(1)", "exited with status 1", heading=CRASHED),
    fault(
        "segfault",
        "import ctypes\nctypes.string_at(0)",
        "was killed by SIGSEGV (signal 11)",
        heading=CRASHED,
    ),
    fault(
        "sigkill", "os.kill(os.getpid(), 9)", "was killed by SIGKILL (signal 9)", heading=CRASHED
    ),
    fault(
        "segfault_under_xdist",
        "print('::error::PWNED')\nimport ctypes\nctypes.string_at(0)",
        "was killed by SIGSEGV (signal 11)",
        heading=CRASHED,
        args=("-n", "2"),
        subprocess=True,
    ),
    fault(
        "infinite_loop",
        "while True: pass",
        "did not finish within its time limit of 1 s",
        "it was at (innermost last):",
        heading="bad: timed out checking attack:Net",
        table={"timeout": 1},
        check=stuck_at_the_loop,
    ),
    fault("sys_exit", "sys.exit(2)", "the model's code called sys.exit(2)"),
    # Not one of pytest's outcomes: a failure, not a skip.
    fault(
        "base_exception",
        "raise Cancelled('boom')",
        "Cancelled: boom",
        prelude="class Cancelled(BaseException):\n    pass\n",
    ),
    fault(
        "sys_exit_injection",
        "sys.exit('x\\n::error::PWNED')",
        "called sys.exit('x\\n::error::PWNED')",
    ),
    fault(
        "sys_exit_in_process",
        "sys.exit(2)",
        "the model's code called sys.exit(2)",
        args=("--cnn-budget-isolation=off",),
    ),
    fault(
        "str_raises",
        "raise Unprintable()",
        "Unprintable: <its message could not be shown: str() raised ZeroDivisionError>",
        prelude="class Unprintable(Exception):\n    def __str__(self):\n        return 1 / 0\n",
    ),
    # Not Ctrl-C of the run, which goes on: the checking process ignores SIGINT, so only the
    # model's code can raise it there, and it is that model's failure, with where.
    fault(
        "keyboard_interrupt",
        "raise KeyboardInterrupt",
        "the model's code raised KeyboardInterrupt",
        'File "{dir}/attack.py", line 10, in __init__',
    ),
    fault("recursion", "def f(n):\n    return f(n + 1)\nf(0)", "RecursionError"),
    fault("memory_error", "raise MemoryError('cannot allocate')", "MemoryError: cannot allocate"),
    # -- global state a constructor changes --
    fault(
        "default_dtype_float64",
        "torch.set_default_dtype(torch.float64)",
        failing=(),
        exit=OK,
        args=("--cnn-budget-json", "report.json"),
        check=next_model_is_float32,
    ),
    fault("sys_path_cleared", "sys.path.clear()", failing=(), exit=OK),
    fault(
        "chdir_root",
        "os.chdir('/')",
        failing=(),
        exit=OK,
        top=SNAP,
        args=UPDATE,
        check=written_in_the_project,
    ),
    # -- what a constructor prints, logs and warns --
    # -W default: in-process sessions inherit this suite's filterwarnings = error.
    fault(
        "warning_injection",
        "warnings.warn('::error::PWNED')",
        failing=(),
        exit=OK,
        args=("-W", "default"),
        check=warning_neutralized,
    ),
    fault(
        "warning_multiline_injection",
        "warnings.warn('x\\n::error::PWNED')",
        failing=(),
        exit=OK,
        args=("-W", "default"),
        check=shown_neutralized("::error::PWNED"),
    ),
    fault(
        "print_carriage_return",
        "print('\\r::error::PWNED')",
        failing=(),
        exit=OK,
        check=shown_neutralized("::error::PWNED"),
    ),
    fault(
        "print_line_separator",
        "print('x\\u2028::error::PWNED')\nraise ValueError('after printing')",
        "ValueError: after printing",
        check=shown_neutralized("::error::PWNED"),
    ),
    fault(
        "print_every_payload",
        "".join(f"print({p!r})\n" for p in PAYLOADS) + "raise ValueError('after printing')",
        "ValueError: after printing",
        check=shown_neutralized(*PAYLOADS),
    ),
    fault(
        "log_crlf",
        "logging.warning('a\\r\\n::error::PWNED')\nraise ValueError('after logging')",
        "ValueError: after logging",
        check=shown_neutralized("::error::PWNED"),
    ),
    fault(
        "stderr_write",
        "sys.stderr.write('::warning::PWNED\\n')",
        failing=(),
        exit=OK,
        check=shown_neutralized("::warning::PWNED"),
    ),
    fault(
        "fd_write",
        "os.write(1, b'::error::PWNED\\n')\nos.write(2, b'::warning::PWNED\\n')",
        failing=(),
        exit=OK,
        subprocess=True,
    ),
    fault(
        "warning_as_error",
        "warnings.warn('deprecated width')",
        "UserWarning: deprecated width",
        args=("-W", "error::UserWarning"),
    ),
    fault(
        "exception_injection",
        "raise ValueError('bad\\n::error::PWNED')",
        "ValueError: bad",
        check=shown_neutralized("::error::PWNED"),
    ),
    fault(
        "exception_line_separator",
        "raise ValueError('bad\\u2028::error::PWNED')",
        "ValueError: bad",
    ),
    fault(
        "exception_rare_line_breaks",
        "raise ValueError('bad\\x85::add-mask::PWNED\\x1c::stop-commands::PWNED\\v::error::PWNED')",
        "ValueError: bad",
    ),
    fault(
        "kwargs_injection",
        "",
        "ValueError: kwargs injection",
        prelude="def make(**kwargs):\n    raise ValueError('kwargs injection')\n",
        heading="bad: could not build attack:make",
        table={"target": "attack:make", "kwargs": {"x": INJECT, "::error::PWNED": 1}},
    ),
    # -- what a build needs that CI does not have --
    fault(
        "connection_error",
        "open(os.path.join(os.path.dirname(__file__), 'calls.log'), 'a').write('call\\n')\n"
        "raise ConnectionError('Max retries exceeded with url: /weights.pth')",
        "ConnectionError: Max retries exceeded",
        "hint: counting needs no weights: set pretrained = false",
        check=built_once,
    ),
    fault("cuda_device", "torch.cuda.current_device()", "hint: the constructor needs a GPU"),
    fault(
        "pytest_skip",
        "import pytest\npytest.skip('weights not available')",
        failing=(),
        skipped=("bad",),
        exit=OK,
        check=skip_names_the_model,
    ),
    fault(
        "pytest_fail_injection",
        "import pytest\npytest.fail('no weights\\n::error::PWNED')",
        "no weights",
        heading="",
    ),
    fault(
        "pytest_skip_injection",
        "import pytest\npytest.skip('no weights\\n::error::PWNED')",
        failing=(),
        skipped=("bad",),
        exit=OK,
    ),
    fault(
        "pytest_xfail_injection",
        "import pytest\npytest.xfail('no weights\\n::warning::PWNED')",
        failing=(),
        xfailed=("bad",),
        exit=OK,
    ),
    fault(
        "target_not_callable",
        "",
        "target 'os:sep' is a str, not a class or factory",
        heading="bad: could not build os:sep",
        table={"target": "os:sep"},
    ),
    fault(
        "unexpected_kwargs",
        "",
        "TypeError: Net.__init__() got an unexpected keyword argument 'depth'",
        table={"kwargs": {"depth": 3}},
    ),
    fault(
        "returns_dict",
        "",
        "attack:make returned a dict, not a torch.nn.Module",
        prelude="def make():\n    return {'fc': 1}\n",
        heading="bad: could not build attack:make",
        table={"target": "attack:make"},
    ),
    fault(
        "import_error",
        "",
        "cannot import module 'attack'",
        "ModuleNotFoundError: No module named 'no_such_dependency'",
        prelude="import no_such_dependency\n",
    ),
    fault(
        "forward_mismatch",
        "",
        heading="bad: could not run forward nets:Cifar",
        table={"target": "nets:Cifar", "max_params": "600k", "input_shape": [1, 3, 16, 16]},
    ),
    # -- hostile model keys, which every report shows --
    Attack(
        "key_markdown",
        "model",
        FAILED,
        models={MARKDOWN_KEY: {"target": "nets:Tiny", "max_params": 5}},
        failing=(MARKDOWN_KEY,),
        check=summary_keeps_its_columns,
    ),
    hostile_key("command", "::error::PWNED", "contains `::`"),
    hostile_key("indented_command", "   ::warning::PWNED", "contains `::`"),
    hostile_key("ideographic_space", "\u3000::error::PWNED", "contains U+3000"),
    hostile_key("byte_order_mark", "\ufeff::add-mask::PWNED", "contains U+FEFF"),
    # -- outputs that cannot be written --
    unwritable(
        "json_dev_full",
        "could not write the JSON report (--cnn-budget-json /dev/full): No space left on device",
        args=("--cnn-budget-json=/dev/full",),
    ),
    unwritable(
        "json_dev_full_update_reported",
        f"{SNAPSHOT_FILE}: added good",
        args=("--cnn-budget-json=/dev/full",),
    ),
    unwritable(
        "json_parent_is_a_file",
        "could not write the JSON report (--cnn-budget-json {dir}/nets.py/report.json)",
        args=("--cnn-budget-json", "nets.py/report.json"),
    ),
    unwritable(
        "step_summary_dev_full",
        "could not write the job summary (GITHUB_STEP_SUMMARY=/dev/full): No space left on device",
        env={"GITHUB_STEP_SUMMARY": "/dev/full"},
    ),
    unwritable(
        "snapshot_in_sysfs",
        NOT_WRITTEN,
        "/sys/kernel/cnnbudget.snapshot.json",
        top={"snapshot": "/sys/kernel/cnnbudget.snapshot.json"},
        check=None,
    ),
    unwritable(
        "snapshot_folder_read_only",
        NOT_WRITTEN,
        "Permission denied",
        top={"snapshot": "locked/cnnbudget.snapshot.json"},
        setup=make_read_only,
        check=None,
        skip="root writes to a folder of mode 0555" if IS_ROOT else None,
    ),
    # -- outputs that must work however models are named --
    charted("plot_math_text", math_title_charted, MATH),
    charted("plot_similar_names", six_distinct_charts, "a b", "a_b", "a/b"),
    Attack(
        "snapshot_symlink",
        "model",
        OK,
        top=SNAP,
        setup=make_link,
        args=UPDATE,
        check=updated_through_the_link,
    ),
    # -- JSON outputs strict, optimizer options at their stage, bounded error texts --
    # A constructor's or an optimizer's `inf` is legitimate, and TOML writes it: the JSON outputs
    # write it as the text "inf", never as `Infinity`.
    Attack(
        "json_non_finite_optimizer_kwargs",
        "model",
        OK,
        models={
            "bad": {
                **TRACED,
                "optimizer": "sgd",
                "optimizer_kwargs": {"lr": math.inf, "momentum": math.nan, "dampening": -math.inf},
            }
        },
        args=(
            "--cnn-budget-json=report.json",
            "--json-report",
            "--json-report-file=pytest-report.json",
        ),
        check=non_finite_options_as_text,
    ),
    Attack(
        "optimizer_kwargs_unknown_key",
        "model",
        FAILED,
        models={"bad": {**TRACED, "optimizer_kwargs": {"lrr": 0.1}}},
        args=("--cnn-budget-json=report.json",),
        failing=("bad",),
        expect=(
            "bad: could not trace the memory of torch.nn:Linear",
            "optimizer_kwargs: 'lrr' is not a keyword argument of torch.optim.AdamW (did you mean 'lr'?)",
        ),
        check=failed_at_the_memory_stage,
    ),
    Attack(
        "optimizer_kwargs_refused_value",
        "model",
        FAILED,
        models={"bad": {**TRACED, "optimizer": "adam", "optimizer_kwargs": {"lr": math.nan}}},
        args=("--cnn-budget-json=report.json",),
        failing=("bad",),
        expect=(
            "bad: could not trace the memory of torch.nn:Linear",
            "optimizer adam (torch.optim.Adam) could not be made from optimizer_kwargs {{'lr': nan}}: ValueError: Invalid learning rate: nan",
        ),
        check=failed_at_the_memory_stage,
    ),
    Attack(
        "optimizer_kwargs_5000_unknown_keys",
        "model",
        FAILED,
        models={"bad": {**TRACED, "optimizer_kwargs": {f"k{i}": i for i in range(5000)}}},
        failing=("bad",),
        expect=(
            "optimizer_kwargs: 'k0', 'k1'",
            "more are not keyword arguments of torch.optim.AdamW",
        ),
        check=failures_bounded,
    ),
    fault(
        "kwargs_5000_keys",
        "",
        "building attack:Net(k0=0, k1=1, ",
        "more) raised TypeError: Net.__init__() got an unexpected keyword argument 'k0'",
        table={"kwargs": {f"k{i}": i for i in range(5000)}},
        check=failures_bounded,
    ),
    fault(
        "kwargs_key_20000_chars",
        "",
        "TypeError: Net.__init__() got an unexpected keyword argument 'kkkk",
        table={"kwargs": {"k" * 20_000: 1}},
        check=failures_bounded,
    ),
    fault(
        "exception_100000_chars",
        "raise ValueError('x' * 100_000 + '\\n' + 'y\\n' * 10_000)",
        "ValueError: xxxx",
        "… and 9,981 more lines",
        check=failures_bounded,
    ),
    usage(
        "unknown_keys_5000",
        CONFIG_ERROR,
        f"{BAD_TABLE} k0: unknown key",
        "… and 4,950 more problems",
        models={"bad": {**BAD, **{f"k{i}": i for i in range(5000)}}},
        check=usage_bounded,
    ),
    usage(
        "kwargs_5000_special_keys",
        CONFIG_ERROR,
        f"{BAD_TABLE}: kwargs._k0_: not supported",
        "… and 4,950 more problems",
        models={"bad": {**BAD, "kwargs": {f"_k{i}_": i for i in range(5000)}}},
        check=usage_bounded,
    ),
    # -- what reaches GitHub's outputs: format characters, the comment's size --
    Attack(
        "github_format_characters_escaped",
        "model",
        FAILED,
        models={
            # A layer named with a right-to-left override, whose forward pass fails naming it;
            # a constructor's error holding format characters, non-ASCII spaces, a surrogate.
            "layer": {"target": "spoof:Net", "max_params": 1000, "input_shape": [1, 3]},
            "error": {"target": "spoof:Broken", "max_params": 1000},
        },
        files={
            "spoof.py": "from torch import nn\n\n\nclass Net(nn.Module):\n"
            "    def __init__(self):\n"
            "        super().__init__()\n"
            "        self.add_module('fc\\u202egnp_exe', nn.Linear(8, 8))\n\n"
            "    def forward(self, x):\n"
            "        return getattr(self, 'fc\u202egnp_exe')(x)\n\n\n"
            "class Broken(nn.Module):\n"
            "    def __init__(self):\n"
            "        raise ValueError('no weights: fc\\u202egnp.exe\\u200b\\u2066\\xa0\\u3000\\ud800')\n"
        },
        failing=("error", "layer"),
        expect=(  # as the annotations show them
            "fc\\u202egnp_exe (Linear) expects 8 input features",
            "ValueError: no weights: fc\\u202egnp.exe\\u200b\\u2066\\xa0\\u3000\\ud800",
        ),
        # Neither the job summary nor an annotation holds one of them as it is.
        check=no_raw_format_characters,
    ),
    Attack(
        "comment_of_a_30000_model_baseline",
        "model",
        OK,
        args=("--cnn-budget-baseline", "base.json", "--cnn-budget-comment", "comment.md"),
        setup=write_a_30000_model_baseline,
        check=comment_cut_to_githubs_limit,
        subprocess=True,
    ),
    # -- snapshot entries kept: fixture entries, shared snapshots, odd files --
    usage(
        "key_reads_as_a_node_id_with_a_space",
        CONFIG_ERROR,
        "contains `::`, which names the checks of the cnn_budget fixture",
        models={"my tests/test_a.py::test_x": TINY_TABLE},
    ),
    usage(
        "key_right_to_left_override",
        CONFIG_ERROR,
        "contains U+202E",
        models={"ab\u202ecd": TINY_TABLE},
    ),
    usage(
        "key_zero_width_space", CONFIG_ERROR, "contains U+200B", models={"ab\u200bcd": TINY_TABLE}
    ),
    usage("key_no_break_space", CONFIG_ERROR, "contains U+00A0", models={"ab\u00a0cd": TINY_TABLE}),
    Attack(
        "snapshot_shared_by_two_configs_in_one_run",
        "usage",
        ExitCode.INTERRUPTED,
        top=SNAP,
        files={"pkg/pyproject.toml": SHARING_CONFIG},
        args=UPDATE,
        expect=("is also the snapshot of", "{dir}/pyproject.toml", "{dir}/pkg/pyproject.toml"),
    ),
    Attack(
        "snapshot_shared_with_a_config_not_collected",
        "usage",
        USAGE,
        top=SNAP,
        files={"pkg/pyproject.toml": SHARING_CONFIG},
        snapshot=snapshot_text({"good": 8, "other": 4}),
        args=(*UPDATE, "pkg"),
        good=False,
        expect=("is also the snapshot of", "{dir}/pyproject.toml", "{dir}/pkg/pyproject.toml"),
    ),
    Attack(
        "snapshot_shared_through_a_link",
        "usage",
        USAGE,
        top=SNAP,
        snapshot=snapshot_text({"good": 8}),
        setup=linked_package,
        args=(*UPDATE, "pkg"),
        good=False,
        expect=("is also the snapshot of", "{dir}/pyproject.toml", "{dir}/pkg/pyproject.toml"),
    ),
    bad_snapshot(
        "snapshot_models_twice",
        b'{"version": 1, "models": {"good": {}}, "models": {}}\n',
        "the key 'models' is written twice in one object",
    ),
    bad_snapshot(
        "snapshot_model_twice",
        snapshot_text({"good": 8}).replace(b'"models": {', b'"models": {"good": {},', 1),
        "the key 'good' is written twice in one object",
    ),
    bad_snapshot(
        "snapshot_layer_key_twice",
        snapshot_text({"good": 8}).replace(b'"params": 72,', b'"params": 72, "params": 1,', 1),
        "the key 'params' is written twice in one object",
    ),
    surrogate_stored("layer_name_lone_surrogate", 'self.add_module("x\\ud800", nn.Linear(2, 2))'),
    surrogate_stored(
        "layer_alias_lone_surrogate",
        'self.lin = nn.Linear(2, 2)\nself.add_module("b\\ud800", self.lin)',
    ),
    fault(
        "layer_name_too_long_to_store",
        'self.add_module("x" * 5000, nn.Linear(2, 2))',
        "its snapshot entry cannot be stored: models.bad.layers[0].name is 5,000 characters",
        heading="",
        top=SNAP,
        args=UPDATE,
        check=accepted_snapshot_written,
    ),
    # -- outputs checked up front and written in bounded time --
    *(
        Attack(
            f"{label}_fifo_nothing_reads",
            "usage",
            USAGE,
            args=args,
            env=env,
            setup=fifo_at(name),
            expect=(f"{shown} names a FIFO that nothing reads",),
            subprocess=True,  # were it to wait on the FIFO, the time limit ends it
        )
        for label, name, args, env, shown in (
            (
                "json",
                "report.json",
                ("--cnn-budget-json", "report.json"),
                {},
                "--cnn-budget-json 'report.json'",
            ),
            (
                "comment",
                "comment.md",
                ("--cnn-budget-comment", "comment.md"),
                {},
                "--cnn-budget-comment 'comment.md'",
            ),
            (
                "step_summary",
                "summary.md",
                (),
                {"GITHUB_STEP_SUMMARY": "{dir}/summary.md"},
                "GITHUB_STEP_SUMMARY='{dir}/summary.md'",
            ),
        )
    ),
    usage(
        "json_names_a_folder",
        "--cnn-budget-json 'charts' names a folder, not a file",
        args=("--cnn-budget-json", "charts"),
        setup=lambda path: (path / "charts").mkdir(),
    ),
    Attack(
        "chart_fifo_in_its_place",
        "model",
        OK,
        args=("--cnn-budget-plot", "charts"),
        setup=fifo_at("charts/good.svg"),
        check=chart_replaced_the_fifo,
        subprocess=True,
    ),
]


# -- running one -----------------------------------------------------------------------------


def prepare(pytester: pytest.Pytester, attack: Attack) -> Project:
    """The attack's project folder: configuration, modules, files and snapshot."""
    models = {**attack.models, **({"good": GOOD} if attack.good else {})}
    project = Project(pytester, top=attack.top, **models)
    (project.path / "good_net.py").write_text(GOOD_SOURCE, encoding="utf-8")
    if attack.config is not None:
        (project.path / RAW_CONFIG).write_bytes(attack.config)
    for name, content in attack.files.items():
        path = project.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    if attack.snapshot is not None:
        project.snapshot.write_bytes(attack.snapshot)
    if attack.setup is not None:
        attack.setup(project.path)
    return project


def github_env(attack: Attack, path: Path) -> dict[str, str]:
    """GitHub Actions as the runner sets it up, with the attack's changes."""
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(path),
        "GITHUB_STEP_SUMMARY": str(path / "step_summary.md"),
    }
    env.update({key: value.format(dir=path) for key, value in attack.env.items()})
    return env


def session_args(attack: Attack) -> list[str]:
    flag = [] if "--cnn-budget-update" in attack.args else ["--cnn-budget"]
    config = [] if attack.config is None else ["--cnn-budget-config", RAW_CONFIG]
    # Hypothesis's plugin imports hypothesis at the end of every session: in-process runs
    # restore sys.modules, so each would pay two seconds for it.
    common = [
        "--cnn-budget-github=on",
        "-rA",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
    ]
    return [*flag, *config, *common, *attack.args]


def run_attack(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, attack: Attack
) -> Session:
    project = prepare(pytester, attack)
    env = github_env(attack, project.path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = session_args(attack)
    if attack.subprocess:
        result = pytester.runpytest_subprocess(*args, timeout=60)
    else:
        result = pytester.runpytest(*args)
    summary = Path(env["GITHUB_STEP_SUMMARY"])
    out, err = result.stdout.str(), result.stderr.str()
    return Session(attack, int(result.ret), out, err, project.path, summary)


def params(attacks: list[Attack]) -> list[Any]:
    marks = {
        attack.id: [
            *([pytest.mark.skip(reason=attack.skip)] if attack.skip else []),
            *([pytest.mark.xfail(strict=True, reason=attack.xfail)] if attack.xfail else []),
        ]
        for attack in attacks
    }
    return [pytest.param(a, id=a.id, marks=marks[a.id]) for a in attacks]


@pytest.mark.parametrize("attack", params(ATTACKS))
def test_attack(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, attack: Attack) -> None:
    judge(run_attack(pytester, monkeypatch, attack))


def test_the_verdict_catches_what_it_looks_for() -> None:
    text = "ok\n::error title=cnn-budget%3A x,file=a.py::fine\n| ::error::defused\n"
    assert leaked_commands(text) == []
    for leak in ("\r", "\u2028", "\x85", "\n  ", "\n\u3000", "\n\ufeff"):
        assert leaked_commands(f"x{leak}::set-output name=x::PWNED") == [
            "::set-output name=x::PWNED"
        ]
    table = "| model | used |\n|---|---|\n| a\\|b | `1 \\| 2` |\n"
    assert markdown_problems(table) == []
    assert len(markdown_problems(table + "| a|b | c |\n")) == 1
    assert markdown_problems("```text\n<img src=x>\n```\n`<script>`\n") == []
    assert markdown_problems("<summary>x <img src=x></summary>\n") == ["raw <img outside code"]


def test_the_table_holds_what_it_promises() -> None:
    ids = [attack.id for attack in ATTACKS]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 60
    # Every attack that injects user text also has GitHub on: session_args always passes it.
    assert all("--cnn-budget-github=off" not in a.args for a in ATTACKS)


# -- process-level faults: kill -9, concurrency, a file size limit ---------------------------


def pytest_command(*args: str) -> list[str]:
    """A pytest process of its own; unbuffered, so its progress can be watched as it happens."""
    return [sys.executable, "-u", "-m", "pytest", "-p", "no:cacheprovider", *args]


def process_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PYTEST_"))}
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(f".{SNAPSHOT_FILE}.*.tmp"))


def assert_old_or_new(path: Path, old: bytes, new: bytes, when: object) -> None:
    now = path.read_bytes()
    read_snapshot(path)  # valid, whichever it holds
    assert now in (old, new), f"killed at {when}: neither the old snapshot nor the new one"


def killed_at(project: Project, marker: str, delay: float) -> None:
    """Start `pytest --cnn-budget-update`, and kill -9 it `delay` seconds after its output
    shows `marker`."""
    process = subprocess.Popen(
        pytest_command("--cnn-budget-update"),
        cwd=project.path,
        env=process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while marker.encode() not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")[-2000:]
            ready, _, _ = select.select([process.stdout], [], [], 1.0)
            chunk = os.read(process.stdout.fileno(), 65536) if ready else b""
            assert chunk or not ready, f"exited before {marker!r}: {seen[-2000:]!r}"
            seen += chunk
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        # Then the rest of its session, the checking process it forked (which would end by
        # itself once its socket closes), and pytest itself if an assertion came first.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()


# Where the runs are killed: before any model, mid-run, and as the last model is reported,
# right before (or while) the snapshot is written.
KILL_MOMENTS = [
    ("collected", 0.0),
    ("%]", 0.0),
    ("[100%]", 0.0),
    ("[100%]", 0.02),
    ("[100%]", 0.06),
]


def test_kill_9_mid_update_leaves_the_old_or_the_new_snapshot(pytester: pytest.Pytester) -> None:
    names = [f"m{i:03d}" for i in range(200)]
    project = Project(
        pytester, **{name: {"target": "nets:Tiny", "max_params": 1000} for name in names}
    )
    old = snapshot_text(dict.fromkeys(names, 4))  # every model has grown since: all updated
    left: list[bytes] = []
    for marker, delay in KILL_MOMENTS:
        project.snapshot.write_bytes(old)
        killed_at(project, marker, delay)
        left.append(project.snapshot.read_bytes())
    done = subprocess.run(
        pytest_command("--cnn-budget-update", "-q"),
        cwd=project.path,
        env=process_env(),
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout.decode()[-3000:]
    new = project.snapshot.read_bytes()
    assert new != old
    assert read_snapshot(project.snapshot)["m000"].total == 72
    assert left[0] == old  # killed before any model was checked: nothing written
    for moment, content in zip(KILL_MOMENTS, left, strict=True):
        project.snapshot.write_bytes(content)
        assert_old_or_new(project.snapshot, old, new, moment)
    assert temporaries(project.path) == []


SLOW = """
import time

from torch import nn


class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        time.sleep(1.0)  # both runs read the empty snapshot before either writes
        self.fc = nn.Linear(3, 3)
"""


def test_concurrent_updates_of_disjoint_models_both_land(pytester: pytest.Pytester) -> None:
    slow = {"target": "slow:Slow", "max_params": 100}
    project = Project(pytester, slow_a=slow, slow_b=slow, good=GOOD)
    pytester.makepyfile(slow=SLOW, good_net=GOOD_SOURCE)
    runs = [
        subprocess.Popen(
            pytest_command("--cnn-budget-update", "-k", subset),
            cwd=project.path,
            env=process_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for subset in ("slow_a or good", "slow_b")
    ]
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
    for run, out in zip(runs, outputs, strict=True):
        assert run.returncode == 0, out[-3000:]
        assert "Traceback" not in out
    assert set(read_snapshot(project.snapshot)) == {"slow_a", "slow_b", "good"}
    # The race happened: the second writer found the first one's entries on disk.
    assert any("the snapshot changed on disk during this run" in out for out in outputs), outputs
    assert temporaries(project.path) == []


def test_a_file_size_limit_keeps_the_old_snapshot(pytester: pytest.Pytester) -> None:
    project = Project(pytester, good=GOOD, extra={"target": "nets:Tiny", "max_params": 1000})
    pytester.makepyfile(good_net=GOOD_SOURCE)
    old = snapshot_text({"good": 8})
    project.snapshot.write_bytes(old)
    limit = len(old)  # the new snapshot, with `extra` added, is longer

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    done = subprocess.run(
        pytest_command("--cnn-budget-update", "--cnn-budget-github=off"),
        cwd=project.path,
        env=process_env(),
        capture_output=True,
        timeout=120,
        preexec_fn=limited,
    )
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == ExitCode.TESTS_FAILED, out[-3000:]
    assert (
        f"{NOT_WRITTEN}: {project.snapshot}: cannot write the snapshot: File too large (EFBIG)"
        in out
    )
    assert "Traceback" not in out
    assert "INTERNALERROR" not in out
    assert project.snapshot.read_bytes() == old
    assert temporaries(project.path) == []


# -- snapshot entries kept: fixture checks however their test is defined ---------------------

CHECK = "def {name}(cnn_budget):\n    from nets import Tiny\n\n    cnn_budget(Tiny(4), max_params=1000{call})\n"


def check_fn(name: str = "test_x", call: str = "", indent: str = "") -> str:
    """A test that checks Tiny(4) with the fixture."""
    source = CHECK.format(name=name, call=call)
    return textwrap.indent(source, indent)


# Each: the test files, and the entry its check is stored under. The stale rule must read each
# as pytest collects it, not as one reading of the source would.
FIXTURE_LAYOUTS: dict[str, tuple[dict[str, str], str]] = {
    "imported_from_a_helper": (
        {"tests/helpers.py": check_fn(), "tests/test_a.py": "from helpers import test_x\n"},
        "tests/test_a.py::test_x",
    ),
    "under_an_if": (
        {
            "tests/test_a.py": "import sys\n\nif sys.version_info >= (3,):\n"
            + check_fn(indent="    ")
        },
        "tests/test_a.py::test_x",
    ),
    "under_a_try": (
        {"tests/test_a.py": "try:\n" + check_fn(indent="    ") + "except ImportError:\n    pass\n"},
        "tests/test_a.py::test_x",
    ),
    "made_in_a_loop": (
        {
            "tests/test_a.py": "def make():\n"
            + check_fn("test", indent="    ")
            + "    return test\n\n\nfor n in (4,):\n    globals()[f'test_gen_{n}'] = make()\n"
        },
        "tests/test_a.py::test_gen_4",
    ),
    "in_a_folder_with_a_space": ({"my tests/test_a.py": check_fn()}, "my tests/test_a.py::test_x"),
    "parametrized": (
        {
            "tests/test_a.py": "import pytest\n\n\n@pytest.mark.parametrize('w', [4])\n"
            + check_fn().replace("(cnn_budget)", "(cnn_budget, w)")
        },
        "tests/test_a.py::test_x[4]",
    ),
    "a_named_call": (
        {"tests/test_a.py": check_fn(call=", name='student'")},
        "tests/test_a.py::test_x[student]",
    ),
    "inherited_from_a_helper_class": (
        {
            "tests/helpers.py": "class Base:\n"
            + check_fn()
            .replace("(cnn_budget)", "(self, cnn_budget)")
            .replace("\n", "\n    ")
            .join(["    ", ""]),
            "tests/test_a.py": "from helpers import Base\n\n\nclass TestC(Base):\n    pass\n",
        },
        "tests/test_a.py::TestC::test_x",
    ),
    "in_a_nested_class": (
        {
            "tests/test_a.py": "class TestA:\n    class TestB:\n"
            + check_fn()
            .replace("(cnn_budget)", "(self, cnn_budget)")
            .replace("\n", "\n        ")
            .join(["        ", ""])
        },
        "tests/test_a.py::TestA::TestB::test_x",
    ),
}


def fixture_project(pytester: pytest.Pytester, files: Mapping[str, str]) -> Project:
    project = Project(pytester, top=SNAP, good=GOOD)
    (project.path / "good_net.py").write_text(GOOD_SOURCE, encoding="utf-8")
    for name, source in files.items():
        (project.path / name).parent.mkdir(parents=True, exist_ok=True)
        (project.path / name).write_text(source, encoding="utf-8")
    return project


def update(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "--cnn-budget-update", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args
    )


@pytest.mark.parametrize("layout", list(FIXTURE_LAYOUTS))
def test_a_deselected_fixture_check_keeps_its_entry_and_a_gone_one_loses_it(
    pytester: pytest.Pytester, layout: str
) -> None:
    files, entry = FIXTURE_LAYOUTS[layout]
    project = fixture_project(pytester, files)
    first = update(pytester)
    assert first.ret == ExitCode.OK, first.stdout.str()[-3000:]
    assert set(read_snapshot(project.snapshot)) == {"good", entry}
    # -k selects every configured model and deselects the test: the update is complete for
    # the config, and the fixture entry must stay.
    partial = update(pytester, "-k", "good")
    assert partial.ret == ExitCode.OK, partial.stdout.str()[-3000:]
    assert "deselected" in partial.stdout.str()
    assert set(read_snapshot(project.snapshot)) == {"good", entry}
    assert "stale" not in partial.stdout.str()
    # The test itself removed (its module still collected): now the entry is stale, and goes.
    for name in files:
        if Path(name).name.startswith("test_"):
            (project.path / name).write_text("", encoding="utf-8")
    gone = update(pytester)
    assert gone.ret == ExitCode.OK, gone.stdout.str()[-3000:]
    assert set(read_snapshot(project.snapshot)) == {"good"}
    assert f"removed stale {entry}" in gone.stdout.str()


@pytest.mark.parametrize("layout", ["imported_from_a_helper", "in_a_folder_with_a_space"])
def test_under_xdist_a_deselected_fixture_check_keeps_its_entry(
    pytester: pytest.Pytester, layout: str
) -> None:
    # The controller collects nothing: what the workers collected reaches it at their end.
    files, entry = FIXTURE_LAYOUTS[layout]
    project = fixture_project(pytester, files)
    assert update(pytester).ret == ExitCode.OK
    partial = pytester.runpytest_subprocess(
        "--cnn-budget-update", "-p", "no:cacheprovider", "-n", "2", "-k", "good", timeout=120
    )
    assert partial.ret == ExitCode.OK, partial.stdout.str()[-3000:]
    assert set(read_snapshot(project.snapshot)) == {"good", entry}
    for name in files:
        if Path(name).name.startswith("test_"):
            (project.path / name).write_text("", encoding="utf-8")
    gone = pytester.runpytest_subprocess(
        "--cnn-budget-update", "-p", "no:cacheprovider", "-n", "2", timeout=120
    )
    assert gone.ret == ExitCode.OK, gone.stdout.str()[-3000:]
    assert set(read_snapshot(project.snapshot)) == {"good"}


def only_fixture_checks(pytester: pytest.Pytester, files: Mapping[str, str]) -> Path:
    """A project whose budgets are all fixture calls: every update is complete, so an entry
    judged stale is removed at once."""
    pytester.makepyfile(nets=NETS_SOURCE)
    pytester.syspathinsert()
    (pytester.path / "pyproject.toml").write_text("[tool.cnnbudget]\n", encoding="utf-8")
    for name, source in files.items():
        (pytester.path / name).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / name).write_text(source, encoding="utf-8")
    return pytester.path / SNAPSHOT_FILE


def test_last_failed_keeps_the_entries_of_the_tests_it_does_not_rerun(
    pytester: pytest.Pytester,
) -> None:
    # --lf reports of each module only its failed tests: the others still exist.
    flaky = "import os\n\n\ndef test_flaky():\n    assert not os.environ.get('FAILME')\n"
    snapshot = only_fixture_checks(
        pytester, {"tests/test_a.py": check_fn() + flaky, "tests/test_b.py": check_fn("test_z")}
    )
    entries = {"tests/test_a.py::test_x", "tests/test_b.py::test_z"}
    assert pytester.runpytest("--cnn-budget-update").ret == ExitCode.OK
    assert set(read_snapshot(snapshot)) == entries
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAILME", "1")
        assert pytester.runpytest("--cnn-budget").ret == ExitCode.TESTS_FAILED
    rerun = pytester.runpytest("--lf", "--cnn-budget-update")
    assert rerun.ret == ExitCode.OK, rerun.stdout.str()[-3000:]
    assert set(read_snapshot(snapshot)) == entries
    assert "stale" not in rerun.stdout.str()


def test_a_doctests_check_is_kept_by_a_run_that_collects_no_doctests(
    pytester: pytest.Pytester,
) -> None:
    doctest = (
        'def helper():\n    """\n    >>> from nets import Tiny\n'
        '    >>> _ = getfixture(\'cnn_budget\')(Tiny(4), max_params=1000)\n    """\n\n\n'
        "def test_q():\n    pass\n"
    )
    snapshot = only_fixture_checks(pytester, {"tests/test_d.py": doctest})
    first = pytester.runpytest("--doctest-modules", "--cnn-budget-update", "tests")
    assert first.ret == ExitCode.OK, first.stdout.str()[-3000:]
    (entry,) = read_snapshot(snapshot)
    assert entry.endswith("::test_d.helper")
    again = pytester.runpytest("--cnn-budget-update", "-k", "test_q", "tests")
    assert again.ret == ExitCode.OK, again.stdout.str()[-3000:]
    assert set(read_snapshot(snapshot)) == {entry}


def test_a_packages_checks_are_kept_when_pytest_starts_in_another_folder(
    pytester: pytest.Pytester,
) -> None:
    # Node ids are relative to the rootdir: run from the package, the entries read
    # `tests/test_a.py::…`; run from the repository, `pkg/tests/test_a.py::…`.
    pytester.makepyfile(nets=NETS_SOURCE)
    pytester.syspathinsert()
    (pytester.path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\ntestpaths = ["pkg"]\n', encoding="utf-8"
    )
    pkg = pytester.path / "pkg"
    (pkg / "tests").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n\n[tool.cnnbudget]\n", encoding="utf-8"
    )
    (pkg / "tests" / "test_a.py").write_text(check_fn() + "\n\n" + check_fn("test_y"), "utf-8")
    env = {**process_env(), "PYTHONPATH": str(pytester.path)}  # where nets.py is
    inside = subprocess.run(
        pytest_command("--cnn-budget-update"), cwd=pkg, env=env, capture_output=True
    )
    assert inside.returncode == 0, inside.stdout.decode()[-3000:]
    stored = {"tests/test_a.py::test_x", "tests/test_a.py::test_y"}
    assert set(read_snapshot(pkg / SNAPSHOT_FILE)) == stored
    outside = pytester.runpytest("--cnn-budget-update", "-k", "test_y")
    assert outside.ret == ExitCode.OK, outside.stdout.str()[-3000:]
    assert stored <= set(read_snapshot(pkg / SNAPSHOT_FILE))


def test_json_to_a_pipe_on_stdout(pytester: pytest.Pytester) -> None:
    # As `pytest --cnn-budget --cnn-budget-json=/dev/stdout | jq .` runs it.
    fixture_project(pytester, {})
    done = subprocess.run(
        pytest_command("-q", "--cnn-budget", "--cnn-budget-json=/dev/stdout"),
        cwd=pytester.path,
        env=process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
    )
    out = done.stdout.decode("utf-8")
    assert done.returncode == ExitCode.TESTS_FAILED, out[-3000:]  # no snapshot entry yet
    start = out.index('{\n  "models"')
    report = json.loads(out[start : out.index("\n}\n", start) + 2])
    assert report["models"]["good"]["snapshot"] == "missing"


FAILS_AFTER = {
    "in_its_body": check_fn() + "    assert False, 'the test failed after its check'\n",
    "in_teardown": "import pytest\n\n\n@pytest.fixture\ndef after():\n    yield\n"
    "    raise RuntimeError('teardown failed')\n\n\n"
    + check_fn().replace("(cnn_budget)", "(cnn_budget, after)"),
    "under_xdist": check_fn() + "    assert False, 'the test failed after its check'\n",
}


@pytest.mark.parametrize("way", list(FAILS_AFTER))
def test_a_check_whose_test_failed_is_reported_not_written_everywhere(
    pytester: pytest.Pytester, way: str
) -> None:
    project = fixture_project(pytester, {"tests/test_a.py": FAILS_AFTER[way]})
    args = ["--cnn-budget-json", "report.json", "--json-report", "--json-report-file", "jr.json"]
    if way == "under_xdist":
        result = pytester.runpytest_subprocess(
            "--cnn-budget-update", "-p", "no:cacheprovider", "-n", "2", *args, timeout=120
        )
    else:
        result = update(pytester, *args)
    assert result.ret == ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    entry = "tests/test_a.py::test_x"
    assert set(read_snapshot(project.snapshot)) == {"good"}
    out = result.stdout.str()
    assert f"NOT updated {entry}: its test failed" in out
    assert f"added {entry}" not in out
    report = json.loads((project.path / "report.json").read_text(encoding="utf-8"))
    assert report["models"][entry]["snapshot"] == "not written"
    assert report["models"]["good"]["snapshot"] == "added"
    plugin = json.loads((project.path / "jr.json").read_text(encoding="utf-8"))
    (test,) = [t for t in plugin["tests"] if t["nodeid"] == entry]
    assert test["metadata"]["cnn_budget"]["snapshot"] == "not written"


@pytest.mark.parametrize("workers", [0, 2])
def test_a_snapshot_that_could_not_be_written_is_reported_not_written_everywhere(
    pytester: pytest.Pytester, workers: int
) -> None:
    # A test that runs after the model's check puts a folder where the snapshot goes.
    sabotage = "import os\n\n\ndef test_zzz():\n    os.makedirs('cnnbudget.snapshot.json/x')\n"
    project = fixture_project(pytester, {"test_zzz.py": sabotage})
    args = ["--cnn-budget-json", "report.json", "--json-report", "--json-report-file", "jr.json"]
    result = pytester.runpytest_subprocess(
        "--cnn-budget-update", "-p", "no:cacheprovider", "-n", str(workers), *args, timeout=120
    )
    assert result.ret == ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    assert "the snapshot was not written" in result.stdout.str()
    report = json.loads((project.path / "report.json").read_text(encoding="utf-8"))
    assert report["models"]["good"]["snapshot"] == "not written"
    plugin = json.loads((project.path / "jr.json").read_text(encoding="utf-8"))
    (test,) = [t for t in plugin["tests"] if t["nodeid"].endswith("cnn_budget[good]")]
    assert test["metadata"]["cnn_budget"]["snapshot"] == "not written"


def test_a_non_ascii_project_under_the_c_locale_runs(pytester: pytest.Pytester) -> None:
    # LC_ALL=C without UTF-8 mode: the file system encoding is ASCII, and every path from the
    # environment holds surrogate escapes where its bytes are not ASCII. Still the same folder.
    folder = pytester.path / "modèles ü"
    folder.mkdir()
    (folder / "pyproject.toml").write_text(toml_text({"good": GOOD}, SNAP), encoding="utf-8")
    (folder / "good_net.py").write_text(GOOD_SOURCE, encoding="utf-8")
    env = {
        **process_env(),
        "LC_ALL": "C",
        "PYTHONUTF8": "0",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(folder),
        "GITHUB_STEP_SUMMARY": str(folder / "summary.md"),
    }
    done = subprocess.run(
        pytest_command("--cnn-budget-update", "--cnn-budget-json", "report.json"),
        cwd=folder,
        env=env,
        capture_output=True,
        timeout=120,
    )
    out = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert done.returncode == 0, out[-3000:]
    assert set(read_snapshot(folder / SNAPSHOT_FILE)) == {"good"}
    assert "good" in (folder / "summary.md").read_text(encoding="utf-8")
    assert json.loads((folder / "report.json").read_text(encoding="utf-8"))["passed"] is True


def test_a_fixture_check_in_a_non_ascii_folder_keys_alike_in_any_locale(
    pytester: pytest.Pytester,
) -> None:
    # Its node id read under LC_ALL=C holds surrogate escapes: the same entry must result.
    files = {"tësts/test_a.py": "import sys\nsys.path.insert(0, '.')\n\n\n" + check_fn()}
    project = fixture_project(pytester, files)
    (project.path / "nets.py").write_text(NETS_SOURCE, encoding="utf-8")
    entry = "tësts/test_a.py::test_x"

    def run(*args: str, c_locale: bool) -> subprocess.CompletedProcess[bytes]:
        env = {**process_env(), **({"LC_ALL": "C", "PYTHONUTF8": "0"} if c_locale else {})}
        return subprocess.run(
            pytest_command(*args), cwd=project.path, env=env, capture_output=True, timeout=120
        )

    first = run("--cnn-budget-update", c_locale=False)
    assert first.returncode == 0, first.stdout.decode()[-3000:]
    assert set(read_snapshot(project.snapshot)) == {"good", entry}
    check = run("--cnn-budget", c_locale=True)
    assert check.returncode == 0, check.stdout.decode("utf-8", "replace")[-3000:]
    partial = run("--cnn-budget-update", "-k", "good", c_locale=True)
    assert partial.returncode == 0, partial.stdout.decode("utf-8", "replace")[-3000:]
    assert set(read_snapshot(project.snapshot)) == {"good", entry}
