"""What a failed build's message adds: the one-line hint for the failures a gate sees most
(weights to download, a GPU, arguments the config does not give), and the exception chain
those are read from."""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from ..units import clip
from .network import Unreachable


def chain(error: BaseException, until: BaseException | None = None) -> Iterator[BaseException]:
    """`error` and what it was raised from or while handling, up to `until`, each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and current is not until and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def message(error: BaseException) -> str:
    """An exception's text, or "" for one whose `__str__` raises."""
    try:
        return str(error)
    except Exception:
        return ""


_NETWORK = re.compile(
    r"download|HF_HUB_OFFLINE|offline mode|couldn't connect|Max retries|"
    r"Name or service not known|name resolution|Network is unreachable|getaddrinfo",
    re.IGNORECASE,
)
_GPU = re.compile(r"\bcuda\b|nvidia|\bgpu\b|compiled with CUDA", re.IGNORECASE)
NO_WEIGHTS = (
    "counting needs no weights: set pretrained = false (or the library's equivalent) in kwargs"
)


# Set by `cnnbudget summary` and `plot` for a target given on the command line, whose kwargs are
# `--kwargs '{…}'` rather than a table's `kwargs = { … }`.
COMMAND_LINE: ContextVar[bool] = ContextVar("COMMAND_LINE", default=False)


def build_hint(error: BaseException) -> str | None:
    """A one-line hint for the failures a gate sees most: weights to download, a GPU."""
    for e in chain(error):
        text = message(e)
        if isinstance(e, Unreachable):
            return NO_WEIGHTS
        # The GPU first: a CUDA build's "Found no NVIDIA driver" links to a driver download.
        if _GPU.search(text):
            return "the constructor needs a GPU; guard it or build on meta"
        if isinstance(e, ConnectionError | TimeoutError) or _NETWORK.search(text):
            return NO_WEIGHTS
    return None


def missing_arguments_hint(
    factory: Callable[..., Any], kwargs: Mapping[str, Any], error: BaseException
) -> str | None:
    """`CifarNet needs num_classes (int): add it to the model's kwargs: kwargs = { … }`, when
    `error` is the TypeError of a call to `factory` without arguments it requires."""
    if not isinstance(error, TypeError) or "required" not in message(error):
        return None
    missing = _missing(factory, kwargs)
    # The TypeError must be about these: a call inside the constructor may lack its own.
    if not missing or not any(f"'{p.name}'" in message(error) for p in missing):
        return None
    if any(p.kind is p.POSITIONAL_ONLY for p in missing):
        return None  # given only by position (`_args_`), which a keyword line cannot show
    names = [p.name + _annotation(p) for p in missing]
    needs = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    them = "it" if len(missing) == 1 else "them"
    if COMMAND_LINE.get():
        # `cnnbudget summary pkg:Model`: its kwargs are --kwargs, a JSON object.
        pairs = [
            f"{json.dumps(k)}: {json.dumps(v, default=str, ensure_ascii=False)}"
            for k, v in kwargs.items()
        ]
        pairs += [f"{json.dumps(p.name)}: …" for p in missing]
        return f"{_name(factory)} needs {needs}: give {them} with --kwargs '{{{', '.join(pairs)}}}'"
    shown = [f"{_toml_key(k)} = {_toml(v)}" for k, v in kwargs.items()]
    start = ", ".join(shown) + ", " if "…" not in "".join(shown) else "…, "
    added = ", ".join(f"{_toml_key(p.name)} = …" for p in missing)
    line = "kwargs = { " + (start if kwargs else "") + added + " }"
    return f"{_name(factory)} needs {needs}: add {them} to the model's kwargs: {line}"


def _missing(factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> list[inspect.Parameter]:
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # a builtin or an object without a signature
        return []
    positional = kwargs.get("_args_")
    given = len(positional) if isinstance(positional, list | tuple) else 0
    out = []
    for i, p in enumerate(parameters):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
            continue
        if p.kind is not p.KEYWORD_ONLY and i < given:
            continue
        if p.name not in kwargs:
            out.append(p)
    return out


def _annotation(parameter: inspect.Parameter) -> str:
    kind = parameter.annotation
    if kind is parameter.empty:
        return ""
    text = kind if isinstance(kind, str) else getattr(kind, "__name__", None) or str(kind)
    return f" ({clip(text, 40)})"


def _toml(value: Any) -> str:
    """A kwargs value as TOML writes it, for the scalars a config holds and lists of them;
    "…" for the rest."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, int | float) or (isinstance(value, str) and len(value) <= 60):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple) and len(value) <= 8:
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "…"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _name(factory: Callable[..., Any]) -> str:
    inner = getattr(factory, "func", None)  # functools.partial: the function it calls
    named = inner if callable(inner) else factory
    return str(getattr(named, "__qualname__", None) or type(named).__name__)
