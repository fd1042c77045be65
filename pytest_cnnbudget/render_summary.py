"""A `Summary` → a text table, a GitHub-flavoured Markdown table, or a JSON-ready dict. No I/O.

The JSON form (`summary_dict`) is stable; `version` changes if a key is renamed or removed:

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
`output_shape`, `macs` and `flops` of a row are null when the model was not profiled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .render_terminal import percent, table, thousands, totals_line
from .shapes import format_shape
from .summary import Summary, SummaryRow
from .units import human_bytes, human_count

JSON_VERSION = 1


def _cells(summary: Summary, row: SummaryRow) -> list[str]:
    cells = [
        row.name,
        row.type,
        row.formula,
        thousands(row.params),
        thousands(row.cumulative),
        percent(row.share),
    ]
    if summary.profile is not None:
        shape = format_shape(row.output_shape) if row.output_shape is not None else "-"
        cells += [shape, thousands(row.macs or 0)]
    return cells


def _headers(summary: Summary) -> tuple[list[str], list[bool]]:
    headers = ["layer", "type", "formula", "params", "cumulative", "share"]
    right = [False, False, False, True, True, True]
    if summary.profile is not None:
        headers += ["output", "MACs"]
        right += [False, True]
    return headers, right


def memory_line(summary: Summary) -> str:
    """`parameter memory 2.18 MB (float32) · buffer memory 0 B`, split by dtype when mixed."""
    memory = summary.memory

    def part(label: str, total: int, by_dtype: dict[str, int]) -> str:
        if len(by_dtype) == 1:
            return f"{label} {human_bytes(total)} ({next(iter(by_dtype))})"
        if by_dtype:
            split = ", ".join(f"{name} {human_bytes(n)}" for name, n in by_dtype.items())
            return f"{label} {human_bytes(total)} ({split})"
        return f"{label} {human_bytes(total)}"

    return " · ".join(
        [
            part("parameter memory", memory.param_bytes, memory.param_bytes_by_dtype()),
            part("buffer memory", memory.buffer_bytes, memory.buffer_bytes_by_dtype()),
        ]
    )


def compute_line(summary: Summary) -> str | None:
    """`input 1×3×32×32 → output 1×10 · MACs 6,128,896 (6.13M) · FLOPs 12,257,792 (12.26M)`."""
    profile = summary.profile
    if profile is None:
        return None
    output = format_shape(profile.output_shape) if profile.output_shape is not None else "-"
    return (
        f"input {profile.inputs.describe()} → output {output} · "
        f"MACs {thousands(profile.macs)} ({human_count(profile.macs)}) · "
        f"FLOPs {thousands(profile.flops)} ({human_count(profile.flops)})"
    )


def _footer(summary: Summary) -> list[str]:
    lines = [totals_line(summary.count), memory_line(summary)]
    compute = compute_line(summary)
    return [*lines, compute] if compute else lines


def summary_text(summary: Summary) -> str:
    """The aligned per-layer table followed by the totals, memory and compute lines."""
    headers, right = _headers(summary)
    lines = table(headers, [_cells(summary, r) for r in summary.rows], right)
    return "\n".join([*lines, *_footer(summary)])


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]
) -> list[str]:
    """A GitHub-flavoured Markdown table; `right` columns are right-aligned."""
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---:" if r else ":---" for r in right) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def summary_markdown(summary: Summary) -> str:
    """The per-layer table as GitHub-flavoured Markdown, the totals as a list below it."""
    headers, right = _headers(summary)
    lines = markdown_table(headers, [_cells(summary, r) for r in summary.rows], right)
    lines.append("")
    lines += [f"- {_md_cell(line)}" for line in _footer(summary)]
    return "\n".join(lines)


def summary_dict(summary: Summary) -> dict[str, Any]:
    """The documented JSON structure (see the module docstring)."""
    count, memory, profile = summary.count, summary.memory, summary.profile
    compute = None
    if profile is not None:
        compute = {
            "inputs": {
                "args": [list(s) for s in profile.inputs.args],
                "kwargs": {name: list(s) for name, s in profile.inputs.kwargs},
            },
            "output_shape": (
                list(profile.output_shape) if profile.output_shape is not None else None
            ),
            "macs": profile.macs,
            "flops": profile.flops,
        }
    return {
        "version": JSON_VERSION,
        "depth": summary.depth,
        "totals": {
            "params": count.total,
            "trainable": count.trainable,
            "frozen": count.frozen,
            "buffers": count.buffers,
            "param_bytes": memory.param_bytes,
            "buffer_bytes": memory.buffer_bytes,
        },
        "bytes_by_dtype": {
            d.dtype: {
                "params": d.params,
                "param_bytes": d.param_bytes,
                "buffers": d.buffers,
                "buffer_bytes": d.buffer_bytes,
            }
            for d in memory.dtypes
        },
        "compute": compute,
        "layers": [
            {
                "name": r.name,
                "type": r.type,
                "formula": r.formula,
                "params": r.params,
                "trainable": r.trainable,
                "cumulative": r.cumulative,
                "share": r.share,
                "layers": r.layers,
                "output_shape": list(r.output_shape) if r.output_shape is not None else None,
                "macs": r.macs,
                "flops": r.flops,
            }
            for r in summary.rows
        ],
    }
