"""The control plane: the coordinator and the database servers and clerks it
supervises, and operators outside the actor system (docs/DESIGN.md section
5). Actor addresses travel inside these messages (Thespian addresses pickle).
"""

from __future__ import annotations

from dataclasses import dataclass


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
        max_clock_offset: seconds a clerk holds a commit's answer past its
            timestamp (topology `transactions.max_clock_offset_ms`).
    """

    epoch: int
    slots: tuple[str, ...]
    members: dict[str, tuple[str, ...]]
    leaders: dict[str, str | None]
    terms: dict[str, int]
    addresses: dict[str, object]
    read_from_followers: bool = False
    max_clock_offset: float = 0.0


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
class WhoServes:
    """Which clusters own these keys, and who leads them.

    Fields:
        keys: the keys.
    """

    keys: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class WhoServesReply:
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
    """Ask the coordinator for the whole system's status (docs/DESIGN.md section 7)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusReply:
    """Answer to StatusRequest.

    Fields:
        status: the status dict of docs/DESIGN.md section 7 (plain JSON types).
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
class ReplicaStatusReply:
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
