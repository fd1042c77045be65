"""Results → JSON-ready dicts: pytest-json-report's per-test metadata, `--cnn-budget-json`, and
`cnnbudget summary --format json`. No I/O.

The summary's JSON form (`summary_dict`) is stable; `version` changes if a key is renamed or
removed:

```text
{
  "version": 1,
  "depth": null | int,                      # rows grouped to this many name levels
  "totals": {"params", "trainable", "frozen", "buffers", "param_bytes", "buffer_bytes"},
  "bytes_by_dtype": {"float32": {"params", "param_bytes", "buffers", "buffer_bytes"}, ...},
  "compute": null | {                       # null unless the model was profiled
    "inputs": {"args": [[1, 3, 32, 32]], "kwargs": {"mask": [1, 32]}},
    "output_shape": [1, 10] | null,
    "macs": int, "flops": int               # 1 MAC = 2 FLOPs
  },
  "layers": [{"name", "type", "formula", "params", "trainable", "cumulative", "share",
              "layers", "output_shape", "macs", "flops"}, ...]
}
```

Element counts are integers, `share` a fraction of the total parameters, shapes lists of ints;
`output_shape`, `macs` and `flops` of a row are null when the model was not profiled or the
module never ran.

`memory` is null unless the model's memory was measured (a memory budget, `memory = true` or
`--memory`); then it holds `weights`, `gradients`, `optimizer`, `activations`, `peak_train` and
`peak_inference`, in bytes, and `traced_with` (optimizer, optimizer_kwargs, autocast,
train_mode), and every row has `activations`, the bytes its modules saved for backward.

A model with quantized layers also has `totals.quantized`, the elements those layers hold
packed (counted in `params` and `frozen`, never `trainable`), and each of their rows
`"quantized": "qint8"`, its weights' dtype; `bytes_by_dtype` then lists `qint8` (1 byte an
element) beside the float32 biases. Both keys are absent for every other model and row, so a
float model's JSON is what it always was; the test metadata adds them, and `notes` (how the
model was measured: `"built on cpu: …"`), the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .results import LayerRow, Memory, ModelResult, Outcome, ParameterCount

FORMAT_VERSION = 1
SUMMARY_VERSION = 1


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
            **({"quantized": count.quantized} if count and count.quantized else {}),
            "memory": memory_dict(count.memory) if count and count.memory else None,
            "layers": [
                {
                    "output_shape": _list(r.output_shape),
                    "macs": r.macs,
                    "name": r.name,
                    "type": r.type,
                    "params": r.params,
                    "trainable": r.trainable,
                    "formula": r.formula,
                    **_quantized(r),
                    **_activations(r),
                }
                for r in (count.parameter_rows if count else ())
            ],
            "error": result.error,
            **({"notes": list(result.notes)} if result.notes else {}),
        }
    }


def memory_dict(memory: Memory) -> dict[str, Any]:
    """The memory figures in bytes, and how the step was traced."""
    options = memory.options
    return {
        **memory.figures(),
        "traced_with": {
            "optimizer": options.optimizer,
            "optimizer_kwargs": dict(options.optimizer_kwargs),
            "autocast": options.autocast,
            "train_mode": options.train_mode,
        },
    }


def _activations(row: LayerRow) -> dict[str, int]:
    """`{"activations": bytes}` on every row of a model whose memory was measured."""
    return {"activations": row.activations} if row.activations is not None else {}


def _quantized(row: LayerRow) -> dict[str, str]:
    """`{"quantized": "qint8"}` for a quantized layer's row, `{}` for any other."""
    return {"quantized": row.quantized} if row.quantized else {}


def run_report(results: Iterable[ModelResult], stale: Iterable[str]) -> dict[str, Any]:
    """The whole run, for `--cnn-budget-json`."""
    ordered = sorted(results, key=lambda r: r.name)
    return {
        "version": FORMAT_VERSION,
        "passed": all(r.outcome in (Outcome.PASSED, Outcome.WARNED) for r in ordered),
        "models": {r.name: metadata(r)["cnn_budget"] for r in ordered},
        "stale": sorted(stale),
    }


def summary_dict(count: ParameterCount) -> dict[str, Any]:
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
        "version": SUMMARY_VERSION,
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
