"""A call made in a forked child of this process, its result (or error) brought back: for work
that would leave this process changed for good.

A backward pass on fake tensors starts autograd's device threads, and a process whose
autograd has started them cannot fork a child that runs backward ("Unable to handle autograd's
threading in combination with fork-based multiprocessing"). The per-rank trace runs apart so
that the process calling it (pytest's, for a `cnn_budget` fixture call; the gate's checker)
keeps forking as it did. Where there is no fork (Windows), the call runs here.

The child dies with its parent (Linux), and a parent interrupted while it waits (a timeout,
Ctrl-C) kills and reaps it: a stuck trace never outlives the check that asked for it.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import warnings
from collections.abc import Callable
from typing import TypeVar

from ..errors import MemoryTraceError, exception_text

T = TypeVar("T")


def die_with_parent(parent: int | None = None) -> None:
    """On Linux, be killed when the parent process dies, even by SIGKILL; exit now if it died
    already (`parent`: its pid, as known before the fork; None: any but init)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # only here, in a forked process, and only on Linux

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    now = os.getppid()
    if now == 1 or (parent is not None and now != parent):  # it died before prctl took effect
        os._exit(0)


def apart(call: Callable[[], T], what: str) -> T:
    """`call()`, made in a forked child: its value, or the exception it raised (one that does
    not survive pickling becomes a MemoryTraceError with its text); MemoryTraceError naming
    `what` if the child dies first."""
    if not hasattr(os, "fork"):
        return call()
    parent = os.getpid()
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    # Python 3.12+ warns about forking a process with threads; the child runs `call` alone
    # and leaves through os._exit.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked process, which coverage misses
        os.close(read)
        die_with_parent(parent)
        _answer(call, write)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
    except BaseException:
        # Interrupted while waiting: the child must not run on, nor stay a zombie.
        _kill(pid)
        raise
    try:
        ok, value = pickle.loads(data)
    except Exception:
        cause = (
            f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
            if os.WIFSIGNALED(status)
            else f"exit status {os.WEXITSTATUS(status)}"
        )
        raise MemoryTraceError(f"{what}: its process ended before answering ({cause})") from None
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def _answer(call: Callable[[], object], write: int) -> None:  # pragma: no cover - in the child
    """The child's part: run `call`, send what came of it, exit."""
    code = 0
    try:
        try:
            outcome: tuple[bool, object] = (True, call())
        except BaseException as e:
            outcome = (False, e)
        try:
            data = pickle.dumps(outcome)
            pickle.loads(data)  # an exception whose class cannot be made from its args fails here
        except Exception:
            error = outcome[1]
            text = exception_text(error) if isinstance(error, BaseException) else repr(error)
            data = pickle.dumps((False, MemoryTraceError(text)))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(data)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass
