"""Ground truth of a transaction run: what the replicas applied, and its judgement.

Rules:
- Truth comes from the clusters' applied logs, never from what clerks
  believe. `ClusterLog` keeps, per cluster, the entry replicas applied at each
  index and when it was first applied; a replica applying another entry at an
  index is a State Machine Safety violation, reported at once.
- After a run each cluster log is replayed on a fresh `Machine`: the code the
  replicas run, deterministic, so the replay holds their state at every
  index. Its results say which transactions each cluster prepared, installed,
  aborted or checked (read checks and logged reads), and when. A leader
  answering a check from its lease logs nothing for it: the check and the
  leader's answer are recorded as they leave the leader
  (`ClusterLog.record_answered_check`, every passed answer, logged ones too). Every snapshot a replica took or received
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
- Slot moves (docs/DESIGN.md section 6) need no special casing in the replay: a
  cluster's machine is built with the deployment's slot count and the
  cluster's founding slots, as its replicas are, and the move entries are
  applied like any other. The replay also follows which slots the log made
  the cluster's (founding, installed, not dropped) and which a move froze:
  a transaction prepared, committed in one phase or read-checked on any
  other slot breaks the WrongEpoch rule. Once a run settled, `judge_placement` checks
  where the data ended: every key's last committed write is the value and
  version its owner (per the final map) holds, no cluster holds a key of a
  slot it does not own, and every finished move was frozen at its source,
  installed whole at its destination, then dropped at the source, in that
  order.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from actors import codec
from actors.keyspace import slot_of
from actors.messages import (
    MOVE_DROPPED,
    MOVE_FROZEN,
    TXN_COMMITTED,
    TXN_PREPARED,
    TXN_UNKNOWN,
    ZERO_STAMP,
    CommitOnePhase,
    CommitOnePhaseResult,
    Decide,
    DropSlot,
    FreezeSlot,
    InstallSlot,
    InstallSlotResult,
    LoggedRead,
    LoggedReadResult,
    Prepare,
    ReadCheck,
    ReadCheckResult,
    SlotMoveResult,
    Stamp,
    ValidateReads,
)
from actors.raft.messages import ENTRY_COMMAND, Entry
from actors.store.machine import Machine
from raftline.check.bank import check_bank
from raftline.check.serializable import CommittedTxn, check_serializable

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
    snapshots they took or received (as digests, by index); `slot_count` and
    `founding_slots` are the cluster's machine settings (0: every key, no moves)."""

    def __init__(self, cluster: str, *, slot_count: int = 0, founding_slots: tuple[int, ...] = ()) -> None:
        self.cluster = cluster
        self.slot_count = slot_count
        self.founding_slots = founding_slots
        self.entries: dict[int, AppliedEntry] = {}
        self.snapshots: dict[int, dict[str, str]] = {}  # index -> digest -> a replica that held it
        self.answered_checks: dict[str, tuple[int, dict[str, Stamp]]] = {}  # txid -> (ts, versions read)

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

    def record_answered_check(self, check: ReadCheck | LoggedRead, verdict: ReadCheckResult | LoggedReadResult) -> None:
        """A leader of this cluster answered `check` with `verdict` (passed),
        from its lease or from the log."""
        self.answered_checks.setdefault(check.txid, (check.ts, _versions_read(check, verdict)))

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
    values: dict[str, tuple[bool, object]] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class MoveTruth:
    """One slot move as one cluster's log tells it (times in time units, None: never).

    Fields:
        slot: the slot.
        frozen_at: the source applied the freeze.
        installed_at: the destination applied the move's last missing chunk.
        dropped_at: the source applied the drop.
    """

    slot: int
    frozen_at: int | None = None
    installed_at: int | None = None
    dropped_at: int | None = None


@dataclass(kw_only=True, slots=True)
class ClusterTruth:
    """What one cluster did, from the replay of its log.

    Fields:
        cluster: the cluster.
        prepared: txid -> every transaction that joined its history line.
        one_phase: txid -> the one-phase commits it installed.
        checked: txid -> (ts, reads) of each read-only check that passed.
        latest: key -> (stamp, exists, value) of the last write installed here.
        moves: move id -> what this cluster applied of it.
        slot_count: the deployment's slots (0: every key served here, no moves).
        served: slots the log made this cluster's (founding, installed, not dropped).
        frozen: served slots frozen by a move.
        machine: the replayed machine at the end of the log.
        problems: violations found by the replay itself.
    """

    cluster: str
    prepared: dict[str, PreparedTxn] = field(default_factory=dict)
    one_phase: dict[str, CommittedTxn] = field(default_factory=dict)
    checked: dict[str, tuple[int, dict[str, Stamp]]] = field(default_factory=dict)
    latest: dict[str, tuple[Stamp, bool, object]] = field(default_factory=dict)
    moves: dict[str, MoveTruth] = field(default_factory=dict)
    slot_count: int = 0
    served: set[int] = field(default_factory=set)
    frozen: set[int] = field(default_factory=set)
    machine: Machine | None = None
    problems: list[str] = field(default_factory=list)


def replay(log: ClusterLog) -> ClusterTruth:
    """Replay a cluster's applied log on a fresh machine (see the module rules)."""
    cluster = log.cluster
    truth = ClusterTruth(cluster=cluster, slot_count=log.slot_count, served=set(log.founding_slots))
    machine = Machine(cluster, slot_count=log.slot_count, founding_slots=log.founding_slots)
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
    for txid, answered in log.answered_checks.items():
        truth.checked.setdefault(txid, answered)
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
                    values=_written(command),
                )
                _check_served(truth, txid, "prepared", (*command.reads, *command.writes, *command.deletes))
        case Decide(txid=txid):
            before = machine.status(txid)
            result = machine.apply(command)
            if before == TXN_PREPARED:
                txn = truth.prepared[txid]
                txn.decided_at = time
                txn.committed = result.status == TXN_COMMITTED
                if txn.committed:
                    _installed(truth, (txn.ts, txid), txn.values)
        case CommitOnePhase(txid=txid):
            before = machine.status(txid)
            result = machine.apply(command)
            # A refusal for a slot not served here (WrongEpoch) installs nothing.
            if before == TXN_UNKNOWN and isinstance(result, CommitOnePhaseResult) and result.committed:
                truth.one_phase[txid] = CommittedTxn(
                    txid=txid,
                    stamp=(command.ts, txid),
                    reads=dict(command.reads),
                    writes=(*command.writes, *command.deletes),
                )
                _installed(truth, (command.ts, txid), _written(command))
                _check_served(truth, txid, "committed", (*command.reads, *command.writes, *command.deletes))
        case ValidateReads(checks=checks):
            result = machine.apply(command)
            for check, verdict in zip(checks, result.results):
                if isinstance(verdict, (ReadCheckResult, LoggedReadResult)) and verdict.ok:
                    reads = _versions_read(check, verdict)
                    truth.checked.setdefault(check.txid, (check.ts, reads))
                    _check_served(truth, check.txid, "checked", tuple(reads))
        case FreezeSlot(move=move, slot=slot):
            result = machine.apply(command)
            if isinstance(result, SlotMoveResult) and result.stage == MOVE_FROZEN:
                found = truth.moves.setdefault(move, MoveTruth(slot=slot))
                found.frozen_at = found.frozen_at if found.frozen_at is not None else time
                truth.frozen.add(slot)
        case InstallSlot(move=move, slot=slot):
            result = machine.apply(command)
            if isinstance(result, InstallSlotResult) and result.complete:
                found = truth.moves.setdefault(move, MoveTruth(slot=slot))
                found.installed_at = found.installed_at if found.installed_at is not None else time
                truth.served.add(slot)
        case DropSlot(move=move, slot=slot):
            result = machine.apply(command)
            if isinstance(result, SlotMoveResult) and result.stage == MOVE_DROPPED:
                found = truth.moves.setdefault(move, MoveTruth(slot=slot))
                found.dropped_at = found.dropped_at if found.dropped_at is not None else time
                truth.served.discard(slot)
                truth.frozen.discard(slot)
        case _:
            machine.apply(command)


def _versions_read(check: ReadCheck | LoggedRead, verdict: ReadCheckResult | LoggedReadResult) -> dict[str, Stamp]:
    """The versions a passed check was validated at: a logged read's are the ones it read."""
    if isinstance(verdict, LoggedReadResult):
        return {value.key: value.version for value in verdict.values}
    return dict(check.reads)


def _check_served(truth: ClusterTruth, txid: str, what: str, keys: Sequence[str]) -> None:
    """A transaction joins a cluster's history only on slots the log made the
    cluster's and no move froze (the WrongEpoch rule, decided at apply time)."""
    if not truth.slot_count:
        return
    slots = {slot_of(key, truth.slot_count) for key in keys}
    unserved = sorted(slots - truth.served) + sorted(slots & truth.frozen)
    if unserved:
        truth.problems.append(f"{truth.cluster}: {txid} was {what} on slots {unserved}, which it did not serve then")


def _written(command: Prepare | CommitOnePhase) -> dict[str, tuple[bool, object]]:
    """key -> (exists, value) as the command would install it."""
    written = {key: (True, value) for key, value in command.writes.items()}
    return {**written, **dict.fromkeys(command.deletes, (False, None))}


def _installed(truth: ClusterTruth, stamp: Stamp, values: Mapping[str, tuple[bool, object]]) -> None:
    for key, (exists, value) in values.items():
        known = truth.latest.get(key)
        if known is None or known[0] < stamp:
            truth.latest[key] = (stamp, exists, value)


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
        began: when its first read was sent (simulator ticks).
        acked: when the clerk answered it committed (0: never).
    """

    txid: str
    ts: int
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    outcome: str
    reason: str = ""
    balances: Mapping[str, int] | None = None
    began: int = 0
    acked: int = 0


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
            txn = _read_only_truth(truths, record, violations)
            if txn is not None:
                committed[txn.txid] = txn
    _judge_clerk_view(truths, clerks, committed, violations)
    history = sorted(committed.values(), key=lambda txn: txn.stamp)
    verdict = check_serializable(history)
    violations += [f"serializability: {line}" for line in verdict.violations]
    violations += judge_real_time(clerks)
    if bank is not None:
        violations += _judge_bank(truths, clerks, bank, cluster_of)
    return Judgement(violations=violations, committed=history, longest_prepared_after_heal=longest, late_releases=late)


def judge_real_time(clerks: list[ClerkRecord]) -> list[str]:
    """Strictness: a transaction answered committed before another began has
    the lower timestamp, so stamp order (the serialization order) keeps real
    time."""
    answered = sorted((record for record in clerks if record.acked), key=lambda record: record.acked)
    violations: list[str] = []
    done = 0
    highest: ClerkRecord | None = None  # the highest-ts commit answered before the current start
    for record in sorted((record for record in clerks if record.outcome == COMMITTED), key=lambda r: r.began):
        while done < len(answered) and answered[done].acked < record.began:
            if highest is None or answered[done].ts > highest.ts:
                highest = answered[done]
            done += 1
        if highest is not None and highest.ts >= record.ts:
            violations.append(f"real time: {highest.txid} (ts {highest.ts}) was answered at tick {highest.acked}, "
                              f"before {record.txid} began at tick {record.began}, yet has a ts no lower "
                              f"({record.ts})")
    return violations


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
    violations: list[str],
) -> CommittedTxn | None:
    """A read-only transaction a clerk saw commit, as its clusters checked it:
    every key it read must have passed a check somewhere (slots move, so the
    cluster that checked a key is whichever owned it then)."""
    reads: dict[str, Stamp] = {}
    for cluster in sorted(truths):
        checked = truths[cluster].checked.get(record.txid)
        if checked is not None:
            reads.update(checked[1])
    unchecked = sorted(set(record.reads) - set(reads))
    if unchecked:
        violations.append(
            f"{record.txid} (read-only) committed for its clerk; no cluster passed its check of {unchecked}"
        )
        return None
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


def held_keys(machine: Machine) -> list[str]:
    """Every key `machine` holds (values, tombstones, read stamps), by slot."""
    return [key for slot in range(machine.slot_count) for key in machine.slot_keys(slot)]


def last_writes(truths: Mapping[str, ClusterTruth]) -> dict[str, tuple[Stamp, bool, object]]:
    """key -> (stamp, exists, value) of the last committed write of every key written."""
    latest: dict[str, tuple[Stamp, bool, object]] = {}
    for truth in truths.values():
        for key, write in truth.latest.items():
            if key not in latest or latest[key][0] < write[0]:
                latest[key] = write
    return latest


def judge_placement(
    truths: Mapping[str, ClusterTruth],
    *,
    owners: Sequence[str],
    moves: Mapping[str, tuple[int, str, str]],
    committed: Sequence[CommittedTxn] = (),
    unlogged_read_stamps: Mapping[str, Mapping[str, Stamp]] = {},
) -> list[str]:
    """Where a settled run's data ended (see the module rules). `owners` is the
    final map (slot -> cluster); `moves` the moves the coordinator saw finish,
    id -> (slot, source, destination); `committed` the committed history,
    whose reads the owners must cover (a read stamp lost on the way would let
    a later write slip under a committed read): with the key's read stamp,
    with the threshold (a new leader's read floor), or, for a read its leader
    answered from its lease, with that leader's `unlogged_read_stamps`
    (cluster -> key -> stamp)."""
    violations = []
    slots = len(owners)
    read_stamps: dict[str, Stamp] = {}
    for txn in committed:
        for key in txn.reads:
            read_stamps[key] = max(read_stamps.get(key, txn.stamp), txn.stamp)
    held_rts = {
        cluster: {row[0]: tuple(row[3]) for row in codec.decode(truth.machine.snapshot())["table"]}
        for cluster, truth in truths.items()
    }
    for key, stamp in sorted(read_stamps.items()):
        owner = owners[slot_of(key, slots)]
        rts = held_rts[owner].get(key)
        covered = [rts, truths[owner].machine.threshold, unlogged_read_stamps.get(owner, {}).get(key)]
        if max((cover for cover in covered if cover is not None), default=ZERO_STAMP) < stamp:
            violations.append(f"placement: {key} was read at {stamp}, but its owner {owner} has read stamp {rts},"
                              f" threshold {covered[1]} and unlogged read stamp {covered[2]}")
    for key, (stamp, exists, value) in sorted(last_writes(truths).items()):
        owner = owners[slot_of(key, slots)]
        held = truths[owner].machine.read(key)
        if (held.version, held.exists, held.value if held.exists else None) != (stamp, exists, value):
            violations.append(
                f"placement: {key}'s last committed write is {value!r} at {stamp}"
                f"{'' if exists else ' (a delete)'}, but its owner {owner} holds {held.value!r} at {held.version}"
            )
    for cluster, truth in sorted(truths.items()):
        machine = truth.machine
        strays = [key for key in held_keys(machine) if owners[slot_of(key, slots)] != cluster]
        if strays:
            violations.append(f"placement: {cluster} holds {len(strays)} keys of slots it does not own: {strays[:5]}")
        if len(held_keys(machine)) != machine.key_count():
            violations.append(f"placement: {cluster} holds keys outside its slots' tables")
        owned = tuple(slot for slot, owner in enumerate(owners) if owner == cluster)
        if machine.owned_slots() != owned or machine.frozen_slots() or machine.incoming_moves():
            violations.append(
                f"placement: {cluster} owns slots {machine.owned_slots()}, frozen {sorted(machine.frozen_slots())},"
                f" incoming {sorted(machine.incoming_moves())}; the final map gives it {owned}"
            )
    for move, (slot, source, destination) in sorted(moves.items()):
        out, into = truths[source].moves.get(move), truths[destination].moves.get(move)
        times = (
            out.frozen_at if out else None,
            into.installed_at if into else None,
            out.dropped_at if out else None,
        )
        if None in times or not times[0] <= times[1] <= times[2]:
            violations.append(
                f"move {move} of slot {slot} ({source} -> {destination}) finished, but its freeze, install"
                f" and drop were applied at {times}, not all, in order"
            )
    return violations
