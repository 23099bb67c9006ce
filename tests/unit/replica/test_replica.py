"""The Replica core: recovery, the Ready loop, client requests, two-phase commit
and recovery without the clerk (docs/DESIGN.md sections 2-4).

Replicas are driven by hand through `Net` (tests/unit/replica_helpers.py), a
tiny synchronous pump.
"""

from __future__ import annotations

import pytest

from actors import codec
from actors.messages import (
    TXN_ABORTED,
    TXN_COMMITTED,
    TXN_PREPARED,
    ZERO_STAMP,
    CommitOnePhaseResult,
    Decide,
    DecideResult,
    LeaderChange,
    LoggedRead,
    Prepare,
    PrepareResult,
    ReadCheck,
    ReadCheckResult,
    ReadKeys,
    ReadKeysResult,
    Redirect,
    TxnStatus,
    TxnStatusResult,
    ValidateReads,
)
from actors.raft.messages import ENTRY_COMMAND
from actors.raft.node import LEADER
from actors.raft.storage import MemoryStorage
from actors.replica import ToReplica
from actors.sqlite_storage import SqliteStorage
from tests.unit.replica.replica_helpers import Clerk, Net, prepare, settle_followers, write, write_past_a_follower


def read(net: Net, rid: str, key: str):
    """The key as replica `rid`'s machine holds it, whatever its role."""
    return net.replicas[rid]._machine.read(key)


def machine_status(net: Net, rid: str, txid: str) -> str:
    return net.replicas[rid]._machine.status(txid)


def stored_commands(net: Net, rid: str) -> list:
    return [codec.decode(e.data) for e in net.storages[rid].entries() if e.kind == ENTRY_COMMAND]


# -- elections and plain requests -------------------------------------------------------


def test_an_elected_leader_tells_the_coordinator_once_per_term():
    net = Net({"c1": 3})
    leader = net.elect("c1")
    net.tick(30)
    term = leader.status()["term"]
    assert [change.term for change in net.leader_changes] == [term]
    assert net.leader_changes[0] == LeaderChange(cluster="c1", leader=leader.id, term=term)
    roles = sorted(net.status(rid)["role"] for rid in net.members["c1"])
    assert roles == ["follower", "follower", LEADER]


def test_a_new_leader_after_the_old_one_dies_is_announced_with_its_term():
    net = Net({"c1": 3})
    first = net.elect("c1")
    net.down.add(first.id)
    second = net.elect("c1")
    assert second.id != first.id
    assert [(c.leader, c.term) for c in net.leader_changes] == [
        (first.id, first.status()["term"]),
        (second.id, second.status()["term"]),
    ]


def test_one_phase_commits_are_answered_in_one_reply_once_applied():
    net = Net({"c1": 3})
    net.elect("c1")
    clerk = Clerk(net)
    results = clerk.call("c1", write("t1", 10, x=1), write("t2", 11, y=2), write("t3", 12, x=3))
    assert results == [CommitOnePhaseResult(txid=t, committed=True) for t in ("t1", "t2", "t3")]
    assert len(net.inbox["clerk"]) == 1
    settle_followers(net, "c1")
    for rid in net.members["c1"]:
        assert (read(net, rid, "x").value, read(net, rid, "x").version) == (3, (12, "t3"))


def test_read_keys_are_answered_at_once_from_the_applied_state():
    net = Net({"c1": 3})
    leader = net.elect("c1")
    clerk = Clerk(net)
    clerk.call("c1", write("t1", 10, x="hello"))
    last_index = leader.status()["last_index"]
    reqs = clerk.send(leader.id, ReadKeys(keys=("x", "missing")))
    (result,) = [clerk.answers()[req] for req in reqs]
    assert isinstance(result, ReadKeysResult)
    x, missing = result.values
    assert (x.value, x.version, x.exists) == ("hello", (10, "t1"), True)
    assert (missing.value, missing.version, missing.exists) == (None, ZERO_STAMP, False)
    assert leader.status()["last_index"] == last_index


def with_x_prepared(**settings):
    """A cluster whose x is "old", and "new" in prepared t1: (net, leader, clerk)."""
    net = Net({"c1": 3}, **settings)
    leader = net.elect("c1")
    clerk = Clerk(net)
    clerk.call("c1", write("t0", 5, x="old"), prepare("t1", 10, writes={"x": "new"}))
    return net, leader, clerk


def test_a_read_of_a_key_a_prepared_transaction_writes_waits_for_its_decision():
    """A clerk answers a commit at its primary's decision: the application's
    next read, here at a participant that still holds it prepared, must see it."""
    net, leader, clerk = with_x_prepared()
    reqs = clerk.send(leader.id, ReadKeys(keys=("x", "y")), ReadKeys(keys=("y",)))
    answers = clerk.answers()
    assert reqs[0] not in answers and answers[reqs[1]].values[0].exists is False, "only the read of x waits"
    clerk.call("c1", Decide(txid="t1", ts=10, commit=True))
    x, _ = clerk.answers()[reqs[0]].values
    assert (x.value, x.version) == ("new", (10, "t1"))


def test_a_waiting_read_gets_the_committed_values_after_read_wait_ticks():
    net, leader, clerk = with_x_prepared(read_wait_ticks=2)
    (waited,) = clerk.send(leader.id, ReadKeys(keys=("x",)))
    net.tick(1)
    assert waited not in clerk.answers()
    net.tick(1)
    assert clerk.answers()[waited].values[0].value == "old", "validation at commit catches what it misses"


def test_a_deposed_leader_redirects_the_reads_it_kept_waiting():
    net, leader, clerk = with_x_prepared(read_wait_ticks=1_000)
    (deposed,) = clerk.send(leader.id, ReadKeys(keys=("x",)))
    net.down.add(leader.id)
    new = net.elect("c1")
    net.down.clear()
    net.run_until(lambda: deposed in clerk.answers(), max_ticks=10)
    assert clerk.answers()[deposed] == Redirect(leader=new.id, term=new.status()["term"])


def test_followers_redirect_every_request_to_the_leader():
    net = Net({"c1": 3})
    leader = net.elect("c1")
    follower = next(rid for rid in net.members["c1"] if rid != leader.id)
    clerk = Clerk(net)
    ops = (
        ReadKeys(keys=("x",)),
        write("t1", 10, x=1),
        ReadCheck(txid="r1", ts=11, reads={"x": ZERO_STAMP}),
        LoggedRead(txid="r2", ts=12, keys=("x",)),
    )
    reqs = clerk.send(follower, *ops)
    (reply,) = net.inbox["clerk"]
    assert reply.replica == follower
    redirect = Redirect(leader=leader.id, term=leader.status()["term"])
    assert [response.result for response in reply.responses] == [redirect] * 4
    assert [response.req for response in reply.responses] == reqs


def test_followers_answer_reads_when_configured_to():
    net = Net({"c1": 3}, read_from_followers=True)
    leader = net.elect("c1")
    Clerk(net).call("c1", write("t1", 10, x=5))
    settle_followers(net, "c1")
    follower = next(rid for rid in net.members["c1"] if rid != leader.id)
    clerk = Clerk(net, "reader")
    (result,) = [clerk.answers()[req] for req in clerk.send(follower, ReadKeys(keys=("x",)))]
    assert result.values[0].value == 5


def test_read_checks_of_one_batch_share_one_validate_reads_entry():
    net = Net({"c1": 3})
    leader = net.elect("c1")
    clerk = Clerk(net)
    clerk.call("c1", write("t1", 10, x=1))
    before = len(stored_commands(net, leader.id))
    checks = (
        ReadCheck(txid="r1", ts=20, reads={"x": (10, "t1")}),
        ReadCheck(txid="r2", ts=21, reads={"x": ZERO_STAMP}),  # stale: x has moved on
        ReadCheck(txid="r3", ts=22, reads={"y": ZERO_STAMP}),
    )
    results = clerk.call("c1", *checks)
    assert [(r.txid, r.ok) for r in results] == [("r1", True), ("r2", False), ("r3", True)]
    assert all(isinstance(r, ReadCheckResult) for r in results)
    new = stored_commands(net, leader.id)[before:]
    assert new == [ValidateReads(checks=checks)]


def test_logged_reads_share_the_validate_reads_entry_of_their_batch_and_answer_values():
    net = Net({"c1": 3})
    leader = net.elect("c1")
    clerk = Clerk(net)
    clerk.call("c1", write("t1", 10, x=1))
    before = len(stored_commands(net, leader.id))
    reads = (
        LoggedRead(txid="r1", ts=20, keys=("x", "y")),
        ReadCheck(txid="r2", ts=21, reads={"x": (10, "t1")}),
        LoggedRead(txid="r3", ts=5, keys=("x",)),  # below x's version: rule 3
    )
    first, second, third = clerk.call("c1", *reads)
    assert (first.txid, first.ok) == ("r1", True)
    assert [(value.key, value.value, value.exists) for value in first.values] == [("x", 1, True), ("y", None, False)]
    assert (second.txid, second.ok) == ("r2", True)
    assert (third.txid, third.ok, third.values) == ("r3", False, ()) and third.reason.startswith("rule 3")
    assert stored_commands(net, leader.id)[before:] == [ValidateReads(checks=reads)]


def test_entries_stay_within_the_batch_limit_and_oversized_commands_are_refused():
    net = Net({"c1": 3}, raft_settings={"max_batch_bytes": 2_000})
    leader = net.elect("c1")
    clerk = Clerk(net)
    checks = [ReadCheck(txid=f"r{n}", ts=20 + n, reads={f"key-{n}": ZERO_STAMP}) for n in range(60)]
    big = Prepare(txid="t1", ts=10, reads={}, writes={"x": "v" * 3_000}, primary="c1", participants=("c1",), epoch=1)
    before = len(stored_commands(net, leader.id))
    results = clerk.call("c1", *checks, big)
    assert [(r.txid, r.ok) for r in results[:-1]] == [(check.txid, True) for check in checks]
    assert results[-1].vote is False and "exceeds" in results[-1].reason
    entries = [e for e in net.storages[leader.id].entries() if e.kind == ENTRY_COMMAND]
    assert all(len(e.data) <= 2_000 for e in entries)
    logged = stored_commands(net, leader.id)[before:]
    assert 1 < len(logged) < len(checks)
    assert [check for entry in logged for check in entry.checks] == checks


# -- two-phase commit ---------------------------------------------------------------------


def two_clusters(**settings) -> Net:
    net = Net({"c1": 3, "c2": 3}, **settings)
    net.elect("c1")
    net.elect("c2")
    return net


def test_two_phase_commit_pushes_the_decision_collects_acks_and_trims_records():
    net = two_clusters(retention_ticks=30)
    clerk = Clerk(net)
    assert clerk.call("c1", prepare("t1", 10, writes={"a": 1})) == [PrepareResult(txid="t1", vote=True)]
    assert clerk.call("c2", prepare("t1", 10, writes={"b": 2})) == [PrepareResult(txid="t1", vote=True)]
    assert net.leader_status("c2")["prepared"] == 1
    # The clerk decides at the primary only; the primary's leader pushes to c2
    # at once and records c2's acknowledgement.
    assert clerk.call("c1", Decide(txid="t1", ts=10, commit=True)) == [DecideResult(txid="t1", status=TXN_COMMITTED)]
    assert net.leader_status("c1")["unacknowledged"] == 0  # no tick was needed
    c2_leader = net.leaders["c2"]
    assert machine_status(net, c2_leader, "t1") == TXN_COMMITTED
    assert read(net, c2_leader, "b").value == 2
    assert net.leader_status("c2")["prepared"] == 0
    acks = [cmd for cmd in stored_commands(net, net.leaders["c1"]) if type(cmd).__name__ == "AckDecision"]
    assert [(ack.txid, ack.participant) for ack in acks] == [("t1", "c2")]
    # Past the retention window both clusters trim their records and raise the threshold.
    assert net.leader_status("c1")["records"] == 1
    net.run_until(lambda: all(net.leader_status(c)["records"] == 0 for c in ("c1", "c2")), max_ticks=60)
    for cluster in ("c1", "c2"):
        settle_followers(net, cluster)
        for rid in net.members[cluster]:
            status = net.status(rid)
            assert (status["records"], status["threshold"]) == (0, [10, "t1"])


def test_a_lost_push_is_repeated_every_push_interval_and_the_record_outlives_it():
    net = two_clusters(push_interval_ticks=5, retention_ticks=8)
    clerk = Clerk(net)
    clerk.call("c1", prepare("t1", 10, writes={"a": 1}))
    clerk.call("c2", prepare("t1", 10, writes={"b": 1}))
    c2_leader = net.leaders["c2"]
    del net.leaders["c2"]  # the shell does not know c2's leader: pushes are dropped
    clerk.call("c1", Decide(txid="t1", ts=10, commit=True))
    net.tick(12)
    assert net.leader_status("c1")["unacknowledged"] == 1
    # Pushed at once, then at 5 and 10 ticks: one request each time, nothing more.
    assert [[r.op for r in batch.requests] for _, batch in net.cross_cluster] == [
        [Decide(txid="t1", ts=10, commit=True)]
    ] * 3
    net.leaders["c2"] = c2_leader
    net.run_until(lambda: net.leader_status("c1")["unacknowledged"] == 0, max_ticks=6)
    assert machine_status(net, c2_leader, "t1") == TXN_COMMITTED
    # Kept past its retention while unacknowledged, trimmed once acknowledged.
    assert net.leader_status("c1")["records"] == 1
    net.run_until(lambda: net.leader_status("c1")["records"] == 0, max_ticks=10)


# -- TxnStatus at the primary ----------------------------------------------------------------


def test_txn_status_answers_from_the_record_when_settled():
    net = two_clusters()
    clerk = Clerk(net)
    clerk.call("c1", prepare("t1", 10, writes={"a": 1}), prepare("t2", 11, writes={"b": 1}))
    clerk.call("c1", Decide(txid="t1", ts=10, commit=True), Decide(txid="t2", ts=11, commit=False))
    last_index = net.leader_status("c1")["last_index"]
    results = clerk.call("c1", TxnStatus(txid="t1", ts=10), TxnStatus(txid="t2", ts=11))
    assert results == [TxnStatusResult(txid="t1", status=TXN_COMMITTED), TxnStatusResult(txid="t2", status=TXN_ABORTED)]
    assert net.leader_status("c1")["last_index"] == last_index


def test_txn_status_of_an_undecided_prepare_aborts_it_even_before_the_primary_timed_out():
    """The asker has already held T a whole prepare timeout: waiting for the
    primary's own timer (restarted by every election) would hold it longer."""
    net = two_clusters(prepare_timeout_ticks=20)
    clerk = Clerk(net)
    clerk.call("c1", prepare("t1", 10, writes={"a": 1}))
    assert clerk.call("c1", TxnStatus(txid="t1", ts=10)) == [TxnStatusResult(txid="t1", status=TXN_ABORTED)]
    assert machine_status(net, net.leaders["c1"], "t1") == TXN_ABORTED


def test_txn_status_of_a_timed_out_prepare_logs_an_abort_and_answers_once_applied():
    net = Net({"c1": 3}, prepare_timeout_ticks=3)
    leader = net.elect("c1")
    clerk = Clerk(net)
    clerk.call("c1", prepare("t1", 10, writes={"a": 1}))
    # Cut the leader off: its own timeout abort cannot commit yet.
    followers = [rid for rid in net.members["c1"] if rid != leader.id]
    net.down.update(followers)
    net.tick(3)
    assert machine_status(net, leader.id, "t1") == TXN_PREPARED
    (req,) = clerk.send(leader.id, TxnStatus(txid="t1", ts=10))
    assert req not in clerk.answers()  # answered only after the abort is applied
    net.down.clear()
    net.run_until(lambda: req in clerk.answers(), max_ticks=8)
    assert clerk.answers()[req] == TxnStatusResult(txid="t1", status=TXN_ABORTED)
    assert machine_status(net, leader.id, "t1") == TXN_ABORTED


def test_txn_status_of_an_unknown_transaction_above_the_threshold_logs_an_abort():
    net = two_clusters()
    clerk = Clerk(net)
    leader = net.leaders["c1"]
    assert clerk.call("c1", TxnStatus(txid="t9", ts=50)) == [TxnStatusResult(txid="t9", status=TXN_ABORTED)]
    assert Decide(txid="t9", ts=50, commit=False) in stored_commands(net, leader)
    # The logged abort makes a Prepare that arrives late vote no.
    (vote,) = clerk.call("c1", prepare("t9", 50, writes={"a": 1}))
    assert vote.vote is False


def test_txn_status_of_an_unknown_transaction_at_or_below_the_threshold_is_presumed_aborted():
    net = two_clusters(retention_ticks=5)
    clerk = Clerk(net)
    clerk.call("c1", write("t5", 40, a=1))
    net.run_until(lambda: net.leader_status("c1")["threshold"] == [40, "t5"], max_ticks=20)
    last_index = net.leader_status("c1")["last_index"]
    assert clerk.call("c1", TxnStatus(txid="t0", ts=30)) == [TxnStatusResult(txid="t0", status=TXN_ABORTED)]
    assert net.leader_status("c1")["last_index"] == last_index


# -- recovery without the clerk ------------------------------------------------------------------


def test_a_vanished_clerk_leaves_nothing_prepared_once_the_timeouts_fire():
    net = two_clusters(prepare_timeout_ticks=10)
    clerk = Clerk(net)
    clerk.call("c1", prepare("t1", 10, writes={"a": 1}), prepare("t2", 11, writes={"c": 1}))
    clerk.call("c2", prepare("t1", 10, writes={"b": 1}), prepare("t2", 11, writes={"d": 1}))
    # The clerk is gone. The participant asks the primary; the primary, also
    # timing out, aborts; both release T.
    net.run_until(lambda: all(net.leader_status(c)["prepared"] == 0 for c in ("c1", "c2")), max_ticks=30)
    for cluster in ("c1", "c2"):
        settle_followers(net, cluster)
        for rid in net.members[cluster]:
            assert net.status(rid)["prepared"] == 0
            assert machine_status(net, rid, "t1") == machine_status(net, rid, "t2") == TXN_ABORTED
    # The participant asked about both in one message.
    ((sender, batch),) = net.cross_cluster
    assert (sender, batch.client, batch.cluster) == (net.leaders["c2"], net.leaders["c2"], "c1")
    assert [r.op for r in batch.requests] == [TxnStatus(txid="t1", ts=10), TxnStatus(txid="t2", ts=11)]


def test_an_idle_leader_sends_nothing_but_heartbeats():
    net = two_clusters(retention_ticks=10)
    clerk = Clerk(net)
    clerk.call("c1", prepare("t1", 10, writes={"a": 1}))
    clerk.call("c2", prepare("t1", 10, writes={"b": 1}))
    clerk.call("c1", Decide(txid="t1", ts=10, commit=True))
    net.tick(20)  # records trimmed
    leader = net.replicas[net.leaders["c1"]]
    last_index = leader.status()["last_index"]
    for _ in range(40):
        leader.tick()
        assert all(isinstance(destination, ToReplica) for destination, _ in leader.take_output())
    assert leader.status()["last_index"] == last_index


def test_a_deposed_leader_redirects_the_clients_it_kept_waiting():
    net = Net({"c1": 3})
    old = net.elect("c1")
    net.down.add(old.id)
    clerk = Clerk(net)
    clerk.send(old.id, write("t1", 10, x=1))  # proposed, but it reaches no follower
    assert clerk.answers() == {}
    new = net.elect("c1")
    net.down.clear()
    net.run_until(lambda: clerk.answers() != {}, max_ticks=10)
    assert clerk.answers() == {1: Redirect(leader=new.id, term=new.status()["term"])}
    assert old.status()["role"] == "follower"
    assert machine_status(net, old.id, "t1") == "unknown"


def test_a_primary_aborts_its_own_transaction_prepared_too_long():
    net = two_clusters(prepare_timeout_ticks=10)
    clerk = Clerk(net)
    clerk.call("c1", prepare("t1", 10, writes={"a": 1}))  # the clerk dies before preparing at c2
    leader = net.leaders["c1"]
    net.tick(9)
    assert machine_status(net, leader, "t1") == TXN_PREPARED
    net.tick(1)
    assert machine_status(net, leader, "t1") == TXN_ABORTED
    assert Decide(txid="t1", ts=10, commit=False) in stored_commands(net, leader)
    assert net.cross_cluster == []


def test_a_participant_asks_the_primary_every_timeout_until_it_learns_the_commit():
    net = two_clusters(prepare_timeout_ticks=8, push_interval_ticks=1_000)
    clerk = Clerk(net)
    clerk.call("c1", prepare("t1", 10, writes={"a": 1}))
    clerk.call("c2", prepare("t1", 10, writes={"b": 7}))
    # Neither the primary's push nor the participant's questions get through.
    c1_leader, c2_leader = net.leaders.pop("c1"), net.leaders.pop("c2")
    clerk.call(c1_leader, Decide(txid="t1", ts=10, commit=True))
    net.tick(16)
    asks = [[r.op for r in batch.requests] for sender, batch in net.cross_cluster if sender == c2_leader]
    assert asks == [[TxnStatus(txid="t1", ts=10)]] * 2
    net.leaders.update(c1=c1_leader, c2=c2_leader)
    net.run_until(lambda: machine_status(net, c2_leader, "t1") == TXN_COMMITTED, max_ticks=8)
    assert read(net, c2_leader, "b").value == 7


# -- durability and snapshots ----------------------------------------------------------------------


class Disks:
    """Storage per replica that survives a restart: the SQLite file is
    reopened; a MemoryStorage object is kept, being the disk."""

    def __init__(self, kind: str, directory) -> None:
        self.kind = kind
        self.directory = directory
        self.opened = []

    def open(self, rid: str):
        storage = MemoryStorage() if self.kind == "memory" else SqliteStorage(self.directory / f"{rid}.db", fsync=False)
        self.opened.append(storage)
        return storage

    def reopen(self, rid: str, storage):
        if self.kind == "memory":
            return storage
        storage.close()
        return self.open(rid)


@pytest.fixture(params=["memory", "sqlite"])
def disks(request, tmp_path):
    disks = Disks(request.param, tmp_path)
    yield disks
    for storage in disks.opened:
        storage.close()


def test_a_restarted_cluster_keeps_its_committed_data(disks):
    net = Net({"c1": 3}, storage=disks.open, read_from_followers=True)
    net.elect("c1")
    clerk = Clerk(net)
    clerk.call("c1", write("t1", 10, x=1), write("t2", 11, y=2))
    settle_followers(net, "c1")
    applied = {rid: net.status(rid)["applied"] for rid in net.members["c1"]}
    for rid in net.members["c1"]:
        net.storages[rid] = disks.reopen(rid, net.storages[rid])
        net.start(rid)
    for rid in net.members["c1"]:
        # The committed log is replayed before the replica does anything else.
        assert net.status(rid)["applied"] == applied[rid]
        assert (read(net, rid, "x").value, read(net, rid, "y").value) == (1, 2)
    old_term = net.leader_status("c1")["term"]
    net.leaders.clear()
    leader = net.elect("c1")
    assert leader.status()["term"] > old_term
    assert Clerk(net, "again").call("c1", write("t3", 12, x=3)) == [CommitOnePhaseResult(txid="t3", committed=True)]


def test_a_lagging_replica_catches_up_through_a_snapshot():
    net = Net({"c1": 3}, snapshot_entries=5, read_from_followers=True)
    leader, lagging = write_past_a_follower(net)
    status = leader.status()
    assert status["snapshot_index"] >= status["applied"] - 5 > 0
    assert net.storages[leader.id].first_index() == status["snapshot_index"] + 1
    net.down.clear()
    settle_followers(net, "c1")
    caught_up = net.status(lagging)
    assert caught_up["snapshot_index"] > 0
    assert net.storages[lagging].snapshot() is not None
    assert all(read(net, lagging, f"k{n}").value == n for n in range(12))
    assert caught_up["role"] == "follower" and net.leaders["c1"] == leader.id


def test_a_decision_already_applied_is_answered_from_the_record_without_a_log_entry():
    """The clerk and the primary's push both deliver a commit: the second is
    answered from the settled outcome, spending no log entry."""
    net = two_clusters()
    clerk = Clerk(net)
    clerk.call("c2", prepare("t1", 10, writes={"z": 1}))
    assert clerk.call("c2", Decide(txid="t1", ts=10, commit=True)) == [DecideResult(txid="t1", status=TXN_COMMITTED)]
    last_index = net.leader_status("c2")["last_index"]
    assert clerk.call("c2", Decide(txid="t1", ts=10, commit=True)) == [DecideResult(txid="t1", status=TXN_COMMITTED)]
    assert clerk.call("c2", Decide(txid="t1", ts=10, commit=False)) == [DecideResult(txid="t1", status=TXN_COMMITTED)]
    assert net.leader_status("c2")["last_index"] == last_index
