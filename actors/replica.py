"""Replica: one database server's whole behaviour, without Thespian and without a clock.

A Replica owns a RaftNode, the cluster's state machine (actors/store) and the
replica's Storage. The actor shell feeds it `tick()` every `tick_ms` and every
message it receives (`receive(message, sender)`), then sends what
`take_output()` returns, in order. `sender` is opaque to the Replica (the
shell's actor address; a node name in the simulator): replies to a client go
back to it as `ToClient(sender)`.

Rules and invariants (DESIGN.md sections 2-4):
- Persist first: each Ready is saved in one storage batch before its messages
  are queued and its committed entries applied.
- Committed entries are applied once each, in index order; a snapshot from
  the leader replaces the machine and moves `applied` to its index.
- Only log entries change the machine. The leader's timers (prepare
  timeouts, decision pushes, trims) merely propose entries, so every replica
  reaches the same state whoever leads.
- A client is answered from applied state only: ReadKeys at once; a proposed
  command when its entry is applied at the index and term it got, or Redirect
  when the entry lost its place or this replica lost leadership. Commands
  are idempotent by txid, so the client simply retries.
- Leader timers count this replica's ticks and restart when it wins an
  election: a new leader gives every transaction a full timeout.
- Frugal output (THESPIAN.md): per input, one ClientBatchReply per client and
  one ClientBatch per other cluster (split only to stay under the message
  size limit); every ReadCheck of an input shares one ValidateReads entry.
- Slot moves (DESIGN.md section 6): the coordinator's MoveSlot makes the
  leader take the move's next step from what its machine says (freeze, wait
  for the slot's prepared transactions to drain, ship, drop) and answer
  MoveProgress. Shipping is volatile leader state: at most SHIP_WINDOW
  chunks unacknowledged, re-sent every `push_interval_ticks`; a new leader
  cuts the same chunks again on the next MoveSlot. The machine decides
  WrongEpoch at apply time; the leader answers it before logging only for
  work the log would refuse anyway (a transaction unknown here, a read
  check, a read).
- Membership (ChangeMembership): the leader proposes the change to Raft and
  always answers a MembershipReport; conf entries never reach the machine.
- Caller errors: an unknown message or client operation raises TypeError
  before anything changes; a command too large for one entry is refused (a
  no vote) without being logged. A broken invariant raises AssertionError:
  the shell crashes and restarts from storage.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, replace
from functools import partial
from itertools import takewhile
from typing import Any, Callable, Hashable

from actors import codec
from actors.messages import (
    MOVE_DROPPED,
    MOVE_FROZEN,
    MOVE_NOT_OWNED,
    TXN_ABORTED,
    TXN_COMMITTED,
    TXN_PREPARED,
    TXN_REFUSED,
    TXN_UNKNOWN,
    AckDecision,
    ChangeMembership,
    ClientBatch,
    ClientBatchReply,
    ClientRequest,
    ClientResponse,
    ClientResult,
    CommitOnePhase,
    CommitOnePhaseResult,
    Decide,
    DecideResult,
    DropSlot,
    FreezeSlot,
    InstallSlot,
    InstallSlotResult,
    LeaderChange,
    MembershipReport,
    MoveProgress,
    MoveSlot,
    Prepare,
    PrepareResult,
    ReadCheck,
    ReadCheckResult,
    ReadKeys,
    ReadKeysResult,
    Redirect,
    TrimRecords,
    TxnStatus,
    TxnStatusResult,
    ValidateReads,
    ValidateReadsResult,
    WrongEpoch,
)
from actors.raft.messages import (
    ENTRY_COMMAND,
    ENTRY_CONF,
    RAFT_MESSAGES,
    ConfChange,
    ConfState,
    Entry,
    Snapshot,
)
from actors.raft.node import LEADER, ConfChangeBusy, NotLeader, RaftConfig, RaftNode, SoftState
from actors.raft.storage import Storage
from actors.store.machine import Machine


@dataclass(frozen=True, slots=True)
class ToReplica:
    """Destination: a peer replica of this cluster, by replica id."""

    replica: str


@dataclass(frozen=True, slots=True)
class ToLeaderOf:
    """Destination: the current leader of `cluster`, as the shell's shard map knows it
    (dropped by the shell when unknown: the sender's timers retry)."""

    cluster: str


@dataclass(frozen=True, slots=True)
class ToClient:
    """Destination: whoever sent a ClientBatch; `token` is the `sender` it came with."""

    token: Hashable


@dataclass(frozen=True, slots=True)
class ToCoordinator:
    """Destination: the coordinator."""


Destination = ToReplica | ToLeaderOf | ToClient | ToCoordinator


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplicaConfig:
    """One replica's settings; every duration is in ticks.

    Fields:
        cluster: the cluster id, e.g. "c1".
        raft: the RaftNode settings (`raft.id` is this replica's id).
        initial_conf: the cluster's membership when storage holds none.
        snapshot_entries: snapshot the machine and compact the log once this
            many entries were applied since the last snapshot.
        prepare_timeout_ticks: a leader holding a transaction prepared this
            long asks its primary (or, as the primary, aborts it).
        push_interval_ticks: a primary's leader re-pushes an unacknowledged
            commit decision to its participants this often.
        retention_ticks: an outcome record, once every participant has
            acknowledged it, is trimmed after this long.
        read_from_followers: answer ReadKeys as a follower too.
        slot_count: the deployment's number of slots (0: every key is served
            here and slots never move).
        founding_slots: the slots the cluster owned when it was created
            (used only when storage holds no snapshot).
    """

    cluster: str
    raft: RaftConfig
    initial_conf: ConfState
    snapshot_entries: int = 10_000
    prepare_timeout_ticks: int = 40
    push_interval_ticks: int = 10
    retention_ticks: int = 1_200
    read_from_followers: bool = False
    slot_count: int = 0
    founding_slots: tuple[int, ...] = ()


MAX_REQUESTS_PER_BATCH = 200
"""Requests in one ClientBatch this replica sends: a Decide or TxnStatus pickles
to well under 300 bytes, so a batch stays far below the 60 KB message limit."""

MAX_TRIMS_PER_ENTRY = 500
"""Txids named by one TrimRecords entry, so the entry stays under `max_batch_bytes`
for any reasonable txid length; the rest wait for the next tick."""

MAX_CHUNK_BYTES = 40_000
"""Encoded size of one InstallSlot chunk: it travels alone in a ClientBatch
(under the 60 KB message limit) and is logged as one entry at the destination."""

SHIP_WINDOW = 2
"""InstallSlot chunks of one move in flight at once, so a large slot neither
floods the destination's log nor the network."""

MAX_EVENTS = 100
"""Events `take_events` keeps between two calls."""

_CLIENT_COMMANDS = (Prepare, Decide, CommitOnePhase)
"""Client operations proposed as one log entry each."""

_SLOT_COMMANDS = (FreezeSlot, InstallSlot, DropSlot)


@dataclass(frozen=True, slots=True)
class _Held:
    """A transaction prepared here, as the recovery timers need it."""

    ts: int
    primary: str
    participants: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Unacked:
    """A commit this cluster is primary for, with participants yet to acknowledge it."""

    ts: int
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Waiter:
    """A client waiting for an entry: `answer` turns the entry's result into its response."""

    token: Hashable
    req: int
    answer: Callable[[Any], ClientResult]


@dataclass(frozen=True, slots=True)
class _Proposal:
    """An entry this leader proposed in `term`, and the clients waiting for it."""

    term: int
    waiters: tuple[_Waiter, ...]


class _Shipment:
    """A frozen, drained slot this leader is shipping to `destination`."""

    def __init__(self, *, slot: int, destination: str, chunks: tuple[InstallSlot, ...]) -> None:
        self.slot = slot
        self.destination = destination
        self.chunks = chunks
        self.acked: set[int] = set()
        self.sent_at: dict[int, int] = {}  # chunk -> tick it was last sent

    @property
    def done(self) -> bool:
        return len(self.acked) == len(self.chunks)

    def window(self) -> list[int]:
        """The lowest unacknowledged chunks, at most SHIP_WINDOW of them."""
        return [number for number in range(len(self.chunks)) if number not in self.acked][:SHIP_WINDOW]


class _LeaderTimers:
    """Volatile state of one term of leadership, times in this replica's ticks.

    Each dict is in non-decreasing order of its values (an entry is only
    ever added, or moved to the end, with the current tick plus a fixed
    delay), so a sweep stops at the first entry that is not due.
    """

    def __init__(
        self,
        *,
        term: int,
        now: int,
        timeout: int,
        held: dict[str, _Held],
        unacked: dict[str, _Unacked],
        records: list[str],
        first_index: int,
    ) -> None:
        self.term = term
        # txid -> tick its prepare timeout next fires (again every timeout
        # while T stays prepared: a participant re-asks its primary).
        self.timeout_at: dict[str, int] = dict.fromkeys(held, now + timeout)
        # txid -> tick its commit decision is next pushed.
        self.push_due: dict[str, int] = {}
        # Commits to push at once: every unacknowledged one on election, then
        # each as it is applied.
        self.fresh: list[str] = list(unacked)
        # txid -> tick this leader first saw its outcome record applied.
        self.record_seen: dict[str, int] = dict.fromkeys(records, now)
        # move -> its shipment, from the first MoveSlot that found the slot drained.
        self.shipments: dict[str, _Shipment] = {}
        # The index of this term's first entry: until it is applied, the
        # machine may lag what earlier leaders committed (a slot installed,
        # say), so answers about moves wait.
        self.first_index = first_index


def _same(result: Any) -> ClientResult:
    return result


def _check_verdict(position: int, result: ValidateReadsResult) -> ReadCheckResult:
    return result.results[position]


def _status_of_decision(result: DecideResult) -> TxnStatusResult:
    return TxnStatusResult(txid=result.txid, status=result.status)


def _too_large(command: Any, size: int, limit: int) -> Any:
    """What the entry would have answered for a client command too large to
    log: a refusal the client handles like any other (nothing was recorded)."""
    reason = f"command of {size} bytes exceeds the entry limit of {limit} bytes"
    match command:
        case Prepare():
            return PrepareResult(txid=command.txid, vote=False, reason=reason)
        case CommitOnePhase():
            return CommitOnePhaseResult(txid=command.txid, committed=False, reason=reason)
        case Decide():
            return DecideResult(txid=command.txid, status=TXN_REFUSED, reason=reason)
        case ValidateReads(checks=(check,)):
            return ValidateReadsResult(results=(ReadCheckResult(txid=check.txid, ok=False, reason=reason),))
        case InstallSlot():
            # Only a single key larger than a whole chunk gets here: the move
            # stalls visibly at "shipping" rather than crash the destination.
            return WrongEpoch(txid="", slots=(command.slot,), reason=reason)
    raise AssertionError(f"{type(command).__name__} entries are split or small enough to fit")


class Replica:
    """A database server's logic; see the module docstring."""

    def __init__(self, config: ReplicaConfig, storage: Storage, rng: random.Random) -> None:
        """Recover from `storage`: restore the machine from the stored snapshot,
        replay the committed log, rejoin the cluster as a follower."""
        self.config = config
        self.id = config.raft.id
        self.cluster = config.cluster
        self._storage = storage
        stored = storage.load()
        snapshot = stored.snapshot
        self._machine = (
            Machine.restore(self.cluster, snapshot.data)
            if snapshot
            else Machine(self.cluster, config.slot_count, config.founding_slots)
        )
        self._snapshot_index = snapshot.index if snapshot else 0
        self._applied = self._snapshot_index
        self._node = RaftNode(
            config.raft,
            rng=rng,
            hard_state=stored.hard_state,
            snapshot=snapshot,
            entries=stored.entries,
            initial_conf=config.initial_conf,
        )
        self._now = 0
        # Index of the last membership change in the log: it is pending while above the commit index.
        self._conf_index = max((entry.index for entry in stored.entries if entry.kind == ENTRY_CONF), default=0)
        # Mirrors of the machine, kept in step at apply time so the timers
        # never scan every record: transactions prepared here, and commits
        # awaiting acknowledgements.
        self._held: dict[str, _Held] = {}
        self._unacked: dict[str, _Unacked] = {}
        self._rebuild_mirrors()
        self._leader: _LeaderTimers | None = None
        self._waiting: dict[int, _Proposal] = {}
        # Work gathered during one input, flushed at its end.
        self._commands: list[tuple[Any, _Waiter]] = []
        self._checks: list[tuple[ReadCheck, _Waiter]] = []
        self._internal: dict[Any, None] = {}  # own proposals, deduplicated, in order
        self._asks: dict[str, list[ClientRequest]] = {}
        self._replies: dict[Hashable, list[ClientResponse]] = {}
        self._outbox: list[tuple[Destination, Any]] = []
        self._next_req = 0
        self._decision_conflicts = 0
        # Notable events for the shell's log; bounded, as a driver may never take them.
        self._events: deque[str] = deque(maxlen=MAX_EVENTS)
        self._settle()

    # -- inputs -------------------------------------------------------------------

    def tick(self) -> None:
        """One logical tick: Raft timers, prepare timeouts, decision pushes, trims."""
        self._now += 1
        self._node.tick()
        if self._leader is not None:
            self._sweep_prepare_timeouts()
            self._sweep_pushes()
            self._sweep_trims()
            for shipment in self._leader.shipments.values():
                self._ship(shipment)
        self._settle()

    def receive(self, message: Any, sender: Hashable) -> None:
        """A Raft message from a peer, a ClientBatch from a clerk or another
        cluster's leader, a ClientBatchReply to a batch this replica sent, or
        the coordinator's MoveSlot or ChangeMembership (answered ToCoordinator)."""
        if isinstance(message, ClientBatch):
            self._handle_client_batch(message, sender)
        elif isinstance(message, ClientBatchReply):
            self._handle_batch_reply(message)
        elif isinstance(message, MoveSlot):
            self._handle_move_slot(message)
        elif isinstance(message, ChangeMembership):
            self._handle_change_membership(message)
        elif isinstance(message, RAFT_MESSAGES):
            self._node.step(message)
        else:
            raise TypeError(f"a replica does not take {type(message).__name__} messages")
        self._settle()

    def take_output(self) -> list[tuple[Destination, Any]]:
        """Messages to send, at most one per destination where possible; state
        they depend on is already durable in storage."""
        output, self._outbox = self._outbox, []
        return output

    def take_events(self) -> list[str]:
        """One line per reconfiguration step taken since the last call, oldest
        first (move steps applied or started here, membership changes applied),
        for people to read; at most MAX_EVENTS are kept."""
        events = list(self._events)
        self._events.clear()
        return events

    @property
    def role(self) -> str:
        """This replica's Raft role now (cheap: the shell asks after every message)."""
        return self._node.role

    def status(self) -> dict:
        """A plain-JSON view: role, term, leader, commit, applied, last_index,
        snapshot index, prepared count, slots, and more (DESIGN.md section 7)."""
        node, machine = self._node, self._machine
        conf = node.conf
        shipments = self._leader.shipments if self._leader is not None else {}
        return {
            "replica": self.id,
            "cluster": self.cluster,
            "role": node.role,
            "term": node.term,
            "leader": node.leader,
            "commit": node.commit,
            "applied": self._applied,
            "last_index": node.last_index,
            "snapshot_index": self._snapshot_index,
            "prepared": len(self._held),
            "records": machine.record_count,
            "unacknowledged": len(self._unacked),
            "threshold": list(machine.threshold),
            "conf": {"voters": list(conf.voters), "learners": list(conf.learners)},
            "violations": len(machine.violations),
            "decision_conflicts": self._decision_conflicts,
            "waiting_proposals": len(self._waiting),
            # Leader only: how far each follower's log matches this one.
            "lag": {peer: node.last_index - match for peer, match in sorted(node.progress.items())},
            "ticks": self._now,
            "keys": machine.key_count(),
            "slots": {
                "owned": len(machine.owned_slots()),
                "frozen": {str(slot): frozen.move for slot, frozen in machine.frozen_slots().items()},
                "incoming": {
                    move: {"slot": incoming.slot, "chunks": incoming.chunks, "applied": len(incoming.applied)}
                    for move, incoming in machine.incoming_moves().items()
                },
                # Leader only: moves this leader is shipping.
                "shipping": {
                    move: {"slot": shipment.slot, "chunks": len(shipment.chunks), "acked": len(shipment.acked)}
                    for move, shipment in sorted(shipments.items())
                },
            },
        }

    # -- the Ready loop -----------------------------------------------------------

    def _settle(self) -> None:
        """Finish an input: persist and apply, propose what it gathered, queue replies."""
        while True:
            self._process_ready()
            if self._leader is not None:
                self._push_fresh()
            if not (self._commands or self._checks or self._internal):
                break
            self._flush_proposals()
        self._flush_asks()
        self._flush_replies()

    def _process_ready(self) -> None:
        node = self._node
        while node.has_ready():
            rd = node.ready()
            self._storage.save(hard_state=rd.hard_state, entries=rd.entries, snapshot=rd.snapshot)
            for entry in rd.entries:
                if entry.kind == ENTRY_CONF:
                    self._conf_index = entry.index
            if rd.soft_state is not None:
                self._handle_soft_state(rd.soft_state)
            if rd.snapshot is not None:
                self._install_snapshot(rd.snapshot)
            self._outbox.extend((ToReplica(to), message) for to, message in rd.messages)
            for entry in rd.committed_entries:
                self._apply(entry)
            node.advance(rd)
        self._maybe_compact()

    def _handle_soft_state(self, soft: SoftState) -> None:
        # One Ready reports only the latest role, so a lost-and-won-again
        # leadership shows as a new term.
        if self._leader is not None and (soft.role != LEADER or soft.term != self._leader.term):
            self._step_down()
        if soft.role == LEADER and self._leader is None:
            self._become_leader(soft.term)

    def _become_leader(self, term: int) -> None:
        records = [record.txid for record in self._machine.records()]
        self._leader = _LeaderTimers(
            term=term,
            now=self._now,
            timeout=self.config.prepare_timeout_ticks,
            held=self._held,
            unacked=self._unacked,
            records=records,
            first_index=self._node.last_index,
        )
        self._outbox.append((ToCoordinator(), LeaderChange(cluster=self.cluster, leader=self.id, term=term)))

    def _step_down(self) -> None:
        self._leader = None
        for proposal in self._waiting.values():
            for waiter in proposal.waiters:
                self._redirect(waiter)
        self._waiting.clear()

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        # Only a follower receives snapshots, so there are no leader timers
        # or waiting clients to carry over.
        self._machine = Machine.restore(self.cluster, snapshot.data)
        self._applied = snapshot.index
        self._snapshot_index = snapshot.index
        self._rebuild_mirrors()

    def _rebuild_mirrors(self) -> None:
        self._held = {
            txn.txid: _Held(ts=txn.ts, primary=txn.primary, participants=txn.participants)
            for txn in self._machine.prepared()
        }
        self._unacked = {
            record.txid: _Unacked(ts=record.ts, missing=record.missing) for record in self._machine.unacknowledged()
        }

    def _maybe_compact(self) -> None:
        since_snapshot = self._applied - self._snapshot_index
        if since_snapshot > 0 and since_snapshot >= self.config.snapshot_entries:
            snapshot = self._node.compact(self._applied, self._machine.snapshot())
            self._storage.compact(snapshot)
            self._snapshot_index = snapshot.index

    # -- applying -----------------------------------------------------------------

    def _apply(self, entry: Entry) -> None:
        if entry.index != self._applied + 1:
            raise AssertionError(f"{self.id}: entry {entry.index} committed after {self._applied} was applied")
        self._applied = entry.index
        result = None
        if entry.kind == ENTRY_COMMAND:
            command = codec.decode(entry.data)
            stage = self._machine.move_stage(command.move) if isinstance(command, _SLOT_COMMANDS) else None
            result = self._machine.apply(command)
            self._observe(command, result)
            if isinstance(command, _SLOT_COMMANDS):
                self._note_move_step(command, stage, result)
        elif entry.kind == ENTRY_CONF:
            change = ConfChange.decode(entry.data)
            self._events.append(f"membership change applied: {change.op} {change.replica}")
        proposal = self._waiting.pop(entry.index, None)
        if proposal is None:
            return
        # Leader Append-Only (paper figure 3): while this replica leads its
        # entries stay put, and losing the lead already redirected the waiters.
        if proposal.term != entry.term or result is None:
            raise AssertionError(
                f"{self.id}: entry {entry.index} of term {entry.term} replaced a proposal of term {proposal.term}"
            )
        for waiter in proposal.waiters:
            self._reply(waiter.token, waiter.req, waiter.answer(result))

    def _observe(self, command: Any, result: Any) -> None:
        """Keep the mirrors and the leader's timers in step with what was applied."""
        leader, machine = self._leader, self._machine
        match command:
            case Prepare(txid=txid):
                if machine.status(txid) == TXN_PREPARED:
                    if txid not in self._held:
                        self._held[txid] = _Held(
                            ts=command.ts, primary=command.primary, participants=command.participants
                        )
                        if leader is not None:
                            leader.timeout_at[txid] = self._now + self.config.prepare_timeout_ticks
                else:
                    self._saw_record(txid)
            case Decide(txid=txid):
                # Whatever the decision did, T is no longer undecided here.
                held = self._held.pop(txid, None)
                if leader is not None:
                    leader.timeout_at.pop(txid, None)
                if held is not None and held.primary == self.cluster and result.status == TXN_COMMITTED:
                    # The machine counts the primary as acknowledged (it applied the commit).
                    missing = tuple(p for p in held.participants if p != self.cluster)
                    if missing:
                        self._unacked[txid] = _Unacked(ts=held.ts, missing=missing)
                        if leader is not None:
                            leader.fresh.append(txid)
                self._saw_record(txid)
                if leader is not None and held is not None and machine.frozen_slots():
                    self._maybe_ship_drained()  # T may have been the last one holding a frozen slot
            case CommitOnePhase(txid=txid):
                self._saw_record(txid)
            case AckDecision(txid=txid) if txid in self._unacked:
                if result.missing:
                    self._unacked[txid] = _Unacked(ts=self._unacked[txid].ts, missing=result.missing)
                else:
                    del self._unacked[txid]
            case TrimRecords() if leader is not None:
                for txid in result.trimmed:
                    leader.record_seen.pop(txid, None)
            case FreezeSlot() if leader is not None and result.stage == MOVE_FROZEN:
                self._maybe_ship_drained()
            case DropSlot(move=move) if leader is not None and result.stage == MOVE_DROPPED:
                leader.shipments.pop(move, None)
                self._outbox.append(
                    (ToCoordinator(), MoveProgress(move=move, cluster=self.cluster, stage=MOVE_DROPPED))
                )

    def _note_move_step(self, command: Any, before: str | None, result: Any) -> None:
        """An event for operators when a slot entry changed the move's stage (repeats say nothing)."""
        match command:
            case FreezeSlot(move=move, slot=slot) if before is None and result.stage == MOVE_FROZEN:
                self._events.append(f"slot {slot} frozen for move {move} to {command.destination}")
            case InstallSlot(move=move, slot=slot) if before is None and result.complete:
                self._events.append(
                    f"slot {slot} installed from {command.source} (move {move}, {command.chunks} chunks)"
                )
            case DropSlot(move=move, slot=slot) if before == MOVE_FROZEN and result.stage == MOVE_DROPPED:
                self._events.append(f"slot {slot} dropped (move {move})")

    def _saw_record(self, txid: str) -> None:
        """Start the retention clock of T's outcome record, if it has one."""
        if self._leader is not None and self._machine.status(txid) in (TXN_COMMITTED, TXN_ABORTED):
            self._leader.record_seen.setdefault(txid, self._now)

    # -- clients ------------------------------------------------------------------

    def _handle_client_batch(self, batch: ClientBatch, sender: Hashable) -> None:
        for request in batch.requests:
            if not isinstance(request.op, (ReadKeys, ReadCheck, TxnStatus, InstallSlot, *_CLIENT_COMMANDS)):
                raise TypeError(f"unknown client operation {type(request.op).__name__} from {batch.client}")
        leading = self._leader is not None
        machine = self._machine
        for request in batch.requests:
            op, req = request.op, request.req
            if isinstance(op, ReadKeys) and (leading or self.config.read_from_followers):
                wrong = machine.refusal("", op.keys, writing=False)
                self._reply(sender, req, wrong or ReadKeysResult(values=tuple(machine.read(key) for key in op.keys)))
            elif not leading:
                self._reply(sender, req, self._redirection())
            elif (wrong := self._refused_early(op)) is not None:
                self._reply(sender, req, wrong)
            elif isinstance(op, ReadCheck):
                self._checks.append((op, _Waiter(sender, req, _same)))
            elif isinstance(op, InstallSlot) and (done := machine.install_progress(op.move, op.chunk)) is not None:
                # A chunk re-sent after its answer was lost: answered from state, not logged again.
                self._reply(sender, req, done)
            elif isinstance(op, TxnStatus):
                self._handle_txn_status(op, sender, req)
            elif isinstance(op, Decide) and (settled := self._machine.status(op.txid)) in (TXN_COMMITTED, TXN_ABORTED):
                # Already decided here (the clerk and the primary's push both
                # deliver a commit): an outcome is final, answer from applied
                # state without spending a log entry.
                self._reply(sender, req, DecideResult(txid=op.txid, status=settled))
            else:
                self._commands.append((op, _Waiter(sender, req, _same)))

    def _refused_early(self, op: Any) -> WrongEpoch | None:
        """WrongEpoch for work on slots the applied state does not serve, when
        the log would refuse it too: a read check, or a transaction unknown
        here (one prepared or recorded here is left to the log, which answers
        duplicates). A slot that starts being served later only costs the
        client a retry."""
        machine = self._machine
        match op:
            case ReadCheck():
                return machine.refusal(op.txid, op.reads, writing=True)
            case Prepare() | CommitOnePhase() if machine.status(op.txid) == TXN_UNKNOWN:
                return machine.refusal(op.txid, (*op.reads, *op.writes, *op.deletes), writing=True)
        return None

    def _handle_txn_status(self, op: TxnStatus, sender: Hashable, req: int) -> None:
        """DESIGN.md section 4, step 5, at T's primary: a settled answer comes
        from the record; otherwise (T undecided here: the asker has already held
        it a whole prepare timeout) an abort is logged and answered once
        applied, so log order settles a race with the clerk's commit."""
        machine = self._machine
        status = machine.status(op.txid)
        if status in (TXN_COMMITTED, TXN_ABORTED):
            self._reply(sender, req, TxnStatusResult(txid=op.txid, status=status))
        elif status == TXN_UNKNOWN and (op.ts, op.txid) <= machine.threshold:
            # Presumed abort: a commit record is trimmed only after every
            # participant acknowledged it, so none can still be asking.
            self._reply(sender, req, TxnStatusResult(txid=op.txid, status=TXN_ABORTED))
        else:
            abort = Decide(txid=op.txid, ts=op.ts, commit=False)
            self._commands.append((abort, _Waiter(sender, req, _status_of_decision)))

    def _handle_batch_reply(self, reply: ClientBatchReply) -> None:
        """Answers from other clusters' leaders to this leader's TxnStatus and Decide
        pushes and InstallSlot chunks. They carry the txid or the move, so no
        request needs remembering: a lost or redirected one is simply asked
        again by the timers."""
        if self._leader is None:
            return
        for response in reply.responses:
            match response.result:
                case TxnStatusResult(txid=txid, status=status) if status in (TXN_COMMITTED, TXN_ABORTED):
                    held = self._held.get(txid)
                    if held is not None and held.primary == reply.cluster:
                        self._internal[Decide(txid=txid, ts=held.ts, commit=status == TXN_COMMITTED)] = None
                case DecideResult(txid=txid, status=status):
                    unacked = self._unacked.get(txid)
                    if unacked is None or reply.cluster not in unacked.missing:
                        continue
                    if status == TXN_COMMITTED:
                        self._internal[AckDecision(txid=txid, participant=reply.cluster)] = None
                    else:
                        # A participant refusing a commit it voted for is a bug
                        # upstream; keep pushing and let operators see it.
                        self._decision_conflicts += 1
                case InstallSlotResult(move=move, chunk=chunk, complete=complete):
                    shipment = self._leader.shipments.get(move)
                    if shipment is None or reply.cluster != shipment.destination:
                        continue
                    if complete:
                        shipment.acked.update(range(len(shipment.chunks)))
                    else:
                        shipment.acked.add(chunk)
                    if shipment.done:
                        self._internal[DropSlot(move=move, slot=shipment.slot)] = None
                    else:
                        self._ship(shipment)

    # -- reconfiguration ----------------------------------------------------------

    def _handle_move_slot(self, message: MoveSlot) -> None:
        """Take the move's next step from what the applied state says, and report
        it. Silent off the leader, and on a new leader that has not applied its
        term's first entry yet: the coordinator asks again."""
        if self._leader is None or self._applied < self._leader.first_index:
            return
        machine, move, slot = self._machine, message.move, message.slot
        progress = MoveProgress(move=move, cluster=self.cluster, stage=MOVE_DROPPED)
        stage = machine.move_stage(move)
        if stage == MOVE_DROPPED:
            self._report_move(progress)
            return
        keys = len(machine.slot_keys(slot))
        frozen = machine.frozen_slots().get(slot)
        if frozen is None or frozen.move != move:
            if frozen is None and stage is None and slot in machine.owned_slots():
                self._internal[FreezeSlot(move=move, slot=slot, destination=message.destination)] = None
                self._report_move(replace(progress, stage="freezing", keys=keys))
            else:
                # Not this cluster's, frozen for another move, or installed here by this move.
                self._report_move(replace(progress, stage=MOVE_NOT_OWNED))
            return
        prepared = machine.prepared_on(slot)
        if prepared:
            self._report_move(replace(progress, stage="draining", keys=keys, prepared=len(prepared)))
            return
        shipment = self._leader.shipments.get(move) or self._start_shipment(move, slot, frozen.destination)
        # Unacknowledged chunks are sent again by the tick, not here.
        stage = "shipping"
        if shipment.done:
            self._internal[DropSlot(move=move, slot=slot)] = None
            stage = "dropping"
        chunks, acked = len(shipment.chunks), len(shipment.acked)
        self._report_move(replace(progress, stage=stage, keys=keys, chunks=chunks, acked=acked))

    def _start_shipment(self, move: str, slot: int, destination: str) -> _Shipment:
        limit = min(MAX_CHUNK_BYTES, self.config.raft.max_batch_bytes)
        shipment = _Shipment(slot=slot, destination=destination, chunks=self._machine.slot_chunks(slot, limit))
        self._leader.shipments[move] = shipment
        self._events.append(f"shipping slot {slot} (move {move}) to {destination}: {len(shipment.chunks)} chunks")
        self._ship(shipment)
        return shipment

    def _maybe_ship_drained(self) -> None:
        """Leader: start shipping every frozen slot that has drained, without
        waiting for the coordinator's next MoveSlot (a move then costs its
        round trips, not its polls)."""
        shipments = self._leader.shipments
        for slot, frozen in self._machine.frozen_slots().items():
            if frozen.move not in shipments and not self._machine.prepared_on(slot):
                self._start_shipment(frozen.move, slot, frozen.destination)

    def _report_move(self, progress: MoveProgress) -> None:
        self._outbox.append((ToCoordinator(), progress))

    def _ship(self, shipment: _Shipment) -> None:
        """Send the window's chunks not sent yet, or not answered for a push interval."""
        for number in shipment.window():
            sent = shipment.sent_at.get(number)
            if sent is None or self._now - sent >= self.config.push_interval_ticks:
                shipment.sent_at[number] = self._now
                self._ask(shipment.destination, shipment.chunks[number])

    def _handle_change_membership(self, message: ChangeMembership) -> None:
        """Propose the change (unless the op is "" or it cannot be made now) and report."""
        if self._leader is None:
            return
        node, error = self._node, ""
        if message.op:
            try:
                self._conf_index = node.propose_conf_change(ConfChange(op=message.op, replica=message.replica))
            except ConfChangeBusy as busy:
                error = f"busy: {busy}"
            except NotLeader as hint:
                # Removing itself (or already handing over): the node transfers leadership.
                error = f"handing leadership to {hint.leader} first"
            except ValueError as invalid:
                error = str(invalid)
        conf = node.conf
        report = MembershipReport(
            cluster=self.cluster,
            leader=self.id,
            term=node.term,
            voters=conf.voters,
            learners=conf.learners,
            pending=self._conf_index > node.commit,
            commit=node.commit,
            match=node.progress,
            error=error,
        )
        self._outbox.append((ToCoordinator(), report))

    def _redirection(self) -> Redirect:
        node = self._node
        return Redirect(leader=node.transferee or node.leader, term=node.term)

    def _redirect(self, waiter: _Waiter) -> None:
        self._reply(waiter.token, waiter.req, self._redirection())

    def _reply(self, token: Hashable, req: int, result: ClientResult) -> None:
        self._replies.setdefault(token, []).append(ClientResponse(req=req, result=result))

    # -- proposing ----------------------------------------------------------------

    def _flush_proposals(self) -> None:
        commands, checks, internal = self._commands, self._checks, self._internal
        self._commands, self._checks, self._internal = [], [], {}
        if self._leader is None or self._node.transferee is not None:
            # Not leading, or handing leadership over (the node takes no
            # proposals then): clients retry at the hint; the leader's own
            # proposals come again from the timers and the coordinator's polls.
            for _, waiter in (*commands, *checks):
                self._redirect(waiter)
            return
        entries = [(command, (waiter,)) for command, waiter in commands]
        entries += self._read_check_entries(checks)
        entries += [(command, ()) for command in internal]
        limit = self.config.raft.max_batch_bytes
        for command, waiters in entries:
            data = codec.encode(command)
            if len(data) > limit:
                refusal = _too_large(command, len(data), limit)
                for waiter in waiters:
                    self._reply(waiter.token, waiter.req, waiter.answer(refusal))
                continue
            index = self._node.propose(data)
            if waiters:
                self._waiting[index] = _Proposal(term=self._node.term, waiters=waiters)

    def _read_check_entries(
        self, checks: list[tuple[ReadCheck, _Waiter]]
    ) -> list[tuple[ValidateReads, tuple[_Waiter, ...]]]:
        """All read checks in one ValidateReads entry, halved until each entry
        fits `max_batch_bytes` (a single oversized check is refused at flush)."""
        if not checks:
            return []
        command = ValidateReads(checks=tuple(check for check, _ in checks))
        if len(checks) > 1 and len(codec.encode(command)) > self.config.raft.max_batch_bytes:
            half = len(checks) // 2
            return self._read_check_entries(checks[:half]) + self._read_check_entries(checks[half:])
        waiters = tuple(
            _Waiter(waiter.token, waiter.req, partial(_check_verdict, position))
            for position, (_, waiter) in enumerate(checks)
        )
        return [(command, waiters)]

    # -- leader timers ------------------------------------------------------------

    def _sweep_prepare_timeouts(self) -> None:
        """DESIGN.md section 4, step 5: a transaction prepared too long is
        aborted by its primary; a participant asks the primary, again every
        timeout until it is settled."""
        leader, now = self._leader, self._now
        expired = [txid for txid, at in takewhile(lambda item: item[1] <= now, leader.timeout_at.items())]
        for txid in expired:
            del leader.timeout_at[txid]
            leader.timeout_at[txid] = now + self.config.prepare_timeout_ticks
            held = self._held[txid]
            if held.primary == self.cluster:
                self._internal[Decide(txid=txid, ts=held.ts, commit=False)] = None
            else:
                self._ask(held.primary, TxnStatus(txid=txid, ts=held.ts))

    def _push_fresh(self) -> None:
        leader = self._leader
        fresh, leader.fresh = leader.fresh, []
        for txid in fresh:
            if txid in self._unacked:
                self._push(txid)

    def _sweep_pushes(self) -> None:
        leader, now = self._leader, self._now
        due = [txid for txid, at in takewhile(lambda item: item[1] <= now, leader.push_due.items())]
        for txid in due:
            del leader.push_due[txid]
            if txid in self._unacked:
                self._push(txid)

    def _push(self, txid: str) -> None:
        """Send T's commit to every participant that has not acknowledged it
        (DESIGN.md section 4, step 4) and schedule the next push."""
        unacked = self._unacked[txid]
        for participant in unacked.missing:
            self._ask(participant, Decide(txid=txid, ts=unacked.ts, commit=True))
        self._leader.push_due[txid] = self._now + self.config.push_interval_ticks

    def _sweep_trims(self) -> None:
        """DESIGN.md section 4, step 6: records past their retention, and fully
        acknowledged, go in one TrimRecords entry."""
        leader, now, retention = self._leader, self._now, self.config.retention_ticks
        expired = []
        for txid, seen in leader.record_seen.items():
            if now - seen < retention or len(expired) == MAX_TRIMS_PER_ENTRY:
                break
            if txid not in self._unacked:
                expired.append(txid)
        for txid in expired:
            del leader.record_seen[txid]
        if expired:
            self._internal[TrimRecords(txids=tuple(expired))] = None

    # -- output -------------------------------------------------------------------

    def _ask(self, cluster: str, op: TxnStatus | Decide | InstallSlot) -> None:
        self._next_req += 1
        self._asks.setdefault(cluster, []).append(ClientRequest(req=self._next_req, op=op))

    def _flush_asks(self) -> None:
        for cluster, requests in self._asks.items():
            small = [request for request in requests if not isinstance(request.op, InstallSlot)]
            groups = [
                small[start : start + MAX_REQUESTS_PER_BATCH] for start in range(0, len(small), MAX_REQUESTS_PER_BATCH)
            ]
            # A chunk is most of a message's size limit: each travels alone.
            groups += [[request] for request in requests if isinstance(request.op, InstallSlot)]
            for group in groups:
                batch = ClientBatch(
                    client=self.id,
                    cluster=cluster,
                    # Decisions, status queries and chunks name a txid or a
                    # move, not keys: they are not routed by slot, so no epoch applies.
                    epoch=0,
                    requests=tuple(group),
                )
                self._outbox.append((ToLeaderOf(cluster), batch))
        self._asks.clear()

    def _flush_replies(self) -> None:
        term = self._node.term
        for token, responses in self._replies.items():
            reply = ClientBatchReply(cluster=self.cluster, replica=self.id, term=term, responses=tuple(responses))
            self._outbox.append((ToClient(token), reply))
        self._replies.clear()
