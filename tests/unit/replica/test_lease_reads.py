"""Lease reads at the Replica (docs/DESIGN.md section 4, "Lease reads"): a
leader whose lease holds answers a logged read or read check at once from
applied state, logs the stamps it raised ahead of its next entries, and every
new leader logs a read floor. The Net hands out clocks: a tick is 50 ms, and
the lease is 0.9 x (6 - 1) ticks past the heartbeat a quorum answered."""

from __future__ import annotations

from actors.messages import LoggedRead, LoggedReadResult, ReadCheck, ReadCheckResult
from tests.unit.replica.replica_helpers import Clerk, Net, write


def lease_reads_counted(replica) -> int:
    return sum(sample["value"] for sample in replica.metrics.snapshot().get("raftline_lease_reads_total", []))


def cluster_with(**values):
    """A 3-replica cluster with clocks, its leader, a clerk, and `values` committed."""
    net = Net({"c1": 3}, clocks=True)
    leader = net.elect("c1")
    clerk = Clerk(net)
    (result,) = clerk.call("c1", write("t0", net.unix_us(), **values))
    assert result.committed
    net.tick(2)  # a heartbeat round: the lease rests on answers to it
    return net, leader, clerk


def ask(clerk: Clerk, rid: str, op):
    """Send `op` and return its answer if it came at once (None if it waits for the log)."""
    (req,) = clerk.send(rid, op)
    return clerk.answers().get(req)


def test_a_leader_with_a_lease_answers_a_get_at_once_without_a_log_entry():
    net, leader, clerk = cluster_with(x=5)
    last = leader.status()["last_index"]
    answer = ask(clerk, leader.id, LoggedRead(txid="r1", ts=net.unix_us(), keys=("x", "nothing")))
    assert isinstance(answer, LoggedReadResult) and answer.ok and answer.from_lease
    assert [(value.key, value.value, value.exists) for value in answer.values] == [("x", 5, True), ("nothing", None, False)]
    assert leader.status()["last_index"] == last
    assert lease_reads_counted(leader) == 1


def test_a_read_check_is_answered_from_the_lease_too_and_refused_as_the_log_would():
    net, leader, clerk = cluster_with(x=5)
    (version,) = [value.version for value in ask(clerk, leader.id, LoggedRead(txid="r1", ts=net.unix_us(), keys=("x",))).values]
    good = ask(clerk, leader.id, ReadCheck(txid="r2", ts=net.unix_us(), reads={"x": version}))
    stale = ask(clerk, leader.id, ReadCheck(txid="r3", ts=net.unix_us(), reads={"x": (1, "older")}))
    assert good == ReadCheckResult(txid="r2", ok=True, from_lease=True)
    assert isinstance(stale, ReadCheckResult) and not stale.ok and stale.reason.startswith("rule 3")
    assert lease_reads_counted(leader) == 2  # the refused check raised nothing


def test_a_write_below_a_lease_reads_stamp_is_refused_on_every_replica():
    net, leader, clerk = cluster_with(x=5)
    stamp = net.unix_us() + 1_000
    assert ask(clerk, leader.id, LoggedRead(txid="r1", ts=stamp, keys=("x",))).ok
    before = leader.status()["last_index"]
    (result,) = clerk.call("c1", write("t1", stamp - 1, x=6))
    assert not result.committed and result.reason.startswith("rule 3")
    # One RecordLeaseReads entry went ahead of the write.
    assert leader.status()["last_index"] == before + 2
    (later,) = clerk.call("c1", write("t2", stamp + 1, x=7))
    assert later.committed


def test_a_read_of_a_key_an_unapplied_entry_writes_takes_the_log():
    net, leader, clerk = cluster_with(x=5, y=1)
    followers = [rid for rid in net.members["c1"] if rid != leader.id]
    net.down.update(followers)  # the next write stays unapplied; the lease still holds
    clerk.send(leader.id, write("t1", net.unix_us(), x=6))
    last = leader.status()["last_index"]
    assert ask(clerk, leader.id, LoggedRead(txid="r1", ts=net.unix_us(), keys=("x",))) is None
    assert leader.status()["last_index"] == last + 1  # a ValidateReads entry, after the write
    other = ask(clerk, leader.id, LoggedRead(txid="r2", ts=net.unix_us(), keys=("y",)))
    assert other.ok and other.values[0].value == 1


def test_without_answers_from_a_quorum_the_lease_runs_out():
    net, leader, clerk = cluster_with(y=1)
    net.down.update(rid for rid in net.members["c1"] if rid != leader.id)
    net.tick(4)  # 200 ms: the lease (225 ms past the last answered heartbeat) still holds
    assert ask(clerk, leader.id, LoggedRead(txid="r1", ts=net.unix_us(), keys=("y",))).ok
    net.tick(1)
    assert ask(clerk, leader.id, LoggedRead(txid="r2", ts=net.unix_us(), keys=("y",))) is None


def test_a_new_leader_refuses_writes_below_its_read_floor():
    net, leader, clerk = cluster_with(x=5)
    before_election = net.unix_us()
    net.down.add(leader.id)
    new = net.elect("c1")
    assert new.id != leader.id
    (late,) = clerk.call("c1", write("t1", before_election, x=6))
    assert not late.committed and late.reason.startswith("rule 1")
    (fresh,) = clerk.call("c1", write("t2", net.unix_us(), x=7))
    assert fresh.committed


def test_with_lease_reads_off_every_read_takes_the_log_and_no_floor_is_logged():
    net = Net({"c1": 3}, clocks=True, lease_reads=False)
    leader = net.elect("c1")
    clerk = Clerk(net)
    (old,) = clerk.call("c1", write("t0", 10, x=5))  # no floor: a stamp from long ago still commits
    assert old.committed
    net.tick(2)
    last = leader.status()["last_index"]
    (answer,) = clerk.call("c1", LoggedRead(txid="r1", ts=net.unix_us(), keys=("x",)))
    assert answer.ok and answer.values[0].value == 5
    assert leader.status()["last_index"] == last + 1
    assert lease_reads_counted(leader) == 0
