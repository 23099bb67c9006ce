"""ClerkCore: the client side of raftline's transaction protocol, without Thespian or a clock.

The caller starts operations (`read`, `get`, `commit`), feeds replies (`receive`)
and ticks (`tick`), sends what `take_output()` returns (one ClientBatch per
replica) and collects `take_completions()`.

Rules (docs/DESIGN.md sections 4 and 7):
- Routing: a key's slot (`slot_of`) names its cluster; a request goes to the
  cluster's best known leader, else to a member guessed with the injected rng,
  and that guess then serves every request until something better is learnt.
- Every request is retried until answered. An attempt is one wait for an
  answer: unanswered, the request is resent to the next candidate as a new
  attempt, the wait doubling from `request_timeout_ticks` up to
  `max_backoff_ticks`; after `max_attempts` the operation ends (Failed, or
  Aborted for a prepare: see `commit`). Within an attempt, a Redirect naming
  a leader at a term no older than the known one is followed at once, at most
  once per member (so a redirect loop cannot spin); any other Redirect only
  aims the next attempt at another member, keeping its time, so a leaderless
  cluster is not flooded during an election.
- Once a commit decision may have been taken (CommitOnePhase or
  Decide(commit) sent) the clerk never guesses: it repeats that idempotent
  request, attempts unbounded, until the cluster answers or
  `outcome_budget_ticks` since the commit began pass; only then is the
  outcome reported unknown.
- The outcome budget runs from the start of the commit and bounds it whole:
  servers forget outcomes some time after deciding them (docs/DESIGN.md section 4,
  step 6), and every decision about this transaction is taken after its
  start, so a decision asked for within the budget is still on record. Votes
  that complete after the budget (a slow or paused clerk) abort instead.
- Only the clerk sends Decide(commit), and only after every participant voted
  yes; so until then aborting is always safe, and aborts are sent freely.
- Slots move (docs/DESIGN.md section 6): a cluster answers WrongEpoch for slots it
  does not serve now. A read's keys in the refused slots are parked, then
  sent again as soon as a newer map routes them elsewhere, or anyway after a
  wait (doubling like attempts); its other keys are sent again at once;
  `max_attempts` such rounds, then Failed. A refused Prepare, CommitOnePhase
  or ReadCheck means the attempt never committed (the refusing cluster
  recorded an abort, and Decide(commit) is only sent once every Prepare was
  answered yes, so no WrongEpoch can come after it): the other participants
  are aborted and the commit completes Moved, for the caller to run again
  under a fresh txid.
- Replies may be lost, duplicated, delayed or reordered: a response is matched
  by its request id, and ignored once that request is answered, cancelled or
  given up, or when its result is not an answer to that request.
- Leader knowledge: a replica answering anything but Redirect leads its
  cluster at the reply's term; a Redirect's hint leads at the Redirect's
  term. Either is kept when it is a member of the cluster and its term is no
  older than the known one.
- All requests leaving in one `take_output()` for one replica share one
  ClientBatch; resends due at one tick therefore travel together too.
- Deterministic: time is the count of `tick()` calls, randomness is the
  injected rng only.

Caller errors (ValueError, TypeError): an op id already in flight, a key both
written and deleted, a non-string key, a message that is not a ClientBatchReply.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from actors import codec
from actors.keyspace import slot_of
from actors.messages import (
    TXN_ABORTED,
    TXN_COMMITTED,
    ClientBatch,
    ClientBatchReply,
    ClientOp,
    ClientRequest,
    CommitOnePhase,
    CommitOnePhaseResult,
    Decide,
    DecideResult,
    LoggedRead,
    LoggedReadResult,
    Prepare,
    PrepareResult,
    ReadCheck,
    ReadCheckResult,
    ReadKeys,
    ReadKeysResult,
    ReadResult,
    Redirect,
    Stamp,
    WrongEpoch,
)
from actors.raft.node import MAX_BATCH_BYTES


@dataclass(frozen=True, kw_only=True, slots=True)
class Routing:
    """What the clerk knows of the shard map.

    Fields:
        epoch: the map's epoch.
        slots: slot -> owning cluster (`actors.keyspace.slot_of` picks the slot).
        members: cluster -> its replica ids.
        leaders: cluster -> the last known leader (absent or None: unknown).
    """

    epoch: int
    slots: tuple[str, ...]
    members: dict[str, tuple[str, ...]]
    leaders: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.slots:
            raise ValueError("a routing map needs at least one slot")
        unserved = sorted({cluster for cluster in self.slots if not self.members.get(cluster)})
        if unserved:
            raise ValueError(f"clusters own slots but have no members: {unserved}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkConfig:
    """Retry policy; durations in ticks.

    Fields:
        clerk: this clerk's id (unique; txids are built from it).
        request_timeout_ticks: resend an unanswered request after this long
            (doubling per attempt up to `max_backoff_ticks`).
        max_backoff_ticks: the cap of that doubling.
        max_attempts: attempts per request before the operation fails Unavailable
            (except a sent commit decision: see `outcome_budget_ticks`).
        outcome_budget_ticks: how long after a commit begins its decision may
            still be sent or asked again; must be shorter than the servers'
            outcome-record retention (ReplicaConfig.retention_ticks).
        publish_ticks: after the primary committed, how long the clerk keeps
            sending the commit to the other participants (the primary's
            leader pushes it until each acknowledges it).
        read_from_followers: send each ReadKeys to a random member rather than
            the leader (`transactions.read_from: follower`); a stale answer is
            caught by validation at commit.
        max_command_bytes: the largest command one log entry holds (the
            servers' Raft `max_batch_bytes`): a commit whose command for some
            cluster is larger completes TooLarge before anything is sent.
    """

    clerk: str
    request_timeout_ticks: int = 10
    max_backoff_ticks: int = 40
    max_attempts: int = 8
    outcome_budget_ticks: int = 600
    publish_ticks: int = 20
    max_command_bytes: int = MAX_BATCH_BYTES
    read_from_followers: bool = False

    def __post_init__(self) -> None:
        if self.request_timeout_ticks < 1:
            raise ValueError(f"request_timeout_ticks must be at least 1, got {self.request_timeout_ticks}")
        if self.max_backoff_ticks < self.request_timeout_ticks:
            raise ValueError(
                f"max_backoff_ticks ({self.max_backoff_ticks}) is below "
                f"request_timeout_ticks ({self.request_timeout_ticks})"
            )
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.outcome_budget_ticks < 1:
            raise ValueError(f"outcome_budget_ticks must be at least 1, got {self.outcome_budget_ticks}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadDone:
    """Completion of `read`: key -> ReadResult."""

    op: int
    values: dict[str, ReadResult]


@dataclass(frozen=True, kw_only=True, slots=True)
class Committed:
    """Completion of `commit`: the transaction is committed."""

    op: int
    txid: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Aborted:
    """Completion of `commit`: the transaction is aborted everywhere; `reason` says why."""

    op: int
    txid: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Failed:
    """An operation that could not be completed (no leader answered in budget)."""

    op: int
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Moved:
    """Completion of `commit`: a participant answered WrongEpoch, since a slot
    the transaction touches moved away, is frozen for a move or is not
    installed yet. The transaction never committed and is aborted everywhere;
    the caller may run it again, under a fresh txid and timestamp, once the
    map is newer than `epoch` (see `ClerkCore.moved_past`).

    Fields:
        op: the caller's op id.
        txid: the transaction refused.
        epoch: the map epoch the refused request was routed by.
        reason: which cluster refused it, and why.
    """

    op: int
    txid: str
    epoch: int
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TooLarge:
    """Completion of `commit`: a command it needs is larger than one log entry
    holds, so it can never commit; nothing was sent."""

    op: int
    reason: str


Completion = ReadDone | Committed | Aborted | Failed | Moved | TooLarge


@dataclass(kw_only=True, slots=True, eq=False)
class _Request:
    """One request in flight and its retry state.

    Fields:
        req: its id, unique in this clerk.
        cluster: the cluster it addresses.
        op: the operation it carries.
        owner: the op id of the operation waiting for it; None for an abort
            that outlives the operation it was sent for.
        sent_to: the replica the last send went to.
        target: the replica the next send goes to (differs from `sent_to`
            once a Redirect moved it).
        attempts: attempts so far (the first send, then one per timeout).
        hops: Redirect hints followed in the current attempt.
        wait: how long the current attempt waits for an answer.
        due: the tick at which the last send counts as unanswered.
        deadline: for a commit decision, the tick at which it is given up
            (attempts are then unbounded); None otherwise.
        epoch: the map epoch it was routed by.
    """

    req: int
    cluster: str
    op: ClientOp
    owner: int | None
    sent_to: str
    target: str
    epoch: int
    attempts: int = 1
    hops: int = 0
    wait: int
    due: int = 0
    deadline: int | None = None


@dataclass(kw_only=True, slots=True, eq=False)
class _ReadOp:
    """A `read` in progress.

    Fields:
        op: the caller's op id.
        keys: the keys asked, in the caller's order, without repeats.
        values: what has come back so far.
        waiting: request ids not answered yet.
        parked: keys refused with WrongEpoch, not sent again yet -> the
            cluster that refused them.
        parked_due: when the parked keys are sent again even without a newer
            map (None: nothing parked).
        rounds: how many times refused keys have been sent again.
    """

    op: int
    keys: tuple[str, ...]
    values: dict[str, ReadResult] = field(default_factory=dict)
    waiting: set[int] = field(default_factory=set)
    parked: dict[str, str] = field(default_factory=dict)
    parked_due: int | None = None
    rounds: int = 0


@dataclass(kw_only=True, slots=True, eq=False)
class _GetOp:
    """A `get` in progress.

    Fields:
        op: the caller's op id.
        txid: the read-only transaction.
        keys: the keys asked, in the caller's order, without repeats.
        values: what has come back so far.
        waiting: request ids not answered yet.
    """

    op: int
    txid: str
    keys: tuple[str, ...]
    values: dict[str, ReadResult] = field(default_factory=dict)
    waiting: set[int] = field(default_factory=set)


@dataclass(kw_only=True, slots=True, eq=False)
class _CommitOp:
    """A `commit` in progress; its phase is told by the kind of request waited for.

    Fields:
        op: the caller's op id.
        txid: the transaction.
        ts: its timestamp.
        participants: every cluster it touches, sorted.
        deadline: the tick after which no commit decision is sent or asked again.
        primary: the cluster that holds its commit record (two-phase commit only).
        waiting: request ids of the current phase not answered yet.
    """

    op: int
    txid: str
    ts: int
    participants: tuple[str, ...]
    deadline: int
    primary: str = ""
    waiting: set[int] = field(default_factory=set)


class ClerkCore:
    """One clerk's protocol engine; see the module docstring."""

    def __init__(self, config: ClerkConfig, routing: Routing, rng: random.Random) -> None:
        self._config = config
        self._routing = routing
        self._rng = rng
        # Members of every cluster ever seen: a request started under an older
        # map may still address a cluster the current map no longer lists.
        self._members: dict[str, tuple[str, ...]] = dict(routing.members)
        self._leaders: dict[str, str | None] = {
            cluster: leader if (leader := routing.leaders.get(cluster)) in members else None
            for cluster, members in routing.members.items()
        }
        self._terms: dict[str, int] = {}
        self._now = 0
        self._next_req = 1
        self._requests: dict[int, _Request] = {}
        self._ops: dict[int, _ReadOp | _GetOp | _CommitOp] = {}
        # An ordered set: a request re-queued before the next take_output leaves once.
        self._unsent: dict[int, None] = {}
        self._completions: list[Completion] = []

    @property
    def routing(self) -> Routing:
        """The map in use, with the leaders this clerk currently believes in (or guesses)."""
        return Routing(
            epoch=self._routing.epoch,
            slots=self._routing.slots,
            members=self._routing.members,
            leaders={cluster: self._leaders.get(cluster) for cluster in self._routing.members},
        )

    @property
    def epoch(self) -> int:
        """The epoch of the map in use."""
        return self._routing.epoch

    def moved_past(self, epoch: int) -> bool:
        """Whether the map in use is newer than `epoch` (say, a Moved's)."""
        return self._routing.epoch > epoch

    def owner_of(self, req: int) -> int | None:
        """The op id waiting for request `req` (None: none, or no longer)."""
        request = self._requests.get(req)
        return request.owner if request is not None else None

    def update_routing(self, routing: Routing) -> None:
        """A newer map or leader (MapUpdate from the coordinator); older epochs
        are ignored. A newer map sends parked read keys it routes elsewhere."""
        current = self._routing
        if routing.epoch < current.epoch:
            return
        # Without terms in the map, "newer leader info" can only mean the
        # coordinator now names a different leader than it did before.
        reported = {
            cluster: leader
            for cluster, leader in routing.leaders.items()
            if leader is not None and leader != current.leaders.get(cluster)
        }
        if routing.epoch == current.epoch and not reported:
            return
        self._routing = routing
        self._members.update(routing.members)
        for cluster, members in routing.members.items():
            leader = reported.get(cluster, self._leaders.get(cluster))
            self._leaders[cluster] = leader if leader in members else routing.leaders.get(cluster)
        for cluster, leader in reported.items():
            if self._leaders.get(cluster) == leader:
                self._resend_to_new_leader(cluster, leader)
        if routing.epoch > current.epoch:
            for state in [state for state in self._ops.values() if isinstance(state, _ReadOp) and state.parked]:
                rerouted = [key for key, cluster in state.parked.items() if self._cluster_of(key) != cluster]
                if rerouted:
                    self._resend_parked(state, rerouted)

    def _resend_to_new_leader(self, cluster: str, leader: str) -> None:
        """The coordinator names a new leader of `cluster`: requests waiting on
        another of its replicas (most likely the dead leader) go to it now, not
        when their wait runs out, so a failover costs the election and no
        resend timeout. Every request is idempotent, so a duplicate is harmless."""
        for request in self._requests.values():
            if request.cluster == cluster and request.sent_to != leader and request.target == request.sent_to:
                request.target = leader
                self._send(request)

    def read(self, op: int, keys: list[str]) -> None:
        """Read `keys` from their clusters (leaders, or any member with
        `read_from_followers`); completes with ReadDone or Failed."""
        self._check_new_op(op)
        keys_by_cluster = self._group_by_cluster(keys)
        state = _ReadOp(op=op, keys=tuple(dict.fromkeys(keys)))
        if not keys_by_cluster:
            self._completions.append(ReadDone(op=op, values={}))
            return
        self._ops[op] = state
        self._send_reads(state, keys_by_cluster)

    def get(self, op: int, *, txid: str, ts: int, keys: list[str]) -> None:
        """Read `keys` as one read-only transaction at stamp `(ts, txid)`: a
        LoggedRead per cluster, read and validated where its entry applies.
        Completes with ReadDone when every cluster's read is valid; Aborted
        at the first refusal (a writer prepared below the stamp, or a version
        above it: the caller reads with `read` and `commit` instead, which
        wait for such writers); Moved on WrongEpoch; Failed when a cluster
        stays silent for `max_attempts`. Nothing is left to undo in any case."""
        self._check_new_op(op)
        keys_by_cluster = self._group_by_cluster(keys)
        if not keys_by_cluster:
            self._completions.append(ReadDone(op=op, values={}))
            return
        state = self._ops[op] = _GetOp(op=op, txid=txid, keys=tuple(dict.fromkeys(keys)))
        for cluster, cluster_keys in keys_by_cluster.items():
            read = LoggedRead(txid=txid, ts=ts, keys=tuple(cluster_keys))
            state.waiting.add(self._start(cluster, read, owner=op))

    def commit(
        self,
        op: int,
        *,
        txid: str,
        ts: int,
        reads: dict[str, Stamp],
        writes: dict[str, Any],
        deletes: tuple[str, ...] = (),
    ) -> None:
        """Commit a transaction (docs/DESIGN.md section 4): ValidateReads when read-only,
        CommitOnePhase on one cluster, else two-phase commit with the primary
        first. Completes with Committed, Aborted, Failed or Moved.

        - Nothing touched: Committed at once.
        - Reads only: one ReadCheck per cluster; all ok -> Committed, the first
          refusal -> Aborted. Unanswered after `max_attempts` -> Failed.
        - One cluster: CommitOnePhase, retried like a commit decision (it may
          have been applied when its answer is lost): Committed or Aborted as
          the cluster says, Failed "outcome unknown" only after
          `outcome_budget_ticks` without an answer.
        - Several clusters: Prepare to each at once. A no vote -> Decide(abort)
          to every other participant, Aborted. All yes -> Decide(commit) to the
          primary first; its answer is the outcome. Committed: answered at
          once (the commit point), and the commit goes to the others (for
          `publish_ticks`; the primary's leader pushes it to them too), where
          a read of a key T wrote waits for it. Aborted: the clerk aborts the
          others itself. No
          answer within `outcome_budget_ticks` -> Failed "outcome unknown",
          which takes the primary cluster being without a quorum (or
          unreachable) for that whole budget.
        - A Prepare unanswered after `max_attempts` -> Decide(abort) to every
          participant and Aborted, not Failed: the outcome is certain, because
          nothing commits before the primary logs a commit and only this
          clerk, which will now never send one, could ask for it. The
          application may then retry safely, which Failed would not tell it.
        - Any of them answered WrongEpoch by a participant (a Prepare,
          CommitOnePhase or ReadCheck): Decide(abort) to the other participants
          of a two-phase commit, Moved.
        """
        self._check_new_op(op)
        clash = sorted(set(writes) & set(deletes))
        if clash:
            raise ValueError(f"keys both written and deleted: {clash}")
        touched = sorted({*reads, *writes, *deletes})
        if not touched:
            self._completions.append(Committed(op=op, txid=txid))
            return
        owner = {key: self._cluster_of(key) for key in touched}
        participants = tuple(sorted(set(owner.values())))
        too_large = self._too_large(txid, ts, owner, participants, reads, writes, deletes)
        if too_large:
            self._completions.append(TooLarge(op=op, reason=too_large))
            return
        state = _CommitOp(
            op=op, txid=txid, ts=ts, participants=participants, deadline=self._now + self._config.outcome_budget_ticks
        )
        self._ops[op] = state
        epoch = self._routing.epoch

        if not writes and not deletes:
            for cluster in participants:
                cluster_reads = {key: version for key, version in reads.items() if owner[key] == cluster}
                state.waiting.add(self._start(cluster, ReadCheck(txid=txid, ts=ts, reads=cluster_reads), owner=op))
            return
        if len(participants) == 1:
            command = CommitOnePhase(
                txid=txid, ts=ts, reads=dict(reads), writes=dict(writes), deletes=tuple(deletes), epoch=epoch
            )
            state.waiting.add(self._start(participants[0], command, owner=op, deadline=state.deadline))
            return
        state.primary = owner[touched[0]]
        for cluster in participants:
            prepare = Prepare(
                txid=txid,
                ts=ts,
                reads={key: version for key, version in reads.items() if owner[key] == cluster},
                writes={key: value for key, value in writes.items() if owner[key] == cluster},
                deletes=tuple(key for key in deletes if owner[key] == cluster),
                primary=state.primary,
                participants=participants,
                epoch=epoch,
            )
            state.waiting.add(self._start(cluster, prepare, owner=op))

    def _too_large(self, txid: str, ts: int, owner: dict[str, str], participants: tuple[str, ...],
                   reads: dict[str, Stamp], writes: dict[str, Any], deletes: tuple[str, ...]) -> str:
        """Why a cluster's share of a commit can never fit one log entry ("" when every share fits).

        Measured as the servers measure it (the entry is the command's codec
        encoding), on the largest command this commit could send to that
        cluster: a Prepare naming every participant."""
        limit = self._config.max_command_bytes
        for cluster in participants:
            share = Prepare(
                txid=txid, ts=ts, reads={key: version for key, version in reads.items() if owner[key] == cluster},
                writes={key: value for key, value in writes.items() if owner[key] == cluster},
                deletes=tuple(key for key in deletes if owner[key] == cluster), primary=cluster,
                participants=participants, epoch=self._routing.epoch,
            )
            size = len(codec.encode(share))
            if size > limit:
                return (f"its share of cluster {cluster} takes {size} bytes, more than the {limit} one log entry holds;"
                        " write less in one transaction")
        return ""

    def receive(self, message: Any) -> None:
        """A ClientBatchReply from a server."""
        if not isinstance(message, ClientBatchReply):
            raise TypeError(f"a clerk receives ClientBatchReply, not {type(message).__name__}")
        if any(not isinstance(response.result, Redirect) for response in message.responses):
            self._note_leader(message.cluster, message.replica, message.term)
        for response in message.responses:
            request = self._requests.get(response.req)
            if request is None or request.cluster != message.cluster:
                continue
            if isinstance(response.result, Redirect):
                self._handle_redirect(request, message.replica, response.result)
            elif _answers(request.op, response.result):
                self._handle_result(request, response.result)

    def tick(self, ticks: int = 1) -> None:
        """`ticks` logical ticks have passed (more than one when the caller's
        process was paused): timeouts, resends. Budgets are checked before any
        resend, so a clerk frozen past its outcome budget gives up rather than
        ask again after the servers may have trimmed the outcome (docs/DESIGN.md
        section 4, step 6)."""
        self._now += max(1, ticks)
        for request in [request for request in self._requests.values() if request.due <= self._now]:
            # An earlier timeout in this pass may have ended its operation.
            if request.req in self._requests:
                self._handle_timeout(request)
        for state in [state for state in self._ops.values() if isinstance(state, _ReadOp)]:
            if state.parked_due is not None and state.parked_due <= self._now:
                self._resend_parked(state, list(state.parked))

    def take_output(self) -> list[tuple[str, Any]]:
        """`(replica id, ClientBatch)` pairs to send: one batch per replica."""
        by_replica: dict[str, list[_Request]] = {}
        for req in self._unsent:
            request = self._requests.get(req)
            if request is not None:
                by_replica.setdefault(request.sent_to, []).append(request)
        self._unsent.clear()
        return [
            (
                replica,
                ClientBatch(
                    client=self._config.clerk,
                    cluster=requests[0].cluster,
                    epoch=self._routing.epoch,
                    requests=tuple(ClientRequest(req=request.req, op=request.op) for request in requests),
                ),
            )
            for replica, requests in by_replica.items()
        ]

    def take_completions(self) -> list[Completion]:
        completions, self._completions = self._completions, []
        return completions

    # -- one reply, one timeout ----------------------------------------------

    def _handle_redirect(self, request: _Request, replica: str, redirect: Redirect) -> None:
        """`replica` does not lead `request.cluster`: follow a fresh hint now,
        else aim the next resend at another member."""
        if replica != request.sent_to or request.target != request.sent_to:
            return  # an answer to an earlier send, or this send's Redirect again
        cluster = request.cluster
        if self._maybe_follow_hint(cluster, replica, redirect):
            request.target = redirect.leader
            if request.hops < len(self._members[cluster]):
                request.hops += 1
                self._send(request)
            return
        request.target = self._candidate(cluster, after=replica)

    def _handle_timeout(self, request: _Request) -> None:
        """No answer by `request.due`: resend, to the next candidate unless a
        Redirect already chose one; or give up when out of attempts or budget."""
        if request.deadline is None:
            out_of_budget = request.attempts >= self._config.max_attempts
        else:
            out_of_budget = self._now >= request.deadline
        if out_of_budget:
            self._handle_exhausted(request)
            return
        if request.target == request.sent_to:
            request.target = self._candidate(request.cluster, after=request.sent_to)
        request.attempts += 1
        request.hops = 0
        request.wait = min(request.wait * 2, self._config.max_backoff_ticks)
        self._send(request)

    def _handle_result(self, request: _Request, result: Any) -> None:
        """A request's answer: move its operation on."""
        del self._requests[request.req]
        state = self._ops.get(request.owner) if request.owner is not None else None
        if state is None:
            return  # a decision sent for an operation that has already completed
        state.waiting.discard(request.req)
        match request.op, result:
            case ReadKeys(), WrongEpoch():
                self._handle_read_keys_moved(state, request, result)
            case Prepare() | CommitOnePhase() | ReadCheck() | LoggedRead(), WrongEpoch():
                self._handle_commit_moved(state, request, result)
            case LoggedRead(), LoggedReadResult():
                self._handle_logged_read_result(state, request.cluster, result)
            case ReadKeys(), ReadKeysResult():
                self._handle_read_keys_result(state, result)
            case ReadCheck(), ReadCheckResult():
                self._handle_read_check_result(state, request.cluster, result)
            case CommitOnePhase(), CommitOnePhaseResult():
                self._handle_commit_one_phase_result(state, result)
            case Prepare(), PrepareResult():
                self._handle_prepare_result(state, request.cluster, result)
            case Decide(), DecideResult():
                self._handle_decide_result(state, result)

    def _handle_read_keys_result(self, state: _ReadOp, result: ReadKeysResult) -> None:
        for value in result.values:
            state.values[value.key] = value
        if not state.waiting and not state.parked:
            self._finish(state, _read_done(state))

    def _handle_logged_read_result(self, state: _GetOp, cluster: str, result: LoggedReadResult) -> None:
        if not result.ok:
            self._finish(state, Aborted(op=state.op, txid=state.txid, reason=f"{cluster}: {result.reason}"))
            return
        for value in result.values:
            state.values[value.key] = value
        if not state.waiting:
            self._finish(state, _read_done(state))

    def _handle_read_keys_moved(self, state: _ReadOp, request: _Request, result: WrongEpoch) -> None:
        """`request.cluster` does not serve some of these keys now. Send again
        at once the keys of slots it did not name and those the map already
        routes elsewhere; park the rest."""
        if state.rounds >= self._config.max_attempts:
            reason = f"{request.cluster} answered WrongEpoch after {state.rounds} re-routes: {result.reason}"
            self._finish(state, Failed(op=state.op, reason=reason))
            return
        keys = request.op.keys
        state.parked.update(dict.fromkeys(keys, request.cluster))
        slot_count = len(self._routing.slots)
        # A refusal naming no slot refuses every key, so nothing spins.
        refused = set(result.slots) or {slot_of(key, slot_count) for key in keys}
        ready = [
            key for key in keys if slot_of(key, slot_count) not in refused or self._cluster_of(key) != request.cluster
        ]
        if ready:
            self._resend_parked(state, ready)
        if state.parked and state.parked_due is None:
            state.parked_due = self._now + self._backoff(state.rounds)

    def _resend_parked(self, state: _ReadOp, keys: list[str]) -> None:
        """Send parked keys again, grouped by the current map; keys left parked
        keep their wait."""
        for key in keys:
            del state.parked[key]
        if not state.parked:
            state.parked_due = None
        state.rounds += 1
        self._send_reads(state, self._group_by_cluster(keys))

    def _handle_commit_moved(self, state: _CommitOp | _GetOp, request: _Request, result: WrongEpoch) -> None:
        """A participant refused the attempt for a slot it does not serve; it
        recorded an abort. Only Prepare, CommitOnePhase, ReadCheck and
        LoggedRead get here, so no Decide(commit) was sent: abort the others,
        report Moved."""
        cluster = request.cluster
        reason = f"{cluster}: {result.reason or f'slots {list(result.slots)} not served'}"
        moved = Moved(op=state.op, txid=state.txid, epoch=request.epoch, reason=reason)
        if isinstance(request.op, Prepare):
            others = [participant for participant in state.participants if participant != cluster]
            self._abort_everywhere(state, others, completion=moved)
        else:
            # One-phase and read-only attempts leave nothing to undo elsewhere.
            self._finish(state, moved)

    def _handle_read_check_result(self, state: _CommitOp, cluster: str, result: ReadCheckResult) -> None:
        if not result.ok:
            self._finish(state, Aborted(op=state.op, txid=state.txid, reason=f"{cluster}: {result.reason}"))
        elif not state.waiting:
            self._finish(state, Committed(op=state.op, txid=state.txid))

    def _handle_commit_one_phase_result(self, state: _CommitOp, result: CommitOnePhaseResult) -> None:
        if result.committed:
            self._finish(state, Committed(op=state.op, txid=state.txid))
        else:
            cluster = state.participants[0]
            self._finish(state, Aborted(op=state.op, txid=state.txid, reason=f"{cluster}: {result.reason}"))

    def _handle_prepare_result(self, state: _CommitOp, cluster: str, result: PrepareResult) -> None:
        if not result.vote:
            # The refusing cluster recorded the abort itself when it voted.
            others = [participant for participant in state.participants if participant != cluster]
            self._abort_everywhere(state, others, reason=f"{cluster} voted no: {result.reason}")
        elif not state.waiting:
            if self._now >= state.deadline:
                budget = self._config.outcome_budget_ticks
                reason = f"the votes took longer than the outcome budget ({budget} ticks): aborted rather than committed late"
                self._abort_everywhere(state, state.participants, reason=reason)
                return
            decide = Decide(txid=state.txid, ts=state.ts, commit=True)
            state.waiting.add(self._start(state.primary, decide, owner=state.op, deadline=state.deadline))

    def _handle_decide_result(self, state: _CommitOp, result: DecideResult) -> None:
        if result.status == TXN_COMMITTED:
            self._publish(state)
        elif result.status == TXN_ABORTED:
            others = [participant for participant in state.participants if participant != state.primary]
            reason = f"primary {state.primary} aborted it" + (f": {result.reason}" if result.reason else "")
            self._abort_everywhere(state, others, reason=reason)
        else:
            # TXN_REFUSED: the primary broke an invariant (docs/DESIGN.md section 3);
            # the outcome cannot be claimed either way.
            reason = f"outcome unknown: primary {state.primary} answered {result.status}: {result.reason}"
            self._finish(state, Failed(op=state.op, reason=reason))

    def _publish(self, state: _CommitOp) -> None:
        """T is committed (its primary applied the commit): answer now, and
        tell the other participants by requests that outlive the operation.
        Until one of them applies the commit, its leader holds a read of a key
        T wrote (actors/replica.py), so the application reads its own writes
        next; the primary's leader keeps pushing the decision until every
        participant acknowledges it."""
        deadline = self._now + self._config.publish_ticks
        for cluster in state.participants:
            if cluster != state.primary:
                self._start(cluster, Decide(txid=state.txid, ts=state.ts, commit=True), owner=None, deadline=deadline)
        self._finish(state, Committed(op=state.op, txid=state.txid))

    def _handle_exhausted(self, request: _Request) -> None:
        """A request ran out of attempts (or of outcome budget)."""
        del self._requests[request.req]
        state = self._ops.get(request.owner) if request.owner is not None else None
        if state is None:
            # A lost decision: the participant's prepare timeout asks the
            # primary (docs/DESIGN.md section 4, step 5), and a primary that
            # committed pushes its commit anyway.
            return
        kind = type(request.op).__name__
        silence = f"{request.cluster} did not answer {kind} after {request.attempts} attempts"
        match request.op:
            case Prepare():
                self._abort_everywhere(state, state.participants, reason=f"{silence}; aborted everywhere")
            case CommitOnePhase() | Decide():
                budget = self._config.outcome_budget_ticks
                reason = f"outcome unknown: {request.cluster} did not answer {kind} within {budget} ticks"
                self._finish(state, Failed(op=state.op, reason=reason))
            case _:
                self._finish(state, Failed(op=state.op, reason=silence))

    # -- helpers ---------------------------------------------------------------

    def _send_reads(self, state: _ReadOp, keys_by_cluster: dict[str, list[str]]) -> None:
        for cluster, cluster_keys in keys_by_cluster.items():
            target = self._rng.choice(self._members[cluster]) if self._config.read_from_followers else None
            state.waiting.add(self._start(cluster, ReadKeys(keys=tuple(cluster_keys)), owner=state.op, target=target))

    def _backoff(self, rounds: int) -> int:
        """The wait after `rounds` earlier waits: doubling, capped."""
        return min(self._config.request_timeout_ticks * 2**rounds, self._config.max_backoff_ticks)

    def _check_new_op(self, op: int) -> None:
        if op in self._ops:
            raise ValueError(f"operation {op} is already in flight")

    def _cluster_of(self, key: str) -> str:
        return self._routing.slots[slot_of(key, len(self._routing.slots))]

    def _group_by_cluster(self, keys: list[str]) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for key in dict.fromkeys(keys):
            grouped.setdefault(self._cluster_of(key), []).append(key)
        return grouped

    def _start(
        self, cluster: str, op: ClientOp, *, owner: int | None, deadline: int | None = None, target: str | None = None
    ) -> int:
        target = target or self._candidate(cluster)
        request = _Request(
            req=self._next_req,
            cluster=cluster,
            op=op,
            owner=owner,
            sent_to=target,
            target=target,
            wait=self._config.request_timeout_ticks,
            deadline=deadline,
            epoch=self._routing.epoch,
        )
        self._next_req += 1
        self._requests[request.req] = request
        self._send(request)
        return request.req

    def _send(self, request: _Request) -> None:
        request.sent_to = request.target
        request.due = self._now + request.wait
        if request.deadline is not None:
            request.due = min(request.due, request.deadline)
        self._unsent[request.req] = None

    def _candidate(self, cluster: str, *, after: str | None = None) -> str:
        """Where a request for `cluster` goes: the known leader unless it is
        `after` (which just failed us), else the member after `after`, else a
        random member. A guess becomes the cluster's presumed leader, so new
        requests skip a replica that failed us and concurrent ones share one
        replica (and one batch)."""
        leader = self._leaders.get(cluster)
        if leader is not None and leader != after:
            return leader
        members = self._members[cluster]
        if after in members:
            guess = members[(members.index(after) + 1) % len(members)]
        else:
            guess = members[self._rng.randrange(len(members))]
        self._leaders[cluster] = guess
        return guess

    def _note_leader(self, cluster: str, replica: str, term: int) -> None:
        if replica in self._members.get(cluster, ()) and term >= self._terms.get(cluster, 0):
            self._terms[cluster] = term
            self._leaders[cluster] = replica

    def _maybe_follow_hint(self, cluster: str, replica: str, redirect: Redirect) -> bool:
        """Learn from a Redirect; True when its hint is worth following now."""
        known_term = self._terms.get(cluster, 0)
        hint = redirect.leader
        if hint is not None and hint != replica and hint in self._members.get(cluster, ()):
            if redirect.term >= known_term:
                self._note_leader(cluster, hint, redirect.term)
                return True
            return False
        if redirect.term > known_term:
            # An election at a newer term: whoever we thought led is deposed.
            self._terms[cluster] = redirect.term
            self._leaders[cluster] = None
        return False

    def _abort_everywhere(
        self,
        state: _CommitOp,
        clusters: list[str] | tuple[str, ...],
        *,
        reason: str = "",
        completion: Completion | None = None,
    ) -> None:
        """Decide(abort) to `clusters`, then complete with `completion`, by
        default Aborted for `reason`."""
        for cluster in clusters:
            self._start(cluster, Decide(txid=state.txid, ts=state.ts, commit=False), owner=None)
        self._finish(state, completion or Aborted(op=state.op, txid=state.txid, reason=reason))

    def _finish(self, state: _ReadOp | _GetOp | _CommitOp, completion: Completion) -> None:
        for req in state.waiting:
            self._requests.pop(req, None)
            self._unsent.pop(req, None)
        del self._ops[state.op]
        self._completions.append(completion)


def _read_done(state: _ReadOp | _GetOp) -> ReadDone:
    """The completion of a read or get whose every key has come back, in the caller's order."""
    return ReadDone(op=state.op, values={key: state.values[key] for key in state.keys})


def _answers(op: ClientOp, result: Any) -> bool:
    """Whether `result` answers `op`; anything else is a stray reply to ignore.
    A Decide is never answered WrongEpoch: it names a transaction, not slots."""
    match op, result:
        case ReadKeys(), WrongEpoch():
            return result.txid == ""
        case Prepare() | CommitOnePhase() | ReadCheck() | LoggedRead(), WrongEpoch():
            return result.txid == op.txid
        case LoggedRead(), LoggedReadResult():
            return result.txid == op.txid and (not result.ok or set(op.keys) <= {value.key for value in result.values})
        case ReadKeys(), ReadKeysResult():
            return set(op.keys) <= {value.key for value in result.values}
        case ReadCheck(), ReadCheckResult():
            return result.txid == op.txid
        case CommitOnePhase(), CommitOnePhaseResult():
            return result.txid == op.txid
        case Prepare(), PrepareResult():
            return result.txid == op.txid
        case Decide(), DecideResult():
            return result.txid == op.txid
    return False
