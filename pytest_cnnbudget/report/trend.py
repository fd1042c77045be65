"""Results → trend data for charts over commits, in github-action-benchmark's
`customSmallerIsBetter` format (`--cnn-budget-benchmark-json`). No I/O.

The format is a JSON array of `{"name", "unit", "value"}` (`extra` optional), one entry per
chart: here one per model and figure, each a figure that should not grow. A chart is keyed by its
entry's name, so a name must stay the same from commit to commit: `<model>: <figure>`.

```text
[{"name": "cifar_net: trainable parameters", "unit": "parameters", "value": 545098,
  "extra": "nets:Cifar"},
 {"name": "cifar_net: total parameters", ...}, {"name": "cifar_net: MACs", "unit": "MACs", ...},
 {"name": "cifar_net: peak training memory", "unit": "bytes", ...},
 {"name": "cifar_net: peak inference memory", "unit": "bytes", ...}]
```

MACs appear for a model that ran forward (`input_shape`), the memory figures for one whose
memory was traced. A model that could not be measured (its build, forward pass or memory trace
failed, or it timed out: no measurement at all) has no entries: a chart has no point for that
commit rather than a zero. A model over its budget has its figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..results import ModelResult

# Each figure's name in an entry, and its unit.
TRAINABLE = ("trainable parameters", "parameters")
TOTAL = ("total parameters", "parameters")
MACS = ("MACs", "MACs")
PEAK_TRAIN = ("peak training memory", "bytes")
PEAK_INFERENCE = ("peak inference memory", "bytes")


def trend_entries(results: Iterable[ModelResult]) -> list[dict[str, Any]]:
    """One entry per model and figure, models by name."""
    entries: list[dict[str, Any]] = []
    for result in sorted(results, key=lambda r: r.name):
        count = result.count
        if count is None:
            continue
        figures = [(TRAINABLE, count.trainable), (TOTAL, count.total)]
        if count.compute is not None:
            figures.append((MACS, count.compute.macs))
        if count.memory is not None:
            figures.append((PEAK_TRAIN, count.memory.peak_train))
            figures.append((PEAK_INFERENCE, count.memory.peak_inference))
        entries += [
            {
                "name": f"{result.name}: {figure}",
                "unit": unit,
                "value": value,
                "extra": result.target,
            }
            for (figure, unit), value in figures
        ]
    return entries
