"""One model's check: build → count → compare with budgets and snapshot → a ModelResult.

Takes plain values and returns plain data; it never sees pytest, so it runs the same in a worker
process, in the command line tool and in tests.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from typing import TYPE_CHECKING

from ..config.budgets import check_budgets
from ..config.spec import Level, ModelSpec, Order
from ..engine.loading import build_model, local_to, resolve_target
from ..engine.measurement import measure_folded
from ..errors import (
    CnnBudgetError,
    CountError,
    MemoryTraceError,
    ModelBuildError,
    ProfileError,
    exception_text,
)
from ..frames import shown_frames
from ..results import (
    ModelResult,
    Outcome,
    ParameterCount,
    SnapshotDiff,
    SnapshotEntry,
    SnapshotStatus,
    SourceLocation,
)
from ..snapshot.compare import diff_entries
from ..snapshot.format import entry_problem
from ..units import clip_lines, thousands
from .locate import definition_source, error_source, layer_source, user_frames

if TYPE_CHECKING:
    from torch import nn

_WRITABLE = (SnapshotStatus.ADDED, SnapshotStatus.UPDATED, SnapshotStatus.MATCH)


def describe_build_error(error: BaseException) -> str:
    """The error's message plus the innermost frames of user code that raised it."""
    # Ours are bounded where they are made; one the model's code raised, however long, is cut
    # to a few hundred characters a line.
    lines = [str(error) if isinstance(error, CnnBudgetError) else clip_lines(exception_text(error))]
    frames = user_frames(error)
    if frames:
        lines.append("raised at (innermost last):")
        for frame in shown_frames(frames):
            if frame is None:
                lines.append("  …")
            else:
                lines += [line.rstrip("\n") for line in traceback.format_list([frame])]
    return "\n".join(lines)


def error_result(
    spec: ModelSpec, error: str, stage: str, source: SourceLocation | None = None
) -> ModelResult:
    """A model that could not be checked: `stage` says which step failed (see report/cells.py)."""
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


def check_model(order: Order) -> ModelResult:
    """Build, count and judge one configured model; never raises for a problem with the model
    itself.

    Any exception is that model's failure: one from the user's code, a warning that `-W error`
    turned into one, or a bug of ours that this model triggers; the other models still run.
    """
    spec = order.spec
    stage = "build"
    try:
        with local_to(spec.folder, spec.target):
            model = build_model(spec.target, spec.kwargs, device=spec.device)
        count, folded = measure_folded(model, spec.input_shape, spec.depth, spec.memory)
        stage = "check"
        result = _judge(order, model, count)
        built = _built_on_cpu(spec, model, count)
        if built:
            result = replace(result, notes=(built, *result.notes))
        if result.failed:
            result = replace(result, target_source=_safe_target_source(spec.target))
        return replace(result, folded=folded) if folded is not count else result
    except Exception as e:
        stage = error_stage(e, reached=stage)
        result = error_result(spec, describe_build_error(e), stage, _error_source(spec, e))
        return replace(result, target_source=_safe_target_source(spec.target))


def check_built(
    order: Order, model: nn.Module, call_site: SourceLocation | None = None
) -> ModelResult:
    """Count and judge a model a test built itself (the `cnn_budget` fixture), as `check_model`
    judges a configured one; failures point at `call_site`, the line that asked."""
    spec = replace(order.spec, target=order.spec.target or _class_target(model))
    order = replace(order, spec=spec)
    try:
        count, folded = measure_folded(model, spec.input_shape, spec.depth, spec.memory)
    except Exception as e:
        result = error_result(spec, describe_build_error(e), error_stage(e), call_site)
        return replace(result, target_source=call_site)
    result = _judge(order, model, count)
    if result.failed:
        # The failing layer's line first (`source`), where a pull request shows it; else the
        # line of the test that asked.
        result = replace(result, target_source=call_site)
    return replace(result, folded=folded) if folded is not count else result


def error_stage(error: BaseException, reached: str = "build") -> str:
    """The step an error comes from, as ModelResult.error_stage names it: the one its kind
    belongs to, else the step the check had `reached` when it was raised."""
    if isinstance(error, ProfileError):
        return "forward"
    if isinstance(error, MemoryTraceError):
        return "memory"
    return "build" if isinstance(error, ModelBuildError | CountError) else reached


def _class_target(model: object) -> str:
    """`package.module:Class` of a model, as a configured target would name it."""
    cls = type(model)
    return f"{cls.__module__}:{cls.__qualname__}"


def _error_source(spec: ModelSpec, error: BaseException) -> SourceLocation | None:
    try:
        return error_source(error) or _target_source(spec.target)
    except Exception:  # where to point is a nicety; the failure itself must get through
        return None


def _judge(order: Order, model: nn.Module, count: ParameterCount) -> ModelResult:
    """The verdict on a measured model, configured or built by a test alike."""
    spec, stored, update = order.spec, order.stored, order.update
    budgets = check_budgets(spec.budgets, count)
    over = any(b.over for b in budgets)
    entry = SnapshotEntry.from_count(count)
    unstorable = entry_problem(spec.name, entry) if order.snapshot_enabled else None
    if unstorable is not None:
        return error_result(spec, f"its snapshot entry cannot be stored: {unstorable}", "check")
    diff = diff_entries(stored, entry) if stored is not None and stored != entry else None
    if not order.snapshot_enabled:
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
        notes=_quantized_budget_note(spec, count),
        first=order.snapshot_enabled and stored is None,
    )


def _built_on_cpu(spec: ModelSpec, model: nn.Module, count: ParameterCount) -> str | None:
    """Where a model configured for meta holds real weights: its quantized layers, which
    packing puts on cpu, or all of it, which loading builds on cpu when meta cannot."""
    if spec.device != "meta" or not count.quantized:
        return None
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        return "its quantized layers were built on cpu (meta cannot hold packed weights)"
    return "built on cpu: meta cannot build quantized layers"


def _quantized_budget_note(spec: ModelSpec, count: ParameterCount) -> tuple[str, ...]:
    """A quantized model budgeted on trainable parameters alone, which its quantized weights
    are not: said, so that it does not seem to pass a budget it never faced."""
    if not count.quantized or "max_params" not in spec.budgets:
        return ()
    if "max_total_params" in spec.budgets or "max_param_bytes" in spec.budgets:
        return ()
    return (
        f"max_params counts trainable parameters, and the {thousands(count.quantized)} elements "
        "its quantized layers hold are not: budget it with max_total_params or max_param_bytes",
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
