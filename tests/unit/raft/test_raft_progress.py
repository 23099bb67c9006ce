"""Progress: the leader's view of one follower, driven event by event
(docs/DESIGN.md section 2; etcd-io/raft's tracker/progress.go)."""

from actors.raft.progress import PROBE, REPLICATE, SNAPSHOT, Progress

HEARTBEAT = 2


def paused(progress: Progress, last_index: int) -> bool:
    return progress.is_paused(last_index=last_index, heartbeat_ticks=HEARTBEAT)


def replicating(match: int) -> Progress:
    """A follower that answered a probe at `match`."""
    progress = Progress(next=match + 1)
    progress.maybe_update(match)
    return progress


def test_a_new_follower_is_probed_at_once_where_next_points():
    progress = Progress(next=11)
    assert progress.state == PROBE and not paused(progress, last_index=10)
    assert progress.owed(first_index=1, last_index=10) == "heartbeat"
    assert progress.sent_heartbeat(first_index=1, last_index=10) == 10
    assert paused(progress, last_index=10)  # nothing more until a heartbeat is due


def test_a_scheduled_probe_asks_about_the_leaders_last_entry():
    progress = Progress(next=4, probe_due=False)
    for _ in range(HEARTBEAT - 1):
        progress.tick(last_index=10, heartbeat_ticks=HEARTBEAT)
        assert paused(progress, last_index=10)
    progress.tick(last_index=10, heartbeat_ticks=HEARTBEAT)
    assert not paused(progress, last_index=10)
    assert progress.sent_heartbeat(first_index=1, last_index=10) == 10
    assert progress.idle_ticks == 0


def test_a_successful_answer_moves_probe_to_replicate_and_says_whether_match_moved():
    progress = Progress(next=11)
    assert progress.maybe_update(10) is True
    assert (progress.state, progress.match, progress.next) == (REPLICATE, 10, 11)
    assert progress.maybe_update(10) is False
    assert progress.maybe_update(7) is False and progress.match == 10  # an old answer


def test_replicate_sends_new_entries_one_message_at_a_time():
    progress = replicating(10)
    assert paused(progress, last_index=10)  # nothing new, no heartbeat due
    assert not paused(progress, last_index=12)
    assert progress.owed(first_index=1, last_index=12) == "entries"
    progress.sent_data(12)
    assert paused(progress, last_index=15)  # the slot is taken
    progress.maybe_update(11)  # an earlier heartbeat's answer does not free it
    assert paused(progress, last_index=15)
    assert progress.maybe_update(12) is True
    assert (progress.next, paused(progress, last_index=15)) == (13, False)


def test_an_unanswered_message_times_out_into_probe():
    progress = replicating(10)
    progress.sent_data(12)
    for _ in range(2 * HEARTBEAT - 1):
        progress.tick(last_index=14, heartbeat_ticks=HEARTBEAT)
    assert progress.state == REPLICATE and progress.inflight
    progress.tick(last_index=14, heartbeat_ticks=HEARTBEAT)
    assert (progress.state, progress.inflight, progress.next) == (PROBE, False, 15)


def test_a_rejection_backs_off_strictly_but_never_below_match():
    progress = replicating(3)
    progress.sent_data(9)
    progress.reject(target=6, first_index=1)
    assert (progress.state, progress.next, progress.inflight) == (PROBE, 4, False)  # min(6, 4 - 1), floor 4
    progress = Progress(next=11, match=2)
    progress.reject(target=6, first_index=1)
    assert progress.next == 6 and progress.probe_due and not progress.repair
    assert progress.sent_heartbeat(first_index=1, last_index=10) == 5  # probes at once where it backed off


def test_a_rejection_below_the_compaction_point_sends_the_snapshot():
    progress = Progress(next=11)
    progress.reject(target=3, first_index=8)
    assert progress.repair and not progress.probe_due
    assert progress.owed(first_index=8, last_index=10) == "snapshot_chunk"


def test_a_repair_request_is_answered_at_once_unless_a_message_is_in_flight():
    progress = replicating(3)
    progress.sent_data(9)
    progress.repair_requested(held_last_index=5)
    assert not progress.repair  # what is in flight answers it
    progress = Progress(next=11, match=2, probe_due=False)
    progress.repair_requested(held_last_index=5)
    assert (progress.next, progress.repair) == (6, True)
    assert progress.owed(first_index=1, last_index=10) == "entries"


def test_a_snapshot_goes_chunk_by_chunk_until_it_is_acknowledged_whole():
    progress = replicating(3)
    assert progress.owed(first_index=8, last_index=10) == "snapshot_chunk"  # entries from 4 were compacted
    progress.become_snapshot(7)
    progress.sent_data(7)
    assert progress.state == SNAPSHOT and paused(progress, last_index=10)
    progress.snapshot_chunk_acked(100)
    assert (progress.snapshot_offset, paused(progress, last_index=10)) == (100, False)
    progress.snapshot_chunk_acked(100)  # a repeated answer changes nothing
    assert progress.snapshot_offset == 100
    progress.become_snapshot(7)  # the same snapshot resumes where it was acknowledged
    assert progress.snapshot_offset == 100
    progress.sent_data(7)
    progress.snapshot_chunk_refused(50)  # it restarted and holds less
    assert (progress.snapshot_offset, progress.repair, progress.inflight) == (50, True, False)
    progress.become_snapshot(9)  # a newer snapshot starts over
    assert (progress.snapshot_index, progress.snapshot_offset) == (9, 0)
    progress.sent_data(9)
    assert progress.maybe_update(9) is True
    assert (progress.state, progress.snapshot_index, progress.next) == (REPLICATE, 0, 10)


def test_a_snapshot_transfer_paused_by_a_lost_chunk_resumes_where_it_stopped():
    progress = replicating(3)
    progress.become_snapshot(7)
    progress.sent_data(7)
    progress.snapshot_chunk_acked(100)
    progress.sent_data(7)
    for _ in range(2 * HEARTBEAT):
        progress.tick(last_index=10, heartbeat_ticks=HEARTBEAT)
    assert (progress.state, progress.snapshot_index, progress.snapshot_offset) == (PROBE, 7, 100)
    assert progress.owed(first_index=8, last_index=10) == "heartbeat"
    progress.maybe_update(3)  # it answers the probe, still short of the snapshot
    assert progress.state == SNAPSHOT and progress.snapshot_offset == 100


def test_recent_activity_is_counted_per_check_quorum_window():
    progress = Progress(next=1)
    progress.mark_recent_active()
    assert progress.recent_active
    progress.reset_recent_active()
    assert not progress.recent_active
