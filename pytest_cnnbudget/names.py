"""Module and model names as tables show them: on one line, folded to a depth. Pure."""

from __future__ import annotations

import os
import re
import sys

from .constants import ROOT_NAME

# Characters str.isprintable() passes that show as nothing: Unicode's fillers and the
# default-ignorable marks (the combining grapheme joiner, Mongolian free variation selectors,
# Khmer inherent vowels). A name holding one reads as another name. Variation selectors are not
# among them: U+FE0F makes ⚠ the emoji ⚠️ (a model name may still not hold one: NAME_INVISIBLE).
INVISIBLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\uffa0\U000e0100-\U000e01ef]"
)
NAME_INVISIBLE = re.compile(f"{INVISIBLE.pattern}|[\ufe00-\ufe0f]")


def shows_as_itself(char: str) -> bool:
    """Whether a reader sees `char` as itself: printable (str.isprintable: no control, format,
    surrogate, separator but the ASCII space) and not invisible (INVISIBLE)."""
    return char.isprintable() and not INVISIBLE.match(char)


def printable(text: str) -> str:
    """`text` on one line, every character that does not show as itself escaped: control
    characters (a newline in a quoted TOML key), format characters (U+202E), invisible ones."""
    if text.isprintable() and (text.isascii() or not INVISIBLE.search(text)):
        return text
    return "".join(c if shows_as_itself(c) else _escape(c) for c in text)


def _escape(char: str) -> str:
    escaped = repr(char)[1:-1]
    if escaped != char:
        return escaped
    # An invisible character repr() shows as itself: its code point, as repr() would.
    return f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"


def unescaped(text: str) -> str:
    """Text read from the file system or the environment under an encoding that is not UTF-8
    (LC_ALL=C): its surrogate escapes turned back into the characters the bytes spell in
    UTF-8, the same text a UTF-8 run reads. Unchanged where the bytes are not UTF-8."""
    if text.isascii():
        return text
    try:
        raw = text.encode(sys.getfilesystemencoding(), "surrogateescape")
    except UnicodeEncodeError:  # real characters, not escapes (an id pytest left unescaped)
        return text
    return raw.decode("utf-8", "surrogateescape")


def on_disk(text: str) -> str:
    """The inverse of `unescaped`: a path as the file system encoding spells it."""
    if text.isascii():
        return text
    return os.fsdecode(text.encode("utf-8", "surrogateescape"))


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
