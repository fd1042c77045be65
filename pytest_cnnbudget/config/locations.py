"""Where in a config file each model's table starts, and how a message names that table so that
it can be pasted back into the file."""

from __future__ import annotations

import re

# A TOML key as written: bare, or quoted (escapes are not resolved; see model_lines).
_BARE_KEY = r"[A-Za-z0-9_-]+"
_KEY = rf"""("[^"]*"|'[^']*'|{_BARE_KEY})"""


def model_table(name: str) -> str:
    """`[tool.cnnbudget.models.<name>]`, quoting the key as TOML would need it."""
    bare = re.fullmatch(_BARE_KEY, name)
    return f"[tool.cnnbudget.models.{name if bare else _toml_string(name)}]"


def _toml_string(text: str) -> str:
    """`text` as a TOML basic string. Letters of any script stay readable; anything unprintable
    (a no-break space, a direction mark, a control) becomes TOML's own \\u escape, so a message
    stays on one line and the table it names can still be pasted into the file."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            out.append(f"\\u{ord(c):04X}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08X}")
    return '"' + "".join(out) + '"'


# A table header such as `[tool.cnnbudget]`, `[tool.cnnbudget.models]` or
# `[ tool . cnnbudget . models . "my net" ]`; the key after `models.` is captured bare or quoted.
_HEADER = re.compile(rf"^\s*\[\s*tool\s*\.\s*cnnbudget\s*(\.\s*models\s*(?:\.\s*{_KEY}\s*)?)?\]")
# Any table header; a line inside a multi-line array (`  [1, 2],`) is not one.
_ANY_HEADER = re.compile(r"""^\s*\[\[?(?:[\w\s.-]|"[^"]*"|'[^']*')+\]\]?\s*(?:#.*)?$""")
# `name = {...}` or `name.target = ...` inside `[tool.cnnbudget.models]`.
_INLINE_KEY = re.compile(rf"^\s*{_KEY}\s*[.=]")


def model_lines(text: str) -> tuple[int | None, dict[str, int]]:
    """Where `[tool.cnnbudget]` starts, and the 1-based line each model's table starts on.

    One pass over the file: a per-model search would make reading a config with a thousand
    models quadratic. Quoted keys are unquoted without resolving escapes, which is enough to
    point an annotation at the right line.
    """
    top: int | None = None
    lines: dict[str, int] = {}
    in_models_table = False
    # Split on "\n" only, as TOML counts lines: splitlines() would also break at a form feed or a
    # U+2028 inside a string or comment and shift every later model's line.
    for number, line in enumerate(text.split("\n"), start=1):
        if _ANY_HEADER.match(line):
            header = _HEADER.match(line)
            in_models_table = False
            if header is None:
                continue
            models, key = header.groups()
            if key is not None:
                lines.setdefault(_unquote(key), number)
            elif models is not None:
                in_models_table = True
            elif top is None:
                top = number
        elif in_models_table:
            inline = _INLINE_KEY.match(line)
            if inline is not None:
                lines.setdefault(_unquote(inline.group(1)), number)
    return top, lines


def _unquote(key: str) -> str:
    return key[1:-1] if key[:1] in "\"'" and len(key) >= 2 else key
