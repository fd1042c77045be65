"""Textbook parameter formulas, computed from each layer's hyperparameters.

The formulas deliberately never look at tensor shapes: their value is compared with `numel()`, and
that comparison is only worth something if the two are derived independently. A layer type without
a rule here falls back to its parameters' shapes (see `shape_formula`), so nothing counts as zero.

Classes torch does not define get a rule by duck typing where what they keep says what they are:
a module with a `normalized_shape` (timm's `RmsNorm`, `SimpleNorm`), a convolution with a
per-channel `gain` (timm's `ScaledStdConv2d`), a `*RMSNorm` class with one 1-D `weight`
(transformers' `LlamaRMSNorm` and its kin), a `*LayerScale*` class with one `gamma`. A duck rule
is a guess from a class's look, so it is used only where its value equals `numel()`; otherwise the
shape formula stands, with no warning. Some of those classes keep no size at all (LlamaRMSNorm's
`hidden_size` goes straight into `torch.ones`): their rule reads the one size from the parameter
and says so, `4096 (weight's shape)`, so that no text claims an independence it does not have.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from math import prod

import torch
from torch import nn


@dataclass(frozen=True)
class Formula:
    """A human-readable formula, its value, and the parameter names it accounts for."""

    text: str
    value: int
    names: frozenset[str]


Rule = Callable[[nn.Module], Formula]

# Keyed by class; looked up along the MRO so subclasses such as NonDynamicallyQuantizableLinear,
# SyncBatchNorm or materialized Lazy* modules find their parent's rule.
_RULES: dict[type[nn.Module], Rule] = {}


def _rule(*classes: type[nn.Module]) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for cls in classes:
            _RULES[cls] = fn
        return fn

    return register


def _x(*factors: object) -> str:
    return "×".join(str(f) for f in factors)


def _size(shape: Iterable[int]) -> tuple[str, int]:
    """A normalized shape as text (parenthesized when it has several dimensions) and its size."""
    dims = tuple(int(d) for d in shape)
    text = str(dims[0]) if len(dims) == 1 else f"({_x(*dims)})"
    return text, prod(dims)


@_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv(m: nn.Module) -> Formula:
    assert isinstance(m, nn.modules.conv._ConvNd)
    k = tuple(int(d) for d in m.kernel_size)
    c_in, c_out, g = m.in_channels, m.out_channels, m.groups
    if m.transposed:
        # Transposed convs store weight as C_in × C_out/G × k: each input channel fans out.
        text, value = _x(*k, f"{c_out}/{g}", c_in), prod(k) * (c_out // g) * c_in
    else:
        text, value = _x(*k, f"{c_in}/{g}", c_out), prod(k) * (c_in // g) * c_out
    names = {"weight"}
    if m.bias is not None:
        text, value = f"{text} + {c_out}", value + c_out
        names.add("bias")
    return Formula(text, value, frozenset(names))


@_rule(nn.Linear)
def _linear(m: nn.Module) -> Formula:
    assert isinstance(m, nn.Linear)
    n_in, n_out = m.in_features, m.out_features
    if m.bias is None:
        return Formula(_x(n_in, n_out), n_in * n_out, frozenset({"weight"}))
    return Formula(
        f"{_x(n_in, n_out)} + {n_out}", n_in * n_out + n_out, frozenset({"weight", "bias"})
    )


@_rule(nn.Bilinear)
def _bilinear(m: nn.Module) -> Formula:
    assert isinstance(m, nn.Bilinear)
    a, b, out = m.in1_features, m.in2_features, m.out_features
    if m.bias is None:
        return Formula(_x(a, b, out), a * b * out, frozenset({"weight"}))
    return Formula(f"{_x(a, b, out)} + {out}", a * b * out + out, frozenset({"weight", "bias"}))


def _affine(m: nn.Module, channels: int) -> Formula:
    # γ and β: one scale and one shift per channel; with bias=False, the scale alone. Running
    # statistics are buffers, not counted.
    if getattr(m, "bias", None) is None:
        return Formula(str(channels), channels, frozenset({"weight"}))
    return Formula(_x(2, channels), 2 * channels, frozenset({"weight", "bias"}))


@_rule(nn.modules.batchnorm._NormBase)
def _batch_or_instance_norm(m: nn.Module) -> Formula:
    assert isinstance(m, nn.modules.batchnorm._NormBase)
    return _affine(m, m.num_features)


@_rule(nn.GroupNorm)
def _group_norm(m: nn.Module) -> Formula:
    assert isinstance(m, nn.GroupNorm)
    return _affine(m, m.num_channels)


@_rule(nn.LayerNorm)
def _layer_norm(m: nn.Module) -> Formula:
    assert isinstance(m, nn.LayerNorm)
    text, n = _size(m.normalized_shape)
    # LayerNorm(bias=False) exists since torch 2.1: a scale without a shift.
    if getattr(m, "bias", None) is None:
        return Formula(text, n, frozenset({"weight"}))
    return Formula(_x(2, text), 2 * n, frozenset({"weight", "bias"}))


_RMSNorm: type[nn.Module] | None = getattr(nn, "RMSNorm", None)  # torch >= 2.4
if _RMSNorm is not None:

    @_rule(_RMSNorm)
    def _rms_norm(m: nn.Module) -> Formula:
        shape: Sequence[int] = m.normalized_shape  # type: ignore[assignment]
        text, n = _size(shape)
        return Formula(text, n, frozenset({"weight"}))


@_rule(nn.Embedding, nn.EmbeddingBag)
def _embedding(m: nn.Module) -> Formula:
    assert isinstance(m, nn.Embedding | nn.EmbeddingBag)
    return Formula(
        _x(m.num_embeddings, m.embedding_dim),
        m.num_embeddings * m.embedding_dim,
        frozenset({"weight"}),
    )


@_rule(nn.PReLU)
def _prelu(m: nn.Module) -> Formula:
    assert isinstance(m, nn.PReLU)
    return Formula(str(m.num_parameters), m.num_parameters, frozenset({"weight"}))


@_rule(nn.MultiheadAttention)
def _multihead_attention(m: nn.Module) -> Formula:
    # Only the projections MHA owns directly; out_proj is a Linear child with its own row.
    assert isinstance(m, nn.MultiheadAttention)
    e, kdim, vdim = m.embed_dim, m.kdim, m.vdim
    if m._qkv_same_embed_dim:
        terms, value, names = [_x(3, e, e)], 3 * e * e, {"in_proj_weight"}
    else:
        terms = [_x(e, e), _x(e, kdim), _x(e, vdim)]
        value = e * e + e * kdim + e * vdim
        names = {"q_proj_weight", "k_proj_weight", "v_proj_weight"}
    if m.in_proj_bias is not None:
        terms.append(_x(3, e))
        value += 3 * e
        names.add("in_proj_bias")
    if m.bias_k is not None:
        terms.append(_x(2, e))
        value += 2 * e
        names |= {"bias_k", "bias_v"}
    return Formula(" + ".join(terms), value, frozenset(names))


_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _gated(gates: int, hidden: int) -> str:
    return _x(gates, hidden) if gates > 1 else str(hidden)


@_rule(nn.RNNBase)
def _rnn(m: nn.Module) -> Formula:
    assert isinstance(m, nn.RNNBase)
    g, h, p = _GATES[m.mode], m.hidden_size, m.proj_size
    h_out = p or h  # with proj_size, the recurrent state fed back (and up) has width P
    dirs = 2 if m.bidirectional else 1

    def layer(n_in: int) -> tuple[str, int]:
        text = f"{_gated(g, h)}×({n_in} + {h_out})"
        value = g * h * (n_in + h_out)
        if m.bias:
            text, value = f"{text} + {_x(2, _gated(g, h))}", value + 2 * g * h
        if p:
            text, value = f"{text} + {_x(p, h)}", value + p * h
        return text, value

    first_text, first = layer(m.input_size)
    text, value = first_text, first
    if m.num_layers > 1:
        # Layers above the first read the previous layer's output, both directions concatenated.
        upper_text, upper = layer(dirs * h_out)
        reps = m.num_layers - 1
        times = f"{reps}×" if reps > 1 else ""
        text = f"({first_text}) + {times}({upper_text})"
        value = first + reps * upper
    if dirs == 2:
        text, value = f"2×[{text}]", 2 * value

    names: set[str] = set()
    for layer_idx in range(m.num_layers):
        for suffix in ("", "_reverse")[:dirs]:
            kinds = ["weight_ih", "weight_hh"]
            kinds += ["bias_ih", "bias_hh"] if m.bias else []
            kinds += ["weight_hr"] if p else []
            names |= {f"{kind}_l{layer_idx}{suffix}" for kind in kinds}
    return Formula(text, value, frozenset(names))


@_rule(nn.RNNCell, nn.LSTMCell, nn.GRUCell)
def _rnn_cell(m: nn.Module) -> Formula:
    assert isinstance(m, nn.RNNCellBase)
    g = 1
    for cls, gates in ((nn.LSTMCell, 4), (nn.GRUCell, 3)):
        if isinstance(m, cls):
            g = gates
    h, n_in = m.hidden_size, m.input_size
    text, value = f"{_gated(g, h)}×({n_in} + {h})", g * h * (n_in + h)
    names = {"weight_ih", "weight_hh"}
    if m.bias:
        text, value = f"{text} + {_x(2, _gated(g, h))}", value + 2 * g * h
        names |= {"bias_ih", "bias_hh"}
    return Formula(text, value, frozenset(names))


# -- duck-typed rules, for classes torch does not define ----------------------------------------


def _own(m: nn.Module) -> dict[str, torch.Tensor]:
    return dict(m.named_parameters(recurse=False))


def _width(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _normalized(m: nn.Module) -> tuple[int, ...] | None:
    shape = getattr(m, "normalized_shape", None)
    width = _width(shape)
    if width is not None:
        return (width,)
    if isinstance(shape, tuple | list | torch.Size) and shape and all(_width(d) for d in shape):
        return tuple(int(d) for d in shape)
    return None


def _looks_normalized(m: nn.Module) -> bool:
    return _normalized(m) is not None and "weight" in _own(m)


def _normalized_rule(m: nn.Module) -> Formula:
    # A norm that keeps its normalized_shape as LayerNorm does (timm's RmsNorm, RmsNorm2d,
    # SimpleNorm): a scale per normalized element, and a shift if it has a bias.
    shape = _normalized(m)
    assert shape is not None
    text, n = _size(shape)
    if "bias" not in _own(m):
        return Formula(text, n, frozenset({"weight"}))
    return Formula(_x(2, text), 2 * n, frozenset({"weight", "bias"}))


def _looks_gained_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.conv._ConvNd) and "gain" in _own(m)


def _gained_conv_rule(m: nn.Module) -> Formula:
    # Scaled weight standardization (timm's ScaledStdConv2d, NFNets): a learned gain per output
    # channel on top of the convolution.
    assert isinstance(m, nn.modules.conv._ConvNd)
    conv = _conv(m)
    c_out = m.out_channels
    return Formula(f"{conv.text} + {c_out} (gain)", conv.value + c_out, conv.names | {"gain"})


# How the classes of transformers (LlamaRMSNorm, Qwen2RMSNorm, MambaRMSNormGated, …) and timm
# (RmsNorm2dFp32) spell it.
_RMS_NAME = re.compile(r"rms_?norm", re.IGNORECASE)
# Attributes in which a class may keep the width of its scale.
_WIDTH_ATTRIBUTES = ("hidden_size", "dim", "d_model", "num_features", "embed_dim", "hidden_dim")


def _scale(m: nn.Module, name: str) -> torch.Tensor | None:
    """The module's one parameter, if it is `name` and a per-channel vector (C, or C×1×…×1)."""
    own = _own(m)
    t = own.get(name)
    if len(own) != 1 or t is None or t.dim() == 0 or any(int(d) != 1 for d in t.shape[1:]):
        return None
    return t


def _looks_rms(m: nn.Module) -> bool:
    scale = _scale(m, "weight")
    return bool(_RMS_NAME.search(type(m).__name__)) and scale is not None and scale.dim() == 1


def _scale_rule(name: str) -> Rule:
    def rule(m: nn.Module) -> Formula:
        names = frozenset({name})
        for attribute in _WIDTH_ATTRIBUTES:
            width = _width(getattr(m, attribute, None))
            if width is not None:
                return Formula(str(width), width, names)
        # The class keeps no size: read it from the parameter, and say so.
        t = _scale(m, name)
        assert t is not None
        width = int(t.shape[0])
        return Formula(f"{width} ({name}'s shape)", width, names)

    return rule


def _looks_layer_scale(m: nn.Module) -> bool:
    return "LayerScale" in type(m).__name__ and _scale(m, "gamma") is not None


# Tried in order where no class rule fits; each is (does it look like one, its rule).
_DUCKS: tuple[tuple[Callable[[nn.Module], bool], Rule], ...] = (
    (_looks_normalized, _normalized_rule),
    (_looks_gained_conv, _gained_conv_rule),
    (_looks_rms, _scale_rule("weight")),
    (_looks_layer_scale, _scale_rule("gamma")),
)


def _class_rule(module: nn.Module) -> Rule | None:
    for cls in type(module).__mro__:
        rule = _RULES.get(cls)
        if rule is not None:
            return rule
    return None


def _duck(
    module: nn.Module, counted: Sequence[tuple[str, torch.Tensor]]
) -> tuple[Rule, Formula] | None:
    """The first duck rule that `module` looks like, accounting for exactly `counted` and
    agreeing with their numel(), and its formula."""
    names = frozenset(name for name, _ in counted)
    numel = sum(prod(int(d) for d in p.shape) for _, p in counted)
    for looks, rule in _DUCKS:
        if looks(module):
            formula = rule(module)
            if formula.names == names and formula.value == numel:
                return rule, formula
    return None


def rule_for(module: nn.Module) -> Rule | None:
    """The rule for `module`'s own parameters: the textbook rule of its class or its nearest
    ancestor, or, where that does not account for them, a duck-typed rule that fits."""
    rule = _class_rule(module)
    own = tuple(module.named_parameters(recurse=False))
    if rule is not None and rule(module).names == frozenset(name for name, _ in own):
        return rule
    duck = _duck(module, own)
    return duck[0] if duck is not None else rule


def shape_formula(named: Sequence[tuple[str, torch.Tensor]]) -> Formula:
    """Formula from the parameters' own shapes: `cls_token 1×1×768 + pos_embed 1×197×768`."""
    terms = [f"{name} {_x(*p.shape) if p.dim() else 1}" for name, p in named]
    value = sum(prod(int(d) for d in p.shape) for _, p in named)
    return Formula(" + ".join(terms), value, frozenset(name for name, _ in named))


def formula_for(module: nn.Module, counted: Sequence[tuple[str, torch.Tensor]]) -> Formula:
    """The textbook formula when it accounts for exactly the counted parameters, else a
    duck-typed one that does and agrees with their numel(), else shapes.

    The name check sends tied weights, weight-norm parametrizations (which replace `weight` with
    `weight_g`/`weight_v` or move it into `parametrizations.weight`) and subclasses that add
    parameters of their own to the shape formula instead of a textbook one that would not apply.
    """
    rule = _class_rule(module)
    if rule is not None:
        formula = rule(module)
        if formula.names == frozenset(name for name, _ in counted):
            return formula
    duck = _duck(module, counted)
    return duck[1] if duck is not None else shape_formula(counted)
