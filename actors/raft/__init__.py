"""The Raft consensus core: a pure state machine, as etcd-io/raft's.

Pure: no Thespian, no clock (time arrives as `tick()`), no I/O, and
randomness only from an injected `random.Random`, so the deterministic
simulator (tests/sim) drives it as the server shell does. Each module opens
with its own rules:

- node.py: `RaftNode`: step, tick, propose, propose_conf_change,
  transfer_leadership, compact in; `ready()` -> `Ready` out, then `advance`.
  Roles, elections, replication, and the caller errors (`RaftError`).
- progress.py: `Progress`, the leader's view of one follower, and all its
  transitions (probe, replicate, snapshot).
- membership.py: single-replica membership changes, the membership at each
  log index, quorums.
- log.py: `RaftLog`, the in-memory log above the compaction point; and
  `InvariantViolation`, the error for a bug (crash, restart from storage).
- storage.py: the `Storage` seam, one transactional store for a whole
  `Ready`, and `MemoryStorage` for tests and the simulator. The durable
  `SqliteStorage` does I/O, so it lives outside, in actors/sqlite_storage.py.
- messages.py: Raft's wire and persisted types.
- meter.py: `RaftMeter`, a node's metrics, counted from what its Ready loop
  sees (docs/DESIGN.md section 14).
"""

from actors.raft.log import InvariantViolation
from actors.raft.messages import HardState
from actors.raft.node import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    PRE_CANDIDATE,
    ConfChangeBusy,
    NotLeader,
    RaftConfig,
    RaftError,
    RaftNode,
    Ready,
    Role,
    SoftState,
)
from actors.raft.storage import CorruptStorage, MemoryStorage, Storage, StoredState

__all__ = [
    "CANDIDATE",
    "FOLLOWER",
    "LEADER",
    "PRE_CANDIDATE",
    "ConfChangeBusy",
    "CorruptStorage",
    "HardState",
    "InvariantViolation",
    "MemoryStorage",
    "NotLeader",
    "RaftConfig",
    "RaftError",
    "RaftNode",
    "Ready",
    "Role",
    "SoftState",
    "Storage",
    "StoredState",
]
