"""Input shapes, the meta forward pass, multiply-adds, shape-mismatch messages, bytes by dtype."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

import architectures
import nets
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pytest_cnnbudget import CnnBudgetError, CountError, count_parameters
from pytest_cnnbudget.engine.profiler import profile
from pytest_cnnbudget.errors import ProfileError, ShapeMismatchError
from pytest_cnnbudget.inputs import InputSpec, parse_input_shape


def on_meta(factory: Callable[[], nn.Module]) -> nn.Module:
    with torch.device("meta"):
        return factory()


CIFAR_INPUT = InputSpec(args=((1, 3, 32, 32),))


# -- parsing input shapes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        ([1, 3, 32, 32], InputSpec(args=((1, 3, 32, 32),))),
        ((1, 16), InputSpec(args=((1, 16),))),
        ([[1, 3, 32, 32], [1, 10]], InputSpec(args=((1, 3, 32, 32), (1, 10)))),
        ({"x": [1, 3], "mask": [1, 3]}, InputSpec(kwargs=(("x", (1, 3)), ("mask", (1, 3))))),
        ("1,3,32,32", InputSpec(args=((1, 3, 32, 32),))),
        ("1x3x32x32", InputSpec(args=((1, 3, 32, 32),))),
        (" 1 × 3 × 32 × 32 ", InputSpec(args=((1, 3, 32, 32),))),
        ("1,3,32,32;1,10", InputSpec(args=((1, 3, 32, 32), (1, 10)))),
        ("1,8; mask=1,8", InputSpec(args=((1, 8),), kwargs=(("mask", (1, 8)),))),
        ("[[1, 4], [1, 2]]", InputSpec(args=((1, 4), (1, 2)))),
        ('{"ids": [1, 128]}', InputSpec(kwargs=(("ids", (1, 128)),))),
    ],
)
def test_parse_input_shape(value: object, spec: InputSpec) -> None:
    assert parse_input_shape(value) == spec


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 3, -32, 32], "dimension 2 of [1, 3, -32, 32] is -32; dimensions must be positive"),
        ([1, 0], "dimension 1 of [1, 0] is 0"),
        ([1, 3.5], "dimension 1 of [1, 3.5] is 3.5"),
        ([1, True], "dimension 1 of [1, True] is True"),
        ([], "the shape is empty"),
        ({}, "the table of inputs is empty"),
        ([[1, 3], 4], "mixes numbers and lists"),
        ([[1, 3], []], "input 1: expected a non-empty list of dimensions"),
        ({"mask": [1, -1]}, "input 'mask': dimension 1 of [1, -1] is -1"),
        ({"not valid": [1]}, "input name 'not valid' is not a valid keyword argument name"),
        ("lots", "cannot read 'lots' as shapes; write them like 1,3,32,32"),
        ("1,2;x=1;3", "a positional shape follows a named one"),
        ("[1, 2", "is not valid JSON"),
        (32, "expected a shape like [1, 3, 32, 32]"),
        (None, "got NoneType None"),
    ],
)
def test_parse_input_shape_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_input_shape(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(
            [1, 10**20],
            "dimension 1 of [1, 100000000000000000000] is 100000000000000000000; "
            "a dimension is at most 2,147,483,647 (2**31 - 1)",
            id="dimension-1e20",
        ),
        pytest.param([2**31, 1], "dimension 0 of [2147483648, 1] is 2147483648", id="int32-plus-1"),
        pytest.param(
            [1] * 17, "[1, 1, 1, 1, 1, 1, ...] has 17 dimensions; at most 16", id="17-dims"
        ),
        pytest.param(
            [2**20] * 3,
            "[1048576, 1048576, 1048576] has about 1.15e+18 elements; an input has at most "
            "1,099,511,627,776 (2**40)",
            id="elements",
        ),
        pytest.param(
            {"x": [2**21] * 2, "mask": [1]},
            "input 'x': [2097152, 2097152] has about",
            id="named-elements",
        ),
        pytest.param([[1]] * 65, "65 inputs; a forward pass takes at most 64", id="65-inputs"),
        pytest.param(
            {f"x{i}": [1] for i in range(65)},
            "65 inputs; a forward pass takes at most 64",
            id="65-named",
        ),
        pytest.param(
            "1;" * 64 + "1", "65 inputs; a forward pass takes at most 64", id="65-in-text"
        ),
        pytest.param(
            "1," + "9" * 5000,
            f"a dimension of 5,000 digits ('{'9' * 27}...{'9' * 28}'); a dimension is at most "
            "2,147,483,647",
            id="5000-digit-text",
        ),
        pytest.param(
            "1x2147483648", "dimension 1 of [1, 2147483648] is 2147483648", id="text-int32-plus-1"
        ),
        pytest.param(
            "[1, " + "9" * 5000 + "]", "a dimension of 5,000 digits", id="5000-digit-json"
        ),
        pytest.param(
            "[1, " + "9" * 20 + "]", "dimension 1 of [1, 99999999999999999999] is", id="json-1e20"
        ),
        pytest.param(
            "[" * 5000 + "]" * 5000,
            f"'{'[' * 27}...{']' * 28}' is nested too deeply to be input shapes",
            id="deep-json",
        ),
        pytest.param(
            "1" * 10_001,
            f"'{'1' * 27}...{'1' * 28}' is 10,001 characters long; an input shape written as text is "
            "at most 10,000",
            id="long-text",
        ),
        pytest.param("1,2\n", None, id="newline-is-whitespace"),
        pytest.param(
            {"a\nb": [1]},
            "input name 'a\\nb' is not a valid keyword argument name",
            id="newline-name",
        ),
    ],
)
def test_parse_input_shape_bounds_what_it_would_make(value: object, message: str | None) -> None:
    if message is None:  # a bound must not reject what always read
        assert parse_input_shape(value) == InputSpec(args=((1, 2),))
        return
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        parse_input_shape(value)
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize(
    "value",
    [[2**31 - 1], [1] * 16, [[1]] * 64, [1024] * 4, "1024x1024x1024x1024", ";".join(["1"] * 64)],
)
def test_parse_input_shape_accepts_up_to_each_bound(value: object) -> None:
    parse_input_shape(value)


@pytest.mark.parametrize(
    "value", [[1, 3, 32, 32], [[1, 3, 32, 32], [1, 10]], {"x": [1, 3], "mask": [1, 3]}]
)
def test_input_spec_round_trips_through_its_config_form(value: object) -> None:
    spec = parse_input_shape(value)
    assert spec.to_value() == value
    assert parse_input_shape(spec.to_value()) == spec


def test_input_spec_describe() -> None:
    assert parse_input_shape("1,3,32,32;1,10").describe() == "1×3×32×32, 1×10"
    assert parse_input_shape("1,8;mask=1,8").describe() == "1×8, mask=1×8"


# -- the seed example: shapes and multiply-adds by hand ----------------------------------------


def test_cifar_output_shapes_and_macs_by_hand() -> None:
    result = profile(on_meta(nets.Cifar), CIFAR_INPUT)
    by_name = {m.name: m for m in result.modules}
    assert by_name["conv1"].output_shape == (1, 32, 32, 32)
    assert by_name["conv2"].output_shape == (1, 64, 16, 16)
    assert by_name["pool"].output_shape == (1, 32, 16, 16)  # the first of its two calls
    assert by_name["pool"].calls == 2
    assert by_name["fc1"].output_shape == (1, 128)
    assert result.output_shape == by_name["(root)"].output_shape == (1, 10)
    # Output positions × kernel positions × input channels, one MAC each.
    assert by_name["conv1"].macs == 32 * 32 * 32 * (3 * 3 * 3) == 884_736
    assert by_name["conv2"].macs == 64 * 16 * 16 * (3 * 3 * 32) == 4_718_592
    assert by_name["fc1"].macs == 4096 * 128 == 524_288
    assert by_name["fc2"].macs == 128 * 10 == 1_280
    assert by_name["pool"].macs == 0
    assert result.macs == 884_736 + 4_718_592 + 524_288 + 1_280 == 6_128_896
    assert result.flops == 2 * result.macs
    assert by_name["(root)"].macs == result.macs
    assert by_name["(root)"].self_macs == 0
    assert sum(m.self_macs for m in result.modules) == result.macs
    assert [m.name for m in result.modules] == ["(root)", "conv1", "conv2", "pool", "fc1", "fc2"]
    assert [m.type for m in result.modules][:2] == ["Cifar", "Conv2d"]


def test_profile_agrees_with_flop_counter_mode_own_table() -> None:
    model = on_meta(architectures.resnet18)
    result = profile(model, parse_input_shape([1, 3, 224, 224]))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.empty(1, 3, 224, 224, device="meta"))
    # FlopCounterMode keys its table by class-name paths; ours are the named_modules() names.
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    assert result.flops == counts["Global"] == counts["ResNet"]
    for name in ("conv1", "layer1", "layer2.0", "layer2.0.downsample.0", "layer4.1.conv2", "fc"):
        assert result.module(name).flops == counts[f"ResNet.{name}"], name
    with pytest.raises(KeyError):
        result.module("no.such.layer")


@pytest.mark.parametrize("name", list(architectures.PUBLISHED_GMACS))  # the image models
def test_macs_match_published_figures(name: str) -> None:
    model = on_meta(getattr(architectures, name))
    result = profile(model, parse_input_shape([1, 3, 224, 224]))
    published = architectures.PUBLISHED_GMACS[name] * 1e9
    assert result.macs == pytest.approx(published, rel=0.01)
    assert result.output_shape == (1, 1000)
    assert sum(m.self_macs for m in result.modules) == result.macs


def test_vit_attention_is_counted_on_meta() -> None:
    # Under no_grad on cpu, attention would take a fused kernel FlopCounterMode cannot see;
    # on meta the attention block's matmuls are all counted.
    result = profile(on_meta(architectures.vit_b_16), parse_input_shape([1, 3, 224, 224]))
    attention = result.module("encoder.layers.encoder_layer_0.self_attention")
    tokens, dim = 197, 768
    # q, k, v and output projections, then scores and the weighted sum over 197 tokens.
    assert attention.macs == 4 * tokens * dim * dim + 2 * tokens * tokens * dim
    assert attention.output_shape == (1, tokens, dim)  # the first of (output, weights)


def test_llama_7b_profiles_on_meta_with_token_ids() -> None:
    model = on_meta(architectures.llama)
    result = profile(model, parse_input_shape([1, 128]))
    assert result.output_shape == (1, 128, 32000)
    # Every weight but the embedding (a lookup) is used once per token.
    embedding = 32000 * 4096
    assert result.macs >= 128 * (architectures.PUBLISHED_PARAMS["llama"] - embedding)
    assert result.module("tok_embeddings").output_shape == (1, 128, 4096)


# -- several inputs, tuple outputs, devices, dtypes --------------------------------------------


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Linear(12, 4)
        self.meta = nn.Linear(3, 4)
        self.rnn = nn.LSTM(4, 6, batch_first=True)

    def forward(
        self, x: torch.Tensor, extra: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert mask is not None
        h = self.image(x) + self.meta(extra)
        out, _ = self.rnn(h * mask)
        return out, {"hidden": h}


def test_positional_and_keyword_inputs() -> None:
    spec = parse_input_shape("2,5,12;2,5,3;mask=2,5,4")
    result = profile(on_meta(TwoInputs), spec)
    assert result.module("image").output_shape == (2, 5, 4)
    assert result.module("meta").output_shape == (2, 5, 4)
    assert result.module("rnn").output_shape == (2, 5, 6)  # output of (output, (h, c))
    assert result.output_shape == (2, 5, 6)
    assert result.inputs == spec


def test_model_on_cpu_is_profiled_with_meta_stand_ins_and_left_untouched() -> None:
    torch.manual_seed(0)
    model = nets.Cifar().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert profile(model, CIFAR_INPUT) == profile(on_meta(nets.Cifar), CIFAR_INPUT)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].device.type == "cpu" for k in after)


def test_training_flags_and_hooks_are_restored() -> None:
    model = on_meta(architectures.resnet18).train()
    model.get_submodule("layer1").eval()
    flags = {name: m.training for name, m in model.named_modules()}
    profile(model, parse_input_shape([1, 3, 224, 224]))
    assert {name: m.training for name, m in model.named_modules()} == flags
    with pytest.raises(ProfileError):
        profile(model, parse_input_shape([1, 3, 224]))
    assert {name: m.training for name, m in model.named_modules()} == flags
    for m in model.modules():
        assert not m._forward_hooks
        assert not m._forward_pre_hooks


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_model_gets_inputs_of_its_dtype(dtype: torch.dtype) -> None:
    model = on_meta(nets.Cifar).to(dtype)
    assert profile(model, CIFAR_INPUT).macs == 6_128_896


# -- lazy modules ------------------------------------------------------------------------------


def lazy_net() -> nn.Module:
    return nn.Sequential(
        nn.LazyConv2d(16, kernel_size=3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10)
    )


def test_profile_materializes_lazy_modules_then_they_count_exactly(
    count_checked: Callable[[nn.Module], Any],
) -> None:
    model = on_meta(lazy_net)
    with pytest.raises(CountError, match="uninitialized lazy parameter"):
        count_parameters(model)
    result = profile(model, parse_input_shape([1, 3, 8, 8]))
    assert [type(m).__name__ for m in model.children()] == ["Conv2d", "ReLU", "Flatten", "Linear"]
    count = count_checked(model)
    assert [(r.name, r.formula, r.params) for r in count.layers] == [
        ("0", "3×3×3/1×16 + 16", 3 * 3 * 3 * 16 + 16),
        ("3", "1024×10 + 10", 16 * 8 * 8 * 10 + 10),
    ]
    assert result.module("0").macs == 16 * 8 * 8 * (3 * 3 * 3)
    assert result.module("3").macs == 1024 * 10
    assert all(p.device.type == "meta" for p in model.parameters())


def test_lazy_model_off_meta_is_a_clear_error() -> None:
    with pytest.raises(ProfileError, match="build the model with device='meta'"):
        profile(lazy_net(), parse_input_shape([1, 3, 8, 8]))


# -- shape mismatches, explained ---------------------------------------------------------------


def test_wrong_fc_width_names_the_layer_sizes_and_the_arithmetic() -> None:
    with pytest.raises(ShapeMismatchError) as info:
        profile(on_meta(nets.Cifar), parse_input_shape([1, 3, 64, 64]))
    assert isinstance(info.value, CnnBudgetError)
    assert str(info.value).splitlines() == [
        "fc1 (Linear) expects 4096 input features = 64·8·8 but receives 16384 = 64·16·16: "
        "the input is 64×64, and conv1 (3×3, pad 1, stride 1) keeps 64, "
        "pool (2×2, stride 2) gives 32, conv2 keeps 32, pool gives 16",
        "  H_out = ⌊(H_in + 2p − d(k−1) − 1)/s⌋ + 1:",
        "    conv1: ⌊(64 + 2·1 − 1·(3−1) − 1)/1⌋ + 1 = 64",
        "    pool: ⌊(64 + 2·0 − 1·(2−1) − 1)/2⌋ + 1 = 32",
        "    conv2: ⌊(32 + 2·1 − 1·(3−1) − 1)/1⌋ + 1 = 32",
        "    pool: ⌊(32 + 2·0 − 1·(2−1) − 1)/2⌋ + 1 = 16",
        "For input 1×3×64×64, fc1 would need in_features=16384; "
        "or give the input shape the model was designed for.",
    ]
    assert isinstance(info.value.__cause__, RuntimeError)


def test_non_square_input_keeps_both_sides() -> None:
    with pytest.raises(ShapeMismatchError) as info:
        profile(on_meta(nets.Cifar), parse_input_shape([1, 3, 32, 64]))
    first = str(info.value).splitlines()[0]
    assert first.startswith(
        "fc1 (Linear) expects 4096 input features = 64·8·8 but receives 8192 = 64·8·16: "
        "the input is 32×64, and conv1 (3×3, pad 1, stride 1) keeps 32×64"
    )


def test_wrong_conv_channels_name_the_layer() -> None:
    def model() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))

    with pytest.raises(ShapeMismatchError) as info:
        profile(on_meta(model), parse_input_shape([1, 3, 16, 16]))
    assert str(info.value).startswith("2 (Conv2d) expects 8 input channels but receives 16")


def test_long_chains_keep_the_steps_that_change_size() -> None:
    model = on_meta(architectures.resnet50)
    model.fc = nn.Linear(4096, 10, device="meta")
    with pytest.raises(ShapeMismatchError) as info:
        profile(model, parse_input_shape([1, 3, 224, 224]))
    first = str(info.value).splitlines()[0]
    assert first.startswith(
        "fc (Linear) expects 4096 input features but receives 2048 = 2048·1·1: the input is "
        "224×224, and conv1 (7×7, pad 3, stride 2) gives 112, maxpool (3×3, pad 1, stride 2) "
        "gives 56, layer2.0.conv2 (3×3, pad 1, stride 2) gives 28, "
        "layer2.0.downsample.0 (1×1, stride 2) turns 56 into 28"
    )
    assert first.endswith("avgpool (adaptive to 1) gives 1, 46 more layers keep their size")


def test_other_forward_errors_name_the_innermost_module() -> None:
    with pytest.raises(ProfileError) as info:
        profile(on_meta(architectures.vit_b_16), parse_input_shape([1, 3, 64, 64]))
    assert not isinstance(info.value, ShapeMismatchError)
    assert str(info.value) == (
        "forward pass with input 1×3×64×64 failed in (root) (VisionTransformer), given input "
        "1×3×64×64: ValueError: expected 224x224 input, got 64x64"
    )


class ReadsValues(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc(x).sum().item() > 0:
            return x
        return -x


def test_value_dependent_forward_explains_meta() -> None:
    with pytest.raises(ProfileError) as info:
        profile(on_meta(ReadsValues), parse_input_shape([1, 4]))
    assert "failed in (root) (ReadsValues), given input 1×4" in str(info.value)
    assert "cannot run in it" in str(info.value)


# -- bytes by dtype ----------------------------------------------------------------------------


def test_bytes_fp32_and_half_precision() -> None:
    model = on_meta(nets.Cifar)
    fp32 = count_parameters(model)
    assert fp32.param_bytes_by_dtype() == {"float32": 4 * 545_098}
    assert fp32.param_bytes == 4 * 545_098
    assert fp32.buffer_bytes_by_dtype() == {}
    for dtype, name in ((torch.float16, "float16"), (torch.bfloat16, "bfloat16")):
        half = count_parameters(on_meta(nets.Cifar).to(dtype))
        assert half.param_bytes_by_dtype() == {name: 2 * 545_098}
        assert half.param_bytes * 2 == fp32.param_bytes


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3).half()  # 224 elements
        self.bn = nn.BatchNorm2d(8)  # 16 float32 parameters, 16 float32 + 1 int64 buffers
        self.head = nn.Linear(8, 2).to(torch.bfloat16)  # 18 elements
        self.codebook = nn.Parameter(torch.empty(4, 8, dtype=torch.int8), requires_grad=False)
        self.tied = nn.Linear(8, 2, bias=False)
        self.tied.weight = self.head.weight  # counted once


def test_mixed_dtypes_are_reported_separately() -> None:
    model = on_meta(Mixed)
    memory = count_parameters(model)
    assert memory.param_bytes_by_dtype() == {
        "float16": 224 * 2,
        "float32": 16 * 4,
        "bfloat16": 18 * 2,
        "int8": 32,
    }
    assert memory.buffer_bytes_by_dtype() == {"float32": 16 * 4, "int64": 8}
    assert [d.dtype for d in memory.dtypes] == ["float16", "float32", "bfloat16", "int8", "int64"]
    assert memory.param_bytes == sum(d.param_bytes for d in memory.dtypes) == 448 + 64 + 36 + 32
    assert memory.buffer_bytes == sum(d.buffer_bytes for d in memory.dtypes) == 64 + 8


class SharedHead(nn.Module):
    """One Linear reached through two parents, as in weight-shared decoders."""

    def __init__(self) -> None:
        super().__init__()
        head = nn.Linear(8, 8)
        self.first = nn.Sequential(head)
        self.second = nn.Sequential(nn.ReLU(), head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))  # type: ignore[no-any-return]


def test_shared_module_is_reported_under_its_counting_name() -> None:
    model = on_meta(SharedHead)
    result = profile(model, parse_input_shape([1, 8]))
    head = result.module("first.0")  # the name count_parameters gives its row
    assert (head.calls, head.macs) == (2, 2 * 64)
    assert [r.name for r in count_parameters(model).layers] == ["first.0"]
    assert "second.1" not in {m.name for m in result.modules}
    assert result.module("second").macs == 64
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.empty(1, 8, device="meta"))
    # FlopCounterMode's own table files both calls under the last parent it walked.
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    assert counts.get("SharedHead.second.1") == 2 * 2 * 64
    assert "SharedHead.first.0" not in counts


# -- parameter views, grad mode, and where a pass failed ---------------------------------------


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Parameter(torch.zeros(8), requires_grad=False)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, cls_tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([cls_tokens, x], dim=1) + self.frozen)  # type: ignore[no-any-return]


class ClassToken(nn.Module):
    """A class token expanded to the batch and handed to a submodule, as PiT and CaiT do: a view
    of a parameter, which under torch.no_grad() requires grad without having a grad_fn."""

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.head = Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x, self.cls_token.expand(x.shape[0], -1, -1))  # type: ignore[no-any-return]


def test_a_submodule_given_a_view_of_a_parameter_is_profiled() -> None:
    model = on_meta(ClassToken)
    # FlopCounterMode's own module tracking fails on it ("Expected gradient function to be
    # set"; older releases raise the AssertionError with no message).
    with (
        pytest.raises(AssertionError, match=r"Expected gradient function to be set|^$"),
        torch.no_grad(),
        FlopCounterMode(display=False),
    ):
        model(torch.empty(2, 3, 8, device="meta"))
    result = profile(model, parse_input_shape([2, 3, 8]))
    assert result.module("head.fc").macs == 2 * 4 * 8 * 4
    # Restored: the pass turns requires_grad off, and back on only where it was on.
    assert {n: p.requires_grad for n, p in model.named_parameters()} == {
        "cls_token": True,
        "head.frozen": False,
        "head.fc.weight": True,
        "head.fc.bias": True,
    }


class MakesItsOwnLeaf(nn.Module):
    """A forward that makes a tensor requiring grad and hands a view of it to a submodule."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = torch.zeros(1, 4, device=x.device, requires_grad=True)
        return self.fc(query.expand(x.shape[0], -1)) + x  # type: ignore[no-any-return]


def test_a_view_of_a_tensor_the_forward_makes_requiring_grad_is_profiled() -> None:
    assert profile(on_meta(MakesItsOwnLeaf), parse_input_shape([3, 4])).macs == 3 * 4 * 4


@pytest.mark.parametrize("name", ["pit_ti_224", "cait_xxs24_224"])
def test_timm_models_with_class_token_views_profile(name: str) -> None:
    timm = pytest.importorskip("timm")
    from pytest_cnnbudget.engine.loading import build_model

    model = build_model(timm.create_model, {"model_name": name, "pretrained": False})
    inputs = parse_input_shape([1, 3, 224, 224])
    result = profile(model, inputs)
    # The same pass outside no_grad, which FlopCounterMode handles, counts the same.
    model.eval()
    with FlopCounterMode(display=False) as counter:
        output = model(torch.empty(1, 3, 224, 224, device="meta"))
    assert result.flops == counter.get_total_flops() > 0
    assert result.output_shape == tuple(output.shape) == (1, 1000)
    assert all(p.requires_grad for p in model.parameters())


class Checked(nn.Module):
    """A submodule whose own pre-hook rejects its input before it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

        def reject(module: nn.Module, args: tuple[Any, ...]) -> None:
            raise ValueError("block expects normalized input")

        self.block.register_forward_pre_hook(reject)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.stem(x))  # type: ignore[no-any-return]


def test_a_failure_before_a_module_starts_names_that_module() -> None:
    with pytest.raises(ProfileError) as info:
        profile(on_meta(Checked), parse_input_shape([2, 4]))
    assert str(info.value) == (
        "forward pass with input 2×4 failed in block (Sequential), given input 2×4: "
        "ValueError: block expects normalized input"
    )


class Recovers(nn.Module):
    """A model that catches its first submodule's error, then fails in its own code."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(3, 4)
        self.second = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with contextlib.suppress(RuntimeError):
            x = self.first(x)
        return self.second(x.reshape(-1, 5))  # type: ignore[no-any-return]


def test_a_caught_submodule_error_is_not_blamed_for_the_next_one() -> None:
    with pytest.raises(ProfileError) as info:
        profile(on_meta(Recovers), parse_input_shape([2, 4]))
    assert str(info.value).startswith(
        "forward pass with input 2×4 failed in (root) (Recovers), given input 2×4: RuntimeError"
    )
