"""Why a forward pass failed, in the words of the layer that raised: which layer, what size it
was built for, what it received, and the H_out arithmetic that led there. Pure but for torch's
module classes, which it reads hyperparameters from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..constants import ROOT_NAME
from ..errors import CnnBudgetError, ProfileError, ShapeMismatchError, exception_text
from ..inputs import InputSpec, Shape, format_shape
from ..units import clip_lines


@dataclass(frozen=True)
class Call:
    """A module call: one that returned (the trail a shape error is explained from), or one
    still running when the error was raised (no output shape yet)."""

    name: str
    module: nn.Module
    input_shape: Shape | None  # of the first tensor among its arguments
    output_shape: Shape | None


@dataclass(frozen=True)
class _Expectation:
    what: str  # "input features", "input channels", …
    expected: int
    received: int


def _expectation(module: nn.Module, shape: Shape | None) -> _Expectation | None:
    """What size `module` was built for and what it got, read from its hyperparameters."""
    if not shape:
        return None
    last = shape[-1]
    if isinstance(module, nn.Linear):
        return _Expectation("input features", module.in_features, last)
    if isinstance(module, nn.Bilinear):
        return _Expectation("input features (first input)", module.in1_features, last)
    if isinstance(module, nn.modules.conv._ConvNd):
        spatial = len(module.kernel_size)
        channel_dim = 1 if len(shape) == spatial + 2 else 0
        return _Expectation("input channels", module.in_channels, shape[channel_dim])
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return _Expectation("channels", module.num_features, shape[1 if len(shape) > 1 else 0])
    if isinstance(module, nn.GroupNorm):
        return _Expectation("channels", module.num_channels, shape[1 if len(shape) > 1 else 0])
    if isinstance(module, nn.LayerNorm | nn.RMSNorm):
        normalized = tuple(module.normalized_shape)
        received = shape[-len(normalized) :]
        return _Expectation("trailing features", math.prod(normalized), math.prod(received))
    if isinstance(module, nn.MultiheadAttention):
        return _Expectation("embedding features", module.embed_dim, last)
    if isinstance(module, nn.RNNBase):
        return _Expectation("input features", module.input_size, last)
    return None


def explain_failure(
    stack: Sequence[Call], trail: Sequence[Call], inputs: InputSpec, error: Exception
) -> ProfileError:
    """Name the innermost module whose forward raised, and why, as one error.

    `stack` holds the calls still running when `error` was raised, outermost first; `trail`
    every call that returned before, in order.
    """
    if isinstance(error, CnnBudgetError):
        return ProfileError(str(error))
    cause = clip_lines(exception_text(error))
    if not stack:
        return ProfileError(f"the forward pass on {inputs.describe()} failed: {cause}")
    frame = stack[-1]
    layer = f"{frame.name} ({type(frame.module).__name__})"
    shape = frame.input_shape
    seen = f"input {format_shape(shape)}" if shape is not None else "no tensor input"
    expectation = _expectation(frame.module, frame.input_shape)
    if expectation is None or expectation.expected == expectation.received:
        hint = ""
        if "meta" in str(error):
            hint = (
                "\n(the pass runs on meta tensors, which have shapes but no values: code that "
                "reads values back, such as .item() or .tolist(), cannot run in it)"
            )
        return ProfileError(
            f"forward pass with input {inputs.describe()} failed in {layer}, given {seen}: "
            f"{cause}{hint}"
        )
    return ShapeMismatchError(_mismatch_message(layer, frame, expectation, trail, inputs))


def _mismatch_message(
    layer: str, frame: Call, exp: _Expectation, trail: Sequence[Call], inputs: InputSpec
) -> str:
    source = _flattened_shape(trail, exp.received)
    expected_text = ""
    received_text = f"{exp.received}"
    chain: list[str] = []
    arithmetic: list[str] = []
    if source is not None:
        channels, spatial = source[1], source[2:]
        received_text += " = " + "·".join(str(d) for d in (channels, *spatial))
        scaled = _scaled(exp.expected, channels, spatial)
        if scaled is not None:
            expected_text += " = " + "·".join(str(d) for d in (channels, *scaled))
        first = inputs.shapes[0] if inputs.shapes else ()
        if len(first) == len(spatial) + 2:
            chain, arithmetic = _spatial_chain(first[2:], trail)
    message = (
        f"{layer} expects {exp.expected} {exp.what}{expected_text} but receives {received_text}"
    )
    if chain:
        message += ": " + chain[0] + (", and " + ", ".join(chain[1:]) if chain[1:] else "")
    lines = [message]
    if arithmetic:
        lines.append("  H_out = ⌊(H_in + 2p − d(k−1) − 1)/s⌋ + 1:")
        lines += [f"    {line}" for line in arithmetic]
    if exp.what == "input features" and frame.name != ROOT_NAME:
        lines.append(
            f"For input {inputs.describe()}, {frame.name} would need in_features={exp.received}; "
            "or give the input shape the model was designed for."
        )
    return "\n".join(lines)


def _flattened_shape(trail: Sequence[Call], received: int) -> Shape | None:
    """The last output with channels and spatial dims whose C·H·W is the received size."""
    for call in reversed(trail):
        shape = call.output_shape
        if shape is not None and len(shape) >= 3 and math.prod(shape[1:]) == received:
            return shape
    return None


def _scaled(expected: int, channels: int, spatial: Sequence[int]) -> tuple[int, ...] | None:
    """The spatial size, with the same channels, that gives `expected`: the received aspect
    ratio if one fits, else square (what most layers were sized for)."""
    if channels == 0 or expected % channels:
        return None
    area = expected // channels
    if len(spatial) == 1:
        return (area,)
    if len(spatial) == 2:
        h, w = spatial
        side = math.isqrt(area * h // w) if area * h % w == 0 else 0
        if side and area % side == 0 and side * w == (area // side) * h:
            return (side, area // side)
    side = round(area ** (1 / len(spatial)))
    return (side,) * len(spatial) if side ** len(spatial) == area else None


_MAX_STEPS = 8


def _spatial_chain(
    input_spatial: Sequence[int], trail: Sequence[Call]
) -> tuple[list[str], list[str]]:
    """`the input is 64×64`, `conv1 (3×3, pad 1, stride 1) keeps 64`, … and the arithmetic."""
    spatial_types = (
        nn.modules.conv._ConvNd,
        nn.modules.pooling._MaxPoolNd,
        nn.modules.pooling._AvgPoolNd,
        nn.modules.pooling._AdaptiveAvgPoolNd,
        nn.modules.pooling._AdaptiveMaxPoolNd,
    )
    rank = len(input_spatial) + 2
    steps = [
        (c.name, c.module, c.input_shape[2:], c.output_shape[2:])
        for c in trail
        if isinstance(c.module, spatial_types)
        and c.input_shape is not None
        and c.output_shape is not None
        and len(c.input_shape) == len(c.output_shape) == rank
    ]
    omitted = 0
    if len(steps) > _MAX_STEPS:
        # Long chains (a ResNet) read best as the steps that change the size.
        changing = [step for step in steps if step[2] != step[3]]
        omitted = len(steps) - len(changing)
        steps = changing
    chain = [f"the input is {'×'.join(str(d) for d in input_spatial)}"]
    arithmetic = []
    previous = tuple(input_spatial)
    described: dict[type, str] = {}
    for name, module, before, after in steps:
        params = _hyperparameters(module)
        if params and described.get(type(module)) != params:
            described[type(module)] = params
            label = f"{name} ({params})"
        else:
            label = name
        if before != previous:
            chain.append(f"{label} turns {_size(before)} into {_size(after)}")
        elif before == after:
            chain.append(f"{label} keeps {_size(after)}")
        else:
            chain.append(f"{label} gives {_size(after)}")
        previous = after
        line = _arithmetic(module, before, after)
        if line:
            arithmetic.append(f"{name}: {line}")
    if omitted:
        chain.append(f"{omitted} more layers keep their size")
    return chain, arithmetic


def _size(spatial: Sequence[int]) -> str:
    return str(spatial[0]) if len(set(spatial)) == 1 else "×".join(str(d) for d in spatial)


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, tuple | list) else (int(value),) * n


def _window(
    module: nn.Module,
) -> tuple[int, tuple[int, ...], Any, tuple[int, ...], tuple[int, ...]] | None:
    """(dims, kernel, padding, stride, dilation) of a conv or fixed-window pool."""
    if isinstance(module, nn.modules.conv._ConvNd):
        n = len(module.kernel_size)
        padding = module.padding if isinstance(module.padding, str) else _tuple(module.padding, n)
        return n, tuple(module.kernel_size), padding, tuple(module.stride), tuple(module.dilation)
    if isinstance(module, nn.modules.pooling._MaxPoolNd | nn.modules.pooling._AvgPoolNd):
        n = int(type(module).__name__[-2]) if type(module).__name__[-2].isdigit() else 2
        kernel = _tuple(module.kernel_size, n)
        stride = _tuple(module.stride if module.stride is not None else kernel, n)
        dilation = _tuple(getattr(module, "dilation", 1), n)
        return n, kernel, _tuple(module.padding, n), stride, dilation
    return None


def _hyperparameters(module: nn.Module) -> str:
    """`3×3, pad 1, stride 1`; `2×2, stride 2`; `adaptive to 7×7`."""
    if isinstance(
        module, nn.modules.pooling._AdaptiveAvgPoolNd | nn.modules.pooling._AdaptiveMaxPoolNd
    ):
        size = module.output_size
        return f"adaptive to {_size(_tuple(size, 1)) if size is not None else 'input'}"
    window = _window(module)
    if window is None:
        return ""
    _, kernel, padding, stride, dilation = window
    parts = ["×".join(str(k) for k in kernel)]
    if isinstance(padding, str):
        parts.append(f"pad {padding}")
    elif any(padding):
        parts.append(f"pad {_size(padding)}")
    parts.append(f"stride {_size(stride)}")
    if any(d != 1 for d in dilation):
        parts.append(f"dilation {_size(dilation)}")
    return ", ".join(parts)


def _arithmetic(module: nn.Module, before: Sequence[int], after: Sequence[int]) -> str:
    """`⌊(64 + 2·1 − 1·(3−1) − 1)/1⌋ + 1 = 64`, once per distinct spatial dimension."""
    window = _window(module)
    if window is None or isinstance(window[2], str):
        return ""
    _, kernel, padding, stride, dilation = window
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    ceil = bool(getattr(module, "ceil_mode", False))
    terms = []
    for i, (h_in, h_out) in enumerate(zip(before, after, strict=False)):
        k, p, s, d = kernel[i], padding[i], stride[i], dilation[i]
        if transposed:
            out_pad = _tuple(module.output_padding, len(kernel))[i]
            text = f"({h_in}−1)·{s} − 2·{p} + {d}·({k}−1) + {out_pad} + 1 = {h_out}"
        else:
            left, right = ("⌈", "⌉") if ceil else ("⌊", "⌋")
            text = f"{left}({h_in} + 2·{p} − {d}·({k}−1) − 1)/{s}{right} + 1 = {h_out}"
        terms.append(text)
    return "; ".join(dict.fromkeys(terms))
