"""Reconfiguration at the Replica: slot moves driven by MoveSlot polls, and
membership changes driven by ChangeMembership (docs/DESIGN.md section 6).

`Router` is the synchronous `Net` (tests/unit/replica_helpers.py) with slots, a client that asks
one request at a time, and the coordinator's commands.
"""

from __future__ import annotations

from actors.messages import (
    MOVE_DRAINING,
    MOVE_DROPPED,
    MOVE_FREEZING,
    MOVE_NOT_OWNED,
    MOVE_SHIPPING,
    ZERO_STAMP,
    ChangeMembership,
    ClientBatch,
    ClientBatchReply,
    CommitOnePhaseResult,
    InstallSlot,
    MembershipReport,
    MoveProgress,
    MoveSlot,
    ReadCheck,
    ReadKeys,
    ReadKeysResult,
    WrongEpoch,
)
from actors.raft.messages import CONF_ADD_LEARNER, CONF_PROMOTE, CONF_REMOVE
from tests.unit.replica.replica_helpers import SLOTS, Clerk, Net, commit_one_phase, keys_of, prepare

SEED = 11
FOUNDING = {"c1": (0, 1), "c2": (2, 3)}
POLL_TICKS = 5  # the coordinator's MoveSlot period, in ticks


class Router(Net):
    def __init__(self, sizes: dict[str, int]) -> None:
        super().__init__(sizes, seed=SEED, slot_count=SLOTS, founding_slots=FOUNDING)
        self.clerk = Clerk(self)

    def ask(self, cluster: str, op):
        """One client request to the cluster's leader; its answer."""
        self.elect(cluster)
        (answer,) = self.clerk.call(cluster, op)
        return answer

    def command(self, cluster: str, message) -> list:
        """Deliver a coordinator command to the cluster's leader; the leader's answers to it."""
        leader = self.elect(cluster)
        before = len(self.to_coordinator)
        self.deliver(leader.id, message, "coordinator")
        self.pump()
        return self.to_coordinator[before:]


def load(router: Router, keys: list[str]) -> None:
    for start in range(0, len(keys), 100):
        writes = {key: {"key": key, "pad": "p" * 40} for key in keys[start : start + 100]}
        assert router.ask("c1", commit_one_phase(f"load{start}", 1 + start, writes=writes)) == CommitOnePhaseResult(
            txid=f"load{start}", committed=True
        )


def drive_move(router: Router, move: MoveSlot, *, on_progress=lambda progress: None, max_polls: int = 200) -> list:
    """Poll like the coordinator until a MoveProgress says dropped; every progress seen."""
    seen = []
    for _ in range(max_polls):
        seen += [answer for answer in router.command("c1", move) if isinstance(answer, MoveProgress)]
        if seen and seen[-1].stage == MOVE_DROPPED:
            return seen
        on_progress(seen[-1])
        router.tick(POLL_TICKS)
    raise AssertionError(f"move not done: last progress {seen[-1]}")


def test_a_slot_of_1000_keys_moves_while_a_prepared_transaction_drains():
    router = Router({"c1": 3, "c2": 3})
    keys = keys_of(0, 1_000, prefix="key")
    load(router, keys)
    held = prepare("held", 10**4, writes={keys[0]: "h"})
    assert router.ask("c1", held).vote

    seen = drive_move(router, MoveSlot(move="m1", slot=0, destination="c2"))
    stages = [progress.stage for progress in seen]
    # Shipping starts the moment the slot drains, between two polls, so the
    # polls may never see it: the leader's event log tells how it went.
    assert stages[0] == MOVE_FREEZING and MOVE_DRAINING in stages and stages[-1] == MOVE_DROPPED
    assert seen[0].keys == 1_000
    assert router.command("c1", MoveSlot(move="m1", slot=0, destination="c2"))[-1].stage == MOVE_DROPPED

    # The source refuses the slot; the destination serves it, versions and all.
    key = keys[1]
    refused = router.ask("c1", ReadKeys(keys=(key,)))
    assert isinstance(refused, WrongEpoch) and refused.slots == (0,)
    assert isinstance(router.ask("c1", commit_one_phase("late", 10**5, writes={key: 1})), WrongEpoch)
    assert isinstance(router.ask("c1", ReadCheck(txid="rc", ts=10**5, reads={key: ZERO_STAMP})), WrongEpoch)
    (read,) = router.ask("c2", ReadKeys(keys=(key,))).values
    assert read.value == {"key": key, "pad": "p" * 40} and read.version == (1, "load0")
    assert router.ask("c2", commit_one_phase("after", 10**5, reads={key: read.version}, writes={key: 2})).committed
    # The prepared transaction was aborted by its timeout at the source, never shipped.
    assert router.ask("c2", ReadKeys(keys=(keys[0],))).values[0].value != "h"

    everyone = [router.replicas[rid] for rid in router.cluster_of]
    router.run_until(lambda: len({replica.status()["applied"] for replica in everyone}) == 2)  # one per cluster
    for rid in router.members["c1"]:
        status = router.replicas[rid].status()
        assert status["keys"] == 0 and status["slots"]["owned"] == 1 and not status["slots"]["frozen"]
    for rid in router.members["c2"]:
        status = router.replicas[rid].status()
        assert status["keys"] == 1_000 and status["slots"]["owned"] == 3
    c1, c2 = (router.elect(cluster) for cluster in ("c1", "c2"))
    events = c1.take_events()
    assert any("dropped (move m1)" in line for line in events)
    (shipped,) = [line for line in events if line.startswith("shipping slot 0 (move m1) to c2: ")]
    assert int(shipped.split(": ")[1].split()[0]) > 2
    assert any("installed from c1 (move m1" in line for line in c2.take_events())


def test_a_new_source_leader_resumes_shipping_where_the_old_one_stopped():
    router = Router({"c1": 3, "c2": 3})
    keys = keys_of(0, 1_000, prefix="key")
    load(router, keys)
    old = router.elect("c1").id

    def crash_mid_ship(progress: MoveProgress) -> None:
        if progress.stage == MOVE_SHIPPING and progress.acked == 0 and old not in router.down:
            router.tick(30)  # a few push intervals: the old leader re-sends its window
            router.down.add(old)

    # While frozen, the old leader still serves reads of the slot.
    router.command("c1", MoveSlot(move="m1", slot=0, destination="c2"))
    assert isinstance(router.ask("c1", ReadKeys(keys=(keys[3],))), ReadKeysResult)

    # The destination's answers to the old leader are lost: its window stays
    # at the first two chunks (re-sent, answered from state) until it crashes.
    sent_by_old = []
    deliver = router.deliver

    def lossy(to, message, sender):
        if sender == old and isinstance(message, ClientBatch):
            sent_by_old.extend(request.op.chunk for request in message.requests if isinstance(request.op, InstallSlot))
        if to == old and isinstance(message, ClientBatchReply) and message.cluster == "c2":
            return
        deliver(to, message, sender)

    router.deliver = lossy
    seen = drive_move(router, MoveSlot(move="m1", slot=0, destination="c2"), on_progress=crash_mid_ship)
    assert set(sent_by_old) == {0, 1} and len(sent_by_old) > 2  # the window, re-sent
    assert router.leaders["c1"] != old and seen[-1].stage == MOVE_DROPPED
    resumed = [progress for progress in seen if progress.stage == MOVE_SHIPPING]
    assert resumed[-1].chunks == resumed[0].chunks > 2

    values = router.ask("c2", ReadKeys(keys=tuple(keys))).values
    assert [value.key for value in values if value.exists] == keys
    router.down.discard(old)
    router.start(old)  # the old leader restarts from storage and catches up with the drop
    router.run_until(lambda: router.replicas[old].status()["keys"] == 0)


def report_for(answers: list) -> MembershipReport:
    (report,) = [answer for answer in answers if isinstance(answer, MembershipReport)]
    return report


def test_membership_add_learner_promote_and_remove_the_leader():
    router = Router({"c1": 3})
    load(router, keys_of(0, 200, prefix="key"))
    router.start("c1-r3", "c1")
    add = ChangeMembership(op=CONF_ADD_LEARNER, replica="c1-r3")
    first = report_for(router.command("c1", add))
    assert first.error == "" and first.learners == ("c1-r3",) and first.pending
    assert "already a member" in report_for(router.command("c1", add)).error

    def caught_up() -> bool:
        report = report_for(router.command("c1", ChangeMembership(op="", replica="c1-r3")))
        return not report.pending and report.match.get("c1-r3", 0) >= report.commit

    router.run_until(caught_up)
    assert router.replicas["c1-r3"].status()["keys"] == 200
    promoted = report_for(router.command("c1", ChangeMembership(op=CONF_PROMOTE, replica="c1-r3")))
    assert promoted.error == "" and "c1-r3" in promoted.voters and promoted.learners == ()

    old = router.elect("c1").id
    router.tick(2)  # let the promotion commit
    handing = report_for(router.command("c1", ChangeMembership(op=CONF_REMOVE, replica=old)))
    assert handing.error.startswith("handing leadership to ")
    router.run_until(lambda: router.leaders["c1"] != old)
    removed = report_for(router.command("c1", ChangeMembership(op=CONF_REMOVE, replica=old)))
    assert removed.error == "" and old not in removed.voters and len(removed.voters) == 3
    router.tick(2)
    done = report_for(router.command("c1", ChangeMembership(op="", replica=old)))
    assert not done.pending and old not in done.match
    assert any("membership change applied: remove " + old in line for line in router.elect("c1").take_events())
    assert router.ask("c1", commit_one_phase("after", 10**5, writes={keys_of(1, 1, prefix="key")[0]: 1})).committed


def test_followers_ignore_coordinator_commands():
    router = Router({"c1": 3, "c2": 3})
    leader = router.elect("c1").id
    follower = next(rid for rid in router.members["c1"] if rid != leader)
    before = len(router.to_coordinator)
    router.deliver(follower, MoveSlot(move="m1", slot=0, destination="c2"), "coordinator")
    router.deliver(follower, ChangeMembership(op="", replica=follower), "coordinator")
    assert len(router.to_coordinator) == before
    not_owned = router.command("c1", MoveSlot(move="m9", slot=2, destination="c2"))
    assert [progress.stage for progress in not_owned] == [MOVE_NOT_OWNED]
