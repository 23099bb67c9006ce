"""The history-line validator, rule by rule (docs/DESIGN.md section 3).

Each rule gets the abort it exists for and a neighbouring history it allows.
Transactions are driven through Machine.apply, the way replicas run them.
"""

from actors.messages import (
    ZERO_STAMP,
    CommitOnePhase,
    Decide,
    LoggedRead,
    Prepare,
    ReadCheck,
    TrimRecords,
    ValidateReads,
)
from actors.store.machine import Machine


def prepare(txid, ts, reads=None, writes=None, deletes=()):
    return Prepare(
        txid=txid,
        ts=ts,
        reads=reads or {},
        writes=writes or {},
        deletes=deletes,
        primary="c1",
        participants=("c1", "c2"),
        epoch=1,
    )


def commit_one_phase(txid, ts, reads=None, writes=None, deletes=()):
    return CommitOnePhase(txid=txid, ts=ts, reads=reads or {}, writes=writes or {}, deletes=deletes, epoch=1)


def read_only(txid, ts, reads):
    return ValidateReads(checks=(ReadCheck(txid=txid, ts=ts, reads=reads),))


def machine_with_x_written_at(ts, txid="w"):
    machine = Machine("c1")
    assert machine.apply(commit_one_phase(txid, ts, writes={"x": "old"})).committed
    return machine


def vote(machine, command):
    result = machine.apply(command)
    return result.vote, result.reason


# -- rule 1: threshold -----------------------------------------------------------


def trimmed_machine():
    """A machine whose threshold is (5, "t5"): t5 aborted and its record was trimmed."""
    machine = Machine("c1")
    machine.apply(Decide(txid="t5", ts=5, commit=False))
    machine.apply(TrimRecords(txids=("t5",)))
    assert machine.threshold == (5, "t5")
    return machine


def test_rule_1_aborts_a_stamp_at_or_below_the_threshold():
    machine = trimmed_machine()
    voted, reason = vote(machine, prepare("t4", 4, writes={"x": 1}))
    assert not voted and reason.startswith("rule 1:")
    # Same ts, smaller txid: the pair is still below the threshold.
    voted, reason = vote(machine, prepare("t0", 5, writes={"x": 1}))
    assert not voted and reason.startswith("rule 1:")


def test_rule_1_allows_a_stamp_above_the_threshold():
    machine = trimmed_machine()
    assert vote(machine, prepare("t6", 5, writes={"x": 1})) == (True, "")


# -- rule 2: earlier prepared writer of a key T read -------------------------------


def test_rule_2_aborts_a_reader_of_a_key_an_earlier_prepared_transaction_writes():
    machine = Machine("c1")
    assert vote(machine, prepare("s", 1, writes={"x": 1})) == (True, "")
    # If s commits, t (later) should have read s's version of x.
    voted, reason = vote(machine, prepare("t", 2, reads={"x": ZERO_STAMP}, writes={"y": 1}))
    assert not voted
    assert reason == "rule 2: key 'x' is written by prepared s, which is earlier"


def test_rule_2_allows_a_reader_ordered_before_a_later_prepared_writer():
    machine = Machine("c1")
    assert vote(machine, prepare("s", 3, writes={"x": 1})) == (True, "")
    assert vote(machine, prepare("t", 2, reads={"x": ZERO_STAMP}, writes={"y": 1})) == (True, "")


# -- rule 3: current version ------------------------------------------------------


def test_rule_3_aborts_a_read_of_a_version_that_is_no_longer_current():
    machine = machine_with_x_written_at(1)
    voted, reason = vote(machine, prepare("t", 2, reads={"x": ZERO_STAMP}, writes={"y": 1}))
    assert not voted
    assert reason == "rule 3: key 'x' was read at version (0, ''), now at (1, 'w')"


def test_rule_3_aborts_a_read_of_a_version_later_than_the_readers_stamp():
    machine = machine_with_x_written_at(5)
    voted, reason = vote(machine, prepare("t", 2, reads={"x": (5, "w")}, writes={"y": 1}))
    assert not voted and reason.startswith("rule 3:") and "later than its stamp" in reason


def test_rule_3_allows_a_read_of_the_current_version():
    machine = machine_with_x_written_at(1)
    assert vote(machine, prepare("t", 2, reads={"x": (1, "w")}, writes={"x": 2})) == (True, "")


def test_rule_3_aborts_a_write_under_a_later_committed_read():
    machine = Machine("c1")
    assert machine.apply(commit_one_phase("r", 5, reads={"x": ZERO_STAMP})).committed
    voted, reason = vote(machine, prepare("t", 3, writes={"x": 1}))
    assert not voted
    assert reason == "rule 3: key 'x' was read by a later transaction ((5, 'r'))"


def test_rule_3_aborts_a_write_under_a_later_committed_write():
    machine = machine_with_x_written_at(5)
    voted, reason = vote(machine, prepare("t", 3, deletes=("x",)))
    assert not voted
    assert reason == "rule 3: key 'x' was written by a later transaction ((5, 'w'))"


def test_rule_3_allows_a_write_above_the_keys_read_and_write_stamps():
    machine = Machine("c1")
    assert machine.apply(commit_one_phase("r", 5, reads={"x": ZERO_STAMP})).committed
    assert vote(machine, prepare("t", 6, writes={"x": 1})) == (True, "")


# -- rule 4: later prepared reader of a key T writes -------------------------------


def test_rule_4_aborts_a_writer_of_a_key_a_later_prepared_transaction_read():
    machine = Machine("c1")
    assert vote(machine, prepare("s", 5, reads={"x": ZERO_STAMP}, writes={"y": 1})) == (True, "")
    # s is later and did not see t's write: t must not commit.
    voted, reason = vote(machine, prepare("t", 3, writes={"x": 1}))
    assert not voted
    assert reason == "rule 4: key 'x' is read by prepared s, which is later"


def test_rule_4_allows_a_writer_after_an_earlier_prepared_reader():
    machine = Machine("c1")
    assert vote(machine, prepare("s", 1, reads={"x": ZERO_STAMP}, writes={"y": 1})) == (True, "")
    assert vote(machine, prepare("t", 3, writes={"x": 1})) == (True, "")


# -- rule 5: write-write -----------------------------------------------------------


def test_rule_5_aborts_a_second_prepared_writer_of_a_key_in_either_order():
    for first, second in ((1, 2), (2, 1)):
        machine = Machine("c1")
        assert vote(machine, prepare("s", first, writes={"x": 1})) == (True, "")
        voted, reason = vote(machine, prepare("t", second, deletes=("x",)))
        assert not voted
        assert reason == "rule 5: key 'x' is also written by prepared s"


def test_rule_5_allows_prepared_writers_of_different_keys():
    machine = Machine("c1")
    assert vote(machine, prepare("s", 1, writes={"y": 1})) == (True, "")
    assert vote(machine, prepare("t", 2, writes={"x": 1})) == (True, "")


# -- deduplication ---------------------------------------------------------------


def test_a_repeated_prepare_gets_the_same_yes_without_validating_against_itself():
    machine = Machine("c1")
    command = prepare("t", 1, reads={"x": ZERO_STAMP}, writes={"x": 1})
    assert vote(machine, command) == (True, "")
    # Validated again, t would conflict with itself under rules 2 and 5.
    assert vote(machine, command) == (True, "")
    assert [txn.txid for txn in machine.prepared()] == ["t"]


def test_a_repeated_prepare_after_a_no_vote_gets_the_same_no():
    machine = machine_with_x_written_at(1)
    command = prepare("t", 2, reads={"x": ZERO_STAMP}, writes={"y": 1})
    voted, reason = vote(machine, command)
    assert not voted
    assert vote(machine, command) == (False, reason)
    assert machine.status("t") == "aborted"


def test_a_repeated_prepare_after_commit_is_answered_yes_and_changes_nothing():
    machine = Machine("c1")
    command = prepare("t", 1, writes={"x": 1})
    machine.apply(command)
    machine.apply(Decide(txid="t", ts=1, commit=True))
    before = machine.snapshot()
    assert vote(machine, command) == (True, "")
    assert machine.snapshot() == before


# -- read-only validation -------------------------------------------------------------


def test_read_only_check_passes_raises_rts_and_leaves_the_line_empty():
    machine = machine_with_x_written_at(1)
    result = machine.apply(read_only("r", 4, {"x": (1, "w"), "missing": ZERO_STAMP}))
    assert [(check.txid, check.ok) for check in result.results] == [("r", True)]
    assert machine.prepared() == ()
    assert machine.status("r") == "unknown"
    # The raised rts protects what r saw, for present and missing keys alike.
    for key in ("x", "missing"):
        voted, reason = vote(machine, prepare(f"t-{key}", 3, writes={key: 2}))
        assert not voted and reason.startswith("rule 3:") and "read by a later" in reason


def test_read_only_check_applies_rules_1_to_3():
    machine = trimmed_machine()
    machine.apply(commit_one_phase("w", 6, writes={"x": "old"}))
    machine.apply(prepare("s", 7, writes={"y": 1}))
    result = machine.apply(
        ValidateReads(
            checks=(
                ReadCheck(txid="old", ts=4, reads={"z": ZERO_STAMP}),
                ReadCheck(txid="after-s", ts=8, reads={"y": ZERO_STAMP}),
                ReadCheck(txid="stale", ts=8, reads={"x": ZERO_STAMP}),
                ReadCheck(txid="fine", ts=8, reads={"x": (6, "w")}),
                ReadCheck(txid="before-s", ts=6, reads={"y": ZERO_STAMP}),
            )
        )
    )
    verdicts = {check.txid: (check.ok, check.reason.split(":")[0]) for check in result.results}
    assert verdicts == {
        "old": (False, "rule 1"),
        "after-s": (False, "rule 2"),
        "stale": (False, "rule 3"),
        "fine": (True, ""),
        "before-s": (True, ""),
    }


def test_a_logged_read_reads_the_current_versions_and_is_checked_by_rules_1_to_3_at_its_stamp():
    machine = trimmed_machine()
    machine.apply(commit_one_phase("w", 6, writes={"x": "old"}))
    machine.apply(prepare("s", 7, writes={"y": 1}))
    result = machine.apply(
        ValidateReads(
            checks=(
                LoggedRead(txid="old", ts=4, keys=("z",)),
                LoggedRead(txid="after-s", ts=8, keys=("y",)),
                LoggedRead(txid="under-w", ts=5, keys=("x",)),
                LoggedRead(txid="fine", ts=8, keys=("x", "z")),
                ReadCheck(txid="check", ts=8, reads={"x": (6, "w")}),
            )
        )
    )
    verdicts = {read.txid: (read.ok, read.reason.split(":")[0]) for read in result.results}
    assert verdicts == {
        "old": (False, "rule 1"),
        "after-s": (False, "rule 2"),
        "under-w": (False, "rule 3"),
        "fine": (True, ""),
        "check": (True, ""),
    }
    fine = result.results[3]
    assert [(value.key, value.value, value.version, value.exists) for value in fine.values] == [
        ("x", "old", (6, "w"), True),
        ("z", None, ZERO_STAMP, False),
    ]
    assert all(not read.values for read in result.results[:3])
    # The read stamp it raised protects what it saw, a missing key included.
    voted, reason = vote(machine, prepare("t-z", 7, writes={"z": 1}))
    assert not voted and reason.startswith("rule 3:")


def test_a_failed_read_only_check_raises_no_rts():
    machine = machine_with_x_written_at(1)
    result = machine.apply(read_only("r", 9, {"x": ZERO_STAMP}))
    assert not result.results[0].ok
    assert vote(machine, prepare("t", 3, writes={"x": 2})) == (True, "")
