"""Bar charts of each layer's share: the Figure, the SVG and PNG files, user text drawn as typed,
the charts' file names, and missing matplotlib."""

from __future__ import annotations

import hashlib
import itertools
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import architectures
import nets
import pytest
import torch
from matplotlib import rc_context
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Annotation
from PIL import Image
from torch import nn

from pytest_cnnbudget import count_parameters
from pytest_cnnbudget.engine.measurement import measure
from pytest_cnnbudget.report.plot import (
    BAR_COLOR,
    FROZEN_COLOR,
    FROZEN_HATCH,
    PNG_DPI,
    REST_COLOR,
    REST_FROZEN_COLOR,
    plot,
    save_plot,
)
from pytest_cnnbudget.results import LayerRow, ModelResult, Outcome, ParameterCount, SnapshotStatus
from pytest_cnnbudget.run.outputs import STEM_LENGTH, chart_stems, write_charts


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
    fig = plot(count, top=3, title="ResNet-18", group=False)
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


def test_plot_groups_repeated_blocks_and_tells_the_rest_in_layers() -> None:
    count = resnet18_count()
    ticks, values = bar_labels(plot(count, top=3))
    # The two blocks' conv2 are one bar; the rest still counts the 36 layers it stands for.
    assert ticks == [
        "layer4.{0,1}.conv2 ×2 (Conv2d)",
        "layer4.1.conv1 (Conv2d)",
        "layer3.{0,1}.conv2 ×2 (Conv2d)",
        "rest (36 layers)",
    ]
    shown = 2 * 2_359_296 + 2_359_296 + 2 * 589_824
    rest = count.total - shown
    assert values == [
        f"4,718,592 ({4_718_592 / count.total * 100:.1f}%)",
        f"2,359,296 ({2_359_296 / count.total * 100:.1f}%)",
        f"1,179,648 ({1_179_648 / count.total * 100:.1f}%)",
        f"{rest:,} ({rest / count.total * 100:.1f}%)",
    ]


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


# -- grouped blocks, frozen parts, the trainable view --------------------------------------------


@dataclass(frozen=True)
class Drawn:
    """One bar as drawn: its tick label, the widths of its plain and hatched patches (left to
    right), its value label and the face colours of its patches."""

    label: str
    trainable: list[float]
    frozen: list[float]
    value: str
    colors: list[str]

    @property
    def width(self) -> float:
        return sum(self.trainable) + sum(self.frozen)


def drawn_bars(fig: Figure) -> list[Drawn]:
    """Every bar from the top down, read back from the artists: patches by their centre, the
    tick label and the value label at the same height."""
    ax = fig.axes[0]
    rows: dict[float, list[Rectangle]] = {}
    for patch in ax.patches:
        assert isinstance(patch, Rectangle)
        rows.setdefault(round(patch.get_y() + patch.get_height() / 2, 6), []).append(patch)
    ticks = {round(t.get_position()[1], 6): t.get_text() for t in ax.get_yticklabels()}
    values = {round(t.xy[1], 6): t.get_text() for t in ax.texts if isinstance(t, Annotation)}
    out = []
    for y in sorted(rows, reverse=True):
        patches = sorted(rows[y], key=lambda p: p.get_x())
        # Each bar starts at 0 and its parts touch: drawn end to end, not over each other.
        assert patches[0].get_x() == 0
        for a, b in itertools.pairwise(patches):
            assert a.get_x() + a.get_width() == b.get_x()
        out.append(
            Drawn(
                label=ticks[y],
                trainable=[p.get_width() for p in patches if not p.get_hatch()],
                frozen=[p.get_width() for p in patches if p.get_hatch()],
                value=values[y],
                colors=[to_hex(p.get_facecolor()) for p in patches],
            )
        )
    return out


def legend_texts(fig: Figure) -> list[str] | None:
    legend = fig.axes[0].get_legend()
    return None if legend is None else [t.get_text() for t in legend.get_texts()]


DIM, MLP_DIM, BLOCKS = 768, 3072, 12
FC1 = DIM * MLP_DIM + MLP_DIM  # 2,362,368
FC2 = MLP_DIM * DIM + DIM
QKV = DIM * 3 * DIM + 3 * DIM


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(DIM, MLP_DIM)
        self.fc2 = nn.Linear(MLP_DIM, DIM)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(DIM)
        self.mlp = Mlp()


class VitLike(nn.Module):
    """ViT-B/16 as timm names it: `blocks.0.mlp.fc1`, …, 76 parameter-owning modules."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, DIM, kernel_size=16, stride=16)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, 197, DIM))
        self.blocks = nn.ModuleList(Block() for _ in range(BLOCKS))
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, 1000)


VIT_LAYERS = (
    1 + 1 + 6 * BLOCKS + 1 + 1
)  # the root's two parameters, patch_embed, blocks, norm, head


def vit_count(frozen_blocks: int = 0) -> ParameterCount:
    with torch.device("meta"):
        model = VitLike()
    for block in model.blocks[:frozen_blocks]:
        assert isinstance(block, Block)
        block.mlp.fc1.requires_grad_(False)
    return count_parameters(model)


def pct(part: int, whole: int) -> str:
    return f"{part:,} ({part / whole * 100:.1f}%)"


def test_identical_blocks_are_one_bar_of_their_sum() -> None:
    count = vit_count()
    assert sum(r.members for r in count.parameter_rows) == VIT_LAYERS
    bars = drawn_bars(plot(count, top=3))
    assert [b.label for b in bars] == [
        "blocks.{0..11}.mlp.fc1 ×12 (Linear)",
        "blocks.{0..11}.mlp.fc2 ×12 (Linear)",
        "blocks.{0..11}.attn.qkv ×12 (Linear)",
        f"rest ({VIT_LAYERS - 3 * BLOCKS} layers)",
    ]
    shown = BLOCKS * (FC1 + FC2 + QKV)
    assert [b.width for b in bars] == [
        BLOCKS * FC1,
        BLOCKS * FC2,
        BLOCKS * QKV,
        count.total - shown,
    ]
    assert [b.value for b in bars] == [
        pct(BLOCKS * FC1, count.total),
        pct(BLOCKS * FC2, count.total),
        pct(BLOCKS * QKV, count.total),
        pct(count.total - shown, count.total),
    ]
    assert all(b.frozen == [] for b in bars)


def test_every_row_fits_in_ten_grouped_bars_with_no_rest() -> None:
    count = vit_count()
    bars = drawn_bars(plot(count))
    assert len(bars) == 10
    assert not any(b.label.startswith("rest") for b in bars)
    assert sum(b.width for b in bars) == count.total
    assert [b.label for b in bars][4:] == [
        "head (Linear)",
        "patch_embed (Conv2d)",
        "(root) (VitLike)",
        "blocks.{0..11}.norm1 ×12 (LayerNorm)",
        "blocks.{0..11}.norm2 ×12 (LayerNorm)",
        "norm (LayerNorm)",
    ]


def test_without_grouping_each_layer_is_its_own_bar() -> None:
    count = vit_count()
    bars = drawn_bars(plot(count, group=False))
    # What grouping saves a reader from: ten equal bars of the same layer in ten blocks.
    assert [b.label for b in bars] == [
        *(f"blocks.{i}.mlp.fc1 (Linear)" for i in range(10)),
        f"rest ({VIT_LAYERS - 10} layers)",
    ]
    assert [b.width for b in bars[:10]] == [FC1] * 10
    assert bars[-1].width == count.total - 10 * FC1


def test_the_rest_counts_the_layers_of_a_folded_row() -> None:
    # A row folded to a depth holds several layers: the rest bar counts them, not the rows.
    with torch.device("meta"):
        count = measure(architectures.resnet18(), depth=1)
    rows = count.parameter_rows
    assert len(rows) < sum(r.members for r in rows) == 41
    bars = drawn_bars(plot(count, top=2))
    hidden = sorted(rows, key=lambda r: -r.params)[2:]
    assert bars[-1].label == f"rest ({sum(r.members for r in hidden)} layers)"
    assert sum(r.members for r in hidden) > len(hidden)


def test_an_all_trainable_model_draws_plain_bars_without_a_legend() -> None:
    for fig in (plot(cifar_count()), plot(vit_count(), top=3)):
        bars = drawn_bars(fig)
        assert legend_texts(fig) is None
        assert not any(p.get_hatch() for p in fig.axes[0].patches)
        # One patch per bar, in the chart's colours, as before frozen parts were drawn.
        assert len(fig.axes[0].patches) == len(bars)
        assert all(len(b.colors) == 1 for b in bars)
        assert {c for b in bars if not b.label.startswith("rest") for c in b.colors} == {BAR_COLOR}
        rest = [b for b in bars if b.label.startswith("rest")]
        assert all(b.colors == [REST_COLOR] for b in rest)


def partly_frozen_cifar() -> ParameterCount:
    """conv1 frozen whole, fc1 frozen but for its bias."""
    with torch.device("meta"):
        model = nets.Cifar()
    model.conv1.requires_grad_(False)
    model.fc1.weight.requires_grad_(False)
    return count_parameters(model)


def test_frozen_parts_are_hatched_segments_of_their_size_with_a_legend() -> None:
    count = partly_frozen_cifar()
    assert count.frozen == 896 + 524_288
    fig = plot(count)
    bars = drawn_bars(fig)
    assert [b.label for b in bars] == [
        "fc1 (Linear)",
        "conv2 (Conv2d)",
        "fc2 (Linear)",
        "conv1 (Conv2d)",
    ]
    assert [(b.trainable, b.frozen) for b in bars] == [
        ([128], [524_288]),
        ([18_496], []),
        ([1_290], []),
        ([], [896]),  # frozen whole: no empty trainable patch before it
    ]
    # The value label is still the whole layer's, at the end of its outer part.
    assert [b.value for b in bars] == [
        pct(524_416, count.total),
        pct(18_496, count.total),
        pct(1_290, count.total),
        pct(896, count.total),
    ]
    ax = fig.axes[0]
    assert {t.xy[0] for t in ax.texts if isinstance(t, Annotation)} == {524_416, 18_496, 1_290, 896}
    assert bars[0].colors == [BAR_COLOR, FROZEN_COLOR]
    assert bars[-1].colors == [FROZEN_COLOR]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 2
    assert {p.get_hatch() for p in hatched} == {FROZEN_HATCH}
    assert legend_texts(fig) == ["trainable", "frozen"]


def test_frozen_blocks_split_the_group_and_the_rest_bar() -> None:
    count = vit_count(frozen_blocks=6)
    bars = drawn_bars(plot(count, top=3))
    # Half the blocks frozen: the fc1 rows no longer match, so they are two groups of six.
    assert [b.label for b in bars] == [
        "blocks.{0..11}.mlp.fc2 ×12 (Linear)",
        "blocks.{0..11}.attn.qkv ×12 (Linear)",
        "blocks.{0..5}.mlp.fc1 ×6 (Linear)",
        f"rest ({VIT_LAYERS - 2 * BLOCKS - 6} layers)",
    ]
    assert [(b.trainable, b.frozen) for b in bars[:3]] == [
        ([BLOCKS * FC2], []),
        ([BLOCKS * QKV], []),
        ([], [6 * FC1]),
    ]
    # fc1 of blocks 6..11 trains, in the rest, which has nothing frozen: no hatch there.
    assert bars[-1].frozen == []
    assert bars[-1].width == count.total - BLOCKS * (FC2 + QKV) - 6 * FC1
    # A frozen part hidden in the rest is drawn there, hatched grey.
    bars = drawn_bars(plot(count, top=2))
    assert bars[-1].frozen == [6 * FC1]
    assert bars[-1].colors == [REST_COLOR, REST_FROZEN_COLOR]


def test_trainable_only_leaves_out_what_does_not_train() -> None:
    count = partly_frozen_cifar()
    fig = plot(count, trainable_only=True)
    bars = drawn_bars(fig)
    assert [b.label for b in bars] == ["conv2 (Conv2d)", "fc2 (Linear)", "fc1 (Linear)"]
    assert [b.width for b in bars] == [18_496, 1_290, 128]
    assert sum(b.width for b in bars) == count.trainable
    # Shares of the trainable total, drawn as plain bars: nothing frozen is shown.
    assert [b.value for b in bars] == [pct(n, count.trainable) for n in (18_496, 1_290, 128)]
    assert legend_texts(fig) is None
    assert not any(p.get_hatch() for p in fig.axes[0].patches)
    title = fig.axes[0].get_title()
    assert "trainable parameters" in title.lower()
    assert f"{count.trainable:,}" in title
    # The rest counts only layers that train: conv1 is in no bar at all.
    bars = drawn_bars(plot(count, top=1, trainable_only=True))
    assert [b.label for b in bars] == ["conv2 (Conv2d)", "rest (2 layers)"]
    assert sum(b.width for b in bars) == count.trainable


def test_trainable_only_of_a_frozen_model_says_nothing_trains() -> None:
    with torch.device("meta"):
        model = nets.Cifar().requires_grad_(False)
    fig = plot(count_parameters(model), trainable_only=True)
    assert [t.get_text() for t in fig.axes[0].texts] == ["no trainable parameters"]


def test_save_plot_passes_the_view_on(tmp_path: Path) -> None:
    count = partly_frozen_cifar()
    with rc_context({"svg.fonttype": "none"}):
        svg, _ = save_plot(count, tmp_path, "adapter", trainable_only=True, group=False)
    texts = {t.text for t in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}text")}
    assert f"Trainable parameters per layer ({count.trainable:,} of {count.total:,} total)" in texts
    assert "conv1 (Conv2d)" not in texts


def test_a_chart_with_frozen_parts_is_byte_identical_between_runs(tmp_path: Path) -> None:
    first = save_plot(vit_count(6), tmp_path / "a", "vit", top=2)[0].read_bytes()
    second = save_plot(vit_count(6), tmp_path / "b", "vit", top=2)[0].read_bytes()
    assert first == second
    assert b"<pattern" in first  # the hatch


def test_user_text_of_a_partly_frozen_model_is_drawn_as_typed(tmp_path: Path) -> None:
    count = mathtext_count()
    layers = tuple(replace(r, trainable=r.params // 2) for r in count.layers)
    frozen = replace(count, layers=layers, trainable=sum(r.trainable for r in layers))
    fig = plot(frozen, top=4, title="$\\foo$")
    ax = fig.axes[0]
    labels = [*ax.get_yticklabels(), *ax.texts, ax.title]
    assert len(labels) == 5 + 5 + 1
    assert not any(label.get_parse_math() or label.get_usetex() for label in labels)
    assert [b.label for b in drawn_bars(fig)][:2] == [f"{n} (Lin$ear)" for n in MATHTEXT[:2]]
    svg, _ = save_plot(frozen, tmp_path, "math", top=4, title="$\\foo$")
    assert svg.stat().st_size > 1000


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
    script = f"from pytest_cnnbudget.run.outputs import chart_stems; print(chart_stems({names!r}))"
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
        from pytest_cnnbudget.report.plot import PlotUnavailableError, plot
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


def test_the_plot_command_without_matplotlib_fails_before_building_the_model(
    tmp_path: Path,
) -> None:
    (tmp_path / "slow_models.py").write_text(
        "from pathlib import Path\nfrom torch import nn\n\n"
        "def big():\n    Path('built').write_text('yes')\n    return nn.Linear(2, 2)\n",
        encoding="utf-8",
    )
    script = (
        "import sys\nsys.modules['matplotlib'] = None\n"
        "from pytest_cnnbudget.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, "plot", "slow_models:big"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert run.stderr == (
        "cnnbudget: error: charts need matplotlib; install it with: pip install "
        '"pytest-cnnbudget[plot]"\n'
    )
    assert not (tmp_path / "built").exists()
