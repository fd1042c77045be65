"""Repeated blocks → one row: `layers.{0..31}.self_attn.q_proj ×32`. Pure.

A 32-block language model has 32 rows for each projection, identical but for the block index;
shown one by one they bury the row that differs. Rows whose names differ only in integer
components (`layers.3.mlp` and `layers.17.mlp`, or an `_<index>` ending as in torchvision's
`encoder_layer_3`; never `conv1` and `conv2`, whose digits are part of a name) and whose
figures match, as the caller's signature says, become one group. Groups are a product of
index sets, so `layers.{0..15}` and `layers.{16..31}` stay two groups when only half the
blocks changed, and irregular repetition (a UNet whose blocks hold different numbers of
layers) is never shown as more than it is.

It works on any row type through two functions, a name and a signature, so the layer table, the
snapshot diff, the largest layers and the charts all group the same way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# A name split at its dots, each integer component replaced by None and each component that
# ends in `_<index>` by its prefix and a marker.
_Skeleton = tuple[str | None, ...]
_SUFFIXED = "\0"  # ends a skeleton part whose index follows it: `encoder_layer_\0`
_Indices = tuple[int, ...]


@dataclass(frozen=True)
class Group(Generic[T]):
    """Rows shown as one: `name` is their common pattern, `members` the rows in model order."""

    name: str
    members: tuple[T, ...]

    @property
    def first(self) -> T:
        """The group's first row in model order, whose figures stand for every member's."""
        return self.members[0]

    @property
    def size(self) -> int:
        """How many rows the group stands for."""
        return len(self.members)


def _is_index(part: str) -> bool:
    # `0`, `17`; not `01` (a name, not a position) nor `²` (str.isdigit accepts it).
    return part.isascii() and part.isdigit() and (part == "0" or not part.startswith("0"))


# Every table of a run splits the same names again (the layer table, the diff, the comment):
# each name is split once.
@functools.lru_cache(maxsize=1 << 16)
def _split(name: str) -> tuple[_Skeleton, _Indices]:
    """`layers.3.mlp` → (`layers`, None, `mlp`), (3,); `encoder_layer_3` (torchvision's ViT)
    counts as an index after `encoder_layer_`, which `conv3` (a name) does not."""
    skeleton: list[str | None] = []
    indices: list[int] = []
    for part in name.split("."):
        if _is_index(part):
            skeleton.append(None)
            indices.append(int(part))
            continue
        prefix, sep, tail = part.rpartition("_")
        if sep and prefix and _is_index(tail):
            skeleton.append(prefix + sep + _SUFFIXED)
            indices.append(int(tail))
            continue
        skeleton.append(part)
    return tuple(skeleton), tuple(indices)


def index_set(values: Iterable[int]) -> str:
    """`{0..31}`, `{0,2,4}`, `{0..3,8..11}`: sorted, runs of three or more as ranges."""
    ordered = sorted(set(values))
    runs: list[list[int]] = []
    for v in ordered:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{run[0]}..{run[-1]}")
        else:
            parts.extend(str(v) for v in run)
    return "{" + ",".join(parts) + "}"


def _pattern(skeleton: _Skeleton, sets: Sequence[frozenset[int]]) -> str:
    values = iter(sets)
    parts = []
    for part in skeleton:
        if part is not None and not part.endswith(_SUFFIXED):
            parts.append(part)
            continue
        indices = next(values)
        text = str(next(iter(indices))) if len(indices) == 1 else index_set(indices)
        parts.append(text if part is None else part.removesuffix(_SUFFIXED) + text)
    return ".".join(parts)


# A group under construction: its index set per integer position, and its members' positions
# in the input (which order the members and place the group where its first member was).
_Block = tuple[tuple[frozenset[int], ...], list[int]]


def _blocks(members: Sequence[tuple[_Indices, int]], position: int = 0) -> list[_Block]:
    """Split rows of one skeleton and signature into groups whose indices are a product of
    one set per position: fixed positions kept, varying ones merged where the rest agrees."""
    if not members:
        return []
    width = len(members[0][0])
    if len(members) == 1 or position >= width:
        if len(members) == 1:
            indices, at = members[0]
            return [(tuple(frozenset((i,)) for i in indices), [at])]
        # Equal indices all through: the same name twice cannot happen in one table, but a
        # caller's rows might repeat; keep each its own.
        return [(tuple(frozenset((i,)) for i in m[0]), [m[1]]) for m in members]
    if position == 0:
        # The common case at once: the members are every combination of their index sets
        # (all 32 blocks; 4 stages × 3 blocks), which the splitting below would only rebuild.
        sets = tuple(frozenset(m[0][p] for m in members) for p in range(width))
        distinct = len({m[0] for m in members}) == len(members)
        if distinct and math.prod(len(s) for s in sets) == len(members):
            return [(sets, sorted(m[1] for m in members))]
    by_value: dict[int, list[tuple[_Indices, int]]] = {}
    for member in members:
        by_value.setdefault(member[0][position], []).append(member)
    # Each value of this position, grouped over the later positions on its own; then values
    # whose sub-groups have the same sets at every other position join along this one.
    merged: dict[tuple[frozenset[int], ...], tuple[set[int], list[int]]] = {}
    for value, rows in by_value.items():
        for sets, ats in _blocks(rows, position + 1):
            rest = sets[:position] + sets[position + 1 :]
            values, joined = merged.setdefault(rest, (set(), []))
            values.add(value)
            joined.extend(ats)
    out: list[_Block] = []
    for rest, (values, ats) in merged.items():
        sets = (*rest[:position], frozenset(values), *rest[position:])
        out.append((sets, sorted(ats)))
    return out


def _counted_from_zero(
    skeleton: _Skeleton, blocks: list[_Block], members: Sequence[tuple[_Indices, int]]
) -> list[_Block]:
    """Blocks split where an `_<index>` ending does not count from 0: `encoder_layer_{0..11}`
    is a sequence of blocks, `ln_1` and `ln_2` are two names that happen to end in digits."""
    positions = [p for p in skeleton if p is None or p.endswith(_SUFFIXED)]
    suffixed = [i for i, p in enumerate(positions) if p is not None]
    if not suffixed:
        return blocks
    indices = {at: ix for ix, at in members}
    out: list[_Block] = []
    pending = list(blocks)
    while pending:
        sets, ats = pending.pop()
        split = next((i for i in suffixed if len(sets[i]) > 1 and 0 not in sets[i]), None)
        if split is None:
            out.append((sets, ats))
            continue
        for value in sets[split]:
            part = [at for at in ats if indices[at][split] == value]
            pending.append(((*sets[:split], frozenset((value,)), *sets[split + 1 :]), part))
    return out


def group_rows(
    rows: Sequence[T], name: Callable[[T], str], signature: Callable[[T], Hashable]
) -> list[Group[T]]:
    """`rows` as groups, each where its first member was; a row that repeats nothing is a
    group of one under its own name. Members of a group have equal signatures and names that
    differ only in integer components."""
    buckets: dict[tuple[_Skeleton, Hashable], list[tuple[_Indices, int]]] = {}
    for at, row in enumerate(rows):
        skeleton, indices = _split(name(row))
        buckets.setdefault((skeleton, signature(row)), []).append((indices, at))
    groups: list[tuple[int, Group[T]]] = []
    for (skeleton, _), members in buckets.items():
        if len(members) == 1:
            at = members[0][1]
            groups.append((at, Group(name(rows[at]), (rows[at],))))
            continue
        for sets, ats in _counted_from_zero(skeleton, _blocks(members), members):
            label = name(rows[ats[0]]) if len(ats) == 1 else _pattern(skeleton, sets)
            groups.append((ats[0], Group(label, tuple(rows[i] for i in ats))))
    groups.sort(key=lambda g: g[0])
    return [g for _, g in groups]


def ungrouped(rows: Sequence[T], name: Callable[[T], str]) -> list[Group[T]]:
    """Every row a group of one: what grouping turned off shows."""
    return [Group(name(row), (row,)) for row in rows]
