"""The coordinator replica actor (docs/DESIGN.md sections 5 and 6): the
Thespian shell around the coordinator's pure pieces.

- group.py: this replica's Raft; the coordinator's durable state (map, jobs,
  placement; state.py names the values) is its replicated state machine;
- supervisor.py: which servers run where, restarts, liveness, lost hosts and
  their replacement;
- reconfig.py: reconfiguration jobs and the shard map they change;
- status.py: the status dict built from a status round.

Every replica of the group (topology `coordinator: {replicas: N}`, global
names `raftline-coordinator-0` ...) runs this actor; the one whose
CoordinatorGroup is `acting` (its term's leader, caught up) acts: it
supervises, routes, drives jobs and answers requests. The others only keep
the Raft log and the reports every server and clerk sends to all of them
(ServerStarted, LeaderChange, Subscribe), and pass each request on to the
leader (CoordinatorForward), which answers the asker itself. When the
acting replica changes, the new one rebuilds its pieces from the replicated
values and those reports: it adopts the servers that run (Thespian tells
only a parent of its child's exit, so the sweep checks PIDs and probes),
starts the ones that do not, resumes every job, and re-creates a dead peer
through a CoordinatorSpawner on the peer's host. With `hosts:` the replicas
spread over the hosts and any of them may act; the acting one's host is
where PIDs mean something, and the first host's replicas pass on what only
its actor system hears (hosts joining and leaving: ConventionNews).

What is left here: translating messages and timers into calls of those
pieces and carrying out what they return (creating server actors, sending,
timers, PID checks and signals, files), routing (leaders, terms, the
subscribers that get a MapUpdate on every change).

Clocks: a handler reads what it needs once, at its top, and passes it down:
`time.monotonic()` for supervision and status (intervals only),
`time.time()` for reconfiguration jobs, whose times are persisted across
restarts and shown to people.

Persistence comes first: what a reconfiguration round or a liveness sweep
changed is proposed to the group, and what it decided is carried out only
once that entry is applied (`save_then`); an acting replica that loses its
lead drops what was waiting, and its successor decides again.

It never blocks and never asks: every answer goes back to the asker's address
when ready.

Metrics (docs/DESIGN.md section 14): each replica keeps one `Metrics`, shared
with its CoordinatorGroup (whose Raft counts into it); this shell counts the
messages it receives (timers aside) and sends, the servers it restarts and
the jobs that end. The acting replica's snapshot goes into
`status["coordinator"]["metrics"]`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

from thespian.actors import (
    ActorExitRequest,
    ActorSystemConventionUpdate,
    ActorTypeDispatcher,
    ChildActorExited,
    PoisonMessage,
    WakeupMessage,
)

from actors.budgets import RECORD_RETENTION_SECONDS
from actors.datadir import DataDirInUse, lock_data_dir
from actors.message_counting import CountsMessages
from actors.messages import (
    MAX_FAULT_SECONDS,
    MOVE_DROPPED,
    AddCluster,
    AddReplica,
    AdminReply,
    Boot,
    ClerkMetricsReply,
    ClerkMetricsRequest,
    ClerkSubscription,
    ConventionNews,
    CoordinatorForward,
    CoordinatorForwardTaken,
    CoordinatorReports,
    CoordinatorStarted,
    CoordinatorUnavailable,
    Isolate,
    Kill,
    LeaderChange,
    MapUpdate,
    MembershipReport,
    MoveProgress,
    ProcessList,
    ReconfigStatus,
    RemoveCluster,
    RemoveReplica,
    ReplicaStatusReply,
    ReplicaStatusRequest,
    ServerConfig,
    ServerFailed,
    ServerRefused,
    ServerStarted,
    Sleep,
    SpawnCoordinator,
    StatusReply,
    StatusRequest,
    Subscribe,
    Unsubscribe,
    WhoServes,
    WhoServesReply,
)
from actors.metrics import Metrics
from actors.process import DATA_DIR_CAPABILITY, on_required_node, process_running, set_process_title
from actors.raft.messages import (
    AppendLog,
    AppendLogReply,
    RepairLogReply,
    RepairLogRequest,
    TimeoutNow,
    VoteReply,
    VoteRequest,
)
from actors.raft.node import NotLeader, RaftConfig
from actors.raft.storage import MemoryStorage, StorageUnavailable
from actors.sqlite_storage import SqliteStorage
from coordinator.group import CoordinatorGroup
from coordinator.placement import PlacementError
from coordinator.reconfig import (
    FAILED,
    ProbeReplicas,
    Reconfig,
    ReconfigError,
    SendToLeader,
    StartServer,
    StopServer,
)
from coordinator.shardmap import ShardMap
from coordinator.state import PIDS_FILE, StateWriter, legacy_values, stored_dict, stored_map, stored_reconfig
from coordinator.status import StatusRound, build_status, coordinator_shown
from coordinator.supervisor import (
    Action,
    AskToExit,
    BroadcastMap,
    CreateServer,
    ForgetLeader,
    KillProcess,
    Log,
    Probe,
    Reap,
    ReplacementJobs,
    RestartLater,
    SetDataAside,
    Supervisor,
    WritePids,
)
from coordinator.topology import Topology, parse_topology


def log() -> logging.Logger:
    """Looked up at each use: Thespian replaces the logging tree of an actor's
    process after this module was imported, and a logger kept from before
    writes past the system log's handler and its levels."""
    return logging.getLogger("raftline.coordinator")


STATUS_DEADLINE = timedelta(milliseconds=700)
LIVENESS_INTERVAL = timedelta(milliseconds=500)
RECONFIG_INTERVAL = timedelta(milliseconds=300)
REAP_GRACE = timedelta(seconds=3)
"""How long a stopped server may take to exit before it is SIGKILLed."""
RECONFIG_ROUND = 0
"""The ReplicaStatusRequest round of reconfiguration probes (status rounds count from 1)."""
LIVENESS_ROUND = -1
"""The ReplicaStatusRequest round of the heartbeat to servers on other hosts."""
PEER_RECREATE_WAIT = 1.0
"""Seconds between two attempts to re-create a dead coordinator replica (a
global name may point at the dead actor for a moment after its death), and
the time a peer not heard from yet gets to say hello."""
PEER_SILENCE = 2.0
"""Seconds a coordinator replica on another host (whose PID means nothing
here) may stay silent to the leader, which hears every follower each
heartbeat, before it is taken to be dead and re-created."""
SPAWN_WAIT = timedelta(seconds=5)
"""How long a CoordinatorSpawner waits for the replica it booted to answer."""
HELD_REQUEST_SECONDS = 10.0
"""How long a replica keeps a request no leader has taken; the asker has given up by then."""
FORWARD_TAKEN_WAIT = 0.3
"""Seconds a request passed on to the leader may go untaken before it is
taken to be lost with a leader that died (taking it costs one message)."""
MAX_FORWARD_HOPS = 3
"""Replicas a forwarded request may pass through (leaders change while it travels)."""
MAX_ENTRY_BYTES = 4_000_000
"""The largest coordinator log entry: the whole map and every job, never near it."""


@dataclass(slots=True)
class PendingRequest:
    """A request kept by a replica that does not act.

    Fields:
        message, asker: the request and who asked.
        hops: replicas it went through before this one.
        since: when this replica took it (monotonic).
        sent_at: when it last went to a leader; 0 before.
    """

    message: object
    asker: object
    hops: int
    since: float
    sent_at: float = 0.0


def coordinator_name(replica: str) -> str:
    """The Thespian global name of coordinator replica `replica` (`raftline-coordinator-0`, ...)."""
    return f"raftline-{replica}"


def raft_sender(message) -> str:
    """The id of the replica that sent a Raft message."""
    match message:
        case VoteRequest(candidate=sender) | VoteReply(voter=sender):
            return sender
        case AppendLogReply(follower=sender) | RepairLogRequest(follower=sender):
            return sender
        case AppendLog(leader=sender) | RepairLogReply(leader=sender) | TimeoutNow(leader=sender):
            return sender
    raise TypeError(f"not a Raft message: {type(message).__name__}")


class Coordinator(CountsMessages, ActorTypeDispatcher):
    def __init__(self, capabilities=None, requirements=None):
        # Thespian passes these by name (docs/DESIGN.md section 12, "conventions").
        super().__init__()
        self.home = (capabilities or {}).get(DATA_DIR_CAPABILITY)
        """This host's data directory, on a multi-host deployment."""
        self.boot: Boot | None = None
        self.admin_pid = 0
        self.topology: Topology | None = None
        self.data_dir: Path | None = None
        self.replica_id = ""
        self.group: CoordinatorGroup | None = None
        self.storage = None
        self.data_dir_lock = None
        self.host = ""
        """The host this replica runs on ("" on one host)."""
        self.placement: dict[str, str] = {}
        """Coordinator replica id -> its host."""
        self.peers: dict[str, object] = {}
        """Coordinator replica id -> its address (this one's included)."""
        self.peer_pids: dict[str, int] = {}
        self.peer_heard_at: dict[str, float] = {}
        """When each peer last sent this replica anything (monotonic)."""
        self.peer_recreated_at: dict[str, float] = {}
        self.convention: dict[str, tuple[bool, str]] = {}
        """Host -> (joined, where) as this replica heard of it: from its own
        actor system on the first host, from ConventionNews elsewhere."""
        self.news_told_to: tuple[str | None, int] = (None, 0)
        """The leader, and its term, that this replica last told its convention news."""
        self.stopping = False
        self.storage_failure = ""
        # What servers and clerks report to every replica, for whichever acts next.
        self.server_processes: dict[str, tuple[object, int]] = {}
        """Replica -> (address, pid) of its latest ServerStarted."""
        self.leaders: dict[str, str | None] = {}
        self.terms: dict[str, int] = {}
        self.subscribers: list[tuple[object, int]] = []  # (address, pid); addresses are not hashable
        self.clerk_metrics: dict[str, tuple[object, dict]] = {}  # clerk id -> (address, its latest snapshot)
        self.pending: dict[int, PendingRequest] = {}
        """Requests this replica took and no acting replica has taken yet, by token."""
        self.next_token = 0
        self.leader_heard_at = 0.0
        """When the group's leader last sent this replica anything (monotonic)."""
        # While acting (acting_term > 0):
        self.acting_term = 0
        self.map: ShardMap | None = None
        self.reconfig: Reconfig | None = None
        self.supervisor: Supervisor | None = None
        self.writer: StateWriter | None = None
        self.proposed_index = 0
        self.running_jobs: set[str] = set()
        """Jobs running when last persisted: one gone from them since has finished."""
        self.waiting: list[tuple[int, Callable[[], None]]] = []
        """Actions decided after a proposal, carried out once its index is applied."""
        self.status_round: StatusRound | None = None
        self.round_counter = 0
        self.last_reports: dict[str, dict] = {}
        """Replica -> its last status report, shown while it is silent."""
        self.metrics = Metrics()

    # -- boot -----------------------------------------------------------------

    def receiveMsg_Boot(self, message: Boot, sender) -> None:
        if self.group is not None:
            # A repeat, through a spawner the acting replica sent: say who runs here.
            self.send(sender, CoordinatorStarted(replica=self.replica_id, pid=os.getpid()))
            return
        topology = self.topology = parse_topology(message.topology, message.source)
        self.boot = message
        self.replica_id = message.replica
        self.placement = dict(message.placement)
        self.host = self.placement.get(message.replica, "")
        set_process_title(f"raftline {message.replica}")
        if not message.data_dir and not self.home:
            log().error("%s: booted on a host without a %r capability; exiting", message.replica, DATA_DIR_CAPABILITY)
            self.send(self.myAddress, ActorExitRequest())
            return
        self.data_dir = Path(message.data_dir or self.home)
        directory = self.data_dir / message.replica
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Held until this process ends: a second replica on this data never opens it.
            self.data_dir_lock = lock_data_dir(directory)
        except DataDirInUse as error:
            log().error("%s: %s; exiting without opening its storage", message.replica, error)
            self.send(self.myAddress, ActorExitRequest())
            return
        try:
            if topology.storage.engine == "sqlite":
                self.storage = SqliteStorage(os.fspath(directory / "raft.db"), fsync=topology.storage.fsync,
                                             metrics=self.metrics)
            else:
                self.storage = MemoryStorage()
        except StorageUnavailable as error:
            log().error("%s: cannot open its storage (%s); exiting, to be re-created", message.replica, error.reason)
            self.send(self.myAddress, ActorExitRequest())
            return
        config = RaftConfig(id=message.replica, election_min=topology.raft.election_min,
                            election_max=topology.raft.election_max,
                            heartbeat_ticks=topology.raft.heartbeat_ticks, max_batch_bytes=MAX_ENTRY_BYTES)
        self.group = CoordinatorGroup(config, topology.coordinator.replica_ids, self.storage,
                                      random.Random(os.urandom(8)), metrics=self.metrics)
        self.peers = {**message.peers, self.replica_id: self.myAddress}
        self.peer_pids[self.replica_id] = os.getpid()
        booted_at = time.monotonic()
        self.peer_heard_at.update(dict.fromkeys(self.peers, booted_at))  # they ran when the Boot was written
        self.admin_pid = os.getppid()  # read now: once the admin dies, the parent is init
        hello = CoordinatorStarted(replica=self.replica_id, pid=os.getpid())
        self.tell_peers(hello)
        self.send(sender, hello)
        if topology.hosts:
            # Members that joined before this boot are announced right away.
            self.notifyOnSystemRegistrationChanges(True)
        self.wakeupAfter(timedelta(milliseconds=topology.raft.tick_ms), payload=("tick",))
        where = f" on {self.host}" if self.host else ""
        log().info("%s booted (pid %d%s) from %s", self.replica_id, os.getpid(), where, message.source)

    def receiveMsg_CoordinatorStarted(self, message: CoordinatorStarted, sender) -> None:
        self.peers[message.replica] = sender
        self.peer_pids[message.replica] = message.pid
        self.peer_heard_at[message.replica] = time.monotonic()
        if self.acting_term:
            self.write_pids()
            # A peer that (re)started missed the reports: it may act next.
            self.send(sender, CoordinatorReports(servers=dict(self.server_processes), leaders=dict(self.leaders),
                                                 terms=dict(self.terms), subscribers=tuple(self.subscribers),
                                                 coordinators=dict(self.peer_pids)))

    def receiveMsg_CoordinatorReports(self, message: CoordinatorReports, sender) -> None:
        for replica, process in message.servers.items():
            self.server_processes.setdefault(replica, process)
        for cluster, term in message.terms.items():
            if term > self.terms.get(cluster, 0):
                self.leaders[cluster], self.terms[cluster] = message.leaders.get(cluster), term
        for address, pid in message.subscribers:
            self.subscribe(address, pid)
        for replica, pid in message.coordinators.items():
            # Peers that started before this replica never said hello to it.
            self.peer_pids.setdefault(replica, pid)

    # -- the group ------------------------------------------------------------

    def receive_raft(self, message, sender) -> None:
        if self.group is None:
            return
        peer = raft_sender(message)
        now = time.monotonic()
        if peer in self.placement:
            self.peers[peer] = sender
            self.peer_heard_at[peer] = now
        self.guarded(lambda: self.group.receive(message))
        if self.group is not None and peer == self.group.leader:
            self.leader_heard_at = now

    receiveMsg_VoteRequest = receive_raft
    receiveMsg_VoteReply = receive_raft
    receiveMsg_AppendLog = receive_raft
    receiveMsg_AppendLogReply = receive_raft
    receiveMsg_RepairLogRequest = receive_raft
    receiveMsg_RepairLogReply = receive_raft
    receiveMsg_TimeoutNow = receive_raft

    def guarded(self, step: Callable[[], None]) -> None:
        """Run one step of the group, then what follows from it. An exception
        is a bug (storage failures are the group's to retry) that may have left
        it half-updated: exit, to be re-created from storage by the acting peer."""
        try:
            step()
        except Exception:
            log().exception("%s: crashed; exiting to be re-created from its storage", self.replica_id)
            self.group = None
            self.close_storage()
            self.send(self.myAddress, ActorExitRequest())
            return
        self.after_group_step()

    def after_group_step(self) -> None:
        """Send the group's messages, act or stop acting as its role says, carry
        out what waited for an applied entry, pass on kept requests."""
        for peer, message in self.group.take_output():
            address = self.peers.get(peer)
            if address is not None:
                self.send(address, message)
        if self.group.storage_failure != self.storage_failure:
            self.storage_failure = self.group.storage_failure
            if self.storage_failure:
                log().error("%s: its storage fails (%s); it keeps running and retries", self.replica_id,
                          self.storage_failure)
            else:
                log().info("%s: its storage works again", self.replica_id)
        if self.group.acting and self.acting_term != self.group.term and not self.stopping:
            self.take_over(time.monotonic())
        elif not self.group.acting and self.acting_term:
            self.step_down()
        if self.convention and (self.group.leader, self.group.term) != self.news_told_to:
            self.tell_convention_news(self.convention)
        if self.waiting and self.group.applied >= self.waiting[0][0]:
            due = [action for index, action in self.waiting if index <= self.group.applied]
            self.waiting = [(index, action) for index, action in self.waiting if index > self.group.applied]
            for action in due:
                action()
        if self.pending:
            self.pass_on_pending()

    def take_over(self, now: float) -> None:
        """This replica acts from now on: its pieces from the replicated values
        and the reports it kept; every server supervised, running ones adopted."""
        topology = self.topology
        values = self.group.values or legacy_values(self.data_dir)
        self.acting_term = self.group.term
        self.proposed_index = 0  # one of an earlier turn may never have committed
        self.writer = StateWriter(self.group.values)
        self.map = stored_map(values) or ShardMap.initial(topology.cluster_names, topology.members(), topology.slots)
        grace = 2 * topology.transactions.prepare_timeout_ms / 1000
        # First boot: the map is the epoch-1 one, every cluster's founding membership.
        self.reconfig = stored_reconfig(values, self.map, grace) or Reconfig.fresh(self.map, grace)
        self.running_jobs = {job.id for job in self.reconfig.running()}
        self.supervisor = Supervisor(topology, stored_dict(values, "placement"), stored_dict(values, "replacements"),
                                     node=self.host)
        self.forget_clusters_gone()
        actions = self.supervisor.place_unplaced(self.map)
        removing = self.reconfig.removing()
        for cluster in self.map.clusters:
            for replica in self.map.replicas(cluster):
                if replica in removing:
                    continue
                known = self.server_processes.get(replica)
                if known is not None:
                    actions += self.supervisor.adopt(cluster, replica, known[0], known[1], now)
                else:
                    actions += self.supervisor.supervise(cluster, replica, now)
        for node, (joined, where) in self.convention.items():
            # What this replica heard of the convention before it acted.
            if joined and node != self.host:
                actions += self.supervisor.convention_changed(node, joined, where, now)
        for peer in self.placement:
            if now - self.peer_heard_at.get(peer, 0.0) > PEER_SILENCE:
                self.peer_recreated_at.setdefault(peer, now)  # a peer gets time to say hello first
        self.save_then(lambda: self.carry_out(actions + [BroadcastMap()]))
        self.wakeupAfter(LIVENESS_INTERVAL, payload=("liveness", self.acting_term))
        self.wakeupAfter(RECONFIG_INTERVAL, payload=("reconfig", self.acting_term))
        log().info("%s acts in term %d: epoch %d, %d servers adopted, %d reconfiguration jobs to resume",
                   self.replica_id, self.acting_term, self.map.epoch,
                   sum(1 for record in self.supervisor.servers.values() if record.pid),
                   len(self.reconfig.running()))

    def step_down(self) -> None:
        """This replica lost the lead: it stops acting; what waited is dropped
        (the next acting replica decides again from the replicated values)."""
        log().info("%s stops acting (term %d)", self.replica_id, self.acting_term)
        self.acting_term = 0
        self.map = self.reconfig = self.supervisor = self.writer = None
        self.waiting = []
        self.status_round = None

    def save_then(self, action: Callable[[], None]) -> None:
        """Propose what changed, then `action` once every proposal so far is applied."""
        changes = self.writer.changes(self.reconfig, self.supervisor.placement, self.supervisor.replacements)
        if changes:
            try:
                self.proposed_index = self.group.propose(changes)
            except NotLeader:
                self.step_down()
                return
        self.once_persisted(action)

    def once_persisted(self, action: Callable[[], None]) -> None:
        """`action` once every proposal so far is applied: an answer about jobs
        or the map never shows what could still be lost."""
        if self.group.applied >= self.proposed_index:
            action()
        else:
            self.waiting.append((self.proposed_index, action))

    def forget_clusters_gone(self) -> None:
        for cluster in self.map.clusters:
            self.leaders.setdefault(cluster, None)
            self.terms.setdefault(cluster, 0)
        for cluster in set(self.leaders) - set(self.map.clusters):
            del self.leaders[cluster], self.terms[cluster]

    # -- requests: answered by the acting replica, passed on by the others ------

    def request(self, message, sender) -> None:
        self.take_request(message, sender, 0)

    def receiveMsg_CoordinatorForward(self, message: CoordinatorForward, sender) -> None:
        # Taken: from now on this replica answers for it (the sender stops waiting).
        self.send(sender, CoordinatorForwardTaken(token=message.token))
        self.take_request(message.message, message.asker, message.hops)

    def receiveMsg_CoordinatorForwardTaken(self, message: CoordinatorForwardTaken, sender) -> None:
        self.pending.pop(message.token, None)

    def take_request(self, message, asker, hops: int) -> None:
        """Serve while acting; else keep the request until a peer that leads takes it."""
        if self.acting_term:
            self.serve(message, asker)
        elif self.group is None:
            self.send(asker, CoordinatorUnavailable(replica=self.replica_id, reason="not booted yet"))
        elif self.group.leader is None and (missing := self.missing_for_majority(time.monotonic())):
            self.send(asker, CoordinatorUnavailable(replica=self.replica_id, reason=missing))
        elif hops < MAX_FORWARD_HOPS:
            self.next_token += 1
            self.pending[self.next_token] = PendingRequest(message=message, asker=asker, hops=hops,
                                                           since=time.monotonic())
            self.pass_on_pending()

    def missing_for_majority(self, now: float) -> str:
        """Why no leader can be elected, when too few replicas run to make a
        majority ("" otherwise): the silent ones, and where they run."""
        silent = [peer for peer in sorted(self.placement)
                  if peer != self.replica_id and now - self.peer_heard_at.get(peer, 0.0) > PEER_SILENCE]
        if len(self.placement) - len(silent) > len(self.placement) // 2:
            return ""
        named = ", ".join(peer + (f" (host {self.placement[peer]})" if self.placement[peer] else "") for peer in silent)
        return f"no majority of the coordinator's replicas runs: {named} not heard from"

    def pass_on_pending(self) -> None:
        """Serve the kept requests while acting. Otherwise pass each on to the
        leader once it was heard from after the request last went out; one
        passed on and not taken within FORWARD_TAKEN_WAIT went to a leader that
        died, and goes out again once a live leader is heard from."""
        now = time.monotonic()
        leader = self.group.leader if self.group is not None else None
        address = self.peers.get(leader) if leader and leader != self.replica_id else None
        for token, request in list(self.pending.items()):
            if self.acting_term:
                del self.pending[token]
                self.serve(request.message, request.asker)
            elif now - request.since > HELD_REQUEST_SECONDS:
                del self.pending[token]  # its asker gave up long ago
            elif request.sent_at and now - request.sent_at < FORWARD_TAKEN_WAIT:
                continue  # on its way
            elif address is not None and self.leader_heard_at > request.sent_at:
                request.sent_at = now
                self.send(address, CoordinatorForward(message=request.message, asker=request.asker,
                                                      hops=request.hops + 1, token=token))

    def serve(self, message, asker) -> None:
        match message:
            case StatusRequest():
                self.serve_status(asker)
            case Sleep() | Isolate():
                self.serve_sleep_or_isolate(message, asker)
            case Kill():
                self.serve_kill(message, asker)
            case ProcessList():
                self.serve_process_list(asker)
            case AddReplica():
                self.serve_add_replica(message, asker)
            case RemoveReplica(server=server):
                self.submit(asker, lambda wall: self.reconfig.remove_replica(server, wall))
            case AddCluster():
                self.serve_add_cluster(message, asker)
            case RemoveCluster(cluster=cluster):
                self.submit(asker, lambda wall: self.reconfig.remove_cluster(cluster, wall))
            case ReconfigStatus():
                self.serve_reconfig_status(message, asker)
            case WhoServes(keys=keys):
                owners = {key: self.map.owner(key) for key in keys}
                self.send(asker, WhoServesReply(epoch=self.map.epoch, owners=owners, leaders=dict(self.leaders)))

    receiveMsg_StatusRequest = request
    receiveMsg_Sleep = request
    receiveMsg_Isolate = request
    receiveMsg_Kill = request
    receiveMsg_AddReplica = request
    receiveMsg_RemoveReplica = request
    receiveMsg_AddCluster = request
    receiveMsg_RemoveCluster = request
    receiveMsg_ReconfigStatus = request
    receiveMsg_WhoServes = request

    # -- supervision ------------------------------------------------------------

    def carry_out(self, actions: list[Action]) -> None:
        """Carry out the supervisor's actions in order; the PID file and the
        map go out once, after the rest."""
        if not self.acting_term:
            return
        write_pids = broadcast = False
        for action in actions:
            match action:
                case CreateServer(replica=replica):
                    self.create_server(replica)
                case AskToExit(address=address):
                    self.send(address, ActorExitRequest())
                case Probe(address=address):
                    self.send(address, ReplicaStatusRequest(round=LIVENESS_ROUND))
                case RestartLater(replica=replica, generation=generation, delay=delay):
                    self.wakeupAfter(timedelta(seconds=delay),
                                     payload=("restart", replica, generation, self.acting_term))
                case Reap(pid=pid):
                    self.wakeupAfter(REAP_GRACE, payload=("reap", pid, self.acting_term))
                case KillProcess(pid=pid):
                    kill(pid)
                case SetDataAside(replica=replica):
                    self.set_data_aside(replica)
                case ForgetLeader(cluster=cluster, replica=replica):
                    if self.leaders.get(cluster) == replica:
                        self.leaders[cluster] = None
                case Log(text=text, warning=warning):
                    log().log(logging.WARNING if warning else logging.INFO, "%s", text)
                case WritePids():
                    write_pids = True
                case BroadcastMap():
                    broadcast = True
        if write_pids:
            self.write_pids()
        if broadcast:
            self.broadcast_map()

    def create_server(self, replica: str) -> None:
        from actors.server import DatabaseServer

        record = self.supervisor.servers[replica]
        if record.restarts:
            self.metrics.count("raftline_server_restarts_total")
        topo = self.topology
        requirements = {"node": record.host} if record.host else None
        address = self.createActor(DatabaseServer, targetActorRequirements=requirements)
        self.supervisor.created(replica, address)
        founding = self.reconfig.founding[record.cluster]
        self.send(
            address,
            ServerConfig(
                cluster=record.cluster,
                replica=replica,
                voters=founding.voters,
                # On a host, relative to that host's own data directory.
                data_dir=replica if record.host else os.fspath(self.data_dir / replica),
                engine=topo.storage.engine,
                fsync=topo.storage.fsync,
                tick_ms=topo.raft.tick_ms,
                heartbeat_ticks=topo.raft.heartbeat_ticks,
                election_min=topo.raft.election_min,
                election_max=topo.raft.election_max,
                snapshot_entries=topo.raft.snapshot_entries,
                prepare_timeout_ticks=max(1, round(topo.transactions.prepare_timeout_ms / topo.raft.tick_ms)),
                retention_ticks=round(RECORD_RETENTION_SECONDS * 1000 / topo.raft.tick_ms),
                read_from_followers=topo.transactions.read_from == "follower",
                lease_reads=topo.raft.lease_reads,
                max_clock_offset=topo.transactions.max_clock_offset_ms / 1000,
                seed=int.from_bytes(os.urandom(4), "big"),
                slot_count=len(self.map.slots),
                founding_slots=founding.slots,
                coordinators=self.coordinator_addresses(),
            ),
        )

    def coordinator_addresses(self) -> tuple[object, ...]:
        return tuple(self.peers[peer] for peer in sorted(self.peers))

    def set_data_aside(self, replica: str) -> None:
        """A stopped replica's data goes under `removed/`, never deleted."""
        source = self.data_dir / replica
        if not source.exists():
            return
        removed = self.data_dir / "removed"
        removed.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target, suffix = removed / f"{replica}-{stamp}", 1
        while target.exists():
            suffix += 1
            target = removed / f"{replica}-{stamp}-{suffix}"
        source.rename(target)
        log().info("server %s stopped; its data is in %s", replica, target)

    def receiveMsg_ServerStarted(self, message: ServerStarted, sender) -> None:
        self.server_processes[message.replica] = (sender, message.pid)
        if self.acting_term:
            self.carry_out(self.supervisor.started(message.replica, sender, message.pid, time.monotonic()))

    def receiveMsg_ServerFailed(self, message: ServerFailed, sender) -> None:
        if self.acting_term:
            self.carry_out(self.supervisor.failed(message.replica, message.reason, time.monotonic()))

    def receiveMsg_ServerRefused(self, message: ServerRefused, sender) -> None:
        if self.acting_term:
            holder = message.holder_pid
            self.carry_out(self.supervisor.refused(message.replica, sender, holder, ours=in_this_session(holder)))

    def receiveMsg_ChildActorExited(self, message: ChildActorExited, sender) -> None:
        if self.acting_term:
            self.carry_out(self.supervisor.exited(message.childAddress))

    def sweep(self, now: float, wall: float) -> None:
        """The liveness sweep: the PIDs of this host's servers are checked here
        (I/O), the rest is the supervisor's; a replacement it started is
        persisted before anything else happens. Dead peers are re-created."""
        processes = self.supervisor.local_processes()
        exited = {replica for replica, pid in processes.items() if not process_running(pid)}
        actions = self.supervisor.sweep(now, exited, ReplacementJobs(reconfig=self.reconfig, job_time=wall))
        self.save_then(lambda: self.carry_out(actions))
        for peer, host in self.placement.items():
            if peer == self.replica_id or now - self.peer_recreated_at.get(peer, 0.0) <= PEER_RECREATE_WAIT:
                continue
            if self.is_local_peer(peer):
                pid = self.peer_pids.get(peer, 0)
                dead = not pid or not process_running(pid)
            else:
                # Its PID means nothing here: silence tells, where its host runs.
                dead = now - self.peer_heard_at.get(peer, 0.0) > PEER_SILENCE and self.supervisor.host_up(host)
            if dead:
                log().info("coordinator replica %s is not running; re-creating it", peer)
                self.spawn_peer(peer, now)

    def spawn_peer(self, peer: str, now: float) -> None:
        """Have `peer` looked up by its global name on its own host, which
        creates a fresh replica when none runs there, and booted (a
        CoordinatorSpawner does it there: a global name belongs to the actor
        system that registered it); the replica says hello when up."""
        self.peer_recreated_at[peer] = now
        self.peer_pids.pop(peer, None)
        host = self.placement.get(peer, "")
        spawner = self.createActor(CoordinatorSpawner, targetActorRequirements={"node": host} if host else None)
        self.send(spawner, SpawnCoordinator(boot=Boot(
            topology=self.boot.topology, source=self.boot.source,
            data_dir="" if host else os.fspath(self.data_dir),  # "": that host's own data directory
            replica=peer, peers=dict(self.peers), placement=self.placement)))

    # -- the convention (multi-host) ----------------------------------------------

    def receiveMsg_ActorSystemConventionUpdate(self, message: ActorSystemConventionUpdate, sender) -> None:
        node = (message.remoteCapabilities or {}).get("node")
        news = {node: (message.remoteAdded, str(message.remoteAdminAddress))}
        self.convention.update(news)
        self.convention_changed(news)
        self.tell_convention_news(news)
        if message.remoteAdded and self.group is not None and not self.stopping:
            # Its coordinator replicas start now, whether or not a replica acts:
            # the group may wait for them to have a majority.
            now = time.monotonic()
            for peer, host in self.placement.items():
                if host == node and now - self.peer_heard_at.get(peer, 0.0) > PEER_SILENCE:
                    self.spawn_peer(peer, now)

    def receiveMsg_ConventionNews(self, message: ConventionNews, sender) -> None:
        self.convention.update(message.members)
        self.convention_changed(message.members)

    def convention_changed(self, news: dict[str, tuple[bool, str]]) -> None:
        if not self.acting_term:
            return
        now = time.monotonic()
        for node, (joined, where) in news.items():
            if node != self.host:
                self.carry_out(self.supervisor.convention_changed(node, joined, where, now))

    def tell_convention_news(self, news: dict[str, tuple[bool, str]]) -> None:
        """Only the first host's actor system hears of members joining and
        leaving: a replica there tells a leader on another host."""
        if self.group is None:
            return
        leader = self.group.leader
        self.news_told_to = (leader, self.group.term)
        address = self.peers.get(leader) if leader else None
        if address is not None and not self.is_local_peer(leader):
            self.send(address, ConventionNews(members=dict(news)))

    # -- routing --------------------------------------------------------------

    def receiveMsg_LeaderChange(self, message: LeaderChange, sender) -> None:
        if message.term < self.terms.get(message.cluster, 0):
            return
        if self.leaders.get(message.cluster) == message.leader and self.terms.get(message.cluster) == message.term:
            return
        self.leaders[message.cluster] = message.leader
        self.terms[message.cluster] = message.term
        if self.acting_term:
            log().info("cluster %s: leader %s in term %d", message.cluster, message.leader, message.term)
            self.broadcast_map()

    def map_update(self) -> MapUpdate:
        return MapUpdate(
            epoch=self.map.epoch,
            slots=self.map.slots,
            members={cluster: self.map.replicas(cluster) for cluster in self.map.clusters},
            leaders={cluster: self.leaders.get(cluster) for cluster in self.map.clusters},
            terms={cluster: self.terms.get(cluster, 0) for cluster in self.map.clusters},
            addresses={r.replica: r.address for r in self.supervisor.servers.values() if r.address is not None},
            read_from_followers=self.topology.transactions.read_from == "follower",
            max_clock_offset=self.topology.transactions.max_clock_offset_ms / 1000,
            coordinators=self.coordinator_addresses(),
            coordinator_term=self.acting_term,
        )

    def broadcast_map(self) -> None:
        update = self.map_update()
        for record in self.supervisor.running():
            self.send(record.address, update)
        for subscriber, _ in self.subscribers:
            self.send(subscriber, update)

    def receiveMsg_Subscribe(self, message: Subscribe, sender) -> None:
        self.subscribe(sender, message.pid)
        self.tell_peers(ClerkSubscription(clerk=sender, pid=message.pid, subscribed=True))
        if self.acting_term:
            self.send(sender, self.map_update())

    def receiveMsg_Unsubscribe(self, message: Unsubscribe, sender) -> None:
        self.unsubscribe(sender)
        self.tell_peers(ClerkSubscription(clerk=sender, pid=0, subscribed=False))

    def receiveMsg_ClerkSubscription(self, message: ClerkSubscription, sender) -> None:
        if not message.subscribed:
            self.unsubscribe(message.clerk)
        elif self.subscribe(message.clerk, message.pid) and self.acting_term:
            self.send(message.clerk, self.map_update())

    def subscribe(self, clerk, pid: int) -> bool:
        """Whether `clerk` is a new subscriber."""
        if any(address == clerk for address, _ in self.subscribers):
            return False
        self.subscribers.append((clerk, pid))
        if self.acting_term:
            self.write_pids()
        return True

    def unsubscribe(self, clerk) -> None:
        self.subscribers = [(address, pid) for address, pid in self.subscribers if address != clerk]

    def tell_peers(self, message) -> None:
        for peer, address in self.peers.items():
            if peer != self.replica_id:
                self.send(address, message)

    # -- administration ---------------------------------------------------------

    def unknown_server(self, server: str) -> AdminReply:
        known = ", ".join(sorted(self.supervisor.servers)) or "none"
        return AdminReply(ok=False, message=f"unknown server {server!r} (servers: {known})")

    def serve_sleep_or_isolate(self, message: Sleep | Isolate, asker) -> None:
        record = self.supervisor.servers.get(message.server)
        what = "sleep" if isinstance(message, Sleep) else "isolate"
        if record is None:
            self.send(asker, self.unknown_server(message.server))
            return
        if not 0 < message.seconds <= MAX_FAULT_SECONDS:
            self.send(asker, AdminReply(ok=False, message=f"{what} seconds must be in (0, {MAX_FAULT_SECONDS}], "
                                                          f"got {message.seconds:g}"))
            return
        now = time.monotonic()
        if isinstance(message, Sleep):
            self.supervisor.asleep_for(message.server, message.seconds, now)
            answer = f"{message.server} sleeps for {message.seconds:g} s"
        else:
            self.supervisor.isolated_for(message.server, message.seconds, now)
            answer = f"{message.server} is cut off from its peers for {message.seconds:g} s"
        self.send(record.address, message)
        self.send(asker, AdminReply(ok=True, message=answer))

    def serve_kill(self, message: Kill, asker) -> None:
        record = self.supervisor.servers.get(message.server)
        if record is None:
            self.send(asker, self.unknown_server(message.server))
            return
        if not record.alive or not record.pid:
            self.send(asker, AdminReply(ok=False, message=f"{message.server} is not running right now (restarting?)"))
            return
        if not self.supervisor.is_local(record):
            # Its PID is on another machine: ask it to exit instead; it is restarted all the same.
            self.send(record.address, ActorExitRequest())
            self.send(asker, AdminReply(ok=True, message=f"asked {message.server} on host {record.host} to exit; "
                                                        "it will be restarted"))
            return
        kill(record.pid)
        self.send(asker, AdminReply(ok=True, message=f"killed {message.server} (pid {record.pid}); it will be restarted"))

    def serve_process_list(self, asker) -> None:
        # Only `stop` asks, on the first host: nothing is restarted from now on,
        # by this replica or a peer, and the other hosts' servers and
        # coordinator replicas stop with the system (their actor systems keep
        # running). The PIDs are this host's, so only the first host's go back.
        self.stopping = True
        self.tell_peers(ProcessList())
        self.carry_out(self.supervisor.shut_down())
        value = {"data_dir": os.fspath(self.data_dir), "pids": self.pids()} if self.on_first_host else {}
        self.send(asker, AdminReply(ok=True, value=value))
        self.leave_if_remote()

    def receiveMsg_ProcessList(self, message: ProcessList, sender) -> None:
        if self.acting_term or sender not in self.peers.values():
            self.request(message, sender)
        else:
            self.stopping = True  # the acting peer is stopping the system
            self.leave_if_remote()

    @property
    def on_first_host(self) -> bool:
        """Whether this replica runs where `stop` runs and clerks are created."""
        first = self.topology.leader_host
        return first is None or self.host == first.name

    def leave_if_remote(self) -> None:
        """The system stops: `stop` ends every process of the first host, and
        a replica on another host ends itself."""
        if not self.on_first_host:
            self.send(self.myAddress, ActorExitRequest())

    def pids(self) -> list[int]:
        """This host's processes of the system (clerks are the first host's)."""
        pids = [self.admin_pid]
        pids += [pid for peer, pid in self.peer_pids.items() if pid and self.is_local_peer(peer)]
        pids += self.supervisor.local_pids() if self.supervisor is not None else []
        pids += [pid for _, pid in self.subscribers if pid] if self.on_first_host else []
        return sorted(set(pids))

    def write_pids(self) -> None:
        """Every process this system runs on this host, and its session, for
        `stop`; the admin port the launcher recorded stays."""
        path = self.data_dir / PIDS_FILE
        temporary = path.with_suffix(f".{self.replica_id}.tmp")
        try:
            recorded = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            recorded = {}
        kept = {"admin_port": recorded["admin_port"]} if isinstance(recorded, dict) and "admin_port" in recorded else {}
        try:
            temporary.write_text(json.dumps({"pids": self.pids(), "session": os.getsid(0), **kept}))
            temporary.replace(path)
        except OSError as error:
            # Supervision goes on: stop also finds every process by its session.
            log().error("%s: cannot write %s: %s", self.replica_id, path, error)

    # -- status ---------------------------------------------------------------

    def serve_status(self, asker) -> None:
        if self.status_round is not None:
            self.status_round.askers.append(asker)
            return
        now = time.monotonic()
        self.round_counter += 1
        self.status_round = StatusRound(round=self.round_counter, askers=[asker])
        probe = ReplicaStatusRequest(round=self.round_counter, with_metrics=True)
        for record in self.supervisor.answering(now):
            self.send(record.address, probe)
        # Clerks answer for the next round: a status never waits for an application's process.
        for subscriber, _ in self.subscribers:
            self.send(subscriber, ClerkMetricsRequest())
        self.wakeupAfter(STATUS_DEADLINE, payload=("status", self.round_counter, self.acting_term))
        self.finish_status(now)

    def receiveMsg_ReplicaStatusReply(self, message: ReplicaStatusReply, sender) -> None:
        if not self.acting_term:
            return
        now, wall = time.monotonic(), time.time()
        self.carry_out(self.supervisor.answered(message.replica, now))
        if message.round == LIVENESS_ROUND:
            return
        if message.round == RECONFIG_ROUND:
            self.reconfig.observe_replica_status(message.replica, message.status, wall)
            self.reconfig_changed()
            return
        current = self.status_round
        if current is None or message.round != current.round:
            return
        current.reports[message.replica] = message.status
        self.finish_status(now)

    def receiveMsg_ClerkMetricsReply(self, message: ClerkMetricsReply, sender) -> None:
        self.clerk_metrics[message.clerk] = (sender, message.metrics)

    def finish_status(self, now: float, deadline_passed: bool = False) -> None:
        """Answer the round once every server that should answer has, or its deadline passed."""
        current = self.status_round
        if current is None:
            return
        if not deadline_passed and any(r.replica not in current.reports for r in self.supervisor.answering(now)):
            return
        # Only supervised replicas are shown with a last report: one a job stopped never comes back.
        self.last_reports = {replica: report for replica, report in {**self.last_reports, **current.reports}.items()
                             if replica in self.supervisor.servers}
        self.status_round = None

        def answer() -> None:
            pids = {peer: self.peer_pids.get(peer, 0) for peer in self.topology.coordinator.replica_ids}
            running = {peer: self.peer_running(peer, now) for peer in pids}
            status = build_status(shard_map=self.reconfig.map, supervisor=self.supervisor, reports=current.reports,
                                  last_reports=self.last_reports, leaders=self.leaders, terms=self.terms,
                                  jobs=self.reconfig.jobs, now=now, admin_pid=self.admin_pid,
                                  clerks=len(self.subscribers), clerk_metrics=self.subscribed_clerk_metrics(),
                                  coordinator=coordinator_shown(self.group.status(), pids, running, self.placement))
            for asker in current.askers:
                self.send(asker, StatusReply(status=status))

        self.once_persisted(answer)

    def is_local_peer(self, peer: str) -> bool:
        """Whether coordinator replica `peer` runs on this host (its PID means something here)."""
        return self.placement.get(peer, "") == self.host

    def peer_running(self, peer: str, now: float) -> bool:
        """By its PID on this host, else by having been heard from lately."""
        if self.is_local_peer(peer):
            pid = self.peer_pids.get(peer, 0)
            return bool(pid) and process_running(pid)
        return now - self.peer_heard_at.get(peer, 0.0) <= PEER_SILENCE

    def subscribed_clerk_metrics(self) -> dict[str, dict]:
        """The latest snapshot of each clerk still subscribed (one that left is forgotten)."""
        self.clerk_metrics = {clerk: (address, snapshot) for clerk, (address, snapshot) in self.clerk_metrics.items()
                              if any(address == subscriber for subscriber, _ in self.subscribers)}
        return {clerk: snapshot for clerk, (_, snapshot) in self.clerk_metrics.items()}

    # -- reconfiguration ----------------------------------------------------------------

    def serve_add_replica(self, message: AddReplica, asker) -> None:
        if message.cluster in self.map.clusters:
            try:
                self.supervisor.check_replica_fits(message.cluster, self.map.replicas(message.cluster))
            except PlacementError as error:
                self.send(asker, AdminReply(ok=False, message=str(error)))
                return
        self.submit(asker, lambda wall: self.reconfig.add_replica(message.cluster, wall))

    def serve_add_cluster(self, message: AddCluster, asker) -> None:
        try:
            self.supervisor.check_cluster_fits(message.replicas)
        except PlacementError as error:
            self.send(asker, AdminReply(ok=False, message=str(error)))
            return
        self.submit(asker, lambda wall: self.reconfig.add_cluster(message.replicas, wall))

    def submit(self, asker, start) -> None:
        """Start a job and answer once it is persisted; the reconfig wakeup carries it out."""
        now, wall = time.monotonic(), time.time()
        try:
            job = start(wall)
        except ReconfigError as error:
            self.send(asker, AdminReply(ok=False, message=str(error)))
            return
        log().info("job %s started: %s", job.id, job.doing)
        self.drive_jobs(now, wall)
        reply = AdminReply(ok=True, message=f"{job.id}: {job.doing}", value={"job": job.id})
        self.save_then(lambda: self.send(asker, reply))

    def serve_reconfig_status(self, message: ReconfigStatus, asker) -> None:
        def answer() -> None:
            jobs = [job.to_dict() for job in self.reconfig.jobs if not message.job or job.id == message.job]
            if message.job and not jobs:
                self.send(asker, AdminReply(ok=False, message=f"no job {message.job!r} "
                                                             "(finished jobs are forgotten after a while)"))
            else:
                self.send(asker, AdminReply(ok=True, value={"jobs": jobs}))

        self.once_persisted(answer)

    def receiveMsg_MoveProgress(self, message: MoveProgress, sender) -> None:
        if self.acting_term:
            now, wall = time.monotonic(), time.time()
            self.reconfig.observe_move(message, wall)
            self.reconfig_changed()
            if message.stage == MOVE_DROPPED:
                self.drive_jobs(now, wall)  # start the next move now rather than at the next poll

    def receiveMsg_MembershipReport(self, message: MembershipReport, sender) -> None:
        if self.acting_term:
            self.reconfig.observe_membership(message, time.time())
            self.reconfig_changed()

    def drive_jobs(self, now: float, wall: float) -> None:
        actions = self.reconfig.drive(wall, self.leaders)
        for action in actions:
            if isinstance(action, StartServer):
                self.carry_out(self.supervisor.assign_host(action.cluster, action.replica,
                                                           self.reconfig.map.replicas(action.cluster)))
        self.reconfig_changed(then=lambda: self.carry_out_jobs(actions, now))

    def carry_out_jobs(self, actions: list, now: float) -> None:
        for action in actions:
            match action:
                case SendToLeader(cluster=cluster, message=request):
                    record = self.supervisor.servers.get(self.leaders.get(cluster) or "")
                    if record is not None and record.alive and record.address is not None:
                        self.send(record.address, request)
                case StartServer(cluster=cluster, replica=replica):
                    self.carry_out(self.supervisor.supervise(cluster, replica, now))
                case StopServer(replica=replica):
                    self.carry_out(self.supervisor.release(replica))
                case ProbeReplicas(cluster=cluster):
                    probe = ReplicaStatusRequest(round=RECONFIG_ROUND)
                    for record in self.supervisor.running(cluster):
                        self.send(record.address, probe)

    def reconfig_changed(self, then: Callable[[], None] | None = None) -> None:
        """Persist what reconfiguration changed, then carry out `then`; a new
        map also goes to every subscriber once persisted."""
        new_map = self.reconfig.map

        def persisted() -> None:
            if new_map is not self.map and new_map.epoch > self.map.epoch:
                self.map = new_map
                self.forget_clusters_gone()
                log().info("shard map epoch %d", self.map.epoch)
                self.broadcast_map()
            self.log_finished_jobs()
            if then is not None:
                then()

        self.save_then(persisted)

    def log_finished_jobs(self) -> None:
        running = {job.id for job in self.reconfig.running()}
        for job_id in sorted(self.running_jobs - running):
            job = self.reconfig.job(job_id)
            if job is None:
                continue
            self.metrics.count("raftline_jobs_total", kind=job.kind, state=job.state)
            if job.state == FAILED:
                log().warning("job %s failed: %s: %s", job.id, job.doing, job.error)
            else:
                log().info("job %s finished: %s", job.id, job.doing)
        self.running_jobs = running

    # -- timers and lifecycle ------------------------------------------------------

    def receiveMsg_WakeupMessage(self, message: WakeupMessage, sender) -> None:
        now, wall = time.monotonic(), time.time()
        match message.payload:
            case ("tick",):
                if self.group is not None:
                    self.guarded(self.group.tick)
                    self.wakeupAfter(timedelta(milliseconds=self.topology.raft.tick_ms), payload=("tick",))
                return
        if self.acting_term == 0 or message.payload[-1] != self.acting_term:
            return  # a timer of an earlier turn at acting
        match message.payload:
            case ("status", number, _):
                if self.status_round is not None and self.status_round.round == number:
                    self.finish_status(now, deadline_passed=True)
            case ("restart", replica, generation, _):
                self.carry_out(self.supervisor.restart(replica, generation, now))
            case ("liveness", _):
                self.sweep(now, wall)
                self.wakeupAfter(LIVENESS_INTERVAL, payload=("liveness", self.acting_term))
            case ("reconfig", _):
                if not self.supervisor.stopping:
                    self.drive_jobs(now, wall)
                self.wakeupAfter(RECONFIG_INTERVAL, payload=("reconfig", self.acting_term))
            case ("reap", pid, _):
                self.carry_out(self.supervisor.reap(pid))

    def receiveMsg_ActorExitRequest(self, message: ActorExitRequest, sender) -> None:
        self.stopping = True
        if self.supervisor is not None:
            self.supervisor.stop()
        self.close_storage()

    def close_storage(self) -> None:
        if self.storage is not None and hasattr(self.storage, "close"):
            self.storage.close()
        self.storage = None

    def receiveMsg_PoisonMessage(self, message: PoisonMessage, sender) -> None:
        log().warning("undeliverable message %s", type(message.poisonMessage).__name__)


class CoordinatorSpawner(ActorTypeDispatcher):
    """Placed on a coordinator replica's host to (re)create it there: looks it
    up by its global name, which that host's actor system registers (and
    creates a fresh replica when none runs), sends it its Boot, and exits
    once the replica answers, or after SPAWN_WAIT (the acting replica's
    sweep tries again). It outlives the lookup on purpose: an actor that
    exits before its creation request is answered loses what it sent."""

    @staticmethod
    def actorSystemCapabilityCheck(capabilities: dict, requirements: dict) -> bool:
        return on_required_node(capabilities, requirements)

    def receiveMsg_SpawnCoordinator(self, message: SpawnCoordinator, sender) -> None:
        set_process_title(f"raftline spawner of {message.boot.replica}")
        replica = self.createActor(Coordinator, globalName=coordinator_name(message.boot.replica))
        self.send(replica, message.boot)
        self.wakeupAfter(SPAWN_WAIT)

    def receiveMsg_CoordinatorStarted(self, message: CoordinatorStarted, sender) -> None:
        self.send(self.myAddress, ActorExitRequest())

    def receiveMsg_WakeupMessage(self, message: WakeupMessage, sender) -> None:
        self.send(self.myAddress, ActorExitRequest())

    def receiveMsg_ActorExitRequest(self, message: ActorExitRequest, sender) -> None:
        pass  # nothing of its own to close

    def receiveMsg_ChildActorExited(self, message: ChildActorExited, sender) -> None:
        pass  # the replica is its actor system's child (a global name), never this one's

    def receiveMsg_PoisonMessage(self, message: PoisonMessage, sender) -> None:
        log().warning("spawner: undeliverable message %s", type(message.poisonMessage).__name__)


def in_this_session(pid: int) -> bool:
    """Whether process `pid` is one of this system's on this host: in the
    admin's session, which every actor it forks inherits."""
    try:
        return pid > 0 and os.getsid(pid) == os.getsid(0)
    except OSError:
        return False


def kill(pid: int) -> None:
    """SIGKILL process `pid` of this host, if it still runs."""
    if process_running(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
