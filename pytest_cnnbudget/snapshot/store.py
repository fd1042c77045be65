"""The only code that reads or writes the snapshot file.

The file is meant to be reviewed in pull requests: sorted keys, two-space indent, one layer per
object, a trailing newline. It is replaced atomically, so an interrupted run leaves either the old
file or the new one, never a mix, and no temporary file. A read-merge-write holds `locked()`, so
two concurrent updates (xdist runs, two terminals, CI jobs on one checkout) both land.

Whatever is on disk is untrusted: every field is typed and bounded, and every failure is a
`SnapshotError` that names the file and the entry, never a traceback from the JSON parser.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from ..constants import DEFAULT_SNAPSHOT, UPDATE_COMMAND
from ..errors import SnapshotError, os_error_text
from ..results import MEMORY_FIGURES, SnapshotEntry, SnapshotLayer

try:
    import fcntl
except ImportError:  # Windows: no flock; updates proceed unlocked and the caller says so
    HAVE_FLOCK = False
else:
    HAVE_FLOCK = True

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

LOCK_TIMEOUT = 60.0  # seconds `locked()` waits for another update before giving up

# Linux can write the new text to a file with no name and give it one just before the rename, so
# even a kill -9 mid-write leaves nothing behind. It needs /proc to name the file. Tests set this
# to False to exercise the fallback (a named temporary file, removed on any exception).
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
USE_O_TMPFILE = bool(_O_TMPFILE) and os.path.isdir("/proc/self/fd")

# open(O_TMPFILE) where the file system (or a kernel before 3.11) cannot do it.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
# flock() where the file system has no locks: NFS without lockd, some FUSE and SMB mounts. EBADF
# too: Linux's NFS client emulates flock with a write lock on the whole file, which a folder,
# opened only for reading, cannot take (flock(2), "NFS details").
_NO_LOCKS = frozenset(
    {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS, errno.EBADF}
)

_CONFLICT_MARKERS = ("<<<<<<<", "=======", ">>>>>>>", "|||||||")
_FIX = f"fix it, or delete the file and run {UPDATE_COMMAND}"


@dataclass(frozen=True)
class LockedSnapshot:
    """The snapshot as read under `locked()`; `held` is False where locks are unsupported."""

    entries: dict[str, SnapshotEntry]
    held: bool


# -- the format ---------------------------------------------------------------------------


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
    unknown = sorted(set(figures) - set(MEMORY_FIGURES))
    if unknown:
        raise SnapshotError(f"{at} has an unknown figure {unknown[0]!r}")
    return tuple((key, _count(figures, key, at)) for key in MEMORY_FIGURES if key in figures)


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


def _shown(text: str) -> str:
    """`text` as a message quotes it: repr() unless printable, so that no newline or escape
    sequence from a file or a key can break the message's line or forge another."""
    return text if text.isprintable() else repr(text)


def _where(name: str) -> str:
    """How messages name the entry of model `name`: `models.<name>`, shortened when over-long."""
    if len(name) > _SHOWN_KEY:
        return f"models.{_shown(name[:_SHOWN_KEY])}…"
    return f"models.{_shown(name)}"


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


# -- reading ------------------------------------------------------------------------------


def read_snapshot(path: Path) -> dict[str, SnapshotEntry]:
    """All entries of the file at `path`; an absent file is an empty snapshot."""
    try:
        data = _read_bounded(path)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise SnapshotError(
            f"{_shown(str(path))}: cannot read the snapshot: {os_error_text(e)}"
        ) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SnapshotError(
            f"{_shown(str(path))}: not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}, "
            f"byte offset {e.start}); {_FIX}"
        ) from e
    return parse_snapshot(text, path)


def read_baseline(path: Path) -> dict[str, SnapshotEntry]:
    """A base branch's snapshot (--cnn-budget-baseline): read as the snapshot is, but a
    missing file is an error, and an empty one, what `git show` leaves when the base branch has
    no snapshot yet, holds no models."""
    shown = f"--cnn-budget-baseline {_shown(str(path))}"
    try:
        data = _read_bounded(path)
    except FileNotFoundError:
        raise SnapshotError(
            f"{shown}: no such file; write it first, e.g. git show "
            f"origin/main:{DEFAULT_SNAPSHOT} > {_shown(path.name)}"
        ) from None
    except OSError as e:
        raise SnapshotError(f"{shown}: cannot read it: {os_error_text(e)}") from e
    if not data.strip():
        return {}
    try:
        return parse_snapshot(data.decode("utf-8"), path)
    except UnicodeDecodeError as e:
        raise SnapshotError(f"{shown}: not UTF-8 text (byte offset {e.start})") from e
    except SnapshotError as e:
        raise SnapshotError(f"--cnn-budget-baseline: {e}") from e


def _read_bounded(path: Path) -> bytes:
    """The bytes of the regular file at `path`, refusing one over MAX_SNAPSHOT_BYTES unread."""
    # O_NONBLOCK: a FIFO in the snapshot's place would otherwise block open() forever. O_BINARY:
    # Windows would otherwise translate line ends.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    with open(os.open(path, flags), "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(info.st_mode):
            raise SnapshotError(f"{_shown(str(path))}: cannot read the snapshot: not a file")
        # One byte past the bound as well: the file may have grown since fstat.
        data = handle.read(MAX_SNAPSHOT_BYTES + 1) if info.st_size <= MAX_SNAPSHOT_BYTES else b""
    if info.st_size > MAX_SNAPSHOT_BYTES or len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(
            f"{_shown(str(path))}: larger than {MAX_SNAPSHOT_BYTES // 2**20} MiB, far beyond "
            f"any snapshot pytest-cnnbudget writes; {_FIX}"
        )
    return data


def parse_snapshot(text: str, path: Path) -> dict[str, SnapshotEntry]:
    """Parse snapshot text; every failure names `path` and says what to do."""
    shown = _shown(str(path))
    if len(text) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"{shown}: larger than {MAX_SNAPSHOT_BYTES // 2**20} MiB; {_FIX}")
    conflict = _first_conflict_marker(text)
    if conflict:
        line, marker = conflict
        raise SnapshotError(
            f"{shown}: line {line} has a git merge conflict marker ({marker}); resolve "
            f"the conflict, or delete the file and run {UPDATE_COMMAND}"
        )
    try:
        # A byte-order mark from a Windows editor is not part of the JSON text.
        document = json.loads(text.removeprefix("\ufeff"), parse_int=_parse_int)
    except json.JSONDecodeError as e:
        raise SnapshotError(
            f"{shown}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); {_FIX}"
        ) from e
    except RecursionError as e:
        # The parser recurses once per nesting level; no snapshot nests more than four deep.
        raise SnapshotError(f"{shown}: not a snapshot (JSON nested too deeply); {_FIX}") from e
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
    try:
        return _entries(models)
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


# -- writing ------------------------------------------------------------------------------


def dumps(entries: Mapping[str, SnapshotEntry]) -> str:
    """The exact file text for `entries`: stable, sorted, reviewable."""
    document = {
        "version": VERSION,
        "models": {name: entry_to_json(entries[name]) for name in sorted(entries)},
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_snapshot(path: Path, entries: Mapping[str, SnapshotEntry]) -> None:
    """Replace the file at `path` (or the file it links to) with `entries`, atomically."""
    shown = _shown(str(path))
    try:
        # The same checks as reading: a file this writes must never be one it refuses to read.
        _entries({name: entry_to_json(entry) for name, entry in entries.items()})
    except SnapshotError as e:
        raise SnapshotError(f"{shown}: cannot write the snapshot: {e}") from e
    data = dumps(entries).encode("utf-8")
    # Through a link, not over it: a snapshot kept elsewhere and linked into the repo stays so.
    target = Path(os.path.realpath(path))
    if os.path.islink(path):
        shown = f"{shown} (a link to {_shown(str(target))})"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Keep the permissions a user gave the file; both temporary kinds start at 0600.
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = 0o644
        _remove_stale_temporaries(target)
        _replace(target, data, mode)
    except OSError as e:
        raise SnapshotError(f"{shown}: cannot write the snapshot: {os_error_text(e)}") from e


def _temporary_name(target: Path) -> tuple[str, str]:
    """Prefix and suffix of the temporary files of writes to `target`, stale ones included."""
    return f".{target.name}.", ".tmp"


def _remove_stale_temporaries(target: Path) -> None:
    """Remove what writes killed before this one left: the fallback's named files (an unnamed
    one only in the instant between naming and rename). Writes happen under `locked()`, so none
    belongs to a write still running. Best effort: a leftover must not stop the update."""
    prefix, suffix = _temporary_name(target)
    with suppress(OSError), os.scandir(target.parent) as folder:
        for item in folder:
            name = item.name
            if (
                name.startswith(prefix)
                and name.endswith(suffix)
                and len(name) > len(prefix + suffix)
            ):
                with suppress(OSError):
                    os.unlink(item.path)


def _replace(target: Path, data: bytes, mode: int) -> None:
    """Write `data` to a temporary file beside `target`, flush it to disk, rename it over."""
    fd, tmp = _open_temporary(target)
    unnamed = tmp is None
    try:
        try:
            _write_all(fd, data)
            if unnamed:
                os.fchmod(fd, mode)
            os.fsync(fd)
            if tmp is None:
                tmp = _name_unnamed(fd, target)
        finally:
            os.close(fd)  # before the rename: Windows cannot rename an open file
        if not unnamed:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        # Ctrl-C, a full disk, anything: the old file stays and no temporary one is left.
        if tmp is not None:
            with suppress(OSError):
                tmp.unlink()
        raise
    # The rename is durable only once the folder's entry is on disk too. Best effort: some file
    # systems (and Windows) cannot open or sync a folder.
    with suppress(OSError):
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _open_temporary(target: Path) -> tuple[int, Path | None]:
    """A file descriptor to write the new text to, and the temporary file's path; no path (None)
    when the file has no name yet, so that nothing is left however the process ends."""
    if USE_O_TMPFILE:
        try:
            return os.open(target.parent, _O_TMPFILE | os.O_WRONLY, 0o600), None
        except OSError as e:
            if e.errno not in _NO_TMPFILE:
                raise
    prefix, suffix = _temporary_name(target)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    return fd, Path(name)


def _name_unnamed(fd: int, target: Path) -> Path:
    """Give the O_TMPFILE file `fd` a temporary name beside `target`, for the rename."""
    prefix, suffix = _temporary_name(target)
    # With both folders the default, os.link calls link(2), which links the /proc entry itself
    # (EXDEV); a folder descriptor makes it linkat(2), which follows it to the file.
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        for _ in range(100):
            name = f"{prefix}{os.urandom(6).hex()}{suffix}"
            try:
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=folder, follow_symlinks=True)
            except FileExistsError:
                continue
            return target.parent / name
    finally:
        os.close(folder)
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target.parent))


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written: it may write less (a signal, a file size limit)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- locking ------------------------------------------------------------------------------


@contextmanager
def locked(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[LockedSnapshot]:
    """Hold an exclusive lock for a read-merge-write of the snapshot at `path`; yields what is
    on disk now. Waits up to `timeout` seconds for another holder. Not reentrant."""
    shown = _shown(str(path))
    # The folder the file (or the file it links to) is replaced in: two links to one file share
    # a lock, and no lock file is left in the user's repo.
    folder = Path(os.path.realpath(path)).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _lock(folder, timeout, shown)
    except OSError as e:
        raise SnapshotError(
            f"{shown}: cannot lock {_shown(str(folder))}: {os_error_text(e)}"
        ) from e
    try:
        yield LockedSnapshot(entries=read_snapshot(path), held=fd is not None)
    finally:
        if fd is not None:
            # Unlock before closing: a child forked meanwhile shares the lock, and would hold it
            # until it exits if only our descriptor were closed.
            with suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _lock(folder: Path, timeout: float, shown: str) -> int | None:
    """A descriptor of `folder` holding its exclusive flock; None where there are no locks."""
    if not HAVE_FLOCK:
        return None
    fd = os.open(folder, os.O_RDONLY)
    try:
        held = _acquire(fd, timeout)
    except BaseException:
        os.close(fd)
        raise
    if held is None:
        os.close(fd)
        return None
    if not held:
        os.close(fd)
        raise SnapshotError(
            f"{shown}: another {UPDATE_COMMAND} has held the lock on {_shown(str(folder))} for "
            f"{timeout:g} s; let it finish, then re-run {UPDATE_COMMAND}"
        )
    return fd


def _acquire(fd: int, timeout: float) -> bool | None:
    """Poll for the lock until `timeout`: True once held, False on timeout, None if unsupported.
    Polling rather than a blocking flock, which no timeout can interrupt portably."""
    deadline = time.monotonic() + timeout
    pause = 0.001  # doubling to 50 ms: a quick hand-over, and little CPU over a long wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(pause, remaining))
            pause = min(2 * pause, 0.05)
        except OSError as e:
            if e.errno in _NO_LOCKS:
                return None
            raise
        else:
            return True
