"""Reconfiguration at the Replica: slot moves driven by MoveSlot polls, and
membership changes driven by ChangeMembership (DESIGN.md section 6).

`Router` is a tiny synchronous pump like test_replica.Net: every output is
delivered at once and in order, `ToLeaderOf` goes to the leader the
coordinator last heard of, a replica marked down neither ticks nor sends nor
receives, and whatever goes to the coordinator is kept in `to_coordinator`.
"""

from __future__ import annotations

import random
from collections import deque

from actors.messages import (
    CONF_ADD_LEARNER,
    CONF_PROMOTE,
    CONF_REMOVE,
    MOVE_DROPPED,
    ZERO_STAMP,
    ChangeMembership,
    ClientBatch,
    ClientBatchReply,
    ClientRequest,
    CommitOnePhase,
    CommitOnePhaseResult,
    ConfState,
    InstallSlot,
    LeaderChange,
    MembershipReport,
    MoveProgress,
    MoveSlot,
    Prepare,
    ReadCheck,
    ReadKeys,
    ReadKeysResult,
    WrongEpoch,
)
from actors.raft.node import LEADER, RaftConfig
from actors.raft.storage import MemoryStorage
from actors.replica import Replica, ReplicaConfig, ToClient, ToCoordinator, ToLeaderOf, ToReplica
from coordinator.shardmap import slot_of

SEED = 11
SLOTS = 4
FOUNDING = {"c1": (0, 1), "c2": (2, 3)}
POLL_TICKS = 5  # the coordinator's MoveSlot period, in ticks


class Router:
    def __init__(self, sizes: dict[str, int]) -> None:
        self.members = {cluster: [f"{cluster}-r{i}" for i in range(size)] for cluster, size in sizes.items()}
        self.founders = {cluster: tuple(rids) for cluster, rids in self.members.items()}
        self.cluster_of = {rid: cluster for cluster, rids in self.members.items() for rid in rids}
        self.storages = {rid: MemoryStorage() for rid in self.cluster_of}
        self.replicas: dict[str, Replica] = {}
        self.leaders: dict[str, str] = {}
        self.to_coordinator: list[tuple[str, object]] = []
        self.inbox: dict[int, object] = {}  # the client's answers by request id
        self.down: set[str] = set()
        self.queue: deque = deque()
        self.next_req = 0
        for rid in self.cluster_of:
            self.start(rid)

    def start(self, rid: str, cluster: str | None = None) -> None:
        """Start (or restart from storage) replica `rid`; a new one joins `cluster`
        as every replica does: with the founding voters and founding slots."""
        if cluster is not None:
            self.cluster_of[rid] = cluster
            self.storages[rid] = MemoryStorage()
        cluster = self.cluster_of[rid]
        config = ReplicaConfig(
            cluster=cluster,
            raft=RaftConfig(id=rid),
            initial_conf=ConfState(voters=self.founders[cluster]),
            slot_count=SLOTS,
            founding_slots=FOUNDING[cluster],
        )
        self.replicas[rid] = Replica(config, self.storages[rid], random.Random(f"{SEED}-{rid}"))
        self.collect(rid)

    def collect(self, rid: str) -> None:
        for destination, message in self.replicas[rid].take_output():
            match destination:
                case ToReplica(replica=to):
                    self.queue.append((to, message, rid))
                case ToLeaderOf(cluster=cluster) if cluster in self.leaders:
                    self.queue.append((self.leaders[cluster], message, rid))
                case ToClient(token=token) if token in self.replicas:
                    self.queue.append((token, message, rid))
                case ToClient():
                    for response in message.responses:
                        self.inbox[response.req] = response.result
                case ToCoordinator():
                    if isinstance(message, LeaderChange):
                        self.leaders[message.cluster] = message.leader
                    self.to_coordinator.append((rid, message))

    def deliver(self, to: str, message, sender: str) -> None:
        if to not in self.down and sender not in self.down:
            self.replicas[to].receive(message, sender)
            self.collect(to)

    def pump(self) -> None:
        while self.queue:
            self.deliver(*self.queue.popleft())

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            for rid in sorted(self.replicas):
                if rid not in self.down:
                    self.replicas[rid].tick()
                    self.collect(rid)
            self.pump()

    def run_until(self, condition, max_ticks: int = 300) -> None:
        for _ in range(max_ticks):
            if condition():
                return
            self.tick()
        assert condition(), f"not reached within {max_ticks} ticks"

    def leader(self, cluster: str) -> Replica:
        def has_leader():
            rid = self.leaders.get(cluster)
            return rid is not None and rid not in self.down and self.replicas[rid].status()["role"] == LEADER

        self.run_until(has_leader)
        return self.replicas[self.leaders[cluster]]

    def ask(self, cluster: str, op, *, to: str | None = None):
        """One client request to `to` (default: the cluster's leader); its answer."""
        to = to or self.leader(cluster).id
        self.next_req += 1
        batch = ClientBatch(
            client="clerk", cluster=cluster, epoch=1, requests=(ClientRequest(req=self.next_req, op=op),)
        )
        self.deliver(to, batch, "clerk")
        self.pump()
        return self.inbox.pop(self.next_req)

    def command(self, cluster: str, message) -> list:
        """Deliver a coordinator command to the cluster's leader; the leader's answers to it."""
        leader = self.leader(cluster)
        before = len(self.to_coordinator)
        self.deliver(leader.id, message, "coordinator")
        self.pump()
        return [answer for rid, answer in self.to_coordinator[before:] if not isinstance(answer, LeaderChange)]


def keys_of(slot: int, count: int) -> list[str]:
    found, number = [], 0
    while len(found) < count:
        key = f"key{number}"
        if slot_of(key, SLOTS) == slot:
            found.append(key)
        number += 1
    return found


def commit(txid, ts, reads=None, writes=None):
    return CommitOnePhase(txid=txid, ts=ts, reads=reads or {}, writes=writes or {}, epoch=1)


def load(router: Router, keys: list[str]) -> None:
    for start in range(0, len(keys), 100):
        writes = {key: {"key": key, "pad": "p" * 40} for key in keys[start : start + 100]}
        assert router.ask("c1", commit(f"load{start}", 1 + start, writes=writes)) == CommitOnePhaseResult(
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
    keys = keys_of(0, 1_000)
    load(router, keys)
    held = Prepare(
        txid="held", ts=10**4, reads={}, writes={keys[0]: "h"}, primary="c1", participants=("c1", "c2"), epoch=1
    )
    assert router.ask("c1", held).vote

    seen = drive_move(router, MoveSlot(move="m1", slot=0, destination="c2"))
    stages = [progress.stage for progress in seen]
    # Shipping starts the moment the slot drains, between two polls, so the
    # polls may never see it: the leader's event log tells how it went.
    assert stages[0] == "freezing" and "draining" in stages and stages[-1] == MOVE_DROPPED
    assert seen[0].keys == 1_000
    assert router.command("c1", MoveSlot(move="m1", slot=0, destination="c2"))[-1].stage == MOVE_DROPPED

    # The source refuses the slot; the destination serves it, versions and all.
    key = keys[1]
    refused = router.ask("c1", ReadKeys(keys=(key,)))
    assert isinstance(refused, WrongEpoch) and refused.slots == (0,)
    assert isinstance(router.ask("c1", commit("late", 10**5, writes={key: 1})), WrongEpoch)
    assert isinstance(router.ask("c1", ReadCheck(txid="rc", ts=10**5, reads={key: ZERO_STAMP})), WrongEpoch)
    (read,) = router.ask("c2", ReadKeys(keys=(key,))).values
    assert read.value == {"key": key, "pad": "p" * 40} and read.version == (1, "load0")
    assert router.ask("c2", commit("after", 10**5, reads={key: read.version}, writes={key: 2})).committed
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
    c1, c2 = (router.leader(cluster) for cluster in ("c1", "c2"))
    events = c1.take_events()
    assert any("dropped (move m1)" in line for line in events)
    (shipped,) = [line for line in events if line.startswith("shipping slot 0 (move m1) to c2: ")]
    assert int(shipped.split(": ")[1].split()[0]) > 2
    assert any("installed from c1 (move m1" in line for line in c2.take_events())


def test_a_new_source_leader_resumes_shipping_where_the_old_one_stopped():
    router = Router({"c1": 3, "c2": 3})
    keys = keys_of(0, 1_000)
    load(router, keys)
    old = router.leader("c1").id

    def crash_mid_ship(progress: MoveProgress) -> None:
        if progress.stage == "shipping" and progress.acked == 0 and old not in router.down:
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
    resumed = [progress for progress in seen if progress.stage == "shipping"]
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
    load(router, keys_of(0, 200))
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

    old = router.leader("c1").id
    router.tick(2)  # let the promotion commit
    handing = report_for(router.command("c1", ChangeMembership(op=CONF_REMOVE, replica=old)))
    assert handing.error.startswith("handing leadership to ")
    router.run_until(lambda: router.leaders["c1"] != old)
    removed = report_for(router.command("c1", ChangeMembership(op=CONF_REMOVE, replica=old)))
    assert removed.error == "" and old not in removed.voters and len(removed.voters) == 3
    router.tick(2)
    done = report_for(router.command("c1", ChangeMembership(op="", replica=old)))
    assert not done.pending and old not in done.match
    assert any("membership change applied: remove " + old in line for line in router.leader("c1").take_events())
    assert router.ask("c1", commit("after", 10**5, writes={keys_of(1, 1)[0]: 1})).committed


def test_followers_ignore_coordinator_commands():
    router = Router({"c1": 3, "c2": 3})
    leader = router.leader("c1").id
    follower = next(rid for rid in router.members["c1"] if rid != leader)
    before = len(router.to_coordinator)
    router.deliver(follower, MoveSlot(move="m1", slot=0, destination="c2"), "coordinator")
    router.deliver(follower, ChangeMembership(op="", replica=follower), "coordinator")
    assert len(router.to_coordinator) == before
    not_owned = router.command("c1", MoveSlot(move="m9", slot=2, destination="c2"))
    assert [progress.stage for progress in not_owned] == ["not-owned"]
