"""ClerkSession: everything one clerk decides around its ClerkCore, without Thespian or a clock.

The Clerk actor (clerk/clerk.py) hands the session each message with `now`
(seconds, monotonic) and carries out the actions it returns: Send, Reply and
WakeAfter. The session owns the ClerkCore, which runs the protocol itself
(docs/DESIGN.md section 4).

Rules:
- Routing: the first MapUpdate creates the core; requests that come before it
  wait for it. Every later MapUpdate updates the core's routing.
- Timestamps: each commit attempt and each get takes one from the session's hybrid clock
  (clerk/timestamps.py) at once: `now + wall_offset` is Unix time, so no
  commit waits for anyone else to hand out a timestamp. A commit or get is answered
  only once the clock has passed its timestamp by the map's
  `max_clock_offset` (commit wait; ~0 on one host).
- Ticks: the core counts ticks of `tick_seconds`. While operations are in
  flight the session asks to be woken every `wake_seconds` and converts the
  real time elapsed into ticks, so a paused process sees its budgets run out;
  an idle clerk costs nothing.
- Slot moves (docs/DESIGN.md section 6): a commit the core completes Moved
  (a participant answered WrongEpoch; the attempt is aborted everywhere) runs
  again under a fresh txid and timestamp once the map is newer than the
  Moved's epoch, or after `moved_retry_seconds` anyway (the map may only
  change once the move is done), until `moved_budget_seconds` from its first
  attempt; then the application gets "unavailable". The application never
  sees Moved.
- Hops: every reply says how many messages were on its critical path
  (CriticalPath), re-runs included, for benchmarks.
- Metrics (docs/DESIGN.md section 14): every answer counts its operation
  ("read", "get" or "commit") by outcome, its time from arrival to answer, its hops,
  and its requests sent again (redirects, timeouts) and re-runs after Moved.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from actors.budgets import OUTCOME_BUDGET_SECONDS
from actors.messages import (
    ClerkCommit,
    ClerkGet,
    ClerkRead,
    ClerkReply,
    ClientBatch,
    ClientBatchReply,
    Decide,
    LoggedReadResult,
    MapUpdate,
    ReadCheckResult,
    ReadKeys,
)
from actors.metrics import Metrics
from clerk.core import (
    Aborted,
    ClerkConfig,
    ClerkCore,
    Committed,
    Completion,
    Failed,
    Moved,
    ReadDone,
    Routing,
    TooLarge,
)
from clerk.timestamps import MICROSECONDS, HybridClock


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionConfig:
    """The clerk's timing and retry policy; durations in seconds.

    Fields:
        clerk: this clerk's id (unique; txids are built from it).
        tick_seconds: the length of one ClerkCore tick.
        wake_seconds: how often a busy clerk wakes to count ticks. Every
            wakeup costs a Thespian timer round, and with many clients the
            clerks' 50 ms wakeups took more CPU than the servers. Timeouts are
            several ticks long, so they fire at most one wake late; replies and
            map updates are handled at once regardless.
        outcome_budget_seconds: how long a commit may take, votes and outcome
            included (the core's `outcome_budget_ticks`).
        wall_offset: added to `now` (monotonic) gives Unix time, for
            timestamps; the shell reads it once, at start.
        moved_retry_seconds: how long a Moved commit waits for a newer map
            before it runs again anyway.
        moved_budget_seconds: how long after its first attempt a Moved commit
            may still run again; below the application's own wait
            (client.REQUEST_TIMEOUT), so the answer "unavailable" reaches it.
    """

    clerk: str
    tick_seconds: float = 0.05
    wake_seconds: float = 0.2
    outcome_budget_seconds: float = OUTCOME_BUDGET_SECONDS
    wall_offset: float = 0.0
    moved_retry_seconds: float = 0.1
    moved_budget_seconds: float = 20.0


# -- what the shell is asked to do ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send `batch` to the server at `address` (an address from the map)."""

    address: object
    batch: ClientBatch


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the application's request: `reply` goes to `asker`."""

    asker: object
    reply: ClerkReply


@dataclass(frozen=True, slots=True)
class TickDue:
    """Wakeup: time to count the ticks elapsed (ClerkSession.tick)."""


@dataclass(frozen=True, slots=True)
class RerunDue:
    """Wakeup: Moved commit `op` may run again (ClerkSession.on_rerun_due).
    `reruns` tells a stale wakeup: one whose op has run again since."""

    op: int
    reruns: int


@dataclass(frozen=True, slots=True)
class AnswerDue:
    """Wakeup: committed `op` may be answered once the clock has passed its
    timestamp by the largest clock offset (ClerkSession.on_answer_due)."""

    op: int


@dataclass(frozen=True, slots=True)
class WakeAfter:
    """Hand `wakeup` back to the session after `seconds`."""

    seconds: float
    wakeup: TickDue | RerunDue


Action = Send | Reply | WakeAfter


# -- one application operation ------------------------------------------------------


@dataclass(kw_only=True, slots=True, eq=False)
class _PendingRead:
    """A ClerkRead being served.

    Fields:
        asker: who gets the ClerkReply.
        req: the application's request id.
        arrived: when the clerk got it.
    """

    asker: object
    req: int
    arrived: float


@dataclass(kw_only=True, slots=True, eq=False)
class _PendingGet:
    """A ClerkGet being served.

    Fields:
        asker: who gets the ClerkReply.
        req: the application's request id.
        txid: the read-only transaction's id.
        arrived: when the clerk got it.
        ts: its timestamp.
        held: the values, held until the clock passes `ts` (None until read).
    """

    asker: object
    req: int
    txid: str
    arrived: float
    ts: int
    held: ReadDone | None = None


@dataclass(kw_only=True, slots=True, eq=False)
class _PendingCommit:
    """A ClerkCommit being served, through every re-run after Moved.

    Fields:
        asker: who gets the ClerkReply.
        req: the application's request id.
        message: the application's commit, kept to run it again.
        txid: the current attempt's transaction id.
        first_attempt: when the first attempt began (when the clerk got it).
        reruns: attempts run again after Moved so far.
        awaited_epoch: after Moved, the epoch the map must pass before the
            next attempt; None while an attempt runs.
        ts: the current attempt's timestamp.
        held: the completion, held until the clock passes `ts` (None
            until the commit is done).
    """

    asker: object
    req: int
    message: ClerkCommit
    txid: str
    first_attempt: float
    reruns: int = 0
    awaited_epoch: int | None = None
    ts: int = 0
    held: Committed | None = None


class ClerkSession:
    """One clerk's operations around its ClerkCore; see the module docstring."""

    def __init__(self, config: SessionConfig, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self._core: ClerkCore | None = None
        self._addresses: dict[str, object] = {}
        self._before_map: list[tuple[ClerkRead | ClerkGet | ClerkCommit, object]] = []
        self._op_ids = itertools.count(1)
        self._ops: dict[int, _PendingRead | _PendingGet | _PendingCommit] = {}
        self._clock = HybridClock()
        self._max_clock_offset = 0.0
        self._tick_asked_at: float | None = None  # None: no TickDue wakeup pending
        self._path = CriticalPath()
        self._actions: list[Action] = []
        self.metrics = Metrics()

    @property
    def clerk(self) -> str:
        return self._config.clerk

    # -- inputs -----------------------------------------------------------------

    def on_map(self, update: MapUpdate, now: float) -> list[Action]:
        """A MapUpdate from the coordinator: routing, and Moved commits the new map lets run again."""
        self._addresses = dict(update.addresses)
        self._max_clock_offset = update.max_clock_offset
        routing = Routing(
            epoch=update.epoch, slots=update.slots, members=dict(update.members), leaders=dict(update.leaders)
        )
        if self._core is None:
            config = ClerkConfig(
                clerk=self._config.clerk,
                outcome_budget_ticks=round(self._config.outcome_budget_seconds / self._config.tick_seconds),
                read_from_followers=update.read_from_followers,
            )
            self._core = ClerkCore(config, routing, self._rng)
            queued, self._before_map = self._before_map, []
            for message, asker in queued:
                self._start(message, asker, now)
                # A read's ReadKeys carry no txid: CriticalPath counts them
                # for the read begun last, so each leaves before the next begins.
                self._collect_core_output(now)
        else:
            self._core.update_routing(routing)
            for op, pending in list(self._ops.items()):
                if self._awaits_newer_map(pending) and self._core.moved_past(pending.awaited_epoch):
                    self._rerun(op, pending, now)
        return self._settle(now)

    def on_app_request(self, message: ClerkRead | ClerkGet | ClerkCommit, asker: object, now: float) -> list[Action]:
        """The application's ClerkRead, ClerkGet or ClerkCommit; `asker` gets the ClerkReply."""
        if self._core is None:
            self._before_map.append((message, asker))
            return []
        self._start(message, asker, now)
        return self._settle(now)

    def on_server_reply(self, message: ClientBatchReply, now: float) -> list[Action]:
        if self._core is None:
            return []
        self._path.answered(message)
        self._core.receive(message)
        return self._settle(now)

    def tick(self, now: float) -> list[Action]:
        """The TickDue wakeup: the core counts the ticks elapsed since it was asked for."""
        asked_at, self._tick_asked_at = self._tick_asked_at, None
        if asked_at is None:
            return []
        elapsed = now - asked_at
        self._core.tick(max(1, round(elapsed / self._config.tick_seconds)))
        return self._settle(now)

    def on_answer_due(self, wakeup: AnswerDue, now: float) -> list[Action]:
        """A held commit's or get's wait for the clock may be over."""
        pending = self._ops.get(wakeup.op)
        if isinstance(pending, (_PendingCommit, _PendingGet)) and pending.held is not None:
            self._answer(pending.held, now)
        return self._settle(now)

    def on_rerun_due(self, wakeup: RerunDue, now: float) -> list[Action]:
        """A Moved commit's wait for a newer map is over: run it again, unless
        it has run again (a newer map came) or been answered since."""
        pending = self._ops.get(wakeup.op)
        if not self._awaits_newer_map(pending) or pending.reruns != wakeup.reruns:
            return []
        self._rerun(wakeup.op, pending, now)
        return self._settle(now)

    # -- operations -------------------------------------------------------------

    def _start(self, message: ClerkRead | ClerkGet | ClerkCommit, asker: object, now: float) -> None:
        op = next(self._op_ids)
        if isinstance(message, ClerkRead):
            self._ops[op] = _PendingRead(asker=asker, req=message.req, arrived=now)
            self._path.begin(op)
            self._core.read(op, list(message.keys))
            return
        if isinstance(message, ClerkGet):
            txid = f"{self._config.clerk}-{op}"
            ts = self._clock.take(now + self._config.wall_offset, ())
            self._ops[op] = _PendingGet(asker=asker, req=message.req, txid=txid, arrived=now, ts=ts)
            self._path.begin(op, txid=txid)
            self._core.get(op, txid=txid, ts=ts, keys=list(message.keys))
            return
        pending = _PendingCommit(
            asker=asker, req=message.req, message=message, txid=f"{self._config.clerk}-{op}", first_attempt=now
        )
        self._ops[op] = pending
        self._path.begin(op, txid=pending.txid)
        self._commit(op, pending, now)

    def _on_moved(self, moved: Moved, now: float) -> None:
        """The core aborted commit `moved.op` for a slot that moves: run it
        again once the map is newer, or after the retry wait, within the budget."""
        op = moved.op
        pending = self._ops[op]
        if isinstance(pending, _PendingGet):
            # The application reads it again the slower way, whose reads
            # follow the move (ClerkGet).
            self._answer(Aborted(op=op, txid=moved.txid, reason=moved.reason), now)
            return
        elapsed = now - pending.first_attempt
        if elapsed >= self._config.moved_budget_seconds:
            reason = f"slots kept moving for {elapsed:.1f} s: {moved.reason}"
            self._answer(Failed(op=op, reason=reason), now)
        elif self._core.moved_past(moved.epoch):
            self._rerun(op, pending, now)
        else:
            pending.awaited_epoch = moved.epoch
            wakeup = RerunDue(op=op, reruns=pending.reruns)
            self._actions.append(WakeAfter(self._config.moved_retry_seconds, wakeup))

    def _rerun(self, op: int, pending: _PendingCommit, now: float) -> None:
        pending.awaited_epoch = None
        pending.reruns += 1
        txid = f"{self._config.clerk}-{op}.{pending.reruns}"
        self._path.rerun(op, txid=txid, old_txid=pending.txid)
        pending.txid = txid
        self._commit(op, pending, now)

    @staticmethod
    def _awaits_newer_map(pending: _PendingRead | _PendingCommit | None) -> bool:
        return isinstance(pending, _PendingCommit) and pending.awaited_epoch is not None

    def _answer(self, completion: Completion, now: float) -> None:
        pending = self._ops[completion.op]
        if isinstance(pending, (_PendingCommit, _PendingGet)) and isinstance(completion, (Committed, ReadDone)):
            # Commit wait: whoever begins after this answer, on any host, reads
            # a clock past `ts`, so takes a higher timestamp (docs/DESIGN.md
            # section 4, "Timestamps"). On one host the wait is ~0.
            wait = (pending.ts / MICROSECONDS + self._max_clock_offset) - (now + self._config.wall_offset)
            if wait >= 0:
                pending.held = completion
                self._actions.append(WakeAfter(wait + 1 / MICROSECONDS, AnswerDue(completion.op)))
                return
        del self._ops[completion.op]
        if isinstance(pending, _PendingCommit):
            operation, txid, arrived, reruns = "commit", pending.txid, pending.first_attempt, pending.reruns
        elif isinstance(pending, _PendingGet):
            operation, txid, arrived, reruns = "get", pending.txid, pending.arrived, 0
        else:
            operation, txid, arrived, reruns = "read", "", pending.arrived, 0
        hops, resent = self._path.finish(completion.op, txid)
        reply = _reply(pending.req, completion, hops, txid)
        self.metrics.count("raftline_client_operations_total", operation=operation, outcome=reply.outcome)
        self.metrics.observe("raftline_client_operation_duration_seconds", now - arrived, operation=operation)
        self.metrics.count("raftline_client_hops_total", hops, operation=operation)
        if resent + reruns:
            self.metrics.count("raftline_client_retries_total", resent + reruns, operation=operation)
        self._actions.append(Reply(pending.asker, reply))

    def _commit(self, op: int, pending: _PendingCommit, now: float) -> None:
        """Start an attempt of commit `op` in the core, under a fresh timestamp."""
        message = pending.message
        ts = pending.ts = self._clock.take(now + self._config.wall_offset, message.reads.values())
        self._core.commit(op, txid=pending.txid, ts=ts, reads=dict(message.reads), writes=dict(message.writes),
                          deletes=tuple(message.deletes))

    # -- output -----------------------------------------------------------------

    def _settle(self, now: float) -> list[Action]:
        """Everything the input led to, with a tick asked for while operations are in flight."""
        if self._core is None:
            return []
        self._collect_core_output(now)
        if self._ops and self._tick_asked_at is None:
            self._tick_asked_at = now
            self._actions.append(WakeAfter(self._config.wake_seconds, TickDue()))
        actions, self._actions = self._actions, []
        return actions

    def _collect_core_output(self, now: float) -> None:
        """Send what the core has to send; answer or re-run what it completed."""
        # A re-run may start at once (map already newer), adding output.
        while True:
            output = self._core.take_output()
            self._path.sent(output, self._core.owner_of)
            for replica, batch in output:
                address = self._addresses.get(replica)
                if address is not None:
                    self._actions.append(Send(address, batch))
            completions = self._core.take_completions()
            if not completions:
                break
            for completion in completions:
                if isinstance(completion, Moved):
                    self._on_moved(completion, now)
                else:
                    self._answer(completion, now)


class CriticalPath:
    """Messages on each operation's critical path (ClerkReply.hops), counted
    from what the core actually sends, so resends and followed redirects count.

    An operation costs 2 for the application's ask, and per protocol
    phase (its requests first sent together, answered in parallel) the cost
    of the phase's most expensive request: per send, 2 for clerk <-> leader
    and 2 more when it is a logged command (the leader's AppendLog to the
    followers and their acknowledgements that commit it; ReadKeys is
    answered unlogged, and so is a check whose answer says it came from the
    leader's lease). A decision no operation waits for (an abort, or a
    commit told to the participants after the answer) is never counted.
    """

    def __init__(self) -> None:
        self._hops_outside_phases: dict[int, int] = {}
        self._phases: dict[int, list[dict[int, int]]] = {}  # per op, per phase: request id -> hops so far
        self._phase_of_request: dict[int, tuple[int, int]] = {}  # request id -> (op, index into its phases)
        self._op_of_txid: dict[str, int] = {}
        self._reading: int | None = None  # the read whose ReadKeys the next batch carries (they have no txid)
        self._resent: dict[int, int] = {}  # per op: requests sent again

    def begin(self, op: int, *, txid: str = "") -> None:
        self._hops_outside_phases[op] = 2
        self._phases[op] = []
        if txid:
            self._op_of_txid[txid] = op
        else:
            self._reading = op

    def rerun(self, op: int, *, txid: str, old_txid: str) -> None:
        """Commit `op` runs again as `txid`: its phases keep adding up."""
        self._op_of_txid.pop(old_txid, None)
        self._op_of_txid[txid] = op

    def sent(self, batches: list[tuple[str, ClientBatch]], owner_of: Callable[[int], int | None] | None = None) -> None:
        """Count `batches`; `owner_of(req)`, when given, names the op of a
        request neither its txid nor a just-begun read accounts for (a read
        the core re-routed after WrongEpoch)."""
        opened: dict[int, int] = {}  # op -> the phase its new requests in these batches join
        for _, batch in batches:
            for request in batch.requests:
                if isinstance(request.op, Decide) and (
                        not request.op.commit or (owner_of is not None and owner_of(request.req) is None)):
                    continue
                if request.req not in self._phase_of_request:
                    op = self._op_of_txid.get(getattr(request.op, "txid", ""), self._reading)
                    if op is None and owner_of is not None:
                        op = owner_of(request.req)
                    if op not in self._phases:
                        continue
                    if op not in opened:
                        self._phases[op].append({})
                        opened[op] = len(self._phases[op]) - 1
                    self._phase_of_request[request.req] = (op, opened[op])
                op, phase = self._phase_of_request[request.req]
                hops = self._phases[op][phase]
                if request.req in hops:
                    self._resent[op] = self._resent.get(op, 0) + 1
                hops[request.req] = hops.get(request.req, 0) + (2 if isinstance(request.op, ReadKeys) else 4)
        self._reading = None

    def answered(self, reply: ClientBatchReply) -> None:
        """A leader's answers: a check it answered from its lease took no log round."""
        for response in reply.responses:
            result = response.result
            if isinstance(result, (ReadCheckResult, LoggedReadResult)) and result.from_lease:
                located = self._phase_of_request.get(response.req)
                if located is not None:
                    op, phase = located
                    self._phases[op][phase][response.req] -= 2

    def finish(self, op: int, txid: str = "") -> tuple[int, int]:
        """Operation `op` is answered: its hops, and how many of its requests were sent again."""
        phases = self._phases.pop(op, [])
        for phase in phases:
            for req in phase:
                self._phase_of_request.pop(req, None)
        self._op_of_txid.pop(txid, None)
        hops = self._hops_outside_phases.pop(op, 2) + sum(max(phase.values()) for phase in phases)
        return hops, self._resent.pop(op, 0)


def _reply(req: int, completion: Completion, hops: int, txid: str = "") -> ClerkReply:
    if isinstance(completion, ReadDone):
        return ClerkReply(req=req, outcome="ok", values=dict(completion.values), txid=txid, hops=hops)
    if isinstance(completion, Committed):
        return ClerkReply(req=req, outcome="ok", txid=completion.txid, hops=hops)
    if isinstance(completion, Aborted):
        return ClerkReply(req=req, outcome="aborted", txid=completion.txid, reason=completion.reason, hops=hops)
    if isinstance(completion, Failed):
        return ClerkReply(req=req, outcome="unavailable", reason=completion.reason, hops=hops)
    if isinstance(completion, TooLarge):
        return ClerkReply(req=req, outcome="too_large", reason=completion.reason, hops=hops)
    raise TypeError(f"unknown completion {completion!r}")
