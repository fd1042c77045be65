"""JSON text as the package writes it: strict JSON (RFC 8259), never `NaN` or `Infinity`, and the
configured values it echoes in a form JSON has. Pure.

Python's json module writes a float that is not finite as `NaN`, `Infinity` or `-Infinity`, which
JSON has no words for: jq, Go's encoding/json and other strict parsers refuse the whole document.
Every JSON document the package writes (the JSON report, the command line's JSON, the snapshot)
is made by `json_text`, which refuses such a float rather than write it. The one place a
configuration may put one is a model's `kwargs` and `optimizer_kwargs` (TOML writes `inf` and
`nan`, and a constructor's or an optimizer's `inf` is legitimate), so the documents echo those
through `echoed`, which writes such a float as the text `"inf"`, `"-inf"` or `"nan"`.
pytest-json-report dumps our metadata itself: what we hand it is `echoed` already.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def json_text(document: Any, *, sort_keys: bool = False, ascii_only: bool = True) -> str:
    """`document` as strict JSON, indented by two spaces; ValueError for a float that is not
    finite, which no JSON document may hold (`echoed` writes a configured one as text)."""
    return json.dumps(
        document, indent=2, sort_keys=sort_keys, ensure_ascii=ascii_only, allow_nan=False
    )


class DuplicateKeyError(ValueError):
    """A JSON object with a key written twice: legal JSON, which a reader takes as the last
    value alone, so what only the first held would be lost without a word."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key[:200]!r} is written twice in one object")
        self.key = key


def loads(text: str, **options: Any) -> Any:
    """`json.loads`, refusing an object with a key written twice (DuplicateKeyError)."""
    return json.loads(text, object_pairs_hook=_unique, **options)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise DuplicateKeyError(key)
        document[key] = value
    return document


def echoed(value: Any) -> Any:
    """A configured value (kwargs, optimizer_kwargs) as a JSON document echoes it: a float that
    is not finite as `"inf"`, `"-inf"` or `"nan"`, a TOML date or time (or any other value JSON
    has no form for) as its text, tables and arrays item by item."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Mapping):
        # Configured kwargs nest at most MAX_KWARGS_DEPTH levels (config/fields.py checks it).
        return {_key(k): echoed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [echoed(v) for v in value]
    return str(value)


def _key(key: Any) -> Any:
    """A table's key as JSON can hold it: json writes a float key that is not finite as the
    string `"Infinity"`, a key of any other type not at all."""
    if isinstance(key, float) and not math.isfinite(key):
        return echoed(key)
    return key if key is None or isinstance(key, str | int | float) else str(key)
