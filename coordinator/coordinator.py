"""The Coordinator actor (docs/DESIGN.md sections 5 and 6): the Thespian shell
around the coordinator's pure pieces.

- supervisor.py: which servers run where, restarts, liveness, lost hosts and
  their replacement;
- reconfig.py: reconfiguration jobs and the shard map they change;
- status.py: the status dict built from a status round;
- state.py: the map, jobs and placement in SQLite.

What is left here: translating messages and timers into calls of those
pieces and carrying out what they return (creating server actors, sending,
timers, PID checks and signals, files), routing (leaders, terms, the
subscribers that get a MapUpdate on every change).

Clocks: a handler reads what it needs once, at its top, and passes it down:
`time.monotonic()` for supervision and status (intervals only),
`time.time()` for reconfiguration jobs, whose times are persisted across
restarts and shown to people.

Persistence comes first: what a reconfiguration round or a liveness sweep
changed is saved before any action it decided is carried out.

It never blocks and never asks: every answer goes back to the asker's address
when ready.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

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
from actors.messages import (
    MOVE_DROPPED,
    AddCluster,
    AddReplica,
    AdminReply,
    Boot,
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
    ServerStarted,
    Sleep,
    StatusReply,
    StatusRequest,
    Subscribe,
    Unsubscribe,
    WhoServes,
    WhoServesReply,
)
from actors.process import process_running, set_process_title
from coordinator.placement import PlacementError
from coordinator.reconfig import ProbeReplicas, Reconfig, ReconfigError, SendToLeader, StartServer, StopServer
from coordinator.shardmap import ShardMap
from coordinator.state import CoordinatorState
from coordinator.status import StatusRound, build_status
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
    ServerRecord,
    SetDataAside,
    Supervisor,
    WritePids,
)
from coordinator.topology import Topology, load_topology

log = logging.getLogger("raftline.coordinator")

STATUS_DEADLINE = timedelta(milliseconds=700)
LIVENESS_INTERVAL = timedelta(milliseconds=500)
RECONFIG_INTERVAL = timedelta(milliseconds=300)
REAP_GRACE = timedelta(seconds=3)
"""How long a stopped server may take to exit before it is SIGKILLed."""
RECONFIG_ROUND = 0
"""The ReplicaStatusRequest round of reconfiguration probes (status rounds count from 1)."""
LIVENESS_ROUND = -1
"""The ReplicaStatusRequest round of the heartbeat to servers on other hosts."""


class Coordinator(ActorTypeDispatcher):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.topology: Topology | None = None
        self.data_dir: Path | None = None
        self.state: CoordinatorState | None = None
        self.data_dir_lock = None
        self.map: ShardMap | None = None
        self.reconfig: Reconfig | None = None
        self.supervisor: Supervisor | None = None
        self.leaders: dict[str, str | None] = {}
        self.terms: dict[str, int] = {}
        self.subscribers: list[tuple[object, int]] = []  # (address, pid); addresses are not hashable
        self.status_round: StatusRound | None = None
        self.round_counter = 0
        self.last_reports: dict[str, dict] = {}
        """Replica -> its last status report, shown while it is silent."""

    # -- boot -----------------------------------------------------------------

    def receiveMsg_Boot(self, message: Boot, sender) -> None:
        if self.topology is not None:
            return  # a re-run handler or a second launcher: already booted
        now = time.monotonic()
        topology = self.topology = load_topology(message.topology)
        self.data_dir = Path(message.data_dir)
        set_process_title("raftline coordinator")
        try:
            # Held until this process ends: a second coordinator on this data never opens it.
            self.data_dir_lock = lock_data_dir(self.data_dir / "coordinator")
        except DataDirInUse as error:
            log.error("%s; this coordinator exits without opening its state", error)
            self.send(self.myAddress, ActorExitRequest())
            return
        self.state = CoordinatorState(self.data_dir / "coordinator" / "coordinator.db")
        self.map = self.state.stored_map() or ShardMap.initial(topology.cluster_names, topology.members(),
                                                               topology.slots)
        grace = 2 * topology.transactions.prepare_timeout_ms / 1000
        # First boot: the map is the epoch-1 one, every cluster's founding membership.
        self.reconfig = self.state.stored_reconfig(self.map, grace) or Reconfig.fresh(self.map, grace)
        self.supervisor = Supervisor(topology, self.state.stored_dict("placement"),
                                     self.state.stored_dict("replacements"))
        self.carry_out(self.supervisor.place_unplaced(self.map))
        if topology.hosts:
            # Members that joined before this boot are announced right away.
            self.notifyOnSystemRegistrationChanges(True)
        self.save()
        self.leaders = {cluster: None for cluster in self.map.clusters}
        self.terms = {cluster: 0 for cluster in self.map.clusters}
        removing = self.reconfig.removing()
        actions = []
        for cluster in self.map.clusters:
            for replica in self.map.replicas(cluster):
                if replica not in removing:
                    actions += self.supervisor.supervise(cluster, replica, now)
        self.carry_out(actions)
        self.wakeupAfter(LIVENESS_INTERVAL, payload=("liveness",))
        self.wakeupAfter(RECONFIG_INTERVAL, payload=("reconfig",))
        log.warning("coordinator booted %d servers from %s (epoch %d, %d reconfiguration jobs to resume)",
                    len(self.supervisor.servers), message.topology, self.map.epoch, len(self.reconfig.running()))

    # -- supervision ------------------------------------------------------------

    def carry_out(self, actions: list[Action]) -> None:
        """Carry out the supervisor's actions in order; the PID file and the
        map go out once, after the rest."""
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
                    self.wakeupAfter(timedelta(seconds=delay), payload=("restart", replica, generation))
                case Reap(pid=pid):
                    self.wakeupAfter(REAP_GRACE, payload=("reap", pid))
                case KillProcess(pid=pid):
                    kill(pid)
                case SetDataAside(replica=replica):
                    self.set_data_aside(replica)
                case ForgetLeader(cluster=cluster, replica=replica):
                    if self.leaders.get(cluster) == replica:
                        self.leaders[cluster] = None
                case Log(text=text):
                    log.warning("%s", text)
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
                seed=int.from_bytes(os.urandom(4), "big"),
                slot_count=len(self.map.slots),
                founding_slots=founding.slots,
            ),
        )

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
        log.warning("server %s stopped; its data is in %s", replica, target)

    def receiveMsg_ServerStarted(self, message: ServerStarted, sender) -> None:
        self.carry_out(self.supervisor.started(message.replica, sender, message.pid, time.monotonic()))

    def receiveMsg_ChildActorExited(self, message: ChildActorExited, sender) -> None:
        self.carry_out(self.supervisor.exited(message.childAddress))

    def receiveMsg_ActorSystemConventionUpdate(self, message: ActorSystemConventionUpdate, sender) -> None:
        node = (message.remoteCapabilities or {}).get("node")
        self.carry_out(self.supervisor.convention_changed(node, message.remoteAdded, str(message.remoteAdminAddress),
                                                          time.monotonic()))

    def sweep(self, now: float, wall: float) -> None:
        """The liveness sweep: the PIDs of this host's servers are checked here
        (I/O), the rest is the supervisor's; a replacement it started is
        persisted before anything else happens."""
        processes = self.supervisor.local_processes()
        exited = {replica for replica, pid in processes.items() if not process_running(pid)}
        actions = self.supervisor.sweep(now, exited, ReplacementJobs(reconfig=self.reconfig, job_time=wall))
        self.save()
        self.carry_out(actions)
        self.wakeupAfter(LIVENESS_INTERVAL, payload=("liveness",))

    # -- routing --------------------------------------------------------------

    def receiveMsg_LeaderChange(self, message: LeaderChange, sender) -> None:
        if message.cluster not in self.terms or message.term < self.terms[message.cluster]:
            return
        if self.leaders.get(message.cluster) == message.leader and self.terms[message.cluster] == message.term:
            return
        self.leaders[message.cluster] = message.leader
        self.terms[message.cluster] = message.term
        log.warning("cluster %s: leader %s in term %d", message.cluster, message.leader, message.term)
        self.broadcast_map()

    def map_update(self) -> MapUpdate:
        return MapUpdate(
            epoch=self.map.epoch,
            slots=self.map.slots,
            members={cluster: self.map.replicas(cluster) for cluster in self.map.clusters},
            leaders=dict(self.leaders),
            terms=dict(self.terms),
            addresses={r.replica: r.address for r in self.supervisor.servers.values() if r.address is not None},
            read_from_followers=self.topology.transactions.read_from == "follower",
            max_clock_offset=self.topology.transactions.max_clock_offset_ms / 1000,
        )

    def broadcast_map(self) -> None:
        update = self.map_update()
        for record in self.supervisor.running():
            self.send(record.address, update)
        for subscriber, _ in self.subscribers:
            self.send(subscriber, update)

    def receiveMsg_Subscribe(self, message: Subscribe, sender) -> None:
        if all(address != sender for address, _ in self.subscribers):
            self.subscribers.append((sender, message.pid))
            self.write_pids()
        if self.map is not None:
            self.send(sender, self.map_update())

    def receiveMsg_Unsubscribe(self, message: Unsubscribe, sender) -> None:
        self.subscribers = [(address, pid) for address, pid in self.subscribers if address != sender]
        self.write_pids()

    def receiveMsg_WhoServes(self, message: WhoServes, sender) -> None:
        owners = {key: self.map.owner(key) for key in message.keys}
        self.send(sender, WhoServesReply(epoch=self.map.epoch, owners=owners, leaders=dict(self.leaders)))

    # -- administration ---------------------------------------------------------

    def supervised(self, server: str) -> ServerRecord | None:
        return self.supervisor.servers.get(server) if self.supervisor is not None else None

    def unknown_server(self, server: str) -> AdminReply:
        known = ", ".join(sorted(self.supervisor.servers if self.supervisor is not None else ())) or "none"
        return AdminReply(ok=False, message=f"unknown server {server!r} (servers: {known})")

    def receiveMsg_Sleep(self, message: Sleep, sender) -> None:
        record = self.supervised(message.server)
        if record is None:
            self.send(sender, self.unknown_server(message.server))
            return
        if not 0 < message.seconds <= 3600:
            self.send(sender, AdminReply(ok=False, message=f"sleep seconds must be in (0, 3600], got {message.seconds:g}"))
            return
        self.supervisor.asleep_for(message.server, message.seconds, time.monotonic())
        self.send(record.address, message)
        self.send(sender, AdminReply(ok=True, message=f"{message.server} sleeps for {message.seconds:g} s"))

    def receiveMsg_Isolate(self, message: Isolate, sender) -> None:
        record = self.supervised(message.server)
        if record is None:
            self.send(sender, self.unknown_server(message.server))
            return
        if not 0 < message.seconds <= 3600:
            self.send(sender, AdminReply(ok=False, message=f"isolate seconds must be in (0, 3600], got {message.seconds:g}"))
            return
        self.supervisor.isolated_for(message.server, message.seconds, time.monotonic())
        self.send(record.address, message)
        self.send(sender, AdminReply(ok=True, message=f"{message.server} is cut off from its peers for {message.seconds:g} s"))

    def receiveMsg_Kill(self, message: Kill, sender) -> None:
        record = self.supervised(message.server)
        if record is None:
            self.send(sender, self.unknown_server(message.server))
            return
        if not record.alive or not record.pid:
            self.send(sender, AdminReply(ok=False, message=f"{message.server} is not running right now (restarting?)"))
            return
        if not self.supervisor.is_local(record):
            # Its PID is on another machine: ask it to exit instead; it is restarted all the same.
            self.send(record.address, ActorExitRequest())
            self.send(sender, AdminReply(ok=True, message=f"asked {message.server} on host {record.host} to exit; "
                                                          "it will be restarted"))
            return
        kill(record.pid)
        self.send(sender, AdminReply(ok=True, message=f"killed {message.server} (pid {record.pid}); it will be restarted"))

    def receiveMsg_ProcessList(self, message: ProcessList, sender) -> None:
        # Only `stop` asks: nothing is restarted from now on, and members' servers
        # stop with the system (the members' actor systems keep running).
        if self.supervisor is not None:
            self.carry_out(self.supervisor.shut_down())
        self.send(sender, AdminReply(ok=True, value={"data_dir": os.fspath(self.data_dir or ""), "pids": self.pids()}))

    def pids(self) -> list[int]:
        pids = [os.getpid(), os.getppid()]  # this actor and the actor system's admin
        pids += self.supervisor.local_pids() if self.supervisor is not None else []
        pids += [pid for _, pid in self.subscribers if pid]
        return sorted(set(pids))

    def write_pids(self) -> None:
        if self.data_dir is None:
            return
        path = self.data_dir / "pids.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"pids": self.pids()}))
        temporary.replace(path)

    # -- status ---------------------------------------------------------------

    def receiveMsg_StatusRequest(self, message: StatusRequest, sender) -> None:
        if self.map is None:
            self.send(sender, StatusReply(status={"epoch": 0, "clusters": {}, "booting": True}))
            return
        if self.status_round is not None:
            self.status_round.askers.append(sender)
            return
        now = time.monotonic()
        self.round_counter += 1
        self.status_round = StatusRound(round=self.round_counter, askers=[sender])
        probe = ReplicaStatusRequest(round=self.round_counter)
        for record in self.supervisor.answering(now):
            self.send(record.address, probe)
        self.wakeupAfter(STATUS_DEADLINE, payload=("status", self.round_counter))
        self.finish_status(now)

    def receiveMsg_ReplicaStatusReply(self, message: ReplicaStatusReply, sender) -> None:
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
        status = build_status(shard_map=self.map, supervisor=self.supervisor, reports=current.reports,
                              last_reports=self.last_reports, leaders=self.leaders, terms=self.terms,
                              jobs=self.reconfig.jobs, now=now, admin_pid=os.getppid(), clerks=len(self.subscribers))
        for asker in current.askers:
            self.send(asker, StatusReply(status=status))
        self.status_round = None

    # -- reconfiguration ----------------------------------------------------------------

    def receiveMsg_AddReplica(self, message: AddReplica, sender) -> None:
        if self.supervisor is not None and message.cluster in self.map.clusters:
            try:
                self.supervisor.check_replica_fits(message.cluster, self.map.replicas(message.cluster))
            except PlacementError as error:
                self.send(sender, AdminReply(ok=False, message=str(error)))
                return
        self.submit(sender, lambda wall: self.reconfig.add_replica(message.cluster, wall))

    def receiveMsg_RemoveReplica(self, message: RemoveReplica, sender) -> None:
        self.submit(sender, lambda wall: self.reconfig.remove_replica(message.server, wall))

    def receiveMsg_AddCluster(self, message: AddCluster, sender) -> None:
        if self.supervisor is not None:
            try:
                self.supervisor.check_cluster_fits(message.replicas)
            except PlacementError as error:
                self.send(sender, AdminReply(ok=False, message=str(error)))
                return
        self.submit(sender, lambda wall: self.reconfig.add_cluster(message.replicas, wall))

    def receiveMsg_RemoveCluster(self, message: RemoveCluster, sender) -> None:
        self.submit(sender, lambda wall: self.reconfig.remove_cluster(message.cluster, wall))

    def submit(self, sender, start) -> None:
        """Start a job and answer at once; the reconfig wakeup carries it out."""
        if self.reconfig is None:
            self.send(sender, AdminReply(ok=False, message="the coordinator is still booting; retry in a moment"))
            return
        now, wall = time.monotonic(), time.time()
        try:
            job = start(wall)
        except ReconfigError as error:
            self.send(sender, AdminReply(ok=False, message=str(error)))
            return
        log.warning("job %s started: %s", job.id, job.doing)
        self.drive_jobs(now, wall)
        self.send(sender, AdminReply(ok=True, message=f"{job.id}: {job.doing}", value={"job": job.id}))

    def receiveMsg_ReconfigStatus(self, message: ReconfigStatus, sender) -> None:
        if self.reconfig is None:
            self.send(sender, AdminReply(ok=True, value={"jobs": []}))
            return
        jobs = [job.to_dict() for job in self.reconfig.jobs if not message.job or job.id == message.job]
        if message.job and not jobs:
            self.send(sender, AdminReply(ok=False, message=f"no job {message.job!r} (finished jobs are forgotten after a while)"))
            return
        self.send(sender, AdminReply(ok=True, value={"jobs": jobs}))

    def receiveMsg_MoveProgress(self, message: MoveProgress, sender) -> None:
        if self.reconfig is not None:
            now, wall = time.monotonic(), time.time()
            self.reconfig.observe_move(message, wall)
            self.reconfig_changed()
            if message.stage == MOVE_DROPPED:
                self.drive_jobs(now, wall)  # start the next move now rather than at the next poll

    def receiveMsg_MembershipReport(self, message: MembershipReport, sender) -> None:
        if self.reconfig is not None:
            self.reconfig.observe_membership(message, time.time())
            self.reconfig_changed()

    def drive_jobs(self, now: float, wall: float) -> None:
        actions = self.reconfig.drive(wall, self.leaders)
        for action in actions:
            if isinstance(action, StartServer):
                self.carry_out(self.supervisor.assign_host(action.cluster, action.replica,
                                                           self.reconfig.map.replicas(action.cluster)))
        self.reconfig_changed()  # persisted before anything it decided happens
        for action in actions:
            match action:
                case SendToLeader(cluster=cluster, message=request):
                    record = self.supervised(self.leaders.get(cluster) or "")
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

    def reconfig_changed(self) -> None:
        """Persist what reconfiguration changed; a new map also goes to every subscriber."""
        self.save()
        new_map = self.reconfig.map
        if new_map is not self.map:
            self.map = new_map
            for cluster in self.map.clusters:
                self.leaders.setdefault(cluster, None)
                self.terms.setdefault(cluster, 0)
            for cluster in set(self.leaders) - set(self.map.clusters):
                del self.leaders[cluster], self.terms[cluster]
            log.warning("shard map epoch %d", self.map.epoch)
            self.broadcast_map()

    def save(self) -> None:
        self.state.save(self.reconfig, self.supervisor.placement, self.supervisor.replacements)

    # -- timers and lifecycle ------------------------------------------------------

    def receiveMsg_WakeupMessage(self, message: WakeupMessage, sender) -> None:
        now, wall = time.monotonic(), time.time()
        match message.payload:
            case ("status", number):
                if self.status_round is not None and self.status_round.round == number:
                    self.finish_status(now, deadline_passed=True)
            case ("restart", replica, generation):
                self.carry_out(self.supervisor.restart(replica, generation, now))
            case ("liveness",):
                self.sweep(now, wall)
            case ("reconfig",):
                if not self.supervisor.stopping:
                    self.drive_jobs(now, wall)
                self.wakeupAfter(RECONFIG_INTERVAL, payload=("reconfig",))
            case ("reap", pid):
                self.carry_out(self.supervisor.reap(pid))

    def receiveMsg_ActorExitRequest(self, message: ActorExitRequest, sender) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.state is not None:
            self.state.close()
            self.state = None

    def receiveMsg_PoisonMessage(self, message: PoisonMessage, sender) -> None:
        log.warning("undeliverable message %s", type(message.poisonMessage).__name__)


def kill(pid: int) -> None:
    """SIGKILL process `pid` of this host, if it still runs."""
    if process_running(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
