"""RaftLog: the log view above a compaction point."""

import pytest

from actors.raft.log import ENTRY_OVERHEAD_BYTES, InvariantViolation, RaftLog
from actors.raft.messages import Entry


def run(first: int, terms: list[int], size: int = 0) -> list[Entry]:
    """Entries from index `first` with the given terms and `size`-byte payloads."""
    return [Entry(index=first + k, term=term, data=b"x" * size) for k, term in enumerate(terms)]


def test_empty_log_has_the_zero_sentinel():
    log = RaftLog()
    assert (log.first_index, log.last_index, log.last_term) == (1, 0, 0)
    assert log.term(0) == 0
    assert log.term(1) is None


def test_terms_are_known_from_the_compaction_point_to_the_last_entry():
    log = RaftLog(snapshot_index=10, snapshot_term=2, entries=run(11, [2, 3, 3]))
    assert (log.first_index, log.last_index, log.last_term) == (11, 13, 3)
    assert [log.term(i) for i in (9, 10, 11, 13, 14)] == [None, 2, 2, 3, None]
    assert log.match_term(12, 3) and not log.match_term(12, 2) and not log.match_term(9, 1)


def test_append_must_continue_the_log_with_non_decreasing_terms():
    log = RaftLog(entries=run(1, [1, 2]))
    with pytest.raises(InvariantViolation):
        log.append(run(4, [2]))
    with pytest.raises(InvariantViolation):
        log.append(run(3, [1]))
    log.append(run(3, [2, 5]))
    assert log.last_index == 4


def test_is_up_to_date_compares_last_term_then_length():
    log = RaftLog(entries=run(1, [1, 2, 2]))
    assert log.is_up_to_date(1, 3)
    assert log.is_up_to_date(3, 2)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


def test_slice_is_capped_by_bytes_with_an_allowance_per_entry_but_never_empty():
    log = RaftLog(entries=run(1, [1] * 10, size=100))
    two = 2 * (100 + ENTRY_OVERHEAD_BYTES)
    assert [e.index for e in log.slice(3, 11, max_bytes=two)] == [3, 4]
    assert [e.index for e in log.slice(3, 11, max_bytes=two - 1)] == [3]
    assert [e.index for e in log.slice(3, 11, max_bytes=10)] == [3]
    assert len(log.slice(1, 11)) == 10
    assert log.slice(5, 5) == ()
    with pytest.raises(InvariantViolation):
        log.slice(0, 3)
    with pytest.raises(InvariantViolation):
        log.slice(5, 12)


def test_find_conflict_skips_what_the_log_holds_and_what_is_compacted():
    log = RaftLog(snapshot_index=2, snapshot_term=1, entries=run(3, [1, 2, 2]))
    assert log.find_conflict(run(1, [1, 1, 1, 2])) is None
    assert log.find_conflict(run(4, [2, 3])) == 5
    assert log.find_conflict(run(5, [2, 2])) == 6


def test_truncate_drops_a_suffix_but_never_reaches_the_compaction_point():
    log = RaftLog(snapshot_index=2, snapshot_term=1, entries=run(3, [1, 2, 2]))
    log.truncate(4)
    assert log.last_index == 3
    with pytest.raises(InvariantViolation):
        log.truncate(2)


def test_compact_moves_the_offset_and_keeps_the_term_at_it():
    log = RaftLog(entries=run(1, [1, 1, 2, 3]))
    log.compact(3)
    assert (log.snapshot_index, log.snapshot_term, log.first_index, log.last_index) == (3, 2, 4, 4)
    assert log.term(3) == 2 and log.term(2) is None
    with pytest.raises(InvariantViolation):
        log.compact(2)
    with pytest.raises(InvariantViolation):
        log.compact(9)


def test_restore_replaces_the_log_by_a_snapshot_point():
    log = RaftLog(entries=run(1, [1, 1, 2]))
    log.restore(7, 4)
    assert (log.first_index, log.last_index, log.last_term) == (8, 7, 4)
    with pytest.raises(InvariantViolation):
        log.restore(5, 4)


def test_first_index_of_term_finds_the_start_of_the_run_above_a_floor():
    log = RaftLog(entries=run(1, [1, 1, 2, 2, 2, 4]))
    assert log.first_index_of_term(5, floor=1) == 3
    assert log.first_index_of_term(5, floor=4) == 4
    assert log.first_index_of_term(6, floor=1) == 6
    compacted = RaftLog(snapshot_index=3, snapshot_term=2, entries=run(4, [2, 2]))
    assert compacted.first_index_of_term(5, floor=1) == 4


def test_last_index_with_term_at_most_searches_below_a_bound():
    log = RaftLog(entries=run(1, [1, 1, 3, 3, 5]))
    assert log.last_index_with_term_at_most(3, hi=5) == 4
    assert log.last_index_with_term_at_most(2, hi=5) == 2
    assert log.last_index_with_term_at_most(3, hi=3) == 3
    assert log.last_index_with_term_at_most(0, hi=5) == 0
    compacted = RaftLog(snapshot_index=2, snapshot_term=4, entries=run(3, [5]))
    assert compacted.last_index_with_term_at_most(3, hi=3) is None
    assert compacted.last_index_with_term_at_most(4, hi=3) == 2
