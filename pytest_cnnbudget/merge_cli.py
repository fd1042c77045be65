"""`cnnbudget merge REPORT.json ...`: the JSON reports of a gate run split over several jobs
(`pytest --cnn-budget -k …` in a matrix, pytest-split, a job per package), each written with
`--cnn-budget-json`, joined into what one run would have written: the JSON report, the job
summary and the pull-request comment.

It builds no model and imports no torch: the reports carry every result whole (see
run/shards.py). It prints one line per failing model and per problem, and exits 0 when every
model passed, 1 when one failed, a configured model was checked by no shard, or the run had a
problem, and 2 when the reports cannot be merged (unreadable, not a report of this version,
written with other configs, one model's results differing).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from .errors import CnnBudgetError, CommandLineError, os_error_text
from .jsontext import DuplicateKeyError, loads
from .names import printable
from .report.comment import comment_markdown
from .report.github import summary_markdown
from .results import Outcome, SnapshotEntry
from .run import outputs
from .run.shard_merge import merge_shards
from .run.shards import Shard, read_shard
from .snapshot.store import read_baseline


def add_parser(commands: Any) -> None:
    """`merge` among the command line's commands."""
    merge = commands.add_parser(
        "merge",
        help="join the JSON reports of sharded runs into one report, job summary and comment",
        description="Join the reports that the shards of one gate run wrote with "
        "--cnn-budget-json into the report, job summary and pull-request comment one run "
        "would have written. Exit status: 0 every model passed; 1 a model failed, a "
        "configured model was checked by no shard, or the run had a problem; 2 the reports "
        "cannot be merged.",
    )
    merge.add_argument("reports", nargs="+", metavar="REPORT.json", help="a shard's report")
    merge.add_argument("--json", metavar="OUT", help="write the merged JSON report to OUT")
    merge.add_argument(
        "--summary",
        metavar="OUT",
        help="write the job summary (Markdown, what GITHUB_STEP_SUMMARY gets) to OUT",
    )
    merge.add_argument(
        "--comment", metavar="OUT", help="write the pull-request comment's body to OUT"
    )
    merge.add_argument(
        "--baseline",
        action="append",
        metavar="PATH",
        help="compare with this base-branch snapshot, as --cnn-budget-baseline (repeat for "
        "several; default: the snapshots the shards started from)",
    )
    merge.add_argument(
        "--baseline-name",
        metavar="TEXT",
        help="how the comment names the baseline, as --cnn-budget-baseline-name (default: its "
        "paths)",
    )
    merge.add_argument(
        "--comment-if-changed",
        action="store_true",
        help="leave the comment empty when no model changed, as --cnn-budget-comment-if-changed",
    )


def run_merge(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Merge the reports, write the outputs asked for, print the verdict; the exit status."""
    shards = [
        (printable(name), read_shard(read_report(name), printable(name))) for name in args.reports
    ]
    merged = merge_shards(shards)
    baseline = _baseline(args.baseline or [])
    if baseline is None and merged.baseline is not None:
        # What the shards compared with (cnnbudget ci's base), named as they named it.
        baseline = merged.baseline
        args.baseline_name = args.baseline_name or merged.against
    report = merged.report()
    errors = write_merged(args, merged, report, baseline)
    for line in verdict_lines(merged, len(args.reports)):
        print(line)
    if errors:
        raise CommandLineError("; ".join(errors))
    return 0 if report["passed"] else 1


def read_report(name: str) -> Any:
    """The JSON document in the file `name`; CommandLineError naming it when it is not one."""
    try:
        text = Path(name).read_bytes().decode("utf-8")
    except OSError as e:
        raise CommandLineError(f"cannot read {printable(name)}: {os_error_text(e)}") from e
    except UnicodeDecodeError as e:
        raise CommandLineError(f"{printable(name)} is not UTF-8 text: not a JSON report") from e
    try:
        return loads(text)
    except (json.JSONDecodeError, DuplicateKeyError, RecursionError) as e:
        raise CommandLineError(f"{printable(name)} is not JSON ({e}): not a JSON report") from e


def _baseline(paths: Sequence[str]) -> Mapping[str, SnapshotEntry] | None:
    """The base branch's snapshots, read as --cnn-budget-baseline reads them; None: none given."""
    if not paths:
        return None
    baseline: dict[str, SnapshotEntry] = {}
    for path in paths:
        try:
            baseline.update(read_baseline(Path(path)))
        except CnnBudgetError as e:
            said = str(e).replace("--cnn-budget-baseline", "--baseline", 1)
            raise CommandLineError(said) from e
    return baseline


def write_merged(
    args: argparse.Namespace,
    merged: Shard,
    report: Mapping[str, Any],
    baseline: Mapping[str, SnapshotEntry] | None,
) -> list[str]:
    """Write each output asked for (`report`, the merged JSON report), even when one before
    failed; why each that failed could not be written."""
    errors: list[str] = []
    results = list(merged.results.values())
    compared = cache(lambda: merged.compared(baseline))  # the summary's and the comment's

    def output(option: str, path: str | None, write: Callable[[Path], None]) -> None:
        if path is None:
            return
        try:
            write(Path(path))
        except Exception as e:
            errors.append(f"could not write {option} {printable(path)}: {outputs.failure_text(e)}")

    def summary() -> str:
        base = compared() if baseline is not None else None
        return summary_markdown(results, merged.failures, base, merged.all_problems())

    def comment() -> str:
        against = merged.snapshots()
        if baseline is not None:
            against = args.baseline_name or f"the baseline {', '.join(args.baseline)}"
        return comment_markdown(
            results,
            compared(),
            against,
            merged.group,
            if_changed=args.comment_if_changed,
            problems=merged.all_problems(),
        )

    output("--json", args.json, lambda path: outputs.write_json(path, report))
    if results or merged.all_problems():  # as the plugin: no summary for a run of nothing
        output("--summary", args.summary, lambda path: outputs.write_text(path, summary()))
    output("--comment", args.comment, lambda path: outputs.write_text(path, comment()))
    return errors


def verdict_lines(merged: Shard, reports: int) -> list[str]:
    """One line per failing model (the first line of its failure) and per problem, then the
    count."""
    failing = [
        r
        for r in sorted(merged.results.values(), key=lambda r: r.name)
        if r.outcome in (Outcome.FAILED, Outcome.ERROR)
    ]
    lines = [
        f"FAILED {next(iter(merged.failures.get(r.name, ())), printable(r.name))}" for r in failing
    ]
    problems = merged.all_problems()
    lines += [f"PROBLEM {problem}" for problem in problems]
    checked = _plural(len(merged.results), "model")
    counted = f"{len(failing)} of {checked} failed" if failing else f"{checked} passed"
    if problems:
        counted += f", {_plural(len(problems), 'problem')}"
    lines.append(f"cnnbudget merge: {counted} ({_plural(reports, 'report')})")
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"
