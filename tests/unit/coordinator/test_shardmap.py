"""The shard map: stable key hashing, initial spread, lookups, epochs,
persistence, and rebalancing plans (balanced, minimal, deterministic)."""

import itertools
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.keyspace import slot_of
from coordinator.shardmap import ShardMap, SlotMove, plan_rebalance

BOUNDED = settings(max_examples=150, derandomize=True, database=None, deadline=None)


def members(*clusters: str, replicas: int = 3) -> dict[str, list[str]]:
    return {name: [f"{name}-r{index}" for index in range(replicas)] for name in clusters}


def three_clusters(slots: int = 64) -> ShardMap:
    return ShardMap.initial(["c1", "c2", "c3"], members("c1", "c2", "c3"), slots)


def apply(shard_map: ShardMap, moves: list[SlotMove]) -> ShardMap:
    for move in moves:
        shard_map = shard_map.with_move(move)
    return shard_map


# -- keys to slots ------------------------------------------------------------

def test_slot_of_is_stable_across_processes_and_runs():
    # Pinned values: a change here would silently re-home every stored key.
    assert [slot_of(key, 64) for key in ("alice", "bob", "", "ключ", "🙂")] == [7, 0, 0, 26, 41]
    assert [slot_of(key, 4096) for key in ("alice", "bob")] == [3143, 320]


def test_slot_of_refuses_what_is_not_a_key():
    with pytest.raises(TypeError):
        slot_of(b"alice", 64)
    with pytest.raises(ValueError):
        slot_of("alice", 0)


# -- the initial map ----------------------------------------------------------

def test_initial_map_splits_slots_into_even_contiguous_runs_in_cluster_order():
    shard_map = three_clusters()
    assert shard_map.epoch == 1
    assert shard_map.slot_counts() == {"c1": 22, "c2": 21, "c3": 21}
    assert shard_map.slots_of("c1") == tuple(range(0, 22))
    assert shard_map.slots_of("c2") == tuple(range(22, 43))
    assert shard_map.slots_of("c3") == tuple(range(43, 64))
    assert shard_map.clusters == ("c1", "c2", "c3")
    assert shard_map.replicas("c2") == ("c2-r0", "c2-r1", "c2-r2")


@pytest.mark.parametrize(("clusters", "member_map", "slots"), [
    ([], {}, 4),
    (["c1", "c2"], members("c1"), 4),
    (["c1", "c1"], members("c1"), 4),
    (["c1", "c2", "c3"], members("c1", "c2", "c3"), 2),
    (["c1"], {"c1": []}, 4),
])
def test_initial_refuses_inconsistent_input(clusters, member_map, slots):
    with pytest.raises(ValueError):
        ShardMap.initial(clusters, member_map, slots)


@pytest.mark.parametrize("fields", [
    {"epoch": 0, "slots": ("c1",), "members": members("c1")},
    {"epoch": 1, "slots": (), "members": members("c1")},
    {"epoch": 1, "slots": ("c2",), "members": members("c1")},
    {"epoch": 1, "slots": ("c1",), "members": (("c1", ("x",)), ("c1", ("y",)))},
    {"epoch": 1, "slots": ("c1",), "members": {"c1": ["x"], "c2": ["x"]}},
])
def test_a_map_that_breaks_an_invariant_cannot_be_built(fields):
    with pytest.raises(ValueError):
        ShardMap(**fields)


# -- lookups ------------------------------------------------------------------

def test_owner_and_clusters_for_follow_the_slots():
    shard_map = three_clusters()
    assert shard_map.owner("alice") == "c1"      # slot 7
    assert shard_map.owner("ключ") == "c2"       # slot 26
    assert shard_map.owner("🙂") == "c2"         # slot 41
    assert shard_map.clusters_for(["ключ", "alice", "🙂", "bob"]) == {
        "c2": ["ключ", "🙂"], "c1": ["alice", "bob"]}
    with pytest.raises(KeyError):
        shard_map.slots_of("c9")


def test_the_map_is_hashable_and_pickles_for_messages():
    shard_map = three_clusters()
    assert pickle.loads(pickle.dumps(shard_map)) == shard_map
    assert hash(shard_map) == hash(three_clusters())


def test_json_round_trip_and_refusals():
    shard_map = three_clusters(8).with_cluster("c4", ["c4-r0"])
    assert ShardMap.from_json(shard_map.to_json()) == shard_map
    for text in ("{", "[]", '{"epoch": 1, "slots": ["c1"]}',
                 '{"epoch": 1, "slots": [1], "members": {"1": ["a"]}}',
                 '{"epoch": 1, "slots": ["c1"], "members": {"c1": "c1-r0"}}',
                 '{"epoch": true, "slots": ["c1"], "members": {"c1": ["c1-r0"]}}'):
        with pytest.raises(ValueError, match="shard map|epoch"):
            ShardMap.from_json(text)


# -- changes ------------------------------------------------------------------

def test_every_change_returns_a_new_map_one_epoch_later():
    before = three_clusters()
    moved = before.with_move(SlotMove(slot=0, source="c1", destination="c3"))
    assert (moved.epoch, moved.slots[0], before.slots[0]) == (2, "c3", "c1")
    grown = moved.with_cluster("c4", ["c4-r0"])
    assert (grown.epoch, grown.clusters, grown.slots_of("c4")) == (3, ("c1", "c2", "c3", "c4"), ())
    resized = grown.with_replicas("c1", ["c1-r0", "c1-r3"])
    assert (resized.epoch, resized.replicas("c1")) == (4, ("c1-r0", "c1-r3"))
    shrunk = resized.with_cluster_removed("c4")
    assert (shrunk.epoch, shrunk.clusters) == (5, ("c1", "c2", "c3"))


def test_changes_that_would_lose_or_misplace_slots_are_refused():
    shard_map = three_clusters()
    with pytest.raises(ValueError, match="owned by 'c1', not 'c2'"):
        shard_map.with_move(SlotMove(slot=0, source="c2", destination="c3"))
    with pytest.raises(ValueError, match="no slot 64"):
        shard_map.with_move(SlotMove(slot=64, source="c1", destination="c3"))
    with pytest.raises(KeyError):
        shard_map.with_move(SlotMove(slot=0, source="c1", destination="c9"))
    with pytest.raises(ValueError, match="already belongs"):
        shard_map.with_move(SlotMove(slot=0, source="c1", destination="c1"))
    with pytest.raises(ValueError, match="still owns 22 slots"):
        shard_map.with_cluster_removed("c1")
    with pytest.raises(ValueError, match="already a member"):
        shard_map.with_cluster("c1", ["c1-r9"])
    with pytest.raises(ValueError, match="listed twice"):
        shard_map.with_cluster("c4", ["c1-r0"])


# -- rebalancing: examples ----------------------------------------------------

def test_adding_a_cluster_takes_the_surplus_of_the_most_loaded_first():
    shard_map = three_clusters().with_cluster("c4", ["c4-r0"])
    plan = plan_rebalance(shard_map, ["c1", "c2", "c3", "c4"])
    assert len(plan) == 16
    assert plan[0] == SlotMove(slot=16, source="c1", destination="c4")
    # Each cluster gives its highest slots, so the runs it keeps stay contiguous.
    assert apply(shard_map, plan).slots_of("c1") == tuple(range(0, 16))
    assert apply(shard_map, plan).slot_counts() == {"c1": 16, "c2": 16, "c3": 16, "c4": 16}


def test_removing_a_cluster_moves_all_its_slots_to_the_least_loaded():
    shard_map = three_clusters()
    plan = plan_rebalance(shard_map, ["c1", "c3"])
    assert [move.source for move in plan] == ["c2"] * 21
    # c3 (21) is less loaded than c1 (22), so it receives first; then they alternate.
    assert [move.destination for move in plan[:3]] == ["c3", "c1", "c3"]
    assert apply(shard_map, plan).slot_counts() == {"c1": 32, "c2": 0, "c3": 32}


def test_a_balanced_map_needs_no_moves():
    assert plan_rebalance(three_clusters(), ["c3", "c2", "c1"]) == []


@pytest.mark.parametrize(("after", "error"), [
    ([], "at least one"),
    (["c1", "c1"], "listed twice"),
    (["c1", "c9"], "not members"),
])
def test_plan_refuses_bad_cluster_lists(after, error):
    with pytest.raises(ValueError, match=error):
        plan_rebalance(three_clusters(), after)


def test_plan_refuses_more_clusters_than_slots():
    shard_map = three_clusters(3).with_cluster("c4", ["c4-r0"])
    with pytest.raises(ValueError, match="3 slots cannot give each of 4 clusters one"):
        plan_rebalance(shard_map, ["c1", "c2", "c3", "c4"])


# -- rebalancing: properties --------------------------------------------------

NAMES = ("a", "b", "c", "d", "e", "f")


@st.composite
def reconfigurations(draw):
    """An arbitrary (not necessarily balanced) map, and the clusters wanted after it."""
    existing = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    slots = draw(st.integers(min_value=1, max_value=40))
    owners = draw(st.lists(st.sampled_from(existing), min_size=slots, max_size=slots))
    shard_map = ShardMap(epoch=1, slots=tuple(owners), members=members(*existing, replicas=1))
    added = draw(st.lists(st.sampled_from([n for n in NAMES if n not in existing]), max_size=2, unique=True))
    for name in added:
        shard_map = shard_map.with_cluster(name, [f"{name}-r0"])
    after = draw(st.lists(st.sampled_from(shard_map.clusters), min_size=1,
                          max_size=min(slots, len(shard_map.clusters)), unique=True))
    return shard_map, after


def fewest_moves(shard_map: ShardMap, after: list[str]) -> int:
    """Lower bound, by brute force over which clusters keep the extra slot:
    every slot above its cluster's final count must move, and no other."""
    counts = shard_map.slot_counts()
    base, extra = divmod(len(shard_map.slots), len(after))
    leaving = sum(count for name, count in counts.items() if name not in after)
    return leaving + min(
        sum(max(0, counts[name] - base - (name in bigger)) for name in after)
        for bigger in itertools.combinations(after, extra))


@BOUNDED
@given(reconfigurations())
def test_after_the_plan_every_wanted_cluster_owns_floor_or_ceil_and_no_other_owns_any(case):
    shard_map, after = case
    result = apply(shard_map, plan_rebalance(shard_map, after))
    base = len(shard_map.slots) // len(after)
    counts = result.slot_counts()
    assert all(base <= counts[name] <= base + 1 for name in after)
    assert all(counts[name] == 0 for name in result.clusters if name not in after)


@BOUNDED
@given(reconfigurations())
def test_the_plan_moves_no_more_slots_than_the_lower_bound(case):
    shard_map, after = case
    plan = plan_rebalance(shard_map, after)
    assert len(plan) == fewest_moves(shard_map, after)
    assert len({move.slot for move in plan}) == len(plan)


@BOUNDED
@given(reconfigurations(), st.randoms(use_true_random=False))
def test_the_plan_depends_only_on_the_map_and_the_set_of_clusters(case, rng):
    shard_map, after = case
    shuffled = list(after)
    rng.shuffle(shuffled)
    reloaded = ShardMap.from_json(shard_map.to_json())
    assert plan_rebalance(reloaded, shuffled) == plan_rebalance(shard_map, after)


def test_membership_changes_keep_replica_ids_unique_and_clusters_nonempty():
    shard_map = ShardMap.initial(["c1", "c2"], members("c1", "c2"), 8)
    grown = shard_map.with_replicas("c1", ("c1-r0", "c1-r1", "c1-r2", "c1-r3"))
    assert grown.replicas("c1")[-1] == "c1-r3" and grown.epoch == 2 and grown.slots == shard_map.slots
    with pytest.raises(ValueError, match="listed twice"):
        shard_map.with_replicas("c1", ("c1-r0", "c2-r0"))
    with pytest.raises(ValueError, match="no replicas"):
        shard_map.with_replicas("c1", ())
    with pytest.raises(KeyError):
        shard_map.with_replicas("c9", ("c9-r0",))


def test_a_cluster_added_then_drained_by_plans_leaves_an_even_map():
    shard_map = ShardMap.initial(["c1", "c2"], members("c1", "c2"), 16).with_cluster("c3", ("c3-r0",))
    grown = apply(shard_map, plan_rebalance(shard_map, shard_map.clusters))
    assert grown.slot_counts() == {"c1": 6, "c2": 5, "c3": 5}
    drained = apply(grown, plan_rebalance(grown, ["c1", "c3"]))
    assert drained.slot_counts() == {"c1": 8, "c2": 0, "c3": 8}
    removed = drained.with_cluster_removed("c2")
    assert removed.clusters == ("c1", "c3") and removed.epoch == drained.epoch + 1
