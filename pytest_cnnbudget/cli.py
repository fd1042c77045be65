"""`cnnbudget summary|plot MODEL`: the gate's engine from the command line, without pytest.

    python -m pytest_cnnbudget summary pkg.module:Model [--kwargs JSON] [--input-shape 1,3,32,32]
                                       [--depth N] [--format table|json|markdown]
                                       [--no-group] [--trainable-only]
                                       [--memory] [--optimizer NAME] [--autocast bf16|fp16]
                                       [--parallel TABLE]
    python -m pytest_cnnbudget plot pkg.module:Model [--kwargs JSON] [--top N] [--out DIR]
                                    [--no-group] [--trainable-only]
    python -m pytest_cnnbudget summary resnet18_small [--config PATH] [--input-shape …] [--depth N]

MODEL is a target, or the name of a model configured in `[tool.cnnbudget]`: of the first
pyproject.toml with that table in the working directory or above it, or of `--config PATH`.

Errors the user can fix (a bad target, kwargs or shape, a model that does not build, a shape
mismatch, a name not configured) print one message to stderr and exit with status 2, without a
traceback.
"""

from __future__ import annotations

import argparse
import difflib
import io
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import ci_cli, comment_cli, merge_cli
from .cli_values import input_spec_option, kwargs_option, parallel_option
from .config.fields import AUTOCAST, depth_option, parse_optimizer
from .config.settings import discover_config, load_settings
from .config.spec import Settings, model_depth
from .constants import DEVICES
from .errors import CnnBudgetError, CommandLineError, CountError, GitHubApiError
from .inputs import InputSpec
from .jsontext import echoed, json_text
from .names import printable
from .report.json import summary_dict
from .report.plot import require_matplotlib, save_plot
from .report.suggest import memory_budget_lines, shape_toml
from .report.tables import Style
from .report.terminal import layer_report
from .report.views import trainable_only
from .results import MemoryOptions, ParameterCount
from .run.outputs import chart_stems
from .units import brief, listing

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
    _summary_options(
        commands.add_parser(
            "summary",
            help="print the per-layer table",
            description="Print the per-layer parameter table; with --input-shape also output "
            "shapes and multiply-adds.",
        )
    )
    _plot_options(
        commands.add_parser(
            "plot",
            help="write a bar chart of the largest layers (SVG and PNG)",
            description="Write <name>.svg and <name>.png: each layer's share of the parameters.",
        )
    )
    comment_cli.add_parser(commands)
    ci_cli.add_parser(commands)
    merge_cli.add_parser(commands)
    return parser


def _model_options(sub: argparse.ArgumentParser) -> None:
    """What both commands take: the model, how to build it, which rows to show."""
    sub.add_argument(
        "target",
        metavar="MODEL",
        help='the model: "package.module:attr" (class or factory), or the name of a model '
        "configured in [tool.cnnbudget], whose target, kwargs, device, input_shape and "
        "depth are used (options given here win, except over the depth its own table sets)",
    )
    sub.add_argument(
        "--config",
        metavar="PATH",
        help="the TOML file that configures MODEL (default: the first pyproject.toml with "
        "[tool.cnnbudget] in the working directory or above it)",
    )
    sub.add_argument(
        "--kwargs",
        metavar="JSON",
        help="keyword arguments of a target, e.g. '{\"num_classes\": 10}'",
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
        help="where the model is built (default: meta, which allocates no weights, or the "
        "configured model's device)",
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


def _summary_options(summary: argparse.ArgumentParser) -> None:
    _model_options(summary)
    summary.add_argument(
        "--depth",
        type=depth_option,
        metavar="N",
        help="group rows by the first N levels of the module name (layer1.0.conv1 → layer1), "
        "unless a configured model's table sets `depth`",
    )
    summary.add_argument(
        "--format", choices=("table", "json", "markdown"), default="table", help="output format"
    )
    summary.add_argument(
        "--memory",
        action="store_true",
        help="also trace one training step and one inference pass at --input-shape on meta: "
        "weights, gradients, optimizer state, saved activations and both peaks, in bytes",
    )
    summary.add_argument(
        "--optimizer",
        metavar="NAME",
        help="the optimizer of the traced step: adamw (default), adam, sgd, sgd_momentum, none, "
        "or package.module:Class (implies --memory)",
    )
    summary.add_argument(
        "--autocast",
        choices=AUTOCAST,
        help="trace the step under mixed precision (implies --memory)",
    )
    summary.add_argument(
        "--parallel",
        metavar="TABLE",
        help="trace one rank of a multi-device run, the parallel table inline: "
        "'{ strategy = \"fsdp\", world_size = 64 }' (implies --memory; docs/parallel.md)",
    )


def _plot_options(plot: argparse.ArgumentParser) -> None:
    _model_options(plot)
    plot.add_argument("--top", type=_positive, default=10, metavar="N", help="bars (default 10)")
    plot.add_argument("--out", default=".", metavar="DIR", help="output folder (default: .)")
    plot.add_argument(
        "--name",
        help="file name without extension (default: the attr's name, or the configured model's)",
    )
    plot.add_argument("--title", help="chart title (default: the parameter total)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status: 0, or 2 for an error the user can fix."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse already printed
        return e.code if isinstance(e.code, int) else USAGE_ERROR
    # A console script does not put the working directory on sys.path as `python -m` does;
    # targets in the current project should import either way.
    for stream in (sys.stdout, sys.stderr):
        # Under LC_ALL=C the streams are ASCII: `×` in a formula is printed escaped, not a crash.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
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
        if args.command == "comment":
            return comment_cli.run_comment(args, os.environ)
        if args.command == "ci":
            return ci_cli.run_ci(args, os.environ)
        if args.command == "merge":
            return merge_cli.run_merge(args, os.environ)
        if args.command == "plot":
            require_matplotlib()  # before the model is built, which may take a while
        model = _model(args)
        with _importable(model.config):
            if args.command == "summary":
                print(_summary(args, model))
            else:
                for path in _plot(args, model):
                    print(path)
    except CnnBudgetError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        # GitHub refusing a comment is no mistake in how the command was called.
        return 1 if isinstance(e, GitHubApiError) else USAGE_ERROR
    except BrokenPipeError:
        # `cnnbudget summary … | head` closed the pipe early: nothing left to say. Point stdout
        # at devnull so that the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


@dataclass(frozen=True)
class _Model:
    """What to build and measure: as the command line gives it, or as a config does."""

    target: str
    kwargs: dict[str, Any]
    device: str
    input_spec: InputSpec | None
    depth: int | None
    stem: str  # the chart's default file name
    name: str | None = None  # the configured model's
    config: Path | None = None  # the file that configures it
    memory: MemoryOptions | None = None  # how to trace its memory; None: not measured


def _model(args: argparse.Namespace) -> _Model:
    """A target (it has a colon) from the options, or the configured model MODEL names."""
    depth = getattr(args, "depth", None)  # summary has --depth, plot does not
    if ":" not in args.target:
        model = _configured(args, depth)
    elif args.config is not None:
        raise CommandLineError(
            f"--config goes with the name of a configured model, not a target ({args.target})"
        )
    else:
        model = _Model(
            target=args.target,
            kwargs=kwargs_option(args.kwargs or "{}"),
            device=args.device or "meta",
            input_spec=input_spec_option(args.input_shape),
            depth=depth,
            stem=args.target.rpartition(":")[2].rpartition(".")[2] or "model",
        )
    return replace(model, memory=_memory_options(args, model))


def _memory_options(args: argparse.Namespace, model: _Model) -> MemoryOptions | None:
    """The configured model's memory options with the command line's on top; --memory,
    --optimizer or --autocast turn measuring on."""
    asked = getattr(args, "memory", False)  # summary has the options, plot does not
    optimizer, autocast = getattr(args, "optimizer", None), getattr(args, "autocast", None)
    parallel = getattr(args, "parallel", None)
    if not (asked or optimizer or autocast or parallel):
        return model.memory
    if model.input_spec is None:
        raise CommandLineError("--memory needs --input-shape: memory depends on the batch")
    options = model.memory or MemoryOptions()
    if optimizer is not None:
        try:
            options = replace(options, optimizer=parse_optimizer(optimizer))
        except ValueError as e:
            raise CommandLineError(f"--optimizer: {e}") from e
    if parallel is not None:
        options = replace(options, parallel=parallel_option(parallel, options.parallel))
    return replace(options, autocast=autocast) if autocast else options


def _configured(args: argparse.Namespace, depth: int | None) -> _Model:
    name = args.target
    if args.kwargs is not None:
        raise CommandLineError(
            f"--kwargs goes with a target ('package.module:attr'); the configured model "
            f"{brief(name)} takes its kwargs from its table"
        )
    if args.config is not None:
        path = Path(args.config).absolute()
        if not path.is_file():
            raise CommandLineError(f"--config: no file at {path}")
    else:
        found = discover_config(Path.cwd())
        if found is None:
            raise CommandLineError(
                f"{brief(name)} is not a target ('package.module:attr'), and no pyproject.toml "
                f"with [tool.cnnbudget] configures models in {Path.cwd()} or a folder above it; "
                "give a target, or the configuring file with --config PATH"
            )
        path = found
    settings = load_settings(path)  # every problem of the file, as pytest --cnn-budget says it
    spec = next((m for m in settings.models if m.name == name), None)
    if spec is None:
        raise CommandLineError(_not_configured(name, settings))
    return _Model(
        target=spec.target,
        kwargs=dict(spec.kwargs),
        device=args.device or spec.device,
        input_spec=spec.input_shape
        if args.input_shape is None
        else input_spec_option(args.input_shape),
        depth=model_depth(spec, depth, settings),
        stem=chart_stems([name])[name],
        name=name,
        config=path,
        memory=spec.memory,
    )


def _not_configured(name: str, settings: Settings) -> str:
    names = [m.name for m in settings.models]
    close = difflib.get_close_matches(name, names, n=1)
    shown = listing([printable(n) for n in names])
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    dotted = "; a target is written 'package.module:attr'" if "." in name and not close else ""
    return (
        f"no model {brief(name)} in {printable(str(settings.path))}{hint}; configured: {shown}"
        + dotted
    )


@contextmanager
def _importable(config: Path | None) -> Iterator[None]:
    """The config's folder on sys.path while its model is built, as the plugin has it:
    appended, so an installed package of the same name still wins."""
    folder = str(config.parent) if config is not None else None
    added = folder is not None and folder not in sys.path
    if added:
        sys.path.append(str(folder))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(folder))


def _measure(model: _Model, depth: int | None = None, memory: bool = False) -> ParameterCount:
    """Build and measure the model."""
    # torch: imported once a model is built, so that --help and a usage error stay instant.
    from .engine.hints import COMMAND_LINE
    from .engine.loading import build_model
    from .engine.measurement import measure

    spec = model.input_spec
    # A target given on the command line takes its kwargs from --kwargs: hints say so.
    token = COMMAND_LINE.set(model.name is None)
    try:
        module = build_model(model.target, model.kwargs, device=model.device)
    finally:
        COMMAND_LINE.reset(token)
    try:
        return measure(module, spec, depth=depth, memory=model.memory if memory else None)
    except CountError as e:
        raise CountError(f"{e} (--input-shape)" if spec is None else str(e)) from e


def _summary(args: argparse.Namespace, model: _Model) -> str:
    count = _measure(model, depth=model.depth, memory=True)
    if args.trainable_only:
        count = trainable_only(count)
    if args.format == "json":
        measured = summary_dict(count)
        document = {
            "schema": measured.pop("schema"),
            "model": model.name,  # null for a target given on the command line
            "target": model.target,
            # As configured, each float that is not finite as "inf", "-inf" or "nan", and a
            # TOML date or time as its text.
            "kwargs": echoed(model.kwargs),
            **measured,
        }
        text = json_text(document, ascii_only=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (a layer name, --kwargs): escaped
            return json_text(document)
        return text
    style = Style.MARKDOWN if args.format == "markdown" else Style.TEXT
    lines = layer_report(count, style, group=not args.no_group)
    budgets = memory_budget_lines(
        count, model.name, shape_toml(args.input_shape), getattr(args, "parallel", None)
    )
    if budgets and style is Style.TEXT:
        lines += ["", *budgets]
    elif budgets:
        lines += ["", budgets[0], "", "```toml", *budgets[1:], "```"]
    return "\n".join(lines)


def _plot(args: argparse.Namespace, model: _Model) -> list[Path]:
    count = _measure(model)
    return save_plot(
        count,
        args.out,
        args.name or model.stem,
        top=args.top,
        title=args.title,
        group=not args.no_group,
        trainable_only=args.trainable_only,
    )
