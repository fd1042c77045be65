"""Bar charts of each layer's share: the Figure, the SVG and PNG files, user text drawn as typed,
the charts' file names, and missing matplotlib."""

from __future__ import annotations

import hashlib
import re
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
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from pytest_cnnbudget import count_parameters
from pytest_cnnbudget.outputs import STEM_LENGTH, chart_stems, write_charts
from pytest_cnnbudget.plot import PNG_DPI, plot, save_plot
from pytest_cnnbudget.results import LayerRow, ModelResult, Outcome, ParameterCount, SnapshotStatus


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


# Text matplotlib would read as mathtext (or hand to LaTeX): an unknown command makes savefig raise.
MATHTEXT = ["$\\foo$", "$x^2$", "\\frac{a}{b}", "a $ b", "$$"]


def mathtext_count() -> ParameterCount:
    params = [100, 50, 20, 10, 5]
    total = sum(params)
    layers = tuple(
        LayerRow(name, "Lin$ear", n, n, "", n, sum(params[: i + 1]), n / total)
        for i, (name, n) in enumerate(zip(MATHTEXT, params, strict=True))
    )
    return ParameterCount(total, total, 0, 0, layers)


def test_user_text_is_drawn_as_typed_never_as_mathtext(tmp_path: Path) -> None:
    count = mathtext_count()
    title = "$\\foo$ (pkg:$x^2$)"
    fig = plot(count, top=4, title=title)
    ax = fig.axes[0]
    labels = [*ax.get_yticklabels(), *ax.texts, ax.title]
    assert len(labels) == 5 + 5 + 1  # the tick labels, the bar labels, the title
    assert not any(label.get_parse_math() for label in labels)
    assert not any(label.get_usetex() for label in labels)
    ticks, _ = bar_labels(fig)
    assert ticks == [*(f"{name} (Lin$ear)" for name in MATHTEXT[:4]), "rest (1 layer)"]
    assert ax.get_title() == title
    # Text as text in the SVG, to find it there: each label written as it was typed.
    with rc_context({"svg.fonttype": "none"}):
        svg, png = save_plot(count, tmp_path, "math", top=4, title=title)
    texts = {t.text for t in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}text")}
    assert {title, *ticks} <= texts
    assert png.stat().st_size > 1000


def test_an_empty_chart_says_so_as_plain_text() -> None:
    fig = plot(ParameterCount(0, 0, 0, 0, ()), title="$\\foo$")
    assert [t.get_parse_math() for t in [*fig.axes[0].texts, fig.axes[0].title]] == [False] * 2


# -- file names ----------------------------------------------------------------------------------


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def test_chart_stems_keep_a_safe_name_and_tell_apart_the_rest() -> None:
    stems = chart_stems(["resnet18", "a b", "a_b", "a/b", "cifar-v2.1"])
    assert stems == {
        "resnet18": "resnet18",
        "cifar-v2.1": "cifar-v2.1",
        "a_b": "a_b",
        "a b": f"a_b-{digest('a b')}",
        "a/b": f"a_b-{digest('a/b')}",
    }


def test_chart_stems_are_short_and_the_same_in_every_run() -> None:
    long = "x" * 10_000
    names = [long, f"{long}y", "a b", "Net"]
    stems = chart_stems(names)
    assert stems[long] == f"{'x' * STEM_LENGTH}-{digest(long)}"
    assert stems[long] != stems[f"{long}y"]
    assert all(len(stem) <= STEM_LENGTH + 9 for stem in stems.values())
    assert chart_stems(reversed(names)) == stems
    # A fresh interpreter, another hash seed: the same names.
    script = f"from pytest_cnnbudget.outputs import chart_stems; print(chart_stems({names!r}))"
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert run.stdout == f"{stems}\n"


def test_names_that_clash_without_case_both_take_a_hash() -> None:
    stems = chart_stems(["Net", "net", "NET_", "other"])
    assert stems == {
        "Net": f"Net-{digest('Net')}",
        "net": f"net-{digest('net')}",
        "NET_": "NET_",
        "other": "other",
    }
    # A safe name that happens to be another's hashed stem is told apart too.
    taken = f"a_b-{digest('a b')}"
    stems = chart_stems(["a b", taken])
    assert len({stem.lower() for stem in stems.values()}) == 2


@pytest.mark.parametrize(
    "name",
    ["", ".hidden", "..", "-rf", "CON", "nul", "Com1", "lpt9.backbone", "aux.", "模型", "a\x00b"],
    ids=ascii,
)
def test_chart_stems_avoid_names_special_to_a_file_system(name: str) -> None:
    stem = chart_stems([name])[name]
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", stem), stem
    assert stem.endswith(digest(name))
    reserved = {"CON", "PRN", "AUX", "NUL", *(f"{p}{i}" for p in ("COM", "LPT") for i in range(10))}
    assert stem.split(".")[0].upper() not in reserved


def test_write_charts_gives_each_model_its_own_files(tmp_path: Path) -> None:
    count = cifar_count()
    results = [
        ModelResult(name, "nets:Cifar", "error", Outcome.PASSED, SnapshotStatus.OFF, count=count)
        for name in ("a b", "a_b", "a/b")
    ]
    results.append(ModelResult("broken", "nowhere:Net", "error", Outcome.ERROR, SnapshotStatus.OFF))
    written = write_charts(tmp_path, results)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert sorted(p.name for p in written) == names
    assert names == sorted(
        f"{stem}.{ext}"
        for stem in chart_stems(["a b", "a_b", "a/b"]).values()
        for ext in ("svg", "png")
    )
    assert len(names) == 6


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
