"""Clerk: the Thespian shell around one ClerkCore, one per client connection (DESIGN.md section 4).

The application's process talks to its clerk with ClerkRead / ClerkCommit
(through ActorSystem.ask); the clerk runs the protocol in clerk/core.py and
answers each request with a ClerkReply once the core completes it.

What the shell adds to the core:
- routing: it subscribes to the coordinator and feeds every MapUpdate to the
  core; requests wait until the first map arrives;
- timestamps: fresh ones from the coordinator in small blocks. A block is
  used only within one tick of its grant, since an old timestamp would fail
  validation against newer versions (a spurious abort, never a wrong result);
- ticks only while operations are in flight, so an idle clerk costs nothing;
- slot moves: a commit the core completes Moved (a participant answered
  WrongEpoch; the attempt is aborted everywhere) runs again under a fresh
  txid and timestamp once the map is newer than the Moved's epoch, or after
  MOVED_RETRY anyway (the map may only change once the move is done), until
  MOVED_BUDGET_SECONDS from the first attempt; then the application gets
  "unavailable". The application never sees Moved;
- hop accounting: every reply says how many messages were on its critical
  path (CriticalPath), for benchmarks, re-runs included.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from datetime import timedelta

from thespian.actors import (
    ActorExitRequest,
    ActorTypeDispatcher,
    ChildActorExited,
    PoisonMessage,
    WakeupMessage,
)

from actors.budgets import OUTCOME_BUDGET_SECONDS
from actors.messages import (
    ClerkCommit,
    ClerkOpen,
    ClerkOpened,
    ClerkRead,
    ClerkReply,
    Decide,
    MapUpdate,
    ReadKeys,
    Subscribe,
    Timestamp,
    TimestampRequest,
    Unsubscribe,
)
from actors.process import set_process_title
from clerk.core import (
    Aborted,
    ClerkConfig,
    ClerkCore,
    Committed,
    Failed,
    Moved,
    ReadDone,
    Routing,
)

TICK = timedelta(milliseconds=50)
WAKE = timedelta(milliseconds=200)
"""How often a busy clerk wakes to count ticks: every wakeup costs a Thespian
timer round, and with many clients the clerks' 50 ms wakeups took more CPU
than the servers. Timeouts are several ticks long, so they fire at most one
WAKE late; replies and map updates are handled at once regardless."""
OWNER_CHECK = timedelta(seconds=2)
TIMESTAMP_BLOCK = 16
TIMESTAMP_FRESH_SECONDS = 0.05
TIMESTAMP_RETRY_SECONDS = 1.0
MOVED_RETRY = timedelta(milliseconds=100)
MOVED_BUDGET_SECONDS = 20.0
"""How long after its first attempt a commit refused by slot moves may still
be run again; below the application's own wait (client.REQUEST_TIMEOUT), so
the answer "unavailable" reaches it."""


class CriticalPath:
    """Messages on each operation's critical path (ClerkReply.hops), counted
    from what the core actually sends, so resends and followed redirects count.

    An operation costs 2 for the application's ask, 2 more when its commit
    waited for a timestamp round trip to the coordinator, and per protocol
    phase (its requests first sent together, answered in parallel) the cost
    of the phase's most expensive request: per send, 2 for clerk <-> leader
    and 2 more when it is a logged command (the leader's AppendLog to the
    followers and their acknowledgements that commit it; only ReadKeys is
    answered unlogged). Decide(abort) is never waited for, so never counted.
    """

    def __init__(self) -> None:
        self.base: dict[int, int] = {}  # op -> hops outside its phases
        self.phases: dict[int, list[dict[int, int]]] = {}  # op -> per phase: core request id -> hops so far
        self.owners: dict[int, tuple[int, int]] = {}  # core request id -> (op, phase index)
        self.txids: dict[str, int] = {}
        self.reading: int | None = None  # the read whose ReadKeys the next batch carries (they have no txid)

    def begin(self, op: int, *, txid: str = "") -> None:
        self.base[op] = 2
        self.phases[op] = []
        if txid:
            self.txids[txid] = op
        else:
            self.reading = op

    def waited_for_timestamp(self, op: int) -> None:
        self.base[op] += 2

    def rerun(self, op: int, *, txid: str, old_txid: str) -> None:
        """Commit `op` runs again as `txid`: its phases keep adding up."""
        self.txids.pop(old_txid, None)
        self.txids[txid] = op

    def sent(self, batches: list[tuple[str, object]], owner_of=None) -> None:
        """Count `batches`; `owner_of(req)`, when given, names the op of a
        request neither its txid nor a just-begun read accounts for (a read
        the core re-routed after WrongEpoch)."""
        opened: dict[int, int] = {}  # op -> the phase its new requests in these batches join
        for _, batch in batches:
            for request in batch.requests:
                if isinstance(request.op, Decide) and not request.op.commit:
                    continue
                if request.req not in self.owners:
                    op = self.txids.get(getattr(request.op, "txid", ""), self.reading)
                    if op is None and owner_of is not None:
                        op = owner_of(request.req)
                    if op not in self.phases:
                        continue
                    if op not in opened:
                        self.phases[op].append({})
                        opened[op] = len(self.phases[op]) - 1
                    self.owners[request.req] = (op, opened[op])
                op, phase = self.owners[request.req]
                hops = self.phases[op][phase]
                hops[request.req] = hops.get(request.req, 0) + (2 if isinstance(request.op, ReadKeys) else 4)
        self.reading = None

    def finish(self, op: int, txid: str = "") -> int:
        phases = self.phases.pop(op, [])
        for phase in phases:
            for req in phase:
                self.owners.pop(req, None)
        self.txids.pop(txid, None)
        return self.base.pop(op, 2) + sum(max(phase.values()) for phase in phases)


class Clerk(ActorTypeDispatcher):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.core: ClerkCore | None = None
        self.coordinator = None
        self.addresses: dict[str, object] = {}
        self.ops = itertools.count(1)
        self.waiting: dict[int, tuple[object, int]] = {}  # op -> (asker, req)
        self.commits: dict[int, ClerkCommit] = {}  # op -> the application's commit, kept for re-runs
        self.txids: dict[int, str] = {}  # op -> its current attempt's txid
        self.reruns: dict[int, int] = {}  # op -> re-runs after Moved so far
        self.first_attempt: dict[int, float] = {}  # op -> monotonic time of its first attempt
        self.moved: dict[int, int] = {}  # op -> the Moved epoch it waits to get past before its re-run
        self.before_map: list[tuple[object, object]] = []
        self.commits_without_ts: list[int] = []  # ops, oldest first
        self.ts_next = 0
        self.ts_end = 0
        self.ts_granted_at = 0.0
        self.ts_requested_at = 0.0  # when a TimestampRequest went out; 0 when none is pending
        self.ticking = False
        self.tick_scheduled_at = 0.0
        self.clerk_id = f"k{os.getpid()}-{random.getrandbits(24):06x}"
        self.path = CriticalPath()

    def ensure_subscribed(self) -> None:
        if self.coordinator is None:
            from coordinator.coordinator import Coordinator
            from coordinator.system import COORDINATOR_NAME

            set_process_title("raftline clerk")
            self.coordinator = self.createActor(Coordinator, globalName=COORDINATOR_NAME)
            self.send(self.coordinator, Subscribe(pid=os.getpid()))

    def receiveMsg_ClerkOpen(self, message: ClerkOpen, sender) -> None:
        self.ensure_subscribed()
        self.send(sender, ClerkOpened(pid=os.getpid()))
        self.wakeupAfter(OWNER_CHECK, payload=("owner", message.owner_pid))

    def check_owner(self, pid: int) -> None:
        """An application that died without closing leaves its clerk behind: exit then."""
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.send(self.myAddress, ActorExitRequest())
            return
        except PermissionError:
            pass
        self.wakeupAfter(OWNER_CHECK, payload=("owner", pid))

    # -- routing ------------------------------------------------------------------

    def receiveMsg_MapUpdate(self, update: MapUpdate, sender) -> None:
        self.addresses = dict(update.addresses)
        routing = Routing(epoch=update.epoch, slots=update.slots, members=dict(update.members), leaders=dict(update.leaders))
        if self.core is None:
            config = ClerkConfig(
                clerk=self.clerk_id,
                outcome_budget_ticks=round(OUTCOME_BUDGET_SECONDS / TICK.total_seconds()),
                read_from_followers=update.read_from_followers,
            )
            self.core = ClerkCore(config, routing, random.Random())
            queued, self.before_map = self.before_map, []
            for message, asker in queued:
                self.start(message, asker)
        else:
            self.core.update_routing(routing)
            for op in [op for op, epoch in self.moved.items() if self.core.moved_past(epoch)]:
                self.rerun(op)
        self.flush()

    # -- requests from the application --------------------------------------------

    def receiveMsg_ClerkRead(self, message: ClerkRead, sender) -> None:
        self.start(message, sender)

    def receiveMsg_ClerkCommit(self, message: ClerkCommit, sender) -> None:
        self.start(message, sender)

    def start(self, message, asker) -> None:
        self.ensure_subscribed()
        if self.core is None:
            self.before_map.append((message, asker))
            return
        op = next(self.ops)
        self.waiting[op] = (asker, message.req)
        if isinstance(message, ClerkRead):
            self.path.begin(op)
            self.core.read(op, list(message.keys))
        else:
            self.commits[op] = message
            self.txids[op] = f"{self.clerk_id}-{op}"
            self.first_attempt[op] = time.monotonic()
            self.path.begin(op, txid=self.txids[op])
            self.take_timestamp(op)
        self.flush()

    def take_timestamp(self, op: int) -> None:
        """Queue commit `op` for a timestamp; it starts in the core once it has one."""
        self.commits_without_ts.append(op)
        self.assign_timestamps()
        if op in self.commits_without_ts:
            self.path.waited_for_timestamp(op)

    def handle_moved(self, moved: Moved) -> None:
        """The core aborted commit `moved.op` for a slot that moves: run it
        again once the map is newer, or after MOVED_RETRY, within the budget."""
        op = moved.op
        elapsed = time.monotonic() - self.first_attempt[op]
        if elapsed >= MOVED_BUDGET_SECONDS:
            reason = f"slots kept moving for {elapsed:.1f} s: {moved.reason}"
            self.answer(op, Failed(op=op, reason=reason))
        elif self.core.moved_past(moved.epoch):
            self.rerun(op)
        else:
            self.moved[op] = moved.epoch
            self.wakeupAfter(MOVED_RETRY, payload=("moved", op, self.reruns.get(op, 0)))

    def rerun(self, op: int) -> None:
        self.moved.pop(op, None)  # absent when the map was already newer than the Moved
        self.reruns[op] = self.reruns.get(op, 0) + 1
        txid = f"{self.clerk_id}-{op}.{self.reruns[op]}"
        self.path.rerun(op, txid=txid, old_txid=self.txids[op])
        self.txids[op] = txid
        self.take_timestamp(op)

    def assign_timestamps(self) -> None:
        fresh = time.monotonic() - self.ts_granted_at < TIMESTAMP_FRESH_SECONDS
        while self.commits_without_ts and fresh and self.ts_next < self.ts_end:
            op = self.commits_without_ts.pop(0)
            message = self.commits[op]
            ts = self.ts_next
            self.ts_next += 1
            self.core.commit(
                op,
                txid=self.txids[op],
                ts=ts,
                reads=dict(message.reads),
                writes=dict(message.writes),
                deletes=tuple(message.deletes),
            )
        if self.commits_without_ts and time.monotonic() - self.ts_requested_at > TIMESTAMP_RETRY_SECONDS:
            self.ts_requested_at = time.monotonic()
            count = max(TIMESTAMP_BLOCK, len(self.commits_without_ts))
            self.send(self.coordinator, TimestampRequest(count=count))

    def receiveMsg_Timestamp(self, message: Timestamp, sender) -> None:
        self.ts_requested_at = 0.0
        self.ts_next, self.ts_end = message.ts, message.ts + message.count
        self.ts_granted_at = time.monotonic()
        self.assign_timestamps()
        self.flush()

    # -- the protocol ---------------------------------------------------------------

    def receiveMsg_ClientBatchReply(self, message, sender) -> None:
        if self.core is not None:
            self.core.receive(message)
            self.flush()

    def flush(self) -> None:
        if self.core is None:
            return
        # A re-run may start at once (map already newer), adding output.
        while True:
            output = self.core.take_output()
            self.path.sent(output, self.core.owner_of)
            for replica, batch in output:
                address = self.addresses.get(replica)
                if address is not None:
                    self.send(address, batch)
            completions = self.core.take_completions()
            if not completions:
                break
            for completion in completions:
                if isinstance(completion, Moved):
                    self.handle_moved(completion)
                else:
                    self.answer(completion.op, completion)
        if (self.waiting or self.commits_without_ts) and not self.ticking:
            self.ticking = True
            self.tick_scheduled_at = time.monotonic()
            self.wakeupAfter(WAKE, payload="tick")

    def answer(self, op: int, completion) -> None:
        asker, req = self.waiting.pop(op, (None, 0))
        hops = self.path.finish(op, self.txids.get(op, ""))
        for done in (self.commits, self.txids, self.reruns, self.first_attempt, self.moved):
            done.pop(op, None)
        if asker is not None:
            self.send(asker, _reply(req, completion, hops))

    def receiveMsg_WakeupMessage(self, message: WakeupMessage, sender) -> None:
        if isinstance(message.payload, tuple) and message.payload[0] == "owner":
            self.check_owner(message.payload[1])
            return
        if isinstance(message.payload, tuple) and message.payload[0] == "moved":
            _, op, reruns = message.payload
            # Stale when the op was re-run (a newer map) or answered since.
            if self.core is not None and op in self.moved and self.reruns.get(op, 0) == reruns:
                self.rerun(op)
                self.flush()
            return
        self.ticking = False
        if self.core is None:
            return
        # Real time, in ticks: a paused process must see its budgets run out.
        elapsed = time.monotonic() - self.tick_scheduled_at
        self.core.tick(max(1, round(elapsed / TICK.total_seconds())))
        if self.commits_without_ts:
            self.assign_timestamps()
        self.flush()

    # -- lifecycle ----------------------------------------------------------------------

    def receiveMsg_ActorExitRequest(self, message: ActorExitRequest, sender) -> None:
        if self.coordinator is not None:
            self.send(self.coordinator, Unsubscribe())
        self.core = None

    def receiveMsg_ChildActorExited(self, message: ChildActorExited, sender) -> None:
        """A clerk has no children."""

    def receiveMsg_PoisonMessage(self, message: PoisonMessage, sender) -> None:
        """Undeliverable: the core's timeouts retry whatever mattered."""


def _reply(req: int, completion, hops: int) -> ClerkReply:
    if isinstance(completion, ReadDone):
        return ClerkReply(req=req, outcome="ok", values=dict(completion.values), hops=hops)
    if isinstance(completion, Committed):
        return ClerkReply(req=req, outcome="ok", txid=completion.txid, hops=hops)
    if isinstance(completion, Aborted):
        return ClerkReply(req=req, outcome="aborted", txid=completion.txid, reason=completion.reason, hops=hops)
    if isinstance(completion, Failed):
        return ClerkReply(req=req, outcome="unavailable", reason=completion.reason, hops=hops)
    raise TypeError(f"unknown completion {completion!r}")

