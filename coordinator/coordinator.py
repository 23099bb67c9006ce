"""The Coordinator actor: boot, supervision, shard map, timestamps, status (DESIGN.md section 5).

A thin Thespian shell: the shard map logic lives in shardmap.py, topology
checks in topology.py. What it keeps:
- the shard map and a timestamp high-water mark, persisted in SQLite under
  `<data_dir>/coordinator/` so a restart never hands out a timestamp twice;
- the servers it created as children, restarted from their own data
  directories when their process dies (ChildActorExited can arrive twice:
  only the exit of the *current* address of a replica counts);
- subscribers (clerks, servers) that get a MapUpdate on every leader change
  and every address change;
- status rounds: a scatter-gather to every server with a deadline, so a dead
  or sleeping server shows as such and never hangs the caller;
- multi-host (topology `hosts:`): each replica's host (placement.py), persisted
  with the map so a replica always restarts where its data is; servers are
  created with `targetActorRequirements={"node": host}`. Host liveness comes
  from the convention (`ActorSystemConventionUpdate`: a host joined or left)
  and from the coordinator's own heartbeat, since a dead member can go
  unnoticed by Thespian for minutes: remote servers are probed every
  LIVENESS_INTERVAL, one silent for SERVER_SILENCE is "unreachable", and a
  host whose every server is unreachable is lost. PIDs are checked (and
  killed) only on the coordinator's own host. A lost host's replicas are
  reported down; a host that joins again gets its servers back (they recover
  from their storage); with `placement: {on_host_loss: replace}` they are
  replaced on surviving hosts after `replace_after_ms` (add-replica, then
  remove-replica of the lost one), each on a host holding no replica of its
  cluster: when there is none, that is reported and retried every sweep;
- reconfiguration jobs (reconfig.py holds their logic): one wakeup every
  RECONFIG_INTERVAL drives every running job; the jobs, id counters and each
  cluster's founding membership are persisted with the map, in one write,
  before any action a round decided is carried out, so a restarted
  coordinator resumes every job where it stood.

It never blocks and never asks: every answer goes back to the asker's address
when ready.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import time
from dataclasses import dataclass, field
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
    ReplicaStatusReport,
    ReplicaStatusRequest,
    ServerConfig,
    ServerStarted,
    Serves,
    Sleep,
    StatusReport,
    StatusRequest,
    Subscribe,
    Timestamp,
    TimestampRequest,
    Unsubscribe,
    WhoServes,
)
from actors.process import process_running, set_process_title
from coordinator.placement import PlacementError, initial_placement, place_replica
from coordinator.reconfig import (
    DONE,
    RUNNING,
    ProbeReplicas,
    Reconfig,
    ReconfigError,
    SendToLeader,
    StartServer,
    StopServer,
)
from coordinator.shardmap import ShardMap
from coordinator.topology import Topology, load_topology

log = logging.getLogger("raftline.coordinator")

STATUS_DEADLINE = timedelta(milliseconds=700)
TIMESTAMP_RESERVE = 100_000
"""Timestamps reserved per durable write of the high-water mark."""
RESTART_BACKOFF = timedelta(milliseconds=200)
LIVENESS_INTERVAL = timedelta(milliseconds=500)
RECONFIG_INTERVAL = timedelta(milliseconds=300)
REAP_GRACE = timedelta(seconds=3)
"""How long a stopped server may take to exit before it is SIGKILLed."""
RECONFIG_ROUND = 0
"""The ReplicaStatusRequest round of reconfiguration probes (status rounds count from 1)."""
LIVENESS_ROUND = -1
"""The ReplicaStatusRequest round of the heartbeat to servers on other hosts."""
SERVER_SILENCE = 3.0
"""Seconds without an answer after which a server on another host is unreachable."""
FINISHED_JOBS_SHOWN = 5


@dataclass
class ServerRecord:
    """What the coordinator knows of one replica's process."""

    cluster: str
    replica: str
    address: object = None
    pid: int = 0
    alive: bool = False
    asleep_until: float = 0.0
    isolated_until: float = 0.0
    restarts: int = 0
    last_status: dict = field(default_factory=dict)
    host: str = ""
    """Its host's name; "" on a single-host deployment."""
    last_seen: float = 0.0
    """time.monotonic() of its last answer (servers on other hosts)."""
    unreachable: bool = False
    lost: bool = False
    """Down because its host was lost (not because it exited)."""


@dataclass
class HostState:
    """What the coordinator knows of one host of a multi-host deployment."""

    name: str
    up: bool = False
    lost_since: float = 0.0
    """time.monotonic() when it was declared lost (0: never, or back since)."""
    why: str = "has not joined yet"
    replacement: str = ""
    """Why its lost replicas are not being replaced ("" when they are, or need not be)."""


@dataclass
class StatusRound:
    round: int
    askers: list
    reports: dict = field(default_factory=dict)


class CoordinatorState:
    """The coordinator's durable state: map, reconfiguration jobs and timestamp high-water mark."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(os.fspath(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def put(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", (name, value))

    def put_many(self, values: dict[str, str]) -> None:
        """Write every value or none."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", values.items())

    def close(self) -> None:
        self.db.close()


class Coordinator(ActorTypeDispatcher):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.topology: Topology | None = None
        self.data_dir: Path | None = None
        self.state: CoordinatorState | None = None
        self.map: ShardMap | None = None
        self.reconfig: Reconfig | None = None
        self.saved: tuple[ShardMap | None, dict[str, str]] = (None, {})  # what `save` last wrote
        self.servers: dict[str, ServerRecord] = {}
        self.node = ""  # this host's name; "" on a single-host deployment
        self.hosts: dict[str, HostState] = {}
        self.placement: dict[str, str] = {}
        self.replacements: dict[str, str] = {}  # lost replica -> "add:<job>" or "remove:<job>"
        self.leaders: dict[str, str | None] = {}
        self.terms: dict[str, int] = {}
        self.subscribers: list[tuple[object, int]] = []  # (address, pid); addresses are not hashable
        self.ts_next = 1
        self.ts_reserved = 0
        self.status_round: StatusRound | None = None
        self.round_counter = 0
        self.stopping = False

    # -- boot -----------------------------------------------------------------

    def receiveMsg_Boot(self, message: Boot, sender) -> None:
        if self.topology is not None:
            return  # a re-run handler or a second launcher: already booted
        self.topology = load_topology(message.topology)
        self.data_dir = Path(message.data_dir)
        set_process_title("raftline coordinator")
        self.state = CoordinatorState(self.data_dir / "coordinator" / "coordinator.db")
        stored_map = self.state.get("map")
        if stored_map is None:
            topo = self.topology
            self.map = ShardMap.initial(topo.cluster_names, topo.members(), topo.slots)
        else:
            self.map = ShardMap.from_json(stored_map)
        grace = 2 * self.topology.transactions.prepare_timeout_ms / 1000
        stored_reconfig = self.state.get("reconfig")
        if stored_reconfig is None:
            # First boot: the map is the epoch-1 one, every cluster's founding membership.
            self.reconfig = Reconfig.fresh(self.map, grace)
        else:
            self.reconfig = Reconfig.from_json(stored_reconfig, self.map, grace)
        self.boot_hosts()
        self.save()
        self.ts_reserved = int(self.state.get("ts_reserved") or 0)
        self.ts_next = self.ts_reserved + 1  # never reuse what an earlier run may have handed out
        self.leaders = {cluster: None for cluster in self.map.clusters}
        self.terms = {cluster: 0 for cluster in self.map.clusters}
        removing = self.reconfig.removing()
        for cluster in self.map.clusters:
            for replica in self.map.replicas(cluster):
                if replica not in removing:
                    self.servers[replica] = ServerRecord(cluster=cluster, replica=replica,
                                                         host=self.placement.get(replica, ""))
                    if self.host_up(self.servers[replica].host):
                        self.start_server(replica)
        self.write_pids()
        self.wakeupAfter(LIVENESS_INTERVAL, payload=("liveness",))
        self.wakeupAfter(RECONFIG_INTERVAL, payload=("reconfig",))
        running = len(self.reconfig.running())
        log.warning("coordinator booted %d servers from %s (epoch %d, %d reconfiguration jobs to resume)",
                    len(self.servers), message.topology, self.map.epoch, running)

    def boot_hosts(self) -> None:
        """Multi-host: this host's name, every host's state, each replica's
        host (persisted, else the initial placement, for any replica without one)."""
        topo = self.topology
        if not topo.hosts:
            return
        self.node = topo.hosts[0].name
        self.hosts = {host.name: HostState(name=host.name) for host in topo.hosts}
        self.hosts[self.node] = HostState(name=self.node, up=True, why="")
        self.placement = json.loads(self.state.get("placement") or "{}")
        self.replacements = json.loads(self.state.get("replacements") or "{}")
        fresh = initial_placement(topo)
        for cluster in self.map.clusters:
            for replica in self.map.replicas(cluster):
                if replica not in self.placement:
                    self.placement[replica] = fresh.get(replica) or self.place(cluster, replica)
        # Members that joined before this boot are announced right away.
        self.notifyOnSystemRegistrationChanges(True)

    def place(self, cluster: str) -> str:
        """A host for a new replica of `cluster` (one not placed yet): never one
        that is not up, nor (spread: hosts) one holding a replica of it.
        PlacementError when none can."""
        down = {name for name, state in self.hosts.items() if not state.up}
        try:
            spread = self.topology.cluster(cluster).spread
        except KeyError:
            spread = "hosts"  # a cluster added later: the default with hosts:
        return place_replica(self.placement, self.map.replicas(cluster), self.hosts, down,
                             cluster=cluster, spread=spread)

    def host_up(self, host: str) -> bool:
        return not host or host == self.node or (host in self.hosts and self.hosts[host].up)

    def is_local(self, record: ServerRecord) -> bool:
        """Whether its process runs on this machine (its PID means something here)."""
        return not record.host or record.host == self.node

    def start_server(self, replica: str) -> None:
        from actors.server import DatabaseServer

        record = self.servers[replica]
        topo = self.topology
        if record.host:
            record.address = self.createActor(DatabaseServer, targetActorRequirements={"node": record.host})
        else:
            record.address = self.createActor(DatabaseServer)
        record.alive = True
        record.pid = 0
        record.last_seen = time.monotonic()
        record.unreachable = False
        record.lost = False
        founding = self.reconfig.founding[record.cluster]
        self.send(
            record.address,
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

    def receiveMsg_ServerStarted(self, message: ServerStarted, sender) -> None:
        record = self.servers.get(message.replica)
        if record is None or record.address != sender:
            return
        record.pid = message.pid
        record.last_seen = time.monotonic()
        self.write_pids()
        self.broadcast_map()

    # -- supervision ----------------------------------------------------------

    def receiveMsg_ChildActorExited(self, message: ChildActorExited, sender) -> None:
        for record in self.servers.values():
            if record.address == message.childAddress:
                self.server_exited(record)
                return

    def check_liveness(self) -> None:
        """Thespian misses some exits (children killed together): look at the
        processes on this host themselves, and reap the ones that are gone.
        Servers on other hosts are probed instead; a host whose every server
        has been silent for SERVER_SILENCE is lost."""
        now = time.monotonic()
        probe = ReplicaStatusRequest(round=LIVENESS_ROUND)
        for record in list(self.servers.values()):
            if self.is_local(record):
                if record.alive and record.pid and not process_running(record.pid):
                    self.server_exited(record)
                continue
            if self.asleep(record):
                record.last_seen = now  # silent on purpose
            record.unreachable = record.alive and now - record.last_seen > SERVER_SILENCE
            if record.address is not None:
                # Also the ones thought down: an answer brings them back.
                self.send(record.address, probe)
        for state in self.hosts.values():
            running = [r for r in self.servers.values() if r.host == state.name and r.alive]
            if state.up and running and all(record.unreachable for record in running):
                self.host_lost(state, f"no answer from its servers for {SERVER_SILENCE:g} s")
        self.maybe_replace_lost(now)
        self.wakeupAfter(LIVENESS_INTERVAL, payload=("liveness",))

    def seen(self, replica: str) -> None:
        """`replica` answered: it runs, and so does its host."""
        record = self.servers.get(replica)
        if record is None or self.stopping:
            return
        record.last_seen = time.monotonic()
        record.unreachable = False
        state = self.hosts.get(record.host)
        if state is not None and not state.up:
            # Lost by silence, yet alive (a long pause or a partition that healed).
            self.host_back(state, "answers again")
        if record.lost and record.address is not None:
            record.alive, record.lost = True, False
            log.warning("server %s on %s answers again", replica, record.host)
            self.broadcast_map()

    def receiveMsg_ActorSystemConventionUpdate(self, message: ActorSystemConventionUpdate, sender) -> None:
        name = (message.remoteCapabilities or {}).get("node")
        state = self.hosts.get(name)
        if state is None or name == self.node:
            log.warning("actor system %s (node %r) %s the convention; not a host of the topology",
                        message.remoteAdminAddress, name, "joined" if message.remoteAdded else "left")
            return
        if message.remoteAdded:
            self.host_back(state, f"joined from {message.remoteAdminAddress}")
            self.restart_host(state)
        else:
            self.host_lost(state, "left the convention")

    def host_back(self, state: HostState, why: str) -> None:
        if not state.up:
            log.warning("host %s is up: %s", state.name, why)
        state.up, state.lost_since, state.why, state.replacement = True, 0.0, "", ""

    def restart_host(self, state: HostState) -> None:
        """A host (re)joined: its servers that do not run are started there,
        from the storage they left on it."""
        if self.stopping:
            return
        for record in self.servers.values():
            if record.host == state.name and not record.alive:
                if record.address is not None:
                    # An orphan of the host's previous actor system must not share its storage.
                    self.send(record.address, ActorExitRequest())
                    record.restarts += 1
                self.start_server(record.replica)

    def host_lost(self, state: HostState, why: str) -> None:
        """Its servers are down until it joins again (or they are replaced):
        not restarted elsewhere, since their data is there."""
        if not state.up or self.stopping:
            return
        state.up, state.lost_since, state.why = False, time.monotonic(), why
        lost = [r for r in self.servers.values() if r.host == state.name and r.alive]
        for record in lost:
            record.alive, record.lost = False, True
            if self.leaders.get(record.cluster) == record.replica:
                self.leaders[record.cluster] = None
        log.warning("host %s lost (%s): servers %s down", state.name, why,
                    ", ".join(r.replica for r in lost) or "none")
        self.broadcast_map()

    def maybe_replace_lost(self, now: float) -> None:
        """Policy `on_host_loss: replace`: each replica of a host lost for
        `replace_after_ms` gets a replacement (an add-replica job placed on a
        host that is up), then is removed (a remove-replica job, which cannot
        stop it or set its data aside: its host is gone). One job per cluster
        at a time: a busy cluster is tried again on the next sweep."""
        settings = self.topology.placement
        if settings.on_host_loss != "replace" or self.reconfig is None or self.stopping:
            return
        grace = settings.replace_after_ms / 1000
        for state in self.hosts.values():
            if state.up or not state.lost_since or now - state.lost_since < grace:
                continue  # up, not joined yet (nothing of it ran), or maybe only restarting
            records = sorted((r for r in self.servers.values() if r.host == state.name), key=lambda r: r.replica)
            blocked = [self.replace_step(record, time.time()) for record in records]
            note = "; ".join(why for why in blocked if why)
            if note != state.replacement:
                state.replacement = note
                if note:
                    log.warning("host %s lost: not replacing its replicas yet: %s", state.name, note)
        for lost in [r for r in self.replacements if r not in self.servers]:
            del self.replacements[lost]  # removed: done
        self.save()

    def replace_step(self, record: ServerRecord, now: float) -> str:
        """One step of replacing `record`: "", or why it cannot start (no host
        can take the replacement: tried again on the next sweep, when a host
        may have joined)."""
        stage, _, job_id = self.replacements.get(record.replica, "").partition(":")
        job = self.reconfig.job(job_id) if job_id else None
        if job is not None and job.state == RUNNING:
            return ""
        try:
            if stage == "remove" or (stage == "add" and job is not None and job.state == DONE):
                job = self.reconfig.remove_replica(record.replica, now)
                self.replacements[record.replica] = f"remove:{job.id}"
            else:
                # Not started, or its add job failed or was forgotten: (re)start it,
                # on a host chosen first, since no job starts without one.
                try:
                    host = self.place(record.cluster)
                except PlacementError as error:
                    return str(error)
                job = self.reconfig.add_replica(record.cluster, now)
                self.placement[job.replicas[0]] = host
                self.replacements[record.replica] = f"add:{job.id}"
        except ReconfigError as error:
            log.warning("replacing %s on lost host %s: %s", record.replica, record.host, error)
            return ""
        log.warning("replacing %s on lost host %s: job %s, %s", record.replica, record.host, job.id, job.doing)
        return ""

    def server_exited(self, record: ServerRecord) -> None:
        """Idempotent: ChildActorExited can arrive twice, and after the liveness check."""
        if self.stopping or not record.alive:
            return
        record.alive = False
        record.restarts += 1
        if self.leaders.get(record.cluster) == record.replica:
            self.leaders[record.cluster] = None
        where = f" on {record.host}" if record.host else ""
        log.warning("server %s (pid %d%s) exited; restarting it", record.replica, record.pid, where)
        self.wakeupAfter(RESTART_BACKOFF, payload=("restart", record.replica, record.restarts))

    def restart(self, replica: str, generation: int) -> None:
        record = self.servers.get(replica)
        if record is None or record.alive or record.restarts != generation or self.stopping:
            return
        if self.host_up(record.host):  # else restarted when its host joins again
            self.start_server(replica)

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
            addresses={r.replica: r.address for r in self.servers.values() if r.address is not None},
            read_from_followers=self.topology.transactions.read_from == "follower",
        )

    def broadcast_map(self) -> None:
        update = self.map_update()
        for record in self.servers.values():
            if record.alive and record.address is not None:
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
        self.send(sender, Serves(epoch=self.map.epoch, owners=owners, leaders=dict(self.leaders)))

    def receiveMsg_TimestampRequest(self, message: TimestampRequest, sender) -> None:
        count = max(1, message.count)
        if self.ts_next + count - 1 > self.ts_reserved:
            # Persist the new high-water mark before handing out anything under it.
            self.ts_reserved = self.ts_next + count - 1 + TIMESTAMP_RESERVE
            self.state.put("ts_reserved", str(self.ts_reserved))
        self.send(sender, Timestamp(ts=self.ts_next, count=count))
        self.ts_next += count

    # -- administration ---------------------------------------------------------

    def unknown_server(self, server: str) -> AdminReply:
        known = ", ".join(sorted(self.servers)) or "none"
        return AdminReply(ok=False, message=f"unknown server {server!r} (servers: {known})")

    def receiveMsg_Sleep(self, message: Sleep, sender) -> None:
        record = self.servers.get(message.server)
        if record is None:
            self.send(sender, self.unknown_server(message.server))
            return
        if not 0 < message.seconds <= 3600:
            self.send(sender, AdminReply(ok=False, message=f"sleep seconds must be in (0, 3600], got {message.seconds:g}"))
            return
        record.asleep_until = time.monotonic() + message.seconds
        self.send(record.address, message)
        self.send(sender, AdminReply(ok=True, message=f"{message.server} sleeps for {message.seconds:g} s"))

    def receiveMsg_Isolate(self, message: Isolate, sender) -> None:
        record = self.servers.get(message.server)
        if record is None:
            self.send(sender, self.unknown_server(message.server))
            return
        if not 0 < message.seconds <= 3600:
            self.send(sender, AdminReply(ok=False, message=f"isolate seconds must be in (0, 3600], got {message.seconds:g}"))
            return
        record.isolated_until = time.monotonic() + message.seconds
        self.send(record.address, message)
        self.send(sender, AdminReply(ok=True, message=f"{message.server} is cut off from its peers for {message.seconds:g} s"))

    def receiveMsg_Kill(self, message: Kill, sender) -> None:
        record = self.servers.get(message.server)
        if record is None:
            self.send(sender, self.unknown_server(message.server))
            return
        if not record.alive or not record.pid:
            self.send(sender, AdminReply(ok=False, message=f"{message.server} is not running right now (restarting?)"))
            return
        if not self.is_local(record):
            # Its PID is on another machine: ask it to exit instead; it is restarted all the same.
            self.send(record.address, ActorExitRequest())
            self.send(sender, AdminReply(ok=True, message=f"asked {message.server} on host {record.host} to exit; "
                                                          "it will be restarted"))
            return
        try:
            os.kill(record.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.send(sender, AdminReply(ok=True, message=f"killed {message.server} (pid {record.pid}); it will be restarted"))

    def receiveMsg_ProcessList(self, message: ProcessList, sender) -> None:
        self.stopping = True  # only `stop` asks: do not restart what is about to be shut down
        for record in self.servers.values():
            if not self.is_local(record) and record.address is not None:
                # Members' servers stop with the system; the members' actor systems keep running.
                self.send(record.address, ActorExitRequest())
        self.send(sender, AdminReply(ok=True, value={"data_dir": os.fspath(self.data_dir or ""), "pids": self.pids()}))

    def pids(self) -> list[int]:
        pids = [os.getpid(), os.getppid()]  # this actor and the actor system's admin
        pids += [r.pid for r in self.servers.values() if r.pid and self.is_local(r)]
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
            self.send(sender, StatusReport(status={"epoch": 0, "clusters": {}, "booting": True}))
            return
        if self.status_round is not None:
            self.status_round.askers.append(sender)
            return
        self.round_counter += 1
        self.status_round = StatusRound(round=self.round_counter, askers=[sender])
        probe = ReplicaStatusRequest(round=self.round_counter)
        for record in self.servers.values():
            if record.alive and record.address is not None and not self.asleep(record):
                self.send(record.address, probe)
        self.wakeupAfter(STATUS_DEADLINE, payload=("status", self.round_counter))
        self.maybe_finish_status()

    def asleep(self, record: ServerRecord) -> bool:
        return record.asleep_until > time.monotonic()

    def receiveMsg_ReplicaStatusReport(self, message: ReplicaStatusReport, sender) -> None:
        self.seen(message.replica)
        if message.round == LIVENESS_ROUND:
            return
        if message.round == RECONFIG_ROUND:
            self.reconfig.observe_replica_status(message.replica, message.status, time.time())
            self.reconfig_changed()
            return
        current = self.status_round
        if current is None or message.round != current.round:
            return
        current.reports[message.replica] = message.status
        self.maybe_finish_status()

    def maybe_finish_status(self, deadline_passed: bool = False) -> None:
        current = self.status_round
        if current is None:
            return
        expected = [r for r in self.servers.values() if r.alive and r.address is not None and not self.asleep(r)]
        if not deadline_passed and any(r.replica not in current.reports for r in expected):
            return
        status = self.build_status(current.reports)
        for asker in current.askers:
            self.send(asker, StatusReport(status=status))
        self.status_round = None

    def build_status(self, reports: dict) -> dict:
        clusters = {}
        for cluster in self.map.clusters:
            replicas = {}
            leader_report = reports.get(self.leaders.get(cluster) or "") or {}
            learners = set(leader_report.get("conf", {}).get("learners", ()))
            for replica in self.map.replicas(cluster):
                # A replica a job is stopping has no record any more.
                record = self.servers.get(replica) or ServerRecord(cluster=cluster, replica=replica)
                report = reports.get(replica)
                if report is not None:
                    record.last_status = report
                entry = dict(report if report is not None else record.last_status)
                entry.setdefault("role", "unknown")
                for name in ("term", "commit", "applied", "last_index"):
                    entry.setdefault(name, 0)
                entry["alive"] = record.alive and (report is not None or self.asleep(record))
                entry["asleep"] = self.asleep(record)
                entry["isolated"] = record.isolated_until > time.monotonic()
                entry["pid"] = record.pid
                entry["restarts"] = record.restarts
                if report is None and not entry["asleep"]:
                    entry["role"] = "down" if not record.alive else "unresponsive"
                entry["learner"] = replica in learners
                entry["host"] = record.host or "local"
                entry["host_down"] = not self.host_up(record.host)
                entry["unreachable"] = record.unreachable
                if entry["host_down"]:
                    entry["role"] = "down"
                replicas[replica] = entry
            clusters[cluster] = {
                "leader": self.leaders.get(cluster),
                "term": self.terms.get(cluster, 0),
                "slots": list(self.map.slots_of(cluster)),
                "replicas": replicas,
            }
        return {
            "epoch": self.map.epoch,
            "admin_pid": os.getppid(),
            "clerks": len(self.subscribers),
            "clusters": clusters,
            "hosts": self.hosts_shown(),
            "jobs": self.jobs_shown(),
        }

    def hosts_shown(self) -> dict:
        """Multi-host: each host, up or not and why, and the replicas placed on it."""
        shown = {}
        for host in self.topology.hosts:
            state = self.hosts[host.name]
            shown[host.name] = {
                "address": f"{host.address}:{host.admin_port}",
                "up": state.up,
                "leader": host.name == self.node,
                "why": state.why,
                "replacement": state.replacement,
                "down_seconds": round(time.monotonic() - state.lost_since, 1) if state.lost_since else 0,
                "replicas": sorted(r.replica for r in self.servers.values() if r.host == host.name),
            }
        return shown

    def jobs_shown(self) -> list[dict]:
        """Running jobs and the last few finished ones, oldest first."""
        jobs = self.reconfig.jobs
        finished = [job for job in jobs if job.state != RUNNING][-FINISHED_JOBS_SHOWN:]
        return [job.to_dict() for job in jobs if job.state == RUNNING or job in finished]

    # -- reconfiguration ----------------------------------------------------------------

    def receiveMsg_AddReplica(self, message: AddReplica, sender) -> None:
        if self.hosts and self.map is not None and message.cluster in self.map.clusters:
            try:
                self.place(message.cluster)  # refused now rather than placed against spread
            except PlacementError as error:
                self.send(sender, AdminReply(ok=False, message=str(error)))
                return
        self.submit(sender, lambda now: self.reconfig.add_replica(message.cluster, now))

    def receiveMsg_RemoveReplica(self, message: RemoveReplica, sender) -> None:
        self.submit(sender, lambda now: self.reconfig.remove_replica(message.server, now))

    def receiveMsg_AddCluster(self, message: AddCluster, sender) -> None:
        up = [name for name, state in self.hosts.items() if state.up]
        if self.hosts and message.replicas > len(up):
            # Refused now rather than placed against spread: hosts later.
            self.send(sender, AdminReply(ok=False, message=(
                f"a cluster of {message.replicas} replicas needs {message.replicas} hosts up "
                f"(spread: hosts); up: {', '.join(up)}; add a host with raftline join or ask for fewer replicas")))
            return
        self.submit(sender, lambda now: self.reconfig.add_cluster(message.replicas, now))

    def receiveMsg_RemoveCluster(self, message: RemoveCluster, sender) -> None:
        self.submit(sender, lambda now: self.reconfig.remove_cluster(message.cluster, now))

    def submit(self, sender, start) -> None:
        """Start a job and answer at once; the reconfig wakeup carries it out."""
        if self.reconfig is None:
            self.send(sender, AdminReply(ok=False, message="the coordinator is still booting; retry in a moment"))
            return
        try:
            job = start(time.time())
        except ReconfigError as error:
            self.send(sender, AdminReply(ok=False, message=str(error)))
            return
        log.warning("job %s started: %s", job.id, job.doing)
        self.drive_jobs()
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
            self.reconfig.observe_move(message, time.time())
            self.reconfig_changed()
            if message.stage == MOVE_DROPPED:
                self.drive_jobs()  # start the next move now rather than at the next poll

    def receiveMsg_MembershipReport(self, message: MembershipReport, sender) -> None:
        if self.reconfig is not None:
            self.reconfig.observe_membership(message, time.time())
            self.reconfig_changed()

    def drive_jobs(self) -> None:
        actions = self.reconfig.drive(time.time(), self.leaders)
        if self.hosts:
            for action in actions:
                if isinstance(action, StartServer) and action.replica not in self.placement:
                    try:
                        self.placement[action.replica] = self.place(action.cluster)
                    except PlacementError as error:
                        # Only add-cluster's replicas are not checked before their job
                        # starts: one runs on the coordinator's host rather than not at all.
                        log.warning("placing %s: %s; it goes on %s", action.replica, error, self.node)
                        self.placement[action.replica] = self.node
        self.reconfig_changed()  # persisted before anything it decided happens
        for action in actions:
            if isinstance(action, SendToLeader):
                record = self.servers.get(self.leaders.get(action.cluster) or "")
                if record is not None and record.alive and record.address is not None:
                    self.send(record.address, action.message)
            elif isinstance(action, StartServer):
                if action.replica not in self.servers:
                    record = ServerRecord(cluster=action.cluster, replica=action.replica,
                                          host=self.placement.get(action.replica, ""))
                    self.servers[action.replica] = record
                    if self.host_up(record.host):
                        self.start_server(action.replica)
                    self.write_pids()
            elif isinstance(action, StopServer):
                self.stop_server(action.replica)
            elif isinstance(action, ProbeReplicas):
                probe = ReplicaStatusRequest(round=RECONFIG_ROUND)
                for record in self.servers.values():
                    if record.cluster == action.cluster and record.alive and record.address is not None:
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
        """Map, jobs, placement and replacements in one write; none when
        nothing changed since the last (maps are immutable: a changed one is
        a new object, so it is serialized only then)."""
        values = {"reconfig": self.reconfig.to_json(), "placement": json.dumps(self.placement, sort_keys=True),
                  "replacements": json.dumps(self.replacements, sort_keys=True)}
        saved_map, saved_values = self.saved
        if self.reconfig.map is saved_map and values == saved_values:
            return
        self.state.put_many({"map": self.reconfig.map.to_json(), **values})
        self.saved = (self.reconfig.map, values)

    def stop_server(self, replica: str) -> None:
        """Stop `replica` for good: out of supervision first, so its exit is not
        mistaken for a crash; its data is moved aside, never deleted."""
        record = self.servers.pop(replica, None)
        if record is not None:
            if self.leaders.get(record.cluster) == replica:
                self.leaders[record.cluster] = None
            if record.address is not None:
                self.send(record.address, ActorExitRequest())
            if record.pid and self.is_local(record):
                self.wakeupAfter(REAP_GRACE, payload=("reap", record.pid))
            self.write_pids()
            if not self.is_local(record):
                # Its data is on its own host (a lost one, maybe): left where it is.
                log.warning("server %s on %s stopped; its data stays on that host", replica, record.host)
                return
        source = self.data_dir / replica
        if source.exists():
            removed = self.data_dir / "removed"
            removed.mkdir(exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%S")
            target, suffix = removed / f"{replica}-{stamp}", 1
            while target.exists():
                suffix += 1
                target = removed / f"{replica}-{stamp}-{suffix}"
            source.rename(target)
            log.warning("server %s stopped; its data is in %s", replica, target)

    def reap(self, pid: int) -> None:
        """A stopped server still running after REAP_GRACE is killed."""
        if process_running(pid) and all(record.pid != pid for record in self.servers.values()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- timers and lifecycle ------------------------------------------------------

    def receiveMsg_WakeupMessage(self, message: WakeupMessage, sender) -> None:
        payload = message.payload
        if not isinstance(payload, tuple):
            return
        if payload[0] == "status" and self.status_round is not None and self.status_round.round == payload[1]:
            self.maybe_finish_status(deadline_passed=True)
        elif payload[0] == "restart":
            self.restart(payload[1], payload[2])
        elif payload[0] == "liveness":
            self.check_liveness()
        elif payload[0] == "reconfig":
            if not self.stopping:
                self.drive_jobs()
            self.wakeupAfter(RECONFIG_INTERVAL, payload=("reconfig",))
        elif payload[0] == "reap":
            self.reap(payload[1])

    def receiveMsg_ActorExitRequest(self, message: ActorExitRequest, sender) -> None:
        self.stopping = True
        if self.state is not None:
            self.state.close()
            self.state = None

    def receiveMsg_PoisonMessage(self, message: PoisonMessage, sender) -> None:
        log.warning("undeliverable message %s", type(message.poisonMessage).__name__)

