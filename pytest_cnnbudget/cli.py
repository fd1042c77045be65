"""`cnnbudget summary|plot TARGET`: the gate's engine from the command line, without pytest.

    python -m pytest_cnnbudget summary pkg.module:Model [--kwargs JSON] [--input-shape 1,3,32,32]
                                       [--depth N] [--format table|json|markdown]
                                       [--no-group] [--trainable-only]
    python -m pytest_cnnbudget plot pkg.module:Model [--kwargs JSON] [--top N] [--out DIR]
                                    [--no-group] [--trainable-only]

Errors the user can fix (a bad target, kwargs or shape, a model that does not build, a shape
mismatch) print one message to stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .constants import DEVICES
from .errors import CnnBudgetError, CommandLineError, CountError

if TYPE_CHECKING:
    from .inputs import InputSpec
    from .results import ParameterCount

PROG = "cnnbudget"
USAGE_ERROR = 2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Count a PyTorch model's parameters per layer, with the textbook formulas.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("target", help='the model, as "package.module:attr" (class or factory)')
        sub.add_argument(
            "--kwargs",
            default="{}",
            metavar="JSON",
            help="keyword arguments, e.g. '{\"num_classes\": 10}'",
        )
        sub.add_argument(
            "--input-shape",
            metavar="SHAPE",
            help="run one forward pass on meta tensors of this shape: 1,3,32,32 (several "
            "inputs: 1,3,32,32;1,10; keyword inputs: x=1,3,32,32;mask=1,32; or JSON)",
        )
        sub.add_argument(
            "--device",
            choices=DEVICES,
            default="meta",
            help="where the model is built (default: meta, which allocates no weights)",
        )
        sub.add_argument(
            "--no-group",
            action="store_true",
            help="one row per layer (by default layers alike but for their block index are one "
            "row: layers.{0..31}.mlp.up ×32)",
        )
        sub.add_argument(
            "--trainable-only",
            action="store_true",
            help="only the layers that train, each counted by its trainable parameters (an "
            "adapter's view of a model with a frozen base)",
        )

    summary = commands.add_parser(
        "summary",
        help="print the per-layer table",
        description="Print the per-layer parameter table; with --input-shape also output "
        "shapes and multiply-adds.",
    )
    model_options(summary)
    summary.add_argument(
        "--depth",
        type=_positive,
        metavar="N",
        help="group rows by the first N levels of the module name (layer1.0.conv1 → layer1)",
    )
    summary.add_argument(
        "--format", choices=("table", "json", "markdown"), default="table", help="output format"
    )

    plot = commands.add_parser(
        "plot",
        help="write a bar chart of the largest layers (SVG and PNG)",
        description="Write <name>.svg and <name>.png: each layer's share of the parameters.",
    )
    model_options(plot)
    plot.add_argument("--top", type=_positive, default=10, metavar="N", help="bars (default 10)")
    plot.add_argument("--out", default=".", metavar="DIR", help="output folder (default: .)")
    plot.add_argument("--name", help="file name without extension (default: the attr's name)")
    plot.add_argument("--title", help="chart title (default: the parameter total)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status: 0, or 2 for an error the user can fix."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse already printed
        return e.code if isinstance(e.code, int) else USAGE_ERROR
    # A console script does not put the working directory on sys.path as `python -m` does;
    # targets in the current project should import either way.
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return _run(args)
    finally:
        if added:
            sys.path.remove(cwd)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "summary":
            print(_summary(args))
        else:
            for path in _plot(args):
                print(path)
    except CnnBudgetError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except BrokenPipeError:
        # `cnnbudget summary … | head` closed the pipe early: nothing left to say. Point stdout
        # at devnull so that the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def _kwargs(text: str) -> dict[str, Any]:
    from .config import check_kwargs
    from .constants import MAX_CONFIG_BYTES
    from .units import brief

    if len(text) > MAX_CONFIG_BYTES:
        raise CommandLineError(
            f"--kwargs is {len(text):,} characters; at most {MAX_CONFIG_BYTES:,}"
        )
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise CommandLineError(f"--kwargs is not valid JSON ({e}): {brief(text)}") from e
    if not isinstance(value, dict):
        raise CommandLineError(
            f"--kwargs must be a JSON object like '{{\"num_classes\": 10}}', not {brief(text)}"
        )
    try:
        return check_kwargs(value)
    except ValueError as e:
        raise CommandLineError(f"--kwargs: {e}") from e


def _input_spec(text: str | None) -> InputSpec | None:
    if text is None:
        return None
    from .inputs import parse_input_shape

    try:
        return parse_input_shape(text)
    except ValueError as e:
        raise CommandLineError(f"--input-shape {text!r}: {e}") from e


def _measure(args: argparse.Namespace, depth: int | None = None) -> ParameterCount:
    """Build and measure the model the arguments name."""
    from .loading import build_model
    from .measurement import measure

    kwargs = _kwargs(args.kwargs)
    spec = _input_spec(args.input_shape)
    model = build_model(args.target, kwargs, device=args.device)
    try:
        return measure(model, spec, depth=depth)
    except CountError as e:
        raise CountError(f"{e} (--input-shape)" if spec is None else str(e)) from e


def _summary(args: argparse.Namespace) -> str:
    from .render_json import summary_dict
    from .render_terminal import layer_report
    from .tables import Style

    count = _measure(args, depth=args.depth)
    if args.trainable_only:
        from .views import trainable_only

        count = trainable_only(count)
    if args.format == "json":
        document = {"target": args.target, "kwargs": _kwargs(args.kwargs), **summary_dict(count)}
        return json.dumps(document, indent=2, ensure_ascii=False)
    style = Style.MARKDOWN if args.format == "markdown" else Style.TEXT
    return "\n".join(layer_report(count, style, group=not args.no_group))


def _plot(args: argparse.Namespace) -> list[Path]:
    from .plot import save_plot

    count = _measure(args)
    name = args.name or args.target.rpartition(":")[2].rpartition(".")[2] or "model"
    return save_plot(
        count,
        args.out,
        name,
        top=args.top,
        title=args.title,
        group=not args.no_group,
        trainable_only=args.trainable_only,
    )
