"""Section 12: the pull-request comment against a baseline of 100,000 models ."""

from __future__ import annotations

from context import Context
from harness import BENCH_DIR, Job, child_argv
from report import Row, Section, table

COMMENT_TARGET_S = 5.0  # "a few seconds" for the comment of a 100,000-model baseline
SIZES = (5_000, 20_000, 100_000)
QUICK_SIZES = (1_000, 5_000)
SHAPES = {
    "removed": "1 model checked, the baseline's others removed (a row each)",
    "changed": "every model checked and grown (a row and a layer diff each)",
}


def bench_comment(ctx: Context) -> Section:
    """12. `compare_with_base` and `comment_markdown` against baselines of 5,000 to 100,000."""
    sizes = QUICK_SIZES if ctx.quick else SIZES
    largest = sizes[-1]
    section = Section(f"12. The pull-request comment of a baseline of up to {largest:,} models")
    job = Job("comment", child_argv("comment-scale", *map(str, sizes)), BENCH_DIR)
    inside = ctx.runner.measure([job], ctx.repeat)[job.label]

    def figure(shape: str, n: int, what: str) -> float:
        return inside.inside(f"{shape}_{n}_{what}")

    for shape in SHAPES:
        comment = figure(shape, largest, "comment")
        compare = figure(shape, largest, "compare")
        section.rows.append(
            Row(
                "12",
                f"PR comment of a {largest:,}-model baseline, {shape}: comment_markdown",
                f"{comment:.3f} s (compare_with_base before it: {compare:.3f} s)",
                f"≤ {COMMENT_TARGET_S:.0f} s",
                comment <= COMMENT_TARGET_S,
            )
        )
    rows = [
        [
            shape,
            f"{n:,}",
            f"{figure(shape, n, 'compare') * 1e3:,.0f} ms",
            f"{figure(shape, n, 'comment') * 1e3:,.0f} ms",
            f"{figure(shape, n, 'bytes') / 1000:.1f} kB",
            f"{figure(shape, n, 'rows'):,.0f}",
            f"{figure(shape, n, 'details'):,.0f}",
        ]
        for shape in SHAPES
        for n in sizes
    ]
    section.lines += table(
        ["baseline", "models", "compare_with_base", "comment_markdown", "body", "rows", "diffs"],
        rows,
        right=[False, True, True, True, True, True, True],
    )
    n = len(inside.samples)
    section.lines += [
        "",
        *(f"- `{shape}`: {what}." for shape, what in SHAPES.items()),
        "",
        "Each model is `tiny_net` (benchmarks/models.py), its baseline entry the same model at "
        "another width, named like `team-3/experiments/model_000042`; the comment is cut to "
        "GitHub's limit (`COMMENT_LIMIT`, 60,000 bytes), so the rows and layer diffs it keeps "
        "are the same at every size. Timed inside one process per run, after torch was "
        f"frozen out of the collector's way as the gate freezes it; median of {n} "
        f"process{'es' if n != 1 else ''}. `compare_with_base` diffs each changed model "
        "against its entry, so it grows with the models; `comment_markdown` renders only the "
        "rows and diffs that can fit, measuring each once (an earlier fitting rendered the "
        "whole body again for each row it left out).",
    ]
    return section
