"""The forked checker: checks in a long-lived process forked from pytest's, so that a model that
hangs or crashes fails alone and the run goes on.

The process is forked after torch is imported and frozen (see collector.py), so the fork copies
nothing and imports nothing. It is forked again only after a model crashed it or ran past its time
limit, as pytest-xdist replaces a crashed worker: one fork per run on the common path, instead of
one per model. Requests and results cross a socket as length-prefixed pickles; what a check prints
goes to spill files that pytest's process reads even after the checking process died; a stuck or
crashed check's result says where it was, from a faulthandler dump.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import gc
import io
import linecache
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
from typing import IO, Any, TextIO

from ..config.locations import model_table
from ..engine.apart import die_with_parent
from ..errors import exception_text
from ..frames import PACKAGE_DIR, is_user_file
from ..results import ModelResult, SourceLocation
from . import collector
from .isolation import Captured, Checked, Checker, InProcess, Request, check_here, text_of

FORK_AVAILABLE = hasattr(os, "fork")
# After the time limit, how long the stack dump of a stuck check may take to appear.
_DUMP_GRACE = 2.0


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


def _keep_one_thread(nthreads: int) -> None:
    """torch.set_num_threads in the checking process: see _serve."""


def _serve(sock: socket.socket, dump: IO[bytes], spills: tuple[_Spill, _Spill]) -> None:
    """The checking process: answer requests until pytest's process closes the socket."""
    # Not at the top: the session loads this module before torch, which collector.py imports
    # with the garbage collector paused.
    import torch

    # Ctrl-C is pytest's to handle; it ends this process by closing the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    # An OpenMP thread pool that pytest's process used before the fork does not exist here,
    # and waiting on it would hang the first parallel operation. Meta tensors compute nothing;
    # a cpu build only fills weights, serially.
    torch.set_num_threads(1)
    # ... nor a model's own torch.set_num_threads(4) (state.py keeps the real function).
    torch.set_num_threads = _keep_one_thread
    gc.enable()  # the parent pauses it inside an item, where a refork happens; see collector.py
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
            from .gate import error_result  # imports torch: see _serve

            message = f"its result could not be sent back: {type(e).__name__}: {text_of(e)}"
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

    def start(self) -> None:
        if self.child is None:
            self._start()

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
            from .gate import error_result  # imports torch: see _serve

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
    from .gate import error_result  # imports torch: see _serve

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
    from .gate import error_result  # imports torch: see _serve

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


def dup_stderr() -> int | None:
    """A descriptor of the terminal's stderr, taken while pytest's capture is suspended: where
    an in-process time limit says where it was stuck. None where there is none."""
    try:
        return os.dup(sys.__stderr__.fileno() if sys.__stderr__ else 2)
    except (OSError, ValueError):
        return None
