"""`cnnbudget ci`: the pull-request job, in any CI. It finds the base, reads the base's snapshots
with git (fetching the base commit when the checkout is shallow), runs the gate against them, and
leaves the JSON report, the job summary and the comment body in one folder; with
`--comment post` it creates or updates the one sticky comment. It exits as the gate does.

    cnnbudget ci [--base REF | --no-base] [--comment post|file=PATH] [--out DIR] [-- PYTEST_ARGS]

The repository need not be installable: the gate imports the models from the checkout.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import comment_cli
from .config.settings import read_settings
from .constants import DEFAULT_SNAPSHOT
from .errors import CnnBudgetError, CommandLineError, os_error_text
from .report.comment import says_no_change
from .report.github import workflow_command
from .run.gitbase import Base, file_at, find_base, git, resolve, top_level
from .run.outputs import write_text

OUT = ".cnn-budget"  # the outputs' folder, ignored by git through its own .gitignore
REPORT, SUMMARY, COMMENT = "report.json", "summary.md", "comment.md"
BASE_NAME = "base-name.txt"  # how the comment named the base, for a merge of shards
NO_TESTS = 5  # pytest's exit status when it collected nothing


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
    against: list[str] = []
    if args.no_base:
        print("cnnbudget ci: no base (--no-base): comparing with the committed snapshots")
    else:
        base = _base(args, environ, repo)
        against = [f"--cnn-budget-baseline={p}" for p in _base_snapshots(base, repo, workdir, out)]
        against += ["--cnn-budget-baseline-name", base.describe()]
        (workdir / out / BASE_NAME).write_text(base.describe() + "\n", encoding="utf-8")
    command = [*_gate_command(out), *against, *_pytest_args(given)]
    print(f"cnnbudget ci: {shlex.join(['python', *command[1:]])}", flush=True)
    status = subprocess.call(command, cwd=workdir)
    if status == NO_TESTS:
        print(
            "cnnbudget ci: no budget check ran: configure models under [tool.cnnbudget.models] "
            "in pyproject.toml, or check what the pytest arguments select",
            file=sys.stderr,
        )
    comment = workdir / out / COMMENT
    if body_file is not None and comment.is_file():
        write_text(Path(body_file), comment.read_text(encoding="utf-8"))
        print(f"cnnbudget ci: the comment body is in {body_file}")
    if post and comment.is_file():
        _post(comment, args.pr, environ)
    return status


def _base(args: argparse.Namespace, environ: Mapping[str, str], repo: Path) -> Base:
    """The base commit, found and fetched; CommandLineError naming what to give."""
    found = find_base(args.base, environ)
    if found is None:
        raise CommandLineError(
            "no base to compare with: this is not a pull_request event (GITHUB_EVENT_PATH) "
            "nor a GitLab merge request pipeline; give --base REF (the branch the change "
            "goes into), or --no-base to compare with the committed snapshots only"
        )
    base = resolve(found, repo, args.remote)
    print(f"cnnbudget ci: comparing with {base.describe()}, from {found.source}")
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
    try:
        out.mkdir(parents=True, exist_ok=True)
        ignore = out / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# written by cnnbudget ci\n*\n", encoding="utf-8")
        for name in (REPORT, SUMMARY, COMMENT, BASE_NAME):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "base", ignore_errors=True)  # another base's snapshots
    except OSError as e:
        raise CommandLineError(f"--out {str(out)!r}: {os_error_text(e)}") from e


def snapshot_files(workdir: Path, repo: Path) -> list[Path]:
    """The snapshot files of the configs git tracks in `workdir` and below, and the default
    one (fixture checks without a config), each once."""
    listed = git(workdir, "ls-files", "-z", "--", "pyproject.toml", "**/pyproject.toml").stdout
    found: list[Path] = []
    for name in filter(None, listed.decode("utf-8", "surrogateescape").split("\0")):
        try:
            settings = read_settings(workdir / name)
        except CnnBudgetError:
            continue  # the gate itself says what is wrong with it
        if settings is not None and settings.snapshot is not None:
            found.append(settings.snapshot.resolve())
    if not found:
        found.append((workdir / DEFAULT_SNAPSHOT).resolve())
    return [p for p in dict.fromkeys(found) if p.is_relative_to(repo.resolve())]


def _base_snapshots(base: Base, repo: Path, workdir: Path, out: Path) -> list[Path]:
    """Each snapshot file as the base held it, written under `out`/base/; an empty file where
    the base had none (its models are then new). The paths as pytest takes them."""
    written = []
    for snapshot in snapshot_files(workdir, repo):
        inside = snapshot.relative_to(repo.resolve()).as_posix()
        data = file_at(base, repo, inside)
        target = out / "base" / inside
        if data is None:
            print(f"cnnbudget ci: the base has no {inside}: its models count as new")
        try:
            (workdir / target).parent.mkdir(parents=True, exist_ok=True)
            (workdir / target).write_bytes(data or b"")
        except OSError as e:
            raise CommandLineError(f"cannot write {target}: {os_error_text(e)}") from e
        written.append(target)
    return written


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


def _post(comment: Path, number: int | None, environ: Mapping[str, str]) -> None:
    """Post the body; a refusal is said, and leaves the exit status to the gate."""
    from .run.github_api import post_comment

    body = comment.read_text(encoding="utf-8")
    try:
        where = comment_cli.pull_request(number, None, environ)
        posted = post_comment(body, where, create=not says_no_change(body))
    except CnnBudgetError as e:
        said = f"the comment was not posted: {e}"
        print(f"cnnbudget ci: {said}", file=sys.stderr)
        if environ.get("GITHUB_ACTIONS") == "true":  # where a reviewer sees it
            print(workflow_command("warning", said, title="cnn-budget comment"), flush=True)
        return
    print(f"cnnbudget ci: {comment_cli.posted_text(posted, where)}")
