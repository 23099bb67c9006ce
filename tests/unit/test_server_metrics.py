"""The metrics a database server and a coordinator replica keep (docs/DESIGN.md
section 14): Raft's counters from each saved Ready, the machine's transaction
counters, the gauges a status sets, the storage's fsync timings, and a
snapshot that goes through the Prometheus exposition and parses back."""

from __future__ import annotations

import random

from prometheus_client.parser import text_string_to_metric_families

from actors.messages import (
    TXN_ABORTED,
    ClientBatch,
    ClientRequest,
    Decide,
    DecideResult,
    PrepareResult,
)
from actors.metrics import CATALOGUE, Metrics
from actors.raft.messages import ConfState, Entry, HardState
from actors.raft.meter import RaftMeter
from actors.raft.node import LEADER, RaftConfig, RaftNode
from actors.raft.storage import MemoryStorage
from actors.replica import Replica, ReplicaConfig
from actors.sqlite_storage import SqliteStorage
from coordinator.group import CoordinatorGroup
from raftline.metrics import exposition
from tests.unit.replica.replica_helpers import Clerk, Net, prepare, settle_followers, write, write_past_a_follower


def value(replica: Replica, name: str, **labels) -> float:
    return replica.metrics.value(name, **labels)


# -- Raft ---------------------------------------------------------------------------------


def test_a_proposal_counts_once_proposed_committed_applied_and_sent_in_append_messages():
    net = Net({"c1": 3})
    leader = net.elect("c1")
    settle_followers(net, "c1")
    before = {name: value(leader, name) for name in (
        "raftline_proposals_total", "raftline_committed_entries_total", "raftline_applied_entries_total",
        "raftline_append_messages_total", "raftline_appended_entries_total")}
    Clerk(net).call("c1", write("t1", 10, x=1))
    assert value(leader, "raftline_proposals_total") == before["raftline_proposals_total"] + 1
    assert value(leader, "raftline_committed_entries_total") == before["raftline_committed_entries_total"] + 1
    assert value(leader, "raftline_applied_entries_total") == before["raftline_applied_entries_total"] + 1
    # One AppendLog per follower, each carrying the one entry.
    assert value(leader, "raftline_append_messages_total") == before["raftline_append_messages_total"] + 2
    assert value(leader, "raftline_appended_entries_total") == before["raftline_appended_entries_total"] + 2
    settle_followers(net, "c1")
    for rid in net.members["c1"]:
        replica = net.replicas[rid]
        assert value(replica, "raftline_committed_entries_total") == replica.status()["commit"]
        assert value(replica, "raftline_applied_entries_total") == replica.status()["applied"]
        if rid != leader.id:
            assert value(replica, "raftline_proposals_total") == 0
            assert value(replica, "raftline_append_messages_total") == 0


def test_a_won_pre_vote_and_its_vote_count_as_one_election():
    node = RaftNode(RaftConfig(id="a", election_min=2, election_max=2, heartbeat_ticks=1), rng=random.Random(1),
                    initial_conf=ConfState(voters=("a",)))
    metrics = Metrics()
    meter = RaftMeter(metrics, node)
    while node.role != LEADER:
        node.tick()
        while node.has_ready():
            ready = node.ready()
            meter.saved(ready)
            node.advance(ready)
    assert node.campaigns == 1
    assert metrics.value("raftline_elections_total") == 1
    assert metrics.value("raftline_proposals_total") == 1  # the leader's no-op
    assert metrics.value("raftline_leader_changes_total") == 0  # the first leader known is no change


def test_every_campaign_counts_and_a_new_leader_counts_as_a_change_for_those_that_knew_the_old_one():
    net = Net({"c1": 3})
    first = net.elect("c1")
    assert sum(value(net.replicas[rid], "raftline_elections_total") for rid in net.members["c1"]) >= 1
    assert value(first, "raftline_elections_total") >= 1
    assert all(value(net.replicas[rid], "raftline_leader_changes_total") == 0 for rid in net.members["c1"])
    net.down.add(first.id)
    second = net.elect("c1")
    assert value(second, "raftline_elections_total") >= 1
    others = [rid for rid in net.members["c1"] if rid not in (first.id, second.id)]
    for rid in [second.id, *others]:
        assert value(net.replicas[rid], "raftline_leader_changes_total") == 1


def test_a_follower_that_missed_entries_counts_its_repair_and_the_entries_it_got():
    net = Net({"c1": 3})
    leader = net.elect("c1")
    settle_followers(net, "c1")
    sleeper = next(rid for rid in net.members["c1"] if rid != leader.id)
    net.down.add(sleeper)
    clerk = Clerk(net)
    for n in range(5):
        clerk.call("c1", write(f"t{n}", 10 + n, **{f"k{n}": n}))
    net.tick(10)  # its AppendLog unanswered, the leader probes it with heartbeats
    missed = leader.status()["last_index"] - net.status(sleeper)["last_index"]
    assert missed >= 5
    net.down.clear()
    settle_followers(net, "c1")
    repaired = net.replicas[sleeper]
    assert value(repaired, "raftline_log_repair_requests_total") >= 1
    assert value(repaired, "raftline_log_repair_entries_total") == missed
    assert value(leader, "raftline_log_repair_requests_total") == 0


def test_a_leader_counts_each_snapshot_it_starts_sending():
    net = Net({"c1": 3}, snapshot_entries=5)
    leader, lagging = write_past_a_follower(net)
    net.down.clear()
    settle_followers(net, "c1")
    assert net.status(lagging)["snapshot_index"] > 0
    assert value(leader, "raftline_snapshots_sent_total") == 1


# -- transactions -------------------------------------------------------------------------


def test_transactions_count_on_every_replica_and_an_abort_under_the_rule_that_refused_it():
    net = Net({"c1": 3})
    net.elect("c1")
    clerk = Clerk(net)
    assert clerk.call("c1", prepare("t1", 10, writes={"a": 1})) == [PrepareResult(txid="t1", vote=True)]
    [refused] = clerk.call("c1", prepare("t2", 11, writes={"a": 2}))
    assert not refused.vote and refused.reason.startswith("rule 5")
    clerk.call("c1", prepare("t1", 10, writes={"a": 1}))  # a repeat counts nothing
    assert clerk.call("c1", Decide(txid="t1", ts=10, commit=False)) == [DecideResult(txid="t1", status=TXN_ABORTED)]
    clerk.call("c1", write("t3", 12, b=3))
    settle_followers(net, "c1")
    for rid in net.members["c1"]:
        replica = net.replicas[rid]
        assert value(replica, "raftline_transactions_prepared_total") == 1
        assert value(replica, "raftline_transactions_aborted_total", rule="write_write") == 1
        assert value(replica, "raftline_transactions_aborted_total", rule="decision") == 1
        assert value(replica, "raftline_transactions_committed_total") == 1


def test_the_oldest_prepared_transaction_ages_by_the_ticks_since_its_prepare_was_applied():
    net = Net({"c1": 3}, tick_ms=100)
    leader = net.elect("c1")
    clerk = Clerk(net)
    clerk.call("c1", prepare("t1", 10, writes={"a": 1}))
    net.tick(4)
    clerk.call("c1", prepare("t2", 11, writes={"b": 1}))
    net.tick(3)
    gauges = leader.metrics_snapshot()
    assert gauges["raftline_prepared_transactions"] == [{"labels": {}, "value": 2}]
    assert gauges["raftline_oldest_prepared_seconds"] == [{"labels": {}, "value": 0.7}]
    clerk.call("c1", Decide(txid="t1", ts=10, commit=False))
    assert leader.metrics_snapshot()["raftline_oldest_prepared_seconds"] == [{"labels": {}, "value": 0.3}]
    clerk.call("c1", Decide(txid="t2", ts=11, commit=False))
    assert leader.metrics_snapshot()["raftline_oldest_prepared_seconds"] == [{"labels": {}, "value": 0.0}]


def test_a_status_sets_the_raft_gauges():
    net = Net({"c1": 3})
    leader = net.elect("c1")
    Clerk(net).call("c1", write("t1", 10, x=1))
    shown = {name: series[0]["value"] for name, series in leader.metrics_snapshot().items() if not series[0]["labels"]}
    status = leader.status()
    assert shown["raftline_term"] == status["term"]
    assert shown["raftline_is_leader"] == 1
    assert (shown["raftline_commit_index"], shown["raftline_applied_index"], shown["raftline_last_index"]) == (
        status["commit"], status["applied"], status["last_index"])


# -- storage ------------------------------------------------------------------------------


def test_sqlite_storage_times_each_save_but_the_unsynced_commit_only_ones(tmp_path):
    metrics = Metrics()
    storage = SqliteStorage(tmp_path / "raft.db", metrics=metrics)
    storage.save()  # nothing to write
    storage.save(hard_state=HardState(term=1, voted_for="a", commit=0), entries=(Entry(index=1, term=1),))
    storage.save(hard_state=HardState(term=1, voted_for="a", commit=1))  # only the commit index: not synced
    [histogram] = metrics.snapshot()["raftline_fsync_duration_seconds"]
    assert histogram["count"] == 1 and histogram["sum"] > 0
    storage.close()


# -- the coordinator group and the exposition -------------------------------------------


def acting_group(metrics: Metrics) -> CoordinatorGroup:
    group = CoordinatorGroup(RaftConfig(id="coordinator-0", election_min=2, election_max=2, heartbeat_ticks=1),
                             ("coordinator-0",), MemoryStorage(), random.Random(1), metrics=metrics)
    while not group.acting:
        group.tick()
    return group


def test_the_coordinator_group_counts_its_raft_and_shows_its_metrics_in_its_status():
    group = acting_group(Metrics())
    group.propose({"map": "{}"})
    metrics = group.status()["metrics"]
    counters = {name: series[0]["value"] for name, series in metrics.items()}
    assert counters["raftline_elections_total"] == 1
    assert counters["raftline_proposals_total"] == 2  # the no-op and the values
    assert counters["raftline_applied_entries_total"] == 2
    assert counters["raftline_is_leader"] == 1
    assert counters["raftline_applied_index"] == group.applied == 2


def test_a_servers_snapshot_is_declared_and_parses_back_from_the_exposition(tmp_path):
    metrics = Metrics()
    config = ReplicaConfig(cluster="c1", raft=RaftConfig(id="c1-r0"), initial_conf=ConfState(voters=("c1-r0",)))
    replica = Replica(config, SqliteStorage(tmp_path / "raft.db", metrics=metrics), random.Random(1),
                      metrics=metrics)
    metrics.count("raftline_messages_received_total", kind="ClientBatch")  # the shell's own counters
    metrics.count("raftline_messages_sent_total", kind="ClientBatchReply")
    while replica.role != LEADER:
        replica.tick()
    replica.receive(ClientBatch(client="k", cluster="c1", epoch=1,
                                requests=(ClientRequest(req=1, op=write("t1", 10, x=1)),)), "k")
    snapshot = replica.metrics_snapshot()
    assert set(snapshot) <= set(CATALOGUE)
    assert {"raftline_fsync_duration_seconds", "raftline_transactions_committed_total",
            "raftline_oldest_prepared_seconds"} <= set(snapshot)
    coordinator = acting_group(Metrics()).status()["metrics"]
    status = {"clusters": {"c1": {"replicas": {"c1-r0": {"metrics": snapshot}}}},
              "coordinator": {"leader": "coordinator-0", "metrics": coordinator}}
    families = {family.name: family for family in text_string_to_metric_families(exposition(status))}
    # The parser names a counter family without its `_total`.
    assert {name.removesuffix("_total") for name in (*snapshot, *coordinator)} == set(families)
    committed = next(sample for sample in families["raftline_transactions_committed"].samples
                     if sample.name == "raftline_transactions_committed_total")
    assert committed.labels == {"cluster": "c1", "replica": "c1-r0"} and committed.value == 1
    term = families["raftline_term"].samples
    assert {sample.labels["cluster"] for sample in term} == {"c1", "coordinator"}
