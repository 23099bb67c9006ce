"""The clerk following slots that move (DESIGN.md section 6): ClerkCore with
hand-fed WrongEpoch replies, and the Clerk actor's re-runs of Moved commits
driven by hand, without an actor system."""

import pytest

from actors.keyspace import slot_of
from actors.messages import (
    TXN_ABORTED,
    TXN_COMMITTED,
    ZERO_STAMP,
    ClerkCommit,
    ClerkRead,
    ClerkReply,
    ClientBatch,
    ClientBatchReply,
    ClientRequest,
    CommitOnePhase,
    CommitOnePhaseResult,
    Decide,
    DecideResult,
    MapUpdate,
    PrepareResult,
    ReadCheck,
    ReadKeys,
    ReadKeysResult,
    Timestamp,
    TimestampRequest,
    WrongEpoch,
)
from clerk import clerk as clerk_actor
from clerk.clerk import Clerk, CriticalPath
from clerk.core import Aborted, Committed, Failed, Moved, ReadDone
from tests.unit.test_clerk_core import MEMBERS, SLOTS, Net, absent, answer, clusters, keys_in, make_clerk, routing

# Slot 0 moves from c1 to c3 (epoch 2).
MOVED_SLOTS = ("c3",) + SLOTS[1:]
MOVED_SLOT = 0


def key_in_slot(slot: int, *, prefix: str = "k") -> str:
    return next(f"{prefix}{n}" for n in range(10_000) if slot_of(f"{prefix}{n}", len(SLOTS)) == slot)


def other_c1_key(*, prefix: str = "k") -> str:
    """A key c1 keeps after the move."""
    return next(key for key in keys_in("c1", 50, prefix=prefix) if slot_of(key, len(SLOTS)) != MOVED_SLOT)


def refuse(replica: str, batch: ClientBatch, *, reason: str = "slot 0 moved away") -> ClientBatchReply:
    """WrongEpoch for every request of `batch`, with each request's txid."""
    results = {
        request.req: WrongEpoch(txid=getattr(request.op, "txid", ""), slots=(MOVED_SLOT,), reason=reason)
        for request in batch.requests
    }
    return answer(batch, replica, results)


def ops_of(sent) -> list[tuple[str, object]]:
    return [(replica, request.op) for replica, batch in sent for request in batch.requests]


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


# -- the Clerk actor -------------------------------------------------------------


class HandDrivenClerk(Clerk):
    """The Clerk actor without an actor system: what it sends and the wakeups
    it asks for are recorded; the test plays coordinator and servers."""

    def __init__(self) -> None:
        super().__init__()
        self.coordinator = "coordinator"  # already subscribed
        self.outbox: list[tuple[object, object]] = []
        self.wakeups: list[object] = []

    def send(self, target, message) -> None:
        self.outbox.append((target, message))

    def wakeupAfter(self, delay, payload=None) -> None:
        self.wakeups.append(payload)

    def sent(self, kind: type) -> list[tuple[object, object]]:
        found = [(target, message) for target, message in self.outbox if isinstance(message, kind)]
        self.outbox = [(target, message) for target, message in self.outbox if not isinstance(message, kind)]
        return found

    def wake(self, payload) -> None:
        self.receiveMsg_WakeupMessage(type("Wakeup", (), {"payload": payload})(), None)


def map_update(epoch: int, slots=SLOTS) -> MapUpdate:
    return MapUpdate(
        epoch=epoch,
        slots=slots,
        members=dict(MEMBERS),
        leaders={cluster: f"{cluster}-r0" for cluster in MEMBERS},
        terms={},
        addresses={replica: replica for members in MEMBERS.values() for replica in members},
    )


@pytest.fixture
def actor(monkeypatch):
    # Timestamps stay fresh: the test decides when they run out.
    monkeypatch.setattr(clerk_actor, "TIMESTAMP_FRESH_SECONDS", float("inf"))
    clerk = HandDrivenClerk()
    clerk.receiveMsg_MapUpdate(map_update(1), "coordinator")
    clerk.receiveMsg_Timestamp(Timestamp(ts=100, count=16), "coordinator")
    return clerk


def one_phase_commit(actor: HandDrivenClerk, key: str) -> ClientBatch:
    actor.receiveMsg_ClerkCommit(ClerkCommit(req=7, reads={}, writes={key: "v"}), "app")
    [(_, batch)] = actor.sent(ClientBatch)
    return batch


def test_the_clerk_runs_a_moved_commit_again_under_a_fresh_txid_once_the_map_is_newer(actor):
    key = key_in_slot(MOVED_SLOT)
    first = one_phase_commit(actor, key)
    [request] = first.requests
    assert request.op.ts == 100
    actor.receiveMsg_ClientBatchReply(refuse("c1-r0", first), "c1-r0")
    assert actor.sent(ClientBatch) == [] and actor.sent(ClerkReply) == []

    actor.receiveMsg_MapUpdate(map_update(2, MOVED_SLOTS), "coordinator")
    [(target, again)] = actor.sent(ClientBatch)
    [retry] = again.requests
    assert target == "c3-r0" and again.epoch == 2
    assert retry.op.txid != request.op.txid and retry.op.ts == 101 and retry.op.writes == {key: "v"}

    # The wakeup asked for when it was parked is stale now.
    [moved_wakeup] = [payload for payload in actor.wakeups if payload != "tick"]
    actor.wake(moved_wakeup)
    assert actor.sent(ClientBatch) == []

    committed = CommitOnePhaseResult(txid=retry.op.txid, committed=True)
    actor.receiveMsg_ClientBatchReply(answer(again, "c3-r0", {retry.req: committed}), "c3-r0")
    [(asker, reply)] = actor.sent(ClerkReply)
    assert asker == "app" and reply.outcome == "ok" and reply.txid == retry.op.txid
    # The ask, and two logged phases (the refused attempt and the re-run).
    assert reply.hops == 2 + 4 + 4


def test_a_refusal_arriving_after_a_newer_map_runs_the_commit_again_at_once(actor):
    key = key_in_slot(MOVED_SLOT)
    first = one_phase_commit(actor, key)
    actor.receiveMsg_MapUpdate(map_update(2, MOVED_SLOTS), "coordinator")
    actor.receiveMsg_ClientBatchReply(refuse("c1-r0", first), "c1-r0")
    [(target, again)] = actor.sent(ClientBatch)
    assert target == "c3-r0" and again.requests[0].op.txid != first.requests[0].op.txid
    assert [payload for payload in actor.wakeups if payload != "tick"] == []


def test_the_clerk_runs_a_moved_commit_again_after_the_wait_without_a_newer_map(actor):
    first = one_phase_commit(actor, key_in_slot(MOVED_SLOT))
    actor.receiveMsg_ClientBatchReply(refuse("c1-r0", first), "c1-r0")
    [payload] = [payload for payload in actor.wakeups if payload != "tick"]
    actor.wake(payload)
    [(target, again)] = actor.sent(ClientBatch)
    assert target == "c1-r0" and again.requests[0].op.txid != first.requests[0].op.txid
    actor.wake(payload)  # a duplicate of the same wakeup
    assert actor.sent(ClientBatch) == []


def test_the_clerk_answers_unavailable_once_the_move_budget_is_spent(actor, monkeypatch):
    monkeypatch.setattr(clerk_actor, "MOVED_BUDGET_SECONDS", 0.0)
    first = one_phase_commit(actor, key_in_slot(MOVED_SLOT))
    actor.receiveMsg_ClientBatchReply(refuse("c1-r0", first), "c1-r0")
    [(_, reply)] = actor.sent(ClerkReply)
    assert reply.outcome == "unavailable" and "slot 0 moved away" in reply.reason
    assert actor.sent(ClientBatch) == []


def test_the_clerk_waits_for_a_fresh_timestamp_block_before_a_rerun(actor, monkeypatch):
    first = one_phase_commit(actor, key_in_slot(MOVED_SLOT))
    monkeypatch.setattr(clerk_actor, "TIMESTAMP_FRESH_SECONDS", 0.0)
    actor.receiveMsg_ClientBatchReply(refuse("c1-r0", first), "c1-r0")
    actor.receiveMsg_MapUpdate(map_update(2, MOVED_SLOTS), "coordinator")
    assert actor.sent(ClientBatch) == []
    assert [target for target, _ in actor.sent(TimestampRequest)] == ["coordinator"]
    monkeypatch.setattr(clerk_actor, "TIMESTAMP_FRESH_SECONDS", float("inf"))
    actor.receiveMsg_Timestamp(Timestamp(ts=500, count=16), "coordinator")
    [(_, again)] = actor.sent(ClientBatch)
    assert again.requests[0].op.ts == 500


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
    assert path.finish(1) == 2 + 2 + 2


def test_reads_are_answered_unchanged_by_the_actor(actor):
    key = keys_in("c2")[0]
    actor.receiveMsg_ClerkRead(ClerkRead(req=3, keys=(key,)), "app")
    [(target, batch)] = actor.sent(ClientBatch)
    [request] = batch.requests
    actor.receiveMsg_ClientBatchReply(
        answer(batch, target, {request.req: ReadKeysResult(values=(absent(key),))}), target
    )
    [(_, reply)] = actor.sent(ClerkReply)
    assert reply.outcome == "ok" and reply.values == {key: absent(key)} and reply.hops == 4
