"""`[tool.cnnbudget]` → frozen, validated settings.

Everything is checked here, before any model is built, and every problem is reported at once with
the file, the model and the key it concerns, so that a configuration mistake reads like a compiler
error rather than a traceback from deep inside a test run.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ..constants import (
    DEFAULT_SNAPSHOT,
    DEVICES,
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    MAX_KWARGS_DEPTH,
    MAX_MODEL_NAME,
    MAX_MODELS,
    MAX_SNAPSHOT_PATH,
    MAX_TIMEOUT,
)
from ..errors import ConfigError
from ..inputs import InputSpec, parse_input_shape
from ..names import printable
from ..results import MemoryOptions
from ..units import brief
from .budgets import BUDGETS, KEYS, MEMORY_KEYS
from .instantiate import kwargs_problems, target_problem

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
    # Seconds its check may take, 0 for no limit; None when its table does not say, and then
    # Settings.timeout applies: the model's own key wins.
    timeout: float | None = None
    # Name levels its tables fold rows into (`layers.3.mlp.up` → `layers.3` at 2); None when its
    # table does not say, and then Settings.depth or --cnn-budget-depth applies.
    depth: int | None = None
    # The config file's folder, where its targets are imported from first (loading.local_to).
    folder: str | None = None
    # How its training step is traced, for a model whose memory is measured; None: it is not.
    memory: MemoryOptions | None = None


@dataclass(frozen=True)
class Settings:
    """The whole `[tool.cnnbudget]` table of one file."""

    path: Path
    snapshot: Path | None
    device: str
    models: tuple[ModelSpec, ...]
    timeout: float | None = None  # the top-level `timeout`, for models without their own
    depth: int | None = None  # the top-level `depth`, likewise

    def snapshot_name(self, rootdir: Path) -> str:
        """The snapshot file as failures name it: relative to pytest's rootdir when inside it."""
        if self.snapshot is None:
            return "(no snapshot)"
        try:
            return str(self.snapshot.relative_to(rootdir))
        except ValueError:
            return str(self.snapshot)


_TOP_KEYS = ("snapshot", "device", "timeout", "depth", "models")
# How a model's memory is traced (memory.py); a memory budget or `memory = true` asks for it.
MEMORY_OPTION_KEYS = ("memory", "optimizer", "optimizer_kwargs", "autocast", "train_mode")
OPTIMIZERS = ("adamw", "adam", "sgd", "sgd_momentum", "none")
AUTOCAST = ("bf16", "fp16")
_MODEL_KEYS = (
    "target",
    "kwargs",
    "level",
    "device",
    "timeout",
    "depth",
    "input_shape",
    *MEMORY_OPTION_KEYS,
    *KEYS,
)

# C0 and C1 controls (newline, carriage return, tab, NUL, escape, NEL) and the Unicode line and
# paragraph separators: what could break a name or a path across lines of a message, a table or
# a GitHub annotation, or hide in a terminal. Every other character, spaces and `/` included, is
# fine in a model name: the renderers quote and escape what they must.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _shown(text: str) -> str:
    """A key or name as a message shows it: as written when short and printable, else repr()."""
    return text if text.isprintable() and len(text) <= 60 else brief(text)


class _Problems:
    """Collects every problem in one file so a user fixes them all in one go."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []

    def add(self, where: str, key: str | None, message: str) -> None:
        location = f"{where} {_shown(key)}" if key else where
        # One line per problem: the plugin and the GitHub renderer split the message on lines.
        self.messages.append(printable(f"{location}: {message}"))

    def raise_if_any(self) -> None:
        if self.messages:
            details = "\n".join(f"  {m}" for m in self.messages)
            raise ConfigError(
                f"{printable(str(self.path))}: invalid [tool.cnnbudget] configuration\n{details}"
            )


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


def _model_lines(text: str) -> tuple[int | None, dict[str, int]]:
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
        raise TypeError(f"expected a string, got {type(value).__name__} {brief(value)}")
    return value


def _bounded(text: str, limit: int, what: str) -> str:
    if len(text) > limit:
        raise ValueError(
            f"{brief(text)} is {len(text):,} characters long; {what} is at most {limit:,}"
        )
    return text


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _string(value)
        if text not in options:
            raise ValueError(f"expected one of {', '.join(map(repr, options))}, got {brief(text)}")
        return text

    return convert


def _target(value: Any) -> str:
    # A model's own target takes the colon form only; objects in kwargs may also be dotted.
    problem = target_problem(value, dotted=False)
    if problem is not None:
        raise ValueError(problem)
    return str(value)


_Nested = Mapping[Any, Any] | list[Any] | tuple[Any, ...]


def _depth(value: _Nested, limit: int) -> int:
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
    if _depth(value, MAX_KWARGS_DEPTH) > MAX_KWARGS_DEPTH:
        raise ValueError(
            f"tables and arrays nest more than {MAX_KWARGS_DEPTH} levels deep (the kwargs table "
            f"is the first); at most {MAX_KWARGS_DEPTH}"
        )
    return dict(value)


def _snapshot(value: Any) -> str | None:
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
    control = _CONTROL.search(text)
    if control:
        raise ValueError(
            f"{brief(text)} contains the control character {control.group()!r}; "
            "a snapshot path must be one line of printable text"
        )
    return text


def _timeout(value: Any) -> float:
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


def _model_name_problem(name: str) -> str | None:
    """Why `name` cannot be a model's name (it becomes a test id, a snapshot key, a table row)."""
    if not name:
        return "a model name is empty; give the model a name"
    if len(name) > MAX_MODEL_NAME:
        return (
            f"model name {name[:40]!r}… is {len(name):,} characters long; at most {MAX_MODEL_NAME}"
        )
    control = _CONTROL.search(name)
    if control:
        return (
            f"model name {name!r} contains the control character {control.group()!r}; "
            "a model name must be one line of printable text"
        )
    if is_fixture_name(name):
        return (
            f"model name {name!r} reads as a test's node id (`file.py::test`), which names "
            "the checks of the cnn_budget fixture; use another name"
        )
    return None


_LEVEL = _choice(tuple(level.value for level in Level))


def find_config(rootdir: Path, invocation_dir: Path, option: str | None) -> Path:
    """The config file a run uses: `--cnn-budget-config` (relative to where pytest was started)
    or pyproject.toml in pytest's rootdir; ConfigError says where it looked."""
    path = (Path(invocation_dir, option) if option else rootdir / "pyproject.toml").resolve()
    if not path.is_file():
        where = "--cnn-budget-config" if option else "pytest's rootdir"
        raise ConfigError(
            f"--cnn-budget: no configuration file at {printable(str(path))} ({where}); add "
            "[tool.cnnbudget] to pyproject.toml there, or pass --cnn-budget-config PATH"
        )
    return path


def discover_config(start: Path) -> Path | None:
    """The config the `cnnbudget` command uses by default: the first pyproject.toml with a
    `[tool.cnnbudget]` table in `start` or a folder above it, or None.

    pytest takes the first folder above its arguments that has a config file for its rootdir;
    this takes the first that has ours, so a package's pyproject.toml without budgets, inside a
    repository that has them, is passed over.
    """
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and _declares_budgets(candidate):
            return candidate
    return None


def _declares_budgets(path: Path) -> bool:
    try:
        return read_settings(path) is not None
    except ConfigError:
        return True  # it has our table and cannot be read: load_settings says why


def load_settings(path: Path) -> Settings:
    """Read and validate `[tool.cnnbudget]` from `path`; raise ConfigError listing every problem."""
    settings = read_settings(path, skim=False)
    if settings is None:
        raise ConfigError(
            f"{printable(str(path))}: no [tool.cnnbudget] table; add one with at least one "
            "[tool.cnnbudget.models.<name>] entry (see the README), or point "
            "--cnn-budget-config at the file that has it"
        )
    return settings


# `[tool.cnnbudget…]`, or `cnnbudget = …` / `cnnbudget.models…` under `[tool]`: what a file that
# configures budgets has, and a package that merely depends on pytest-cnnbudget does not.
_TABLE = re.compile(rb"^\s*\[\s*tool\s*\.\s*cnnbudget\b|^\s*cnnbudget\s*[.=]", re.MULTILINE)


def read_settings(path: Path, skim: bool = True) -> Settings | None:
    """`[tool.cnnbudget]` of `path` validated, or None when the file has no such table (a
    package's pyproject.toml that budgets nothing); ConfigError for every problem in one.
    With `skim`, a file that never mentions cnnbudget is passed over unread."""
    file = printable(str(path))
    try:
        # One byte past the limit tells an over-long file without reading all of it.
        with path.open("rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{file}: cannot read the configuration: {e.strerror or e}") from e
    if skim and _TABLE.search(data) is None:
        # Most pyproject.toml files pytest walks past budget nothing: not worth parsing.
        return None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{file}: larger than {MAX_CONFIG_BYTES // 2**20} MiB; a configuration file is "
            "at most that (is this the right file?)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{file}: is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from e
    # Universal newlines, as the text-mode read this replaced: a file with Windows or old Mac line
    # endings reads, and numbers its lines, as it always did.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: malformed TOML: {e}") from e
    except RecursionError as e:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(
            f"{file}: malformed TOML: arrays or inline tables nested too deeply to read"
        ) from e
    except ValueError as e:  # int() refusing a number of more than 4,300 digits, for one
        raise ConfigError(f"{file}: malformed TOML: a value cannot be read ({e})") from e
    tool = document.get("tool", {})
    section = tool.get("cnnbudget") if isinstance(tool, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError(f"{file}: [tool.cnnbudget] must be a table, not {type(section).__name__}")
    return parse_settings(section, path, text)


def parse_settings(section: Mapping[str, Any], path: Path, text: str = "") -> Settings:
    """Validate an already-parsed `[tool.cnnbudget]` table that came from `path`."""
    problems = _Problems(path)
    top = "[tool.cnnbudget]"
    for key, message in _unknown_keys(section, _TOP_KEYS):
        problems.add(top, key, message)
    snapshot_name = _get(problems, top, section, "snapshot", _snapshot, DEFAULT_SNAPSHOT)
    device = _get(problems, top, section, "device", _choice(DEVICES), "meta")
    timeout = _get(problems, top, section, "timeout", _timeout)
    depth = _get(problems, top, section, "depth", parse_depth)
    models_table = section.get("models", {})
    if not isinstance(models_table, dict):
        problems.add(top, "models", f"expected a table, got {type(models_table).__name__}")
        models_table = {}
    # No models is fine: a project whose budgets are all cnn_budget() calls configures only
    # their snapshot here.
    if len(models_table) > MAX_MODELS:
        problems.add(
            top,
            "models",
            f"{len(models_table):,} models; one file configures at most {MAX_MODELS:,}",
        )
        models_table = {}

    top_line, model_lines = _model_lines(text)
    models = []
    for name, table in models_table.items():
        name_problem = _model_name_problem(name)
        if name_problem is not None:
            # Its table is not checked: every message about it would repeat the bad name.
            problems.add("[tool.cnnbudget.models]", None, name_problem)
            continue
        where = model_table(name)
        if not isinstance(table, dict):
            problems.add(where, None, f"expected a table, got {type(table).__name__}")
            continue
        for key, message in _unknown_keys(table, _MODEL_KEYS):
            problems.add(where, key, message)
        target = _get(problems, where, table, "target", _target)
        if "target" not in table:
            problems.add(where, "target", "missing; give 'package.module:ClassOrFactory'")
        budgets = _budgets(problems, where, table)
        if not any(kind.key in table for kind in BUDGETS):
            problems.add(where, BUDGETS[0].key, "missing; every model needs a budget")
        kwargs = _get(problems, where, table, "kwargs", check_kwargs, {})
        # The key path says where in kwargs: `kwargs.config._target_`, `kwargs.blocks[1]._args_`.
        for at, message in kwargs_problems(kwargs):
            problems.add(where, None, f"{at}: {message}")
        models.append(
            ModelSpec(
                name=name,
                target=target or "",
                kwargs=kwargs,
                budgets=budgets,
                level=Level(_get(problems, where, table, "level", _LEVEL, "error")),
                device=_get(problems, where, table, "device", _choice(DEVICES), device),
                line=model_lines.get(name, top_line),
                input_shape=_get(problems, where, table, "input_shape", parse_input_shape),
                timeout=_get(problems, where, table, "timeout", _timeout),
                depth=_get(problems, where, table, "depth", parse_depth),
                folder=str(path.parent),
                memory=_memory(problems, where, table),
            )
        )
    problems.raise_if_any()
    snapshot = (path.parent / snapshot_name) if snapshot_name is not None else None
    return Settings(
        path=path,
        snapshot=snapshot,
        device=device,
        models=tuple(models),
        timeout=timeout,
        depth=depth,
    )


FIXTURE_KEYS = ("level", "depth", "input_shape", *MEMORY_OPTION_KEYS, *KEYS)


def _boolean(value: Any) -> bool:
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


def _memory(problems: _Problems, where: str, table: Mapping[str, Any]) -> MemoryOptions | None:
    """How the model's memory is traced, when a memory budget or `memory = true` asks for it;
    options given without either are a mistake, not silently ignored."""
    asked = _get(problems, where, table, "memory", _boolean)
    budgeted = [key for key in MEMORY_KEYS if key in table]
    options = [key for key in MEMORY_OPTION_KEYS[1:] if key in table]
    if asked is False and budgeted:
        problems.add(where, "memory", f"is false, but {budgeted[0]} needs memory measured")
    if not (asked or budgeted):
        for key in options:
            problems.add(
                where,
                key,
                "only applies when memory is measured; add max_train_memory, "
                "max_inference_memory or memory = true",
            )
        return None
    if asked and "input_shape" not in table:
        problems.add(where, "memory", "needs input_shape: memory depends on the batch")
    kwargs = _get(problems, where, table, "optimizer_kwargs", check_kwargs, {})
    return MemoryOptions(
        optimizer=_get(problems, where, table, "optimizer", parse_optimizer, "adamw"),
        optimizer_kwargs=kwargs,
        autocast=_get(problems, where, table, "autocast", _choice(AUTOCAST)),
        train_mode=_get(problems, where, table, "train_mode", _boolean, True),
    )


def _budgets(problems: _Problems, where: str, table: Mapping[str, Any]) -> dict[str, int]:
    """The budget keys of a model's table or a fixture call, parsed; compute budgets need an
    input_shape beside them."""
    budgets = {}
    for kind in BUDGETS:
        limit = _get(problems, where, table, kind.key, kind.parse)
        if limit is not None:
            budgets[kind.key] = limit
        if kind.key in table and kind.needs_input_shape and "input_shape" not in table:
            depends = kind.needs_memory and "memory depends on the batch"
            depends = depends or "compute depends on the input size"
            problems.add(where, kind.key, f"needs input_shape: {depends}")
    return budgets


def fixture_name(nodeid: str, name: str | None = None) -> str:
    """The name a `cnn_budget` fixture check is stored and shown under: its test's node id, and
    the call's `name` when a test checks several models."""
    return f"{nodeid}[{name}]" if name is not None else nodeid


# A test's node id: the path of its Python file, `::`, the test.
_NODE_ID = re.compile(r"[^\s:]+\.py::\S")


def is_fixture_name(name: str) -> bool:
    """Whether a result or snapshot entry comes from the `cnn_budget` fixture (a node id)."""
    return _NODE_ID.match(name) is not None


def fixture_spec(
    name: str, options: Mapping[str, Any], where: str, call_name: object = None
) -> ModelSpec:
    """The spec of a `cnn_budget(model, …)` call in the test `where`, validated as a model's
    table is (`call_name`: its `name=`, if given); ConfigError names the test and every bad
    key."""
    problems = _Problems(Path(where))
    label = f"cnn_budget({printable(name)})"
    if call_name is not None:
        problem = (
            _model_name_problem(call_name)
            if isinstance(call_name, str)
            else f"expected a string, got {type(call_name).__name__}"
        )
        if problem is not None:
            problems.add(label, "name", problem)
    for key, message in _unknown_keys(options, FIXTURE_KEYS):
        problems.add(label, key, message)
    budgets = _budgets(problems, label, options)
    if not budgets and not problems.messages:
        problems.add(label, None, f"give at least one budget ({', '.join(KEYS)})")
    spec = ModelSpec(
        name=name,
        target="",
        budgets=budgets,
        level=Level(_get(problems, label, options, "level", _LEVEL, "error")),
        input_shape=_get(problems, label, options, "input_shape", parse_input_shape),
        depth=_get(problems, label, options, "depth", parse_depth),
        memory=_memory(problems, label, options),
    )
    if problems.messages:
        raise ConfigError(
            f"{printable(where)}: invalid cnn_budget() call\n"
            + "\n".join(f"  {m}" for m in problems.messages)
        )
    return spec
