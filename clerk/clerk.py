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
- ticks only while operations are in flight, so an idle clerk costs nothing.
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

from actors.messages import (
    ClerkCommit,
    ClerkOpen,
    ClerkRead,
    ClerkReply,
    MapUpdate,
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
    ReadDone,
    Routing,
)

TICK = timedelta(milliseconds=50)
OUTCOME_BUDGET_SECONDS = 30.0
"""How long a commit may take, votes and outcome included; servers keep outcome
records several times longer (coordinator.RECORD_RETENTION_SECONDS)."""
OWNER_CHECK = timedelta(seconds=2)
TIMESTAMP_BLOCK = 16
TIMESTAMP_FRESH_SECONDS = 0.05
TIMESTAMP_RETRY_SECONDS = 1.0


class Clerk(ActorTypeDispatcher):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.core: ClerkCore | None = None
        self.coordinator = None
        self.addresses: dict[str, object] = {}
        self.ops = itertools.count(1)
        self.waiting: dict[int, tuple[object, int]] = {}  # op -> (asker, req)
        self.before_map: list[tuple[object, object]] = []
        self.commits_without_ts: list[tuple[int, ClerkCommit]] = []
        self.ts_next = 0
        self.ts_end = 0
        self.ts_granted_at = 0.0
        self.ts_requested_at = 0.0  # when a TimestampRequest went out; 0 when none is pending
        self.ticking = False
        self.tick_scheduled_at = 0.0
        self.clerk_id = f"k{os.getpid()}-{random.getrandbits(24):06x}"

    def ensure_subscribed(self) -> None:
        if self.coordinator is None:
            from coordinator.coordinator import Coordinator
            from coordinator.system import COORDINATOR_NAME

            set_process_title("raftline clerk")
            self.coordinator = self.createActor(Coordinator, globalName=COORDINATOR_NAME)
            self.send(self.coordinator, Subscribe(pid=os.getpid()))

    def receiveMsg_ClerkOpen(self, message: ClerkOpen, sender) -> None:
        self.ensure_subscribed()
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
            self.core.read(op, list(message.keys))
        else:
            self.commits_without_ts.append((op, message))
            self.assign_timestamps()
        self.flush()

    def assign_timestamps(self) -> None:
        fresh = time.monotonic() - self.ts_granted_at < TIMESTAMP_FRESH_SECONDS
        while self.commits_without_ts and fresh and self.ts_next < self.ts_end:
            op, message = self.commits_without_ts.pop(0)
            ts = self.ts_next
            self.ts_next += 1
            self.core.commit(
                op,
                txid=f"{self.clerk_id}-{op}",
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
        for replica, batch in self.core.take_output():
            address = self.addresses.get(replica)
            if address is not None:
                self.send(address, batch)
        for completion in self.core.take_completions():
            asker, req = self.waiting.pop(completion.op, (None, 0))
            if asker is not None:
                self.send(asker, _reply(req, completion))
        if (self.waiting or self.commits_without_ts) and not self.ticking:
            self.ticking = True
            self.tick_scheduled_at = time.monotonic()
            self.wakeupAfter(TICK, payload="tick")

    def receiveMsg_WakeupMessage(self, message: WakeupMessage, sender) -> None:
        if isinstance(message.payload, tuple) and message.payload[0] == "owner":
            self.check_owner(message.payload[1])
            return
        self.ticking = False
        if self.core is None:
            return
        # Real time, in ticks: a paused process must see its budgets run out.
        elapsed = time.monotonic() - self.tick_scheduled_at
        self.core.tick(max(1, int(elapsed / TICK.total_seconds())))
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


def _reply(req: int, completion) -> ClerkReply:
    if isinstance(completion, ReadDone):
        return ClerkReply(req=req, outcome="ok", values=dict(completion.values))
    if isinstance(completion, Committed):
        return ClerkReply(req=req, outcome="ok", txid=completion.txid)
    if isinstance(completion, Aborted):
        return ClerkReply(req=req, outcome="aborted", txid=completion.txid, reason=completion.reason)
    if isinstance(completion, Failed):
        return ClerkReply(req=req, outcome="unavailable", reason=completion.reason)
    raise TypeError(f"unknown completion {completion!r}")

