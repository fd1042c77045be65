"""Objects in kwargs: tables with `_target_` (Hydra) or `class_path` (LightningCLI) → objects.

    kwargs = { config = { _target_ = "transformers:LlamaConfig", hidden_size = 64 } }

passes `config=LlamaConfig(hidden_size=64)`. Objects are built depth first, innermost first, in
tables and arrays alike; any other table stays a dict and any array a list. Both halves follow one
reading of such a table: `kwargs_problems` checks a configuration before anything is imported
(config/settings.py), `instantiate` builds the objects (engine/loading.py, inside the model's
device context). Importing a target is the caller's `resolve`, so that this module imports nothing.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..constants import MAX_TARGET
from ..errors import ModelBuildError, exception_text
from ..units import brief, clip_lines

TARGET = "_target_"
ARGS = "_args_"
PARTIAL = "_partial_"
SUPPORTED = (TARGET, ARGS, PARTIAL)
CLASS_PATH = "class_path"  # LightningCLI's form: { class_path = "…", init_args = { … } }
INIT_ARGS = "init_args"

# `(target, key path)` → the callable the target names; the key path is for its messages.
Resolve = Callable[[str, str], Callable[..., Any]]
Problem = tuple[str, str]  # (key path, message)

COLON_FORM = "'package.module:ClassOrFactory'"
DOTTED_FORM = "'package.module.ClassOrFactory'"

# Hydra reserves keys written `_name_`: one we do not support must not pass silently as a keyword
# argument and change nothing.
_SPECIAL = re.compile(r"_\w+_")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]{1,60}")
_WHY_NOT = {
    "_recursive_": "nested objects are always built, innermost first",
    "_convert_": "tables are always passed as dicts and arrays as lists",
}
_SUPPORTED_TEXT = (
    f"supported: {', '.join(SUPPORTED)} (Hydra), or {CLASS_PATH} with {INIT_ARGS} (LightningCLI)"
)


def target_problem(value: Any, *, dotted: bool) -> str | None:
    """Why `value` is not a target, or None: `"package.module:attr"` (attr may be dotted), and
    with `dotted` also Hydra's `"package.module.attr"`; Python names only, nothing else."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__} {brief(value)}"
    if len(value) > MAX_TARGET:
        return (
            f"{brief(value)} is {len(value):,} characters long; a target is at most {MAX_TARGET:,}"
        )
    form = f"is not of the form {COLON_FORM}" + (f" or {DOTTED_FORM}" if dotted else "")
    module, colon, attr = value.partition(":")
    if colon:
        well_formed, names = bool(module and attr), [*module.split("."), *attr.split(".")]
    else:
        names = value.split(".")
        well_formed = dotted and len(names) >= 2
    if not well_formed:
        return f"{brief(value)} {form}"
    # Strict, so that what is imported is exactly what was written: no stray whitespace, no
    # second colon, nothing that reads as a command when the target is echoed into a CI log.
    for name in names:
        if not name.isidentifier():
            why = "an empty name" if not name else f"{brief(name)}, not a Python identifier"
            return f"{brief(value)} {form}: it has {why}"
    return None


def key_path(path: str, key: object) -> str:
    """`kwargs.config` for a bare key, `kwargs['a b']` for any other."""
    if isinstance(key, str) and _BARE_KEY.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{brief(key)}]"


def _specials(table: Mapping[Any, Any]) -> list[str]:
    return [k for k in table if isinstance(k, str) and _SPECIAL.fullmatch(k)]


def _unsupported(key: str) -> str:
    close = difflib.get_close_matches(key, SUPPORTED, n=1)
    why = _WHY_NOT.get(key)
    return (
        "not supported"
        + (f" (did you mean {close[0]!r}?)" if close else "")
        + (f": {why}" if why else "")
        + f"; {_SUPPORTED_TEXT}"
    )


def _table_problems(table: Mapping[Any, Any], path: str, top: bool) -> list[Problem]:
    """What is wrong with the keys of one table itself, not with the tables inside it. `top`:
    the kwargs table, which is no object but may give the model positional `_args_`."""
    problems: list[Problem] = []
    if top:
        allowed: tuple[str, ...] = (ARGS,)
        if TARGET in table:
            example = key_path(key_path(path, "config"), TARGET)
            problems.append(
                (
                    key_path(path, TARGET),
                    f"the model's own target is its `target` key; an object goes under a key "
                    f"of kwargs ({example})",
                )
            )
    elif TARGET in table and CLASS_PATH in table:
        return [(path, f"has both {TARGET} and {CLASS_PATH}; give one")]
    elif CLASS_PATH in table:
        return _class_path_problems(table, path)
    elif TARGET in table:
        allowed = SUPPORTED
        problem = target_problem(table[TARGET], dotted=True)
        if problem is not None:
            problems.append((key_path(path, TARGET), problem))
        partial = table.get(PARTIAL, False)
        if not isinstance(partial, bool):
            problems.append(
                (
                    key_path(path, PARTIAL),
                    f"expected true or false, got {type(partial).__name__} {brief(partial)}",
                )
            )
    else:
        allowed = ()
    positional = table.get(ARGS, [])
    if ARGS in allowed and not isinstance(positional, list):
        problems.append(
            (
                key_path(path, ARGS),
                f"expected an array of positional arguments, got {type(positional).__name__} "
                f"{brief(positional)}",
            )
        )
    for key in _specials(table):
        if key in allowed or (top and key == TARGET):
            continue
        message = f"only a table with {TARGET} takes {key}" if key in SUPPORTED else None
        problems.append((key_path(path, key), message or _unsupported(key)))
    return problems


def _class_path_problems(table: Mapping[Any, Any], path: str) -> list[Problem]:
    problems: list[Problem] = []
    problem = target_problem(table[CLASS_PATH], dotted=True)
    if problem is not None:
        problems.append((key_path(path, CLASS_PATH), problem))
    for key in table:
        if key not in (CLASS_PATH, INIT_ARGS):
            problems.append(
                (key_path(path, key), f"unknown key; a {CLASS_PATH} table has only {INIT_ARGS}")
            )
    init_args = table.get(INIT_ARGS, {})
    if not isinstance(init_args, dict):
        problems.append(
            (
                key_path(path, INIT_ARGS),
                f"expected a table of keyword arguments, got {type(init_args).__name__}",
            )
        )
    else:
        inner = key_path(path, INIT_ARGS)
        problems += [
            (key_path(inner, k), f"not supported: {INIT_ARGS} holds keyword arguments only")
            for k in _specials(init_args)
        ]
    return problems


def _parts(table: Mapping[Any, Any], path: str) -> tuple[str, Any, str, Mapping[Any, Any]]:
    """An object table's target key, positional arguments, and keyword arguments with the key
    path they sit under."""
    if TARGET in table:
        keywords = {k: v for k, v in table.items() if k not in SUPPORTED}
        return TARGET, table.get(ARGS, []), path, keywords
    init_args = table.get(INIT_ARGS, {})
    return (
        CLASS_PATH,
        [],
        key_path(path, INIT_ARGS),
        init_args if isinstance(init_args, dict) else {},
    )


def _children(table: Mapping[Any, Any], path: str) -> list[tuple[str, Any]]:
    """The values in a table that may hold objects, with their key paths."""
    if not _is_object(table):
        return [(key_path(path, k), v) for k, v in table.items()]
    _, positional, under, keywords = _parts(table, path)
    children = [(key_path(under, k), v) for k, v in keywords.items()]
    if isinstance(positional, list):
        children.insert(0, (key_path(path, ARGS), positional))
    return children


def _is_object(value: object) -> bool:
    return isinstance(value, dict) and (TARGET in value or CLASS_PATH in value)


def kwargs_problems(kwargs: Mapping[str, Any], path: str = "kwargs") -> list[Problem]:
    """Every problem with the objects in a model's kwargs, as (key path, message) pairs.

    Checks the form alone, importing nothing: each `_target_` and `class_path` is a target,
    `_args_` an array, `_partial_` a boolean, and no other `_name_` key is used.
    """
    problems = _table_problems(kwargs, path, top=True)
    # A stack of (key path, value) rather than recursion: no nesting can exhaust the stack.
    stack = list(reversed(_children(kwargs, path)))
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            problems += _table_problems(value, where, top=False)
            stack += reversed(_children(value, where))
        elif isinstance(value, list | tuple):
            stack += reversed([(f"{where}[{i}]", v) for i, v in enumerate(value)])
    return problems


def instantiate(
    kwargs: Mapping[str, Any], resolve: Resolve, path: str = "kwargs"
) -> tuple[list[Any], dict[str, Any]]:
    """A model's kwargs → the positional (`_args_`) and keyword arguments to call its target
    with, every object in them built, innermost first; a ModelBuildError names the key path."""
    _raise_first(_table_problems(kwargs, path, top=True))
    ancestors = frozenset({id(kwargs)})
    args = _build(kwargs.get(ARGS, []), key_path(path, ARGS), resolve, ancestors)
    keywords = {
        k: _build(v, key_path(path, k), resolve, ancestors) for k, v in kwargs.items() if k != ARGS
    }
    return list(args), keywords


def _raise_first(problems: list[Problem]) -> None:
    if problems:
        where, message = problems[0]
        raise ModelBuildError(f"{where}: {message}")


def _build(value: Any, path: str, resolve: Resolve, ancestors: frozenset[int]) -> Any:
    """`value` with every object in it built; the same object when it holds none.

    Recursive: a configuration nests at most MAX_KWARGS_DEPTH levels (config/fields.py checks that).
    A table or array inside itself, which only Python code can pass, is passed as it is.
    """
    if not isinstance(value, dict | list | tuple) or id(value) in ancestors:
        return value
    inner = ancestors | {id(value)}
    if isinstance(value, dict):
        if _is_object(value):
            return _build_object(value, path, resolve, inner)
        built = {k: _build(v, key_path(path, k), resolve, inner) for k, v in value.items()}
        return value if all(built[k] is v for k, v in value.items()) else built
    items = [_build(v, f"{path}[{i}]", resolve, inner) for i, v in enumerate(value)]
    if all(new is old for new, old in zip(items, value, strict=True)):
        return value
    return tuple(items) if isinstance(value, tuple) else items


def _build_object(
    table: Mapping[Any, Any], path: str, resolve: Resolve, ancestors: frozenset[int]
) -> Any:
    _raise_first(_table_problems(table, path, top=False))
    target_key, positional, under, given = _parts(table, path)
    target: str = table[target_key]
    # Imported first, so that a target that cannot be imported fails before its arguments build.
    factory = resolve(target, key_path(path, target_key))
    args = _build(positional, key_path(path, ARGS), resolve, ancestors)
    keywords = {k: _build(v, key_path(under, k), resolve, ancestors) for k, v in given.items()}
    if table.get(PARTIAL, False):
        return functools.partial(factory, *args, **keywords)
    try:
        return factory(*args, **keywords)
    except Exception as e:
        raise ModelBuildError(
            f"building {path} ({target}) raised {clip_lines(exception_text(e))}"
        ) from e
