"""CoordinatorGroup: one coordinator replica's Raft, whose state machine is
the coordinator's durable state (docs/DESIGN.md section 5, "The coordinator
group").

The state is a set of named values (JSON text): the shard map, the
reconfiguration jobs, placement and replacements (coordinator/state.py says
which). Each log entry sets some of them; a snapshot holds them all. The
shell (coordinator/coordinator.py) feeds `tick()` every tick and every Raft
message a peer sent (`receive`), sends what `take_output()` returns, and,
while `acting`, proposes what it changed (`propose`) and waits for `applied`
to pass the index it got before it acts on it.

Rules:
- Pure: no Thespian, no clock, no I/O beyond the Storage it is given;
  randomness only from the injected rng.
- Persist first: each Ready is saved in one storage batch before its
  messages are queued and its committed entries applied. A save that fails
  for want of space or an I/O error (StorageUnavailable) leaves the Ready to
  be saved again at the next input, and drops only its messages, which may
  depend on it: the replica keeps running (so, acting, it keeps
  supervising) and catches up once the disk works again.
- Only committed entries change `values`, so every replica holds the same
  values at the same index.
- `acting` is true only on a leader whose no-op of its term has been
  applied: it holds every value any earlier leader committed. At most one
  replica acts per term (Raft's election safety); a deposed leader stops
  acting as soon as its node steps down (CheckQuorum: within an election
  timeout of losing its quorum).
- Metrics (docs/DESIGN.md section 14): the shell's `Metrics` is handed in; a
  RaftMeter counts from each saved Ready, and `status()` carries the
  snapshot, its gauges set to that moment.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

from actors.metrics import Metrics
from actors.raft.messages import ENTRY_COMMAND, ConfState, Entry, RepairLogReply, Snapshot
from actors.raft.meter import RaftMeter
from actors.raft.node import LEADER, RaftConfig, RaftNode
from actors.raft.storage import Storage, StorageUnavailable

SNAPSHOT_ENTRIES = 1_000
"""Entries applied since the last snapshot after which the log is compacted."""


class CoordinatorGroup:
    """One coordinator replica's consensus and applied values; see the module docstring."""

    def __init__(self, config: RaftConfig, voters: tuple[str, ...], storage: Storage, rng: random.Random,
                 *, snapshot_entries: int = SNAPSHOT_ENTRIES, metrics: Metrics | None = None) -> None:
        self.id = config.id
        self.metrics = metrics if metrics is not None else Metrics()
        self._storage = storage
        self._snapshot_entries = snapshot_entries
        stored = storage.load()
        snapshot = stored.snapshot
        self.values: dict[str, str] = json.loads(snapshot.data) if snapshot else {}
        self.applied = snapshot.index if snapshot else 0
        self._snapshot_index = self.applied
        self._node = RaftNode(config, rng=rng, hard_state=stored.hard_state, snapshot=snapshot,
                              entries=stored.entries, initial_conf=ConfState(voters=voters))
        self._meter = RaftMeter(self.metrics, self._node)
        self._term_start = 0  # index of this leader's no-op; 0 while not leading
        self._outbox: list[tuple[str, Any]] = []
        self.storage_failure = ""
        """Why the last save failed; "" once one succeeds."""
        self._process_ready()

    # -- views ----------------------------------------------------------------------

    @property
    def role(self) -> str:
        return self._node.role

    @property
    def term(self) -> int:
        return self._node.term

    @property
    def leader(self) -> str | None:
        return self._node.leader

    @property
    def voters(self) -> tuple[str, ...]:
        return self._node.conf.voters

    @property
    def acting(self) -> bool:
        """Leads, and has applied its own term's first entry (so every value committed before)."""
        return self._node.role == LEADER and 0 < self._term_start <= self.applied

    def status(self) -> dict:
        node = self._node
        self._meter.set_gauges(self.applied)
        return {"replica": self.id, "role": node.role, "term": node.term, "leader": node.leader,
                "commit": node.commit, "applied": self.applied, "last_index": node.last_index,
                "snapshot_index": self._snapshot_index, "storage_failure": self.storage_failure,
                "lag": {peer: node.last_index - match for peer, match in sorted(node.progress.items())},
                "metrics": self.metrics.snapshot()}

    # -- inputs ---------------------------------------------------------------------

    def tick(self) -> None:
        self._node.tick()
        self._process_ready()

    def receive(self, message: Any) -> None:
        """A Raft message from a peer."""
        if type(message) is RepairLogReply:
            self._meter.repaired(message)
        self._node.step(message)
        self._process_ready()

    def propose(self, values: dict[str, str]) -> int:
        """Set `values` (name -> JSON text) once committed; returns the entry's
        index. Raises NotLeader on a replica that does not lead."""
        index = self._node.propose(json.dumps(values, sort_keys=True).encode())
        self._process_ready()
        return index

    def take_output(self) -> list[tuple[str, Any]]:
        """(peer id, Raft message) pairs to send; what they depend on is durable."""
        output, self._outbox = self._outbox, []
        return output

    # -- the Ready loop -------------------------------------------------------------

    def _process_ready(self) -> None:
        node = self._node
        while node.has_ready():
            ready = node.ready()
            try:
                if ready.hard_state is not None or ready.entries or ready.snapshot is not None:
                    self._storage.save(hard_state=ready.hard_state, entries=ready.entries, snapshot=ready.snapshot)
            except StorageUnavailable as error:
                self.storage_failure = error.reason
                node.advance(replace(ready, soft_state=None, hard_state=None, snapshot=None, entries=(),
                                     committed_entries=()))
                return
            self.storage_failure = ""
            self._meter.saved(ready)
            if ready.soft_state is not None:
                self._term_start = node.last_index if ready.soft_state.role == LEADER else 0
            if ready.snapshot is not None:
                self._install(ready.snapshot)
            self._outbox.extend(ready.messages)
            for entry in ready.committed_entries:
                self._apply(entry)
            node.advance(ready)
        if self.applied - self._snapshot_index >= self._snapshot_entries:
            snapshot = node.compact(self.applied, json.dumps(self.values, sort_keys=True).encode())
            self._snapshot_index = snapshot.index
            try:
                self._storage.compact(snapshot)
            except StorageUnavailable as error:
                self.storage_failure = error.reason  # the stored log stays longer until the next compaction

    def _install(self, snapshot: Snapshot) -> None:
        self.values = json.loads(snapshot.data)
        self.applied = self._snapshot_index = snapshot.index

    def _apply(self, entry: Entry) -> None:
        if entry.index <= self.applied:
            return  # covered by a snapshot installed in the same Ready
        if entry.kind == ENTRY_COMMAND:
            self.values.update(json.loads(entry.data))
        self.applied = entry.index
