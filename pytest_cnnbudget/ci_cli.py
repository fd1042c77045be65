"""`cnnbudget ci`: the pull-request job, in any CI. It finds the base, reads the base's snapshots
with git (fetching the base commit when the checkout is shallow), runs the gate against them, and
leaves the JSON report, the job summary and the comment body in one folder; with
`--comment post` it creates or updates the one sticky comment. It exits as the gate does.

    cnnbudget ci [--base REF | --no-base] [--comment post|file=PATH] [--out DIR] [-- PYTEST_ARGS]

The repository need not be installable: the gate imports the models from the checkout.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import comment_cli
from .errors import CnnBudgetError, CommandLineError, os_error_text
from .report.comment import incomplete_markdown, says_no_change
from .report.github import workflow_command
from .run.gitbase import (
    Base,
    find_base,
    head_commit,
    merge_parent,
    pull_request_number,
    resolve,
    top_level,
    uncommitted,
)
from .run.outputs import write_text
from .run.shards import read_shard

OUT = ".cnn-budget"  # the outputs' folder, ignored by git through its own .gitignore
REPORT, SUMMARY, COMMENT = "report.json", "summary.md", "comment.md"
PR_NUMBER = "pr-number"
NO_TESTS = 5  # pytest's exit status when it collected nothing
USAGE_ERROR = 2  # what cnnbudget ci exits with when it cannot start the gate
_IGNORE = "# written by cnnbudget ci: its outputs, not the repository's\n*\n"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`ci` among the command line's commands."""
    ci = commands.add_parser(
        "ci",
        help="run the gate as a pull request's CI job: base snapshots, report, summary, comment",
        description="Run pytest --cnn-budget against the base branch's snapshots (found with "
        "git; fetched when the checkout is shallow), writing the JSON report, the job summary "
        f"and the comment body to {OUT}/; with --comment post, create or update the sticky "
        "pull-request comment. Exits as the gate does. Arguments after -- go to pytest.",
    )
    ci.add_argument(
        "--base",
        metavar="REF",
        help="the branch or commit to compare with (default: the pull_request event's base, "
        "GITHUB_EVENT_PATH; a GitLab merge request's CI_MERGE_REQUEST_DIFF_BASE_SHA)",
    )
    ci.add_argument(
        "--no-base",
        action="store_true",
        help="compare with the committed snapshots only (a push to the main branch)",
    )
    ci.add_argument(
        "--remote", default="origin", help="the remote to fetch the base from (default: origin)"
    )
    ci.add_argument(
        "--comment",
        metavar="MODE",
        default="none",
        help="post: create or update the sticky comment through GitHub's REST API "
        "(GITHUB_TOKEN with pull-requests: write); file=PATH: also write the body to PATH, "
        "posting nothing (a fork's run); none (default): the body stays in the outputs' folder",
    )
    ci.add_argument("--pr", type=int, metavar="N", help="the pull request (default: the event's)")
    ci.add_argument(
        "--out",
        metavar="DIR",
        default=OUT,
        help=f"where the outputs go (default: {OUT}, which ignores itself in git)",
    )
    ci.add_argument(
        "--pytest-args",
        dest="pytest_args_text",
        metavar="TEXT",
        default="",
        help="more pytest arguments as one string, split as a shell splits it: "
        "'-n auto -k \"vision or text\"' (what a CI's input holds)",
    )
    ci.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then pytest's arguments")


def run_ci(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """The pull-request job; the gate's exit status."""
    post, body_file = _comment_mode(args.comment)
    if args.no_base and args.base:
        raise CommandLineError("--base and --no-base: give one")
    given = [*_split(args.pytest_args_text), *_remainder(args.pytest_args)]
    workdir = Path.cwd()
    repo = top_level(workdir)
    out = Path(args.out)
    _prepare(workdir / out)
    number = pull_request_number(environ)
    if number is not None:
        # For a workflow_run workflow posting a fork's comment: which pull request it is.
        (workdir / out / PR_NUMBER).write_text(f"{number}\n", encoding="utf-8")
    comment = workdir / out / COMMENT

    def deliver(create: bool | None) -> None:
        if body_file is not None and comment.is_file():
            write_text(Path(body_file), comment.read_text(encoding="utf-8"))
            print(f"cnnbudget ci: the comment body is in {body_file}")
        if post and comment.is_file():
            _post(comment, args.pr, environ, create)

    against: list[str] = []
    if args.no_base:
        print("cnnbudget ci: no base (--no-base): comparing with the committed snapshots")
    else:
        try:
            base = _base(args, environ, repo)
        except CnnBudgetError as e:
            # Where an earlier push's comment stands, it must not stand for this run.
            write_text(comment, incomplete_markdown(USAGE_ERROR, reason=str(e)))
            deliver(False)
            raise
        # The gate reads the snapshot of each config it loads as the base commit held it.
        against = [f"--cnn-budget-base-rev={base.commit}"]
        # Named with both ends, so that a comment updated on every push can be dated.
        named = f"{base.describe()}, at head {head_commit(repo, environ)[:12]}"
        against += ["--cnn-budget-baseline-name", named]
    command = [*_gate_command(out), *against, *_pytest_args(given)]
    print(f"cnnbudget ci: {shlex.join(['python', *command[1:]])}", flush=True)
    # The token posts the comment; the models' code, run by pytest, has no use for it.
    gate_env = {k: v for k, v in environ.items() if k != "GITHUB_TOKEN"}
    status = subprocess.call(command, cwd=workdir, env=gate_env)
    if status not in (0, 1):
        # Whatever the gate wrote (a run that collected nothing says "no change") is no
        # verdict: the comment says the run did not complete.
        write_text(comment, incomplete_markdown(status))
    if status == NO_TESTS:
        print(
            "cnnbudget ci: no budget check ran: configure models under [tool.cnnbudget.models] "
            "in pyproject.toml, or check what the pytest arguments select",
            file=sys.stderr,
        )
    if status in (0, 1):
        _warn_uncommitted(repo, workdir, workdir / out / REPORT, environ)
    # A body that says nothing changed, or nothing was checked, makes no new comment.
    deliver(None if status in (0, 1, NO_TESTS) else True)
    return status


def _warn_uncommitted(repo: Path, workdir: Path, report: Path, environ: Mapping[str, str]) -> None:
    """Say so when a snapshot this run read is not the committed one: run where it was updated
    and not yet committed, the run passes, and the pull request's run will not."""
    try:
        configs = read_shard(json.loads(report.read_text(encoding="utf-8")), str(report)).configs
    except (OSError, ValueError, CnnBudgetError):
        return  # no report to read: the gate said why
    for path in uncommitted(repo, [workdir / c.snapshot for c in configs]):
        shown = path.relative_to(workdir) if path.is_relative_to(workdir) else path
        message = (
            f"{shown} is not as committed: this run read it from the work tree, a pull "
            "request's run reads the committed one; commit it with the change"
        )
        print(f"cnnbudget ci: {message}", file=sys.stderr)
        if environ.get("GITHUB_ACTIONS") == "true":
            print(workflow_command("warning", message, title="cnn-budget"))


def _base(args: argparse.Namespace, environ: Mapping[str, str], repo: Path) -> Base:
    """The base commit, found and fetched; CommandLineError naming what to give."""
    found = find_base(args.base, environ)
    if found is None:
        raise CommandLineError(
            "no base to compare with: this is not a pull_request event (GITHUB_EVENT_PATH) "
            "nor a GitLab merge request pipeline; give --base REF (the branch the change "
            "goes into), or --no-base to compare with the committed snapshots only"
        )
    base = resolve(merge_parent(found, repo, environ), repo, args.remote)
    print(f"cnnbudget ci: comparing with {base.describe()}, from {base.found.source}")
    if base.note:
        print(f"cnnbudget ci: {base.note}")
    return base


def _comment_mode(mode: str) -> tuple[bool, str | None]:
    """(post, file) from --comment."""
    if mode in ("none", "post"):
        return mode == "post", None
    if mode.startswith("file=") and mode[5:]:
        return False, mode[5:]
    raise CommandLineError(f"--comment {mode!r}: give post, file=PATH or none")


def _prepare(out: Path) -> None:
    """The outputs' folder, ignored by git, without a previous run's outputs (a comment left from
    it must never be posted as this run's)."""
    ignore = out / ".gitignore"
    try:
        ours = ignore.is_file() and ignore.read_text("utf-8").startswith(_IGNORE.splitlines()[0])
        if out.is_dir() and any(out.iterdir()) and not ours:
            raise CommandLineError(
                f"--out {str(out)!r} holds files cnnbudget ci did not write: give a new or "
                "empty folder (it ignores everything in it in git)"
            )
        out.mkdir(parents=True, exist_ok=True)
        if not ours:
            ignore.write_text(_IGNORE, encoding="utf-8")
        for name in (REPORT, SUMMARY, COMMENT, PR_NUMBER):
            (out / name).unlink(missing_ok=True)
    except OSError as e:
        raise CommandLineError(f"--out {str(out)!r}: {os_error_text(e)}") from e


def _split(text: str) -> list[str]:
    """--pytest-args, split as a shell splits words."""
    try:
        return shlex.split(text)
    except ValueError as e:  # an unclosed quote
        raise CommandLineError(f"--pytest-args {text!r}: {e}") from e


def _remainder(given: Sequence[str]) -> list[str]:
    """What came after `--`."""
    return list(given[1:] if given[:1] == ["--"] else given)


def _pytest_args(args: Sequence[str]) -> list[str]:
    """pytest's arguments, with `-m cnn_budget` unless they select by marker themselves."""
    selects = any(a == "-m" or a.startswith(("-m", "--markexpr")) for a in args)
    return list(args) if selects else ["-m", "cnn_budget", *args]


def _gate_command(out: Path) -> list[str]:
    """pytest with the gate and its outputs in `out`."""
    # With `=`: pytest takes a path given as an argument of its own for its rootdir.
    command = [sys.executable, "-m", "pytest", "--cnn-budget"]
    command += [f"--cnn-budget-json={out / REPORT}", f"--cnn-budget-summary={out / SUMMARY}"]
    return [*command, f"--cnn-budget-comment={out / COMMENT}"]


def _post(
    comment: Path, number: int | None, environ: Mapping[str, str], create: bool | None
) -> None:
    """Post the body, creating a comment if `create` (None: unless it says "no change"); a
    refusal is said, and leaves the exit status to the gate."""
    from .run.github_api import post_comment

    body = comment.read_text(encoding="utf-8")
    try:
        where = comment_cli.pull_request(number, None, environ)
        make = not says_no_change(body) if create is None else create
        posted = post_comment(body, where, create=make)
    except CnnBudgetError as e:
        said = f"the comment was not posted: {e}"
        print(f"cnnbudget ci: {said}", file=sys.stderr)
        if environ.get("GITHUB_ACTIONS") == "true":  # where a reviewer sees it
            print(workflow_command("warning", said, title="cnn-budget comment"), flush=True)
        return
    print(f"cnnbudget ci: {comment_cli.posted_text(posted, where)}")
