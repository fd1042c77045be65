"""One forward pass on meta tensors: every module's output shape and multiply-adds. Pure.

The pass runs on the meta device, so it computes nothing and allocates nothing: a 7B model
profiles in about the time its constructor takes. Multiply-adds come from torch's own
`FlopCounterMode`, which counts a matrix product of (m×k)·(k×n) as 2·m·k·n FLOPs, so
MACs = FLOPs // 2 (the convention behind torchvision's published "GFLOPS", which count MACs).
Only matrix products, convolutions and attention are counted; elementwise operations,
normalization, activations and pooling count as zero, as in the published figures.

Counts are attributed to modules by this module's own hooks, not by the names FlopCounterMode
keys its table with: those are class-name paths (`ResNet.layer1.0.conv1`) assigned by
traversal order, so a module shared by two parents, or one called without being registered,
ends up under a name that `named_modules()` never yields.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import CnnBudgetError

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from .counting import ModelLike

Shape = tuple[int, ...]

ROOT_NAME = "(root)"  # the same name counting.py gives the model itself


class ProfileError(CnnBudgetError):
    """The forward pass on meta tensors failed; the message names the layer and its input."""


class ShapeMismatchError(ProfileError):
    """A layer received a tensor of a size it was not built for (the classic wrong FC width)."""


# -- input shapes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """The shapes of a model's inputs: positional (`args`), keyword (`kwargs`), or both."""

    args: tuple[Shape, ...] = ()
    kwargs: tuple[tuple[str, Shape], ...] = ()

    @property
    def shapes(self) -> tuple[Shape, ...]:
        """Every input shape, positional ones first."""
        return (*self.args, *(shape for _, shape in self.kwargs))

    def describe(self) -> str:
        """`1×3×32×32`; `1×3×32×32, 1×10`; `x=1×3×32×32, mask=1×32`."""
        parts = [format_shape(s) for s in self.args]
        parts += [f"{name}={format_shape(s)}" for name, s in self.kwargs]
        return ", ".join(parts)

    def to_value(self) -> list[int] | list[list[int]] | dict[str, list[int]]:
        """The config form that `parse_input_shape` reads back (for JSON and snapshots)."""
        if self.kwargs and not self.args:
            return {name: list(s) for name, s in self.kwargs}
        if self.kwargs:
            raise ValueError("positional and keyword inputs together have no config form")
        if len(self.args) == 1:
            return list(self.args[0])
        return [list(s) for s in self.args]


_SHAPE_EXAMPLE = (
    "a shape like [1, 3, 32, 32], a list of shapes (one per positional input) "
    "or a table of named shapes (keyword inputs)"
)


def parse_input_shape(value: object) -> InputSpec:
    """A config or command-line value (list, list of lists, table, or `"1,3,32,32"`) → InputSpec."""
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"the table of inputs is empty; expected {_SHAPE_EXAMPLE}")
        named = []
        for name, shape in value.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"input name {name!r} is not a valid keyword argument name")
            named.append((name, _shape(shape, f"input {name!r}: ")))
        return InputSpec(kwargs=tuple(named))
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(f"the shape is empty; expected {_SHAPE_EXAMPLE}")
        if all(isinstance(v, list | tuple) for v in value):
            return InputSpec(args=tuple(_shape(v, f"input {i}: ") for i, v in enumerate(value)))
        if any(isinstance(v, list | tuple) for v in value):
            raise ValueError(f"{value!r} mixes numbers and lists; expected {_SHAPE_EXAMPLE}")
        return InputSpec(args=(_shape(value, ""),))
    raise ValueError(f"expected {_SHAPE_EXAMPLE}, got {type(value).__name__} {value!r}")


def _shape(value: object, where: str) -> Shape:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{where}expected a non-empty list of dimensions, got {value!r}")
    for i, dim in enumerate(value):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(
                f"{where}dimension {i} of {list(value)!r} is {dim!r}; "
                "dimensions must be positive integers"
            )
    return tuple(value)


_DIMS = re.compile(r"^\d+(?:\s*[,x×]\s*\d+)*$")


def _parse_text(text: str) -> InputSpec:
    """`"1,3,32,32"`, `"1x3x32x32"`, several joined by `;`, optionally `name=`; or JSON."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            return parse_input_shape(json.loads(stripped))
        except json.JSONDecodeError as e:
            raise ValueError(f"{text!r} is not valid JSON: {e}") from e
    args: list[Shape] = []
    kwargs: list[tuple[str, Shape]] = []
    for part in stripped.split(";"):
        name, sep, dims = part.strip().rpartition("=")
        dims = dims.strip()
        if not _DIMS.match(dims):
            raise ValueError(
                f"cannot read {text!r} as shapes; write them like 1,3,32,32 or 1x3x32x32, "
                "several separated by ';', keyword inputs as name=1,32"
            )
        shape = _shape([int(d) for d in re.split(r"\s*[,x×]\s*", dims)], "")
        if sep:
            name = name.strip()
            if not name.isidentifier():
                raise ValueError(f"input name {name!r} is not a valid keyword argument name")
            kwargs.append((name, shape))
        elif kwargs:
            raise ValueError(f"in {text!r}, a positional shape follows a named one")
        else:
            args.append(shape)
    return InputSpec(tuple(args), tuple(kwargs))


def format_shape(shape: Sequence[int]) -> str:
    """`(1, 3, 32, 32)` → `1×3×32×32`."""
    return "×".join(str(d) for d in shape) if shape else "scalar"


# -- the profile -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleProfile:
    """What one module did in the forward pass.

    `output_shape` is the shape of the first call's output. For tuple, list or dict outputs
    (an LSTM's `(output, (h, c))`, attention's `(output, weights)`) it is the first tensor
    found depth-first, which by PyTorch convention is the main output. `macs` and `flops`
    include the module's submodules, over every call; `self_macs` and `self_flops` only count
    the operations its own `forward` runs outside any submodule, so they add up to the total.
    """

    name: str
    type: str
    calls: int
    output_shape: Shape | None
    macs: int
    flops: int
    self_macs: int
    self_flops: int


@dataclass(frozen=True)
class Profile:
    """Output shapes and multiply-adds of every module, in `named_modules()` order."""

    inputs: InputSpec
    output_shape: Shape | None
    macs: int
    flops: int
    modules: tuple[ModuleProfile, ...]  # modules that never ran are listed with calls == 0

    def module(self, name: str) -> ModuleProfile:
        """The entry of the module with this qualified name (`"(root)"` for the model)."""
        for entry in self.modules:
            if entry.name == name:
                return entry
        raise KeyError(name)


@dataclass
class _Frame:
    """A module call that has started and not yet returned."""

    name: str
    module: nn.Module
    inputs: tuple[Any, ...]
    flops_at_entry: int
    child_flops: int = 0


@dataclass(frozen=True)
class _Call:
    """A module call that returned: the trail a shape error is explained from."""

    name: str
    module: nn.Module
    input_shape: Shape | None
    output_shape: Shape | None


@dataclass
class _Tally:
    calls: int = 0
    output_shape: Shape | None = None
    flops: int = 0
    self_flops: int = 0


@dataclass
class _Recorder:
    names: dict[int, str]
    tallies: dict[str, _Tally] = field(default_factory=dict)
    stack: list[_Frame] = field(default_factory=list)
    trail: list[_Call] = field(default_factory=list)


def profile(model: ModelLike, inputs: InputSpec) -> Profile:
    """Run `model` once on meta tensors of the given shapes; record output shapes and MACs.

    The model should be built on meta (`build_model` does that). A model on another device is
    run with meta stand-ins for its parameters and buffers, so it is neither changed nor
    copied. Lazy modules (`LazyLinear`, `LazyConv2d`, …) are materialized by this pass, on
    meta, after which `count_parameters` can count them. Inputs are meta tensors of the
    model's floating dtype; an `Embedding` that receives one gets it as int64, since token ids
    are all an embedding takes. The pass runs in eval mode under `torch.no_grad()`; every
    module's training flag is restored afterwards.
    """
    import torch
    from torch.nn.parameter import is_lazy

    with warnings.catch_warnings():
        # torch warns once, on first import of its tensor subclasses, when NumPy is absent;
        # counting never needs NumPy, and projects running with -W error must not fail on it.
        warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
        from torch.utils.flop_counter import FlopCounterMode

    from .counting import as_module

    module = as_module(model)
    tensors = [*module.parameters(), *module.buffers()]
    on_meta = all(t.device.type == "meta" for t in tensors)
    if not on_meta and any(is_lazy(t) for t in tensors):
        raise ProfileError(
            "lazy modules are materialized only on the meta device here; "
            "build the model with device='meta' to profile it"
        )
    dtype = next(
        (t.dtype for t in tensors if t.is_floating_point() and not is_lazy(t)),
        torch.get_default_dtype(),
    )
    args = tuple(torch.empty(s, device="meta", dtype=dtype) for s in inputs.args)
    kwargs = {n: torch.empty(s, device="meta", dtype=dtype) for n, s in inputs.kwargs}

    # named_modules() yields a shared module once, under the name counting gives its row.
    named = [(name or ROOT_NAME, m) for name, m in module.named_modules()]
    recorder = _Recorder(names={id(m): name for name, m in named})
    counter = FlopCounterMode(display=False)
    training = {m: m.training for m in module.modules()}
    handles = []
    for _, m in named:
        handles.append(m.register_forward_pre_hook(_pre_hook(recorder, counter), with_kwargs=True))
        handles.append(m.register_forward_hook(_post_hook(recorder, counter)))
    try:
        module.eval()
        # no_grad is safe for counting here: the fused attention kernels that FlopCounterMode
        # has no formula for are only dispatched for CPU/CUDA tensors, never for meta ones.
        with torch.no_grad(), counter:
            output = module(*args, **kwargs) if on_meta else _call_on_meta(module, args, kwargs)
    except Exception as e:
        raise _explain_failure(recorder, inputs, e) from e
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in training.items():
            m.training = flag

    modules = []
    for name, m in named:
        tally = recorder.tallies.get(name, _Tally())
        modules.append(
            ModuleProfile(
                name=name,
                type=type(m).__name__,  # after materialization: Linear, not LazyLinear
                calls=tally.calls,
                output_shape=tally.output_shape,
                macs=tally.flops // 2,
                flops=tally.flops,
                self_macs=tally.self_flops // 2,
                self_flops=tally.self_flops,
            )
        )
    flops = counter.get_total_flops()
    return Profile(
        inputs=inputs,
        output_shape=_first_shape(output),
        macs=flops // 2,
        flops=flops,
        modules=tuple(modules),
    )


def _call_on_meta(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call a model that lives on cpu/cuda with meta stand-ins for its tensors."""
    import torch
    from torch.func import functional_call

    stand_ins = {
        name: torch.empty_like(t, device="meta")
        for name, t in (*module.named_parameters(), *module.named_buffers())
    }
    return functional_call(module, stand_ins, args, kwargs)


def _pre_hook(recorder: _Recorder, counter: FlopCounterMode) -> Callable[..., Any]:
    from torch import nn

    def hook(
        module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        name = recorder.names[id(module)]
        changed = None
        if isinstance(module, nn.Embedding | nn.EmbeddingBag) and args:
            first = args[0]
            if getattr(first, "is_floating_point", lambda: False)():
                # The placeholder inputs are floating; token ids never are.
                args = (first.long(), *args[1:])
                changed = (args, kwargs)
        recorder.stack.append(
            _Frame(name, module, (*args, *kwargs.values()), counter.get_total_flops())
        )
        return changed

    return hook


def _post_hook(recorder: _Recorder, counter: FlopCounterMode) -> Callable[..., Any]:
    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        # A model that catches an exception from a submodule leaves that frame behind;
        # unwind to this module's own frame.
        while recorder.stack and recorder.stack[-1].module is not module:
            recorder.stack.pop()
        if not recorder.stack:
            return
        frame = recorder.stack.pop()
        flops = counter.get_total_flops() - frame.flops_at_entry
        if recorder.stack:
            recorder.stack[-1].child_flops += flops
        tally = recorder.tallies.setdefault(frame.name, _Tally())
        out_shape = _first_shape(output)
        if tally.calls == 0:
            tally.output_shape = out_shape
        tally.calls += 1
        tally.flops += flops
        tally.self_flops += flops - frame.child_flops
        recorder.trail.append(_Call(frame.name, module, _first_shape(frame.inputs), out_shape))

    return hook


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Tensors in `value`, depth-first through tuples, lists and dict values."""
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors(item)


def _first_shape(value: Any) -> Shape | None:
    first = next(_tensors(value), None)
    return None if first is None else tuple(int(d) for d in first.shape)


# -- explaining a failed pass ------------------------------------------------------------------


@dataclass(frozen=True)
class _Expectation:
    what: str  # "input features", "input channels", …
    expected: int
    received: int


def _expectation(module: nn.Module, inputs: tuple[Any, ...]) -> _Expectation | None:
    """What size `module` was built for and what it got, read from its hyperparameters."""
    from torch import nn

    shape = _first_shape(inputs)
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


def _explain_failure(recorder: _Recorder, inputs: InputSpec, error: Exception) -> ProfileError:
    """Name the innermost module whose forward raised, and why, as one error."""
    if isinstance(error, CnnBudgetError):
        return ProfileError(str(error))
    cause = f"{type(error).__name__}: {error}".strip()
    if not recorder.stack:
        return ProfileError(f"the forward pass on {inputs.describe()} failed: {cause}")
    frame = recorder.stack[-1]
    layer = f"{frame.name} ({type(frame.module).__name__})"
    shape = _first_shape(frame.inputs)
    seen = f"input {format_shape(shape)}" if shape is not None else "no tensor input"
    expectation = _expectation(frame.module, frame.inputs)
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
    return ShapeMismatchError(_mismatch_message(layer, frame, expectation, recorder, inputs))


def _mismatch_message(
    layer: str, frame: _Frame, exp: _Expectation, recorder: _Recorder, inputs: InputSpec
) -> str:
    source = _flattened_shape(recorder.trail, exp.received)
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
            chain, arithmetic = _spatial_chain(first[2:], recorder.trail)
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


def _flattened_shape(trail: Sequence[_Call], received: int) -> Shape | None:
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
    input_spatial: Sequence[int], trail: Sequence[_Call]
) -> tuple[list[str], list[str]]:
    """`the input is 64×64`, `conv1 (3×3, pad 1, stride 1) keeps 64`, … and the arithmetic."""
    from torch import nn

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
    from torch import nn

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
    from torch import nn

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
    from torch import nn

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
