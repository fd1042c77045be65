"""The only code that reads or writes the snapshot file.

The file is meant to be reviewed in pull requests: sorted keys, two-space indent, one layer per
object, a trailing newline. It is replaced atomically, so an interrupted run leaves either the old
file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .constants import UPDATE_COMMAND
from .errors import SnapshotError
from .results import SnapshotEntry, SnapshotLayer

VERSION = 1
_CONFLICT_MARKERS = ("<<<<<<<", "=======", ">>>>>>>", "|||||||")


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
    """Parse a stored entry; `where` names it in error messages."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} is not an object")
    counts = {key: _int(data, key, where) for key in ("trainable", "total", "frozen", "buffers")}
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise ValueError(f"{where}.layers is missing or not a list")
    rows = []
    for i, layer in enumerate(layers):
        at = f"{where}.layers[{i}]"
        if not isinstance(layer, dict):
            raise ValueError(f"{at} is not an object")
        rows.append(
            SnapshotLayer(
                name=_str(layer, "name", at),
                type=_str(layer, "type", at),
                params=_int(layer, "params", at),
                formula=_str(layer, "formula", at),
                output_shape=_shape(layer, "output_shape", at),
                macs=_int(layer, "macs", at) if "macs" in layer else None,
            )
        )
    has_compute = "macs" in data
    return SnapshotEntry(
        layers=tuple(rows),
        **counts,
        macs=_int(data, "macs", where) if has_compute else None,
        flops=_int(data, "flops", where) if has_compute else None,
        input_shape=_str(data, "input_shape", where) if has_compute else None,
    )


def _int(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{where}.{key} is missing or not an integer")
    return value


def _shape(data: Mapping[str, Any], key: str, where: str) -> tuple[int, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise ValueError(f"{where}.{key} is not a list of sizes")
    return tuple(value)


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key} is missing or not a string")
    return value


def read_snapshot(path: Path) -> dict[str, SnapshotEntry]:
    """All entries of the file at `path`; an absent file is an empty snapshot."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise SnapshotError(f"{path}: cannot read the snapshot: {e.strerror or e}") from e
    return parse_snapshot(text, path)


def parse_snapshot(text: str, path: Path) -> dict[str, SnapshotEntry]:
    """Parse snapshot text; every failure names `path` and says what to do."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(_CONFLICT_MARKERS):
            raise SnapshotError(
                f"{path}: line {number} has a git merge conflict marker ({line[:7]}); resolve "
                f"the conflict, or delete the file and run {UPDATE_COMMAND}"
            )
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise SnapshotError(
            f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
            f"fix it, or delete the file and run {UPDATE_COMMAND}"
        ) from e
    if not isinstance(document, dict):
        raise SnapshotError(f"{path}: expected a JSON object at the top level")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SnapshotError(f"{path}: 'version' is missing or not an integer")
    if version > VERSION:
        raise SnapshotError(
            f"{path}: written by a newer pytest-cnnbudget (format version {version}; this "
            f"version reads {VERSION}); upgrade pytest-cnnbudget"
        )
    if version < 1:
        raise SnapshotError(f"{path}: unknown format version {version}")
    models = document.get("models")
    if not isinstance(models, dict):
        raise SnapshotError(f"{path}: 'models' is missing or not an object")
    try:
        return {name: entry_from_json(entry, f"models.{name}") for name, entry in models.items()}
    except ValueError as e:
        raise SnapshotError(f"{path}: malformed entry: {e}") from e


def dumps(entries: Mapping[str, SnapshotEntry]) -> str:
    """The exact file text for `entries`: stable, sorted, reviewable."""
    document = {
        "version": VERSION,
        "models": {name: entry_to_json(entries[name]) for name in sorted(entries)},
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_snapshot(path: Path, entries: Mapping[str, SnapshotEntry]) -> None:
    """Replace the file at `path` with `entries`, atomically."""
    text = dumps(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # Keep the permissions a user gave the file; mkstemp creates it 0600.
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
