"""Where each model's check runs, so that a model that hangs, crashes or changes global state
fails alone, by name, and the run goes on.

By default the checks run in one long-lived process forked from pytest's, after torch is
imported and frozen (see collector.py), so the fork copies nothing and imports nothing. That
process is forked again only after a model crashed it or ran past its time limit, as
pytest-xdist replaces a crashed worker: one fork per run on the common path, instead of one per
model. What a check prints, logs and warns is sent back with its result and replayed in the
test item, where pytest captures it as if the model had run in pytest's own process.

Without `os.fork` (Windows), or with `--cnn-budget-isolation=off` (to step into a constructor
with a debugger), checks run in pytest's process: global state is still restored after each
model, but a model that kills the process ends the run, and a time limit that runs out dumps
where every thread was and ends the run too (`faulthandler`), rather than let it hang.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import faulthandler
import gc
import io
import linecache
import logging
import os
import pickle
import re
import selectors
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TextIO, cast

from ..config.settings import ModelSpec, model_table
from ..errors import exception_text
from ..results import ModelResult, SnapshotEntry, SourceLocation
from . import collector
from .locate import PACKAGE_DIR, is_user_file

FORK_AVAILABLE = hasattr(os, "fork")
# After the time limit, how long the stack dump of a stuck check may take to appear.
_DUMP_GRACE = 2.0


@dataclass(frozen=True)
class Request:
    """One model's check, as the checking process receives it."""

    spec: ModelSpec
    stored: SnapshotEntry | None
    snapshot_enabled: bool
    update: bool
    timeout: float | None  # seconds; None: no limit
    # The test item's warning filters and root log level, so that `-W error` and `log_level`
    # apply in the checking process as they would in pytest's.
    filters: tuple[Any, ...] = ()
    log_level: int = logging.WARNING
    # Set by the forked process, which ignores SIGINT: a KeyboardInterrupt there can only come
    # from the model's code, and is its failure rather than the end of the run.
    interrupt_is_the_models: bool = False
    # False under `-s`: what the model prints goes straight to the terminal, as it happens.
    redirect: bool = True


@dataclass(frozen=True)
class CapturedWarning:
    """A warning a check raised, in a form that crosses processes without importing its module."""

    message: str
    category: str  # "module.QualName"
    base: str  # the built-in warning class it derives from, e.g. "UserWarning"
    filename: str
    lineno: int


@dataclass(frozen=True)
class Captured:
    """What a check printed, logged and warned."""

    stdout: str = ""
    stderr: str = ""
    records: tuple[dict[str, Any], ...] = ()  # logging.LogRecord attributes, message formatted
    warnings: tuple[CapturedWarning, ...] = ()


@dataclass(frozen=True)
class Checked:
    """A check's result and what it printed on the way."""

    result: ModelResult | None  # None: the check raised `raised`
    captured: Captured
    raised: Raised | None = None
    retire: bool = False  # the checking process must not check another model


@dataclass(frozen=True)
class Raised:
    """One of pytest's own outcomes, raised by a model's code (`pytest.skip()` in a constructor
    when weights or a GPU are missing): not a failure, but raised again in the test item. Sent
    by name: pytest's outcome classes cannot be pickled."""

    kind: str  # the exception's class name: "Skipped", "XFailed", "Failed", "Exit"
    message: str


def picklable_filters() -> tuple[Any, ...]:
    """This process's warning filters, less any that cannot be sent to another process."""
    kept = []
    for entry in warnings.filters:
        try:
            pickle.dumps(entry)
        except Exception:
            continue
        kept.append(entry)
    return tuple(kept)


# -- one check, wherever it runs ----------------------------------------------------------------


class _Records(logging.Handler):
    """Keeps log records as plain attributes (the way logging's SocketHandler pickles them)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        data = dict(record.__dict__)
        try:
            data["msg"] = record.getMessage()
        except Exception as e:  # a record whose arguments do not fit its format
            data["msg"] = f"{record.msg!r} (could not be formatted: {type(e).__name__})"
        data["args"] = None
        if record.exc_info:
            data["exc_text"] = logging.Formatter().formatException(record.exc_info)
        data["exc_info"] = None
        for key, value in data.items():
            # Exact types: an IntEnum or a str subclass would be pickled by reference, and
            # unpickling it would import the model's module into pytest's process.
            if type(value) not in (str, int, float, bool, type(None)):
                data[key] = _text(value)
        self.records.append(data)


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _warning(message: warnings.WarningMessage) -> CapturedWarning:
    category = message.category
    base = next((k.__name__ for k in category.__mro__ if k.__module__ == "builtins"), "UserWarning")
    return CapturedWarning(
        message=_text(message.message),
        category=f"{category.__module__}.{category.__qualname__}",
        base=base,
        filename=str(message.filename),
        lineno=int(message.lineno or 0),
    )


_PYTEST_OUTCOMES = frozenset({"Skipped", "XFailed", "Failed", "Exit"})


def _is_pytest_outcome(error: BaseException) -> bool:
    """pytest's own outcome exceptions (which pytest presents as `builtins.Skipped` & co.)."""
    kind = type(error)
    return kind.__name__ in _PYTEST_OUTCOMES and any(
        k.__module__ == "_pytest.outcomes" for k in kind.__mro__
    )


def check_here(
    request: Request, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> Checked:
    """Run one check in this process: global state restored, output and warnings captured (in
    memory, or in `stdout` and `stderr`, whose text the caller collects)."""
    from .gate import check_model, describe_build_error, error_result
    from .state import preserved

    pid = os.getpid()
    out = stdout or io.StringIO()
    err = stderr or io.StringIO()
    keep = contextlib.nullcontext if not request.redirect else None
    raised: Raised | None = None
    handler = _Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    if level != request.log_level:  # setting it clears every logger's cache, even unchanged
        root.setLevel(request.log_level)
    try:
        with (
            preserved(),
            warnings.catch_warnings(record=True) as caught,
            keep() if keep else contextlib.redirect_stdout(out),
            keep() if keep else contextlib.redirect_stderr(err),
        ):
            if request.filters:
                cast("list[Any]", warnings.filters)[:] = request.filters
            try:
                result = check_model(
                    request.spec,
                    request.stored,
                    snapshot_enabled=request.snapshot_enabled,
                    update=request.update,
                )
            except SystemExit as e:
                # sys.exit() in a constructor: that model's failure, not the end of the run.
                message = f"the model's code called sys.exit({e.code!r})"
                result = error_result(request.spec, message, "build")
            except KeyboardInterrupt as e:
                if not request.interrupt_is_the_models:
                    raise  # Ctrl-C, in pytest's own process
                # The checking process ignores SIGINT: the model's own code raised it.
                message = describe_build_error(e).replace(
                    "KeyboardInterrupt", "the model's code raised KeyboardInterrupt", 1
                )
                result = error_result(request.spec, message, "build")
            except BaseException as e:
                if _is_pytest_outcome(e):  # pytest.skip(), pytest.xfail(), pytest.fail()
                    text = getattr(e, "msg", None)
                    result = None
                    raised = Raised(type(e).__name__, text if isinstance(text, str) else "")
                else:  # asyncio.CancelledError, GeneratorExit, a library's own BaseException
                    result = error_result(request.spec, describe_build_error(e), "build")
    finally:
        if os.getpid() != pid:
            # A process the model's code forked, leaving its constructor (sys.exit(), an
            # exception, a return): it must not go on as the checker, or as pytest.
            os._exit(0)
        root.removeHandler(handler)
        if root.level != level:
            root.setLevel(level)
    captured = Captured(
        stdout=out.getvalue() if isinstance(out, io.StringIO) else "",
        stderr=err.getvalue() if isinstance(err, io.StringIO) else "",
        records=tuple(handler.records),
        warnings=tuple(_warning(w) for w in caught),
    )
    return Checked(result, captured, raised)


_MIRRORS: dict[str, type[Warning]] = {}


def _category(warning: CapturedWarning) -> type[Warning]:
    """The warning's class if its module is loaded here, else a stand-in of the same name (the
    parent process never imports a model's module)."""
    module, _, name = warning.category.rpartition(".")
    found = getattr(sys.modules.get(module), name, None)
    if isinstance(found, type) and issubclass(found, Warning):
        return found
    mirror = _MIRRORS.get(warning.category)
    if mirror is None:
        builtin = getattr(builtins, warning.base, UserWarning)
        if not (isinstance(builtin, type) and issubclass(builtin, Warning)):
            builtin = UserWarning
        mirror = _MIRRORS[warning.category] = type(name or "Warning", (builtin,), {})
        mirror.__module__ = module or "builtins"
    return mirror


def _defuse_source(filename: str, lineno: int, clean: Callable[[str], str]) -> None:
    """pytest's warnings summary prints the source line a warning points at; where `clean`
    would change that line, serve a cleaned copy of the file from linecache (an entry without
    an mtime, which linecache never reloads)."""
    line = linecache.getline(filename, lineno)
    if line and clean(line) != line:
        lines = [clean(text) for text in linecache.getlines(filename)]
        linecache.cache[filename] = (None, None, lines, filename)  # type: ignore[assignment]


def replay(captured: Captured, clean: Callable[[str], str]) -> None:
    """Print, log and warn what a check did, here, where pytest captures it; `clean` is applied
    to warning texts (pytest prints them in its own summary)."""
    if captured.stdout:
        sys.stdout.write(captured.stdout)
    if captured.stderr:
        sys.stderr.write(captured.stderr)
    for data in captured.records:
        record = logging.makeLogRecord(data)
        logging.getLogger(record.name).handle(record)
    for w in captured.warnings:
        _defuse_source(w.filename, w.lineno, clean)
        # Shown once already where it was raised, under the same filters: a filter that turns
        # it into an error here too would fail the item with a traceback instead.
        with contextlib.suppress(Warning):
            warnings.warn_explicit(clean(w.message), _category(w), w.filename, w.lineno)


# -- where checks run ---------------------------------------------------------------------------


class Checker:
    """Runs checks; `close` when the run is over."""

    def check(self, request: Request) -> Checked:
        """One model's check."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the checker holds."""


class InProcess(Checker):
    """Checks in pytest's own process (no fork, or isolation turned off); a time limit that runs
    out writes where it was stuck to `stderr` (a descriptor of the terminal's stderr, taken
    before pytest captured it: its capture file would swallow the dump), then ends the run."""

    def __init__(self, stderr: int | None = None) -> None:
        self.stderr = stderr

    def check(self, request: Request) -> Checked:
        if request.timeout:
            # No way to stop a stuck check from inside its own process; end the run with
            # where it was stuck, rather than hang until CI kills the job without a word.
            out = self.stderr if self.stderr is not None else 2
            faulthandler.dump_traceback_later(request.timeout, exit=True, file=out)
        try:
            return check_here(request)
        finally:
            if request.timeout:
                faulthandler.cancel_dump_traceback_later()


class _Timeout(Exception):
    pass


def _send(sock: socket.socket, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(struct.pack("!Q", len(data)) + data)


# How often a wait for a reply checks that the checking process is still alive: a process the
# model forked can hold the socket open after the checking process died.
_POLL = 0.5


def _read(
    sock: socket.socket,
    size: int,
    deadline: float | None,
    alive: Callable[[], bool] = lambda: True,
) -> bytes:
    chunks = []
    with selectors.DefaultSelector() as selector:  # select() fails on descriptors above 1023
        selector.register(sock, selectors.EVENT_READ)
        while size:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise _Timeout
                if selector.select(_POLL if left is None else min(left, _POLL)):
                    break
                if not alive():
                    raise EOFError
            chunk = sock.recv(min(size, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            size -= len(chunk)
    return b"".join(chunks)


def _receive(
    sock: socket.socket, deadline: float | None, alive: Callable[[], bool] = lambda: True
) -> Any:
    (size,) = struct.unpack("!Q", _read(sock, 8, deadline, alive))
    return pickle.loads(_read(sock, size, deadline, alive))


def _die_with_parent() -> None:
    """On Linux, be killed when pytest's process dies, even by SIGKILL: a check stuck in a loop
    would otherwise outlive the run (elsewhere, a closed socket ends the process between
    checks)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)


def _keep_one_thread(nthreads: int) -> None:
    """torch.set_num_threads in the checking process: see _serve."""


def _serve(sock: socket.socket, dump: IO[bytes], spills: tuple[_Spill, _Spill]) -> None:
    """The checking process: answer requests until pytest's process closes the socket."""
    import torch

    # Ctrl-C is pytest's to handle; it ends this process by closing the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    # An OpenMP thread pool that pytest's process used before the fork does not exist here,
    # and waiting on it would hang the first parallel operation. Meta tensors compute nothing;
    # a cpu build only fills weights, serially.
    torch.set_num_threads(1)
    # ... nor a model's own torch.set_num_threads(4) (state.py keeps the real function).
    torch.set_num_threads = _keep_one_thread
    gc.enable()  # forked inside a paused item; see collector.py
    faulthandler.enable(file=dump, all_threads=True)
    while True:
        try:
            request: Request = _receive(sock, None)
        except (EOFError, OSError):
            return
        os.ftruncate(dump.fileno(), 0)
        os.lseek(dump.fileno(), 0, os.SEEK_SET)
        if request.timeout:
            faulthandler.dump_traceback_later(request.timeout, file=dump)
        threads = threading.active_count()
        out, err = (spill.start() for spill in spills)
        try:
            with collector.paused():
                ours = dataclasses.replace(request, interrupt_is_the_models=True)
                checked = check_here(ours, out, err)
        finally:
            faulthandler.cancel_dump_traceback_later()
            out.close()
            err.close()
        printed = dataclasses.replace(
            checked.captured, stdout=spills[0].text(), stderr=spills[1].text()
        )
        checked = dataclasses.replace(checked, captured=printed)
        if threading.active_count() > threads:
            # A thread the model started runs on, and could end this process during the next
            # model's check, which would be blamed: a fresh process checks the next one.
            checked = dataclasses.replace(checked, retire=True)
        try:
            _send(sock, checked)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            from .gate import error_result

            message = f"its result could not be sent back: {type(e).__name__}: {_text(e)}"
            _send(sock, Checked(error_result(request.spec, message, "check"), Captured()))


class _Spill:
    """An unnamed file for one stream of the checking process, which pytest's process reads
    even after the checking process died: what a model printed before it crashed or hung is
    what explains it."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the process lives

    def start(self) -> TextIO:
        """An empty stream for the next check, written straight through to the file."""
        os.ftruncate(self.file.fileno(), 0)
        raw = os.fdopen(os.dup(self.file.fileno()), "wb", buffering=0)
        return io.TextIOWrapper(
            raw, encoding="utf-8", errors="backslashreplace", write_through=True
        )

    def text(self) -> str:
        size = os.fstat(self.file.fileno()).st_size
        return os.pread(self.file.fileno(), size, 0).decode("utf-8", "replace")


@dataclass
class _Child:
    pid: int
    sock: socket.socket
    dump: IO[bytes]
    spills: tuple[_Spill, _Spill]  # stdout, stderr
    status: int | None = None  # the wait status, once reaped

    def captured(self) -> Captured:
        """What the check that just ended printed (see _Spill)."""
        return Captured(stdout=self.spills[0].text(), stderr=self.spills[1].text())

    def dump_text(self, wait: float = 0.0) -> str:
        """What faulthandler wrote: the stack of a stuck or crashed check."""
        deadline = time.monotonic() + wait
        size = -1
        while True:
            # Until it stops growing: faulthandler writes the dump a frame at a time.
            now = os.fstat(self.dump.fileno()).st_size
            if (now and now == size) or time.monotonic() >= deadline:
                return os.pread(self.dump.fileno(), now, 0).decode("utf-8", "replace")
            size = now
            time.sleep(0.02)

    def exited(self) -> bool:
        """Whether the process has ended; reaps it if so (`end` then returns its status)."""
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        return self.status is not None

    def end(self, wait: float) -> int:
        """Close the socket, give the process `wait` seconds to end, then SIGKILL it; its wait
        status."""
        self.sock.close()
        if not wait and not self.exited():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + wait
        while not self.exited():
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                _, self.status = os.waitpid(self.pid, 0)
                break
            time.sleep(0.01)
        self.dump.close()
        for spill in self.spills:
            spill.file.close()
        return self.status or 0


class Forked(Checker):
    """Checks in a long-lived forked process, forked again after a crash or a timeout."""

    def __init__(self) -> None:
        self.child: _Child | None = None
        self.forks = 0

    def _start(self) -> _Child:
        ours, theirs = socket.socketpair()
        dump = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the process lives
        spills = (_Spill(), _Spill())
        # Python 3.12+ warns about forking a process with threads; the checking process only
        # ever runs this module's loop, and leaves through os._exit.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked process, which coverage misses
            code = 0
            try:
                ours.close()
                _serve(theirs, dump, spills)
            except BaseException:
                code = 70
            finally:
                os._exit(code)
        theirs.close()
        self.forks += 1
        self.child = _Child(pid, ours, dump, spills)
        return self.child

    def check(self, request: Request) -> Checked:
        if self.child is not None and self.child.exited():
            # Died between checks (the OOM killer, a stray signal): not this model's doing.
            self.child.end(wait=0)
            self.child = None
        child = self.child or self._start()
        deadline = time.monotonic() + request.timeout if request.timeout else None
        try:
            _send(child.sock, request)
            checked: Checked = _receive(child.sock, deadline, lambda: not child.exited())
            if checked.retire:
                self.child = None
                child.end(wait=0)
            return checked
        except _Timeout:
            stuck = child.dump_text(wait=_DUMP_GRACE)
            self.child = None
            printed = child.captured()
            child.end(wait=0)
            return Checked(_timeout_result(request, stuck), printed)
        except (EOFError, OSError):
            self.child = None
            dump = child.dump_text()
            printed = child.captured()
            # The socket closes as the process exits; let it finish dying, so that its status
            # is its own and not the SIGKILL sent to make sure.
            status = child.end(wait=2.0)
            return Checked(_crash_result(request, status, dump), printed)
        except Exception as e:  # a reply that cannot be read back
            from .gate import error_result

            self.child = None
            child.end(wait=0)
            message = f"its result could not be read back: {exception_text(e)}"
            return Checked(error_result(request.spec, message, "check"), Captured())
        except BaseException:
            # Ctrl-C while waiting: never read this reply as the next request's.
            self.child = None
            child.end(wait=0)
            raise

    def close(self) -> None:
        if self.child is not None:
            self.child.end(wait=2.0)
            self.child = None


def make_checker(isolation: str, stderr: int | None = None) -> Checker:
    """`"fork"` (where available) or `"off"`; `stderr` see InProcess."""
    return Forked() if isolation == "fork" and FORK_AVAILABLE else InProcess(stderr)


# -- what a stuck or crashed check says ---------------------------------------------------------

_FRAME = re.compile(r'^\s*File "(?P<path>.*)", line (?P<line>\d+) in (?P<func>.*)$')


def _user_frames(dump: str) -> list[tuple[str, int, str]]:
    """The frames of the first thread in a faulthandler dump that are the user's code (not
    ours, torch's, pytest's or the standard library's), innermost last."""
    frames: list[tuple[str, int, str]] = []
    for block in re.split(r"\n(?=(?:Current thread|Thread) 0x)", dump):
        found = [m for m in map(_FRAME.match, block.splitlines()) if m]
        if any(m["path"].startswith(PACKAGE_DIR + os.sep) for m in found):  # the checking thread
            frames = [(m["path"], int(m["line"]), m["func"]) for m in found]
            break
    # Innermost first: what lies beyond our own innermost frame is the model's code; what lies
    # outside our outermost is pytest's, as it was when the process was forked.
    ours = [i for i, f in enumerate(frames) if f[0].startswith(PACKAGE_DIR + os.sep)]
    frames = frames[: ours[0]] if ours else frames
    user = [f for f in frames if is_user_file(f[0])]
    return user[::-1]  # faulthandler lists the innermost first


def _where(dump: str, heading: str) -> tuple[list[str], SourceLocation | None]:
    frames = _user_frames(dump)[-4:]
    if not frames:
        return [], None
    summaries = [
        traceback.FrameSummary(path, line, func, line=linecache.getline(path, line).strip())
        for path, line, func in frames
    ]
    lines = [heading, *(s.rstrip("\n") for s in traceback.format_list(summaries))]
    path, line, _ = frames[-1]
    return lines, SourceLocation(path, line)


def _timeout_result(request: Request, dump: str) -> ModelResult:
    from .gate import error_result

    limit = f"{request.timeout:g}"
    lines = [f"did not finish within its time limit of {limit} s, and was stopped"]
    where, source = _where(dump, "it was at (innermost last):")
    lines += where
    lines.append(
        f"if it needs longer, raise `timeout` in {model_table(request.spec.name)} or pass "
        "--cnn-budget-timeout SECONDS (0: no limit)"
    )
    return error_result(request.spec, "\n".join(lines), "timeout", source)


def _crash_result(request: Request, status: int, dump: str) -> ModelResult:
    from .gate import error_result

    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        how = f"was killed by {name} (signal {number})"
    else:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        how = f"exited with status {code} (os._exit, or native code that ended the process)"
    lines = [f"the process checking this model {how}; the other models were checked after it"]
    where, source = _where(dump, "it was at (innermost last):")
    lines += where
    return error_result(request.spec, "\n".join(lines), "crash", source)
