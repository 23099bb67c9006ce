"""ClerkCore against hand-written fake clusters: routing, batching, retries,
redirects, the transaction protocol of docs/DESIGN.md section 4, and outcomes that
agree with the servers under loss, duplication, reordering and elections."""

import random

import pytest

from actors.keyspace import slot_of
from actors.messages import (
    TXN_ABORTED,
    TXN_COMMITTED,
    ZERO_STAMP,
    ClientBatch,
    ClientBatchReply,
    ClientReply,
    ClientRequest,
    CommitOnePhase,
    CommitOnePhaseResult,
    Decide,
    LoggedRead,
    Prepare,
    PrepareResult,
    ReadCheck,
    ReadKeys,
    ReadKeysResult,
    ReadResult,
    Redirect,
)
from clerk.core import (
    Aborted,
    ClerkConfig,
    ClerkCore,
    Committed,
    Failed,
    ReadDone,
    Routing,
    TooLarge,
)
from tests.unit.clerk.clerk_helpers import (
    MEMBERS,
    SLOTS,
    FakeCluster,
    Net,
    absent,
    clusters,
    keys_in,
    make_clerk,
    reply_to,
    routing,
    sent_ops,
)

# -- reads -------------------------------------------------------------------


def test_a_read_across_clusters_takes_one_round_with_one_request_per_cluster():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    (a1, a2), (b,), (c,) = keys_in("c1", 2), keys_in("c2"), keys_in("c3")
    c1.install("t0", 5, {a1: "x"})
    clerk = make_clerk()
    clerk.read(1, [c, a1, b, a2, a1])

    sent = net.round(clerk)

    assert sorted(replica for replica, _ in sent) == ["c1-r0", "c2-r0", "c3-r0"]
    assert {replica: batch.requests[0].op for replica, batch in sent} == {
        "c1-r0": ReadKeys(keys=(a1, a2)),
        "c2-r0": ReadKeys(keys=(b,)),
        "c3-r0": ReadKeys(keys=(c,)),
    }
    [done] = clerk.take_completions()
    assert isinstance(done, ReadDone) and done.op == 1
    assert list(done.values) == [c, a1, b, a2]
    assert done.values[a1] == ReadResult(key=a1, value="x", version=(5, "t0"), counter=1, exists=True)
    assert not done.values[b].exists
    assert clerk.take_output() == []


def test_nothing_to_read_or_commit_completes_at_once():
    clerk = make_clerk()
    clerk.read(1, [])
    clerk.commit(2, txid="t", ts=1, reads={}, writes={})
    assert clerk.take_completions() == [ReadDone(op=1, values={}), Committed(op=2, txid="t")]
    assert clerk.take_output() == []


# -- commits -----------------------------------------------------------------


def test_a_transaction_on_one_cluster_commits_in_one_phase():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    a, b = keys_in("c1", 2)
    clerk = make_clerk()
    clerk.commit(1, txid="t1", ts=10, reads={a: ZERO_STAMP}, writes={b: 7}, deletes=(a,))

    sent = net.round(clerk)

    assert [(replica, batch.requests[0].op) for replica, batch in sent] == [
        ("c1-r0", CommitOnePhase(txid="t1", ts=10, reads={a: ZERO_STAMP}, writes={b: 7}, deletes=(a,), epoch=1))
    ]
    assert clerk.take_completions() == [Committed(op=1, txid="t1")]
    assert c1.values[b].value == 7


def test_a_refused_one_phase_commit_aborts_with_the_reason():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    c1.refuse["t1"] = "rule 3: stale read"
    clerk = make_clerk()
    clerk.commit(1, txid="t1", ts=10, reads={}, writes={keys_in("c1")[0]: 1})
    net.round(clerk)
    assert clerk.take_completions() == [Aborted(op=1, txid="t1", reason="c1: rule 3: stale read")]


def test_two_phase_commit_sends_prepare_to_each_then_decide_to_the_primary_first():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    a, b = keys_in("c1", 2, prefix="a")
    z = keys_in("c2", prefix="z")[0]
    clerk = make_clerk()
    clerk.commit(1, txid="t1", ts=10, reads={a: (3, "t0"), z: ZERO_STAMP}, writes={z: "zz", b: 1}, deletes=(a,))

    prepares = net.round(clerk)
    assert prepares == [
        (
            "c1-r0",
            ClientBatch(
                client="clerk-1",
                cluster="c1",
                epoch=1,
                requests=(
                    ClientRequest(
                        req=1,
                        op=Prepare(
                            txid="t1",
                            ts=10,
                            reads={a: (3, "t0")},
                            writes={b: 1},
                            deletes=(a,),
                            primary="c1",
                            participants=("c1", "c2"),
                            epoch=1,
                        ),
                    ),
                ),
            ),
        ),
        (
            "c2-r0",
            ClientBatch(
                client="clerk-1",
                cluster="c2",
                epoch=1,
                requests=(
                    ClientRequest(
                        req=2,
                        op=Prepare(
                            txid="t1",
                            ts=10,
                            reads={z: ZERO_STAMP},
                            writes={z: "zz"},
                            deletes=(),
                            primary="c1",
                            participants=("c1", "c2"),
                            epoch=1,
                        ),
                    ),
                ),
            ),
        ),
    ]
    assert clerk.take_completions() == []

    decide = net.round(clerk)
    assert decide == [
        (
            "c1-r0",
            ClientBatch(
                client="clerk-1",
                cluster="c1",
                epoch=1,
                requests=(ClientRequest(req=3, op=Decide(txid="t1", ts=10, commit=True)),),
            ),
        )
    ]
    # Committed at the primary: the commit point; the clerk answers now and tells c2.
    assert clerk.take_completions() == [Committed(op=1, txid="t1")]
    assert sent_ops(net.round(clerk)) == [("c2-r0", Decide)]
    assert net.run(clerk, ticks=200) == []
    assert c1.outcomes == {"t1": TXN_COMMITTED} and c2.outcomes == {"t1": TXN_COMMITTED}


def test_a_commit_is_answered_at_the_primarys_commit_and_told_to_a_silent_participant_for_publish_ticks():
    """The commit point is the primary's commit: the clerk answers then, and
    sends the commit to a participant that does not answer for publish_ticks
    only; the primary's leader pushes it until it is acknowledged."""
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    clerk = make_clerk(request_timeout_ticks=2, max_backoff_ticks=4, publish_ticks=6)
    clerk.commit(1, txid="t1", ts=10, reads={}, writes={keys_in("c1", prefix="a")[0]: 1, keys_in("c2", prefix="b")[0]: 2})
    net.round(clerk)
    c2.down = set(MEMBERS["c2"])
    net.round(clerk)
    assert clerk.take_completions() == [Committed(op=1, txid="t1")]
    told = sent_ops(net.round(clerk))
    for _ in range(6):
        clerk.tick()
        told += sent_ops(net.round(clerk))
    assert len(told) > 1 and {op for _, op in told} == {Decide}
    assert {replica for replica, _ in told} <= set(MEMBERS["c2"]), "a silent replica's peers are tried too"
    for _ in range(20):
        clerk.tick()
        assert net.round(clerk) == [], "given up after publish_ticks"


def test_the_primary_is_the_owner_of_the_smallest_key_touched():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    smallest = keys_in("c3", prefix="a")[0]
    clerk = make_clerk()
    clerk.commit(1, txid="t1", ts=10, reads={smallest: ZERO_STAMP}, writes={keys_in("c1", prefix="b")[0]: 1})
    prepares = net.round(clerk)
    assert {batch.requests[0].op.primary for _, batch in prepares} == {"c3"}
    assert {batch.requests[0].op.participants for _, batch in prepares} == {("c1", "c3")}
    assert sent_ops(net.round(clerk)) == [("c3-r0", Decide)]


def test_a_no_vote_aborts_every_other_participant_even_one_that_never_answered():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    c2.refuse["t1"] = "rule 5: write-write with t0"
    c3.down = set(MEMBERS["c3"])
    writes = {keys_in(cluster)[0]: 1 for cluster in ("c1", "c2", "c3")}
    clerk = make_clerk(max_attempts=3)
    clerk.commit(1, txid="t1", ts=10, reads={}, writes=writes)

    assert sent_ops(net.round(clerk)) == [("c1-r0", Prepare), ("c2-r0", Prepare), ("c3-r0", Prepare)]
    assert clerk.take_completions() == [Aborted(op=1, txid="t1", reason="c2 voted no: rule 5: write-write with t0")]
    aborts = net.round(clerk)
    assert sent_ops(aborts) == [("c1-r0", Decide), ("c3-r0", Decide)]
    assert all(request.op.commit is False for _, batch in aborts for request in batch.requests)
    assert c1.outcomes["t1"] == TXN_ABORTED and not c1.prepared

    # The abort to the silent cluster is resent a bounded number of times, then dropped.
    later = net.run(clerk, ticks=500)
    assert [replica for _, replica, _ in later] == ["c3-r1", "c3-r2"]
    assert clerk.take_completions() == []


def test_the_primary_aborting_a_voted_transaction_aborts_the_others():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    writes = {keys_in("c1", prefix="a")[0]: 1, keys_in("c2", prefix="b")[0]: 2}
    clerk = make_clerk()
    clerk.commit(1, txid="t1", ts=10, reads={}, writes=writes)
    net.round(clerk)
    # The primary timed the prepare out before the commit arrived (docs/DESIGN.md section 4, step 5).
    c1.prepared.discard("t1")
    c1.outcomes["t1"] = TXN_ABORTED

    assert sent_ops(net.round(clerk)) == [("c1-r0", Decide)]
    [aborted] = clerk.take_completions()
    assert isinstance(aborted, Aborted) and aborted.reason.startswith("primary c1 aborted it")
    assert sent_ops(net.round(clerk)) == [("c2-r0", Decide)]
    assert c2.outcomes == {"t1": TXN_ABORTED}


def test_an_unanswered_prepare_aborts_everywhere_and_reports_aborted():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    c2.down = set(MEMBERS["c2"])
    writes = {keys_in("c1")[0]: 1, keys_in("c2")[0]: 2}
    clerk = make_clerk(request_timeout_ticks=1, max_backoff_ticks=1, max_attempts=2)
    clerk.commit(1, txid="t1", ts=10, reads={}, writes=writes)

    log = net.run(clerk, ticks=100)

    [aborted] = clerk.take_completions()
    reason = "c2 did not answer Prepare after 2 attempts; aborted everywhere"
    assert aborted == Aborted(op=1, txid="t1", reason=reason)
    ops = [(replica, request.op) for _, replica, batch in log for request in batch.requests]
    assert not any(isinstance(op, Decide) and op.commit for _, op in ops)
    assert c1.outcomes == {"t1": TXN_ABORTED}
    assert [type(op) for replica, op in ops if replica.startswith("c2")] == [Prepare, Prepare, Decide, Decide]


def test_a_read_only_commit_validates_its_reads_at_every_cluster_in_parallel():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    a, b = keys_in("c1")[0], keys_in("c3")[0]
    clerk = make_clerk()
    clerk.commit(1, txid="t1", ts=10, reads={a: (1, "t0"), b: ZERO_STAMP}, writes={})

    sent = net.round(clerk)

    assert [(replica, batch.requests[0].op) for replica, batch in sent] == [
        ("c1-r0", ReadCheck(txid="t1", ts=10, reads={a: (1, "t0")})),
        ("c3-r0", ReadCheck(txid="t1", ts=10, reads={b: ZERO_STAMP})),
    ]
    assert clerk.take_completions() == [Committed(op=1, txid="t1")]
    assert net.run(clerk, ticks=100) == []


def test_a_read_only_commit_aborts_at_the_first_refusal_and_stops_asking_the_others():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    c1.down = set(MEMBERS["c1"])
    c3.refuse["t1"] = "rule 3: version moved"
    clerk = make_clerk()
    clerk.commit(1, txid="t1", ts=10, reads={keys_in("c1")[0]: ZERO_STAMP, keys_in("c3")[0]: ZERO_STAMP}, writes={})
    net.round(clerk)
    assert clerk.take_completions() == [Aborted(op=1, txid="t1", reason="c3: rule 3: version moved")]
    # Nothing to undo for reads, and nothing more to ask.
    assert net.run(clerk, ticks=100) == []


def test_a_get_reads_and_validates_with_one_logged_read_per_cluster_in_parallel():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    a, b = keys_in("c1")[0], keys_in("c3")[0]
    c1.install("t0", 5, {a: "x"})
    clerk = make_clerk()
    clerk.get(1, txid="t1", ts=10, keys=[b, a, b])

    sent = net.round(clerk)

    assert sorted((replica, batch.requests[0].op) for replica, batch in sent) == [
        ("c1-r0", LoggedRead(txid="t1", ts=10, keys=(a,))),
        ("c3-r0", LoggedRead(txid="t1", ts=10, keys=(b,))),
    ]
    [done] = clerk.take_completions()
    assert done == ReadDone(op=1, values={b: absent(b), a: c1.read(a)}) and list(done.values) == [b, a]
    assert net.run(clerk, ticks=100) == []


def test_a_refused_get_aborts_at_the_first_refusal_and_leaves_nothing_to_undo():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    c1.down = set(MEMBERS["c1"])
    c3.refuse["t1"] = "rule 2: x is written by t0, prepared below"
    clerk = make_clerk()
    clerk.get(1, txid="t1", ts=10, keys=[keys_in("c1")[0], keys_in("c3")[0]])
    net.round(clerk)
    assert clerk.take_completions() == [Aborted(op=1, txid="t1", reason="c3: rule 2: x is written by t0, prepared below")]
    assert net.run(clerk, ticks=100) == []


def test_an_unanswered_get_fails_after_its_attempts():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    c1.down = set(MEMBERS["c1"])
    clerk = make_clerk()
    clerk.get(1, txid="t1", ts=10, keys=keys_in("c1"))
    net.run(clerk, ticks=400)
    [failed] = clerk.take_completions()
    assert isinstance(failed, Failed) and "did not answer LoggedRead" in failed.reason
    assert len(c1.ops(LoggedRead)) == ClerkConfig(clerk="clerk-1").max_attempts


# -- leaders, redirects, timeouts ------------------------------------------------


def test_a_redirect_with_a_newer_leader_is_followed_at_once_and_remembered():
    c1 = FakeCluster("c1", leader="c1-r2", term=4)
    net = Net(c1, FakeCluster("c2"), FakeCluster("c3"))
    key = keys_in("c1")[0]
    clerk = make_clerk()
    clerk.read(1, [key])

    assert [replica for replica, _ in net.round(clerk)] == ["c1-r0"]
    assert [replica for replica, _ in net.round(clerk)] == ["c1-r2"]
    assert [type(done) for done in clerk.take_completions()] == [ReadDone]
    assert clerk.routing.leaders["c1"] == "c1-r2"

    clerk.read(2, [key])
    assert [replica for replica, _ in net.round(clerk)] == ["c1-r2"]


def test_a_redirect_without_a_leader_moves_the_next_resend_to_another_member_without_hurrying_it():
    c1 = FakeCluster("c1", term=2)
    c1.elect(None)  # an election is going on at term 3
    net = Net(c1, FakeCluster("c2"), FakeCluster("c3"))
    clerk = make_clerk(request_timeout_ticks=4, max_backoff_ticks=16)
    clerk.read(1, [keys_in("c1")[0]])
    assert [replica for replica, _ in net.round(clerk)] == ["c1-r0"]
    for _ in range(3):
        clerk.tick()
        assert net.round(clerk) == []
    c1.leader = "c1-r2"
    clerk.tick()
    assert [replica for replica, _ in net.round(clerk)] == ["c1-r1"]
    assert [replica for replica, _ in net.round(clerk)] == ["c1-r2"]
    assert [type(done) for done in clerk.take_completions()] == [ReadDone]


def test_a_hint_older_than_the_known_term_is_not_followed():
    c1 = FakeCluster("c1", leader="c1-r1", term=5)
    net = Net(c1, FakeCluster("c2"), FakeCluster("c3"))
    clerk = make_clerk()
    key = keys_in("c1")[0]
    clerk.read(1, [key])
    net.round(clerk)
    net.round(clerk)
    assert clerk.routing.leaders["c1"] == "c1-r1"

    clerk.read(2, [key])
    [(replica, batch)] = clerk.take_output()
    assert replica == "c1-r1"
    clerk.receive(reply_to("c1-r1", batch, Redirect(leader="c1-r0", term=4), term=4))
    assert clerk.take_output() == []
    assert clerk.routing.leaders["c1"] != "c1-r0"


def test_a_replica_that_answers_is_remembered_as_leader_even_when_its_answer_is_late():
    c1 = FakeCluster("c1", leader="c1-r1", term=2)
    net = Net(c1, FakeCluster("c2"), FakeCluster("c3"))
    config = ClerkConfig(clerk="clerk-1", request_timeout_ticks=2)
    clerk = ClerkCore(config, routing(leaders={"c1": "c1-r1"}), random.Random(7))
    key = keys_in("c1")[0]
    clerk.read(1, [key])
    slow = clerk.take_output()
    clerk.tick()
    clerk.tick()
    assert [replica for replica, _ in clerk.take_output()] == ["c1-r2"]  # lost on the way

    for reply in net.answers(slow):
        clerk.receive(reply)
    assert [type(done) for done in clerk.take_completions()] == [ReadDone]
    clerk.read(2, [key])
    assert [replica for replica, _ in clerk.take_output()] == ["c1-r1"]


def test_a_late_answer_from_a_deposed_leader_does_not_displace_the_newer_one():
    c1 = FakeCluster("c1", leader="c1-r0", term=4)
    net = Net(c1, FakeCluster("c2"), FakeCluster("c3"))
    clerk = make_clerk()
    key = keys_in("c1")[0]
    clerk.read(1, [key])
    clerk.read(2, [key])
    [late] = net.answers(clerk.take_output())  # both answered by c1-r0 at term 4, delivered later
    c1.elect("c1-r2")

    clerk.read(3, [key])
    net.round(clerk)  # c1-r0 redirects to c1-r2 at term 5
    net.round(clerk)
    assert clerk.routing.leaders["c1"] == "c1-r2"
    clerk.receive(late)
    assert clerk.routing.leaders["c1"] == "c1-r2"
    assert sorted(done.op for done in clerk.take_completions()) == [1, 2, 3]


def test_a_redirect_without_a_leader_at_a_newer_term_makes_older_hints_stale():
    clerk = make_clerk(request_timeout_ticks=2)
    clerk.read(1, [keys_in("c1")[0]])

    def redirect(replica: str, leader: str | None, term: int) -> None:
        [(sent_to, batch)] = clerk.take_output()
        assert sent_to == replica
        clerk.receive(reply_to(replica, batch, Redirect(leader=leader, term=term), term=term))

    redirect("c1-r0", None, 5)  # the leader we knew was deposed: an election at term 5
    clerk.tick()
    clerk.tick()
    redirect("c1-r1", "c1-r0", 4)  # a replica that has not heard of term 5 yet
    assert clerk.take_output() == []
    assert clerk.routing.leaders["c1"] == "c1-r2"


def test_hints_that_chase_each_other_are_followed_once_per_member_per_attempt():
    clerk = make_clerk(request_timeout_ticks=5)
    clerk.read(1, [keys_in("c1")[0]])

    def redirect_everything(sent):
        """Two confused replicas at one term each name the other."""
        for replica, batch in sent:
            hint = "c1-r1" if replica == "c1-r0" else "c1-r0"
            clerk.receive(reply_to(replica, batch, Redirect(leader=hint, term=1)))

    def sends_until_quiet():
        count = 0
        while sent := clerk.take_output():
            count += 1
            redirect_everything(sent)
        return count

    assert sends_until_quiet() == 4  # the first send, then one hop per member
    for _ in range(4):
        clerk.tick()
        assert sends_until_quiet() == 0
    clerk.tick()
    assert sends_until_quiet() == 4


def test_a_late_redirect_for_an_earlier_send_is_ignored():
    c1 = FakeCluster("c1", leader="c1-r1", term=2)
    net = Net(c1, FakeCluster("c2"), FakeCluster("c3"))
    clerk = make_clerk(request_timeout_ticks=2)
    clerk.read(1, [keys_in("c1")[0]])
    first = clerk.take_output()  # to c1-r0, whose Redirect is slow
    clerk.tick()
    clerk.tick()
    second = clerk.take_output()
    assert [replica for replica, _ in second] == ["c1-r1"]

    [late] = net.answers(first)
    clerk.receive(late)
    assert clerk.take_output() == []
    for reply in net.answers(second):
        clerk.receive(reply)
    assert [type(done) for done in clerk.take_completions()] == [ReadDone]


def test_new_requests_skip_a_leader_that_went_silent():
    c1 = FakeCluster("c1")
    c1.down.add("c1-r0")
    net = Net(c1, FakeCluster("c2"), FakeCluster("c3"))
    clerk = make_clerk(request_timeout_ticks=2)
    key = keys_in("c1")[0]
    clerk.read(1, [key])
    net.round(clerk)
    clerk.tick()
    clerk.tick()
    clerk.read(2, [key])
    [(replica, batch)] = clerk.take_output()
    assert replica == "c1-r1" and len(batch.requests) == 2


def test_unanswered_requests_are_resent_round_the_members_with_doubling_backoff_then_fail():
    c1 = FakeCluster("c1")
    c1.down = set(MEMBERS["c1"])
    net = Net(c1, FakeCluster("c2"), FakeCluster("c3"))
    clerk = make_clerk(request_timeout_ticks=2, max_backoff_ticks=8, max_attempts=5)
    clerk.read(1, [keys_in("c1")[0]])

    log = net.run(clerk, ticks=29)

    assert [(now, replica) for now, replica, _ in log] == [
        (0, "c1-r0"),
        (2, "c1-r1"),
        (6, "c1-r2"),
        (14, "c1-r0"),
        (22, "c1-r1"),
    ]
    assert clerk.take_completions() == []
    clerk.tick()
    assert clerk.take_completions() == [Failed(op=1, reason="c1 did not answer ReadKeys after 5 attempts")]
    assert net.run(clerk, ticks=100) == []


def test_a_lost_commit_answer_is_asked_again_of_the_new_leader_not_reported_unknown():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    writes = {keys_in("c1", prefix="a")[0]: 1, keys_in("c2", prefix="b")[0]: 2}
    # One attempt per ordinary request: the outcome retries are not bounded by it.
    clerk = make_clerk(request_timeout_ticks=2, max_backoff_ticks=4, max_attempts=1, outcome_budget_ticks=100)
    clerk.commit(1, txid="t1", ts=10, reads={}, writes=writes)
    net.round(clerk)

    # The primary's leader applies the commit, its answer is lost, it crashes,
    # and after a while c1-r2 wins an election.
    c1.answer("c1-r0", clerk.take_output()[0][1])
    assert c1.outcomes == {"t1": TXN_COMMITTED}
    c1.down.add("c1-r0")
    c1.elect(None)
    for _ in range(10):
        clerk.tick()
        net.round(clerk)
    assert clerk.take_completions() == []
    c1.elect("c1-r2")
    net.run(clerk, ticks=100)

    assert clerk.take_completions() == [Committed(op=1, txid="t1")]
    decides = c1.ops(Decide)
    assert all(op.commit for _, op in decides) and decides[-1][0] == "c1-r2"
    assert [op.commit for _, op in c2.ops(Decide)] == [True]  # published once the primary answered


def test_commit_outcome_is_unknown_only_after_the_whole_budget_without_the_primary():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    writes = {keys_in("c1", prefix="a")[0]: 1, keys_in("c2", prefix="b")[0]: 2}
    clerk = make_clerk(request_timeout_ticks=2, max_backoff_ticks=8, max_attempts=2, outcome_budget_ticks=60)
    clerk.commit(1, txid="t1", ts=10, reads={}, writes=writes)
    net.round(clerk)
    c1.down = set(MEMBERS["c1"])
    for _ in range(59):
        clerk.tick()
        net.round(clerk)
    assert clerk.take_completions() == []
    assert len(c1.ops(Decide)) > 2  # more than max_attempts

    clerk.tick()
    assert clerk.take_completions() == [
        Failed(op=1, reason="outcome unknown: c1 did not answer Decide within 60 ticks")
    ]
    assert clerk.take_output() == []


def test_votes_that_complete_after_the_budget_abort_rather_than_commit_late():
    """A clerk whose process froze past its budget (its first tick then counts
    every tick it missed) must not ask for a commit the primary may already
    have decided against and forgotten (docs/DESIGN.md section 4, step 6)."""
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    writes = {keys_in("c1", prefix="a")[0]: 1, keys_in("c2", prefix="b")[0]: 2}
    clerk = make_clerk(request_timeout_ticks=2, max_backoff_ticks=8, max_attempts=8, outcome_budget_ticks=60)
    clerk.commit(1, txid="t1", ts=10, reads={}, writes=writes)
    c2.down = set(MEMBERS["c2"])
    net.round(clerk)
    clerk.tick(100)  # frozen for 100 ticks
    c2.down = set()
    net.run(clerk, ticks=20)
    [completion] = clerk.take_completions()
    assert isinstance(completion, Aborted) and "outcome budget" in completion.reason
    assert c1.ops(Decide) and all(not decide.commit for _, decide in c1.ops(Decide))


def test_a_one_phase_commit_whose_answer_was_lost_is_asked_again_until_answered():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    clerk = make_clerk(request_timeout_ticks=2, max_backoff_ticks=4, max_attempts=1)
    clerk.commit(1, txid="t1", ts=10, reads={}, writes={keys_in("c1")[0]: 1})
    c1.answer("c1-r0", clerk.take_output()[0][1])
    c1.down.add("c1-r0")
    c1.elect("c1-r1")
    net.run(clerk, ticks=50)
    assert clerk.take_completions() == [Committed(op=1, txid="t1")]


# -- duplicates, reordering, batching ---------------------------------------------


def test_duplicate_late_and_stray_replies_are_ignored():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    writes = {keys_in("c1", prefix="a")[0]: 1, keys_in("c2", prefix="b")[0]: 2}
    clerk = make_clerk()
    clerk.commit(1, txid="t1", ts=10, reads={}, writes=writes)
    vote1, vote2 = net.answers(clerk.take_output())

    clerk.receive(vote1)
    clerk.receive(vote1)  # a duplicate yes must not stand in for c2's vote
    assert clerk.take_output() == []
    clerk.receive(vote2)
    decide = clerk.take_output()
    assert sent_ops(decide) == [("c1-r0", Decide)]

    [answer] = net.answers(decide)
    clerk.receive(answer)
    clerk.receive(answer)
    clerk.receive(vote2)
    stray = ClientBatchReply(
        cluster="c1",
        replica="c1-r0",
        term=1,
        responses=(ClientReply(req=99, result=PrepareResult(txid="t9", vote=True)),),
    )
    clerk.receive(stray)
    assert clerk.take_completions() == [Committed(op=1, txid="t1")], "once, at the primary's commit"
    [publish] = net.answers(clerk.take_output())  # the commit, told to c2
    clerk.receive(publish)
    clerk.receive(publish)
    assert clerk.take_completions() == []
    assert clerk.take_output() == []


def test_replies_in_any_order_complete_reads_alike():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    keys = [keys_in(cluster)[0] for cluster in ("c1", "c2", "c3")]
    clerk = make_clerk()
    clerk.read(1, keys)
    replies = net.answers(clerk.take_output())
    for reply in reversed(replies):
        clerk.receive(reply)
    [done] = clerk.take_completions()
    assert list(done.values) == keys


def test_a_result_that_does_not_answer_its_request_is_ignored():
    c1, c2, c3 = clusters()
    clerk = make_clerk()
    key, other = keys_in("c1", 2)
    clerk.read(1, [key])
    [(replica, batch)] = clerk.take_output()
    clerk.receive(reply_to(replica, batch, ReadKeysResult(values=(c1.read(other),))))
    clerk.receive(reply_to(replica, batch, CommitOnePhaseResult(txid="t1", committed=True)))
    assert clerk.take_completions() == []
    clerk.receive(reply_to(replica, batch, ReadKeysResult(values=(c1.read(key),))))
    assert [type(done) for done in clerk.take_completions()] == [ReadDone]


def test_many_concurrent_operations_for_one_replica_travel_in_one_batch_and_resend_in_one():
    clerk = make_clerk(request_timeout_ticks=3)
    keys = keys_in("c1", 40)
    for op, key in enumerate(keys[:20]):
        clerk.read(op, [key])
    for op, key in enumerate(keys[20:], start=20):
        clerk.commit(op, txid=f"t{op}", ts=op, reads={}, writes={key: op})

    [(replica, batch)] = clerk.take_output()
    assert replica == "c1-r0" and batch.cluster == "c1"
    assert len(batch.requests) == 40
    assert len({request.req for request in batch.requests}) == 40

    for _ in range(3):
        clerk.tick()
    [(replica, resent)] = clerk.take_output()
    assert replica == "c1-r1"
    assert [request.req for request in resent.requests] == [request.req for request in batch.requests]


# -- routing updates and caller errors ------------------------------------------


def test_routing_updates_take_newer_epochs_and_newer_leaders_only():
    c1, c2, c3 = clusters()
    net = Net(c1, c2, c3)
    clerk = make_clerk()
    key = keys_in("c1")[0]

    clerk.update_routing(routing(epoch=0, leaders={"c1": "c1-r2"}))
    assert clerk.routing.leaders["c1"] == "c1-r0"

    clerk.update_routing(routing(epoch=1, leaders={"c1": "c1-r1"}))
    assert clerk.routing.leaders["c1"] == "c1-r1"

    moved = tuple("c3" if owner == "c1" else owner for owner in SLOTS)
    clerk.update_routing(routing(epoch=2, slots=moved))
    clerk.read(1, [key])
    [(replica, batch)] = net.round(clerk)
    assert replica == "c3-r0" and batch.epoch == 2


def test_caller_errors_are_refused():
    clerk = make_clerk()
    clerk.read(1, ["a"])
    with pytest.raises(ValueError, match="already in flight"):
        clerk.commit(1, txid="t", ts=1, reads={}, writes={"b": 1})
    with pytest.raises(ValueError, match="both written and deleted"):
        clerk.commit(2, txid="t", ts=1, reads={}, writes={"b": 1}, deletes=("b",))
    with pytest.raises(TypeError):
        clerk.receive(ReadKeysResult(values=()))
    with pytest.raises(ValueError):
        ClerkConfig(clerk="k", request_timeout_ticks=8, max_backoff_ticks=4)
    with pytest.raises(ValueError, match="no members"):
        Routing(epoch=1, slots=("c1", "c9"), members={"c1": ("c1-r0",)})


# -- everything at once ------------------------------------------------------------


def owner_of(key: str) -> str:
    return SLOTS[slot_of(key, len(SLOTS))]


def run_random_workload(seed: int):
    """30 operations against three clusters over a network that drops (15%
    each way), duplicates (10%), delays and reorders, while leaders change.
    Returns the clusters, each op's (keys, txid or None for a read, whether
    it writes) and every completion."""
    rng = random.Random(seed)
    fakes = {name: FakeCluster(name) for name in MEMBERS}
    net = Net(*fakes.values())
    config = ClerkConfig(
        clerk="clerk-1", request_timeout_ticks=3, max_backoff_ticks=12, max_attempts=8, outcome_budget_ticks=400
    )
    clerk = ClerkCore(config, routing(), random.Random(seed))
    pool = [key for name in MEMBERS for key in keys_in(name, 4)]
    in_flight: list[tuple[int, float, tuple]] = []
    started: dict[int, tuple[list[str], str | None, bool]] = {}
    completions = []
    for now in range(3000):
        if len(started) < 30 and rng.random() < 0.5:
            op = len(started)
            keys = rng.sample(pool, rng.randint(1, 4))
            if rng.random() < 0.25:
                started[op] = (keys, None, False)
                clerk.read(op, keys)
            else:
                txid = f"t{op}"
                writes = {key: op for key in keys if rng.random() < 0.6}
                reads = {key: ZERO_STAMP for key in keys if key not in writes}
                if rng.random() < 0.25:
                    fakes[rng.choice(sorted({owner_of(key) for key in keys}))].refuse[txid] = "conflict"
                started[op] = (keys, txid, bool(writes))
                clerk.commit(op, txid=txid, ts=op + 1, reads=reads, writes=writes)
        for fake in fakes.values():
            if rng.random() < 0.01:
                fake.elect(None)
            elif fake.leader is None and rng.random() < 0.2:
                fake.elect(rng.choice(MEMBERS[fake.name]))
        for replica, batch in clerk.take_output():
            for _ in range(2 if rng.random() < 0.1 else 1):
                if rng.random() >= 0.15:
                    in_flight.append((now + rng.randint(0, 3), rng.random(), ("server", replica, batch)))
        due = sorted(item for item in in_flight if item[0] <= now)
        in_flight = [item for item in in_flight if item[0] > now]
        for _, _, (kind, replica, message) in due:
            if kind == "server":
                reply = net.cluster_of(replica).answer(replica, message)
                if reply is not None and rng.random() >= 0.15:
                    in_flight.append((now + rng.randint(0, 3), rng.random(), ("clerk", None, reply)))
            else:
                clerk.receive(message)
        completions.extend(clerk.take_completions())
        if len(completions) == 30:
            break
        clerk.tick()
    return fakes, started, completions


@pytest.mark.parametrize("seed", range(5))
def test_outcomes_agree_with_the_servers_under_loss_duplication_reordering_and_elections(seed):
    fakes, started, completions = run_random_workload(seed)

    assert sorted(completion.op for completion in completions) == list(range(30))
    kinds = {type(completion) for completion in completions}
    assert Failed not in kinds and {Committed, Aborted, ReadDone} <= kinds
    for completion in completions:
        keys, txid, writes = started[completion.op]
        if isinstance(completion, ReadDone):
            assert txid is None and list(completion.values) == keys
            continue
        assert completion.txid == txid
        refused = any(txid in fakes[cluster].refuse for cluster in {owner_of(key) for key in keys})
        states = {fake.outcomes.get(txid) for fake in fakes.values()}
        if isinstance(completion, Committed):
            assert not refused and TXN_ABORTED not in states
            if writes:
                # The commit point: the primary (or the one cluster) applied it.
                assert fakes[owner_of(min(keys))].outcomes[txid] == TXN_COMMITTED
        else:
            assert isinstance(completion, Aborted) and refused and TXN_COMMITTED not in states


def test_reads_spread_over_members_when_reading_from_followers():
    """`transactions.read_from: follower`: ReadKeys go to any member, not only the leader."""
    clerk = make_clerk(read_from_followers=True)
    key = keys_in("c1")[0]
    targets = set()
    for op in range(1, 30):
        clerk.read(op, [key])
        targets |= {replica for replica, batch in clerk.take_output()}
    assert targets == set(MEMBERS["c1"])
    leader_only = make_clerk()
    for op in range(1, 30):
        leader_only.read(op, [key])
    assert {replica for replica, _ in leader_only.take_output()} == {"c1-r0"}


def test_a_new_leader_in_the_map_gets_waiting_requests_at_once():
    """Failover costs the election, not a resend timeout: a MapUpdate naming a
    new leader sends the requests waiting on the old one to it right away."""
    clerk = make_clerk()
    key = keys_in("c1")[0]
    clerk.commit(1, txid="t1", ts=5, reads={}, writes={key: 1})
    assert [replica for replica, _ in clerk.take_output()] == ["c1-r0"]  # then c1-r0 dies, silently
    clerk.update_routing(routing(leaders={"c1": "c1-r2", "c2": "c2-r0", "c3": "c3-r0"}))
    ((replica, batch),) = clerk.take_output()
    assert replica == "c1-r2" and isinstance(batch.requests[0].op, CommitOnePhase)
    clerk.update_routing(routing(leaders={"c1": "c1-r2", "c2": "c2-r0", "c3": "c3-r0"}))  # the same news again
    assert clerk.take_output() == []


def test_a_commit_whose_share_of_a_cluster_cannot_fit_one_entry_is_too_large_and_nothing_is_sent():
    clerk = make_clerk(max_command_bytes=2_000)
    small, big = keys_in("c1", 2)
    other = keys_in("c2")[0]
    clerk.commit(1, txid="t1", ts=5, reads={}, writes={small: "x" * 100, other: "y" * 1_900})
    # c2's share is too large, whatever c1's is: the whole transaction can never commit.
    [done] = clerk.take_completions()
    assert isinstance(done, TooLarge) and done.op == 1
    assert "cluster c2 takes" in done.reason and "more than the 2000 one log entry holds" in done.reason
    assert clerk.take_output() == []
    clerk.commit(2, txid="t2", ts=6, reads={}, writes={small: "x" * 100, big: "z" * 100})
    assert clerk.take_completions() == [] and clerk.take_output() != []
