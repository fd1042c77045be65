"""The cycle collector around a gate run: torch's objects frozen out of its way.

torch, and torch._dynamo which the first Python-written meta kernel imports, create several
hundred thousand objects that live as long as the process. Left to the collector, every full
collection walks them all again: in a run that checks one 7B model that was 0.8 s of its 2 s,
more than the check itself. Frozen objects (`gc.freeze`) are skipped by every later collection.

Freezing keeps whatever it catches out of cyclic collection until `thaw`, so it only happens
between items, at a shallow stack, after a collection: never while a model, its traceback or
the frames of a running test are alive. What a session froze is thawed when the next session
in the same process starts, not when it ends: pytest collects several times on the way out,
and each would walk all of torch again. A user who disabled the collector is left alone; there
is nothing to save then.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_froze = False  # whether anything was frozen here, so that `thaw` leaves a user's freeze alone


def _freeze() -> None:
    global _froze
    gc.freeze()
    _froze = True


def import_frozen(name: str) -> None:
    """Import `name` with the collector paused, then freeze everything alive."""
    if name in sys.modules or not gc.isenabled():
        return
    gc.collect()  # cheap before torch is loaded; keeps garbage out of the frozen set
    gc.disable()
    try:
        importlib.import_module(name)
    except Exception:
        # A broken torch install: the first item imports it again and fails with the cause,
        # as its own failure rather than as an internal error of pytest's run loop.
        pass
    finally:
        # No second collection, which would walk all of torch once: an import leaves next to
        # no garbage.
        _freeze()
        gc.enable()


@contextmanager
def paused() -> Iterator[None]:
    """Pause the collector; if modules were imported meanwhile, collect and freeze afterwards.

    Wrap a whole test item with it, not the code inside: see the module docstring.
    """
    if not gc.isenabled():
        yield
        return
    modules = len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
    if len(sys.modules) > modules:
        gc.collect()
        _freeze()


def thaw() -> None:
    """Return what `import_frozen` and `paused` froze to the collector."""
    global _froze
    if _froze:
        gc.unfreeze()
        _froze = False
