"""Supervision of the database servers: restarts, liveness, lost hosts and
their replacement (docs/DESIGN.md section 5).

The coordinator actor is the shell: it creates the server actors, sends,
sets timers and checks PIDs; the `Supervisor` decides. Every method returns
the actions to carry out, in order.

Rules:
- Pure: no Thespian, no clock, no randomness. `now` is monotonic seconds,
  read by the shell once per message or wakeup; only differences between
  readings matter. Checking a PID is I/O: the shell checks the ones
  `local_processes` names and reports the dead to `sweep`.
- A replica is supervised from boot (or the job that starts it) until a job
  stops it (`release`). When the coordinator replica that acts changes,
  the new one adopts every server that reported to it (`adopt`): no new
  process, and its liveness comes from the sweep (PIDs here, probes
  elsewhere), since Thespian tells only a parent of its child's exit. A
  server that finds its data directory held (`refused`) names the holder:
  an orphan whose report never arrived, which is killed so the replica
  restarts on its storage. Its record holds the actor address of its current
  process, opaque here. ChildActorExited can arrive twice, and after the
  sweep saw the exit: only the first exit of a running server's current
  address counts, and each restart names the generation (`restarts`) it was
  scheduled for, so a stale one does nothing.
- Multi-host (topology `hosts:`; `node` is the host the acting coordinator
  replica runs on): each replica's host is in `placement`, persisted by the
  shell, so a replica always restarts where its data is. PIDs mean something
  only on `node`: servers on other hosts are probed every sweep instead, one
  silent for SERVER_SILENCE is unreachable, and a host whose every running
  server is unreachable is lost (so is one that leaves the convention). A
  lost host's servers are down, not restarted elsewhere; when it joins again
  (or one of them answers) they start again from the storage they left
  there. An unreachable server that had started, on a host whose other
  servers answer, is taken for dead, asked to exit and restarted there:
  Thespian tells only a parent of its child's exit, and the parent may have
  been an earlier acting replica.
- `on_host_loss: replace`: each replica of a host lost for
  `replace_after_ms` gets a replacement through reconfiguration jobs: an
  add-replica placed on a host that is up and (spread: hosts) holds no
  replica of its cluster, then a remove-replica of the lost one. When no
  host can take it, the host says why and the next sweep tries again.
  `replacements` (persisted) maps a lost replica to its current job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Iterable

from coordinator.placement import PlacementError, initial_placement, place_replica
from coordinator.reconfig import DONE, RUNNING, Job, Reconfig, ReconfigError
from coordinator.shardmap import ShardMap
from coordinator.topology import Topology

RESTART_BACKOFF = 0.2
"""Seconds between a server's exit and its restart; doubled for every exit in
a row of a process that never started (its data directory held, its storage
failing), up to MAX_RESTART_BACKOFF."""
MAX_RESTART_BACKOFF = 5.0
FAILING_SHOWN = 10.0
"""Seconds a server's storage failure is shown after it was last reported."""
SERVER_SILENCE = 3.0
"""Seconds without an answer after which a server on another host is unreachable."""


@dataclass
class ServerRecord:
    """What the supervisor knows of one replica's process.

    Fields:
        cluster, replica: whose process it is.
        host: its host's name; "" on a single-host deployment.
        address: the actor address of its current process (None before the first).
        pid: its process id, once the server reported it (0 before).
        alive: believed running (started and not seen exiting, its host not lost).
        restarts: exits so far; a scheduled restart carries this generation.
        failed_starts: exits in a row of processes that never reported started.
        failure, failed_at: its storage's last failure (ServerFailed) and when.
        asleep_until, isolated_until: an admin Sleep or Isolate lasts until then.
        last_seen: its last answer (servers on other hosts; sleeping counts).
        unreachable: alive, yet silent for more than SERVER_SILENCE.
        lost: down because its host was lost, not because it exited.
    """

    cluster: str
    replica: str
    host: str = ""
    address: object = None
    pid: int = 0
    alive: bool = False
    restarts: int = 0
    failed_starts: int = 0
    failure: str = ""
    failed_at: float = 0.0
    asleep_until: float = 0.0
    isolated_until: float = 0.0
    last_seen: float = 0.0
    unreachable: bool = False
    lost: bool = False

    def asleep(self, now: float) -> bool:
        return self.asleep_until > now

    def failing(self, now: float) -> str:
        """Its storage's failure, while recent; "" otherwise."""
        return self.failure if self.failure and now - self.failed_at < FAILING_SHOWN else ""


@dataclass
class HostState:
    """What the supervisor knows of one host of a multi-host deployment.

    Fields:
        name: the host's name in the topology.
        up: joined and not lost since.
        lost_since: when it was declared lost; None while up or before it first joined.
        why: why it is not up ("" when it is).
        replacement: why its lost replicas are not being replaced ("" when
            they are, or need not be).
    """

    name: str
    up: bool = False
    lost_since: float | None = None
    why: str = "has not joined yet"
    replacement: str = ""


# -- actions: what the shell carries out, in order ---------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class CreateServer:
    """Create `replica`'s server actor (on its host) and send it its configuration;
    then tell the supervisor its address (`created`).

    Fields:
        replica: its id.
    """

    replica: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AskToExit:
    """Send ActorExitRequest to the actor at `address` (a server on another host,
    or an orphan that must not share its storage with its successor).

    Fields:
        address: the actor address.
    """

    address: object


@dataclass(frozen=True, kw_only=True, slots=True)
class Probe:
    """Ask the server at `address` for its status; its answer goes to `answered`.

    Fields:
        address: the actor address.
    """

    address: object


@dataclass(frozen=True, kw_only=True, slots=True)
class RestartLater:
    """After `delay` seconds, call `restart(replica, generation)`.

    Fields:
        replica: the server that exited.
        generation: its `restarts` count at the exit.
        delay: seconds.
    """

    replica: str
    generation: int
    delay: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Reap:
    """A stopped server's process on this host: after a grace period, call
    `reap(pid)` (which kills it if it still runs).

    Fields:
        pid: its process id.
    """

    pid: int


@dataclass(frozen=True, kw_only=True, slots=True)
class KillProcess:
    """SIGKILL process `pid` on this host, if it still runs.

    Fields:
        pid: the process id.
    """

    pid: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SetDataAside:
    """Move a stopped replica's data directory on this host aside (never delete it).

    Fields:
        replica: its id.
    """

    replica: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ForgetLeader:
    """`replica` stopped running: if it leads `cluster` as far as routing knows, no one does now.

    Fields:
        cluster, replica: the cluster and the replica.
    """

    cluster: str
    replica: str


@dataclass(frozen=True, kw_only=True, slots=True)
class BroadcastMap:
    """Who runs where changed: send a MapUpdate to every server and subscriber."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WritePids:
    """The set of known PIDs changed: rewrite the file `stop` reads them from."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Log:
    """A line for the operator's log.

    Fields:
        text: the line.
        warning: the operator should look at it (otherwise a routine event).
    """

    text: str
    warning: bool = False


Action = (CreateServer | AskToExit | Probe | RestartLater | Reap | KillProcess | SetDataAside | ForgetLeader
          | BroadcastMap | WritePids | Log)


@dataclass(frozen=True)
class ReplacementJobs:
    """The reconfiguration jobs a replacement runs through: `reconfig`, whose new
    jobs are stamped `job_time` (wall-clock seconds, since job times are
    persisted across restarts and shown to people). The supervisor's own clock
    stays the monotonic `now`.

    Fields:
        reconfig: the coordinator's reconfiguration state.
        job_time: the time new jobs are stamped with.
    """

    reconfig: Reconfig
    job_time: float

    def job(self, job_id: str) -> Job | None:
        return self.reconfig.job(job_id)

    def siblings(self, cluster: str) -> tuple[str, ...]:
        return self.reconfig.map.replicas(cluster)

    def add_replica(self, cluster: str) -> Job:
        return self.reconfig.add_replica(cluster, self.job_time)

    def remove_replica(self, replica: str) -> Job:
        return self.reconfig.remove_replica(replica, self.job_time)


class Supervisor:
    """The servers the coordinator runs and the hosts they run on.

    Fields:
        topology: the deployment (hosts, each cluster's spread, placement policy).
        placement: replica -> host (multi-host only; persisted by the shell).
        replacements: lost replica -> "add:<job>" or "remove:<job>" (persisted by the shell).
        servers: replica -> its record, for every supervised replica.
        hosts: host name -> its state, in topology order; empty for one host.
        node: the host the acting coordinator replica runs on ("" on one host).
        stopping: the system is shutting down: nothing is restarted, lost or replaced.
    """

    def __init__(self, topology: Topology, placement: dict[str, str], replacements: dict[str, str],
                 node: str | None = None):
        self.topology = topology
        self.node = node if node is not None else (topology.leader_host.name if topology.leader_host else "")
        # A topology without hosts runs everything here, whatever an earlier one placed.
        self.placement = dict(placement) if topology.hosts else {}
        self.replacements = dict(replacements) if topology.hosts else {}
        self.servers: dict[str, ServerRecord] = {}
        self.hosts = {host.name: HostState(name=host.name) for host in topology.hosts}
        if self.node:
            self.hosts[self.node] = HostState(name=self.node, up=True, why="")
        self.stopping = False

    # -- queries ------------------------------------------------------------------------

    def host_up(self, host: str) -> bool:
        return not host or host == self.node or (host in self.hosts and self.hosts[host].up)

    def is_local(self, record: ServerRecord) -> bool:
        """Whether its process runs on this host (its PID means something here)."""
        return not record.host or record.host == self.node

    def local_processes(self) -> dict[str, int]:
        """Replica -> PID of every server believed running on this host: the ones
        whose process the shell checks before each sweep."""
        return {r.replica: r.pid for r in self.servers.values() if r.alive and r.pid and self.is_local(r)}

    def local_pids(self) -> list[int]:
        """The PIDs of this host's servers, for `stop`."""
        return [r.pid for r in self.servers.values() if r.pid and self.is_local(r)]

    def running(self, cluster: str | None = None) -> list[ServerRecord]:
        """Servers believed running that have an address (of `cluster`, when given)."""
        return [r for r in self.servers.values()
                if r.alive and r.address is not None and (cluster is None or r.cluster == cluster)]

    def answering(self, now: float) -> list[ServerRecord]:
        """Servers a status round waits for: running and not asleep."""
        return [r for r in self.running() if not r.asleep(now)]

    def place(self, cluster: str, siblings: Iterable[str]) -> str:
        """A host for a new replica of `cluster`, which has `siblings`: never one
        that is not up, nor (spread: hosts) one holding a replica of it.
        PlacementError when none can."""
        down = {name for name, state in self.hosts.items() if not state.up}
        try:
            spread = self.topology.cluster(cluster).spread
        except KeyError:
            spread = "hosts"  # a cluster added later: the default with hosts:
        return place_replica(self.placement, siblings, self.hosts, down, cluster=cluster, spread=spread)

    def check_replica_fits(self, cluster: str, siblings: Iterable[str]) -> None:
        """Multi-host: PlacementError when no host can take a new replica of
        `cluster` now, so add-replica is refused rather than placed against spread."""
        if self.hosts:
            self.place(cluster, siblings)

    def check_cluster_fits(self, replicas: int) -> None:
        """Multi-host: PlacementError when a new cluster of `replicas` cannot
        have each on its own host up, so add-cluster is refused rather than
        placed against spread: hosts later."""
        up = [name for name, state in self.hosts.items() if state.up]
        if self.hosts and replicas > len(up):
            raise PlacementError(
                f"a cluster of {replicas} replicas needs {replicas} hosts up (spread: hosts); up: {', '.join(up)}; "
                "add a host with raftline join or ask for fewer replicas")

    # -- supervision --------------------------------------------------------------------

    def place_unplaced(self, shard_map: ShardMap) -> list[Action]:
        """Multi-host boot: a host for every replica of `shard_map` without one
        (the topology's initial placement, else as a replica added now).
        Persist the placement before starting anything."""
        if not self.hosts:
            return []
        initial = initial_placement(self.topology)
        actions: list[Action] = []
        for cluster in shard_map.clusters:
            for replica in shard_map.replicas(cluster):
                if replica in initial and replica not in self.placement:
                    self.placement[replica] = initial[replica]
                actions += self.assign_host(cluster, replica, shard_map.replicas(cluster))
        return actions

    def assign_host(self, cluster: str, replica: str, siblings: Iterable[str]) -> list[Action]:
        """Multi-host: a host for a new `replica` without one. Persist the
        placement before starting it."""
        if not self.hosts or replica in self.placement:
            return []
        try:
            self.placement[replica] = self.place(cluster, siblings)
        except PlacementError as error:
            # Add-cluster only checked that enough hosts were up, and one may
            # be lost since: this replica runs here rather than not at all.
            self.placement[replica] = self.node
            return [Log(text=f"placing {replica}: {error}; it goes on {self.node}", warning=True)]
        return []

    def supervise(self, cluster: str, replica: str, now: float) -> list[Action]:
        """Supervise `replica` from now on, started at once when its host is up;
        nothing when it is supervised already."""
        if replica in self.servers:
            return []
        record = self.servers[replica] = ServerRecord(cluster=cluster, replica=replica,
                                                      host=self.placement.get(replica, ""))
        return (self._start(record, now) if self.host_up(record.host) else []) + [WritePids()]

    def _start(self, record: ServerRecord, now: float) -> list[Action]:
        record.alive, record.pid, record.last_seen = True, 0, now
        record.unreachable = record.lost = False
        return [CreateServer(replica=record.replica)]

    def adopt(self, cluster: str, replica: str, address: object, pid: int, now: float) -> list[Action]:
        """Supervise `replica`, whose process an earlier acting coordinator
        started and which reported from `address` as `pid`; nothing when it is
        supervised already."""
        if replica in self.servers:
            return []
        self.servers[replica] = ServerRecord(cluster=cluster, replica=replica, host=self.placement.get(replica, ""),
                                             address=address, pid=pid, alive=True, last_seen=now)
        return [WritePids()]

    def refused(self, replica: str, address: object, holder: int, ours: bool) -> list[Action]:
        """The server just created for `replica` at `address` found its data
        directory held by process `holder` and exits (its exit restarts the
        replica, with backoff). A holder that is a process of this system
        (`ours`: the shell checked its session) on this host, and no
        supervised server's current process, is an orphan of an earlier
        coordinator: it is killed, so the restart gets the directory."""
        record = self.servers.get(replica)
        if record is None or record.address != address or self.stopping:
            return []
        current = {r.pid for r in self.servers.values() if r.replica != replica and r.alive}
        if holder and ours and self.is_local(record) and holder not in current:
            return [KillProcess(pid=holder),
                    Log(text=f"server {replica}: its data directory was held by process {holder}, an orphan "
                             "of this system; killed it", warning=True)]
        return [Log(text=f"server {replica}: its data directory is held by process {holder or 'unknown'}, "
                         "not one of this system's; it will be retried", warning=True)]

    def failed(self, replica: str, reason: str, now: float) -> list[Action]:
        """ServerFailed: `replica`'s storage failed; it exits, and its exit
        restarts it with backoff. The reason is shown while failures go on."""
        record = self.servers.get(replica)
        if record is None:
            return []
        record.failure, record.failed_at = reason, now
        return [Log(text=f"server {replica}: storage failed ({reason})", warning=True)]

    def created(self, replica: str, address: object) -> None:
        """The shell created `replica`'s server actor at `address`."""
        self.servers[replica].address = address

    def started(self, replica: str, address: object, pid: int, now: float) -> list[Action]:
        """ServerStarted: its storage is open and it runs as `pid` (ignored
        from any process but the current one)."""
        record = self.servers.get(replica)
        if record is None or record.address != address:
            return []
        record.pid, record.last_seen = pid, now
        return [WritePids(), BroadcastMap()]

    def exited(self, address: object) -> list[Action]:
        """ChildActorExited: the actor at `address` is gone."""
        record = next((r for r in self.servers.values() if r.address == address), None)
        return [] if record is None else self._exited(record)

    def _exited(self, record: ServerRecord) -> list[Action]:
        if self.stopping or not record.alive:
            return []
        record.alive = False
        record.restarts += 1
        record.failed_starts = 0 if record.pid else record.failed_starts + 1
        delay = min(RESTART_BACKOFF * 2 ** record.failed_starts, MAX_RESTART_BACKOFF)
        where = f" on {record.host}" if record.host else ""
        return [ForgetLeader(cluster=record.cluster, replica=record.replica),
                # A restart is routine; one that keeps failing to start is not.
                Log(text=f"server {record.replica} (pid {record.pid}{where}) exited; restarting it in {delay:g} s",
                    warning=record.failed_starts > 0),
                RestartLater(replica=record.replica, generation=record.restarts, delay=delay)]

    def restart(self, replica: str, generation: int, now: float) -> list[Action]:
        """A RestartLater came due: start the server unless it was restarted,
        stopped or exited again since, or its host is down (it starts when
        the host joins again)."""
        record = self.servers.get(replica)
        if record is None or record.alive or record.restarts != generation or self.stopping:
            return []
        return self._start(record, now) if self.host_up(record.host) else []

    def release(self, replica: str) -> list[Action]:
        """Stop `replica` for good: out of supervision first, so its exit is not
        mistaken for a crash; its data on this host is set aside, and data on
        another host (a lost one, maybe) stays there."""
        record = self.servers.pop(replica, None)
        if record is None:
            return [SetDataAside(replica=replica)]
        actions: list[Action] = [ForgetLeader(cluster=record.cluster, replica=replica)]
        if record.address is not None:
            actions.append(AskToExit(address=record.address))
        if record.pid and self.is_local(record):
            actions.append(Reap(pid=record.pid))
        actions.append(WritePids())
        if not self.is_local(record):
            return actions + [Log(text=f"server {replica} on {record.host} stopped; its data stays on that host")]
        return actions + [SetDataAside(replica=replica)]

    def reap(self, pid: int) -> list[Action]:
        """A stopped server's grace period ended: kill it, unless its PID now
        belongs to a supervised server."""
        return [] if any(r.pid == pid for r in self.servers.values()) else [KillProcess(pid=pid)]

    def asleep_for(self, replica: str, seconds: float, now: float) -> None:
        """An admin Sleep: silent on purpose, so neither unreachable nor waited for."""
        self.servers[replica].asleep_until = now + seconds

    def isolated_for(self, replica: str, seconds: float, now: float) -> None:
        self.servers[replica].isolated_until = now + seconds

    def stop(self) -> None:
        """The system is shutting down: from now on nothing is restarted, no
        host is lost and no replica replaced."""
        self.stopping = True

    def shut_down(self) -> list[Action]:
        """`stop` collects the PIDs on the first host, where it runs: nothing is
        restarted from now on, and the servers on other hosts are asked to
        exit (their actor systems keep running)."""
        self.stop()
        first = self.topology.leader_host
        return [AskToExit(address=r.address) for r in self.servers.values()
                if r.host and r.host != first.name and r.address is not None]

    # -- liveness -----------------------------------------------------------------------

    def sweep(self, now: float, exited: Collection[str], jobs: ReplacementJobs) -> list[Action]:
        """The periodic liveness check. `exited`: replicas of `local_processes`
        whose process is gone (Thespian misses some exits, children killed
        together). Servers on other hosts are probed instead; a host whose
        every running server has been silent for SERVER_SILENCE is lost. Then
        the replacement policy takes a step."""
        actions: list[Action] = []
        for record in list(self.servers.values()):
            if self.is_local(record):
                if record.replica in exited:
                    actions += self._exited(record)
                continue
            if record.asleep(now):
                record.last_seen = now
            record.unreachable = record.alive and now - record.last_seen > SERVER_SILENCE
            if record.unreachable and record.pid and self._host_answers(record, now):
                # Asked to exit too: one merely slow would keep its data
                # directory locked against its successor for good.
                actions += [AskToExit(address=record.address), *self._exited(record)]
                continue
            if record.address is not None:
                # Also the ones thought down: an answer brings them back.
                actions.append(Probe(address=record.address))
        for state in self.hosts.values():
            running = [r for r in self.servers.values() if r.host == state.name and r.alive]
            if state.up and running and all(r.unreachable for r in running):
                actions += self._host_lost(state, f"no answer from its servers for {SERVER_SILENCE:g} s", now)
        return actions + self._replace_lost(now, jobs)

    def _host_answers(self, record: ServerRecord, now: float) -> bool:
        """Whether another server on `record`'s host answered within half of
        SERVER_SILENCE (a live one answers every sweep's probe), so that host
        runs and `record` alone is silent."""
        return any(other.host == record.host and other is not record and other.alive
                   and now - other.last_seen < SERVER_SILENCE / 2 for other in self.servers.values())

    def answered(self, replica: str, now: float) -> list[Action]:
        """`replica` answered: it runs, and so does its host."""
        record = self.servers.get(replica)
        if record is None or self.stopping:
            return []
        record.last_seen, record.unreachable = now, False
        actions: list[Action] = []
        state = self.hosts.get(record.host)
        if state is not None and not state.up:
            # Lost by silence, yet alive (a long pause or a partition that healed).
            actions += self._host_back(state, "answers again")
        if record.lost and record.address is not None:
            record.alive, record.lost = True, False
            actions += [Log(text=f"server {replica} on {record.host} answers again"), BroadcastMap()]
        return actions

    def convention_changed(self, node: str, joined: bool, where: str, now: float) -> list[Action]:
        """ActorSystemConventionUpdate: the actor system of host `node`, at
        `where`, joined or left. A host that joins gets its servers that do not
        run started there, from the storage they left on it."""
        state = self.hosts.get(node)
        if state is None or node == self.node:
            return [Log(text=f"actor system {where} (node {node!r}) {'joined' if joined else 'left'} "
                             "the convention; not a host of the topology", warning=True)]
        if not joined:
            return self._host_lost(state, "left the convention", now)
        actions = self._host_back(state, f"joined from {where}")
        if self.stopping:
            return actions
        for record in self.servers.values():
            if record.host == state.name and not record.alive:
                if record.address is not None:
                    # An orphan of the host's previous actor system must not share its storage.
                    actions.append(AskToExit(address=record.address))
                    record.restarts += 1
                actions += self._start(record, now)
        return actions

    def _host_back(self, state: HostState, why: str) -> list[Action]:
        actions: list[Action] = [] if state.up else [Log(text=f"host {state.name} is up: {why}")]
        state.up, state.lost_since, state.why, state.replacement = True, None, "", ""
        return actions

    def _host_lost(self, state: HostState, why: str, now: float) -> list[Action]:
        """Its servers are down until it joins again (or they are replaced):
        not restarted elsewhere, since their data is there."""
        if not state.up or self.stopping:
            return []
        state.up, state.lost_since, state.why = False, now, why
        lost = [r for r in self.servers.values() if r.host == state.name and r.alive]
        actions: list[Action] = []
        for record in lost:
            record.alive, record.lost = False, True
            actions.append(ForgetLeader(cluster=record.cluster, replica=record.replica))
        names = ", ".join(r.replica for r in lost) or "none"
        return actions + [Log(text=f"host {state.name} lost ({why}): servers {names} down", warning=True),
                          BroadcastMap()]

    # -- replacement --------------------------------------------------------------------

    def _replace_lost(self, now: float, jobs: ReplacementJobs) -> list[Action]:
        """Policy `on_host_loss: replace`, one step per lost replica. One job per
        cluster at a time: a busy cluster is tried again on the next sweep."""
        settings = self.topology.placement
        if settings.on_host_loss != "replace" or self.stopping:
            return []
        actions: list[Action] = []
        for state in self.hosts.values():
            if state.up or state.lost_since is None or now - state.lost_since < settings.replace_after_ms / 1000:
                continue  # up, not joined yet (nothing of it ran), or maybe only restarting
            blocked = []
            for record in sorted((r for r in self.servers.values() if r.host == state.name),
                                 key=lambda r: r.replica):
                why, logged = self._replace_step(record, jobs)
                blocked.append(why)
                actions += logged
            note = "; ".join(why for why in blocked if why)
            if note != state.replacement:
                state.replacement = note
                if note:
                    actions.append(Log(text=f"host {state.name} lost: not replacing its replicas yet: {note}",
                                       warning=True))
        for lost in [r for r in self.replacements if r not in self.servers]:
            del self.replacements[lost]  # removed: done
        return actions

    def _replace_step(self, record: ServerRecord, jobs: ReplacementJobs) -> tuple[str, list[Action]]:
        """One step of replacing `record`: why it cannot start ("" when it can
        or did: no host can take the replacement now, but one may join before
        the next sweep), and what to log."""
        stage, _, job_id = self.replacements.get(record.replica, "").partition(":")
        job = jobs.job(job_id) if job_id else None
        if job is not None and job.state == RUNNING:
            return "", []
        try:
            if stage == "remove" or (stage == "add" and job is not None and job.state == DONE):
                job = jobs.remove_replica(record.replica)
                self.replacements[record.replica] = f"remove:{job.id}"
            else:
                # Not started, or its add job failed or was forgotten: (re)start it,
                # on a host chosen first, since no job starts without one.
                try:
                    host = self.place(record.cluster, jobs.siblings(record.cluster))
                except PlacementError as error:
                    return str(error), []
                job = jobs.add_replica(record.cluster)
                self.placement[job.replicas[0]] = host
                self.replacements[record.replica] = f"add:{job.id}"
        except ReconfigError as error:
            return "", [Log(text=f"replacing {record.replica} on lost host {record.host}: {error}", warning=True)]
        return "", [Log(text=f"replacing {record.replica} on lost host {record.host}: job {job.id}, {job.doing}")]
