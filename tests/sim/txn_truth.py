"""Ground truth of a transaction run: what the replicas applied, and its judgement.

Rules:
- Truth comes from the clusters' applied logs, never from what clerks
  believe. `ClusterLog` keeps, per cluster, the entry replicas applied at each
  index and when it was first applied; a replica applying another entry at an
  index is a State Machine Safety violation, reported at once.
- After a run each cluster log is replayed on a fresh `Machine`: the code the
  replicas run, deterministic, so the replay holds their state at every
  index. Its results say which transactions each cluster prepared, installed,
  aborted or checked, and when. Every snapshot a replica took or received
  must equal the replay's snapshot at its index.
- Two-phase commit: T is committed iff its primary applied Decide(commit)
  while T was prepared there. Then every participant installed T, none before
  the primary; if T is not committed, no participant installed it. Once the
  run settled, nothing is prepared anywhere, and no transaction stayed
  prepared too long after the heal (`Release`): past the design's bound it is
  listed in `Judgement.late_releases`; past the limit the run fails.
- The committed history (writers merged across their participants, plus the
  read-only transactions a clerk saw commit) must be serializable in stamp
  order (`check_serializable`). A clerk's Committed must be committed in
  truth; its Aborted must be committed nowhere (a read-only Aborted changed
  nothing, so it is not judged).
- Bank runs: every whole-bank read a clerk saw commit, and the final state,
  conserve the total with no negative balance (`check_bank`).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from actors import codec
from actors.messages import (
    ENTRY_COMMAND,
    TXN_COMMITTED,
    TXN_PREPARED,
    TXN_UNKNOWN,
    CommitOnePhase,
    Decide,
    Entry,
    Prepare,
    Stamp,
    ValidateReads,
)
from actors.store.machine import Machine
from clerk.checkers import CommittedTxn, check_bank, check_serializable

COMMITTED = "committed"
ABORTED = "aborted"
FAILED = "failed"
ABANDONED = "abandoned"
"""Clerk outcomes: the last one is a transaction whose clerk died mid-flight."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class AppliedEntry:
    """An entry of a cluster's applied log.

    Fields:
        entry: the entry.
        time: when a replica of the cluster first applied it (simulator time units).
    """

    entry: Entry
    time: int


class ClusterLog:
    """The entries the replicas of one cluster applied, by index, and the
    snapshots they took or received (as digests, by index)."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.entries: dict[int, AppliedEntry] = {}
        self.snapshots: dict[int, dict[str, str]] = {}  # index -> digest -> a replica that held it

    @property
    def last_index(self) -> int:
        return len(self.entries)

    def record(self, replica: str, entry: Entry, time: int) -> str | None:
        """Note that `replica` applied `entry`; a description of the conflict
        when another replica applied a different entry at that index."""
        known = self.entries.get(entry.index)
        if known is None:
            self.entries[entry.index] = AppliedEntry(entry=entry, time=time)
            return None
        if known.entry != entry:
            return (
                f"{replica} applied {entry.kind} entry {entry.index} of term {entry.term}, "
                f"but term {known.entry.term}'s {known.entry.kind} entry was applied there before"
            )
        return None

    def record_snapshot(self, replica: str, index: int, data: bytes) -> None:
        self.snapshots.setdefault(index, {}).setdefault(digest(data), replica)


@dataclass(kw_only=True, slots=True)
class PreparedTxn:
    """A transaction that joined one cluster's history line.

    Fields:
        txid, ts, primary, participants: as its Prepare said.
        reads: key -> version, this cluster's part.
        writes: keys written or deleted, this cluster's part.
        prepared_at: when it joined the line (time units).
        decided_at: when a decision took it off the line; None while prepared.
        committed: the decision (installed or not); None while prepared.
    """

    txid: str
    ts: int
    primary: str
    participants: tuple[str, ...]
    reads: dict[str, Stamp]
    writes: tuple[str, ...]
    prepared_at: int
    decided_at: int | None = None
    committed: bool | None = None


@dataclass(kw_only=True, slots=True)
class ClusterTruth:
    """What one cluster did, from the replay of its log.

    Fields:
        cluster: the cluster.
        prepared: txid -> every transaction that joined its history line.
        one_phase: txid -> the one-phase commits it installed.
        checked: txid -> (ts, reads) of each read-only check that passed.
        machine: the replayed machine at the end of the log.
        problems: violations found by the replay itself.
    """

    cluster: str
    prepared: dict[str, PreparedTxn] = field(default_factory=dict)
    one_phase: dict[str, CommittedTxn] = field(default_factory=dict)
    checked: dict[str, tuple[int, dict[str, Stamp]]] = field(default_factory=dict)
    machine: Machine | None = None
    problems: list[str] = field(default_factory=list)


def replay(log: ClusterLog) -> ClusterTruth:
    """Replay a cluster's applied log on a fresh machine (see the module rules)."""
    cluster = log.cluster
    truth = ClusterTruth(cluster=cluster)
    machine = Machine(cluster)
    for index in range(1, log.last_index + 1):
        applied = log.entries.get(index)
        if applied is None:
            truth.problems.append(f"{cluster}: no replica was seen applying entry {index}")
            break
        entry, time = applied.entry, applied.time
        if entry.kind == ENTRY_COMMAND:
            _apply(truth, machine, codec.decode(entry.data), time)
        held = log.snapshots.get(index)
        if held:
            expected = digest(machine.snapshot())
            for held_digest, replica in sorted(held.items()):
                if held_digest != expected:
                    truth.problems.append(f"{cluster}: {replica}'s snapshot at {index} is not the log's state there")
    truth.problems += [f"{cluster}: machine violation: {reason}" for reason in machine.violations]
    truth.machine = machine
    return truth


def _apply(truth: ClusterTruth, machine: Machine, command: object, time: int) -> None:
    match command:
        case Prepare(txid=txid):
            before = machine.status(txid)
            machine.apply(command)
            if before == TXN_UNKNOWN and machine.status(txid) == TXN_PREPARED:
                truth.prepared[txid] = PreparedTxn(
                    txid=txid,
                    ts=command.ts,
                    primary=command.primary,
                    participants=tuple(command.participants),
                    reads=dict(command.reads),
                    writes=(*command.writes, *command.deletes),
                    prepared_at=time,
                )
        case Decide(txid=txid):
            before = machine.status(txid)
            result = machine.apply(command)
            if before == TXN_PREPARED:
                txn = truth.prepared[txid]
                txn.decided_at = time
                txn.committed = result.status == TXN_COMMITTED
        case CommitOnePhase(txid=txid):
            before = machine.status(txid)
            result = machine.apply(command)
            if before == TXN_UNKNOWN and result.committed:
                truth.one_phase[txid] = CommittedTxn(
                    txid=txid,
                    stamp=(command.ts, txid),
                    reads=dict(command.reads),
                    writes=(*command.writes, *command.deletes),
                )
        case ValidateReads(checks=checks):
            result = machine.apply(command)
            for check, verdict in zip(checks, result.results):
                if verdict.ok:
                    truth.checked.setdefault(check.txid, (check.ts, dict(check.reads)))
        case _:
            machine.apply(command)


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkRecord:
    """One transaction as its clerk saw it.

    Fields:
        txid, ts: its identity.
        reads: keys it read (their versions went with the commit).
        writes: keys it wrote.
        outcome: COMMITTED, ABORTED, FAILED or ABANDONED.
        reason: why it aborted or failed.
        balances: for a whole-bank read, account -> balance as read.
    """

    txid: str
    ts: int
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    outcome: str
    reason: str = ""
    balances: Mapping[str, int] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Bank:
    """The bank workload's promise: these accounts always hold `total` together."""

    accounts: tuple[str, ...]
    opening: int

    @property
    def total(self) -> int:
        return self.opening * len(self.accounts)

    def balance(self, exists: bool, value: object) -> int:
        """An account never written holds the opening balance."""
        return value if exists else self.opening


@dataclass(frozen=True, kw_only=True, slots=True)
class Release:
    """How soon after the heal every participant must have decided T (time units).

    Fields:
        heal_time: when the run healed.
        bound: the design's promise, counted from the heal (or from T's
            prepare there, if later); a later release is listed, not failed.
        limit: counted from the heal, T's prepare there, and the last
            elections (before the decision) of the participant's cluster and
            of T's primary, whose leaders' timers restart when elected, so
            slow elections (a Raft matter) do not count; a later release
            fails the run.
        elections: cluster -> when its leaders were elected, in order.
    """

    heal_time: int
    bound: int
    limit: int
    elections: Mapping[str, Sequence[int]]

    def last_election(self, cluster: str, before: int) -> int:
        times = self.elections.get(cluster, ())
        return times[bisect_right(times, before) - 1] if times and times[0] <= before else 0


@dataclass(kw_only=True, slots=True)
class Judgement:
    """The verdict on a run.

    Fields:
        violations: one line per broken property (empty: the run is correct).
        committed: the committed history that was checked.
        longest_prepared_after_heal: the longest any transaction stayed
            prepared past the heal, in time units.
        late_releases: transactions that stayed prepared past the heal
            longer than the release bound, one line each.
    """

    violations: list[str]
    committed: list[CommittedTxn]
    longest_prepared_after_heal: int
    late_releases: list[str]


def judge(
    truths: Mapping[str, ClusterTruth],
    clerks: list[ClerkRecord],
    *,
    cluster_of: Callable[[str], str],
    release: Release,
    bank: Bank | None = None,
) -> Judgement:
    """Judge a settled run (see the module rules). Times are simulator units."""
    violations: list[str] = []
    late: list[str] = []
    for truth in truths.values():
        violations += truth.problems
    committed, longest = _judge_two_phase(truths, release, violations, late)
    for truth in truths.values():
        committed.update(truth.one_phase)
    for record in clerks:
        if record.outcome == COMMITTED and not record.writes:
            txn = _read_only_truth(truths, record, cluster_of, violations)
            if txn is not None:
                committed[txn.txid] = txn
    _judge_clerk_view(truths, clerks, committed, violations)
    history = sorted(committed.values(), key=lambda txn: txn.stamp)
    verdict = check_serializable(history)
    violations += [f"serializability: {line}" for line in verdict.violations]
    if bank is not None:
        violations += _judge_bank(truths, clerks, bank, cluster_of)
    return Judgement(violations=violations, committed=history, longest_prepared_after_heal=longest, late_releases=late)


def _judge_two_phase(
    truths: Mapping[str, ClusterTruth],
    release: Release,
    violations: list[str],
    late: list[str],
) -> tuple[dict[str, CommittedTxn], int]:
    """Release times, atomicity and decision order of every two-phase
    transaction; the committed ones merged across their participants, and the
    longest time one stayed prepared past the heal."""
    committed: dict[str, CommittedTxn] = {}
    longest = 0
    for txid in sorted({txid for truth in truths.values() for txid in truth.prepared}):
        held = {cluster: truth.prepared[txid] for cluster, truth in truths.items() if txid in truth.prepared}
        longest = max(longest, _judge_release(txid, held, release, violations, late))
        if _judge_atomicity(txid, held, violations):
            reads: dict[str, Stamp] = {}
            writes: list[str] = []
            for txn in held.values():
                reads.update(txn.reads)
                writes += txn.writes
            ts = next(iter(held.values())).ts
            committed[txid] = CommittedTxn(txid=txid, stamp=(ts, txid), reads=reads, writes=tuple(writes))
    return committed, longest


def _judge_release(
    txid: str,
    held: Mapping[str, PreparedTxn],
    release: Release,
    violations: list[str],
    late: list[str],
) -> int:
    """Every participant decided T, in time (see `Release`); the longest wait after the heal."""
    longest = 0
    for cluster, txn in held.items():
        decided = txn.decided_at
        if decided is None:
            violations.append(f"{txid} is still prepared at {cluster} after the run settled")
            continue
        since_heal = decided - max(txn.prepared_at, release.heal_time)
        longest = max(longest, since_heal)
        since_leaders = decided - max(
            txn.prepared_at,
            release.heal_time,
            release.last_election(cluster, decided),
            release.last_election(txn.primary, decided),
        )
        line = f"{txid} stayed prepared at {cluster} for {since_heal} time units after the heal"
        if since_leaders > release.limit:
            violations.append(f"{line}, {since_leaders} after its and its primary's leaders were elected")
        elif since_heal > release.bound:
            late.append(f"{line} (bound {release.bound})")
    return longest


def _judge_atomicity(txid: str, held: Mapping[str, PreparedTxn], violations: list[str]) -> bool:
    """Whether T committed (its primary installed it); then every participant
    installed it after the primary, else none did."""
    some = next(iter(held.values()))
    shape = (some.ts, some.primary, some.participants)
    disagreeing = sorted(cluster for cluster, txn in held.items() if (txn.ts, txn.primary, txn.participants) != shape)
    if disagreeing:
        violations.append(f"{txid} was prepared with another stamp, primary or participants at {disagreeing}")
    primary = held.get(some.primary)
    if primary is None or not primary.committed:
        installed = sorted(cluster for cluster, txn in held.items() if txn.committed)
        if installed:
            violations.append(f"{txid} was installed at {installed}; its primary {some.primary} never committed it")
        return False
    for cluster in some.participants:
        txn = held.get(cluster)
        if txn is None or not txn.committed:
            violations.append(f"{txid} committed at its primary {some.primary} but was not installed at {cluster}")
        elif txn.decided_at < primary.decided_at:
            violations.append(f"{txid} was installed at {cluster} before its primary {some.primary} committed it")
    return True


def _read_only_truth(
    truths: Mapping[str, ClusterTruth],
    record: ClerkRecord,
    cluster_of: Callable[[str], str],
    violations: list[str],
) -> CommittedTxn | None:
    """A read-only transaction a clerk saw commit, as its clusters checked it."""
    reads: dict[str, Stamp] = {}
    for cluster in sorted({cluster_of(key) for key in record.reads}):
        checked = truths[cluster].checked.get(record.txid)
        if checked is None:
            violations.append(f"{record.txid} (read-only) committed for its clerk; {cluster} never passed its check")
            return None
        reads.update(checked[1])
    return CommittedTxn(txid=record.txid, stamp=(record.ts, record.txid), reads=reads, writes=())


def _judge_clerk_view(
    truths: Mapping[str, ClusterTruth],
    clerks: list[ClerkRecord],
    committed: Mapping[str, CommittedTxn],
    violations: list[str],
) -> None:
    for record in clerks:
        if not record.writes:
            continue
        if record.outcome == COMMITTED and record.txid not in committed:
            violations.append(f"{record.txid}: its clerk saw it commit, but no cluster committed it")
        elif record.outcome == ABORTED:
            installed = sorted(
                cluster
                for cluster, truth in truths.items()
                if record.txid in truth.one_phase
                or (record.txid in truth.prepared and truth.prepared[record.txid].committed)
            )
            if installed:
                violations.append(f"{record.txid}: its clerk saw it abort, but {', '.join(installed)} installed it")


def _judge_bank(
    truths: Mapping[str, ClusterTruth], clerks: list[ClerkRecord], bank: Bank, cluster_of: Callable[[str], str]
) -> list[str]:
    seen = [record.balances for record in clerks if record.outcome == COMMITTED and record.balances is not None]
    final = {}
    for account in bank.accounts:
        value = truths[cluster_of(account)].machine.read(account)
        final[account] = bank.balance(value.exists, value.value)
    found = check_bank(seen, bank.total).violations
    found += [f"final state: {line}" for line in check_bank([final], bank.total).violations]
    return [f"bank: {line}" for line in found]
