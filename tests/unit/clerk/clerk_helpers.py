"""Shared by the clerk's tests: a shard map of three clusters, fake clusters
that answer like servers, and builders of the replies a clerk gets."""

import random

from actors.keyspace import slot_of
from actors.messages import (
    TXN_ABORTED,
    TXN_COMMITTED,
    TXN_REFUSED,
    ZERO_STAMP,
    ClientBatch,
    ClientBatchReply,
    ClientReply,
    CommitOnePhase,
    CommitOnePhaseResult,
    Decide,
    DecideResult,
    LoggedRead,
    LoggedReadResult,
    MapUpdate,
    Prepare,
    PrepareResult,
    ReadCheck,
    ReadCheckResult,
    ReadKeys,
    ReadKeysResult,
    ReadResult,
    Redirect,
    WrongEpoch,
)
from clerk.core import (
    ClerkConfig,
    ClerkCore,
    Routing,
)
from clerk.session import RerunDue, WakeAfter

MEMBERS = {cluster: tuple(f"{cluster}-r{index}" for index in range(3)) for cluster in ("c1", "c2", "c3")}
SLOTS = ("c1", "c2", "c3", "c1", "c2", "c3", "c1", "c2")


def routing(*, epoch: int = 1, slots: tuple[str, ...] = SLOTS, leaders: dict | None = None) -> Routing:
    if leaders is None:
        leaders = {cluster: f"{cluster}-r0" for cluster in MEMBERS}
    return Routing(epoch=epoch, slots=slots, members=dict(MEMBERS), leaders=leaders)


def keys_in(cluster: str, count: int = 1, *, prefix: str = "k", slots: tuple[str, ...] = SLOTS) -> list[str]:
    """The first `count` keys `prefix0, prefix1, ...` that `cluster` owns."""
    found = [f"{prefix}{n}" for n in range(10_000) if slots[slot_of(f"{prefix}{n}", len(slots))] == cluster]
    return found[:count]


def make_clerk(**config) -> ClerkCore:
    return ClerkCore(ClerkConfig(clerk="clerk-1", **config), routing(), random.Random(7))


class FakeCluster:
    """One cluster as a clerk sees it: the leader answers at once from plain
    dicts (state shared by all members, as if replicated), the other members
    redirect to it, the members in `down` answer nothing. `received` lists
    every (replica, op) that reached a member, down or not. Decisions are
    idempotent by txid, like the real machine."""

    def __init__(self, name: str, *, leader: str | None = None, term: int = 1) -> None:
        self.name = name
        self.leader = leader if leader is not None else f"{name}-r0"
        self.term = term
        self.down: set[str] = set()
        self.values: dict[str, ReadResult] = {}
        self.refuse: dict[str, str] = {}
        self.prepared: set[str] = set()
        self.outcomes: dict[str, str] = {}
        self.received: list[tuple[str, object]] = []

    def elect(self, leader: str | None) -> None:
        self.term += 1
        self.leader = leader

    def answer(self, replica: str, batch: ClientBatch) -> ClientBatchReply | None:
        assert batch.cluster == self.name
        self.received.extend((replica, request.op) for request in batch.requests)
        if replica in self.down:
            return None
        responses = []
        for request in batch.requests:
            result = self.result(request.op) if replica == self.leader else Redirect(leader=self.leader, term=self.term)
            responses.append(ClientReply(req=request.req, result=result))
        return ClientBatchReply(cluster=self.name, replica=replica, term=self.term, responses=tuple(responses))

    def result(self, op):
        match op:
            case ReadKeys():
                return ReadKeysResult(values=tuple(self.read(key) for key in op.keys))
            case ReadCheck():
                reason = self.refuse.get(op.txid)
                return ReadCheckResult(txid=op.txid, ok=reason is None, reason=reason or "")
            case LoggedRead():
                if op.txid in self.refuse:
                    return LoggedReadResult(txid=op.txid, ok=False, reason=self.refuse[op.txid])
                return LoggedReadResult(txid=op.txid, ok=True, values=tuple(self.read(key) for key in op.keys))
            case CommitOnePhase():
                if op.txid not in self.outcomes:
                    self.outcomes[op.txid] = TXN_ABORTED if op.txid in self.refuse else TXN_COMMITTED
                    if self.outcomes[op.txid] == TXN_COMMITTED:
                        self.install(op.txid, op.ts, op.writes)
                committed = self.outcomes[op.txid] == TXN_COMMITTED
                return CommitOnePhaseResult(txid=op.txid, committed=committed, reason=self.refuse.get(op.txid, ""))
            case Prepare():
                if op.txid in self.prepared:
                    return PrepareResult(txid=op.txid, vote=True)
                if op.txid in self.outcomes:
                    return PrepareResult(txid=op.txid, vote=self.outcomes[op.txid] == TXN_COMMITTED)
                if op.txid in self.refuse:
                    self.outcomes[op.txid] = TXN_ABORTED
                    return PrepareResult(txid=op.txid, vote=False, reason=self.refuse[op.txid])
                self.prepared.add(op.txid)
                return PrepareResult(txid=op.txid, vote=True)
            case Decide():
                if op.txid in self.prepared:
                    self.prepared.discard(op.txid)
                    self.outcomes[op.txid] = TXN_COMMITTED if op.commit else TXN_ABORTED
                elif op.txid not in self.outcomes:
                    if op.commit:
                        return DecideResult(txid=op.txid, status=TXN_REFUSED, reason="never prepared")
                    self.outcomes[op.txid] = TXN_ABORTED
                return DecideResult(txid=op.txid, status=self.outcomes[op.txid])
        raise AssertionError(f"unexpected op {op!r}")

    def read(self, key: str) -> ReadResult:
        return self.values.get(key, absent(key))

    def install(self, txid: str, ts: int, writes: dict) -> None:
        for key, value in writes.items():
            counter = self.read(key).counter + 1
            self.values[key] = ReadResult(key=key, value=value, version=(ts, txid), counter=counter, exists=True)

    def ops(self, kind: type) -> list[tuple[str, object]]:
        return [(replica, op) for replica, op in self.received if isinstance(op, kind)]


class Net:
    """Carries a clerk's batches to the fake clusters and their answers back,
    synchronously, round by round."""

    def __init__(self, *clusters: FakeCluster) -> None:
        self.clusters = {cluster.name: cluster for cluster in clusters}

    def cluster_of(self, replica: str) -> FakeCluster:
        return self.clusters[replica.rsplit("-", 1)[0]]

    def answers(self, sent: list[tuple[str, ClientBatch]]) -> list[ClientBatchReply]:
        replies = [self.cluster_of(replica).answer(replica, batch) for replica, batch in sent]
        return [reply for reply in replies if reply is not None]

    def round(self, clerk: ClerkCore) -> list[tuple[str, ClientBatch]]:
        """One round trip: send the output, feed every answer back; returns what was sent."""
        sent = clerk.take_output()
        for reply in self.answers(sent):
            clerk.receive(reply)
        return sent

    def run(self, clerk: ClerkCore, *, ticks: int) -> list[tuple[int, str, ClientBatch]]:
        """Rounds, then `ticks` ticks each followed by rounds; returns every
        batch sent, with the number of ticks before it."""
        log = []
        for now in range(ticks + 1):
            if now:
                clerk.tick()
            while sent := self.round(clerk):
                log.extend((now, replica, batch) for replica, batch in sent)
        return log


def clusters() -> tuple[FakeCluster, FakeCluster, FakeCluster]:
    return FakeCluster("c1"), FakeCluster("c2"), FakeCluster("c3")


def answer(batch: ClientBatch, replica: str, results: dict[int, object], *, term: int = 1) -> ClientBatchReply:
    """`replica`'s reply to `batch`: request id -> result (requests not named get no answer)."""
    responses = tuple(
        ClientReply(req=request.req, result=results[request.req])
        for request in batch.requests
        if request.req in results
    )
    return ClientBatchReply(cluster=batch.cluster, replica=replica, term=term, responses=responses)


def reply_to(replica: str, batch: ClientBatch, result, *, term: int = 1) -> ClientBatchReply:
    """`replica`'s reply giving every request of `batch` the same result."""
    return answer(batch, replica, {request.req: result for request in batch.requests}, term=term)


def absent(key: str) -> ReadResult:
    return ReadResult(key=key, value=None, version=ZERO_STAMP, counter=0, exists=False)


def sent_ops(sent) -> list[tuple[str, type]]:
    return [(replica, type(request.op)) for replica, batch in sent for request in batch.requests]


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


def map_update(epoch: int, slots=SLOTS) -> MapUpdate:
    return MapUpdate(
        epoch=epoch,
        slots=slots,
        members=dict(MEMBERS),
        leaders={cluster: f"{cluster}-r0" for cluster in MEMBERS},
        terms={},
        addresses={replica: replica for members in MEMBERS.values() for replica in members},
    )


def of_kind(actions: list, kind: type) -> list:
    return [action for action in actions if isinstance(action, kind)]


def rerun_wakeups(actions: list) -> list[RerunDue]:
    return [action.wakeup for action in of_kind(actions, WakeAfter) if isinstance(action.wakeup, RerunDue)]
