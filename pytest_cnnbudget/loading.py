"""`"package.module:attr"` + kwargs → an `nn.Module`, built on the meta device by default.

On meta, parameters and buffers have shapes and dtypes but no storage, so a 7-billion-parameter
model counts in a few hundred megabytes.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parameter import is_lazy
from torch.overrides import TorchFunctionMode

from .errors import ModelBuildError, exception_text
from .units import brief


def resolve_target(target: str) -> Callable[..., Any]:
    """Import `"package.module:attr"` (attr may be dotted) and return the callable it names."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise ModelBuildError(
            f"target {target!r} is not of the form 'package.module:attr' (e.g. 'models.cifar:Net')"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:
        raise ModelBuildError(
            f"cannot import module {module_name!r} for target {target!r}: {type(e).__name__}: {e}"
        ) from e
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            raise ModelBuildError(
                f"module {module_name!r} has no attribute {attr_path!r} (target {target!r})"
            ) from e
    if not callable(obj):
        raise ModelBuildError(
            f"target {target!r} is a {type(obj).__name__}, not a class or factory"
        )
    return obj  # type: ignore[no-any-return]


# In-place random fills that initializers call and whose meta kernel is written in Python. The
# first call of such a kernel in a process imports torch._dynamo: about 0.8 s, more than
# building a 7B model takes. On meta there is nothing to fill, so the fill is skipped; the same
# call on a one-element cpu tensor (C++ kernels) still rejects what a real build would reject.
_FILLS = frozenset(
    {
        Tensor.normal_,
        Tensor.log_normal_,
        Tensor.exponential_,
        Tensor.cauchy_,
        Tensor.geometric_,
        # Dispatches on its own, so the mode would not see the normal_ inside it.
        nn.init.normal_,
    }
)


class _SkipFillsOnMeta(TorchFunctionMode):
    """Return meta tensors unchanged from random fills and from `torch.eye(out=t)` (`eye_`)."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func in _FILLS:
            key = "tensor" if "tensor" in kwargs else "self"
            tensor = args[0] if args else kwargs.get(key)
            if isinstance(tensor, Tensor) and tensor.is_meta and not is_lazy(tensor):
                kwargs.pop("generator", None)  # a real generator must not advance
                stand_in = torch.empty(1, dtype=tensor.dtype, device="cpu")
                if args:
                    func(stand_in, *args[1:], **kwargs)
                else:
                    func(**{**kwargs, key: stand_in})
                return tensor
        if func is torch.eye:
            out = kwargs.get("out")
            rows = args[0] if args else kwargs.get("n")
            cols = args[1] if len(args) > 1 else kwargs.get("m", rows)
            if isinstance(out, Tensor) and out.is_meta and tuple(out.shape) == (rows, cols):
                return out
        return func(*args, **kwargs)


@contextmanager
def _registered_on_meta() -> Iterator[None]:
    """Move every parameter and buffer to meta the moment a module registers it.

    Tensors the constructor makes for its own arithmetic stay real, so code that reads values
    back (`.tolist()`, `.item()`) works. Layer weights come from `torch.empty`, whose pages are
    never touched before they move, so no full-size allocation reaches resident memory.
    """

    def param_hook(module: nn.Module, name: str, param: Any) -> Any:
        if param is None or is_lazy(param) or param.device.type == "meta":
            return None
        return type(param)(param.to("meta"), requires_grad=param.requires_grad)

    def buffer_hook(module: nn.Module, name: str, buffer: Any) -> Any:
        if buffer is None or buffer.device.type == "meta":
            return None
        return buffer.to("meta")

    from torch.nn.modules import module as module_mod

    handles = [
        module_mod.register_module_parameter_registration_hook(param_hook),
        module_mod.register_module_buffer_registration_hook(buffer_hook),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _call(factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    return factory(**kwargs)


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
        if device == "cpu":
            model = _call(factory, kwargs)
        else:
            try:
                with torch.device("meta"), _SkipFillsOnMeta():
                    model = _call(factory, kwargs)
            except Exception as e:
                if not meta_caused(e):
                    raise
                # Some constructors compute widths with tensor ops and read them back, which
                # meta tensors cannot do (torchvision's RegNet calls .tolist()). Retry with real
                # arithmetic but weights moved to meta as they are registered. Only then: the
                # constructor runs a second time, with its side effects, and an import, network
                # or argument error would only fail again.
                with _registered_on_meta(), _SkipFillsOnMeta():
                    model = _call(factory, kwargs)
    except Exception as e:
        hint = build_hint(e)
        raise ModelBuildError(
            f"building {name}({_kwargs_text(kwargs)}) raised {exception_text(e)}"
            + (f"\nhint: {hint}" if hint else "")
        ) from e
    if not isinstance(model, nn.Module):
        raise ModelBuildError(f"{name} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _kwargs_text(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={brief(v)}" for k, v in kwargs.items())


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# What a meta tensor makes fail that a real one would not: reading values back (`.item()`,
# `.tolist()`, `int(t)`, NumPy), data-dependent shapes, a missing meta kernel, and mixing meta
# with the real tensors a constructor makes itself.
_META_CAUSED = re.compile(
    r"\bmeta\b(?![-/])|register_meta|fake impl|no data!|data-dependent|_local_scalar_dense"
    r"|not on the expected device|same device|without output_size|Boolean value of Tensor"
    r"|Tensor\.__format__",
    re.IGNORECASE,
)


def meta_caused(error: BaseException) -> bool:
    """Whether building on meta, not the constructor itself, is what failed: some exception in
    the chain reads as a meta tensor's doing (one that wraps it, such as a library's own
    OSError around the cause, does not hide it); warnings turned into errors never do."""
    chain = list(_chain(error))
    if any(isinstance(e, Warning) for e in chain):
        return False
    meta_kinds = RuntimeError | NotImplementedError | TypeError | ValueError
    return any(isinstance(e, meta_kinds) and _META_CAUSED.search(_message(e)) for e in chain)


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return ""


_NETWORK = re.compile(
    r"download|HF_HUB_OFFLINE|offline mode|couldn't connect|Max retries|"
    r"Name or service not known|name resolution|Network is unreachable|getaddrinfo",
    re.IGNORECASE,
)
_GPU = re.compile(r"\bcuda\b|nvidia|\bgpu\b|compiled with CUDA", re.IGNORECASE)


def build_hint(error: BaseException) -> str | None:
    """A one-line hint for the failures a gate sees most: weights to download, a GPU."""
    for e in _chain(error):
        text = _message(e)
        if isinstance(e, ConnectionError | TimeoutError) or _NETWORK.search(text):
            return (
                "counting needs no weights: set pretrained = false (or the library's "
                "equivalent) in kwargs"
            )
        if _GPU.search(text):
            return "the constructor needs a GPU; guard it or build on meta"
    return None
