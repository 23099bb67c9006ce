"""ClerkSession, the clerk's decisions around ClerkCore (docs/DESIGN.md
section 4): requests before the first map, timestamp blocks, ticks counted
from real time, Moved re-runs and their budget, replies and their hops. Time
is the `now` each call is given; the test plays application, coordinator and
servers."""

import dataclasses
import random

from actors.messages import ClerkCommit, ClerkRead, CommitOnePhaseResult, ReadKeysResult, TimestampReply
from clerk.session import AskTimestamps, ClerkSession, Reply, RerunDue, Send, SessionConfig, TickDue, WakeAfter
from tests.unit.clerk.clerk_helpers import (
    MOVED_SLOT,
    MOVED_SLOTS,
    absent,
    answer,
    key_in_slot,
    keys_in,
    map_update,
    of_kind,
    refuse,
    rerun_wakeups,
)

DEFAULTS = SessionConfig(clerk="k")
ALWAYS_FRESH = float("inf")


def mapped_session(**config) -> ClerkSession:
    """A session that has its first map (epoch 1) at time 0."""
    session = ClerkSession(SessionConfig(clerk="k", **config), random.Random(7))
    assert session.on_map(map_update(1), 0.0) == []
    return session


def stamped_session(ts: int = 100, count: int = 16, **config) -> ClerkSession:
    """A mapped session granted `count` timestamps from `ts` at time 0."""
    session = mapped_session(**config)
    assert session.on_timestamps(TimestampReply(ts=ts, count=count), 0.0) == []
    return session


def commit(key: str, *, req: int = 1) -> ClerkCommit:
    return ClerkCommit(req=req, reads={}, writes={key: "v"})


def tick_wakeups(actions: list) -> list[WakeAfter]:
    return [action for action in of_kind(actions, WakeAfter) if isinstance(action.wakeup, TickDue)]


def sent_ops(actions: list) -> list:
    return [request.op for send in of_kind(actions, Send) for request in send.batch.requests]


def commit_one_phase(session: ClerkSession, send: Send, now: float, *, committed: bool = True, reason: str = ""):
    """The server decides every CommitOnePhase of `send`; returns the session's actions."""
    results = {
        request.req: CommitOnePhaseResult(txid=request.op.txid, committed=committed, reason=reason)
        for request in send.batch.requests
    }
    return session.on_server_reply(answer(send.batch, send.address, results), now)


# -- the first map ----------------------------------------------------------------


def test_requests_before_the_first_map_wait_for_it():
    session = ClerkSession(DEFAULTS, random.Random(7))
    key = keys_in("c2")[0]
    assert session.on_app_request(ClerkRead(req=1, keys=(key,)), "app", 0.0) == []
    assert session.on_app_request(commit(key, req=2), "app", 0.0) == []

    actions = session.on_map(map_update(1), 0.5)
    assert [(send.address, send.batch.requests[0].op.keys) for send in of_kind(actions, Send)] == [("c2-r0", (key,))]
    assert of_kind(actions, AskTimestamps) == [AskTimestamps(count=DEFAULTS.timestamp_block)]
    assert [wake.seconds for wake in tick_wakeups(actions)] == [DEFAULTS.wake_seconds]


def test_reads_queued_before_the_first_map_each_count_their_own_hops():
    session = ClerkSession(DEFAULTS, random.Random(7))
    keys = keys_in("c2", 2)
    for req, key in enumerate(keys, start=1):
        session.on_app_request(ClerkRead(req=req, keys=(key,)), "app", 0.0)
    replies = []
    for send in of_kind(session.on_map(map_update(1), 0.0), Send):
        [request] = send.batch.requests
        key = request.op.keys[0]
        result = ReadKeysResult(values=(absent(key),))
        replies += of_kind(session.on_server_reply(answer(send.batch, send.address, {request.req: result}), 0.1), Reply)
    # The ask and one unlogged round trip each.
    assert sorted((answered.reply.req, answered.reply.hops) for answered in replies) == [(1, 4), (2, 4)]


def test_a_batch_for_a_replica_without_an_address_is_not_sent_and_the_core_resends_it():
    session = ClerkSession(DEFAULTS, random.Random(7))
    session.on_map(dataclasses.replace(map_update(1), addresses={}), 0.0)
    key = keys_in("c2")[0]
    assert of_kind(session.on_app_request(ClerkRead(req=1, keys=(key,)), "app", 0.0), Send) == []
    session.on_map(map_update(1), 0.1)
    # The core's request timeout (10 ticks of 50 ms) sends it again, now to an address.
    [resent] = of_kind(session.tick(0.5), Send)
    assert resent.batch.requests[0].op.keys == (key,)


# -- ticks ----------------------------------------------------------------------------


def test_a_busy_session_asks_for_one_tick_at_a_time_and_an_idle_one_for_none():
    session = mapped_session()
    first, second = keys_in("c2", 2)
    [send] = of_kind(actions := session.on_app_request(ClerkRead(req=1, keys=(first,)), "app", 0.0), Send)
    assert tick_wakeups(actions) == [WakeAfter(DEFAULTS.wake_seconds, TickDue())]
    [other] = of_kind(actions := session.on_app_request(ClerkRead(req=2, keys=(second,)), "app", 0.1), Send)
    assert tick_wakeups(actions) == []
    assert len(tick_wakeups(session.tick(0.2))) == 1

    for done in (send, other):
        [request] = done.batch.requests
        key = request.op.keys[0]
        session.on_server_reply(
            answer(done.batch, done.address, {request.req: ReadKeysResult(values=(absent(key),))}), 0.3
        )
    assert session.tick(0.4) == []


def test_ticks_count_the_real_time_elapsed_since_the_tick_was_asked_for():
    session = mapped_session()
    key = keys_in("c2")[0]
    [send] = of_kind(session.on_app_request(ClerkRead(req=1, keys=(key,)), "app", 0.0), Send)
    # 4 ticks: within the 10-tick request timeout.
    assert of_kind(session.tick(0.2), Send) == []
    # 8 more: past it, so the read goes to another member.
    [resent] = of_kind(session.tick(0.6), Send)
    assert resent.address != send.address and resent.batch.requests[0].op.keys == (key,)


def test_a_paused_clerk_sees_its_outcome_budget_run_out():
    session = stamped_session()
    [send] = of_kind(session.on_app_request(commit(keys_in("c1")[0]), "app", 0.0), Send)
    # One wakeup after a pause longer than the whole budget.
    actions = session.tick(DEFAULTS.outcome_budget_seconds + 10.0)
    [answered] = of_kind(actions, Reply)
    assert answered.asker == "app" and answered.reply.outcome == "unavailable"
    assert of_kind(actions, Send) == []


def test_a_tick_nobody_asked_for_does_nothing():
    session = mapped_session()
    assert session.tick(5.0) == []


# -- timestamps -----------------------------------------------------------------------


def test_commits_take_consecutive_timestamps_from_the_block_then_ask_for_more():
    session = stamped_session(ts=100, count=2, timestamp_fresh_seconds=ALWAYS_FRESH)
    keys = keys_in("c1", 3)
    stamps = [
        op.ts
        for index, key in enumerate(keys)
        for op in sent_ops(session.on_app_request(commit(key, req=index), "app", 0.0))
    ]
    assert stamps == [100, 101]
    actions = session.on_timestamps(TimestampReply(ts=200, count=16), 0.1)
    assert [op.ts for op in sent_ops(actions)] == [200]


def test_a_block_older_than_its_freshness_is_not_used():
    session = stamped_session(ts=100, count=16)
    actions = session.on_app_request(commit(keys_in("c1")[0]), "app", DEFAULTS.timestamp_fresh_seconds)
    assert of_kind(actions, Send) == [] and of_kind(actions, AskTimestamps) == [AskTimestamps(count=16)]
    assert [op.ts for op in sent_ops(session.on_timestamps(TimestampReply(ts=300, count=16), 0.2))] == [300]


def test_an_unanswered_timestamp_request_is_sent_again_after_the_retry_wait_for_every_commit_waiting():
    session = mapped_session()
    keys = keys_in("c1", 20)
    asked = []
    for index, key in enumerate(keys):
        asked += of_kind(session.on_app_request(commit(key, req=index), "app", 0.01 * index), AskTimestamps)
    assert asked == [AskTimestamps(count=16)]
    assert of_kind(session.tick(DEFAULTS.timestamp_retry_seconds), AskTimestamps) == []
    assert of_kind(session.tick(DEFAULTS.timestamp_retry_seconds + 0.2), AskTimestamps) == [AskTimestamps(count=20)]


def test_a_commit_that_waited_for_timestamps_counts_their_round_trip_in_its_hops():
    session = mapped_session(timestamp_fresh_seconds=ALWAYS_FRESH)
    waited, stamped = keys_in("c1", 2)
    session.on_app_request(commit(waited, req=1), "app", 0.0)
    [first] = of_kind(session.on_timestamps(TimestampReply(ts=100, count=16), 0.0), Send)
    [second] = of_kind(session.on_app_request(commit(stamped, req=2), "app", 0.0), Send)
    replies = of_kind(commit_one_phase(session, first, 0.1) + commit_one_phase(session, second, 0.1), Reply)
    # The ask, one logged phase, and for the first the timestamp round trip.
    assert [(answered.reply.req, answered.reply.hops) for answered in replies] == [(1, 2 + 2 + 4), (2, 2 + 4)]


# -- replies ----------------------------------------------------------------------------


def test_an_aborted_commit_is_answered_aborted_with_its_txid_and_reason():
    session = stamped_session()
    [send] = of_kind(session.on_app_request(commit(keys_in("c1")[0], req=9), "app", 0.0), Send)
    [answered] = of_kind(commit_one_phase(session, send, 0.1, committed=False, reason="read k0 is stale"), Reply)
    assert answered.asker == "app"
    assert (answered.reply.req, answered.reply.outcome, answered.reply.txid) == (9, "aborted", "k-1")
    assert answered.reply.reason == "c1: read k0 is stale"


# -- Moved re-runs -------------------------------------------------------------------------


def test_a_moved_commit_runs_again_under_numbered_txids_until_its_budget_is_spent():
    session = stamped_session(timestamp_fresh_seconds=ALWAYS_FRESH)
    [send] = of_kind(session.on_app_request(commit(key_in_slot(MOVED_SLOT)), "app", 0.0), Send)
    assert sent_ops([send])[0].txid == "k-1"
    txids = []
    for now in (0.0, 5.0, 10.0):
        actions = session.on_server_reply(refuse(send.address, send.batch), now)
        [wakeup] = rerun_wakeups(actions)
        assert of_kind(actions, WakeAfter) == [WakeAfter(DEFAULTS.moved_retry_seconds, wakeup)]
        [send] = of_kind(session.on_rerun_due(wakeup, now + DEFAULTS.moved_retry_seconds), Send)
        txids.append(sent_ops([send])[0].txid)
    assert txids == ["k-1.1", "k-1.2", "k-1.3"]

    actions = session.on_server_reply(refuse(send.address, send.batch), DEFAULTS.moved_budget_seconds)
    [answered] = of_kind(actions, Reply)
    assert answered.reply.outcome == "unavailable" and answered.reply.reason.startswith("slots kept moving for 20.0 s")
    # A wakeup for an operation already answered is stale.
    assert session.on_rerun_due(RerunDue(op=1, reruns=3), 21.0) == []


def test_a_newer_map_runs_every_moved_commit_waiting_for_it_and_a_map_no_newer_runs_none():
    session = stamped_session(timestamp_fresh_seconds=ALWAYS_FRESH)
    for req, prefix in enumerate(("a", "b"), start=1):
        [send] = of_kind(
            session.on_app_request(commit(key_in_slot(MOVED_SLOT, prefix=prefix), req=req), "app", 0.0), Send
        )
        session.on_server_reply(refuse(send.address, send.batch), 0.0)
    assert of_kind(session.on_map(map_update(1), 0.05), Send) == []

    # Both run again in one batch to the new owner.
    [again] = of_kind(session.on_map(map_update(2, MOVED_SLOTS), 0.05), Send)
    assert again.address == "c3-r0" and [op.txid for op in sent_ops([again])] == ["k-1.1", "k-2.1"]
