"""The one sticky pull-request comment, through GitHub's REST API: no `gh` binary, no library.

The comment is the one whose body carries the comment's marker (report/comment.py's MARKER): it is
looked for among the pull request's comments, page by page as the `Link` header leads, and
updated in place (PATCH); without one, a comment is created (POST). The endpoints:

    GET   {api}/repos/{owner}/{repo}/pulls/{pr}   (the head commit, `head_of`)
    GET   {api}/repos/{owner}/{repo}/issues/{pr}/comments?per_page=100
    PATCH {api}/repos/{owner}/{repo}/issues/comments/{id}
    POST  {api}/repos/{owner}/{repo}/issues/{pr}/comments

A refusal says what to fix: a token that is missing or wrong (401), one that may not write
(403: a pull request from a fork gets a read-only token), a repository or pull request the token
cannot see (404).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from ..errors import CommandLineError, GitHubApiError
from ..report.comment import MARKER
from ..units import clip

API_URL = "https://api.github.com"
TIMEOUT = 30.0  # seconds per request: a CI job must not wait on a stalled connection
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')
# Pages read at most: 100 comments each. A pull request with more has other problems.
MAX_PAGES = 50
MAX_RESPONSE = 16 * 1024 * 1024  # bytes read of one answer


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the error it is: following one would send the token to
    wherever it points, and would turn a POST into a GET that "succeeds"."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


@dataclass(frozen=True)
class Posted:
    """What posting did: "created", "updated" or "left alone", and the comment's address."""

    action: str
    url: str


@dataclass(frozen=True)
class PullRequest:
    """Where the comment goes, and with what token."""

    repository: str  # owner/name
    number: int
    token: str
    api_url: str = API_URL

    def __post_init__(self) -> None:
        # Settings a user fixes, not refusals: the command line's usage errors.
        if not _REPOSITORY.fullmatch(self.repository):
            raise CommandLineError(f"repository {self.repository!r} is not of the form owner/name")
        if self.number < 1:
            raise CommandLineError(f"pull request number {self.number} must be at least 1")
        api = urlsplit(self.api_url)
        if api.scheme not in ("http", "https") or not api.hostname:
            raise CommandLineError(
                f"GITHUB_API_URL {self.api_url!r} is not an http(s) address "
                "(GitHub's is https://api.github.com)"
            )
        if not self.token:
            raise CommandLineError(
                "no token: set GITHUB_TOKEN (in a workflow: env: GITHUB_TOKEN: "
                "${{ secrets.GITHUB_TOKEN }}, with permissions: pull-requests: write)"
            )

    @property
    def base(self) -> str:
        return f"{self.api_url.rstrip('/')}/repos/{self.repository}"


def post_comment(
    body: str, where: PullRequest, marker: str = MARKER, create: bool = True
) -> Posted:
    """Update the pull request's comment that starts with `marker`, else create one; with
    `create` False, only update one that exists (a "no change" body is worth saying where an
    earlier push commented, not worth a new comment)."""
    # Only a comment that starts with the marker is found again: one that merely holds it
    # would be posted anew on every push.
    if not body.lstrip().startswith(marker):
        body = f"{marker}\n{body}"
    existing = _find(where, marker)
    if existing is not None:
        comment = _request(where, "PATCH", f"{where.base}/issues/comments/{existing}", body)
        return Posted("updated", str(comment.get("html_url", "")))
    if not create:
        return Posted("left alone", "")
    url = f"{where.base}/issues/{where.number}/comments"
    comment = _request(where, "POST", url, body)
    return Posted("created", str(comment.get("html_url", "")))


@dataclass(frozen=True)
class Head:
    """A pull request's head: its commit and the repository it comes from (a fork's)."""

    sha: str
    repository: str  # owner/name


def head_of(where: PullRequest) -> Head:
    """The pull request's head: what a body computed by a fork's run must have been computed
    for (a number read from its artifact is the fork's to choose)."""
    request = urllib.request.Request(
        f"{where.base}/pulls/{where.number}", headers=_headers(where), method="GET"
    )
    data, _ = _send(where, request)
    head = data.get("head") if isinstance(data, dict) else None
    head = head if isinstance(head, dict) else {}
    repo = head.get("repo")
    name = repo.get("full_name") if isinstance(repo, dict) else None
    sha = head.get("sha")
    if not isinstance(sha, str) or not sha:
        raise GitHubApiError(f"GET pull request #{where.number}: no head commit in the answer")
    # A deleted fork has no repository: it matches no run's.
    return Head(sha, name if isinstance(name, str) else "(deleted)")


def _find(where: PullRequest, marker: str) -> int | None:
    """The id of the first comment whose body starts with `marker` (a comment that only
    mentions it is someone else's), over every page; None only when every page was read."""
    url = f"{where.base}/issues/{where.number}/comments?per_page=100"
    for _ in range(MAX_PAGES):
        comments, headers = _get(where, url)
        for comment in comments:
            body = str(comment.get("body") or "") if isinstance(comment, dict) else ""
            if body.lstrip().startswith(marker) and isinstance(comment.get("id"), int):
                return int(comment["id"])
        link = _NEXT.search(headers.get("Link") or "")  # HTTPMessage: any case
        if link is None:
            return None
        if not _same_api(link.group(1), where.api_url):
            # The token goes with every request: only to the API it was given for. Creating a
            # comment without having read every page could make a second one.
            raise GitHubApiError(
                f"GET {clip(url)}: the next page is at {clip(link.group(1))!r}, outside "
                f"{where.api_url}; not followed"
            )
        url = link.group(1)
    raise GitHubApiError(
        f"pull request #{where.number} has more than {MAX_PAGES * 100} comments; "
        "not looking further"
    )


def _same_api(url: str, api_url: str) -> bool:
    """Whether `url` is on the API `api_url` names: scheme, host and port, and under its path."""
    there, api = urlsplit(url), urlsplit(api_url)
    path = api.path.rstrip("/") + "/"
    return (there.scheme, there.hostname, there.port) == (
        api.scheme,
        api.hostname,
        api.port,
    ) and there.path.startswith(path)


def _get(where: PullRequest, url: str) -> tuple[list[Any], Message]:
    request = urllib.request.Request(url, headers=_headers(where), method="GET")
    data, headers = _send(where, request)
    if not isinstance(data, list):
        raise GitHubApiError(f"GET {url} answered {type(data).__name__}, not a list of comments")
    return data, headers


def _request(where: PullRequest, method: str, url: str, body: str) -> dict[str, Any]:
    payload = json.dumps({"body": body}).encode("utf-8")
    headers = {**_headers(where), "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=payload, headers=headers, method=method)
    data, _ = _send(where, request)
    return data if isinstance(data, dict) else {}


def _headers(where: PullRequest) -> dict[str, str]:
    return {
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {where.token}",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "pytest-cnnbudget",
    }


def _send(where: PullRequest, request: urllib.request.Request) -> tuple[Any, Message]:
    what = f"{request.get_method()} {clip(request.full_url)}"
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            text = response.read(MAX_RESPONSE).decode("utf-8")
            return (json.loads(text) if text.strip() else None), response.headers
    except urllib.error.HTTPError as e:
        raise GitHubApiError(_refusal(where, what, e.code, _message(e), e.headers)) from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise GitHubApiError(f"{what} failed: {clip(str(reason))}") from e
    except ValueError as e:  # not JSON
        raise GitHubApiError(f"{what} answered something that is not JSON: {clip(str(e))}") from e


def _message(error: urllib.error.HTTPError) -> str:
    """GitHub's own `message` from an error's body, and its `errors[].message` (a body too
    long), when it has them."""
    try:
        data = json.loads(error.read(MAX_RESPONSE).decode("utf-8"))
    except (ValueError, OSError, UnicodeDecodeError):
        return ""
    if not isinstance(data, dict):
        return ""
    details = [
        str(e.get("message"))
        for e in data.get("errors") or []
        if isinstance(e, dict) and e.get("message")
    ]
    return clip("; ".join([str(data.get("message", "")), *details]).strip("; "))


def _refusal(where: PullRequest, what: str, status: int, message: str, headers: Message) -> str:
    said = f" ({message})" if message else ""
    limited = headers.get("x-ratelimit-remaining") == "0" or headers.get("retry-after")
    if status in (403, 429) and (limited or "rate limit" in message.lower()):
        wait = headers.get("retry-after")
        reset = headers.get("x-ratelimit-reset")
        when = (
            f"retry after {wait} s"
            if wait
            else f"the limit resets at {reset} (epoch seconds)"
            if reset
            else "retry later"
        )
        return f"{what}: {status}{said}: GitHub's rate limit; {when}"
    if status == 401:
        return f"{what}: 401{said}: GITHUB_TOKEN is not a valid token"
    if status == 403:
        return (
            f"{what}: 403{said}: the token may not comment on pull request #{where.number}; "
            "a workflow needs permissions: pull-requests: write, and a pull request from a fork "
            "gets a read-only token: post from a workflow_run workflow instead"
        )
    if status == 404:
        return (
            f"{what}: 404{said}: no pull request #{where.number} in {where.repository}, or the "
            "token cannot see the repository"
        )
    if 300 <= status < 400:
        moved = clip(headers.get("Location") or "?")
        return (
            f"{what}: {status}: redirected to {moved}, not followed: if the repository was "
            "renamed or moved, give its new name (GITHUB_REPOSITORY or --repo)"
        )
    return f"{what}: {status}{said}"
