"""The join of sharded runs' reports (`cnnbudget merge`): what one run would have reported,
decided as run/shards.py's docstring says, or a refusal naming the two reports that disagree."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from ..errors import CommandLineError
from ..names import printable
from ..report.json import model_dict
from ..results import SnapshotEntry
from .shards import Shard, ShardConfig


def merge_shards(shards: Sequence[tuple[str, Shard]]) -> Shard:
    """The shards (each named by its file) joined into what one run would have reported;
    CommandLineError where they cannot be: run with other configs or options, started from
    other snapshots, or one model's results differ."""
    if not shards:
        raise CommandLineError("no reports to merge")
    first, shard = shards[0]
    configs = {c.path: (c, first) for c in shard.configs}
    results = {n: (r, first) for n, r in shard.results.items()}
    failures = dict(shard.failures)
    for where, other in shards[1:]:
        if other.group != shard.group:
            raise CommandLineError(
                f"{first} and {where} were run one with --cnn-budget-no-group, one without: "
                "their tables differ"
            )
        for config in other.configs:
            known = configs.get(config.path)
            joined = config if known is None else _same_config(known, config, where)
            configs[config.path] = (joined, where if known is None else known[1])
        for name, result in other.results.items():
            if name not in results:
                results[name] = (result, where)
                if name in other.failures:
                    failures[name] = other.failures[name]
            elif model_dict(result) != model_dict(results[name][0]):
                raise CommandLineError(
                    f"{printable(name)}: checked by both {results[name][1]} and {where}, with "
                    "different results; merge the reports of one commit's shards"
                )
    baseline = _joined_bases(shards)
    checked = set(results)
    gone = frozenset().union(*(s.gone for _, s in shards))
    return Shard(
        configs=tuple(c for c, _ in configs.values()),
        results={n: r for n, (r, _) in results.items()},
        failures=failures,
        kept=frozenset().union(*(s.kept for _, s in shards)) - gone,
        gone=gone,
        group=shard.group,
        stale=tuple(sorted({n for _, s in shards for n in s.stale} - checked)),
        problems=tuple(dict.fromkeys(p for _, s in shards for p in s.problems)),
        baseline=baseline,
        against=shard.against,
    )


def _joined_bases(shards: Sequence[tuple[str, Shard]]) -> Mapping[str, SnapshotEntry] | None:
    """The shards' baselines as one: each shard read the base's snapshots of the configs it
    loaded (a job per package, its own), so the entries join; the base must be one."""
    first, shard = shards[0]
    joined = dict(shard.baseline or {})
    for where, other in shards[1:]:
        if (other.baseline is None, other.against) != (shard.baseline is None, shard.against):
            raise CommandLineError(
                f"{first} and {where} were compared with different bases ({shard.against} and "
                f"{other.against}); merge the reports of one workflow run's shards"
            )
        for name, entry in (other.baseline or {}).items():
            if joined.setdefault(name, entry) != entry:
                raise CommandLineError(
                    f"{first} and {where} read different base entries of {printable(name)}; "
                    "merge the reports of one workflow run's shards"
                )
    return joined if shard.baseline is not None else None


def _same_config(known: tuple[ShardConfig, str], config: ShardConfig, where: str) -> ShardConfig:
    """One config file as two shards saw it, their stored entries joined; CommandLineError
    where it is not the same file or they started from different snapshots."""
    mine, first = known
    if (mine.digest, mine.models, mine.snapshot) != (config.digest, config.models, config.snapshot):
        how = f"{mine.digest} and {config.digest}" if mine.digest != config.digest else "its models"
        raise CommandLineError(
            f"{first} and {where} were run with different configs: {printable(config.path)} "
            f"differs ({how}); merge the reports of one commit's shards"
        )
    stored = dict(mine.stored)
    for name, entry in config.stored.items():
        if stored.setdefault(name, entry) != entry:
            raise CommandLineError(
                f"{first} and {where} started from different snapshots: the entry of "
                f"{printable(name)} in {printable(config.snapshot)} differs; merge the reports "
                "of one commit's shards"
            )
    return replace(mine, stored=stored)
