"""Budget lines to paste into a model's table: what `cnnbudget summary --memory` offers after
the figures, each a little above what the model measures today."""

from __future__ import annotations

import math

from ..config.locations import model_table
from ..results import ParameterCount
from ..units import parse_bytes

HEADROOM = 0.15  # above today's figure: room for small changes, while a real jump still fails

_UNITS = ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "kB"), (1, "B"))


def rounded_up(n: float) -> str:
    """`n` bytes rounded up to two significant digits, as a budget is written: `77MB`."""
    for size, suffix in _UNITS:
        if n >= size or size == 1:
            value = n / size
            step = 10 ** (math.floor(math.log10(value)) - 1) if value >= 1 else 1
            up = math.ceil(value / step - 1e-9) * step
            text = f"{up:.{max(0, -round(math.log10(step)))}f}"
            return f"{text}{suffix}"
    raise AssertionError("unreachable")


def memory_budget_lines(count: ParameterCount, name: str | None) -> list[str]:
    """`max_train_memory = "77MB"` and `max_inference_memory = …`, with HEADROOM over the
    traced peaks, and where they go; nothing when memory was not traced."""
    memory = count.memory
    if memory is None:
        return []
    table = model_table(name) if name else "the model's table"
    lines = [f"Budgets to paste into {table} (the peaks + {HEADROOM:.0%}, rounded up):"]
    for key, peak in (
        ("max_train_memory", memory.peak_train),
        ("max_inference_memory", memory.peak_inference),
    ):
        written = rounded_up(peak * (1 + HEADROOM))
        assert parse_bytes(written) >= peak  # what is pasted passes today
        lines.append(f'{key} = "{written}"')
    return lines
