"""Module and model names as tables show them: on one line, folded to a depth. Pure."""

from __future__ import annotations

from .constants import ROOT_NAME


def printable(text: str) -> str:
    """`text` on one line: control characters (a newline in a quoted TOML key) are escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def storable(text: str) -> str:
    """`text` as UTF-8 can hold it: a lone surrogate (model code can put one in a layer's name)
    becomes its escape, `\\ud800`, as `printable` shows it."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def fold_name(name: str, depth: int | None) -> str:
    """`layer1.0.conv1` at depth 1 → `layer1`; the root and `None` (no folding) keep the name."""
    if depth is None or name == ROOT_NAME:
        return name
    return ".".join(name.split(".")[:depth])
