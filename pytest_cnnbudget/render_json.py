"""Results ↔ JSON-ready dicts: for pytest-json-report, `--cnn-budget-json`, and for carrying a
result from an xdist worker to the controller inside a test report. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from .results import (
    BudgetCheck,
    LayerChange,
    LayerRow,
    ModelResult,
    Outcome,
    ParameterCount,
    SnapshotDiff,
    SnapshotEntry,
    SnapshotLayer,
    SnapshotStatus,
    SourceLocation,
    TotalChange,
)

FORMAT_VERSION = 1


def result_to_json(result: ModelResult) -> dict[str, Any]:
    """A lossless, JSON-serializable form of `result`."""
    data = asdict(result)
    data["outcome"] = result.outcome.value
    data["snapshot"] = result.snapshot.value
    return data


def result_from_json(data: dict[str, Any]) -> ModelResult:
    """Inverse of `result_to_json`."""
    count = data.get("count")
    diff = data.get("diff")
    entry = data.get("entry")
    source = data.get("source")
    return ModelResult(
        name=data["name"],
        target=data["target"],
        level=data["level"],
        outcome=Outcome(data["outcome"]),
        snapshot=SnapshotStatus(data["snapshot"]),
        count=_count(count) if count is not None else None,
        budgets=tuple(BudgetCheck(**b) for b in data.get("budgets", ())),
        diff=SnapshotDiff(
            layers=tuple(LayerChange(**c) for c in diff["layers"]),
            totals=tuple(TotalChange(**t) for t in diff["totals"]),
        )
        if diff is not None
        else None,
        entry=SnapshotEntry(
            **{k: v for k, v in entry.items() if k != "layers"},
            layers=tuple(SnapshotLayer(**_shaped(x)) for x in entry["layers"]),
        )
        if entry is not None
        else None,
        error=data.get("error"),
        error_stage=data.get("error_stage", "build"),
        source=SourceLocation(**source) if source is not None else None,
    )


def _count(data: dict[str, Any]) -> ParameterCount:
    fields = {k: v for k, v in data.items() if k != "layers"}
    return ParameterCount(layers=tuple(LayerRow(**_shaped(r)) for r in data["layers"]), **fields)


def _shaped(row: dict[str, Any]) -> dict[str, Any]:
    # Shapes are tuples in the dataclasses; a JSON round trip may have made them lists.
    shape = row.get("output_shape")
    return {**row, "output_shape": tuple(shape)} if shape is not None else row


def metadata(result: ModelResult) -> dict[str, Any]:
    """The per-test `metadata` attached to pytest-json-report's entry for a model."""
    budget = result.primary_budget
    count = result.count
    return {
        "cnn_budget": {
            "model": result.name,
            "target": result.target,
            "outcome": result.outcome.value,
            "level": result.level,
            "trainable": count.trainable if count else None,
            "total": count.total if count else None,
            "frozen": count.frozen if count else None,
            "buffers": count.buffers if count else None,
            "budget": budget.limit if budget else None,
            "budgets": {b.key: {"limit": b.limit, "actual": b.actual} for b in result.budgets},
            "snapshot": result.snapshot.value,
            "macs": count.macs if count else None,
            "flops": count.flops if count else None,
            "input_shape": count.input_shape if count else None,
            "param_bytes": count.param_bytes if count else None,
            "buffer_bytes": count.buffer_bytes if count else None,
            "layers": [
                {
                    "output_shape": list(r.output_shape) if r.output_shape else None,
                    "macs": r.macs,
                    "name": r.name,
                    "type": r.type,
                    "params": r.params,
                    "trainable": r.trainable,
                    "formula": r.formula,
                }
                for r in (count.layers if count else ())
            ],
            "error": result.error,
        }
    }


def run_report(results: Iterable[ModelResult], stale: Iterable[str]) -> dict[str, Any]:
    """The whole run, for `--cnn-budget-json`."""
    ordered = sorted(results, key=lambda r: r.name)
    return {
        "version": FORMAT_VERSION,
        "passed": all(r.outcome in (Outcome.PASSED, Outcome.WARNED) for r in ordered),
        "models": {r.name: metadata(r)["cnn_budget"] for r in ordered},
        "stale": sorted(stale),
    }
