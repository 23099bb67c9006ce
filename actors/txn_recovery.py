"""Two-phase-commit recovery at a cluster's leader, for one term (docs/DESIGN.md
section 4, steps 4-6), without Thespian and without a clock.

The Replica builds a TxnRecovery when it wins an election and drops it when it
loses the lead. It passes in every applied entry (`on_applied`), the other
clusters' answers (`on_answer`) and the time in ticks. It carries out the
actions that come back: Propose (a log entry), Ask (a request to another
cluster's leader) and DecisionConflict (a count for operators).

Rules and invariants:
- Only log entries change the machine. Recovery proposes Decide, AckDecision
  and TrimRecords entries and asks other clusters; every replica then applies
  the same entries, whoever leads.
- Step 4, pushes: this cluster's leader, as primary, sends a commit to every
  participant that has not acknowledged it, once when the commit is applied
  (every unacknowledged one at election), then every `push_interval` ticks.
  A participant's committed answer is logged as AckDecision.
- Step 5, prepare timeouts: a transaction prepared here for `prepare_timeout`
  ticks, counted from the election or from its Prepare, is aborted by the
  primary's leader (it logs Decide(abort)). A participant's leader instead
  asks the primary TxnStatus, again every timeout while T stays prepared, and
  logs the settled answer as a Decide. `txn_status_answer` is the primary's
  side of the question.
- Step 6, trims: an outcome record is trimmed `retention` ticks after this
  leader first saw it applied, once it awaits no acknowledgement, at most
  MAX_TRIMS_PER_ENTRY txids per entry.
- Answers name their txid, so no request is remembered: the timers ask again
  after a lost or redirected one.
- Each timer dict is in non-decreasing order of its values (an entry is only
  added, or moved to the end, at the current tick plus a fixed delay), so a
  sweep stops at the first entry that is not due.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import takewhile
from typing import Any

from actors.messages import (
    TXN_ABORTED,
    TXN_COMMITTED,
    TXN_PREPARED,
    TXN_UNKNOWN,
    AckDecision,
    CommitOnePhase,
    Decide,
    DecideResult,
    DropSlot,
    FreezeSlot,
    InstallSlot,
    Prepare,
    TrimRecords,
    TxnStatus,
    TxnStatusResult,
)
from actors.store.machine import Machine

MAX_TRIMS_PER_ENTRY = 500
"""Txids named by one TrimRecords entry, so the entry stays under `max_batch_bytes`
for any reasonable txid length; the rest wait for the next tick."""


@dataclass(frozen=True, slots=True)
class Propose:
    """Action: propose `command` as a log entry (a repeat within one input is proposed once).
    Shared with actors/slot_shipping.py."""

    command: Decide | AckDecision | TrimRecords | FreezeSlot | DropSlot


@dataclass(frozen=True, slots=True)
class Ask:
    """Action: send `op` to the leader of `cluster` as a request of a ClientBatch.
    Shared with actors/slot_shipping.py (which asks with InstallSlot chunks)."""

    cluster: str
    op: TxnStatus | Decide | InstallSlot


@dataclass(frozen=True, slots=True)
class DecisionConflict:
    """Action: count a participant refusing a commit it voted for. That is a bug
    upstream; the pushes go on and operators see the count."""

    txid: str
    participant: str


RecoveryAction = Propose | Ask | DecisionConflict


@dataclass(frozen=True, slots=True)
class _Held:
    """A transaction prepared here, as the timeouts need it."""

    ts: int
    primary: str
    participants: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Unacked:
    """A commit this cluster is primary for, with participants yet to acknowledge it."""

    ts: int
    missing: tuple[str, ...]


class TxnRecovery:
    """The leader's recovery timers for one term; see the module rules."""

    def __init__(
        self,
        *,
        cluster: str,
        machine: Machine,
        now: int,
        prepare_timeout: int,
        push_interval: int,
        retention: int,
    ) -> None:
        """Start the term at tick `now` from what `machine` holds: each prepared
        transaction gets a full timeout, each unacknowledged commit is pushed
        at once, each record's retention starts over. `machine` is read, never
        changed, and stays the same object for the term (only a follower
        installs a snapshot)."""
        self._cluster = cluster
        self._machine = machine
        self._prepare_timeout = prepare_timeout
        self._push_interval = push_interval
        self._retention = retention
        # Mirrors of the machine, kept in step by `on_applied` so the timers
        # never scan every record.
        self._held = {
            txn.txid: _Held(ts=txn.ts, primary=txn.primary, participants=txn.participants)
            for txn in machine.prepared()
        }
        self._unacked = {
            record.txid: _Unacked(ts=record.ts, missing=record.missing) for record in machine.unacknowledged()
        }
        # txid -> tick its prepare timeout next fires.
        self._timeout_at: dict[str, int] = dict.fromkeys(self._held, now + prepare_timeout)
        # txid -> tick its commit is next pushed.
        self._push_due: dict[str, int] = {}
        # Commits to push at the next `push_new_commits`.
        self._new_commits: list[str] = list(self._unacked)
        # txid -> tick this leader first saw its outcome record applied.
        self._record_seen: dict[str, int] = dict.fromkeys((record.txid for record in machine.records()), now)

    def on_applied(self, command: Any, result: Any, now: int) -> bool:
        """Keep the timers in step with an entry just applied at tick `now`. True
        when the entry decided a transaction that was prepared here (which may
        have been the last one holding a frozen slot)."""
        match command:
            case Prepare(txid=txid):
                if self._machine.status(txid) == TXN_PREPARED:
                    if txid not in self._held:
                        self._held[txid] = _Held(
                            ts=command.ts, primary=command.primary, participants=command.participants
                        )
                        self._timeout_at[txid] = now + self._prepare_timeout
                else:
                    self._saw_record(txid, now)
            case Decide(txid=txid):
                # Whatever the decision did, T is no longer undecided here.
                held = self._held.pop(txid, None)
                self._timeout_at.pop(txid, None)
                if held is not None and held.primary == self._cluster and result.status == TXN_COMMITTED:
                    # The machine counts the primary as acknowledged (it applied the commit).
                    missing = tuple(p for p in held.participants if p != self._cluster)
                    if missing:
                        self._unacked[txid] = _Unacked(ts=held.ts, missing=missing)
                        self._new_commits.append(txid)
                self._saw_record(txid, now)
                return held is not None
            case CommitOnePhase(txid=txid):
                self._saw_record(txid, now)
            case AckDecision(txid=txid) if txid in self._unacked:
                if result.missing:
                    self._unacked[txid] = _Unacked(ts=self._unacked[txid].ts, missing=result.missing)
                else:
                    del self._unacked[txid]
            case TrimRecords():
                for txid in result.trimmed:
                    self._record_seen.pop(txid, None)
        return False

    def push_new_commits(self, now: int) -> list[Ask]:
        """Step 4: push the commits applied since the last call (after an
        election, every unacknowledged one)."""
        new, self._new_commits = self._new_commits, []
        return [ask for txid in new if txid in self._unacked for ask in self._push(txid, now)]

    def due(self, now: int) -> list[RecoveryAction]:
        """What the timers call for at tick `now`: timed-out prepares, then
        repeated pushes, then one TrimRecords."""
        return [*self._expire_prepares(now), *self._repeat_pushes(now), *self._trim(now)]

    def on_answer(self, cluster: str, result: Any) -> list[RecoveryAction]:
        """Another cluster's leader answered a TxnStatus or a pushed Decide."""
        match result:
            case TxnStatusResult(txid=txid, status=status) if status in (TXN_COMMITTED, TXN_ABORTED):
                held = self._held.get(txid)
                if held is not None and held.primary == cluster:
                    return [Propose(Decide(txid=txid, ts=held.ts, commit=status == TXN_COMMITTED))]
            case DecideResult(txid=txid, status=status):
                unacked = self._unacked.get(txid)
                if unacked is not None and cluster in unacked.missing:
                    if status == TXN_COMMITTED:
                        return [Propose(AckDecision(txid=txid, participant=cluster))]
                    return [DecisionConflict(txid=txid, participant=cluster)]
        return []

    def _expire_prepares(self, now: int) -> list[RecoveryAction]:
        """Step 5: the primary aborts T; a participant asks the primary, again
        every timeout until T is settled."""
        expired = [txid for txid, at in takewhile(lambda item: item[1] <= now, self._timeout_at.items())]
        actions: list[RecoveryAction] = []
        for txid in expired:
            del self._timeout_at[txid]
            self._timeout_at[txid] = now + self._prepare_timeout
            held = self._held[txid]
            if held.primary == self._cluster:
                actions.append(Propose(Decide(txid=txid, ts=held.ts, commit=False)))
            else:
                actions.append(Ask(held.primary, TxnStatus(txid=txid, ts=held.ts)))
        return actions

    def _repeat_pushes(self, now: int) -> list[Ask]:
        due = [txid for txid, at in takewhile(lambda item: item[1] <= now, self._push_due.items())]
        asks = []
        for txid in due:
            del self._push_due[txid]
            if txid in self._unacked:
                asks += self._push(txid, now)
        return asks

    def _push(self, txid: str, now: int) -> list[Ask]:
        """T's commit to every participant that has not acknowledged it; the next push is scheduled."""
        unacked = self._unacked[txid]
        self._push_due[txid] = now + self._push_interval
        return [Ask(participant, Decide(txid=txid, ts=unacked.ts, commit=True)) for participant in unacked.missing]

    def _trim(self, now: int) -> list[Propose]:
        """Step 6: records past their retention, and fully acknowledged, in one TrimRecords entry."""
        expired = []
        for txid, seen in self._record_seen.items():
            if now - seen < self._retention or len(expired) == MAX_TRIMS_PER_ENTRY:
                break
            if txid not in self._unacked:
                expired.append(txid)
        for txid in expired:
            del self._record_seen[txid]
        return [Propose(TrimRecords(txids=tuple(expired)))] if expired else []

    def _saw_record(self, txid: str, now: int) -> None:
        """Start the retention clock of T's outcome record, if it has one."""
        if self._machine.status(txid) in (TXN_COMMITTED, TXN_ABORTED):
            self._record_seen.setdefault(txid, now)


def txn_status_answer(op: TxnStatus, machine: Machine) -> TxnStatusResult | Decide:
    """Step 5 at T's primary: the settled answer, or the Decide(abort) to log and
    answer from once applied (T is undecided here, and the asker has already
    held it a whole prepare timeout), so log order settles a race with the
    clerk's commit."""
    status = machine.status(op.txid)
    if status in (TXN_COMMITTED, TXN_ABORTED):
        return TxnStatusResult(txid=op.txid, status=status)
    if status == TXN_UNKNOWN and (op.ts, op.txid) <= machine.threshold:
        # Presumed abort: a commit record is trimmed only after every
        # participant acknowledged it, so none can still be asking.
        return TxnStatusResult(txid=op.txid, status=TXN_ABORTED)
    return Decide(txid=op.txid, ts=op.ts, commit=False)


def status_of_decision(result: DecideResult) -> TxnStatusResult:
    """The TxnStatus answer a logged Decide(abort) gives once applied."""
    return TxnStatusResult(txid=result.txid, status=result.status)
