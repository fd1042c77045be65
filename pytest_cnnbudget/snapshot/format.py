"""The snapshot's JSON format: the text an entry is written as, and the checks it is read back
through.

The text is meant to be reviewed in pull requests: sorted keys, two-space indent, one layer per
object, a trailing newline. Whatever is parsed is untrusted: every field is typed and bounded,
and every failure is a `SnapshotError` that names the file and the entry, never a traceback from
the JSON parser.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

from ..constants import UPDATE_COMMAND
from ..errors import SnapshotError
from ..jsontext import DuplicateKeyError, json_text, loads
from ..ranks import RANK_FIGURES
from ..results import MEMORY_FIGURES, SnapshotEntry, SnapshotLayer

VERSION = 1

# Bounds on what a snapshot may hold, each far beyond any real model, so that a corrupt or hostile
# file is a clear error instead of a MemoryError, a hang in int() or a row that breaks a table.
MAX_SNAPSHOT_BYTES = 256 * 2**20  # checked before the file is read
MAX_SNAPSHOT_MODELS = 100_000  # stale entries of models no longer configured stay until a full run
MAX_LAYERS = 1_000_000  # parameter-owning layers of one model
MAX_TEXT = 4096  # characters of a model key, layer name, layer type, formula or input shape
MAX_COUNT = 2**63 - 1  # parameters, buffers, MACs, FLOPs or one dimension: an int64
MAX_DIMS = 16  # dimensions of a layer's output shape
_SHOWN_KEY = 200  # characters of a model key that messages quote

_CONFLICT_MARKERS = ("<<<<<<<", "=======", ">>>>>>>", "|||||||")
FIX_HINT = f"fix it, or delete the file and run {UPDATE_COMMAND}"


# -- entries ------------------------------------------------------------------------------


def entry_to_json(entry: SnapshotEntry) -> dict[str, Any]:
    """The entry as stored in the file; compute figures only when the model has an input."""
    data: dict[str, Any] = {
        "trainable": entry.trainable,
        "total": entry.total,
        "frozen": entry.frozen,
        "buffers": entry.buffers,
        "layers": [_layer_to_json(x) for x in entry.layers],
    }
    if entry.macs is not None:
        data.update(macs=entry.macs, flops=entry.flops, input_shape=entry.input_shape)
    if entry.memory is not None:
        data["memory"] = dict(entry.memory)
    return data


def _layer_to_json(layer: SnapshotLayer) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": layer.name,
        "type": layer.type,
        "params": layer.params,
        "formula": layer.formula,
    }
    if layer.output_shape is not None:
        data["output_shape"] = list(layer.output_shape)
    if layer.macs is not None:
        data["macs"] = layer.macs
    return data


def entry_from_json(data: Any, where: str) -> SnapshotEntry:
    """Parse a stored entry; `where` names it in the SnapshotError of any malformed field."""
    if not isinstance(data, dict):
        raise SnapshotError(f"{where} is not an object")
    counts = {key: _count(data, key, where) for key in ("trainable", "total", "frozen", "buffers")}
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise SnapshotError(f"{where}.layers is missing or not a list")
    if len(layers) > MAX_LAYERS:
        raise SnapshotError(f"{where}.layers has {len(layers):,} layers; at most {MAX_LAYERS:,}")
    rows = []
    for i, layer in enumerate(layers):
        at = f"{where}.layers[{i}]"
        if not isinstance(layer, dict):
            raise SnapshotError(f"{at} is not an object")
        rows.append(
            SnapshotLayer(
                name=_text(layer, "name", at),
                type=_text(layer, "type", at),
                params=_count(layer, "params", at),
                formula=_text(layer, "formula", at),
                output_shape=_shape(layer, "output_shape", at),
                macs=_count(layer, "macs", at) if "macs" in layer else None,
            )
        )
    has_compute = "macs" in data
    return SnapshotEntry(
        memory=_memory(data, where) if "memory" in data else None,
        layers=tuple(rows),
        **counts,
        macs=_count(data, "macs", where) if has_compute else None,
        flops=_count(data, "flops", where) if has_compute else None,
        input_shape=_text(data, "input_shape", where) if has_compute else None,
    )


def _memory(data: dict[str, Any], where: str) -> tuple[tuple[str, int], ...]:
    """The stored memory figures, each a byte count, in the order Memory.figures gives them."""
    figures = data["memory"]
    at = f"{where}.memory"
    if not isinstance(figures, dict):
        raise SnapshotError(f"{at} is not an object")
    known = (*MEMORY_FIGURES, *RANK_FIGURES)
    unknown = sorted(set(figures) - set(known))
    if unknown:
        raise SnapshotError(f"{at} has an unknown figure {unknown[0]!r}")
    return tuple((key, _count(figures, key, at)) for key in known if key in figures)


class _Huge:
    """What the parser makes of an integer too long for an int64, instead of calling int() on it:
    int() is quadratic in the digits, and refuses over 4,300 of them with a bare ValueError."""


_HUGE = _Huge()


def _parse_int(digits: str) -> int | _Huge:
    return int(digits) if len(digits) <= len(str(-MAX_COUNT)) else _HUGE


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if value is _HUGE or (_is_int(value) and not 0 <= value <= MAX_COUNT):
        raise SnapshotError(f"{where}.{key} is out of range: a count is 0 to {MAX_COUNT:,}")
    if not _is_int(value):
        raise SnapshotError(f"{where}.{key} is missing or not an integer")
    return value


def _shape(data: Mapping[str, Any], key: str, where: str) -> tuple[int, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    # The length first: a list of a million sizes is refused without looking at each.
    if isinstance(value, list) and len(value) > MAX_DIMS:
        raise SnapshotError(
            f"{where}.{key} has {len(value):,} dimensions; a shape has at most {MAX_DIMS}"
        )
    if not isinstance(value, list) or not all(_is_int(d) and 0 <= d <= MAX_COUNT for d in value):
        raise SnapshotError(f"{where}.{key} is not a list of sizes")
    return tuple(value)


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise SnapshotError(f"{where}.{key} is missing or not a string")
    problem = _text_problem(value)
    if problem:
        raise SnapshotError(f"{where}.{key} {problem}")
    return value


def _text_problem(value: str) -> str:
    """Why `value` cannot be stored ('' if it can): too long, or not encodable as UTF-8."""
    if len(value) > MAX_TEXT:
        return f"is {len(value):,} characters long; at most {MAX_TEXT:,}"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # JSON's \ud800 escapes decode to lone surrogates, which no UTF-8 file can hold.
            return "is not valid Unicode (it holds a lone surrogate)"
    return ""


def quote(text: str) -> str:
    """`text` as a message quotes it: repr() unless printable, so that no newline or escape
    sequence from a file or a key can break the message's line or forge another."""
    return text if text.isprintable() else repr(text)


def _where(name: str) -> str:
    """How messages name the entry of model `name`: `models.<name>`, shortened when over-long."""
    if len(name) > _SHOWN_KEY:
        return f"models.{quote(name[:_SHOWN_KEY])}…"
    return f"models.{quote(name)}"


def _entries(models: Mapping[str, Any]) -> dict[str, SnapshotEntry]:
    """Every entry of the `models` object, validated; SnapshotError naming the first bad one."""
    if len(models) > MAX_SNAPSHOT_MODELS:
        raise SnapshotError(f"{len(models):,} models; at most {MAX_SNAPSHOT_MODELS:,}")
    entries = {}
    for name, entry in models.items():
        problem = _text_problem(name)
        if problem:
            raise SnapshotError(f"the key of {_where(name)} {problem}")
        entries[name] = entry_from_json(entry, _where(name))
    return entries


# -- the document -------------------------------------------------------------------------


def parse_snapshot(text: str, path: Path) -> dict[str, SnapshotEntry]:
    """Parse snapshot text; every failure names `path` and says what to do."""
    return parse_document(text, path)[0]


def parse_document(text: str, path: Path) -> tuple[dict[str, SnapshotEntry], str | None]:
    """Parse snapshot text: its entries, and the config file it records as its writer (a path
    relative to its folder; None where its writer is the `pyproject.toml` beside it)."""
    shown = quote(str(path))
    if len(text) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"{shown}: larger than {MAX_SNAPSHOT_BYTES // 2**20} MiB; {FIX_HINT}")
    conflict = _first_conflict_marker(text)
    if conflict:
        line, marker = conflict
        raise SnapshotError(
            f"{shown}: line {line} has a git merge conflict marker ({marker}); resolve "
            f"the conflict, or delete the file and run {UPDATE_COMMAND}"
        )
    try:
        # A byte-order mark from a Windows editor is not part of the JSON text.
        document = loads(text.removeprefix("\ufeff"), parse_int=_parse_int)
    except DuplicateKeyError as e:
        raise SnapshotError(
            f"{shown}: {e}, and a JSON reader would keep only one of them; {FIX_HINT}"
        ) from None
    except json.JSONDecodeError as e:
        raise SnapshotError(
            f"{shown}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); {FIX_HINT}"
        ) from e
    except RecursionError as e:
        # The parser recurses once per nesting level; no snapshot nests more than four deep.
        raise SnapshotError(f"{shown}: not a snapshot (JSON nested too deeply); {FIX_HINT}") from e
    if not isinstance(document, dict):
        raise SnapshotError(f"{shown}: expected a JSON object at the top level")
    version = document.get("version")
    if version is _HUGE:
        raise SnapshotError(f"{shown}: unknown format version (a number too long to read)")
    if not _is_int(version):
        raise SnapshotError(f"{shown}: 'version' is missing or not an integer")
    if version > VERSION:
        raise SnapshotError(
            f"{shown}: written by a newer pytest-cnnbudget (format version {version}; this "
            f"version reads {VERSION}); upgrade pytest-cnnbudget"
        )
    if version < 1:
        raise SnapshotError(f"{shown}: unknown format version {version}")
    models = document.get("models")
    if not isinstance(models, dict):
        raise SnapshotError(f"{shown}: 'models' is missing or not an object")
    config = document.get("config")
    if config is not None and (not isinstance(config, str) or _text_problem(config)):
        raise SnapshotError(f"{shown}: 'config' is not the path of a config file")
    try:
        return _entries(models), config
    except SnapshotError as e:
        raise SnapshotError(f"{shown}: malformed entry: {e}") from e


def _first_conflict_marker(text: str) -> tuple[int, str] | None:
    """The line number and marker of the first line that starts with a git conflict marker."""
    # str.find per marker rather than a loop over lines or a multiline regex: a tenth of the time
    # on a large file. A marker inside a JSON string cannot start a line: every line of the file
    # but the outer braces is indented.
    found = []
    for marker in _CONFLICT_MARKERS:
        if text.startswith(marker):
            found.append((0, marker))
        elif (at := text.find("\n" + marker)) >= 0:
            found.append((at + 1, marker))
    if not found:
        return None
    at, marker = min(found)
    return text.count("\n", 0, at) + 1, marker


def dumps(entries: Mapping[str, SnapshotEntry], config: str | None = None) -> str:
    """The exact file text for `entries`: stable, sorted, reviewable; `config` records the
    config file that writes it, where that is not the `pyproject.toml` beside it."""
    document: dict[str, Any] = {
        "version": VERSION,
        "models": {name: entry_to_json(entries[name]) for name in sorted(entries)},
    }
    if config is not None:
        document["config"] = config
    return json_text(document, sort_keys=True, ascii_only=False) + "\n"


def entry_problem(name: str, entry: SnapshotEntry) -> str | None:
    """Why the snapshot could not hold `entry` under `name` (None if it can): checked when the
    model is judged, so that one model's entry fails that model, never the whole file."""
    try:
        _entries({name: entry_to_json(entry)})
    except SnapshotError as e:
        return str(e)
    return None


def check_entries(entries: Mapping[str, SnapshotEntry]) -> None:
    """Raise the SnapshotError that reading `entries` back from their text would raise."""
    _entries({name: entry_to_json(entry) for name, entry in entries.items()})
