"""Quantized layers → what they hold packed, and the float layer each one stands for.

A quantized Linear or Conv (`torch.ao.nn.quantized`, its `dynamic` and fused `intrinsic`
variants), a quantized Embedding or EmbeddingBag and a dynamic LSTM, GRU or RNN cell keep their
weights inside the opaque objects of `torch.ops.quantized` (`_packed_params`,
`_all_weight_values`), never as `nn.Parameter`s: `named_parameters()` yields nothing, so
counted like a float model a quantized one holds no parameters and passes any budget. This
module reads them back through the modules' own unpacking methods (`_weight_bias()`,
`weight()`) and describes each one by name, shape and storage dtype; the bytes follow that dtype
(qint8 and quint8: 1 an element, quint4x2: 2 elements a byte, a float16 dynamic Linear: 2,
biases stay float32). The per-channel scales and zero points that come with a quantized weight
are not counted, as a float layer's metadata is not.

Packing has no meta kernels, so these weights are always real tensors on cpu. Imports nothing
from the package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from math import prod
from typing import Any

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Packed:
    """One weight or bias a quantized module holds packed, named as its float layer names it."""

    name: str  # "weight", "bias", "weight_ih_l0", …
    shape: tuple[int, ...]
    dtype: str  # its storage dtype: "qint8", "quint8", "quint4x2", "float16", "float32"
    bytes: int

    @property
    def numel(self) -> int:
        """Its element count."""
        return prod(self.shape)

    def stand_in(self) -> Tensor:
        """A meta tensor of its shape, for the formula that falls back to shapes."""
        return torch.empty(self.shape, device="meta")


@dataclass(frozen=True)
class QuantizedLayer:
    """What a quantized module holds, and the float layer (on meta) it stands for: the one
    whose textbook formula describes it, and which its element counts equal."""

    packed: tuple[Packed, ...]
    dtype: str  # its weights' storage dtype, as its row is marked: "qint8"
    float_layer: nn.Module | None

    @property
    def numel(self) -> int:
        """Elements of its weights and biases."""
        return sum(p.numel for p in self.packed)


# Dtypes narrower than a byte, whose itemsize torch gives as 1.
_BITS = {torch.quint4x2: 4, torch.quint2x4: 2}


def _packed(name: str, tensor: Tensor, held: torch.dtype | None = None) -> Packed:
    # The dtype the layer declares wins over the unpacked tensor's: a float16 dynamic Linear
    # unpacks to float32, a 4-bit EmbeddingBag to quint8.
    dtype = held if held is not None else tensor.dtype
    numel = tensor.numel()
    return Packed(
        name=name,
        shape=tuple(int(d) for d in tensor.shape),
        dtype=str(dtype).removeprefix("torch."),
        bytes=(numel * _BITS.get(dtype, dtype.itemsize * 8) + 7) // 8,
    )


def _layer(
    named: Iterable[tuple[str, Tensor | None]],
    dtype: torch.dtype | None,
    float_layer: Callable[[frozenset[str]], nn.Module],
) -> QuantizedLayer:
    packed = tuple(
        _packed(name, t, dtype if name.startswith("weight") else None)
        for name, t in named
        if t is not None
    )
    weights = [p for p in packed if p.name.startswith("weight")] or list(packed)
    return QuantizedLayer(
        packed=packed,
        dtype=weights[0].dtype if weights else "",
        float_layer=float_layer(frozenset(p.name for p in packed)),
    )


# Typed Any: torch's quantized modules are untyped, their unpacking methods too.
Reader = Callable[[Any], QuantizedLayer]
# Keyed by class and looked up along the MRO, so dynamic and fused (ConvReLU2d, LinearReLU)
# subclasses find their parent's reader.
_READERS: dict[type, Reader] = {}


def _reader(*classes: type) -> Callable[[Reader], Reader]:
    def register(fn: Reader) -> Reader:
        for cls in classes:
            _READERS[cls] = fn
        return fn

    return register


try:
    import torch.ao.nn.quantized as nnq
    import torch.ao.nn.quantized.dynamic as nnqd
    from torch.ao.nn.quantized.dynamic.modules.rnn import RNNBase, RNNCellBase
    from torch.ao.nn.quantized.modules.conv import _ConvNd
except ImportError:  # a torch without eager-mode quantization: nothing is quantized
    pass
else:

    @_reader(nnq.Linear)
    def _linear(m: Any) -> QuantizedLayer:
        weight, bias = m._weight_bias()
        return _layer(
            (("weight", weight), ("bias", bias)),
            m._packed_params.dtype,
            lambda names: nn.Linear(
                m.in_features, m.out_features, bias="bias" in names, device="meta"
            ),
        )

    _CONVS = {
        (False, 1): nn.Conv1d,
        (False, 2): nn.Conv2d,
        (False, 3): nn.Conv3d,
        (True, 1): nn.ConvTranspose1d,
        (True, 2): nn.ConvTranspose2d,
        (True, 3): nn.ConvTranspose3d,
    }

    @_reader(_ConvNd)
    def _conv(m: Any) -> QuantizedLayer:
        weight, bias = m._weight_bias()
        kernel = tuple(int(k) for k in m.kernel_size)
        conv = _CONVS[bool(m.transposed), len(kernel)]
        return _layer(
            (("weight", weight), ("bias", bias)),
            None,
            lambda names: conv(
                m.in_channels,
                m.out_channels,
                kernel,
                groups=m.groups,
                bias="bias" in names,
                device="meta",
            ),
        )

    @_reader(nnq.Embedding, nnq.EmbeddingBag)
    def _embedding(m: Any) -> QuantizedLayer:
        n, dim = m.num_embeddings, m.embedding_dim
        table = nn.EmbeddingBag if isinstance(m, nnq.EmbeddingBag) else nn.Embedding
        return _layer(
            (("weight", m.weight()),),
            m._packed_params.dtype,
            # `_weight` skips the random fill, whose meta kernel would import torch._dynamo.
            lambda names: table(n, dim, _weight=torch.empty(n, dim, device="meta")),
        )

    def _split(weight_bias: dict[str, dict[str, Tensor]]) -> list[tuple[str, Tensor]]:
        return [*weight_bias["weight"].items(), *weight_bias.get("bias", {}).items()]

    @_reader(RNNBase)
    def _rnn(m: Any) -> QuantizedLayer:
        rnn = nn.LSTM if m.mode == "LSTM" else nn.GRU
        return _layer(
            _split(m._weight_bias()),
            m.dtype,
            lambda names: rnn(
                m.input_size,
                m.hidden_size,
                m.num_layers,
                bias=any(name.startswith("bias") for name in names),
                bidirectional=m.bidirectional,
                device="meta",
            ),
        )

    @_reader(RNNCellBase)
    def _rnn_cell(m: Any) -> QuantizedLayer:
        def cell(names: frozenset[str]) -> nn.Module:
            bias = "bias_ih" in names
            if isinstance(m, nnqd.LSTMCell):
                return nn.LSTMCell(m.input_size, m.hidden_size, bias, device="meta")
            if isinstance(m, nnqd.GRUCell):
                return nn.GRUCell(m.input_size, m.hidden_size, bias, device="meta")
            nonlinearity = getattr(m, "nonlinearity", None) or "tanh"
            return nn.RNNCell(m.input_size, m.hidden_size, bias, nonlinearity, device="meta")

        return _layer(_split(m._weight_bias()), m.weight_dtype, cell)


def _reader_for(module: nn.Module) -> Reader | None:
    for cls in type(module).__mro__:
        reader = _READERS.get(cls)
        if reader is not None:
            return reader
    return None


def quantized_layer(module: nn.Module) -> QuantizedLayer | None:
    """What `module` holds packed, or None for a module that is not a quantized layer (its
    packed-parameter children among them: the layer owns what they hold)."""
    reader = _reader_for(module)
    return reader(module) if reader is not None else None


def contains_quantized(model: object) -> bool:
    """Whether `model` is a module with at least one quantized layer."""
    return isinstance(model, nn.Module) and any(_reader_for(m) is not None for m in model.modules())
