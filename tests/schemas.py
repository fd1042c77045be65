"""The package's JSON Schemas (pytest_cnnbudget/schemas), for validating what it writes."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

NAMES = ("measurement", "model", "report", "summary", "snapshot")


def schema(name: str) -> dict[str, Any]:
    """The schema `<name>.schema.json` as shipped in the package."""
    text = (files("pytest_cnnbudget") / "schemas" / f"{name}.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _registry() -> Registry:
    resources = [(schema(n)["$id"], Resource.from_contents(schema(n))) for n in NAMES]
    return Registry().with_resources(resources)


def problems(document: Any, name: str) -> list[str]:
    """Why `document` does not match schema `name`: one line per error, none when it does."""
    validator = Draft202012Validator(schema(name), registry=_registry())
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(document)'}: {e.message}"
        for e in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]
