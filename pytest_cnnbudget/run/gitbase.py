"""The base a pull request is compared with, read with git: which commit it is (the CI's event,
or a ref given), fetched when the checkout is shallow, and the snapshot files it held
(`snapshots_at`, for --cnn-budget-base-rev: the files of the configs the run loaded).

`actions/checkout` leaves a clone of depth 1, which holds the pull request's merge commit and
nothing else; the base commit is then fetched alone, at depth 1, through the remote the checkout
configured (with its credentials). Every failure names what to fix.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CnnBudgetError, CommandLineError, exception_text
from ..results import SnapshotEntry
from ..snapshot.format import parse_snapshot
from ..units import clip

TIMEOUT = 300.0  # seconds for one git command: a fetch over a slow link, never forever
_EVENT = "the pull_request event"


@dataclass(frozen=True)
class BaseRef:
    """What the base is, as found: `ref` to resolve, `source` saying where it came from."""

    ref: str  # a commit's hash or a branch or tag name
    source: str  # "--base", "the pull_request event", "GitLab's merge request"
    branch: str | None = None  # the base branch's name, to fetch when `ref` cannot be


@dataclass(frozen=True)
class Base:
    """The base commit, resolved."""

    found: BaseRef
    commit: str
    note: str | None = None  # how it differs from what was asked

    def describe(self) -> str:
        branch = self.found.branch or self.found.ref
        short = self.commit[:12]
        return f"{branch} ({short})" if branch != self.commit else short


def find_base(given: str | None, environ: Mapping[str, str]) -> BaseRef | None:
    """The base: `given` (--base), else the GitHub pull_request event's base commit, else a
    GitLab merge request pipeline's; None where none of them says."""
    if given:
        return BaseRef(given, "--base")
    path = environ.get("GITHUB_EVENT_PATH")
    if path:
        base = _event_base(path)
        if base is not None:
            return base
    branch = environ.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME") or None
    target = environ.get("CI_MERGE_REQUEST_TARGET_BRANCH_SHA")
    if target and environ.get("CI_MERGE_REQUEST_EVENT_TYPE") == "merged_result":
        # A merged-results pipeline checks out the merge with the target branch as it is now.
        source = "GitLab's merged results (CI_MERGE_REQUEST_TARGET_BRANCH_SHA)"
        return BaseRef(target, source, branch)
    sha = environ.get("CI_MERGE_REQUEST_DIFF_BASE_SHA")
    if sha:
        return BaseRef(sha, "GitLab's merge request (CI_MERGE_REQUEST_DIFF_BASE_SHA)", branch)
    return None


def merge_parent(found: BaseRef, repo: Path, environ: Mapping[str, str]) -> BaseRef:
    """The base a GitHub pull_request run compares with: the first parent of the merge commit
    it checked out (GITHUB_SHA). The event's base commit can be older: GitHub makes the merge
    commit again when the base branch moves, and the changes merged there since are not the
    pull request's. Any other checkout keeps `found`."""
    if found.source != _EVENT or not environ.get("GITHUB_SHA"):
        return found
    if environ.get("GITHUB_EVENT_NAME", "pull_request") != "pull_request":
        return found  # pull_request_target checks out the base branch itself
    head = git(repo, "rev-parse", "HEAD", check=False).stdout.decode().strip()
    if head != environ["GITHUB_SHA"]:
        return found
    # The commit object names its parents even in a clone of depth 1.
    lines = git(repo, "cat-file", "-p", head).stdout.decode("utf-8", "replace").splitlines()
    parents = [line.split()[1] for line in lines if line.startswith("parent ")]
    pulled = _event_head(environ)
    if len(parents) != 2 or (pulled is not None and parents[1] != pulled):
        return found  # not the merge of this pull request's head
    return BaseRef(parents[0], "the pull request's merge commit (its first parent)", found.branch)


def pull_request_number(environ: Mapping[str, str]) -> int | None:
    """The number of the pull request a GitHub `pull_request` run is for; None for any other
    run (a push, GitLab)."""
    number = _pull_request(environ).get("number")
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def _pull_request(environ: Mapping[str, str]) -> dict[str, Any]:
    """The event file's `pull_request`; {} without one (find_base says what is wrong with a
    file it cannot read)."""
    path = environ.get("GITHUB_EVENT_PATH")
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    request = event.get("pull_request") if isinstance(event, dict) else None
    return request if isinstance(request, dict) else {}


def head_commit(repo: Path, environ: Mapping[str, str]) -> str:
    """The commit the figures are of: the pull request's head (GitHub's event, GitLab's source
    branch), else HEAD."""
    head = _event_head(environ) or environ.get("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA")
    return head or git(repo, "rev-parse", "HEAD").stdout.decode().strip()


def _event_head(environ: Mapping[str, str]) -> str | None:
    """The pull request's head commit, from a GitHub event file that has one."""
    head = _pull_request(environ).get("head")
    sha = head.get("sha") if isinstance(head, dict) else None
    return sha if isinstance(sha, str) and sha else None


def _event_base(path: str) -> BaseRef | None:
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CommandLineError(f"cannot read GITHUB_EVENT_PATH {path!r}: {clip(str(e))}") from e
    request = event.get("pull_request") if isinstance(event, dict) else None
    base = request.get("base") if isinstance(request, dict) else None
    if not isinstance(base, dict):
        return None  # a push, a schedule: no pull request, no base
    sha, branch = base.get("sha"), base.get("ref")
    if not isinstance(sha, str) or not sha:
        raise CommandLineError(f"GITHUB_EVENT_PATH {path!r}: pull_request.base has no sha")
    return BaseRef(sha, _EVENT, branch if isinstance(branch, str) else None)


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """One git command in `repo`, never prompting for credentials."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, env=env, timeout=TIMEOUT, check=False
        )
    except FileNotFoundError as e:
        raise CommandLineError("git is not installed (cnnbudget ci reads the base with it)") from e
    except subprocess.TimeoutExpired as e:
        raise CommandLineError(f"git {' '.join(args)} took over {TIMEOUT:g} s; stopped") from e
    if check and done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CommandLineError(f"git {' '.join(args)} failed: {clip(' / '.join(said[-3:]))}")
    return done


def top_level(folder: Path) -> Path:
    """The root of the git work tree `folder` is in."""
    done = git(folder, "rev-parse", "--show-toplevel", check=False)
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CommandLineError(
            f"{folder} is not inside a git work tree git can use (git: "
            f"{clip(said[0] if said else 'failed')}): run cnnbudget ci in a checkout of the "
            "repository (actions/checkout)"
        )
    return Path(done.stdout.decode("utf-8", "surrogateescape").strip())


def _commit(repo: Path, ref: str) -> str | None:
    done = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return done.stdout.decode().strip() if done.returncode == 0 else None


def resolve(found: BaseRef, repo: Path, remote: str = "origin") -> Base:
    """The base commit, fetched from `remote` (depth 1) when the checkout does not hold it."""
    if found.ref.startswith("-"):
        raise CommandLineError(f"base {found.ref!r} from {found.source} is not a ref")
    for ref in (found.ref, f"{remote}/{found.ref}"):
        commit = _commit(repo, ref)
        if commit is not None:
            return Base(found, commit)
    tried = []
    # `origin/main` names a branch of the remote: what is fetched is `main`.
    fetched = found.ref.removeprefix(f"{remote}/")
    for ref in dict.fromkeys(r for r in (fetched, found.branch) if r):
        done = git(repo, "fetch", "--no-tags", "--depth=1", remote, ref, check=False)
        if done.returncode == 0:
            commit = _commit(repo, "FETCH_HEAD")
            if commit is not None:
                moved = f"{found.ref} could not be fetched: the tip of {ref} instead"
                return Base(found, commit, moved if ref != fetched else None)
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        fatal = next((line for line in said if line.startswith("fatal:")), None)
        tried.append(f"git fetch {remote} {ref}: {clip(fatal or (said[0] if said else 'failed'))}")
    raise CommandLineError(
        f"base {found.ref!r} (from {found.source}) is not in this checkout and could not be "
        f"fetched ({'; '.join(tried)}): give --base a branch the remote has, or a commit's "
        "full hash (a remote fetches no abbreviated one)"
    )


def file_at(commit: str, repo: Path, path: str) -> bytes | None:
    """The file at `path` (relative to the work tree's root) as `commit` held it; None where it
    held none."""
    done = git(repo, "cat-file", "-e", f"{commit}:{path}", check=False)
    if done.returncode != 0:
        return None
    return git(repo, "show", f"{commit}:{path}").stdout


def commit_of(rev: str, folder: Path) -> str:
    """The commit `rev` names in the repository `folder` is in, which must hold it."""
    repo = top_level(folder)
    commit = _commit(repo, rev) if not rev.startswith("-") else None
    if commit is None:
        raise CommandLineError(
            f"{rev!r} is not a commit this checkout holds: fetch it first (git fetch --depth=1 "
            f"origin {rev}), or let cnnbudget ci find and fetch the base"
        )
    return commit


def snapshots_at(
    commit: str, repo: Path, snapshots: Iterable[Path]
) -> tuple[dict[str, SnapshotEntry], list[str]]:
    """Every entry of the snapshot files as `commit` of the work tree `repo` held them, and why
    each file that gave none did not (the base lacks it, it is outside the work tree, it
    cannot be read): their models are new to the base, and the other files still count."""
    entries: dict[str, SnapshotEntry] = {}
    missing: list[str] = []
    root = repo.resolve()
    for snapshot in snapshots:
        if not snapshot.resolve().is_relative_to(root):
            missing.append(f"{snapshot} is outside the git work tree {repo}")
            continue
        inside = snapshot.resolve().relative_to(root).as_posix()
        data = file_at(commit, repo, inside)
        if data is None or not data.strip():
            missing.append(f"the base {commit[:12]} has no {inside}")
            continue
        try:
            entries.update(parse_snapshot(data.decode("utf-8"), Path(f"{commit[:12]}:{inside}")))
        except (UnicodeDecodeError, CnnBudgetError) as e:
            missing.append(f"the base's {inside} cannot be read ({clip(exception_text(e))})")
    return entries, missing


def uncommitted(repo: Path, paths: Sequence[Path]) -> list[Path]:
    """Those of `paths` whose contents in the work tree are not the committed ones (changed,
    or never added); none where git cannot tell."""
    if not paths:
        return []
    # -z: NUL-separated paths relative to the top level, never quoted or escaped.
    done = git(
        repo,
        "status",
        "--porcelain",
        "-z",
        "--untracked-files=all",
        "--",
        *map(str, paths),
        check=False,
    )
    if done.returncode != 0:
        return []
    changed = {
        (repo / entry[3:]).resolve()
        for entry in done.stdout.decode("utf-8", "surrogateescape").split("\0")
        if len(entry) > 3
    }
    return [p for p in paths if p.resolve() in changed]
