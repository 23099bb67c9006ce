"""The clerk following slots that move (docs/DESIGN.md section 6): ClerkCore
with hand-fed WrongEpoch replies, and ClerkSession's re-runs of Moved commits
driven by hand, the test playing application, coordinator and servers."""

import random

import pytest

from actors.messages import (
    TXN_ABORTED,
    TXN_COMMITTED,
    ZERO_STAMP,
    ClerkCommit,
    ClerkRead,
    ClientBatch,
    ClientRequest,
    CommitOnePhase,
    CommitOnePhaseResult,
    Decide,
    DecideResult,
    LoggedRead,
    PrepareResult,
    ReadCheck,
    ReadKeys,
    ReadKeysResult,
    WrongEpoch,
)
from clerk.core import Aborted, Committed, Failed, Moved, ReadDone
from clerk.session import ClerkSession, CriticalPath, Reply, Send, SessionConfig
from tests.unit.clerk.clerk_helpers import (
    MOVED_SLOT,
    MOVED_SLOTS,
    Net,
    absent,
    answer,
    clusters,
    key_in_slot,
    keys_in,
    make_clerk,
    map_update,
    of_kind,
    ops_of,
    other_c1_key,
    refuse,
    rerun_wakeups,
    routing,
)

# Slot 0 moves from c1 to c3 (epoch 2).










# -- reads ---------------------------------------------------------------------


def test_a_refused_read_waits_for_a_newer_map_then_goes_to_the_new_owner_keeping_other_answers():
    moving, staying, elsewhere = key_in_slot(MOVED_SLOT), other_c1_key(), keys_in("c2")[0]
    clerk = make_clerk()
    clerk.read(1, [moving, staying, elsewhere])
    sent = dict(clerk.take_output())
    assert sent["c1-r0"].requests[0].op == ReadKeys(keys=(moving, staying))
    [elsewhere_request] = sent["c2-r0"].requests
    clerk.receive(answer(sent["c2-r0"], "c2-r0", {elsewhere_request.req: ReadKeysResult(values=(absent(elsewhere),))}))

    clerk.receive(refuse("c1-r0", sent["c1-r0"]))
    # The key of a slot c1 still serves goes again at once; the refused one
    # waits, since this map would send it to c1 again.
    [(replica, again)] = clerk.take_output()
    assert (replica, again.requests[0].op) == ("c1-r0", ReadKeys(keys=(staying,)))
    clerk.receive(answer(again, replica, {again.requests[0].req: ReadKeysResult(values=(absent(staying),))}))
    assert clerk.take_completions() == []

    clerk.update_routing(routing(epoch=2, slots=MOVED_SLOTS))
    [(replica, rerouted)] = clerk.take_output()
    assert (replica, rerouted.epoch, rerouted.requests[0].op) == ("c3-r0", 2, ReadKeys(keys=(moving,)))
    clerk.receive(answer(rerouted, replica, {rerouted.requests[0].req: ReadKeysResult(values=(absent(moving),))}))
    [done] = clerk.take_completions()
    assert isinstance(done, ReadDone) and list(done.values) == [moving, staying, elsewhere]


def test_a_newer_map_that_does_not_route_the_refused_keys_elsewhere_leaves_them_waiting():
    clerk = make_clerk(request_timeout_ticks=5)
    clerk.read(1, [key_in_slot(MOVED_SLOT)])
    [(replica, batch)] = clerk.take_output()
    clerk.receive(refuse(replica, batch))
    clerk.update_routing(routing(epoch=2))
    assert clerk.take_output() == []


def test_a_refusal_naming_no_slot_parks_every_key_of_the_request():
    clerk = make_clerk(request_timeout_ticks=5)
    clerk.read(1, [key_in_slot(MOVED_SLOT), other_c1_key()])
    [(replica, batch)] = clerk.take_output()
    [request] = batch.requests
    clerk.receive(answer(batch, replica, {request.req: WrongEpoch(txid="", slots=())}))
    assert clerk.take_output() == []
    clerk.tick(5)
    assert ops_of(clerk.take_output()) == [("c1-r0", request.op)]


def test_a_read_refused_under_an_older_map_goes_to_the_new_owner_at_once():
    key = key_in_slot(MOVED_SLOT)
    clerk = make_clerk()
    clerk.read(1, [key])
    [(replica, batch)] = clerk.take_output()
    clerk.update_routing(routing(epoch=2, slots=MOVED_SLOTS))
    clerk.receive(refuse(replica, batch))
    assert ops_of(clerk.take_output()) == [("c3-r0", ReadKeys(keys=(key,)))]


def test_a_refused_read_is_sent_again_after_a_doubling_wait_without_a_map_then_fails():
    key = key_in_slot(MOVED_SLOT)
    clerk = make_clerk(request_timeout_ticks=2, max_backoff_ticks=8, max_attempts=4)
    clerk.read(1, [key])
    resent_at = []
    for now in range(100):
        if now:
            clerk.tick()
        for replica, batch in clerk.take_output():
            resent_at.append(now)
            assert batch.cluster == "c1"
            clerk.receive(refuse(replica, batch))
    # Answered at once each time: waits of 2, 4, 8, 8 ticks, then the fifth refusal fails it.
    assert resent_at == [0, 2, 6, 14, 22]
    [failed] = clerk.take_completions()
    assert isinstance(failed, Failed) and "WrongEpoch after 4 re-routes" in failed.reason


def test_a_refusal_for_another_transaction_or_a_decide_is_not_an_answer():
    clerk = make_clerk()
    clerk.read(1, [keys_in("c1")[0]])
    [(replica, batch)] = clerk.take_output()
    [request] = batch.requests
    clerk.receive(answer(batch, replica, {request.req: WrongEpoch(txid="t9", slots=(MOVED_SLOT,))}))
    clerk.tick(100)
    # Unanswered: resent to another member as an ordinary timeout, never parked.
    assert [replica for replica, _ in clerk.take_output()] == ["c1-r1"]


# -- commits -------------------------------------------------------------------


def test_a_one_phase_commit_refused_for_a_moving_slot_completes_moved_and_sends_nothing_else():
    clerk = make_clerk()
    clerk.commit(1, txid="t1", ts=10, reads={}, writes={key_in_slot(MOVED_SLOT): 1})
    [(replica, batch)] = clerk.take_output()
    assert isinstance(batch.requests[0].op, CommitOnePhase)
    clerk.receive(refuse(replica, batch, reason="slot 0 is moving to c3"))
    assert clerk.take_completions() == [Moved(op=1, txid="t1", epoch=1, reason="c1: slot 0 is moving to c3")]
    assert clerk.take_output() == []
    assert not clerk.moved_past(1)
    clerk.update_routing(routing(epoch=2, slots=MOVED_SLOTS))
    assert clerk.epoch == 2 and clerk.moved_past(1) and not clerk.moved_past(2)


def test_a_read_only_commit_refused_by_one_cluster_completes_moved():
    clerk = make_clerk()
    a, b = key_in_slot(MOVED_SLOT), keys_in("c2")[0]
    clerk.commit(1, txid="t1", ts=10, reads={a: ZERO_STAMP, b: ZERO_STAMP}, writes={})
    sent = dict(clerk.take_output())
    assert isinstance(sent["c1-r0"].requests[0].op, ReadCheck)
    clerk.receive(refuse("c1-r0", sent["c1-r0"], reason=""))
    assert clerk.take_completions() == [Moved(op=1, txid="t1", epoch=1, reason="c1: slots [0] not served")]
    # Nothing to undo for reads, and nothing more to ask of c2.
    clerk.tick(100)
    assert clerk.take_output() == []


def test_a_get_refused_by_one_cluster_completes_moved_and_asks_nothing_more():
    clerk = make_clerk()
    a, b = key_in_slot(MOVED_SLOT), keys_in("c2")[0]
    clerk.get(1, txid="t1", ts=10, keys=[a, b])
    sent = dict(clerk.take_output())
    assert isinstance(sent["c1-r0"].requests[0].op, LoggedRead)
    clerk.receive(refuse("c1-r0", sent["c1-r0"]))
    assert clerk.take_completions() == [Moved(op=1, txid="t1", epoch=1, reason="c1: slot 0 moved away")]
    clerk.tick(100)
    assert clerk.take_output() == []


def test_a_two_phase_commit_refused_by_one_participant_aborts_the_others_even_one_that_voted_yes():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    writes = {keys_in("c1", prefix="a")[0]: 1, keys_in("c2", prefix="b")[0]: 2, keys_in("c3", prefix="c")[0]: 3}
    clerk = make_clerk()
    clerk.commit(1, txid="t1", ts=10, reads={}, writes=writes)
    sent = dict(clerk.take_output())
    assert sorted(sent) == ["c1-r0", "c2-r0", "c3-r0"]

    for reply in net.answers([("c2-r0", sent["c2-r0"])]):
        clerk.receive(reply)
    assert c2.prepared == {"t1"}
    clerk.receive(refuse("c3-r0", sent["c3-r0"]))
    assert clerk.take_completions() == [Moved(op=1, txid="t1", epoch=1, reason="c3: slot 0 moved away")]

    aborts = net.round(clerk)
    assert sorted(ops_of(aborts)) == [
        ("c1-r0", Decide(txid="t1", ts=10, commit=False)),
        ("c2-r0", Decide(txid="t1", ts=10, commit=False)),
    ]
    assert c1.outcomes == {"t1": TXN_ABORTED} and c2.outcomes == {"t1": TXN_ABORTED} and not c2.prepared
    # c1's late yes changes nothing; nothing else is ever sent.
    for reply in net.answers([("c1-r0", sent["c1-r0"])]):
        clerk.receive(reply)
    assert net.run(clerk, ticks=200) == []
    assert clerk.take_completions() == []


def test_a_stray_refusal_after_the_commit_decision_is_ignored():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    clerk = make_clerk()
    clerk.commit(
        1, txid="t1", ts=10, reads={}, writes={keys_in("c1", prefix="a")[0]: 1, keys_in("c2", prefix="b")[0]: 2}
    )
    prepares = clerk.take_output()
    for reply in net.answers(prepares):
        clerk.receive(reply)
    [(primary, decide)] = clerk.take_output()
    assert decide.requests[0].op == Decide(txid="t1", ts=10, commit=True)

    # A duplicated Prepare refused by a new leader, and a refusal claimed for the Decide itself.
    for replica, batch in prepares:
        clerk.receive(refuse(replica, batch))
    clerk.receive(refuse(primary, decide))
    assert clerk.take_completions() == [] and clerk.take_output() == []

    [request] = decide.requests
    clerk.receive(answer(decide, primary, {request.req: DecideResult(txid="t1", status=TXN_COMMITTED)}))
    net.round(clerk)
    assert clerk.take_completions() == [Committed(op=1, txid="t1")]


def test_a_prepare_refusal_after_the_commit_gave_up_on_votes_is_ignored():
    clerk = make_clerk(request_timeout_ticks=1, max_backoff_ticks=1, max_attempts=1)
    clerk.commit(1, txid="t1", ts=10, reads={}, writes={keys_in("c1")[0]: 1, keys_in("c2")[0]: 2})
    prepares = clerk.take_output()
    clerk.tick()
    [aborted] = clerk.take_completions()
    assert isinstance(aborted, Aborted)
    for replica, batch in prepares:
        clerk.receive(refuse(replica, batch))
    assert clerk.take_completions() == []


def test_a_vote_and_a_refusal_in_one_batch_reply_complete_moved_once():
    clerk = make_clerk()
    a, b = keys_in("c1", prefix="a")[0], keys_in("c2", prefix="b")[0]
    clerk.commit(1, txid="t1", ts=10, reads={}, writes={a: 1, b: 2})
    clerk.commit(2, txid="t2", ts=11, reads={}, writes={a: 3, b: 4})
    sent = dict(clerk.take_output())
    first, second = sent["c1-r0"].requests
    results = {first.req: PrepareResult(txid="t1", vote=True), second.req: WrongEpoch(txid="t2", slots=(MOVED_SLOT,))}
    clerk.receive(answer(sent["c1-r0"], "c1-r0", results))
    [moved] = clerk.take_completions()
    assert moved.op == 2 and isinstance(moved, Moved)
    assert ops_of(clerk.take_output()) == [("c2-r0", Decide(txid="t2", ts=11, commit=False))]


# -- the session around the core ---------------------------------------------------


@pytest.fixture
def session() -> ClerkSession:
    """A session with its first map at time 0, whose clock reads 100 µs of Unix time then."""
    session = ClerkSession(SessionConfig(clerk="k", wall_offset=0.0001), random.Random(7))
    session.on_map(map_update(1), 0.0)
    return session


def one_phase_commit(session: ClerkSession, key: str, now: float = 0.0) -> ClientBatch:
    actions = session.on_app_request(ClerkCommit(req=7, reads={}, writes={key: "v"}), "app", now)
    [send] = of_kind(actions, Send)
    return send.batch


def test_the_clerk_runs_a_moved_commit_again_under_a_fresh_txid_once_the_map_is_newer(session):
    key = key_in_slot(MOVED_SLOT)
    first = one_phase_commit(session, key)
    [request] = first.requests
    assert request.op.ts == 100
    parked = session.on_server_reply(refuse("c1-r0", first), 0.0)
    assert of_kind(parked, Send) == [] and of_kind(parked, Reply) == []

    [send] = of_kind(session.on_map(map_update(2, MOVED_SLOTS), 0.0), Send)
    again = send.batch
    [retry] = again.requests
    assert send.address == "c3-r0" and again.epoch == 2
    assert retry.op.txid != request.op.txid and retry.op.ts == 101 and retry.op.writes == {key: "v"}

    # The wakeup asked for when it was parked is stale now.
    [moved_wakeup] = rerun_wakeups(parked)
    assert of_kind(session.on_rerun_due(moved_wakeup, 0.1), Send) == []

    committed = CommitOnePhaseResult(txid=retry.op.txid, committed=True)
    [answered] = of_kind(session.on_server_reply(answer(again, "c3-r0", {retry.req: committed}), 0.1), Reply)
    reply = answered.reply
    assert answered.asker == "app" and reply.outcome == "ok" and reply.txid == retry.op.txid
    # The ask, and two logged phases (the refused attempt and the re-run).
    assert reply.hops == 2 + 4 + 4


def test_a_refusal_arriving_after_a_newer_map_runs_the_commit_again_at_once(session):
    key = key_in_slot(MOVED_SLOT)
    first = one_phase_commit(session, key)
    actions = session.on_map(map_update(2, MOVED_SLOTS), 0.0)
    actions += session.on_server_reply(refuse("c1-r0", first), 0.0)
    [send] = of_kind(actions, Send)
    assert send.address == "c3-r0" and send.batch.requests[0].op.txid != first.requests[0].op.txid
    assert rerun_wakeups(actions) == []


def test_the_clerk_runs_a_moved_commit_again_after_the_wait_without_a_newer_map(session):
    first = one_phase_commit(session, key_in_slot(MOVED_SLOT))
    [wakeup] = rerun_wakeups(session.on_server_reply(refuse("c1-r0", first), 0.0))
    [send] = of_kind(session.on_rerun_due(wakeup, 0.1), Send)
    assert send.address == "c1-r0" and send.batch.requests[0].op.txid != first.requests[0].op.txid
    # A duplicate of the same wakeup.
    assert of_kind(session.on_rerun_due(wakeup, 0.1), Send) == []


def test_the_clerk_answers_unavailable_once_the_move_budget_is_spent(session):
    first = one_phase_commit(session, key_in_slot(MOVED_SLOT))
    # The refusal comes when the budget from the first attempt is spent.
    actions = session.on_server_reply(refuse("c1-r0", first), SessionConfig(clerk="k").moved_budget_seconds)
    [answered] = of_kind(actions, Reply)
    assert answered.reply.outcome == "unavailable" and "slot 0 moved away" in answered.reply.reason
    assert of_kind(actions, Send) == []


def test_a_rerun_takes_a_fresh_timestamp_from_the_clock_at_once(session):
    first = one_phase_commit(session, key_in_slot(MOVED_SLOT), now=0.01)
    actions = session.on_server_reply(refuse("c1-r0", first), 1.0)
    [send] = of_kind(actions + session.on_map(map_update(2, MOVED_SLOTS), 1.0), Send)
    assert first.requests[0].op.ts == 10_100 and send.batch.requests[0].op.ts == 1_000_100


def test_critical_path_counts_a_rerouted_read_through_the_cores_owner_of():
    path = CriticalPath()
    path.begin(1)
    path.sent(
        [
            (
                "c1-r0",
                ClientBatch(
                    client="k", cluster="c1", epoch=1, requests=(ClientRequest(req=1, op=ReadKeys(keys=("a",))),)
                ),
            )
        ]
    )
    rerouted = [
        (
            "c3-r0",
            ClientBatch(client="k", cluster="c3", epoch=2, requests=(ClientRequest(req=2, op=ReadKeys(keys=("a",))),)),
        )
    ]
    path.sent(rerouted, {2: 1}.get)
    assert path.finish(1) == (2 + 2 + 2, 0)  # a request re-routed is a new request


def test_reads_are_answered_unchanged_by_the_session(session):
    key = keys_in("c2")[0]
    [send] = of_kind(session.on_app_request(ClerkRead(req=3, keys=(key,)), "app", 0.0), Send)
    [request] = send.batch.requests
    reply = answer(send.batch, send.address, {request.req: ReadKeysResult(values=(absent(key),))})
    [answered] = of_kind(session.on_server_reply(reply, 0.0), Reply)
    assert answered.reply.outcome == "ok" and answered.reply.values == {key: absent(key)} and answered.reply.hops == 4
