"""`cnnbudget comment post` against a real HTTP server on loopback that speaks the three GitHub
REST endpoints the sticky comment needs: list a pull request's comments (paginated with `Link`),
update one, create one; and refuses as GitHub does (401, 403, 404)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from github_server import READ_ONLY, TOKEN, Repository, handler, serving

from pytest_cnnbudget.report.comment import MARKER


@pytest.fixture
def github() -> Iterator[tuple[Repository, str]]:
    """A loopback server for the repository `octo/models`; its state and its address."""
    with serving() as served:
        yield served


def post(
    tmp_path: Path, base: str, body: str, *args: str, token: str = TOKEN, **env: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "comment.md").write_text(body, encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    environ.update(GITHUB_API_URL=base, GITHUB_REPOSITORY="octo/models", GITHUB_TOKEN=token, **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest_cnnbudget", "comment", "post", "comment.md", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,  # only so that a hang fails instead of stalling the run
        check=False,
    )


def test_the_first_post_creates_the_comment_and_the_next_update_it(
    github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, base = github
    for text in ("LGTM", "please fix the shapes", "another bot's note"):
        state.add(7, text)
    first = post(tmp_path, base, f"{MARKER}\n**cnn-budget**: 2 models changed", "--pr", "7")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("created the comment on octo/models#7: https://x/c/104")
    # The marked comment is now on the second page: found there and updated, not duplicated.
    state.add(7, "a later review")
    again = post(tmp_path, base, f"{MARKER}\n**cnn-budget**: 1 model changed", "--pr", "7")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("updated the comment on octo/models#7: https://x/c/104")
    bodies = [c["body"] for c in state.comments[7]]
    assert bodies.count(f"{MARKER}\n**cnn-budget**: 1 model changed") == 1
    assert not any("2 models changed" in b for b in bodies)
    assert len(bodies) == 5
    assert [m for m, _ in state.requests] == ["GET", "GET", "POST", "GET", "GET", "PATCH"]


def test_the_pull_request_comes_from_the_event_file_and_an_empty_body_posts_nothing(
    github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, base = github
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}), encoding="utf-8")
    done = post(tmp_path, base, "body without a marker", GITHUB_EVENT_PATH=str(event))
    assert done.returncode == 0, done.stderr
    assert state.comments[7][0]["body"] == f"{MARKER}\nbody without a marker"
    state.requests.clear()
    empty = post(tmp_path, base, "\n", GITHUB_EVENT_PATH=str(event))
    assert (empty.returncode, empty.stdout) == (0, "comment.md: empty, nothing to post\n")
    assert state.requests == []


@pytest.mark.parametrize(
    ("token", "pr", "status", "says"),
    [
        ("wrong", "7", 401, "GITHUB_TOKEN is not a valid token"),
        (READ_ONLY, "7", 403, "a pull request from a fork gets a read-only token"),
        (TOKEN, "8", 404, "no pull request #8 in octo/models"),
    ],
)
def test_a_refusal_says_what_to_fix(
    github: tuple[Repository, str], tmp_path: Path, token: str, pr: str, status: int, says: str
) -> None:
    state, base = github
    done = post(tmp_path, base, "body", "--pr", pr, token=token)
    assert done.returncode == 1
    assert f": {status} (" in done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert all(c["body"] != f"{MARKER}\nbody" for c in state.comments[7])


def test_missing_settings_are_usage_errors(tmp_path: Path) -> None:
    no_token = post(tmp_path, "http://127.0.0.1:9", "body", "--pr", "7", token="")
    assert no_token.returncode == 2
    assert "no token: set GITHUB_TOKEN" in no_token.stderr
    no_pr = post(tmp_path, "http://127.0.0.1:9", "body")
    assert no_pr.returncode == 2
    assert "no pull request: give --pr N" in no_pr.stderr


def test_pages_are_followed_whatever_the_case_of_link_and_a_mention_of_the_marker_is_not_ours(
    github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, base = github
    state.link = "link"  # as GitHub's documentation spells it
    state.add(7, f"why does the bot's comment start with {MARKER}?")
    state.add(7, "LGTM")
    ours = state.add(7, f"{MARKER}\nold")
    done = post(tmp_path, base, f"{MARKER}\nnew", "--pr", "7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"updated the comment on octo/models#7: {ours['html_url']}")
    assert state.comments[7][0]["body"].startswith("why does")  # left alone


@pytest.mark.parametrize("how", ["next page elsewhere", "redirect"])
def test_the_token_goes_nowhere_but_the_api_and_nothing_is_created_blind(
    github: tuple[Repository, str], tmp_path: Path, how: str
) -> None:
    state, base = github
    other: tuple[Repository, str] = (Repository(), "")
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as server:
        elsewhere = f"http://127.0.0.1:{server.server_address[1]}"
        server.RequestHandlerClass = handler(other[0], elsewhere)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        for text in ("a", "b", f"{MARKER}\nours"):
            state.add(7, text)
        if how == "redirect":
            state.redirect = f"{elsewhere}/repos/octo/models/issues/7/comments"
        else:
            state.elsewhere = elsewhere
        done = post(tmp_path, base, f"{MARKER}\nnew", "--pr", "7")
        server.shutdown()
    assert done.returncode == 1
    assert "not followed" in done.stderr, done.stderr
    assert other[0].requests == []  # the other host saw nothing, so no token
    assert [m for m, _ in state.requests] == ["GET"]  # and nothing was posted


def test_a_rate_limit_and_a_body_too_long_are_said_as_such(
    github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, base = github
    state.limited = True
    limited = post(tmp_path, base, "body", "--pr", "7")
    assert limited.returncode == 1
    assert "GitHub's rate limit; the limit resets at 1700000000" in limited.stderr
    assert "fork" not in limited.stderr
    state.limited, state.long = False, True
    long = post(tmp_path, base, "body", "--pr", "7")
    assert long.returncode == 1
    assert "422 (Validation Failed; Body is too long (maximum is 65536 characters))" in long.stderr


def test_an_api_address_without_a_scheme_is_a_usage_error(tmp_path: Path) -> None:
    done = post(tmp_path, "api.github.com", "body", "--pr", "7")
    assert done.returncode == 2
    assert "GITHUB_API_URL 'api.github.com' is not an http(s) address" in done.stderr


def test_a_body_that_holds_the_marker_further_down_is_still_found_again(
    github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, base = github
    body = f"a note first\n{MARKER}\nthen the table"
    for _ in range(2):
        done = post(tmp_path, base, body, "--pr", "7")
        assert done.returncode == 0, done.stderr
    assert [c["body"] for c in state.comments[7]] == [f"{MARKER}\n{body}"]


def test_a_number_from_an_artifact_is_posted_to_only_when_its_head_is_the_runs(
    github: tuple[Repository, str], tmp_path: Path
) -> None:
    state, base = github
    state.heads[7], state.head_repos[7] = "a" * 40, "victim/models"
    body = f"{MARKER}\nbody"
    # A newer push: not an error, its own run comments.
    moved = post(
        tmp_path, base, body, "--pr", "7", "--head-sha", "b" * 40, "--head-repo", "victim/models"
    )
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout == (
        f"not posted: pull request #7's head is {'a' * 40} of victim/models, not {'b' * 40} of "
        "victim/models, which this body was computed for\n"
    )
    # Another pull request at the same commit (its head pushed to a fork of the attacker's):
    # the commit matches, the repository does not.
    spoof = post(
        tmp_path, base, body, "--pr", "7", "--head-sha", "a" * 40, "--head-repo", "evil/models"
    )
    assert spoof.returncode == 0, spoof.stderr
    assert spoof.stdout.startswith("not posted:")
    assert [m for m, _ in state.requests] == ["GET", "GET"]
    assert state.comments[7] == []
    right = post(
        tmp_path, base, body, "--pr", "7", "--head-sha", "A" * 40, "--head-repo", "Victim/Models"
    )
    assert right.returncode == 0, right.stderr
    assert [c["body"] for c in state.comments[7]] == [body]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--head-sha", "", "--head-repo", "o/n"], "is not a commit's full hash"),
        (["--head-sha", "   ", "--head-repo", "o/n"], "is not a commit's full hash"),
        (["--head-sha", "abc1234", "--head-repo", "o/n"], "is not a commit's full hash"),
        (["--head-sha", "g" * 40, "--head-repo", "o/n"], "is not a commit's full hash"),
        (["--head-sha", "a" * 40, "--head-repo", ""], "is not owner/name"),
        (["--head-sha", "a" * 40], "go together"),
        (["--head-repo", "o/n"], "go together"),
    ],
)
def test_a_head_that_cannot_name_one_is_refused_before_any_request(
    github: tuple[Repository, str], tmp_path: Path, options: list[str], says: str
) -> None:
    state, base = github
    done = post(tmp_path, base, f"{MARKER}\nbody", "--pr", "7", *options)
    assert done.returncode == 2
    assert says in done.stderr
    assert state.requests == []
