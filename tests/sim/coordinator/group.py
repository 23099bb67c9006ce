"""The coordinator group simulator: CoordinatorGroup replicas (coordinator/
group.py) on the simulated faulty network, under the faults the clusters
get (docs/DESIGN.md sections 5 and 9).

Rules:
- Each replica is a `CoordinatorGroup` over a storage that survives its
  crashes (MemoryStorage; `disk` faults make it refuse writes for a while, as
  a full disk does), driven as the shell drives it: `tick()` every tick at
  the replica's own phase, `receive()` for every delivered message, then
  `take_output()` sent in order.
- Whichever replica acts proposes a new map epoch (one above what it holds)
  every few ticks, as the acting coordinator proposes its changes.
- Checked after every step: no two replicas act in one term; a replica's
  applied epoch never goes back (crashes and restarts included); replicas
  that applied the same index hold the same values; a replica that starts
  acting holds the highest epoch any replica ever applied (so no committed
  change is lost across a hand-over).
- A run heals everything and stops the faults after `chaos_ticks`, then must
  settle within SETTLE_TICKS: one acting replica and every replica at its
  values. A run is a function of its seed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from actors.raft.node import RaftConfig
from actors.raft.storage import MemoryStorage, StorageUnavailable
from coordinator.group import CoordinatorGroup
from tests.sim.harness.chaos import ChaosDriver
from tests.sim.harness.fault_switches import FaultSwitches
from tests.sim.harness.network import TICK, Network, Scheduler, random_groups

IDS = ("coordinator-0", "coordinator-1", "coordinator-2")
PROPOSE_EVERY = 3
"""Ticks between two proposals of the acting replica."""
SETTLE_TICKS = 200


class FlakyDisk(MemoryStorage):
    """Storage that survives crashes and refuses writes while `full`."""

    full = False

    def save(self, **batch) -> None:
        if self.full and any(batch.values()):
            raise StorageUnavailable("disk full")
        super().save(**batch)


@dataclass
class SimStats:
    faults: dict[str, int] = field(default_factory=dict)
    proposals: int = 0
    hand_overs: int = 0


class CoordinatorSim:
    def __init__(self, seed: int, faults: FaultSwitches, chaos_ticks: int = 300):
        self.seed = seed
        self.rng = random.Random(f"{seed}:network")
        self.scheduler = Scheduler()
        self.network = Network(scheduler=self.scheduler, rng=self.rng, faults=faults, deliver=self._deliver)
        self.disks = {replica: FlakyDisk() for replica in IDS}
        self.replicas: dict[str, CoordinatorGroup | None] = {}
        self.stats = SimStats()
        self.violations: list[str] = []
        self.actors_of_term: dict[int, str] = {}
        self.epochs: dict[str, int] = dict.fromkeys(IDS, 0)
        self.highest_epoch = 0
        self.values_at: dict[int, str] = {}
        self.was_acting: dict[str, int] = dict.fromkeys(IDS, 0)
        self.chaos_ticks = chaos_ticks
        kinds = [kind for kind in ("partition", "crash", "sleep") if getattr(faults, kind)] + ["disk"]
        self.chaos = GroupChaos(self, random.Random(f"{seed}:chaos"), kinds=kinds, pace=(2, 10), longest_pause=30)
        phases = random.Random(f"{seed}:phase")
        for replica in IDS:
            self.restart(replica)
            self.scheduler.after(phases.randint(0, TICK - 1), lambda replica=replica: self._tick(replica))

    # -- the replicas -----------------------------------------------------------------

    def restart(self, replica: str) -> None:
        config = RaftConfig(id=replica, election_min=6, election_max=12, heartbeat_ticks=2)
        self.network.set_down(replica, False)
        self.replicas[replica] = CoordinatorGroup(config, IDS, self.disks[replica],
                                                  random.Random(f"{self.seed}:{replica}:{self.scheduler.now}"),
                                                  snapshot_entries=20)
        self._after(replica)

    def crash(self, replica: str) -> None:
        self.replicas[replica] = None
        self.network.set_down(replica, True)

    def running(self) -> list[str]:
        return [replica for replica in IDS if self.replicas[replica] is not None]

    def sleep(self, replica: str, ticks: int) -> None:
        self.network.sleep(replica, ticks)

    def heal(self) -> None:
        self.network.heal()

    def _tick(self, replica: str) -> None:
        group = self.replicas[replica]
        if group is not None and self.network.available(replica):
            group.tick()
            ticks = self.scheduler.now // TICK
            if group.acting and ticks % PROPOSE_EVERY == 0:
                epoch = json.loads(group.values.get("map", '{"epoch": 0}'))["epoch"]
                group.propose({"map": json.dumps({"epoch": epoch + 1})})
                self.stats.proposals += 1
            self._after(replica)
        self.scheduler.after(TICK, lambda: self._tick(replica))

    def _deliver(self, source: str, target: str, message) -> None:
        group = self.replicas[target]
        if group is not None:
            group.receive(message)
            self._after(target)

    def _after(self, replica: str) -> None:
        group = self.replicas[replica]
        for peer, message in group.take_output():
            self.network.send(replica, peer, message)
        self._check(replica, group)

    # -- invariants -----------------------------------------------------------------------

    def _check(self, replica: str, group: CoordinatorGroup) -> None:
        now = self.scheduler.now
        epoch = json.loads(group.values.get("map", '{"epoch": 0}'))["epoch"]
        if epoch < self.epochs[replica]:
            self.violations.append(f"t={now}: {replica}'s epoch went back from {self.epochs[replica]} to {epoch}")
        self.epochs[replica] = epoch
        self.highest_epoch = max(self.highest_epoch, epoch)
        values = json.dumps(group.values, sort_keys=True)
        if self.values_at.setdefault(group.applied, values) != values:
            self.violations.append(f"t={now}: {replica} holds other values at index {group.applied}")
        if group.acting:
            holder = self.actors_of_term.setdefault(group.term, replica)
            if holder != replica:
                self.violations.append(f"t={now}: {replica} and {holder} both act in term {group.term}")
            if self.was_acting[replica] != group.term:
                self.was_acting[replica] = group.term
                self.stats.hand_overs += 1
                if epoch < self.highest_epoch:
                    self.violations.append(f"t={now}: {replica} acts in term {group.term} at epoch {epoch}, "
                                           f"below the {self.highest_epoch} applied before")

    # -- a run ----------------------------------------------------------------------------

    def run(self) -> list[str]:
        self.chaos.start()
        self.scheduler.run_until(self.chaos_ticks * TICK)
        self.chaos.stop()
        for replica in IDS:
            self.disks[replica].full = False
            if self.replicas[replica] is None:
                self.restart(replica)
            self.network.wake(replica)
        self.network.heal()
        deadline = (self.chaos_ticks + SETTLE_TICKS) * TICK
        while self.scheduler.now < deadline and not self.settled():
            self.scheduler.run_until(self.scheduler.now + TICK)
        if not self.settled():
            states = {replica: (group.role, group.term, group.applied) for replica, group in self.replicas.items()}
            self.violations.append(f"did not settle within {SETTLE_TICKS} ticks of healing: {states}")
        return self.violations

    def settled(self) -> bool:
        groups = list(self.replicas.values())
        acting = [group for group in groups if group.acting]
        return len(acting) == 1 and all(group.values == acting[0].values for group in groups)


class GroupChaos(ChaosDriver):
    def _victim(self) -> str | None:
        """A running replica, never leaving fewer than a majority running and awake."""
        sim = self.sim
        available = [replica for replica in sim.running() if sim.network.available(replica)]
        if len(available) <= len(IDS) // 2 + 1:
            return None
        acting = [replica for replica in available if sim.replicas[replica].acting]
        if acting and self.rng.random() < 0.5:
            return acting[0]
        return self.rng.choice(available)

    def _replica_ids(self) -> list[str]:
        return list(IDS)

    def _restartable(self, replica_id: str) -> bool:
        return self.sim.replicas[replica_id] is None

    def _partition(self) -> None:
        sim = self.sim
        if sim.network.partitioned and self.rng.random() < 0.4:
            sim.heal()
        else:
            sim.network.partition(random_groups(list(IDS), self.rng))

    def _disk(self) -> None:
        """A replica's disk fills up for a few ticks (or frees up)."""
        replica = self.rng.choice(list(IDS))
        disk = self.sim.disks[replica]
        disk.full = not disk.full
        if disk.full:
            pause = self.rng.randint(1, 20)
            self.sim.scheduler.after(pause * TICK, lambda: setattr(disk, "full", False))


def run_seed(seed: int, faults: FaultSwitches | None = None) -> tuple[list[str], SimStats]:
    sim = CoordinatorSim(seed, faults if faults is not None else FaultSwitches.parse("all"))
    return sim.run(), sim.stats
