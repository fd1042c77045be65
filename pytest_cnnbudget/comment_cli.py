"""`cnnbudget comment post BODY_FILE`: the pull-request comment a gate run wrote
(`--cnn-budget-comment`), posted as the one sticky comment, created or updated.

It needs no checkout of the pull request's code, which is what lets a `workflow_run` workflow
with write permission post the body that a fork's `pull_request` run computed without one. The
repository, token and API address come from GitHub's environment (GITHUB_REPOSITORY,
GITHUB_TOKEN, GITHUB_API_URL); the pull request from `--pr`, else the event file
(GITHUB_EVENT_PATH) of a `pull_request` run.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CommandLineError, os_error_text
from .report.comment import says_no_change
from .report.github import workflow_command
from .run.gitbase import pull_request_number

# A commit's full hash: SHA-1, or SHA-256 in a repository that uses it.
_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")

if TYPE_CHECKING:  # imported where used: urllib and ssl cost `cnnbudget summary` 50 ms
    from .run.github_api import Posted, PullRequest


def add_parser(commands: Any) -> None:
    """`comment post` among the command line's commands."""
    comment = commands.add_parser(
        "comment",
        help="post a pull-request comment body as the one sticky comment",
        description="Post the body --cnn-budget-comment wrote as the pull request's one "
        "sticky comment: update the comment that carries its marker, else create it.",
    )
    actions = comment.add_subparsers(dest="action", required=True, metavar="ACTION")
    post = actions.add_parser("post", help="create or update the sticky comment")
    post.add_argument("body", metavar="BODY_FILE", help="the comment body (Markdown)")
    post.add_argument(
        "--pr",
        type=int,
        metavar="N",
        help="the pull request's number (default: the one GITHUB_EVENT_PATH's event names)",
    )
    post.add_argument(
        "--head-sha",
        metavar="SHA",
        help="post only if the pull request's head is this commit (in a workflow_run "
        "workflow: github.event.workflow_run.head_sha, so that a number read from a fork's "
        "artifact cannot point the comment at another pull request)",
    )
    post.add_argument(
        "--head-repo",
        metavar="OWNER/NAME",
        help="with --head-sha: and only if the pull request comes from this repository "
        "(github.event.workflow_run.head_repository.full_name: two pull requests can share a "
        "commit, not a head repository and commit)",
    )
    post.add_argument(
        "--repo",
        metavar="OWNER/NAME",
        help="the repository (default: GITHUB_REPOSITORY)",
    )


def run_comment(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Post the body; 0 when posted or when there is nothing to post."""
    try:
        body = Path(args.body).read_text(encoding="utf-8")
    except OSError as e:
        raise CommandLineError(f"cannot read BODY_FILE {args.body!r}: {os_error_text(e)}") from e
    except UnicodeDecodeError as e:
        raise CommandLineError(f"BODY_FILE {args.body!r} is not UTF-8 text") from e
    from .run.github_api import head_of, post_comment

    if not body.strip():
        # --cnn-budget-comment-if-changed leaves the file empty when nothing changed.
        print(f"{args.body}: empty, nothing to post")
        return 0
    _check_head_options(args.head_sha, args.head_repo)
    where = pull_request(args.pr, args.repo, environ)
    if args.head_sha is not None:
        head = head_of(where)
        wanted = (args.head_sha.lower(), args.head_repo.lower())
        if (head.sha.lower(), head.repository.lower()) != wanted:
            # A newer push (its own run comments), or a number that names another pull
            # request: either way this body is not that pull request's.
            said = (
                f"not posted: pull request #{where.number}'s head is {head.sha} of "
                f"{head.repository}, not {args.head_sha} of {args.head_repo}, which this body "
                "was computed for"
            )
            print(said)
            if environ.get("GITHUB_ACTIONS") == "true":  # seen beside a green step
                print(workflow_command("warning", said, title="cnn-budget comment"))
            return 0
    # A "no change" body updates the comment an earlier push made, and makes none.
    print(posted_text(post_comment(body, where, create=not says_no_change(body)), where))
    return 0


def _check_head_options(sha: str | None, repository: str | None) -> None:
    """--head-sha and --head-repo go together, each a value that can name a head."""
    if (sha is None) != (repository is None):
        raise CommandLineError("--head-sha and --head-repo go together: give both, or neither")
    if sha is not None and not _SHA.fullmatch(sha):
        raise CommandLineError(
            f"--head-sha {sha!r} is not a commit's full hash (in a workflow_run workflow: "
            "${{ github.event.workflow_run.head_sha }})"
        )
    if repository is not None and "/" not in repository.strip("/"):
        raise CommandLineError(
            f"--head-repo {repository!r} is not owner/name (in a workflow_run workflow: "
            "${{ github.event.workflow_run.head_repository.full_name }})"
        )


def pull_request(number: int | None, repo: str | None, environ: Mapping[str, str]) -> PullRequest:
    """Where the comment goes: the repository, the number (given, else the event's), the token
    and the API address from GitHub's environment."""
    from .run.github_api import API_URL, PullRequest

    repository = repo or environ.get("GITHUB_REPOSITORY", "")
    if not repository:
        raise CommandLineError("no repository: give --repo OWNER/NAME or set GITHUB_REPOSITORY")
    return PullRequest(
        repository=repository,
        number=number if number is not None else event_number(environ),
        token=environ.get("GITHUB_TOKEN", ""),
        api_url=environ.get("GITHUB_API_URL") or API_URL,
    )


def posted_text(posted: Posted, where: PullRequest) -> str:
    """One line saying what posting did."""
    if posted.action == "left alone":
        return f"nothing changed and {where.repository}#{where.number} has no comment: none made"
    return f"{posted.action} the comment on {where.repository}#{where.number}: {posted.url}"


def event_number(environ: Mapping[str, str]) -> int:
    """The pull request's number from a `pull_request` run's event file."""
    path = environ.get("GITHUB_EVENT_PATH")
    if not path:
        raise CommandLineError(
            "no pull request: give --pr N (no GITHUB_EVENT_PATH to read it from)"
        )
    number = pull_request_number(environ)
    if number is None:
        raise CommandLineError(
            f"no pull request in GITHUB_EVENT_PATH {path!r} (not a pull_request event): give --pr N"
        )
    return number
