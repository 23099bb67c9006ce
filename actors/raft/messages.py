"""Raft's own wire and persisted types: log entries, membership, snapshots,
the hard state, and the seven messages replicas exchange (docs/DESIGN.md
section 2). Only `RaftNode` steps or emits the messages; the shells carry them.

Messages are frozen dataclasses with keyword-only fields and a "Fields:"
docstring; class names are unique across the application (Thespian's
ActorTypeDispatcher dispatches on the bare name); everything pickles and
stays well under 60 KB (senders chunk large batches and snapshots).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from actors.pickling import pickle_by_slots

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


@dataclass(frozen=True, kw_only=True, slots=True)
class HardState:
    """What must survive a crash before any dependent message is sent.

    Fields:
        term: the latest term this replica has seen.
        voted_for: the candidate it voted for in `term`, or None.
        commit: its commit index (an optimisation for restart; safe to lose).
    """

    term: int = 0
    voted_for: str | None = None
    commit: int = 0


# The messages replicas exchange (paper figure 2; thesis 4.2.1 and 9.6 for
# leadership transfer and PreVote).


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
class VoteReply:
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
        sent_at: the leader's clock (`RaftNode.observe_time`) when it was
            built, echoed in the answer: the basis of the leader's lease.
    """

    term: int
    leader: str
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    sent_at: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AppendLogReply:
    """Answer to AppendLog or RepairLogReply.

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
        sent_at: answering an AppendLog, its `sent_at` (None otherwise).
    """

    term: int
    follower: str
    success: bool
    match_index: int = 0
    hint_index: int = 0
    hint_term: int = 0
    snapshot_offset: int = 0
    sent_at: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RepairLogRequest:
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
class RepairLogReply:
    """The leader's answer to a RepairLogRequest: missing entries, or a snapshot chunk.

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


RaftMessage = VoteRequest | VoteReply | AppendLog | AppendLogReply | RepairLogRequest | RepairLogReply | TimeoutNow
RAFT_MESSAGES = (VoteRequest, VoteReply, AppendLog, AppendLogReply, RepairLogRequest, RepairLogReply, TimeoutNow)
"""Every message a RaftNode steps or emits."""

pickle_by_slots(globals())  # every message and type above crosses processes as a pickle
