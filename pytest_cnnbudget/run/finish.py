"""The end of a gate run, pytest-free: what each snapshot holds after it, which entries are kept
and which are stale, what is compared with the base, which outputs are written, and whether the
update was written. A pytest session calls it once its results are in; a command could call it
with results read from JSON.

Each rule is written once here: `kept_entries` (what is not stale though no table configures it),
`Ending.written` (whether an update's file was written) and `Ending.stale` (what stays stale).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from ..config.files import ConfigFile, Configs
from ..errors import CnnBudgetError
from ..report.cells import Failures
from ..report.comment import comment_markdown
from ..report.github import anchors, annotation_lines, summary_markdown
from ..report.json import run_report
from ..report.terminal import overview_lines, update_lines
from ..report.trend import trend_entries
from ..results import ModelResult, SnapshotEntry, SnapshotStatus
from ..snapshot.compare import BaseComparison, compare_with_base
from ..snapshot.merge import Merge, merge_snapshot
from ..snapshot.store import locked, write_snapshot
from . import outputs
from .collected import NOTHING_COLLECTED, Collected, kept_entries
from .gitbase import commit_of, snapshots_at, top_level
from .shards import shard_data
from .start import RunOptions


def merge_file(
    file: ConfigFile,
    entries: Mapping[str, SnapshotEntry],
    results: Iterable[ModelResult],
    kept: Callable[[Iterable[str]], list[str]],
) -> Merge:
    """What one config's snapshot should hold after a run, from `entries` as stored; `kept`
    picks the stored entries that no table configures but are not stale."""
    return merge_snapshot(entries, results, file.configured(), kept(entries))


def results_of(
    configs: Configs, results: Iterable[ModelResult], file: ConfigFile
) -> list[ModelResult]:
    """The results of the models (and fixture checks) of one config file."""
    return [r for r in results if configs.owner.get(r.name) == file.path]


_ACCEPTED = (SnapshotStatus.ADDED, SnapshotStatus.UPDATED)


def withheld(result: ModelResult) -> ModelResult:
    """A check whose test failed after it: an update writes none of it, and says so."""
    accepted = result.snapshot in _ACCEPTED
    return replace(
        result, entry=None, snapshot=SnapshotStatus.REJECTED if accepted else result.snapshot
    )


@dataclass(frozen=True)
class Ending:
    """How one config file's snapshot ends a run."""

    file: ConfigFile
    results: tuple[ModelResult, ...]  # this run's results of its models
    merge: Merge
    # The update wrote this file's merge (or found nothing to change): only then did it add,
    # update and remove what `merge` says.
    written: bool

    @property
    def stale(self) -> tuple[str, ...]:
        """The stale entries still in the file once the run is over."""
        return self.merge.stale_after(self.written)

    def settled(self) -> tuple[ModelResult, ...]:
        """Its results as the file was left: `added` or `updated` only where the update wrote
        that entry; any other it meant to write (its file could not be written, its entry was
        withheld) is `not written`."""
        wrote = set(self.merge.added + self.merge.updated) if self.written else set()
        return tuple(
            withheld(r) if r.snapshot in _ACCEPTED and r.name not in wrote else r
            for r in self.results
        )


@dataclass(frozen=True)
class RunEnd:
    """Every config file's ending, what the snapshots' writing had to say, and the results as
    the reports must show them: what the snapshots now hold."""

    endings: tuple[Ending, ...]
    results: tuple[ModelResult, ...] = ()  # every result, settled (see Ending.settled)
    collected: Collected = NOTHING_COLLECTED
    errors: tuple[str, ...] = ()  # snapshots that could not be written
    notes: tuple[str, ...] = ()  # what the update report adds about the snapshots

    @property
    def stale(self) -> list[str]:
        """Every file's stale entries, sorted."""
        return sorted(n for ending in self.endings for n in ending.stale)


def end_run(
    configs: Configs,
    results: Sequence[ModelResult],
    rootdir: Path,
    update: bool,
    collected: Collected = NOTHING_COLLECTED,
) -> RunEnd:
    """Merge a run's results into each config's snapshot; with `update`, write each merge that
    changes its file, under its lock, so that a concurrent update's entries are kept."""

    endings, errors, notes = [], [], []
    for file in configs:

        def kept(names: Iterable[str], folder: Path = file.path.parent) -> list[str]:
            return kept_entries(names, (rootdir, folder), collected)

        ran = tuple(results_of(configs, results, file))
        path = file.settings.snapshot
        if not update or path is None:
            endings.append(Ending(file, ran, merge_file(file, file.stored, ran, kept), False))
            continue
        try:
            with locked(path) as current:
                merge = merge_file(file, current.entries, ran, kept)
                if merge.changed:
                    write_snapshot(path, merge.entries, file.path)
        except CnnBudgetError as e:
            errors.append(f"the snapshot was not written, and still holds what it held before: {e}")
            endings.append(Ending(file, ran, merge_file(file, file.stored, ran, kept), False))
            continue
        endings.append(Ending(file, ran, merge, True))
        if not current.held:
            notes.append(
                f"{path.parent} does not support file locks: a concurrent "
                "--cnn-budget-update could have overwritten entries"
            )
        if current.entries != file.stored:
            notes.append(
                "the snapshot changed on disk during this run (another update); "
                "its entries were kept, merged with this run's"
            )
    settled = {r.name: r for ending in endings for r in ending.settled()}
    shown = tuple(settled.get(r.name, r) for r in results)
    return RunEnd(tuple(endings), shown, collected, tuple(errors), tuple(notes))


def compare_run(
    configs: Configs,
    results: Sequence[ModelResult],
    baseline: Mapping[str, SnapshotEntry] | None,
    rootdir: Path,
    collected: Collected = NOTHING_COLLECTED,
) -> tuple[BaseComparison, ...]:
    """Every model against the base: the baseline when given, else the snapshots as they were
    before this run."""
    base = baseline
    if base is None:
        base = {name: e for file in configs for name, e in file.stored.items()}
    folders = (rootdir, *(file.path.parent for file in configs))
    kept = kept_entries(base, folders, collected)
    configured = [*configs.names(), *(r.name for r in results), *kept]
    return compare_with_base(results, base, configured)


@dataclass(frozen=True)
class BaseRead:
    """The baseline a run compares with, and what reading it had to say."""

    baseline: Mapping[str, SnapshotEntry] | None
    notes: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


def read_base(
    options: RunOptions, configs: Configs, baseline: Mapping[str, SnapshotEntry] | None
) -> BaseRead:
    """The baseline: --cnn-budget-baseline's files as read at the start, or, with
    --cnn-budget-base-rev, the snapshot file of every config the run loaded as that commit
    held it (known only now: a package's config is found by collection)."""
    rev = options.base_rev
    if rev is None:
        return BaseRead(baseline)
    files = [f.settings.snapshot for f in configs if f.settings.snapshot is not None]
    try:
        repo = top_level(options.rootdir)
        entries, missing = snapshots_at(commit_of(rev, options.rootdir), repo, files)
    except CnnBudgetError as e:
        error = f"the base's snapshots (--cnn-budget-base-rev {rev}) could not be read: {e}"
        return BaseRead(None, errors=(error,))
    notes = tuple(f"{why}: its models count as new" for why in missing)
    return BaseRead(entries, notes=notes)


def summary_lines(
    run_end: RunEnd, results: Sequence[ModelResult], rootdir: Path, verbose: bool, group: bool
) -> list[str]:
    """The run's summary: what each written update did, the notes, one line per model."""
    lines: list[str] = []
    for ending in run_end.endings:
        if ending.written:
            snapshot = ending.file.settings.snapshot_name(rootdir)
            lines += update_lines(ending.results, ending.merge, snapshot, group)
    lines += run_end.notes
    lines += overview_lines(
        results, run_end.stale, verbose=verbose, max_rows=10**9 if verbose else 50, group=group
    )
    return lines


def annotation_commands(
    configs: Configs, results: Sequence[ModelResult], failed: Failures, workspace: str | None
) -> list[str]:
    """The workflow commands that annotate each failing model where a reviewer looks."""
    places = {m.name: (file.path, m.line) for file in configs for m in file.settings.models}
    environments = (sys.prefix, sys.exec_prefix, sys.base_prefix)
    where = anchors(results, places, workspace, environments)
    return annotation_lines(results, where, failed)


def write_outputs(
    options: RunOptions,
    configs: Configs,
    results: Sequence[ModelResult],
    run_end: RunEnd,
    failed: Failures,
    baseline: Mapping[str, SnapshotEntry] | None,
    streams: outputs.Streams | None = None,
    problems: Sequence[str] = (),
) -> list[str]:
    """Write every output the run asked for, each even when the one before failed; why each
    that failed could not be written."""
    errors: list[str] = []
    compared: list[tuple[BaseComparison, ...]] = []

    def comparisons() -> tuple[BaseComparison, ...]:
        # Once, for the job summary and the comment alike.
        if not compared:
            compared.append(
                compare_run(configs, results, baseline, options.rootdir, run_end.collected)
            )
        return compared[0]

    def output(what: str, write: Callable[[], object]) -> None:
        try:
            write()
        except Exception as e:
            errors.append(f"could not write {what}: {outputs.failure_text(e)}")

    if options.json:
        path = options.path(options.json)
        based = (baseline, _against(options, configs, True)) if baseline is not None else None
        shard = partial(shard_data, configs, results, failed, options, run_end.collected, based)
        output(
            f"the JSON report (--cnn-budget-json {path})",
            lambda: outputs.write_json(
                path, run_report(results, run_end.stale, problems, shard()), streams
            ),
        )
    if options.benchmark_json:
        trend = options.path(options.benchmark_json)
        output(
            f"the trend data (--cnn-budget-benchmark-json {trend})",
            lambda: outputs.write_json(trend, trend_entries(results), streams),
        )
    if results:
        base = comparisons if baseline is not None else None
        _summaries(
            options,
            lambda: summary_markdown(results, failed, base() if base else None, problems),
            output,
            streams,
        )
    if options.comment:
        comment = options.path(options.comment)
        against = _against(options, configs, baseline is not None)

        def write_comment() -> None:
            body = comment_markdown(
                results,
                comparisons(),
                against,
                options.group,
                if_changed=options.comment_if_changed,
                problems=problems,
            )
            outputs.write_text(comment, body, streams)

        output(f"the pull-request comment (--cnn-budget-comment {comment})", write_comment)
    if options.plot:
        folder = options.path(options.plot)
        output(
            f"the charts (--cnn-budget-plot {folder})",
            lambda: outputs.write_charts(folder, results),
        )
    if streams is not None:
        streams.close()
    return errors


def _summaries(
    options: RunOptions,
    render: Callable[[], str],
    output: Callable[[str, Callable[[], object]], None],
    streams: outputs.Streams | None,
) -> None:
    """The job summary: appended to GitHub's, written to --cnn-budget-summary's file."""
    rendered: list[str] = []

    def markdown() -> str:
        if not rendered:  # once, for both
            rendered.append(render())
        return rendered[0]

    github = options.step_summary if options.github else None
    if github:
        output(
            f"the job summary (GITHUB_STEP_SUMMARY={github})",
            lambda: outputs.append_text(Path(github), markdown(), streams),
        )
    if options.summary:
        written = options.path(options.summary)
        output(
            f"the job summary (--cnn-budget-summary {written})",
            lambda: outputs.write_text(written, markdown(), streams),
        )


def _against(options: RunOptions, configs: Configs, baseline: bool) -> str:
    """How the comment names what it compares with: the baseline files, else the snapshots."""
    if baseline:
        return options.baseline_name or f"the baseline {', '.join(options.baselines)}"
    names = ", ".join(file.settings.snapshot_name(options.rootdir) for file in configs)
    return f"the snapshot {names}"
