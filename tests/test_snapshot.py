"""The snapshot file: its exact format, reading it back, every way it can be unreadable or
hostile, replacing it atomically (through links, leaving no temporary file), and locking it for
concurrent updates. Real files and real processes throughout."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nets
import pytest
import torch

from pytest_cnnbudget.engine.measurement import measure
from pytest_cnnbudget.errors import SnapshotError
from pytest_cnnbudget.inputs import parse_input_shape
from pytest_cnnbudget.results import SnapshotEntry, SnapshotLayer
from pytest_cnnbudget.snapshot import format as snapshot_format
from pytest_cnnbudget.snapshot import store as snapshot
from pytest_cnnbudget.snapshot.format import MAX_SNAPSHOT_BYTES, dumps, parse_snapshot
from pytest_cnnbudget.snapshot.store import LockedSnapshot, locked, read_snapshot, write_snapshot

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


# -- hostile snapshots --------------------------------------------------------------------

RAW = "<raw>"  # a field whose JSON text the test writes itself: no json.dumps can produce it
COUNT_RANGE = "is out of range: a count is 0 to 9,223,372,036,854,775,807"


def snapshot_text(key: str = "m", raw: str = "", **fields: Any) -> str:
    """A one-model, one-layer snapshot; `fields` replace the entry's or the layer's own."""
    layer = {"name": "fc", "type": "Linear", "params": 1, "formula": "1"}
    entry: dict[str, Any] = {"trainable": 1, "total": 1, "frozen": 0, "buffers": 0}
    for name, value in fields.items():
        (layer if name in (*layer, "output_shape", "macs") else entry)[name] = value
    text = json.dumps({"version": 1, "models": {key: {**entry, "layers": [layer]}}})
    return text.replace(json.dumps(RAW), raw)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            snapshot_text(name="fc\x00").encode().replace(b"\\u0000", b"\xff"),
            f"not UTF-8 text (byte 0xff at line 1, byte offset 110); {FIX}",
            id="non-utf8-byte",
        ),
        pytest.param(
            snapshot_text(total=RAW, raw="[" * 100_000 + "]" * 100_000),
            f"not a snapshot (JSON nested too deeply); {FIX}",
            id="nested-100000-deep",
        ),
        pytest.param(
            snapshot_text(total=RAW, raw="9" * 5000),
            f"malformed entry: models.m.total {COUNT_RANGE}",
            id="5000-digit-int",
        ),
        pytest.param(
            snapshot_text(params=2**63),
            f"malformed entry: models.m.layers[0].params {COUNT_RANGE}",
            id="2**63",
        ),
        pytest.param(
            snapshot_text(total=-1), f"malformed entry: models.m.total {COUNT_RANGE}", id="negative"
        ),
        pytest.param(
            snapshot_text(macs=-5),
            f"malformed entry: models.m.layers[0].macs {COUNT_RANGE}",
            id="negative-layer-macs",
        ),
        pytest.param(
            snapshot_text(buffers=1.5),
            "malformed entry: models.m.buffers is missing or not an integer",
            id="float",
        ),
        pytest.param(
            snapshot_text(frozen=RAW, raw="NaN"),
            "malformed entry: models.m.frozen is missing or not an integer",
            id="nan",
        ),
        pytest.param(
            snapshot_text(output_shape=[None]),
            "malformed entry: models.m.layers[0].output_shape is not a list of sizes",
            id="null-in-shape",
        ),
        pytest.param(
            snapshot_text(output_shape=[1, -3]),
            "malformed entry: models.m.layers[0].output_shape is not a list of sizes",
            id="negative-dimension",
        ),
        pytest.param(
            snapshot_text(output_shape=[1] * 17),
            "malformed entry: models.m.layers[0].output_shape has 17 dimensions; a shape has "
            "at most 16",
            id="17-dims",
        ),
        pytest.param(
            snapshot_text(name="n" * 4097),
            "malformed entry: models.m.layers[0].name is 4,097 characters long; at most 4,096",
            id="long-name",
        ),
        pytest.param(
            snapshot_text(formula="f" * 10_000),
            "malformed entry: models.m.layers[0].formula is 10,000 characters long; at most 4,096",
            id="long-formula",
        ),
        pytest.param(
            snapshot_text(type="\ud800"),
            "malformed entry: models.m.layers[0].type is not valid Unicode (it holds a lone "
            "surrogate)",
            id="lone-surrogate",
        ),
        pytest.param(
            snapshot_text(key="bad\nkey", total="1"),
            "malformed entry: models.'bad\\nkey'.total is missing or not an integer",
            id="newline-in-key",
        ),
        pytest.param(
            snapshot_text(key="\x1b[2K\rok", total="1"),
            "malformed entry: models.'\\x1b[2K\\rok'.total is missing or not an integer",
            id="escape-sequence-in-key",
        ),
        pytest.param(
            snapshot_text(key="k" * 5000),
            f"malformed entry: the key of models.{'k' * 200}… is 5,000 characters long; "
            "at most 4,096",
            id="long-key",
        ),
        pytest.param(
            '{"version": ' + "9" * 30 + "}",
            "unknown format version (a number too long to read)",
            id="huge-version",
        ),
    ],
)
def test_every_malformed_field_is_a_snapshot_error_naming_the_file_and_the_field(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(SnapshotError) as info:
        read_snapshot(path)
    assert str(info.value) == f"{path}: {message}"
    assert "\n" not in str(info.value)  # nothing from the file can start a line of its own


def test_a_file_over_256_mib_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_SNAPSHOT_BYTES + 1)  # sparse: no disk, and no time to read
    with pytest.raises(SnapshotError) as info:
        read_snapshot(path)
    assert str(info.value) == (
        f"{path}: larger than 256 MiB, far beyond any snapshot pytest-cnnbudget writes; {FIX}"
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_in_the_snapshots_place_is_refused_not_waited_on(tmp_path: Path) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    os.mkfifo(path)
    with pytest.raises(SnapshotError) as info:
        read_snapshot(path)  # an open() for reading would wait for a writer forever
    assert str(info.value) == f"{path}: cannot read the snapshot: not a file"


@pytest.mark.parametrize(
    ("bound", "message"),
    [
        ("MAX_SNAPSHOT_MODELS", "3 models; at most 2"),
        ("MAX_LAYERS", "models.a.layers has 3 layers; at most 2"),
    ],
)
def test_the_entry_and_layer_counts_are_bounded(
    monkeypatch: pytest.MonkeyPatch, bound: str, message: str
) -> None:
    layers = tuple(SnapshotLayer(f"fc{i}", "Linear", 1, "1") for i in range(3))
    entry = SnapshotEntry(trainable=3, total=3, frozen=0, buffers=0, layers=layers)
    text = dumps(dict.fromkeys("abc", entry))
    monkeypatch.setattr(snapshot_format, bound, 2)
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(text, PATH)
    assert str(info.value) == f"{PATH}: malformed entry: {message}"


def test_a_path_that_is_not_printable_is_quoted(tmp_path: Path) -> None:
    path = tmp_path / "evil\nname.json"
    path.write_text("[1]", encoding="utf-8")
    with pytest.raises(SnapshotError) as info:
        read_snapshot(path)
    assert str(info.value) == f"{str(path)!r}: expected a JSON object at the top level"


def test_a_byte_order_mark_from_a_windows_editor_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    tiny = {"tiny": entry_of(nets.Tiny())}
    path.write_bytes(b"\xef\xbb\xbf" + dumps(tiny).encode("utf-8"))
    assert read_snapshot(path) == tiny


def test_values_at_every_bound_round_trip(tmp_path: Path) -> None:
    most = 2**63 - 1
    layer = SnapshotLayer("n" * 4096, "T" * 4096, most, "f" * 4096, (most,) * 16, most)
    entry = SnapshotEntry(most, most, most, most, (layer,), most, most, "s" * 4096)
    path = tmp_path / "cnnbudget.snapshot.json"
    write_snapshot(path, {"k" * 4096: entry, "ключ ✓": entry})
    assert read_snapshot(path) == {"k" * 4096: entry, "ключ ✓": entry}


# -- writing ------------------------------------------------------------------------------


@pytest.fixture(params=["unnamed", "named"])
def temporaries(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """Each write test twice: with Linux's unnamed O_TMPFILE file, and with the named fallback."""
    if request.param == "unnamed":
        if not snapshot.USE_O_TMPFILE:
            pytest.skip("O_TMPFILE needs Linux with /proc")
        try:
            os.close(os.open(tmp_path, snapshot._O_TMPFILE | os.O_WRONLY, 0o600))
        except OSError as e:
            pytest.skip(f"the file system of {tmp_path} has no O_TMPFILE: {e.strerror}")
    monkeypatch.setattr(snapshot, "USE_O_TMPFILE", request.param == "unnamed")
    return str(request.param)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_creates_the_folder_and_a_readable_file(tmp_path: Path, temporaries: str) -> None:
    path = tmp_path / "ci" / "snap.json"
    entries = {"tiny": entry_of(nets.Tiny())}
    write_snapshot(path, entries)
    assert path.read_text(encoding="utf-8") == dumps(entries)
    assert read_snapshot(path) == entries
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not the temporary file's 0600
    assert files_in(path.parent) == ["snap.json"]


def test_write_keeps_the_permissions_of_the_file_it_replaces(
    tmp_path: Path, temporaries: str
) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    write_snapshot(path, {"tiny": entry_of(nets.Tiny())})
    path.chmod(0o664)
    write_snapshot(path, {"tiny": entry_of(nets.Tiny(width=4))})
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    assert read_snapshot(path)["tiny"].total == 4 * 4 + 4


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temporaries: str
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


@pytest.mark.parametrize("relative", [True, False], ids=["relative-link", "absolute-link"])
def test_a_linked_snapshot_is_written_through_its_link(
    tmp_path: Path, temporaries: str, relative: bool
) -> None:
    repo, store = tmp_path / "repo", tmp_path / "store"
    repo.mkdir()
    target = store / "real.json"
    write_snapshot(target, {"tiny": entry_of(nets.Tiny())})
    target.chmod(0o640)
    link = repo / "cnnbudget.snapshot.json"
    link.symlink_to(os.path.relpath(target, repo) if relative else target)
    pointer = os.readlink(link)
    entries = {"tiny": entry_of(nets.Tiny(width=4))}
    write_snapshot(link, entries)
    assert link.is_symlink()
    assert os.readlink(link) == pointer
    assert target.read_text(encoding="utf-8") == dumps(entries)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert files_in(repo) == ["cnnbudget.snapshot.json"]
    assert files_in(store) == ["real.json"]


def test_a_link_to_a_file_not_there_yet_creates_the_file(tmp_path: Path, temporaries: str) -> None:
    link = tmp_path / "cnnbudget.snapshot.json"
    target = tmp_path / "elsewhere" / "first.json"
    link.symlink_to(target)
    entries = {"tiny": entry_of(nets.Tiny())}
    write_snapshot(link, entries)
    assert link.is_symlink()
    assert read_snapshot(target) == read_snapshot(link) == entries
    assert files_in(target.parent) == ["first.json"]


def test_a_write_removes_temporary_files_of_earlier_interrupted_writes(
    tmp_path: Path, temporaries: str
) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    stale = [".cnnbudget.snapshot.json.k3j4h5g6.tmp", ".cnnbudget.snapshot.json.0a1b2c3d4e5f.tmp"]
    others = [
        ".cnnbudget.snapshot.json.tmp",  # nothing between the prefix and the suffix
        ".cnnbudget.snapshot.json.k3j4h5g6.bak",
        ".other.json.k3j4h5g6.tmp",
        "cnnbudget.snapshot.json.k3j4h5g6.tmp",
    ]
    for name in stale + others:
        (tmp_path / name).write_text("{", encoding="utf-8")
    write_snapshot(path, {"tiny": entry_of(nets.Tiny())})
    assert files_in(tmp_path) == sorted([path.name, *others])


def test_a_failed_replace_leaves_no_temporary_file(tmp_path: Path, temporaries: str) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    path.mkdir()  # the rename cannot replace a folder
    with pytest.raises(SnapshotError) as info:
        write_snapshot(path, {"tiny": entry_of(nets.Tiny())})
    assert str(info.value) == f"{path}: cannot write the snapshot: Is a directory (EISDIR)"
    assert isinstance(info.value.__cause__, IsADirectoryError)
    assert files_in(tmp_path) == [path.name]
    assert files_in(path) == []


SYSFS = Path("/sys/kernel")


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not SYSFS.is_dir(),
    reason="needs Linux's sysfs, where no process, root included, may create a file",
)
def test_a_write_the_os_refuses_names_the_path_and_the_reason(temporaries: str) -> None:
    path = SYSFS / "cnnbudget.snapshot.json"
    before = files_in(SYSFS)
    with pytest.raises(SnapshotError) as info:
        write_snapshot(path, {"tiny": entry_of(nets.Tiny())})
    assert str(info.value) == f"{path}: cannot write the snapshot: Permission denied (EACCES)"
    assert isinstance(info.value.__cause__, PermissionError)
    assert files_in(SYSFS) == before


def test_a_folder_that_cannot_be_created_is_a_snapshot_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    path = blocker / "ci" / "snap.json"
    with pytest.raises(SnapshotError) as info:
        write_snapshot(path, {"tiny": entry_of(nets.Tiny())})
    assert str(info.value) == f"{path}: cannot write the snapshot: Not a directory (ENOTDIR)"
    with pytest.raises(SnapshotError) as info, locked(path):
        pytest.fail("locked a folder that cannot exist")
    assert str(info.value) == f"{path}: cannot lock {path.parent}: Not a directory (ENOTDIR)"


def test_write_refuses_entries_it_could_not_read_back(tmp_path: Path) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    negative = SnapshotEntry(trainable=-1, total=-1, frozen=0, buffers=0, layers=())
    with pytest.raises(SnapshotError) as info:
        write_snapshot(path, {"m": negative})
    assert str(info.value) == f"{path}: cannot write the snapshot: models.m.trainable {COUNT_RANGE}"
    with pytest.raises(SnapshotError) as info:
        write_snapshot(path, {"m\udc80": entry_of(nets.Tiny())})
    assert str(info.value) == (
        f"{path}: cannot write the snapshot: the key of models.'m\\udc80' is not valid Unicode "
        "(it holds a lone surrogate)"
    )
    assert files_in(tmp_path) == []


# -- in another process -------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter: a real second process."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=ENV, capture_output=True, text=True, timeout=120
    )


OVER_THE_FILE_SIZE_LIMIT = """
import resource, signal, sys
from pathlib import Path
from pytest_cnnbudget.snapshot import store as snapshot
from pytest_cnnbudget.errors import SnapshotError
from pytest_cnnbudget.results import SnapshotEntry, SnapshotLayer

path, temporaries, on_limit = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
snapshot.USE_O_TMPFILE = temporaries == "unnamed"
if on_limit == "killed":
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG. Restored, the signal
    # kills the process mid-write the way kill -9 does: no except, no finally runs.
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
layers = tuple(SnapshotLayer(f"layer{i}", "Linear", i, "1") for i in range(100))  # 13 kB
try:
    snapshot.write_snapshot(path, {"big": SnapshotEntry(0, 0, 0, 0, layers)})
except SnapshotError as e:
    print(e)
"""

needs_rlimit = pytest.mark.skipif(
    not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE and SIGXFSZ (POSIX)"
)


@needs_rlimit
def test_a_write_past_the_file_size_limit_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, temporaries: str
) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    write_snapshot(path, {"tiny": entry_of(nets.Tiny())})
    before = path.read_bytes()
    run = python(OVER_THE_FILE_SIZE_LIMIT, str(path), temporaries, "raises")
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{path}: cannot write the snapshot: File too large (EFBIG)\n"
    assert path.read_bytes() == before
    assert files_in(tmp_path) == [path.name]


@needs_rlimit
def test_a_write_killed_mid_way_leaves_the_old_file_and_nothing_the_next_write_keeps(
    tmp_path: Path, temporaries: str
) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    write_snapshot(path, {"tiny": entry_of(nets.Tiny())})
    before = path.read_bytes()
    run = python(OVER_THE_FILE_SIZE_LIMIT, str(path), temporaries, "killed")
    assert run.returncode == -signal.SIGXFSZ, run.stderr
    assert path.read_bytes() == before
    left = [name for name in files_in(tmp_path) if name != path.name]
    # The unnamed file went with the process; the named fallback's stays until the next write.
    assert len(left) == (0 if temporaries == "unnamed" else 1)
    assert all(name.startswith(f".{path.name}.") and name.endswith(".tmp") for name in left)
    write_snapshot(path, {"tiny": entry_of(nets.Tiny(width=4))})
    assert files_in(tmp_path) == [path.name]


# -- locking ------------------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from pytest_cnnbudget.snapshot.store import locked

path, log, hold = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
with locked(path) as current:
    print("held" if current.held else "unlocked", flush=True)
    if hold == "until-told":
        sys.stdin.readline()
    else:
        time.sleep(float(hold))
    with log.open("a") as handle:
        handle.write("first releases\\n")
"""


@contextmanager
def held_elsewhere(path: Path, log: Path, hold: str = "until-told") -> Iterator[None]:
    """Another process inside `locked(path)`: yields once it holds the lock, and lets it go (or
    waits out its `hold` seconds) on leaving."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(log), hold],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "held\n"
        yield
    finally:
        _, err = process.communicate("\n", timeout=120)
        assert process.returncode == 0, err


needs_flock = pytest.mark.skipif(not snapshot.HAVE_FLOCK, reason="no flock on this platform")


@needs_flock
def test_locked_reads_what_is_on_disk_and_leaves_no_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "first" / "update" / "cnnbudget.snapshot.json"
    entries = {"tiny": entry_of(nets.Tiny())}
    with locked(path) as current:
        assert current == LockedSnapshot(entries={}, held=True)
        write_snapshot(path, entries)
    with locked(path) as current:
        assert current == LockedSnapshot(entries=entries, held=True)
    assert files_in(path.parent) == [path.name]


@needs_flock
def test_a_second_update_waits_until_the_first_releases_the_lock(tmp_path: Path) -> None:
    path, log = tmp_path / "repo" / "snap.json", tmp_path / "log.txt"
    with held_elsewhere(path, log, hold="0.5"):
        start = time.monotonic()
        with locked(path, timeout=60):
            waited = time.monotonic() - start
            with log.open("a") as handle:
                handle.write("second acquires\n")
    assert log.read_text(encoding="utf-8").splitlines() == ["first releases", "second acquires"]
    assert waited > 0.25


@needs_flock
def test_a_lock_held_past_the_timeout_is_a_snapshot_error(tmp_path: Path) -> None:
    path = tmp_path / "repo" / "snap.json"
    with held_elsewhere(path, tmp_path / "log.txt"):
        start = time.monotonic()
        with pytest.raises(SnapshotError) as info, locked(path, timeout=0.2):
            pytest.fail("entered a lock another process holds")
        assert time.monotonic() - start >= 0.2
    folder = os.path.realpath(path.parent)
    assert str(info.value) == (
        f"{path}: another pytest --cnn-budget-update has held the lock on {folder} for 0.2 s; "
        "let it finish, then re-run pytest --cnn-budget-update"
    )
    with locked(path, timeout=0) as current:  # free once the other process let go
        assert current.held


@needs_flock
def test_a_link_and_the_file_it_points_to_share_one_lock(tmp_path: Path) -> None:
    target, link = tmp_path / "store" / "real.json", tmp_path / "repo" / "snap.json"
    link.parent.mkdir()
    link.symlink_to(target)
    with (
        held_elsewhere(link, tmp_path / "log.txt"),
        pytest.raises(SnapshotError, match="held the lock"),
        locked(target, timeout=0.1),
    ):
        pytest.fail("entered a lock another process holds through a link")


UPDATER = """
import sys, time
from pathlib import Path
from pytest_cnnbudget.results import SnapshotEntry
from pytest_cnnbudget.snapshot.store import locked, write_snapshot

path, who, start = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))  # both processes begin together
for i in range(5):
    with locked(path) as current:
        entries = dict(current.entries)
        entries[f"{who}{i}"] = SnapshotEntry(trainable=i, total=i, frozen=0, buffers=0, layers=())
        time.sleep(0.02)  # widen the window in which an unlocked update loses the other's key
        write_snapshot(path, entries)
"""


@needs_flock
def test_concurrent_read_merge_writes_from_two_processes_keep_every_key(tmp_path: Path) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    start = str(time.time() + 1.0)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", UPDATER, str(path), who, start],
            env=ENV,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in "ab"
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    assert sorted(read_snapshot(path)) == [f"{who}{i}" for who in "ab" for i in range(5)]
    assert files_in(tmp_path) == [path.name]


@needs_flock
def test_the_lock_is_released_when_the_update_fails(tmp_path: Path) -> None:
    path = tmp_path / "cnnbudget.snapshot.json"
    with pytest.raises(RuntimeError), locked(path):
        raise RuntimeError
    path.write_text("[1]", encoding="utf-8")
    with pytest.raises(SnapshotError, match="expected a JSON object"), locked(path):
        pytest.fail("a malformed snapshot was read")
    path.unlink()
    with locked(path, timeout=0) as current:
        assert current.held


def test_without_flock_an_update_proceeds_unlocked_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows has no fcntl; NFS without lockd refuses flock with ENOLCK. Both mean no lock.
    monkeypatch.setattr(snapshot, "HAVE_FLOCK", False)
    path = tmp_path / "new" / "cnnbudget.snapshot.json"
    entries = {"tiny": entry_of(nets.Tiny())}
    with locked(path) as current:
        assert current == LockedSnapshot(entries={}, held=False)
        write_snapshot(path, entries)
    with locked(path) as current:
        assert current == LockedSnapshot(entries=entries, held=False)
