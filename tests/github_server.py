"""A real HTTP server on loopback that speaks the GitHub REST endpoints the sticky comment
needs: list a pull request's comments (paginated with `Link`), update one, create one, read a pull
request's head commit; and refuses as GitHub does (401, 403, 404, rate limits, 422)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "ghs_write"
READ_ONLY = "ghs_fork"  # what a pull request from a fork gets
PAGE = 2  # comments per page, so that a few comments take several pages


@dataclass
class Repository:
    """The server's state: one repository's pull request comments, and every request seen."""

    comments: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: {7: []})
    heads: dict[int, str] = field(default_factory=dict)  # a pull request's head commit
    head_repos: dict[int, str] = field(default_factory=dict)  # and its repository
    requests: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 100
    # How it answers besides: the Link header's spelling, where its next page points, a
    # redirect for every request, a rate limit, a body GitHub finds too long.
    link: str = "Link"
    elsewhere: str | None = None
    redirect: str | None = None
    limited: bool = False
    long: bool = False

    def add(self, number: int, body: str) -> dict[str, Any]:
        self.next_id += 1
        comment = {"id": self.next_id, "body": body, "html_url": f"https://x/c/{self.next_id}"}
        self.comments[number].append(comment)
        return comment


def handler(state: Repository, base: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def reply(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def allowed(self, write: bool) -> bool:
            if state.redirect:
                self.send_response(301)
                self.send_header("Location", state.redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            if state.limited:
                headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000000"}
                self.reply(403, {"message": "API rate limit exceeded"}, headers)
                return False
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if token not in (TOKEN, READ_ONLY):
                self.reply(401, {"message": "Bad credentials"})
                return False
            if write and token == READ_ONLY:
                self.reply(403, {"message": "Resource not accessible by integration"})
                return False
            return True

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path))
            parts = urlsplit(self.path)
            if not self.allowed(write=False):
                return
            if "/pulls/" in parts.path:
                pulled = int(parts.path.split("/")[-1])
                if pulled not in state.comments:
                    self.reply(404, {"message": "Not Found"})
                    return
                repo = {"full_name": state.head_repos.get(pulled, "octo/models")}
                head = {"sha": state.heads.get(pulled), "repo": repo}
                self.reply(200, {"number": pulled, "head": head})
                return
            number = int(parts.path.split("/")[-2])
            if number not in state.comments:
                self.reply(404, {"message": "Not Found"})
                return
            page = int(parse_qs(parts.query).get("page", ["1"])[0])
            comments = state.comments[number]
            shown = comments[(page - 1) * PAGE : page * PAGE]
            headers = {}
            if page * PAGE < len(comments):
                where = state.elsewhere or base
                headers[state.link] = (
                    f'<{where}{parts.path}?per_page=100&page={page + 1}>; rel="next"'
                )
            self.reply(200, shown, headers)

        def body(self) -> str:
            length = int(self.headers.get("Content-Length", "0"))
            return str(json.loads(self.rfile.read(length))["body"])

        def do_POST(self) -> None:
            state.requests.append(("POST", self.path))
            number = int(self.path.split("/")[-2])
            if self.allowed(write=True):
                if state.long:
                    errors = [{"message": "Body is too long (maximum is 65536 characters)"}]
                    self.reply(422, {"message": "Validation Failed", "errors": errors})
                    return
                self.reply(201, state.add(number, self.body()))

        def do_PATCH(self) -> None:
            state.requests.append(("PATCH", self.path))
            if not self.allowed(write=True):
                return
            wanted = int(self.path.split("/")[-1])
            for comment in (c for comments in state.comments.values() for c in comments):
                if comment["id"] == wanted:
                    comment["body"] = self.body()
                    self.reply(200, comment)
                    return
            self.reply(404, {"message": "Not Found"})

    return Handler


@contextmanager
def serving(state: Repository | None = None) -> Iterator[tuple[Repository, str]]:
    """A loopback server for the repository `octo/models`: its state and its address."""
    state = state if state is not None else Repository()
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    server.RequestHandlerClass = handler(state, base)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, base
    finally:
        server.shutdown()
        server.server_close()
