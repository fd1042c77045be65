"""Measuring subprocesses: start, time, check and (on timeout) kill them, and take medians."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from child import REPORT_PREFIX

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CHILD = BENCH_DIR / "child.py"
IDLE_BUSY = 0.15  # a run starts once others use at most this share of the CPU (or on time-out)


class BenchError(Exception):
    """A subprocess failed, timed out or printed something other than expected."""


@dataclass(frozen=True)
class Job:
    """One command to measure, and what its output must (not) contain to count as correct."""

    label: str
    argv: tuple[str, ...]
    cwd: Path
    expect: tuple[str, ...] = ()
    reject: tuple[str, ...] = ()
    exit_codes: tuple[int, ...] = (0,)  # 1 where some of its tests are expected to fail


@dataclass(frozen=True)
class Sample:
    """One run of a job."""

    wall: float
    cpu: float  # user + system seconds: far less sensitive than wall to a busy machine
    rss_mb: float  # ru_maxrss is in KiB on Linux; every "MB" is 2**20 bytes
    busy: float  # share of the machine's CPU others used just before the run, 0 to 1
    load: float  # the 1-minute load average just before the run (0 where it cannot be read)
    inside: dict[str, float]
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Stats:
    """All timed runs of one job; figures are medians."""

    samples: tuple[Sample, ...]

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def rss(self) -> float:
        return statistics.median(s.rss_mb for s in self.samples)

    @property
    def busy(self) -> float:
        return max(s.busy for s in self.samples)

    @property
    def loads(self) -> tuple[float, float]:
        """The lowest and highest 1-minute load average any of its runs started at."""
        return min(s.load for s in self.samples), max(s.load for s in self.samples)

    @property
    def spread(self) -> str:
        walls = [s.wall for s in self.samples]
        return f"{min(walls):.3f}–{max(walls):.3f} s"

    def inside(self, key: str) -> float:
        return statistics.median(s.inside.get(key, 0.0) for s in self.samples)


class Runner:
    """Starts, times, checks and (on timeout) kills benchmark subprocesses."""

    def __init__(self, env: dict[str, str], timeout: float, warmup: bool, idle_wait: float) -> None:
        self.env = env
        self.timeout = timeout
        self.warmup = warmup
        self.idle_wait = idle_wait

    def wait_for_idle(self) -> float:
        """Wait (at most `idle_wait` s) until others leave most of the CPU; their last share.

        On a shared machine a concurrent test run can double a wall time. Waiting for a quiet
        moment keeps most samples clean, and the share is reported so that the rest can be
        judged; CPU time is reported next to wall time for the same reason.
        """
        deadline = time.monotonic() + self.idle_wait
        while True:
            busy = cpu_busy(0.5)
            if busy <= IDLE_BUSY or time.monotonic() >= deadline:
                return busy
            time.sleep(1.0)

    def once(self, job: Job) -> Sample:
        """Run `job` to completion; its wall time, peak RSS and the numbers it reported."""
        busy = self.wait_for_idle() if self.idle_wait > 0 else cpu_busy(0.2)
        load = load_average()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            timed_out = threading.Event()
            start = time.perf_counter()
            proc = subprocess.Popen(
                job.argv,
                cwd=job.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                # Its own process group, so a timeout also ends whatever it started.
                start_new_session=True,
            )

            def kill() -> None:
                timed_out.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

            timer = threading.Timer(self.timeout, kill)
            timer.start()
            try:
                # wait4 instead of Popen.wait: it returns this one child's rusage. The
                # RUSAGE_CHILDREN alternative reports the maximum over every child reaped so
                # far, so a small run measured after a big one would inherit its peak.
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                kill()
                proc.wait()
                raise
            finally:
                timer.cancel()
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode("utf-8", "replace")
            stderr = err.read().decode("utf-8", "replace")
        where = f"{job.label} (in {job.cwd}: {' '.join(job.argv)})"
        if timed_out.is_set():
            raise BenchError(f"{where} timed out after {self.timeout:.0f} s")
        text = stdout + stderr
        if proc.returncode not in job.exit_codes:
            raise BenchError(f"{where} exited with {proc.returncode}:\n{_tail(text)}")
        for needle in job.expect:
            if needle not in text:
                raise BenchError(f"{where}: output lacks {needle!r}:\n{_tail(text)}")
        for needle in job.reject:
            if needle in text:
                raise BenchError(f"{where}: output contains {needle!r}:\n{_tail(text)}")
        inside: dict[str, float] = {}
        for line in stdout.splitlines():
            if line.startswith(REPORT_PREFIX):
                inside = json.loads(line[len(REPORT_PREFIX) :])
        cpu = usage.ru_utime + usage.ru_stime
        return Sample(wall, cpu, usage.ru_maxrss / 1024, busy, load, inside, stdout, stderr)

    def measure(self, jobs: Sequence[Job], repeat: int, warmup: bool = True) -> dict[str, Stats]:
        """Median-ready samples of each job, interleaved, in a rotating order; `warmup=False`
        where a set-up run has already paid what the warm-up would (a long job's bytecode)."""
        if self.warmup and warmup:
            # Untimed: fills the page cache with torch's libraries and writes the .pyc files
            # of the generated projects, which the first real run would otherwise pay alone.
            for job in jobs:
                log(f"  warm-up  {job.label}")
                self.once(job)
        samples: dict[str, list[Sample]] = {job.label: [] for job in jobs}
        for round_ in range(repeat):
            shift = round_ % len(jobs)
            for job in [*jobs[shift:], *jobs[:shift]]:
                sample = self.once(job)
                samples[job.label].append(sample)
                log(
                    f"  {round_ + 1}/{repeat}  {job.label}: "
                    f"{sample.wall:.3f} s wall, {sample.cpu:.3f} s CPU, {sample.rss_mb:.0f} MB, "
                    f"machine {sample.busy:.0%} busy before (load {sample.load:.2f})"
                )
        return {label: Stats(tuple(runs)) for label, runs in samples.items()}


def cpu_busy(interval: float) -> float:
    """The share of all cores that was not idle during the next `interval` seconds."""

    def times() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # idle + iowait

    try:
        total0, idle0 = times()
        time.sleep(interval)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return 0.0  # not Linux: no figure, and no waiting
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def load_average() -> float:
    """The 1-minute load average: on a shared machine, how many others wanted a core."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return 0.0


# A smoke run's bytecode: the environment's own `__pycache__` folders, as installed.
INSTALLED_BYTECODE = "installed"


def child_env(package: Path | None, pycache: Path | str | None) -> dict[str, str]:
    """The environment of every benchmark process: ours, minus what would change pytest's mind.
    `pycache`: a private bytecode prefix, INSTALLED_BYTECODE, or None for no bytecode cache."""
    drop = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k not in drop}
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    elif isinstance(pycache, Path):
        # Without cached bytecode every run recompiles the package, the model code and each
        # module pytest rewrites for assertions (all of a plugin's distribution: hypothesis is
        # ~100 modules), which no installed CI setup pays twice. A private prefix gives the
        # cached steady state without writing __pycache__ folders into the repository.
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if package is not None:
        # Ahead of site-packages, hence ahead of the editable install's finder.
        env["PYTHONPATH"] = str(package)
    return env


def python() -> str:
    return sys.executable


def pytest_argv(*args: str, python_flags: Sequence[str] = ()) -> tuple[str, ...]:
    return (python(), *python_flags, "-m", "pytest", *args)


def child_argv(*args: str) -> tuple[str, ...]:
    return (python(), str(CHILD), *args)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_OUTCOME = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected)\b")


def outcomes(text: str) -> dict[str, int]:
    """pytest's closing summary (`3 failed, 297 passed in 80.1s`) as counts by outcome."""
    for line in reversed(text.splitlines()):
        found = _OUTCOME.findall(line)
        if found and " in " in line:
            return {
                kind.rstrip("s") if kind.startswith("error") else kind: int(n) for n, kind in found
            }
    return {}
