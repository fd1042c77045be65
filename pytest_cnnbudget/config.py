"""`[tool.cnnbudget]` → frozen, validated settings.

Everything is checked here, before any model is built, and every problem is reported at once with
the file, the model and the key it concerns, so that a configuration mistake reads like a compiler
error rather than a traceback from deep inside a test run.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .budgets import BUDGETS, KEYS
from .constants import DEFAULT_SNAPSHOT, DEVICES
from .errors import ConfigError
from .inputs import InputSpec, parse_input_shape

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]


class Level(str, Enum):
    """What a failed check does: `error` fails the test, `warn` reports and passes."""

    ERROR = "error"
    WARN = "warn"


@dataclass(frozen=True)
class ModelSpec:
    """One configured model: how to build it and what it may cost."""

    name: str
    target: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    budgets: Mapping[str, int] = field(default_factory=dict)  # budget key → limit, see budgets.py
    level: Level = Level.ERROR
    device: str = "meta"
    line: int | None = None  # where its table starts in the config file, for annotations
    input_shape: InputSpec | None = None


@dataclass(frozen=True)
class Settings:
    """The whole `[tool.cnnbudget]` table of one file."""

    path: Path
    snapshot: Path | None
    device: str
    models: tuple[ModelSpec, ...]

    def snapshot_name(self, rootdir: Path) -> str:
        """The snapshot file as failures name it: relative to pytest's rootdir when inside it."""
        if self.snapshot is None:
            return "(no snapshot)"
        try:
            return str(self.snapshot.relative_to(rootdir))
        except ValueError:
            return str(self.snapshot)


_TOP_KEYS = ("snapshot", "device", "models")
_MODEL_KEYS = ("target", "kwargs", "level", "device", "input_shape", *KEYS)


class _Problems:
    """Collects every problem in one file so a user fixes them all in one go."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []

    def add(self, where: str, key: str | None, message: str) -> None:
        location = f"{where} {key}" if key else where
        self.messages.append(f"{location}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            details = "\n".join(f"  {m}" for m in self.messages)
            raise ConfigError(f"{self.path}: invalid [tool.cnnbudget] configuration\n{details}")


def _unknown_keys(table: Mapping[str, Any], allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = (
                f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
            )
            out.append((key, f"unknown key{hint}"))
    return out


# A TOML key as written: bare, or quoted (escapes are not resolved; see _model_lines).
_BARE_KEY = r"[A-Za-z0-9_-]+"
_KEY = rf"""("[^"]*"|'[^']*'|{_BARE_KEY})"""


def model_table(name: str) -> str:
    """`[tool.cnnbudget.models.<name>]`, quoting the key as TOML would need it."""
    bare = re.fullmatch(_BARE_KEY, name)
    return f"[tool.cnnbudget.models.{name if bare else json.dumps(name, ensure_ascii=False)}]"


# A table header such as `[tool.cnnbudget]`, `[tool.cnnbudget.models]` or
# `[ tool . cnnbudget . models . "my net" ]`; the key after `models.` is captured bare or quoted.
_HEADER = re.compile(rf"^\s*\[\s*tool\s*\.\s*cnnbudget\s*(\.\s*models\s*(?:\.\s*{_KEY}\s*)?)?\]")
# Any table header; a line inside a multi-line array (`  [1, 2],`) is not one.
_ANY_HEADER = re.compile(r"""^\s*\[\[?(?:[\w\s.-]|"[^"]*"|'[^']*')+\]\]?\s*(?:#.*)?$""")
# `name = {...}` or `name.target = ...` inside `[tool.cnnbudget.models]`.
_INLINE_KEY = re.compile(rf"^\s*{_KEY}\s*[.=]")


def _model_lines(text: str) -> tuple[int | None, dict[str, int]]:
    """Where `[tool.cnnbudget]` starts, and the 1-based line each model's table starts on.

    One pass over the file: a per-model search would make reading a config with a thousand
    models quadratic. Quoted keys are unquoted without resolving escapes, which is enough to
    point an annotation at the right line.
    """
    top: int | None = None
    lines: dict[str, int] = {}
    in_models_table = False
    for number, line in enumerate(text.splitlines(), start=1):
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


def _get(
    problems: _Problems,
    where: str,
    table: Mapping[str, Any],
    key: str,
    convert: Callable[[Any], Any],
    default: Any = None,
) -> Any:
    if key not in table:
        return default
    try:
        return convert(table[key])
    except (TypeError, ValueError) as e:
        problems.add(where, key, str(e))
        return default


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _string(value)
        if text not in options:
            raise ValueError(f"expected one of {', '.join(map(repr, options))}, got {text!r}")
        return text

    return convert


def _target(value: Any) -> str:
    text = _string(value)
    module, sep, attr = text.partition(":")
    if not (sep and module and attr):
        raise ValueError(f"{text!r} is not of the form 'package.module:ClassOrFactory'")
    return text


def _kwargs(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a table of keyword arguments, got {type(value).__name__}")
    return dict(value)


def _snapshot(value: Any) -> str | None:
    if value is False:
        return None
    if value is True:
        return DEFAULT_SNAPSHOT
    return _string(value)


_LEVEL = _choice(tuple(level.value for level in Level))


def find_config(rootdir: Path, invocation_dir: Path, option: str | None) -> Path:
    """The config file a run uses: `--cnn-budget-config` (relative to where pytest was started)
    or pyproject.toml in pytest's rootdir; ConfigError says where it looked."""
    path = (Path(invocation_dir, option) if option else rootdir / "pyproject.toml").resolve()
    if not path.is_file():
        where = "--cnn-budget-config" if option else "pytest's rootdir"
        raise ConfigError(
            f"--cnn-budget: no configuration file at {path} ({where}); add "
            "[tool.cnnbudget] to pyproject.toml there, or pass --cnn-budget-config PATH"
        )
    return path


def load_settings(path: Path) -> Settings:
    """Read and validate `[tool.cnnbudget]` from `path`; raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration: {e.strerror or e}") from e
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: malformed TOML: {e}") from e
    tool = document.get("tool", {})
    section = tool.get("cnnbudget") if isinstance(tool, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(
            f"{path}: no [tool.cnnbudget] table; add one with at least one "
            "[tool.cnnbudget.models.<name>] entry (see the README), or point "
            "--cnn-budget-config at the file that has it"
        )
    return parse_settings(section, path, text)


def parse_settings(section: Mapping[str, Any], path: Path, text: str = "") -> Settings:
    """Validate an already-parsed `[tool.cnnbudget]` table that came from `path`."""
    problems = _Problems(path)
    top = "[tool.cnnbudget]"
    for key, message in _unknown_keys(section, _TOP_KEYS):
        problems.add(top, key, message)
    snapshot_name = _get(problems, top, section, "snapshot", _snapshot, DEFAULT_SNAPSHOT)
    device = _get(problems, top, section, "device", _choice(DEVICES), "meta")
    models_table = section.get("models", {})
    if not isinstance(models_table, dict):
        problems.add(top, "models", f"expected a table, got {type(models_table).__name__}")
        models_table = {}
    if not models_table:
        problems.add(top, None, "no models configured; add a [tool.cnnbudget.models.<name>] table")

    top_line, model_lines = _model_lines(text)
    models = []
    for name, table in models_table.items():
        where = model_table(name)
        if not isinstance(table, dict):
            problems.add(where, None, f"expected a table, got {type(table).__name__}")
            continue
        for key, message in _unknown_keys(table, _MODEL_KEYS):
            problems.add(where, key, message)
        target = _get(problems, where, table, "target", _target)
        if "target" not in table:
            problems.add(where, "target", "missing; give 'package.module:ClassOrFactory'")
        budgets = {}
        for kind in BUDGETS:
            limit = _get(problems, where, table, kind.key, kind.parse)
            if limit is not None:
                budgets[kind.key] = limit
            if kind.key in table and kind.needs_input_shape and "input_shape" not in table:
                problems.add(
                    where, kind.key, "needs input_shape: compute depends on the input size"
                )
        if not any(kind.key in table for kind in BUDGETS):
            problems.add(where, BUDGETS[0].key, "missing; every model needs a budget")
        models.append(
            ModelSpec(
                name=name,
                target=target or "",
                kwargs=_get(problems, where, table, "kwargs", _kwargs, {}),
                budgets=budgets,
                level=Level(_get(problems, where, table, "level", _LEVEL, "error")),
                device=_get(problems, where, table, "device", _choice(DEVICES), device),
                line=model_lines.get(name, top_line),
                input_shape=_get(problems, where, table, "input_shape", parse_input_shape),
            )
        )
    problems.raise_if_any()
    snapshot = (path.parent / snapshot_name) if snapshot_name is not None else None
    return Settings(path=path, snapshot=snapshot, device=device, models=tuple(models))
