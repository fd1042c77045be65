"""Repeated blocks shown as one row: `group_rows` on hand-made names, then the views on models."""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Hashable, Sequence
from itertools import accumulate
from random import Random

import architectures
import nets
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pytest_cnnbudget.engine.measurement import measure
from pytest_cnnbudget.report import views
from pytest_cnnbudget.report.grouping import Group, group_rows, index_set, ungrouped
from pytest_cnnbudget.results import LayerChange, LayerRow, ParameterCount

Row = tuple[str, Hashable]  # (name, signature)


def groups(rows: Sequence[Row]) -> list[Group[Row]]:
    return group_rows(rows, lambda r: r[0], lambda r: r[1])


def names(rows: Sequence[Row]) -> list[str]:
    return [g.name for g in groups(rows)]


def same(template: str, indices: Sequence[int], signature: Hashable = "s") -> list[Row]:
    return [(template.format(i), signature) for i in indices]


def expand(pattern: str) -> list[str]:
    """Every name a group name stands for: each `{0..3,8}` replaced by each of its values."""
    sets: list[list[int]] = []
    for body in re.findall(r"\{([^}]*)\}", pattern):
        values: list[int] = []
        for item in body.split(","):
            low, _, high = item.partition("..")
            values += range(int(low), int(high or low) + 1)
        sets.append(values)
    template = re.sub(r"\{[^}]*\}", "{}", pattern)
    return [template.format(*combo) for combo in itertools.product(*sets)]


# --------------------------------------------------------------------------------------------
# index_set and group_rows on hand-made rows
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "text"),
    [
        (range(32), "{0..31}"),
        ([4, 0, 2], "{0,2,4}"),
        ([*range(4), *range(8, 12)], "{0..3,8..11}"),
        ([0, 1], "{0,1}"),
        ([0, 1, 2, 5, 6], "{0..2,5,6}"),
    ],
)
def test_index_set(values: Sequence[int], text: str) -> None:
    assert index_set(values) == text
    assert expand(f"x.{text}") == [f"x.{v}" for v in sorted(set(values))]


def test_one_signature_across_all_blocks_is_one_group() -> None:
    rows = same("layers.{}.attention.wq", range(32))
    (group,) = groups(rows)
    assert group.name == "layers.{0..31}.attention.wq"
    assert group.members == tuple(rows)
    assert group.first == rows[0]
    assert group.size == 32


def test_a_change_to_half_the_blocks_makes_two_groups() -> None:
    rows = same("layers.{}.wq", range(16), "old") + same("layers.{}.wq", range(16, 32), "new")
    assert names(rows) == ["layers.{0..15}.wq", "layers.{16..31}.wq"]


def test_non_contiguous_index_sets() -> None:
    rows = [(f"layers.{i}.x", "a" if i % 2 == 0 else "b") for i in range(5)]
    assert names(rows) == ["layers.{0,2,4}.x", "layers.{1,3}.x"]
    rows = [(f"layers.{i}.x", "odd" if 4 <= i < 8 else "s") for i in range(12)]
    assert names(rows) == ["layers.{0..3,8..11}.x", "layers.{4..7}.x"]
    assert names(same("blocks.{}.fc", [0, 1])) == ["blocks.{0,1}.fc"]  # a pair is no range


def test_two_varying_positions_form_a_product() -> None:
    rows = [(f"s.{i}.b.{j}.c", "s") for i in range(2) for j in range(3)]
    (group,) = groups(rows)
    assert group.name == "s.{0,1}.b.{0..2}.c"
    assert group.size == 6


def test_an_irregular_set_is_not_shown_as_a_product() -> None:
    # Stage 0 has three blocks, stage 1 two: no product covers them all without inventing
    # `s.1.b.2.c`, so each stage is its own group.
    rows = [(f"s.0.b.{j}.c", "s") for j in range(3)] + [(f"s.1.b.{j}.c", "s") for j in range(2)]
    assert names(rows) == ["s.0.b.{0..2}.c", "s.1.b.{0,1}.c"]
    for g in groups(rows):
        assert sorted(expand(g.name)) == sorted(r[0] for r in g.members)


@pytest.mark.parametrize(
    "rows",
    [
        [("conv1", "s"), ("conv2", "s")],  # digits that are part of a name
        [("block.01.x", "s"), ("block.1.x", "s")],  # `01` is a name, not position 1
        [("block.01.x", "s"), ("block.02.x", "s")],
        [("x.²", "s"), ("x.³", "s")],  # str.isdigit accepts these; they are not indices
        [("layer1.0.conv", "s"), ("layer2.0.conv", "s")],  # different stages, not a repeat
        [("b.x_01", "s"), ("b.x_02", "s")],
        # An `_<index>` ending counts only from 0 (torchvision's `encoder_layer_0`): a block's
        # two norms `ln_1` and `ln_2` are names.
        [("blk.ln_1", "s"), ("blk.ln_2", "s")],
    ],
)
def test_digits_inside_names_are_not_indices(rows: list[Row]) -> None:
    assert names(rows) == [r[0] for r in rows]


def test_an_index_after_an_underscore_groups() -> None:
    rows = same("encoder.layers.encoder_layer_{}.mlp.0", range(12))
    assert names(rows) == ["encoder.layers.encoder_layer_{0..11}.mlp.0"]


def test_different_signatures_never_merge() -> None:
    rows = [("layers.0.x", 1), ("layers.1.x", 2), ("layers.2.x", 1), ("layers.3.x", 2)]
    result = groups(rows)
    assert [g.name for g in result] == ["layers.{0,2}.x", "layers.{1,3}.x"]
    for g in result:
        assert len({r[1] for r in g.members}) == 1


def test_groups_stand_where_their_first_member_was() -> None:
    rows = [("embed", "e"), ("a.0.x", "s"), ("b", "b"), ("a.1.x", "s"), ("c", "c"), ("a.2.x", "s")]
    assert names(rows) == ["embed", "a.{0..2}.x", "b", "c"]
    assert groups(rows)[1].members == (rows[1], rows[3], rows[5])


# Components: words (some with digits that are part of the name) and small integers.
_component = st.one_of(
    st.sampled_from(["a", "b", "mlp", "conv1", "conv2", "01", "x_0", "x_1", "x_2", "x_01"]),
    st.integers(0, 4).map(str),
)
_name = st.lists(_component, min_size=1, max_size=4).map(".".join)


def placed_right(pattern: str) -> bool:
    """Every index set stands for a whole component, or for the index after a word's `_`
    (`encoder_layer_{0..11}`), never for digits inside a word (`conv{1,2}`)."""
    for m in re.finditer(r"\{[^}]*\}", pattern):
        before = pattern[: m.start()]
        after = pattern[m.end() :]
        whole = before == "" or before.endswith(".")
        suffix = before.endswith("_") and not before[:-1].endswith(".") and len(before) > 1
        if not (whole or suffix) or not (after == "" or after.startswith(".")):
            return False
    return True


@given(st.lists(st.tuples(_name, st.integers(0, 2)), max_size=40, unique_by=lambda r: r[0]))
def test_groups_partition_the_rows(rows: list[Row]) -> None:
    result = groups(rows)
    position = {r[0]: i for i, r in enumerate(rows)}
    members = [m for g in result for m in g.members]
    assert sorted(members, key=lambda r: position[r[0]]) == rows  # each row exactly once
    firsts = [position[g.first[0]] for g in result]
    assert firsts == sorted(firsts)  # groups in the order of their first members
    for g in result:
        at = [position[m[0]] for m in g.members]
        assert at == sorted(at)  # members in input order
        assert len({m[1] for m in g.members}) == 1
        assert placed_right(g.name), g.name
        assert sorted(expand(g.name)) == sorted(m[0] for m in g.members)
    assert [(g.name, g.members) for g in ungrouped(rows, lambda r: r[0])] == [
        (r[0], (r,)) for r in rows
    ]


_index_sets = st.lists(st.sets(st.integers(0, 7), min_size=1, max_size=6), min_size=1, max_size=3)


@given(_index_sets, st.randoms(use_true_random=False))
def test_a_full_product_is_one_group_in_any_order(sets: list[set[int]], rnd: Random) -> None:
    template = ".".join(f"blk{k}.{{}}" for k in range(len(sets))) + ".w"
    rows = [(template.format(*combo), "s") for combo in itertools.product(*sets)]
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    (group,) = groups(shuffled)
    if len(rows) > 1:
        expected = template.format(*(index_set(s) if len(s) > 1 else str(*s) for s in sets))
        assert group.name == expected
    assert group.members == tuple(shuffled)


# --------------------------------------------------------------------------------------------
# views.layer_rows, largest and trainable_only on measured models
# --------------------------------------------------------------------------------------------


def small_llama(n_layers: int = 32) -> torch.nn.Module:
    return architectures.llama(vocab=100, dim=64, n_layers=n_layers, hidden=128, n_heads=4)


def assert_rows_add_up(rows: Sequence[LayerRow], total: int) -> None:
    assert sum(r.params for r in rows) == total
    assert [r.cumulative for r in rows] == list(accumulate(r.params for r in rows))
    assert rows[-1].cumulative == total
    assert sum(r.share for r in rows) == pytest.approx(1.0)


def assert_groups_are_honest(count: ParameterCount, rows: Sequence[LayerRow]) -> None:
    """Each grouped row stands for rows that exist and are alike, and sums them."""
    by_name = {r.name: r for r in count.layers}
    for row in rows:
        members = [by_name[name] for name in expand(row.name)]
        assert len(members) == row.repeat
        assert {(m.type, m.params, m.formula) for m in members} == {
            (row.type, row.each, row.formula)
        }
        assert sum(m.params for m in members) == row.params


def test_llama_blocks_group_into_one_row_per_layer() -> None:
    with torch.device("meta"):
        model = small_llama(32)
    count = measure(model)
    rows = views.layer_rows(count.layers)
    assert count.total == sum(p.numel() for p in model.parameters())
    assert_rows_add_up(rows, count.total)
    assert_groups_are_honest(count, rows)
    assert len(rows) <= 12
    wq = next(r for r in rows if r.name == "layers.{0..31}.attention.wq")
    assert wq.repeat == 32
    assert wq.params == 32 * 64 * 64
    assert wq.each == 64 * 64
    assert (wq.type, wq.formula) == ("Linear", "64×64")
    assert views.layer_rows(count.layers, group=False) == count.layers
    assert views.grouped(count).layers == rows


def test_unet_groups_only_what_really_repeats() -> None:
    with torch.device("meta"):
        model = architectures.unet()
        out = model(torch.empty(2, 4, 32, 32), torch.ones(2))
    assert out.shape == (2, 4, 32, 32)
    count = measure(model)
    rows = views.layer_rows(count.layers)
    assert count.total == sum(p.numel() for p in model.parameters())
    assert_rows_add_up(rows, count.total)
    assert_groups_are_honest(count, rows)
    assert len(rows) < len(count.layers)
    repeat = {r.name: r.repeat for r in rows}
    # Block 0's two resnets are alike; block 1's first widens 32 → 64, its second does not.
    assert repeat["down_blocks.0.resnets.{0,1}.conv1"] == 2
    assert repeat["down_blocks.1.resnets.0.conv1"] == 1
    assert repeat["down_blocks.1.resnets.1.conv1"] == 1
    assert repeat["down_blocks.1.resnets.{0,1}.conv2"] == 2
    # Up blocks 0 and 1 both take 64 + 64 channels into their first two resnets: a product.
    assert repeat["up_blocks.{0,1}.resnets.{0,1}.conv1"] == 4
    # ... but block 1's third resnet takes a 32-channel skip, and block 0 has no third.
    assert repeat["up_blocks.1.resnets.2.conv1"] == 1
    assert repeat["up_blocks.0.resnets.{0,1}.conv2"] == 2
    assert repeat["up_blocks.1.resnets.{0..2}.conv2"] == 3
    # Attention in down blocks 1 (two) and 2 (one), alike in shape, is no product.
    assert repeat["down_blocks.1.attentions.{0,1}.to_q"] == 2
    assert repeat["down_blocks.2.attentions.0.to_q"] == 1


def test_a_net_without_repetition_is_unchanged() -> None:
    count = measure(nets.Cifar())
    assert views.layer_rows(count.layers) == count.layers
    assert views.largest(count, 2) == count.largest(2)


def test_resnet_stages_group_only_their_identical_blocks() -> None:
    with torch.device("meta"):
        count = measure(architectures.resnet18())
    rows = views.layer_rows(count.layers)
    assert_rows_add_up(rows, count.total)
    assert_groups_are_honest(count, rows)
    names_ = {r.name for r in rows}
    assert "layer1.{0,1}.conv1" in names_
    # layer2.0 halves the resolution and widens 64 → 128; layer2.1 does not.
    assert {"layer2.0.conv1", "layer2.1.conv1"} <= names_


def test_largest_ranks_groups_by_their_sum() -> None:
    with torch.device("meta"):
        count = measure(small_llama(32))
    top = views.largest(count, 3)
    assert [r.name for r in top] == [f"layers.{{0..31}}.feed_forward.w{k}" for k in (1, 2, 3)]
    assert [r.params for r in top] == [32 * 64 * 128] * 3
    assert views.largest(count, 3, group=False) == count.largest(3)
    assert views.largest(count, 3, trainable=True) == top


def test_vit_encoder_layers_group_to_twelve() -> None:
    with torch.device("meta"):
        count = measure(architectures.vit_b_16())
    rows = views.layer_rows(count.layers)
    assert_rows_add_up(rows, count.total)
    assert_groups_are_honest(count, rows)
    repeat = {r.name: r.repeat for r in rows}
    block = "encoder.layers.encoder_layer_{0..11}"
    for layer in ("self_attention", "self_attention.out_proj", "mlp.0", "mlp.3"):
        assert repeat[f"{block}.{layer}"] == 12
    top = views.largest(count, 5)
    assert len({r.name for r in top}) == 5
    assert [r.name for r in top[:2]] == [f"{block}.mlp.0", f"{block}.mlp.3"]
    assert [r.params for r in top[:2]] == [12 * (768 * 3072 + 3072), 12 * (3072 * 768 + 768)]


def test_frozen_and_trainable_blocks_group_apart() -> None:
    with torch.device("meta"):
        model = small_llama(32)
    for i in range(16):
        model.get_submodule(f"layers.{i}").requires_grad_(False)
    count = measure(model)
    rows = views.layer_rows(count.layers)
    wq = [r for r in rows if r.name.endswith("attention.wq")]
    assert [(r.name, r.trainable) for r in wq] == [
        ("layers.{0..15}.attention.wq", 0),
        ("layers.{16..31}.attention.wq", 16 * 64 * 64),
    ]
    assert views.largest(count, 1, trainable=True)[0].name == "layers.{16..31}.feed_forward.w1"


def test_trainable_only_keeps_the_lora_rows() -> None:
    n = 4
    with torch.device("meta"):
        model = architectures.lora(small_llama(n), rank=8)
    count = measure(model)
    lora_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count.trainable == lora_params == n * 2 * (64 * 8 + 8 * 64)
    view = views.trainable_only(count)
    assert view.layers
    assert all(r.name.endswith((".lora_A", ".lora_B")) for r in view.layers)
    assert len(view.layers) == n * 2 * 2
    assert sum(r.params for r in view.layers) == count.trainable
    assert_rows_add_up(view.layers, count.trainable)
    assert any(r.name.endswith(".wq.base_layer") for r in count.layers)  # there, but frozen
    rows = views.layer_rows(view.layers)
    assert [(r.name, r.repeat) for r in rows] == [
        (f"layers.{{0..{n - 1}}}.attention.{t}.lora_{ab}", n) for t in ("wq", "wv") for ab in "AB"
    ]
    assert_rows_add_up(rows, count.trainable)


def test_lora_starts_as_the_frozen_model() -> None:
    torch.manual_seed(0)
    base = small_llama(2)
    tuned = architectures.lora(copy.deepcopy(base), rank=4, targets=("wq", "w2"))
    tokens = torch.randint(0, 100, (2, 5))
    torch.testing.assert_close(tuned(tokens), base(tokens))
    trainable = {n for n, p in tuned.named_parameters() if p.requires_grad}
    assert trainable == {
        f"layers.{i}.{m}.lora_{ab}.weight"
        for i in range(2)
        for m in ("attention.wq", "feed_forward.w2")
        for ab in "AB"
    }


# --------------------------------------------------------------------------------------------
# views.layer_changes and folded_changes on hand-made diffs
# --------------------------------------------------------------------------------------------


def changes(before: int | None, after: int | None, indices: Sequence[int]) -> list[LayerChange]:
    return [
        LayerChange(f"layers.{i}.attention.wq", "Linear", before, after, "64×64") for i in indices
    ]


def test_a_change_to_every_block_is_one_row() -> None:
    diff = [*changes(100, 200, range(32)), LayerChange("lm_head", "Linear", 10, 20, "2×10")]
    rows = views.layer_changes(diff)
    assert [(r.name, r.repeat, r.before, r.after) for r in rows] == [
        ("layers.{0..31}.attention.wq", 32, 3200, 6400),
        ("lm_head", 1, 10, 20),
    ]
    assert rows[0].delta == 3200
    assert views.layer_changes(diff, group=False) == tuple(diff)


def test_changes_to_part_of_the_blocks_group_apart() -> None:
    diff = [*changes(100, 200, range(16)), *changes(100, 300, range(16, 32))]
    diff += [LayerChange(f"layers.{i}.extra", "Linear", None, 50, "5×10") for i in range(32)]
    rows = views.layer_changes(diff)
    assert [(r.name, r.before, r.after) for r in rows] == [
        ("layers.{0..15}.attention.wq", 1600, 3200),
        ("layers.{16..31}.attention.wq", 1600, 4800),
        ("layers.{0..31}.extra", None, 1600),
    ]


def test_folding_sums_changes_into_their_parent() -> None:
    diff = [*changes(100, 200, range(32)), LayerChange("lm_head", "Linear", 10, 20, "2×10")]
    types = {"layers": "ModuleList", "lm_head": "Linear"}
    folded = views.folded_changes(diff, 1, types)
    assert folded == (
        LayerChange("layers", "ModuleList", 3200, 6400, "32 layers changed"),
        diff[-1],
    )
    assert views.folded_changes(diff, None, types) == tuple(diff)
    # Folded to the blocks first, then grouped: one row for the 32 alike blocks.
    blocks = views.folded_changes(diff, 2, {f"layers.{i}": "TransformerBlock" for i in range(32)})
    rows = views.layer_changes(blocks)
    assert [(r.name, r.repeat, r.before, r.after) for r in rows[:1]] == [
        ("layers.{0..31}", 32, 3200, 6400)
    ]


def test_an_index_ending_counted_from_zero_groups_and_names_with_digits_stay_apart() -> None:
    rows = [(f"encoder_layer_{i}.ln_{n}", "s") for i in range(12) for n in (1, 2)]
    assert names(rows) == ["encoder_layer_{0..11}.ln_1", "encoder_layer_{0..11}.ln_2"]
