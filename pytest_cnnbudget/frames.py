"""Which frames of a traceback are the user's code: not ours, torch's, pytest's, the standard
library's or frozen ones. Installed model libraries (timm, ultralytics) count as the user's: where
their constructor raised is what a reviewer looks at."""

from __future__ import annotations

import os
import sysconfig
import traceback
from pathlib import Path

# The package's own folder: frames in it are ours, never the user's.
PACKAGE_DIR = str(Path(__file__).parent)

_PATHS = sysconfig.get_paths()
_STDLIB = tuple({_PATHS["stdlib"] + os.sep, _PATHS["platstdlib"] + os.sep})
# Some layouts keep installed packages inside the standard library's folder
# (lib/python3.x/site-packages), so they are looked for first.
_INSTALLED = tuple({_PATHS["purelib"] + os.sep, _PATHS["platlib"] + os.sep})
_NOT_USER = tuple(f"{os.sep}{name}{os.sep}" for name in ("torch", "_pytest", "pluggy"))


def is_user_file(path: str) -> bool:
    """Whether a frame in `path` is the user's code: not ours, torch's, pytest's, the standard
    library's or frozen (`<frozen importlib._bootstrap>`)."""
    if path.startswith(("<", PACKAGE_DIR + os.sep)) or any(part in path for part in _NOT_USER):
        return False
    return path.startswith(_INSTALLED) or not path.startswith(_STDLIB)


def user_frames_of(error: BaseException) -> list[traceback.FrameSummary]:
    """The frames of the user's code in `error`'s own traceback, outermost first, each with
    its source line."""
    return [f for f in traceback.extract_tb(error.__traceback__) if is_user_file(f.filename)]


# Folders whose files are installed code, whichever interpreter installed them.
_INSTALLED_PARTS = ("site-packages", "dist-packages")


def is_installed(path: str) -> bool:
    """Whether `path` is an installed library's (site-packages), not the project's own code."""
    return path.startswith(_INSTALLED) or any(p in _INSTALLED_PARTS for p in Path(path).parts)


def shown_frames(
    frames: list[traceback.FrameSummary], n: int = 4
) -> list[traceback.FrameSummary | None]:
    """The innermost `n` of `frames`; when those are all an installed library's, the project's
    own innermost frame first (the line that called the library), then None where frames are
    left out: a failure deep in a library still says which line of the project led there."""
    inner = frames[-n:]
    own = [f for f in frames if not is_installed(f.filename)]
    if not own or any(not is_installed(f.filename) for f in inner):
        return list(inner)
    return [own[-1], None, *frames[-(n - 1) :]]
