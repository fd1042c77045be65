"""Where each model's check runs, so that a model that hangs, crashes or changes global state
fails alone, by name, and the run goes on.

By default the checks run in a process forked from pytest's (forked.py, whose make_checker picks
where they run). What a check prints, logs and warns is sent back with its result and replayed in
the test item, where pytest captures it as if the model had run in pytest's own process.

Without `os.fork` (Windows), or with `--cnn-budget-isolation=off` (to step into a constructor
with a debugger), checks run in pytest's process: global state is still restored after each
model, but a model that kills the process ends the run, and a time limit that runs out dumps
where every thread was and ends the run too (`faulthandler`), rather than let it hang.
"""

from __future__ import annotations

import builtins
import contextlib
import faulthandler
import io
import linecache
import logging
import os
import pickle
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO, cast

from ..config.spec import ModelSpec, Order
from ..results import ModelResult


@dataclass(frozen=True)
class Request:
    """One model's check, as the checking process receives it."""

    order: Order  # what the gate is asked
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

    @property
    def spec(self) -> ModelSpec:
        """The model's spec, as the run resolved it."""
        return self.order.spec


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
                data[key] = text_of(value)
        self.records.append(data)


def text_of(value: object) -> str:
    """str(value), or its type's name where str() raises: a model's object may break it."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _warning(message: warnings.WarningMessage) -> CapturedWarning:
    category = message.category
    base = next((k.__name__ for k in category.__mro__ if k.__module__ == "builtins"), "UserWarning")
    return CapturedWarning(
        message=text_of(message.message),
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
    # Both import torch: loaded where a check runs, not where the plugin loads this module.
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
                result = check_model(request.order)
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


def _prints(line: str, message: str) -> bool:
    """Whether a line of stderr is a handler's print of a log message: the message itself, or
    a long enough one after a prefix (`WARNING:hub:`, `[12:00:01] `)."""
    if line == message:
        return True
    cut = len(line) - len(message)
    return len(message) >= 16 and cut > 0 and line.endswith(message) and line[cut - 1] in ": ]|"


def replay(captured: Captured, clean: Callable[[str], str]) -> None:
    """Print, log and warn what a check did, here, where pytest captures it; `clean` is applied
    to warning texts (pytest prints them in its own summary)."""
    if captured.stdout:
        sys.stdout.write(captured.stdout)
    if captured.stderr:
        sys.stderr.write(captured.stderr)
    printed = captured.stderr.splitlines()
    for data in captured.records:
        # A library that logs through a handler of its own onto stderr (huggingface_hub's)
        # would otherwise show each line twice: in captured stderr and in captured log. A
        # record is left out when a line of stderr is its message (after the handler's
        # prefix), each line standing for one record.
        text = data.get("msg")
        if isinstance(text, str) and text.strip():
            first = text.splitlines()[0]
            match = next((i for i, line in enumerate(printed) if _prints(line, first)), None)
            if match is not None:
                del printed[match]
                continue
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

    def start(self) -> None:
        """Get ready for the first check (a checking process is started here, if any)."""

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
