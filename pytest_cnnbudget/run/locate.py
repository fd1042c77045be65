"""Where in the user's source a reviewer should look: the line that defines a layer, the model's
class or factory, or the line a constructor raised on. Best effort: None when it cannot tell."""

from __future__ import annotations

import inspect
import re
import traceback
from typing import TYPE_CHECKING, Any

from ..frames import user_frames_of
from ..results import SourceLocation

if TYPE_CHECKING:
    from torch import nn


def _assignment_line(cls: type, attr: str) -> SourceLocation | None:
    """The line of `self.<attr> = …` in `cls` or its bases (user classes only)."""
    pattern = re.compile(rf"^\s*self\.{re.escape(attr)}\s*(?::[^=]*)?=")
    for klass in inspect.getmro(cls):
        if klass.__module__.startswith(("torch.", "builtins")):
            continue
        try:
            source, start = inspect.getsourcelines(klass)
            path = inspect.getsourcefile(klass)
        except (OSError, TypeError):
            continue
        if path is None:
            continue
        for offset, line in enumerate(source):
            if pattern.match(line):
                return SourceLocation(path, start + offset)
    return None


def layer_source(model: nn.Module, layer: str) -> SourceLocation | None:
    """The line that creates `layer` (a qualified module name), e.g. `self.fc1 = nn.Linear(...)`.

    Containers such as `blocks.3.conv` are walked from the innermost named attribute outwards, so
    a layer inside an `nn.Sequential` points at the line that builds the Sequential.
    """
    parts = [] if layer in ("", "(root)") else layer.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        attr = parts[depth]
        if attr.isdigit():
            continue
        try:
            owner = model.get_submodule(".".join(parts[:depth]))
        except AttributeError:
            return None
        found = _assignment_line(type(owner), attr)
        if found is not None:
            return found
    return None


def definition_source(obj: Any) -> SourceLocation | None:
    """The line where a class or factory is defined."""
    try:
        path = inspect.getsourcefile(obj)
        _, line = inspect.getsourcelines(obj)
    except (OSError, TypeError):
        return None
    return SourceLocation(path, max(line, 1)) if path else None


def user_frames(error: BaseException) -> list[traceback.FrameSummary]:
    """The frames of the user's own code in the traceback of `error`'s cause (or `error`)."""
    return user_frames_of(error.__cause__ or error)


def error_source(error: BaseException) -> SourceLocation | None:
    """The innermost frame of user code in the traceback of `error` (or its cause)."""
    frames = user_frames(error)
    if not frames or frames[-1].lineno is None:
        return None
    return SourceLocation(frames[-1].filename, frames[-1].lineno)
