"""Section 8: what rendering every output of one failing LLaMA-70B-shaped model costs."""

from __future__ import annotations

from context import Context
from harness import BENCH_DIR, Job, Stats, child_argv
from report import Row, Section, markdown_code, table

RENDER_TARGET_MS = 50.0  # every output of one failing 80-block model, on top of its check
ANNOTATION_LIMIT = 4096  # bytes of an annotation's message (report.github.ANNOTATION_LIMIT)

# What `child.py rendering` times, in the order a gate run renders it: the output, the calls.
PARTS = {
    "failure": ("terminal: a failure (rendered once, reused below)", "failure_lines"),
    "overview": ("terminal: overview, -v (per-layer table)", "overview_lines"),
    "annotation": ("GitHub: annotation", "anchors + annotation_lines"),
    "summary": ("GitHub: job summary", "summary_markdown"),
    "comment": ("pull-request comment", "compare_with_base + comment_markdown"),
    "json": ("JSON report", "run_report, with its shard data"),
    "dump": ("JSON report, its text", "json.dumps (as write_json)"),
    "wire": ("pytest-xdist transport", "wire.encode + wire.decode"),
}


def _size(inside: Stats, mode: str, part: str) -> str:
    def kb(key: str) -> str:
        return f"{inside.inside(f'{mode}_{key}_bytes') / 1024:.1f} KB"

    if part in ("failure", "overview"):
        return f"{inside.inside(f'{mode}_{part}_lines'):.0f} lines, {kb(part)}"
    if part == "annotation":
        return f"{inside.inside(f'{mode}_annotation_bytes'):,.0f} B message"
    if part in ("summary", "comment", "dump"):
        return kb(part)
    return "—"


def bench_rendering(ctx: Context) -> Section:
    """8. Every output of one failing 80-block decoder whose hidden size changed, timed."""
    rounds = 5 if ctx.quick else 10
    section = Section("8. Rendering at LLM scale: one failing LLaMA-70B-shaped model, 80 blocks")
    job = Job("rendering", child_argv("rendering", str(rounds)), BENCH_DIR)
    inside = ctx.runner.measure([job], ctx.repeat)[job.label]

    def ms(mode: str, part: str) -> float:
        return inside.inside(f"{mode}_{part}") * 1e3

    total = ms("grouped", "total")
    ungrouped = ms("ungrouped", "total")
    wire = ms("grouped", "wire")
    biggest = sorted(PARTS, key=lambda p: -ms("grouped", p))[:3]
    largest = ", ".join(f"{part} {ms('grouped', part):.1f}" for part in biggest)
    message = inside.inside("grouped_annotation_bytes")
    section.rows += [
        Row(
            "8",
            "rendering every output of one failing 80-block model (dim 8192 → 8448)",
            f"{total:.1f} ms (largest: {largest})",
            f"≤ {RENDER_TARGET_MS:.0f} ms",
            total <= RENDER_TARGET_MS,
        ),
        Row(
            "8",
            "the same without pytest-xdist (no wire round trip)",
            f"{total - wire:.1f} ms",
            "—",
            None,
        ),
        Row(
            "8",
            "the same with grouping off (--cnn-budget-no-group)",
            f"{ungrouped:.1f} ms",
            "—",
            None,
        ),
        Row(
            "8",
            "annotation message, grouped / ungrouped",
            f"{message:,.0f} / {inside.inside('ungrouped_annotation_bytes'):,.0f} B",
            f"≤ {ANNOTATION_LIMIT:,} B",
            max(message, inside.inside("ungrouped_annotation_bytes")) <= ANNOTATION_LIMIT,
        ),
    ]
    rows = [
        [
            output,
            markdown_code(call),
            f"{ms('grouped', part):.2f} ms",
            _size(inside, "grouped", part),
            f"{ms('ungrouped', part):.2f} ms",
            _size(inside, "ungrouped", part),
        ]
        for part, (output, call) in PARTS.items()
    ]
    rows.append(
        [
            "**total**",
            "",
            f"**{total:.1f} ms**",
            "",
            f"**{ungrouped:.1f} ms**",
            "",
        ]
    )
    section.lines += table(
        ["output", "calls", "grouped", "its size", "grouping off", "its size"],
        rows,
        right=[False, False, True, True, True, True],
    )
    n = len(inside.samples)
    processes = f"{n} process{'es' if n != 1 else ''}"
    section.lines += [
        "",
        f"The model: `llama(vocab=32000, dim=8448, n_layers=80, hidden=28672, n_heads=64)` "
        f"from tests/architectures.py, {inside.inside('params'):,.0f} parameters, checked by "
        "`gate.check_model` against the snapshot entry of the same model at dim=8192 "
        f"({inside.inside('stored_params'):,.0f}) with `max_total_params` 70,000,000,000: "
        "over budget and a changed layout, both rendered. "
        f"{inside.inside('layer_rows'):.0f} layer rows "
        f"({inside.inside('grouped_layer_rows'):.0f} grouped); "
        f"the snapshot diff has {inside.inside('diff_layers'):.0f} changed layers, shown as "
        f"{inside.inside('grouped_diff_rows'):.0f} grouped rows "
        f"({inside.inside('ungrouped_diff_rows'):.0f} with grouping off). "
        f"`check_model` itself took {inside.inside('check') * 1e3:.0f} ms on meta.",
        "",
        f"Each figure is the median of {rounds} rounds in one process (each round renders "
        f"everything with grouping on, then off), then the median over {processes}; the "
        "total is the median of the rounds' sums. What is alive before the check (torch, the "
        "stored entry) is frozen out of the collector's way first, as the gate freezes torch "
        "(collector.py), and the checked model is gone before rendering starts, as it is in "
        "pytest's process after a forked check. Which outputs a run renders depends on its "
        "options: the terminal parts always, GitHub's under GitHub Actions, the comment with "
        "`--cnn-budget-comment`, the JSON with `--cnn-budget-json`, the wire round trip "
        "under pytest-xdist only.",
    ]
    if inside.inside("ungrouped_comment_bytes") < inside.inside("grouped_comment_bytes"):
        section.lines += [
            "",
            "With grouping off the comment is the smaller: its diff of "
            f"{inside.inside('ungrouped_diff_rows'):.0f} rows would pass the comment's size "
            "limit, so `comment_markdown` leaves it out and says so.",
        ]
    return section
