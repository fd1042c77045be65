"""The end of a run (`run.finish`), called directly: real config files and snapshots in a
temporary folder, results built as the gate returns them."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_cnnbudget.config.files import Configs
from pytest_cnnbudget.report.json import run_report
from pytest_cnnbudget.results import (
    ModelResult,
    Outcome,
    SnapshotEntry,
    SnapshotLayer,
    SnapshotStatus,
)
from pytest_cnnbudget.run.collected import Collected, _Sources, kept_entries
from pytest_cnnbudget.run.finish import (
    RunEnd,
    compare_run,
    end_run,
    summary_lines,
    withheld,
    write_outputs,
)
from pytest_cnnbudget.run.start import RunOptions
from pytest_cnnbudget.run.wire import decode, encode
from pytest_cnnbudget.snapshot.compare import Change
from pytest_cnnbudget.snapshot.store import read_snapshot, write_snapshot


def entry(params: int) -> SnapshotEntry:
    """A one-layer model's entry: `params` parameters in `fc`."""
    return SnapshotEntry(params, params, 0, 0, (SnapshotLayer("fc", "Linear", params, "n"),))


def result(name: str, status: SnapshotStatus, now: SnapshotEntry | None = None) -> ModelResult:
    """A passing model's result with snapshot `status`; `now` the entry an update may write."""
    return ModelResult(
        name=name, target=f"nets:{name}", level="error", outcome=Outcome.PASSED, snapshot=status,
        entry=now,
    )  # fmt: skip


def package(folder: Path, *models: str, stored: dict[str, SnapshotEntry] | None = None) -> Path:
    """A pyproject.toml configuring `models` in `folder`, its snapshot holding `stored`."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = "".join(
        f'[tool.cnnbudget.models.{m}]\ntarget = "nets:{m}"\nmax_params = 100\n' for m in models
    )
    (folder / "pyproject.toml").write_text(f"[tool.cnnbudget]\n{tables}", encoding="utf-8")
    if stored is not None:
        write_snapshot(folder / "cnnbudget.snapshot.json", stored)
    return folder / "pyproject.toml"


def configs(*paths: Path) -> Configs:
    """The run's configs, each file's models claimed by it as collection claims them."""
    loaded = Configs()
    for path in paths:
        file = loaded.load(path)
        assert file is not None
        for name in file.configured():
            loaded.claim(name, file.path)
    return loaded


def test_kept_entries_are_the_fixture_checks_whose_test_this_run_collected(tmp_path: Path) -> None:
    (tmp_path / "my tests").mkdir()
    (tmp_path / "my tests" / "test_a.py").write_text("", encoding="utf-8")
    (tmp_path / "test_b.py").write_text("", encoding="utf-8")
    collected = Collected(
        {
            "my tests/test_a.py": frozenset(
                {
                    "my tests/test_a.py::test_x",
                    "my tests/test_a.py::TestC",
                    "my tests/test_a.py::test_p[a::b]",
                }
            ),
        }
    )
    kept = [
        "my tests/test_a.py::test_x",  # collected (maybe deselected)
        "my tests/test_a.py::test_x[student]",  # the same test, a named call
        "my tests/test_a.py::TestC::test_y",  # a class this run did not expand
        "my tests/test_a.py::test_p[a::b]",  # `::` in a parameter id
        "test_b.py::test_z",  # a module this run did not collect, still on disk
    ]
    stale = [
        "my tests/test_a.py::test_gone",  # its module was collected, and holds no such test
        "my tests/test_a.py::test_xy",  # not test_x's: a name is matched whole
        "gone.py::test_x",  # no such file
        "resnet",  # a configured model's name, not a fixture check's
    ]
    assert kept_entries(stale + kept, (tmp_path,), collected) == kept


def test_a_run_without_update_writes_nothing_and_every_stale_entry_stays(tmp_path: Path) -> None:
    path = package(tmp_path, "a", stored={"a": entry(1), "old": entry(2)})
    run = configs(path)
    ended = end_run(run, [result("a", SnapshotStatus.CHANGED)], tmp_path, update=False)
    assert [e.written for e in ended.endings] == [False]
    assert ended.stale == ["old"]
    assert read_snapshot(tmp_path / "cnnbudget.snapshot.json") == {"a": entry(1), "old": entry(2)}


def test_a_complete_update_writes_the_merge_and_leaves_nothing_stale(tmp_path: Path) -> None:
    path = package(tmp_path, "a", stored={"a": entry(1), "old": entry(2)})
    ended = end_run(
        configs(path), [result("a", SnapshotStatus.UPDATED, entry(3))], tmp_path, update=True
    )
    assert [e.written for e in ended.endings] == [True]
    assert (ended.stale, ended.errors) == ([], ())
    assert read_snapshot(tmp_path / "cnnbudget.snapshot.json") == {"a": entry(3)}


def test_a_partial_update_keeps_and_reports_the_stale_entries(tmp_path: Path) -> None:
    path = package(tmp_path, "a", "b", stored={"a": entry(1), "old": entry(2)})
    ended = end_run(
        configs(path), [result("a", SnapshotStatus.UPDATED, entry(3))], tmp_path, update=True
    )
    assert ended.stale == ["old"]
    assert read_snapshot(tmp_path / "cnnbudget.snapshot.json") == {"a": entry(3), "old": entry(2)}


def test_a_snapshot_that_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    good = package(tmp_path / "good", "a", stored={"a": entry(1), "old": entry(5)})
    bad = package(tmp_path / "bad", "b", stored={"b": entry(1), "old2": entry(5)})
    run = configs(good, bad)
    # A folder where the snapshot's temporary file would go makes its write fail.
    (tmp_path / "bad" / "cnnbudget.snapshot.json").unlink()
    (tmp_path / "bad" / "cnnbudget.snapshot.json").mkdir()
    results = [
        result("a", SnapshotStatus.UPDATED, entry(2)),
        result("b", SnapshotStatus.UPDATED, entry(2)),
    ]
    ended = end_run(run, results, tmp_path, update=True)
    assert [(e.file.path.parent.name, e.written) for e in ended.endings] == [
        ("good", True),
        ("bad", False),
    ]
    assert len(ended.errors) == 1
    assert "the snapshot was not written, and still holds what it held before" in ended.errors[0]
    # The written file's stale entry was removed; the other's is still there.
    assert ended.stale == ["old2"]
    lines = summary_lines(ended, results, tmp_path, verbose=False, group=True)
    assert "good/cnnbudget.snapshot.json: updated a (totals)" in lines
    assert not any(line.startswith("bad/") for line in lines)


def test_the_comparison_keeps_fixture_entries_whose_test_exists(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text("def test_x(cnn_budget): pass\n", encoding="utf-8")
    stored = {"a": entry(1), "test_a.py::test_x": entry(2), "gone": entry(3)}
    path = package(tmp_path, "a", stored=stored)
    compared = compare_run(configs(path), [result("a", SnapshotStatus.MATCH)], None, tmp_path)
    changes = {c.name: c.change for c in compared}
    assert changes["gone"] is Change.REMOVED
    assert "test_a.py::test_x" not in changes or changes["test_a.py::test_x"] is not Change.REMOVED


def test_every_output_is_written_even_after_one_fails(tmp_path: Path) -> None:
    path = package(tmp_path, "a", stored={"a": entry(1), "old": entry(2)})
    run = configs(path)
    results = [result("a", SnapshotStatus.MATCH)]
    ended = end_run(run, results, tmp_path, update=False)
    (tmp_path / "taken").mkdir()
    options = RunOptions(
        rootdir=tmp_path, started=tmp_path, json="taken", comment="comment.md", plot=None
    )
    errors = write_outputs(options, run, results, ended, {}, None)
    assert len(errors) == 1
    assert errors[0].startswith("could not write the JSON report (--cnn-budget-json ")
    assert "<!-- cnn-budget-comment -->" in (tmp_path / "comment.md").read_text(encoding="utf-8")


def test_the_json_report_lists_the_stale_entries_the_run_left(tmp_path: Path) -> None:
    path = package(tmp_path, "a", stored={"a": entry(1), "old": entry(2)})
    run = configs(path)
    results = [result("a", SnapshotStatus.MATCH)]
    ended = end_run(run, results, tmp_path, update=False)
    options = RunOptions(rootdir=tmp_path, started=tmp_path, json="out/report.json")
    assert write_outputs(options, run, results, ended, {}, None) == []
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["stale"] == ["old"]


@pytest.mark.parametrize("github", [True, False])
def test_the_job_summary_is_appended_only_for_github(tmp_path: Path, github: bool) -> None:
    path = package(tmp_path, "a", stored={"a": entry(1)})
    run = configs(path)
    results = [result("a", SnapshotStatus.MATCH)]
    ended = end_run(run, results, tmp_path, update=False)
    summary = tmp_path / "summary.md"
    summary.write_text("before\n", encoding="utf-8")
    options = RunOptions(
        rootdir=tmp_path, started=tmp_path, github=github, step_summary=str(summary)
    )
    assert write_outputs(options, run, results, ended, {}, None) == []
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("before\n")
    assert ("## cnn-budget" in text) is github


def test_results_read_back_from_json_end_a_run_as_the_originals_do(tmp_path: Path) -> None:
    # What a command merging sharded runs does: results as JSON, then the same end of the run.
    stored = {"a": entry(1), "b": entry(2), "old": entry(3)}
    results = [result("a", SnapshotStatus.UPDATED, entry(5)), result("b", SnapshotStatus.MATCH)]
    shards = [json.loads(json.dumps(encode(r))) for r in results]
    ends: list[RunEnd] = []
    for ran in (results, [decode(data) for data in shards]):
        folder = tmp_path / str(len(ends))
        ends.append(end_run(configs(package(folder, "a", "b", stored=stored)), ran, folder, True))
    assert [e.merge.entries for e in ends[0].endings] == [e.merge.entries for e in ends[1].endings]
    assert ends[1].endings[0].merge.entries == {"a": entry(5), "b": entry(2)}


# -- the update, for any snapshot, selection and failures (hypothesis) ------------------------

MODELS = [f"m{i}" for i in range(5)]
CHECKS = [f"tests/test_a.py::test_{i}" for i in range(4)]  # fixture checks' entries
# How a check that ran ended: what an update may write, and what it may not.
ENDINGS = ["accepted", "same", "over budget", "test failed", "error"]


def ran_result(
    name: str, ending: str, stored: SnapshotEntry | None, now: SnapshotEntry
) -> ModelResult:
    """The result the gate gives a model that ended as `ending` in an update."""
    if ending == "error":
        return ModelResult(name, "t", "error", Outcome.ERROR, SnapshotStatus.UNKNOWN)
    if ending == "over budget":
        return replace(result(name, SnapshotStatus.REJECTED), outcome=Outcome.FAILED)
    if ending == "same" and stored is not None:
        return result(name, SnapshotStatus.MATCH, stored)
    status = SnapshotStatus.ADDED if stored is None else SnapshotStatus.UPDATED
    accepted = result(name, status, now)
    return withheld(accepted) if ending == "test failed" else accepted


def writes(name: str, ending: str, before: dict[str, SnapshotEntry], unwritable: bool) -> bool:
    """Whether an update must write the entry of a check that ended as `ending`: accepted, or
    the same as stored where nothing is stored yet (an add)."""
    if unwritable:
        return False
    return ending == "accepted" or (ending == "same" and name not in before)


@settings(max_examples=80, deadline=None)
@given(
    stored=st.dictionaries(st.sampled_from([*MODELS, "old1", "old2", *CHECKS]), st.integers(1, 9)),
    configured=st.sets(st.sampled_from(MODELS)),
    existing=st.sets(st.sampled_from(CHECKS)),  # the fixture tests that still exist
    ran=st.dictionaries(st.sampled_from([*MODELS, *CHECKS]), st.sampled_from(ENDINGS)),
    unwritable=st.booleans(),  # the snapshot cannot be written (a full disk, a read-only mount)
)
def test_an_update_keeps_what_it_did_not_check_writes_what_it_accepted_and_says_so(
    stored: dict[str, int],
    configured: set[str],
    existing: set[str],
    ran: dict[str, str],
    unwritable: bool,
) -> None:
    # A -k selection is what ran: configured models and fixture checks alike; a check runs
    # only where its test exists.
    ran = {n: e for n, e in ran.items() if n in configured or n in existing}
    before = {name: entry(params) for name, params in stored.items()}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = package(root, *sorted(configured), stored=before)
        run = configs(path)
        for name in ran:
            run.claim(name, path.resolve())
        now = {name: entry(100 + i) for i, name in enumerate(sorted(ran))}
        results = [ran_result(n, e, before.get(n), now[n]) for n, e in sorted(ran.items())]
        collected = Collected({"tests/test_a.py": frozenset(existing)})
        (root / "tests").mkdir()
        source = "".join(f"def {n.partition('::')[2]}(cnn_budget): ...\n" for n in existing)
        (root / "tests" / "test_a.py").write_text(source, encoding="utf-8")
        snapshot = root / "cnnbudget.snapshot.json"
        if unwritable:  # a folder in its place: locking works, reading and writing fail
            snapshot.unlink(missing_ok=True)
            snapshot.mkdir()
        ended = end_run(run, results, root, True, collected)
        after = before if unwritable else read_snapshot(snapshot)
        assert len(ended.errors) == unwritable
        lines = summary_lines(ended, ended.results, root, False, False)
        report = json.loads(json.dumps(run_report(ended.results, ended.stale)))

    complete = configured <= set(ran) and not unwritable
    for name, old in before.items():
        checked = name in ran
        kept = name in configured or name in existing
        if not checked and (kept or not complete):
            assert after.get(name) == old, f"{name}: an entry the update did not check changed"
        if not checked and not kept and complete:
            assert name not in after, f"{name}: a stale entry stayed after a complete update"
    for name, ending in ran.items():
        expected = now[name] if writes(name, ending, before, unwritable) else before.get(name)
        assert after.get(name) == expected, (name, ending)
    settled = {r.name: r.snapshot for r in ended.results}
    for name, ending in ran.items():
        changed = writes(name, ending, before, unwritable)
        said = settled[name] in (SnapshotStatus.ADDED, SnapshotStatus.UPDATED)
        assert said == changed, (name, ending, settled[name])
        assert report["models"][name]["snapshot"] == settled[name].value
        added = f"cnnbudget.snapshot.json: added {name}" in lines
        assert added == (changed and name not in before), (name, lines)
    assert set(report["stale"]) == {
        n for n in after if n not in configured and n not in existing and n not in ran
    }


def test_a_test_pytest_did_not_find_is_kept_while_its_file_names_it(tmp_path: Path) -> None:
    # --lf reports a module with its failed tests alone; a doctest's collector may be off.
    (tmp_path / "pkg" / "tests").mkdir(parents=True)
    (tmp_path / "pkg" / "tests" / "test_a.py").write_text(
        "def test_x(cnn_budget): ...\ndef helper(): ...\n", encoding="utf-8"
    )
    collected = Collected({"tests/test_a.py": frozenset()})
    folders = (tmp_path, tmp_path / "pkg")  # the rootdir, the config's folder
    names = [
        "tests/test_a.py::test_x",
        "tests/test_a.py::test_a.helper",
        "tests/test_a.py::test_gone",
    ]
    assert kept_entries(names, folders, collected) == names[:2]
    assert kept_entries(names, (tmp_path,), collected) == []  # no such file under the rootdir


def test_a_check_the_update_did_not_write_shows_new_against_an_empty_snapshot(
    tmp_path: Path,
) -> None:
    from pytest_cnnbudget.report.github import summary_markdown

    path = package(tmp_path, "a", "b", stored={"b": entry(1)})
    first = replace(result("a", SnapshotStatus.ADDED, entry(2)), first=True)
    ran = [withheld(first), withheld(result("b", SnapshotStatus.MATCH, entry(1)))]
    ended = end_run(configs(path), ran, tmp_path, update=True)
    rows = {
        line.split("|")[1].strip(): line
        for line in summary_markdown(list(ended.results), {}, None).splitlines()
        if line.startswith("| ")
    }
    assert "| new |" in rows["a"]  # no entry before, none after: not "0"
    assert "| 0 |" in rows["b"]


def test_each_test_file_is_read_once_however_many_entries_ask(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    test_file = tmp_path / "tests" / "test_a.py"
    test_file.write_text("def test_kept(cnn_budget): ...\n", encoding="utf-8")
    collected = Collected({"tests/test_a.py": frozenset()})  # as --lf reports it
    names = ["tests/test_a.py::test_kept", "tests/test_a.py::test_gone"]
    many = [f"tests/test_a.py::test_kept[{i}]" for i in range(20_000)] + names[1:]
    assert kept_entries(many, (tmp_path,), collected) == many[:-1]
    # One run's entries share what each file was read as: a file changed after its first
    # entry asked is not read again.
    sources = _Sources()
    assert collected.holds(names[0], (tmp_path,), sources)
    test_file.write_text("def test_gone(cnn_budget): ...\n", encoding="utf-8")
    assert collected.holds(names[0], (tmp_path,), sources)
    assert not collected.holds(names[1], (tmp_path,), sources)
    assert collected.holds(names[1], (tmp_path,), _Sources())  # a new run reads it again
