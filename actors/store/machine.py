"""The replicated state machine of one cluster: transactions applied in log order.

Rules and invariants (DESIGN.md sections 3 and 4):
- `apply` is deterministic: it reads no clock and no randomness, and its
  result depends only on the state and the command's value. Every replica
  applying the same log reaches the same state and returns the same results;
  timeouts, trims and threshold changes arrive only as log entries.
- Validation happens at apply time (history.py), after deduplication by txid.
- Outcomes are recorded by txid, so a repeated Prepare or Decide gets the same
  answer; a no vote is recorded as an abort, and a Prepare arriving after
  T's abort is refused.
- A decision for T not on the history line: a record answers it; with no
  record and a stamp at or below the threshold it is settled and trimmed
  (answer it, install nothing); an unknown abort is recorded; an unknown
  commit above the threshold is an invariant violation: it is refused, never
  acknowledged, installs nothing, and is kept in `violations` for the shell
  to report. The replica goes on running: every replica would fail the same
  entry the same way, so crashing would only loop.
- Writes are installed only from the history line (or a one-phase commit),
  never from a decision message.
- A commit record this cluster is primary for is kept until every
  participant acknowledged it; TrimRecords drops other records the shell
  names and raises the threshold to the largest stamp dropped.
- `snapshot()` carries everything: table, history line, records with their
  acknowledgement state, threshold, violations.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from actors import codec
from actors.messages import (
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
    Prepare,
    PrepareResult,
    ReadCheckResult,
    ReadResult,
    Stamp,
    TrimRecords,
    TrimRecordsResult,
    ValidateReads,
    ValidateReadsResult,
)
from actors.store.history import (
    HistoryLine,
    OutcomeRecord,
    PreparedTxn,
    prior_vote,
    validate,
    validate_reads,
)
from actors.store.kv import VersionedTable


class Machine:
    """The state machine of cluster `cluster`; see the module rules."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self._table = VersionedTable()
        self._line = HistoryLine()
        self._records: dict[str, OutcomeRecord] = {}
        self._threshold: Stamp = ZERO_STAMP
        self._violations: list[str] = []

    # -- applying log entries ------------------------------------------------

    def apply(self, command: Any) -> Any:
        """Apply one decoded log command; returns its result message."""
        match command:
            case Prepare():
                return self.handle_prepare(command)
            case Decide():
                return self.handle_decide(command)
            case CommitOnePhase():
                return self.handle_commit_one_phase(command)
            case ValidateReads():
                return self.handle_validate_reads(command)
            case AckDecision():
                return self.handle_ack_decision(command)
            case TrimRecords():
                return self.handle_trim_records(command)
        raise TypeError(f"not a transaction command: {type(command).__name__}")

    def handle_prepare(self, command: Prepare) -> PrepareResult:
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
        reason = validate(txn.stamp, txn.reads, txn.written_keys, self._table, self._line, self._threshold)
        if reason is not None:
            self._record(txn, committed=False, reason=reason)
            return PrepareResult(txid=txn.txid, vote=False, reason=reason)
        self._line.add(txn)
        return PrepareResult(txid=txn.txid, vote=True)

    def handle_decide(self, command: Decide) -> DecideResult:
        txid = command.txid
        txn = self._line.get(txid)
        if txn is not None:
            self._line.remove(txid)
            if command.commit:
                self._install(txn)
                self._record(txn, committed=True)
                return DecideResult(txid=txid, status=TXN_COMMITTED)
            self._record(txn, committed=False, reason="aborted by decision")
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
            return DecideResult(txid=txid, status=TXN_ABORTED)
        reason = f"commit of {txid} at {stamp}, which was never prepared here"
        self._violations.append(reason)
        return DecideResult(txid=txid, status=TXN_REFUSED, reason=reason)

    def handle_commit_one_phase(self, command: CommitOnePhase) -> CommitOnePhaseResult:
        txid = command.txid
        if txid in self._line:
            reason = f"one-phase commit of {txid}, which is prepared here by two-phase commit"
            self._violations.append(reason)
            return CommitOnePhaseResult(txid=txid, committed=False, reason=reason)
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
        reason = validate(txn.stamp, txn.reads, txn.written_keys, self._table, self._line, self._threshold)
        if reason is not None:
            self._record(txn, committed=False, reason=reason)
            return CommitOnePhaseResult(txid=txid, committed=False, reason=reason)
        self._install(txn)
        self._record(txn, committed=True)
        return CommitOnePhaseResult(txid=txid, committed=True)

    def handle_validate_reads(self, command: ValidateReads) -> ValidateReadsResult:
        results = []
        for check in command.checks:
            stamp = (check.ts, check.txid)
            reason = validate_reads(stamp, check.reads, self._table, self._line, self._threshold)
            if reason is None:
                for key in check.reads:
                    self._table.raise_rts(key, stamp)
                results.append(ReadCheckResult(txid=check.txid, ok=True))
            else:
                results.append(ReadCheckResult(txid=check.txid, ok=False, reason=reason))
        return ValidateReadsResult(results=tuple(results))

    def handle_ack_decision(self, command: AckDecision) -> AckDecisionResult:
        record = self._records.get(command.txid)
        if record is None or not self._awaits_acks(record):
            return AckDecisionResult(txid=command.txid)
        if command.participant in record.missing:
            record = dataclasses.replace(record, acked=(*record.acked, command.participant))
            self._records[command.txid] = record
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

    def _install(self, txn: PreparedTxn) -> None:
        for key, value in txn.writes.items():
            self._table.install(key, value, txn.stamp)
        for key in txn.deletes:
            self._table.install_tombstone(key, txn.stamp)
        for key in txn.reads:
            self._table.raise_rts(key, txn.stamp)

    def _record(self, txn: PreparedTxn, *, committed: bool, reason: str = "") -> None:
        # The primary counts itself as acknowledged: it applied the decision.
        acked = (self.cluster,) if committed and txn.primary == self.cluster else ()
        self._records[txn.txid] = OutcomeRecord(
            txid=txn.txid,
            ts=txn.ts,
            committed=committed,
            reason=reason,
            primary=txn.primary,
            participants=txn.participants,
            acked=acked,
        )

    def _awaits_acks(self, record: OutcomeRecord) -> bool:
        return record.committed and record.primary == self.cluster and bool(record.missing)

    # -- queries for the shell (never change state) ---------------------------

    @property
    def threshold(self) -> Stamp:
        """The largest stamp whose outcome record was trimmed."""
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

    def records(self) -> tuple[OutcomeRecord, ...]:
        """Every outcome record, oldest first, so the shell can pick what to trim."""
        return tuple(self._records.values())

    def unacknowledged(self) -> tuple[OutcomeRecord, ...]:
        """Commit records this cluster is primary for whose `missing` participants
        have not acknowledged: the decisions the leader's shell must push."""
        return tuple(record for record in self._records.values() if self._awaits_acks(record))

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
            }
        )

    @classmethod
    def restore(cls, cluster: str, data: bytes) -> Machine:
        """The machine `snapshot()` described. Raises ValueError for another cluster's snapshot."""
        state = codec.decode(data)
        if state["cluster"] != cluster:
            raise ValueError(f"snapshot of cluster {state['cluster']!r} cannot restore {cluster!r}")
        machine = cls(cluster)
        machine._threshold = state["threshold"]
        machine._table = VersionedTable.load(state["table"])
        for fields in state["prepared"]:
            machine._line.add(PreparedTxn(**fields))
        for fields in state["records"]:
            machine._records[fields["txid"]] = OutcomeRecord(**fields)
        machine._violations = list(state["violations"])
        return machine
