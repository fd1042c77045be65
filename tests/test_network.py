"""A build that reaches for the network stops at the first failed connection, and says first
that counting needs no weights; with the network there, it runs as before."""

from __future__ import annotations

import http.server
import importlib.util
import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from torch import nn

from pytest_cnnbudget import ModelBuildError, build_model
from pytest_cnnbudget.engine.network import Unreachable
from pytest_cnnbudget.run.isolation import Captured, replay


def retrying_download(url: str, tries: int, attempts: list[str]) -> bytes:
    """What model libraries do with weights: retry a network error a few times."""
    for _ in range(tries):
        attempts.append(url)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bytes(response.read())
        except (urllib.error.URLError, OSError):
            continue
    raise ConnectionError(f"Max retries exceeded with url: {url}")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("failure", ["lookup", "refused"])
def test_a_failed_connection_stops_the_build_at_the_first_try(failure: str) -> None:
    # A name that never resolves (RFC 2606), or a port nothing listens on.
    host = "weights.invalid" if failure == "lookup" else f"127.0.0.1:{closed_port()}"
    url = f"http://{host}/resnet18.pth"
    attempts: list[str] = []

    def pretrained(width: int = 4) -> nn.Module:
        retrying_download(url, 5, attempts)
        return nn.Linear(width, width)

    with pytest.raises(ModelBuildError) as raised:
        build_model(pretrained)
    assert attempts == [url, url]  # the first try failed as it would; the second stops it
    lines = str(raised.value).splitlines()
    assert lines[0] == (
        "hint: counting needs no weights: set pretrained = false (or the library's "
        "equivalent) in kwargs"
    )
    assert lines[1].startswith("building ")
    assert "raised Unreachable: cannot reach " in lines[1]
    assert "and tried again" in lines[1]
    assert isinstance(raised.value.__cause__, Unreachable)
    # Outside a build, sockets are the real ones again.
    assert socket.getaddrinfo.__module__ == "socket"
    assert socket.create_connection.__module__ == "socket"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", closed_port()), timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy that answers would turn each refused connection into its 502.
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)


def test_a_fallback_on_the_first_failure_works_as_before(config_server: str) -> None:
    """A library that falls back to its cache, or code that probes for a network, sees the
    OSError it always saw; another port of the same host is another connection."""
    refused = f"http://127.0.0.1:{closed_port()}/config.json"

    def cached_or_fetched(url: str) -> nn.Module:
        try:
            retrying_download(refused, 1, [])
        except ConnectionError:  # what the library says once its one try failed
            width = 3  # its cached value
        else:
            raise AssertionError("nothing listens there")
        width += json.loads(retrying_download(url, 1, []))["width"]
        return nn.Linear(width, width)

    model = build_model(cached_or_fetched, {"url": config_server})
    assert sum(p.numel() for p in model.parameters()) == 9 * 9 + 9


def test_only_the_building_thread_is_stopped() -> None:
    port = closed_port()
    errors: list[BaseException] = []
    started, done = threading.Event(), threading.Event()

    def elsewhere() -> None:
        started.wait(10)
        for _ in range(2):  # tried twice, as a retrying library would
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5)
            except BaseException as e:
                errors.append(e)
        done.set()

    def building() -> nn.Module:
        started.set()
        assert done.wait(10)
        return nn.Linear(2, 2)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    build_model(building)
    thread.join(10)
    assert [type(e) for e in errors] == [ConnectionRefusedError, ConnectionRefusedError]


@pytest.fixture
def config_server() -> Iterator[str]:
    """A real HTTP server on loopback serving a model config, as a hub would."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"width": 6}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/config.json"
    server.shutdown()
    server.server_close()


def test_with_the_network_there_a_build_downloads_as_before(config_server: str) -> None:
    def from_hub_config(url: str) -> nn.Module:
        width = json.loads(retrying_download(url, 1, []))["width"]
        return nn.Linear(width, width)

    model = build_model(from_hub_config, {"url": config_server})
    assert sum(p.numel() for p in model.parameters()) == 6 * 6 + 6
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_logs_a_library_also_printed_on_stderr_are_replayed_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def record(message: str) -> dict[str, object]:
        data = logging.makeLogRecord({"name": "hub", "msg": message, "levelno": 30}).__dict__
        return {**data, "levelname": "WARNING"}

    captured = Captured(
        stderr=(
            "WARNING:hub:'[Errno -2] Name or service not known' thrown while requesting HEAD x\n"
            "Downloading weights: 100%|###| 44.7M/44.7M\n"
            "UserWarning: falling back to cpu\n"
        ),
        records=(
            record("'[Errno -2] Name or service not known' thrown while requesting HEAD x"),
            record("'[Errno -2] Name or service not known' thrown while requesting HEAD x"),
            record("logged, never printed"),
            record("100%"),  # part of a printed line, not a print of it
            record("cpu"),  # the end of one, too short to say it was
        ),
    )
    with caplog.at_level(logging.WARNING):
        replay(captured, lambda text: text)
    # One printed line stands for one record: the second of two alike was not printed.
    assert [r.getMessage() for r in caplog.records] == [
        "'[Errno -2] Name or service not known' thrown while requesting HEAD x",
        "logged, never printed",
        "100%",
        "cpu",
    ]


def test_pretrained_timm_without_the_hub_fails_at_once_with_the_hint_first(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first hour's case: `pretrained = true` and no route to the hub. huggingface_hub
    retries a network error five times a file with back-off (49 s, two files), logging each
    try, to stderr and to the log alike."""
    # Not imported here: pytester would unload what timm imports of torch after the test, and
    # torch's operator libraries cannot be registered twice in one process.
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")  # never a real download
    monkeypatch.setenv("HF_HOME", str(pytester.path / "hf"))  # an empty cache
    pytester.makepyprojecttoml(
        """
        [tool.cnnbudget]
        snapshot = false

        [tool.cnnbudget.models.r18]
        target = "timm:create_model"
        kwargs = { model_name = "resnet18", pretrained = true }
        max_params = "20M"
        """
    )
    result = pytester.runpytest_subprocess("--cnn-budget", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    start = result.outlines.index("r18: could not build timm:create_model")
    assert result.outlines[start + 1] == (
        "  hint: counting needs no weights: set pretrained = false (or the library's "
        "equivalent) in kwargs"
    )
    assert "cannot reach hub.invalid" in result.outlines[start + 2]
    assert "Retrying" not in out
    assert "Captured log" not in out
