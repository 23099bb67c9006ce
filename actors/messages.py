"""Every message that travels between raftline's actors, and the data they carry.

Rules (DESIGN.md sections 1, 2, 10):
- Messages are frozen dataclasses with keyword-only fields and a "Fields:"
  docstring. They are plain data: no behaviour beyond small derived views.
- Class names are unique across the whole application, because Thespian's
  ActorTypeDispatcher dispatches on the bare class name.
- Everything here must pickle (Thespian's transport) and must stay well
  under 60 KB per message: large batches and snapshots are chunked by
  their senders.

Sections: raft data types; raft messages (replica <-> replica).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# ---------------------------------------------------------------------------
# Raft data types
# ---------------------------------------------------------------------------

ENTRY_COMMAND = "cmd"
"""Entry kind: `data` is an application command, opaque to Raft."""
ENTRY_NOOP = "noop"
"""Entry kind: the empty entry a new leader appends in its term (Raft paper 5.4.2, thesis 3.6.2)."""
ENTRY_CONF = "conf"
"""Entry kind: a single-replica membership change; `data` is `ConfChange.encode()`."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One Raft log entry.

    Fields:
        index: position in the log, from 1.
        term: term of the leader that created the entry.
        kind: ENTRY_COMMAND, ENTRY_NOOP or ENTRY_CONF.
        data: opaque bytes; the application's encoding of its command
            (empty for a no-op).
    """

    index: int
    term: int
    kind: str = ENTRY_COMMAND
    data: bytes = b""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfState:
    """A cluster's membership.

    Fields:
        voters: replicas that vote and count toward commit quorums.
        learners: replicas that receive the log but neither vote nor count.
    """

    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()


CONF_ADD_LEARNER = "add_learner"
CONF_PROMOTE = "promote"
CONF_REMOVE = "remove"


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfChange:
    """A single-replica membership change (thesis 4.1, 4.2.1).

    Fields:
        op: CONF_ADD_LEARNER (join as a non-voter), CONF_PROMOTE (learner
            becomes a voter) or CONF_REMOVE (voter or learner leaves).
        replica: the replica id the change is about.
    """

    op: str
    replica: str

    def encode(self) -> bytes:
        return json.dumps({"op": self.op, "replica": self.replica}).encode()

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        fields = json.loads(data)
        return cls(op=fields["op"], replica=fields["replica"])


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """A state-machine image replacing the log up to and including `index`.

    Fields:
        index: last log index the image includes.
        term: term of the entry at `index`.
        conf: membership in force at `index`.
        data: the state machine's own encoding of its whole state.
    """

    index: int
    term: int
    conf: ConfState
    data: bytes = b""


# ---------------------------------------------------------------------------
# Raft messages: replica <-> replica (DESIGN.md section 2)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class VoteRequest:
    """RequestVote (Raft paper 5.2), or a PreVote probe (thesis 9.6).

    Fields:
        term: the candidate's term; for a pre-vote, the term it would take.
        candidate: the candidate's replica id.
        last_index: index of the candidate's last log entry.
        last_term: term of the candidate's last log entry.
        pre_vote: True for a PreVote probe, which changes no one's term.
        transfer: True when the election was started by TimeoutNow; voters
            then grant it even though they heard from a leader recently.
    """

    term: int
    candidate: str
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Vote:
    """Answer to a VoteRequest.

    Fields:
        term: the voter's term (for a granted pre-vote: the probed term).
        voter: the voter's replica id.
        granted: whether the vote is given.
        pre_vote: echoes the request's `pre_vote`.
    """

    term: int
    voter: str
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class AppendLog:
    """AppendEntries (Raft paper 5.3); with no entries it is the heartbeat.

    Fields:
        term: the leader's term.
        leader: the leader's replica id.
        prev_index: index of the entry just before `entries`.
        prev_term: term of the entry at `prev_index`.
        entries: every entry waiting for this follower, batched.
        commit: the leader's commit index.
    """

    term: int
    leader: str
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...] = ()
    commit: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class AppendLogReply:
    """Answer to AppendLog or RepairLog.

    Fields:
        term: the follower's term.
        follower: the follower's replica id.
        success: whether the entries (or snapshot chunk) were accepted.
        match_index: on success, the last index known to match the leader.
        hint_index: on failure, where the leader should retry from (fast
            backtracking: the first index of the conflicting term, or the
            follower's last index + 1 when its log is short).
        hint_term: on failure, the term of the conflicting entry (0 if none).
        snapshot_offset: answering a snapshot chunk, the bytes of that
            snapshot received so far: where the next chunk starts.
    """

    term: int
    follower: str
    success: bool
    match_index: int = 0
    hint_index: int = 0
    hint_term: int = 0
    snapshot_offset: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class RepairLogReq:
    """A follower that finds a gap (after sleeping, say) asks for what it missed.

    Fields:
        term: the follower's term.
        follower: the follower's replica id.
        last_index: the follower's last log index.
    """

    term: int
    follower: str
    last_index: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotChunk:
    """One piece of a snapshot in transit; chunks keep every message small.

    Fields:
        index: the snapshot's last included index.
        term: the term of the entry at `index`.
        conf: membership at `index`.
        offset: byte offset of `data` within the whole snapshot data.
        data: this chunk's bytes.
        done: True on the last chunk.
    """

    index: int
    term: int
    conf: ConfState
    offset: int
    data: bytes
    done: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class RepairLog:
    """The leader's answer to a RepairLogReq: missing entries, or a snapshot chunk.

    Fields:
        term: the leader's term.
        leader: the leader's replica id.
        prev_index: index of the entry just before `entries`.
        prev_term: term of the entry at `prev_index`.
        entries: the missing entries (empty when a snapshot is sent).
        snapshot: a chunk of the leader's snapshot when the entries were
            compacted away, else None.
        commit: the leader's commit index.
    """

    term: int
    leader: str
    prev_index: int = 0
    prev_term: int = 0
    entries: tuple[Entry, ...] = ()
    snapshot: SnapshotChunk | None = None
    commit: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class TimeoutNow:
    """Leadership transfer (thesis 3.10): the receiver starts an election at once.

    Fields:
        term: the leader's term.
        leader: the leader's replica id.
    """

    term: int
    leader: str


RaftMessage = VoteRequest | Vote | AppendLog | AppendLogReply | RepairLogReq | RepairLog | TimeoutNow
RAFT_MESSAGES = (VoteRequest, Vote, AppendLog, AppendLogReply, RepairLogReq, RepairLog, TimeoutNow)
"""Every message a RaftNode steps or emits."""


# ---------------------------------------------------------------------------
# Transaction commands (log entries applied by actors/store/machine.py)
# ---------------------------------------------------------------------------
#
# A cluster's leader proposes these as Raft entries; every replica applies
# them in log order and gets the same result, which the leader sends back.
# Stamps are `(ts, txid)` pairs compared as pairs, so they are unique; a key's
# version is the stamp of the transaction that wrote it.

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
class ValidateReads:
    """Validate read-only transactions (and plain gets): rules 1-3 for their
    reads, then raise the keys' read stamps; nothing joins the history line.

    Fields:
        checks: the batched read checks, validated in order.
    """

    checks: tuple[ReadCheck, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadCheckResult:
    """The verdict on one ReadCheck.

    Fields:
        txid: the transaction checked.
        ok: True when the reads are still valid at its stamp.
        reason: otherwise, which rule refused it and on which key.
    """

    txid: str
    ok: bool
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class ValidateReadsResult:
    """The verdicts on a ValidateReads entry.

    Fields:
        results: one verdict per check, in the entry's order: ReadCheckResult,
            or WrongEpoch when the check touches a slot this cluster does not
            serve now (nothing was raised for it).
    """

    results: tuple[ReadCheckResult | WrongEpoch, ...]


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


# -- slot moves (DESIGN.md section 6): entries of the source and destination clusters


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
    stage: str


MOVE_FROZEN = "frozen"
MOVE_DROPPED = "dropped"
MOVE_NOT_OWNED = "not-owned"


TXN_COMMANDS = (
    Prepare,
    Decide,
    CommitOnePhase,
    ValidateReads,
    AckDecision,
    TrimRecords,
    FreezeSlot,
    InstallSlot,
    DropSlot,
)
"""Every command `Machine.apply` accepts."""


# ---------------------------------------------------------------------------
# Client protocol: clerk -> database server, and server -> server across
# clusters (decision push, status queries). One request/response shape serves
# both, so a leader talking to another cluster's leader is just a client.
# ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadKeys:
    """Read keys from the replica's applied state, without touching the log
    (a stale answer is caught later by validation).

    Fields:
        keys: the keys to read, all owned by the addressed cluster.
    """

    keys: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadKeysResult:
    """Answer to ReadKeys.

    Fields:
        values: one ReadResult per key, in the request's order.
    """

    values: tuple[ReadResult, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class TxnStatus:
    """Ask T's primary cluster for T's outcome (DESIGN.md section 4, step 5).

    Fields:
        txid: the transaction.
        ts: its timestamp, to tell a trimmed transaction from an unknown one.
    """

    txid: str
    ts: int


@dataclass(frozen=True, kw_only=True, slots=True)
class TxnStatusResult:
    """The primary's answer to TxnStatus.

    Fields:
        txid: the transaction.
        status: TXN_COMMITTED or TXN_ABORTED (settled), or TXN_PREPARED
            (still undecided and not yet timed out: ask again later).
    """

    txid: str
    status: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Redirect:
    """The addressed replica is not the leader (a caller error: retry elsewhere).

    Fields:
        leader: the best known leader of the cluster, or None.
        term: the replica's term, so a client can ignore an older hint.
    """

    leader: str | None
    term: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WrongEpoch:
    """The addressed cluster does not serve these slots now: they moved away,
    are not installed yet, or are frozen for a move (DESIGN.md section 6).
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


ClientOp = ReadKeys | Prepare | Decide | CommitOnePhase | ReadCheck | TxnStatus | InstallSlot
ClientResult = (
    ReadKeysResult
    | PrepareResult
    | DecideResult
    | CommitOnePhaseResult
    | ReadCheckResult
    | TxnStatusResult
    | InstallSlotResult
    | WrongEpoch
    | Redirect
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientRequest:
    """One operation inside a ClientBatch.

    Fields:
        req: the client's id for this request, unique per client.
        op: the operation.
    """

    req: int
    op: ClientOp


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientBatch:
    """Every request a client has for one replica, in one message.

    Fields:
        client: the sender's id (a clerk id, or a replica id when a leader
            asks another cluster).
        cluster: the cluster the client believes it addresses.
        epoch: the shard-map epoch the client routed by.
        requests: the requests; answered in any order, possibly across
            several ClientBatchReply messages.
    """

    client: str
    cluster: str
    epoch: int
    requests: tuple[ClientRequest, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientResponse:
    """The answer to one ClientRequest.

    Fields:
        req: the request's id.
        result: the operation's result, or Redirect.
    """

    req: int
    result: ClientResult


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientBatchReply:
    """Answers for one client from one replica, batched.

    Fields:
        cluster: the answering replica's cluster.
        replica: the answering replica's id.
        term: its term when answering.
        responses: the answers.
    """

    cluster: str
    replica: str
    term: int
    responses: tuple[ClientResponse, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class LeaderChange:
    """A replica won an election (DESIGN.md section 2): routing changes.

    Fields:
        cluster: the cluster.
        leader: the new leader's replica id.
        term: its term.
    """

    cluster: str
    leader: str
    term: int


# ---------------------------------------------------------------------------
# Control plane: coordinator <-> servers, clerks and the outside world.
# Actor addresses travel inside these messages (Thespian addresses pickle).
# ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """Everything a DatabaseServer needs to start (or restart) replica `replica`.

    Fields:
        cluster: its cluster id.
        replica: its replica id.
        voters: the cluster's founding voters, the same for every replica of
            the cluster forever, also for replicas added later (the log's
            membership changes apply on top of it; used only when storage
            holds no membership).
        data_dir: the replica's own directory (storage, log file).
        engine: "sqlite" or "memory".
        fsync: SQLite syncs every batch.
        tick_ms: real milliseconds per logical tick.
        heartbeat_ticks, election_min, election_max: Raft timing, in ticks.
        snapshot_entries: compaction threshold.
        prepare_timeout_ticks: recovery timeout for prepared transactions.
        retention_ticks: how long settled outcome records are kept.
        read_from_followers: serve ReadKeys as a follower too.
        seed: seeds the replica's election-timeout randomness.
        slot_count: the deployment's number of slots (0: the replica serves
            every key and never moves slots).
        founding_slots: the slots the cluster owned when it was created, the
            same forever (the log's slot moves apply on top of it); empty for
            a cluster added later.
    """

    cluster: str
    replica: str
    voters: tuple[str, ...]
    data_dir: str
    engine: str
    fsync: bool
    tick_ms: int
    heartbeat_ticks: int
    election_min: int
    election_max: int
    snapshot_entries: int
    prepare_timeout_ticks: int
    retention_ticks: int
    read_from_followers: bool
    seed: int
    slot_count: int = 0
    founding_slots: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerStarted:
    """A server's hello to the coordinator once its storage is open.

    Fields:
        replica: the replica id.
        pid: its OS process id (for `kill`, status and cleanup).
    """

    replica: str
    pid: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MapUpdate:
    """The routing a server or clerk needs; pushed on every leader change and epoch.

    Fields:
        epoch: the shard map's epoch.
        slots: slot -> owning cluster.
        members: cluster -> replica ids.
        leaders: cluster -> known leader replica id (or None).
        terms: cluster -> term of that leader.
        addresses: replica id -> actor address.
        read_from_followers: clerks may read from any replica (topology
            `transactions.read_from: follower`).
    """

    epoch: int
    slots: tuple[str, ...]
    members: dict[str, tuple[str, ...]]
    leaders: dict[str, str | None]
    terms: dict[str, int]
    addresses: dict[str, object]
    read_from_followers: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Subscribe:
    """A clerk asks the coordinator for MapUpdates (one now, then on every change).

    Fields:
        pid: the subscriber's process id (for cleanup on stop).
    """

    pid: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Unsubscribe:
    """A clerk that is closing: no more MapUpdates to it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkOpen:
    """The application's first message to its new clerk.

    Fields:
        owner_pid: the application's process id; the clerk exits when that
            process is gone (an application that died without closing).
    """

    owner_pid: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkOpened:
    """The clerk's answer to ClerkOpen.

    Fields:
        pid: the clerk actor's process id (fault injection kills it to test
            recovery from a clerk that dies mid-transaction).
    """

    pid: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WhoServes:
    """Which clusters own these keys, and who leads them.

    Fields:
        keys: the keys.
    """

    keys: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Serves:
    """Answer to WhoServes.

    Fields:
        epoch: the map's epoch.
        owners: key -> cluster.
        leaders: cluster -> leader replica id (or None).
    """

    epoch: int
    owners: dict[str, str]
    leaders: dict[str, str | None]


@dataclass(frozen=True, kw_only=True, slots=True)
class TimestampRequest:
    """Ask the coordinator for `count` fresh timestamps.

    Fields:
        count: how many consecutive timestamps.
    """

    count: int = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class Timestamp:
    """Timestamps `ts .. ts + count - 1`, above every one handed out before,
    even across coordinator restarts.

    Fields:
        ts: the first timestamp.
        count: how many.
    """

    ts: int
    count: int = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class Sleep:
    """Put a server to sleep: it neither processes messages nor ticks.

    Fields:
        server: the replica id.
        seconds: how long.
    """

    server: str
    seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Isolate:
    """Cut a server off from its peers: it drops every Raft message to and from
    the other replicas for a while, but keeps ticking (PreVote must keep it from
    disrupting the cluster when it returns).

    Fields:
        server: the replica id.
        seconds: how long.
    """

    server: str
    seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Kill:
    """SIGKILL a server's process; the coordinator then restarts it.

    Fields:
        server: the replica id.
    """

    server: str


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusRequest:
    """Ask the coordinator for the whole system's status (DESIGN.md section 7)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusReport:
    """Answer to StatusRequest.

    Fields:
        status: the status dict of DESIGN.md section 7 (plain JSON types).
    """

    status: dict


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplicaStatusRequest:
    """The coordinator's status probe to one server.

    Fields:
        round: the probe round, so late answers to an old round are ignored.
    """

    round: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplicaStatusReport:
    """A server's answer to ReplicaStatusRequest.

    Fields:
        round: the probe round answered.
        replica: the replica id.
        status: `Replica.status()` plus pid and sleep state.
    """

    round: int
    replica: str
    status: dict


@dataclass(frozen=True, kw_only=True, slots=True)
class AdminReply:
    """The coordinator's answer to an administrative request.

    Fields:
        ok: whether the request was carried out.
        message: what happened, or the one-line error for the user.
        value: a result, when the request has one.
    """

    ok: bool
    message: str = ""
    value: object = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Boot:
    """Start the deployment: sent once to the coordinator by the launcher.

    Fields:
        topology: the topology file's path.
        data_dir: the data directory (overrides the topology's).
    """

    topology: str
    data_dir: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ProcessList:
    """Ask the coordinator for every process it knows (for stop and cleanup)."""


# -- reconfiguration (DESIGN.md section 6) ------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class MoveSlot:
    """Coordinator -> the source cluster's leader: move `slot` to `destination`.

    Sent again every few hundred milliseconds until a MoveProgress says
    MOVE_DROPPED; each copy makes the leader take the next step from what its
    log says: freeze, wait for prepared transactions on the slot to drain,
    ship the chunks (InstallSlot) to the destination's leader, drop. A
    non-leader ignores it.

    Fields:
        move: the move's id.
        slot: the slot.
        destination: the cluster it moves to.
    """

    move: str
    slot: int
    destination: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MoveProgress:
    """The source leader's answer to MoveSlot (also sent unprompted once the drop is applied).

    Fields:
        move: the move's id.
        cluster: the source cluster.
        stage: "freezing" (the freeze is being logged), "draining" (frozen;
            `prepared` transactions on the slot still undecided),
            "shipping" (`acked` of `chunks` installed at the destination),
            "dropping", MOVE_DROPPED (done), or MOVE_NOT_OWNED.
        keys: keys in the slot.
        prepared: undecided transactions holding keys of the slot.
        chunks: chunks to ship (0 until shipping starts).
        acked: chunks the destination has applied.
    """

    move: str
    cluster: str
    stage: str
    keys: int = 0
    prepared: int = 0
    chunks: int = 0
    acked: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class ChangeMembership:
    """Coordinator -> a cluster's leader: propose one membership change, or
    with op "" just report. Sent again until the report shows it done.

    Fields:
        op: CONF_ADD_LEARNER, CONF_PROMOTE, CONF_REMOVE, or "" to report only.
        replica: the replica the change is about.
    """

    op: str
    replica: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MembershipReport:
    """A leader's answer to ChangeMembership.

    Fields:
        cluster: the cluster.
        leader: the answering leader.
        term: its term.
        voters, learners: the membership after the last appended change.
        pending: that change is not committed yet.
        commit: the leader's commit index.
        match: replica -> index up to which its log matches the leader's
            (learners included; the leader itself is absent).
        error: why the change was not proposed now ("busy: ...", "handing
            leadership to c2r3 first", "c2r4 is already a member"), or "".
    """

    cluster: str
    leader: str
    term: int
    voters: tuple[str, ...]
    learners: tuple[str, ...]
    pending: bool
    commit: int
    match: dict[str, int]
    error: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class AddReplica:
    """Admin: add a replica to `cluster` (a learner until it has caught up, then a voter).

    Fields:
        cluster: the cluster.
    """

    cluster: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RemoveReplica:
    """Admin: remove replica `server` from its cluster (leadership moves first
    when it leads); its process stops and its data directory is set aside.

    Fields:
        server: the replica id.
    """

    server: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AddCluster:
    """Admin: create a new cluster of `replicas` replicas and move slots to it
    until every cluster owns an even share.

    Fields:
        replicas: its number of replicas.
    """

    replicas: int = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class RemoveCluster:
    """Admin: move every slot off `cluster`, wait for its transactions to
    settle, then stop its replicas and set their data aside.

    Fields:
        cluster: the cluster.
    """

    cluster: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ReconfigStatus:
    """Admin: the reconfiguration jobs, running and recently finished.

    Fields:
        job: one job's id, or "" for all of them.
    """

    job: str = ""


# ---------------------------------------------------------------------------
# Application <-> clerk (through ActorSystem.ask from the application's process)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkRead:
    """Read keys at their leaders.

    Fields:
        req: the application's request id, echoed in the reply.
        keys: the keys.
    """

    req: int
    keys: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkCommit:
    """Commit a transaction: versions read, writes and deletes buffered by the application.

    Fields:
        req: the application's request id, echoed in the reply.
        reads: key -> version stamp read.
        writes: key -> JSON value.
        deletes: keys deleted.
    """

    req: int
    reads: dict[str, Stamp]
    writes: dict[str, object]
    deletes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkReply:
    """The clerk's answer to ClerkRead or ClerkCommit.

    Fields:
        req: the request answered.
        outcome: "ok" (read done / committed), "aborted" or "unavailable".
        values: for a read, key -> ReadResult.
        txid: for a commit, the transaction's id.
        reason: why, when not ok.
        hops: messages on this operation's critical path (the application's
            ask included), as counted by clerk.clerk.CriticalPath; benchmarks
            multiply it by the measured cost of one message.
    """

    req: int
    outcome: str
    values: dict[str, ReadResult] | None = None
    txid: str = ""
    reason: str = ""
    hops: int = 0
