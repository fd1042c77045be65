"""Budget lines to paste into a model's table: what `cnnbudget summary --memory` offers after
the figures, each a little above what the model measures today."""

from __future__ import annotations

import math

from ..config.locations import model_table
from ..results import ParameterCount
from ..units import BYTE_UNITS, parse_bytes

HEADROOM = 0.15  # above today's figure: room for small changes, while a real jump still fails


def rounded_up(n: float) -> str:
    """`n` bytes rounded up to two significant digits, as a budget is written: `77MB`."""
    n = max(n, 1)  # a budget is at least a byte
    for i, (size, suffix) in enumerate(BYTE_UNITS):
        if n >= size or size == 1:
            value = n / size
            step = 10 ** (math.floor(math.log10(value)) - 1) if value >= 1 else 1
            step = max(step, 1) if size == 1 else step  # whole bytes
            up = math.ceil(value / step - 1e-9) * step
            if up >= 1000 and i:  # 999 B rounds up to 1.0kB, not 1000B
                return rounded_up(BYTE_UNITS[i - 1][0])
            text = f"{up:.{max(0, -round(math.log10(step)))}f}"
            return f"{text}{suffix}"
    raise AssertionError("unreachable")


def shape_toml(text: str | None) -> str | None:
    """--input-shape `64,3,32,32` as a table writes it, `[64, 3, 32, 32]`; None when it was not
    given (a configured model's table has its own) or is not one plain shape."""
    parts = (text or "").replace(" ", "").split(",")
    return f"[{', '.join(parts)}]" if text and all(p.isdigit() for p in parts) else None


def memory_budget_lines(
    count: ParameterCount,
    name: str | None,
    input_shape: str | None = None,
    parallel: str | None = None,
) -> list[str]:
    """`max_train_memory = "77MB"` and `max_inference_memory = …`, with HEADROOM over the
    traced peaks, and where they go (with `input_shape`, the TOML of the shape they were
    measured at, which a memory budget needs beside it; with `parallel`, the inline table of
    the run whose rank they are); nothing when memory was not traced."""
    memory = count.memory
    if memory is None:
        return []
    table = model_table(name) if name else "the model's table"
    lines = [f"Budgets to paste into {table} (the peaks + {HEADROOM:.0%}, rounded up):"]
    if input_shape is not None:
        # The peaks are the batch's: a memory budget needs the shape it was measured at.
        lines.append(f"input_shape = {input_shape}")
    if parallel is not None:
        # One rank's peaks: without the table they would be budgets for one device.
        lines.append(f"parallel = {parallel.strip()}")
    for key, peak in (
        ("max_train_memory", memory.peak_train),
        ("max_inference_memory", memory.peak_inference),
    ):
        written = rounded_up(peak * (1 + HEADROOM))
        assert parse_bytes(written) >= peak  # what is pasted passes today
        lines.append(f'{key} = "{written}"')
    return lines
