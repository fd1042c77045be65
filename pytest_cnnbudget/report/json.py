"""Results → JSON-ready dicts: pytest-json-report's per-test metadata, `--cnn-budget-json`, and
`cnnbudget summary --format json`. No I/O.

One vocabulary for all three: a model's check is a `model_dict` wherever it appears (the JSON
report's `models`, the test metadata's `cnn_budget`), and its `measurement` is what the command
line prints. Shapes are lists of integers, every count and byte figure an integer; the configured
values echoed (`optimizer_kwargs`, the command line's `kwargs`) go through `jsontext.echoed`, so
that an `inf` is the text "inf" and every document is strict JSON. Each document names its
structure in `schema`; the JSON Schema files in `pytest_cnnbudget/schemas/` describe them
(docs/json.md):

```text
model   {"schema": "pytest-cnnbudget/model/2", "model", "target", "outcome", "level",
         "snapshot", "budgets": {key: {"limit", "actual", "over"}}, "error", "error_stage",
         "notes": [...], "measurement": null | measurement}
report  {"schema": "pytest-cnnbudget/report/2", "passed", "models": {name: model}, "stale",
         "problems": [...], "shard": {...}}   # "shard": what `cnnbudget merge` reads
summary {"schema": "pytest-cnnbudget/summary/2", ...measurement} (the command line adds
         "model", "target", "kwargs")
measurement {
  "depth": null | int,                      # rows grouped to this many name levels
  "totals": {"params", "trainable", "frozen", "buffers", "param_bytes", "buffer_bytes"},
  "bytes_by_dtype": {"float32": {"params", "param_bytes", "buffers", "buffer_bytes"}, ...},
  "compute": null | {                       # null unless the model ran forward
    "inputs": {"args": [[1, 3, 32, 32]], "kwargs": {"mask": [1, 32]}},
    "output_shape": [1, 10] | null,
    "macs": int, "flops": int               # 1 MAC = 2 FLOPs
  },
  "memory": null | {"weights", "gradients", "optimizer", "activations", "peak_train",
                    "peak_inference", "traced_with"},
  "layers": [{"name", "type", "formula", "params", "trainable", "cumulative", "share",
              "layers", "output_shape", "macs", "flops"}, ...]
}
```

A report's `shard` is the data `cnnbudget merge` joins the reports of sharded runs by
(run/shards.py): each result whole, as `run/wire.py` carries it, each failure as rendered, the
config files' digests, the snapshot entries a comparison needs. It is written for the merge of
one pytest-cnnbudget version, not as a stable vocabulary: read `models` instead. It roughly
doubles the report's size.

`share` is a fraction of the total parameters; a row's `output_shape`, `macs` and `flops` are null
when the model did not run forward or the module never ran. With memory measured, every row has
`activations`, the bytes its modules saved for backward. A model with quantized layers has
`totals.quantized`, the elements those layers hold packed (counted in `params` and `frozen`,
never `trainable`), and each of their rows `"quantized": "qint8"`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import exception_text
from ..jsontext import echoed, json_text
from ..results import LayerRow, Memory, ModelResult, Outcome, ParameterCount

# Each document names its structure and version in its `schema` key; pytest_cnnbudget/schemas/
# holds a JSON Schema for each (and for the snapshot file). A version changes when a key is
# renamed or removed, or changes its meaning; adding a key does not change it.
MODEL_SCHEMA = "pytest-cnnbudget/model/2"
REPORT_SCHEMA = "pytest-cnnbudget/report/2"
SUMMARY_SCHEMA = "pytest-cnnbudget/summary/2"


def model_dict(result: ModelResult) -> dict[str, Any]:
    """One model's check: the structure of the JSON report's models, of pytest-json-report's
    metadata and, for its `measurement`, of `cnnbudget summary --format json`."""
    return {
        "schema": MODEL_SCHEMA,
        "model": result.name,
        "target": result.target,
        "outcome": result.outcome.value,
        "level": result.level,
        "snapshot": result.snapshot.value,
        "budgets": {
            b.key: {"limit": b.limit, "actual": b.actual, "over": b.over} for b in result.budgets
        },
        "error": result.error,
        "error_stage": result.error_stage if result.error is not None else None,
        "notes": list(result.notes),
        "measurement": measurement_dict(result.count) if result.count is not None else None,
    }


def json_report_metadata(results: Sequence[ModelResult]) -> dict[str, Any]:
    """pytest-json-report's `metadata` of a test that checked `results`: one model's check, or
    a list for a test that checked several (`name=`); {} for none."""
    shown: list[dict[str, Any]] = []
    for result in results:
        try:
            checked = model_dict(result)
            # pytest-json-report dumps it with NaN allowed: refused here, as our outputs are.
            json_text(checked)
            shown.append(checked)
        except Exception as e:  # one model's odd figures must not break the whole report
            shown.append({"name": result.name, "error": exception_text(e)})
    if not shown:
        return {}
    return {"cnn_budget": shown[0] if len(shown) == 1 else shown}


def memory_dict(memory: Memory) -> dict[str, Any]:
    """The memory figures in bytes, and how the step was traced."""
    options = memory.options
    return {
        **memory.figures(),
        "traced_with": {
            "optimizer": options.optimizer,
            # As configured, each float that is not finite as "inf", "-inf" or "nan".
            "optimizer_kwargs": echoed(dict(options.optimizer_kwargs)),
            "autocast": options.autocast,
            "train_mode": options.train_mode,
        },
        **_parallel(memory),
    }


def _parallel(memory: Memory) -> dict[str, Any]:
    """For a rank's figures: the parallel settings as used, and what its training peak holds."""
    rank = memory.rank
    if rank is None:
        return {}
    settings = rank.options
    return {
        "parallel": {
            "strategy": settings.strategy,
            "world_size": settings.world_size,
            "replicate": settings.replicate,
            "tensor_parallel": settings.tensor_parallel,
            "data_parallel": settings.data_parallel,
            "tp_plan": dict(settings.tp_plan),
            "reshard_after_forward": settings.reshard_after_forward,
            "mixed_precision": settings.mixed_precision,
            "wrap": list(settings.wrap) if settings.wrap is not None else None,
            "rank": 0,
            "uneven_parameters": rank.uneven,
            "peak_train_parts": dict(rank.at_peak),
            "gathered_peak": rank.gathered_peak,
        }
    }


def _activations(row: LayerRow) -> dict[str, int]:
    """`{"activations": bytes}` on every row of a model whose memory was measured."""
    return {"activations": row.activations} if row.activations is not None else {}


def _quantized(row: LayerRow) -> dict[str, str]:
    """`{"quantized": "qint8"}` for a quantized layer's row, `{}` for any other."""
    return {"quantized": row.quantized} if row.quantized else {}


def settle_json_report(json_report: dict[str, Any], results: Iterable[ModelResult]) -> None:
    """Correct, in pytest-json-report's assembled report, each model check's `snapshot` to what
    the update wrote (its metadata was taken as the test ran, before the update)."""
    settled = {r.name: r.snapshot.value for r in results}
    for test in json_report.get("tests", ()):
        checks = test.get("metadata", {}).get("cnn_budget") if isinstance(test, dict) else None
        for check in checks if isinstance(checks, list) else [checks]:
            if isinstance(check, dict) and check.get("model") in settled:
                check["snapshot"] = settled[check["model"]]


def run_report(
    results: Iterable[ModelResult],
    stale: Iterable[str],
    problems: Sequence[str] = (),
    shard: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole run, for `--cnn-budget-json`; `problems`, the checks that failed before any
    model could be (a model name configured in two files), each of which fails the run;
    `shard`, what `cnnbudget merge` reads (run/shards.py's `shard_dict`)."""
    ordered = sorted(results, key=lambda r: r.name)
    passed = all(r.outcome in (Outcome.PASSED, Outcome.WARNED) for r in ordered)
    report = {
        "schema": REPORT_SCHEMA,
        "passed": passed and not problems,
        "models": {r.name: model_dict(r) for r in ordered},
        "stale": sorted(stale),
        "problems": list(problems),
    }
    if shard is not None:
        report["shard"] = dict(shard)
    return report


def summary_dict(count: ParameterCount) -> dict[str, Any]:
    """`cnnbudget summary --format json`: a measurement, named by its schema."""
    return {"schema": SUMMARY_SCHEMA, **measurement_dict(count)}


def measurement_dict(count: ParameterCount) -> dict[str, Any]:
    """The documented JSON structure of one measurement (see the module docstring)."""
    compute = None
    if count.compute is not None:
        inputs = count.compute.inputs
        compute = {
            "inputs": {
                "args": [list(s) for s in inputs.args],
                "kwargs": {name: list(s) for name, s in inputs.kwargs},
            },
            "output_shape": _list(count.compute.output_shape),
            "macs": count.compute.macs,
            "flops": count.compute.flops,
        }
    return {
        "depth": count.depth,
        "totals": {
            "params": count.total,
            "trainable": count.trainable,
            "frozen": count.frozen,
            "buffers": count.buffers,
            "param_bytes": count.param_bytes,
            "buffer_bytes": count.buffer_bytes,
            **({"quantized": count.quantized} if count.quantized else {}),
        },
        "bytes_by_dtype": {
            d.dtype: {
                "params": d.params,
                "param_bytes": d.param_bytes,
                "buffers": d.buffers,
                "buffer_bytes": d.buffer_bytes,
            }
            for d in count.dtypes
        },
        "compute": compute,
        "memory": memory_dict(count.memory) if count.memory is not None else None,
        "layers": [
            {
                "name": r.name,
                "type": r.type,
                "formula": r.formula,
                "params": r.params,
                "trainable": r.trainable,
                "cumulative": r.cumulative,
                "share": r.share,
                "layers": r.members,
                "output_shape": _list(r.output_shape),
                "macs": r.macs,
                "flops": r.flops,
                **_quantized(r),
                **_activations(r),
            }
            for r in count.layers
        ],
    }


def _list(shape: tuple[int, ...] | None) -> list[int] | None:
    return list(shape) if shape is not None else None
