"""The simulated coordinator's reconfiguration: slot moves and membership
changes while a transaction run's load and faults go on (docs/DESIGN.md section 6).

Rules:
- It plays the real coordinator's part of the protocol and nothing more. A
  move: `MoveSlot` to the source cluster's leader (as the coordinator
  believes it to be), again every `resend_ticks`, until a `MoveProgress`
  says dropped; then the map gets the move (epoch + 1) and is pushed to
  every clerk, each copy with its own delay, some late (real MapUpdates
  race). A membership change: `ChangeMembership` to the cluster's leader,
  again every `resend_ticks`, until a `MembershipReport` shows it committed;
  an added replica starts with the cluster's founding voters and slots,
  joins as a learner, is promoted once its match index reaches the leader's
  commit index. Its messages travel the faulty network as node `COORDINATOR`.
- What it does is seeded (`plan`): random moves, adding a cluster without
  founding slots (an even share then moves to it), draining a founding
  cluster (every slot moves off it), and replica additions each followed by
  a removal (of the leader, by default half the time), at random times of
  the chaos.
- Moves run one at a time, in order. A rebalance or a drain becomes moves
  from the map when its turn comes, so nothing planned earlier undoes it;
  no move targets a drained cluster. Each cluster runs one membership job at
  a time.
- A `MoveProgress` saying not-owned for the move in flight breaks the
  protocol (the coordinator asked the slot's owner per its map): a violation.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actors.messages import (
    MOVE_DROPPED,
    MOVE_NOT_OWNED,
    ChangeMembership,
    MembershipReport,
    MoveProgress,
    MoveSlot,
)
from actors.raft.messages import CONF_ADD_LEARNER, CONF_PROMOTE, CONF_REMOVE
from coordinator.shardmap import SlotMove, plan_rebalance
from tests.sim.harness.network import TICK

if TYPE_CHECKING:
    from tests.sim.txn.cluster import TxnSim

COORDINATOR = "coord"
"""The coordinator's node on the simulated network."""

MOVE_PROTOCOL = "Move Protocol"
"""The invariant a source answering not-owned for its own slot breaks."""


@dataclass(frozen=True, kw_only=True)
class ReconfigOptions:
    """What the simulated coordinator reconfigures during a run.

    Fields:
        moves: random slot moves.
        add_cluster: add a cluster with no founding slots, then rebalance onto it.
        drain: move every slot off one founding cluster.
        membership: replica additions, each followed by a removal.
        remove_leader: the share of removals that pick the cluster's leader.
        resend_ticks: MoveSlot and ChangeMembership are sent again this often.
        late_map_ticks: the longest extra delay of a map pushed to one clerk.
        window: the share of the chaos ticks in which the actions start.
    """

    moves: int = 4
    add_cluster: bool = True
    drain: bool = True
    membership: int = 2
    remove_leader: float = 0.5
    resend_ticks: int = 3
    late_map_ticks: int = 30
    window: tuple[float, float] = (0.05, 0.6)


@dataclass(kw_only=True)
class MoveJob:
    """A move in flight.

    Fields:
        move: its id.
        slot, source, destination: what moves where.
        stage: the last stage the source reported.
    """

    move: str
    slot: int
    source: str
    destination: str
    stage: str = ""


@dataclass(kw_only=True)
class MemberJob:
    """A membership job of one cluster.

    Fields:
        cluster: the cluster.
        replica: the replica added or removed ("" until a removal picks it).
        stage: CONF_ADD_LEARNER, "catch-up", CONF_PROMOTE, CONF_REMOVE.
        then_remove: an addition is followed by a removal.
    """

    cluster: str
    replica: str
    stage: str
    then_remove: bool = False


@dataclass(kw_only=True)
class ReconfigStats:
    """Counters of one run's reconfiguration.

    Fields:
        moves: moves finished.
        added, removed: replicas added (promoted) and removed.
        clusters_added: clusters added.
        maps: maps pushed.
        log: what happened, one line each, in order.
    """

    moves: int = 0
    added: int = 0
    removed: int = 0
    clusters_added: int = 0
    maps: int = 0
    log: list[str] = field(default_factory=list)


class SimCoordinator:
    """The coordinator's reconfiguration in a TxnSim (see the module rules)."""

    def __init__(self, sim: TxnSim, options: ReconfigOptions, rng: random.Random) -> None:
        self.sim = sim
        self.options = options
        self.rng = rng
        self.stats = ReconfigStats()
        self.finished: dict[str, tuple[int, str, str]] = {}
        self.drained: set[str] = set()
        self._intents: deque[str] = deque()  # "move", "rebalance" or "drain", in order
        self._moves: deque[MoveJob] = deque()
        self._job: MoveJob | None = None
        self._members: dict[str, MemberJob] = {}
        self._member_queue: dict[str, deque[MemberJob]] = {}
        self._next_move = 0

    # -- planning -------------------------------------------------------------------

    def plan(self, ticks: int) -> None:
        """Schedule this run's actions within its first `ticks` ticks, and start resending."""
        options, rng = self.options, self.rng
        low, high = options.window
        actions = ["move"] * options.moves + ["member"] * options.membership
        if options.add_cluster:
            actions.append("add-cluster")
        if options.drain:
            actions.append("drain")
        for action in actions:
            at = int(rng.uniform(low * ticks, high * ticks) * TICK)
            self.sim.scheduler.after(
                at, lambda action=action: self.sim._step(f"reconfig {action}", lambda: self._start(action))
            )
        self.sim.scheduler.after(options.resend_ticks * TICK, self._loop)

    def _start(self, action: str) -> None:
        sim, rng = self.sim, self.rng
        if action == "move":
            self._intents.append("move")
        elif action == "add-cluster":
            cluster = sim.add_cluster()
            self.stats.clusters_added += 1
            self.note(f"cluster {cluster} added")
            self._intents.append("rebalance")
        elif action == "drain":
            active = [cluster for cluster in sim.shard_map.clusters if cluster not in self.drained]
            founding = [cluster for cluster in active if cluster in sim.founding_clusters]
            if len(active) < 2 or not founding:
                return
            victim = rng.choice(founding)
            self.drained.add(victim)
            self.note(f"drain {victim}")
            self._intents.append("drain")
        else:
            cluster = rng.choice(sim.cluster_ids)
            self._queue_member(MemberJob(cluster=cluster, replica="", stage=CONF_ADD_LEARNER, then_remove=True))

    def _queue_member(self, job: MemberJob) -> None:
        self._member_queue.setdefault(job.cluster, deque()).append(job)

    def _expand(self, kind: str) -> None:
        """Turn the next intent into moves, from the map as it is now (a drain's
        or a rebalance's: an even spread over the clusters not drained)."""
        shard_map, rng = self.sim.shard_map, self.rng
        active = [name for name in shard_map.clusters if name not in self.drained]
        if kind == "move":
            slot = rng.randrange(len(shard_map.slots))
            targets = [name for name in active if name != shard_map.slots[slot]]
            source = shard_map.slots[slot]
            moves = [SlotMove(slot=slot, source=source, destination=rng.choice(targets))] if targets else []
        else:
            moves = plan_rebalance(shard_map, active)
        for move in moves:
            self._next_move += 1
            self._moves.append(
                MoveJob(move=f"m{self._next_move}", slot=move.slot, source=move.source, destination=move.destination)
            )

    # -- the resend loop --------------------------------------------------------------

    def _loop(self) -> None:
        self.sim._step("coordinator resends", self._resend)
        self.sim.scheduler.after(self.options.resend_ticks * TICK, self._loop)

    def _resend(self) -> None:
        if self._job is None:
            while not self._moves and self._intents:
                self._expand(self._intents.popleft())
            if self._moves:
                self._job = self._moves.popleft()
                self.note(f"{self._job.move}: slot {self._job.slot} {self._job.source} -> {self._job.destination}")
        job = self._job
        if job is not None:
            self._send_to_leader(job.source, MoveSlot(move=job.move, slot=job.slot, destination=job.destination))
        for cluster in sorted(self._member_queue):
            if cluster not in self._members and self._member_queue[cluster]:
                self._begin_member(self._member_queue[cluster].popleft())
        for cluster, member in sorted(self._members.items()):
            op = "" if member.stage == "catch-up" else member.stage
            self._send_to_leader(cluster, ChangeMembership(op=op, replica=member.replica))

    def _send_to_leader(self, cluster: str, message: object) -> None:
        known = self.sim.leaders.get(cluster)
        if known is not None:
            self.sim.network.send(COORDINATOR, known[1], message)

    def _begin_member(self, job: MemberJob) -> None:
        sim = self.sim
        if job.stage == CONF_ADD_LEARNER:
            job.replica = sim.add_replica(job.cluster)
            self.note(f"add {job.replica} to {job.cluster}")
        else:
            members = sim.members[job.cluster]
            leader = sim.leaders.get(job.cluster, (0, None))[1]
            pick_leader = self.rng.random() < self.options.remove_leader
            job.replica = leader if leader in members and pick_leader else self.rng.choice(members)
            self.note(f"remove {job.replica} from {job.cluster}")
        self._members[job.cluster] = job

    # -- answers ------------------------------------------------------------------------

    def receive(self, message: object, sender: str) -> None:
        match message:
            case MoveProgress():
                self._handle_move_progress(message)
            case MembershipReport():
                self._handle_membership_report(message)
            case _:
                raise TypeError(f"the coordinator does not take {type(message).__name__} from {sender}")

    def _handle_move_progress(self, progress: MoveProgress) -> None:
        job = self._job
        if job is None or progress.move != job.move:
            return  # a late answer about a finished move
        if progress.stage == MOVE_NOT_OWNED:
            raise self.sim.violation(
                MOVE_PROTOCOL, f"{progress.cluster} says it does not own slot {job.slot} of move {job.move}"
            )
        job.stage = progress.stage
        if progress.stage != MOVE_DROPPED:
            return
        sim = self.sim
        sim.shard_map = sim.shard_map.with_move(SlotMove(slot=job.slot, source=job.source, destination=job.destination))
        self.finished[job.move] = (job.slot, job.source, job.destination)
        self.stats.moves += 1
        self.note(f"{job.move} done: map epoch {sim.shard_map.epoch}")
        self._job = None
        self.publish()

    def _handle_membership_report(self, report: MembershipReport) -> None:
        job = self._members.get(report.cluster)
        if job is None:
            return
        rid = job.replica
        member = rid in report.voters or rid in report.learners
        if job.stage == CONF_ADD_LEARNER and member and not report.pending:
            job.stage = "catch-up"
        if job.stage == "catch-up" and report.match.get(rid, 0) >= report.commit:
            job.stage = CONF_PROMOTE
        if job.stage == CONF_PROMOTE and rid in report.voters and not report.pending:
            del self._members[report.cluster]
            self.stats.added += 1
            self.note(f"{rid} promoted in {report.cluster}")
            if job.then_remove:
                self._queue_member(MemberJob(cluster=job.cluster, replica="", stage=CONF_REMOVE))
        elif job.stage == CONF_REMOVE and not member and not report.pending:
            del self._members[report.cluster]
            self.stats.removed += 1
            self.note(f"{rid} removed from {report.cluster}")
            self.sim.retire(rid)
            self.publish()

    # -- the map ------------------------------------------------------------------------

    def publish(self) -> None:
        """Push the map as it is now to every clerk, each copy delayed on its
        own, a third of them late."""
        sim = self.sim
        self.stats.maps += 1
        routing = sim.routing()
        for slot in sim.slots:
            delay = sim._coordinator_delay()
            if self.rng.random() < 1 / 3:
                delay += self.rng.randint(1, self.options.late_map_ticks) * TICK
            sim.scheduler.after(
                delay,
                lambda slot=slot, clerk=slot.id: sim._step(
                    f"map {routing.epoch} to {clerk}", lambda: sim._push_map(slot, clerk, routing)
                ),
            )

    # -- observing ------------------------------------------------------------------------

    @property
    def current(self) -> MoveJob | None:
        """The move in flight."""
        return self._job

    def note(self, line: str) -> None:
        self.stats.log.append(f"{self.sim.now_ticks}: {line}")
        self.sim._trace(f"reconfig: {line}")

    def pending(self) -> str:
        """What reconfiguration is still under way; empty when none is."""
        if self._job is not None:
            job = self._job
            return f"move {job.move} of slot {job.slot} {job.source} -> {job.destination} is at {job.stage or 'start'}"
        if self._moves or self._intents:
            return f"{len(self._moves)} moves and {len(self._intents)} plans wait"
        for cluster, job in sorted(self._members.items()):
            return f"{cluster}: {job.stage} of {job.replica} is under way"
        for cluster, queue in sorted(self._member_queue.items()):
            if queue:
                return f"{cluster}: {len(queue)} membership jobs wait"
        return ""
