"""The replicated state machine of one cluster: transactions applied in log order.

Rules and invariants (docs/DESIGN.md sections 3 and 4):
- `apply` is deterministic: it reads no clock and no randomness, and its
  result depends only on the state and the command's value. Every replica
  applying the same log reaches the same state and returns the same results;
  timeouts, trims and threshold changes arrive only as log entries.
- Validation happens at apply time (validator.py), after deduplication by txid.
- Outcomes are recorded by txid, so a repeated Prepare or Decide gets the same
  answer; a no vote is recorded as an abort, and a Prepare arriving after
  T's abort is refused.
- A decision for T not on the history line: a record answers it; with no
  record and a stamp at or below the threshold it is settled and trimmed
  (answer it, install nothing); an unknown abort is recorded; an unknown
  commit above the threshold is an invariant violation: it is refused, never
  acknowledged, installs nothing, and is kept in `violations` for the shell
  to report. The replica goes on running: every replica would fail the same
  entry the same way, so crashing would only loop. (An install that the
  validator should have refused is this code's own bug, not a bad input:
  kv.TableInvariantBroken crashes on purpose.)
- Writes are installed only from the history line (or a one-phase commit),
  never from a decision message.
- A commit record this cluster is primary for is kept until every
  participant acknowledged it; TrimRecords drops other records the shell
  names and raises the threshold to the largest stamp dropped.
- Slots (docs/DESIGN.md section 6; `slot_count` 0 = every key served, no moves):
  a key's slot is `slot_of(key, slot_count)`. A slot is owned (from the
  founding slots or an install), frozen (still owned, moving out), incoming
  (chunks arriving) or not served. Prepare, CommitOnePhase and each read
  check touching a slot that is not owned, or frozen, get WrongEpoch before
  any validation; a refused Prepare or CommitOnePhase is recorded as an abort
  that remembers the slots, so a duplicate gets WrongEpoch again. Reads are
  served on owned slots, frozen ones included. Decisions never look at slots:
  transactions prepared before a freeze drain normally.
- FreezeSlot, InstallSlot and DropSlot are idempotent by move id; a finished
  move is remembered forever (moves are rare) so a late repeat changes
  nothing. A frozen slot's keys change only through its draining decisions,
  so once drained its chunks, cut by `slot_chunks`, are the same on every
  replica and every leader. An install copies key states exactly and raises
  the threshold to the shipped one; the slot is owned once every chunk of
  the move is applied. A drop forgets the slot's keys, tombstones included.
- `snapshot()` carries everything: table, history line, records with their
  acknowledgement state, threshold, violations, and the slot state.
- Metrics: transactions prepared, committed and aborted (by the rule that
  refused them, "wrong_epoch", or "decision") and slot moves installed are
  counted where the state changes, so a repeated command counts nothing.
  Every replica counts what it applies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable

from actors import codec
from actors.keyspace import slot_of
from actors.messages import (
    MOVE_DROPPED,
    MOVE_FROZEN,
    MOVE_NOT_OWNED,
    TXN_ABORTED,
    TXN_COMMITTED,
    TXN_PREPARED,
    TXN_REFUSED,
    TXN_UNKNOWN,
    ZERO_STAMP,
    AckDecision,
    AckDecisionResult,
    CommitOnePhase,
    CommitOnePhaseResult,
    Decide,
    DecideResult,
    DropSlot,
    FreezeSlot,
    InstallSlot,
    InstallSlotResult,
    LoggedRead,
    LoggedReadResult,
    Prepare,
    PrepareResult,
    ReadCheck,
    ReadCheckResult,
    ReadFloor,
    ReadResult,
    RecordLeaseReads,
    SlotMoveResult,
    Stamp,
    TrimRecords,
    TrimRecordsResult,
    ValidateReads,
    ValidateReadsResult,
    WrongEpoch,
)
from actors.metrics import Metrics
from actors.store.kv import KeyState, VersionedTable
from actors.store.validator import (
    HistoryLine,
    OutcomeRecord,
    PreparedTxn,
    prior_vote,
    rule_of,
    validate,
    validate_reads,
)

MOVE_INSTALLED = "installed"
"""A finished move's stage at its destination (MOVE_DROPPED at its source)."""

CHUNK_RESERVE = 600
"""Bytes of a chunk's limit left for the fields that may differ between the
leaders that cut it (the threshold, the chunk numbers), so the cut itself
depends on the slot's keys alone."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Freeze:
    """A slot of this cluster frozen for a move.

    Fields:
        move: the move's id.
        destination: the cluster it moves to.
    """

    move: str
    destination: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Incoming:
    """A move arriving here: chunks applied so far.

    Fields:
        slot: the slot.
        chunks: how many chunks the move has.
        applied: chunk numbers applied, ascending.
    """

    slot: int
    chunks: int
    applied: tuple[int, ...] = ()


def checked_keys(check: ReadCheck | LoggedRead) -> tuple[str, ...]:
    """The keys a read check or a logged read reads."""
    return check.keys if type(check) is LoggedRead else tuple(check.reads)


class Machine:
    """The state machine of cluster `cluster`; see the module rules."""

    def __init__(self, cluster: str, slot_count: int = 0, founding_slots: tuple[int, ...] = (), *,
                 metrics: Metrics | None = None) -> None:
        self.cluster = cluster
        self._metrics = metrics if metrics is not None else Metrics()
        self._slot_count = slot_count
        self._table = VersionedTable(slot_count)
        self._line = HistoryLine()
        self._records: dict[str, OutcomeRecord] = {}
        # Txids of the commit records still awaiting acknowledgements, in record
        # order, so the leader's shell and status never scan every record.
        self._awaiting_acks: dict[str, None] = {}
        self._threshold: Stamp = ZERO_STAMP
        self._violations: list[str] = []
        self._owned: set[int] = set(founding_slots)
        self._frozen: dict[int, Freeze] = {}
        self._incoming: dict[str, Incoming] = {}
        self._finished: dict[str, str] = {}  # move -> MOVE_DROPPED or MOVE_INSTALLED

    # -- applying log entries ------------------------------------------------

    def apply(self, command: Any) -> Any:
        """Apply one decoded log command; returns its result message."""
        apply_one = _APPLY.get(type(command))
        if apply_one is None:
            raise TypeError(f"not a transaction command: {type(command).__name__}")
        return apply_one(self, command)

    def handle_prepare(self, command: Prepare) -> PrepareResult | WrongEpoch:
        refused = self._refused_before(command.txid)
        if refused is not None:
            return refused
        earlier = prior_vote(command.txid, self._line, self._records)
        if earlier is not None:
            return earlier
        txn = PreparedTxn(
            txid=command.txid,
            ts=command.ts,
            reads=command.reads,
            writes=command.writes,
            deletes=command.deletes,
            primary=command.primary,
            participants=command.participants,
        )
        wrong = self._refuse_moved(txn)
        if wrong is not None:
            return wrong
        reason = validate(txn.stamp, txn.reads, txn.written_keys, self._table, self._line, self._threshold)
        if reason is not None:
            self._record(txn, committed=False, reason=reason)
            self._metrics.count("raftline_transactions_aborted_total", rule=rule_of(reason))
            return PrepareResult(txid=txn.txid, vote=False, reason=reason)
        self._line.add(txn)
        self._metrics.count("raftline_transactions_prepared_total")
        return PrepareResult(txid=txn.txid, vote=True)

    def handle_decide(self, command: Decide) -> DecideResult:
        txid = command.txid
        txn = self._line.get(txid)
        if txn is not None:
            self._line.remove(txid)
            if command.commit:
                self._install(txn)
                self._record(txn, committed=True)
                self._metrics.count("raftline_transactions_committed_total")
                return DecideResult(txid=txid, status=TXN_COMMITTED)
            self._record(txn, committed=False, reason="aborted by decision")
            self._metrics.count("raftline_transactions_aborted_total", rule="decision")
            return DecideResult(txid=txid, status=TXN_ABORTED)

        record = self._records.get(txid)
        if record is not None:
            if record.committed:
                reason = "" if command.commit else "already committed: the abort came too late"
                return DecideResult(txid=txid, status=TXN_COMMITTED, reason=reason)
            reason = f"already aborted here: {record.reason}" if command.commit else ""
            return DecideResult(txid=txid, status=TXN_ABORTED, reason=reason)

        stamp = (command.ts, txid)
        if stamp <= self._threshold:
            # Settled and trimmed: whoever decides it now repeats the outcome
            # it already had; there is nothing left to install.
            status = TXN_COMMITTED if command.commit else TXN_ABORTED
            return DecideResult(txid=txid, status=status, reason="settled and trimmed")
        if not command.commit:
            # Recording it makes a Prepare that arrives later find the abort.
            self._records[txid] = OutcomeRecord(
                txid=txid, ts=command.ts, committed=False, reason="aborted by decision before its prepare"
            )
            self._metrics.count("raftline_transactions_aborted_total", rule="decision")
            return DecideResult(txid=txid, status=TXN_ABORTED)
        reason = f"commit of {txid} at {stamp}, which was never prepared here"
        self._violations.append(reason)
        return DecideResult(txid=txid, status=TXN_REFUSED, reason=reason)

    def handle_commit_one_phase(self, command: CommitOnePhase) -> CommitOnePhaseResult | WrongEpoch:
        txid = command.txid
        if txid in self._line:
            reason = f"one-phase commit of {txid}, which is prepared here by two-phase commit"
            self._violations.append(reason)
            return CommitOnePhaseResult(txid=txid, committed=False, reason=reason)
        refused = self._refused_before(txid)
        if refused is not None:
            return refused
        record = self._records.get(txid)
        if record is not None:
            return CommitOnePhaseResult(txid=txid, committed=record.committed, reason=record.reason)
        txn = PreparedTxn(
            txid=txid,
            ts=command.ts,
            reads=command.reads,
            writes=command.writes,
            deletes=command.deletes,
            primary=self.cluster,
            participants=(self.cluster,),
        )
        wrong = self._refuse_moved(txn)
        if wrong is not None:
            return wrong
        reason = validate(txn.stamp, txn.reads, txn.written_keys, self._table, self._line, self._threshold)
        if reason is not None:
            self._record(txn, committed=False, reason=reason)
            self._metrics.count("raftline_transactions_aborted_total", rule=rule_of(reason))
            return CommitOnePhaseResult(txid=txid, committed=False, reason=reason)
        self._install(txn)
        self._record(txn, committed=True)
        self._metrics.count("raftline_transactions_committed_total")
        return CommitOnePhaseResult(txid=txid, committed=True)

    def handle_validate_reads(self, command: ValidateReads) -> ValidateReadsResult:
        results = []
        for check in command.checks:
            verdict = self.read_verdict(check)
            if not isinstance(verdict, WrongEpoch) and verdict.ok:
                stamp = (check.ts, check.txid)
                for key in checked_keys(check):
                    self._table.raise_rts(key, stamp)
            results.append(verdict)
        return ValidateReadsResult(results=tuple(results))

    def read_verdict(self, check: ReadCheck | LoggedRead) -> ReadCheckResult | LoggedReadResult | WrongEpoch:
        """The answer to a read check or a logged read at the applied state,
        raising no read stamp: the log raises them (`handle_validate_reads`),
        a leader answering from its lease records them itself. A logged read
        reads the current versions and validates them at its stamp, as a
        ReadCheck of exactly those versions would be: only rules 1, 2 and the
        timestamp half of 3 can refuse it."""
        wrong = self.refusal(check.txid, checked_keys(check), writing=True)
        if wrong is not None:
            return wrong
        stamp = (check.ts, check.txid)
        if type(check) is LoggedRead:
            values = tuple(self.read(key) for key in check.keys)
            reason = validate_reads(stamp, {value.key: value.version for value in values}, self._table, self._line,
                                    self._threshold)
            if reason is not None:
                return LoggedReadResult(txid=check.txid, ok=False, reason=reason)
            return LoggedReadResult(txid=check.txid, ok=True, values=values)
        reason = validate_reads(stamp, check.reads, self._table, self._line, self._threshold)
        return ReadCheckResult(txid=check.txid, ok=reason is None, reason=reason or "")

    def handle_record_lease_reads(self, command: RecordLeaseReads) -> None:
        """Raise the read stamps a leader's lease reads raised (no result: nobody waits for it)."""
        for key, stamp in command.stamps:
            self._table.raise_rts(key, stamp)

    def handle_read_floor(self, command: ReadFloor) -> None:
        """Raise the threshold to just below `command.ts`: rule 1 then refuses every
        stamp under it (no result: nobody waits for it)."""
        self._threshold = max(self._threshold, (command.ts, ""))

    def handle_ack_decision(self, command: AckDecision) -> AckDecisionResult:
        record = self._records.get(command.txid)
        if record is None or not self._awaits_acks(record):
            return AckDecisionResult(txid=command.txid)
        if command.participant in record.missing:
            record = dataclasses.replace(record, acked=(*record.acked, command.participant))
            self._records[command.txid] = record
            if not record.missing:
                del self._awaiting_acks[command.txid]
        return AckDecisionResult(txid=command.txid, missing=record.missing)

    def handle_trim_records(self, command: TrimRecords) -> TrimRecordsResult:
        trimmed, kept = [], []
        for txid in command.txids:
            record = self._records.get(txid)
            if record is None:
                continue
            if self._awaits_acks(record):
                kept.append(txid)
                continue
            del self._records[txid]
            trimmed.append(txid)
            self._threshold = max(self._threshold, record.stamp)
        return TrimRecordsResult(trimmed=tuple(trimmed), kept=tuple(kept), threshold=self._threshold)

    def handle_freeze_slot(self, command: FreezeSlot) -> SlotMoveResult:
        move, slot = command.move, command.slot
        finished = self._finished.get(move)
        if finished is not None:
            # Dropped here, or installed here: then this cluster is the move's
            # destination and must not freeze the slot it just received.
            return SlotMoveResult(move=move, stage=MOVE_DROPPED if finished == MOVE_DROPPED else MOVE_NOT_OWNED)
        frozen = self._frozen.get(slot)
        if frozen is not None:
            # Frozen by another move: a stale or misrouted request, not this move's.
            return SlotMoveResult(move=move, stage=MOVE_FROZEN if frozen.move == move else MOVE_NOT_OWNED)
        if slot not in self._owned:
            return SlotMoveResult(move=move, stage=MOVE_NOT_OWNED)
        self._frozen[slot] = Freeze(move=move, destination=command.destination)
        return SlotMoveResult(move=move, stage=MOVE_FROZEN)

    def handle_install_slot(self, command: InstallSlot) -> InstallSlotResult:
        move, slot, chunk = command.move, command.slot, command.chunk
        answered = self.install_progress(move, chunk)
        if answered is not None:
            return answered
        incoming = self._incoming.get(move)
        if incoming is None:
            clash = self._install_clash(command)
            if clash is not None:
                self._violations.append(clash)
                return InstallSlotResult(move=move, chunk=chunk, complete=False)
            incoming = Incoming(slot=slot, chunks=command.chunks)
        for key, value, wts, rts, counter, tombstone in command.keys:
            self._table.put(key, KeyState(value=value, wts=wts, rts=rts, counter=counter, tombstone=tombstone))
        self._threshold = max(self._threshold, command.threshold)
        incoming = dataclasses.replace(incoming, applied=tuple(sorted((*incoming.applied, chunk))))
        if len(incoming.applied) < incoming.chunks:
            self._incoming[move] = incoming
            return InstallSlotResult(move=move, chunk=chunk, complete=False)
        self._incoming.pop(move, None)
        self._owned.add(slot)
        self._finished[move] = MOVE_INSTALLED
        self._metrics.count("raftline_slot_moves_total")
        return InstallSlotResult(move=move, chunk=chunk, complete=True)

    def _install_clash(self, command: InstallSlot) -> str | None:
        """Why the first chunk of a move cannot start installing here (a bug upstream), or None."""
        slot = command.slot
        if not 0 <= slot < self._slot_count:
            return f"install of slot {slot} of move {command.move}, but this cluster has {self._slot_count} slots"
        if not 0 <= command.chunk < command.chunks:
            return f"install of chunk {command.chunk} of {command.chunks} of move {command.move}"
        if slot in self._owned:
            return f"install of slot {slot} by move {command.move}, but the slot is already owned here"
        if any(incoming.slot == slot for incoming in self._incoming.values()):
            return f"install of slot {slot} by move {command.move}, but another move is installing it"
        return None

    def handle_drop_slot(self, command: DropSlot) -> SlotMoveResult:
        move, slot = command.move, command.slot
        if self._finished.get(move) == MOVE_DROPPED:
            return SlotMoveResult(move=move, stage=MOVE_DROPPED)
        frozen = self._frozen.get(slot)
        if frozen is None or frozen.move != move:
            return SlotMoveResult(move=move, stage=MOVE_NOT_OWNED)
        del self._frozen[slot]
        self._owned.discard(slot)
        self._table.drop_slot(slot)
        self._finished[move] = MOVE_DROPPED
        return SlotMoveResult(move=move, stage=MOVE_DROPPED)

    def _refused_before(self, txid: str) -> WrongEpoch | None:
        record = self._records.get(txid)
        if record is None or not record.moved_slots:
            return None
        return WrongEpoch(txid=txid, slots=record.moved_slots, reason=record.reason)

    def _refuse_moved(self, txn: PreparedTxn) -> WrongEpoch | None:
        """WrongEpoch for a transaction touching slots not served here, recorded as its abort."""
        wrong = self.refusal(txn.txid, (*txn.reads, *txn.written_keys), writing=True)
        if wrong is not None:
            self._record(txn, committed=False, reason=wrong.reason, moved_slots=wrong.slots)
            self._metrics.count("raftline_transactions_aborted_total", rule="wrong_epoch")
        return wrong

    def _install(self, txn: PreparedTxn) -> None:
        for key, value in txn.writes.items():
            self._table.install(key, value, txn.stamp)
        for key in txn.deletes:
            self._table.install_tombstone(key, txn.stamp)
        for key in txn.reads:
            self._table.raise_rts(key, txn.stamp)

    def _record(
        self, txn: PreparedTxn, *, committed: bool, reason: str = "", moved_slots: tuple[int, ...] = ()
    ) -> None:
        # The primary counts itself as acknowledged: it applied the decision.
        acked = (self.cluster,) if committed and txn.primary == self.cluster else ()
        record = OutcomeRecord(
            txid=txn.txid,
            ts=txn.ts,
            committed=committed,
            reason=reason,
            primary=txn.primary,
            participants=txn.participants,
            acked=acked,
            moved_slots=moved_slots,
        )
        self._records[txn.txid] = record
        if self._awaits_acks(record):
            self._awaiting_acks[txn.txid] = None

    def _awaits_acks(self, record: OutcomeRecord) -> bool:
        return record.committed and record.primary == self.cluster and bool(record.missing)

    # -- queries for the shell (never change state) ---------------------------

    @property
    def threshold(self) -> Stamp:
        """Rule 1's bound: the largest stamp whose outcome record was trimmed,
        raised further by a new leader's ReadFloor and by a slot's install."""
        return self._threshold

    @property
    def violations(self) -> tuple[str, ...]:
        """Invariant violations met so far, oldest first (a bug upstream if not empty)."""
        return tuple(self._violations)

    def read(self, key: str) -> ReadResult:
        """`key` in the committed state: a prepared write is invisible until its commit."""
        state = self._table.get(key)
        return ReadResult(
            key=key,
            value=state.value if state.exists else None,
            version=state.wts,
            counter=state.counter,
            exists=state.exists,
        )

    def writes_prepared(self, keys: Iterable[str]) -> bool:
        """Whether a prepared transaction writes one of `keys`: a read of them
        now would show what that transaction's decision may replace."""
        return any(next(self._line.writers_of(key), None) is not None for key in keys)

    def status(self, txid: str) -> str:
        """TXN_PREPARED, TXN_COMMITTED, TXN_ABORTED or TXN_UNKNOWN (no record: compare
        the stamp with `threshold` to tell a trimmed transaction from a new one)."""
        if txid in self._line:
            return TXN_PREPARED
        record = self._records.get(txid)
        if record is None:
            return TXN_UNKNOWN
        return TXN_COMMITTED if record.committed else TXN_ABORTED

    def prepared(self) -> tuple[PreparedTxn, ...]:
        """The history line, oldest first, so the shell can time transactions out."""
        return tuple(self._line)

    @property
    def prepared_count(self) -> int:
        """How many transactions are on the history line."""
        return len(self._line)

    @property
    def record_count(self) -> int:
        """How many outcome records are kept."""
        return len(self._records)

    def records(self) -> tuple[OutcomeRecord, ...]:
        """Every outcome record, oldest first, so the shell can pick what to trim."""
        return tuple(self._records.values())

    def unacknowledged(self) -> tuple[OutcomeRecord, ...]:
        """Commit records this cluster is primary for whose `missing` participants
        have not acknowledged: the decisions the leader's shell must push."""
        return tuple(self._records[txid] for txid in self._awaiting_acks)

    @property
    def unacknowledged_count(self) -> int:
        """How many commit records await acknowledgements."""
        return len(self._awaiting_acks)

    # -- slot queries ------------------------------------------------------------

    @property
    def slot_count(self) -> int:
        return self._slot_count

    def owned_slots(self) -> tuple[int, ...]:
        """Slots this cluster owns, frozen ones included, ascending."""
        return tuple(sorted(self._owned))

    def frozen_slots(self) -> dict[int, Freeze]:
        """Slot -> the move it is frozen for, by slot."""
        return dict(sorted(self._frozen.items()))

    def incoming_moves(self) -> dict[str, Incoming]:
        """Move -> the chunks applied so far, for moves arriving here, by move id."""
        return dict(sorted(self._incoming.items()))

    def move_stage(self, move: str) -> str | None:
        """MOVE_DROPPED or MOVE_INSTALLED for a move finished here, MOVE_FROZEN
        while it holds a slot of this cluster frozen, else None."""
        if move in self._finished:
            return self._finished[move]
        if any(frozen.move == move for frozen in self._frozen.values()):
            return MOVE_FROZEN
        return None

    def unserved(self, keys: Iterable[str], *, writing: bool) -> tuple[int, ...]:
        """The slots among `keys`' that this cluster does not serve now, ascending.
        Reads are served on a frozen slot; writes and read checks are not."""
        if not self._slot_count:
            return ()
        slots = {slot_of(key, self._slot_count) for key in keys}
        return tuple(sorted(slot for slot in slots if slot not in self._owned or (writing and slot in self._frozen)))

    def refusal(self, txid: str, keys: Iterable[str], *, writing: bool) -> WrongEpoch | None:
        """The WrongEpoch answer for an operation on `keys`, or None when they are all served."""
        slots = self.unserved(keys, writing=writing)
        if not slots:
            return None
        return WrongEpoch(txid=txid, slots=slots, reason="; ".join(self._why_not_served(slot) for slot in slots))

    def _why_not_served(self, slot: int) -> str:
        if slot in self._frozen:
            return f"slot {slot} is moving to {self._frozen[slot].destination}"
        if any(incoming.slot == slot for incoming in self._incoming.values()):
            return f"slot {slot} is not installed at {self.cluster} yet"
        return f"slot {slot} is not served by {self.cluster}"

    def key_count(self) -> int:
        """Keys in the table, tombstones and read-only keys included."""
        return len(self._table)

    def slot_keys(self, slot: int) -> tuple[str, ...]:
        """The keys of `slot` held here (tombstones and read-only keys included), sorted."""
        return tuple(self._table.keys_in(slot))

    def prepared_on(self, slot: int) -> tuple[str, ...]:
        """Txids of prepared transactions holding keys of `slot`: a frozen slot
        ships only once none is left."""
        if not self._slot_count:
            return ()
        return tuple(
            txn.txid
            for txn in self._line
            if any(slot_of(key, self._slot_count) == slot for key in (*txn.reads, *txn.written_keys))
        )

    def slot_chunks(self, slot: int, max_bytes: int) -> tuple[InstallSlot, ...]:
        """The InstallSlot chunks of frozen `slot`, each encoding under `max_bytes`
        (a key too large for one chunk alone still gets a chunk of its own).

        The cut depends only on the slot's keys, which are fixed once the slot
        is frozen and drained, so every leader cuts the same chunks; an empty
        slot is one empty chunk. Raises ValueError when the slot is not frozen."""
        frozen = self._frozen.get(slot)
        if frozen is None:
            raise ValueError(f"slot {slot} is not frozen at {self.cluster}")

        def chunk(number: int, count: int, rows: tuple, threshold: Stamp) -> InstallSlot:
            return InstallSlot(
                move=frozen.move,
                slot=slot,
                source=self.cluster,
                chunk=number,
                chunks=count,
                keys=rows,
                threshold=threshold,
            )

        budget = max_bytes - len(codec.encode(chunk(0, 0, (), ZERO_STAMP))) - CHUNK_RESERVE
        groups: list[list[tuple]] = [[]]
        size = 0
        for key in self._table.keys_in(slot):
            state = self._table.get(key)
            row = (key, state.value, state.wts, state.rts, state.counter, state.tombstone)
            row_size = len(codec.encode(row)) + 1  # and its comma
            if groups[-1] and size + row_size > budget:
                groups.append([])
                size = 0
            groups[-1].append(row)
            size += row_size
        return tuple(chunk(number, len(groups), tuple(rows), self._threshold) for number, rows in enumerate(groups))

    def install_progress(self, move: str, chunk: int) -> InstallSlotResult | None:
        """The answer for chunk `chunk` of `move` if it is already applied here, else None."""
        if self._finished.get(move) == MOVE_INSTALLED:
            return InstallSlotResult(move=move, chunk=chunk, complete=True)
        incoming = self._incoming.get(move)
        if incoming is not None and chunk in incoming.applied:
            return InstallSlotResult(move=move, chunk=chunk, complete=False)
        return None

    # -- snapshots ------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything, as deterministic bytes: equal machines give equal snapshots."""
        return codec.encode(
            {
                "cluster": self.cluster,
                "threshold": self._threshold,
                "table": self._table.dump(),
                "prepared": [dataclasses.asdict(txn) for txn in self._line],
                "records": [dataclasses.asdict(record) for record in self._records.values()],
                "violations": list(self._violations),
                "slots": {
                    "count": self._slot_count,
                    "owned": sorted(self._owned),
                    "frozen": [
                        [slot, frozen.move, frozen.destination] for slot, frozen in sorted(self._frozen.items())
                    ],
                    "incoming": [
                        [move, incoming.slot, incoming.chunks, list(incoming.applied)]
                        for move, incoming in sorted(self._incoming.items())
                    ],
                    "finished": [[move, stage] for move, stage in sorted(self._finished.items())],
                },
            }
        )

    @classmethod
    def restore(cls, cluster: str, data: bytes, *, metrics: Metrics | None = None) -> Machine:
        """The machine `snapshot()` described, counting into `metrics` from now
        on. Raises ValueError for another cluster's snapshot."""
        state = codec.decode(data)
        if state["cluster"] != cluster:
            raise ValueError(f"snapshot of cluster {state['cluster']!r} cannot restore {cluster!r}")
        # A snapshot from before slots could move: the machine serves every key.
        slots = state.get("slots", {"count": 0, "owned": [], "frozen": [], "incoming": [], "finished": []})
        machine = cls(cluster, slots["count"], tuple(slots["owned"]), metrics=metrics)
        machine._threshold = state["threshold"]
        machine._table = VersionedTable.load(state["table"], slots["count"])
        for fields in state["prepared"]:
            machine._line.add(PreparedTxn(**fields))
        for fields in state["records"]:
            record = OutcomeRecord(**fields)
            machine._records[record.txid] = record
            if machine._awaits_acks(record):
                machine._awaiting_acks[record.txid] = None
        machine._violations = list(state["violations"])
        machine._frozen = {
            slot: Freeze(move=move, destination=destination) for slot, move, destination in slots["frozen"]
        }
        machine._incoming = {
            move: Incoming(slot=slot, chunks=chunks, applied=tuple(applied))
            for move, slot, chunks, applied in slots["incoming"]
        }
        machine._finished = dict(slots["finished"])
        return machine


_APPLY = {
    Prepare: Machine.handle_prepare,
    Decide: Machine.handle_decide,
    CommitOnePhase: Machine.handle_commit_one_phase,
    ValidateReads: Machine.handle_validate_reads,
    AckDecision: Machine.handle_ack_decision,
    TrimRecords: Machine.handle_trim_records,
    RecordLeaseReads: Machine.handle_record_lease_reads,
    ReadFloor: Machine.handle_read_floor,
    FreezeSlot: Machine.handle_freeze_slot,
    InstallSlot: Machine.handle_install_slot,
    DropSlot: Machine.handle_drop_slot,
}
"""How `Machine.apply` carries out each of `TXN_COMMANDS` (one entry each)."""
