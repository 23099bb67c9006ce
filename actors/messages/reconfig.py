"""Reconfiguration: slot moves and membership changes the coordinator drives
(docs/DESIGN.md section 6), and the operator's requests that start them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MoveStage = Literal["freezing", "draining", "shipping", "dropping", "dropped", "not-owned"]
"""A move's stage at its source, as MoveProgress reports it (the last two are
the source's log's own words: MOVE_DROPPED and MOVE_NOT_OWNED)."""

MOVE_FREEZING: MoveStage = "freezing"
"""The freeze is proposed, not yet applied."""
MOVE_DRAINING: MoveStage = "draining"
"""Frozen; prepared transactions still hold keys of the slot."""
MOVE_SHIPPING: MoveStage = "shipping"
"""Chunks are on their way to the destination."""
MOVE_DROPPING: MoveStage = "dropping"
"""Every chunk acknowledged; the drop is proposed."""


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
        stage: MOVE_FREEZING, MOVE_DRAINING (`prepared` transactions on the
            slot still undecided), MOVE_SHIPPING (`acked` of `chunks`
            installed at the destination), MOVE_DROPPING, MOVE_DROPPED (done)
            or MOVE_NOT_OWNED.
        keys: keys in the slot.
        prepared: undecided transactions holding keys of the slot.
        chunks: chunks to ship (0 until shipping starts).
        acked: chunks the destination has applied.
    """

    move: str
    cluster: str
    stage: MoveStage
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
