"""Benchmarks of pytest-cnnbudget: what the plugin costs, and where that time goes.

    python benchmarks/run.py                 # everything; prints and writes benchmarks/results.md
    python benchmarks/run.py --quick         # smoke run: fewer models, one repeat, prints only
    python benchmarks/run.py --only size --package /tmp/patched
                                             # one section, against another copy of the package

Every figure comes from separate subprocesses (a fresh interpreter each time, so import costs are
paid the way a CI job pays them) and is the median of `--repeat` runs. The jobs of one
comparison are interleaved and their order rotates between rounds, so that drift of the machine
(thermal, page cache, neighbours) lands on both sides of a ratio. Wall time is taken around the
whole process; peak memory is the process's ru_maxrss, read with wait4() when it is reaped.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from context import Context
from harness import (
    BENCH_DIR,
    INSTALLED_BYTECODE,
    REPO,
    BenchError,
    Job,
    Runner,
    child_env,
    log,
    python,
)
from projects import Projects
from report import Section, document
from sections import SECTIONS

RESULTS = BENCH_DIR / "results.md"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks, print the report and (unless quick) write results.md."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per figure; the median is reported (default 3)"
    )
    parser.add_argument(
        "--overhead-repeat",
        type=int,
        help="runs per side of the overhead ratio "
        "(default 15 × --repeat: with fewer, a 2%% effect hides in the noise)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: one repeat, fewer models, no warm-up; writes no file unless --output",
    )
    parser.add_argument(
        "--only", action="append", choices=list(SECTIONS), help="run only this section (repeatable)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds before a subprocess is killed (default 600)",
    )
    parser.add_argument(
        "--package",
        type=Path,
        help="a folder holding another copy of pytest_cnnbudget to measure instead",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the report (default {RESULTS.relative_to(REPO)})",
    )
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=20.0,
        help="seconds to wait before each run for other processes to leave the CPU idle "
        "(default 20; 0 disables; quick runs never wait)",
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run every process with PYTHONDONTWRITEBYTECODE=1 (recompiling on each run)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated projects (their path is printed)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = 1
    if args.overhead_repeat is None:
        args.overhead_repeat = 3 if args.quick else 15 * args.repeat
    if args.package is not None:
        args.package = args.package.resolve()
        if not (args.package / "pytest_cnnbudget" / "__init__.py").is_file():
            parser.error(f"--package {args.package}: no pytest_cnnbudget/__init__.py there")

    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="cnnbudget-bench-"))
    # A smoke run checks that each section runs, not its figures: it takes the bytecode the
    # environment has rather than compiling torch into a private prefix first.
    pycache: Path | str | None = root / "pycache"
    if args.no_bytecode_cache:
        pycache = None
    elif args.quick:
        pycache = INSTALLED_BYTECODE
    runner = Runner(
        child_env(args.package, pycache),
        args.timeout,
        warmup=not args.quick,
        idle_wait=0.0 if args.quick else args.idle_wait,
    )
    ctx = Context(runner, Projects(root, runner), args.repeat, args.overhead_repeat, args.quick)
    sections: list[Section] = []
    errors: dict[str, str] = {}
    try:
        if isinstance(pycache, Path):
            # The prefix starts empty, so torch would be recompiled by whichever run came first.
            log("compiling torch's bytecode into the scratch prefix")
            try:
                runner.once(Job("compile", (python(), "-c", "import torch, torch._dynamo"), root))
            except BenchError as e:
                errors["set-up"] = str(e)  # every section will say what is wrong, too
        for name in args.only or list(SECTIONS):
            log(f"[{name}]")
            try:
                sections.append(SECTIONS[name](ctx))
            except BenchError as e:
                # One broken benchmark must not cost the figures of the others.
                errors[name] = str(e)
                log(f"[{name}] failed: {e}")
    finally:
        if args.keep:
            log(f"generated projects kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    text = document(sections, errors, args, time.perf_counter() - started)
    print(text, end="")
    output = args.output or (None if args.quick else RESULTS)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        log(f"written to {output}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
