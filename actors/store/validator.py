"""The history line and the validator (Thor-style optimistic concurrency control).

Rules and invariants (docs/DESIGN.md section 3, model-checked; kept exactly):
- The history line holds this cluster's prepared, undecided transactions.
  A transaction leaves it only by a decision (commit or abort).
- Deduplication comes first: T on the history line -> yes; T with an outcome
  record -> the recorded answer (a no vote is recorded as an abort). So T is
  never validated against itself and a repeated Prepare gets the same answer.
- Validation of T with stamp t, over the keys in the command:
    1. threshold: t <= threshold -> abort.
    2. earlier prepared: a prepared S with S < t writes a key T read -> abort.
    3. current version: a key T read is no longer at the version T read, or
       its wts > t -> abort; a key T writes has rts > t or wts > t -> abort.
    4. later prepared: a prepared S with S > t reads a key T writes -> abort.
    5. write-write: a prepared S writes a key T writes -> abort.
  A read-only check runs rules 1-3 for its reads only.
- Each rule is its own module-level function, looked up when `validate`
  runs, so a test can switch one off and watch serializability break.
- Validation has no side effects; the machine applies the verdict.
- Results depend on the command's value only, never on dict order or hash
  seeds: keys are checked in sorted order and the line keeps insertion order
  (dicts, never sets), so every replica gives the same reason, naming the
  same conflicting transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from actors.messages import PrepareResult, Stamp
from actors.store.kv import VersionedTable


@dataclass(frozen=True, kw_only=True, slots=True)
class PreparedTxn:
    """A transaction on the history line.

    Fields:
        txid: its id.
        ts: its timestamp; `stamp` is `(ts, txid)`.
        reads: key -> version read.
        writes: key -> JSON value to install on commit.
        deletes: keys to tombstone on commit.
        primary: the cluster holding its commit record.
        participants: every cluster it touches.
    """

    txid: str
    ts: int
    reads: dict[str, Stamp]
    writes: dict[str, Any]
    deletes: tuple[str, ...] = ()
    primary: str
    participants: tuple[str, ...]

    @property
    def stamp(self) -> Stamp:
        return (self.ts, self.txid)

    @property
    def written_keys(self) -> tuple[str, ...]:
        return (*self.writes, *self.deletes)


@dataclass(frozen=True, kw_only=True, slots=True)
class OutcomeRecord:
    """How a transaction ended at this cluster, kept to answer duplicates.

    Fields:
        txid: its id.
        ts: its timestamp; `stamp` is `(ts, txid)`.
        committed: True for commit, False for abort.
        reason: for an abort, why (the rule, or the decision that aborted it).
        primary: the cluster holding its commit record ("" when this cluster
            heard only a decision).
        participants: every cluster it touches (empty when unknown here).
        acked: at the primary, the participants known to have applied the
            commit (the primary itself included).
        moved_slots: for an abort refused because it touched slots this
            cluster did not serve (WrongEpoch), those slots, so a duplicate
            gets WrongEpoch again.
    """

    txid: str
    ts: int
    committed: bool
    reason: str = ""
    primary: str = ""
    participants: tuple[str, ...] = ()
    acked: tuple[str, ...] = ()
    moved_slots: tuple[int, ...] = ()

    @property
    def stamp(self) -> Stamp:
        return (self.ts, self.txid)

    @property
    def missing(self) -> tuple[str, ...]:
        """Participants that have not acknowledged the commit (primary side)."""
        return tuple(p for p in self.participants if p not in self.acked)


class HistoryLine:
    """Prepared transactions by txid, indexed by the keys they read and write."""

    def __init__(self) -> None:
        self._entries: dict[str, PreparedTxn] = {}
        self._readers: dict[str, dict[str, PreparedTxn]] = {}
        self._writers: dict[str, dict[str, PreparedTxn]] = {}

    def __contains__(self, txid: str) -> bool:
        return txid in self._entries

    def __iter__(self) -> Iterator[PreparedTxn]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, txid: str) -> PreparedTxn | None:
        return self._entries.get(txid)

    def readers_of(self, key: str) -> Iterator[PreparedTxn]:
        return iter(self._readers.get(key, {}).values())

    def writers_of(self, key: str) -> Iterator[PreparedTxn]:
        return iter(self._writers.get(key, {}).values())

    def add(self, txn: PreparedTxn) -> None:
        self._entries[txn.txid] = txn
        for key in txn.reads:
            self._readers.setdefault(key, {})[txn.txid] = txn
        for key in txn.written_keys:
            self._writers.setdefault(key, {})[txn.txid] = txn

    def remove(self, txid: str) -> PreparedTxn:
        txn = self._entries.pop(txid)
        for index, keys in ((self._readers, txn.reads), (self._writers, txn.written_keys)):
            for key in keys:
                holders = index[key]
                del holders[txid]
                if not holders:
                    del index[key]
        return txn


def prior_vote(
    txid: str, line: HistoryLine, records: Mapping[str, OutcomeRecord]
) -> PrepareResult | None:
    """The answer T already got here, or None when T must be validated."""
    if txid in line:
        return PrepareResult(txid=txid, vote=True)
    record = records.get(txid)
    if record is None:
        return None
    if record.committed:
        return PrepareResult(txid=txid, vote=True)
    return PrepareResult(txid=txid, vote=False, reason=record.reason)


def validate(
    stamp: Stamp,
    reads: Mapping[str, Stamp],
    written: tuple[str, ...],
    table: VersionedTable,
    line: HistoryLine,
    threshold: Stamp,
) -> str | None:
    """Rules 1-5 for a transaction T not on the line; the first broken rule's reason, or None."""
    return (
        check_threshold(stamp, threshold)
        or check_earlier_prepared(stamp, reads, line)
        or check_current_read_versions(stamp, reads, table)
        or check_current_write_versions(stamp, written, table)
        or check_later_prepared(stamp, written, line)
        or check_write_write(written, line)
    )


def validate_reads(
    stamp: Stamp,
    reads: Mapping[str, Stamp],
    table: VersionedTable,
    line: HistoryLine,
    threshold: Stamp,
) -> str | None:
    """Rules 1-3 for a read-only transaction's reads; the first broken rule's reason, or None."""
    return (
        check_threshold(stamp, threshold)
        or check_earlier_prepared(stamp, reads, line)
        or check_current_read_versions(stamp, reads, table)
    )


RULE_NAMES = {
    "rule 1": "threshold",
    "rule 2": "earlier_prepared",
    "rule 3": "current_version",
    "rule 4": "later_prepared",
    "rule 5": "write_write",
}
"""Each rule by the number its refusals' reasons start with, as this module's docstring names it."""


def rule_of(reason: str) -> str:
    """The name of the rule a refusal's reason (from `validate` or `validate_reads`) cites."""
    return RULE_NAMES[reason.partition(":")[0]]


def check_threshold(stamp: Stamp, threshold: Stamp) -> str | None:
    """Rule 1: records at or below the threshold are gone, so T can no longer be judged."""
    if stamp <= threshold:
        return f"rule 1: stamp {stamp} is at or below the threshold {threshold}"
    return None


def check_earlier_prepared(stamp: Stamp, reads: Mapping[str, Stamp], line: HistoryLine) -> str | None:
    """Rule 2: an earlier prepared writer may commit a version T should have read."""
    for key in sorted(reads):
        for other in line.writers_of(key):
            if other.stamp < stamp:
                return f"rule 2: key {key!r} is written by prepared {other.txid}, which is earlier"
    return None


def check_current_read_versions(
    stamp: Stamp, reads: Mapping[str, Stamp], table: VersionedTable
) -> str | None:
    """Rule 3 (reads): T must have read the current version, and not one from its future."""
    for key, version in sorted(reads.items()):
        current = table.get(key).wts
        if current != version:
            return f"rule 3: key {key!r} was read at version {version}, now at {current}"
        if current > stamp:
            return f"rule 3: key {key!r} was read at version {current}, later than its stamp {stamp}"
    return None


def check_current_write_versions(
    stamp: Stamp, written: tuple[str, ...], table: VersionedTable
) -> str | None:
    """Rule 3 (writes): a later committed reader or writer already depends on the current version."""
    for key in sorted(written):
        state = table.get(key)
        if state.rts > stamp:
            return f"rule 3: key {key!r} was read by a later transaction ({state.rts})"
        if state.wts > stamp:
            return f"rule 3: key {key!r} was written by a later transaction ({state.wts})"
    return None


def check_later_prepared(stamp: Stamp, written: tuple[str, ...], line: HistoryLine) -> str | None:
    """Rule 4: a later prepared reader would miss T's write."""
    for key in sorted(written):
        for other in line.readers_of(key):
            if other.stamp > stamp:
                return f"rule 4: key {key!r} is read by prepared {other.txid}, which is later"
    return None


def check_write_write(written: tuple[str, ...], line: HistoryLine) -> str | None:
    """Rule 5: two prepared writers of one key could install out of stamp order."""
    for key in sorted(written):
        for other in line.writers_of(key):
            return f"rule 5: key {key!r} is also written by prepared {other.txid}"
    return None
