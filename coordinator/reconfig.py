"""Reconfiguration jobs: add/remove a replica, add/remove a cluster (docs/DESIGN.md section 6).

The coordinator actor is a thin shell around `Reconfig`: it submits admin
requests, feeds in what the servers report (MoveProgress, MembershipReport,
replica status) and, every few hundred milliseconds, calls `drive`, then
persists `to_json()` and the map before carrying out the actions returned
(send to a cluster's leader, start or stop a server).

Rules:
- Pure: no Thespian, no clock, no randomness. Times are numbers (seconds)
  passed in by the caller; only differences between them matter.
- Everything a job needs to resume is in its record, a plain JSON object:
  a coordinator restart rebuilds `Reconfig` from `to_json()` and the stored
  map, and the next `drive` re-sends whatever the job was waiting for. Every
  request to a server is idempotent (move ids and membership changes), so
  re-sending after a restart is safe.
- Map changes happen here (`self.map`), in the round that decides the
  actions depending on them: a replica or cluster joins the map in the round
  that starts its servers and leaves it in the round that stops them (only
  once Raft no longer counts it, or its cluster owns nothing and has settled).
- A job locks the clusters it touches (a cluster job locks every cluster); a
  request touching a locked cluster is refused as busy, never queued.
- Ids are never reused: replica numbers per cluster, cluster numbers and job
  numbers only grow, and the counters are persisted with the jobs.
- Founding membership: every replica of a cluster, also one added later, is
  started with the voters and slots the cluster had when it was created; its
  log's membership changes and slot moves apply on top.

Caller errors (unknown cluster, busy, out of range) raise ReconfigError with
the one-line message for the user; nothing changes. A report that matches no
running job is stale and ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable, Mapping

from actors.messages import (
    MOVE_DRAINING,
    MOVE_DROPPED,
    MOVE_NOT_OWNED,
    MOVE_SHIPPING,
    ChangeMembership,
    MembershipReport,
    MoveProgress,
    MoveSlot,
)
from actors.raft.messages import CONF_ADD_LEARNER, CONF_PROMOTE, CONF_REMOVE
from coordinator.shardmap import ShardMap, SlotMove, plan_rebalance
from coordinator.topology import MAX_REPLICAS

ADD_REPLICA = "add_replica"
REMOVE_REPLICA = "remove_replica"
ADD_CLUSTER = "add_cluster"
REMOVE_CLUSTER = "remove_cluster"

RUNNING = "running"
DONE = "done"
FAILED = "failed"

FINISHED_KEPT = 20
"""Finished jobs remembered (for status and for a client polling its job)."""


class ReconfigError(ValueError):
    """A refused request; the message is the one line the user sees."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """One reconfiguration job, as persisted and as shown to people.

    Fields:
        id: "j1", "j2", ... never reused.
        kind: ADD_REPLICA, REMOVE_REPLICA, ADD_CLUSTER or REMOVE_CLUSTER.
        target: the cluster (add_replica, remove_cluster, add_cluster: the new
            one) or the replica (remove_replica) the job is about.
        cluster: the cluster whose membership changes (the target's cluster).
        state: RUNNING, DONE or FAILED.
        phase: where the state machine is (internal, stable across restarts).
        step: what it is doing, for people.
        waiting: why the cluster leader could not take the step yet (its
            last report's refusal, such as "busy: ..."), or "".
        locks: the clusters it locks.
        replicas: replica ids it created (add_*) or removes (remove_*).
        moves: planned slot moves, (slot, source, destination), in order.
        moves_done: how many of `moves` are applied to the map.
        move_started: when the current move began (caller's clock, seconds).
        move_seconds: how long each finished move took, in order.
        deadline: remove_cluster: the end of the grace period (0 before).
        clean: remove_cluster: the replica whose report proved the cluster
            settled (empty until one did).
        error: why it failed, or "".
        created, finished: times (caller's clock, seconds; finished 0 while running).
    """

    id: str
    kind: str
    target: str
    cluster: str
    state: str = RUNNING
    phase: str
    step: str
    waiting: str = ""
    locks: tuple[str, ...]
    replicas: tuple[str, ...] = ()
    moves: tuple[tuple[int, str, str], ...] = ()
    moves_done: int = 0
    move_started: float = 0.0
    move_seconds: tuple[float, ...] = ()
    deadline: float = 0.0
    clean: tuple[str, ...] = ()
    error: str = ""
    created: float
    finished: float = 0.0

    def to_dict(self) -> dict:
        """Plain JSON types only."""
        data = asdict(self)
        data["moves"] = [list(move) for move in self.moves]
        for name in ("locks", "replicas", "clean", "move_seconds"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> Job:
        fields = dict(data)
        fields["moves"] = tuple((int(slot), source, destination) for slot, source, destination in data["moves"])
        for name in ("locks", "replicas", "clean", "move_seconds"):
            fields[name] = tuple(data.get(name, ()))
        return cls(**fields)

    @property
    def doing(self) -> str:
        """What the job does, as a phrase: 'adding replica c2-r3'."""
        verb = {ADD_REPLICA: "adding replica", REMOVE_REPLICA: "removing replica",
                ADD_CLUSTER: "adding cluster", REMOVE_CLUSTER: "removing cluster"}[self.kind]
        return f"{verb} {self.replicas[0] if self.kind == ADD_REPLICA else self.target}"

    def move_id(self) -> str:
        """The current move's id: unique forever, since job ids are."""
        return f"{self.id}-m{self.moves_done}"


# -- actions: what the shell carries out after persisting ---------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SendToLeader:
    """Send `message` to `cluster`'s current leader (nothing when none is known).

    Fields:
        cluster: the cluster.
        message: a MoveSlot or ChangeMembership.
    """

    cluster: str
    message: MoveSlot | ChangeMembership


@dataclass(frozen=True, kw_only=True, slots=True)
class StartServer:
    """Start (and from now on supervise) replica `replica` of `cluster`; nothing when it runs already.

    Fields:
        cluster: its cluster.
        replica: its id.
    """

    cluster: str
    replica: str


@dataclass(frozen=True, kw_only=True, slots=True)
class StopServer:
    """Stop `replica` for good: no longer supervised, its process told to exit,
    its data directory set aside (never deleted).

    Fields:
        replica: its id.
    """

    replica: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeReplicas:
    """Ask every replica of `cluster` for its status; feed the answers to
    `Reconfig.observe_replica_status`.

    Fields:
        cluster: the cluster.
    """

    cluster: str


Action = SendToLeader | StartServer | StopServer | ProbeReplicas


@dataclass(frozen=True, kw_only=True, slots=True)
class Founding:
    """A cluster's membership and slots when it was created, forever.

    Fields:
        voters: its founding voters.
        slots: the slots it owned at creation (empty for a cluster added later).
    """

    voters: tuple[str, ...]
    slots: tuple[int, ...] = ()


def _number(name: str, prefix: str) -> int | None:
    match = re.fullmatch(re.escape(prefix) + r"(\d+)", name)
    return int(match.group(1)) if match else None


@dataclass
class Reconfig:
    """The coordinator's reconfiguration state: map, jobs, id counters, founding memberships.

    Fields:
        map: the current shard map (persisted by the shell, separately).
        grace: seconds a drained cluster waits before it is removed (2 x the
            prepare timeout: participants elsewhere may still ask it about
            transactions it was primary for).
        founding: cluster -> Founding, every cluster ever created.
        next_replica: cluster -> the next replica number to hand out there.
        next_cluster: the next cluster number (`c<k>`).
        next_job: the next job number.
        jobs: every running job and the last FINISHED_KEPT finished ones, oldest first.
    """

    map: ShardMap
    grace: float
    founding: dict[str, Founding] = field(default_factory=dict)
    next_replica: dict[str, int] = field(default_factory=dict)
    next_cluster: int = 1
    next_job: int = 1
    jobs: list[Job] = field(default_factory=list)

    @classmethod
    def fresh(cls, shard_map: ShardMap, grace: float) -> Reconfig:
        """First boot: founding memberships and counters from `shard_map`
        (the epoch-1 map, or the oldest one known)."""
        founding = {name: Founding(voters=shard_map.replicas(name), slots=shard_map.slots_of(name))
                    for name in shard_map.clusters}
        next_replica = {}
        for name in shard_map.clusters:
            numbers = [_number(replica, f"{name}-r") for replica in shard_map.replicas(name)]
            next_replica[name] = max((n + 1 for n in numbers if n is not None), default=0)
        numbers = [_number(name, "c") for name in shard_map.clusters]
        next_cluster = max((n + 1 for n in numbers if n is not None), default=1)
        return cls(map=shard_map, grace=grace, founding=founding, next_replica=next_replica,
                   next_cluster=next_cluster)

    def to_json(self) -> str:
        """Everything but the map, as JSON text; read back by `from_json`."""
        return json.dumps({
            "founding": {name: {"voters": list(f.voters), "slots": list(f.slots)} for name, f in self.founding.items()},
            "next_replica": self.next_replica,
            "next_cluster": self.next_cluster,
            "next_job": self.next_job,
            "jobs": [job.to_dict() for job in self.jobs],
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, shard_map: ShardMap, grace: float) -> Reconfig:
        data = json.loads(text)
        founding = {name: Founding(voters=tuple(f["voters"]), slots=tuple(f["slots"]))
                    for name, f in data["founding"].items()}
        return cls(map=shard_map, grace=grace, founding=founding, next_replica=dict(data["next_replica"]),
                   next_cluster=data["next_cluster"], next_job=data["next_job"],
                   jobs=[Job.from_dict(job) for job in data["jobs"]])

    # -- queries ------------------------------------------------------------------------

    def job(self, job_id: str) -> Job | None:
        return next((job for job in self.jobs if job.id == job_id), None)

    def running(self) -> list[Job]:
        return [job for job in self.jobs if job.state == RUNNING]

    def removing(self) -> set[str]:
        """Replicas a running job is about to stop: not to be restarted."""
        return {replica for job in self.running() if job.phase == "stop" for replica in job.replicas}

    # -- requests -----------------------------------------------------------------------

    def add_replica(self, cluster: str, now: float) -> Job:
        self._require_free((cluster,))  # first: a cluster being created is busy, not unknown
        self._require_cluster(cluster)
        current = self.map.replicas(cluster)
        if len(current) >= MAX_REPLICAS:
            raise ReconfigError(f"cluster {cluster} already has {len(current)} replicas, the most a cluster can have")
        taken = {replica for name in self.map.clusters for replica in self.map.replicas(name)}
        number = self.next_replica.get(cluster, len(current))
        while f"{cluster}-r{number}" in taken:
            number += 1
        replica = f"{cluster}-r{number}"
        self.next_replica[cluster] = number + 1
        return self._submit(kind=ADD_REPLICA, target=cluster, cluster=cluster, locks=(cluster,),
                            replicas=(replica,), phase="start", step=f"starting {replica}", now=now)

    def remove_replica(self, server: str, now: float) -> Job:
        cluster = next((name for name in self.map.clusters if server in self.map.replicas(name)), None)
        if cluster is None:
            known = ", ".join(sorted(r for name in self.map.clusters for r in self.map.replicas(name)))
            raise ReconfigError(f"unknown server {server!r} (servers: {known})")
        if len(self.map.replicas(cluster)) == 1:
            raise ReconfigError(f"{server} is the last replica of {cluster}; "
                                f"remove the whole cluster instead (raftline remove-cluster {cluster})")
        self._require_free((cluster,))
        return self._submit(kind=REMOVE_REPLICA, target=server, cluster=cluster, locks=(cluster,),
                            replicas=(server,), phase="remove", step=f"removing {server} from {cluster}'s membership",
                            now=now)

    def add_cluster(self, replicas: int, now: float) -> Job:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= MAX_REPLICAS:
            raise ReconfigError(f"a cluster has 1..{MAX_REPLICAS} replicas, got {replicas!r}")
        if len(self.map.clusters) + 1 > len(self.map.slots):
            raise ReconfigError(f"{len(self.map.slots)} slots cannot give each of {len(self.map.clusters) + 1} "
                                "clusters one; the number of slots is fixed when the system is first started")
        self._require_free(self.map.clusters)
        number = self.next_cluster
        while f"c{number}" in self.map.clusters:
            number += 1
        name = f"c{number}"
        self.next_cluster = number + 1
        ids = tuple(f"{name}-r{index}" for index in range(replicas))
        self.founding[name] = Founding(voters=ids)
        self.next_replica[name] = replicas
        return self._submit(kind=ADD_CLUSTER, target=name, cluster=name, locks=self.map.clusters + (name,),
                            replicas=ids, phase="start", step=f"starting {', '.join(ids)}", now=now)

    def remove_cluster(self, cluster: str, now: float) -> Job:
        self._require_free((cluster,))
        self._require_cluster(cluster)
        if len(self.map.clusters) == 1:
            raise ReconfigError(f"{cluster} is the last cluster; a system needs at least one")
        self._require_free(self.map.clusters)
        others = [name for name in self.map.clusters if name != cluster]
        moves = tuple((m.slot, m.source, m.destination) for m in plan_rebalance(self.map, others))
        return self._submit(kind=REMOVE_CLUSTER, target=cluster, cluster=cluster, locks=self.map.clusters,
                            replicas=self.map.replicas(cluster), moves=moves, phase="moving", move_started=now,
                            step=f"moving {len(moves)} slots off {cluster}", now=now)

    def _require_cluster(self, cluster: str) -> None:
        if cluster not in self.map.clusters:
            raise ReconfigError(f"unknown cluster {cluster!r} (clusters: {', '.join(self.map.clusters)})")

    def _require_free(self, clusters: Iterable[str]) -> None:
        wanted = list(clusters)
        for job in self.running():
            for cluster in wanted:
                if cluster in job.locks:
                    raise ReconfigError(f"busy: {job.id} is {job.doing} on {cluster}; "
                                        "retry when it is done (raftline status shows it)")

    def _submit(self, *, now: float, **fields) -> Job:
        job = Job(id=f"j{self.next_job}", created=now, **fields)
        self.next_job += 1
        self.jobs.append(job)
        return job

    def _update(self, job: Job, **changes) -> Job:
        """Replace `job` by a copy with `changes`; a refusal it was waiting on
        holds only until the next change that does not repeat it."""
        updated = replace(job, **{"waiting": "", **changes})
        self.jobs[self.jobs.index(job)] = updated
        if updated.state != RUNNING:
            finished = [j for j in self.jobs if j.state != RUNNING]
            for old in finished[:-FINISHED_KEPT]:
                self.jobs.remove(old)
        return updated

    def _finish(self, job: Job, now: float, step: str) -> Job:
        return self._update(job, state=DONE, phase="done", step=step, finished=now)

    def _fail(self, job: Job, now: float, error: str) -> Job:
        return self._update(job, state=FAILED, phase="failed", step=f"failed: {error}", error=error, finished=now)

    # -- observations -------------------------------------------------------------------

    def observe_membership(self, report: MembershipReport, now: float) -> None:
        """A cluster leader's MembershipReport: advance the job changing that cluster's membership."""
        job = next((j for j in self.running() if j.cluster == report.cluster
                    and j.kind in (ADD_REPLICA, REMOVE_REPLICA)), None)
        if job is None or job.phase == "start":  # a new replica counts once it is in the map
            return
        replica = job.replicas[0]
        waiting = report.error
        if job.kind == REMOVE_REPLICA:
            if job.phase == "remove":
                if replica not in report.voters and replica not in report.learners and not report.pending:
                    self._update(job, phase="stop", step=f"stopping {replica}")
                else:
                    self._update(job, step=f"removing {replica} from {job.cluster}'s membership", waiting=waiting)
            return
        if replica in report.voters and not report.pending:
            self._finish(job, now, f"{replica} is a voter of {job.cluster}")
        elif job.phase == "learner":
            if replica in report.learners and not report.pending:
                self._update(job, phase="catch_up", step=f"{replica} catching up {report.match.get(replica, 0)}"
                                                         f"/{report.commit}")
            else:
                self._update(job, step=f"adding {replica} to {job.cluster} as a learner", waiting=waiting)
        elif job.phase == "catch_up":
            match = report.match.get(replica, 0)
            if replica in report.learners and not report.pending and match >= report.commit:
                self._update(job, phase="promote", step=f"promoting {replica} to voter")
            else:
                self._update(job, step=f"{replica} catching up {match}/{report.commit}", waiting=waiting)
        elif job.phase == "promote":
            self._update(job, waiting=waiting)

    def observe_move(self, progress: MoveProgress, now: float) -> None:
        """A source leader's MoveProgress: a dropped slot moves in the map; the job goes on to the next."""
        job = next((j for j in self.running() if j.phase == "moving" and j.moves_done < len(j.moves)
                    and j.move_id() == progress.move), None)
        if job is None:
            return
        slot, source, destination = job.moves[job.moves_done]
        count = f"{job.moves_done + 1} of {len(job.moves)}"
        if progress.stage == MOVE_DROPPED:
            if self.map.slots[slot] == source:
                self.map = self.map.with_move(SlotMove(slot=slot, source=source, destination=destination))
            took = round(now - job.move_started, 3)
            self._update(job, moves_done=job.moves_done + 1, move_started=now,
                         move_seconds=(*job.move_seconds, took),
                         step=f"slot {slot} {source} -> {destination} moved in {took:.2f} s "
                              f"({job.moves_done + 1}/{len(job.moves)})")
        elif progress.stage == MOVE_NOT_OWNED:
            self._fail(job, now, f"{source} says it does not own slot {slot} (move {progress.move}); "
                                 "the map and the cluster disagree")
        else:
            self._update(job, step=f"moving slot {slot} {source} -> {destination} ({count}): {_stage_text(progress)}")

    def observe_replica_status(self, replica: str, status: Mapping, now: float) -> None:
        """A replica's status while its cluster drains before removal. One report
        settles it: a replica that has applied the last drop (it owns no slot)
        and holds nothing prepared and nothing unacknowledged proves the log
        will never hold more, since every later Prepare is refused WrongEpoch.
        So a replica that never answers again does not block the removal."""
        for job in self.running():
            if job.kind == REMOVE_CLUSTER and job.phase == "settle" and replica in job.replicas:
                settled = (status.get("slots", {}).get("owned") == 0 and status.get("prepared", 0) == 0
                           and status.get("unacknowledged", 0) == 0)
                if settled and not job.clean:
                    job = self._update(job, clean=(replica,))
                self._update(job, step=self._settle_step(job, status))

    # -- driving ------------------------------------------------------------------------

    def drive(self, now: float, leaders: Mapping[str, str | None]) -> list[Action]:
        """One round over every running job: map changes it is ready for, and
        the messages to (re)send. Call every few hundred milliseconds; persist
        before carrying out the actions."""
        actions: list[Action] = []
        for job in self.running():
            actions += getattr(self, f"_drive_{job.kind}")(job, now, leaders)
        return actions

    def _drive_add_replica(self, job: Job, now: float, leaders) -> list[Action]:
        replica, cluster = job.replicas[0], job.cluster
        if job.phase == "start":
            if replica not in self.map.replicas(cluster):
                self.map = self.map.with_replicas(cluster, self.map.replicas(cluster) + (replica,))
            self._update(job, phase="learner", step=f"adding {replica} to {cluster} as a learner")
            return [StartServer(cluster=cluster, replica=replica),
                    SendToLeader(cluster=cluster, message=ChangeMembership(op=CONF_ADD_LEARNER, replica=replica))]
        op = {"learner": CONF_ADD_LEARNER, "catch_up": "", "promote": CONF_PROMOTE}[job.phase]
        return [SendToLeader(cluster=cluster, message=ChangeMembership(op=op, replica=replica))]

    def _drive_remove_replica(self, job: Job, now: float, leaders) -> list[Action]:
        replica, cluster = job.replicas[0], job.cluster
        if job.phase == "remove":
            # A leader asked to remove itself hands leadership over first; the
            # next round reaches whoever leads then.
            return [SendToLeader(cluster=cluster, message=ChangeMembership(op=CONF_REMOVE, replica=replica))]
        if replica in self.map.replicas(cluster):
            self.map = self.map.with_replicas(cluster, tuple(r for r in self.map.replicas(cluster) if r != replica))
        self._finish(job, now, f"{replica} removed from {cluster}; its data is set aside")
        return [StopServer(replica=replica)]

    def _drive_add_cluster(self, job: Job, now: float, leaders) -> list[Action]:
        cluster = job.target
        if job.phase == "start":
            if cluster not in self.map.clusters:
                self.map = self.map.with_cluster(cluster, job.replicas)
            self._update(job, phase="leader", step=f"waiting for {cluster} to elect a leader")
            return [StartServer(cluster=cluster, replica=replica) for replica in job.replicas]
        if job.phase == "leader":
            if not leaders.get(cluster):
                return []
            moves = tuple((m.slot, m.source, m.destination) for m in plan_rebalance(self.map, self.map.clusters))
            job = self._update(job, phase="moving", moves=moves, move_started=now,
                               step=f"{cluster} has a leader; moving {len(moves)} slots to it")
        if job.moves_done < len(job.moves):
            return self._send_move(job)
        self._finish(job, now, f"cluster {cluster} owns {len(self.map.slots_of(cluster))} slots")
        return []

    def _drive_remove_cluster(self, job: Job, now: float, leaders) -> list[Action]:
        cluster = job.target
        if job.phase == "moving":
            if job.moves_done < len(job.moves):
                return self._send_move(job)
            job = self._update(job, phase="settle", deadline=now + self.grace, clean=(),
                               step=f"waiting for {cluster}'s transactions to settle")
        if job.phase == "settle":
            if job.clean and now >= job.deadline:
                job = self._update(job, phase="stop", step=f"stopping {', '.join(job.replicas)}")
            else:
                return [ProbeReplicas(cluster=cluster)]
        self.map = self.map.with_cluster_removed(cluster)
        self._finish(job, now, f"cluster {cluster} removed; its replicas' data is set aside")
        return [StopServer(replica=replica) for replica in job.replicas]

    def _send_move(self, job: Job) -> list[Action]:
        slot, source, destination = job.moves[job.moves_done]
        return [SendToLeader(cluster=source, message=MoveSlot(move=job.move_id(), slot=slot, destination=destination))]

    def _settle_step(self, job: Job, status: Mapping) -> str:
        if not job.clean:
            return (f"waiting for {job.target}'s transactions to settle (prepared {status.get('prepared', 0)}, "
                    f"unacknowledged {status.get('unacknowledged', 0)} at the last report)")
        # A fixed text, so progress shows it once rather than as a countdown.
        return f"settled; keeping {job.target} up {self.grace:g} s more for participants still asking it"


def _stage_text(progress: MoveProgress) -> str:
    if progress.stage == MOVE_DRAINING:
        return f"draining {progress.prepared} prepared transaction{'s' if progress.prepared != 1 else ''}"
    if progress.stage == MOVE_SHIPPING:
        return f"shipping {progress.acked}/{progress.chunks} chunks ({progress.keys} keys)"
    return progress.stage
