"""A build does not wait out a library's retries of a connection that already failed.

A constructor asked for pretrained weights downloads them; in CI without access to the model hub
its library retries with back-off (huggingface_hub: five tries a file, two files, 49 s) and logs
every try before the build fails anyway. During a build, the first failed name lookup of a host,
or connection to a host and port, raises its own OSError as before (a library's fallback to its
cache, or code that probes for a network, works as it did); trying the same again in the same
build raises `Unreachable` at once, which no library takes for a network error worth retrying (it
is not an OSError), so the build fails after the first try. With the network there, nothing
changes: the lookups and connections are the real ones. Only the thread that builds is affected.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import exception_text


class Unreachable(Exception):
    """A build tried again to reach a host it could not reach (a download, most often of
    weights, retried by its library)."""


_lock = threading.Lock()
_users = 0  # builds in progress, in any thread: the functions are patched while there are some
_real: tuple[Callable[..., Any], Callable[..., Any]] | None = None
_local = threading.local()  # .failed: what the building thread could not reach, and why


def _failed() -> dict[str, str] | None:
    return getattr(_local, "failed", None)


def _refuse(failed: dict[str, str], where: str) -> Unreachable:
    return Unreachable(
        f"cannot reach {where} ({failed[where]}), and tried again; a build does not wait out "
        "a library's retries"
    )


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    assert _real is not None
    failed = _failed()
    if failed is None:  # not the building thread
        return _real[0](host, *args, **kwargs)
    where = str(host)
    if where in failed:
        raise _refuse(failed, where)
    try:
        return _real[0](host, *args, **kwargs)
    except OSError as e:
        failed[where] = exception_text(e)
        raise


def _create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    assert _real is not None
    failed = _failed()
    if failed is None:
        return _real[1](address, *args, **kwargs)  # type: ignore[no-any-return]
    host = str(address[0]) if isinstance(address, tuple) and address else str(address)
    port = address[1] if isinstance(address, tuple) and len(address) > 1 else None
    where = f"{host}:{port}" if port is not None else host
    if where in failed:
        raise _refuse(failed, where)
    try:
        return _real[1](address, *args, **kwargs)  # type: ignore[no-any-return]
    except OSError as e:  # an Unreachable from the lookup inside passes through
        if host not in failed:  # a failed lookup is the host's, not this port's
            failed[where] = exception_text(e)
        raise


@contextmanager
def fail_fast_offline() -> Iterator[None]:
    """Within, in this thread: a lookup or connection that failed once raises Unreachable when
    tried again (see the module's docstring)."""
    global _users, _real
    if _failed() is not None:  # a build inside a build (an object in kwargs): one record
        yield
        return
    with _lock:
        if _users == 0:
            _real = (socket.getaddrinfo, socket.create_connection)
            socket.getaddrinfo = _getaddrinfo
            socket.create_connection = _create_connection
        _users += 1
    _local.failed = {}
    try:
        yield
    finally:
        _local.failed = None
        with _lock:
            _users -= 1
            if _users == 0 and _real is not None:
                socket.getaddrinfo, socket.create_connection = _real
                _real = None
