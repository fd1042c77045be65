"""Live bytes of the storages a traced pass makes, operation by operation, and their peak. Pure.

A dispatch mode sees every tensor an operation makes as it is made; a weak reference to its
storage says when it dies. Meta tensors and fake tensors (meta storage on a real device, as a
rank's are, parallel.py) are counted; a tensor subclass (a DTensor) as the tensors it wraps.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode, is_traceable_wrapper_subclass
from torch.utils._pytree import tree_flatten


def storage_of(t: torch.Tensor) -> Any | None:
    try:
        return t.untyped_storage()
    except Exception:  # sparse and nested tensors have no single storage
        return None


def is_fake(t: torch.Tensor) -> bool:
    return isinstance(t, FakeTensor)


def plain(t: torch.Tensor) -> Iterator[torch.Tensor]:
    """The tensors holding `t`'s data: itself, or those inside a tensor subclass that wraps
    others (a DTensor's local shard)."""
    if is_traceable_wrapper_subclass(t):
        names, _ = t.__tensor_flatten__()
        for name in names:
            inner = getattr(t, name)
            if isinstance(inner, torch.Tensor):
                yield from plain(inner)
    else:
        yield t


def distinct_bytes(tensors: list[Any]) -> int:
    """Bytes of the distinct storages of `tensors`: a view or a tied weight counts once, a
    DTensor as its local shard."""
    seen: dict[int, int] = {}
    for t in tensors:
        for inner in plain(t) if isinstance(t, torch.Tensor) else ():
            storage = storage_of(inner)
            if storage is not None:
                seen[storage._cdata] = storage.nbytes()
    return sum(seen.values())


_BATCH_NORM = torch.ops.aten.native_batch_norm.default


class Live(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Live bytes of meta storages after every operation, and their peak; `start` (the
    weights, the optimizer's state) is live from the beginning. Fake tensors (parallel.py)
    are meta storages too; a tensor subclass counts as the tensors it wraps."""

    device = "meta"  # where the inputs of a pass it traces are made

    def __init__(self, start: list[torch.Tensor]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.sizes: dict[int, int] = {}
        self.refs: dict[int, weakref.ref[Any]] = {}
        self.live = 0
        self.peak = 0
        self.failing: Any = None
        for t in start:
            self.add(t)

    @property
    def known(self) -> frozenset[int]:
        """The storages live now, by key."""
        return frozenset(self.sizes)

    def add(self, t: Any) -> None:
        """Count `t`'s storage if it is a meta storage not yet counted (or one that grew)."""
        if not isinstance(t, torch.Tensor):
            return
        if t.device.type != "meta" and not is_fake(t):
            if is_traceable_wrapper_subclass(t):
                for inner in plain(t):
                    self.add(inner)
            return
        storage = storage_of(t)
        if storage is not None:
            self.add_storage(storage)

    def add_storage(self, storage: Any) -> None:
        key, size = storage._cdata, storage.nbytes()
        old = self.sizes.get(key)
        if old == size:
            return
        if old is None:
            self.refs[key] = weakref.ref(storage, partial(self._free, key))
        self.sizes[key] = size
        self.live += size - (old or 0)  # a storage can grow (resize_, out= arguments)
        if self.live > self.peak:
            self.peak = self.live
            self.at_peak()

    def at_peak(self) -> None:
        """Called when the live bytes reach a new peak."""

    def _free(self, key: int, _ref: object) -> None:
        size = self.sizes.pop(key, 0)
        self.live -= size
        self.refs.pop(key, None)
        self.freed(key, size)

    def freed(self, key: int, size: int) -> None:
        """Called when the storage `key`, of `size` bytes, is freed."""

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self.failing = func  # until it returns: the op an error came from
        out = func(*args, **(kwargs or {}))
        self.failing = None
        if func is _BATCH_NORM and not args[5]:
            # Not training, the cpu and CUDA kernels return no batch statistics (empty tensors)
            # but meta's returns them channel-sized, and autograd would save them.
            out = (out[0], out[1].new_empty(0), out[2].new_empty(0))
        for t in tree_flatten(out)[0]:  # tree_leaves is newer than torch 2.1
            self.add(t)
        return out
