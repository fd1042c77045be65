"""The base a pull request is compared with, read with git: which commit it is (the CI's event,
or a ref given), fetched when the checkout is shallow, and the snapshot files it held.

`actions/checkout` leaves a clone of depth 1, which holds the pull request's merge commit and
nothing else; the base commit is then fetched alone, at depth 1, through the remote the checkout
configured (with its credentials). Every failure names what to fix.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import CommandLineError
from ..units import clip

TIMEOUT = 300.0  # seconds for one git command: a fetch over a slow link, never forever


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
    sha = environ.get("CI_MERGE_REQUEST_DIFF_BASE_SHA")
    if sha:
        branch = environ.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME") or None
        return BaseRef(sha, "GitLab's merge request (CI_MERGE_REQUEST_DIFF_BASE_SHA)", branch)
    return None


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
    return BaseRef(sha, "the pull_request event", branch if isinstance(branch, str) else None)


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
        raise CommandLineError(
            f"{folder} is not inside a git work tree: run cnnbudget ci in a checkout of the "
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
                return Base(found, commit)
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        tried.append(f"git fetch {remote} {ref}: {clip(said[-1] if said else 'failed')}")
    raise CommandLineError(
        f"base {found.ref!r} (from {found.source}) is not in this checkout and could not be "
        f"fetched ({'; '.join(tried)}): give --base a branch the remote has, or a commit's "
        "full hash (a remote fetches no abbreviated one)"
    )


def file_at(base: Base, repo: Path, path: str) -> bytes | None:
    """The file at `path` (relative to the work tree's root) as the base commit held it; None
    where it held none."""
    done = git(repo, "cat-file", "-e", f"{base.commit}:{path}", check=False)
    if done.returncode != 0:
        return None
    return git(repo, "show", f"{base.commit}:{path}").stdout
