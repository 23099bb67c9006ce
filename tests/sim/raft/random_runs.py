"""Randomized Raft runs: a chaos driver and a client workload on a `RaftSim`.

Rules:
- One seed fixes everything: the cluster size is given, and every choice here
  comes from streams seeded from it (`RaftSim.rng`), so a failing seed
  replays exactly.
- The chaos driver only injects what `FaultSwitches` switches on, and keeps a
  majority of the members up and awake (partitions may still cost a quorum
  for a while); a run then heals and must become live (`settle`).
- Membership changes cycle the cluster: add a learner, promote it once caught
  up, remove a voter (the leader through a leadership transfer first). A
  replica whose removal was applied is stopped two election timeouts later.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from actors.raft.messages import CONF_REMOVE, ConfChange
from actors.raft.node import RaftConfig, RaftError
from tests.sim.harness.chaos import ChaosDriver
from tests.sim.harness.fault_switches import FaultSwitches
from tests.sim.harness.network import TICK, random_groups
from tests.sim.raft.cluster import RaftSim, SimConfig, SimViolation

CHAOS_TICKS = 300
"""Ticks of faults and load per randomized run, before healing."""
SETTLE_TICKS = 300
"""Ticks a healed run has to become live."""


class Chaos(ChaosDriver):
    """Injects the switched-on faults at random moments until stopped."""

    def __init__(self, sim: RaftSim, rng: random.Random, *, pace: tuple[float, float] = (2, 12)) -> None:
        """`pace`: the range of ticks between two chaos actions."""
        faults = sim.config.faults
        super().__init__(
            sim,
            rng,
            kinds=[kind for kind in ("partition", "crash", "sleep", "member") if getattr(faults, kind)],
            pace=pace,
            longest_pause=3 * sim.config.raft.election_max,
        )
        self._retiring: set[str] = set()
        sim.on_conf_applied(self._conf_applied)

    def _unavailable(self) -> list[str]:
        sim = self.sim
        return [rid for rid in sim.members() if not sim.replicas[rid].running or sim.network.asleep(rid)]

    def _victim(self) -> str | None:
        """A running, awake member; the leader half of the time, when there is one."""
        sim = self.sim
        if len(self._unavailable()) >= len(sim.members()) // 2:
            return None
        leader = sim.leader()
        if leader is not None and self.rng.random() < 0.5:
            return leader
        candidates = [rid for rid in sim.members() if rid in sim.running() and not sim.network.asleep(rid)]
        return self.rng.choice(candidates) if candidates else None

    def _partition(self) -> None:
        """Heal, split at random, or cut off one replica (the leader half the
        time, as in figure 8), never more than a minority of members at once."""
        sim = self.sim
        roll = self.rng.random()
        if sim.network.partitioned and roll < 0.3:
            sim.heal()
        elif roll < 0.6:
            sim.partition(*random_groups(sim.running(), self.rng))
        else:
            cut = [rid for rid in sorted(sim.replicas) if sim.network.isolated(rid)]
            if len(cut) >= (len(sim.members()) - 1) // 2:
                sim.rejoin(self.rng.choice(cut))
            victim = self._victim()
            if victim is not None:
                sim.isolate(victim)

    def _replica_ids(self) -> list[str]:
        return self.sim.members()

    def _restartable(self, replica_id: str) -> bool:
        replica = self.sim.replicas[replica_id]
        return not replica.running and not replica.decommissioned

    def _member(self) -> None:
        sim = self.sim
        leader = sim.leader()
        if leader is None:
            return
        node = sim.node(leader)
        conf = node.conf
        try:
            if conf.learners:
                learner = conf.learners[0]
                if node.progress.get(learner, 0) >= node.commit:
                    sim.promote(learner)
            elif len(conf.voters) > sim.config.nodes:
                victim = self.rng.choice(sorted(conf.voters))
                if victim != leader:
                    sim.remove(victim)
                else:
                    others = [rid for rid in sorted(conf.voters) if rid != leader and rid in sim.running()]
                    if others:
                        sim.transfer(self.rng.choice(others))
            else:
                sim.add_learner()
        except RaftError:
            pass  # busy or no longer leading: the next membership step tries again

    def _conf_applied(self, replica_id: str, change: ConfChange) -> None:
        if change.op != CONF_REMOVE or change.replica in self._retiring:
            return
        self._retiring.add(change.replica)
        # The removed replica keeps running a while, so a stale replica that
        # missed its removal gets to try (and must fail) to disrupt the cluster.
        self.sim.at_tick(
            2 * self.sim.config.raft.election_max, f"retire {change.replica}", lambda: self._retire(change.replica)
        )

    def _retire(self, replica_id: str) -> None:
        if not self.sim.replicas[replica_id].decommissioned:
            self.sim.decommission(replica_id)


class Workload:
    """Clients proposing unique commands to whichever replicas believe they lead."""

    def __init__(self, sim: RaftSim, rng: random.Random, *, per_tick: float) -> None:
        self.sim = sim
        self.rng = rng
        self.per_tick = per_tick
        self.active = False
        self.sent = 0

    def start(self) -> None:
        self.active = True
        self.sim.scheduler.after(TICK // 2, self._tick)

    def stop(self) -> None:
        self.active = False

    def _tick(self) -> None:
        if not self.active:
            return
        count = int(self.per_tick) + (self.rng.random() < self.per_tick % 1)
        for _ in range(count):
            leaders = self.sim.leaders()
            if not leaders:
                break
            self.sent += 1
            self.sim.propose(b"c%05d" % self.sent, to=self.rng.choice(leaders))
        self.sim.scheduler.after(TICK, self._tick)


@dataclass(frozen=True, kw_only=True)
class SeedResult:
    """The outcome of one randomized run.

    Fields:
        seed, nodes, faults: what was run.
        violation: the first broken property, or None.
        digest: the trace digest at the end of the run.
        steps, messages, acked: counters of the run.
    """

    seed: int
    nodes: int
    faults: FaultSwitches
    violation: SimViolation | None
    digest: str
    steps: int
    messages: int
    acked: int


def random_config(seed: int, nodes: int, faults: FaultSwitches) -> SimConfig:
    """Vary what changes the shape of a run: election timing (short timeouts
    split votes often), batch size (one entry per message exposes commit
    rules that batching hides), snapshot chunk size (many chunks), and
    PreVote and CheckQuorum (without them, returning replicas force many
    more elections; safety must not depend on them)."""
    rng = random.Random(f"{seed}:config")
    election_min, election_max, heartbeat = rng.choice(((6, 12, 2), (6, 12, 2), (3, 5, 1)))
    raft = RaftConfig(
        id="template",
        election_min=election_min,
        election_max=election_max,
        heartbeat_ticks=heartbeat,
        max_batch_bytes=rng.choice((48_000, 48_000, 20, 8)),
        max_snapshot_chunk=rng.choice((48_000, 64, 7)),
        pre_vote=rng.random() < 0.75,
        check_quorum=rng.random() < 0.75,
    )
    snapshot_entries = rng.choice((10, 25, 60)) if faults.snapshot else 0
    return SimConfig(seed=seed, nodes=nodes, faults=faults, snapshot_entries=snapshot_entries, raft=raft)


def run_seed(seed: int, nodes: int, faults: FaultSwitches = FaultSwitches.all(), ticks: int = CHAOS_TICKS) -> SeedResult:
    """One randomized run: `ticks` of load and chaos, then heal and settle."""
    sim = RaftSim(random_config(seed, nodes, faults))
    violation = None
    try:
        # A storm (an action every tick or two) churns leaders fast enough to
        # catch leaders that commit on the strength of old-term entries.
        pace = sim.rng("pace").choice(((2, 12), (2, 12), (0.5, 2.5)))
        chaos = Chaos(sim, sim.rng("chaos"), pace=pace)
        workload = Workload(sim, sim.rng("clients"), per_tick=0.7)
        chaos.start()
        workload.start()
        sim.run(ticks)
        chaos.stop()
        workload.stop()
        sim.settle(SETTLE_TICKS)
    except SimViolation as error:
        violation = error
    return SeedResult(
        seed=seed,
        nodes=nodes,
        faults=faults,
        violation=violation,
        digest=sim.digest,
        steps=sim.stats.steps,
        messages=sim.messages_sent(),
        acked=sim.stats.acked,
    )


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    """Messages per committed command under a steady load, no faults.

    Fields:
        nodes, per_tick, ticks: the load offered.
        committed: commands applied on every replica.
        messages: messages sent, heartbeats and elections included.
        entries_per_batch: mean entries per entry-carrying AppendLog/RepairLogReply.
        seconds: wall time the simulation took (reporting only).
    """

    nodes: int
    per_tick: float
    ticks: int
    committed: int
    messages: int
    entries_per_batch: float
    seconds: float

    @property
    def messages_per_entry(self) -> float:
        return self.messages / max(1, self.committed)


def measure_load(seed: int, nodes: int, per_tick: float, ticks: int = 200) -> LoadResult:
    """Offer `per_tick` commands a tick to a reliable cluster and count messages."""
    started = time.perf_counter()
    sim = RaftSim(SimConfig(seed=seed, nodes=nodes))
    workload = Workload(sim, sim.rng("clients"), per_tick=per_tick)
    workload.start()
    sim.run(ticks)
    workload.stop()
    sim.settle(SETTLE_TICKS)
    committed = min(len(sim.machine(rid).commands) for rid in sim.members())
    return LoadResult(
        nodes=nodes,
        per_tick=per_tick,
        ticks=ticks,
        committed=committed,
        messages=sim.messages_sent(),
        entries_per_batch=sim.stats.batched_entries / max(1, sim.stats.batches),
        seconds=time.perf_counter() - started,
    )
