"""The pure renderers, called directly: terminal failures and summaries, the job summary, the
annotations, the table renderer, the JSON reports and the xdist wire format.

Every result is made by the real check (`gate.check_model`) of a real model from nets.py, so the
numbers in a table are the ones a run would print; the figures asserted outright are documented
(`nets.CIFAR_PARAMS`) or summed from the model's own parameters. Whole outputs are compared with
the stored files tests/expected/render_*.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import nets
import pytest
import torch
from schemas import problems
from torch import nn

from pytest_cnnbudget.config.spec import Level, ModelSpec, Order
from pytest_cnnbudget.engine.measurement import measure
from pytest_cnnbudget.inputs import InputSpec, parse_input_shape
from pytest_cnnbudget.report import json as render_json
from pytest_cnnbudget.report.cells import error_cause
from pytest_cnnbudget.report.comment import comment_markdown
from pytest_cnnbudget.report.github import (
    ANNOTATION_LIMIT,
    FULL_REPORT,
    SUMMARY_LIMIT,
    Anchor,
    anchors,
    annotation_lines,
    bounded_message,
    escape_data,
    neutralize,
    neutralize_text,
    reviewable,
    summary_markdown,
    usage_bar,
    workflow_command,
)
from pytest_cnnbudget.report.tables import (
    LINE_BREAKS,
    Column,
    Style,
    grid,
    markdown_code,
    markdown_code_block,
    markdown_escape,
    render,
    visible,
)
from pytest_cnnbudget.report.terminal import (
    budget_lines,
    diff_lines,
    failure_lines,
    format_table,
    layer_report,
    overview_lines,
    update_lines,
    warning_lines,
)
from pytest_cnnbudget.results import (
    BudgetCheck,
    Memory,
    MemoryOptions,
    ModelResult,
    Outcome,
    SnapshotEntry,
    SnapshotStatus,
)
from pytest_cnnbudget.run import wire
from pytest_cnnbudget.run.gate import check_model
from pytest_cnnbudget.snapshot.compare import compare_with_base
from pytest_cnnbudget.snapshot.merge import merge_snapshot
from pytest_cnnbudget.units import short_bytes, short_count

Expected = Callable[[str, str], None]

CONFIG = "pyproject.toml"
SNAPSHOT = "cnnbudget.snapshot.json"
NAMES = (CONFIG, SNAPSHOT)  # how failures name the two files


def failures(results: list[ModelResult], config: str, snapshot: str) -> dict[str, list[str]]:
    """Each failing result's lines, by model name, as the session renders them once."""
    return {r.name: failure_lines(r, config, snapshot) for r in results if r.failed}


NETS_PATH = Path(nets.__file__)
AT_32 = parse_input_shape([1, 3, 32, 32])


def check(
    name: str = "cifar",
    target: str = "nets:Cifar",
    *,
    stored: SnapshotEntry | None = None,
    snapshot: bool = True,
    update: bool = False,
    **spec: Any,
) -> ModelResult:
    """One model's real check, as the gate runs it; `spec` is the rest of its ModelSpec."""
    return check_model(
        Order(ModelSpec(name, target, **spec), stored, snapshot_enabled=snapshot, update=update)
    )


def accepted(target: str = "nets:Cifar", **spec: Any) -> SnapshotEntry:
    """The snapshot entry that accepts `target` as `spec` builds it."""
    count = check("accepted", target, snapshot=False, **spec).count
    assert count is not None
    return SnapshotEntry.from_count(count)


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def text(lines: Sequence[str]) -> str:
    return "\n".join(lines) + "\n"


def nets_line(fragment: str) -> int:
    """The 1-based line of nets.py that holds `fragment`."""
    lines = NETS_PATH.read_text(encoding="utf-8").splitlines()
    return 1 + next(i for i, line in enumerate(lines) if fragment in line)


# -- failures ------------------------------------------------------------------------------------


def test_failure_lines_over_budget_list_every_exceeded_budget_and_the_largest_layers(
    expected: Expected,
) -> None:
    result = check(budgets={"max_params": 500_000, "max_total_params": 540_000}, stored=accepted())
    assert (result.outcome, result.snapshot) == (Outcome.FAILED, SnapshotStatus.MATCH)
    lines = failure_lines(result, *NAMES)
    expected("render_over_budget.txt", text(lines))
    total = params(nets.Cifar())
    assert total == nets.CIFAR_PARAMS
    assert lines[0] == f"cifar: trainable parameters over budget by {total - 500_000:,} (+9.0%)"
    # A total budget ranks every layer, not only trainable ones.
    assert "largest layers:" in lines
    assert lines[-1] == (
        "Shrink the model, or raise max_params, max_total_params under "
        "[tool.cnnbudget.models.cifar] in pyproject.toml."
    )


def test_failure_lines_layout_change_lists_added_and_removed_layers(expected: Expected) -> None:
    result = check(
        "grown",
        "nets:growing",
        kwargs={"extra": True, "drop": True},
        budgets={"max_params": 100},
        stored=accepted("nets:growing"),
    )
    assert (result.outcome, result.snapshot) == (Outcome.FAILED, SnapshotStatus.CHANGED)
    lines = failure_lines(result, *NAMES)
    expected("render_layout_changed.txt", text(lines))
    added, removed = params(nn.Linear(2, 3)), params(nn.Linear(4, 4))
    rows = [line.split() for line in lines[3:5]]
    assert rows == [
        ["2", "Linear", "-", str(added), f"+{added}", "2×3", "+", "3"],
        ["0", "Linear", str(removed), "-", f"-{removed}", "(removed)"],
    ]
    assert lines[-1] == "If this change is intended, accept it with: pytest --cnn-budget-update"


def test_failure_lines_over_budget_and_changed_say_to_raise_the_budget_first() -> None:
    result = check(kwargs={"hidden": 256}, budgets={"max_params": 600_000}, stored=accepted())
    lines = failure_lines(result, *NAMES)
    # Both tables, one blank line between them.
    assert lines == [*budget_lines(result, CONFIG), "", *diff_lines(result, SNAPSHOT)]
    assert budget_lines(result, CONFIG)
    assert diff_lines(result, SNAPSHOT)
    # The update refuses a model over budget, so the order of the two steps matters.
    assert lines[-1] == (
        "If this change is intended, raise max_params first, then accept it with: "
        "pytest --cnn-budget-update"
    )


def test_failure_lines_missing_entry_say_how_to_record_it() -> None:
    result = check(budgets={"max_params": 600_000})
    assert result.snapshot is SnapshotStatus.MISSING
    assert failure_lines(result, *NAMES) == [
        "cifar: no snapshot entry in cnnbudget.snapshot.json",
        "Record it with: pytest --cnn-budget-update, then commit cnnbudget.snapshot.json",
    ]
    # In CI the snapshot is the committed one: an update whose file was left out of the
    # commit fails here, and the message says so.
    assert failure_lines(result, *NAMES, ci=True) == [
        "cifar: no entry in the committed snapshot cnnbudget.snapshot.json (or the file is not "
        "committed)",
        "Run pytest --cnn-budget-update where the model is defined and commit "
        "cnnbudget.snapshot.json with the change (a new model, or an update whose file was not "
        "committed)",
    ]


def test_failure_lines_of_build_and_forward_errors_indent_the_cause() -> None:
    built = check("broken", "nets:exploding")
    assert built.outcome is Outcome.ERROR
    assert built.error is not None
    lines = failure_lines(built, *NAMES)
    assert lines[0] == "broken: could not build nets:exploding"
    assert lines[1] == (
        "  building nets:exploding() raised ValueError: constructor exploded: width must be even"
    )
    assert lines[1:] == [f"  {line}" for line in built.error.splitlines()]
    # 16×16 inputs reach fc1 with a quarter of the features it was built for.
    forward = check(input_shape=parse_input_shape([1, 3, 16, 16]))
    assert forward.error_stage == "forward"
    assert failure_lines(forward, *NAMES)[0] == "cifar: could not run forward nets:Cifar"


def test_trainable_budget_ranks_only_the_trainable_layers(expected: Expected) -> None:
    # fine_tuned: Linear(100, 100) frozen, then a trainable Linear(100, 2).
    result = check("tuned", "nets:fine_tuned", budgets={"max_params": 100}, snapshot=False)
    lines = failure_lines(result, *NAMES)
    expected("render_trainable_over_budget.txt", text(lines))
    model = nets.fine_tuned()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lines[1].split()[-1] == f"{trainable:,}"
    start = lines.index("largest trainable layers:")
    # The frozen layer, though fifty times larger, is not where to look.
    assert [line.split()[0] for line in lines[start + 3 : -1]] == ["1"]
    total = check("tuned", "nets:fine_tuned", budgets={"max_total_params": 100}, snapshot=False)
    total_lines = failure_lines(total, *NAMES)
    start = total_lines.index("largest layers:")
    assert [line.split()[0] for line in total_lines[start + 3 : -1]] == ["0", "1"]


# -- summaries -----------------------------------------------------------------------------------


def test_overview_lines_one_row_per_model_then_stale_entries(expected: Expected) -> None:
    results = [
        check("tiny", "nets:Tiny", budgets={"max_params": 10}, stored=accepted("nets:Tiny")),
        check(budgets={"max_params": 600_000}, stored=accepted()),
        check("warned", "nets:Tiny", level=Level.WARN, budgets={"max_params": 10}, snapshot=False),
        check("broken", "nowhere:Net"),
        check("fresh", "nets:Tiny", budgets={"max_total_params": 1000}),
    ]
    lines = overview_lines(results, stale=["zeta", "alpha"])
    expected("render_overview.txt", text(lines))
    assert [line.split()[0] for line in lines[2:-1]] == [
        "broken",
        "cifar",
        "fresh",
        "tiny",
        "warned",
    ]
    verbose = overview_lines(results, stale=[], verbose=True)
    # Every model that was counted gets its per-layer table, in name order; the broken one none.
    counted = sorted((r for r in results if r.count is not None), key=lambda r: r.name)
    tables = []
    for r in counted:
        assert r.count is not None
        tables += ["", f"{r.name} ({r.target})", *format_table(r.count).splitlines()]
    assert verbose == [*lines[:-1], *tables]


def test_the_summary_stays_within_a_hundred_columns_whatever_the_names() -> None:
    node = "tests/integration/vision/test_backbones.py::TestResNets::test_" + "wide_" * 25 + "r50"
    fits = check("cifar", budgets={"max_params": 600_000}, snapshot=False)
    long = replace(fits, name=node)
    broken = check("ghost", "nowhere_" + "x" * 80 + ":Net")
    lines = overview_lines([fits, long, broken], stale=[])
    assert max(map(len, lines)) <= 100, "\n".join(lines)
    [row] = [line for line in lines if line.startswith("tests/")]
    shown = row.split("  ")[0]
    # Both ends kept: the file it is in and the test's own name.
    assert shown.startswith("tests/integ")
    assert shown.endswith("wide_r50")
    assert "…" in shown
    # The status keeps what happened; its cause is in the failure itself.
    assert next(line for line in lines if line.startswith("ghost")).endswith(
        "  ERROR: could not build"
    )
    # Short names are left alone.
    assert overview_lines([fits], stale=[])[2].startswith("cifar  ")


def test_overview_lines_past_fifty_models_list_the_failures_and_count_the_rest() -> None:
    # Tiny has 72 parameters: over a budget of 50, within one of 1,000.
    results = [
        check(
            f"m{i:02d}",
            "nets:Tiny",
            budgets={"max_params": 50 if i in (7, 42) else 1000},
            snapshot=False,
        )
        for i in range(53)
    ]
    lines = overview_lines(results, stale=[])
    assert [line.split()[0] for line in lines[2:-1]] == ["m07", "m42"]
    assert lines[-1] == "… and 51 more (51 passed in all); -v lists every model"
    # Fifty is still a screenful: every model is listed.
    assert len(overview_lines(results[:50], stale=[])) == 2 + 50
    assert len(overview_lines(results, stale=[], max_rows=10**9)) == 2 + 53


def test_update_lines_say_what_the_merge_wrote() -> None:
    stored = {
        "cifar": accepted(),
        "tiny": accepted("nets:Tiny"),
        "tuned": accepted("nets:fine_tuned", kwargs={"frozen": 0}),
        "gone": accepted("nets:Tiny"),
    }
    results = [
        check(kwargs={"hidden": 64}, stored=stored["cifar"], update=True),
        check("tiny", "nets:Tiny", stored=stored["tiny"], update=True),
        # Freezing a layer changes the totals and no layer's row.
        check("tuned", "nets:fine_tuned", stored=stored["tuned"], update=True),
        check("fat", "nets:Tiny", budgets={"max_params": 5}, update=True),
        check("fresh", "nets:Tiny", update=True),
    ]
    fc1 = params(nn.Linear(4096, 64)) - params(nn.Linear(4096, 128))
    fc2 = params(nn.Linear(64, 10)) - params(nn.Linear(128, 10))
    full = merge_snapshot(stored, results, [r.name for r in results])
    assert update_lines(results, full, SNAPSHOT) == [
        f"cnnbudget.snapshot.json: updated cifar (fc1 {fc1:,}, fc2 {fc2:,})",
        "cnnbudget.snapshot.json: NOT updated fat: it is over budget",
        "cnnbudget.snapshot.json: added fresh",
        "cnnbudget.snapshot.json: updated tuned (totals)",
        "cnnbudget.snapshot.json: removed stale gone",
        # CI checks the committed file: an update left out of the commit fails there.
        "Commit cnnbudget.snapshot.json with the change.",
    ]
    # A partial run cannot tell a stale entry from an unselected model: nothing is removed.
    partial = merge_snapshot(stored, results, [*(r.name for r in results), "unselected"])
    kept = update_lines(results, full, SNAPSHOT)
    assert update_lines(results, partial, SNAPSHOT) == [*kept[:-2], kept[-1]]


def test_warning_lines_are_the_failures_of_warn_level_models_only() -> None:
    over = check("b_over", "nets:Tiny", level=Level.WARN, budgets={"max_params": 5}, snapshot=False)
    missing = check("a_missing", "nets:Tiny", level=Level.WARN)
    failed = check("error_level", "nets:Tiny", budgets={"max_params": 5}, snapshot=False)
    assert (over.outcome, missing.outcome, failed.outcome) == (
        Outcome.WARNED,
        Outcome.WARNED,
        Outcome.FAILED,
    )
    # In name order, one blank line between models and none after the last.
    assert warning_lines([over, failed, missing], failures([over, failed, missing], *NAMES)) == [
        *failure_lines(missing, *NAMES),
        "",
        *failure_lines(over, *NAMES),
    ]
    assert warning_lines([failed], failures([failed], *NAMES)) == []


# -- per-layer tables ----------------------------------------------------------------------------


def test_format_table_without_and_with_input_shapes(expected: Expected) -> None:
    plain = check(snapshot=False).count
    shaped = check(snapshot=False, input_shape=AT_32).count
    assert plain is not None
    assert shaped is not None
    expected("render_table.txt", format_table(plain) + "\n")
    expected("render_table_shapes.txt", format_table(shaped) + "\n")
    cifar = f"{nets.CIFAR_PARAMS:,}"
    totals = f"total {cifar} · trainable {cifar} · frozen 0 · buffers 0"
    assert format_table(plain).splitlines()[-1] == totals
    assert format_table(shaped).splitlines()[-1] == (
        f"{totals} · MACs {nets.CIFAR_MACS:,} · FLOPs {2 * nets.CIFAR_MACS:,} at 1×3×32×32 "
        "(1 MAC = 2 FLOPs)"
    )
    assert "output" not in format_table(plain).splitlines()[0]


@pytest.mark.parametrize(("style", "ending"), [(Style.TEXT, "txt"), (Style.MARKDOWN, "md")])
def test_layer_report_grouped_by_depth_with_input_shapes(
    expected: Expected, style: Style, ending: str
) -> None:
    with torch.device("meta"):
        model = nn.Sequential(OrderedDict(backbone=nets.Cifar(), head=nn.Linear(10, 2)))
    count = measure(model, AT_32, depth=1)
    lines = layer_report(count, style)
    expected(f"render_report_depth.{ending}", text(lines))
    assert f"total {params(model):,} · " in "\n".join(lines)
    assert [r.name for r in count.layers] == ["backbone", "head"]
    assert count.layers[0].formula == "4 layers"


@pytest.mark.parametrize(("style", "ending"), [(Style.TEXT, "txt"), (Style.MARKDOWN, "md")])
def test_layer_report_of_buffers_mixed_dtypes_and_hostile_layer_names(
    expected: Expected, style: Style, ending: str
) -> None:
    # Module names may hold anything but a dot: here a cell break, HTML, a backslash, a newline.
    with torch.device("meta"):
        model = nn.Sequential(OrderedDict([("norm|<b>", nets.Normed()), ("a\\b\nc", nets.Tiny())]))
    model[0].bn.to(torch.bfloat16)
    count = measure(model)
    lines = layer_report(count, style)
    expected(f"render_report_buffers.{ending}", text(lines))
    buffers = sum(b.numel() for b in model.buffers())
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    report = "\n".join(lines)
    assert any(line.endswith(f" · buffers {buffers}") for line in lines)
    assert f"buffer memory {buffer_bytes} B (bfloat16 " in report
    if style is Style.MARKDOWN:
        assert "| norm\\|&lt;b&gt;.conv |" in report
        assert "| a\\\\b\\\\nc.fc |" in report  # printable's `\n`, its backslash escaped
    else:
        assert "a\\b\\nc.fc " in report


# -- job summary ---------------------------------------------------------------------------------


def test_summary_markdown_of_every_status(expected: Expected) -> None:
    results = [
        check(
            "shrunk",
            kwargs={"hidden": 64},
            budgets={"max_params": 600_000},
            input_shape=AT_32,
            stored=accepted(input_shape=AT_32),
        ),
        check("grown", kwargs={"hidden": 256}, budgets={"max_params": 600_000}, stored=accepted()),
        check("fresh", "nets:Tiny", budgets={"max_params": 1000}),
        check(
            "warned",
            "nets:Tiny",
            level=Level.WARN,
            budgets={"max_params": 10},
            stored=accepted("nets:Tiny"),
        ),
        check("broken", "nowhere:Net"),
        check("ok|<script>alert(1)</script>", "nets:Tiny", stored=accepted("nets:Tiny")),
    ]
    markdown = summary_markdown(results, failures(results, *NAMES))
    expected("render_job_summary.md", markdown)
    lines = markdown.splitlines()
    assert lines[0] == "## cnn-budget: 5 of 6 models need attention"
    # Failures first, each in name order; the MACs column because one model ran forward.
    assert [re.split(r" \| ", line)[0] for line in lines[4:10]] == [
        "| broken",
        "| fresh",
        "| grown",
        "| shrunk",
        "| warned",
        "| ok\\|&lt;script&gt;alert(1)&lt;/script&gt;",
    ]
    assert markdown.count("<details>") == 5
    assert lines[-1] == (
        "Accept intended changes with `pytest --cnn-budget-update` and commit the snapshot."
    )


def test_summary_markdown_when_every_model_passes() -> None:
    results = [
        check(budgets={"max_params": 600_000}, snapshot=False),
        check("tiny", "nets:Tiny", snapshot=False),
    ]
    assert [r.outcome for r in results] == [Outcome.PASSED, Outcome.PASSED]
    markdown = summary_markdown(results, failures(results, *NAMES))
    assert markdown.splitlines()[0] == "## cnn-budget: all 2 models within budget"
    assert "<details>" not in markdown
    assert "Accept" not in markdown
    alone = summary_markdown(results[:1], failures(results[:1], *NAMES))
    assert alone.splitlines()[0] == "## cnn-budget: the 1 model within budget"
    # What failed the run before any model could be checked is listed first.
    troubled = summary_markdown(results, {}, problems=["not checked by any shard: big"])
    assert troubled.splitlines()[:3] == [
        "## cnn-budget: all 2 models within budget, 1 problem",
        "",
        "- ⚠️ not checked by any shard: big",
    ]


def test_summary_markdown_keeps_user_text_inert() -> None:
    # What a constructor raised goes into a fenced block; a fence in it must not close the block,
    # and the model key in <summary> must not open HTML.
    broken = check("x<script>|y", "nowhere:Net")
    broken = replace(broken, error="boom\n```\n</details>\n<script>alert(1)</script>")
    markdown = summary_markdown([broken], failures([broken], *NAMES))
    assert "<summary>x&lt;script&gt;|y: could not be built" in markdown
    # The text as it was, inside a fence one backtick longer than any run in it.
    assert "\n````text\n" in markdown
    assert "  ```\n  </details>\n  <script>alert(1)</script>\n````\n" in markdown


# Model keys, a target and an error text holding everything that could break the job summary's
# table, its <details> blocks or its code blocks.
HOSTILE_KEYS = [
    "pipe|key",
    "back\\slash\\|pipe",
    "new\nline",
    "carriage\rreturn\r\n",
    "separators\u2028line\u2029paragraph\x85next\x1cfile\vtab\fform",
    "back`ticks` and ``two`` and `\\|`",
    "<img src=x onerror=alert(1)>",
    "</details></summary>",
    "<!-- comment",
    "&amp; *stars* _under_ [link](x)",
]
HOSTILE_ERROR = (
    "boom ```\n```\n~~~\n   ````````\n</details>\n<!--\n<img src=x onerror=alert(1)>\r```\n"
    "\u2028```"
)


def markdown_cells(line: str) -> list[str]:
    """A table row's raw cells, split as cmark-gfm splits them: at every pipe that is not the
    second character of a backslash escape (`\\\\|` is an escaped backslash, then a cell break)."""
    cells, cell, chars = [], "", iter(line.strip()[1:-1])
    for c in chars:
        if c == "\\":
            cell += c + next(chars, "")
        elif c == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += c
    return [*cells, cell]


def read_cell(raw: str) -> str:
    """What a cell shows: `\\|` is a pipe, then backslash escapes and HTML entities resolve."""
    text = raw.strip().replace("\\|", "|")
    return html.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text))


def without_code_blocks(markdown: str) -> str:
    """`markdown` with each fenced code block cut out, where it closes as CommonMark closes it:
    at the first line of only backticks, at least as many as opened it."""
    out, fence = [], ""
    for line in re.split(r"\r\n|\r|\n", markdown):
        if fence:
            closing = re.fullmatch(r" {0,3}(`+)[ \t]*", line)
            if closing and len(closing.group(1)) >= len(fence):
                fence = ""
            continue
        opening = re.match(r" {0,3}(`{3,})", line)
        if opening:
            fence = opening.group(1)
            continue
        out.append(line)
    assert not fence, "a code block is left open"
    return "\n".join(out)


def test_summary_markdown_of_hostile_keys_targets_and_errors() -> None:
    ok = check("ok", "nets:Tiny", snapshot=False)
    over = check("over", "nets:Tiny", budgets={"max_params": 5}, snapshot=False)
    broken = check("broken", "no|where:<img src=x onerror=alert(1)>`")
    assert (ok.outcome, over.outcome, broken.outcome) == (
        Outcome.PASSED,
        Outcome.FAILED,
        Outcome.ERROR,
    )
    results = []
    for i, key in enumerate(HOSTILE_KEYS):
        if i % 3 == 0:
            results.append(replace(ok, name=key))
        elif i % 3 == 1:
            results.append(replace(over, name=key))
        else:
            results.append(replace(broken, name=key, error=f"{HOSTILE_ERROR} {key}"))
    failing = [r for r in results if r.failed]
    markdown = summary_markdown(results, failures(results, *NAMES))
    lines = markdown.split("\n")
    assert lines[0] == f"## cnn-budget: {len(failing)} of {len(results)} models need attention"
    table = lines[2 : 4 + len(results)]
    assert lines[4 + len(results)] == ""
    header = markdown_cells(table[0])
    assert [read_cell(c) for c in header] == [
        "model",
        "measured",
        "budget",
        "used",
        "Δ vs snapshot",
        "status",
    ]
    statuses = {
        Outcome.PASSED: "✅ ok",
        Outcome.FAILED: "❌ over budget",
        Outcome.ERROR: "❌ error",
    }
    ordered = sorted(results, key=lambda r: (not r.failed, r.name))
    for line, result in zip(table[2:], ordered, strict=True):
        # One line, as many cells as the header, the key read back whole, the status intact.
        assert not set(line) & set(LINE_BREAKS)
        cells = markdown_cells(line)
        assert len(cells) == len(header), line
        shown = "".join(" " if c in LINE_BREAKS else c for c in result.name)
        assert read_cell(cells[0]) == shown.strip()  # as GitHub trims a cell
        # No code span or link starts in the key: every backtick and bracket is escaped.
        assert not set(re.sub(r"\\.", "", cells[0])) & set("`[]")
        status = statuses[result.outcome]
        if result.outcome is Outcome.ERROR:
            # The cause's first line, hostile text and all, read back as it was written.
            status = f"❌ could not be built: {error_cause(result)}"
        assert read_cell(cells[-1]) == status.strip()
    # Outside the code blocks, every `<` is one of the summary's own tags.
    prose = without_code_blocks(markdown)
    tags = re.findall(r"<[^>]*>", prose)
    assert set(tags) == {"<details>", "<summary>", "</summary>", "</details>"}
    assert re.sub(r"</?(details|summary)>", "", prose).count("<") == 0
    # One <details> per failure, each its summary on one line, then its code block, closed.
    blocks = re.findall(
        r"^<details><summary>([^<\n]*)</summary>\n\n(`{3,})text\n(.*?)\n\2\n\n</details>$",
        markdown,
        re.MULTILINE | re.DOTALL,
    )
    assert len(blocks) == len(failing) == prose.count("<details>") == prose.count("</details>")
    in_order = sorted(failing, key=lambda r: r.name)
    for (summary, fence, body), result in zip(blocks, in_order, strict=True):
        assert html.unescape(summary).startswith(
            "".join(" " if c in LINE_BREAKS else c for c in result.name)
        )
        assert body == "\n".join(failures([result], *NAMES)[result.name])
        assert len(fence) > max(map(len, re.findall("`+", body)), default=0)
    assert lines[-2] == (
        "Accept intended changes with `pytest --cnn-budget-update` and commit the snapshot."
    )
    assert lines[-3] == ""  # the footer is Markdown again, not part of the last HTML block


def test_summary_status_of_a_model_key_with_a_space() -> None:
    result = check("my net", "nets:Tiny", budgets={"max_params": 5}, snapshot=False)
    row = summary_markdown([result], failures([result], *NAMES)).splitlines()[4]
    assert row.endswith("| ❌ over budget |"), row


def test_summary_delta_of_a_model_that_could_not_be_built() -> None:
    row = summary_markdown(
        [check("broken", "nowhere:Net")], failures([check("broken", "nowhere:Net")], *NAMES)
    ).splitlines()[4]
    # No figure, no delta; the status names the step that failed and the cause's first words.
    assert row.startswith("| broken | - | - | - | - | ❌ could not be built: cannot import module")


def test_job_summary_shows_macs_when_measured() -> None:
    result = check(
        budgets={"max_params": 600_000}, input_shape=AT_32, stored=accepted(input_shape=AT_32)
    )
    lines = summary_markdown([result], failures([result], *NAMES)).splitlines()
    assert lines[2] == "| model | measured | budget | used | MACs | Δ vs snapshot | status |"
    used = f"{nets.CIFAR_PARAMS / 600_000:.1%}"
    assert lines[4] == (
        f"| cifar | {short_count(nets.CIFAR_PARAMS)} trainable | 600k | `{used} █████████▏` "
        f"| {nets.CIFAR_MACS:,} "
        "| 0 | ✅ ok |"
    )


def test_job_summary_stays_under_githubs_limit() -> None:
    broken = check("broken", "nowhere:Net")
    over = check("over", "nets:Tiny", budgets={"max_params": 10}, snapshot=False)
    results = [
        replace(broken, name=f"model_{i:05d}", error="x" * 5000)
        if i % 2
        else replace(over, name=f"model_{i:05d}")
        for i in range(3000)
    ]
    markdown = summary_markdown(results, failures(results, *NAMES))
    assert len(markdown.encode("utf-8")) < SUMMARY_LIMIT
    assert "1 MiB summary limit" in markdown
    # The detail blocks go; the table of every model stays.
    assert "<details>" not in markdown
    assert sum(1 for line in markdown.splitlines() if line.startswith("| model_")) == 3000


def test_job_summary_cuts_the_table_last_and_keeps_its_failures() -> None:
    passed = check("ok", "nets:Tiny", snapshot=False)
    failed = check("over", "nets:Tiny", budgets={"max_params": 10}, snapshot=False)
    # 300 rows of over 5 kB: the table alone is past the limit.
    results = [
        replace(failed if i < 100 else passed, name=f"{i:03d}{'x' * 5000}") for i in range(300)
    ]
    markdown = summary_markdown(results, failures(results, *NAMES))
    assert len(markdown.encode("utf-8")) < SUMMARY_LIMIT
    assert "_…table truncated._" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "x" * 5000 in line]
    assert 100 < len(rows) < 300
    assert [row[2:5] for row in rows[:100]] == [f"{i:03d}" for i in range(100)]


def test_usage_bar() -> None:
    assert usage_bar(0.0) == "··········"
    assert usage_bar(0.5) == "█████·····"
    assert usage_bar(0.908) == "█████████▏"
    # Over the budget the bar is full and the overrun follows, a tenth of the budget a cell.
    assert usage_bar(1.0) == "██████████"
    assert usage_bar(0.9996) == "█████████▉"
    assert usage_bar(1.106) == "██████████▶▒▒"
    assert usage_bar(1.785) == "██████████▶▒▒▒▒▒+"
    assert usage_bar(0.996) != usage_bar(1.106)


# -- annotations ---------------------------------------------------------------------------------


def test_annotation_lines_point_at_the_source_or_else_the_config_line() -> None:
    workspace = str(NETS_PATH.parent)
    changed = check(kwargs={"hidden": 64}, budgets={"max_params": 600_000}, stored=accepted())
    ghost = check("ghost", "nowhere:Net")
    warned = check(
        "warned", "nets:Tiny", level=Level.WARN, budgets={"max_params": 5}, snapshot=False
    )
    passing = check("tiny", "nets:Tiny", stored=accepted("nets:Tiny"))
    results = [warned, passing, ghost, changed]
    config = NETS_PATH.parent / CONFIG
    tables = {"ghost": (config, 7), "cifar": (config, 2), "warned": (config, 12)}
    where = anchors(results, tables, workspace)
    # The layer that changed most; a build error with no source of its own, the model's table.
    assert where["cifar"] == Anchor("nets.py", nets_line("self.fc1 ="))
    assert where["ghost"] == Anchor("pyproject.toml", 7)
    assert where["warned"] == Anchor("nets.py", nets_line("self.fc = "))
    # With no workspace, a path stays as it is; a source outside the workspace is not shown on
    # a pull request, so the annotation falls back to the model's table.
    assert anchors([ghost], {"ghost": (config, None)}, None)["ghost"] == Anchor(str(config), None)
    assert anchors([changed], {"cifar": (config, 2)}, "/elsewhere")["cifar"] == Anchor(
        str(config), 2
    )

    def command(kind: str, result: ModelResult, title: str) -> str:
        anchor = where[result.name]
        # The failure as the log shows it, then where the full tables are.
        message = "\n".join([*failure_lines(result, *NAMES), FULL_REPORT])
        return workflow_command(kind, message, title=title, file=anchor.path, line=anchor.line)

    assert annotation_lines(results, where, failures(results, *NAMES)) == [
        command("error", changed, "cnn-budget: cifar layout changed"),
        command("error", ghost, "cnn-budget: ghost could not be built"),
        command("warning", warned, "cnn-budget: warned over budget"),
    ]


def test_an_unrecorded_model_is_annotated_at_its_table_not_at_its_code() -> None:
    workspace = str(NETS_PATH.parent)
    config = NETS_PATH.parent / CONFIG
    fresh = check("fresh", "nets:Tiny")
    over = check("over", "nets:Tiny", budgets={"max_params": 5})
    assert fresh.snapshot is over.snapshot is SnapshotStatus.MISSING
    assert fresh.target_source is not None  # the class's line, which has nothing to fix
    tables = {"fresh": (config, 9), "over": (config, 14)}
    where = anchors([fresh, over], tables, workspace)
    assert where["fresh"] == Anchor("pyproject.toml", 9)
    # Over budget as well: the code is what to look at.
    assert where["over"] == Anchor("nets.py", nets_line("self.fc = "))
    # A fixture check has no table: its test stays the anchor.
    assert anchors([fresh], {}, workspace)["fresh"].path == "nets.py"


def test_annotation_titles_name_every_problem() -> None:
    both = check(kwargs={"hidden": 256}, budgets={"max_params": 600_000}, stored=accepted())
    missing = check("fresh", "nets:Tiny")
    [first, second] = annotation_lines([both, missing], {}, failures([both, missing], *NAMES))
    assert first.startswith("::error title=cnn-budget%3A cifar over budget%2C layout changed::")
    assert second.startswith("::error title=cnn-budget%3A fresh no snapshot entry::")


def test_annotation_lines_at_most_ten_of_each_kind_then_one_notice() -> None:
    error = check("e", "nets:Tiny", budgets={"max_params": 5}, snapshot=False)
    warning = check("w", "nets:Tiny", budgets={"max_params": 5}, snapshot=False, level=Level.WARN)
    results = [replace(error, name=f"e{i:02d}") for i in range(12)]
    results += [replace(warning, name=f"w{i:02d}") for i in range(11)]
    lines = annotation_lines(results, {}, failures(results, *NAMES))
    assert [line.split(" ", 1)[0] for line in lines] == (
        ["::error"] * 10 + ["::warning"] * 10 + ["::notice"]
    )
    # The first ten of each kind in name order; e10, e11 and w10 are counted instead.
    assert "e09" in lines[9]
    assert "w09" in lines[19]
    assert lines[-1] == workflow_command(
        "notice",
        "3 more cnn-budget failures are not annotated (GitHub shows at most 10 per step); "
        "see the job summary or the log",
        title="cnn-budget: more failures",
    )


def test_neutralize_prefixes_command_lines_only() -> None:
    assert neutralize("::error::x") == "| ::error::x"
    assert neutralize("   ::warning::x") == "|    ::warning::x"
    assert neutralize("fine :: text") == "fine :: text"
    assert neutralize(": :error::x") == ": :error::x"
    assert neutralize_text("ok\n::error::x\n  ::notice::y") == "ok\n| ::error::x\n|   ::notice::y"


def runner_lines(output: str) -> list[str]:
    """The lines the Actions runner reads: .NET's StreamReader.ReadLine ends a line at \\n, \\r
    or \\r\\n (actions/runner, ProcessInvoker.StartReadStream)."""
    return re.split(r"\r\n|\r|\n", output)


def test_neutralize_text_defuses_lines_after_a_carriage_return() -> None:
    printed = "downloading 50%\r::error::injected\nok"
    commands = [line for line in runner_lines(neutralize_text(printed)) if line.startswith("::")]
    assert commands == []


# Every line break str.splitlines honours; the set is checked against str.splitlines below.
LINE_BREAK_KINDS = [
    "\r\n",
    "\r",
    "\n",
    "\v",
    "\f",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
]


def test_line_break_kinds_are_the_ones_splitlines_honours() -> None:
    breaks = {chr(i) for i in range(0x110000) if len(f"a{chr(i)}b".splitlines()) == 2}
    assert breaks | {"\r\n"} == set(LINE_BREAK_KINDS)


@pytest.mark.parametrize("line_break", LINE_BREAK_KINDS, ids=ascii)
def test_neutralize_text_defuses_the_line_after_every_line_break(line_break: str) -> None:
    printed = f"ok{line_break}::error::injected{line_break}  ::warning::x{line_break}fine"
    defused = neutralize_text(printed)
    # The breaks stay as they were; only the command lines gain their prefix.
    assert defused == (
        f"ok{line_break}| ::error::injected{line_break}|   ::warning::x{line_break}fine"
    )
    assert not [line for line in defused.splitlines() if line.lstrip().startswith("::")]


# What the runner's TrimStart (.NET) may remove before it looks for `::`: ASCII and Unicode
# white space, the zero-width space and the byte-order mark that .NET Framework trimmed too.
LEADING = [
    " ",
    "\t",
    "\x1f",
    "\u00a0",
    "\u1680",
    "\u2000",
    "\u2007",
    "\u200a",
    "\u202f",
    "\u205f",
    "\u3000",
    "\ufeff",
    "\u200b",
    "\u180e",
    "\u2060",
    "\ufeff\u3000 \u00a0\t",
]


@pytest.mark.parametrize("leading", LEADING, ids=ascii)
def test_neutralize_sees_through_leading_unicode_white_space(leading: str) -> None:
    assert neutralize(f"{leading}::error::x") == f"| {leading}::error::x"
    assert neutralize_text(f"ok\n{leading}::error::x") == f"ok\n| {leading}::error::x"
    assert neutralize(f"{leading}fine") == f"{leading}fine"


def test_neutralize_sees_through_every_white_space_character() -> None:
    spaces = [chr(i) for i in range(0x110000) if chr(i).isspace()]
    assert {"\u00a0", "\u2007", "\u3000"} <= set(spaces)
    assert all(neutralize(f"{c}::error::x").startswith("| ") for c in spaces)


# -- the table renderer --------------------------------------------------------------------------

HOSTILE_ROWS = [
    ("plain", "1"),
    ("a|b", "22"),
    ("back\\slash\\", "333"),
    ("\\|", "4"),
    ("<script>alert('&')</script>", "4,444"),
]
COLUMNS: list[Column[tuple[str, str]]] = [
    Column("name", lambda row: row[0]),
    Column("count", lambda row: row[1], right=True),
]


def gfm_cells(line: str) -> list[str]:
    """A Markdown table row's cells as GitHub reads them (cmark-gfm's table extension): a pipe
    after a backslash is part of the cell; then backslash escapes and HTML entities resolve."""
    inner = line.strip()[1:-1]
    cells = re.split(r"(?<!\\)\|", inner)
    resolved = [re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", c.strip().replace("\\|", "|")) for c in cells]
    return [html.unescape(c) for c in resolved]


def test_render_and_grid_in_every_style(expected: Expected) -> None:
    headers = [c.header for c in COLUMNS]
    outputs = []
    for style in Style:
        lines = render(COLUMNS, HOSTILE_ROWS, style)
        assert lines == grid(headers, [list(r) for r in HOSTILE_ROWS], [False, True], style)
        outputs.append(f"{style.value}:\n" + text(lines))
        if style is Style.TEXT:
            # Text is printed as it is: no escapes, columns padded to one width.
            width = max(len(name) for name, _ in HOSTILE_ROWS)
            assert lines[2:] == [f"{n:<{width}}  {c:>5}" for n, c in HOSTILE_ROWS]
            continue
        # Whatever the cells hold, GitHub reads back the same cells.
        assert [gfm_cells(line) for line in lines[:1] + lines[2:]] == [
            headers,
            *map(list, HOSTILE_ROWS),
        ]
        if style is Style.MARKDOWN_PADDED:
            assert len({len(line) for line in lines}) == 1
    expected("render_tables.txt", "\n".join(outputs))


def test_markdown_escape_in_a_cell_and_in_inline_html() -> None:
    hostile = "a|b \\ <script>alert('x')</script> & \"q\"\nnext\r\nlast `code` [l](x)\u2028end"
    assert markdown_escape(hostile) == (
        "a\\|b \\\\ &lt;script&gt;alert('x')&lt;/script&gt; &amp; \"q\" next  last \\`code\\` "
        "\\[l\\](x) end"
    )
    # Inline HTML (<summary>) takes no backslash escapes: only the HTML and line breaks go.
    assert markdown_escape(hostile, cell=False) == (
        "a|b \\ &lt;script&gt;alert('x')&lt;/script&gt; &amp; \"q\" next  last `code` [l](x) end"
    )
    assert gfm_cells(f"| {markdown_escape(hostile)} |") == [
        "".join(" " if c in LINE_BREAKS else c for c in hostile)
    ]


def test_markdown_escape_turns_every_line_break_into_a_space() -> None:
    # Every character str.splitlines ends a line at, so no reader of the summary breaks a row.
    breaks = {chr(i) for i in range(0x110000) if len(f"a{chr(i)}b".splitlines()) == 2}
    assert breaks == set(LINE_BREAKS)
    for cell in (True, False):
        assert markdown_escape(f"a{LINE_BREAKS}b", cell=cell) == f"a{' ' * len(LINE_BREAKS)}b"


@pytest.mark.parametrize(
    ("code", "markdown"),
    [
        ("7.2% ▊·········", "`7.2% ▊·········`"),
        ("a|b", "`a`\\|`b`"),
        ("back\\slash", "`back`\\\\`slash`"),
        ("x`y", "``x`y``"),
        ("`x``", "``` `x`` ```"),
        (" padded ", "`  padded  `"),
        ("<b>&amp;</b>", "`<b>&amp;</b>`"),  # inside a span, HTML and entities show as typed
        ("two\nlines", "`two lines`"),
    ],
)
def test_a_code_cell_is_inline_code_that_shows_every_character(code: str, markdown: str) -> None:
    lines = grid(["code"], [[markdown_code(code)]], [False], Style.MARKDOWN)
    assert lines[2] == f"| {markdown} |"
    # In a text table, the text as it is.
    assert grid(["code"], [[markdown_code(code)]], [False])[2] == code.replace("\n", "\\n").rstrip()


def test_markdown_padded_rule_has_a_hyphen_in_every_cell() -> None:
    lines = grid(["n", "name"], [["1", "one"]], [True, False], Style.MARKDOWN_PADDED)
    assert all(re.fullmatch(r":?-+:?", cell.strip()) for cell in lines[1].strip("| ").split(" | "))


# -- JSON ----------------------------------------------------------------------------------------

METADATA_KEYS = {
    "schema",
    "model",
    "target",
    "outcome",
    "level",
    "snapshot",
    "budgets",
    "error",
    "error_stage",
    "notes",
    "measurement",
}


def test_metadata_of_a_measured_model_and_of_a_broken_one() -> None:
    budgets = {"max_params": 600_000, "max_macs": 7_000_000}
    result = check(budgets=budgets, input_shape=AT_32, stored=accepted(input_shape=AT_32))
    data = render_json.json_report_metadata([result])
    assert list(data) == ["cnn_budget"]
    meta = data["cnn_budget"]
    assert set(meta) == METADATA_KEYS
    assert problems(meta, "model") == []
    model = nets.Cifar()
    measured = meta["measurement"]
    totals = measured["totals"]
    assert totals["params"] == totals["trainable"] == params(model) == nets.CIFAR_PARAMS
    compute = measured["compute"]
    assert (compute["macs"], compute["flops"]) == (nets.CIFAR_MACS, 2 * nets.CIFAR_MACS)
    assert compute["inputs"] == {"args": [[1, 3, 32, 32]], "kwargs": {}}  # a list, as elsewhere
    assert totals["param_bytes"] == sum(p.numel() * p.element_size() for p in model.parameters())
    assert meta["budgets"] == {
        "max_params": {"limit": 600_000, "actual": nets.CIFAR_PARAMS, "over": False},
        "max_macs": {"limit": 7_000_000, "actual": nets.CIFAR_MACS, "over": False},
    }
    # The measurement is the command line's, key for key.
    assert result.count is not None
    assert measured == {
        k: v for k, v in render_json.summary_dict(result.count).items() if k != "schema"
    }
    assert measured["layers"][0]["output_shape"] == [1, 32, 32, 32]
    assert json.loads(json.dumps(meta)) == meta
    broken = render_json.json_report_metadata([check("broken", "nowhere:Net")])["cnn_budget"]
    assert set(broken) == METADATA_KEYS
    assert problems(broken, "model") == []
    assert broken["measurement"] is None
    assert (broken["outcome"], broken["error_stage"]) == ("error", "build")
    assert "No module named 'nowhere'" in broken["error"]


def test_a_traced_optimizers_inf_or_nan_option_is_written_as_text() -> None:
    options = MemoryOptions(optimizer="sgd", optimizer_kwargs={"lr": math.inf, "x": [-math.inf]})
    traced = render_json.memory_dict(Memory(1, 1, 0, 1, 3, 2, options))["traced_with"]
    assert traced["optimizer_kwargs"] == {"lr": "inf", "x": ["-inf"]}
    # pytest-json-report dumps the metadata with NaN allowed: what it gets is strict already.
    with_nan = replace(options, optimizer_kwargs={"momentum": math.nan})
    result = check(input_shape=AT_32, memory=with_nan, snapshot=False)
    metadata = render_json.json_report_metadata([result])["cnn_budget"]
    assert json.loads(json.dumps(metadata, allow_nan=False)) == metadata
    assert metadata["measurement"]["memory"]["traced_with"]["optimizer_kwargs"] == {
        "momentum": "nan"
    }


def test_run_report_passes_unless_a_model_failed_or_errored() -> None:
    ok = check("ok", "nets:Tiny", snapshot=False)
    warned = check(
        "warned", "nets:Tiny", level=Level.WARN, budgets={"max_params": 5}, snapshot=False
    )
    failed = check("failed", "nets:Tiny", budgets={"max_params": 5}, snapshot=False)
    report = render_json.run_report([warned, ok], stale=["b", "a"])
    assert list(report) == ["schema", "passed", "models", "stale", "problems"]
    assert problems(report, "report") == []
    assert (report["schema"], report["passed"], report["stale"]) == (
        "pytest-cnnbudget/report/2",
        True,
        ["a", "b"],
    )
    assert list(report["models"]) == ["ok", "warned"]
    assert report["models"]["ok"] == render_json.json_report_metadata([ok])["cnn_budget"]
    assert render_json.run_report([ok, failed], [])["passed"] is False
    assert render_json.run_report([check("broken", "nowhere:Net")], [])["passed"] is False
    # A check that failed before a model could be (a name configured twice) fails the report.
    duplicate = render_json.run_report([ok], [], ["ok: the model name is configured in both …"])
    assert (duplicate["passed"], len(duplicate["problems"])) == (False, 1)
    assert problems(duplicate, "report") == []


def test_summary_dict_structure_with_keyword_inputs_and_depth() -> None:
    with torch.device("meta"):
        model = nn.Sequential(OrderedDict(backbone=nets.Cifar(), head=nn.Linear(10, 2)))
    inputs = InputSpec(kwargs=(("input", (1, 3, 32, 32)),))  # Sequential.forward(input)
    doc = render_json.summary_dict(measure(model, inputs, depth=1))
    assert list(doc) == [
        "schema",
        "depth",
        "totals",
        "bytes_by_dtype",
        "compute",
        "memory",
        "layers",
    ]
    assert doc["memory"] is None  # measured only when asked
    assert (doc["schema"], doc["depth"]) == ("pytest-cnnbudget/summary/2", 1)
    assert doc["totals"]["params"] == params(model)
    assert doc["compute"]["inputs"] == {"args": [], "kwargs": {"input": [1, 3, 32, 32]}}
    assert doc["compute"]["output_shape"] == [1, 2]
    assert set(doc["layers"][0]) == {
        "name",
        "type",
        "formula",
        "params",
        "trainable",
        "cumulative",
        "share",
        "layers",
        "output_shape",
        "macs",
        "flops",
    }
    assert [(r["name"], r["layers"]) for r in doc["layers"]] == [("backbone", 4), ("head", 1)]
    plain = render_json.summary_dict(measure(model))
    assert plain["compute"] is None
    assert plain["depth"] is None
    assert {r["output_shape"] for r in plain["layers"]} == {None}
    assert json.loads(json.dumps(doc)) == doc


# -- the xdist wire ------------------------------------------------------------------------------


def test_wire_round_trip_gives_back_an_equal_result() -> None:
    keyword = InputSpec(kwargs=(("x", (1, 3, 32, 32)),))
    results = [
        # Compute at keyword inputs, a diff against the snapshot, and a source line.
        check(
            kwargs={"hidden": 64},
            budgets={"max_params": 100},
            input_shape=keyword,
            stored=accepted(),
        ),
        # An update: the entry to write, its layers with output shapes and MACs.
        check(input_shape=AT_32, stored=accepted(kwargs={"hidden": 64}), update=True),
        # Buffers, and two dtypes (BatchNorm counts its batches in int64).
        check("normed", "nets:Normed", snapshot=False),
        check("broken", "nets:exploding"),
        # New to the snapshot: its change against it is "new", not 0.
        check("new", budgets={"max_params": 1000}),
        # Folded to a depth: the rows as shown travel beside every layer.
        check(input_shape=AT_32, depth=1, stored=accepted(kwargs={"hidden": 64})),
    ]
    changed, updated, normed, broken, new, folded = results
    assert new.first
    assert folded.folded is not None
    assert folded.folded.depth == 1
    assert folded.target_source is not None
    assert changed.count is not None
    assert changed.count.compute is not None
    assert changed.diff is not None
    assert changed.source is not None
    assert updated.entry is not None
    assert updated.entry.layers[0].output_shape is not None
    assert normed.count is not None
    assert len(normed.count.dtypes) == 2
    assert broken.error is not None
    assert broken.source is not None
    for result in results:
        # Through JSON, which turns every tuple into a list, as the transport may.
        data = json.loads(json.dumps(wire.encode(result)))
        assert wire.decode(data) == result


def test_a_text_table_keeps_every_cell_on_its_line() -> None:
    # A parameter name may hold a line break (register_parameter takes any string); in a CI log
    # the next line could start a workflow command.
    lines = grid(["layer", "formula"], [["fc", "w\n::error::x 2×2"]], [False, False])
    assert lines[2] == "fc     w\\n::error::x 2×2"
    assert len(lines) == 3


def test_a_failure_that_cannot_be_rendered_still_names_the_model_and_the_cause() -> None:
    # A limit of 0 cannot come from the config (budgets are positive); it stands for any
    # figure a renderer might trip on.
    check = BudgetCheck("max_params", "trainable parameters", 10, 0)
    result = ModelResult(
        name="odd",
        target="nets:Odd",
        level="error",
        outcome=Outcome.FAILED,
        snapshot=SnapshotStatus.OFF,
        budgets=(check,),
    )
    assert failure_lines(result, "pyproject.toml", "cnnbudget.snapshot.json") == [
        "odd: failed, and its tables could not be rendered: ZeroDivisionError: division by zero"
    ]


def test_an_annotation_message_is_cut_to_its_limit_whole_lines_at_a_time() -> None:
    lines = [f"row {i} " + "%" * 40 for i in range(500)]  # `%` escapes to three bytes
    message = bounded_message(lines)
    assert len(escape_data(message).encode("utf-8")) <= ANNOTATION_LIMIT
    kept = message.splitlines()
    assert kept[-1] == FULL_REPORT
    assert kept[-2] == f"… {500 - len(kept) + 2} more lines"
    assert kept[:-2] == lines[: len(kept) - 2]
    # A message that fits is whole, with where the full tables are.
    assert bounded_message(["a", "b"]) == f"a\nb\n{FULL_REPORT}"
    # One line longer than any reader wants is cut, not the whole message dropped.
    assert bounded_message(["x" * 10_000]).splitlines()[0] == "x" * 499 + "…"


# -- characters GitHub would not show as themselves ----------------------------------------------

# A right-to-left override (GitHub shows what follows it reversed: "Trojan Source"), an isolate,
# zero-width characters, the byte-order mark, spaces other than ASCII's, a line separator, an
# escape, a lone surrogate (model code can make each): every category str.isprintable refuses.
FORMAT_CHARACTERS = "\u202e\u2066\u200b\u200d\ufeff\xa0\u3000\u2028\x1b\x00\ud800\ue000"
SPOOFED_LAYER = "fc\u202egnp_exe"


class Spoofed(nn.Module):
    """A layer named as model code can name one: with a right-to-left override."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module(SPOOFED_LAYER, nn.Linear(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, SPOOFED_LAYER)(x)  # type: ignore[no-any-return]


class SpoofedError(nn.Module):
    """A constructor whose error holds every such character."""

    def __init__(self) -> None:
        super().__init__()
        raise ValueError(f"no weights for model{FORMAT_CHARACTERS}end")


def raw_characters(text: str) -> set[str]:
    """The characters of `text`, but its `\\n` line ends, that would not show as themselves."""
    return {c for c in text if not c.isprintable() and c != "\n"}


def test_visible_escapes_what_would_not_show_as_itself() -> None:
    assert visible(FORMAT_CHARACTERS) == "".join(repr(c)[1:-1] for c in FORMAT_CHARACTERS)
    assert visible(f"a{SPOOFED_LAYER}\tb\n", keep="\n") == "afc\\u202egnp_exe\\tb\n"
    # What shows as itself is left alone: accents, other scripts, emoji and their selector.
    shown = "é 模型 — 3×3 ⚠️ 🔺 ▊· `|` \\u202e"
    assert visible(shown) == shown
    # In Markdown the escape reads back as written: `\u` is no backslash escape.
    for cell in (True, False):
        assert markdown_escape(f"x{SPOOFED_LAYER}", cell) == "xfc\\u202egnp_exe"
    [row] = grid(["name"], [[f"a|{SPOOFED_LAYER}"]], [False], Style.MARKDOWN)[2:]
    assert [read_cell(c) for c in markdown_cells(row)] == ["a|fc\\u202egnp_exe"]
    [code] = grid(["used"], [[markdown_code(f"7%{SPOOFED_LAYER}")]], [False], Style.MARKDOWN)[2:]
    assert raw_characters(code) == set()
    assert markdown_code_block("a\u202e\nb\u200b") == "```text\na\\u202e\nb\\u200b\n```"


def test_annotation_title_and_message_show_format_characters_escaped() -> None:
    line = workflow_command(
        "error", f"one{SPOOFED_LAYER}\r\ntwo\u2028", title=f"t{SPOOFED_LAYER}", file="a.py"
    )
    # The toolkit's escapes for the line breaks it knows; every other character visible.
    assert line == "::error title=tfc\\u202egnp_exe,file=a.py::onefc\\u202egnp_exe%0D%0Atwo\\u2028"
    # Escaped before the message is measured, so what the runner gets stays within its limit.
    message = bounded_message([SPOOFED_LAYER * 200] * 40)
    assert raw_characters(message) == set()
    assert len(escape_data(message).encode("utf-8")) <= ANNOTATION_LIMIT


def spoofed_results() -> list[ModelResult]:
    """Failing models whose names, layer names and errors hold format characters: a fixture
    check's node id, a layer that fails its forward pass, a constructor's error, a layer over
    budget and changed against its snapshot."""
    stored = accepted("nets:Tiny")
    spoofed = "test_render:Spoofed"
    results = [
        check("tests/test_a.py::test_\u202etxt.exe", spoofed, budgets={"max_params": 5}),
        check("forward", spoofed, input_shape=parse_input_shape([1, 3]), snapshot=False),
        check("raised", "test_render:SpoofedError"),
        check("changed", spoofed, budgets={"max_params": 5}, stored=stored),
    ]
    failed, error = Outcome.FAILED, Outcome.ERROR
    assert [r.outcome for r in results] == [failed, error, error, failed]
    return results


def test_github_outputs_show_format_characters_escaped_whatever_their_source() -> None:
    results = spoofed_results()
    failed = failures(results, *NAMES)
    annotations = annotation_lines(results, {}, failed)
    summary = summary_markdown(results, failed)
    base = {r.name: accepted("nets:Tiny") for r in results}
    comparisons = compare_with_base(results, base, [r.name for r in results])
    comment = comment_markdown(results, comparisons, "the baseline \u202ebase.json")
    assert len(annotations) == len(results)
    for text in (*annotations, summary, comment):
        assert raw_characters(text) == set(), text
        text.encode("utf-8")  # a lone surrogate would not encode
    # The escapes are there to read: the name, the layer, the error.
    assert any(
        "title=cnn-budget%3A tests/test_a.py%3A%3Atest_\\u202etxt.exe" in a for a in annotations
    )
    for text, eol in (("\n".join(annotations), "%0A"), (summary, "\n")):
        assert "fc\\u202egnp_exe" in text
        # The error's two lines, as str.splitlines split it at U+2028.
        assert f"for model\\u202e\\u2066\\u200b\\u200d\\ufeff\\xa0\\u3000{eol}" in text
        assert f"\\x1b\\x00\\ud800\\ue000end{eol}" in text
    assert "tests/test_a.py::test_\\u202etxt.exe" in comment
    assert "the baseline \\u202ebase.json" in comment


def test_only_files_a_pull_request_can_show_are_annotated(tmp_path: Path) -> None:
    workspace = tmp_path / "repo"
    venv = workspace / ".venv"
    assert reviewable(str(workspace / "models" / "net.py"), str(workspace), [str(venv)])
    # Installed code, the interpreter's own environment, other folders, no file at all: not.
    assert not reviewable(
        str(workspace / "lib/python3.11/site-packages/timm/vit.py"), str(workspace)
    )
    assert not reviewable(str(venv / "lib" / "x.py"), str(workspace), [str(venv)])
    assert not reviewable(str(tmp_path / "elsewhere.py"), str(workspace))
    assert not reviewable("<string>", str(workspace))
    # An environment that holds the whole workspace says nothing about its files.
    assert reviewable(str(workspace / "net.py"), str(workspace), [str(tmp_path)])
    # Off GitHub there is no workspace: only installed code is refused.
    assert reviewable(str(tmp_path / "net.py"), None)


def test_an_invisible_character_is_escaped_as_its_code_point_any_plane() -> None:
    from pytest_cnnbudget.names import printable

    # repr() shows these as themselves: the escape is their code point, in the form repr uses.
    assert printable("m\u3164") == "m\\u3164"
    assert printable("a\U000e0100b") == "a\\U000e0100b"


def test_text_with_real_characters_is_left_as_it_is_by_unescaping() -> None:
    # Under LC_ALL=C the file system encoding is ASCII: surrogate escapes turn back into the
    # UTF-8 text they spell, and real characters (an id pytest left unescaped) stay as they are.
    code = (
        "from pytest_cnnbudget.names import unescaped; "
        "print(ascii(unescaped('t\\udcc3\\udcabst')), ascii(unescaped('t\\xebst')))"
    )
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout.split()) == (0, ["'t\\xebst'", "'t\\xebst'"]), done.stderr


def test_a_changed_model_in_ci_is_told_to_commit_the_snapshot_too() -> None:
    result = check(kwargs={"hidden": 64}, budgets={"max_params": 600_000}, stored=accepted())
    assert failure_lines(result, *NAMES)[-1] == (
        "If this change is intended, accept it with: pytest --cnn-budget-update"
    )
    assert failure_lines(result, *NAMES, ci=True)[-1] == (
        "If this change is intended, accept it with: pytest --cnn-budget-update and commit "
        "cnnbudget.snapshot.json (ran it already? the file is not in this commit)"
    )


@pytest.mark.parametrize(
    ("bytes_", "shown"),
    [
        (999, "999 B"),
        (999_500, "1.00 MB"),
        (2_180_392, "2.18 MB"),
        (9_999_999, "10.0 MB"),
        (36_693_416, "36.7 MB"),
        (52_000_000, "52.0 MB"),
        (99_960_000, "100 MB"),
        (999_500_000, "1.00 GB"),
        (108_900_000_000, "109 GB"),
    ],
)
def test_memory_cells_show_three_significant_digits(bytes_: int, shown: str) -> None:
    assert short_bytes(bytes_) == shown
