"""Sharded runs: what a gate run adds to its JSON report (`shard`) so that `cnnbudget merge` can
join the reports of several jobs into the report, job summary and comment one run would have
written; and that join. Pure but for the digests of the config files a run reads.

Each shard knows part of the run. What none knows alone is decided as one run would have:

- results: every shard's; one model checked by two shards must read alike in both;
- configs: every shard's (a job per package sees its own); one file seen by two shards must be
  the same file (its digest), and its snapshot the same where both read an entry;
- stale entries: what any shard found stale, less what another shard checked (a fixture check
  one shard deselected, it keeps; the shard that ran it checked it);
- fixture entries (names with `::`) whose test is gone: gone when a shard that collected the
  test's module found it gone, as one run's whole collection would have. A shard asks about its
  snapshots' entries and its baseline's; a fixture entry that only a baseline given to the
  merge holds is taken as gone (removed in the comparison);
- the baseline: the entries every shard read of the one base (a job per package reads its own
  configs' snapshots), joined.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config.files import ConfigFile, Configs
from ..errors import CommandLineError, exception_text
from ..jsontext import echoed
from ..names import printable
from ..report.cells import Failures
from ..report.json import REPORT_SCHEMA, run_report
from ..results import ModelResult, SnapshotEntry
from ..snapshot.compare import BaseComparison, compare_with_base
from ..snapshot.format import entry_from_json, entry_to_json
from . import wire
from .collected import Collected, kept_entries
from .start import RunOptions

# The shard data's own version: a merge refuses data of another, whatever the report's schema.
SHARD_VERSION = 1
NOT_CHECKED = "not checked by any shard: "


@dataclass(frozen=True)
class ShardConfig:
    """A config file as a shard saw it: the key, the contents' digest, its models, its snapshot."""

    path: str  # relative to where pytest started (POSIX), alike in every job of a workflow
    digest: str | None  # "sha256:<hex>" of its bytes; None where there is no file (default)
    models: tuple[str, ...]
    snapshot: str  # as messages name it (Settings.snapshot_name)
    # The entries a comparison with the snapshot may need: the checked models', and those no
    # table of the file configures (stale, or a fixture check's).
    stored: Mapping[str, SnapshotEntry]


@dataclass(frozen=True)
class Shard:
    """One report's shard data, decoded; or several joined."""

    configs: tuple[ShardConfig, ...]  # in the order the run found them
    results: Mapping[str, ModelResult]  # settled: as the report shows them
    failures: Mapping[str, tuple[str, ...]]  # each failing model's rendered failure
    kept: frozenset[str]  # fixture entries whose test may still exist
    gone: frozenset[str]  # fixture entries whose test a shard found gone
    group: bool  # tables group repeated blocks (no --cnn-budget-no-group)
    stale: tuple[str, ...] = ()  # the report's `stale`
    problems: tuple[str, ...] = ()  # the report's `problems`, less NOT_CHECKED's
    # The base branch's snapshots the run compared with (--cnn-budget-baseline or -base-rev),
    # and how its comment named them; None: none.
    baseline: Mapping[str, SnapshotEntry] | None = None
    against: str | None = None

    def unchecked(self) -> list[str]:
        """The configured models no shard checked, sorted."""
        return sorted({n for c in self.configs for n in c.models if n not in self.results})

    def base(self) -> dict[str, SnapshotEntry]:
        """The snapshots as the shards started from them, every file's entries (a later file's
        winning, as `compare_run` has it)."""
        return {name: e for config in self.configs for name, e in config.stored.items()}

    def configured(self, base: Iterable[str]) -> list[str]:
        """What a comparison with `base` takes for configured: the tables' models, the checked
        ones, and the fixture entries of `base` whose test may still exist."""
        models = [n for c in self.configs for n in c.models]
        return [*models, *self.results, *(n for n in base if n in self.kept)]

    def snapshots(self) -> str:
        """How a comparison with the snapshots names them, as `write_outputs` does."""
        return f"the snapshot {', '.join(c.snapshot for c in self.configs)}"

    def all_problems(self) -> list[str]:
        """The run's problems, and the configured models no shard checked."""
        missing = not_checked(self.unchecked())
        return [*self.problems, *([missing] if missing else [])]

    def report(self) -> dict[str, Any]:
        """The JSON report of the run the shards make up: `run_report`, with this as `shard`."""
        results = self.results.values()
        return run_report(results, self.stale, self.all_problems(), shard=shard_dict(self))

    def compared(self, baseline: Mapping[str, SnapshotEntry] | None) -> tuple[BaseComparison, ...]:
        """Every model against `baseline`, else the snapshots the shards started from: what
        `compare_run` finds in one run."""
        base = self.base() if baseline is None else baseline
        return compare_with_base(self.results.values(), base, self.configured(base))


# -- a run's shard data --------------------------------------------------------------------


def shard_data(
    configs: Configs,
    results: Sequence[ModelResult],
    failed: Failures,
    options: RunOptions,
    collected: Collected,
    baseline: tuple[Mapping[str, SnapshotEntry], str] | None = None,
) -> dict[str, Any]:
    """A gate run's JSON report's `shard` (`write_outputs`)."""
    return shard_dict(run_shard(configs, results, failed, options, collected, baseline))


def run_shard(
    configs: Configs,
    results: Sequence[ModelResult],
    failed: Failures,
    options: RunOptions,
    collected: Collected,
    baseline: tuple[Mapping[str, SnapshotEntry], str] | None = None,
) -> Shard:
    """A gate run's shard data, at its end: `results` settled, `failed` each failure rendered,
    `collected` what pytest collected, `baseline` what it compared with and how it named it."""
    rootdir = options.rootdir
    names = {r.name for r in results}
    base = baseline[0] if baseline is not None else {}
    fixtures = sorted(
        {n for f in configs for n in f.stored if "::" in n} | {n for n in base if "::" in n}
    )
    folders = (rootdir, *(f.path.parent for f in configs))
    kept = set(kept_entries(fixtures, folders, collected))
    return Shard(
        configs=tuple(_config(f, rootdir, options.started, names) for f in configs),
        results={r.name: r for r in results},
        failures={r.name: tuple(failed[r.name]) for r in results if r.failed and r.name in failed},
        kept=frozenset(kept),
        gone=frozenset(n for n in fixtures if n not in kept),
        group=options.group,
        baseline=baseline[0] if baseline is not None else None,
        against=baseline[1] if baseline is not None else None,
    )


def _config(file: ConfigFile, rootdir: Path, started: Path, checked: set[str]) -> ShardConfig:
    path = file.path
    configured = set(file.configured())
    # Keyed relative to where the job started pytest, which every job of one workflow shares:
    # pytest's rootdir is each package's own folder when a job is given that folder alone.
    inside = next((f for f in (started.resolve(), rootdir) if path.is_relative_to(f)), None)
    return ShardConfig(
        path=path.relative_to(inside).as_posix() if inside is not None else str(path),
        digest=_digest(path),
        models=tuple(file.configured()),
        snapshot=file.settings.snapshot_name(rootdir),
        stored={n: e for n, e in file.stored.items() if n in checked or n not in configured},
    )


def _digest(path: Path) -> str | None:
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:  # the default snapshot's config, which need not exist
        return None


def shard_dict(shard: Shard) -> dict[str, Any]:
    """The report's `shard`: strict JSON (see `run_report`), `read_shard`'s inverse."""
    return {
        "version": SHARD_VERSION,
        "group": shard.group,
        "configs": [
            {
                "path": c.path,
                "sha256": c.digest,
                "models": list(c.models),
                "snapshot": c.snapshot,
                # `true`: the entry of the model's measurement in this run, not written twice.
                "stored": {n: _stored(e, shard.results.get(n)) for n, e in c.stored.items()},
            }
            for c in shard.configs
        ],
        "results": {n: _result_dict(r) for n, r in shard.results.items()},
        "failures": {n: list(lines) for n, lines in shard.failures.items()},
        "fixtures": {"kept": sorted(shard.kept), "gone": sorted(shard.gone)},
        "baseline": None
        if shard.baseline is None
        else {
            "name": shard.against,
            "entries": {n: entry_to_json(e) for n, e in shard.baseline.items()},
        },
    }


def _head(result: ModelResult | None) -> SnapshotEntry | None:
    """The entry that would accept a result's measurement."""
    if result is None or result.count is None:
        return None
    return SnapshotEntry.from_count(result.count)


def _stored(entry: SnapshotEntry, result: ModelResult | None) -> Any:
    return True if entry == _head(result) else entry_to_json(entry)


def _result_dict(result: ModelResult) -> dict[str, Any]:
    """`wire.encode`'s form, strict JSON: a traced optimizer's keyword arguments echoed as the
    report echoes them (`inf` as "inf"); the entry an update may write, `true` where it is the
    measurement's (always, as the gate makes it)."""
    data = wire.encode(result)
    for count in ("count", "folded"):
        memory = (data[count] or {}).get("memory")
        if memory is not None:
            options = memory["options"]
            options["optimizer_kwargs"] = echoed(options["optimizer_kwargs"])
    if result.entry is not None and result.entry == _head(result):
        data["entry"] = True
    count = data["count"]
    if count is not None and all(row["repeat"] == 1 for row in count["layers"]):
        # The rows (only their number here) are the model's `measurement.layers` in the same
        # report, but for the formula's own count where it differs (a bug of ours the check
        # reports): not written twice, which would make a 70B model's report 3× its size.
        count["formula_params"] = [
            [i, row["formula_params"]]
            for i, row in enumerate(count["layers"])
            if row["formula_params"] != row["params"]
        ]
        count["layers"] = len(count["layers"])
    return data


# -- reading a report back -----------------------------------------------------------------


def read_shard(report: Any, where: str) -> Shard:
    """A JSON report's shard data, decoded; CommandLineError, naming `where`, for a document
    that is not a report of this version with shard data."""
    if not isinstance(report, dict) or "schema" not in report:
        raise CommandLineError(f"{where}: not a pytest-cnnbudget JSON report (--cnn-budget-json)")
    if report["schema"] != REPORT_SCHEMA:
        raise CommandLineError(
            f"{where}: a report of schema {printable(repr(report['schema']))}; this cnnbudget "
            f"merges {REPORT_SCHEMA}: run every shard with the pytest-cnnbudget that merges them"
        )
    data = report.get("shard")
    if not isinstance(data, dict) or data.get("version") != SHARD_VERSION:
        raise CommandLineError(
            f"{where}: no shard data this cnnbudget reads (written by another version of "
            "pytest-cnnbudget): run every shard with the pytest-cnnbudget that merges them"
        )
    try:
        return _decoded(report, data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CommandLineError(
            f"{where}: its shard data cannot be read: {exception_text(e)}"
        ) from e


def _decoded(report: dict[str, Any], data: dict[str, Any]) -> Shard:
    models = report["models"]
    results = {str(n): _result(r, models.get(n)) for n, r in _items(data["results"])}
    configs = tuple(_config_of(c, results) for c in data["configs"])
    fixtures = data["fixtures"]
    shard = Shard(
        configs=configs,
        results=results,
        failures={str(n): tuple(map(str, lines)) for n, lines in _items(data["failures"])},
        kept=frozenset(map(str, fixtures["kept"])),
        gone=frozenset(map(str, fixtures["gone"])),
        group=bool(data["group"]),
        stale=tuple(map(str, report["stale"])),
        **_baseline_of(data.get("baseline")),
    )
    # A merged report says which models no shard checked; merged again, that is decided anew.
    missing = not_checked(shard.unchecked())
    problems = tuple(str(p) for p in report.get("problems", ()) if p != missing)
    return replace(shard, problems=problems)


def _baseline_of(data: Any) -> dict[str, Any]:
    """A shard's baseline and its name, as `Shard` fields."""
    if data is None:
        return {}
    entries = {
        str(n): entry_from_json(e, f"the baseline's entry {n!r}")
        for n, e in _items(data["entries"])
    }
    return {"baseline": entries, "against": str(data["name"])}


def _items(data: Any) -> Iterable[tuple[Any, Any]]:
    if not isinstance(data, dict):
        raise TypeError(f"an object expected, not {type(data).__name__}")
    return data.items()


def _result(data: dict[str, Any], model: Any) -> ModelResult:
    accepted = data["entry"] is True
    count = data["count"]
    if count is not None and isinstance(count["layers"], int):
        data = {**data, "count": _rows_from(count, model)}
    result = wire.decode({**data, "entry": None} if accepted else data)
    return replace(result, entry=_head(result)) if accepted else result


def _rows_from(count: dict[str, Any], model: Any) -> dict[str, Any]:
    """A count whose rows are its model's measurement's (see `_result_dict`), made whole."""
    measured = model["measurement"] if isinstance(model, dict) else None
    if not isinstance(measured, dict):
        raise ValueError(f"the result of {printable(str(model))} has no measurement to read")
    formula_params = dict(count["formula_params"])
    rows = [
        {
            "name": row["name"],
            "type": row["type"],
            "params": row["params"],
            "trainable": row["trainable"],
            "formula": row["formula"],
            "formula_params": formula_params.get(i, row["params"]),
            "cumulative": row["cumulative"],
            "share": row["share"],
            "output_shape": row["output_shape"],
            "macs": row["macs"],
            "flops": row["flops"],
            "members": row["layers"],
            "repeat": 1,
            "quantized": row.get("quantized"),
            "activations": row.get("activations"),
        }
        for i, row in enumerate(measured["layers"])
    ]
    if len(rows) != count["layers"]:
        raise ValueError(
            f"{len(rows)} rows in the measurement of {printable(str(model.get('model')))}, "
            f"{count['layers']} in its result"
        )
    whole = {k: v for k, v in count.items() if k != "formula_params"}
    return {**whole, "layers": rows}


def _config_of(data: dict[str, Any], results: Mapping[str, ModelResult]) -> ShardConfig:
    path = str(data["path"])
    stored = {}
    for name, entry in _items(data["stored"]):
        head = _head(results.get(name)) if entry is True else None
        if entry is True and head is None:
            raise ValueError(f"{path}: the entry of {name!r} names a result that has none")
        try:
            stored[str(name)] = (
                head if head is not None else entry_from_json(entry, f"{path}: entry {name!r}")
            )
        except Exception as e:  # a SnapshotError names the field
            raise ValueError(exception_text(e)) from e
    digest = data["sha256"]
    return ShardConfig(
        path=path,
        digest=str(digest) if digest is not None else None,
        models=tuple(map(str, data["models"])),
        snapshot=str(data["snapshot"]),
        stored=stored,
    )


def not_checked(names: Sequence[str]) -> str | None:
    """The problem of configured models no shard checked; None when every one was."""
    return NOT_CHECKED + ", ".join(printable(n) for n in names) if names else None
