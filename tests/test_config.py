"""Reading `[tool.cnnbudget]`: where each model is declared, in every TOML spelling."""

from __future__ import annotations

import textwrap
from pathlib import Path

from pytest_cnnbudget.config import load_settings

PYPROJECT = textwrap.dedent(
    """\
    [project]
    name = "demo"

    [tool.cnnbudget]  # budgets
    snapshot = false

    [tool.cnnbudget.models.plain]
    target = "nets:A"
    max_params = 10

    [tool.cnnbudget.models."resnet/50 (small)"]
    target = "nets:R"
    max_params = 10

    [ tool . cnnbudget . models . "with space" ]
    target = "nets:B"
    kwargs = { widths = [
      [1, 2],
    ] }
    max_params = 10

    [tool.cnnbudget.models]
    inline = { target = "nets:C", max_params = 10 }
    'quoted inline' = { target = "nets:D", max_params = 10 }
    dotted.target = "nets:E"
    dotted.max_params = 10

    [[tool.other]]
    inline2 = 1
    """
)


def lines_of(tmp_path: Path, text: str) -> dict[str, int | None]:
    path = tmp_path / "pyproject.toml"
    path.write_text(text, encoding="utf-8")
    return {m.name: m.line for m in load_settings(path).models}


def test_each_model_points_at_the_line_that_declares_it(tmp_path: Path) -> None:
    numbered = {line: n for n, line in enumerate(PYPROJECT.splitlines(), start=1)}
    assert lines_of(tmp_path, PYPROJECT) == {
        "plain": numbered["[tool.cnnbudget.models.plain]"],
        "resnet/50 (small)": numbered['[tool.cnnbudget.models."resnet/50 (small)"]'],
        "with space": numbered['[ tool . cnnbudget . models . "with space" ]'],
        "inline": numbered['inline = { target = "nets:C", max_params = 10 }'],
        "quoted inline": numbered["'quoted inline' = { target = \"nets:D\", max_params = 10 }"],
        "dotted": numbered['dotted.target = "nets:E"'],
    }


def test_a_model_in_a_dotted_key_points_at_the_tool_table(tmp_path: Path) -> None:
    text = '[tool.cnnbudget]\nmodels.net = { target = "nets:A", max_params = 10 }\n'
    assert lines_of(tmp_path, text) == {"net": 1}


def test_a_thousand_models_each_on_its_own_line(tmp_path: Path) -> None:
    tables = "".join(
        f'[tool.cnnbudget.models.m{i}]\ntarget = "nets:A"\nmax_params = 10\n\n' for i in range(1000)
    )
    lines = lines_of(tmp_path, "[tool.cnnbudget]\n" + tables)
    assert lines == {f"m{i}": 2 + 4 * i for i in range(1000)}
