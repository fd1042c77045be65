"""`"package.module:attr"` + kwargs → an `nn.Module`, built on the meta device by default.

On meta, parameters and buffers have shapes and dtypes but no storage, so a 7-billion-parameter
model counts in a few hundred megabytes.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.abc
import importlib.machinery
import pkgutil
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config.instantiate import instantiate
from ..errors import ModelBuildError, exception_text
from ..frames import user_frames_of
from ..units import brief, clip, clip_lines, human_bytes, listing
from .hints import build_hint, chain, message, missing_arguments_hint
from .meta import (
    MetaMeetsReal,
    Registered,
    SkipFillsOnMeta,
    imports_off_meta,
    registered_on_meta,
)
from .network import fail_fast_offline
from .quantized import contains_quantized


@contextmanager
def local_to(folder: str | None, target: str) -> Iterator[None]:
    """Import `target` from its config's folder while its model is built.

    In a monorepo every package can have its own `models.py`: whichever package's was imported
    first would otherwise build every package's models, with the wrong counts. So when the
    folder holds the target's top-level module, that folder comes first on `sys.path` and a
    same-named module imported from elsewhere is set aside (state.py puts it back afterwards);
    else the folder is searched last, so that an installed package still wins.
    """
    if folder is None:
        yield
        return
    top = target.partition(":")[0].split(".")[0]
    local = Path(folder, f"{top}.py").is_file() or Path(folder, top).is_dir()
    added = folder not in sys.path
    if local:
        cached = sys.modules.get(top)
        where = getattr(cached, "__file__", None) or ""
        if cached is not None and not Path(where).resolve().is_relative_to(Path(folder).resolve()):
            for name in [n for n in sys.modules if n == top or n.startswith(f"{top}.")]:
                del sys.modules[name]
        sys.path.insert(0, folder)
    elif added:
        sys.path.append(folder)
    try:
        yield
    finally:
        if (local or added) and folder in sys.path:  # a constructor may have cleared it
            sys.path.remove(folder)


def resolve_target(target: str, key: str = "target", *, dotted: bool = False) -> Callable[..., Any]:
    """Import `"package.module:attr"` (attr may be dotted) and return the callable it names.

    With `dotted`, also Hydra's `"package.module.attr"`. `key` says where the target was
    written, `kwargs.config._target_` for an object in kwargs, for the messages.
    """
    module_name, sep, attr_path = target.partition(":")
    if dotted and not sep and "." in target:
        module_name, attr_path = _module_prefix(target, key)
    elif not sep or not module_name or not attr_path:
        raise ModelBuildError(
            f"{key} {target!r} is not of the form 'package.module:attr' (e.g. 'models.cifar:Net')"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:
        raise _cannot_import(module_name, key, target, e) from e
    done: list[str] = []
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            close = difflib.get_close_matches(part, [n for n in dir(obj) if n[:1] != "_"], n=1)
            meant = f"{module_name}:{'.'.join([*done, *close])}" if close else None
            raise ModelBuildError(
                f"module {module_name!r} has no attribute {attr_path!r} ({key} {target!r})"
                + (f" (did you mean {meant!r}?)" if meant else "")
            ) from e
        done.append(part)
    if not callable(obj):
        raise ModelBuildError(f"{key} {target!r} is a {type(obj).__name__}, not a class or factory")
    return obj  # type: ignore[no-any-return]


def _cannot_import(module_name: str, key: str, target: str, error: Exception) -> ModelBuildError:
    close = _close_module(module_name, error)
    return ModelBuildError(
        f"cannot import module {module_name!r} for {key} {target!r}: "
        f"{clip_lines(exception_text(error))}" + (f" (did you mean {close!r}?)" if close else "")
    )


def _close_module(module_name: str, error: Exception) -> str | None:
    """A module of a name close to the target's, when the target's own module (or a package
    above it) is what could not be found: a typo, not a missing dependency."""
    missing = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
    if not missing or not (module_name == missing or module_name.startswith(missing + ".")):
        return None
    parent, _, leaf = missing.rpartition(".")
    try:
        where = getattr(importlib.import_module(parent), "__path__", None) if parent else None
    except Exception:
        return None
    if parent and where is None:
        return None
    names = [m.name for m in pkgutil.iter_modules(where)]
    # Stricter than difflib's 0.6: every module on sys.path is a candidate.
    close = difflib.get_close_matches(leaf, names, n=1, cutoff=0.8)
    if not close:
        return None
    found = f"{parent}.{close[0]}" if parent else close[0]
    return found + module_name[len(missing) :]


def _module_prefix(target: str, key: str) -> tuple[str, str]:
    """`"package.module.attr"` → (module, attr), where its longest prefix that imports ends."""
    parts = target.split(".")
    for n in range(len(parts) - 1, 1, -1):
        name = ".".join(parts[:n])
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            # No module of that name (nor of a package above it): a shorter prefix may be the
            # module. A module that fails to import what it needs is the error itself.
            if e.name and (name == e.name or name.startswith(e.name + ".")):
                continue
            raise _cannot_import(name, key, target, e) from e
        except Exception as e:
            raise _cannot_import(name, key, target, e) from e
        return name, ".".join(parts[n:])
    return parts[0], ".".join(parts[1:])


def _resolve_nested(target: str, key: str) -> Callable[..., Any]:
    return resolve_target(target, key, dotted=True)


def _call(factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    # Objects in kwargs (`_target_` tables) are built here, in the device context the model is
    # built in, so that a backbone passed to a head is on meta as well.
    args, keywords = instantiate(kwargs, _resolve_nested)
    return factory(*args, **keywords)


def build_model(
    target: str | Callable[..., Any],
    kwargs: Mapping[str, Any] | None = None,
    device: str = "meta",
) -> nn.Module:
    """Build the model that `target` names, allocating no weights unless `device="cpu"`."""
    factory = resolve_target(target) if isinstance(target, str) else target
    name = target if isinstance(target, str) else getattr(target, "__qualname__", repr(target))
    kwargs = dict(kwargs or {})
    if device not in ("meta", "cpu"):
        raise ModelBuildError(f"device must be 'meta' or 'cpu', not {device!r}")
    try:
        with fail_fast_offline():
            model = _call(factory, kwargs) if device == "cpu" else _build_on_meta(factory, kwargs)
    except Exception as e:
        # When both builds failed, the first cause is the one to point at (its line is what
        # annotations and "raised at" show); the message has both.
        cause = e.first if isinstance(e, _FallbackFailed) else e
        hint = missing_arguments_hint(factory, kwargs, e)
        raise ModelBuildError(_failure(f"{name}({_kwargs_text(kwargs)})", e, hint)) from cause
    if not isinstance(model, nn.Module):
        raise ModelBuildError(f"{name} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


class _FallbackFailed(Exception):
    """Both builds on meta failed: `first` under `torch.device("meta")`, `again` in the
    fallback, which had moved `registered` to meta by then."""

    def __init__(self, first: Exception, again: Exception, registered: Registered) -> None:
        super().__init__(exception_text(again))
        self.first = first
        self.again = again
        self.registered = registered


def _build_on_meta(factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    try:
        with torch.device("meta"), SkipFillsOnMeta(), imports_off_meta():
            return _call(factory, kwargs)
    except Exception as e:
        if not meta_caused(e):
            raise
        if _converting(e):
            # Converting a float model reads its weights, on meta in the retry as well.
            return _quantized_on_cpu(factory, kwargs, e)
        # Some constructors compute widths with tensor ops and read them back (torchvision's
        # RegNet calls .tolist()), or run the model forward and compute on what comes out
        # (YOLO's stride probe): meta tensors give no values. Retry with real arithmetic, the
        # weights moved to meta as they are registered, and an operation meeting both run on
        # meta. Only then: the constructor runs a second time, with its side effects, and an
        # import, network or argument error would only fail again.
        registered = Registered()
        try:
            with registered_on_meta() as registered, SkipFillsOnMeta(), MetaMeetsReal():
                return _call(factory, kwargs)
        except Exception as again:
            try:
                return _quantized_on_cpu(factory, kwargs, again, e)
            except Exception as last:
                if last is not again:  # the quantized model's cpu build failed: its own error
                    raise
                raise _FallbackFailed(e, again, registered) from again


def _failure(call: str, error: Exception, hint: str | None = None) -> str:
    """What a failed build says: a hint first, where one fits (what to do, before the
    library's own words), then its error, and the first cause when the fallback failed too
    (the fallback's own error is often a consequence of running differently)."""
    hint = hint or build_hint(error)
    if isinstance(error, ModelBuildError):
        # An object in kwargs that failed is named by its key path and target already.
        what = str(error)
    elif isinstance(error, _FallbackFailed):
        first, again = _said(error.first), _said(error.again, until=error.first)
        what = f"building {call} on meta raised {first}\n"
        # Said once when both fail alike: a value read from what the model computed.
        what += "built again with real arithmetic and its weights on meta, it " + (
            "failed there too" if again == first else f"raised {again}"
        )
        if hint is None and meta_caused(error.again, until=error.first):
            made = error.registered.bytes
            cost = f" (a cpu build allocates its weights: {human_bytes(made)} were made before "
            cost += "it failed)"
            hint = (
                'set device = "cpu" for this model: its constructor needs values that tensors '
                "on meta do not have" + (cost if made else "")
            )
    else:
        what = f"building {call} raised {clip_lines(exception_text(error))}"
    return (f"hint: {hint}\n" if hint else "") + what


def _said(error: BaseException, until: BaseException | None = None) -> str:
    """An error as a failed build quotes it, with the line of the user's code it came from.

    An object in kwargs that failed is named by its key path and target already (a
    ModelBuildError), so its text is quoted without a type.
    """
    text = str(error) if isinstance(error, ModelBuildError) else exception_text(error)
    return clip_lines(text) + _where(error, until)


def _where(error: BaseException, until: BaseException | None = None) -> str:
    """`\n  at path/to/file.py:12 in bias_init: <its line>`: the innermost frame of the user's
    code (an installed library's included) in the traceback of the deepest exception `error`
    chains (up to `until`) that has one; empty when there is none."""
    for e in reversed(list(chain(error, until))):
        frames = user_frames_of(e)
        if frames:
            frame = frames[-1]
            place = f"{_short_path(frame.filename)}:{frame.lineno} in {frame.name}"
            return f"\n  at {clip(place)}" + (f": {clip(frame.line)}" if frame.line else "")
    return ""


def _short_path(filename: str) -> str:
    """`filename` relative to the folder on sys.path it was imported from (`ultralytics/nn/
    modules/head.py`), or to the working directory, else as it is."""
    path = Path(filename)
    shortest = filename
    with suppress(OSError):  # a working directory that was removed
        for folder in [Path.cwd(), *(Path(p) for p in sys.path if p)]:
            with suppress(ValueError):
                relative = str(path.relative_to(folder))
                if len(relative) < len(shortest):
                    shortest = relative
    return shortest


def _kwargs_text(kwargs: Mapping[str, Any]) -> str:
    """The keyword arguments as a failure quotes them: `width=8, depth=3`, cut short."""
    return listing([f"{k}={brief(v)}" for k, v in kwargs.items()])


def _quantized_on_cpu(
    factory: Callable[..., Any],
    kwargs: Mapping[str, Any],
    error: Exception,
    first: Exception | None = None,
) -> Any:
    """The model built on cpu, where quantization is why meta failed; else `error` raised.

    A quantized layer packs its weights with kernels that exist for cpu only, and converting a
    float model (`quantize_dynamic`, `convert`, torchvision's `quantize=True`) reads its
    weights' values and runs it on real data to calibrate: neither works on meta, with or
    without real arithmetic. Such models are small. Only they are built on cpu: `error` (the
    retry's, raised while handling `first`) must be meta's doing by itself, a network error is
    not, with quantization code on the stack or quantized ops in a message, and the model built
    must hold quantized layers, so that no float model allocates its weights because of this.
    """
    if not (meta_caused(error, until=first) and _quantizing(error)):
        raise error
    model = _call(factory, kwargs)
    if not contains_quantized(model):
        raise error
    return model


# Modules of quantization code: torch.ao.quantization (observers, `convert`), torch.ao.nn.quantized
# and its kin (the layers), torchvision.models.quantization; messages of quantized kernels.
_QUANTIZATION_MODULE = re.compile(r"(?:^|\.)quantiz")
_CONVERSION_MODULE = re.compile(r"(?:^|\.)quantization(?:\.|$)")
_QUANTIZED_MESSAGE = re.compile(r"quantized::|\bQuantized[A-Z]|\bqu?int(?:8|32|4x2)\b")


def _on_stack(error: BaseException, module: re.Pattern[str]) -> bool:
    """Whether code of a module whose name `module` matches raised `error` (or one it chains)
    or called what did."""
    return any(
        module.search(str(frame.f_globals.get("__name__", "")))
        for e in chain(error)
        for frame, _ in traceback.walk_tb(e.__traceback__)
    )


def _quantizing(error: BaseException) -> bool:
    """Whether quantization code, or a quantized kernel, is what failed."""
    return any(_QUANTIZED_MESSAGE.search(message(e)) for e in chain(error)) or _on_stack(
        error, _QUANTIZATION_MODULE
    )


def _converting(error: BaseException) -> bool:
    """Whether converting a float model to a quantized one (or calibrating it) failed."""
    return _on_stack(error, _CONVERSION_MODULE)


# What a meta tensor makes fail that a real one would not: reading values back (`.item()`,
# `.tolist()`, `int(t)`, NumPy), data-dependent shapes, a missing meta kernel, and mixing meta
# with the real tensors a constructor makes itself.
_META_CAUSED = re.compile(
    r"\bmeta\b(?![-/])|register_meta|fake impl|no data!|data-dependent|_local_scalar_dense"
    r"|not on the expected device|same device|without output_size|Boolean value of Tensor"
    r"|Tensor\.__format__",
    re.IGNORECASE,
)


def meta_caused(error: BaseException, until: BaseException | None = None) -> bool:
    """Whether building on meta, not the constructor itself, is what failed: some exception in
    the chain (up to `until`, which it was raised while handling) reads as a meta tensor's
    doing (one that wraps it, such as a library's own OSError around the cause, does not hide
    it); warnings turned into errors never do."""
    errors = list(chain(error, until))
    if any(isinstance(e, Warning) for e in errors):
        return False
    meta_kinds = RuntimeError | NotImplementedError | TypeError | ValueError
    return any(isinstance(e, meta_kinds) and _META_CAUSED.search(message(e)) for e in errors)
