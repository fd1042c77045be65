"""One value of a configuration: how each key is checked, and how a file's problems are collected
and worded.

A converter takes the value as TOML (or the command line) gave it and returns it checked, or
raises TypeError or ValueError with a message that reads after the key it concerns:
`depth: 65 is not from 1 to 64`.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..constants import (
    DEFAULT_SNAPSHOT,
    MAX_DEPTH,
    MAX_KWARGS_DEPTH,
    MAX_SNAPSHOT_PATH,
    MAX_TIMEOUT,
)
from ..errors import ConfigError
from ..names import printable
from ..units import SHOWN_LINES, brief, clip, listing
from .instantiate import target_problem

OPTIMIZERS = ("adamw", "adam", "sgd", "sgd_momentum", "none")
AUTOCAST = ("bf16", "fp16")  # the mixed precisions a memory trace takes, as `autocast` names them

# C0 and C1 controls (newline, carriage return, tab, NUL, escape, NEL) and the Unicode line and
# paragraph separators: what could break a name or a path across lines of a message, a table or
# a GitHub annotation, or hide in a terminal. Every other character, spaces and `/` included, is
# fine in a model name: the renderers quote and escape what they must.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _shown(text: str) -> str:
    """A key or name as a message shows it: as written when short and printable, else repr()."""
    return text if text.isprintable() and len(text) <= 60 else brief(text)


class Problems:
    """Collects every problem in one file so a user fixes them all in one go: the first
    SHOWN_LINES of them, each clipped, and how many more there are."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self.more = 0  # problems noted past the SHOWN_LINES kept

    def add(self, where: str, key: str | None, message: str) -> None:
        """Note a problem of `key` (or of the whole table) in the table `where`."""
        if len(self.messages) >= SHOWN_LINES:
            self.more += 1
            return
        location = f"{where} {_shown(key)}" if key else where
        # One line per problem: the plugin and the GitHub renderer split the message on lines.
        self.messages.append(clip(printable(f"{location}: {message}")))

    def lines(self) -> list[str]:
        """The problems as an error lists them, indented, one a line; then how many more."""
        more = [f"… and {self.more:,} more problems"] if self.more else []
        return [f"  {m}" for m in [*self.messages, *more]]

    def get(
        self,
        where: str,
        table: Mapping[str, Any],
        key: str,
        convert: Callable[[Any], Any],
        default: Any = None,
    ) -> Any:
        """`table[key]` converted, or `default` when it is absent or, noting why, invalid."""
        if key not in table:
            return default
        try:
            return convert(table[key])
        except (TypeError, ValueError) as e:
            self.add(where, key, str(e))
            return default

    def raise_if_any(self) -> None:
        """ConfigError listing the problems noted (`lines`), if there is one."""
        if self.messages:
            details = "\n".join(self.lines())
            raise ConfigError(
                f"{printable(str(self.path))}: invalid [tool.cnnbudget] configuration\n{details}"
            )


def unknown_keys(table: Mapping[str, Any], allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    """The keys of `table` not in `allowed`, each with why: the key it may be a typo of."""
    out = []
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {listing(allowed)})"
            out.append((key, f"unknown key{hint}"))
    return out


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__} {brief(value)}")
    return value


def _bounded(text: str, limit: int, what: str) -> str:
    if len(text) > limit:
        raise ValueError(
            f"{brief(text)} is {len(text):,} characters long; {what} is at most {limit:,}"
        )
    return text


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    """A converter that takes one of `options`."""

    def convert(value: Any) -> str:
        text = _string(value)
        if text not in options:
            raise ValueError(f"expected one of {', '.join(map(repr, options))}, got {brief(text)}")
        return text

    return convert


def parse_target(value: Any) -> str:
    """A model's `target`: 'package.module:attr'."""
    # A model's own target takes the colon form only; objects in kwargs may also be dotted.
    problem = target_problem(value, dotted=False)
    if problem is not None:
        raise ValueError(problem)
    return str(value)


_Nested = Mapping[Any, Any] | list[Any] | tuple[Any, ...]


def _nesting(value: _Nested, limit: int) -> int:
    """How deeply tables and arrays nest in `value` (a table alone is 1), counted no further than
    `limit + 1`; without recursion, so no nesting can exhaust the stack."""
    deepest = 0
    stack: list[tuple[_Nested, int]] = [(value, 1)]
    while stack and deepest <= limit:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, Mapping) else item
        stack.extend((c, level + 1) for c in children if isinstance(c, Mapping | list | tuple))
    return deepest


def check_kwargs(value: Any) -> dict[str, Any]:
    """A model's keyword arguments: a table, nesting at most MAX_KWARGS_DEPTH levels."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a table of keyword arguments, got {type(value).__name__}")
    if _nesting(value, MAX_KWARGS_DEPTH) > MAX_KWARGS_DEPTH:
        raise ValueError(
            f"tables and arrays nest more than {MAX_KWARGS_DEPTH} levels deep (the kwargs table "
            f"is the first); at most {MAX_KWARGS_DEPTH}"
        )
    return dict(value)


def parse_snapshot(value: Any) -> str | None:
    """The `snapshot` key: a file name, true for the default one, false (None) for none."""
    if value is False:
        return None
    if value is True:
        return DEFAULT_SNAPSHOT
    if not isinstance(value, str):
        raise TypeError(
            f"expected a file name, true or false, got {type(value).__name__} {brief(value)}"
        )
    if not value:
        raise ValueError("is empty; give a file name, or false for no snapshot")
    text = _bounded(value, MAX_SNAPSHOT_PATH, "a snapshot path")
    control = CONTROL.search(text)
    if control:
        raise ValueError(
            f"{brief(text)} contains the control character {control.group()!r}; "
            "a snapshot path must be one line of printable text"
        )
    return text


def parse_timeout(value: Any) -> float:
    """A `timeout`: seconds, finite, 0 (no limit) to MAX_TIMEOUT."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"expected a number of seconds (0 for no limit), got {type(value).__name__} "
            f"{brief(value)}"
        )
    # isfinite() is asked of floats only: it converts an int, and a huge one will not convert.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number of seconds; 0 means no limit")
    if value < 0:
        raise ValueError(f"{brief(value)} is negative; give seconds, or 0 for no limit")
    if value > MAX_TIMEOUT:
        raise ValueError(
            f"{brief(value)} seconds is more than a day ({MAX_TIMEOUT:,}); 0 means no limit"
        )
    return float(value) if value else 0.0  # -0.0 as well: no limit


def parse_depth(value: Any) -> int:
    """A `depth`: how many levels of a module name a table keeps, 1 to MAX_DEPTH."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"expected a whole number of name levels (1: `layers`, 2: `layers.3`), got "
            f"{type(value).__name__} {brief(value)}"
        )
    if not 1 <= value <= MAX_DEPTH:
        raise ValueError(f"{brief(value)} is not from 1 to {MAX_DEPTH}")
    return value


def depth_option(text: str) -> int:
    """A depth given on a command line (argparse's `type`), checked as `depth` in a file is."""
    try:
        return parse_depth(int(text))
    except ValueError as e:
        reason = str(e) if text.strip().isdigit() else "not a whole number"
        raise argparse.ArgumentTypeError(f"expected name levels, {text!r} is {reason}") from None


def parse_boolean(value: Any) -> bool:
    """A true or false key."""
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__} {brief(value)}")
    return value


def parse_optimizer(value: Any) -> str:
    """An `optimizer`: one of OPTIMIZERS, or a 'package.module:Class' target."""
    text = _string(value)
    if text in OPTIMIZERS:
        return text
    if ":" not in text:
        close = difflib.get_close_matches(text, OPTIMIZERS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown optimizer {brief(text)}; {hint}expected one of "
            f"{', '.join(map(repr, OPTIMIZERS))} or a 'package.module:Class' target"
        )
    problem = target_problem(text, dotted=False)
    if problem is not None:
        raise ValueError(problem)
    return text
