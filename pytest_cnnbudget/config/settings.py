"""`[tool.cnnbudget]` → frozen, validated settings: finding the file, reading it, and checking
every model's table (and every `cnn_budget()` call's options) key by key.

Everything is checked here, before any model is built, and every problem is reported at once with
the file, the model and the key it concerns, so that a configuration mistake reads like a compiler
error rather than a traceback from deep inside a test run.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..constants import DEFAULT_SNAPSHOT, DEVICES, MAX_CONFIG_BYTES, MAX_MODEL_NAME, MAX_MODELS
from ..errors import ConfigError
from ..inputs import parse_input_shape
from ..names import NAME_INVISIBLE, printable, shows_as_itself, unescaped
from ..results import MemoryOptions
from .budgets import BUDGETS, KEYS, MEMORY_KEYS
from .fields import (
    AUTOCAST,
    CONTROL,
    Problems,
    check_kwargs,
    choice,
    parse_boolean,
    parse_depth,
    parse_optimizer,
    parse_snapshot,
    parse_target,
    parse_timeout,
    unknown_keys,
)
from .instantiate import kwargs_problems
from .locations import model_lines, model_table
from .parallel import parse_parallel
from .spec import Level, ModelSpec, Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]


_TOP_KEYS = ("snapshot", "device", "timeout", "depth", "models")
# How a model's memory is traced (memory.py); a memory budget or `memory = true` asks for it.
MEMORY_OPTION_KEYS = (
    "memory",
    "optimizer",
    "optimizer_kwargs",
    "autocast",
    "train_mode",
    "parallel",
)
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
FIXTURE_KEYS = ("level", "depth", "input_shape", *MEMORY_OPTION_KEYS, *KEYS)
_LEVEL = choice(tuple(level.value for level in Level))


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
            "[tool.cnnbudget.models.<name>] entry (see docs/configuration.md), or point "
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
        # O_NONBLOCK: a FIFO in the file's place would otherwise block open() for ever.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"{file}: cannot read the configuration: not a file")
            # One byte past the limit tells an over-long file without reading all of it.
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
    problems = Problems(path)
    top = "[tool.cnnbudget]"
    for key, message in unknown_keys(section, _TOP_KEYS):
        problems.add(top, key, message)
    snapshot_name = problems.get(top, section, "snapshot", parse_snapshot, DEFAULT_SNAPSHOT)
    device = problems.get(top, section, "device", choice(DEVICES), "meta")
    timeout = problems.get(top, section, "timeout", parse_timeout)
    depth = problems.get(top, section, "depth", parse_depth)
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

    top_line, lines = model_lines(text)
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
        for key, message in unknown_keys(table, _MODEL_KEYS):
            problems.add(where, key, message)
        target = problems.get(where, table, "target", parse_target)
        if "target" not in table:
            problems.add(where, "target", "missing; give 'package.module:ClassOrFactory'")
        budgets = _budgets(problems, where, table)
        if not any(kind.key in table for kind in BUDGETS):
            problems.add(where, BUDGETS[0].key, "missing; every model needs a budget")
        kwargs = problems.get(where, table, "kwargs", check_kwargs, {})
        # The key path says where in kwargs: `kwargs.config._target_`, `kwargs.blocks[1]._args_`.
        for at, message in kwargs_problems(kwargs):
            problems.add(where, None, f"{at}: {message}")
        models.append(
            ModelSpec(
                name=name,
                target=target or "",
                kwargs=kwargs,
                budgets=budgets,
                level=Level(problems.get(where, table, "level", _LEVEL, "error")),
                device=problems.get(where, table, "device", choice(DEVICES), device),
                line=lines.get(name, top_line),
                input_shape=problems.get(where, table, "input_shape", parse_input_shape),
                timeout=problems.get(where, table, "timeout", parse_timeout),
                depth=problems.get(where, table, "depth", parse_depth),
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


def _memory(problems: Problems, where: str, table: Mapping[str, Any]) -> MemoryOptions | None:
    """How the model's memory is traced, when a memory budget or `memory = true` asks for it;
    options given without either are a mistake, not silently ignored."""
    asked = problems.get(where, table, "memory", parse_boolean)
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
    kwargs = problems.get(where, table, "optimizer_kwargs", check_kwargs, {})
    parallel = parse_parallel(problems, where, table["parallel"]) if "parallel" in table else None
    return MemoryOptions(
        optimizer=problems.get(where, table, "optimizer", parse_optimizer, "adamw"),
        optimizer_kwargs=kwargs,
        autocast=problems.get(where, table, "autocast", choice(AUTOCAST)),
        train_mode=problems.get(where, table, "train_mode", parse_boolean, True),
        parallel=parallel,
    )


def _budgets(problems: Problems, where: str, table: Mapping[str, Any]) -> dict[str, int]:
    """The budget keys of a model's table or a fixture call, parsed; compute budgets need an
    input_shape beside them."""
    budgets = {}
    for kind in BUDGETS:
        limit = problems.get(where, table, kind.key, kind.parse)
        if limit is not None:
            budgets[kind.key] = limit
        if kind.key in table and kind.needs_input_shape and "input_shape" not in table:
            depends = kind.needs_memory and "memory depends on the batch"
            depends = depends or "compute depends on the input size"
            problems.add(where, kind.key, f"needs input_shape: {depends}")
    return budgets


def _model_name_problem(name: str) -> str | None:
    """Why `name` cannot be a model's name (it becomes a test id, a snapshot key, a table row)."""
    if not name:
        return "a model name is empty; give the model a name"
    if len(name) > MAX_MODEL_NAME:
        return (
            f"model name {name[:40]!r}… is {len(name):,} characters long; at most {MAX_MODEL_NAME}"
        )
    control = CONTROL.search(name)
    if control:
        return (
            f"model name {name!r} contains the control character {control.group()!r}; "
            "a model name must be one line of printable text"
        )
    hidden = next(
        (c for c in name if not (shows_as_itself(c) or c == " ") or NAME_INVISIBLE.match(c)), None
    )
    if hidden is not None:
        # Format characters (U+202E reverses what follows it on GitHub), zero-width and
        # non-ASCII spaces, lone surrogates: a reader could not tell the name from another.
        return (
            f"model name {name!r} contains {_codepoint(hidden)}, which is not "
            "printable; a model name is printable text (spaces, `/`, `|` and any script)"
        )
    if is_fixture_name(name):
        return (
            f"model name {name!r} contains `::`, which names the checks of the "
            "cnn_budget fixture (a test's node id, `file.py::test`); use another name"
        )
    return None


def _codepoint(char: str) -> str:
    """`U+202E` for a character a message cannot show as itself."""
    return f"U+{ord(char):04X}"


def fixture_name(nodeid: str, name: str | None = None) -> str:
    """The name a `cnn_budget` fixture check is stored and shown under: its test's node id, and
    the call's `name` when a test checks several models."""
    # A node id read under a C locale holds surrogate escapes: stored as a UTF-8 run stores it.
    nodeid = unescaped(nodeid)
    return f"{nodeid}[{name}]" if name is not None else nodeid


def is_fixture_name(name: str) -> bool:
    """Whether a result or snapshot entry comes from the `cnn_budget` fixture: its name is its
    test's node id, and every node id of a test holds `::` (`my tests/test_a.py::test_x`),
    which no configured model's name may."""
    return "::" in name


def fixture_spec(
    name: str, options: Mapping[str, Any], where: str, call_name: object = None
) -> ModelSpec:
    """The spec of a `cnn_budget(model, …)` call in the test `where`, validated as a model's
    table is (`call_name`: its `name=`, if given); ConfigError names the test and every bad
    key."""
    problems = Problems(Path(where))
    label = f"cnn_budget({printable(name)})"
    if call_name is not None:
        problem = (
            _model_name_problem(call_name)
            if isinstance(call_name, str)
            else f"expected a string, got {type(call_name).__name__}"
        )
        if problem is not None:
            problems.add(label, "name", problem)
    for key, message in unknown_keys(options, FIXTURE_KEYS):
        problems.add(label, key, message)
    budgets = _budgets(problems, label, options)
    if not budgets and not problems.messages:
        problems.add(label, None, f"give at least one budget ({', '.join(KEYS)})")
    spec = ModelSpec(
        name=name,
        target="",
        budgets=budgets,
        level=Level(problems.get(label, options, "level", _LEVEL, "error")),
        input_shape=problems.get(label, options, "input_shape", parse_input_shape),
        depth=problems.get(label, options, "depth", parse_depth),
        memory=_memory(problems, label, options),
    )
    if problems.messages:
        raise ConfigError(
            f"{printable(where)}: invalid cnn_budget() call\n" + "\n".join(problems.lines())
        )
    return spec
