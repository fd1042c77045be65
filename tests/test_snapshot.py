"""The snapshot file: its exact format, reading it back, every way it can be unreadable, and
replacing it atomically."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import nets
import pytest
import torch

from pytest_cnnbudget.errors import SnapshotError
from pytest_cnnbudget.inputs import parse_input_shape
from pytest_cnnbudget.measurement import measure
from pytest_cnnbudget.results import SnapshotEntry
from pytest_cnnbudget.snapshot import dumps, parse_snapshot, read_snapshot, write_snapshot

PATH = Path("/repo/cnnbudget.snapshot.json")


def entry_of(model: torch.nn.Module, shape: list[int] | None = None) -> SnapshotEntry:
    """The entry that accepts `model` as it is (with compute, when given an input shape)."""
    return SnapshotEntry.from_count(measure(model, parse_input_shape(shape) if shape else None))


@pytest.fixture(scope="module")
def cifar() -> SnapshotEntry:
    """The CIFAR network, run forward on one 32×32 image: shapes and MACs on every layer."""
    with torch.device("meta"):
        return entry_of(nets.Cifar(), [1, 3, 32, 32])


# -- the file format ----------------------------------------------------------------------


def test_the_file_is_sorted_indented_and_ends_with_a_newline() -> None:
    assert dumps({"tiny": entry_of(nets.Tiny())}) == (
        "{\n"
        '  "models": {\n'
        '    "tiny": {\n'
        '      "buffers": 0,\n'
        '      "frozen": 0,\n'
        '      "layers": [\n'
        "        {\n"
        '          "formula": "8×8 + 8",\n'
        '          "name": "fc",\n'
        '          "params": 72,\n'
        '          "type": "Linear"\n'
        "        }\n"
        "      ],\n"
        '      "total": 72,\n'
        '      "trainable": 72\n'
        "    }\n"
        "  },\n"
        '  "version": 1\n'
        "}\n"
    )


def test_models_are_stored_in_name_order_whatever_order_they_ran_in() -> None:
    tiny = entry_of(nets.Tiny())
    text = dumps({"zeta": tiny, "alpha": tiny, "Mid": tiny})
    assert list(json.loads(text)["models"]) == ["Mid", "alpha", "zeta"]
    assert text == dumps({"Mid": tiny, "zeta": tiny, "alpha": tiny})


def test_compute_is_stored_only_for_models_with_an_input_shape(cifar: SnapshotEntry) -> None:
    text = dumps({"cifar": cifar, "tiny": entry_of(nets.Tiny())})
    assert text.count('"macs"') == 1 + 4  # the model's, and one per layer
    assert text.count('"flops"') == text.count('"input_shape"') == 1
    assert '"input_shape": "1×3×32×32"' in text
    assert '"output_shape": [\n            1,\n            128\n          ]' in text


def test_entries_round_trip_with_shapes_and_macs(cifar: SnapshotEntry) -> None:
    entries = {"cifar": cifar, "tiny": entry_of(nets.Tiny(width=3)), "name with spaces": cifar}
    assert parse_snapshot(dumps(entries), PATH) == entries
    assert cifar.macs == nets.CIFAR_MACS
    assert [(layer.name, layer.output_shape) for layer in cifar.layers][2] == ("fc1", (1, 128))


def test_an_absent_file_is_an_empty_snapshot(tmp_path: Path) -> None:
    assert read_snapshot(tmp_path / "cnnbudget.snapshot.json") == {}


def test_a_file_that_cannot_be_read_says_so(tmp_path: Path) -> None:
    with pytest.raises(
        SnapshotError, match=f"^{re.escape(str(tmp_path))}: cannot read the snapshot: "
    ):
        read_snapshot(tmp_path)  # a directory


# -- unreadable snapshots -----------------------------------------------------------------

FIX = "fix it, or delete the file and run pytest --cnn-budget-update"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            '{\n<<<<<<< HEAD\n  "version": 1\n=======\n  "version": 1\n>>>>>>> main\n}\n',
            "line 2 has a git merge conflict marker (<<<<<<<); resolve the conflict, "
            "or delete the file and run pytest --cnn-budget-update",
            id="conflict",
        ),
        pytest.param(
            '{"version": 1, "models": {}}\n|||||||  base\n',
            "line 2 has a git merge conflict marker (|||||||); resolve the conflict, "
            "or delete the file and run pytest --cnn-budget-update",
            id="diff3-conflict",
        ),
        pytest.param(
            '{\n  "version": 1,\n  "models": {,}\n}\n',
            "not valid JSON (Expecting property name enclosed in double quotes at line 3, "
            f"column 14); {FIX}",
            id="json",
        ),
        pytest.param(
            '{"version": 2, "models": {}}\n',
            "written by a newer pytest-cnnbudget (format version 2; this version reads 1); "
            "upgrade pytest-cnnbudget",
            id="newer",
        ),
        pytest.param('{"version": 0, "models": {}}', "unknown format version 0", id="version-0"),
        pytest.param(
            '{"version": true, "models": {}}',
            "'version' is missing or not an integer",
            id="version-bool",
        ),
        pytest.param('{"models": {}}', "'version' is missing or not an integer", id="no-version"),
        pytest.param("[1]", "expected a JSON object at the top level", id="array"),
        pytest.param('{"version": 1}', "'models' is missing or not an object", id="no-models"),
        pytest.param(
            '{"version": 1, "models": {"cifar": {"total": 1}}}',
            "malformed entry: models.cifar.trainable is missing or not an integer",
            id="entry",
        ),
        pytest.param(
            '{"version": 1, "models": {"m": {"trainable": 1, "total": 1, "frozen": 0, '
            '"buffers": 0, "layers": [{"name": "fc", "type": "Linear", "params": "1"}]}}}',
            "malformed entry: models.m.layers[0].params is missing or not an integer",
            id="layer",
        ),
    ],
)
def test_unreadable_snapshots_name_the_file_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(text, PATH)
    assert str(info.value) == f"{PATH}: {message}"


@pytest.mark.parametrize("shape", ['["a"]', "[1.7, true]", "[[1]]"])
def test_a_malformed_output_shape_names_the_layer(shape: str) -> None:
    text = (
        '{"version": 1, "models": {"m": {"trainable": 1, "total": 1, "frozen": 0, "buffers": 0, '
        '"layers": [{"name": "fc", "type": "Linear", "params": 1, "formula": "1", '
        f'"output_shape": {shape}}}]}}}}}}'
    )
    with pytest.raises(SnapshotError, match=r"models\.m\.layers\[0\]\.output_shape"):
        parse_snapshot(text, PATH)


# -- writing ------------------------------------------------------------------------------


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_creates_the_folder_and_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "ci" / "snap.json"
    entries = {"tiny": entry_of(nets.Tiny())}
    write_snapshot(path, entries)
    assert path.read_text(encoding="utf-8") == dumps(entries)
    assert read_snapshot(path) == entries
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert files_in(path.parent) == ["snap.json"]


def test_write_keeps_the_permissions_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    write_snapshot(path, {"tiny": entry_of(nets.Tiny())})
    path.chmod(0o664)
    write_snapshot(path, {"tiny": entry_of(nets.Tiny(width=4))})
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    assert read_snapshot(path)["tiny"].total == 4 * 4 + 4


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    write_snapshot(path, {"tiny": entry_of(nets.Tiny())})
    before = path.read_bytes()

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    # Ctrl-C after the new bytes are written, before they replace the file.
    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_snapshot(path, {"tiny": entry_of(nets.Tiny(width=4))})
    assert path.read_bytes() == before
    assert files_in(tmp_path) == [path.name]
