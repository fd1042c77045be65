"""The meta trace's memory figures against a real CUDA run: peak of a training step and of an
inference pass, as `torch.cuda.max_memory_allocated()` reports them.

    python benchmarks/gpu_memory.py                      # all four models, batch 8
    python benchmarks/gpu_memory.py --models gpt2 --batch 4

The models are those of `tests/architectures.py` that the cpu validation (benchmark section 11)
measures: ResNet-18, ResNet-50 and ViT-B/16 on 224×224 images, the GPT-2 decoder on 512 tokens.
Each runs the protocol of `tests/realmem.py`: one inference forward in eval mode under no_grad
(before any optimizer state exists, so that it counts the weights and the inputs only), then a
first AdamW step on zero gradients that makes the optimizer's state, then the measured training
step: forward, loss = the sum of the floating outputs, backward, `optimizer.step()`. The peak
statistics are reset just before each measured part, so the bytes allocated at that moment are
in the peak. What the caching allocator hands out is what is counted: the CUDA context, and
memory it has reserved but not handed out, are not; cuDNN's and cuBLAS's workspaces, which
come from that allocator, are.

The meta figure is `measure_memory` on a meta build of the same model with AdamW given the same
`foreach` as the CUDA run (torch picks the foreach implementation on CUDA by default and the
single-tensor one on meta), so both sides run one optimizer implementation. Without a CUDA
device the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
_TESTS = str(REPO / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# When mypy checks tests/ and benchmarks/ together it finds the module; alone it does not.
import architectures  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from realmem import floating  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

from pytest_cnnbudget.engine.memory import measure_memory  # noqa: E402
from pytest_cnnbudget.inputs import InputSpec  # noqa: E402
from pytest_cnnbudget.report.tables import Style, grid  # noqa: E402
from pytest_cnnbudget.results import MemoryOptions  # noqa: E402

LABELS = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "vit_b_16": "ViT-B/16", "gpt2": "GPT-2"}
TOKEN_MODELS = frozenset({"gpt2"})
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False): nothing measured"


@dataclass(frozen=True)
class Measured:
    """One model's peaks in bytes, traced on meta and allocated on CUDA."""

    name: str
    shape: tuple[int, ...]
    meta_train: int
    cuda_train: int
    meta_inference: int
    cuda_inference: int


def shape_of(name: str, batch: int, tokens: int, size: int) -> tuple[int, ...]:
    return (batch, tokens) if name in TOKEN_MODELS else (batch, 3, size, size)


def reset_peak() -> None:
    """Start a peak over the work that follows, the bytes allocated now included."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()


def read_peak() -> int:
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def cuda_peaks(
    factory: Callable[[], nn.Module], shape: tuple[int, ...], tokens: bool, foreach: bool
) -> tuple[int, int]:
    """The training step's and the inference pass's peaks of one model on CUDA."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = factory()
    vocab = (
        next(m for m in model.modules() if isinstance(m, nn.Embedding)).num_embeddings
        if tokens
        else 0
    )

    def make_input() -> torch.Tensor:
        if tokens:
            return torch.randint(0, vocab, shape, device="cuda")
        return torch.randn(shape, device="cuda")

    # Before any optimizer state exists, so that only the weights and the input are live.
    model.eval()
    x = make_input()
    reset_peak()
    with torch.no_grad():
        output = model(x)
    del output
    inference = read_peak()
    del x

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, foreach=foreach)
    # The state every step but the first finds already made, as the meta trace assumes.
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.train()
    x = make_input()
    reset_peak()
    parts = floating(model(x))
    loss = parts[0].sum()
    for i in range(1, len(parts)):  # by index: a loop variable would keep an output alive
        loss = loss + parts[i].sum()
    # A training loop keeps the loss, not the outputs, through backward.
    del parts
    torch.autograd.backward(loss)
    del loss
    optimizer.step()
    train = read_peak()
    del x, optimizer, model, params
    torch.cuda.empty_cache()
    return train, inference


def meta_peaks(
    factory: Callable[[], nn.Module], shape: tuple[int, ...], foreach: bool
) -> tuple[int, int]:
    """The meta trace's peaks of the same model and step."""
    with torch.device("meta"):
        model = factory()
    options = MemoryOptions(optimizer="adamw", optimizer_kwargs={"foreach": foreach})
    memory = measure_memory(model, InputSpec(args=(shape,)), options)
    return memory.peak_train, memory.peak_inference


def measure(name: str, shape: tuple[int, ...], foreach: bool) -> Measured:
    factory: Callable[[], nn.Module] = getattr(architectures, name)
    meta_train, meta_inference = meta_peaks(factory, shape, foreach)
    cuda_train, cuda_inference = cuda_peaks(factory, shape, name in TOKEN_MODELS, foreach)
    return Measured(name, shape, meta_train, cuda_train, meta_inference, cuda_inference)


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def markdown(results: Sequence[Measured]) -> str:
    rows = [
        [
            LABELS[r.name],
            "×".join(map(str, r.shape)),
            mib(r.meta_train),
            mib(r.cuda_train),
            f"{r.meta_train / r.cuda_train:.3f}×",
            mib(r.meta_inference),
            mib(r.cuda_inference),
            f"{r.meta_inference / r.cuda_inference:.3f}×",
        ]
        for r in results
    ]
    headers = [
        "model",
        "input",
        "train, meta",
        "train, CUDA",
        "meta / CUDA",
        "inference, meta",
        "inference, CUDA",
        "meta / CUDA",
    ]
    right = [False, False, True, True, True, True, True, True]
    return "\n".join(grid(headers, rows, right, Style.MARKDOWN_PADDED))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list(LABELS),
        default=list(LABELS),
        help="which models to measure (default: all four)",
    )
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--tokens", type=int, default=512, help="GPT-2's sequence (default 512)")
    parser.add_argument("--size", type=int, default=224, help="image side (default 224)")
    parser.add_argument(
        "--foreach",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="AdamW's foreach implementation on both sides (default: on, torch's CUDA default)",
    )
    args = parser.parse_args(argv)
    if args.batch < 1 or args.tokens < 1 or args.size < 1:
        parser.error("--batch, --tokens and --size must be positive")
    if not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    results = []
    for name in args.models:
        shape = shape_of(name, args.batch, args.tokens, args.size)
        print(f"measuring {LABELS[name]} at {'×'.join(map(str, shape))}", file=sys.stderr)
        results.append(measure(name, shape, args.foreach))
    device = torch.cuda.get_device_name()
    print(
        f"Peak bytes, meta trace vs. torch.cuda.max_memory_allocated() on {device}; "
        f"torch {torch.__version__}; AdamW foreach={args.foreach}, float32; MB are 2^20 bytes."
    )
    print()
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
