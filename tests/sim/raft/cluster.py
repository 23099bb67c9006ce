"""A simulated Raft cluster: replicas with disks and state machines, a faulty
network, clients, and a chaos driver, all on one logical clock.

Rules:
- Each replica is driven exactly as the server shell drives it: after every
  event (a tick or a delivered message) loop `while has_ready()`: persist the
  Ready's hard state, entries and snapshot in one storage batch; restore the
  state machine from a received snapshot; send the messages; apply the
  committed entries; `advance`. Then, when the applied log has grown past
  `snapshot_entries`, compact the node and its storage.
- A crash drops the node and its state machine; only the storage survives,
  and a restart rebuilds both from `storage.load()`.
- The safety invariants (invariants.py) are checked after every step; a broken
  one raises `SimViolation` naming the invariant, the step and the seed.
  Liveness is checked by `settle()`: after healing everything, exactly one
  leader, and every acknowledged command applied on every live member.
- A run is a function of its seed: every random stream is seeded from it,
  and replicas are always visited in sorted order. `digest` hashes the trace.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field, replace
from typing import Callable

from actors.raft.messages import (
    CONF_ADD_LEARNER,
    CONF_PROMOTE,
    CONF_REMOVE,
    ENTRY_COMMAND,
    ENTRY_CONF,
    AppendLog,
    AppendLogReply,
    ConfChange,
    ConfState,
    Entry,
    RepairLogReply,
    Snapshot,
)
from actors.raft.node import LEADER, RaftConfig, RaftError, RaftNode, Ready
from actors.raft.storage import MemoryStorage
from tests.sim.harness.fault_switches import FaultSwitches
from tests.sim.harness.network import TICK, Network, Scheduler
from tests.sim.harness.trace import Trace
from tests.sim.raft.invariants import LIVENESS, NODE_ERROR, RaftChecker, Violation


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """One simulated cluster.

    Fields:
        seed: the seed every random stream derives from.
        nodes: how many voters the cluster boots with.
        faults: what the network and the chaos driver inject.
        snapshot_entries: compact once this many applied entries follow the
            last snapshot; 0 never compacts.
        raft: template for each replica's RaftConfig (its `id` is replaced).
        cluster: prefix of replica ids ("c1" gives c1-r0, c1-r1, ...).
        trace_kept: how many trace lines a run keeps for its report (None:
            every line, for golden traces).
    """

    seed: int
    nodes: int = 3
    faults: FaultSwitches = FaultSwitches()
    snapshot_entries: int = 0
    raft: RaftConfig = RaftConfig(id="template")
    cluster: str = "c1"
    trace_kept: int | None = 40


class SimViolation(AssertionError):
    """A broken property, located: which invariant, at which step, for which seed.

    `trace_tail` holds the last trace lines before the violation.
    """

    def __init__(self, violation: Violation, *, step: int, time: int, seed: int, nodes: int, trace_tail: list[str]):
        self.invariant = violation.invariant
        self.detail = violation.detail
        self.step = step
        self.time = time
        self.seed = seed
        self.nodes = nodes
        self.trace_tail = trace_tail
        super().__init__(
            f"{self.invariant} violated at step {step} (tick {time / TICK:.3f}) with seed {seed}: {self.detail}"
        )


class Machine:
    """The replicated state machine: the applied commands, by log index."""

    def __init__(self, applied: int = 0, commands: dict[int, bytes] | None = None) -> None:
        self.applied = applied
        self.commands: dict[int, bytes] = commands if commands is not None else {}

    def apply(self, entry: Entry) -> None:
        if entry.kind == ENTRY_COMMAND:
            self.commands[entry.index] = entry.data
        self.applied = entry.index

    def encode(self) -> bytes:
        return b"".join(struct.pack(">QI", index, len(data)) + data for index, data in sorted(self.commands.items()))

    @classmethod
    def decode(cls, snapshot: Snapshot) -> Machine:
        commands: dict[int, bytes] = {}
        raw, offset = snapshot.data, 0
        while offset < len(raw):
            index, size = struct.unpack_from(">QI", raw, offset)
            offset += 12
            commands[index] = raw[offset : offset + size]
            offset += size
        return cls(snapshot.index, commands)


class Replica:
    """One replica process: the storage plays its disk and survives crashes;
    the node and the state machine are volatile."""

    def __init__(self, replica_id: str) -> None:
        self.id = replica_id
        self.storage = MemoryStorage()
        self.node: RaftNode | None = None
        self.machine = Machine()
        self.incarnation = 0
        self.decommissioned = False

    @property
    def running(self) -> bool:
        return self.node is not None


@dataclass(frozen=True, kw_only=True)
class Proposal:
    """A command handed to a replica that believed it led.

    Fields:
        node: the replica it was proposed to.
        index, term: where it must be applied for the proposal to succeed.
        data: the command.
    """

    node: str
    index: int
    term: int
    data: bytes


@dataclass(kw_only=True)
class SimStats:
    """Counters of one run.

    Fields:
        steps: events run (ticks, deliveries, client and chaos actions).
        proposed: commands accepted by a replica that believed it led.
        acked: proposals applied by that replica at their index and term.
        sent: messages handed to the network, by message class name.
        rejected: AppendLogReply messages refusing entries (backtracking).
        snapshot_chunks: RepairLogReply messages carrying a piece of a snapshot.
        batches: AppendLog and RepairLogReply messages carrying entries.
        batched_entries: entries those messages carried.
        faults: chaos actions taken, by kind.
    """

    steps: int = 0
    proposed: int = 0
    acked: int = 0
    sent: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    snapshot_chunks: int = 0
    batches: int = 0
    batched_entries: int = 0
    faults: dict[str, int] = field(default_factory=dict)


class RaftSim:
    """N replicas of one cluster over a simulated network (see the module docstring)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.seed = config.seed
        self.scheduler = Scheduler()
        self.checker = RaftChecker()
        self.stats = SimStats()
        self._trace = Trace(self.scheduler, keep=config.trace_kept)
        self.network = Network(
            scheduler=self.scheduler,
            rng=self.rng("network"),
            faults=config.faults,
            deliver=self._on_deliver,
            trace=self._trace,
        )
        self.replicas: dict[str, Replica] = {}
        self._phase_rng = self.rng("phase")
        self.boot_conf = ConfState(voters=tuple(self._replica_id(n) for n in range(config.nodes)))
        self._next_replica = config.nodes
        self._pending: dict[tuple[str, int], Proposal] = {}
        self.acked: dict[bytes, int] = {}
        self._conf_hooks: list[Callable[[str, ConfChange], None]] = []

        def boot() -> None:
            for replica_id in self.boot_conf.voters:
                self._start_replica(replica_id)

        self._step("boot", boot)

    # -- identity, randomness, trace ----------------------------------------

    def rng(self, stream: str) -> random.Random:
        """A random stream of this run, named so that adding one shifts no other."""
        return random.Random(f"{self.seed}:{stream}")

    def _replica_id(self, number: int) -> str:
        return f"{self.config.cluster}-r{number}"

    @property
    def digest(self) -> str:
        """SHA-256 of the trace so far: equal for two runs of one seed."""
        return self._trace.digest

    def trace_lines(self) -> list[str]:
        """The trace lines kept (all of them with `trace_kept=None`), oldest first."""
        return self._trace.tail()

    @property
    def now_ticks(self) -> float:
        return self.scheduler.now / TICK

    # -- stepping -----------------------------------------------------------

    def _step(self, label: str, action: Callable[[], None]) -> None:
        """Run one event; every invariant touched by it is checked inside."""
        self.stats.steps += 1
        self._trace(label)
        try:
            action()
        except Violation as violation:
            raise self._located(violation) from None
        except SimViolation:
            raise
        except Exception as error:
            raise self._located(Violation(NODE_ERROR, f"{type(error).__name__}: {error}")) from error

    def _located(self, violation: Violation) -> SimViolation:
        return SimViolation(
            violation,
            step=self.stats.steps,
            time=self.scheduler.now,
            seed=self.seed,
            nodes=self.config.nodes,
            trace_tail=self._trace.tail(),
        )

    def at_tick(self, ticks: float, label: str, action: Callable[[], None]) -> None:
        """Schedule `action` as a step `ticks` ticks from now."""
        self.scheduler.after(int(ticks * TICK), lambda: self._step(label, action))

    def run(self, ticks: float) -> None:
        self.scheduler.run_until(self.scheduler.now + int(ticks * TICK))

    def run_until(self, done: Callable[[], bool], max_ticks: float, *, every_step: bool = False) -> bool:
        """Run until `done()` holds, checking it each tick (or, with
        `every_step`, after every event); False if it never did within `max_ticks`."""
        deadline = self.scheduler.now + int(max_ticks * TICK)
        while not done():
            if self.scheduler.now >= deadline:
                return False
            if every_step and self.scheduler.next_time is not None and self.scheduler.next_time <= deadline:
                self.scheduler.run_next()
            else:
                self.scheduler.run_until(min(deadline, self.scheduler.now + TICK))
        return True

    # -- replicas -----------------------------------------------------------

    def _start_replica(self, replica_id: str) -> Replica:
        replica = Replica(replica_id)
        self.replicas[replica_id] = replica
        self._boot(replica)
        # Each replica ticks at its own phase, as independent processes would.
        phase = self._phase_rng.randint(0, TICK - 1)
        self.scheduler.after(phase, lambda: self._tick_loop(replica))
        return replica

    def _boot(self, replica: Replica) -> None:
        stored = replica.storage.load()
        replica.incarnation += 1
        raft = replace(self.config.raft, id=replica.id)
        replica.node = RaftNode(
            raft,
            rng=self.rng(f"node:{replica.id}:{replica.incarnation}"),
            hard_state=stored.hard_state,
            snapshot=stored.snapshot,
            entries=stored.entries,
            initial_conf=self.boot_conf,
        )
        replica.machine = Machine.decode(stored.snapshot) if stored.snapshot else Machine()
        self.checker.start(replica.id, stored.hard_state, stored.snapshot, stored.entries)
        self.network.set_down(replica.id, False)
        self._drain(replica)

    def _tick_loop(self, replica: Replica) -> None:
        if replica.decommissioned:
            return
        if replica.running and self.network.available(replica.id):
            self._step(f"tick {replica.id}", lambda: self._tick(replica))
        self.scheduler.after(TICK, lambda: self._tick_loop(replica))

    def _tick(self, replica: Replica) -> None:
        replica.node.observe_time(self.scheduler.now)
        replica.node.tick()
        self._drain(replica)

    def _on_deliver(self, src: str, dst: str, message: object) -> None:
        replica = self.replicas.get(dst)
        if replica is None or not replica.running:
            return
        self._step(f"deliver {src}->{dst} {message!r}", lambda: self._receive(replica, message))

    def _receive(self, replica: Replica, message: object) -> None:
        replica.node.observe_time(self.scheduler.now)
        replica.node.step(message)
        self._drain(replica)

    def _drain(self, replica: Replica) -> None:
        """The shell's loop: persist, restore, send, apply, advance; then compact."""
        node = replica.node
        while True:
            while node.has_ready():
                self._handle_ready(replica, node.ready())
            if not self._maybe_compact(replica):
                break
        self.checker.observe_role(replica.id, node.role, node.term)
        basis = node.lease_basis
        lease_until = None if basis is None else basis + self.config.raft.lease_ticks * TICK
        self.checker.observe_lease(replica.id, node.term, lease_until, self.scheduler.now)

    def _handle_ready(self, replica: Replica, rd: Ready) -> None:
        node = replica.node
        self.checker.persist(
            replica.id,
            is_leader=node.role == LEADER,
            hard_state=rd.hard_state,
            snapshot=rd.snapshot,
            entries=rd.entries,
        )
        replica.storage.save(hard_state=rd.hard_state, entries=rd.entries, snapshot=rd.snapshot)
        if rd.hard_state is not None:
            self.checker.commit(replica.id, rd.hard_state.commit, rd.hard_state.term)
        if rd.snapshot is not None:
            restored = Machine.decode(rd.snapshot)
            self.checker.restore(replica.id, rd.snapshot, restored.commands, replica.machine.applied)
            replica.machine = restored
            self._drop_pending(replica.id, through=rd.snapshot.index)
        for to, message in rd.messages:
            self.checker.check_sent(replica.id, to, message)
            self._count_sent(message)
            self.network.send(replica.id, to, message)
        for entry in rd.committed_entries:
            self.checker.apply(replica.id, entry, replica.machine.applied)
            replica.machine.apply(entry)
            self._maybe_ack(replica.id, entry)
            if entry.kind == ENTRY_CONF:
                change = ConfChange.decode(entry.data)
                for hook in self._conf_hooks:
                    hook(replica.id, change)
        node.advance(rd)

    def _count_sent(self, message: object) -> None:
        kind = type(message).__name__
        self.stats.sent[kind] = self.stats.sent.get(kind, 0) + 1
        if isinstance(message, AppendLogReply) and not message.success:
            self.stats.rejected += 1
        if isinstance(message, RepairLogReply) and message.snapshot is not None:
            self.stats.snapshot_chunks += 1
        if isinstance(message, (AppendLog, RepairLogReply)) and message.entries:
            self.stats.batches += 1
            self.stats.batched_entries += len(message.entries)

    def _maybe_compact(self, replica: Replica) -> bool:
        every = self.config.snapshot_entries
        mirror = self.checker.mirrors[replica.id]
        if not every or replica.machine.applied - mirror.snapshot_index < every:
            return False
        applied = replica.machine.applied
        snapshot = replica.node.compact(applied, replica.machine.encode())
        self._trace(f"compact {replica.id} {applied}")
        self.checker.compact(replica.id, snapshot, applied)
        replica.storage.compact(snapshot)
        return True

    # -- observing ----------------------------------------------------------

    def running(self) -> list[str]:
        """Replicas whose process is up (awake or asleep), sorted."""
        return sorted(rid for rid, r in self.replicas.items() if r.running)

    def node(self, replica_id: str) -> RaftNode:
        node = self.replicas[replica_id].node
        if node is None:
            raise KeyError(f"{replica_id} is not running")
        return node

    def leaders(self) -> list[str]:
        """Running, awake replicas that believe they lead, highest term first."""
        found = [
            rid
            for rid in self.running()
            if self.network.available(rid) and self.replicas[rid].node.role == LEADER
        ]
        return sorted(found, key=lambda rid: (-self.replicas[rid].node.term, rid))

    def leader(self) -> str | None:
        """The leader of the highest term among running, awake replicas."""
        found = self.leaders()
        return found[0] if found else None

    def members(self) -> list[str]:
        """Voters and learners of the configuration in force at the leader or,
        with no leader, at the running replica that has committed the most."""
        source = self.leader()
        if source is None and self.running():
            source = max(self.running(), key=lambda rid: (self.replicas[rid].node.commit, rid))
        conf = self.node(source).conf if source else self.boot_conf
        return sorted((*conf.voters, *conf.learners))

    def wait_leader(self, among: list[str] | None = None, max_ticks: float = 60) -> str:
        """Run until a replica of `among` (default: all) leads; the one with
        the highest term. Raises AssertionError if none does in time."""
        group = among if among is not None else sorted(self.replicas)

        def leading() -> list[str]:
            return [rid for rid in self.leaders() if rid in group]

        if not self.run_until(lambda: bool(leading()), max_ticks):
            raise AssertionError(f"no leader among {group} within {max_ticks} ticks (seed {self.seed})")
        return leading()[0]

    def machine(self, replica_id: str) -> Machine:
        return self.replicas[replica_id].machine

    def applied_count(self, index: int) -> tuple[int, bytes | None]:
        """How many running replicas applied `index`, and the command there
        (None for a no-op or configuration entry); 6.824's nCommitted."""
        count, data = 0, None
        for rid in self.running():
            machine = self.replicas[rid].machine
            if machine.applied >= index:
                count += 1
                data = machine.commands.get(index, data)
        return count, data

    def messages_sent(self) -> int:
        return self.network.stats.sent

    def committed_index(self) -> int:
        return max(self.checker.committed, default=0)

    # -- clients ------------------------------------------------------------

    def propose(self, data: bytes, to: str | None = None) -> Proposal | None:
        """Hand `data` to `to` (default: the leader); None when it is not the leader."""
        target = to if to is not None else self.leader()
        if target is None or not self.replicas[target].running:
            return None
        replica = self.replicas[target]
        proposal: Proposal | None = None

        def act() -> None:
            nonlocal proposal
            try:
                index = replica.node.propose(data)
            except RaftError:
                return
            proposal = Proposal(node=target, index=index, term=replica.node.term, data=data)
            self._pending[(target, index)] = proposal
            self.stats.proposed += 1
            self._drain(replica)

        self._step(f"propose {target} {data!r}", act)
        return proposal

    def _maybe_ack(self, replica_id: str, entry: Entry) -> None:
        proposal = self._pending.pop((replica_id, entry.index), None)
        if proposal is not None and (proposal.term, proposal.data) == (entry.term, entry.data):
            self.acked[proposal.data] = entry.index
            self.stats.acked += 1

    def _drop_pending(self, replica_id: str, through: int | None = None) -> None:
        for key in sorted(self._pending):
            if key[0] == replica_id and (through is None or key[1] <= through):
                del self._pending[key]

    def one(self, data: bytes, expected: int, max_ticks: float = 100) -> int:
        """Get `data` applied on at least `expected` replicas, retrying through
        whichever replica leads; its index. 6.824's `one` (with retry)."""
        deadline = self.now_ticks + max_ticks
        while self.now_ticks < deadline:
            proposal = self.propose(data)
            if proposal is None:
                self.run(1)
                continue
            # Wait for agreement, or for another entry to win the index.
            self.run_until(
                lambda: self.applied_count(proposal.index)[0] >= expected
                or self.applied_count(proposal.index)[1] not in (None, data),
                max_ticks=min(2 * self.config.raft.election_max, max(1.0, deadline - self.now_ticks)),
            )
            count, got = self.applied_count(proposal.index)
            if count >= expected and got == data:
                return proposal.index
        raise AssertionError(f"one({data!r}) did not reach {expected} replicas in {max_ticks} ticks (seed {self.seed})")

    # -- faults -------------------------------------------------------------

    def crash(self, replica_id: str) -> None:
        """Kill the process: the node and state machine are lost, the disk stays."""

        def act() -> None:
            replica = self.replicas[replica_id]
            replica.node = None
            replica.machine = Machine()
            self.network.set_down(replica_id, True)
            self.checker.stop(replica_id)
            self._drop_pending(replica_id)

        self._step(f"crash {replica_id}", act)

    def restart(self, replica_id: str) -> None:
        """Start the process again from its storage."""
        if self.replicas[replica_id].decommissioned:
            raise ValueError(f"{replica_id} was decommissioned; it never restarts")

        def act() -> None:
            replica = self.replicas[replica_id]
            stored = replica.storage.load()
            self.checker.check_restart(replica_id, stored.hard_state, stored.snapshot, stored.entries)
            self._boot(replica)

        self._step(f"restart {replica_id}", act)

    def sleep(self, replica_id: str, ticks: int) -> None:
        self._step(f"sleep {replica_id}", lambda: self.network.sleep(replica_id, ticks))

    def wake(self, replica_id: str) -> None:
        self._step(f"wake {replica_id}", lambda: self.network.wake(replica_id))

    def isolate(self, replica_id: str) -> None:
        self._step(f"isolate {replica_id}", lambda: self.network.isolate(replica_id))

    def rejoin(self, replica_id: str) -> None:
        self._step(f"rejoin {replica_id}", lambda: self.network.rejoin(replica_id))

    def partition(self, *groups: list[str]) -> None:
        self._step("partition", lambda: self.network.partition(groups))

    def heal(self) -> None:
        self._step("heal", self.network.heal)

    # -- membership ---------------------------------------------------------

    def on_conf_applied(self, hook: Callable[[str, ConfChange], None]) -> None:
        """Call `hook(replica_id, change)` whenever a replica applies a membership change."""
        self._conf_hooks.append(hook)

    def _leader_call(self, via: str | None, label: str, call: Callable[[RaftNode], int | None]) -> int | None:
        """Run `call` on `via` (default: the leader) as one step; a RaftError
        it raises (NotLeader, ConfChangeBusy) is raised to the caller."""
        target = via if via is not None else self.leader()
        if target is None:
            raise RaftError("no leader")
        replica = self.replicas[target]
        outcome: list[int | None | RaftError] = []

        def act() -> None:
            try:
                outcome.append(call(replica.node))
            except RaftError as error:
                outcome.append(error)
            self._drain(replica)

        self._step(f"{label} via {target}", act)
        if isinstance(outcome[0], RaftError):
            raise outcome[0]
        return outcome[0]

    def change(self, op: str, replica_id: str, via: str | None = None) -> int:
        """Propose a membership change through `via` (default: the leader);
        its log index. Raises NotLeader or ConfChangeBusy like the node."""
        change = ConfChange(op=op, replica=replica_id)
        return self._leader_call(via, f"conf {op} {replica_id}", lambda node: node.propose_conf_change(change))

    def add_learner(self, via: str | None = None) -> str:
        """Propose a new replica id as a learner and, once proposed, start that
        replica with an empty disk (beside the proposer in any partition)."""
        replica_id = self._replica_id(self._next_replica)
        self._next_replica += 1
        self.change(CONF_ADD_LEARNER, replica_id, via)
        proposer = via if via is not None else self.leader()

        def act() -> None:
            self._start_replica(replica_id)
            self.network.place(replica_id, beside=proposer)

        self._step(f"start {replica_id}", act)
        return replica_id

    def promote(self, replica_id: str, via: str | None = None) -> int:
        return self.change(CONF_PROMOTE, replica_id, via)

    def remove(self, replica_id: str, via: str | None = None) -> int:
        return self.change(CONF_REMOVE, replica_id, via)

    def transfer(self, to: str, via: str | None = None) -> None:
        """Ask the leader (or `via`) to hand leadership to `to`."""
        self._leader_call(via, f"transfer to {to}", lambda node: node.transfer_leadership(to))

    def decommission(self, replica_id: str) -> None:
        """Stop a removed replica for good."""

        def act() -> None:
            replica = self.replicas[replica_id]
            replica.node = None
            replica.decommissioned = True
            self.network.set_down(replica_id, True)
            self.checker.stop(replica_id)
            self._drop_pending(replica_id)

        self._step(f"decommission {replica_id}", act)

    # -- the end ------------------------------------------------------------

    def settle(self, max_ticks: float = 300) -> None:
        """Heal everything, stop injecting faults, then require liveness within
        `max_ticks`: exactly one leader, every acknowledged command applied on
        every live member, and the retained logs matching pairwise."""
        self.network.faults = FaultSwitches()
        self.heal()
        for rid in sorted(self.replicas):
            replica = self.replicas[rid]
            if replica.decommissioned:
                continue
            if self.network.asleep(rid):
                self.wake(rid)
            if not replica.running:
                self.restart(rid)
        if not self.run_until(self._live, max_ticks):
            raise self._located(Violation(LIVENESS, self._liveness_gap()))
        self._step("check logs", lambda: self.checker.check_logs_match(self.running()))

    def _live(self) -> bool:
        return not self._liveness_gap()

    def _liveness_gap(self) -> str:
        """What keeps the cluster from being live now; empty when it is."""
        leaders = self.leaders()
        if len(leaders) != 1:
            return f"{len(leaders)} leaders ({', '.join(leaders)}) after healing"
        for rid in self.members():
            replica = self.replicas[rid]
            if not replica.running:
                return f"member {rid} is not running"
            machine = replica.machine
            if self.acked and machine.applied < max(self.acked.values()):
                return f"{rid} applied only up to {machine.applied}"
            for data, index in self.acked.items():
                if machine.commands.get(index) != data:
                    return f"acknowledged {data!r} at index {index} is not applied on {rid}"
        return ""
