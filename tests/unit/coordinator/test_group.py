"""CoordinatorGroup (docs/DESIGN.md section 5, "The coordinator group"):
three replicas over MemoryStorage, messages delivered in order by a tiny
loop; replicas cut off or restarted from their storage."""

import random

import pytest

from actors.raft.node import NotLeader, RaftConfig
from actors.raft.storage import MemoryStorage
from coordinator.group import CoordinatorGroup
from tests.sim.coordinator.group import FlakyDisk

IDS = ("coordinator-0", "coordinator-1", "coordinator-2")


class Group:
    """Three replicas; `down` ones neither tick nor receive."""

    def __init__(self, snapshot_entries: int = 1_000) -> None:
        self.storages = {replica: MemoryStorage() for replica in IDS}
        self.snapshot_entries = snapshot_entries
        self.replicas = {replica: self.start(replica) for replica in IDS}
        self.down: set[str] = set()

    def start(self, replica: str) -> CoordinatorGroup:
        config = RaftConfig(id=replica, election_min=4, election_max=8, heartbeat_ticks=1)
        return CoordinatorGroup(config, IDS, self.storages[replica], random.Random(replica),
                                snapshot_entries=self.snapshot_entries)

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            for replica in IDS:
                if replica not in self.down:
                    self.replicas[replica].tick()
            self.deliver()

    def deliver(self) -> None:
        while True:
            sent = [(to, message) for replica in IDS for to, message in self.replicas[replica].take_output()
                    if replica not in self.down]
            if not sent:
                return
            for to, message in sent:
                if to not in self.down:
                    self.replicas[to].receive(message)

    def acting(self) -> list[str]:
        return [replica for replica in IDS if replica not in self.down and self.replicas[replica].acting]

    def leader(self) -> CoordinatorGroup:
        self.run(40)
        [acting] = self.acting()
        return self.replicas[acting]


def test_one_replica_acts_and_every_replica_applies_what_it_proposes():
    group = Group()
    leader = group.leader()
    index = leader.propose({"map": '{"epoch": 1}'})
    group.deliver()
    group.run(2)
    assert all(replica.applied >= index and replica.values == {"map": '{"epoch": 1}'}
               for replica in group.replicas.values())


def test_a_replica_that_does_not_lead_refuses_to_propose():
    group = Group()
    leader = group.leader()
    follower = next(replica for replica in group.replicas.values() if replica is not leader)
    with pytest.raises(NotLeader):
        follower.propose({"map": "{}"})


def test_when_the_leader_dies_another_acts_in_a_higher_term_with_every_committed_value():
    group = Group()
    old = group.leader()
    old.propose({"map": '{"epoch": 2}', "placement": "{}"})
    group.deliver()
    group.down.add(old.id)
    new = group.leader()
    assert new.id != old.id and new.term > old.term
    assert new.values == {"map": '{"epoch": 2}', "placement": "{}"}


def test_a_restarted_replica_recovers_its_values_from_storage():
    group = Group()
    group.leader().propose({"reconfig": '{"jobs": []}'})
    group.deliver()
    group.run(2)
    replica = IDS[0]
    group.replicas[replica] = group.start(replica)
    assert group.replicas[replica].values == {"reconfig": '{"jobs": []}'}


def test_a_replica_cut_off_while_the_log_was_compacted_catches_up_from_a_snapshot():
    group = Group(snapshot_entries=5)
    leader = group.leader()
    behind = next(replica for replica in IDS if replica != leader.id)
    group.down.add(behind)
    for number in range(12):
        leader.propose({"map": f'{{"epoch": {number}}}'})
        group.deliver()
    group.run(2)
    assert leader.status()["snapshot_index"] >= 10
    group.down.clear()
    group.run(20)
    assert group.replicas[behind].values == leader.values == {"map": '{"epoch": 11}'}
    assert group.replicas[behind].status()["snapshot_index"] >= 10


def test_a_deposed_leader_stops_acting_once_it_loses_its_quorum():
    group = Group()
    old = group.leader()
    others = [replica for replica in IDS if replica != old.id]
    group.down.update(others)  # old can no longer hear anyone
    for _ in range(20):
        old.tick()
        old.take_output()
    assert not old.acting


def test_a_replica_whose_disk_is_full_keeps_running_and_catches_up_once_space_returns():
    group = Group()
    for replica in IDS:
        group.storages[replica] = FlakyDisk()
        group.replicas[replica] = group.start(replica)
    leader = group.leader()
    group.storages[leader.id].full = True
    index = leader.propose({"map": '{"epoch": 7}'})
    group.run(2)
    assert leader.storage_failure == "disk full"
    assert leader.applied < index, "not durable on the leader: not counted, not applied"
    # Its messages wait for its disk, heartbeats too: a healthy replica takes over meanwhile.
    group.run(40)
    [acting] = group.acting()
    assert acting != leader.id
    group.replicas[acting].propose({"placement": "{}"})
    group.storages[leader.id].full = False
    group.run(10)
    assert leader.storage_failure == "" and group.acting() == [acting]
    assert all(replica.values.get("placement") == "{}" for replica in group.replicas.values())
