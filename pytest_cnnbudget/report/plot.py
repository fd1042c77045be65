"""A parameter count → a bar chart of each layer's share, as a Figure or SVG and PNG files.

matplotlib is an optional extra (`pytest-cnnbudget[plot]`) and is imported only when a chart is
drawn. Charts are drawn on a bare `matplotlib.figure.Figure` with the Agg canvas rather than
through pyplot: no global backend switch (which would break a notebook's inline display), no
figure registry to leak into, and no GUI toolkit needed on a CI runner.

Bars are the rows `views.largest` picks: repeated blocks grouped into one bar
(`blocks.{0..11}.mlp.fc1 ×12`), whose length is the group's sum. A bar with frozen parameters
is split: its trainable part in the bar's colour, its frozen part lighter and hatched.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PlotUnavailableError
from ..snapshot.store import replace_file
from . import views

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import Formatter

    from ..results import LayerRow, ParameterCount

FIGURE_WIDTH = 8.0  # inches
BAR_HEIGHT = 0.4  # inches of figure height per bar
MIN_HEIGHT = 2.0
PNG_DPI = 150
BAR_COLOR = "#4c72b0"
REST_COLOR = "#a0a0a0"
# A bar's frozen part: its colour blended 60% towards white, hatched in the bar's own colour.
FROZEN_COLOR = "#b7c7df"
REST_FROZEN_COLOR = "#d9d9d9"
FROZEN_HATCH = "//"
# Model keys and layer names are user text: drawn as typed, never read as mathtext (`$x^2$`,
# where a stray `$` or `\\foo` would make savefig raise) or handed to LaTeX by a usetex rc.
_PLAIN_TEXT: dict[str, Any] = {"parse_math": False, "usetex": False}


@dataclass(frozen=True)
class _Bar:
    label: str
    params: int
    trainable: int
    share: float
    rest: bool = False

    @property
    def frozen(self) -> int:
        return self.params - self.trainable

    @property
    def color(self) -> str:
        return REST_COLOR if self.rest else BAR_COLOR

    @property
    def frozen_color(self) -> str:
        return REST_FROZEN_COLOR if self.rest else FROZEN_COLOR


def require_matplotlib() -> None:
    """PlotUnavailableError now, before a model is built, when charts cannot be drawn."""
    _figure_class()


def _figure_class() -> type[Figure]:
    try:
        # matplotlib is optional (the `plot` extra): imported where a chart is drawn.
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotUnavailableError(
            'charts need matplotlib; install it with: pip install "pytest-cnnbudget[plot]"'
        ) from e
    return Figure


def _label(row: LayerRow) -> str:
    return f"{views.repeat_name(row.name, row.repeat)} ({row.type})"


def _bars(chart: ParameterCount, total: int, top: int, group: bool) -> list[_Bar]:
    """The `top` largest rows of `chart` (repeated blocks grouped unless `group` is off),
    largest first, then one bar for the rest; shares are of `total`."""
    largest = views.largest(chart, top, group=group)
    bars = [_Bar(_label(r), r.params, r.trainable, r.share) for r in largest]
    rows = chart.parameter_rows
    # The rest is told in layers (parameter-owning modules), however many rows hold them:
    # a group stands for its blocks' layers, a row folded to a depth for the layers under it.
    rest = sum(r.members for r in rows) - sum(r.members for r in largest)
    if rest:
        params = sum(r.params for r in rows) - sum(r.params for r in largest)
        trainable = sum(r.trainable for r in rows) - sum(r.trainable for r in largest)
        share = params / total if total else 0.0
        label = f"rest ({rest} layer{'s' if rest != 1 else ''})"
        bars.append(_Bar(label, params, trainable, share, rest=True))
    return bars


def plot(
    result: ParameterCount,
    top: int = 10,
    title: str | None = None,
    *,
    group: bool = True,
    trainable_only: bool = False,
) -> Figure:
    """A horizontal bar chart of the `top` largest layers' parameters, the rest in one bar.

    Repeated blocks are one bar, their sum (`group=False`: one bar per layer); frozen parts
    are drawn lighter and hatched, with a legend. `trainable_only` charts only what trains,
    each share a share of the trainable total."""
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    figure_class = _figure_class()
    if trainable_only:
        chart, total = views.trainable_only(result), result.trainable
        default = f"Trainable parameters per layer ({total:,} of {result.total:,} total)"
    else:
        chart, total = result, result.total
        default = f"Parameters per layer ({total:,} total)"
    bars = _bars(chart, total, top, group)
    height = max(MIN_HEIGHT, 1.2 + BAR_HEIGHT * len(bars))
    fig = figure_class(figsize=(FIGURE_WIDTH, height), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title if title is not None else default, **_PLAIN_TEXT)
    if not bars:
        ax.text(
            0.5,
            0.5,
            "no trainable parameters" if trainable_only else "no parameters",
            ha="center",
            va="center",
            transform=ax.transAxes,
            **_PLAIN_TEXT,
        )
        ax.set_axis_off()
        return fig
    # barh draws the first bar at the bottom; reversing puts the largest at the top.
    positions = list(range(len(bars)))[::-1]
    labels = [f"{b.params:,} ({b.share * 100:.1f}%)" for b in bars]
    if any(b.frozen for b in bars):
        _draw_split(ax, bars, positions, labels)
    else:
        container = ax.barh(
            positions,
            [b.params for b in bars],
            color=[b.color for b in bars],
            height=0.7,
        )
        ax.bar_label(container, labels=labels, padding=4, fontsize=9, **_PLAIN_TEXT)
    ax.set_yticks(positions, [b.label for b in bars], **_PLAIN_TEXT)
    biggest = max(b.params for b in bars)
    # Room to the right of the longest bar for its label.
    ax.set_xlim(0, biggest * 1.35 if biggest else 1)
    ax.xaxis.set_major_formatter(_thousands_formatter())
    ax.set_xlabel("parameters")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _draw_split(ax: Axes, bars: list[_Bar], positions: list[int], labels: list[str]) -> None:
    """Each bar as its trainable part then its frozen part, labelled at its end, and a legend.
    A part with no parameters is not drawn (but a bar with none at all keeps an empty one)."""
    # matplotlib is optional (the `plot` extra): imported where a chart is drawn.
    from matplotlib.container import BarContainer
    from matplotlib.patches import Patch

    trained = [(b, y) for b, y in zip(bars, positions, strict=True) if b.trainable or not b.frozen]
    trainable = ax.barh(
        [y for _, y in trained],
        [b.trainable for b, _ in trained],
        color=[b.color for b, _ in trained],
        height=0.7,
    )
    frozen_bars = [(b, y) for b, y in zip(bars, positions, strict=True) if b.frozen]
    frozen = ax.barh(
        [y for _, y in frozen_bars],
        [b.frozen for b, _ in frozen_bars],
        left=[b.trainable for b, _ in frozen_bars],
        color=[b.frozen_color for b, _ in frozen_bars],
        # The hatch takes the edge colour; a zero-width edge keeps the outline off.
        edgecolor=[b.color for b, _ in frozen_bars],
        linewidth=0,
        hatch=FROZEN_HATCH,
        height=0.7,
    )
    # Each bar's label goes at the end of its outer part: the frozen one where it has one.
    outer = dict(zip((id(b) for b, _ in trained), trainable.patches, strict=True))
    outer.update(zip((id(b) for b, _ in frozen_bars), frozen.patches, strict=True))
    ends = BarContainer(
        [outer[id(b)] for b in bars],
        datavalues=[b.params for b in bars],
        orientation="horizontal",
    )
    ax.bar_label(ends, labels=labels, padding=4, fontsize=9, **_PLAIN_TEXT)
    handles = [
        Patch(facecolor=BAR_COLOR, label="trainable"),
        Patch(
            facecolor=FROZEN_COLOR,
            edgecolor=BAR_COLOR,
            linewidth=0,
            hatch=FROZEN_HATCH,
            label="frozen",
        ),
    ]
    # Outside the axes, right of the plot, where no bar or bar label can be under it.
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        frameon=False,
        fontsize=9,
    )


def _thousands_formatter() -> Formatter:
    # matplotlib is optional (the `plot` extra): imported where a chart is drawn.
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, _pos: f"{x:,.0f}")


def save_plot(
    result: ParameterCount,
    directory: str | Path,
    name: str,
    top: int = 10,
    title: str | None = None,
    *,
    group: bool = True,
    trainable_only: bool = False,
) -> list[Path]:
    """Write the chart to `<directory>/<name>.svg` and `.png`; returns both paths."""
    fig = plot(result, top=top, title=title, group=group, trainable_only=trainable_only)
    # matplotlib is optional (the `plot` extra): imported where a chart is drawn.
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attaches itself to the figure; no pyplot, no global backend
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.svg", out / f"{name}.png"]

    # A fixed salt and no date make the SVG byte-identical between runs, so a chart committed
    # next to the snapshot only changes when the model does.
    svg, png = io.BytesIO(), io.BytesIO()
    with rc_context({"svg.hashsalt": "pytest-cnnbudget"}):
        fig.savefig(svg, format="svg", metadata={"Date": None})
    fig.savefig(png, format="png", dpi=PNG_DPI)
    # Rendered first, then each file replaced atomically: never half a chart, and never a
    # wait on a FIFO in a chart's place.
    replace_file(paths[0], svg.getvalue())
    replace_file(paths[1], png.getvalue())
    return paths
