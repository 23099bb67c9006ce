"""The invariant checker catches each broken property it is meant to catch."""

from __future__ import annotations

import pytest

from actors.raft.messages import ConfState, Entry, HardState, Snapshot
from tests.sim.raft.invariants import (
    DURABILITY,
    ELECTION_SAFETY,
    LEADER_APPEND_ONLY,
    LEADER_COMPLETENESS,
    LOG_MATCHING,
    READY_CONTRACT,
    STATE_MACHINE_SAFETY,
    LogMirror,
    RaftChecker,
    Violation,
)


def entry(index: int, term: int, data: bytes = b"") -> Entry:
    return Entry(index=index, term=term, data=data or b"x%d.%d" % (index, term))


def checker(*nodes: str) -> RaftChecker:
    check = RaftChecker()
    for node in nodes:
        check.start(node, HardState(), None, ())
    return check


def write(check: RaftChecker, node: str, *entries: Entry, leader: bool = False) -> None:
    check.persist(node, is_leader=leader, hard_state=None, snapshot=None, entries=tuple(entries))


def broken(invariant: str):
    return pytest.raises(Violation, match=f"^{invariant}:")


def test_two_leaders_in_one_term_break_election_safety():
    check = checker("a", "b")
    check.observe_role("a", "leader", 2)
    check.observe_role("a", "follower", 3)
    with broken(ELECTION_SAFETY):
        check.observe_role("b", "leader", 2)


def test_changing_a_vote_within_a_term_breaks_election_safety():
    check = checker("a")
    check.persist("a", is_leader=False, hard_state=HardState(term=2, voted_for="b"), snapshot=None, entries=())
    with broken(ELECTION_SAFETY):
        check.persist("a", is_leader=False, hard_state=HardState(term=2, voted_for="c"), snapshot=None, entries=())


def test_a_leader_truncating_its_log_breaks_append_only():
    check = checker("a")
    write(check, "a", entry(1, 1), entry(2, 1), leader=True)
    with broken(LEADER_APPEND_ONLY):
        write(check, "a", entry(2, 2), leader=True)


def test_a_follower_may_truncate_uncommitted_entries():
    check = checker("a")
    write(check, "a", entry(1, 1), entry(2, 1))
    write(check, "a", entry(2, 2))
    assert check.mirrors["a"].term_at(2) == 2


def test_truncating_committed_entries_breaks_state_machine_safety():
    check = checker("a")
    write(check, "a", entry(1, 1), entry(2, 1))
    check.commit("a", 2, 1)
    with broken(STATE_MACHINE_SAFETY):
        write(check, "a", entry(2, 2))


def test_same_index_and_term_with_different_content_breaks_log_matching():
    check = checker("a", "b")
    write(check, "a", entry(1, 1, b"one"))
    with broken(LOG_MATCHING):
        write(check, "b", entry(1, 1, b"other"))


def test_same_index_and_term_after_different_predecessors_breaks_log_matching():
    check = checker("a", "b")
    write(check, "a", entry(1, 1), entry(2, 3, b"same"))
    write(check, "b", entry(1, 2))
    with broken(LOG_MATCHING):
        write(check, "b", entry(2, 3, b"same"))


def test_pairwise_log_check_finds_a_divergent_prefix():
    check = checker("a", "b")
    check.mirrors["a"] = LogMirror(entries=(entry(1, 1, b"p"), entry(2, 2)))
    check.mirrors["b"] = LogMirror(entries=(entry(1, 1, b"q"), entry(2, 2)))
    with broken(LOG_MATCHING):
        check.check_logs_match(["a", "b"])
    check.mirrors["b"] = LogMirror(entries=(entry(1, 1, b"p"), entry(2, 2), entry(3, 2)))
    check.check_logs_match(["a", "b"])


def test_a_new_leader_missing_a_committed_entry_breaks_leader_completeness():
    check = checker("a", "b")
    write(check, "a", entry(1, 1), entry(2, 1))
    check.commit("a", 2, 1)
    write(check, "b", entry(1, 1))
    with broken(LEADER_COMPLETENESS):
        check.observe_role("b", "leader", 2)


def test_a_later_commit_missing_from_a_sitting_leader_breaks_leader_completeness():
    check = checker("a", "b")
    write(check, "b", entry(1, 1))
    check.observe_role("b", "leader", 3)
    write(check, "a", entry(1, 1), entry(2, 2))
    with broken(LEADER_COMPLETENESS):
        check.commit("a", 2, 2)


def test_a_stale_leader_of_an_older_term_need_not_hold_later_commits():
    check = checker("a", "b")
    write(check, "b", entry(1, 1))
    check.observe_role("b", "leader", 1)
    write(check, "a", entry(1, 1), entry(2, 2))
    check.commit("a", 2, 2)


def test_committing_a_different_command_at_an_index_breaks_state_machine_safety():
    check = checker("a", "b")
    write(check, "a", entry(1, 1, b"p"))
    check.commit("a", 1, 1)
    write(check, "b", entry(1, 2, b"q"))
    with broken(STATE_MACHINE_SAFETY):
        check.commit("b", 1, 2)


def test_applying_other_than_the_stored_entry_breaks_state_machine_safety():
    check = checker("a")
    write(check, "a", entry(1, 1, b"p"))
    check.commit("a", 1, 1)
    with broken(STATE_MACHINE_SAFETY):
        check.apply("a", entry(1, 1, b"q"), 0)


def test_applying_out_of_order_or_uncommitted_breaks_state_machine_safety():
    check = checker("a")
    write(check, "a", entry(1, 1), entry(2, 1))
    check.commit("a", 1, 1)
    with broken(STATE_MACHINE_SAFETY):
        check.apply("a", entry(2, 1), 0)
    check.apply("a", entry(1, 1), 0)
    with broken(STATE_MACHINE_SAFETY):
        check.apply("a", entry(2, 1), 1)


def test_restoring_an_older_snapshot_breaks_state_machine_safety():
    check = checker("a")
    snapshot = Snapshot(index=3, term=1, conf=ConfState(voters=("a",)))
    with broken(STATE_MACHINE_SAFETY):
        check.restore("a", snapshot, {}, applied_before=5)


def test_commit_beyond_the_log_breaks_the_ready_contract():
    check = checker("a")
    write(check, "a", entry(1, 1))
    with broken(READY_CONTRACT):
        check.commit("a", 2, 1)
    with broken(READY_CONTRACT):
        write(check, "a", entry(3, 1))


def test_received_snapshot_keeps_the_log_after_it_only_when_it_matches():
    mirror = LogMirror(entries=(entry(1, 1), entry(2, 1), entry(3, 2)))
    mirror.install_snapshot(Snapshot(index=2, term=1, conf=ConfState()))
    assert (mirror.snapshot_index, mirror.last_index, mirror.term_at(3)) == (2, 3, 2)
    mirror.install_snapshot(Snapshot(index=3, term=5, conf=ConfState()))
    assert (mirror.snapshot_index, mirror.last_index, mirror.entries) == (3, 3, [])


def test_a_restart_from_storage_that_lost_writes_breaks_durability():
    check = checker("a")
    check.persist("a", is_leader=False, hard_state=HardState(term=4, voted_for="a"), snapshot=None, entries=(entry(1, 4),))
    check.check_restart("a", HardState(term=4, voted_for="a"), None, (entry(1, 4),))
    with broken(DURABILITY):
        check.check_restart("a", HardState(term=3), None, (entry(1, 4),))
    with broken(DURABILITY):
        check.check_restart("a", HardState(term=4, voted_for="a"), None, ())
