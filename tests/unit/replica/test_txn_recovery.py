"""The leader's two-phase-commit recovery for one term (docs/DESIGN.md section 4,
steps 4-6), driven by hand with explicit ticks over a real Machine: every
entry is applied to the machine first, then passed to `on_applied`, as the
Replica does."""

from actors.messages import (
    TXN_ABORTED,
    TXN_COMMITTED,
    TXN_PREPARED,
    TXN_REFUSED,
    AckDecision,
    Decide,
    DecideResult,
    TrimRecords,
    TxnStatus,
    TxnStatusResult,
)
from actors.store.machine import Machine
from actors.txn_recovery import (
    MAX_TRIMS_PER_ENTRY,
    Ask,
    DecisionConflict,
    Propose,
    TxnRecovery,
    status_of_decision,
    txn_status_answer,
)
from tests.unit.replica.replica_helpers import commit_one_phase, prepare

TIMEOUT, PUSH, RETENTION = 10, 5, 100


def recovery_at(machine: Machine, now: int) -> TxnRecovery:
    """The recovery of a leader of `machine`'s cluster elected at tick `now`."""
    return TxnRecovery(
        cluster=machine.cluster,
        machine=machine,
        now=now,
        prepare_timeout=TIMEOUT,
        push_interval=PUSH,
        retention=RETENTION,
    )


def apply(recovery: TxnRecovery, machine: Machine, command, now: int) -> bool:
    return recovery.on_applied(command, machine.apply(command), now)


def commit(txid: str, ts: int) -> Decide:
    return Decide(txid=txid, ts=ts, commit=True)


# -- step 5: prepare timeouts -------------------------------------------------------


def test_a_participant_asks_the_primary_once_per_timeout_counted_from_the_election():
    machine = Machine("c2")
    machine.apply(prepare("t1", 10, writes={"b": 1}))  # primary c1
    recovery = recovery_at(machine, now=3)
    assert recovery.due(12) == []
    assert recovery.due(13) == [Ask("c1", TxnStatus(txid="t1", ts=10))]
    assert recovery.due(22) == []
    assert recovery.due(23) == [Ask("c1", TxnStatus(txid="t1", ts=10))]


def test_the_primary_proposes_the_abort_of_its_own_transaction_at_the_timeout():
    machine = Machine("c1")
    recovery = recovery_at(machine, now=0)
    assert apply(recovery, machine, prepare("t1", 10, writes={"a": 1}), now=4) is False
    assert recovery.due(13) == []
    assert recovery.due(14) == [Propose(Decide(txid="t1", ts=10, commit=False))]
    assert apply(recovery, machine, Decide(txid="t1", ts=10, commit=False), now=14) is True
    assert recovery.due(24) == []  # decided: no timeout left


def test_timeouts_fire_in_the_order_the_transactions_were_prepared():
    machine = Machine("c2")
    recovery = recovery_at(machine, now=0)
    apply(recovery, machine, prepare("t2", 20, writes={"x": 1}), now=1)
    apply(recovery, machine, prepare("t1", 10, writes={"y": 1}), now=1)
    apply(recovery, machine, prepare("t3", 30, writes={"z": 1}), now=2)
    assert recovery.due(11) == [Ask("c1", TxnStatus(txid="t2", ts=20)), Ask("c1", TxnStatus(txid="t1", ts=10))]
    assert recovery.due(12) == [Ask("c1", TxnStatus(txid="t3", ts=30))]


def test_the_primarys_settled_answer_is_logged_as_the_decision():
    machine = Machine("c2")
    machine.apply(prepare("t1", 10, writes={"b": 1}))
    recovery = recovery_at(machine, now=0)
    committed = TxnStatusResult(txid="t1", status=TXN_COMMITTED)
    assert recovery.on_answer("c1", committed) == [Propose(commit("t1", 10))]
    assert recovery.on_answer("c3", committed) == []  # not T's primary
    assert recovery.on_answer("c1", TxnStatusResult(txid="t1", status=TXN_PREPARED)) == []
    assert recovery.on_answer("c1", TxnStatusResult(txid="t9", status=TXN_ABORTED)) == []  # not held here


def test_txn_status_at_the_primary_answers_from_the_record_or_logs_an_abort():
    machine = Machine("c1")
    machine.apply(prepare("t1", 10, writes={"a": 1}))
    machine.apply(prepare("t2", 11, writes={"b": 1}))
    machine.apply(commit("t1", 10))
    assert txn_status_answer(TxnStatus(txid="t1", ts=10), machine) == TxnStatusResult(txid="t1", status=TXN_COMMITTED)
    abort = Decide(txid="t2", ts=11, commit=False)
    assert txn_status_answer(TxnStatus(txid="t2", ts=11), machine) == abort
    assert txn_status_answer(TxnStatus(txid="t9", ts=50), machine) == Decide(txid="t9", ts=50, commit=False)
    assert status_of_decision(machine.apply(abort)) == TxnStatusResult(txid="t2", status=TXN_ABORTED)


def test_txn_status_below_the_threshold_is_presumed_aborted():
    machine = Machine("c1")
    machine.apply(commit_one_phase("t5", 40, writes={"a": 1}))
    machine.apply(TrimRecords(txids=("t5",)))
    presumed = TxnStatusResult(txid="t0", status=TXN_ABORTED)
    assert txn_status_answer(TxnStatus(txid="t0", ts=30), machine) == presumed


# -- step 4: decision pushes ---------------------------------------------------------


def committed_at_primary(now: int) -> tuple[Machine, TxnRecovery]:
    """c1 is primary of t1 over c1, c2 and c3, and applies its commit at tick `now`."""
    machine = Machine("c1")
    recovery = recovery_at(machine, now=0)
    apply(recovery, machine, prepare("t1", 10, writes={"a": 1}, participants=("c1", "c2", "c3")), now=1)
    assert apply(recovery, machine, commit("t1", 10), now=now) is True
    return machine, recovery


def test_a_commit_is_pushed_when_applied_then_every_push_interval_until_acknowledged():
    machine, recovery = committed_at_primary(now=3)
    pushes = [Ask("c2", commit("t1", 10)), Ask("c3", commit("t1", 10))]
    assert recovery.push_new_commits(3) == pushes
    assert recovery.push_new_commits(3) == []
    assert recovery.due(7) == []
    assert recovery.due(8) == pushes
    assert recovery.on_answer("c2", DecideResult(txid="t1", status=TXN_COMMITTED)) == [
        Propose(AckDecision(txid="t1", participant="c2"))
    ]
    apply(recovery, machine, AckDecision(txid="t1", participant="c2"), now=9)
    assert recovery.due(13) == [Ask("c3", commit("t1", 10))]
    apply(recovery, machine, AckDecision(txid="t1", participant="c3"), now=14)
    assert recovery.due(18) == []


def test_a_participant_refusing_the_commit_is_counted_and_still_pushed():
    _, recovery = committed_at_primary(now=3)
    recovery.push_new_commits(3)
    refused = DecideResult(txid="t1", status=TXN_REFUSED)
    assert recovery.on_answer("c3", refused) == [DecisionConflict(txid="t1", participant="c3")]
    assert recovery.on_answer("c9", refused) == []  # not a participant
    assert recovery.due(8) == [Ask("c2", commit("t1", 10)), Ask("c3", commit("t1", 10))]


def test_a_new_leader_pushes_every_unacknowledged_commit_at_once():
    machine, _ = committed_at_primary(now=3)
    machine.apply(AckDecision(txid="t1", participant="c3"))
    successor = recovery_at(machine, now=50)
    assert successor.push_new_commits(50) == [Ask("c2", commit("t1", 10))]
    assert successor.due(54) == []
    assert successor.due(55) == [Ask("c2", commit("t1", 10))]


# -- step 6: trims -----------------------------------------------------------------


def test_records_are_trimmed_a_retention_after_they_were_first_seen():
    machine = Machine("c1")
    recovery = recovery_at(machine, now=0)
    apply(recovery, machine, commit_one_phase("t1", 10, writes={"a": 1}), now=2)
    apply(recovery, machine, commit_one_phase("t2", 11, writes={"b": 1}), now=5)
    assert recovery.due(101) == []
    assert recovery.due(102) == [Propose(TrimRecords(txids=("t1",)))]
    assert recovery.due(104) == []
    assert recovery.due(105) == [Propose(TrimRecords(txids=("t2",)))]


def test_an_unacknowledged_commit_record_is_not_trimmed():
    _, recovery = committed_at_primary(now=3)
    assert recovery.due(103) == []


def test_one_trim_entry_names_at_most_its_limit_and_the_rest_come_next_time():
    machine = Machine("c1")
    for number in range(MAX_TRIMS_PER_ENTRY + 1):
        machine.apply(commit_one_phase(f"t{number}", 10 + number, writes={"a": number}))
    recovery = recovery_at(machine, now=0)
    (first,) = recovery.due(RETENTION)
    assert len(first.command.txids) == MAX_TRIMS_PER_ENTRY
    assert recovery.due(RETENTION + 1) == [Propose(TrimRecords(txids=(f"t{MAX_TRIMS_PER_ENTRY}",)))]


def test_an_applied_trim_stops_the_retention_clock_of_what_it_trimmed():
    machine = Machine("c1")
    recovery = recovery_at(machine, now=0)
    apply(recovery, machine, commit_one_phase("t1", 10, writes={"a": 1}), now=2)
    apply(recovery, machine, TrimRecords(txids=("t1",)), now=3)  # proposed by an earlier leader, say
    assert recovery.due(102) == []
