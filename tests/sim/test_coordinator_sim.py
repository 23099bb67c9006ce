"""The coordinator group under faults (tests/sim/coordinator/group.py;
docs/DESIGN.md section 5, "The coordinator group"): crashes and restarts
from storage, partitions, sleep, full disks and every message fault; one
replica acts per term, epochs never go back, no committed change is lost
across a hand-over."""

import pytest

from actors.raft.node import LEADER
from coordinator.group import CoordinatorGroup
from tests.sim.coordinator.group import run_seed

SEEDS = 60


@pytest.mark.parametrize("seed", range(SEEDS))
def test_a_seed_under_every_fault_keeps_the_group_safe_and_settles(seed: int):
    violations, stats = run_seed(seed)
    assert violations == []
    assert stats.proposals > 0


def test_the_same_seed_replays_the_same_run():
    assert run_seed(7)[1] == run_seed(7)[1]


def test_a_replica_that_acts_before_it_applied_its_terms_first_entry_is_caught(monkeypatch):
    """Acting on the leader's values before its no-op applied would act on a
    map older than one already committed: the hand-over check sees it."""
    monkeypatch.setattr(CoordinatorGroup, "acting", property(lambda group: group.role == LEADER))
    caught = [seed for seed in range(10) if any("below the" in line for line in run_seed(seed)[0])]
    assert caught
