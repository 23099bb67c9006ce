"""The transaction simulator: whole clusters, clerks running two-phase commit,
and every fault of the Raft simulator, on one logical clock.

    python3 -m tests.sim txn --seeds N --first-seed S [--clusters K --replicas R --clerks C]
                             [--workload uniform|hotkey|bank] [--faults ...] [--ticks T] [--no-clerk-crash]
                             [--reconfig [--moves N] [--member-changes N]]

Rules:
- Each database server is an `actors.replica.Replica` over a storage that
  survives its crashes, driven exactly as the actor shell drives it: its
  clocks (`observe_clock`, the Unix one off by up to CLOCK_SKEW_SECONDS)
  before every input, `tick()` every tick at the server's own phase, `receive()` for every delivered
  message, then `take_output()` sent in order (a leader's AppendLogs before its
  save, through `send_before_saving`). Clerks are `ClerkCore`s driven
  by `ClerkDriver`s (txn/workloads.py).
- A coordinator stand-in routes: slots -> clusters from `ShardMap.initial`,
  leaders learnt from the replicas' LeaderChange, pushed to clerks, and used
  to resolve the replicas' `ToLeaderOf`. It is not under test, so what it
  hears and says is delayed like any message but never lost.
- Timestamps: each clerk takes them as the real clerk does (clerk/timestamps.py),
  from its own clock, which is off the simulated time by up to
  CLOCK_SKEW_SECONDS either way, so validation meets timestamps from the
  past as well as from the future; commits are answered after the commit
  wait, and the judge checks real-time order (truth.judge_real_time).
- FaultSwitches: the network's delay, drop, duplicate and reorder, plus a chaos
  driver that partitions and heals, crashes and restarts replicas, puts them
  to sleep, kills clerks mid-flight (a fresh clerk with a new id takes over
  the workload) and pauses them (within the records' retention, which the
  design's safety assumes: see test_txn_sim's strict xfails). It keeps each cluster's crashed or asleep replicas a
  minority; partitions may still cost a quorum for a while.
- Reconfiguration (`TxnSimConfig.reconfig`, txn/reconfig.py): the
  coordinator stand-in also moves slots, adds a cluster, drains one, adds
  and removes replicas, all through the protocol, its messages on the faulty
  network. Replicas then serve `slots` slots from their founding ones; the
  run settles only once every move and membership change is done, and is
  judged also on where the data ended (txn.truth.judge_placement) and on a
  final read of every written key through a fresh clerk on the final map.
- Ground truth is what the replicas applied (txn/truth.py), gathered after
  every step; a replica applying a different entry at an index another one
  applied fails the run at once. A run then heals everything, stops the
  faults and new transactions, and must settle within `SETTLE_TICKS`: one
  leader per cluster, every replica at the same applied index, nothing
  prepared or unacknowledged. The settled run is judged (txn.truth.judge).
- A run is a function of its seed: every random stream is seeded from it,
  replicas and clerks are visited in a fixed order. `digest` hashes the trace.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable

from actors.keyspace import slot_of
from actors.messages import (
    ClientBatch,
    ClientBatchReply,
    LeaderChange,
    LoggedRead,
    LoggedReadResult,
    ReadCheck,
    ReadCheckResult,
    ReadResult,
)
from actors.raft.messages import ConfState, Entry, HardState, Snapshot
from actors.raft.node import LEADER, RaftConfig
from actors.raft.storage import MemoryStorage
from actors.replica import (
    Replica,
    ReplicaConfig,
    ToClient,
    ToCoordinator,
    ToLeaderOf,
    ToReplica,
)
from clerk.core import ClerkConfig, ClerkCore, Failed, ReadDone, Routing
from coordinator.shardmap import ShardMap
from tests.sim.harness.chaos import ChaosDriver
from tests.sim.harness.fault_switches import FAULT_NAMES, FaultSwitches
from tests.sim.harness.network import (
    MAX_DELAY,
    MIN_DELAY,
    TICK,
    Network,
    Scheduler,
    random_groups,
)
from tests.sim.harness.trace import Trace
from tests.sim.raft.invariants import LIVENESS, NODE_ERROR, STATE_MACHINE_SAFETY
from tests.sim.txn.reconfig import COORDINATOR, ReconfigOptions, ReconfigStats, SimCoordinator
from tests.sim.txn.truth import (
    ABANDONED,
    ABORTED,
    COMMITTED,
    FAILED,
    ClerkRecord,
    ClusterLog,
    ClusterTruth,
    Judgement,
    Release,
    judge,
    judge_placement,
    last_writes,
    replay,
)
from tests.sim.txn.workloads import (
    SIM_WORKLOADS,
    BankWorkload,
    ClerkDriver,
    Workload,
    make_workload,
)

CHECKER = "checker"
"""The node of the clerk that reads every key back once a reconfiguration run settled."""
CHAOS_TICKS = 300
"""Ticks of load and faults per randomized run, before healing."""
SETTLE_TICKS = 400

SECONDS_PER_UNIT = 0.05 / TICK
"""Simulated time in seconds: a tick is 50 ms, as the servers' default."""
SIM_EPOCH = 1_800_000_000.0
"""The Unix time at which every run begins."""
CLOCK_SKEW_SECONDS = 0.05
"""How far a clerk's clock may be off the simulated time, either way (a tick)."""
"""Ticks a healed run has to settle."""
TXN_FAULTS = FaultSwitches.parse("delay,drop,dup,reorder,partition,crash,sleep,snapshot")
"""What `all` means here: every fault but membership changes."""


class TxnViolation(AssertionError):
    """A broken property, located: which, when, for which seed; `trace_tail`
    holds the last trace lines before it."""

    def __init__(self, invariant: str, detail: str, *, seed: int, time: int, trace_tail: list[str]) -> None:
        self.invariant = invariant
        self.detail = detail
        self.seed = seed
        self.time = time
        self.trace_tail = trace_tail
        super().__init__(f"{invariant} (tick {time / TICK:.3f}, seed {seed}): {detail}")


@dataclass(frozen=True, kw_only=True)
class TxnSimConfig:
    """One simulated deployment and its load.

    Fields:
        seed: the seed every random stream derives from.
        clusters, replicas, clerks: K clusters of R replicas, C clerks.
        workload: "uniform", "hotkey" or "bank".
        faults: what the network and the chaos driver inject (`member` is ignored).
        clerk_crash: the chaos driver also kills and pauses clerks.
        slots: slots of the shard map.
        replica: template of each ReplicaConfig (cluster, conf and `raft.id` are replaced).
        clerk: template of each ClerkConfig (its `clerk` is replaced).
        chaos_pace: range of ticks between two chaos actions.
        reconfig: what the coordinator reconfigures during the run (None: nothing;
            replicas then serve every key).
    """

    seed: int
    clusters: int = 2
    replicas: int = 3
    clerks: int = 3
    workload: str = "uniform"
    faults: FaultSwitches = FaultSwitches()
    clerk_crash: bool = False
    slots: int = 16
    replica: ReplicaConfig = ReplicaConfig(cluster="template", raft=RaftConfig(id="template"), initial_conf=ConfState())
    clerk: ClerkConfig = ClerkConfig(clerk="template")
    chaos_pace: tuple[float, float] = (2, 12)
    reconfig: ReconfigOptions | None = None


class RecordingStorage(MemoryStorage):
    """MemoryStorage (for tests) that also keeps, for the simulator, each stored
    entry until its replica has applied it, so a compaction cannot hide an
    applied entry from the ground truth; and reports every snapshot it holds.

    `consumed` is the highest index handed out by `take_applied` or covered by
    an installed snapshot (the replica's machine came from it, not from entries).
    """

    def __init__(self, on_snapshot: Callable[[Snapshot], None]) -> None:
        super().__init__()
        self.commit = 0
        self.consumed = 0
        self._unapplied: dict[int, Entry] = {}
        self._on_snapshot = on_snapshot

    def append(self, entries) -> None:
        entries = tuple(entries)
        super().append(entries)
        if not entries:
            return
        # The stored log now ends at the last appended entry: forget any later one.
        last = entries[-1].index
        for index in [index for index in self._unapplied if index > last]:
            del self._unapplied[index]
        for entry in entries:
            if entry.index > self.consumed:
                self._unapplied[entry.index] = entry

    def set_hard_state(self, hard_state: HardState) -> None:
        super().set_hard_state(hard_state)
        self.commit = hard_state.commit

    def install_snapshot(self, snapshot: Snapshot) -> None:
        super().install_snapshot(snapshot)
        self.consumed = max(self.consumed, snapshot.index)
        self._unapplied = {entry.index: entry for entry in self.entries() if entry.index > self.consumed}
        self._on_snapshot(snapshot)

    def compact(self, snapshot: Snapshot) -> None:
        super().compact(snapshot)
        self._on_snapshot(snapshot)

    def take_applied(self, applied: int) -> list[Entry]:
        """The entries newly applied up to `applied`, in order."""
        if applied <= self.consumed:
            return []
        missing = [index for index in range(self.consumed + 1, applied + 1) if index not in self._unapplied]
        if missing:
            raise AssertionError(f"entries {missing[0]}..{missing[-1]} were applied but never stored")
        taken = [self._unapplied.pop(index) for index in range(self.consumed + 1, applied + 1)]
        self.consumed = applied
        return taken


class Server:
    """One database server process: its storage survives crashes, its Replica does not."""

    def __init__(self, replica_id: str, cluster: str, storage: RecordingStorage) -> None:
        self.id = replica_id
        self.cluster = cluster
        self.storage = storage
        self.replica: Replica | None = None
        self.incarnation = 0
        self.clock_skew = 0.0  # how far its Unix clock is off the simulated time

    @property
    def running(self) -> bool:
        return self.replica is not None


class ClerkSlot:
    """One clerk process at a time running one driver's workload; a killed
    clerk is replaced by a fresh one with a new id."""

    def __init__(self, number: int, driver: ClerkDriver) -> None:
        self.number = number
        self.driver = driver
        self.generation = 0
        self.id = ""
        self.core: ClerkCore | None = None
        self.last_tick = -1  # scheduler time of the core's last tick; -1 before the first


@dataclass(frozen=True, kw_only=True)
class Trap:
    """A scenario's hook on what clerks send: the first output holding a batch
    that `matches` fires `action(slot)` once, before or after it is sent.

    Fields:
        matches: which ClientBatch springs it.
        action: what then happens (kill the clerk, crash a leader, partition...).
        before_send: fire before the output leaves (a clerk killed then sends nothing).
    """

    matches: Callable[[ClientBatch], bool]
    action: Callable[[ClerkSlot], None]
    before_send: bool = False


@dataclass(kw_only=True)
class TxnStats:
    """Counters of one run.

    Fields:
        steps: events run.
        faults: chaos actions taken, by kind.
        clerk_deaths: clerks killed.
    """

    steps: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    clerk_deaths: int = 0


class TxnSim:
    """K clusters, C clerks and a coordinator stand-in on a simulated network
    (see the module docstring)."""

    def __init__(self, config: TxnSimConfig, workload: Workload | None = None) -> None:
        """`workload` replaces the one `config.workload` names (for scripted scenarios)."""
        self.config = config
        self.seed = config.seed
        self.scheduler = Scheduler()
        self.stats = TxnStats()
        self._trace = Trace(self.scheduler)
        self.network = Network(
            scheduler=self.scheduler,
            rng=self.rng("network"),
            faults=config.faults,
            deliver=self._on_deliver,
            trace=self._trace,
        )
        self.cluster_ids = tuple(f"c{number + 1}" for number in range(config.clusters))
        members = {
            cluster: tuple(f"{cluster}-r{number}" for number in range(config.replicas)) for cluster in self.cluster_ids
        }
        self.shard_map = ShardMap.initial(self.cluster_ids, members, config.slots)
        self.founding_clusters = self.cluster_ids
        # What every replica of a cluster is started with, forever; `members`
        # follows the membership changes.
        self.founding: dict[str, tuple[str, ...]] = dict(members)
        self.founding_slots = {cluster: self.shard_map.slots_of(cluster) for cluster in self.cluster_ids}
        self.members = dict(members)
        self.slot_count = config.slots if config.reconfig is not None else 0
        self.logs = {
            cluster: ClusterLog(cluster, slot_count=self.slot_count, founding_slots=self._machine_slots(cluster))
            for cluster in self.cluster_ids
        }
        self.elections: dict[str, list[int]] = {cluster: [] for cluster in self.cluster_ids}
        self.servers: dict[str, Server] = {}
        self.retired: dict[str, Server] = {}  # removed from their cluster: stopped for good
        self._created = {cluster: len(members[cluster]) for cluster in self.cluster_ids}
        self.leaders: dict[str, tuple[int, str]] = {}  # what the coordinator believes: cluster -> (term, leader)
        # (server, client token, req) -> the read check or logged read it was asked, until answered.
        self._checks_asked: dict[tuple[str, str, int], ReadCheck | LoggedRead] = {}
        self._coordinator_rng = self.rng("coordinator")
        self._phase_rng = self.rng("phase")
        self._clerk_rng = self.rng("clerk-core")
        self._skew_rng = self.rng("clock-skew")
        self.heal_time: int | None = None
        self.workload = workload if workload is not None else make_workload(config.workload)
        self.records: list[ClerkRecord] = []
        self.slots: list[ClerkSlot] = []
        self.traps: list[Trap] = []
        self.coordinator = (
            SimCoordinator(self, config.reconfig, self.rng("reconfig")) if config.reconfig is not None else None
        )
        self._checker: ClerkCore | None = None

        def boot() -> None:
            for cluster in self.cluster_ids:
                for replica_id in members[cluster]:
                    self._start_server(replica_id, cluster)
            for number in range(config.clerks):
                driver = ClerkDriver(
                    workload=self.workload,
                    rng=self.rng(f"driver:{number}"),
                    clock=self.skewed_clock(),
                    max_clock_offset=2 * CLOCK_SKEW_SECONDS,
                    records=self.records,
                )
                slot = ClerkSlot(number + 1, driver)
                self.slots.append(slot)
                self._start_clerk(slot)
                phase = self._phase_rng.randint(0, TICK - 1)
                self.scheduler.after(phase, lambda slot=slot: self._clerk_loop(slot))

        self._step("boot", boot)

    # -- identity, randomness, trace ----------------------------------------

    def rng(self, stream: str) -> random.Random:
        """A random stream of this run, named so that adding one shifts no other."""
        return random.Random(f"{self.seed}:{stream}")

    @property
    def digest(self) -> str:
        """SHA-256 of the trace so far: equal for two runs of one seed."""
        return self._trace.digest

    @property
    def now_ticks(self) -> int:
        return self.scheduler.now // TICK

    def skewed_clock(self) -> Callable[[], float]:
        """A clerk's clock: Unix seconds as it reads them, off the simulated time by a fixed skew."""
        skew = self._skew_rng.uniform(-CLOCK_SKEW_SECONDS, CLOCK_SKEW_SECONDS)
        return lambda: SIM_EPOCH + self.scheduler.now * SECONDS_PER_UNIT + skew

    def cluster_of(self, key: str) -> str:
        return self.shard_map.slots[slot_of(key, len(self.shard_map.slots))]

    # -- stepping -----------------------------------------------------------

    def _step(self, label: str, action: Callable[[], None]) -> None:
        """Run one event; what it breaks is reported as a located TxnViolation."""
        self.stats.steps += 1
        self._trace(label)
        try:
            action()
        except TxnViolation:
            raise
        except Exception as error:
            raise self.violation(NODE_ERROR, f"{label}: {type(error).__name__}: {error}") from error

    def violation(self, invariant: str, detail: str) -> TxnViolation:
        return TxnViolation(
            invariant, detail, seed=self.seed, time=self.scheduler.now, trace_tail=self._trace.tail()
        )

    def run(self, ticks: float) -> None:
        self.scheduler.run_until(self.scheduler.now + int(ticks * TICK))

    def run_until(self, done: Callable[[], bool], max_ticks: float) -> bool:
        """Run until `done()` holds, checked every tick; False if it never did in time."""
        deadline = self.scheduler.now + int(max_ticks * TICK)
        while not done():
            if self.scheduler.now >= deadline:
                return False
            self.scheduler.run_until(min(deadline, self.scheduler.now + TICK))
        return True

    # -- servers ------------------------------------------------------------

    def _start_server(self, replica_id: str, cluster: str) -> None:
        log = self.logs[cluster]
        storage = RecordingStorage(lambda snapshot: log.record_snapshot(replica_id, snapshot.index, snapshot.data))
        server = Server(replica_id, cluster, storage)
        server.clock_skew = self.rng(f"server-clock:{replica_id}").uniform(-CLOCK_SKEW_SECONDS, CLOCK_SKEW_SECONDS)
        self.servers[replica_id] = server
        self._boot(server)
        phase = self._phase_rng.randint(0, TICK - 1)
        self.scheduler.after(phase, lambda: self._server_loop(server))

    def _machine_slots(self, cluster: str) -> tuple[int, ...]:
        return self.founding_slots.get(cluster, ()) if self.slot_count else ()

    def _replica_config(self, server: Server) -> ReplicaConfig:
        return replace(
            self.config.replica,
            cluster=server.cluster,
            raft=replace(self.config.replica.raft, id=server.id),
            initial_conf=ConfState(voters=self.founding[server.cluster]),
            slot_count=self.slot_count,
            founding_slots=self._machine_slots(server.cluster),
            max_clock_offset=2 * CLOCK_SKEW_SECONDS,
        )

    def _boot(self, server: Server) -> None:
        """Start the server's process from its storage (the Replica recovers by itself)."""
        server.incarnation += 1
        rng = self.rng(f"replica:{server.id}:{server.incarnation}")
        # As the shell does: a leader's AppendLogs leave before its own save.
        server.replica = Replica(self._replica_config(server), server.storage, rng,
                                 send_before_saving=lambda appends: self._send(server, appends))
        self.network.set_down(server.id, False)
        self._after(server)

    def _server_loop(self, server: Server) -> None:
        if server.id in self.retired:
            return
        if server.running and self.network.available(server.id):
            self._step(f"tick {server.id}", lambda: self._tick(server))
        self.scheduler.after(TICK, lambda: self._server_loop(server))

    def _observe_clock(self, server: Server) -> None:
        """As the shell does before every input: the monotonic clock is the
        simulated time itself, the Unix clock is off it by the server's skew."""
        seconds = self.scheduler.now * SECONDS_PER_UNIT
        server.replica.observe_clock(monotonic=seconds, unix=SIM_EPOCH + seconds + server.clock_skew)

    def _tick(self, server: Server) -> None:
        self._observe_clock(server)
        server.replica.tick()
        self._after(server)

    def _after(self, server: Server) -> None:
        """Gather what the replica applied, then send what it output."""
        storage = server.storage
        if storage.commit > storage.consumed:
            log = self.logs[server.cluster]
            for entry in storage.take_applied(server.replica.status()["applied"]):
                conflict = log.record(server.id, entry, self.scheduler.now)
                if conflict is not None:
                    raise self.violation(STATE_MACHINE_SAFETY, conflict)
        self._send(server, server.replica.take_output())

    def _send(self, server: Server, output: list) -> None:
        for destination, message in output:
            match destination:
                case ToReplica(replica=to):
                    self.network.send(server.id, to, message)
                case ToClient(token=token):
                    if isinstance(message, ClientBatchReply):
                        self._note_answered_checks(server, token, message)
                    self.network.send(server.id, token, message)
                case ToLeaderOf(cluster=cluster):
                    # Unknown leader: dropped, as the shell does; the sender's timers retry.
                    if cluster in self.leaders:
                        self.network.send(server.id, self.leaders[cluster][1], message)
                case ToCoordinator() if isinstance(message, LeaderChange):
                    self.elections[server.cluster].append(self.scheduler.now)
                    self._to_coordinator(message)
                case ToCoordinator():
                    # Reconfiguration answers travel the faulty network.
                    self.network.send(server.id, COORDINATOR, message)

    # -- coordinator stand-in -----------------------------------------------

    def _coordinator_delay(self) -> int:
        return self._coordinator_rng.randint(MIN_DELAY, MAX_DELAY)

    def _to_coordinator(self, message: LeaderChange) -> None:
        self.scheduler.after(
            self._coordinator_delay(), lambda: self._step(f"coordinator {message!r}", lambda: self._learn(message))
        )

    def _learn(self, change: LeaderChange) -> None:
        known = self.leaders.get(change.cluster)
        if known is not None and known[0] >= change.term:
            return
        self.leaders[change.cluster] = (change.term, change.leader)
        for slot in self.slots:
            self.scheduler.after(
                self._coordinator_delay(),
                lambda slot=slot, clerk=slot.id: self._step(f"map to {clerk}", lambda: self._push_map(slot, clerk)),
            )

    def routing(self) -> Routing:
        return Routing(
            epoch=self.shard_map.epoch,
            slots=self.shard_map.slots,
            members=dict(self.members),
            leaders={cluster: leader for cluster, (_, leader) in sorted(self.leaders.items())},
        )

    def _push_map(self, slot: ClerkSlot, clerk: str, routing: Routing | None = None) -> None:
        """Give the clerk `routing` (a map sent earlier), else the map as it is now."""
        if slot.core is not None and slot.id == clerk:
            slot.core.update_routing(routing if routing is not None else self.routing())

    # -- reconfiguration (the coordinator's side is txn/reconfig.py) ---------

    def add_cluster(self) -> str:
        """Start a new cluster with no founding slots and add it to the map."""
        cluster = f"c{len(self.cluster_ids) + 1}"
        replicas = tuple(f"{cluster}-r{number}" for number in range(self.config.replicas))
        self.cluster_ids = (*self.cluster_ids, cluster)
        self.founding[cluster] = replicas
        self.members[cluster] = replicas
        self._created[cluster] = len(replicas)
        self.logs[cluster] = ClusterLog(cluster, slot_count=self.slot_count)
        self.elections[cluster] = []
        self.shard_map = self.shard_map.with_cluster(cluster, replicas)
        for replica_id in replicas:
            self._start_server(replica_id, cluster)
            # Started by the coordinator: on its side of a partition.
            self.network.place(replica_id, beside=COORDINATOR)
        return cluster

    def add_replica(self, cluster: str) -> str:
        """Start a new replica of `cluster` (it waits to be added as a learner)."""
        replica_id = f"{cluster}-r{self._created[cluster]}"
        self._created[cluster] += 1
        self.members[cluster] = (*self.members[cluster], replica_id)
        self._start_server(replica_id, cluster)
        self.network.place(replica_id, beside=self.members[cluster][0])
        return replica_id

    def retire(self, replica_id: str) -> None:
        """Stop a replica removed from its cluster, for good."""
        server = self.servers.pop(replica_id)
        self.retired[replica_id] = server
        server.replica = None
        self.network.set_down(replica_id, True)
        self.members[server.cluster] = tuple(rid for rid in self.members[server.cluster] if rid != replica_id)

    # -- clerks -------------------------------------------------------------

    def _start_clerk(self, slot: ClerkSlot) -> None:
        previous = slot.id
        slot.generation += 1
        slot.id = f"k{slot.number}.{slot.generation}"
        config = replace(self.config.clerk, clerk=slot.id)
        slot.core = ClerkCore(config, self.routing(), random.Random(self._clerk_rng.getrandbits(64)))
        slot.last_tick = -1
        self.network.set_down(slot.id, False)
        if previous:
            self.network.place(slot.id, beside=previous)
        slot.driver.attach(slot.core, slot.id, self.now_ticks)

    def _clerk_loop(self, slot: ClerkSlot) -> None:
        if slot.core is not None and self.network.available(slot.id):
            self._step(f"tick {slot.id}", lambda: self._clerk_tick(slot))
        self.scheduler.after(TICK, lambda: self._clerk_loop(slot))

    def _clerk_tick(self, slot: ClerkSlot) -> None:
        # Real time for the clerk: after a pause it sees every tick it missed,
        # as the actor shell does.
        missed = (self.scheduler.now - slot.last_tick) // TICK if slot.last_tick >= 0 else 1
        slot.last_tick = self.scheduler.now
        slot.core.tick(max(1, missed))
        self._flush_clerk(slot)

    def _flush_clerk(self, slot: ClerkSlot) -> None:
        """Let the driver act, then send the clerk's output; repeat while
        completions start new operations."""
        while slot.core is not None:
            slot.driver.tick(self.now_ticks)
            output = slot.core.take_output()
            completions = slot.core.take_completions()
            sprung = [trap for trap in self.traps if any(trap.matches(batch) for _, batch in output)]
            for trap in sprung:
                self.traps.remove(trap)
            self._fire(sprung, slot, before_send=True)
            if slot.core is None:
                return
            for replica, batch in output:
                self.network.send(slot.id, replica, batch)
            self._fire(sprung, slot, before_send=False)
            if slot.core is None:
                return
            for completion in completions:
                slot.driver.handle(completion, self.now_ticks)
            if not completions:
                return

    def _fire(self, traps: list[Trap], slot: ClerkSlot, *, before_send: bool) -> None:
        for trap in traps:
            if trap.before_send == before_send:
                self._trace(f"trap fires on {slot.id}")
                trap.action(slot)

    def pause_clerk(self, slot: ClerkSlot, ticks: int) -> None:
        """Freeze the clerk's process for `ticks`: it neither ticks nor hears."""
        self._step(f"pause {slot.id}", lambda: self.network.sleep(slot.id, ticks))

    def kill_clerk(self, slot: ClerkSlot, *, restart_after: int = 0) -> None:
        """The clerk process dies: its ClerkCore and whatever it was doing are
        gone; a fresh clerk takes over the workload `restart_after` ticks later."""
        self.stats.clerk_deaths += 1
        self._trace(f"kill clerk {slot.id}")
        self.network.set_down(slot.id, True)
        slot.core = None
        dead = slot.id

        def restart() -> None:
            if slot.core is None and slot.id == dead:
                self._start_clerk(slot)

        self.scheduler.after(restart_after * TICK, lambda: self._step(f"start clerk after {dead}", restart))

    # -- network ------------------------------------------------------------

    def _on_deliver(self, src: str, dst: str, message: object) -> None:
        if dst == COORDINATOR:
            self._step(f"deliver {src}->{dst}", lambda: self.coordinator.receive(message, src))
            return
        if dst == CHECKER:
            if self._checker is not None:
                self._step(f"deliver {src}->{dst}", lambda: self._checker.receive(message))
            return
        server = self.servers.get(dst)
        if server is not None:
            if server.running:
                self._step(f"deliver {src}->{dst}", lambda: self._receive(server, message, src))
            return
        for slot in self.slots:
            if slot.id == dst and slot.core is not None:
                self._step(f"deliver {src}->{dst}", lambda: self._clerk_receive(slot, message))

    def _note_answered_checks(self, server: Server, token: str, reply: ClientBatchReply) -> None:
        """Ground truth for checks a leader answered from its lease (truth.ClusterLog.record_answered_check)."""
        for response in reply.responses:
            check = self._checks_asked.pop((server.id, token, response.req), None)
            verdict = response.result
            if check is not None and isinstance(verdict, (ReadCheckResult, LoggedReadResult)) and verdict.ok:
                self.logs[server.cluster].record_answered_check(check, verdict)

    def _receive(self, server: Server, message: object, sender: str) -> None:
        if isinstance(message, ClientBatch):
            for request in message.requests:
                if isinstance(request.op, (ReadCheck, LoggedRead)):
                    self._checks_asked[(server.id, sender, request.req)] = request.op
        self._observe_clock(server)
        server.replica.receive(message, sender)
        self._after(server)

    def _clerk_receive(self, slot: ClerkSlot, message: object) -> None:
        slot.core.receive(message)
        self._flush_clerk(slot)

    # -- faults -------------------------------------------------------------

    def crash(self, replica_id: str) -> None:
        """Kill the server's process: the Replica is lost, the storage stays."""

        def act() -> None:
            self.servers[replica_id].replica = None
            self.network.set_down(replica_id, True)

        self._step(f"crash {replica_id}", act)

    def restart(self, replica_id: str) -> None:
        self._step(f"restart {replica_id}", lambda: self._boot(self.servers[replica_id]))

    def sleep(self, replica_id: str, ticks: int) -> None:
        self._step(f"sleep {replica_id}", lambda: self.network.sleep(replica_id, ticks))

    def partition(self, *groups: list[str]) -> None:
        self._step("partition", lambda: self.network.partition(groups))

    def isolate(self, node: str) -> None:
        self._step(f"isolate {node}", lambda: self.network.isolate(node))

    def heal(self) -> None:
        self._step("heal", self.network.heal)

    # -- observing ----------------------------------------------------------

    def nodes(self) -> list[str]:
        """Every server and live clerk (and the coordinator when it reconfigures), in a fixed order."""
        nodes = sorted(self.servers) + [slot.id for slot in self.slots if slot.core is not None]
        return nodes + [COORDINATOR] if self.coordinator is not None else nodes

    def status(self, replica_id: str) -> dict:
        return self.servers[replica_id].replica.status()

    def leader_of(self, cluster: str) -> str | None:
        """The running, awake replica of `cluster` that leads at the highest term."""
        leading = [
            (status["term"], rid)
            for rid in self.members[cluster]
            if self.servers[rid].running and self.network.available(rid)
            for status in [self.status(rid)]
            if status["role"] == LEADER
        ]
        return max(leading)[1] if leading else None

    # -- the end ------------------------------------------------------------

    def settle(self, max_ticks: float = SETTLE_TICKS) -> None:
        """Heal everything, stop faults and new transactions, restart what is
        down, then require the run to settle within `max_ticks`."""

        def calm() -> None:
            self.network.faults = FaultSwitches()
            self.network.heal()
            for rid in sorted(self.servers):
                self.network.wake(rid)
                if not self.servers[rid].running:
                    self._boot(self.servers[rid])
            for slot in self.slots:
                slot.driver.active = False
                self.network.wake(slot.id)
                if slot.core is None:
                    self._start_clerk(slot)
            self.heal_time = self.scheduler.now

        self._step("settle", calm)
        if not self.run_until(lambda: not self.unsettled(), max_ticks):
            raise self.violation(LIVENESS, f"not settled {max_ticks} ticks after the heal: {self.unsettled()}")

    def unsettled(self) -> str:
        """What keeps the run from being settled now; empty when it is."""
        if self.coordinator is not None and (pending := self.coordinator.pending()):
            return pending
        for slot in self.slots:
            if slot.driver.busy:
                return f"clerk {slot.id} still runs {slot.driver.txid}"
        for cluster in self.cluster_ids:
            leader = self.leader_of(cluster)
            if leader is None:
                return f"{cluster} has no leader"
            if self.leaders.get(cluster, (0, None))[1] != leader:
                return f"the coordinator does not know {cluster}'s leader {leader}"
            last = self.logs[cluster].last_index
            for rid in self.members[cluster]:
                status = self.status(rid)
                if rid != leader and status["role"] == LEADER:
                    return f"{cluster} has two leaders, {leader} and {rid}"
                if status["applied"] != last:
                    return f"{rid} applied {status['applied']} of {last}"
                if status["prepared"] or status["unacknowledged"]:
                    return f"{rid} holds {status['prepared']} prepared and {status['unacknowledged']} unacknowledged"
                if status["violations"] or status["decision_conflicts"]:
                    conflicts = status["decision_conflicts"]
                    return f"{rid} reports {status['violations']} violations and {conflicts} decision conflicts"
        return ""

    def release(self) -> Release:
        """How soon prepared transactions must be released after the heal
        (txn.truth.Release): the design's bound is a prepare timeout plus an
        election. The limit, counted once both clusters have their leaders, is
        two timeouts: a participant that asks before its primary timed T out
        is told "prepared" and asks again only a full timeout later (see
        test_txn_sim's strict xfail). Both allow slack for message delays and
        the decision's own commit round."""
        raft, timeout = self.config.replica.raft, self.config.replica.prepare_timeout_ticks
        slack = 2 * raft.heartbeat_ticks + 4
        return Release(
            heal_time=self.heal_time if self.heal_time is not None else self.scheduler.now,
            bound=(timeout + raft.election_max + slack) * TICK,
            limit=(2 * timeout + slack) * TICK,
            elections=self.elections,
        )

    def judge(self) -> Judgement:
        """Replay every cluster's log and judge the settled run (txn.truth.judge),
        adding any replica whose state disagrees with its cluster's replay."""
        bank = self.workload.bank if isinstance(self.workload, BankWorkload) else None
        truths = {cluster: replay(log) for cluster, log in self.logs.items()}
        judgement = judge(
            truths,
            self.records,
            cluster_of=self.cluster_of,
            release=self.release(),
            bank=bank,
        )
        judgement.violations += self._diverged(truths)
        if self.coordinator is not None:
            unlogged = {
                cluster: self.servers[leader].replica.lease_read_stamps
                for cluster, (_, leader) in self.leaders.items()
                if leader in self.servers and self.servers[leader].running
            }
            judgement.violations += judge_placement(
                truths, owners=self.shard_map.slots, moves=self.coordinator.finished, committed=judgement.committed,
                unlogged_read_stamps=unlogged,
            )
            judgement.violations += self._read_back(last_writes(truths))
        return judgement

    def _read_back(self, expected: dict[str, tuple]) -> list[str]:
        """Read every written key through a fresh clerk on the final map: each
        must hold its last committed write."""
        if not expected:
            return []
        done = self.read_keys(sorted(expected))
        if done is None:
            return ["read-back: a fresh clerk could not read every key after the run settled"]
        found = []
        for key, (stamp, exists, value) in sorted(expected.items()):
            held = done[key]
            if (held.version, held.exists, held.value if held.exists else None) != (stamp, exists, value):
                found.append(
                    f"read-back: {key} reads {held.value!r} at {held.version} from {self.cluster_of(key)},"
                    f" but its last committed write is {value!r} at {stamp}"
                )
        return found

    def read_keys(self, keys: list[str], max_ticks: float = 100) -> dict[str, ReadResult] | None:
        """Read `keys` with a fresh clerk on the current map (None: it could not)."""
        core = ClerkCore(
            replace(self.config.clerk, clerk=CHECKER, read_from_followers=False),
            self.routing(),
            self.rng("checker"),
        )
        self._checker = core
        self.network.set_down(CHECKER, False)
        completions: list = []

        def loop() -> None:
            if self._checker is not core:
                return
            core.tick()
            for replica, batch in core.take_output():
                self.network.send(CHECKER, replica, batch)
            completions.extend(core.take_completions())
            self.scheduler.after(TICK, loop)

        core.read(1, keys)
        self._step("read back", loop)
        self.run_until(lambda: bool(completions), max_ticks)
        self._checker = None
        match completions:
            case [ReadDone(values=values)]:
                return values
            case [] | [Failed()]:
                return None
        raise AssertionError(f"the read-back clerk completed with {completions}")

    def _diverged(self, truths: dict[str, ClusterTruth]) -> list[str]:
        """Replicas whose view of their machine differs from the replay's (the
        entries they applied were compared step by step; this catches a
        machine that went astray in a snapshot or a restart)."""
        found = []
        for cluster, truth in truths.items():
            machine = truth.machine
            expected = {
                "applied": self.logs[cluster].last_index,
                "threshold": list(machine.threshold),
                "records": len(machine.records()),
                "prepared": len(machine.prepared()),
                "unacknowledged": len(machine.unacknowledged()),
                "keys": machine.key_count(),
            }
            for rid in self.members[cluster]:
                status = self.status(rid)
                seen = {name: status[name] for name in expected}
                if seen != expected:
                    found.append(f"{rid} holds {seen}, but its cluster's applied log gives {expected}")
        return found


class TxnChaos(ChaosDriver):
    """Injects the switched-on faults at random moments until stopped."""

    def __init__(self, sim: TxnSim, rng: random.Random) -> None:
        faults = sim.config.faults
        kinds = [kind for kind in ("partition", "crash", "sleep") if getattr(faults, kind)]
        if sim.config.clerk_crash:
            kinds.append("clerk")
        super().__init__(
            sim, rng, kinds=kinds, pace=sim.config.chaos_pace, longest_pause=3 * sim.config.replica.raft.election_max
        )

    def _victim(self) -> str | None:
        """A running, awake replica of a random cluster whose crashed or asleep
        replicas stay a minority; its leader half of the time."""
        sim = self.sim
        cluster = self.rng.choice(sim.cluster_ids)
        members = sim.members[cluster]
        out = [rid for rid in members if not sim.servers[rid].running or sim.network.asleep(rid)]
        if len(out) + 1 > (len(members) - 1) // 2:
            return None
        leader = sim.leader_of(cluster)
        if leader is not None and self.rng.random() < 0.5:
            return leader
        return self.rng.choice([rid for rid in members if rid not in out])

    def _partition(self) -> None:
        """Heal, split every node (clerks too) at random, or cut off one replica."""
        sim = self.sim
        roll = self.rng.random()
        # Heal more readily than the Raft chaos does: a random split of every
        # node often leaves a clerk without a quorum of some cluster it needs.
        if sim.network.partitioned and roll < 0.5:
            sim.heal()
        elif roll < 0.6:
            sim.partition(*random_groups(sim.nodes(), self.rng))
        else:
            victim = self._victim()
            if victim is not None:
                sim.isolate(victim)

    def _replica_ids(self) -> list[str]:
        return sorted(self.sim.servers)

    def _restartable(self, replica_id: str) -> bool:
        # A replica removed from its cluster while down stays down.
        server = self.sim.servers.get(replica_id)
        return server is not None and not server.running

    def _clerk(self) -> None:
        """Kill a clerk, or pause it (a frozen process: no ticks, messages to it lost)."""
        sim = self.sim
        alive = [slot for slot in sim.slots if slot.core is not None and not sim.network.asleep(slot.id)]
        if not alive:
            return
        slot = self.rng.choice(alive)
        if self.rng.random() < 0.6:
            sim.kill_clerk(slot, restart_after=self.rng.randint(0, 5))
        else:
            sim.pause_clerk(slot, self.rng.randint(1, clerk_pause_limit(sim.config.replica.raft)))


# -- randomized runs ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TxnSeedResult:
    """The outcome of one randomized run.

    Fields:
        seed, workload: what was run.
        violations: broken properties (the first located one, or the judge's list).
        digest: the trace digest at the end of the run.
        outcomes: clerk outcomes counted (committed, aborted, failed, abandoned).
        causes: aborts by cause (a validation rule, a decision, an unanswered prepare).
        read_failures: read phases that failed.
        longest_prepared_after_heal: ticks, the longest any transaction stayed prepared past the heal.
        late_releases: transactions released after the design's bound (TxnSim.release).
        steps: events run.
        trace_tail: the last trace lines before a violation found while running.
        reconfig: what the coordinator reconfigured (None: nothing was asked).
        moved: commits refused because a slot moved, retried by their clerks.
    """

    seed: int
    workload: str
    violations: tuple[str, ...]
    digest: str
    outcomes: Counter
    causes: Counter
    read_failures: int
    longest_prepared_after_heal: float
    late_releases: tuple[str, ...]
    steps: int
    trace_tail: tuple[str, ...] = ()
    reconfig: ReconfigStats | None = None
    moved: int = 0


def abort_cause(reason: str) -> str:
    """What made a transaction abort, from its clerk's reason."""
    rule = re.search(r"rule (\d)", reason)
    if rule:
        return f"rule {rule.group(1)}" + (" (threshold)" if rule.group(1) == "1" else "")
    if "did not answer" in reason:
        return "unanswered prepare"
    if reason.startswith("moved"):
        return "slot moved"
    return "decision"


def clerk_window_ticks(clerk: ClerkConfig, faults: FaultSwitches) -> int:
    """How long, in the clerk's ticks, after its first Prepare a clerk may
    still send a commit decision: every prepare attempt's wait, then the
    outcome budget; plus the longest message delay."""
    waits, wait = 0, clerk.request_timeout_ticks
    for _ in range(clerk.max_attempts):
        waits += wait
        wait = min(2 * wait, clerk.max_backoff_ticks)
    return waits + clerk.outcome_budget_ticks + faults.long_delay_ticks + 1


def clerk_pause_limit(raft: RaftConfig) -> int:
    """The longest clerk pause the chaos driver injects, in ticks."""
    return 3 * raft.election_max


def random_config(
    seed: int,
    *,
    workload: str,
    clusters: int = 2,
    replicas: int = 3,
    clerks: int = 3,
    faults: FaultSwitches = TXN_FAULTS,
    clerk_crash: bool = True,
    reconfig: ReconfigOptions | None = None,
) -> TxnSimConfig:
    """Vary what changes the shape of a run: election timing, batch and
    snapshot chunk sizes, how often replicas snapshot, the recovery timers,
    PreVote and CheckQuorum, and reads from followers."""
    rng = random.Random(f"{seed}:txn-config")
    clerk = ClerkConfig(
        clerk="template", request_timeout_ticks=6, max_backoff_ticks=24, max_attempts=6, outcome_budget_ticks=150
    )
    election_min, election_max, heartbeat = rng.choice(((6, 12, 2), (6, 12, 2), (3, 6, 1)))
    raft = RaftConfig(
        id="template",
        election_min=election_min,
        election_max=election_max,
        heartbeat_ticks=heartbeat,
        max_batch_bytes=rng.choice((48_000, 2_000)),
        max_snapshot_chunk=rng.choice((48_000, 500)),
        pre_vote=rng.random() < 0.75,
        check_quorum=rng.random() < 0.75,
    )
    replica = ReplicaConfig(
        cluster="template",
        raft=raft,
        initial_conf=ConfState(),
        snapshot_entries=rng.choice((15, 40, 100)) if faults.snapshot else 100_000,
        prepare_timeout_ticks=rng.choice((20, 40)),
        push_interval_ticks=rng.choice((4, 10)),
        # docs/DESIGN.md section 4, step 6: records outlive every decision a clerk
        # may still send, however long a clerk pause stretches its budget.
        retention_ticks=clerk_window_ticks(clerk, faults) + clerk_pause_limit(raft) + rng.choice((10, 300, 1_000)),
        read_from_followers=rng.random() < 0.2,
    )
    return TxnSimConfig(
        seed=seed,
        clusters=clusters,
        replicas=replicas,
        clerks=clerks,
        workload=workload,
        faults=faults,
        clerk_crash=clerk_crash,
        replica=replica,
        clerk=clerk,
        chaos_pace=rng.choice(((2, 12), (2, 12), (1, 4))),
        reconfig=reconfig,
    )


def run_config(config: TxnSimConfig, ticks: int = CHAOS_TICKS) -> TxnSeedResult:
    """One run: `ticks` of load and chaos, then heal, settle and judge."""
    sim = TxnSim(config)
    violations: tuple[str, ...] = ()
    trace_tail: tuple[str, ...] = ()
    longest = 0.0
    late: tuple[str, ...] = ()
    try:
        chaos = TxnChaos(sim, sim.rng("chaos"))
        chaos.start()
        if sim.coordinator is not None:
            sim.coordinator.plan(ticks)
        sim.run(ticks)
        chaos.stop()
        sim.settle()
        judgement = sim.judge()
        violations = tuple(judgement.violations)
        longest = judgement.longest_prepared_after_heal / TICK
        late = tuple(judgement.late_releases)
    except TxnViolation as error:
        violations = (f"{error.invariant}: {error.detail}",)
        trace_tail = tuple(error.trace_tail)
    outcomes = Counter(record.outcome for record in sim.records)
    causes = Counter(abort_cause(record.reason) for record in sim.records if record.outcome == ABORTED)
    return TxnSeedResult(
        seed=config.seed,
        workload=config.workload,
        violations=violations,
        digest=sim.digest,
        outcomes=outcomes,
        causes=causes,
        read_failures=sum(slot.driver.read_failures for slot in sim.slots),
        longest_prepared_after_heal=longest,
        late_releases=late,
        steps=sim.stats.steps,
        trace_tail=trace_tail,
        reconfig=sim.coordinator.stats if sim.coordinator is not None else None,
        moved=sum(slot.driver.moved for slot in sim.slots),
    )


def workload_for(seed: int, workload: str) -> str:
    """`mixed` takes the workloads in turn by seed."""
    return SIM_WORKLOADS[seed % len(SIM_WORKLOADS)] if workload == "mixed" else workload


def run_seed(
    seed: int,
    *,
    workload: str = "mixed",
    clusters: int = 2,
    replicas: int = 3,
    clerks: int = 3,
    faults: FaultSwitches = TXN_FAULTS,
    clerk_crash: bool = True,
    ticks: int = CHAOS_TICKS,
    reconfig: ReconfigOptions | None = None,
) -> TxnSeedResult:
    config = random_config(
        seed,
        workload=workload_for(seed, workload),
        clusters=clusters,
        replicas=replicas,
        clerks=clerks,
        faults=faults,
        clerk_crash=clerk_crash,
        reconfig=reconfig,
    )
    return run_config(config, ticks)


# -- command line ------------------------------------------------------------


def parse_txn_fault_switches(spec: str) -> FaultSwitches:
    """Like `FaultSwitches.parse`, where `all` means every fault but membership changes."""
    if spec.strip() == "all":
        return TXN_FAULTS
    faults = FaultSwitches.parse(spec)
    if faults.member:
        raise ValueError("membership changes are not a fault of transaction runs: they come with --reconfig")
    return faults


def _faults_spec(spec: str) -> str:
    """Check a --faults value, keeping it as written for replay lines."""
    try:
        parse_txn_fault_switches(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return spec


def add_txn_arguments(parser: argparse.ArgumentParser) -> None:
    """The `txn` subcommand's options; `run_txn` runs it."""
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run (default 100)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--clusters", type=int, default=2, help="clusters (default 2)")
    parser.add_argument("--replicas", type=int, default=3, help="replicas per cluster (default 3)")
    parser.add_argument("--clerks", type=int, default=3, help="clerks (default 3)")
    parser.add_argument(
        "--workload", choices=("mixed", *SIM_WORKLOADS), default="mixed", help="default mixed: by seed, in turn"
    )
    parser.add_argument(
        "--faults",
        default="all",
        type=_faults_spec,
        help=f"all, none, or a comma-separated list of {', '.join(name for name in FAULT_NAMES if name != 'member')}",
    )
    parser.add_argument("--no-clerk-crash", action="store_true", help="never kill or pause clerks")
    parser.add_argument(
        "--ticks", type=int, default=CHAOS_TICKS, help=f"ticks of chaos per seed (default {CHAOS_TICKS})"
    )
    parser.add_argument(
        "--reconfig",
        action="store_true",
        help="the coordinator also moves slots, adds a cluster, drains one, adds and removes replicas",
    )
    defaults = ReconfigOptions()
    parser.add_argument(
        "--moves",
        type=int,
        default=defaults.moves,
        help=f"with --reconfig: random slot moves (default {defaults.moves})",
    )
    parser.add_argument(
        "--member-changes",
        type=int,
        default=defaults.membership,
        help=f"with --reconfig: replicas added, each then one removed (default {defaults.membership})",
    )
    parser.add_argument("--trace", action="store_true", help="print the trace tail of each failing seed")
    parser.set_defaults(run=run_txn, replay_prefix="python3 -m tests.sim txn")


def replay_command(
    seed: int,
    *,
    workload: str,
    clusters: int = 2,
    replicas: int = 3,
    clerks: int = 3,
    faults: str = "all",
    clerk_crash: bool = True,
    ticks: int = CHAOS_TICKS,
    reconfig: ReconfigOptions | None = None,
    prefix: str = "python3 -m tests.sim txn",
) -> str:
    """The command that runs seed `seed` again, alone (`faults` as given on the command line)."""
    command = (
        f"{prefix} --seeds 1 --first-seed {seed} --clusters {clusters} --replicas {replicas}"
        f" --clerks {clerks} --workload {workload_for(seed, workload)}"
    )
    if faults != "all":
        command += f" --faults {faults}"
    if not clerk_crash:
        command += " --no-clerk-crash"
    if ticks != CHAOS_TICKS:
        command += f" --ticks {ticks}"
    if reconfig is not None:
        command += " --reconfig"
        defaults = ReconfigOptions()
        if reconfig.moves != defaults.moves:
            command += f" --moves {reconfig.moves}"
        if reconfig.membership != defaults.membership:
            command += f" --member-changes {reconfig.membership}"
    return command


def run_txn(args: argparse.Namespace) -> int:
    """Run the seeds; print a replay line per failing seed, the abort figures,
    and last `txn: N seeds, V violations, A committed, B aborted`."""
    faults = parse_txn_fault_switches(args.faults)
    started = time.perf_counter()
    failing = 0
    outcomes: dict[str, Counter] = {}
    causes: dict[str, Counter] = {}
    longest = 0.0
    late_seeds: list[int] = []
    late_txns = 0
    reconfigured = ReconfigStats()
    moved = 0
    options = ReconfigOptions(moves=args.moves, membership=args.member_changes) if args.reconfig else None
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        result = run_seed(
            seed,
            workload=args.workload,
            clusters=args.clusters,
            replicas=args.replicas,
            clerks=args.clerks,
            faults=faults,
            clerk_crash=not args.no_clerk_crash,
            ticks=args.ticks,
            reconfig=options,
        )
        if result.reconfig is not None:
            for name in ("moves", "added", "removed", "clusters_added", "maps"):
                setattr(reconfigured, name, getattr(reconfigured, name) + getattr(result.reconfig, name))
        moved += result.moved
        outcomes.setdefault(result.workload, Counter()).update(result.outcomes)
        causes.setdefault(result.workload, Counter()).update(result.causes)
        longest = max(longest, result.longest_prepared_after_heal)
        if result.late_releases:
            late_seeds.append(seed)
            late_txns += len(result.late_releases)
        if not result.violations:
            continue
        failing += 1
        print(
            f"seed {seed} ({result.workload}): {len(result.violations)} violation(s): {result.violations[0]}"
            " -- replay: "
            + replay_command(
                seed,
                workload=args.workload,
                clusters=args.clusters,
                replicas=args.replicas,
                clerks=args.clerks,
                faults=args.faults,
                clerk_crash=not args.no_clerk_crash,
                ticks=args.ticks,
                reconfig=options,
                prefix=args.replay_prefix,
            ),
            flush=True,
        )
        if args.trace:
            print("\n".join(f"    {line}" for line in (*result.violations[1:], *result.trace_tail)), flush=True)
    total = sum(outcomes.values(), Counter())
    for workload in sorted(outcomes):
        done = outcomes[workload]
        decided = done[COMMITTED] + done[ABORTED]
        rate = 100 * done[ABORTED] / decided if decided else 0.0
        by_cause = ", ".join(f"{cause} {count}" for cause, count in sorted(causes[workload].items())) or "none"
        print(
            f"{workload}: {done[COMMITTED]} committed, {done[ABORTED]} aborted ({rate:.1f}%: {by_cause}), "
            f"{done[FAILED]} failed, {done[ABANDONED]} abandoned by dead clerks"
        )
    if args.reconfig:
        print(
            f"reconfiguration: {reconfigured.moves} slot moves, {reconfigured.clusters_added} clusters added,"
            f" {reconfigured.added} replicas added, {reconfigured.removed} removed, {reconfigured.maps} maps pushed;"
            f" {moved} commits refused by a move and retried"
        )
    elapsed = time.perf_counter() - started
    print(
        f"prepared after the heal: longest {longest:.1f} ticks; past a prepare timeout plus an election:"
        f" {late_txns} in {len(late_seeds)} seeds{f' (first: seed {late_seeds[0]})' if late_seeds else ''};"
        f" time: {elapsed:.1f} s"
    )
    print(f"txn: {args.seeds} seeds, {failing} violations, {total[COMMITTED]} committed, {total[ABORTED]} aborted")
    return 1 if failing else 0
