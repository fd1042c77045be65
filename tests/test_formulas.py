"""Every textbook formula against `numel()`, over generated hyperparameters.

Modules are built on the meta device, so even wide layers cost nothing to create. Where the text of
a formula is asserted, it is spelled out here from the drawn hyperparameters, independently of
`formulas.py`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from pytest_cnnbudget.engine.counting import ModelLike, count_parameters
from pytest_cnnbudget.errors import FormulaMismatchWarning
from pytest_cnnbudget.results import ParameterCount

Textbook = Callable[[nn.Module, Sequence[str]], ParameterCount]

# Enough examples to reach every branch of each rule (bias, groups, directions, projections)
# while the whole file stays within a few seconds.
SETTINGS = settings(max_examples=60, deadline=None)

sizes = st.integers(min_value=1, max_value=64)
small = st.integers(min_value=1, max_value=8)


@pytest.fixture(scope="session")
def textbook(
    count_checked: Callable[[ModelLike], ParameterCount],
    fallback_rows: Callable[[nn.Module, ParameterCount], set[str]],
) -> Textbook:
    """Count a module, check the invariants, and require these formulas from textbook rules."""

    def check(module: nn.Module, formulas: Sequence[str]) -> ParameterCount:
        # Explicit, so the check holds even when the suite runs with warnings relaxed.
        with warnings.catch_warnings():
            warnings.simplefilter("error", FormulaMismatchWarning)
            count = count_checked(module)
        assert [row.formula for row in count.layers] == list(formulas)
        assert fallback_rows(module, count) == set()
        return count

    return check


def x(*factors: object) -> str:
    return "×".join(str(f) for f in factors)


def plus_bias(text: str, bias: bool, n: int) -> str:
    return f"{text} + {n}" if bias else text


# -- convolutions ------------------------------------------------------------------------------

CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_TRANSPOSE: dict[int, type[nn.Module]] = {
    1: nn.ConvTranspose1d,
    2: nn.ConvTranspose2d,
    3: nn.ConvTranspose3d,
}


@st.composite
def convolutions(draw: st.DrawFn) -> tuple[nn.Module, str]:
    dims = draw(st.integers(1, 3))
    transposed = draw(st.booleans())
    kernel = tuple(draw(st.lists(st.integers(1, 7), min_size=dims, max_size=dims)))
    if draw(st.booleans()):
        # Depthwise: one group per input channel, optionally with a channel multiplier.
        c_in = draw(sizes)
        groups, c_out = c_in, c_in * draw(st.integers(1, 4))
    else:
        groups = draw(small)
        c_in, c_out = groups * draw(st.integers(1, 16)), groups * draw(st.integers(1, 16))
    bias = draw(st.booleans())
    cls = (CONV_TRANSPOSE if transposed else CONV)[dims]
    with torch.device("meta"):
        module = cls(c_in, c_out, kernel, groups=groups, bias=bias)
    # A transposed conv's weight is C_in × C_out/G × k: each input channel fans out.
    fan = f"{c_out}/{groups}×{c_in}" if transposed else f"{c_in}/{groups}×{c_out}"
    return module, plus_bias(f"{x(*kernel)}×{fan}", bias, c_out)


@SETTINGS
@given(case=convolutions())
def test_convolution(case: tuple[nn.Module, str], textbook: Textbook) -> None:
    module, formula = case
    textbook(module, [formula])


# -- linear layers -----------------------------------------------------------------------------


@SETTINGS
@given(
    cls=st.sampled_from([nn.Linear, NonDynamicallyQuantizableLinear]),
    n_in=st.integers(1, 5000),
    n_out=st.integers(1, 5000),
    bias=st.booleans(),
)
def test_linear(
    cls: type[nn.Linear], n_in: int, n_out: int, bias: bool, textbook: Textbook
) -> None:
    with torch.device("meta"):
        module = cls(n_in, n_out, bias=bias)
    count = textbook(module, [plus_bias(x(n_in, n_out), bias, n_out)])
    assert count.layers[0].type == cls.__name__


@SETTINGS
@given(a=sizes, b=sizes, out=sizes, bias=st.booleans())
def test_bilinear(a: int, b: int, out: int, bias: bool, textbook: Textbook) -> None:
    with torch.device("meta"):
        module = nn.Bilinear(a, b, out, bias=bias)
    textbook(module, [plus_bias(x(a, b, out), bias, out)])


# -- normalization -----------------------------------------------------------------------------


def takes_bias(cls: type[nn.Module]) -> pytest.MarkDecorator:
    """Skipped on a torch whose `cls` has no `bias` argument (it came after affine)."""
    return pytest.mark.skipif(
        "bias" not in inspect.signature(cls).parameters,
        reason=f"this torch's nn.{cls.__name__} takes no bias argument",
    )


@SETTINGS
@given(
    cls=st.sampled_from(
        [
            nn.BatchNorm1d,
            nn.BatchNorm2d,
            nn.BatchNorm3d,
            nn.SyncBatchNorm,
            nn.InstanceNorm1d,
            nn.InstanceNorm2d,
            nn.InstanceNorm3d,
        ]
    ),
    channels=st.integers(1, 2048),
    affine=st.booleans(),
    track_running_stats=st.booleans(),
)
def test_batch_and_instance_norm(
    cls: type[nn.Module],
    channels: int,
    affine: bool,
    track_running_stats: bool,
    textbook: Textbook,
) -> None:
    with torch.device("meta"):
        module = cls(channels, affine=affine, track_running_stats=track_running_stats)
    count = textbook(module, [x(2, channels)] if affine else [])
    # Running mean, running variance and the batch counter are buffers, never parameters.
    assert count.total == (2 * channels if affine else 0)
    assert count.buffers == (2 * channels + 1 if track_running_stats else 0)


@SETTINGS
@given(groups=small, per_group=sizes, affine=st.booleans())
def test_group_norm(groups: int, per_group: int, affine: bool, textbook: Textbook) -> None:
    channels = groups * per_group
    with torch.device("meta"):
        module = nn.GroupNorm(groups, channels, affine=affine)
    textbook(module, [x(2, channels)] if affine else [])


def shape_text(shape: Sequence[int]) -> str:
    return str(shape[0]) if len(shape) == 1 else f"({x(*shape)})"


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 32), min_size=1, max_size=3),
    as_int=st.booleans(),
    elementwise_affine=st.booleans(),
    bias=st.booleans(),
)
def test_layer_norm(
    shape: list[int],
    as_int: bool,
    elementwise_affine: bool,
    bias: bool,
    textbook: Textbook,
) -> None:
    normalized: int | list[int] = shape[0] if as_int and len(shape) == 1 else shape
    with torch.device("meta"):
        module = nn.LayerNorm(normalized, elementwise_affine=elementwise_affine, bias=bias)
    if not elementwise_affine:
        expected = []
    elif bias:
        expected = [f"2×{shape_text(shape)}"]
    else:
        expected = [shape_text(shape)]
    textbook(module, expected)


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 64), min_size=1, max_size=3),
    elementwise_affine=st.booleans(),
)
def test_rms_norm(shape: list[int], elementwise_affine: bool, textbook: Textbook) -> None:
    with torch.device("meta"):
        module = nn.RMSNorm(shape, elementwise_affine=elementwise_affine)
    textbook(module, [shape_text(shape)] if elementwise_affine else [])


# -- embeddings and activations ----------------------------------------------------------------


@SETTINGS
@given(
    cls=st.sampled_from([nn.Embedding, nn.EmbeddingBag]),
    num=st.integers(1, 100_000),
    dim=st.integers(1, 4096),
    padding=st.booleans(),
)
def test_embedding(
    cls: type[nn.Module], num: int, dim: int, padding: bool, textbook: Textbook
) -> None:
    with torch.device("meta"):
        module = cls(num, dim, padding_idx=0 if padding else None)
    textbook(module, [x(num, dim)])


@SETTINGS
@given(num_parameters=st.integers(1, 1024))
def test_prelu(num_parameters: int, textbook: Textbook) -> None:
    with torch.device("meta"):
        module = nn.PReLU(num_parameters)
    textbook(module, [str(num_parameters)])


# -- attention ---------------------------------------------------------------------------------


@SETTINGS
@example(heads=12, head_dim=64, kdim=None, vdim=None, bias=True, add_bias_kv=False)  # ViT-B
@given(
    heads=small,
    head_dim=st.integers(1, 32),
    kdim=st.none() | sizes,
    vdim=st.none() | sizes,
    bias=st.booleans(),
    add_bias_kv=st.booleans(),
)
def test_multihead_attention(
    heads: int,
    head_dim: int,
    kdim: int | None,
    vdim: int | None,
    bias: bool,
    add_bias_kv: bool,
    textbook: Textbook,
) -> None:
    e = heads * head_dim
    with torch.device("meta"):
        module = nn.MultiheadAttention(
            e, heads, bias=bias, add_bias_kv=add_bias_kv, kdim=kdim, vdim=vdim
        )
    k, v = kdim or e, vdim or e
    terms = [x(3, e, e)] if k == v == e else [x(e, e), x(e, k), x(e, v)]
    if bias:
        terms.append(x(3, e))
    if add_bias_kv:
        terms.append(x(2, e))
    count = textbook(module, [" + ".join(terms), plus_bias(x(e, e), bias, e)])
    assert [(row.name, row.type) for row in count.layers] == [
        ("(root)", "MultiheadAttention"),
        ("out_proj", "NonDynamicallyQuantizableLinear"),
    ]


# -- recurrent layers --------------------------------------------------------------------------


@st.composite
def recurrent_layers(draw: st.DrawFn) -> nn.Module:
    kind = draw(st.sampled_from(["rnn_tanh", "rnn_relu", "lstm", "gru"]))
    input_size, hidden = draw(sizes), draw(sizes)
    common = {
        "num_layers": draw(st.integers(1, 3)),
        "bias": draw(st.booleans()),
        "bidirectional": draw(st.booleans()),
    }
    # LSTM only: project the hidden state down to proj_size < hidden before feeding it back.
    proj = draw(st.integers(0, hidden - 1))
    with torch.device("meta"):
        if kind == "lstm":
            return nn.LSTM(input_size, hidden, proj_size=proj, **common)
        if kind == "gru":
            return nn.GRU(input_size, hidden, **common)
        return nn.RNN(input_size, hidden, nonlinearity=kind[4:], **common)


@SETTINGS
@given(module=recurrent_layers())
def test_recurrent(
    module: nn.Module,
    count_checked: Callable[[ModelLike], ParameterCount],
    fallback_rows: Callable[[nn.Module, ParameterCount], set[str]],
) -> None:
    count = count_checked(module)
    (row,) = count.layers
    assert fallback_rows(module, count) == set()
    # The shape fallback would list tensors such as weight_ih_l0 by name.
    assert "weight" not in row.formula


@SETTINGS
@given(
    cls=st.sampled_from([nn.RNNCell, nn.LSTMCell, nn.GRUCell]),
    input_size=sizes,
    hidden=sizes,
    bias=st.booleans(),
)
def test_recurrent_cell(
    cls: type[nn.RNNCell | nn.LSTMCell | nn.GRUCell],
    input_size: int,
    hidden: int,
    bias: bool,
    textbook: Textbook,
) -> None:
    gates = {nn.RNNCell: 1, nn.LSTMCell: 4, nn.GRUCell: 3}[cls]
    with torch.device("meta"):
        module = cls(input_size, hidden, bias=bias)
    per_gate = x(gates, hidden) if gates > 1 else str(hidden)
    formula = f"{per_gate}×({input_size} + {hidden})"
    # Two bias vectors per gate: one on the input path, one on the recurrent path.
    textbook(module, [f"{formula} + {x(2, per_gate)}" if bias else formula])


# -- exact formulas ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "formula", "params"),
    [
        pytest.param(
            lambda: nn.Conv2d(3, 32, 3, padding=1), "3×3×3/1×32 + 32", 896, id="cifar-conv1"
        ),
        pytest.param(
            lambda: nn.Conv2d(32, 64, 3, padding=1), "3×3×32/1×64 + 64", 18_496, id="cifar-conv2"
        ),
        pytest.param(lambda: nn.Linear(4096, 128), "4096×128 + 128", 524_416, id="cifar-fc1"),
        pytest.param(lambda: nn.BatchNorm2d(64), "2×64", 128, id="batchnorm"),
        pytest.param(
            lambda: nn.Conv2d(32, 32, 3, groups=32, bias=False), "3×3×32/32×32", 288, id="depthwise"
        ),
        pytest.param(
            lambda: nn.Conv3d(4, 6, (3, 1, 2), groups=2), "3×1×2×4/2×6 + 6", 78, id="conv3d"
        ),
        pytest.param(
            lambda: nn.ConvTranspose2d(4, 6, (2, 3), groups=2),
            "2×3×6/2×4 + 6",
            78,
            id="conv-transpose",
        ),
        pytest.param(lambda: nn.Bilinear(2, 3, 4), "2×3×4 + 4", 28, id="bilinear"),
        pytest.param(lambda: nn.LayerNorm((3, 4)), "2×(3×4)", 24, id="layernorm-2d"),
        pytest.param(lambda: nn.LayerNorm(768, bias=False), "768", 768, id="layernorm-no-bias"),
        pytest.param(lambda: nn.RMSNorm(4096), "4096", 4096, id="rmsnorm"),
        pytest.param(lambda: nn.Embedding(32000, 4096), "32000×4096", 131_072_000, id="embedding"),
        pytest.param(lambda: nn.PReLU(), "1", 1, id="prelu"),
        pytest.param(lambda: nn.LSTM(10, 20), "4×20×(10 + 20) + 2×4×20", 2560, id="lstm"),
        pytest.param(
            lambda: nn.GRU(3, 4, num_layers=3, bias=False),
            "(3×4×(3 + 4)) + 2×(3×4×(4 + 4))",
            276,
            id="gru-stacked",
        ),
        pytest.param(
            lambda: nn.LSTM(10, 20, num_layers=2, bidirectional=True, proj_size=5),
            "2×[(4×20×(10 + 5) + 2×4×20 + 5×20) + (4×20×(10 + 5) + 2×4×20 + 5×20)]",
            5840,
            id="lstm-bidirectional-projected",
        ),
        pytest.param(
            lambda: nn.RNN(3, 4, nonlinearity="relu"), "4×(3 + 4) + 2×4", 36, id="rnn-relu"
        ),
        pytest.param(lambda: nn.GRUCell(3, 4), "3×4×(3 + 4) + 2×3×4", 108, id="gru-cell"),
    ],
)
def test_exact_formula(
    make: Callable[[], nn.Module], formula: str, params: int, textbook: Textbook
) -> None:
    with torch.device("meta"):
        module = make()
    count = textbook(module, [formula])
    assert count.layers[0].params == params


# -- rules that do not apply -------------------------------------------------------------------


class WideLinear(nn.Linear):
    """A Linear whose weight is twice as wide as `in_features` says: the rule no longer fits."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.weight = nn.Parameter(torch.empty(out_features, 2 * in_features))


def test_wrong_rule_is_caught() -> None:
    with pytest.warns(FormulaMismatchWarning, match=r"formula 8×4 \+ 4 gives 36 but numel"):
        count = count_parameters(WideLinear(8, 4))
    (row,) = count.layers
    # The count itself stays truthful: it comes from numel, not from the formula.
    assert (row.params, row.formula_params) == (68, 36)
    assert count.total == 68


class ScaledLinear(nn.Linear):
    """A Linear with a learned output scale of its own."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.scale = nn.Parameter(torch.ones(()))


class Table(nn.Module):
    """A layer type no rule knows."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.empty(3, 4))
        self.temperature = nn.Parameter(torch.ones(()))


@pytest.mark.parametrize(
    ("module", "formula", "params"),
    [
        # The Linear rule accounts for weight and bias only, so it must not claim `scale`.
        (ScaledLinear(8, 4), "weight 4×8 + bias 4 + scale 1", 37),
        (Table(), "table 3×4 + temperature 1", 13),
    ],
    ids=["subclass-with-extra-parameter", "unknown-layer"],
)
def test_shape_fallback(
    module: nn.Module,
    formula: str,
    params: int,
    count_checked: Callable[[ModelLike], ParameterCount],
) -> None:
    (row,) = count_checked(module).layers
    assert (row.formula, row.params) == (formula, params)


# -- weight-only norms -------------------------------------------------------------------------


@takes_bias(nn.BatchNorm2d)
@SETTINGS
@given(
    cls=st.sampled_from(
        [
            nn.BatchNorm1d,
            nn.BatchNorm2d,
            nn.BatchNorm3d,
            nn.SyncBatchNorm,
            nn.InstanceNorm1d,
            nn.InstanceNorm2d,
            nn.InstanceNorm3d,
        ]
    ),
    channels=st.integers(1, 2048),
)
def test_batch_and_instance_norm_without_bias(
    cls: type[nn.Module], channels: int, textbook: Textbook
) -> None:
    with torch.device("meta"):
        module = cls(channels, affine=True, bias=False)
    textbook(module, [str(channels)])


@takes_bias(nn.GroupNorm)
@SETTINGS
@given(groups=small, per_group=sizes)
def test_group_norm_without_bias(groups: int, per_group: int, textbook: Textbook) -> None:
    with torch.device("meta"):
        module = nn.GroupNorm(groups, groups * per_group, bias=False)
    textbook(module, [str(groups * per_group)])


# -- duck-typed rules: norm and scale classes of other libraries -------------------------------


def timm_layer(name: str) -> Callable[..., nn.Module]:
    """A layer class from timm.layers, made when the test runs (skipped without timm)."""

    def make(*args: object, **kwargs: object) -> nn.Module:
        layers = pytest.importorskip("timm.layers")
        module: nn.Module = getattr(layers, name)(*args, **kwargs)
        return module

    return make


def llama_rms_norm(hidden_size: int) -> nn.Module:
    pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    return LlamaRMSNorm(hidden_size)


@pytest.mark.parametrize(
    ("make", "formula", "params"),
    [
        # A normalized_shape kept as LayerNorm keeps it: derived from it.
        pytest.param(lambda: timm_layer("RmsNorm")(384), "384", 384, id="timm-RmsNorm"),
        pytest.param(lambda: timm_layer("RmsNorm2d")(40), "40", 40, id="timm-RmsNorm2d"),
        pytest.param(
            lambda: timm_layer("RmsNormFp32")((3, 4)), "(3×4)", 12, id="timm-RmsNormFp32-2d"
        ),
        pytest.param(lambda: timm_layer("SimpleNorm")(10), "10", 10, id="timm-SimpleNorm"),
        # Subclasses of torch's norms: torch's rules.
        pytest.param(lambda: timm_layer("LayerNorm2d")(96), "2×96", 192, id="timm-LayerNorm2d"),
        pytest.param(lambda: timm_layer("GroupNorm1")(32), "2×32", 64, id="timm-GroupNorm1"),
        # Its activation and dropout are children without parameters.
        pytest.param(
            lambda: timm_layer("BatchNormAct2d")(64), "2×64", 128, id="timm-BatchNormAct2d"
        ),
        # A gain per output channel on a convolution: derived from out_channels.
        pytest.param(
            lambda: timm_layer("ScaledStdConv2d")(16, 32, 3),
            "3×3×16/1×32 + 32 + 32 (gain)",
            3 * 3 * 16 * 32 + 32 + 32,
            id="timm-ScaledStdConv2d",
        ),
        pytest.param(
            lambda: timm_layer("ScaledStdConv2dSame")(16, 32, 3, groups=4, bias=False),
            "3×3×16/4×32 + 32 (gain)",
            3 * 3 * 4 * 32 + 32,
            id="timm-ScaledStdConv2dSame-no-bias",
        ),
        # Classes that keep no size: read from the parameter, and the text says so.
        pytest.param(
            lambda: timm_layer("LayerScale")(192), "192 (gamma's shape)", 192, id="timm-LayerScale"
        ),
        pytest.param(
            lambda: timm_layer("LayerScale2d")(64),
            "64 (gamma's shape)",
            64,
            id="timm-LayerScale2d",
        ),
        pytest.param(
            lambda: llama_rms_norm(4096), "4096 (weight's shape)", 4096, id="LlamaRMSNorm"
        ),
    ],
)
def test_duck_typed_formula(
    make: Callable[[], nn.Module], formula: str, params: int, textbook: Textbook
) -> None:
    with torch.device("meta"):
        module = make()
    count = textbook(module, [formula])
    assert count.layers[0].params == params


class SizedRMSNorm(nn.Module):
    """An RMSNorm that keeps its width, as some user code does."""

    def __init__(self, dim: int, kept: int | None = None) -> None:
        super().__init__()
        self.dim = dim if kept is None else kept
        self.eps = 1e-6
        self.weight = nn.Parameter(torch.ones(dim))


class MatrixRMSNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, 8))


class GainedConv(nn.Conv2d):
    """A convolution with one scalar gain, not one per channel."""

    def __init__(self) -> None:
        super().__init__(3, 8, 3)
        self.gain = nn.Parameter(torch.ones(()))


class LayerScaleBlock(nn.Module):
    """A block that owns two scales itself (CaiT's): not one LayerScale."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma_1 = nn.Parameter(torch.ones(8))
        self.gamma_2 = nn.Parameter(torch.ones(8))


class NormalizedExtra(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.normalized_shape = (8,)
        self.weight = nn.Parameter(torch.ones(8))
        self.offset = nn.Parameter(torch.zeros(8))


def test_a_duck_rule_derives_a_kept_width() -> None:
    with torch.device("meta"):
        (row,) = count_parameters(SizedRMSNorm(64)).layers
    assert (row.formula, row.params) == ("64", 64)


@pytest.mark.parametrize(
    ("make", "formula"),
    [
        # It keeps a width its weight does not have: the guess is wrong, so no rule is claimed.
        pytest.param(lambda: SizedRMSNorm(8, kept=16), "weight 8", id="kept-width-disagrees"),
        pytest.param(MatrixRMSNorm, "weight 2×8", id="rms-norm-with-a-matrix"),
        pytest.param(GainedConv, "weight 8×3×3×3 + bias 8 + gain 1", id="scalar-gain"),
        pytest.param(LayerScaleBlock, "gamma_1 8 + gamma_2 8", id="block-with-two-scales"),
        pytest.param(NormalizedExtra, "weight 8 + offset 8", id="normalized-with-extra"),
    ],
)
def test_a_duck_rule_that_does_not_fit_leaves_the_shape_formula_without_a_warning(
    make: Callable[[], nn.Module],
    formula: str,
    count_checked: Callable[[ModelLike], ParameterCount],
    fallback_rows: Callable[[nn.Module, ParameterCount], set[str]],
) -> None:
    with torch.device("meta"):
        module = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FormulaMismatchWarning)
        count = count_checked(module)
    assert [row.formula for row in count.layers] == [formula]
    assert fallback_rows(module, count) == {"(root)"}


# -- whole models: every row's formula equals its numel ----------------------------------------


def whole_model(
    model: nn.Module,
    count_checked: Callable[[ModelLike], ParameterCount],
    fallback_rows: Callable[[nn.Module, ParameterCount], set[str]],
) -> set[str]:
    """The types of the rows left with a shape formula, after checking every invariant."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FormulaMismatchWarning)
        count = count_checked(model)
    modules = dict(model.named_modules())
    return {type(modules[n if n != "(root)" else ""]).__name__ for n in fallback_rows(model, count)}


@pytest.mark.parametrize(
    ("name", "left"),
    [
        # Class and position tokens, CaiT's and ConViT's own block scales and gates keep their
        # shape formulas: the owners are blocks and models, not layers with hyperparameters.
        ("convit_tiny", {"ConVit", "GPSA"}),
        ("pit_ti_224", {"PoolingVisionTransformer"}),
        ("cait_xxs24_224", {"Cait", "LayerScaleBlock", "LayerScaleBlockClassAttn"}),
        ("nf_resnet26", set()),  # ScaledStdConv2d throughout
        ("convnext_atto_rms", {"ConvNeXtBlock"}),  # RmsNorm2d, and blocks owning gamma
        ("vit_medium_patch16_reg1_gap_256", {"VisionTransformer"}),  # LayerScale
    ],
)
def test_timm_models(
    name: str,
    left: set[str],
    count_checked: Callable[[ModelLike], ParameterCount],
    fallback_rows: Callable[[nn.Module, ParameterCount], set[str]],
) -> None:
    timm = pytest.importorskip("timm")
    from pytest_cnnbudget.engine.loading import build_model

    model = build_model(timm.create_model, {"model_name": name, "pretrained": False})
    assert whole_model(model, count_checked, fallback_rows) == left


def test_a_llama_has_a_formula_for_every_row(
    count_checked: Callable[[ModelLike], ParameterCount],
    fallback_rows: Callable[[nn.Module, ParameterCount], set[str]],
) -> None:
    transformers = pytest.importorskip("transformers")
    from pytest_cnnbudget.engine.loading import build_model

    config = transformers.LlamaConfig(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = build_model(transformers.LlamaForCausalLM, {"config": config})
    assert whole_model(model, count_checked, fallback_rows) == set()
    rows = {r.name: r.formula for r in count_parameters(model).layers}
    assert rows["model.layers.0.input_layernorm"] == "64 (weight's shape)"
    assert rows["model.layers.0.self_attn.k_proj"] == "64×32"  # 2 key-value heads of 16
