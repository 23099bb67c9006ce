"""Helpers shared by the Replica and store tests: commands with defaults, keys of a
slot, and `Net`, a tiny synchronous pump of Replicas.

`Net` delivers every output at once and in order; `ToLeaderOf` goes to the
leader the coordinator last heard of; a replica marked down neither ticks nor
sends nor receives; whatever goes to the coordinator is kept. Network faults
belong to the simulator, not here. With `clocks=True` every replica is handed
the time before each input (`Replica.observe_clock`), which a tick moves on
by `tick_ms` and delivery not at all; the Unix clock reads UNIX_EPOCH then.
"""

from __future__ import annotations

import random
from collections import deque

from actors.keyspace import slot_of
from actors.messages import (
    ClientBatch,
    ClientBatchReply,
    ClientRequest,
    CommitOnePhase,
    LeaderChange,
    Prepare,
)
from actors.raft.messages import ConfState
from actors.raft.node import LEADER, RaftConfig
from actors.raft.storage import MemoryStorage
from actors.replica import (
    Replica,
    ReplicaConfig,
    ToClient,
    ToCoordinator,
    ToLeaderOf,
    ToReplica,
)

SEED = 7
UNIX_EPOCH = 1_800_000_000.0
"""What a `Net` with clocks shows as Unix time at its start."""
SLOTS = 4
"""The slot count of the slot tests."""


def settle_followers(net: Net, cluster: str) -> None:
    """Heartbeats carry the commit index: tick until every live member applied what the leader did."""
    leader = net.leaders[cluster]
    live = [rid for rid in net.members[cluster] if rid not in net.down]
    net.run_until(lambda: all(net.status(rid)["applied"] == net.status(leader)["applied"] for rid in live))


def write_past_a_follower(net: Net, cluster: str = "c1", count: int = 12):
    """Elect a leader, take one follower down and commit `count` writes
    without it: (the leader, that follower's id)."""
    leader = net.elect(cluster)
    lagging = next(rid for rid in net.members[cluster] if rid != leader.id)
    net.down.add(lagging)
    clerk = Clerk(net)
    for n in range(count):
        clerk.call(cluster, write(f"t{n}", 10 + n, **{f"k{n}": n}))
    return leader, lagging


def write(txid: str, ts: int, **values) -> CommitOnePhase:
    """A one-phase commit of `values`, without reads."""
    return CommitOnePhase(txid=txid, ts=ts, reads={}, writes=values, epoch=1)


def prepare(txid, ts, reads=None, writes=None, deletes=(), primary="c1", participants=("c1", "c2")) -> Prepare:
    return Prepare(
        txid=txid,
        ts=ts,
        reads=reads or {},
        writes=writes or {},
        deletes=deletes,
        primary=primary,
        participants=participants,
        epoch=1,
    )


def commit_one_phase(txid, ts, reads=None, writes=None, deletes=()) -> CommitOnePhase:
    return CommitOnePhase(txid=txid, ts=ts, reads=reads or {}, writes=writes or {}, deletes=deletes, epoch=1)


def keys_of(slot, count, prefix="k"):
    """`count` keys of `slot` (of SLOTS), in a fixed order."""
    found, number = [], 0
    while len(found) < count:
        key = f"{prefix}{number}"
        if slot_of(key, SLOTS) == slot:
            found.append(key)
        number += 1
    return found


class Net:
    """Clusters of Replicas wired together, with clients and a coordinator stand-in.

    `members` are each cluster's founding replicas: every replica of a cluster,
    one started later too, starts with them as voters and with the cluster's
    `founding_slots`."""

    def __init__(
        self,
        clusters: dict[str, int],
        *,
        storage=lambda rid: MemoryStorage(),
        raft_settings=None,
        seed=SEED,
        founding_slots=None,
        clocks=False,
        **settings,
    ) -> None:
        self.settings = settings
        self.now: float | None = 0.0 if clocks else None  # seconds since the start, when clocks are handed out
        self.raft_settings = raft_settings or {}
        self.seed = seed
        self.founding_slots = founding_slots or {}
        self.storage = storage
        self.members = {cluster: [f"{cluster}-r{i}" for i in range(size)] for cluster, size in clusters.items()}
        self.cluster_of = {rid: cluster for cluster, rids in self.members.items() for rid in rids}
        self.storages = {rid: storage(rid) for rid in self.cluster_of}
        self.replicas: dict[str, Replica] = {}
        self.leaders: dict[str, str] = {}
        self.leader_changes: list[LeaderChange] = []
        self.to_coordinator: list = []  # every other message for the coordinator, in order
        self.inbox: dict[str, list[ClientBatchReply]] = {}
        self.cross_cluster: list[tuple[str, ClientBatch]] = []  # (sender, batch) for every ToLeaderOf
        self.down: set[str] = set()
        self.queue: deque = deque()
        for rid in self.cluster_of:
            self.start(rid)

    def config(self, rid: str) -> ReplicaConfig:
        cluster = self.cluster_of[rid]
        return ReplicaConfig(
            cluster=cluster,
            raft=RaftConfig(id=rid, **self.raft_settings),
            initial_conf=ConfState(voters=tuple(self.members[cluster])),
            founding_slots=self.founding_slots.get(cluster, ()),
            **self.settings,
        )

    def start(self, rid: str, cluster: str | None = None) -> None:
        """Build (or rebuild, as after a crash) the replica from its storage;
        given a `cluster`, a new replica `rid` of it, on fresh storage."""
        if cluster is not None:
            self.cluster_of[rid] = cluster
            self.storages[rid] = self.storage(rid)
        self.replicas[rid] = Replica(self.config(rid), self.storages[rid], random.Random(f"{self.seed}-{rid}"))
        self.collect(rid)

    def observe_clock(self, rid: str) -> None:
        if self.now is not None:
            self.replicas[rid].observe_clock(monotonic=self.now, unix=UNIX_EPOCH + self.now)

    def unix_us(self) -> int:
        """The Unix clock now, in microseconds: a timestamp a clerk would take."""
        return int((UNIX_EPOCH + self.now) * 1_000_000)

    def collect(self, rid: str) -> None:
        for destination, message in self.replicas[rid].take_output():
            match destination:
                case ToReplica(replica=to):
                    self.queue.append((to, message, rid))
                case ToLeaderOf(cluster=cluster):
                    self.cross_cluster.append((rid, message))
                    if cluster in self.leaders:
                        self.queue.append((self.leaders[cluster], message, rid))
                case ToClient(token=token) if token in self.replicas:
                    self.queue.append((token, message, rid))
                case ToClient(token=token):
                    self.inbox.setdefault(token, []).append(message)
                case ToCoordinator() if isinstance(message, LeaderChange):
                    self.leader_changes.append(message)
                    self.leaders[message.cluster] = message.leader
                case ToCoordinator():
                    self.to_coordinator.append(message)

    def deliver(self, to: str, message, sender: str) -> None:
        if to not in self.down and sender not in self.down:
            self.observe_clock(to)
            self.replicas[to].receive(message, sender)
            self.collect(to)

    def pump(self) -> None:
        while self.queue:
            self.deliver(*self.queue.popleft())

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            if self.now is not None:
                self.now += self.config(next(iter(self.replicas))).tick_ms / 1000
            for rid in sorted(self.replicas):
                if rid not in self.down:
                    self.observe_clock(rid)
                    self.replicas[rid].tick()
                    self.collect(rid)
            self.pump()

    def run_until(self, condition, max_ticks: int = 200) -> None:
        for _ in range(max_ticks):
            if condition():
                return
            self.tick()
        assert condition(), f"not reached within {max_ticks} ticks"

    def elect(self, cluster: str) -> Replica:
        def has_leader():
            rid = self.leaders.get(cluster)
            return rid is not None and rid not in self.down and self.replicas[rid].status()["role"] == LEADER

        self.run_until(has_leader)
        return self.replicas[self.leaders[cluster]]

    def status(self, rid: str) -> dict:
        return self.replicas[rid].status()

    def leader_status(self, cluster: str) -> dict:
        return self.status(self.leaders[cluster])


class Clerk:
    """A hand-driven client: sends one ClientBatch and reads the answers by req id."""

    def __init__(self, net: Net, name: str = "clerk") -> None:
        self.net = net
        self.name = name
        self.next_req = 0

    def send(self, rid: str, *ops) -> list[int]:
        reqs = []
        requests = []
        for op in ops:
            self.next_req += 1
            reqs.append(self.next_req)
            requests.append(ClientRequest(req=self.next_req, op=op))
        batch = ClientBatch(client=self.name, cluster=self.net.cluster_of[rid], epoch=1, requests=tuple(requests))
        self.net.observe_clock(rid)
        self.net.replicas[rid].receive(batch, self.name)
        self.net.collect(rid)
        self.net.pump()
        return reqs

    def answers(self) -> dict[int, object]:
        return {
            response.req: response.result for reply in self.net.inbox.get(self.name, []) for response in reply.responses
        }

    def call(self, cluster_or_rid: str, *ops, max_ticks: int = 50) -> list:
        """Send to the cluster's leader (or to a given replica) and tick until every op is answered."""
        rid = self.net.leaders.get(cluster_or_rid, cluster_or_rid)
        reqs = self.send(rid, *ops)
        self.net.run_until(lambda: all(req in self.answers() for req in reqs), max_ticks)
        return [self.answers()[req] for req in reqs]
