"""Checks in a forked process (crash, hang, sys.exit), global state restored after each model,
and the meta-build fallback only for failures that meta causes."""

from __future__ import annotations

import contextlib
import linecache
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_hooks

from pytest_cnnbudget.config.spec import ModelSpec, Order
from pytest_cnnbudget.engine.hints import build_hint
from pytest_cnnbudget.engine.loading import build_model, meta_caused
from pytest_cnnbudget.errors import ModelBuildError
from pytest_cnnbudget.results import ModelResult, Outcome
from pytest_cnnbudget.run.forked import FORK_AVAILABLE, Forked
from pytest_cnnbudget.run.isolation import Checker, InProcess, Request, picklable_filters
from pytest_cnnbudget.run.state import preserved

needs_fork = pytest.mark.skipif(not FORK_AVAILABLE, reason="os.fork is not available")

ZOO = """
import os, sys, time, warnings, logging
import torch
from torch import nn

CALLS = os.environ.get("ISO_CALLS")


def _called():
    if CALLS:
        with open(CALLS, "a") as f:
            f.write("x")


class Good(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        print("printed by Good")
        logging.getLogger("iso").warning("logged by Good")
        warnings.warn("warned by Good")
        self.fc = nn.Linear(width, width)


class Exit(nn.Module):
    def __init__(self):
        super().__init__()
        print("progress: about to end the process")
        os._exit(3)


class Segfault(nn.Module):
    def __init__(self):
        super().__init__()
        import ctypes
        ctypes.string_at(0)


class Hang(nn.Module):
    def __init__(self):
        super().__init__()
        print("progress: waiting for a lock", file=sys.stderr)
        while True:
            time.sleep(0.01)


class SysExit(nn.Module):
    def __init__(self):
        super().__init__()
        sys.exit(2)


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message")


class RaisesUnprintable(nn.Module):
    def __init__(self):
        super().__init__()
        raise Unprintable()


class Meddles(nn.Module):
    def __init__(self):
        super().__init__()
        torch.set_default_dtype(torch.float64)
        sys.path.clear()
        os.chdir("/")
        self.fc = nn.Linear(4, 4)


class ReadsBack(nn.Module):
    def __init__(self):
        super().__init__()
        _called()
        widths = (torch.arange(3) * 4 + 4).tolist()  # meta tensors cannot do this
        self.fc = nn.Linear(widths[-1], 2)


class Offline(nn.Module):
    def __init__(self):
        super().__init__()
        _called()
        raise ConnectionError("Max retries exceeded with url: /resnet18.pth")


class NeedsGpu(nn.Module):
    def __init__(self):
        super().__init__()
        _called()
        self.fc = nn.Linear(4, 4)
        torch.cuda.current_device()


class ForksItself(nn.Module):
    def __init__(self):
        super().__init__()
        if os.fork() == 0:
            if CALLS:
                with open(CALLS + ".forked", "w") as f:
                    f.write(str(os.getpid()))
            sys.exit(0)  # the forked copy leaves the constructor
        self.fc = nn.Linear(4, 4)


class Cancelled(BaseException):
    pass


class RaisesBase(nn.Module):
    def __init__(self):
        super().__init__()
        raise Cancelled("boom")


class Tag(__import__("enum").IntEnum):
    A = 1


class LogsAnEnum(nn.Module):
    def __init__(self):
        super().__init__()
        logging.getLogger("iso").warning("tagged", extra={"tag": Tag.A})
        self.fc = nn.Linear(2, 2)


def _linger():
    if CALLS:
        with open(CALLS + ".helper", "w") as f:
            f.write(str(os.getpid()))
    time.sleep(30)  # holds the socket far longer than seeing the crash may take


class HelperThenCrash(nn.Module):
    def __init__(self):
        super().__init__()
        import ctypes, multiprocessing
        multiprocessing.get_context("fork").Process(target=_linger, daemon=True).start()
        ctypes.string_at(0)


class StrayThread(nn.Module):
    def __init__(self):
        super().__init__()
        import threading

        def end_later():
            time.sleep(3.0)  # past its own check, even on a busy machine
            os._exit(9)

        threading.Thread(target=end_later, daemon=True).start()
        self.fc = nn.Linear(2, 2)


class Sleeps(nn.Module):
    def __init__(self):
        super().__init__()
        time.sleep(4.0)
        self.fc = nn.Linear(2, 2)


class Threads(nn.Module):
    def __init__(self):
        super().__init__()
        torch.set_num_threads(4)
        a = torch.randn(1000, 1000)
        (a @ a).sum().item()
        self.fc = nn.Linear(2, 2)


class Skips(nn.Module):
    def __init__(self):
        super().__init__()
        import pytest
        pytest.skip("weights not available")


class WrongArgs(nn.Module):
    def __init__(self, width):
        super().__init__()
        _called()
"""


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module `iso_zoo` of misbehaving models, importable here and in a forked child."""
    (tmp_path / "iso_zoo.py").write_text(textwrap.dedent(ZOO), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ISO_CALLS", str(tmp_path / "calls"))
    yield tmp_path
    sys.modules.pop("iso_zoo", None)


def request_for(cls: str, timeout: float | None = None, **kwargs: object) -> Request:
    spec = ModelSpec(
        name=cls.lower(), target=f"iso_zoo:{cls}", kwargs=kwargs, budgets={"max_params": 1000}
    )
    # As a project without `filterwarnings = error` would have them (this suite has it).
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        filters = picklable_filters()
    return Request(Order(spec), timeout, filters=filters)


def result_of(checker: Checker, request: Request) -> ModelResult:
    result = checker.check(request).result
    assert result is not None
    return result


@pytest.fixture
def forked() -> Iterator[Forked]:
    checker = Forked()
    yield checker
    checker.close()


@needs_fork
def test_one_fork_serves_every_model(zoo: Path, forked: Forked) -> None:
    results = [result_of(forked, request_for("Good", width=w)) for w in (2, 4, 8)]
    assert [r.count.total for r in results if r.count] == [6, 20, 72]
    assert forked.forks == 1
    assert "iso_zoo" not in sys.modules  # the model's module is imported only in the child


@needs_fork
def test_output_logs_and_warnings_come_back(zoo: Path, forked: Forked) -> None:
    captured = forked.check(request_for("Good")).captured
    assert captured.stdout == "printed by Good\n"
    assert [r["msg"] for r in captured.records] == ["logged by Good"]
    assert [(w.message, w.base) for w in captured.warnings] == [("warned by Good", "UserWarning")]


@needs_fork
@pytest.mark.parametrize(
    ("cls", "cause"),
    [
        ("Exit", "exited with status 3"),
        ("Segfault", "was killed by SIGSEGV (signal 11)"),
    ],
)
def test_a_crash_fails_that_model_and_the_next_one_runs(
    zoo: Path, forked: Forked, cls: str, cause: str
) -> None:
    crashed = result_of(forked, request_for(cls))
    assert crashed.outcome is Outcome.ERROR
    assert crashed.error_stage == "crash"
    assert cause in (crashed.error or "")
    after = result_of(forked, request_for("Good"))
    assert after.outcome is Outcome.PASSED
    assert forked.forks == 2


@needs_fork
def test_a_segfault_says_where(zoo: Path, forked: Forked) -> None:
    result = result_of(forked, request_for("Segfault"))
    assert "iso_zoo.py" in (result.error or "")
    assert "ctypes.string_at(0)" in (result.error or "")
    assert result.source is not None
    assert result.source.path.endswith("iso_zoo.py")


@needs_fork
def test_a_hang_is_stopped_with_where_it_was(zoo: Path, forked: Forked) -> None:
    start = time.monotonic()
    result = result_of(forked, request_for("Hang", timeout=0.5))
    assert time.monotonic() - start < 0.5 + 3.0
    assert result.error_stage == "timeout"
    error = result.error or ""
    assert "time limit of 0.5 s" in error
    assert "time.sleep(0.01)" in error or "while True" in error
    assert "[tool.cnnbudget.models.hang]" in error
    assert result_of(forked, request_for("Good")).outcome is Outcome.PASSED


@needs_fork
def test_pytest_skip_in_a_constructor_comes_back_to_be_raised(zoo: Path, forked: Forked) -> None:
    checked = forked.check(request_for("Skips"))
    assert checked.result is None
    assert checked.raised is not None
    assert (checked.raised.kind, checked.raised.message) == ("Skipped", "weights not available")
    assert forked.forks == 1


@pytest.mark.parametrize("where", ["forked", "here"])
def test_sys_exit_and_unprintable_errors_are_the_models_failure(zoo: Path, where: str) -> None:
    if where == "forked" and not FORK_AVAILABLE:
        pytest.skip("os.fork is not available")
    checker = Forked() if where == "forked" else InProcess()
    try:
        exited = result_of(checker, request_for("SysExit"))
        unprintable = result_of(checker, request_for("RaisesUnprintable"))
    finally:
        checker.close()
    assert exited.error == "the model's code called sys.exit(2)"
    assert "Unprintable: <its message could not be shown: str() raised RuntimeError>" in (
        unprintable.error or ""
    )


def test_a_warning_turned_into_an_error_is_the_models_failure(zoo: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        request = request_for("Good")
        request = Request(Order(request.spec), None, filters=picklable_filters())
    result = result_of(InProcess(), request)
    assert result.outcome is Outcome.ERROR
    assert "UserWarning: warned by Good" in (result.error or "")


def test_global_state_is_restored_after_a_model(zoo: Path) -> None:
    cwd, path = os.getcwd(), list(sys.path)
    result = result_of(InProcess(), request_for("Meddles"))
    assert result.outcome is Outcome.PASSED
    assert result.count is not None
    assert result.count.param_bytes == 20 * 8  # its own float64
    assert torch.get_default_dtype() == torch.float32
    assert os.getcwd() == cwd
    assert sys.path == path


def test_preserved_restores_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISO_KEEP", "1")
    before = (torch.random.get_rng_state(), random.getstate(), dict(os.environ))
    threads, limit = torch.get_num_threads(), sys.getrecursionlimit()
    module = sys.modules["json"]
    changed: list[str] = []
    with preserved(changed):
        torch.set_default_dtype(torch.float16)
        torch.set_default_device("meta")
        torch.set_grad_enabled(False)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        torch.manual_seed(1)
        random.seed(1)
        torch.rand(3)
        random.random()
        os.environ["ISO_ADDED"] = "1"
        del os.environ["ISO_KEEP"]
        sys.setrecursionlimit(limit + 7)
        del sys.modules["json"]
        torch.device("meta").__enter__()  # a mode pushed and never exited
        signal.signal(signal.SIGTERM, lambda *_: None)
        signal.alarm(30)
        hook = module_hooks.register_module_forward_hook(lambda *_: None)
        logging.disable(logging.CRITICAL)
        engine = torch.backends.quantized.engine
        torch.backends.quantized.engine = next(
            e for e in torch.backends.quantized.supported_engines if e not in (engine, "none")
        )
    assert torch.backends.quantized.engine == engine
    assert torch.get_default_dtype() == torch.float32
    assert torch.empty(1).device.type == "cpu"
    assert torch.is_grad_enabled()
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), before[0])
    assert random.getstate() == before[1]
    assert dict(os.environ) == before[2]
    assert sys.getrecursionlimit() == limit
    assert sys.modules["json"] is module
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert hook.id not in module_hooks._global_forward_hooks
    assert logging.root.manager.disable == 0
    for name in (
        "torch default dtype",
        "grad mode",
        "deterministic algorithms",
        "environment",
        "torch function modes",
        "signal handlers",
        "timer (signal.alarm, setitimer)",
        "torch global module hooks",
        "logging.disable",
        "quantized engine",
    ):
        assert name in changed


def test_nothing_changed_reports_nothing() -> None:
    changed: list[str] = []
    with preserved(changed):
        nn.Linear(2, 2, device="meta")
    assert changed == []


# -- the meta-build fallback ------------------------------------------------------------------


def calls(zoo: Path) -> int:
    path = zoo / "calls"
    return len(path.read_text()) if path.exists() else 0


def test_fallback_runs_for_what_meta_causes(zoo: Path) -> None:
    model = build_model("iso_zoo:ReadsBack")
    assert calls(zoo) == 2  # the meta build, then the fallback
    assert model.get_parameter("fc.weight").device.type == "meta"


@pytest.mark.parametrize(
    ("cls", "hint"),
    [
        ("Offline", "counting needs no weights: set pretrained = false"),
        ("NeedsGpu", "the constructor needs a GPU; guard it or build on meta"),
        (
            "WrongArgs",
            "WrongArgs needs width: add it to the model's kwargs: kwargs = { width = … }",
        ),
    ],
)
def test_no_fallback_for_network_gpu_or_argument_errors(zoo: Path, cls: str, hint: str) -> None:
    with pytest.raises(ModelBuildError) as info:
        build_model(f"iso_zoo:{cls}")
    assert calls(zoo) == (0 if cls == "WrongArgs" else 1)  # WrongArgs fails before the body
    message = str(info.value)
    assert message.startswith(f"hint: {hint}")  # what to do, before the library's words


def test_meta_caused_on_real_meta_failures() -> None:
    with torch.device("meta"):
        t = torch.ones(3)
    failures = []
    for op in (lambda: t.tolist(), lambda: t[0].item(), lambda: t.numpy(), lambda: t.nonzero()):
        try:
            op()
        except Exception as e:
            failures.append(e)
    try:
        f"{t[0]:d}"
    except TypeError as e:  # int formatting reads the value back
        failures.append(e)
    assert len(failures) == 5
    assert all(meta_caused(e) for e in failures)
    wrapped = OSError("could not build the model")
    wrapped.__cause__ = failures[0]
    assert meta_caused(wrapped)  # a library's own error around the meta cause
    assert not meta_caused(ValueError("meta-llama/Llama-2-7b-hf is not a local folder"))
    assert not meta_caused(ImportError("No module named 'timm'"))
    assert not meta_caused(TypeError("__init__() got an unexpected keyword argument 'depth'"))
    assert not meta_caused(UserWarning("meta tensors are slow"))


def test_build_hint_reads_causes() -> None:
    outer = ValueError("config not found")
    outer.__cause__ = OSError("We couldn't connect to 'https://huggingface.co'")
    assert build_hint(outer) == (
        "counting needs no weights: set pretrained = false (or the library's equivalent) in kwargs"
    )
    assert build_hint(ValueError("width must be even")) is None


def test_replayed_warnings_are_cleaned_and_so_is_the_source_line_shown(tmp_path: Path) -> None:
    from pytest_cnnbudget.report.github import neutralize_text
    from pytest_cnnbudget.run.isolation import Captured, CapturedWarning, replay

    source = tmp_path / "doc.py"
    source.write_text('DOC = """\n::error::from the source\n"""\n', encoding="utf-8")
    warning = CapturedWarning(
        "::error::from the message", "doc.Mine", "UserWarning", str(source), 2
    )
    with pytest.warns(UserWarning, match="from the message") as record:
        replay(Captured(warnings=(warning,)), neutralize_text)
    [shown] = record
    assert str(shown.message) == "| ::error::from the message"
    assert type(shown.message).__name__ == "Mine"  # a stand-in: doc is never imported here
    assert issubclass(shown.category, UserWarning)
    assert linecache.getline(str(source), 2) == "| ::error::from the source\n"


def test_without_fork_a_hang_ends_the_run_with_where_it_was(zoo: Path) -> None:
    # In a process of its own: the time limit ends the process that runs the check.
    script = textwrap.dedent(
        """
        import iso_zoo  # torch too, before the clock starts

        from pytest_cnnbudget.config.spec import ModelSpec, Order
        from pytest_cnnbudget.run.isolation import InProcess, Request

        spec = ModelSpec("hang", "iso_zoo:Hang", {}, {"max_params": 10})
        InProcess().check(Request(Order(spec), timeout=0.5))
        print("not reached")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(zoo), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "not reached" not in done.stdout
    assert "Timeout (0:00:00.500000)!" in done.stderr
    assert "iso_zoo.py" in done.stderr


@needs_fork
def test_a_process_that_died_between_checks_is_not_blamed_on_the_next_model(
    zoo: Path, forked: Forked
) -> None:
    assert result_of(forked, request_for("Good")).outcome is Outcome.PASSED
    assert forked.child is not None
    os.kill(forked.child.pid, 9)
    time.sleep(0.2)
    assert result_of(forked, request_for("Good")).outcome is Outcome.PASSED
    assert forked.forks == 2


@needs_fork
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states in /proc")
def test_a_model_that_forks_leaves_one_checker(zoo: Path, forked: Forked) -> None:
    # Time limits, so that a second process answering on the socket fails rather than hangs.
    assert result_of(forked, request_for("ForksItself", timeout=20)).outcome is Outcome.PASSED
    results = [result_of(forked, request_for("Good", timeout=20, width=w)) for w in (2, 4)]
    assert [r.count.total for r in results if r.count] == [6, 20]
    assert forked.forks == 1
    # The forked copy ended at once, rather than live on as a second checker (or hang in it).
    pid = int((zoo / "calls.forked").read_text())
    try:
        deadline = time.monotonic() + 5
        while not _ended(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _ended(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _ended(pid: int) -> bool:
    """Gone, or a zombie: exited, and only waiting for its parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("where", ["forked", "here"])
def test_a_base_exception_of_the_models_is_its_failure_not_a_skip(zoo: Path, where: str) -> None:
    if where == "forked" and not FORK_AVAILABLE:
        pytest.skip("os.fork is not available")
    checker = Forked() if where == "forked" else InProcess()
    try:
        checked = checker.check(request_for("RaisesBase"))
    finally:
        checker.close()
    assert checked.raised is None
    assert checked.result is not None
    assert checked.result.outcome is Outcome.ERROR
    assert "Cancelled: boom" in (checked.result.error or "")


@needs_fork
def test_log_extras_of_the_models_types_do_not_import_its_module_here(
    zoo: Path, forked: Forked
) -> None:
    captured = forked.check(request_for("LogsAnEnum")).captured
    # str() of an IntEnum member, as the model's process formats it: its value from Python 3.11
    # on, its name before.
    expected = "1" if sys.version_info >= (3, 11) else "Tag.A"
    assert [r["tag"] for r in captured.records] == [expected]
    assert "iso_zoo" not in sys.modules


@needs_fork
def test_descriptors_above_1023_are_waited_on(zoo: Path, forked: Forked) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if min(soft, hard) < 1200:
        pytest.skip(f"at most {soft} open files")
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        first = result_of(forked, request_for("Good", timeout=30, width=2))
        second = result_of(forked, request_for("Good", timeout=30, width=4))
    finally:
        for fd in spare:
            os.close(fd)
    assert [first.count and first.count.total, second.count and second.count.total] == [6, 20]


@needs_fork
def test_a_crash_is_seen_though_a_process_the_model_forked_holds_the_socket(
    zoo: Path, forked: Forked
) -> None:
    start = time.monotonic()
    try:
        result = result_of(forked, request_for("HelperThenCrash", timeout=20))
    finally:
        helper = zoo / "calls.helper"
        if helper.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(helper.read_text()), signal.SIGKILL)
    assert time.monotonic() - start < 10
    assert result.error_stage == "crash"
    assert "SIGSEGV" in (result.error or "")


@pytest.mark.slow
@pytest.mark.parametrize("capture", ["fd", "sys"])
def test_in_pytests_process_a_time_limit_says_where_on_the_terminal(
    pytester: pytest.Pytester, capture: str
) -> None:
    pytester.makepyfile(iso_zoo=textwrap.dedent(ZOO))
    pytester.makepyprojecttoml(
        "[tool.cnnbudget]\nsnapshot = false\n\n[tool.cnnbudget.models.hang]\n"
        'target = "iso_zoo:Hang"\nmax_params = 10\ntimeout = 2\n'
    )
    args = ("--cnn-budget", "--cnn-budget-isolation=off", f"--capture={capture}")
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", timeout=120)
    assert result.ret == 1
    err = result.stderr.str()
    assert "Timeout (0:00:02)!" in err
    assert "iso_zoo.py" in err


@pytest.mark.slow
@needs_fork
def test_a_thread_the_model_left_running_cannot_end_the_next_models_check(
    zoo: Path, forked: Forked
) -> None:
    assert result_of(forked, request_for("StrayThread")).outcome is Outcome.PASSED
    # Under way when the thread ends its process, three seconds after it started.
    assert result_of(forked, request_for("Sleeps", timeout=20)).outcome is Outcome.PASSED
    assert forked.forks == 2


@needs_fork
def test_threads_a_model_asks_for_after_the_fork_cannot_hang_it(zoo: Path, forked: Forked) -> None:
    a = torch.randn(1000, 1000)
    (a @ a).sum()  # this process's thread pool in use, as a test suite's would be
    result = result_of(forked, request_for("Threads", timeout=30))
    assert result.outcome is Outcome.PASSED, result.error


@needs_fork
def test_what_a_model_printed_before_it_crashed_or_hung_comes_back(
    zoo: Path, forked: Forked
) -> None:
    crashed = forked.check(request_for("Exit")).captured
    assert crashed.stdout == "progress: about to end the process\n"
    hung = forked.check(request_for("Hang", timeout=0.5)).captured
    assert hung.stderr == "progress: waiting for a lock\n"


def test_under_dash_s_output_is_not_held_back(
    zoo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    request = dataclasses.replace(request_for("Good"), redirect=False)
    checked = InProcess().check(request)
    assert checked.captured.stdout == ""
    assert capsys.readouterr().out == "printed by Good\n"


def test_user_files_include_installed_libraries_but_not_torch_pytest_or_the_stdlib() -> None:
    import sysconfig

    import pytest_cnnbudget
    from pytest_cnnbudget.frames import is_user_file

    paths = sysconfig.get_paths()
    installed = Path(paths["purelib"])
    assert is_user_file("/home/me/project/models/cifar.py")
    assert is_user_file(str(installed / "timm" / "models" / "resnet.py"))
    assert not is_user_file(str(installed / "torch" / "nn" / "modules" / "module.py"))
    assert not is_user_file(str(installed / "_pytest" / "runner.py"))
    assert not is_user_file(str(Path(paths["stdlib"]) / "json" / "decoder.py"))
    assert not is_user_file(str(Path(pytest_cnnbudget.__file__).parent / "run" / "gate.py"))
    assert not is_user_file("<frozen importlib._bootstrap>")
