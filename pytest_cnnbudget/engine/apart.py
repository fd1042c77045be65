"""A call made in a forked child of this process, its result (or error) brought back: for work
that would leave this process changed for good.

A backward pass on fake tensors starts autograd's device threads, and a process whose
autograd has started them cannot fork a child that runs backward ("Unable to handle autograd's
threading in combination with fork-based multiprocessing"). The per-rank trace runs apart so
that the process calling it (pytest's, for a `cnn_budget` fixture call; the gate's checker)
keeps forking as it did. Where there is no fork (Windows), the call runs here.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from ..errors import MemoryTraceError, exception_text

T = TypeVar("T")


def apart(call: Callable[[], T], what: str) -> T:
    """`call()`, made in a forked child: its value, or the exception it raised (one that does
    not pickle becomes a MemoryTraceError with its text); MemoryTraceError naming `what` if the
    child dies first."""
    if not hasattr(os, "fork"):
        return call()
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read)
        code = 0
        try:
            try:
                outcome: tuple[bool, object] = (True, call())
            except BaseException as e:
                outcome = (False, e)
            try:
                data = pickle.dumps(outcome)
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
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        cause = (
            f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
            if os.WIFSIGNALED(status)
            else f"exit status {os.WEXITSTATUS(status)}"
        )
        raise MemoryTraceError(f"{what}: its process ended before answering ({cause})")
    ok, value = pickle.loads(data)
    if ok:
        return value  # type: ignore[no-any-return]
    assert isinstance(value, BaseException)
    raise value
