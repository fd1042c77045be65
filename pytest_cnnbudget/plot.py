"""A parameter count → a bar chart of each layer's share, as a Figure or SVG and PNG files.

matplotlib is an optional extra (`pytest-cnnbudget[plot]`) and is imported only when a chart is
drawn. Charts are drawn on a bare `matplotlib.figure.Figure` with the Agg canvas rather than
through pyplot: no global backend switch (which would break a notebook's inline display), no
figure registry to leak into, and no GUI toolkit needed on a CI runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PlotUnavailableError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.ticker import Formatter

    from .results import LayerRow, ParameterCount

FIGURE_WIDTH = 8.0  # inches
BAR_HEIGHT = 0.4  # inches of figure height per bar
MIN_HEIGHT = 2.0
PNG_DPI = 150
BAR_COLOR = "#4c72b0"
REST_COLOR = "#a0a0a0"
# Model keys and layer names are user text: drawn as typed, never read as mathtext (`$x^2$`,
# where a stray `$` or `\\foo` would make savefig raise) or handed to LaTeX by a usetex rc.
_PLAIN_TEXT: dict[str, Any] = {"parse_math": False, "usetex": False}


def _figure_class() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotUnavailableError(
            'charts need matplotlib; install it with: pip install "pytest-cnnbudget[plot]"'
        ) from e
    return Figure


def _bars(result: ParameterCount, top: int) -> list[tuple[str, int, float, bool]]:
    """(label, params, share, is_rest): the `top` largest layers, largest first, then the rest."""
    largest: tuple[LayerRow, ...] = result.largest(top)
    bars = [(f"{r.name} ({r.type})", r.params, r.share, False) for r in largest]
    rest = len(result.parameter_rows) - len(largest)
    if rest:
        params = result.total - sum(r.params for r in largest)
        share = params / result.total if result.total else 0.0
        bars.append((f"rest ({rest} layer{'s' if rest != 1 else ''})", params, share, True))
    return bars


def plot(result: ParameterCount, top: int = 10, title: str | None = None) -> Figure:
    """A horizontal bar chart of the `top` largest layers' parameters, the rest in one bar."""
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    figure_class = _figure_class()
    bars = _bars(result, top)
    height = max(MIN_HEIGHT, 1.2 + BAR_HEIGHT * len(bars))
    fig = figure_class(figsize=(FIGURE_WIDTH, height), layout="constrained")
    ax = fig.add_subplot()
    default = f"Parameters per layer ({result.total:,} total)"
    ax.set_title(title if title is not None else default, **_PLAIN_TEXT)
    if not bars:
        ax.text(
            0.5,
            0.5,
            "no parameters",
            ha="center",
            va="center",
            transform=ax.transAxes,
            **_PLAIN_TEXT,
        )
        ax.set_axis_off()
        return fig
    # barh draws the first bar at the bottom; reversing puts the largest at the top.
    positions = list(range(len(bars)))[::-1]
    container = ax.barh(
        positions,
        [b[1] for b in bars],
        color=[REST_COLOR if b[3] else BAR_COLOR for b in bars],
        height=0.7,
    )
    ax.bar_label(
        container,
        labels=[f"{b[1]:,} ({b[2] * 100:.1f}%)" for b in bars],
        padding=4,
        fontsize=9,
        **_PLAIN_TEXT,
    )
    ax.set_yticks(positions, [b[0] for b in bars], **_PLAIN_TEXT)
    biggest = max(b[1] for b in bars)
    # Room to the right of the longest bar for its label.
    ax.set_xlim(0, biggest * 1.35 if biggest else 1)
    ax.xaxis.set_major_formatter(_thousands_formatter())
    ax.set_xlabel("parameters")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _thousands_formatter() -> Formatter:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, _pos: f"{x:,.0f}")


def save_plot(
    result: ParameterCount,
    directory: str | Path,
    name: str,
    top: int = 10,
    title: str | None = None,
) -> list[Path]:
    """Write the chart to `<directory>/<name>.svg` and `.png`; returns both paths."""
    fig = plot(result, top=top, title=title)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attaches itself to the figure; no pyplot, no global backend
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.svg", out / f"{name}.png"]
    from matplotlib import rc_context

    # A fixed salt and no date make the SVG byte-identical between runs, so a chart committed
    # next to the snapshot only changes when the model does.
    with rc_context({"svg.hashsalt": "pytest-cnnbudget"}):
        fig.savefig(paths[0], format="svg", metadata={"Date": None})
    fig.savefig(paths[1], format="png", dpi=PNG_DPI)
    return paths
