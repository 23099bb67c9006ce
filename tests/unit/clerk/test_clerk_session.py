"""ClerkSession, the clerk's decisions around ClerkCore (docs/DESIGN.md
section 4): requests before the first map, timestamps, ticks counted
from real time, Moved re-runs and their budget, replies and their hops. Time
is the `now` each call is given; the test plays application, coordinator and
servers."""

import dataclasses
import random

import pytest

from actors.messages import ClerkCommit, ClerkGet, ClerkRead, CommitOnePhaseResult, LoggedReadResult, ReadKeysResult
from actors.metrics import DURATION_BUCKETS
from clerk.session import AnswerDue, ClerkSession, Reply, RerunDue, Send, SessionConfig, TickDue, WakeAfter
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


def mapped_session(**config) -> ClerkSession:
    """A session that has its first map (epoch 1) at time 0."""
    session = ClerkSession(SessionConfig(clerk="k", **config), random.Random(7))
    assert session.on_map(map_update(1), 0.0) == []
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
    # The read, and the commit (it needs no timestamp round trip), to c2's leader at once.
    sends = of_kind(actions, Send)
    [read, write] = sent_ops(sends)
    assert {send.address for send in sends} == {"c2-r0"} and (read.keys, write.writes) == ((key,), {key: "v"})
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
    session = mapped_session()
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


def test_commits_take_unix_microseconds_from_the_clock_strictly_increasing():
    session = mapped_session(wall_offset=1_000.0)
    keys = keys_in("c1", 3)
    stamps = [op.ts for index, key in enumerate(keys)
              for op in sent_ops(session.on_app_request(commit(key, req=index), "app", 0.5))]
    # One clock reading for all three: the later ones go one microsecond up.
    assert stamps == [1_000_500_000, 1_000_500_001, 1_000_500_002]
    [op] = sent_ops(session.on_app_request(commit(keys[0], req=9), "app", 2.0))
    assert op.ts == 1_002_000_000


def test_a_commit_takes_a_timestamp_above_every_version_it_read_whatever_the_clock_says():
    session = mapped_session(wall_offset=0.0)
    key = keys_in("c1")[0]
    read = ClerkCommit(req=1, reads={key: (5_000_000_000, "k9-1")}, writes={key: "v"})
    [op] = sent_ops(session.on_app_request(read, "app", 1.0))
    assert op.ts == 5_000_000_001


def test_a_commit_is_sent_at_once_and_costs_no_round_trip_for_its_timestamp():
    session = mapped_session()
    [send] = of_kind(session.on_app_request(commit(keys_in("c1")[0]), "app", 0.0), Send)
    [answered] = of_kind(commit_one_phase(session, send, 0.1), Reply)
    # The ask and one logged phase.
    assert answered.reply.hops == 2 + 4


# -- replies ----------------------------------------------------------------------------


def test_an_aborted_commit_is_answered_aborted_with_its_txid_and_reason():
    session = mapped_session()
    [send] = of_kind(session.on_app_request(commit(keys_in("c1")[0], req=9), "app", 0.0), Send)
    [answered] = of_kind(commit_one_phase(session, send, 0.1, committed=False, reason="read k0 is stale"), Reply)
    assert answered.asker == "app"
    assert (answered.reply.req, answered.reply.outcome, answered.reply.txid) == (9, "aborted", "k-1")
    assert answered.reply.reason == "c1: read k0 is stale"


# -- gets -------------------------------------------------------------------------------------


def logged_read(session: ClerkSession, send: Send, now: float, *, ok: bool = True, reason: str = "",
                from_lease: bool = False):
    """The server answers every LoggedRead of `send` (keys absent); returns the session's actions."""
    results = {
        request.req: LoggedReadResult(txid=request.op.txid, ok=ok, reason=reason,
                                      values=tuple(absent(key) for key in request.op.keys) if ok else (),
                                      from_lease=from_lease)
        for request in send.batch.requests
    }
    return session.on_server_reply(answer(send.batch, send.address, results), now)


def test_a_get_is_one_logged_read_under_a_fresh_timestamp_held_for_the_clock_like_a_commit():
    session = ClerkSession(SessionConfig(clerk="k", wall_offset=100.0), random.Random(7))
    session.on_map(dataclasses.replace(map_update(1), max_clock_offset=0.01), 0.0)
    key = keys_in("c1")[0]
    [send] = of_kind(session.on_app_request(ClerkGet(req=3, keys=(key,)), "app", 0.0), Send)
    [read] = sent_ops([send])
    assert (read.txid, read.ts, read.keys) == ("k-1", 100_000_000, (key,))
    actions = logged_read(session, send, 0.004)
    assert of_kind(actions, Reply) == []
    [wake] = [action for action in of_kind(actions, WakeAfter) if isinstance(action.wakeup, AnswerDue)]
    [answered] = of_kind(session.on_answer_due(wake.wakeup, 0.0101), Reply)
    reply = answered.reply
    assert (reply.req, reply.outcome, reply.txid, reply.values, reply.hops) == (3, "ok", "k-1", {key: absent(key)}, 6)


def test_a_get_answered_from_the_leaders_lease_costs_no_log_round():
    session = mapped_session()
    [send] = of_kind(session.on_app_request(ClerkGet(req=1, keys=(keys_in("c1")[0],)), "app", 0.0), Send)
    [answered] = of_kind(logged_read(session, send, 0.1, from_lease=True), Reply)
    assert (answered.reply.outcome, answered.reply.hops) == ("ok", 2 + 2)


def test_a_get_refused_or_moved_is_answered_aborted_for_the_application_to_read_again():
    session = mapped_session()
    [send] = of_kind(session.on_app_request(ClerkGet(req=1, keys=(keys_in("c1")[0],)), "app", 0.0), Send)
    [answered] = of_kind(logged_read(session, send, 0.1, ok=False, reason="rule 2: k0 prepared below"), Reply)
    assert (answered.reply.outcome, answered.reply.reason) == ("aborted", "c1: rule 2: k0 prepared below")

    [send] = of_kind(session.on_app_request(ClerkGet(req=2, keys=(key_in_slot(MOVED_SLOT),)), "app", 0.2), Send)
    [answered] = of_kind(session.on_server_reply(refuse(send.address, send.batch), 0.3), Reply)
    assert (answered.reply.outcome, answered.reply.reason) == ("aborted", "c1: slot 0 moved away")
    assert session.tick(0.5) == []  # no re-run: the application reads it again


# -- Moved re-runs -------------------------------------------------------------------------


def test_a_moved_commit_runs_again_under_numbered_txids_until_its_budget_is_spent():
    session = mapped_session()
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
    session = mapped_session()
    for req, prefix in enumerate(("a", "b"), start=1):
        [send] = of_kind(
            session.on_app_request(commit(key_in_slot(MOVED_SLOT, prefix=prefix), req=req), "app", 0.0), Send
        )
        session.on_server_reply(refuse(send.address, send.batch), 0.0)
    assert of_kind(session.on_map(map_update(1), 0.05), Send) == []

    # Both run again in one batch to the new owner.
    [again] = of_kind(session.on_map(map_update(2, MOVED_SLOTS), 0.05), Send)
    assert again.address == "c3-r0" and [op.txid for op in sent_ops([again])] == ["k-1.1", "k-2.1"]


def test_a_commit_is_answered_only_once_the_clock_passed_its_timestamp_by_the_largest_offset():
    session = ClerkSession(SessionConfig(clerk="k", wall_offset=100.0), random.Random(7))
    session.on_map(dataclasses.replace(map_update(1), max_clock_offset=0.01), 0.0)
    [send] = of_kind(session.on_app_request(commit(keys_in("c1")[0]), "app", 0.0), Send)
    assert sent_ops([send])[0].ts == 100_000_000
    # Committed 4 ms later: held 6 ms more, so no clock 10 ms behind reads a lower time after the answer.
    actions = commit_one_phase(session, send, 0.004)
    assert of_kind(actions, Reply) == []
    [wake] = [action for action in of_kind(actions, WakeAfter) if isinstance(action.wakeup, AnswerDue)]
    assert abs(wake.seconds - 0.006) < 1e-5
    [answered] = of_kind(session.on_answer_due(wake.wakeup, 0.0101), Reply)
    assert answered.reply.outcome == "ok"
    assert session.on_answer_due(wake.wakeup, 0.02) == []


def test_with_one_clock_a_commit_is_answered_as_soon_as_it_is_done():
    session = mapped_session(wall_offset=100.0)
    [send] = of_kind(session.on_app_request(commit(keys_in("c1")[0]), "app", 0.0), Send)
    assert len(of_kind(commit_one_phase(session, send, 0.001), Reply)) == 1


# -- metrics ---------------------------------------------------------------------------------


def test_every_answer_counts_its_operation_outcome_duration_and_hops():
    session = mapped_session()
    [send] = of_kind(session.on_app_request(commit(keys_in("c1")[0], req=1), "app", 1.0), Send)
    commit_one_phase(session, send, 1.004, committed=False, reason="read k0 is stale")
    key = keys_in("c2")[0]
    [send] = of_kind(session.on_app_request(ClerkRead(req=2, keys=(key,)), "app", 2.0), Send)
    [request] = send.batch.requests
    session.on_server_reply(answer(send.batch, send.address, {request.req: ReadKeysResult(values=(absent(key),))}),
                            2.3)
    metrics = session.metrics
    assert metrics.value("raftline_client_operations_total", operation="commit", outcome="aborted") == 1
    assert metrics.value("raftline_client_operations_total", operation="read", outcome="ok") == 1
    assert metrics.value("raftline_client_hops_total", operation="commit") == 2 + 4
    assert metrics.value("raftline_client_hops_total", operation="read") == 2 + 2
    durations = {series["labels"]["operation"]: series
                 for series in metrics.snapshot()["raftline_client_operation_duration_seconds"]}
    assert durations["commit"]["count"] == 1 and durations["commit"]["sum"] == pytest.approx(0.004)
    assert durations["read"]["buckets"][DURATION_BUCKETS.index(0.5)] == 1  # 0.3 s: above 0.25, at most 0.5
    assert "raftline_client_retries_total" not in metrics.snapshot()


def test_requests_sent_again_and_moved_re_runs_count_as_retries():
    session = ClerkSession(DEFAULTS, random.Random(7))
    session.on_map(dataclasses.replace(map_update(1), addresses={}), 0.0)
    key = keys_in("c2")[0]
    session.on_app_request(ClerkRead(req=1, keys=(key,)), "app", 0.0)
    session.on_map(map_update(1), 0.1)
    [resent] = of_kind(session.tick(0.5), Send)
    [request] = resent.batch.requests
    session.on_server_reply(answer(resent.batch, resent.address, {request.req: ReadKeysResult(values=(absent(key),))}),
                            0.6)
    assert session.metrics.value("raftline_client_retries_total", operation="read") == 1

    [send] = of_kind(session.on_app_request(commit(key_in_slot(MOVED_SLOT), req=2), "app", 1.0), Send)
    [wakeup] = rerun_wakeups(session.on_server_reply(refuse(send.address, send.batch), 1.0))
    [send] = of_kind(session.on_rerun_due(wakeup, 1.0 + DEFAULTS.moved_retry_seconds), Send)
    commit_one_phase(session, send, 1.2)
    assert session.metrics.value("raftline_client_retries_total", operation="commit") == 1
    assert session.metrics.value("raftline_client_operations_total", operation="commit", outcome="ok") == 1
