"""One model's check: build → count → compare with budgets and snapshot → a ModelResult.

Takes plain values and returns plain data; it never sees pytest, so it runs the same in a worker
process, in the command line tool and in tests.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from typing import TYPE_CHECKING

from .budgets import check_budgets
from .compare import diff_entries
from .config import Level, ModelSpec
from .errors import CnnBudgetError, CountError, ModelBuildError, ProfileError, exception_text
from .loading import build_model, resolve_target
from .locate import definition_source, error_source, layer_source, user_frames
from .measurement import measure_folded
from .results import (
    ModelResult,
    Outcome,
    ParameterCount,
    SnapshotDiff,
    SnapshotEntry,
    SnapshotStatus,
    SourceLocation,
)

if TYPE_CHECKING:
    from torch import nn

_WRITABLE = (SnapshotStatus.ADDED, SnapshotStatus.UPDATED, SnapshotStatus.MATCH)


def describe_build_error(error: BaseException) -> str:
    """The error's message plus the innermost frames of user code that raised it."""
    lines = [str(error) if isinstance(error, CnnBudgetError) else exception_text(error)]
    frames = user_frames(error)
    if frames:
        lines.append("raised at (innermost last):")
        lines += [line.rstrip("\n") for line in traceback.format_list(frames[-4:])]
    return "\n".join(lines)


def error_result(
    spec: ModelSpec, error: str, stage: str, source: SourceLocation | None = None
) -> ModelResult:
    """A model that could not be checked: `stage` says which step failed (see render_terminal)."""
    return ModelResult(
        name=spec.name,
        target=spec.target,
        level=spec.level.value,
        outcome=Outcome.ERROR,
        snapshot=SnapshotStatus.UNKNOWN,
        error=error,
        error_stage=stage,
        source=source,
    )


def check_model(
    spec: ModelSpec,
    stored: SnapshotEntry | None,
    *,
    snapshot_enabled: bool,
    update: bool,
) -> ModelResult:
    """Build, count and judge one model; never raises for a problem with the model itself.

    Any exception is that model's failure: one from the user's code, a warning that `-W error`
    turned into one, or a bug of ours that this model triggers; the other models still run.
    """
    stage = "build"
    try:
        model = build_model(spec.target, spec.kwargs, device=spec.device)
        count, folded = measure_folded(model, spec.input_shape, spec.depth)
        stage = "check"
        result = _judge(spec, stored, model, count, snapshot_enabled, update)
        if result.failed:
            result = replace(result, target_source=_safe_target_source(spec.target))
        return replace(result, folded=folded) if folded is not count else result
    except Exception as e:
        if isinstance(e, ProfileError):
            stage = "forward"
        elif isinstance(e, ModelBuildError | CountError):
            stage = "build"
        result = error_result(spec, describe_build_error(e), stage, _error_source(spec, e))
        return replace(result, target_source=_safe_target_source(spec.target))


def _error_source(spec: ModelSpec, error: BaseException) -> SourceLocation | None:
    try:
        return error_source(error) or _target_source(spec.target)
    except Exception:  # where to point is a nicety; the failure itself must get through
        return None


def _judge(
    spec: ModelSpec,
    stored: SnapshotEntry | None,
    model: nn.Module,
    count: ParameterCount,
    snapshot_enabled: bool,
    update: bool,
) -> ModelResult:
    budgets = check_budgets(spec.budgets, count)
    over = any(b.over for b in budgets)
    entry = SnapshotEntry.from_count(count)
    diff = diff_entries(stored, entry) if stored is not None and stored != entry else None
    if not snapshot_enabled:
        status, diff = SnapshotStatus.OFF, None
    elif update and over and spec.level is Level.ERROR:
        # The snapshot only ever holds accepted states; an over-budget model is not one.
        status = SnapshotStatus.REJECTED
    elif stored is None:
        status = SnapshotStatus.ADDED if update else SnapshotStatus.MISSING
    elif diff is None:
        status = SnapshotStatus.MATCH
    else:
        status = SnapshotStatus.UPDATED if update else SnapshotStatus.CHANGED

    failing = over or status in (SnapshotStatus.CHANGED, SnapshotStatus.MISSING)
    if not failing:
        outcome = Outcome.PASSED
    else:
        outcome = Outcome.WARNED if spec.level is Level.WARN else Outcome.FAILED
    return ModelResult(
        name=spec.name,
        target=spec.target,
        level=spec.level.value,
        outcome=outcome,
        snapshot=status,
        count=count,
        budgets=budgets,
        diff=diff,
        entry=entry if status in _WRITABLE else None,
        source=None if outcome is Outcome.PASSED else _failure_source(model, spec, count, diff),
    )


def _safe_target_source(target: str) -> SourceLocation | None:
    try:
        return _target_source(target)
    except Exception:  # where to point is a nicety; the failure itself must get through
        return None


def _target_source(target: str) -> SourceLocation | None:
    try:
        return definition_source(resolve_target(target))
    except ModelBuildError:
        return None


def _failure_source(
    model: nn.Module, spec: ModelSpec, count: ParameterCount, diff: SnapshotDiff | None
) -> SourceLocation | None:
    """The line a reviewer should read first: the layer that changed most, else the largest
    layer, else the model's class or factory; None when a model's odd source defeats it."""
    try:
        return _find_failure_source(model, spec, count, diff)
    except Exception:
        return None


def _find_failure_source(
    model: nn.Module, spec: ModelSpec, count: ParameterCount, diff: SnapshotDiff | None
) -> SourceLocation | None:
    present = {row.name for row in count.parameter_rows}
    changed = [c for c in diff.layers if c.name in present] if diff is not None else []
    if changed:
        layer = max(changed, key=lambda c: abs(c.delta)).name
    elif count.parameter_rows:
        layer = count.largest(1)[0].name
    else:
        layer = ""
    return layer_source(model, layer) or _target_source(spec.target)
