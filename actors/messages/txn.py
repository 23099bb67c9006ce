"""Transaction commands: what a cluster's leader proposes as Raft entries and
every replica applies in log order through `actors.store.machine.Machine`,
with their results (docs/DESIGN.md sections 3, 4 and 6).

Stamps are `(ts, txid)` pairs compared as pairs, so they are unique; a
key's version is the stamp of the transaction that wrote it. `TXN_COMMANDS`
is the registry: the only types the log codec decodes, and the dispatch
table of `Machine.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Stamp = tuple[int, str]
ZERO_STAMP: Stamp = (0, "")
"""The version of a key that was never written, below every transaction's stamp."""

TXN_PREPARED = "prepared"
TXN_COMMITTED = "committed"
TXN_ABORTED = "aborted"
TXN_UNKNOWN = "unknown"
"""A transaction's state at one cluster, as `Machine.status` reports it."""
TXN_REFUSED = "refused"
"""A decision the machine would not carry out because it breaks an invariant (a bug upstream)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Prepare:
    """Two-phase commit, phase one: validate T here and hold it on the history line.

    Fields:
        txid: the transaction's id, fresh for every attempt.
        ts: the timestamp the clerk took; the stamp is `(ts, txid)`.
        reads: key -> version read, for the keys of this cluster T read
            (ZERO_STAMP for a key that was missing).
        writes: key -> JSON value, for the keys of this cluster T writes.
        deletes: keys of this cluster T deletes (disjoint from `writes`).
        primary: the cluster holding T's commit record: the owner of the
            smallest key T touches.
        participants: every cluster T touches, the primary included.
        epoch: the shard-map epoch the clerk routed by.
    """

    txid: str
    ts: int
    reads: dict[str, Stamp]
    writes: dict[str, object]
    deletes: tuple[str, ...] = ()
    primary: str
    participants: tuple[str, ...]
    epoch: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PrepareResult:
    """The cluster's vote on a Prepare.

    Fields:
        txid: the transaction voted on.
        vote: True = prepared (or already committed here), False = abort.
        reason: on a no vote, which rule refused T and on which key.
    """

    txid: str
    vote: bool
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Decide:
    """Two-phase commit, phase two: the outcome of T (also the recovery abort).

    Fields:
        txid: the transaction decided.
        ts: its timestamp; used only when T is neither prepared nor recorded
            here, to tell a trimmed transaction from an unknown one.
        commit: True to commit, False to abort.
    """

    txid: str
    ts: int
    commit: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class DecideResult:
    """What the cluster did with a Decide.

    Fields:
        txid: the transaction decided.
        status: TXN_COMMITTED or TXN_ABORTED (T's outcome here, which wins
            over the Decide when T was already settled), or TXN_REFUSED for
            a commit of a transaction this cluster never prepared.
        reason: why, when the status is not what the Decide asked for.
    """

    txid: str
    status: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class CommitOnePhase:
    """A transaction that touches this cluster only: validate and install in one entry.

    Fields:
        txid: the transaction's id, fresh for every attempt.
        ts: the timestamp the clerk took; the stamp is `(ts, txid)`.
        reads: key -> version read (ZERO_STAMP for a missing key).
        writes: key -> JSON value.
        deletes: keys deleted (disjoint from `writes`).
        epoch: the shard-map epoch the clerk routed by.
    """

    txid: str
    ts: int
    reads: dict[str, Stamp]
    writes: dict[str, object]
    deletes: tuple[str, ...] = ()
    epoch: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CommitOnePhaseResult:
    """The outcome of a CommitOnePhase.

    Fields:
        txid: the transaction.
        committed: whether its writes were installed.
        reason: on abort, which rule refused it and on which key.
    """

    txid: str
    committed: bool
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadCheck:
    """One read-only transaction's reads at this cluster.

    Fields:
        txid: the transaction's id.
        ts: the timestamp the clerk took; the stamp is `(ts, txid)`.
        reads: key -> version read (ZERO_STAMP for a missing key).
    """

    txid: str
    ts: int
    reads: dict[str, Stamp]


@dataclass(frozen=True, kw_only=True, slots=True)
class LoggedRead:
    """A plain get, read where its log entry applies: the values are the
    current ones there, validated (rules 1-3) at the clerk's stamp, so one
    round trip to the leader reads and validates at once.

    Fields:
        txid: the read-only transaction's id.
        ts: the timestamp the clerk took; the stamp is `(ts, txid)`.
        keys: the keys to read, all owned by the addressed cluster.
    """

    txid: str
    ts: int
    keys: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ValidateReads:
    """Validate read-only transactions (and plain gets): rules 1-3 for their
    reads, then raise the keys' read stamps; nothing joins the history line.

    Fields:
        checks: the batched read checks and logged reads, validated in order.
    """

    checks: tuple[ReadCheck | LoggedRead, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadCheckResult:
    """The verdict on one ReadCheck.

    Fields:
        txid: the transaction checked.
        ok: True when the reads are still valid at its stamp.
        reason: otherwise, which rule refused it and on which key.
        from_lease: answered by a leader holding a lease, without a log round.
    """

    txid: str
    ok: bool
    reason: str = ""
    from_lease: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class LoggedReadResult:
    """The answer to a LoggedRead.

    Fields:
        txid: the read.
        ok: True when the values read are valid at its stamp.
        reason: otherwise, which rule refused it and on which key (a writer
            prepared below the stamp, or a version newer than it): the clerk
            then reads the slower way, waiting for that writer.
        values: when ok, one ReadResult per key, in the request's order.
        from_lease: answered by a leader holding a lease, without a log round.
    """

    txid: str
    ok: bool
    reason: str = ""
    values: tuple[ReadResult, ...] = ()
    from_lease: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class ValidateReadsResult:
    """The verdicts on a ValidateReads entry.

    Fields:
        results: one verdict per check, in the entry's order: ReadCheckResult
            or LoggedReadResult, or WrongEpoch when the check touches a slot
            this cluster does not serve now (nothing was raised for it).
    """

    results: tuple[ReadCheckResult | LoggedReadResult | WrongEpoch, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class AckDecision:
    """At T's primary: `participant` has applied T's commit.

    Fields:
        txid: the committed transaction.
        participant: the cluster that applied the decision.
    """

    txid: str
    participant: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AckDecisionResult:
    """The acknowledgements still missing after an AckDecision.

    Fields:
        txid: the transaction.
        missing: participants that have not acknowledged yet (empty when
            all have, or when the primary holds no record of T).
    """

    txid: str
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class TrimRecords:
    """Drop outcome records the leader's shell has kept past its retention
    window, and raise the threshold past them.

    Fields:
        txids: the records to drop; a commit record this cluster is primary
            for is kept while participants have not acknowledged it.
    """

    txids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordLeaseReads:
    """Read stamps a leader raised while answering reads from its lease
    (docs/DESIGN.md section 4, "Lease reads"), logged ahead of whatever it
    proposes next, so that no write below one of them is validated later.

    Fields:
        stamps: (key, stamp) pairs: the highest stamp a lease read of each key carried.
    """

    stamps: tuple[tuple[str, Stamp], ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadFloor:
    """A new leader's first command: its predecessors may have answered reads
    from their leases with stamps they never logged, all below `ts`, so
    nothing below `ts` is validated here any more (the threshold rises to it).

    Fields:
        ts: microseconds of Unix time: the new leader's clock plus the most
            two clocks may differ.
    """

    ts: int


@dataclass(frozen=True, kw_only=True, slots=True)
class TrimRecordsResult:
    """What a TrimRecords entry did.

    Fields:
        trimmed: records dropped.
        kept: records named but kept (acknowledgements missing).
        threshold: the threshold after the entry.
    """

    trimmed: tuple[str, ...]
    kept: tuple[str, ...]
    threshold: Stamp


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadResult:
    """A key as the committed state holds it (prepared writes are invisible).

    Fields:
        key: the key read.
        value: its JSON value, or None when it does not exist.
        version: the stamp of the transaction that wrote it (its tombstone
            when deleted; ZERO_STAMP when never written).
        counter: how many committed writes it has had, for people to read.
        exists: False when never written or deleted.
    """

    key: str
    value: object
    version: Stamp
    counter: int
    exists: bool


# -- slot moves (docs/DESIGN.md section 6): entries of the source and destination clusters


@dataclass(frozen=True, kw_only=True, slots=True)
class FreezeSlot:
    """At the source cluster: stop taking new work on `slot` so it can move.

    After this entry, a Prepare, CommitOnePhase or ReadCheck touching the
    slot is answered WrongEpoch; transactions already prepared on it drain
    (their decisions still apply); ReadKeys are still served. Idempotent: a
    repeat for the same move, or for a move already finished here, changes
    nothing.

    Fields:
        move: the move's id, unique for the life of the deployment.
        slot: the slot.
        destination: the cluster it moves to.
    """

    move: str
    slot: int
    destination: str


@dataclass(frozen=True, kw_only=True, slots=True)
class InstallSlot:
    """One chunk of a frozen, drained slot: sent by the source cluster's leader
    to the destination's leader as a client request, and logged there as an entry.

    Chunks are cut deterministically (keys in sorted order), so any leader of
    the source ships the same chunks. The destination owns the slot once
    every chunk of the move is applied; until then the slot's keys are held
    but not served. Idempotent by (move, chunk).

    Fields:
        move: the move's id.
        slot: the slot.
        source: the cluster it comes from.
        chunk: this chunk's number, from 0.
        chunks: how many chunks the move has (at least 1; an empty slot ships
            one empty chunk).
        keys: (key, value, wts, rts, counter, tombstone) for every key of the
            chunk, tombstones and read-only keys (an rts without a value)
            included, so versions and read stamps move with the data.
        threshold: the source's threshold when it shipped; the destination's
            threshold becomes at least this.
    """

    move: str
    slot: int
    source: str
    chunk: int
    chunks: int
    keys: tuple[tuple[str, object, Stamp, Stamp, int, bool], ...]
    threshold: Stamp


@dataclass(frozen=True, kw_only=True, slots=True)
class InstallSlotResult:
    """The destination's answer to one InstallSlot chunk, once applied.

    Fields:
        move: the move's id.
        chunk: the chunk applied.
        complete: every chunk of the move is applied: the destination owns the slot.
    """

    move: str
    chunk: int
    complete: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class DropSlot:
    """At the source, once the destination installed every chunk: forget the
    slot's keys; the slot now answers WrongEpoch to everything. Idempotent.

    Fields:
        move: the move's id.
        slot: the slot.
    """

    move: str
    slot: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SlotMoveResult:
    """What a FreezeSlot or DropSlot entry did.

    Fields:
        move: the move's id.
        stage: the move's stage at this cluster after the entry: MOVE_FROZEN,
            MOVE_DROPPED, or MOVE_NOT_OWNED (the slot is not this cluster's and
            the move never froze it here: a stale or misrouted request).
    """

    move: str
    stage: SlotStage


SlotStage = Literal["frozen", "dropped", "not-owned"]
"""A move's stage at one cluster, as its log decided it."""
MOVE_FROZEN: SlotStage = "frozen"
MOVE_DROPPED: SlotStage = "dropped"
MOVE_NOT_OWNED: SlotStage = "not-owned"


@dataclass(frozen=True, kw_only=True, slots=True)
class WrongEpoch:
    """The addressed cluster does not serve these slots now: they moved away,
    are not installed yet, or are frozen for a move (docs/DESIGN.md section 6).
    Route again once a newer map arrives. A Prepare or CommitOnePhase answered
    this way is recorded as aborted here (a repeat gets WrongEpoch again), so
    the client may abort the transaction and retry it under a fresh txid.

    Fields:
        txid: the transaction refused ("" for a ReadKeys).
        slots: the slots not served.
        reason: for people ("slot 17 is moving to c4", "slot 17 moved away").
    """

    txid: str
    slots: tuple[int, ...]
    reason: str = ""


TXN_COMMANDS = (
    Prepare,
    Decide,
    CommitOnePhase,
    ValidateReads,
    AckDecision,
    TrimRecords,
    RecordLeaseReads,
    ReadFloor,
    FreezeSlot,
    InstallSlot,
    DropSlot,
)
"""Every command `Machine.apply` accepts, and so every command a log entry holds."""

LOG_TYPES = (*TXN_COMMANDS, ReadCheck, LoggedRead)
"""Every dataclass a log entry's data may carry: the log codec encodes and
decodes these and nothing else (`ReadCheck` and `LoggedRead` travel inside
`ValidateReads`)."""
