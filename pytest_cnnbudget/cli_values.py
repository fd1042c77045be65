"""The values of `cnnbudget summary|plot`'s options that say more than a word: `--kwargs` (a
JSON object), `--input-shape` and `--parallel` (a TOML inline table, as the model's table
writes it), each checked as its configuration key is; CommandLineError names the option."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .config.fields import Problems, check_kwargs
from .config.instantiate import kwargs_problems
from .config.parallel import parse_parallel
from .constants import MAX_CONFIG_BYTES
from .errors import CommandLineError
from .inputs import InputSpec, parse_input_shape
from .jsontext import DuplicateKeyError, loads
from .ranks import ParallelOptions
from .units import brief, listing

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]


def kwargs_option(text: str) -> dict[str, Any]:
    """`--kwargs '{"num_classes": 10}'`: the constructor's keyword arguments."""
    _bounded("--kwargs", text)
    try:
        value = loads(text)
    except DuplicateKeyError as e:
        raise CommandLineError(f"--kwargs: {e}; a JSON reader would keep only one") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise CommandLineError(f"--kwargs is not valid JSON ({e}): {brief(text)}") from e
    if not isinstance(value, dict):
        raise CommandLineError(
            f"--kwargs must be a JSON object like '{{\"num_classes\": 10}}', not {brief(text)}"
        )
    try:
        kwargs = check_kwargs(value)
    except ValueError as e:
        raise CommandLineError(f"--kwargs: {e}") from e
    problems = kwargs_problems(kwargs)
    if problems:
        raise CommandLineError(
            "--kwargs: " + listing([f"{at}: {why}" for at, why in problems], "; ")
        )
    return kwargs


def input_spec_option(text: str | None) -> InputSpec | None:
    """`--input-shape 1,3,32,32` (or several inputs, as input_shape takes them)."""
    if text is None:
        return None
    try:
        return parse_input_shape(text)
    except ValueError as e:
        raise CommandLineError(f"--input-shape {text!r}: {e}") from e


def parallel_option(text: str, configured: ParallelOptions | None = None) -> ParallelOptions:
    """`--parallel '{ strategy = "fsdp", world_size = 64 }'`: the `parallel` table inline; over
    a configured model's own table, its keys replace those the table gives and keep the rest
    (`--parallel '{ mixed_precision = "bf16" }'` compares one setting)."""
    _bounded("--parallel", text)
    try:
        value = tomllib.loads(f"parallel = {text}")["parallel"]
    except tomllib.TOMLDecodeError as e:
        raise CommandLineError(
            f"--parallel is not a TOML inline table ({e}): {brief(text)}; write it as the "
            "model's table would, '{ strategy = \"fsdp\", world_size = 8 }'"
        ) from e
    if isinstance(value, dict) and configured is not None:
        value = {**_written(configured), **value}
    problems = Problems(Path("--parallel"))
    options = parse_parallel(problems, "--parallel", value, prefix="")
    if options is None:
        raise CommandLineError("\n".join(["--parallel:", *problems.lines()]))
    return options


def _written(options: ParallelOptions) -> dict[str, Any]:
    """`options` as a table would write them: the keys that differ from their defaults."""
    table: dict[str, Any] = {"strategy": options.strategy, "world_size": options.world_size}
    defaults = ParallelOptions(strategy=options.strategy, world_size=options.world_size)
    for key in ("replicate", "tensor_parallel", "reshard_after_forward", "mixed_precision"):
        if getattr(options, key) != getattr(defaults, key):
            table[key] = getattr(options, key)
    if options.tp_plan:
        table["tp_plan"] = dict(options.tp_plan)
    if options.wrap is not None:
        table["wrap"] = list(options.wrap)
    return table


def _bounded(option: str, text: str) -> None:
    if len(text) > MAX_CONFIG_BYTES:
        raise CommandLineError(
            f"{option} is {len(text):,} characters; at most {MAX_CONFIG_BYTES:,}"
        )
