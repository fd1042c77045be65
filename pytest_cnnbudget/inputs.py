"""Input shapes for a model's forward pass, as config and command line give them. Pure.

`input_shape = [1, 3, 32, 32]`, a list of shapes (one per positional input), a table of named
shapes (keyword inputs), or on the command line `1,3,32,32`, `1x3x32x32;1,10`, `x=1,3,32,32`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .constants import MAX_DIM, MAX_DIMS, MAX_ELEMENTS, MAX_INPUTS, MAX_SHAPE_TEXT
from .jsontext import DuplicateKeyError, loads
from .units import brief

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
    """A config or command-line value (list, list of lists, table, or `"1,3,32,32"`) → InputSpec.

    Every bound (see constants.py) is checked here, before any tensor is made: a shape that
    cannot fit in memory should be a message naming it, not an allocation failure on the device.
    """
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"the table of inputs is empty; expected {_SHAPE_EXAMPLE}")
        _check_count(len(value))
        named = []
        for name, shape in value.items():
            _check_name(name)
            named.append((name, _shape(shape, f"input {brief(name)}: ")))
        return InputSpec(kwargs=tuple(named))
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(f"the shape is empty; expected {_SHAPE_EXAMPLE}")
        if all(isinstance(v, list | tuple) for v in value):
            _check_count(len(value))
            return InputSpec(args=tuple(_shape(v, f"input {i}: ") for i, v in enumerate(value)))
        if any(isinstance(v, list | tuple) for v in value):
            raise ValueError(f"{brief(value)} mixes numbers and lists; expected {_SHAPE_EXAMPLE}")
        return InputSpec(args=(_shape(value, ""),))
    raise ValueError(f"expected {_SHAPE_EXAMPLE}, got {type(value).__name__} {brief(value)}")


def _check_count(inputs: int) -> None:
    if inputs > MAX_INPUTS:
        raise ValueError(f"{inputs:,} inputs; a forward pass takes at most {MAX_INPUTS}")


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"input name {brief(name)} is not a valid keyword argument name")


def _shape(value: object, where: str) -> Shape:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{where}expected a non-empty list of dimensions, got {brief(value)}")
    if len(value) > MAX_DIMS:
        raise ValueError(
            f"{where}{brief(list(value))} has {len(value):,} dimensions; at most {MAX_DIMS}"
        )
    for i, dim in enumerate(value):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(
                f"{where}dimension {i} of {brief(list(value))} is {brief(dim)}; "
                "dimensions must be positive integers"
            )
        if dim > MAX_DIM:
            raise ValueError(
                f"{where}dimension {i} of {brief(list(value))} is {brief(dim)}; "
                f"a dimension is at most {MAX_DIM:,} (2**31 - 1)"
            )
    elements = math.prod(value)
    if elements > MAX_ELEMENTS:
        raise ValueError(
            f"{where}{brief(list(value))} has about {float(elements):.3g} elements; an input "
            f"has at most {MAX_ELEMENTS:,} (2**40)"
        )
    return tuple(value)


_DIMS = re.compile(r"^\d+(?:\s*[,x×]\s*\d+)*$")
# More digits than any dimension within MAX_DIM could need, even zero-padded; int() refuses
# past 4,300 digits, so a longer one is reported before it is converted.
_MAX_DIM_DIGITS = 20


def _dimension(digits: str) -> int:
    if len(digits) > _MAX_DIM_DIGITS:
        raise ValueError(
            f"a dimension of {len(digits):,} digits ({brief(digits)}); a dimension is at most "
            f"{MAX_DIM:,} (2**31 - 1)"
        )
    return int(digits)


def _parse_text(text: str) -> InputSpec:
    """`"1,3,32,32"`, `"1x3x32x32"`, several joined by `;`, optionally `name=`; or JSON."""
    if len(text) > MAX_SHAPE_TEXT:
        raise ValueError(
            f"{brief(text)} is {len(text):,} characters long; an input shape written as text "
            f"is at most {MAX_SHAPE_TEXT:,}"
        )
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            # parse_int: the digit bound applies to JSON numbers too (a ValueError of its own).
            value = loads(stripped, parse_int=_dimension)
        except DuplicateKeyError as e:
            raise ValueError(f"{brief(text)}: {e}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{brief(text)} is not valid JSON: {e}") from e
        except RecursionError as e:
            raise ValueError(f"{brief(text)} is nested too deeply to be input shapes") from e
        return parse_input_shape(value)
    args: list[Shape] = []
    kwargs: list[tuple[str, Shape]] = []
    parts = stripped.split(";")
    _check_count(len(parts))
    for part in parts:
        name, sep, dims = part.strip().rpartition("=")
        dims = dims.strip()
        if not _DIMS.match(dims):
            raise ValueError(
                f"cannot read {brief(text)} as shapes; write them like 1,3,32,32 or 1x3x32x32, "
                "several separated by ';', keyword inputs as name=1,32"
            )
        shape = _shape([_dimension(d) for d in re.split(r"\s*[,x×]\s*", dims)], "")
        if sep:
            name = name.strip()
            _check_name(name)
            kwargs.append((name, shape))
        elif kwargs:
            raise ValueError(f"in {brief(text)}, a positional shape follows a named one")
        else:
            args.append(shape)
    return InputSpec(tuple(args), tuple(kwargs))
