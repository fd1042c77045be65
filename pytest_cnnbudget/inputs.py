"""Input shapes for a model's forward pass, as config and command line give them. Pure.

`input_shape = [1, 3, 32, 32]`, a list of shapes (one per positional input), a table of named
shapes (keyword inputs), or on the command line `1,3,32,32`, `1x3x32x32;1,10`, `x=1,3,32,32`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Shape = tuple[int, ...]


def format_shape(shape: Sequence[int]) -> str:
    """`(1, 3, 32, 32)` → `1×3×32×32`."""
    return "×".join(str(d) for d in shape) if shape else "scalar"


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
        """The config form that `parse_input_shape` reads back."""
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
