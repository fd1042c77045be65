"""Two states of a model → what changed: the snapshot diff, and the comparison with a base
branch's snapshot that a pull-request comment shows. Pure, and torch-free: the xdist controller
compares without ever building a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from ..results import LayerChange, ModelResult, SnapshotDiff, SnapshotEntry, TotalChange


def diff_entries(before: SnapshotEntry, after: SnapshotEntry) -> SnapshotDiff:
    """Changed, added and removed layers (in module order), and the model totals."""
    old = {layer.name: layer for layer in before.layers}
    new_names = {layer.name for layer in after.layers}
    changes = []
    for layer in after.layers:
        prior = old.get(layer.name)
        if prior is None:
            changes.append(LayerChange(layer.name, layer.type, None, layer.params, layer.formula))
        elif prior != layer:
            changes.append(
                LayerChange(layer.name, layer.type, prior.params, layer.params, layer.formula)
            )
    changes += [
        LayerChange(layer.name, layer.type, layer.params, None, layer.formula)
        for layer in before.layers
        if layer.name not in new_names
    ]
    totals = [TotalChange("total", before.total, after.total)]
    for label in ("trainable", "frozen", "buffers", "macs"):
        b, a = getattr(before, label), getattr(after, label)
        if a != b:
            totals.append(TotalChange("MACs" if label == "macs" else label, b or 0, a or 0))
    # Memory figures by name; one measured on only one side shows against 0.
    stored, now = dict(before.memory or ()), dict(after.memory or ())
    for name in (*now, *(n for n in stored if n not in now)):
        if stored.get(name) != now.get(name):
            totals.append(TotalChange(name, stored.get(name, 0), now.get(name, 0)))
    return SnapshotDiff(tuple(changes), tuple(totals))


class Change(str, Enum):
    """How a model compares with the base."""

    NEW = "new"  # not in the base
    REMOVED = "removed"  # in the base, no longer configured
    GREW = "grew"
    SHRANK = "shrank"
    CHANGED = "changed"  # the same total, a different layout or other figures
    SAME = "same"
    UNKNOWN = "unknown"  # it could not be counted in this run


@dataclass(frozen=True)
class BaseComparison:
    """One model against the base: its entries there and here, and the diff between them."""

    name: str
    change: Change
    base: SnapshotEntry | None
    head: SnapshotEntry | None
    diff: SnapshotDiff | None = None

    @property
    def before(self) -> int | None:
        """Total parameters in the base; None for a new model."""
        return self.base.total if self.base is not None else None

    @property
    def after(self) -> int | None:
        """Total parameters now; None for a removed or uncounted model."""
        return self.head.total if self.head is not None else None

    @property
    def delta(self) -> int | None:
        """Total parameters gained (negative: lost); None when either side is missing."""
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def relative(self) -> float | None:
        """`delta` as a fraction of the base; None when there is none to divide by."""
        delta, before = self.delta, self.before
        return delta / before if delta is not None and before else None


def compare_with_base(
    results: Iterable[ModelResult],
    base: Mapping[str, SnapshotEntry],
    configured: Iterable[str],
) -> tuple[BaseComparison, ...]:
    """Every model that ran against its base entry, then the base's models no longer
    configured; sorted by name within each part."""
    out = []
    for result in sorted(results, key=lambda r: r.name):
        before = base.get(result.name)
        if result.count is None:
            out.append(BaseComparison(result.name, Change.UNKNOWN, before, None))
            continue
        head = SnapshotEntry.from_count(result.count)
        if before is None:
            out.append(BaseComparison(result.name, Change.NEW, None, head))
            continue
        if before == head:
            out.append(BaseComparison(result.name, Change.SAME, before, head))
            continue
        change = (
            Change.GREW
            if head.total > before.total
            else Change.SHRANK
            if head.total < before.total
            else Change.CHANGED
        )
        out.append(BaseComparison(result.name, change, before, head, diff_entries(before, head)))
    names = set(configured)
    out += [
        BaseComparison(name, Change.REMOVED, base[name], None)
        for name in sorted(base)
        if name not in names
    ]
    return tuple(out)
