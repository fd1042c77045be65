"""The snapshot merge rule: stored entries + this run's results → what the file should hold. Pure.

One function decides, and both the writer and the update report read its answer, so what
`--cnn-budget-update` prints is what it wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..results import ModelResult, SnapshotEntry, SnapshotStatus


@dataclass(frozen=True)
class Merge:
    """The entries the snapshot should hold after an update, and how they came to be."""

    entries: Mapping[str, SnapshotEntry]
    added: tuple[str, ...]
    updated: tuple[str, ...]
    rejected: tuple[str, ...]  # over budget, or withheld (its test failed): never written
    removed: tuple[str, ...]  # stale entries dropped, only when every configured model ran
    stale: tuple[str, ...]  # stored entries whose model is no longer configured
    complete: bool  # every configured model ran
    changed: bool  # `entries` differs from what was stored: the file must be written

    def stale_after(self, written: bool) -> tuple[str, ...]:
        """The stale entries still in the file once the run is over: all of them, unless the
        update was written and removed some."""
        if not written:
            return self.stale
        removed = set(self.removed)  # a tuple's `in` would make this quadratic
        return tuple(n for n in self.stale if n not in removed)


def merge_snapshot(
    stored: Mapping[str, SnapshotEntry],
    results: Iterable[ModelResult],
    configured: Iterable[str],
    kept: Iterable[str] = (),
) -> Merge:
    """Accept the results that `--cnn-budget-update` may write; drop stale entries only when
    every configured model ran. `kept` names entries that are not stale though no table
    configures them (the `cnn_budget` fixture's, whose tests still exist)."""
    names = set(configured)
    keep = names | set(kept)
    ran = {r.name: r for r in results}
    entries = dict(stored)
    added: list[str] = []
    updated: list[str] = []
    rejected: list[str] = []
    for name in sorted(ran):
        result = ran[name]
        accepted = result.snapshot in (SnapshotStatus.ADDED, SnapshotStatus.UPDATED)
        if result.snapshot is SnapshotStatus.REJECTED or (accepted and result.entry is None):
            rejected.append(name)
        elif accepted and result.entry is not None:
            entries[name] = result.entry
            (added if result.snapshot is SnapshotStatus.ADDED else updated).append(name)
    stale = tuple(sorted(name for name in stored if name not in keep and name not in ran))
    # A partial run (-k, -m, node ids) cannot tell "no longer configured" from "not selected".
    complete = names <= set(ran)
    removed = stale if complete else ()
    for name in removed:
        del entries[name]
    return Merge(
        entries=entries,
        added=tuple(added),
        updated=tuple(updated),
        rejected=tuple(rejected),
        removed=removed,
        stale=stale,
        complete=complete,
        # Only what changed is written: an update that accepts nothing leaves the file (and its
        # absence) alone.
        changed=entries != dict(stored),
    )
