"""Process-global state a model's constructor or forward pass can change, saved before each check
and put back after it.

A constructor that calls `torch.set_default_dtype(torch.float64)`, clears `sys.path` or changes
directory would otherwise change the next model's result, and the next model would be blamed.
What is restored: torch's default dtype and device, grad and anomaly mode, deterministic
algorithms, intra-op threads, leaked torch function and dispatch modes, the torch, Python and
NumPy random states, `sys.path`, the working directory, the environment, the recursion limit,
`sys.modules` entries the check removed or replaced, signal handlers and a timer it started,
torch's global module hooks, `logging.disable` and the quantized engine. Modules the check
imported stay imported: unloading a C extension is unsafe, and the next model from the same
file would pay for the import again.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class _Setting:
    """One piece of global state: how to read it and how to put a read value back."""

    name: str
    get: Callable[[], Any]
    set: Callable[[Any], None]
    compare: bool = True  # False: always put back (reading it back to compare costs as much)


def _set_default_device(device: Any) -> None:
    torch.set_default_device(None if device == torch.device("cpu") else device)


def _set_deterministic(value: tuple[bool, bool]) -> None:
    torch.use_deterministic_algorithms(value[0], warn_only=value[1])


def _set_quantized_engine(engine: str) -> None:
    torch.backends.quantized.engine = engine


def _environ() -> dict[Any, Any]:
    # The raw mapping where there is one (POSIX: bytes): copying os.environ itself decodes
    # every entry, the costliest read of all here.
    return dict(getattr(os.environ, "_data", os.environ))


def _restore_environ(saved: dict[Any, Any]) -> None:
    decode_key = getattr(os.environ, "decodekey", lambda k: k)
    decode_value = getattr(os.environ, "decodevalue", lambda v: v)
    wanted = {decode_key(k): decode_value(v) for k, v in saved.items()}
    for key in [k for k in os.environ if k not in wanted]:
        del os.environ[key]
    for key, value in wanted.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _restore_modules(saved: dict[str, Any]) -> None:
    # Modules compare by identity; the view comparison runs in C, a loop in Python costs 10×.
    if saved.items() <= sys.modules.items():
        return
    for name, module in saved.items():
        if sys.modules.get(name) is not module:
            sys.modules[name] = module


def _replace(items: list[Any], saved: list[Any]) -> None:
    items[:] = saved  # in place: code that holds a reference to sys.path sees the restore


def _numpy_random() -> Any:
    # Only when the process already uses NumPy: importing it here would cost every run.
    numpy = sys.modules.get("numpy")
    return getattr(numpy, "random", None)


def _get_numpy_state() -> Any:
    generator = _numpy_random()
    return generator.get_state() if generator is not None else None


def _set_numpy_state(state: Any) -> None:
    generator = _numpy_random()
    if generator is not None and state is not None:
        generator.set_state(state)


def _stack_length(name: str) -> Callable[[], int]:
    length = getattr(torch._C, f"_len_torch_{name}_stack", None)
    return (lambda: length()) if length is not None else (lambda: 0)


def _pop_modes(name: str) -> Callable[[int], None]:
    length = _stack_length(name)
    pop = getattr(torch._C, f"_pop_torch_{name}_stack", None)

    def restore(saved: int) -> None:
        # Only modes the check pushed and never exited (a `with` left by an exception is
        # exited already); the ones below were there before and stay.
        while pop is not None and length() > saved:
            pop()

    return restore


# The C function: signal.getsignal wraps each answer in an enum, ten times the cost.
_getsignal = getattr(getattr(signal, "_signal", None), "getsignal", signal.getsignal)


def _signal_handlers() -> list[Any]:
    return [_getsignal(number) for number in _SIGNALS]


def _set_signal_handlers(saved: list[Any]) -> None:
    for number, handler in zip(_SIGNALS, saved, strict=True):
        if _getsignal(number) != handler and handler is not None:
            signal.signal(number, handler)


# The signals a library sets handlers for (an alarm or a timer, termination, children, a
# profiler): a model's `signal.alarm(1)` or SIGTERM handler would otherwise go off in, or be
# blamed on, the next model. Not all 64: each is read twice per model.
_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGALRM",
        "SIGVTALRM",
        "SIGPROF",
        "SIGTERM",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGUSR1",
        "SIGUSR2",
        "SIGCHLD",
        "SIGPIPE",
        "SIGXFSZ",
        "SIGXCPU",
        "SIGWINCH",
        "SIGSEGV",
        "SIGABRT",
    )
    if hasattr(signal, name)
)


def _timer_armed() -> bool:
    return hasattr(signal, "getitimer") and signal.getitimer(signal.ITIMER_REAL)[0] > 0


def _disarm_timer(armed_before: bool) -> None:
    # A timer that was running before cannot be put back as it was (its time has passed on);
    # one the model started is stopped.
    if not armed_before:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _module_hooks() -> dict[str, dict[Any, Any]]:
    return {name: dict(hooks) for name, hooks in _GLOBAL_HOOKS.items()}


def _set_module_hooks(saved: dict[str, dict[Any, Any]]) -> None:
    for name, hooks in _GLOBAL_HOOKS.items():
        if hooks != saved[name]:
            hooks.clear()
            hooks.update(saved[name])


# `register_module_forward_hook` and its kind add to these for every module built afterwards:
# a model that leaves one behind changes the next model's parameters or forward pass.
_GLOBAL_HOOKS: dict[str, dict[Any, Any]] = {
    name: value
    for name, value in vars(torch.nn.modules.module).items()
    if name.startswith("_global_") and isinstance(value, dict)
}


_SETTINGS = (
    _Setting("torch default dtype", torch.get_default_dtype, torch.set_default_dtype),
    _Setting("grad mode", torch.is_grad_enabled, torch._C._set_grad_enabled),
    _Setting("anomaly detection", torch.is_anomaly_enabled, torch.set_anomaly_enabled),
    _Setting(
        "deterministic algorithms",
        lambda: (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ),
        _set_deterministic,
    ),
    _Setting("torch threads", torch.get_num_threads, torch.set_num_threads),
    # Before the modes: set_default_device(None) leaves by exiting the mode it entered.
    *(
        [_Setting("torch default device", torch.get_default_device, _set_default_device)]
        if hasattr(torch, "get_default_device")  # torch >= 2.3; before, only `with` set it
        else []
    ),
    _Setting("torch function modes", _stack_length("function"), _pop_modes("function")),
    _Setting("torch dispatch modes", _stack_length("dispatch"), _pop_modes("dispatch")),
    _Setting("torch random state", torch.random.get_rng_state, torch.random.set_rng_state, False),
    _Setting("Python random state", random.getstate, random.setstate, False),
    _Setting("NumPy random state", _get_numpy_state, _set_numpy_state, False),
    _Setting("sys.path", lambda: list(sys.path), lambda saved: _replace(sys.path, saved)),
    _Setting("working directory", os.getcwd, os.chdir),
    _Setting("environment", _environ, _restore_environ),
    _Setting("recursion limit", sys.getrecursionlimit, sys.setrecursionlimit),
    _Setting("sys.modules", lambda: dict(sys.modules), _restore_modules, False),
    _Setting("signal handlers", _signal_handlers, _set_signal_handlers),
    _Setting("timer (signal.alarm, setitimer)", _timer_armed, _disarm_timer),
    _Setting("torch global module hooks", _module_hooks, _set_module_hooks),
    _Setting("logging.disable", lambda: logging.root.manager.disable, logging.disable),
    # torchvision's quantize=True models set the engine their weights are packed for.
    _Setting("quantized engine", lambda: torch.backends.quantized.engine, _set_quantized_engine),
)


def _read(setting: _Setting) -> Any:
    try:
        return setting.get()
    except Exception:  # a working directory deleted under us: nothing to go back to
        return _UNREADABLE


_UNREADABLE = object()


@contextmanager
def preserved(changed: list[str] | None = None) -> Iterator[None]:
    """Run the body, then put every piece of global state back as it was; the names of those the
    body changed are appended to `changed`."""
    saved = [(setting, _read(setting)) for setting in _SETTINGS]
    try:
        yield
    finally:
        for setting, value in saved:
            if value is _UNREADABLE:
                continue
            if setting.compare:
                now = _read(setting)
                if now is not _UNREADABLE and now == value:
                    continue
                if changed is not None:
                    changed.append(setting.name)
            try:
                setting.set(value)
            except Exception:
                # One setting that cannot be put back must not keep the others from it.
                if changed is not None:
                    changed.append(f"{setting.name} (could not be restored)")
