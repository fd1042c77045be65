"""A build stops at the first connection that fails: it needs no weights.

A constructor asked for pretrained weights downloads them; in CI without access to the model hub
its library retries with back-off (huggingface_hub: five tries a file, two files, 49 s) and logs
every try before the build fails anyway. During a build the first failed name lookup or
connection raises `Unreachable`, which no library takes for a network error worth retrying (it
is not an OSError), so the build fails in the time one lookup takes. With the network there,
nothing changes: the lookup and the connection are the real ones.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import exception_text


class Unreachable(Exception):
    """A build tried to reach a host it cannot reach (a download, most often of weights)."""


def _host(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


@contextmanager
def fail_fast_offline() -> Iterator[None]:
    """Within: a failed `socket.getaddrinfo` or `socket.create_connection` raises Unreachable,
    and every later one to the same host fails at once."""
    lookup, connect = socket.getaddrinfo, socket.create_connection
    failed: dict[str, str] = {}

    def refuse(host: str, error: OSError | None) -> Unreachable:
        if error is not None:
            failed.setdefault(host, exception_text(error))
        return Unreachable(
            f"cannot reach {host} ({failed[host]}); a build stops at the first connection "
            "that fails instead of retrying it"
        )

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host) in failed:
            raise refuse(str(host), None)
        try:
            return lookup(host, *args, **kwargs)
        except OSError as e:
            raise refuse(str(host), e) from e

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        host = _host(address)
        if host in failed:
            raise refuse(host, None)
        try:
            return connect(address, *args, **kwargs)
        except Unreachable:
            raise
        except OSError as e:
            raise refuse(host, e) from e

    socket.getaddrinfo = getaddrinfo
    socket.create_connection = create_connection
    try:
        yield
    finally:
        socket.getaddrinfo, socket.create_connection = lookup, connect
