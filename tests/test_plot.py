"""Bar charts of each layer's share: the Figure, the SVG and PNG files, and missing matplotlib."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import architectures
import nets
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from pytest_cnnbudget import count_parameters
from pytest_cnnbudget.plot import PNG_DPI, plot, save_plot
from pytest_cnnbudget.results import ParameterCount


def cifar_count() -> ParameterCount:
    with torch.device("meta"):
        return count_parameters(nets.Cifar())


def resnet18_count() -> ParameterCount:
    with torch.device("meta"):
        return count_parameters(architectures.resnet18())


def bar_labels(fig: Figure) -> tuple[list[str], list[str]]:
    """(layer labels, value labels), both from the top bar down."""
    ax = fig.axes[0]
    bars = sorted((p for p in ax.patches if isinstance(p, Rectangle)), key=lambda bar: -bar.get_y())
    ticks = {round(t.get_position()[1]): t.get_text() for t in ax.get_yticklabels()}
    labels = dict(zip(ax.patches, (t.get_text() for t in ax.texts), strict=True))
    return [ticks[round(bar.get_y() + bar.get_height() / 2)] for bar in bars], [
        labels[bar] for bar in bars
    ]


def test_plot_returns_a_figure_largest_layer_on_top() -> None:
    fig = plot(cifar_count())
    assert isinstance(fig, Figure)
    ticks, values = bar_labels(fig)
    assert ticks == ["fc1 (Linear)", "conv2 (Conv2d)", "fc2 (Linear)", "conv1 (Conv2d)"]
    assert values == ["524,416 (96.2%)", "18,496 (3.4%)", "1,290 (0.2%)", "896 (0.2%)"]
    assert fig.axes[0].get_title() == "Parameters per layer (545,098 total)"


def test_plot_groups_the_rest_into_one_bar() -> None:
    count = resnet18_count()
    fig = plot(count, top=3, title="ResNet-18")
    ticks, values = bar_labels(fig)
    assert ticks == [
        "layer4.0.conv2 (Conv2d)",
        "layer4.1.conv1 (Conv2d)",
        "layer4.1.conv2 (Conv2d)",
        "rest (38 layers)",
    ]
    rest = count.total - 3 * 2_359_296
    assert values[-1] == f"{rest:,} ({rest / count.total * 100:.1f}%)"
    assert fig.axes[0].get_title() == "ResNet-18"


def test_plot_of_a_model_without_parameters() -> None:
    fig = plot(ParameterCount(0, 0, 0, 0, ()))
    assert [t.get_text() for t in fig.axes[0].texts] == ["no parameters"]


def test_plot_top_must_be_positive() -> None:
    with pytest.raises(ValueError, match="top must be at least 1, not 0"):
        plot(cifar_count(), top=0)


@pytest.mark.parametrize(("name", "count"), [("cifar", cifar_count), ("resnet18", resnet18_count)])
def test_save_plot_writes_svg_and_png(
    tmp_path: Path, name: str, count: Callable[[], ParameterCount]
) -> None:
    result = count()
    paths = save_plot(result, tmp_path / "charts", name)
    assert paths == [tmp_path / "charts" / f"{name}.svg", tmp_path / "charts" / f"{name}.png"]
    for path in paths:
        assert path.stat().st_size > 1000
    width, height = plot(result).get_size_inches()
    with Image.open(paths[1]) as png:
        assert png.format == "PNG"
        assert png.size == (round(width * PNG_DPI), round(height * PNG_DPI))
    svg = ET.parse(paths[0]).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    # matplotlib writes SVG sizes in points, 72 to the inch.
    assert svg.attrib["width"] == f"{width * 72:g}pt"
    assert svg.attrib["height"] == f"{height * 72:g}pt"


def test_svg_is_byte_identical_between_runs(tmp_path: Path) -> None:
    first = save_plot(cifar_count(), tmp_path / "a", "cifar")[0].read_bytes()
    second = save_plot(cifar_count(), tmp_path / "b", "cifar")[0].read_bytes()
    assert first == second


def test_missing_matplotlib_is_a_clear_error() -> None:
    # A None entry in sys.modules makes `import matplotlib` fail as if it were not installed.
    script = textwrap.dedent(
        """
        import sys
        sys.modules["matplotlib"] = None
        from pytest_cnnbudget import CnnBudgetError
        from pytest_cnnbudget.plot import PlotUnavailableError, plot
        from pytest_cnnbudget.results import ParameterCount
        try:
            plot(ParameterCount(0, 0, 0, 0, ()))
        except PlotUnavailableError as e:
            assert isinstance(e, CnnBudgetError)
            print(e)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert run.stdout == (
        'charts need matplotlib; install it with: pip install "pytest-cnnbudget[plot]"\n'
    )
