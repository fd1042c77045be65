"""The pure parts of writing outputs: which ones could never be written, and why one failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_cnnbudget.run.outputs import failure_text, output_problems


def test_output_problems_name_each_output_that_could_never_be_written(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "file.txt").write_text("x")
    problems = output_problems(tmp_path, "out", "file.txt", str(tmp_path / "out"), "/no/such")
    assert problems == [
        "--cnn-budget-json 'out' names a folder, not a file",
        "--cnn-budget-plot 'file.txt' names a file, not a folder",
        f"GITHUB_STEP_SUMMARY={str(tmp_path / 'out')!r} is not a file GitHub could have given "
        "this step",
        "GITHUB_WORKSPACE='/no/such' is not a folder",
    ]
    assert output_problems(tmp_path, "report.json", "charts", None, None) == []


def test_failure_text_gives_the_os_reason_and_the_file() -> None:
    with pytest.raises(OSError, match="No space left") as full:
        Path("/dev/full").write_text("x")  # fails at the flush, which names no file
    assert failure_text(full.value) == "No space left on device (ENOSPC)"
    with pytest.raises(FileNotFoundError) as missing:
        Path("/no/such/folder/report.json").write_text("x")
    assert failure_text(missing.value) == (
        "No such file or directory (ENOENT): /no/such/folder/report.json"
    )
    assert failure_text(ValueError("bad figure")) == "ValueError: bad figure"
