"""The replicated state machine: commit and abort, outcome records,
acknowledgements, trimming, snapshots and determinism (docs/DESIGN.md sections 3, 4)."""

import random

import pytest

from actors import codec
from actors.messages import (
    ZERO_STAMP,
    AckDecision,
    Decide,
    LoggedRead,
    LoggedReadResult,
    ReadCheck,
    ReadFloor,
    RecordLeaseReads,
    TrimRecords,
    ValidateReads,
)
from actors.messages.txn import TXN_COMMANDS
from actors.raft.messages import Entry
from actors.store.kv import TableInvariantBroken, VersionedTable
from actors.store.machine import _APPLY, Machine
from tests.unit.replica.replica_helpers import commit_one_phase, prepare


def decide(txid, ts, commit):
    return Decide(txid=txid, ts=ts, commit=commit)


# -- the table --------------------------------------------------------------------


def test_table_installs_move_forward_and_tombstones_keep_their_version():
    table = VersionedTable()
    table.install("x", [1, 2], (1, "a"))
    table.install_tombstone("x", (2, "b"))
    state = table.get("x")
    assert (state.wts, state.counter, state.tombstone, state.exists) == ((2, "b"), 2, True, False)
    table.install("x", {"k": "v"}, (3, "c"))
    assert table.get("x").exists and table.get("x").counter == 3


def test_table_refuses_to_install_at_or_below_the_current_version():
    table = VersionedTable()
    table.install("x", 1, (5, "a"))
    with pytest.raises(TableInvariantBroken):
        table.install("x", 2, (4, "z"))
    with pytest.raises(TableInvariantBroken):
        table.install_tombstone("x", (5, "a"))


def test_table_rts_only_grows_and_is_kept_for_missing_keys():
    table = VersionedTable()
    table.raise_rts("x", (5, "a"))
    table.raise_rts("x", (3, "b"))
    assert table.get("x").rts == (5, "a")
    assert not table.get("x").exists and table.get("x").wts == ZERO_STAMP


# -- commit, abort, reads ------------------------------------------------------------


def test_commit_installs_prepared_writes_at_the_stamp_and_raises_rts_of_reads():
    machine = Machine("c1")
    machine.apply(prepare("t1", 1, writes={"x": 1, "y": 2}))
    assert machine.read("x").exists is False  # prepared writes are invisible
    assert machine.apply(decide("t1", 1, True)).status == "committed"
    x = machine.read("x")
    assert (x.value, x.version, x.counter, x.exists) == (1, (1, "t1"), 1, True)

    machine.apply(prepare("t2", 2, reads={"x": (1, "t1")}, deletes=("y",)))
    assert machine.read("y").value == 2  # still the committed version
    machine.apply(decide("t2", 2, True))
    y = machine.read("y")
    assert (y.value, y.version, y.counter, y.exists) == (None, (2, "t2"), 2, False)
    # t2 read x at stamp 2: a writer of x below it is now refused.
    assert not machine.apply(prepare("t1b", 1, writes={"x": 0})).vote


def test_abort_leaves_the_line_and_installs_nothing():
    machine = Machine("c1")
    machine.apply(prepare("t1", 1, writes={"x": 1}))
    assert machine.apply(decide("t1", 1, False)).status == "aborted"
    assert machine.prepared() == ()
    assert machine.read("x").version == ZERO_STAMP
    assert machine.status("t1") == "aborted"


def test_status_reports_each_state():
    machine = Machine("c1")
    machine.apply(prepare("p", 1, writes={"a": 1}))
    machine.apply(prepare("c", 2, writes={"b": 1}))
    machine.apply(decide("c", 2, True))
    machine.apply(decide("a", 3, False))
    assert [machine.status(txid) for txid in ("p", "c", "a", "nobody")] == [
        "prepared",
        "committed",
        "aborted",
        "unknown",
    ]
    [held] = machine.prepared()
    assert (held.txid, held.stamp, held.primary, held.participants) == ("p", (1, "p"), "c1", ("c1", "c2"))


def test_one_phase_commit_validates_installs_and_records():
    machine = Machine("c1")
    result = machine.apply(commit_one_phase("t1", 1, reads={"x": ZERO_STAMP}, writes={"x": 1}))
    assert result.committed and machine.read("x").version == (1, "t1")
    stale = commit_one_phase("t2", 2, reads={"x": ZERO_STAMP}, writes={"x": 2})
    first = machine.apply(stale)
    assert not first.committed and first.reason.startswith("rule 3:")
    assert machine.apply(stale) == first
    assert machine.apply(commit_one_phase("t1", 1, writes={"x": 9})).committed
    assert machine.read("x").value == 1
    assert machine.unacknowledged() == ()


def test_one_phase_commit_of_a_txid_prepared_by_two_phase_commit_is_refused_and_visible():
    machine = Machine("c1")
    machine.apply(prepare("t1", 1, writes={"x": 1}))
    result = machine.apply(commit_one_phase("t1", 1, writes={"x": 1}))
    assert not result.committed
    assert machine.violations == (result.reason,)
    assert machine.status("t1") == "prepared"


# -- outcome records ---------------------------------------------------------------


def test_repeated_decisions_get_the_recorded_answer():
    machine = Machine("c1")
    machine.apply(prepare("t1", 1, writes={"x": 1}))
    assert machine.apply(decide("t1", 1, True)).status == "committed"
    assert machine.apply(decide("t1", 1, True)).status == "committed"
    late_abort = machine.apply(decide("t1", 1, False))
    assert late_abort.status == "committed" and "too late" in late_abort.reason
    assert machine.read("x").counter == 1

    machine.apply(prepare("t2", 2, writes={"y": 1}))
    assert machine.apply(decide("t2", 2, False)).status == "aborted"
    late_commit = machine.apply(decide("t2", 2, True))
    assert late_commit.status == "aborted" and late_commit.reason.startswith("already aborted")
    assert machine.read("y").version == ZERO_STAMP


def test_an_abort_for_an_unknown_transaction_is_recorded_and_refuses_its_late_prepare():
    machine = Machine("c1")
    assert machine.apply(decide("t1", 1, False)).status == "aborted"
    assert machine.status("t1") == "aborted"
    result = machine.apply(prepare("t1", 1, writes={"x": 1}))
    assert not result.vote and "aborted by decision before its prepare" in result.reason
    assert machine.prepared() == ()


def test_a_commit_for_an_unknown_transaction_is_refused_installs_nothing_and_is_visible():
    machine = Machine("c1")
    result = machine.apply(decide("t1", 1, True))
    assert result.status == "refused"
    assert machine.violations == (result.reason,)
    assert machine.status("t1") == "unknown"
    assert machine.unacknowledged() == ()
    # It stays refused; a later prepare of t1 is validated normally.
    assert machine.apply(decide("t1", 1, True)).status == "refused"
    assert machine.apply(prepare("t1", 1, writes={"x": 1})).vote


def test_a_decision_for_a_trimmed_transaction_installs_nothing():
    machine = Machine("c1")
    machine.apply(prepare("t5", 5, writes={"x": 1}, primary="c2"))
    machine.apply(decide("t5", 5, True))
    machine.apply(TrimRecords(txids=("t5",)))
    before = machine.snapshot()
    assert machine.apply(decide("t5", 5, True)).status == "committed"
    assert machine.apply(decide("t3", 3, True)).status == "committed"
    assert machine.apply(decide("t4", 4, False)).status == "aborted"
    assert machine.snapshot() == before
    assert machine.violations == ()


# -- acknowledgements and trimming ------------------------------------------------------


def test_primary_keeps_a_commit_record_until_every_participant_acknowledged():
    machine = Machine("c1")
    machine.apply(prepare("t1", 1, writes={"x": 1}, participants=("c1", "c2", "c3")))
    machine.apply(decide("t1", 1, True))
    [pending] = machine.unacknowledged()
    assert (pending.txid, pending.missing) == ("t1", ("c2", "c3"))

    assert machine.apply(AckDecision(txid="t1", participant="c2")).missing == ("c3",)
    assert machine.apply(AckDecision(txid="t1", participant="c2")).missing == ("c3",)
    assert machine.apply(AckDecision(txid="t1", participant="c9")).missing == ("c3",)
    kept = machine.apply(TrimRecords(txids=("t1",)))
    assert (kept.trimmed, kept.kept, kept.threshold) == ((), ("t1",), ZERO_STAMP)

    assert machine.apply(AckDecision(txid="t1", participant="c3")).missing == ()
    assert machine.unacknowledged() == ()
    trimmed = machine.apply(TrimRecords(txids=("t1",)))
    assert (trimmed.trimmed, trimmed.kept, trimmed.threshold) == (("t1",), (), (1, "t1"))
    assert machine.status("t1") == "unknown"
    assert machine.apply(AckDecision(txid="t1", participant="c3")).missing == ()


def test_participants_and_aborts_do_not_wait_for_acknowledgements():
    machine = Machine("c2")
    machine.apply(prepare("t1", 1, writes={"x": 1}, primary="c1"))
    machine.apply(decide("t1", 1, True))
    machine.apply(decide("t7", 7, False))
    machine.apply(prepare("t3", 3, writes={"y": 1}, primary="c2"))
    machine.apply(decide("t3", 3, False))
    assert machine.unacknowledged() == ()
    result = machine.apply(TrimRecords(txids=("t7", "t1", "unknown", "t3")))
    assert result.trimmed == ("t7", "t1", "t3")
    assert result.threshold == (7, "t7")
    assert machine.records() == ()


def test_trimming_keeps_the_threshold_when_only_lower_records_go():
    machine = Machine("c1")
    machine.apply(decide("t9", 9, False))
    machine.apply(TrimRecords(txids=("t9",)))
    machine.apply(decide("t2", 2, False))  # at or below the threshold: not recorded
    assert machine.records() == ()
    machine.apply(prepare("t10", 10, writes={"x": 1}, primary="c2"))
    machine.apply(decide("t10", 10, False))
    assert machine.apply(TrimRecords(txids=("t10",))).threshold == (10, "t10")


def test_a_read_verdict_raises_nothing_until_the_lease_reads_stamps_are_logged():
    machine = Machine("c1")
    machine.apply(commit_one_phase("t1", 10, writes={"x": 1}))
    read = LoggedRead(txid="r1", ts=20, keys=("x",))
    verdict = machine.read_verdict(read)
    assert isinstance(verdict, LoggedReadResult) and verdict.ok and verdict.values[0].value == 1
    assert machine.apply(commit_one_phase("t2", 15, writes={"x": 2})).committed  # nothing was raised
    assert machine.read_verdict(read).values[0].value == 2  # read where it is asked: the current version
    machine.apply(RecordLeaseReads(stamps=(("x", (20, "r1")), ("y", (20, "r1")))))
    refused = machine.apply(commit_one_phase("t3", 18, writes={"x": 3, "y": 3}))
    assert not refused.committed and refused.reason.startswith("rule 3")


def test_a_read_floor_refuses_every_stamp_below_it_and_only_those():
    machine = Machine("c1")
    machine.apply(ReadFloor(ts=100))
    assert machine.threshold == (100, "")
    assert not machine.apply(commit_one_phase("t1", 99, writes={"x": 1})).committed
    assert machine.apply(commit_one_phase("t2", 100, writes={"x": 2})).committed
    machine.apply(ReadFloor(ts=50))  # a floor never goes down
    assert machine.threshold == (100, "")


def test_unknown_commands_are_a_caller_error():
    with pytest.raises(TypeError):
        Machine("c1").apply("not a command")


# -- snapshots and determinism ---------------------------------------------------------


def random_command(rng, machine, number):
    """A seeded command of any kind, mostly well-formed for `machine`'s state
    (current versions, prepared transactions, missing acknowledgements), with
    stale reads, unknown transactions and out-of-order stamps mixed in."""
    keys = ["a", "b", "c", "d"]
    clusters = ("c1", "c2", "c3")
    txid = f"t{number}"
    ts = max(1, number + rng.randint(-3, 1))

    def version_of(key):
        return machine.read(key).version if rng.random() < 0.85 else ZERO_STAMP

    kind = rng.randrange(10)
    if kind <= 2:
        touched = rng.sample(keys, rng.randint(1, 3))
        reads = {key: version_of(key) for key in touched if rng.random() < 0.5}
        writes = {key: [number, key] for key in touched if rng.random() < 0.6}
        deletes = tuple(key for key in touched if key not in writes and rng.random() < 0.2)
        if kind == 0:
            return commit_one_phase(txid, ts, reads, writes, deletes)
        participants = tuple(sorted(rng.sample(clusters, rng.randint(1, 3))))
        return prepare(txid, ts, reads, writes, deletes, rng.choice(participants), participants)
    if kind <= 4:
        prepared = machine.prepared()
        if prepared and rng.random() < 0.8:
            target = rng.choice(prepared)
            return decide(target.txid, target.ts, rng.random() < 0.7)
        return decide(f"u{number}", ts, rng.random() < 0.5)
    if kind == 5:
        checks = tuple(
            ReadCheck(txid=f"{txid}.{i}", ts=ts, reads={key: version_of(key)})
            if rng.random() < 0.5
            else LoggedRead(txid=f"{txid}.{i}", ts=ts, keys=(key,))
            for i, key in enumerate(rng.sample(keys, 2))
        )
        return ValidateReads(checks=checks)
    if kind == 6:
        pending = machine.unacknowledged()
        if pending:
            record = rng.choice(pending)
            return AckDecision(txid=record.txid, participant=rng.choice(record.missing))
        return AckDecision(txid=txid, participant=rng.choice(clusters))
    if kind == 7:
        records = machine.records()
        return TrimRecords(txids=tuple(record.txid for record in records[: rng.randint(0, 3)]))
    if kind == 8:
        return RecordLeaseReads(stamps=tuple((key, (ts, f"{txid}.lease")) for key in rng.sample(keys, 2)))
    return ReadFloor(ts=max(1, number - rng.randint(2, 6)))


def drive(machines, seed, count, start=0):
    """Apply `count` random commands to every machine; the results must agree."""
    rng = random.Random(seed)
    for number in range(start, start + count):
        command = random_command(rng, machines[0], number)
        results = [machine.apply(command) for machine in machines]
        assert all(result == results[0] for result in results)


def busy_machine(seed=5, count=150):
    machine = Machine("c1")
    drive([machine], seed, count)
    return machine


def test_the_random_commands_reach_every_kind_of_state():
    # Guards the snapshot tests below against testing an empty machine.
    machine = busy_machine()
    assert machine.prepared() and machine.records() and machine.unacknowledged()
    assert machine.threshold != ZERO_STAMP and machine.violations
    assert machine.read("a").counter > 0


def test_snapshot_restore_round_trips_state_and_behaviour():
    machine = busy_machine()
    data = machine.snapshot()
    restored = Machine.restore("c1", data)
    assert restored.snapshot() == data
    assert restored.prepared() == machine.prepared()
    assert restored.records() == machine.records()
    assert restored.unacknowledged() == machine.unacknowledged()
    assert (restored.threshold, restored.violations) == (machine.threshold, machine.violations)
    for key in "abcd":
        assert restored.read(key) == machine.read(key)

    drive([machine, restored], seed=8, count=150, start=150)
    assert restored.snapshot() == machine.snapshot()


def test_restore_refuses_another_clusters_snapshot():
    with pytest.raises(ValueError):
        Machine.restore("c2", Machine("c1").snapshot())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replicas_applying_the_same_log_agree(seed):
    """One replica applies the proposer's objects, the other the decoded log
    bytes (dicts come back in another order): same results, same snapshots."""
    proposer, follower = Machine("c1"), Machine("c1")
    rng = random.Random(seed)
    for number in range(200):
        command = random_command(rng, proposer, number)
        entry = codec.decode(codec.encode(command))
        assert proposer.apply(command) == follower.apply(entry)
    assert proposer.snapshot() == follower.snapshot()


def test_apply_carries_out_exactly_the_registered_commands():
    assert set(_APPLY) == set(TXN_COMMANDS)
    with pytest.raises(TypeError, match="not a transaction command: Entry"):
        Machine("c1").apply(Entry(index=1, term=1))
