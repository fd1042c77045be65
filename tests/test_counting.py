"""Per-layer counting: the seed example, totals, sharing, freezing, containers, reference models."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import architectures
import nets
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from pytest_cnnbudget import CountError, count_parameters, format_table
from pytest_cnnbudget.engine.counting import ModelLike
from pytest_cnnbudget.results import ParameterCount

CountChecked = Callable[[ModelLike], ParameterCount]
FallbackRows = Callable[[nn.Module, ParameterCount], set[str]]


# -- the seed example --------------------------------------------------------------------------


def test_cifar_rows(count_checked: CountChecked) -> None:
    count = count_checked(nets.Cifar())
    assert [(r.name, r.type, r.params, r.cumulative) for r in count.layers] == [
        ("conv1", "Conv2d", 896, 896),
        ("conv2", "Conv2d", 18_496, 19_392),
        ("fc1", "Linear", 524_416, 543_808),
        ("fc2", "Linear", 1_290, 545_098),
    ]
    assert (count.total, count.trainable, count.frozen, count.buffers) == (545_098, 545_098, 0, 0)
    assert [r.share for r in count.layers] == [r.params / 545_098 for r in count.layers]
    assert count.largest(2) == (count.layers[2], count.layers[1])
    assert count.param_bytes == 4 * 545_098


def test_cifar_table() -> None:
    assert format_table(count_parameters(nets.Cifar())) == (
        "layer  type    formula            params  cumulative  share\n"
        "-----  ------  ----------------  -------  ----------  -----\n"
        "conv1  Conv2d  3×3×3/1×32 + 32       896         896   0.2%\n"
        "conv2  Conv2d  3×3×32/1×64 + 64   18,496      19,392   3.4%\n"
        "fc1    Linear  4096×128 + 128    524,416     543,808  96.2%\n"
        "fc2    Linear  128×10 + 10         1,290     545,098   0.2%\n"
        # The formula's notation, said where it is first printed: `/1` divides by the groups.
        "conv formula k×k×C_in/G×C_out + C_out: kernel, input channels / groups, output, bias\n"
        "total 545,098 · trainable 545,098 · frozen 0 · buffers 0"
    )


# -- parameters and buffers --------------------------------------------------------------------


def test_running_statistics_are_buffers(count_checked: CountChecked) -> None:
    count = count_checked(nn.BatchNorm2d(64))
    assert (count.total, count.trainable, count.frozen) == (128, 128, 0)
    # running_mean, running_var and the num_batches_tracked scalar.
    assert count.buffers == 64 + 64 + 1
    assert (count.param_bytes, count.buffer_bytes) == (128 * 4, 128 * 4 + 8)
    (row,) = count.layers
    assert (row.params, row.formula) == (128, "2×64")


def test_bytes_follow_dtype(count_checked: CountChecked) -> None:
    count = count_checked(nn.Linear(10, 10, dtype=torch.float16))
    assert (count.total, count.param_bytes) == (110, 220)


def test_frozen_layers(count_checked: CountChecked) -> None:
    backbone, norm = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
    model = nn.Sequential(OrderedDict(backbone=backbone, norm=norm, head=nn.Linear(8, 2)))
    backbone.requires_grad_(False)
    norm.bias.requires_grad_(False)
    count = count_checked(model)
    assert (count.total, count.trainable, count.frozen) == (224 + 16 + 18, 8 + 18, 224 + 8)
    assert [(r.name, r.params, r.trainable) for r in count.layers] == [
        ("backbone", 224, 0),
        ("norm", 16, 8),
        ("head", 18, 18),
    ]
    # By trainable parameters the frozen backbone drops out and the head leads.
    assert [r.name for r in count.largest(3, trainable=True)] == ["head", "norm"]
    assert [r.name for r in count.largest(3)] == ["backbone", "head", "norm"]


# -- sharing -----------------------------------------------------------------------------------


def test_tied_embedding_counted_once(count_checked: CountChecked) -> None:
    vocab, dim = 100, 16
    small_llama = partial(architectures.llama, vocab, dim, n_layers=2, hidden=32, n_heads=2)
    with torch.device("meta"):
        tied, untied = small_llama(tie_embeddings=True), small_llama()
    count = count_checked(tied)
    assert count_checked(untied).total - count.total == vocab * dim
    rows = {r.name: r for r in count.layers}
    assert rows["tok_embeddings"].params == vocab * dim
    head = rows["lm_head"]
    assert (head.type, head.params, head.formula_params) == ("Linear", 0, 0)
    assert head.formula == "weight shared with tok_embeddings.weight"


def test_tied_head_keeps_its_bias(count_checked: CountChecked) -> None:
    embed = nn.Embedding(100, 16)
    head = nn.Linear(16, 100)
    head.weight = embed.weight
    count = count_checked(nn.Sequential(OrderedDict(embed=embed, head=head)))
    assert [(r.name, r.params, r.formula) for r in count.layers] == [
        ("embed", 1600, "100×16"),
        ("head", 100, "bias 100; weight shared with embed.weight"),
    ]


def test_module_registered_under_two_names(count_checked: CountChecked) -> None:
    shared = nn.Linear(4, 4)
    model = nn.Module()
    model.first = shared
    model.other = nn.Linear(4, 2)
    model.second = shared
    count = count_checked(model)
    # named_modules() yields a module once, under its first name, so it gets a single row.
    assert [(r.name, r.params, r.formula) for r in count.layers] == [
        ("first", 20, "4×4 + 4; also registered as second"),
        ("other", 10, "4×2 + 2"),
    ]
    assert count.total == 30


def test_shared_block_notes_each_of_its_layers(count_checked: CountChecked) -> None:
    block = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    model = nn.Sequential(block, nn.Linear(4, 4), block)
    count = count_checked(model)
    assert [(r.name, r.formula) for r in count.layers] == [
        ("0.0", "4×4 + 4; also registered as 2.0"),
        ("0.2", "4×4 + 4; also registered as 2.2"),
        ("1", "4×4 + 4"),
    ]
    assert count.total == 3 * 20


# -- where parameters live ---------------------------------------------------------------------


def test_bare_parameters_on_containers(count_checked: CountChecked) -> None:
    with torch.device("meta"):
        model = architectures.vit_b_16()
    count = count_checked(model)
    rows = {r.name: r for r in count.layers}
    assert count.layers[0] == rows["(root)"]
    root, encoder = rows["(root)"], rows["encoder"]
    assert (root.type, root.formula, root.params) == (
        "VisionTransformer",
        "class_token 1×1×768",
        768,
    )
    assert (encoder.formula, encoder.params) == ("pos_embedding 1×197×768", 197 * 768)


@pytest.mark.parametrize(
    ("layers", "names"),
    [
        ([nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 2)], ["0", "1", "2"]),
        ((nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), ["0", "2"]),
        ({"stem": nn.Conv2d(3, 8, 3), "head": nn.Linear(8, 2)}, ["stem", "head"]),
    ],
    ids=["list", "tuple", "dict"],
)
def test_layer_collections(
    layers: ModelLike, names: list[str], count_checked: CountChecked
) -> None:
    count = count_checked(layers)
    assert [r.name for r in count.layers] == names


def test_layer_list_rejects_non_modules() -> None:
    with pytest.raises(TypeError, match=r"layer 1 is a int, not an nn\.Module"):
        count_parameters([nn.Linear(2, 2), 3])  # type: ignore[list-item]


def _weight_norm(layer: nn.Linear) -> None:
    parametrizations.weight_norm(layer)


def _legacy_weight_norm(layer: nn.Linear) -> None:
    with pytest.warns(FutureWarning, match="deprecated"):
        nn.utils.weight_norm(layer)


def _spectral_norm(layer: nn.Linear) -> None:
    parametrizations.spectral_norm(layer)


def _legacy_spectral_norm(layer: nn.Linear) -> None:
    nn.utils.spectral_norm(layer)


@pytest.mark.parametrize(
    ("reparametrize", "total", "buffers"),
    [
        # Weight norm stores a magnitude per output row (10) beside the direction (10×20).
        (_weight_norm, 200 + 10 + 10, 0),
        (_legacy_weight_norm, 200 + 10 + 10, 0),
        # Spectral norm keeps the weight and adds power-iteration vectors as buffers.
        (_spectral_norm, 200 + 10, 10 + 20),
        (_legacy_spectral_norm, 200 + 10, 10 + 20),
    ],
    ids=["weight_norm", "legacy_weight_norm", "spectral_norm", "legacy_spectral_norm"],
)
def test_reparametrized_weights(
    reparametrize: Callable[[nn.Linear], None],
    total: int,
    buffers: int,
    count_checked: CountChecked,
) -> None:
    layer = nn.Linear(20, 10)
    reparametrize(layer)
    model = nn.Sequential(layer, nn.ReLU(), nn.Linear(10, 1))
    count = count_checked(model)
    assert count.total == total + 11
    assert count.buffers == buffers
    assert count.layers[-1].formula == "10×1 + 1"


# -- lazy modules ------------------------------------------------------------------------------


def test_lazy_module_needs_a_forward_pass(count_checked: CountChecked) -> None:
    model = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(CountError, match=r"0\.weight is an uninitialized lazy parameter.*forward"):
        count_parameters(model)
    model(torch.zeros(1, 8))
    count = count_checked(model)
    assert [(r.name, r.type, r.formula) for r in count.layers] == [
        ("0", "Linear", "8×4 + 4"),
        ("2", "Linear", "4×2 + 2"),
    ]
    assert count.total == 46


def test_lazy_buffers_need_a_forward_pass(count_checked: CountChecked) -> None:
    # No parameters at all, only running statistics whose size the first input decides.
    model = nn.Sequential(nn.LazyBatchNorm2d(affine=False))
    with pytest.raises(CountError, match=r"0\.running_mean is an uninitialized lazy buffer"):
        count_parameters(model)
    model(torch.zeros(2, 3, 4, 4))
    count = count_checked(model)
    assert (count.total, count.buffers) == (0, 3 + 3 + 1)


# -- reference architectures -------------------------------------------------------------------


def bare_parameter_rows(name: str, model: nn.Module) -> set[str]:
    """Rows of layers that own bare parameters, which no textbook rule describes.

    Every other row must come from a rule, so a standard layer that is silently counted from its
    shapes shows up as a difference here.
    """
    if name == "vit_b_16":
        return {"(root)", "encoder"}  # class_token, pos_embedding
    if name == "convnext_tiny":
        return {n for n, m in model.named_modules() if isinstance(m, architectures.CNBlock)}
    return set()


@pytest.mark.parametrize("name", list(architectures.PUBLISHED_GMACS))  # the image models
def test_reference_architecture(
    name: str, count_checked: CountChecked, fallback_rows: FallbackRows
) -> None:
    with torch.device("meta"):
        model: nn.Module = getattr(architectures, name)()
    count = count_checked(model)
    assert count.total == architectures.PUBLISHED_PARAMS[name]
    assert count.trainable == count.total
    assert fallback_rows(model, count) == bare_parameter_rows(name, model)


def test_llama_7b(count_checked: CountChecked, fallback_rows: FallbackRows) -> None:
    with torch.device("meta"):
        model = architectures.llama()
    count = count_checked(model)
    assert count.total == 6_738_415_616 == architectures.PUBLISHED_PARAMS["llama"]
    assert fallback_rows(model, count) == set()
    rows = {r.name: r for r in count.layers}
    assert rows["lm_head"].formula == "4096×32000"
    assert rows["layers.0.feed_forward.w1"].formula == "4096×11008"
    assert rows["layers.31.ffn_norm"].formula == "4096"
