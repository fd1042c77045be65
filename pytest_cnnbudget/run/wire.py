"""A `ModelResult` ↔ JSON-ready data, to carry it from a pytest-xdist worker to the controller
inside a test report. Only workers encode and only the controller decodes; in a run without
xdist a result never leaves its process and never goes through here. No I/O.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..inputs import InputSpec
from ..ranks import ParallelOptions, RankMemory
from ..results import (
    BudgetCheck,
    Compute,
    DtypeBytes,
    LayerChange,
    LayerRow,
    Memory,
    MemoryOptions,
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


def encode(result: ModelResult) -> dict[str, Any]:
    """A lossless, JSON-serializable form of `result`."""
    data: dict[str, Any] = _plain(result)
    data["outcome"] = result.outcome.value
    data["snapshot"] = result.snapshot.value
    return data


_FIELDS: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """`value` as dicts, lists and scalars. What `dataclasses.asdict` does, without its deep
    copies: a 70B model's result, thousands of rows, crosses in a few milliseconds, not 25."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):  # a traced optimizer's keyword arguments
        return {k: _plain(v) for k, v in value.items()}
    names = _FIELDS.get(type(value))
    if names is None:
        names = _FIELDS[type(value)] = tuple(f.name for f in fields(value))
    return {name: _plain(getattr(value, name)) for name in names}


def decode(data: dict[str, Any]) -> ModelResult:
    """Inverse of `encode`."""
    count = data.get("count")
    diff = data.get("diff")
    entry = data.get("entry")
    source = data.get("source")
    folded = data.get("folded")
    target_source = data.get("target_source")
    return ModelResult(
        name=data["name"],
        target=data["target"],
        level=data["level"],
        outcome=Outcome(data["outcome"]),
        snapshot=SnapshotStatus(data["snapshot"]),
        count=_count(count) if count is not None else None,
        budgets=tuple(BudgetCheck(**b) for b in data["budgets"]),
        diff=SnapshotDiff(
            layers=tuple(LayerChange(**c) for c in diff["layers"]),
            totals=tuple(TotalChange(**t) for t in diff["totals"]),
        )
        if diff is not None
        else None,
        entry=SnapshotEntry(
            **{k: v for k, v in entry.items() if k not in ("layers", "memory")},
            layers=tuple(SnapshotLayer(**_shaped(x)) for x in entry["layers"]),
            memory=_pairs(entry["memory"]),
        )
        if entry is not None
        else None,
        error=data["error"],
        error_stage=data["error_stage"],
        source=SourceLocation(**source) if source is not None else None,
        target_source=SourceLocation(**target_source) if target_source is not None else None,
        folded=_count(folded) if folded is not None else None,
        notes=tuple(data["notes"]),
        first=data.get("first", False),
    )


def _pairs(data: list[list[Any]] | None) -> tuple[tuple[str, int], ...] | None:
    return tuple((name, n) for name, n in data) if data is not None else None


def _memory(data: dict[str, Any] | None) -> Memory | None:
    if data is None:
        return None
    options = dict(data["options"])
    parallel = _parallel(options.pop("parallel"))
    rank = data["rank"]
    return Memory(
        **{k: v for k, v in data.items() if k not in ("options", "saved", "rank")},
        options=MemoryOptions(**options, parallel=parallel),
        saved=_pairs(data["saved"]) or (),
        rank=_rank(rank) if rank is not None else None,
    )


def _rank(data: dict[str, Any]) -> RankMemory:
    options = _parallel(data["options"])
    if options is None:
        raise ValueError("a rank's memory came without the settings it was traced with")
    return RankMemory(
        options=options,
        at_peak=_pairs(data["at_peak"]) or (),
        gathered_peak=data["gathered_peak"],
        uneven=data["uneven"],
    )


def _parallel(data: dict[str, Any] | None) -> ParallelOptions | None:
    if data is None:
        return None
    plan = tuple((pattern, style) for pattern, style in data["tp_plan"])
    wrap = tuple(data["wrap"]) if data["wrap"] is not None else None
    return ParallelOptions(**{**data, "tp_plan": plan, "wrap": wrap})


def _count(data: dict[str, Any]) -> ParameterCount:
    compute = data["compute"]
    skip = ("layers", "dtypes", "compute", "memory")
    fields = {k: v for k, v in data.items() if k not in skip}
    return ParameterCount(
        **fields,
        memory=_memory(data["memory"]),
        layers=tuple(LayerRow(**_shaped(r)) for r in data["layers"]),
        dtypes=tuple(DtypeBytes(**d) for d in data["dtypes"]),
        compute=Compute(
            inputs=InputSpec(
                args=tuple(tuple(s) for s in compute["inputs"]["args"]),
                kwargs=tuple((name, tuple(s)) for name, s in compute["inputs"]["kwargs"]),
            ),
            output_shape=_tuple(compute["output_shape"]),
            macs=compute["macs"],
            flops=compute["flops"],
        )
        if compute is not None
        else None,
    )


def _tuple(shape: list[int] | None) -> tuple[int, ...] | None:
    return tuple(shape) if shape is not None else None


def _shaped(row: dict[str, Any]) -> dict[str, Any]:
    # Shapes are tuples in the dataclasses; the JSON transport makes them lists.
    return {**row, "output_shape": _tuple(row.get("output_shape"))}
