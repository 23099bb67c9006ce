"""Replica: one database server's whole behaviour, without Thespian and without a clock.

A Replica owns a RaftNode, the cluster's state machine (actors/store) and the
replica's Storage. The actor shell feeds it `tick()` every `tick_ms` and every
message it receives (`receive(message, sender)`), then sends what
`take_output()` returns, in order. `sender` is opaque to the Replica (the
shell's actor address; a node name in the simulator): replies to a client go
back to it as `ToClient(sender)`.

The Replica keeps the inputs, the Ready loop, apply and client batching. While
it leads, two collaborators hold that term's volatile state and return actions
for it to carry out: TxnRecovery (actors/txn_recovery.py: prepare timeouts,
decision pushes, trims) and SlotShipping (actors/slot_shipping.py: the
source's side of a slot move).

Rules and invariants (docs/DESIGN.md sections 2-4):
- Persist first: each Ready is saved in one storage batch before its messages
  are queued and its committed entries applied. One exception (Raft thesis,
  section 10.2.1): a leader's AppendLogs carrying new entries go to the
  shell's `send_before_saving` before the save, so that its followers write
  those entries while it writes them too. That is safe because the leader
  handles the acknowledgements, and so counts its own entries toward a
  quorum, only in a later input, after this save returned; a leader that
  crashes during the save merely sent entries nobody committed.
- Committed entries are applied once each, in index order; a snapshot from
  the leader replaces the machine and moves `applied` to its index.
- Only log entries change the machine. The leader's collaborators merely
  propose entries, so every replica reaches the same state whoever leads.
- A client is answered from applied state only: ReadKeys at once, unless a
  prepared transaction writes one of its keys (then once none does, or after
  `read_wait_ticks`: a clerk answers a commit at its primary's decision, so
  a participant may still hold it prepared when the application reads what
  it wrote); a proposed command when its entry is applied at the index and
  term it got, or Redirect when the entry lost its place or this replica
  lost leadership. Commands are idempotent by txid, so the client simply
  retries.
- Leader state counts this replica's ticks and starts over when it wins an
  election: a new leader gives every transaction a full timeout.
- Frugal output (docs/DESIGN.md section 10): per input, one ClientBatchReply
  per client and one ClientBatch per other cluster (split only to stay under
  the message size limit); every ReadCheck and LoggedRead of an input
  shares one ValidateReads entry.
- Lease reads (docs/DESIGN.md section 4): a leader whose lease holds
  (`RaftNode.lease_basis` plus `RaftConfig.lease_ticks`, in the real time
  the shell hands to `observe_clock`) answers a ReadCheck or LoggedRead at
  once from applied state, when none of its entries still unapplied writes
  a key the read names (so the read misses no write logged before it). The
  read stamps it raised wait in memory and go to the log as
  RecordLeaseReads ahead of the next entries it proposes, so every write
  proposed after the read is validated against them. They die with the
  leadership, so every new leader first logs a ReadFloor above any stamp
  its predecessors could have answered.
- Slot moves (docs/DESIGN.md section 6): the machine decides WrongEpoch at
  apply time; the leader answers it before logging only for work the log
  would refuse anyway (a transaction unknown here, a read check, a read).
- Membership (ChangeMembership): the leader proposes the change to Raft and
  always answers a MembershipReport; conf entries never reach the machine.
- Metrics (docs/DESIGN.md section 14): the shell's `Metrics` is handed in;
  the RaftMeter counts from each saved Ready, the machine counts
  transactions, and `metrics_snapshot()` sets the gauges when asked. The
  age of a prepared transaction is counted in ticks, from the tick its
  Prepare was applied here (or a snapshot brought it), and shown in seconds
  by `tick_ms`.
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
from typing import Any, Callable, Hashable

from actors import codec
from actors.messages import (
    MOVE_DROPPED,
    MOVE_FROZEN,
    TXN_ABORTED,
    TXN_COMMITTED,
    TXN_PREPARED,
    TXN_REFUSED,
    TXN_UNKNOWN,
    AckDecision,
    ChangeMembership,
    ClientBatch,
    ClientBatchReply,
    ClientReply,
    ClientRequest,
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
    LoggedRead,
    LoggedReadResult,
    MembershipReport,
    MoveSlot,
    Prepare,
    PrepareResult,
    ReadCheck,
    ReadCheckResult,
    ReadFloor,
    ReadKeys,
    ReadKeysResult,
    RecordLeaseReads,
    Redirect,
    Stamp,
    TrimRecords,
    TxnStatus,
    ValidateReads,
    ValidateReadsResult,
    WrongEpoch,
)
from actors.metrics import Metrics
from actors.raft.messages import (
    ENTRY_COMMAND,
    ENTRY_CONF,
    RAFT_MESSAGES,
    AppendLog,
    ConfChange,
    ConfState,
    Entry,
    RepairLogReply,
    Snapshot,
)
from actors.raft.meter import RaftMeter
from actors.raft.node import LEADER, ConfChangeBusy, NotLeader, RaftConfig, RaftNode, SoftState
from actors.raft.storage import Storage
from actors.slot_shipping import Note, Report, ShippingAction, SlotShipping
from actors.store.machine import Machine, checked_keys
from actors.txn_recovery import (
    Ask,
    DecisionConflict,
    Propose,
    RecoveryAction,
    TxnRecovery,
    status_of_decision,
    txn_status_answer,
)


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
            commit decision to its participants this often (and a source's
            leader an unanswered slot chunk).
        retention_ticks: an outcome record, once every participant has
            acknowledged it, is trimmed after this long.
        read_from_followers: answer ReadKeys as a follower too.
        read_wait_ticks: a ReadKeys of a key a prepared transaction writes
            waits for its decision this long at most (then the committed
            values go, and validation at commit catches what they miss).
        slot_count: the deployment's number of slots (0: every key is served
            here and slots never move).
        founding_slots: the slots the cluster owned when it was created
            (used only when storage holds no snapshot).
        tick_ms: how long the shell's tick is, in milliseconds (to report
            ages in seconds, and to turn the lease's ticks into seconds).
        lease_reads: answer read checks and logged reads from the leader's
            lease when it holds one (and log a ReadFloor on each election).
        max_clock_offset: seconds any two hosts' Unix clocks may differ
            (topology `transactions.max_clock_offset_ms`).
    """

    cluster: str
    raft: RaftConfig
    initial_conf: ConfState
    snapshot_entries: int = 10_000
    prepare_timeout_ticks: int = 40
    push_interval_ticks: int = 10
    retention_ticks: int = 1_200
    read_from_followers: bool = False
    read_wait_ticks: int = 2
    slot_count: int = 0
    founding_slots: tuple[int, ...] = ()
    tick_ms: int = 50
    lease_reads: bool = True
    max_clock_offset: float = 0.0

    @property
    def lease_seconds(self) -> float:
        """How long past `RaftNode.lease_basis` the leader's lease runs: the
        ticks no other leader can be elected in, less a tenth for clocks that
        run at slightly different rates on different hosts."""
        return self.raft.lease_ticks * self.tick_ms / 1000 * LEASE_RATE_MARGIN


LEASE_RATE_MARGIN = 0.9
"""The part of the voters' promise a lease uses (`ReplicaConfig.lease_seconds`)."""

LEASE_READ_KEY_BYTES = 4_096
"""A read naming more key bytes than this takes the log, so that the stamps
a lease read leaves always fit a RecordLeaseReads entry."""

_BENIGN_FOR_READS = (Decide, ValidateReads, AckDecision, TrimRecords, RecordLeaseReads, ReadFloor)
"""Commands that, still unapplied, cannot change what a read returns: a
decision installs only writes already prepared, which the read sees on the
history line (rule 2); the others write no key."""

MAX_REQUESTS_PER_BATCH = 200
"""Requests in one ClientBatch this replica sends: a Decide or TxnStatus pickles
to well under 300 bytes, so a batch stays far below the 60 KB message limit."""

MAX_EVENTS = 100
"""Events `take_events` keeps between two calls."""

_CLIENT_COMMANDS = (Prepare, Decide, CommitOnePhase)
"""Client operations proposed as one log entry each."""

_SLOT_COMMANDS = (FreezeSlot, InstallSlot, DropSlot)

LeaderAction = RecoveryAction | ShippingAction


@dataclass(frozen=True, slots=True)
class _Leadership:
    """This replica's volatile state for one term as leader, dropped when it loses the lead."""

    term: int
    recovery: TxnRecovery
    shipping: SlotShipping


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


def _unchanged_result(result: Any) -> ClientResult:
    """The answer for a client whose command has an entry of its own: the entry's result."""
    return result


def _check_result_at(position: int, result: ValidateReadsResult) -> ReadCheckResult | LoggedReadResult | WrongEpoch:
    """The answer for the client whose ReadCheck or LoggedRead is at `position` of a shared ValidateReads entry."""
    return result.results[position]


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
        case ValidateReads(checks=(LoggedRead() as read,)):
            return ValidateReadsResult(results=(LoggedReadResult(txid=read.txid, ok=False, reason=reason),))
        case ValidateReads(checks=(check,)):
            return ValidateReadsResult(results=(ReadCheckResult(txid=check.txid, ok=False, reason=reason),))
        case InstallSlot():
            # Only a single key larger than a whole chunk gets here: the move
            # stalls visibly at "shipping" rather than crash the destination.
            return WrongEpoch(txid="", slots=(command.slot,), reason=reason)
    raise AssertionError(f"{type(command).__name__} entries are split or small enough to fit")


class Replica:
    """A database server's logic; see the module docstring."""

    def __init__(self, config: ReplicaConfig, storage: Storage, rng: random.Random, *,
                 metrics: Metrics | None = None,
                 send_before_saving: Callable[[list[tuple[Destination, Any]]], None] | None = None) -> None:
        """Recover from `storage`: restore the machine from the stored snapshot,
        replay the committed log, rejoin the cluster as a follower. `metrics`
        is the shell's, counting from now on (the replay included).
        `send_before_saving`, when given, sends a leader's AppendLogs at once,
        before its own save (see the module docstring); without it they wait
        for the save, as every other message does."""
        self.config = config
        self._send_before_saving = send_before_saving
        self.id = config.raft.id
        self.cluster = config.cluster
        self.metrics = metrics if metrics is not None else Metrics()
        self._storage = storage
        stored = storage.load()
        snapshot = stored.snapshot
        self._machine = (
            Machine.restore(self.cluster, snapshot.data, metrics=self.metrics)
            if snapshot
            else Machine(self.cluster, config.slot_count, config.founding_slots, metrics=self.metrics)
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
        self._meter = RaftMeter(self.metrics, self._node)
        self._now = 0
        # Txid -> the tick its Prepare was applied here, oldest first, while it is prepared.
        self._prepared_at: dict[str, int] = dict.fromkeys((txn.txid for txn in self._machine.prepared()), 0)
        # Index of the last membership change in the log: it is pending while above the commit index.
        self._conf_index = max((entry.index for entry in stored.entries if entry.kind == ENTRY_CONF), default=0)
        self._leadership: _Leadership | None = None
        self._waiting: dict[int, _Proposal] = {}
        # Work gathered during one input, flushed at its end.
        self._commands: list[tuple[Any, _Waiter]] = []
        self._checks: list[tuple[ReadCheck | LoggedRead, _Waiter]] = []
        self._waiting_reads: list[tuple[ReadKeys, Hashable, int, int]] = []
        """(ReadKeys, client token, req, tick it came) of reads waiting for a prepared writer's decision."""
        self._own_proposals: dict[Any, None] = {}  # the leader's own commands, deduplicated, in order
        self._read_floor: ReadFloor | None = None  # a new leader's floor, proposed before anything else
        self._lease_stamps: dict[str, Stamp] = {}  # key -> highest stamp a lease read raised, not yet logged
        # Index -> keys written, for this leader's entries not yet applied whose effect on reads is known.
        self._unapplied_writes: dict[int, frozenset[str]] = {}
        self._term_start = 0  # index of this leader's first entry (its no-op)
        self._monotonic: float | None = None
        self._unix: float | None = None
        self._asks: dict[str, list[ClientRequest]] = {}
        self._replies: dict[Hashable, list[ClientReply]] = {}
        self._outbox: list[tuple[Destination, Any]] = []
        self._next_req = 0
        self._decision_conflicts = 0
        # Notable events for the shell's log; bounded, as a driver may never take them.
        self._events: deque[str] = deque(maxlen=MAX_EVENTS)
        self._finish_input()

    # -- inputs -------------------------------------------------------------------

    def observe_clock(self, *, monotonic: float, unix: float) -> None:
        """The shell's clocks, in seconds, just before an input: `monotonic`
        times the leader's lease, `unix` sets a new leader's ReadFloor.
        Without it (a driver that never calls it) the replica serves no read
        from a lease and logs no floor."""
        self._monotonic, self._unix = monotonic, unix
        self._node.observe_time(monotonic)

    def tick(self) -> None:
        """One logical tick: Raft timers, then the leader's recovery timers and chunk resends."""
        self._now += 1
        self._node.tick()
        if self._leadership is not None:
            self._carry_out(self._leadership.recovery.due(self._now))
            self._carry_out(self._leadership.shipping.due(self._now))
        self._finish_input()

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
            if type(message) is RepairLogReply:
                self._meter.repaired(message)
            self._node.step(message)
        else:
            raise TypeError(f"a replica does not take {type(message).__name__} messages")
        self._finish_input()

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
    def lease_read_stamps(self) -> dict[str, Stamp]:
        """Leader only: key -> the highest stamp a lease read raised that is not logged yet."""
        return dict(self._lease_stamps)

    @property
    def role(self) -> str:
        """This replica's Raft role now (cheap: the shell asks after every message)."""
        return self._node.role

    def status(self) -> dict:
        """A plain-JSON view: role, term, leader, commit, applied, last_index,
        snapshot index, prepared count, slots, and more (docs/DESIGN.md section 7)."""
        node, machine = self._node, self._machine
        conf = node.conf
        shipments = self._leadership.shipping.shipments if self._leadership is not None else {}
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
            "prepared": machine.prepared_count,
            "records": machine.record_count,
            "unacknowledged": machine.unacknowledged_count,
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

    def metrics_snapshot(self) -> dict:
        """The metrics (`Metrics.snapshot()`), their gauges set to this moment."""
        machine, metrics = self._machine, self.metrics
        self._meter.set_gauges(self._applied)
        metrics.set("raftline_prepared_transactions", machine.prepared_count)
        oldest = next(iter(self._prepared_at.values()), self._now)
        metrics.set("raftline_oldest_prepared_seconds", (self._now - oldest) * self.config.tick_ms / 1000)
        return metrics.snapshot()

    # -- the Ready loop -----------------------------------------------------------

    def _finish_input(self) -> None:
        """Finish an input: persist and apply, propose what it gathered, queue replies."""
        while True:
            self._process_ready()
            if self._leadership is not None:
                self._carry_out(self._leadership.recovery.push_new_commits(self._now))
            if not (self._commands or self._checks or self._own_proposals or self._read_floor):
                break
            if not self._flush_proposals():
                break
        if self._waiting_reads:
            self._answer_waiting_reads()
        self._flush_asks()
        self._flush_replies()

    def _process_ready(self) -> None:
        node = self._node
        while node.has_ready():
            rd = node.ready()
            messages = rd.messages
            if self._send_before_saving is not None and rd.entries and node.role == LEADER:
                messages = self._send_appends_first(messages)
            self._storage.save(hard_state=rd.hard_state, entries=rd.entries, snapshot=rd.snapshot)
            self._meter.saved(rd)
            for entry in rd.entries:
                if entry.kind == ENTRY_CONF:
                    self._conf_index = entry.index
            if rd.soft_state is not None:
                self._handle_soft_state(rd.soft_state)
            if rd.snapshot is not None:
                self._install_snapshot(rd.snapshot)
            self._outbox.extend((ToReplica(to), message) for to, message in messages)
            for entry in rd.committed_entries:
                self._apply(entry)
            node.advance(rd)
        self._maybe_compact()

    def _send_appends_first(self, messages: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """Hand the AppendLogs that carry entries to `send_before_saving`; the rest, to send after the save."""
        appends, rest = [], []
        for to, message in messages:
            if type(message) is AppendLog and message.entries:
                appends.append((ToReplica(to), message))
            else:
                rest.append((to, message))
        if appends:
            self._send_before_saving(appends)
        return rest

    def _handle_soft_state(self, soft: SoftState) -> None:
        # One Ready reports only the latest role, so a lost-and-won-again
        # leadership shows as a new term.
        if self._leadership is not None and (soft.role != LEADER or soft.term != self._leadership.term):
            self._step_down()
        if soft.role == LEADER and self._leadership is None:
            self._become_leader(soft.term)

    def _become_leader(self, term: int) -> None:
        config, machine, now = self.config, self._machine, self._now
        self._leadership = _Leadership(
            term=term,
            recovery=TxnRecovery(
                cluster=self.cluster,
                machine=machine,
                now=now,
                prepare_timeout=config.prepare_timeout_ticks,
                push_interval=config.push_interval_ticks,
                retention=config.retention_ticks,
            ),
            shipping=SlotShipping(
                cluster=self.cluster,
                machine=machine,
                first_index=self._node.last_index,
                push_interval=config.push_interval_ticks,
                max_entry_bytes=config.raft.max_batch_bytes,
            ),
        )
        self._term_start = self._node.last_index
        if config.lease_reads and self._unix is not None:
            # Every lease read before this election carried a clerk's stamp,
            # which no clock then read beyond this one's plus the offset.
            self._read_floor = ReadFloor(ts=int((self._unix + config.max_clock_offset) * 1_000_000))
        self._outbox.append((ToCoordinator(), LeaderChange(cluster=self.cluster, leader=self.id, term=term)))

    def _step_down(self) -> None:
        self._leadership = None
        self._read_floor = None
        self._lease_stamps.clear()
        self._unapplied_writes.clear()
        for proposal in self._waiting.values():
            for waiter in proposal.waiters:
                self._redirect(waiter)
        self._waiting.clear()

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        # Only a follower receives snapshots, so there is no leader state (which
        # reads the machine) or waiting client to carry over.
        self._machine = Machine.restore(self.cluster, snapshot.data, metrics=self.metrics)
        self._applied = snapshot.index
        self._snapshot_index = snapshot.index
        self._prepared_at = dict.fromkeys((txn.txid for txn in self._machine.prepared()), self._now)

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
        self._unapplied_writes.pop(entry.index, None)
        result = None
        if entry.kind == ENTRY_COMMAND:
            command = codec.decode(entry.data)
            stage = self._machine.move_stage(command.move) if isinstance(command, _SLOT_COMMANDS) else None
            result = self._machine.apply(command)
            self._track_prepared(command)
            if self._leadership is not None:
                self._track_applied(command, result)
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

    def _track_prepared(self, command: Any) -> None:
        """Keep `_prepared_at` in step with the history line."""
        kind = type(command)
        if kind is Prepare:
            if self._machine.status(command.txid) == TXN_PREPARED:
                self._prepared_at.setdefault(command.txid, self._now)
        elif kind is Decide:
            self._prepared_at.pop(command.txid, None)

    def _track_applied(self, command: Any, result: Any) -> None:
        """Keep this term's recovery timers and shipments in step with an applied entry."""
        leadership, now = self._leadership, self._now
        if leadership.recovery.on_applied(command, result, now):
            # The decided transaction may have been the last one holding a frozen slot.
            self._carry_out(leadership.shipping.ship_drained(now))
        self._carry_out(leadership.shipping.on_applied(command, result, now))

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

    # -- clients ------------------------------------------------------------------

    def _handle_client_batch(self, batch: ClientBatch, sender: Hashable) -> None:
        for request in batch.requests:
            if not isinstance(request.op, (ReadKeys, ReadCheck, LoggedRead, TxnStatus, InstallSlot, *_CLIENT_COMMANDS)):
                raise TypeError(f"unknown client operation {type(request.op).__name__} from {batch.client}")
        leading = self._leadership is not None
        machine = self._machine
        for request in batch.requests:
            op, req = request.op, request.req
            if isinstance(op, ReadKeys) and (leading or self.config.read_from_followers):
                if machine.writes_prepared(op.keys):
                    self._waiting_reads.append((op, sender, req, self._now))
                else:
                    self._reply(sender, req, self._read(op))
            elif not leading:
                self._reply(sender, req, self._redirection())
            elif (wrong := self._refused_early(op)) is not None:
                self._reply(sender, req, wrong)
            elif isinstance(op, (ReadCheck, LoggedRead)):
                if self._lease_serves(op):
                    self._reply(sender, req, self._read_from_lease(op))
                else:
                    self._checks.append((op, _Waiter(sender, req, _unchanged_result)))
            elif isinstance(op, InstallSlot) and (done := machine.install_progress(op.move, op.chunk)) is not None:
                # A chunk re-sent after its answer was lost: answered from state, not logged again.
                self._reply(sender, req, done)
            elif isinstance(op, TxnStatus):
                answer = txn_status_answer(op, machine)
                if isinstance(answer, Decide):
                    self._commands.append((answer, _Waiter(sender, req, status_of_decision)))
                else:
                    self._reply(sender, req, answer)
            elif isinstance(op, Decide) and (settled := machine.status(op.txid)) in (TXN_COMMITTED, TXN_ABORTED):
                # Already decided here (the clerk and the primary's push both
                # deliver a commit): an outcome is final, answer from applied
                # state without spending a log entry.
                self._reply(sender, req, DecideResult(txid=op.txid, status=settled))
            else:
                self._commands.append((op, _Waiter(sender, req, _unchanged_result)))

    def _read(self, op: ReadKeys) -> ClientResult:
        machine = self._machine
        return machine.refusal("", op.keys, writing=False) or ReadKeysResult(
            values=tuple(machine.read(key) for key in op.keys))

    def _lease_serves(self, check: ReadCheck | LoggedRead) -> bool:
        """Whether this leader may answer `check` from applied state now (the module docstring)."""
        if not self.config.lease_reads or self._monotonic is None or self._applied < self._term_start:
            return False
        basis = self._node.lease_basis
        if basis is None or self._monotonic >= basis + self.config.lease_seconds:
            return False
        keys = checked_keys(check)
        if sum(map(len, keys)) > LEASE_READ_KEY_BYTES:
            return False
        for index in range(self._applied + 1, self._node.last_index + 1):
            written = self._unapplied_writes.get(index)
            if written is None or not written.isdisjoint(keys):
                return False
        return True

    def _read_from_lease(self, check: ReadCheck | LoggedRead) -> ClientResult:
        verdict = self._machine.read_verdict(check)
        if isinstance(verdict, WrongEpoch):
            return verdict
        if verdict.ok:
            stamp, stamps = (check.ts, check.txid), self._lease_stamps
            for key in checked_keys(check):
                if key not in stamps or stamp > stamps[key]:
                    stamps[key] = stamp
            self.metrics.count("raftline_lease_reads_total")
        return replace(verdict, from_lease=True)

    def _answer_waiting_reads(self) -> None:
        """The waiting ReadKeys whose keys no prepared transaction writes any
        more, or that waited `read_wait_ticks`, get the committed values; all
        of them get Redirect once this replica may no longer serve reads."""
        serving = self._leadership is not None or self.config.read_from_followers
        still = []
        for waiting in self._waiting_reads:
            op, token, req, since = waiting
            if not serving:
                self._reply(token, req, self._redirection())
            elif self._now - since >= self.config.read_wait_ticks or not self._machine.writes_prepared(op.keys):
                self._reply(token, req, self._read(op))
            else:
                still.append(waiting)
        self._waiting_reads = still

    def _refused_early(self, op: Any) -> WrongEpoch | None:
        """WrongEpoch for work on slots the applied state does not serve, when
        the log would refuse it too: a read check, or a transaction unknown
        here (one prepared or recorded here is left to the log, which answers
        duplicates). A slot that starts being served later only costs the
        client a retry."""
        machine = self._machine
        match op:
            case ReadCheck() | LoggedRead():
                return machine.refusal(op.txid, checked_keys(op), writing=True)
            case Prepare() | CommitOnePhase() if machine.status(op.txid) == TXN_UNKNOWN:
                return machine.refusal(op.txid, (*op.reads, *op.writes, *op.deletes), writing=True)
        return None

    def _handle_batch_reply(self, reply: ClientBatchReply) -> None:
        """Answers from other clusters' leaders to this leader's TxnStatus questions,
        Decide pushes and InstallSlot chunks."""
        leadership = self._leadership
        if leadership is None:
            return
        for response in reply.responses:
            if isinstance(response.result, InstallSlotResult):
                self._carry_out(leadership.shipping.on_chunk_answer(reply.cluster, response.result, self._now))
            else:
                self._carry_out(leadership.recovery.on_answer(reply.cluster, response.result))

    def _redirection(self) -> Redirect:
        node = self._node
        return Redirect(leader=node.transferee or node.leader, term=node.term)

    def _redirect(self, waiter: _Waiter) -> None:
        self._reply(waiter.token, waiter.req, self._redirection())

    def _reply(self, token: Hashable, req: int, result: ClientResult) -> None:
        self._replies.setdefault(token, []).append(ClientReply(req=req, result=result))

    # -- reconfiguration ----------------------------------------------------------

    def _handle_move_slot(self, message: MoveSlot) -> None:
        """Silent off the leader: the coordinator asks again."""
        if self._leadership is not None:
            self._carry_out(self._leadership.shipping.on_move_slot(message, applied=self._applied, now=self._now))

    def _handle_change_membership(self, message: ChangeMembership) -> None:
        """Propose the change (unless the op is "" or it cannot be made now) and report."""
        if self._leadership is None:
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

    # -- proposing ----------------------------------------------------------------

    def _carry_out(self, actions: list[LeaderAction]) -> None:
        """Do what the leader's collaborators asked, in their order."""
        for action in actions:
            match action:
                case Propose(command=command):
                    self._own_proposals[command] = None
                case Ask(cluster=cluster, op=op):
                    self._ask(cluster, op)
                case Report(progress=progress):
                    self._outbox.append((ToCoordinator(), progress))
                case Note(line=line):
                    self._events.append(line)
                case DecisionConflict():
                    self._decision_conflicts += 1

    def _flush_proposals(self) -> bool:
        """Propose what this input gathered; False when nothing can be proposed now."""
        commands, checks, own = self._commands, self._checks, self._own_proposals
        self._commands, self._checks, self._own_proposals = [], [], {}
        if self._leadership is None or self._node.transferee is not None:
            # Not leading, or handing leadership over (the node takes no
            # proposals then): clients retry at the hint; the leader's own
            # proposals come again from its timers and the coordinator's polls.
            # A read floor waits for the transfer to end or fail.
            for _, waiter in (*commands, *checks):
                self._redirect(waiter)
            return False
        # The floor and the lease reads' stamps go first: every write proposed
        # after them must be validated against them.
        entries: list[tuple[Any, tuple[_Waiter, ...]]] = [(self._read_floor, ())] if self._read_floor else []
        self._read_floor = None
        entries += [(command, ()) for command in self._lease_stamp_entries()]
        entries += [(command, (waiter,)) for command, waiter in commands]
        entries += self._read_check_entries(checks)
        entries += [(command, ()) for command in own]
        limit = self.config.raft.max_batch_bytes
        for command, waiters in entries:
            data = codec.encode(command)
            if len(data) > limit:
                refusal = _too_large(command, len(data), limit)
                for waiter in waiters:
                    self._reply(waiter.token, waiter.req, waiter.answer(refusal))
                continue
            index = self._node.propose(data)
            if isinstance(command, _BENIGN_FOR_READS):
                self._unapplied_writes[index] = frozenset()
            elif isinstance(command, (Prepare, CommitOnePhase)):
                self._unapplied_writes[index] = frozenset((*command.writes, *command.deletes))
            if waiters:
                self._waiting[index] = _Proposal(term=self._node.term, waiters=waiters)
        return True

    def _lease_stamp_entries(self) -> list[RecordLeaseReads]:
        """The lease reads' stamps not yet logged, in entries that fit `max_batch_bytes`
        (each read names at most LEASE_READ_KEY_BYTES of keys)."""
        budget = self.config.raft.max_batch_bytes // 2
        entries, stamps, size = [], [], 0
        # Sorted: the entry must not depend on the order reads named their keys in.
        for key, stamp in sorted(self._lease_stamps.items()):
            cost = len(key) + len(stamp[1]) + 64
            if stamps and size + cost > budget:
                entries.append(RecordLeaseReads(stamps=tuple(stamps)))
                stamps, size = [], 0
            stamps.append((key, stamp))
            size += cost
        if stamps:
            entries.append(RecordLeaseReads(stamps=tuple(stamps)))
        self._lease_stamps.clear()
        return entries

    def _read_check_entries(
        self, checks: list[tuple[ReadCheck | LoggedRead, _Waiter]]
    ) -> list[tuple[ValidateReads, tuple[_Waiter, ...]]]:
        """All read checks and logged reads in one ValidateReads entry, halved until each entry
        fits `max_batch_bytes` (a single oversized check is refused at flush)."""
        if not checks:
            return []
        command = ValidateReads(checks=tuple(check for check, _ in checks))
        if len(checks) > 1 and len(codec.encode(command)) > self.config.raft.max_batch_bytes:
            half = len(checks) // 2
            return self._read_check_entries(checks[:half]) + self._read_check_entries(checks[half:])
        waiters = tuple(
            _Waiter(waiter.token, waiter.req, partial(_check_result_at, position))
            for position, (_, waiter) in enumerate(checks)
        )
        return [(command, waiters)]

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
