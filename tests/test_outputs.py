"""Writing outputs: which ones could never be written, why one failed, and that a write that
fails leaves the file it would have replaced as it was."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_cnnbudget.run import outputs
from pytest_cnnbudget.run.outputs import (
    Streams,
    append_text,
    failure_text,
    output_problems,
    write_json,
    write_text,
)


def test_output_problems_name_each_output_that_could_never_be_written(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "file.txt").write_text("x")
    problems = output_problems(tmp_path, "out", "file.txt", str(tmp_path / "out"), "/no/such")
    assert problems == [
        "--cnn-budget-json 'out' names a folder, not a file",
        f"GITHUB_STEP_SUMMARY={str(tmp_path / 'out')!r} names a folder, not a file",
        "--cnn-budget-plot 'file.txt' names a file, not a folder",
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


def test_a_text_that_cannot_be_encoded_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "comment.md"
    path.write_text("the old comment\n", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        write_text(path, "a model name from a file: m\udc80\n")  # a lone surrogate
    assert path.read_text(encoding="utf-8") == "the old comment\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comment.md"]


OVER_THE_FILE_SIZE_LIMIT = """
import resource, sys
from pathlib import Path
from pytest_cnnbudget.run.outputs import failure_text, write_json

resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    write_json(Path(sys.argv[1]), {f"model{i}": i for i in range(1000)})  # 17 kB
except OSError as e:
    print(failure_text(e))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_a_json_report_that_cannot_be_written_in_full_leaves_the_old_one(tmp_path: Path) -> None:
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as on a full disk.
    path = tmp_path / "report.json"
    write_json(path, {"old": 1})
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [sys.executable, "-c", OVER_THE_FILE_SIZE_LIMIT, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "File too large (EFBIG)\n"
    assert path.read_text(encoding="utf-8") == '{\n  "old": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@contextlib.contextmanager
def pipe_with_a_reader(tmp_path: Path) -> Iterator[tuple[Path, int, Streams]]:
    """A FIFO in the JSON report's place, a reader that has it open (and reads only when the
    test does), and the run's streams; all closed afterwards."""
    pipe = tmp_path / "report.json"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    streams = Streams()
    try:
        yield pipe, reader, streams
    finally:
        os.close(reader)
        streams.close()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_pipe_with_a_reader_is_held_from_the_start_and_written_to(tmp_path: Path) -> None:
    # As `--cnn-budget-json /dev/stdout | jq` is: there is no file to replace.
    with pipe_with_a_reader(tmp_path) as (pipe, reader, streams):
        assert output_problems(tmp_path, "report.json", None, None, None, None, streams) == []
        write_json(pipe, {"a": 1}, streams)
        assert os.read(reader, 4096) == b'{\n  "a": 1\n}\n'
    assert stat.S_ISFIFO(pipe.stat().st_mode)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_nothing_reads_is_refused_before_the_run(tmp_path: Path) -> None:
    for name in ("report.json", "comment.md", "summary.md"):
        os.mkfifo(tmp_path / name)
    problems = output_problems(
        tmp_path, "report.json", None, str(tmp_path / "summary.md"), None, "comment.md"
    )
    assert len(problems) == 3
    assert all("names a FIFO that nothing reads" in p for p in problems)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_that_appears_later_is_never_waited_on(tmp_path: Path) -> None:
    # Made after the checks at the start: the report replaces it, and the job summary, which
    # is appended to, is refused at once.
    for name in ("report.json", "summary.md"):
        os.mkfifo(tmp_path / name)
    write_json(tmp_path / "report.json", {"a": 1})
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8")) == {"a": 1}
    with pytest.raises(OSError, match="No such device or address"):
        append_text(tmp_path / "summary.md", "x")  # ENXIO: no reader, and no waiting


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_reader_that_stops_reading_bounds_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outputs, "STREAM_TIMEOUT", 0.2)
    with pipe_with_a_reader(tmp_path) as (pipe, _, streams):  # open, and never read
        assert streams.probe(pipe) is None
        with pytest.raises(TimeoutError, match="nothing read it"):
            write_text(pipe, "x" * 2**20, streams)  # more than a pipe buffers


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_reader_that_reads_too_slowly_is_given_up_on_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    monkeypatch.setattr(outputs, "STREAM_DEADLINE", 0.5)
    stop = threading.Event()
    with pipe_with_a_reader(tmp_path) as (pipe, reader, streams):

        def trickle() -> None:  # takes a little, often enough never to be idle for long
            while not stop.wait(0.05):
                with contextlib.suppress(BlockingIOError):
                    os.read(reader, 1024)

        thread = threading.Thread(target=trickle)
        thread.start()
        try:
            assert streams.probe(pipe) is None
            match = r"not all read in 0 s; [\d,]+ of 4,194,304 bytes"
            with pytest.raises(TimeoutError, match=match):
                write_text(pipe, "x" * 2**22, streams)
        finally:
            stop.set()
            thread.join()
