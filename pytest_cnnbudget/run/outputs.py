"""The files a gate run writes besides the snapshot: the JSON report, the GitHub job summary and
the charts. Takes rendered content and plain paths; run/finish.py decides when to call them."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import select
import stat
import time
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from ..config.fields import CONTROL
from ..errors import exception_text, os_error_text
from ..jsontext import json_text
from ..report.plot import save_plot
from ..results import ModelResult
from ..snapshot.store import replace_file


class Streams:
    """The outputs that name a pipe rather than a file (`--cnn-budget-json /dev/stdout | jq`,
    a FIFO a reader has open): opened, without waiting, when the run starts, and held until its
    end, so that a reader waiting on a named FIFO is not handed an end of file before the report
    comes. Known by device and inode: `/dev/stdout` resolves to no path that could be opened
    again. Writes to them are bounded by STREAM_TIMEOUT."""

    def __init__(self) -> None:
        self.held: dict[tuple[int, int], int] = {}  # (device, inode) → a descriptor for writing

    def probe(self, path: Path) -> str | None:
        """Why `path`, a FIFO, can never be written (nothing reads it), else None and held."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return "names a FIFO that nothing reads, so writing it would wait for ever"
            return f"cannot be opened: {os_error_text(e)}"
        info = os.fstat(fd)
        known = self.held.setdefault((info.st_dev, info.st_ino), fd)
        if known != fd:
            os.close(fd)  # named twice (the JSON report and the comment): one descriptor
        return None

    def write(self, path: Path, data: bytes) -> bool:
        """Write `data` to `path` if it is a stream this run holds; False if it is not."""
        try:
            info = os.stat(path)
        except OSError:
            return False
        fd = self.held.get((info.st_dev, info.st_ino))
        if fd is None:
            return False
        _write_bounded(fd, data, path)
        return True

    def close(self) -> None:
        """Let go of every stream: the end of the run (its reader then sees the end)."""
        for fd in self.held.values():
            with suppress(OSError):
                os.close(fd)
        self.held.clear()


STREAM_TIMEOUT = 10.0  # seconds a pipe's reader may take nothing of an output
STREAM_DEADLINE = 60.0  # seconds a pipe's reader has to take all of it


def _write_bounded(fd: int, data: bytes, path: Path) -> None:
    """Write all of `data` to the non-blocking `fd`, giving up once its reader has taken
    nothing for STREAM_TIMEOUT seconds, or has not taken it all in STREAM_DEADLINE."""
    view = memoryview(data)
    deadline = time.monotonic() + STREAM_DEADLINE
    while view:
        left = deadline - time.monotonic()
        ready = left > 0 and bool(select.select([], [fd], [], min(STREAM_TIMEOUT, left))[1])
        if not ready:
            expired = time.monotonic() >= deadline
            why = (
                f"it was not all read in {STREAM_DEADLINE:.0f} s"
                if expired
                else f"nothing read it for {STREAM_TIMEOUT:.0f} s"
            )
            done = len(data) - len(view)
            part = f"; {done:,} of {len(data):,} bytes were written" if done else ""
            raise TimeoutError(errno.ETIMEDOUT, why + part, str(path))
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue


def output_problems(
    where: Path,
    json_option: str | None,
    plot_option: str | None,
    step_summary: str | None,
    workspace: str | None,
    comment_option: str | None = None,
    streams: Streams | None = None,
    benchmark_option: str | None = None,
    summary_option: str | None = None,
) -> list[str]:
    """Outputs that could never be written, refused before any model is built: the options'
    paths (relative to `where`), and the GitHub variables (None when GitHub output is off). A
    FIFO that a reader has open is held in `streams` for the end of the run."""
    streams = streams if streams is not None else Streams()
    problems = []
    for what, value in (
        ("--cnn-budget-json", json_option),
        ("--cnn-budget-comment", comment_option),
        ("--cnn-budget-benchmark-json", benchmark_option),
        ("--cnn-budget-summary", summary_option),
        ("GITHUB_STEP_SUMMARY=", step_summary),
    ):
        if not value:
            continue
        shown = f"{what}{value!r}" if what.endswith("=") else f"{what} {value!r}"
        if CONTROL.search(value):
            problems.append(f"{shown} holds a control character; name a file")
            continue
        problem = _file_problem(Path(where, value), streams)
        if problem:
            problems.append(f"{shown} {problem}")
    plot = Path(where, plot_option) if plot_option else None
    if plot is not None and plot.exists() and not plot.is_dir():
        problems.append(f"--cnn-budget-plot {plot_option!r} names a file, not a folder")
    # Not isprintable(): a path the file system encoding could not decode (LC_ALL=C and a
    # non-ASCII folder) holds surrogate escapes, and is still the folder it names.
    if workspace is not None and (CONTROL.search(workspace) or not Path(workspace).is_dir()):
        problems.append(f"GITHUB_WORKSPACE={workspace!r} is not a folder")
    return problems


def _file_problem(path: Path, streams: Streams) -> str | None:
    """Why a file output at `path` can never be written, or None: a folder, a socket, a FIFO
    nothing reads (a device such as /dev/stdout is written to, and a FIFO with a reader)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # absent (made at the end), or a parent that is not a folder (said then)
    if stat.S_ISDIR(mode):
        return "names a folder, not a file"
    if stat.S_ISFIFO(mode):
        return streams.probe(path)
    if stat.S_ISSOCK(mode):
        return "names a socket, not a file"
    return None


def failure_text(error: Exception) -> str:
    """Why an output could not be written: the OS's words and the file, else the exception."""
    if isinstance(error, OSError) and error.strerror:
        text = os_error_text(error)
        return f"{text}: {error.filename}" if error.filename else text
    return exception_text(error)


def write_json(path: Path, document: object, streams: Streams | None = None) -> None:
    """Write `document` to `path` (its folders made), stable and reviewable, atomically."""
    text = json_text(document, sort_keys=True)
    write_text(path, text + "\n", streams)


def write_text(path: Path, text: str, streams: Streams | None = None) -> None:
    """Write `text` to `path` (its folders made), replacing what it held, atomically; to a
    stream `streams` holds, or a device, as a bounded write."""
    # Encoded first: a text that cannot be (a lone surrogate) leaves the old file as it was.
    data = text.encode("utf-8")
    if streams is not None and streams.write(path, data):
        return
    if _device(path):
        _write_to_device(path, data)
        return
    # A reader (the CI step posting the comment) sees the old file or the new one, never a part,
    # and a write that fails midway (a full disk) leaves the old file. A FIFO that appeared in
    # the file's place since the run started is replaced, not waited on.
    replace_file(path, data)


def _device(path: Path) -> bool:
    """Whether `path` is a character device (`/dev/stdout` on a terminal, /dev/null): written
    to, as there is no file to replace."""
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def _write_to_device(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _write_bounded(fd, data, path)
    finally:
        os.close(fd)


def append_text(path: Path, text: str, streams: Streams | None = None) -> None:
    """Append `text` to the file at `path`, as GitHub expects of `GITHUB_STEP_SUMMARY`;
    never waiting on a FIFO that appeared in its place."""
    data = text.encode("utf-8")
    if streams is not None and streams.write(path, data):
        return
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags, 0o644)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISCHR(mode):
            raise OSError(errno.EINVAL, "not a file", str(path))
        _write_bounded(fd, data, path)
    finally:
        os.close(fd)


STEM_LENGTH = 60  # of a chart's file name's readable part; a hash may follow
_HASH_DIGITS = 8  # at first; more only where two names' hashes begin alike
_ALL_DIGITS = 64  # of a SHA-256 in hex
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# Names Windows reserves for devices, whatever the extension: `NUL.svg` is the null device.
_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"{port}{n}" for port in ("COM", "LPT") for n in range(10)),
}


def _readable(name: str) -> str:
    """The part of a chart's file name a reader recognises the model by."""
    stem = _UNSAFE.sub("_", name)[:STEM_LENGTH]
    # A leading `.` hides the file; a leading `-` reads as an option to a shell command.
    stem = re.sub(r"^[.-]", "_", stem)
    # A reserved name stays reserved whatever follows its first dot (`NUL.tar.gz` is `NUL`).
    return "_" + stem if stem.split(".")[0].upper() in _RESERVED else stem


def _plain(name: str) -> bool:
    """Whether `name` can be its own file name on every common file system."""
    return bool(name) and _readable(name) == name


def _stem(name: str, digits: int) -> str:
    if not digits:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:digits]
    readable = _readable(name)
    return f"{readable}-{digest}" if readable else digest


def chart_stems(names: Iterable[str]) -> dict[str, str]:
    """A file name (without extension) for each model's chart in one run, unique even on a
    file system that ignores case, of bounded length, and the same in every run of these names.

    A name that is safe as it is stays as it is (`resnet18`). Any other (`a b`, `a/b`, a name
    too long, `CON`) becomes its readable part plus `-` and the start of its SHA-256, as do
    names that would clash with another's, `Net` and `net` alike."""
    unique = sorted(set(names))
    digits = {name: 0 if _plain(name) else _HASH_DIGITS for name in unique}
    while True:
        stems = {name: _stem(name, digits[name]) for name in unique}
        folded: dict[str, list[str]] = {}
        for name, stem in stems.items():
            folded.setdefault(stem.lower(), []).append(name)
        clashing = [name for group in folded.values() if len(group) > 1 for name in group]
        if not clashing or all(digits[name] == _ALL_DIGITS for name in clashing):
            return stems
        # A plain name that meets another's hashed one, or two hashes that share a prefix:
        # both take a hash, or a longer one, until they differ.
        for name in clashing:
            digits[name] = min(2 * digits[name], _ALL_DIGITS) if digits[name] else _HASH_DIGITS


def write_charts(directory: Path, results: Iterable[ModelResult]) -> list[Path]:
    """Each counted model's share chart as `<directory>/<stem>.svg` and `.png`, its stem from
    `chart_stems`."""
    counted = [(r, r.count) for r in results if r.count is not None]
    stems = chart_stems(r.name for r, _ in counted)
    written: list[Path] = []
    for result, count in counted:
        title = f"{result.name} ({result.target})"
        written += save_plot(count, directory, stems[result.name], title=title)
    return written
