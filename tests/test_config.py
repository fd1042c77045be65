"""Reading `[tool.cnnbudget]`: finding the file, every problem it can have, and where each
model is declared, in every TOML spelling."""

from __future__ import annotations

import argparse
import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from project import toml_text

from pytest_cnnbudget.config.fields import depth_option
from pytest_cnnbudget.config.settings import (
    find_config,
    load_settings,
    parse_settings,
    read_settings,
)
from pytest_cnnbudget.config.spec import Level, ModelSpec, Settings, model_depth, model_timeout
from pytest_cnnbudget.constants import DEFAULT_TIMEOUT, MAX_CONFIG_BYTES, MAX_MODEL_NAME, MAX_MODELS
from pytest_cnnbudget.errors import ConfigError

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


# -- finding the file ---------------------------------------------------------------------


def test_the_rootdirs_pyproject_is_the_default(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    assert find_config(tmp_path, tmp_path / "elsewhere", None) == tmp_path / "pyproject.toml"


def test_no_configuration_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        find_config(tmp_path, tmp_path, None)
    assert str(info.value).startswith(
        f"--cnn-budget: no configuration file at {tmp_path / 'pyproject.toml'} (pytest's rootdir)"
    )


def test_the_config_option_is_relative_to_where_pytest_was_started(tmp_path: Path) -> None:
    rootdir, started = tmp_path / "repo", tmp_path / "repo" / "sub"
    (started / "ci").mkdir(parents=True)
    (started / "ci" / "budgets.toml").write_text("", encoding="utf-8")
    found = find_config(rootdir, started, "ci/budgets.toml")
    assert found == started / "ci" / "budgets.toml"
    assert find_config(tmp_path / "other", tmp_path / "other", str(found)) == found
    with pytest.raises(ConfigError, match=r"budgets\.toml \(--cnn-budget-config\)"):
        find_config(rootdir, rootdir, "ci/budgets.toml")


def test_the_snapshot_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "ci" / "budgets.toml"
    path.parent.mkdir()
    models = {"tiny": {"target": "nets:Tiny", "max_params": 100}}
    path.write_text(toml_text(models, {"snapshot": "snap.json"}), encoding="utf-8")
    settings = load_settings(path)
    assert settings.snapshot == tmp_path / "ci" / "snap.json"
    assert settings.snapshot_name(tmp_path) == "ci/snap.json"
    assert settings.snapshot_name(tmp_path / "unrelated") == str(settings.snapshot)
    path.write_text(toml_text(models, {"snapshot": False}), encoding="utf-8")
    assert load_settings(path).snapshot is None


def test_a_valid_model(tmp_path: Path) -> None:
    models = {"cifar": {"target": "nets:Cifar", "max_params": "1.5M", "level": "warn"}}
    path = tmp_path / "pyproject.toml"
    path.write_text(toml_text(models, {"device": "cpu"}), encoding="utf-8")
    [spec] = load_settings(path).models
    assert (spec.name, spec.target, spec.budgets, spec.level) == (
        "cifar",
        "nets:Cifar",
        {"max_params": 1_500_000},
        Level.WARN,
    )
    assert (spec.kwargs, spec.device, spec.input_shape, spec.line) == ({}, "cpu", None, 4)


# -- problems: each names the file, the table and the key -----------------------------------

CIFAR = "[tool.cnnbudget.models.cifar]"
# Every key a model's table may have, in the order messages list them.
ALLOWED = (
    "target, kwargs, level, device, timeout, depth, input_shape, memory, optimizer, "
    "optimizer_kwargs, autocast, train_mode, parallel, max_params, max_total_params, max_macs, max_flops, "
    "max_param_bytes, max_buffers, max_buffer_bytes, max_train_memory, max_inference_memory"
)


@pytest.mark.parametrize(
    ("models", "top", "problems"),
    [
        pytest.param(
            {"cifar": {"target": "nets:Cifar", "max_param": 5}},
            {},
            [
                f"{CIFAR} max_param: unknown key (did you mean 'max_params'?)",
                f"{CIFAR} max_params: missing; every model needs a budget",
            ],
            id="unknown-key",
        ),
        pytest.param(
            {"cifar": {"target": 5, "max_params": "lots"}},
            {},
            [
                f"{CIFAR} target: expected a string, got int 5",
                f"{CIFAR} max_params: cannot parse 'lots'; write it like 600_000, '600k', '1.5M', "
                "'7B' or '2e9'",
            ],
            id="wrong-types",
        ),
        pytest.param(
            {"cifar": {"target": "nets:Cifar", "max_params": -5}},
            {},
            [f"{CIFAR} max_params: -5 must be positive"],
            id="negative",
        ),
        pytest.param(
            {"cifar": {"target": "nets:Cifar", "max_params": 5, "kwargs": [1], "level": "fatal"}},
            {},
            [
                f"{CIFAR} kwargs: expected a table of keyword arguments, got list",
                f"{CIFAR} level: expected one of 'error', 'warn', got 'fatal'",
            ],
            id="kwargs-and-level",
        ),
        pytest.param(
            {"m": {"target": "nets", "max_params": "1.5M", "device": "gpu"}},
            {"snapshots": "x.json", "device": "cuda"},
            [
                "[tool.cnnbudget] snapshots: unknown key (did you mean 'snapshot'?)",
                "[tool.cnnbudget] device: expected one of 'meta', 'cpu', got 'cuda'",
                "[tool.cnnbudget.models.m] target: 'nets' is not of the form "
                "'package.module:ClassOrFactory'",
                "[tool.cnnbudget.models.m] device: expected one of 'meta', 'cpu', got 'gpu'",
            ],
            id="top-keys-device-and-target-form",
        ),
        pytest.param(
            {"cifar": {"max_params": 5, "weights": "x"}},
            {},
            [
                f"{CIFAR} weights: unknown key (allowed: {ALLOWED})",
                f"{CIFAR} target: missing; give 'package.module:ClassOrFactory'",
            ],
            id="no-target-and-no-close-key",
        ),
        pytest.param(
            {"cifar": {"target": "nets:Cifar", "max_params": 5, "max_macs": "1M"}},
            {},
            [f"{CIFAR} max_macs: needs input_shape: compute depends on the input size"],
            id="max-macs-without-input-shape",
        ),
        pytest.param(
            {},
            {"models": 5},
            ["[tool.cnnbudget] models: expected a table, got int"],
            id="models-not-a-table",
        ),
    ],
)
def test_every_problem_is_reported_at_once_naming_file_table_and_key(
    tmp_path: Path, models: dict[str, Any], top: dict[str, Any], problems: list[str]
) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(toml_text(models, top), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).splitlines() == [
        f"{path}: invalid [tool.cnnbudget] configuration",
        *(f"  {problem}" for problem in problems),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "[tool.other]\nx = 1\n",
            "no [tool.cnnbudget] table; add one with at least one [tool.cnnbudget.models.<name>] "
            "entry (see docs/configuration.md), or point --cnn-budget-config at the file that has it",
            id="no-table",
        ),
        pytest.param(
            "[tool.cnnbudget\nx = 1\n",
            "malformed TOML: Expected ']' at the end of a table declaration (at line 1, column 16)",
            id="malformed",
        ),
    ],
)
def test_a_file_without_a_readable_table(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=f"^{re.escape(str(tmp_path))}: cannot read the configuration: "
    ):
        load_settings(tmp_path)  # a directory


# -- every input is bounded where it enters, and no message breaks across lines ---------------


def write(tmp_path: Path, text: str | bytes, name: str = "pyproject.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    """The problem lines of the ConfigError that loading `path` raises, after the header."""
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    header, *problems = str(info.value).splitlines()
    assert header == f"{path}: invalid [tool.cnnbudget] configuration"
    assert all(line.startswith("  [tool.cnnbudget") for line in problems)
    return [line[2:] for line in problems]


def one_model(tmp_path: Path, **table: Any) -> list[str]:
    return problems_of(write(tmp_path, toml_text({"cifar": {"target": "nets:Cifar", **table}})))


TINY_TABLE = {"target": "nets:Tiny", "max_params": 1000}
LARGEST = "a budget is at most 1e18 (1,000,000,000,000,000,000)"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("max_params", float("inf"), "inf is not a finite number; write it like 600_000"),
        ("max_params", float("-inf"), "-inf is not a finite number; write it like 600_000"),
        ("max_params", float("nan"), "nan is not a finite number; write it like 600_000"),
        ("max_param_bytes", float("inf"), "inf is not a finite number; write it like '100MB'"),
        ("max_params", 10**18 + 1, f"1000000000000000001 is too large; {LARGEST}"),
        ("max_params", 2**63 - 1, f"9223372036854775807 is too large; {LARGEST}"),
        ("max_params", 1e300, f"1e+300 is too large; {LARGEST}"),
        ("max_params", 10**4000, f"<an integer of about 4001 digits> is too large; {LARGEST}"),
        ("max_macs", "1000001T", f"'1000001T' is too large; {LARGEST}"),
        ("max_param_bytes", "1000000TiB", f"'1000000TiB' is too large; {LARGEST}"),
        (
            "max_params",
            "9" * 5000,
            f"cannot parse '{'9' * 27}...{'9' * 28}' (5,000 characters); write it like 600_000",
        ),
    ],
    ids=[
        "inf",
        "-inf",
        "nan",
        "inf-bytes",
        "1e18-plus-1",
        "int64-max",
        "1e300",
        "4001-digits",
        "T-suffix",
        "TiB-suffix",
        "5000-character-string",
    ],
)
def test_a_budget_must_be_a_finite_whole_number_within_the_largest(
    tmp_path: Path, key: str, value: object, problem: str
) -> None:
    table = {key: value, "input_shape": [1, 3, 32, 32]}
    [line] = one_model(tmp_path, **table)
    assert line.startswith(f"{CIFAR} {key}: {problem}")


def test_every_written_form_of_a_budget_still_reads(tmp_path: Path) -> None:
    forms = {
        "max_params": 600_000,
        "max_total_params": "600k",
        "max_macs": "1.5M",
        "max_flops": "7B",
        "max_param_bytes": "100MB",
        "max_buffer_bytes": "1.5GiB",
        "max_buffers": 10**18,
    }
    path = write(tmp_path, toml_text({"m": {"target": "nets:A", "input_shape": [1, 8], **forms}}))
    [spec] = load_settings(path).models
    assert spec.budgets == {
        "max_params": 600_000,
        "max_total_params": 600_000,
        "max_macs": 1_500_000,
        "max_flops": 7_000_000_000,
        "max_param_bytes": 100_000_000,
        "max_buffer_bytes": 1_610_612_736,
        "max_buffers": 10**18,
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            b"[tool.cnnbudget]\n# caf\xe9\n",
            "is not UTF-8 text (byte 0xe9 at offset 22)",
            id="latin-1",
        ),
        pytest.param(b"\x00\xff\xfe", "is not UTF-8 text (byte 0xff at offset 1)", id="binary"),
        pytest.param(
            "x = " + "9" * 5000,
            # Python 3.10 says "(4300) for integer string conversion", 3.11 "(4300 digits)".
            "malformed TOML: a value cannot be read (Exceeds the limit (4300",
            id="5000-digit-integer",
        ),
        pytest.param(
            "x = " + "[" * 100_000 + "]" * 100_000,
            "malformed TOML: arrays or inline tables nested too deeply to read",
            id="nested-arrays",
        ),
        pytest.param(
            "x = " + "{a = " * 50_000 + "1" + "}" * 50_000,
            "malformed TOML: arrays or inline tables nested too deeply to read",
            id="nested-inline-tables",
        ),
    ],
)
def test_a_file_that_is_not_readable_toml(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert len(str(info.value).splitlines()) == 1


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    # Malformed TOML as well: had it been parsed, the error would say so instead.
    path = write(tmp_path, b"[" + b" " * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == (
        f"{path}: larger than 16 MiB; a configuration file is at most that (is this the right file?)"
    )


def test_windows_line_endings_read_and_number_lines_as_before(tmp_path: Path) -> None:
    text = '[tool.cnnbudget]\r\n\r\n[tool.cnnbudget.models.m]\r\ntarget = "nets:A"\r\nmax_params = 1\r\n'
    assert lines_of(tmp_path, text) == {"m": 3}


def test_line_separators_inside_comments_do_not_shift_line_numbers(tmp_path: Path) -> None:
    text = (
        "[tool.cnnbudget]\n# a comment with \u2028 and \x85 in it\n"
        '[tool.cnnbudget.models.m]\ntarget = "nets:A"\nmax_params = 1\n'
    )
    assert lines_of(tmp_path, text) == {"m": 3}


def nested(levels: int) -> dict[str, Any]:
    """Keyword arguments `levels` deep, the kwargs table itself the first: tables and arrays."""
    value: Any = 1
    for level in range(levels - 1):
        value = {"a": value} if level % 2 else [value]
    return {"x": value}


def test_kwargs_nest_at_most_32_levels(tmp_path: Path) -> None:
    [spec] = load_settings(
        write(tmp_path, toml_text({"m": {**TINY_TABLE, "kwargs": nested(32)}}))
    ).models
    assert spec.kwargs == nested(32)
    assert one_model(tmp_path, max_params=1, kwargs=nested(33)) == [
        f"{CIFAR} kwargs: tables and arrays nest more than 32 levels deep (the kwargs table is "
        "the first); at most 32"
    ]


def test_at_most_ten_thousand_models(tmp_path: Path) -> None:
    section = {"models": {f"m{i}": TINY_TABLE for i in range(MAX_MODELS + 1)}}
    with pytest.raises(ConfigError) as info:
        parse_settings(section, tmp_path / "pyproject.toml")
    assert str(info.value).splitlines()[1:] == [
        "  [tool.cnnbudget] models: 10,001 models; one file configures at most 10,000"
    ]


def models_text(*names: str) -> str:
    """Each name as a quoted TOML key, every unusual character escaped, so any name can be written."""
    return "[tool.cnnbudget]\n" + "".join(
        f'[tool.cnnbudget.models.{json.dumps(name)}]\ntarget = "nets:A"\nmax_params = 1\n'
        for name in names
    )


def test_model_names_may_hold_spaces_punctuation_and_any_script(tmp_path: Path) -> None:
    names = ["resnet 50", "a|b", "x/y", "$HOME", "模型 ü ☃", "e" * MAX_MODEL_NAME]
    settings = load_settings(write(tmp_path, models_text(*names)))
    assert [m.name for m in settings.models] == names


def test_a_model_name_longer_than_200_characters(tmp_path: Path) -> None:
    name = "n" * 40 + "x" * 161
    assert problems_of(write(tmp_path, models_text(name))) == [
        f"[tool.cnnbudget.models]: model name {'n' * 40!r}… is 201 characters long; at most 200"
    ]


@pytest.mark.parametrize(
    "name",
    ["a\nb", "a\rb", "a\x00b", "tab\there", "a\x1bb", "a\x7fb", "a\x85b", "a\u2028b", "a\u2029b"],
)
def test_a_model_name_with_a_control_character(tmp_path: Path, name: str) -> None:
    control = next(c for c in name if c not in "abtabhere")
    assert problems_of(write(tmp_path, models_text("fine", name))) == [
        f"[tool.cnnbudget.models]: model name {name!r} contains the control character "
        f"{control!r}; a model name must be one line of printable text"
    ]


def test_an_empty_model_name(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, models_text(""))) == [
        "[tool.cnnbudget.models]: a model name is empty; give the model a name"
    ]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("no\u00a0break", "contains U+00A0, which is not printable"),
        ("abc\u202edef", "contains U+202E, which is not printable"),
        ("zero\u200bwidth", "contains U+200B, which is not printable"),
        ("\ufeffbom", "contains U+FEFF, which is not printable"),
        ("\u3000wide", "contains U+3000, which is not printable"),
        ("m\u3164", "contains U+3164, which is not printable"),  # a Hangul filler
        ("m\u034f", "contains U+034F, which is not printable"),  # combining grapheme joiner
        ("m\ufe0f", "contains U+FE0F, which is not printable"),  # a variation selector
        ("tests/test_a.py::test_x", "contains `::`, which names the checks of the cnn_budget"),
        ("my tests/test_a.py::test_x", "contains `::`, which names the checks of the cnn_budget"),
        ("a::b", "contains `::`"),
    ],
)
def test_a_name_a_reader_could_not_tell_from_another_is_refused(
    tmp_path: Path, name: str, problem: str
) -> None:
    # docs/configuration.md: a model key is one line of printable characters. Format characters (U+202E
    # shows what follows reversed on GitHub), invisible and non-ASCII spaces are not, and `::`
    # is what a fixture check's node id holds.
    path = write(tmp_path, toml_text({name: {"target": "nets:Tiny", "max_params": 1}}))
    (message,) = problems_of(path)
    assert problem in message
    assert message.isprintable()


def test_printable_names_of_any_script_stay_allowed(tmp_path: Path) -> None:
    names = ["résnet 18", "模型/小", "a|b", "a b:c"]
    path = write(tmp_path, toml_text({n: {"target": "nets:Tiny", "max_params": 1} for n in names}))
    settings = load_settings(path)
    assert [m.name for m in settings.models] == names


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("nets:A\n", "'nets:A\\n' {form}: it has 'A\\n', not a Python identifier"),
        ("nets :A", "'nets :A' {form}: it has 'nets ', not a Python identifier"),
        ("::error::x", "'::error::x' {form}"),
        ("nets:", "'nets:' {form}"),
        (":A", "':A' {form}"),
        ("a..b:C", "'a..b:C' {form}: it has an empty name"),
        ("nets:A.", "'nets:A.' {form}: it has an empty name"),
        ("nets:A:B", "'nets:A:B' {form}: it has 'A:B', not a Python identifier"),
        ("nets:A-1", "'nets:A-1' {form}: it has 'A-1', not a Python identifier"),
        (
            "m" * 499 + ":A",
            f"'{'m' * 27}...{'m' * 26}:A' is 501 characters long; a target is at most 500",
        ),
    ],
)
def test_a_target_is_dotted_python_names_around_one_colon(
    tmp_path: Path, target: str, problem: str
) -> None:
    form = "is not of the form 'package.module:ClassOrFactory'"
    assert one_model(tmp_path, target=target, max_params=1) == [
        f"{CIFAR} target: {problem.format(form=form)}"
    ]


def test_a_target_may_name_a_nested_attribute_in_any_script(tmp_path: Path) -> None:
    path = write(
        tmp_path, toml_text({"m": {"target": "pkg.модуль:Outer.factory", "max_params": 1}})
    )
    assert load_settings(path).models[0].target == "pkg.модуль:Outer.factory"


@pytest.mark.parametrize(
    ("snapshot", "problem"),
    [
        ("snap\n.json", "'snap\\n.json' contains the control character '\\n'"),
        ("snap\x00.json", "'snap\\x00.json' contains the control character '\\x00'"),
        ("snap\u2028.json", "'snap\\u2028.json' contains the control character '\\u2028'"),
        ("", "is empty; give a file name, or false for no snapshot"),
        (
            "s" * 4097,
            f"'{'s' * 27}...{'s' * 28}' is 4,097 characters long; a snapshot path is at most 4,096",
        ),
        (5, "expected a file name, true or false, got int 5"),
    ],
)
def test_a_snapshot_path_is_one_line_of_bounded_length(
    tmp_path: Path, snapshot: object, problem: str
) -> None:
    path = write(tmp_path, toml_text({"tiny": TINY_TABLE}, {"snapshot": snapshot}))
    [line] = problems_of(path)
    assert line.startswith(f"[tool.cnnbudget] snapshot: {problem}")


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (True, "cnnbudget.snapshot.json"),
        (False, None),
        ("snaps/ünï côde.json", "snaps/ünï côde.json"),
    ],
)
def test_a_snapshot_of_true_false_or_a_path(
    tmp_path: Path, snapshot: object, expected: str | None
) -> None:
    path = write(tmp_path, toml_text({"tiny": TINY_TABLE}, {"snapshot": snapshot}))
    assert load_settings(path).snapshot == (tmp_path / expected if expected else None)


def test_an_unknown_key_is_shown_by_repr_when_it_is_not_printable(tmp_path: Path) -> None:
    text = (
        '[tool.cnnbudget]\n"snap\\nshot" = 1\n"\\u2028" = 2\n'
        '[tool.cnnbudget.models.m]\ntarget = "nets:A"\nmax_params = 1\n'
        '"::error::x\\r\\n" = 3\n' + f'"{"k" * 61}" = 4\n'
    )
    assert problems_of(write(tmp_path, text)) == [
        "[tool.cnnbudget] 'snap\\nshot': unknown key (did you mean 'snapshot'?)",
        "[tool.cnnbudget] '\\u2028': unknown key (allowed: snapshot, device, timeout, depth, models)",
        f"[tool.cnnbudget.models.m] '::error::x\\r\\n': unknown key (allowed: {ALLOWED})",
        f"[tool.cnnbudget.models.m] '{'k' * 27}...{'k' * 28}': unknown key (allowed: {ALLOWED})",
    ]


@pytest.mark.parametrize(
    ("table", "first"),
    [
        ({f"k{i}": i for i in range(5000)}, "[tool.cnnbudget.models.m] k0: unknown key"),
        (
            {"kwargs": {f"_k{i}_": i for i in range(5000)}},
            "[tool.cnnbudget.models.m]: kwargs._k0_: not supported",
        ),
        (
            {"kwargs": {f"k{i}": {"_target_": "x" * 600} for i in range(5000)}},
            "[tool.cnnbudget.models.m]: kwargs.k0._target_: 'xxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ),
    ],
)
def test_thousands_of_problems_list_the_first_fifty_each_clipped_then_count_the_rest(
    tmp_path: Path, table: dict[str, Any], first: str
) -> None:
    path = write(tmp_path, toml_text({"m": {"target": "nets:A", "max_params": 1, **table}}))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    header, *lines = str(info.value).splitlines()
    assert header == f"{path}: invalid [tool.cnnbudget] configuration"
    assert len(lines) == 51
    assert lines[0].startswith(f"  {first}")
    assert lines[-1] == "  … and 4,950 more problems"
    assert all(len(line) <= 2 + 400 for line in lines)


def test_a_problem_deep_in_kwargs_is_one_clipped_line(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"_bad_": 1}
    for level in range(30):
        kwargs = {f"{level}{'k' * 58}": kwargs}
    path = write(
        tmp_path, toml_text({"m": {"target": "nets:A", "max_params": 1, "kwargs": kwargs}})
    )
    (problem,) = problems_of(path)
    assert problem.startswith("[tool.cnnbudget.models.m]: kwargs.29kkkk")
    assert len(problem) == 400
    assert problem.endswith("…")


def test_a_config_path_with_a_newline_stays_on_the_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, toml_text({"m": {"target": "nets:A"}}), name="odd\nname.toml")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).splitlines() == [
        f"{tmp_path}/odd\\nname.toml: invalid [tool.cnnbudget] configuration",
        "  [tool.cnnbudget.models.m] max_params: missing; every model needs a budget",
    ]


def test_an_input_shape_too_large_to_make_is_a_config_error(tmp_path: Path) -> None:
    assert one_model(tmp_path, max_params=1, input_shape=[1, 10**20]) == [
        f"{CIFAR} input_shape: dimension 1 of [1, 100000000000000000000] is "
        "100000000000000000000; a dimension is at most 2,147,483,647 (2**31 - 1)"
    ]


# -- timeouts -----------------------------------------------------------------------------------


def test_timeouts_in_seconds_top_level_and_per_model(tmp_path: Path) -> None:
    models = {
        "own": {**TINY_TABLE, "timeout": 1.5},
        "unlimited": {**TINY_TABLE, "timeout": 0},
        "inherits": TINY_TABLE,
        "a_day": {**TINY_TABLE, "timeout": 86_400},
    }
    settings = load_settings(write(tmp_path, toml_text(models, {"timeout": 30})))
    assert settings.timeout == 30.0
    assert {m.name: m.timeout for m in settings.models} == {
        "own": 1.5,
        "unlimited": 0.0,
        "inherits": None,
        "a_day": 86_400.0,
    }
    assert all(isinstance(m.timeout, float) for m in settings.models if m.timeout is not None)
    assert load_settings(write(tmp_path, toml_text({"m": TINY_TABLE}))).timeout is None


@pytest.mark.parametrize(
    ("timeout", "problem"),
    [
        (-1, "-1 is negative; give seconds, or 0 for no limit"),
        (-0.5, "-0.5 is negative; give seconds, or 0 for no limit"),
        (float("inf"), "inf is not a finite number of seconds; 0 means no limit"),
        (float("nan"), "nan is not a finite number of seconds; 0 means no limit"),
        (86_401, "86401 seconds is more than a day (86,400); 0 means no limit"),
        (2**63 - 1, "9223372036854775807 seconds is more than a day (86,400); 0 means no limit"),
        ("30s", "expected a number of seconds (0 for no limit), got str '30s'"),
        (True, "expected a number of seconds (0 for no limit), got bool True"),
    ],
)
def test_a_timeout_is_seconds_up_to_a_day(tmp_path: Path, timeout: object, problem: str) -> None:
    path = write(
        tmp_path, toml_text({"cifar": {**TINY_TABLE, "timeout": timeout}}, {"timeout": timeout})
    )
    assert problems_of(path) == [
        f"[tool.cnnbudget] timeout: {problem}",
        f"{CIFAR} timeout: {problem}",
    ]


# -- depth ---------------------------------------------------------------------------------------


def test_depth_top_level_and_per_model(tmp_path: Path) -> None:
    models = {"own": {**TINY_TABLE, "depth": 2}, "inherits": TINY_TABLE}
    settings = load_settings(write(tmp_path, toml_text(models, {"depth": 1})))
    assert settings.depth == 1
    assert {m.name: m.depth for m in settings.models} == {"own": 2, "inherits": None}


@pytest.mark.parametrize(
    ("depth", "problem"),
    [
        (0, "0 is not from 1 to 64"),
        (65, "65 is not from 1 to 64"),
        (1.5, "expected a whole number of name levels (1: `layers`, 2: `layers.3`), got float 1.5"),
        ("2", "expected a whole number of name levels (1: `layers`, 2: `layers.3`), got str '2'"),
        (
            True,
            "expected a whole number of name levels (1: `layers`, 2: `layers.3`), got bool True",
        ),
    ],
)
def test_a_depth_is_a_number_of_name_levels(tmp_path: Path, depth: object, problem: str) -> None:
    path = write(tmp_path, toml_text({"cifar": {**TINY_TABLE, "depth": depth}}, {"depth": depth}))
    assert problems_of(path) == [
        f"[tool.cnnbudget] depth: {problem}",
        f"{CIFAR} depth: {problem}",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0", "expected name levels, '0' is 0 is not from 1 to 64"),
        ("65", "expected name levels, '65' is 65 is not from 1 to 64"),
        ("two", "expected name levels, 'two' is not a whole number"),
        ("1.5", "expected name levels, '1.5' is not a whole number"),
    ],
)
def test_a_depth_option_is_checked_as_the_key(text: str, problem: str) -> None:
    assert depth_option(" 64 ") == 64
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        depth_option(text)
    assert str(raised.value) == problem


@pytest.mark.parametrize(
    ("table", "option", "top", "depth"),
    [
        (1, 2, 3, 1),  # the model's own key
        (None, 2, 3, 2),  # else the command line's
        (None, None, 3, 3),  # else the file's top level
        (None, None, None, None),  # else every level
    ],
)
def test_a_models_depth_is_its_tables_then_the_options_then_the_files(
    table: int | None, option: int | None, top: int | None, depth: int | None
) -> None:
    settings = Settings(Path("pyproject.toml"), None, "meta", (), depth=top)
    assert model_depth(ModelSpec("m", "nets:A", depth=table), option, settings) == depth


@pytest.mark.parametrize(
    ("table", "option", "top", "timeout"),
    [
        (1.0, 2.0, 3.0, 1.0),
        (0.0, 2.0, 3.0, None),  # 0: no limit, and it still wins
        (None, 2.0, 3.0, 2.0),
        (None, 0.0, 3.0, None),
        (None, None, 3.0, 3.0),
        (None, None, None, DEFAULT_TIMEOUT),
    ],
)
def test_a_models_timeout_is_its_tables_then_the_options_then_the_files(
    table: float | None, option: float | None, top: float | None, timeout: float | None
) -> None:
    settings = Settings(Path("pyproject.toml"), None, "meta", (), timeout=top)
    assert model_timeout(ModelSpec("m", "nets:A", timeout=table), option, settings) == timeout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_in_a_configs_place_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pyproject.toml")
    with pytest.raises(ConfigError, match="cannot read the configuration: not a file"):
        read_settings(tmp_path / "pyproject.toml")
