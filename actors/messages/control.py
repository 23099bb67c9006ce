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
        lease_reads: answer read checks and logged reads from the leader's lease.
        max_clock_offset: seconds any two hosts' clocks may differ (a new
            leader's read floor is its clock plus this).
        seed: seeds the replica's election-timeout randomness.
        slot_count: the deployment's number of slots (0: the replica serves
            every key and never moves slots).
        founding_slots: the slots the cluster owned when it was created, the
            same forever (the log's slot moves apply on top of it); empty for
            a cluster added later.
        coordinators: every coordinator replica's address: where the server
            sends its reports (ServerStarted, LeaderChange, MoveProgress,
            MembershipReport), so whichever replica acts next knows them.
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
    lease_reads: bool
    max_clock_offset: float
    seed: int
    slot_count: int = 0
    founding_slots: tuple[int, ...] = ()
    coordinators: tuple[object, ...] = ()


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
        coordinators: every coordinator replica's address, as the acting one knows them.
        coordinator_term: the acting replica's term; a receiver ignores a
            MapUpdate from an older term (a deposed replica's late one).
    """

    epoch: int
    slots: tuple[str, ...]
    members: dict[str, tuple[str, ...]]
    leaders: dict[str, str | None]
    terms: dict[str, int]
    addresses: dict[str, object]
    read_from_followers: bool = False
    max_clock_offset: float = 0.0
    coordinators: tuple[object, ...] = ()
    coordinator_term: int = 0


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
class ClerkSubscription:
    """A clerk's Subscribe or Unsubscribe, passed on by the coordinator replica
    it reached to the others: a clerk knows at first only the replicas on the
    host it attached to, and one acting elsewhere must know it too.

    Fields:
        clerk: the clerk's address.
        pid: its process id (for cleanup on stop).
        subscribed: Subscribe (True) or Unsubscribe (False).
    """

    clerk: object
    pid: int
    subscribed: bool


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


MAX_FAULT_SECONDS = 3600
"""The longest Sleep or Isolate the coordinator accepts."""


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
        with_metrics: whether the answer carries the server's metrics: only
            for a status someone asked for, not the frequent liveness and
            reconfiguration probes.
    """

    round: int
    with_metrics: bool = False


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
class ClerkMetricsRequest:
    """The acting coordinator asks a subscribed clerk for its metrics, once
    per status round; the clerk's latest answer is shown until the next."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkMetricsReply:
    """A clerk's answer to ClerkMetricsRequest.

    Fields:
        clerk: the clerk's id (its txids' prefix), its metrics' `replica` label.
        metrics: its `actors.metrics.Metrics.snapshot()`.
    """

    clerk: str
    metrics: dict


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
    """Start a coordinator replica: sent by the launcher to each replica on
    its host, and by a CoordinatorSpawner to the one it (re)created. A
    replica answers every Boot with CoordinatorStarted (a booted one, a
    repeat, at once).

    Fields:
        topology: the topology's YAML text (a replica on another host may
            have no copy of the file).
        source: the topology file's name, for messages.
        data_dir: the data directory (overrides the topology's); "" for the
            data directory of the host the replica runs on (its actor
            system's `raftline data dir` capability).
        replica: this replica's id ("coordinator-0", ...).
        peers: coordinator replica id -> address, for the replicas known.
        placement: coordinator replica id -> its host's name ("" on one host).
    """

    topology: str
    source: str
    data_dir: str
    replica: str
    peers: dict[str, object]
    placement: dict[str, str]


@dataclass(frozen=True, kw_only=True, slots=True)
class SpawnCoordinator:
    """To a CoordinatorSpawner placed on a replica's host: look the replica up
    by its global name there (which creates it when it does not run) and
    send it `boot`.

    Fields:
        boot: the Boot for the replica.
    """

    boot: Boot


@dataclass(frozen=True, kw_only=True, slots=True)
class ConventionNews:
    """What a coordinator replica on the convention leader's host saw of the
    convention, for the acting replica on another host: only the leader's
    actor system hears of members joining and leaving.

    Fields:
        members: host name -> (joined, its actor system's admin address as text).
    """

    members: dict[str, tuple[bool, str]]


@dataclass(frozen=True, kw_only=True, slots=True)
class CoordinatorStarted:
    """A coordinator replica's hello to its peers once its storage is open.

    Fields:
        replica: its id.
        pid: its OS process id (for liveness, status and stop).
    """

    replica: str
    pid: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CoordinatorReports:
    """What the acting coordinator replica knows from reports, for a peer
    that (re)started and missed them, so it could act next.

    Fields:
        servers: replica -> (address, pid) of its server's latest ServerStarted.
        leaders: cluster -> leader replica id (or None).
        terms: cluster -> that leader's term.
        subscribers: (address, pid) of every subscribed clerk.
        coordinators: coordinator replica -> its PID (the peers that started
            before the receiver never said hello to it).
    """

    servers: dict[str, tuple[object, int]]
    leaders: dict[str, str | None]
    terms: dict[str, int]
    subscribers: tuple[tuple[object, int], ...]
    coordinators: dict[str, int]


@dataclass(frozen=True, kw_only=True, slots=True)
class CoordinatorForward:
    """A request that reached a coordinator replica that does not act, passed
    on to the one that does, which answers `asker` itself.

    Fields:
        message: the request (a StatusRequest, an admin or reconfiguration
            request, WhoServes).
        asker: who sent it.
        hops: replicas it went through; dropped after a few (leaders change).
        token: the sender's id for it, echoed in CoordinatorForwardTaken.
    """

    message: object
    asker: object
    hops: int = 1
    token: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class CoordinatorForwardTaken:
    """The receiver of a CoordinatorForward took it: the sender stops keeping it.

    Fields:
        token: the CoordinatorForward's token.
    """

    token: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CoordinatorUnavailable:
    """A coordinator replica that cannot pass a request on (it has not booted
    yet, or no majority of the group runs, so no leader can be elected): the
    asker should ask another replica at once.

    Fields:
        replica: the replica's id ("" before it booted).
        reason: why, for people.
    """

    replica: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerFailed:
    """A server's storage failed (no space left, an I/O error): it exits, to
    be restarted with backoff once its storage may work again.

    Fields:
        replica: the replica id.
        reason: why, for people ("disk full", ...).
    """

    replica: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerRefused:
    """A server could not lock its data directory (another process holds it).

    Fields:
        replica: the replica id.
        holder_pid: the holder's process id (0 when unknown).
    """

    replica: str
    holder_pid: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ProcessList:
    """Ask the coordinator for every process it knows (for stop and cleanup)."""
