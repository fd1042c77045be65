"""Reports at the scale ML teams work: a 32-block LLaMA-shaped model through real pytest runs.

Grouped repeated blocks in the diff, the annotation and `-v`; `--cnn-budget-depth`; the
trainable column of a LoRA model; annotations of a library model; the baseline and the
pull-request comment. Targets come from the issue: a hidden-size change gives a diff of at most
12 rows and an annotation message of at most 2 KB; the `-v` table of LLaMA-7B at most 40 rows.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from typing import Any

import pytest
from project import Project, failure_section
from test_github import command_lines, github_env

from pytest_cnnbudget.report.comment import MARKER

# LLaMA-7B's shape (tests/architectures.py): 32 blocks, hidden size 4096, 6,738,415,616
# parameters, built on meta.
LLAMA: dict[str, Any] = {
    "target": "architectures:llama",
    "kwargs": {"n_layers": 32},
    "max_total_params": "8B",
}
WIDER = {"n_layers": 32, "dim": 4352}  # the hidden size changed: every layer changes


def unescape(message: str) -> str:
    """A workflow command's message as the runner reads it."""
    return message.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")


def table_rows(lines: list[str]) -> list[str]:
    """The body rows of the first indented table in `lines`: between its rule and the line
    after its last row."""
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"  -+(  -+)*", line))
    rows = []
    for line in lines[start + 1 :]:
        if not line.startswith("  ") or line.startswith("  total ") or line.startswith("  ×N"):
            break
        rows.append(line)
    return rows


@pytest.fixture
def llama(pytester: pytest.Pytester) -> Project:
    project = Project(pytester, llama=LLAMA)
    project.accept()
    return project


def test_a_hidden_size_change_is_a_dozen_grouped_rows_and_a_short_annotation(
    llama: Project,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    expected: Callable[[str, str], None],
) -> None:
    summary = github_env(monkeypatch, llama.path)
    shutil.copy(llama.snapshot, llama.path / "base.json")
    llama.set("llama", kwargs=WIDER)
    result = pytester.runpytest(
        "--cnn-budget",
        "--cnn-budget-baseline",
        "base.json",
        "--cnn-budget-comment",
        "comment.md",
    )
    result.assert_outcomes(failed=1)
    section = failure_section(result.outlines, "llama")
    start = section.index(
        "llama: parameter layout differs from the snapshot in cnnbudget.snapshot.json"
    )
    rows = table_rows(section[start:])
    # Embedding, nine per-block groups ×32, the final norm, the head: every layer changed.
    assert len(rows) <= 12, "\n".join(rows)
    assert any(row.lstrip().startswith("layers.{0..31}.attention.wq ×32") for row in rows)
    # Every one of the 291 layers is still in the snapshot diff the rows stand for.
    (error,) = [line for line in command_lines(result.stdout.str()) if line.startswith("::error")]
    message = unescape(error.split("::", 2)[2])
    assert len(message.encode("utf-8")) <= 2048, message
    assert message.endswith("Full tables: the job summary and this step's log.")
    assert "layers.{0..31}.feed_forward.w1 ×32" in message
    # The committed samples: what a reviewer sees of this change in the PR and the job.
    comment = (llama.path / "comment.md").read_text(encoding="utf-8")
    assert comment.startswith(MARKER + "\n")
    expected("llama_comment.md", comment)
    expected("llama_job_summary.md", summary.read_text(encoding="utf-8"))


def test_without_grouping_every_layer_is_its_own_row(
    llama: Project, pytester: pytest.Pytester
) -> None:
    llama.set("llama", kwargs=WIDER)
    result = pytester.runpytest("--cnn-budget", "--cnn-budget-no-group")
    result.assert_outcomes(failed=1)
    section = failure_section(result.outlines, "llama")
    start = section.index(
        "llama: parameter layout differs from the snapshot in cnnbudget.snapshot.json"
    )
    # 32 blocks × 9 layers, the embedding, the norm and the head.
    assert len(table_rows(section[start:])) == 32 * 9 + 3


def test_the_verbose_table_of_llama_7b_fits_a_screen(
    llama: Project, pytester: pytest.Pytester
) -> None:
    result = pytester.runpytest("--cnn-budget", "-v")
    result.assert_outcomes(passed=1)
    lines = result.outlines
    start = lines.index("llama (architectures:llama)")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("total "))
    table = lines[start + 3 : end]
    assert len(table) <= 40, "\n".join(table)
    assert lines[end] == ("total 6,738,415,616 · trainable 6,738,415,616 · frozen 0 · buffers 0")
    (wq,) = [line for line in table if line.startswith("layers.{0..31}.attention.wq ×32")]
    # Each one's count and the group's sum: 4096·4096 and 32 times that.
    assert "16,777,216" in wq
    assert "536,870,912" in wq


def test_depth_folds_every_output_and_a_model_key_overrides_the_option(
    llama: Project, pytester: pytest.Pytester
) -> None:
    result = pytester.runpytest("--cnn-budget", "-v", "--cnn-budget-depth", "1")
    result.assert_outcomes(passed=1)
    lines = result.outlines
    start = lines.index("llama (architectures:llama)")
    names = [line.split()[0] for line in lines[start + 3 : start + 7]]
    assert names == ["tok_embeddings", "layers", "norm", "lm_head"]
    # The model's own `depth` wins: at 2, the 32 blocks are one group of equal blocks.
    llama.set("llama", depth=2)
    result = pytester.runpytest("--cnn-budget", "-v", "--cnn-budget-depth", "1")
    lines = result.outlines
    start = lines.index("llama (architectures:llama)")
    assert lines[start + 4].startswith("layers.{0..31} ×32  TransformerBlock")
    # The diff folds the same way; the snapshot still holds every layer.
    llama.set("llama", kwargs=WIDER)
    result = pytester.runpytest("--cnn-budget")
    section = failure_section(result.outlines, "llama")
    rows = table_rows(section[section.index(next(s for s in section if "differs" in s)) :])
    assert [row.split()[0] for row in rows] == [
        "tok_embeddings",
        "layers.{0..31}",
        "norm",
        "lm_head",
    ]
    assert len(llama.stored()["models"]["llama"]["layers"]) == 32 * 9 + 3


def test_a_lora_model_shows_what_trains_per_row(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        adapters="""
        from architectures import llama, lora

        def tiny_lora():
            return lora(llama(vocab=100, dim=64, n_layers=4, hidden=128, n_heads=4), rank=8)
        """
    )
    Project(
        pytester,
        top={"snapshot": False},
        tuned={"target": "adapters:tiny_lora", "max_params": "10k", "max_total_params": "1M"},
    )
    result = pytester.runpytest("--cnn-budget", "-v")
    result.assert_outcomes(passed=1)
    lines = result.outlines
    header = next(line for line in lines if line.startswith("layer ") and "trainable" in line)
    assert header.split() == [
        "layer",
        "type",
        "formula",
        "each",
        "params",
        "trainable",
        "cumulative",
        "share",
    ]
    rows = {line.split()[0]: line for line in lines if line.startswith(("tok_", "layers."))}
    assert rows["tok_embeddings"].split()[-3] == "none"
    assert rows["layers.{0..3}.attention.wq.lora_A"].split()[-3] == "all"
    assert rows["layers.{0..3}.attention.wq.base_layer"].split()[-3] == "none"
    # The summary row shows the figure each budget compares; the tighter one is the trainable.
    assert any(re.match(r"tuned\s+8,192 trainable\s+10,000\s+81\.9%", line) for line in lines)


def test_a_library_models_annotation_points_at_its_table_in_pyproject(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch.nn.Transformer's source lies in site-packages: GitHub would never show it.
    project = Project(
        pytester,
        top={"snapshot": False},
        transformer={
            "target": "torch.nn:Transformer",
            "kwargs": {"d_model": 32, "nhead": 2, "num_encoder_layers": 2},
            "max_params": 1000,
        },
    )
    github_env(monkeypatch, project.path)
    result = pytester.runpytest("--cnn-budget")
    result.assert_outcomes(failed=1)
    (error,) = [line for line in command_lines(result.stdout.str()) if line.startswith("::error")]
    line = 1 + project.pyproject.read_text().splitlines().index(
        "[tool.cnnbudget.models.transformer]"
    )
    assert f"file=pyproject.toml,line={line}::" in error
    assert "site-packages" not in error.split("::")[1]


def test_a_missing_baseline_is_a_usage_error(llama: Project, pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--cnn-budget", "--cnn-budget-baseline", "nowhere.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--cnn-budget-baseline *nowhere.json: no such file; *git show*"])


def test_the_comment_of_an_unchanged_run_is_one_line_or_nothing(
    llama: Project, pytester: pytest.Pytester
) -> None:
    shutil.copy(llama.snapshot, llama.path / "base.json")
    args = ["--cnn-budget", "--cnn-budget-baseline", "base.json"]
    pytester.runpytest(*args, "--cnn-budget-comment", "c.md").assert_outcomes(passed=1)
    text = (llama.path / "c.md").read_text(encoding="utf-8")
    assert text.splitlines() == [
        MARKER,
        "✅ **cnn-budget**: no change in parameter counts against the baseline base.json "
        "(1 model checked)",
    ]
    result = pytester.runpytest(
        *args, "--cnn-budget-comment", "c.md", "--cnn-budget-comment-if-changed"
    )
    result.assert_outcomes(passed=1)
    assert (llama.path / "c.md").read_text(encoding="utf-8") == ""


def test_a_baseline_reports_new_and_removed_models_and_an_empty_one_has_none(
    llama: Project, pytester: pytest.Pytester
) -> None:
    (llama.path / "empty.json").write_text("", encoding="utf-8")
    result = pytester.runpytest(
        "--cnn-budget", "--cnn-budget-baseline", "empty.json", "--cnn-budget-comment", "c.md"
    )
    result.assert_outcomes(passed=1)
    comment = (llama.path / "c.md").read_text(encoding="utf-8")
    assert "| 🆕 | llama | - | 6,738,415,616 | - | - |" in comment
    # Against the snapshot, a model it still holds but no longer configured is removed.
    llama.configure(tiny={"target": "nets:Tiny", "max_params": 1000}, llama=None)
    result = pytester.runpytest("--cnn-budget-update", "--cnn-budget-comment", "c.md")
    comment = (llama.path / "c.md").read_text(encoding="utf-8")
    assert "| 🗑 | llama | 6,738,415,616 | - | - | - |" in comment
    assert "| 🆕 | tiny | - | 72 | - | - |" in comment


@pytest.mark.parametrize(
    ("value", "reason"), [("0", "0 is not from 1 to 64"), ("two", "not a whole number")]
)
def test_a_bad_depth_option_is_a_usage_error(
    pytester: pytest.Pytester, value: str, reason: str
) -> None:
    result = pytester.runpytest("--cnn-budget", "--cnn-budget-depth", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*--cnn-budget-depth: expected name levels, '{value}' is {reason}"]
    )
