"""The snapshot merge rule, `merge.merge_snapshot`: stored entries + results → what to write.

Results are built as the check returns them: an entry only where an update may write one.
"""

from __future__ import annotations

from pytest_cnnbudget.results import (
    ModelResult,
    Outcome,
    SnapshotEntry,
    SnapshotLayer,
    SnapshotStatus,
)
from pytest_cnnbudget.snapshot.merge import merge_snapshot


def entry(params: int) -> SnapshotEntry:
    """A one-layer model's entry: `params` parameters in `fc`."""
    return SnapshotEntry(params, params, 0, 0, (SnapshotLayer("fc", "Linear", params, "n"),))


def result(name: str, status: SnapshotStatus, now: SnapshotEntry | None = None) -> ModelResult:
    """A model's result with snapshot `status`; `now` is the entry it would write."""
    failed = status in (SnapshotStatus.REJECTED, SnapshotStatus.CHANGED, SnapshotStatus.MISSING)
    return ModelResult(
        name=name,
        target=f"nets:{name}",
        level="error",
        outcome=Outcome.FAILED if failed else Outcome.PASSED,
        snapshot=status,
        entry=now,
    )


# -- what an update writes ----------------------------------------------------------------


def test_added_and_updated_entries_are_written_and_told_apart() -> None:
    stored = {"b": entry(1), "c": entry(3)}
    merge = merge_snapshot(
        stored,
        [
            result("b", SnapshotStatus.UPDATED, entry(2)),
            result("a", SnapshotStatus.ADDED, entry(5)),
            result("c", SnapshotStatus.MATCH, entry(3)),
        ],
        configured=["a", "b", "c"],
    )
    assert merge.entries == {"a": entry(5), "b": entry(2), "c": entry(3)}
    assert (merge.added, merge.updated, merge.rejected) == (("a",), ("b",), ())
    assert (merge.complete, merge.changed) == (True, True)


def test_a_partial_update_keeps_the_entries_of_models_that_did_not_run() -> None:
    stored = {"cifar": entry(10), "tiny": entry(72)}
    merge = merge_snapshot(
        stored, [result("cifar", SnapshotStatus.UPDATED, entry(9))], ["cifar", "tiny"]
    )
    assert merge.entries == {"cifar": entry(9), "tiny": entry(72)}
    assert (merge.complete, merge.removed, merge.changed) == (False, (), True)


def test_rejected_models_are_listed_and_not_written() -> None:
    stored = {"old": entry(1)}
    merge = merge_snapshot(
        stored,
        [result("new", SnapshotStatus.REJECTED), result("old", SnapshotStatus.REJECTED)],
        ["new", "old"],
    )
    assert merge.rejected == ("new", "old")
    assert merge.entries == stored
    assert (merge.added, merge.updated, merge.changed) == ((), (), False)


def test_an_update_that_accepts_nothing_changes_nothing() -> None:
    stored = {"cifar": entry(10)}
    for results in (
        [result("cifar", SnapshotStatus.MATCH, entry(10))],
        [result("cifar", SnapshotStatus.UNKNOWN)],  # the model could not be built
        [result("cifar", SnapshotStatus.OFF)],
        [],  # nothing selected
    ):
        merge = merge_snapshot(stored, results, ["cifar"])
        assert merge.entries == stored
        assert not merge.changed, results
    # No file and nothing to add: the file stays absent.
    assert not merge_snapshot({}, [result("cifar", SnapshotStatus.REJECTED)], ["cifar"]).changed


def test_a_plain_runs_results_write_nothing() -> None:
    # Without --cnn-budget-update the check reports changed and missing, with no entry.
    stored = {"cifar": entry(10)}
    results = [result("cifar", SnapshotStatus.CHANGED), result("tiny", SnapshotStatus.MISSING)]
    merge = merge_snapshot(stored, results, ["cifar", "tiny"])
    assert (merge.entries, merge.added, merge.updated, merge.changed) == (stored, (), (), False)


# -- stale entries ------------------------------------------------------------------------


def test_stale_entries_are_removed_when_every_configured_model_ran() -> None:
    stored = {"cifar": entry(10), "gone": entry(1), "also_gone": entry(2)}
    merge = merge_snapshot(stored, [result("cifar", SnapshotStatus.MATCH, entry(10))], ["cifar"])
    assert merge.stale == merge.removed == ("also_gone", "gone")
    assert merge.entries == {"cifar": entry(10)}
    assert (merge.complete, merge.changed) == (True, True)
    # Once written they are gone; a plain run writes nothing, so they are still there.
    assert merge.stale_after(written=True) == ()
    assert merge.stale_after(written=False) == ("also_gone", "gone")


def test_stale_entries_are_listed_but_kept_by_a_partial_run() -> None:
    # A partial run (-k, -m, node ids) cannot tell "no longer configured" from "not selected".
    stored = {"cifar": entry(10), "gone": entry(1)}
    for ran in ([], [result("cifar", SnapshotStatus.MATCH, entry(10))]):
        merge = merge_snapshot(stored, ran, ["cifar", "tiny"])
        assert merge.stale == ("gone",)
        assert (merge.removed, merge.complete, merge.changed) == ((), False, False)
        assert merge.entries == stored
        assert merge.stale_after(written=True) == ("gone",)
